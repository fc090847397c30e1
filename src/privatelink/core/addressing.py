"""IPv4 address management for subnets: prefixes, reserved addresses, allocation.

Azure reserves the first four addresses of every subnet (network, gateway, two DNS)
and the last one (broadcast); dynamic allocation hands out the lowest free address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network

from privatelink.core import errors

MIN_SUBNET_PREFIXLEN = 29  # Azure's smallest subnet
RESERVED_AT_START = 4


def parse_prefix(prefix: str, owner: str) -> IPv4Network:
    """Parse an IPv4 CIDR prefix (host bits must be zero); raise an ARM error otherwise."""
    try:
        net = ipaddress.ip_network(prefix, strict=True)
    except ValueError as exc:
        raise errors.InvalidAddressPrefix(prefix=prefix, id=owner) from exc
    if net.version != 4 or not isinstance(net, IPv4Network):
        raise errors.IPv6NotSupported(what=f"Address prefix {prefix} of {owner}")
    if "/" not in prefix:
        raise errors.InvalidAddressPrefix(prefix=prefix, id=owner)
    return net


def parse_address(value: str) -> IPv4Address:
    """Parse an IPv4 address; IPv6 and garbage raise ARM errors."""
    try:
        addr = ipaddress.ip_address(value)
    except ValueError as exc:
        raise errors.InvalidPrivateIPAddress(ip=value) from exc
    if not isinstance(addr, IPv4Address):
        raise errors.IPv6NotSupported(what=f"Address {value}")
    return addr


def is_reserved(ip: IPv4Address, subnet: IPv4Network) -> bool:
    """True for the addresses Azure keeps for itself in a subnet."""
    offset = int(ip) - int(subnet.network_address)
    return offset < RESERVED_AT_START or ip == subnet.broadcast_address


def usable_count(subnet: IPv4Network) -> int:
    """How many addresses of the subnet can be allocated."""
    return max(0, subnet.num_addresses - RESERVED_AT_START - 1)


def allocate(subnet: IPv4Network, used: Mapping[str, str], subnet_id: str) -> str:
    """The lowest free, non-reserved address of `subnet` not in `used` (ip -> owner)."""
    first = int(subnet.network_address) + RESERVED_AT_START
    last = int(subnet.broadcast_address) - 1
    for value in range(first, last + 1):
        candidate = str(IPv4Address(value))
        if candidate not in used:
            return candidate
    raise errors.SubnetIsFull(subnet=subnet_id)


def check_static(
    ip: str, subnet: IPv4Network, used: Mapping[str, str], subnet_id: str, owner: str
) -> str:
    """Validate a static address for `owner`: inside, not reserved, free (or already owner's)."""
    addr = parse_address(ip)
    if addr not in subnet:
        raise errors.PrivateIPAddressNotInSubnet(ip=ip, subnet=subnet_id)
    if is_reserved(addr, subnet):
        raise errors.PrivateIPAddressInReservedRange(ip=ip, subnet=subnet_id)
    holder = used.get(str(addr))
    if holder is not None and holder.lower() != owner.lower():
        raise errors.PrivateIPAddressIsAllocated(ip=ip, subnet=subnet_id, owner=holder)
    return str(addr)
