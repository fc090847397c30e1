"""Site-to-site IPsec as data: the endpoints of a tunnel, the strongSwan configuration they
render to, and the state `swanctl --list-sas` reports back.

Pure: no I/O, no subprocess (the daemon is run by `dataplane/privileged.py`, `Charon`). Invariants:

- No user string reaches a configuration file verbatim. Addresses and traffic selectors
  are parsed as IP addresses/networks and printed back canonically; the pre-shared key is
  written as hex (`0x...`, swanctl's hex form), so quotes, spaces, braces, `#` or newlines
  in it are just bytes; connection names are reduced to `[A-Za-z0-9_-]` (see `conn_name`).
- IKEv2 only, PSK authentication, identities = the public addresses.
- The proposals are a subset of what an Azure VPN gateway accepts with its default
  policy ("About VPN devices and IPsec/IKE parameters for Site-to-Site VPN Gateway
  connections", tables "IKE Phase 1 (Main Mode) parameters" and "RouteBased VPN IPsec
  Security Association (IKE Quick Mode SA) Offers"), each ordered strongest first.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Literal

Mode = Literal["kernel", "libipsec"]

# IKE (phase 1). Azure's default route-based offers are AES256/AES128 x SHA256/SHA1 with
# DH group 2 (MODP 1024); group 14 (MODP 2048) is what its custom policies offer as the
# stronger choice ("About cryptographic requirements and Azure VPN gateways"). We prefer
# MODP 2048 and still accept the Azure defaults; 3DES is left out.
IKE_PROPOSALS: tuple[str, ...] = (
    "aes256-sha256-modp2048",
    "aes256-sha256-modp1024",
    "aes256-sha1-modp1024",
    "aes128-sha256-modp1024",
    "aes128-sha1-modp1024",
)
# ESP (phase 2): Azure's first offer is GCM-AES256 without PFS, then AES256/AES128 with
# SHA1/SHA256; as responder it also takes PFS groups 2 and 14 (the last four).
ESP_PROPOSALS: tuple[str, ...] = (
    "aes256gcm16",
    "aes256-sha256",
    "aes256-sha1",
    "aes128-sha1",
    "aes256-sha256-modp2048",
    "aes256-sha256-modp1024",
    "aes256-sha1-modp2048",
    "aes256-sha1-modp1024",
)
# Azure's default lifetimes: IKE SA 28,800 s, IPsec SA 27,000 s.
IKE_REKEY_SECONDS = 28800
CHILD_REKEY_SECONDS = 27000
DPD_DELAY_SECONDS = 30

# The plugins charon loads (nothing else: the host's /etc/strongswan.d is not read).
# kernel-libipsec must come before kernel-netlink, which still does routes and addresses.
_PLUGINS = "random nonce openssl pem pkcs1 x509 revocation constraints pubkey kdf"
_NET_PLUGINS = "kernel-netlink socket-default vici"
_SWANCTL_PLUGINS = "random nonce openssl pem pkcs1 x509 pubkey"
# The routing table (and rule priority) charon installs tunnel routes in, per namespace.
ROUTING_TABLE = 220

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_PROPOSAL = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_PATH = re.compile(r"/[A-Za-z0-9_./+-]*")
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes with the terminating NUL
MAX_PSK_BYTES = 512


class InvalidIpsecConfig(ValueError):
    """An endpoint or path that cannot be rendered safely; `message` says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def conn_name(name: str) -> str:
    """The swanctl connection/child name of a connection called `name`.

    A name of 1-40 of `[A-Za-z0-9_-]` (starting alphanumeric) is kept; anything else is
    reduced to those characters and suffixed with a hash of the original, so two
    different names never share a result and no byte of it can break the file.
    """
    if _SAFE_NAME.fullmatch(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")[:30] or "conn"
    if not cleaned[0].isalnum():
        cleaned = "c" + cleaned[:29]
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def _address(value: str, what: str) -> str:
    try:
        return str(ip_address(value.strip()))
    except ValueError:
        raise InvalidIpsecConfig(f"{what} {value!r} is not an IP address") from None


def _selector(value: str, what: str) -> str:
    try:
        return str(ip_network(value.strip(), strict=False))
    except ValueError:
        raise InvalidIpsecConfig(f"{what} {value!r} is not an address prefix") from None


def _proposals(values: Sequence[str], what: str) -> tuple[str, ...]:
    if not values:
        raise InvalidIpsecConfig(f"{what}: at least one proposal is needed")
    bad = [v for v in values if not _PROPOSAL.fullmatch(v)]
    if bad:
        raise InvalidIpsecConfig(f"{what}: invalid proposal {bad[0]!r}")
    return tuple(values)


@dataclass(frozen=True)
class IpsecEndpoint:
    """One side of a site-to-site tunnel, as this host runs it.

    `name` is the connection's name (any string; `conn` is its safe swanctl form);
    `local_address`/`remote_address` are the public addresses (also the IKE ids);
    `local_ts`/`remote_ts` the address prefixes behind each side; `initiator` starts the
    tunnel and restarts it on DPD/close, a responder only answers. Construction
    normalises the addresses and raises `InvalidIpsecConfig` on anything unsafe.
    """

    name: str
    local_address: str
    remote_address: str
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    psk: str = field(repr=False)
    initiator: bool
    ike_proposals: tuple[str, ...] = IKE_PROPOSALS
    esp_proposals: tuple[str, ...] = ESP_PROPOSALS

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidIpsecConfig("a connection needs a name")
        local = _address(self.local_address, "local address")
        remote = _address(self.remote_address, "remote address")
        if ip_address(local).version != ip_address(remote).version:
            raise InvalidIpsecConfig(f"{local} and {remote} are of different IP versions")
        if local == remote:
            raise InvalidIpsecConfig(f"local and remote address are both {local}")
        for what, selectors in (("local", self.local_ts), ("remote", self.remote_ts)):
            if isinstance(selectors, str) or not selectors:
                raise InvalidIpsecConfig(f"{what} traffic selectors: a non-empty tuple")
        if not self.psk:
            raise InvalidIpsecConfig("the pre-shared key is empty")
        try:
            size = len(self.psk.encode())
        except UnicodeEncodeError:
            raise InvalidIpsecConfig("the pre-shared key is not valid text") from None
        if size > MAX_PSK_BYTES:
            raise InvalidIpsecConfig(f"the pre-shared key is longer than {MAX_PSK_BYTES} bytes")
        # Frozen: the normalised values replace what was given.
        object.__setattr__(self, "local_address", local)
        object.__setattr__(self, "remote_address", remote)
        object.__setattr__(
            self, "local_ts", tuple(_selector(t, "local selector") for t in self.local_ts)
        )
        object.__setattr__(
            self, "remote_ts", tuple(_selector(t, "remote selector") for t in self.remote_ts)
        )
        object.__setattr__(self, "ike_proposals", _proposals(self.ike_proposals, "IKE"))
        object.__setattr__(self, "esp_proposals", _proposals(self.esp_proposals, "ESP"))

    @property
    def conn(self) -> str:
        """The connection's (and its one child's) name in swanctl."""
        return conn_name(self.name)


def choose_mode(esp_in_kernel: bool) -> Mode:
    """Kernel ESP (XFRM) when the kernel has it, else strongSwan's user-space ESP."""
    return "kernel" if esp_in_kernel else "libipsec"


def _path(value: str, what: str) -> str:
    if not _PATH.fullmatch(value) or "/../" in value + "/":
        raise InvalidIpsecConfig(f"{what} {value!r}: an absolute path of [A-Za-z0-9_./+-]")
    return value


def render_strongswan_conf(
    vici_path: str, log_path: str, libipsec: bool, install_routes: bool = True
) -> str:
    """The `strongswan.conf` of one charon (passed as STRONGSWAN_CONF): an explicit plugin
    list, the vici socket and a log file in the daemon's own directory, no journal.

    `install_routes=False`: charon routes nothing (the caller routes the remote selectors
    itself). charon's own routes take a source address inside a local selector, which a
    gateway has for its network's space but not for a peer's it carries in transit."""
    vici = _path(vici_path, "vici socket")
    if len(vici) > MAX_SOCKET_PATH:
        raise InvalidIpsecConfig(f"vici socket path longer than {MAX_SOCKET_PATH}: {vici}")
    log = _path(log_path, "log file")
    kernel = "kernel-libipsec " if libipsec else ""
    return f"""\
# Written by privatelink; charon reads only this file (STRONGSWAN_CONF).
charon-systemd {{
  load_modular = no
  load = {_PLUGINS} {kernel}{_NET_PLUGINS}
  install_virtual_ip = no
  install_routes = {"yes" if install_routes else "no"}
  routing_table = {ROUTING_TABLE}
  routing_table_prio = {ROUTING_TABLE}
  # IKEv2 DPD times out after the retransmissions: 2 s * (1 + 1.6 + ... + 1.6^4) = ~32 s.
  retransmit_tries = 4
  retransmit_timeout = 2.0
  retransmit_base = 1.6
  journal {{
    default = -1
  }}
  filelog {{
    charon {{
      path = {log}
      time_format = %Y-%m-%dT%H:%M:%S
      default = 1
      append = yes
      flush_line = yes
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{vici}
    }}
  }}
}}
swanctl {{
  load = {_SWANCTL_PLUGINS}
}}
"""


def _connection(e: IpsecEndpoint) -> list[str]:
    name = e.conn
    # An initiator (re)starts the tunnel on load, DPD timeout and close; a responder waits.
    start, dpd, close = ("start", "restart", "start") if e.initiator else ("none", "clear", "none")
    return [
        f"  {name} {{",
        "    version = 2",
        f"    local_addrs = {e.local_address}",
        f"    remote_addrs = {e.remote_address}",
        f"    proposals = {','.join(e.ike_proposals)}",
        f"    rekey_time = {IKE_REKEY_SECONDS}s",
        f"    dpd_delay = {DPD_DELAY_SECONDS}s",
        "    mobike = no",
        f"    keyingtries = {0 if e.initiator else 1}",
        "    local {",
        "      auth = psk",
        f"      id = {e.local_address}",
        "    }",
        "    remote {",
        "      auth = psk",
        f"      id = {e.remote_address}",
        "    }",
        "    children {",
        f"      {name} {{",
        f"        local_ts = {','.join(e.local_ts)}",
        f"        remote_ts = {','.join(e.remote_ts)}",
        f"        esp_proposals = {','.join(e.esp_proposals)}",
        f"        rekey_time = {CHILD_REKEY_SECONDS}s",
        "        mode = tunnel",
        f"        start_action = {start}",
        f"        dpd_action = {dpd}",
        f"        close_action = {close}",
        "      }",
        "    }",
        "  }",
    ]


def _secret(e: IpsecEndpoint) -> list[str]:
    return [
        f"  ike-{e.conn} {{",
        f"    id-local = {e.local_address}",
        f"    id-remote = {e.remote_address}",
        f"    secret = 0x{e.psk.encode().hex()}",
        "  }",
    ]


def render_swanctl_conf(endpoints: Sequence[IpsecEndpoint]) -> str:
    """The whole `swanctl.conf` of one charon: every connection and its PSK.

    Raises `InvalidIpsecConfig` when two endpoints share a swanctl name or the same pair
    of addresses (charon could not tell their keys apart).
    """
    seen_names: dict[str, str] = {}
    seen_pairs: dict[tuple[str, str], str] = {}
    for e in endpoints:
        if e.conn in seen_names:
            raise InvalidIpsecConfig(
                f"connections {seen_names[e.conn]!r} and {e.name!r} have the same name"
            )
        pair = (e.local_address, e.remote_address)
        if pair in seen_pairs:
            raise InvalidIpsecConfig(
                f"connections {seen_pairs[pair]!r} and {e.name!r} both join {pair[0]} and {pair[1]}"
            )
        seen_names[e.conn] = e.name
        seen_pairs[pair] = e.name
    lines = ["# Written by privatelink; the keys are hex (0x...).", "connections {"]
    for e in endpoints:
        lines += _connection(e)
    lines += ["}", "secrets {"]
    for e in endpoints:
        lines += _secret(e)
    lines += ["}", ""]
    return "\n".join(lines)


# --- swanctl --list-sas ---------------------------------------------------------------


@dataclass(frozen=True)
class ChildSaState:
    """One CHILD_SA (ESP SA pair) as charon reports it."""

    name: str
    state: str  # INSTALLED, REKEYING, REKEYED, DELETING, ...
    protocol: str = ""
    encap: bool = False  # ESP in UDP (always, with kernel-libipsec before 5.9.11)
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    local_ts: tuple[str, ...] = ()
    remote_ts: tuple[str, ...] = ()

    @property
    def installed(self) -> bool:
        return self.state == "INSTALLED"


@dataclass(frozen=True)
class SaState:
    """The IKE SAs of one connection (usually one; two while rekeying) and their children.

    `established`: an IKE SA is ESTABLISHED; `installed`: a CHILD_SA carries traffic;
    the byte counters sum every CHILD_SA reported (a rekeyed one until it is deleted).
    """

    name: str
    ike_states: tuple[str, ...]
    local_host: str = ""
    remote_host: str = ""
    children: tuple[ChildSaState, ...] = ()

    @property
    def established(self) -> bool:
        return "ESTABLISHED" in self.ike_states

    @property
    def installed(self) -> bool:
        return self.established and any(c.installed for c in self.children)

    @property
    def bytes_in(self) -> int:
        return sum(c.bytes_in for c in self.children)

    @property
    def bytes_out(self) -> int:
        return sum(c.bytes_out for c in self.children)


ViciValue = str | list[str] | dict[str, "ViciValue"]


class ListSasParseError(ValueError):
    """`swanctl --list-sas --pretty` output that does not nest properly."""


def parse_vici_pretty(text: str) -> list[tuple[str, dict[str, ViciValue]]]:
    """The messages of a `swanctl ... --pretty` dump: (message name, body) in order.

    Line based: `name {` opens a section, `}` closes it, `key = [` opens a list whose
    items are one per line until `]`, and `key = value` is a value (which may contain
    spaces). Other lines (swanctl's own notes) outside any message are skipped.
    """
    messages: list[tuple[str, dict[str, ViciValue]]] = []
    stack: list[dict[str, ViciValue]] = []
    items: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if items is not None:
            if line == "]":
                items = None
            else:
                items.append(line)
            continue
        if line.endswith("{") and " = " not in line:
            section: dict[str, ViciValue] = {}
            name = line[:-1].strip()
            if stack:
                stack[-1][name] = section
            else:
                messages.append((name, section))
            stack.append(section)
        elif line == "}":
            if not stack:
                raise ListSasParseError(f"line {number}: '}}' without a section")
            stack.pop()
        elif stack and " = " in line:
            key, value = line.split(" = ", 1)
            if value == "[":
                items = []
                stack[-1][key] = items
            else:
                stack[-1][key] = value
        elif stack and line.endswith(" ="):  # an empty value
            stack[-1][line[:-2]] = ""
        elif stack and line:
            raise ListSasParseError(f"line {number}: unexpected {line!r}")
    if stack or items is not None:
        raise ListSasParseError("the output ends inside a section")
    return messages


def _int(section: Mapping[str, ViciValue], key: str) -> int:
    value = section.get(key, "0")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def _str(section: Mapping[str, ViciValue], key: str) -> str:
    value = section.get(key, "")
    return value if isinstance(value, str) else ""


def _list(section: Mapping[str, ViciValue], key: str) -> tuple[str, ...]:
    value = section.get(key, [])
    return tuple(value) if isinstance(value, list) else ()


def _children(ike: Mapping[str, ViciValue]) -> Iterable[ChildSaState]:
    sas = ike.get("child-sas", {})
    if not isinstance(sas, dict):
        return
    for key, child in sas.items():
        if not isinstance(child, dict):
            continue
        yield ChildSaState(
            name=_str(child, "name") or key,
            state=_str(child, "state"),
            protocol=_str(child, "protocol"),
            encap=_str(child, "encap") == "yes",
            bytes_in=_int(child, "bytes-in"),
            bytes_out=_int(child, "bytes-out"),
            packets_in=_int(child, "packets-in"),
            packets_out=_int(child, "packets-out"),
            local_ts=_list(child, "local-ts"),
            remote_ts=_list(child, "remote-ts"),
        )


def parse_list_sas(text: str) -> dict[str, SaState]:
    """Connection name -> its SAs, from `swanctl --list-sas --pretty` output.

    Every `list-sa event` message holds one IKE SA keyed by its connection's name; IKE
    SAs of the same connection (rekeying, duplicates) are merged. A connection without
    any IKE SA is absent. (`--pretty`, not `--raw`: raw puts a whole SA on one line with
    unquoted, space-separated values, so a value with a space, e.g. a DN id, is ambiguous.)
    """
    found: dict[str, SaState] = {}
    for message, body in parse_vici_pretty(text):
        if message != "list-sa event":
            continue
        for name, ike in body.items():
            if not isinstance(ike, dict):
                continue
            before = found.get(name)
            state = _str(ike, "state")
            children = tuple(_children(ike))
            if before is None:
                found[name] = SaState(
                    name=name,
                    ike_states=(state,),
                    local_host=_str(ike, "local-host"),
                    remote_host=_str(ike, "remote-host"),
                    children=children,
                )
            else:
                found[name] = SaState(
                    name=name,
                    ike_states=(*before.ike_states, state),
                    local_host=before.local_host or _str(ike, "local-host"),
                    remote_host=before.remote_host or _str(ike, "remote-host"),
                    children=before.children + children,
                )
    return found
