"""Virtual networks and their subnets: address spaces, prefixes, network policies."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Network

from privatelink.core import errors
from privatelink.core.addressing import MIN_SUBNET_PREFIXLEN, parse_prefix
from privatelink.core.ids import ResourceId, key, parse_ref
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    check_unique_names,
    get_typed,
    normalize_location,
    require,
)

ENABLED = "Enabled"
DISABLED = "Disabled"
POLICY_VALUES = (ENABLED, DISABLED, "NetworkSecurityGroupEnabled", "RouteTableEnabled")


TYPE = "Microsoft.Network/virtualNetworks"


@dataclass(frozen=True)
class Subnet:
    """A subnet: one IPv4 prefix and the two private-link network policies."""

    name: str
    address_prefix: str
    private_link_service_network_policies: str = ENABLED
    private_endpoint_network_policies: str = DISABLED

    def network(self) -> IPv4Network:
        """The subnet's prefix (validated when it was written)."""
        return IPv4Network(self.address_prefix)


@dataclass(frozen=True, kw_only=True)
class VirtualNetwork(Resource):
    """A virtual network."""

    address_prefixes: tuple[str, ...] = ()
    subnets: tuple[Subnet, ...] = ()

    def subnet(self, name: str) -> Subnet | None:
        """The subnet with this name (case-insensitive)."""
        return next((s for s in self.subnets if s.name.lower() == name.lower()), None)

    def subnet_id(self, name: str) -> str:
        """The ARM id of a subnet of this network."""
        return f"{self.id}/subnets/{name}"


@dataclass(frozen=True)
class SubnetRef:
    """A resolved subnet reference."""

    vnet: VirtualNetwork
    subnet: Subnet

    @property
    def id(self) -> str:
        """Canonical id of the subnet."""
        return self.vnet.subnet_id(self.subnet.name)


def resolve_subnet(view: StateView, subnet_id: str, referrer: str) -> SubnetRef:
    """Resolve a subnet reference (400 InvalidResourceReference when missing)."""
    rid = parse_ref(subnet_id, "virtualNetworks", "subnets")
    vnet = get_typed(view, str(rid.parent()), VirtualNetwork)
    subnet = vnet.subnet(rid.name) if vnet else None
    if vnet is None or subnet is None:
        raise errors.InvalidResourceReference(ref=subnet_id, id=referrer)
    return SubnetRef(vnet, subnet)


def _check_policy(value: str, field: str) -> str:
    for known in POLICY_VALUES:
        if value.lower() == known.lower():
            return known
    raise errors.InvalidRequestContent(
        f"{field} must be one of {', '.join(POLICY_VALUES)}; got '{value}'."
    )


def normalize_subnet(subnet: Subnet) -> Subnet:
    """Policy values in their canonical spelling (ARM enums are case-insensitive)."""
    return replace(
        subnet,
        private_link_service_network_policies=_check_policy(
            subnet.private_link_service_network_policies, "privateLinkServiceNetworkPolicies"
        ),
        private_endpoint_network_policies=_check_policy(
            subnet.private_endpoint_network_policies, "privateEndpointNetworkPolicies"
        ),
    )


def validate_subnet(vnet_id: str, spaces: list[IPv4Network], subnet: Subnet) -> IPv4Network:
    """Check one subnet against the network's address space."""
    net = parse_prefix(subnet.address_prefix, f"{vnet_id}/subnets/{subnet.name}")
    if net.prefixlen > MIN_SUBNET_PREFIXLEN:
        raise errors.SubnetTooSmall(prefix=subnet.address_prefix)
    if not any(net.subnet_of(space) for space in spaces):
        raise errors.SubnetOutsideAddressSpace(
            subnet=subnet.name, prefix=subnet.address_prefix, id=vnet_id
        )
    return net


def subnet_users(view: StateView, subnet_id: str) -> list[Resource]:
    """Resources that use a subnet (NICs, load balancer frontends, private endpoints)."""
    return view.referrers(key(subnet_id), "subnet")


def _check_subnet_change(view: StateView, old: VirtualNetwork, new: VirtualNetwork) -> None:
    for subnet in old.subnets:
        users = subnet_users(view, old.subnet_id(subnet.name))
        if not users:
            continue
        kept = new.subnet(subnet.name)
        if kept is None:
            raise errors.InUseSubnetCannotBeDeleted(id=old.subnet_id(subnet.name), user=users[0].id)
        if kept.network() != subnet.network():
            raise errors.InUseSubnetCannotBeUpdated(id=old.subnet_id(subnet.name), user=users[0].id)
        if kept.private_link_service_network_policies != DISABLED:
            # NAT IPs of a private link service need the policies to stay disabled.
            for user in users:
                owner = getattr(user, "managed_by", None) or ""
                if "/privatelinkservices/" in owner.lower():
                    raise errors.PrivateLinkServiceNetworkPoliciesInUse(
                        subnet=old.subnet_id(subnet.name), pls=owner
                    )


