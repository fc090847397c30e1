"""On-premises sites: the server's stand-ins for an on-premises network and its VPN device.

A site is an admin object of the server (`privatelink site ...`), not an ARM resource: a
name, the prefixes of the network behind it (`address_space`), the public address of its
VPN device (`gateway_ip`) and the pre-shared key its device uses, configured as one
configures an on-premises device. The data plane makes it real (a namespace with a router
and an IPsec endpoint) and peers it with the VPN gateway of every connection whose local
network gateway names its `gateway_ip`.

Rules (`validate`), each with its error code:

* name: 1-40 of `[A-Za-z0-9_-]`, starting with a letter or digit; unique without regard
  to case (`key`) — `InvalidSiteName`, `SiteAlreadyExists`;
* address space: 1-16 IPv4 prefixes (host bits zero), none overlapping another, none
  overlapping the public range, none in a range an IP network cannot route or the data
  plane uses itself (`UNROUTABLE`) — `InvalidSiteAddressSpace`; a prefix given twice
  counts once, as in a local network gateway;
* gateway IP: an IPv4 host address of the public range that public IPs are allocated
  from (`public_ip_address.range_hosts`: not the range's last two hosts, which the data
  plane's "internet" namespace holds) — `InvalidSiteGatewayIp`,
  `SiteGatewayIpOutsidePublicRange`; the store refuses one a public IP or another site
  holds (`SiteGatewayIpInUse`);
* shared key: Azure's rule for VPN pre-shared keys: 1-128 characters (the key lengths of
  `connections/sharedkey/reset`), only printable ASCII characters, except space,
  hyphen (-) and tilde (~) (the Azure VPN Gateway FAQ) — `InvalidSharedKey`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network
from typing import Any

from privatelink.core import errors
from privatelink.core.addressing import parse_prefix
from privatelink.core.limits import Limits
from privatelink.core.public_ip_address import public_range, range_hosts

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
MAX_PREFIXES = 16
SHARED_KEY_LENGTH = (1, 128)
#: Printable ASCII characters a shared key may not hold (Azure VPN Gateway FAQ).
SHARED_KEY_EXCLUDED = frozenset(" -~")
#: Ranges no site may use: "this network", loopback, link-local (the data plane's own
#: veths and gateways live there), multicast and the reserved block with broadcast.
UNROUTABLE = tuple(
    IPv4Network(p)
    for p in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")
)


@dataclass(frozen=True)
class Site:
    """A validated on-premises site; `created` is an ISO-8601 UTC time."""

    name: str
    address_space: tuple[str, ...]
    gateway_ip: str
    shared_key: str
    created: str

    @property
    def key(self) -> str:
        """The site's identity: its name without regard to case."""
        return key(self.name)


def key(name: str) -> str:
    """The store key of a site name (names are case-insensitive)."""
    return name.lower()


def check_name(name: Any) -> str:
    """`name` when it is a valid site name, else `InvalidSiteName`."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise errors.InvalidSiteName(name=str(name))
    return name


def check_address_space(name: str, prefixes: Any, limits: Limits) -> tuple[str, ...]:
    """The site's prefixes in canonical form, in the order given (each once)."""
    if isinstance(prefixes, str) or not isinstance(prefixes, Sequence):
        raise errors.InvalidSiteAddressSpace(name=name, why="give a list of IPv4 prefixes.")
    if not all(isinstance(p, str) for p in prefixes):
        raise errors.InvalidSiteAddressSpace(name=name, why="every prefix must be a string.")
    nets = list(dict.fromkeys(_parse(name, p) for p in prefixes))
    if not 1 <= len(nets) <= MAX_PREFIXES:
        raise errors.InvalidSiteAddressSpace(
            name=name, why=f"give 1 to {MAX_PREFIXES} prefixes; got {len(nets)}."
        )
    public = public_range(limits)
    for i, net in enumerate(nets):
        if net.overlaps(public):
            raise errors.InvalidSiteAddressSpace(
                name=name,
                why=f"{net} overlaps the public range {public}, where the site's VPN "
                "device and public IPs live.",
            )
        for bad in UNROUTABLE:
            if net.overlaps(bad):
                raise errors.InvalidSiteAddressSpace(
                    name=name, why=f"{net} overlaps {bad}, which a site cannot use."
                )
        for other in nets[:i]:
            if net.overlaps(other):
                raise errors.InvalidSiteAddressSpace(
                    name=name, why=f"{net} overlaps {other}; the prefixes must be disjoint."
                )
    return tuple(str(n) for n in nets)


def _parse(name: str, prefix: str) -> IPv4Network:
    try:
        return parse_prefix(prefix.strip(), f"site {name}")
    except errors.ArmError:
        raise errors.InvalidSiteAddressSpace(
            name=name,
            why=f"'{errors.clip(prefix)}' is not an IPv4 prefix (a.b.c.d/n, host bits zero).",
        ) from None


def check_gateway_ip(name: str, value: Any, limits: Limits) -> str:
    """The VPN device's address: a host of the public range a public IP could have."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        address = IPv4Address(text)
    except (AddressValueError, ValueError):
        raise errors.InvalidSiteGatewayIp(value=str(value), name=name) from None
    first, last = range_hosts(limits)
    if not first <= int(address) <= last:
        raise errors.SiteGatewayIpOutsidePublicRange(
            value=str(address),
            name=name,
            range=limits.public_ip_range,
            first=str(IPv4Address(first)),
            last=str(IPv4Address(last)),
        )
    return str(address)


def check_shared_key(name: str, value: Any) -> str:
    """A valid pre-shared key (Azure's rule; see the module docstring)."""
    low, high = SHARED_KEY_LENGTH
    if (
        not isinstance(value, str)
        or not low <= len(value) <= high
        or not all(0x21 <= ord(c) <= 0x7E and c not in SHARED_KEY_EXCLUDED for c in value)
    ):
        raise errors.InvalidSharedKey(
            f"The shared key of site '{errors.clip(name)}' is invalid: use {low} to {high} "
            "printable ASCII characters, except space, hyphen (-) and tilde (~)."
        )
    return value


def validate(
    name: Any,
    address_space: Any,
    gateway_ip: Any,
    shared_key: Any,
    limits: Limits,
    created: str = "",
) -> Site:
    """A `Site` from user input, checked in the order name, address space, gateway IP,
    shared key (the first broken rule is the error)."""
    name = check_name(name)
    return Site(
        name=name,
        address_space=check_address_space(name, address_space, limits),
        gateway_ip=check_gateway_ip(name, gateway_ip, limits),
        shared_key=check_shared_key(name, shared_key),
        created=created,
    )
