"""Private IP assignment for everything that takes an address from a subnet.

Load balancer frontends, NIC ip configurations and private link service NAT IPs all
go through one `Allocator`, so two requests-worth of addresses never collide even
inside one PUT (two dynamic frontends in one subnet get two addresses).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from privatelink.core import errors
from privatelink.core.addressing import RESERVED_AT_START, check_static, parse_address
from privatelink.core.ids import key
from privatelink.core.resource import StateView
from privatelink.core.virtual_network import SubnetRef

DYNAMIC = "Dynamic"
STATIC = "Static"
IPV4 = "IPv4"


@dataclass(frozen=True)
class IpConfiguration:
    """One private IP in a subnet (shared shape of NIC, NAT and frontend configurations)."""

    name: str
    subnet_id: str
    private_ip: str | None = None
    allocation: str = DYNAMIC
    ip_version: str = IPV4
    primary: bool | None = None


def check_allocation_method(value: str, where: str) -> str:
    """Normalise privateIPAllocationMethod ('dynamic' -> 'Dynamic')."""
    for known in (DYNAMIC, STATIC):
        if value.lower() == known.lower():
            return known
    raise errors.InvalidRequestContent(
        f"{where}: privateIPAllocationMethod must be Dynamic or Static; got '{value}'."
    )


class Allocator:
    """Hands out addresses for one resource's configurations within one request.

    Reads only what it needs: the holder of one address (static, or kept) and the lowest
    free address (dynamic), both indexed lookups in the store, never every address of a
    subnet. Addresses given or kept in this request are remembered here (`_claimed`),
    since the store sees them only when the request's changes are applied.
    """

    def __init__(self, view: StateView, owner_id: str) -> None:
        self._view = view
        self._owner = owner_id
        self._claims: dict[str, dict[str, str]] = {}

    def _claimed(self, subnet_id: str) -> dict[str, str]:
        """ip -> holder of the addresses claimed in this request in a subnet."""
        return self._claims.setdefault(key(subnet_id), {})

    def _holders(self, subnet_id: str, ip: str) -> dict[str, str]:
        """{ip: its holder} if anything holds `ip` (this request's claims first), else {}."""
        claimed = self._claimed(subnet_id)
        if ip in claimed:
            return {ip: claimed[ip]}
        return self._view.ip_holders(subnet_id, [ip])

    def _lowest_free(self, subnet_id: str, net: IPv4Network) -> str:
        """The lowest free, non-reserved address (what `addressing.allocate` gives over
        every held address and this request's claims)."""
        claimed = self._claimed(subnet_id)
        first = int(net.network_address) + RESERVED_AT_START
        last = int(net.broadcast_address) - 1
        # Each claimed candidate is skipped by asking again above it: at most one more
        # question per claim.
        for _ in range(len(claimed) + 1):
            found = self._view.lowest_free_ip(subnet_id, first, last)
            if found is None:
                break
            candidate = str(IPv4Address(found))
            if candidate not in claimed:
                return candidate
            first = found + 1
        raise errors.SubnetIsFull(subnet=subnet_id)

    def _holder(self, name: str) -> str:
        return f"{self._owner} ({name})"

    def _held_by_me(self, subnet_id: str, ip: str, name: str) -> bool:
        """`ip` is free, or held by this resource or (in this request) by config `name`."""
        holder = self._holders(subnet_id, ip).get(ip, self._owner)
        return holder.lower() in (self._owner.lower(), self._holder(name).lower())

    def keep(self, pairs: list[tuple[IpConfiguration, IpConfiguration | None]]) -> None:
        """Reserve, before any assignment, the addresses that kept dynamic configs hold.

        `pairs` are (desired config, the same-named config before the update). Without
        this, a new static config listed first could take a kept config's address.
        """
        for config, old in pairs:
            if (
                old is not None
                and old.private_ip
                and config.allocation == DYNAMIC
                and key(old.subnet_id) == key(config.subnet_id)
            ):
                self._claimed(old.subnet_id)[old.private_ip] = self._holder(config.name)

    def assign(self, subnet: SubnetRef, config: IpConfiguration, previous: str | None) -> str:
        """The address for `config`; `previous` is what the same config had before."""
        where = f"{self._owner}/{config.name}"
        net = subnet.subnet.network()
        if config.allocation == STATIC:
            if not config.private_ip:
                raise errors.PrivateIPAddressRequired(id=where)
            wanted = str(parse_address(config.private_ip))  # check_static's own first step
            held = self._holders(subnet.id, wanted)
            ip = check_static(config.private_ip, net, held, subnet.id, self._owner)
        elif previous and self._held_by_me(subnet.id, previous, config.name):
            # A dynamic address stays put across updates while its subnet is unchanged.
            ip = previous if IPv4Address(previous) in net else self._lowest_free(subnet.id, net)
        else:
            ip = self._lowest_free(subnet.id, net)
        self._claimed(subnet.id)[ip] = self._holder(config.name)
        return ip


def is_ipv4(version: str) -> bool:
    """privateIPAddressVersion is IPv4 (ARM enums are case-insensitive)."""
    return version.lower() == IPV4.lower()
