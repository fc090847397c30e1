"""Network interfaces: a NIC ("VM") with IP configurations, optionally in LB pools.

A NIC that a private link service or a private endpoint creates is managed by it:
users can read it but neither change nor delete it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from privatelink.core import errors
from privatelink.core.ids import key
from privatelink.core.ip_configuration import IPV4, Allocator, IpConfiguration, is_ipv4
from privatelink.core.load_balancer import backend_network, resolve_child
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    check_unique_names,
    get_typed,
    normalize_location,
)
from privatelink.core.virtual_network import resolve_subnet
from privatelink.core.virtual_network_gateway import refuse_gateway_subnet

TYPE = "Microsoft.Network/networkInterfaces"


@dataclass(frozen=True)
class NicIpConfiguration(IpConfiguration):
    """An ip configuration of a NIC, with its load balancer pool memberships."""

    pool_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NetworkInterface(Resource):
    """A network interface. `managed_by` is the PLS or PE that owns it, if any."""

    ip_configurations: tuple[NicIpConfiguration, ...] = ()
    managed_by: str | None = None

    def config(self, name: str) -> NicIpConfiguration | None:
        """The ip configuration with this name."""
        return next((c for c in self.ip_configurations if c.name.lower() == name.lower()), None)

    @property
    def primary_ip(self) -> str | None:
        """The primary configuration's address."""
        first = next((c for c in self.ip_configurations if c.primary), None)
        return (first or self.ip_configurations[0]).private_ip if self.ip_configurations else None


def assign_addresses(
    view: StateView,
    owner_id: str,
    location: str,
    configs: tuple[NicIpConfiguration, ...],
    existing: NetworkInterface | None,
) -> tuple[NicIpConfiguration, ...]:
    """Validate configurations (one network, one primary) and give each an address."""
    check_unique_names(owner_id, [c.name for c in configs])
    if not configs:
        raise errors.NetworkInterfaceIpConfigurationInvalid(
            f"{owner_id} needs at least one ipConfiguration."
        )
    primaries = [c for c in configs if c.primary]
    if len(configs) == 1 and not primaries:
        configs = (replace(configs[0], primary=True),)
    elif len(primaries) != 1:
        raise errors.NetworkInterfaceIpConfigurationInvalid(
            f"{owner_id} must have exactly one primary ipConfiguration."
        )
    allocator = Allocator(view, owner_id)
    allocator.keep([(c, existing.config(c.name) if existing else None) for c in configs])
    result: list[NicIpConfiguration] = []
    vnet_key: str | None = None
    for config in configs:
        where = f"{owner_id}/ipConfigurations/{config.name}"
        if not is_ipv4(config.ip_version):
            raise errors.IPv6NotSupported(what=f"IP configuration {where}")
        subnet = resolve_subnet(view, config.subnet_id, where)
        refuse_gateway_subnet(subnet, where)
        if subnet.vnet.location != location:
            raise errors.ResourceLocationMismatch(
                id=owner_id, location=location, ref=subnet.vnet.id, other=subnet.vnet.location
            )
        if vnet_key is not None and subnet.vnet.key != vnet_key:
            raise errors.NetworkInterfaceIpConfigurationInvalid(
                f"All ipConfigurations of {owner_id} must be in one virtual network."
            )
        vnet_key = subnet.vnet.key
        old = existing.config(config.name) if existing else None
        previous = old.private_ip if old and key(old.subnet_id) == key(subnet.id) else None
        ip = allocator.assign(subnet, config, previous)
        pools: list[str] = []
        for pool_ref in config.pool_ids:
            lb, pool_id = resolve_child(view, pool_ref, "backendAddressPools", where)
            lb_vnet = backend_network(view, lb, exclude=owner_id)
            if lb_vnet is not None and lb_vnet != subnet.vnet.key:
                raise errors.BackendPoolVirtualNetworkMismatch(id=where, pool=pool_id)
            pools.append(pool_id)
        result.append(
            replace(
                config,
                subnet_id=subnet.id,
                private_ip=ip,
                ip_version=IPV4,
                pool_ids=tuple(pools),
                primary=bool(config.primary),
            )
        )
    return tuple(result)


def create_or_update(view: StateView, ctx: Context, desired: NetworkInterface) -> Changes:
    """PUT a user NIC."""
    existing = get_typed(view, desired.id, NetworkInterface)
    location = normalize_location(desired.location)
    if existing is not None:
        if existing.managed_by:
            raise errors.ManagedNetworkInterfaceIsReadOnly(
                id=existing.id, owner=existing.managed_by
            )
        if existing.location != location:
            raise errors.ResourceLocationMismatch(
                id=existing.id,
                location=location,
                ref="its existing location",
                other=existing.location,
            )
        desired = replace(desired, id=existing.id, name=existing.name)
    configs = assign_addresses(view, desired.id, location, desired.ip_configurations, existing)
    nic = replace(
        desired,
        location=location,
        ip_configurations=configs,
        managed_by=None,
        provisioning_state=ctx.initial_state,
    )
    changes = Changes()
    changes.put(nic)
    return changes


def delete(view: StateView, ctx: Context, nic_id: str) -> Changes:
    """DELETE a user NIC (managed NICs go with their owner)."""
    nic = get_typed(view, nic_id, NetworkInterface)
    changes = Changes()
    if nic is None:
        return changes
    if nic.managed_by:
        raise errors.ManagedNetworkInterfaceIsReadOnly(id=nic.id, owner=nic.managed_by)
    changes.delete(nic.id)
    return changes


def managed_nic(
    view: StateView,
    owner: Resource,
    nic_id: str,
    configs: tuple[NicIpConfiguration, ...],
    existing: NetworkInterface | None,
) -> NetworkInterface:
    """The NIC a PLS or PE owns, with addresses assigned."""
    assigned = assign_addresses(view, nic_id, owner.location, configs, existing)
    return NetworkInterface(
        id=nic_id,
        name=nic_id.rsplit("/", 1)[-1],
        location=owner.location,
        ip_configurations=assigned,
        managed_by=owner.id,
        provisioning_state=owner.provisioning_state,
    )


def references(nic: NetworkInterface) -> list[tuple[str, str]]:
    """Index entries: subnets and pools of its configurations, and its owner if managed."""
    refs: list[tuple[str, str]] = []
    for config in nic.ip_configurations:
        refs.append(("subnet", key(config.subnet_id)))
        refs.extend(("pool", key(p)) for p in config.pool_ids)
    if nic.managed_by:
        refs.append(("owner", key(nic.managed_by)))
    return refs


def ip_usages(nic: NetworkInterface) -> list[tuple[str, str]]:
    """Addresses held: (subnet key, ip) of each configuration (NAT and endpoint IPs too)."""
    return [(key(c.subnet_id), c.private_ip) for c in nic.ip_configurations if c.private_ip]
