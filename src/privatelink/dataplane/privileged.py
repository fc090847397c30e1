"""Everything that needs root: namespaces, links, addresses, routes, nft, conntrack.

The one module of privatelink that changes the kernel or runs programs. Kernel errors
(errno) become typed exceptions here; a namespace that vanished mid-operation is
reported as `NetnsNotFound` so the next sync can repair.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class KernelError(Exception):
    """A kernel operation failed; `message` says what and where."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NetnsNotFound(KernelError):
    """The namespace does not exist (any more)."""


class InterfaceNotFound(KernelError):
    """An interface is missing in a namespace."""


class NftApplyFailed(KernelError):
    """nft refused a transaction (nothing of it was applied)."""


class CommandFailed(KernelError):
    """A helper program (conntrack, ip) failed."""


def _pyroute2() -> Any:
    import pyroute2

    return pyroute2


def _wrap(exc: Exception, what: str, netns: str) -> KernelError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if code == errno.ENODEV:
        return InterfaceNotFound(f"{what} in {netns}: no such interface")
    return KernelError(f"{what} in {netns}: {exc}")


# --- namespaces -------------------------------------------------------------------------


def list_netns() -> list[str]:
    """Names of all named network namespaces."""
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def create_netns(name: str) -> None:
    """Create a named namespace (no error if it exists)."""
    if name in list_netns():
        return
    try:
        _pyroute2().netns.create(name)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise KernelError(f"create namespace {name}: {exc}") from exc


