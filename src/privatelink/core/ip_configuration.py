"""Private IP assignment for everything that takes an address from a subnet.

Load balancer frontends, NIC ip configurations and private link service NAT IPs all
go through one `Allocator`, so two requests-worth of addresses never collide even
inside one PUT (two dynamic frontends in one subnet get two addresses).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from privatelink.core import errors
from privatelink.core.addressing import allocate, check_static
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
    """Hands out addresses for one resource's configurations within one request."""

    def __init__(self, view: StateView, owner_id: str) -> None:
        self._view = view
        self._owner = owner_id
        self._taken: dict[str, dict[str, str]] = {}

    def _used(self, subnet_id: str) -> dict[str, str]:
        k = key(subnet_id)
        if k not in self._taken:
            self._taken[k] = dict(self._view.used_ips(subnet_id))
        return self._taken[k]

    def _holder(self, name: str) -> str:
        return f"{self._owner} ({name})"

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
                self._used(old.subnet_id)[old.private_ip] = self._holder(config.name)

    def assign(self, subnet: SubnetRef, config: IpConfiguration, previous: str | None) -> str:
        """The address for `config`; `previous` is what the same config had before."""
        used = self._used(subnet.id)
        where = f"{self._owner}/{config.name}"
        net = subnet.subnet.network()
        if config.allocation == STATIC:
            if not config.private_ip:
                raise errors.PrivateIPAddressRequired(id=where)
            ip = check_static(config.private_ip, net, used, subnet.id, self._owner)
        elif previous and used.get(previous, self._owner).lower() in (
            self._owner.lower(),
            self._holder(config.name).lower(),
        ):
            # A dynamic address stays put across updates while its subnet is unchanged.
            ip = previous if IPv4Address(previous) in net else allocate(net, used, subnet.id)
        else:
            ip = allocate(net, used, subnet.id)
        used[ip] = self._holder(config.name)
        return ip


def is_ipv4(version: str) -> bool:
    """privateIPAddressVersion is IPv4 (ARM enums are case-insensitive)."""
    return version.lower() == IPV4.lower()