def validate_virtual_network(vnet: VirtualNetwork) -> None:
    """Address space and subnet rules of a whole network."""
    if not vnet.address_prefixes:
        raise errors.InvalidRequestContent(
            f"Virtual network {vnet.id} needs addressSpace.addressPrefixes."
        )
    spaces = [parse_prefix(p, vnet.id) for p in vnet.address_prefixes]
    for i, a in enumerate(spaces):
        for b in spaces[i + 1 :]:
            if a.overlaps(b):
                raise errors.AddressSpacesOverlap(prefix=str(a), other=str(b), id=vnet.id)
    check_unique_names(vnet.id, [s.name for s in vnet.subnets])
    nets: list[tuple[Subnet, IPv4Network]] = []
    for subnet in vnet.subnets:
        net = validate_subnet(vnet.id, spaces, subnet)
        for other, other_net in nets:
            if net.overlaps(other_net):
                raise errors.SubnetRangesOverlap(
                    subnet=subnet.name, prefix=str(net), other=other.name, id=vnet.id
                )
        nets.append((subnet, net))


def create_or_update(view: StateView, ctx: Context, desired: VirtualNetwork) -> Changes:
    """PUT a virtual network (subnets given inline replace the old set)."""
    location = normalize_location(desired.location)
    existing = get_typed(view, desired.id, VirtualNetwork)
    vnet = replace(
        desired,
        location=location,
        provisioning_state=ctx.initial_state,
        subnets=tuple(normalize_subnet(s) for s in desired.subnets),
    )
    if existing is not None:
        if existing.location != location:
            raise errors.ResourceLocationMismatch(
                id=desired.id,
                location=location,
                ref="its existing location",
                other=existing.location,
            )
        vnet = replace(vnet, id=existing.id, name=existing.name)
        # Keep the existing casing of subnet names the user did not rename.
        vnet = replace(
            vnet,
            subnets=tuple(
                replace(s, name=existing.subnet(s.name).name) if existing.subnet(s.name) else s  # type: ignore[union-attr]
                for s in vnet.subnets
            ),
        )
    validate_virtual_network(vnet)
    if existing is not None:
        _check_subnet_change(view, existing, vnet)
    changes = Changes()
    changes.put(vnet)
    return changes


def create_or_update_subnet(
    view: StateView, ctx: Context, subnet_id: str, subnet: Subnet
) -> Changes:
    """PUT one subnet of an existing network."""
    rid = ResourceId.parse(subnet_id)
    vnet = get_typed(view, str(rid.parent()), VirtualNetwork)
    if vnet is None:
        raise errors.ParentResourceNotFound(id=str(rid.parent()))
    current = vnet.subnet(rid.name)
    name = current.name if current else rid.name
    subnet = replace(subnet, name=name)
    subnets = [s for s in vnet.subnets if s.name.lower() != name.lower()]
    index = next((i for i, s in enumerate(vnet.subnets) if s.name.lower() == name.lower()), None)
    subnets.insert(index if index is not None else len(subnets), subnet)
    return create_or_update(view, ctx, replace(vnet, subnets=tuple(subnets)))


def delete_subnet(view: StateView, ctx: Context, subnet_id: str) -> Changes:
    """DELETE one subnet (refused while anything uses it)."""
    rid = ResourceId.parse(subnet_id)
    vnet = get_typed(view, str(rid.parent()), VirtualNetwork)
    if vnet is None or vnet.subnet(rid.name) is None:
        return Changes()
    users = subnet_users(view, vnet.subnet_id(rid.name))
    if users:
        raise errors.InUseSubnetCannotBeDeleted(id=subnet_id, user=users[0].id)
    subnets = tuple(s for s in vnet.subnets if s.name.lower() != rid.name.lower())
    changes = Changes()
    changes.put(replace(vnet, subnets=subnets, provisioning_state=ctx.initial_state))
    return changes


def delete(view: StateView, ctx: Context, vnet_id: str) -> Changes:
    """DELETE a virtual network (refused while any subnet is in use)."""
    vnet = get_typed(view, vnet_id, VirtualNetwork)
    changes = Changes()
    if vnet is None:
        return changes
    for subnet in vnet.subnets:
        users = subnet_users(view, vnet.subnet_id(subnet.name))
        if users:
            raise errors.InUseSubnetCannotBeDeleted(
                id=vnet.subnet_id(subnet.name), user=users[0].id
            )
    changes.delete(vnet.id)
    return changes


def get_subnet(view: StateView, subnet_id: str) -> SubnetRef:
    """GET one subnet (404 when it or its network is missing)."""
    rid = ResourceId.parse(subnet_id)
    vnet = require(view, str(rid.parent()), VirtualNetwork)
    subnet = vnet.subnet(rid.name)
    if subnet is None:
        raise errors.ResourceNotFound(id=subnet_id)
    return SubnetRef(vnet, subnet)