def delete_netns(name: str) -> None:
    """Delete a named namespace (no error if already gone)."""
    try:
        _pyroute2().netns.remove(name)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise KernelError(f"delete namespace {name}: {exc}") from exc


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread that has entered namespace `name`.

    setns(2) changes only the calling thread, so the rest of the process stays put.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _pyroute2().netns.setns(name, flags=0)
        except OSError as exc:
            failure.append(NetnsNotFound(f"enter namespace {name}: {exc}"))
            return
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def socket_in_netns(name: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in namespace `name` (sockets keep their namespace)."""
    return in_netns(name, lambda: socket.socket(socket.AF_INET, kind))


IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux value; Python 3.11 lacks the name


def netns_inode(name: str) -> int | None:
    """The inode of a named namespace (it changes when the namespace is recreated), or None."""
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def server_sockets_in_netns(
    name: str, address: str, port: int
) -> tuple[socket.socket, socket.socket, int]:
    """A UDP socket and a listening TCP socket on address:port inside namespace `name`,
    with the inode of the namespace they live in (compare with `netns_inode`).

    IP_FREEBIND lets the bind succeed before the address is on an interface (a new hub
    gets its addresses later in the same sync); packets arrive once it is.
    """

    def make() -> tuple[socket.socket, socket.socket, int]:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            for sock in (udp, tcp):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
                sock.setblocking(False)
                sock.bind((address, port))
            tcp.listen(128)
            inode = os.stat("/proc/thread-self/ns/net").st_ino
        except OSError as exc:
            udp.close()
            tcp.close()
            raise KernelError(f"listen on {address}:{port} in {name}: {exc}") from exc
        return udp, tcp, inode

    return in_netns(name, make)


# --- files a namespace sees (`ip netns exec` bind-mounts /etc/netns/<name>/* over /etc) ---

NETNS_ETC = "/etc/netns"


def list_netns_etc() -> list[str]:
    """Names of the namespaces that have an /etc/netns directory."""
    try:
        return sorted(os.listdir(NETNS_ETC))
    except FileNotFoundError:
        return []


def _etc_dir(name: str) -> str:
    # rmtree on a path built from a name: refuse anything but one plain path component.
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid namespace name {name!r}")
    return os.path.join(NETNS_ETC, name)


def write_netns_etc(name: str, filename: str, text: str) -> None:
    """Make /etc/netns/<name>/<filename> hold `text` (unchanged files are not rewritten)."""
    directory = _etc_dir(name)
    if not filename or "/" in filename or filename in (".", ".."):
        raise ValueError(f"invalid file name {filename!r}")
    path = os.path.join(directory, filename)
    try:
        with open(path) as handle:
            if handle.read() == text:
                return
    except OSError:
        pass
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # never a half-written file for a process starting now
    except OSError as exc:
        raise KernelError(f"write {path}: {exc}") from exc


def remove_netns_etc(name: str) -> None:
    """Remove /etc/netns/<name> (no error if already gone)."""
    directory = _etc_dir(name)
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KernelError(f"remove {directory}: {exc}") from exc


def write_sysctls(name: str, values: dict[str, str]) -> None:
    """Write /proc/sys entries inside a namespace (per-namespace network sysctls)."""

    def write() -> None:
        for path, value in values.items():
            full = "/proc/sys/" + path.replace(".", "/")
            try:
                with open(full, "w") as handle:
                    handle.write(value)
            except FileNotFoundError:
                continue  # e.g. conntrack sysctls before the module is loaded

    in_netns(name, write)


# --- links, addresses, routes ------------------------------------------------------------

MAIN_TABLE = 254
LOCAL_TABLE = 255


@dataclass(frozen=True)
class Link:
    """An interface as seen in a namespace."""

    name: str
    index: int
    up: bool
    addresses: tuple[str, ...]  # "a.b.c.d/len"


class Netlink:
    """Link, address and route operations in one namespace (pyroute2)."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        try:
            self._ns = _pyroute2().NetNS(netns)
        except OSError as exc:
            raise NetnsNotFound(f"open namespace {netns}: {exc}") from exc

    def close(self) -> None:
        """Release the netlink socket."""
        self._ns.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def links(self) -> dict[str, Link]:
        """All interfaces with their IPv4 addresses."""
        try:
            addrs: dict[int, list[str]] = {}
            for a in self._ns.get_addr(family=socket.AF_INET):
                addrs.setdefault(a["index"], []).append(
                    f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                )
            out = {}
            for link in self._ns.get_links():
                name = link.get_attr("IFLA_IFNAME")
                out[name] = Link(
                    name=name,
                    index=link["index"],
                    up=bool(link["flags"] & 1),
                    addresses=tuple(sorted(addrs.get(link["index"], []))),
                )
            return out
        except Exception as exc:
            raise _wrap(exc, "list links", self.netns) from exc

    def link(self, name: str) -> Link | None:
        """One interface by name, without its addresses (cheap at any link count)."""
        try:
            # link("get") asks the kernel for one interface; get_links(ifname=) and
            # get_addr(index=) dump everything and filter, O(n) per call.
            found = self._ns.link("get", ifname=name)
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ENODEV, errno.ENOENT):
                return None
            raise _wrap(exc, f"get {name}", self.netns) from exc
        if not found:
            return None
        msg = found[0]
        return Link(name=name, index=msg["index"], up=bool(msg["flags"] & 1), addresses=())

    def add_address(self, name: str, address: str) -> None:
        """Add "ip/len" to an interface; already there is fine."""
        try:
            ip, plen = address.split("/")
            self._ns.addr("add", index=self._index(name), address=ip, prefixlen=int(plen))
        except KernelError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return
            raise _wrap(exc, f"add {address} to {name}", self.netns) from exc

    def add_veth(self, name: str, peer: str, peer_netns: str) -> None:
        """A veth pair: `name` here, `peer` in `peer_netns` (never in the root namespace)."""
        try:
            self._ns.link(
                "add", ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": peer_netns}
            )
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return
            raise _wrap(exc, f"add veth {name}/{peer}", self.netns) from exc

    def delete_link(self, name: str) -> None:
        """Delete an interface (no error if already gone)."""
        try:
            idx = self._ns.link_lookup(ifname=name)
            if idx:
                self._ns.link("del", index=idx[0])
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ENODEV, errno.ENOENT):
                return
            raise _wrap(exc, f"delete {name}", self.netns) from exc

    def _index(self, name: str) -> int:
        idx = self._ns.link_lookup(ifname=name)
        if not idx:
            raise InterfaceNotFound(f"{name} not found in {self.netns}")
        return int(idx[0])

    def set_up(self, name: str) -> None:
        """Bring an interface up."""
        try:
            self._ns.link("set", index=self._index(name), state="up")
        except KernelError:
            raise
        except Exception as exc:
            raise _wrap(exc, f"set {name} up", self.netns) from exc

    def set_addresses(self, name: str, wanted: list[str], current: tuple[str, ...]) -> None:
        """Make an interface hold exactly `wanted` ("ip/len") addresses."""
        try:
            idx = self._index(name)
            for addr in current:
                if addr not in wanted:
                    ip, plen = addr.split("/")
                    self._ns.addr("del", index=idx, address=ip, prefixlen=int(plen))
            for addr in wanted:
                if addr not in current:
                    ip, plen = addr.split("/")
                    self._ns.addr("add", index=idx, address=ip, prefixlen=int(plen))
        except KernelError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return
            raise _wrap(exc, f"set addresses of {name}", self.netns) from exc

    def routes(self, table: int = MAIN_TABLE) -> dict[str, tuple[int, str | None]]:
        """IPv4 routes of a table: "dst/len" -> (out interface index, gateway)."""
        try:
            out = {}
            for r in self._ns.get_routes(family=socket.AF_INET, table=table):
                dst = r.get_attr("RTA_DST") or "0.0.0.0"
                out[f"{dst}/{r['dst_len']}"] = (r.get_attr("RTA_OIF"), r.get_attr("RTA_GATEWAY"))
            return out
        except Exception as exc:
            raise _wrap(exc, "list routes", self.netns) from exc

    def replace_route(
        self, dst: str, ifname: str, gateway: str | None = None, table: int = MAIN_TABLE
    ) -> None:
        """Install (or replace) a route; with a gateway it is marked on-link."""
        try:
            kwargs: dict[str, Any] = {"dst": dst, "oif": self._index(ifname), "table": table}
            if gateway:
                kwargs.update(gateway=gateway, flags=4)  # RTNH_F_ONLINK
            else:
                kwargs.update(scope=253)  # link scope
            self._ns.route("replace", **kwargs)
        except KernelError:
            raise
        except Exception as exc:
            raise _wrap(exc, f"route {dst} via {ifname}", self.netns) from exc

    def delete_route(self, dst: str, table: int = MAIN_TABLE) -> None:
        """Remove a route (no error if absent)."""
        try:
            self._ns.route("del", dst=dst, table=table)
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ESRCH, errno.ENOENT):
                return
            raise _wrap(exc, f"delete route {dst}", self.netns) from exc

    def ensure_table_before_local(self, table: int, pref: int, local_pref: int) -> None:
        """Policy rules: `pref: lookup table`, then `local_pref: lookup local`, nothing
        else for `local` (the kernel's own rule 0 is removed). Idempotent."""
        try:
            rules = {
                (r.get_attr("FRA_PRIORITY") or 0, r.get_attr("FRA_TABLE") or r["table"])
                for r in self._ns.get_rules(family=socket.AF_INET)
            }
            # Add before removing: a packet never finds no rule for `local`.
            if (local_pref, LOCAL_TABLE) not in rules:
                self._ns.rule("add", table=LOCAL_TABLE, priority=local_pref)
            if (pref, table) not in rules:
                self._ns.rule("add", table=table, priority=pref)
            for prio, tab in rules:
                if tab == LOCAL_TABLE and prio != local_pref:
                    self._ns.rule("del", table=LOCAL_TABLE, priority=prio)
        except Exception as exc:
            raise _wrap(exc, f"policy rules for table {table}", self.netns) from exc


# --- nftables and conntrack --------------------------------------------------------------


def apply_nft(netns: str, ruleset: str) -> None:
    """Apply a ruleset as one atomic transaction inside a namespace (libnftables)."""

    def run() -> tuple[int, str]:
        import nftables

        nft = nftables.Nftables()
        rc, _out, err = nft.cmd(ruleset)
        return rc, err

    rc, err = in_netns(netns, run)
    if rc != 0:
        raise NftApplyFailed(f"nft transaction in {netns} failed: {err.strip()[:2000]}")


def list_nft(netns: str, table: str) -> str:
    """The text of a table in a namespace ('' when absent)."""

    def run() -> str:
        import nftables

        nft = nftables.Nftables()
        rc, out, _err = nft.cmd(f"list table ip {table}")
        return str(out) if rc == 0 else ""

    return in_netns(netns, run)


def conntrack_delete_mark(netns: str, mark: int) -> None:
    """Delete a namespace's conntrack entries with a mark (none found is fine)."""
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, "conntrack", "-D", "--mark", str(mark)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandFailed(f"conntrack -D in {netns}: {exc}") from exc
    if proc.returncode not in (0, 1) and shutil.which("conntrack") is None:
        raise CommandFailed("conntrack is not installed (make deps-system installs it)")
    # conntrack exits 1 with "0 flow entries have been deleted" when nothing matched.
    if proc.returncode not in (0, 1):
        raise CommandFailed(f"conntrack -D --mark {mark} in {netns}: {proc.stderr.strip()}")


def exec_in_netns(netns: str, argv: list[str]) -> None:
    """Replace this process with `argv` running inside a namespace (`ip netns exec`)."""
    if netns not in list_netns():
        raise NetnsNotFound(f"namespace {netns} does not exist; is `privatelink serve` running?")
    os.execvp("ip", ["ip", "netns", "exec", netns, *argv])


def run_in_netns(
    netns: str, argv: list[str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run a program inside a namespace and capture its output."""
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
