"""Virtual networks and their subnets: address spaces, prefixes, network policies, limits.

A PUT is a `Staged` workflow: what the body alone decides (prefix syntax and sizes,
overlaps, names, Azure's count limits) is checked before the store's write lock, in
O(N log N) for N subnets; what needs stored state (the location, the casing of kept
names, the subnets other resources use) runs under the lock in O(N), with one query
for the users of all subnets. A one-subnet PUT checks only that subnet against the
stored others, in O(N).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Network
from itertools import pairwise

from privatelink.core import errors
from privatelink.core.addressing import MIN_SUBNET_PREFIXLEN, parse_prefix
from privatelink.core.ids import ResourceId, key, parse_ref
from privatelink.core.limits import Limits
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    Staged,
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
    if value in POLICY_VALUES:
        return value
    for known in POLICY_VALUES:
        if value.lower() == known.lower():
            return known
    raise errors.InvalidRequestContent(
        f"{field} must be one of {', '.join(POLICY_VALUES)}; got '{value}'."
    )


def normalize_subnet(subnet: Subnet) -> Subnet:
    """Policy values in their canonical spelling (ARM enums are case-insensitive)."""
    pls = _check_policy(
        subnet.private_link_service_network_policies, "privateLinkServiceNetworkPolicies"
    )
    pe = _check_policy(subnet.private_endpoint_network_policies, "privateEndpointNetworkPolicies")
    if (pls, pe) == (
        subnet.private_link_service_network_policies,
        subnet.private_endpoint_network_policies,
    ):
        return subnet  # already canonical (the usual case): no copy
    return replace(
        subnet, private_link_service_network_policies=pls, private_endpoint_network_policies=pe
    )


# --- overlaps in O(N log N) -----------------------------------------------------------------

Span = tuple[int, int]  # first and last address of a prefix, as integers


def span(net: IPv4Network) -> Span:
    """The first and last address of a network, as integers."""
    first = int(net.network_address)
    return first, first + (1 << (32 - net.prefixlen)) - 1


def stored_span(prefix: str) -> Span:
    """`span` of a prefix that was validated when it was written (fast for a.b.c.d/n)."""
    address, _, length = prefix.partition("/")
    if not (length.isascii() and length.isdigit()):
        # parse_prefix also takes a netmask or hostmask after the slash: the slow way.
        return span(IPv4Network(prefix))
    a, b, c, d = (int(part) for part in address.split("."))
    first = (a << 24) | (b << 16) | (c << 8) | d
    return first, first + (1 << (32 - int(length))) - 1


def first_overlap(spans: Sequence[Span]) -> tuple[int, int] | None:
    """Indices (i, j), i < j, of two overlapping ranges, or None; O(N log N).

    Sorted by first address, if any two ranges overlap then two neighbours do: when the
    k-th and a later one overlap, the (k+1)-th starts between their starts, so inside
    the k-th. One sort, then one pass over neighbours. Any pair reported does overlap.
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    for i, j in pairwise(order):
        if spans[j][0] <= spans[i][1]:
            return (min(i, j), max(i, j))
    return None


class _Spaces:
    """A network's address prefixes, sorted, for "is this subnet inside?" in O(log P).

    The prefixes must not overlap (checked first): then the only one that can hold a
    subnet is the last one starting at or before the subnet's first address.
    """

    def __init__(self, spaces: Sequence[IPv4Network]) -> None:
        ordered = sorted(span(s) for s in spaces)
        self._firsts = [first for first, _ in ordered]
        self._lasts = [last for _, last in ordered]

    def holds(self, sub: Span) -> bool:
        """True when one prefix contains the whole range `sub`."""
        i = bisect_right(self._firsts, sub[0]) - 1
        return i >= 0 and sub[1] <= self._lasts[i]


def _subnet_prefix(vnet_id: str, subnet: Subnet) -> IPv4Network:
    net = parse_prefix(subnet.address_prefix, f"{vnet_id}/subnets/{subnet.name}")
    if net.prefixlen > MIN_SUBNET_PREFIXLEN:
        raise errors.SubnetTooSmall(prefix=subnet.address_prefix)
    return net


def _check_inside(vnet_id: str, subnet: Subnet, sub: Span, spaces: _Spaces) -> None:
    if not spaces.holds(sub):
        raise errors.SubnetOutsideAddressSpace(
            subnet=subnet.name, prefix=subnet.address_prefix, id=vnet_id
        )


def _check_counts(vnet: VirtualNetwork, limits: Limits) -> None:
    if len(vnet.address_prefixes) > limits.address_prefixes_per_vnet:
        raise errors.AddressPrefixesPerVirtualNetworkLimitReached(
            id=vnet.id, count=len(vnet.address_prefixes), limit=limits.address_prefixes_per_vnet
        )
    if len(vnet.subnets) > limits.subnets_per_vnet:
        raise errors.SubnetsPerVirtualNetworkLimitReached(
            id=vnet.id, count=len(vnet.subnets), limit=limits.subnets_per_vnet
        )


def validate_virtual_network(vnet: VirtualNetwork, limits: Limits | None = None) -> None:
    """Address space and subnet rules of a whole network, from the network alone.

    Azure's count limits first (nothing is parsed past them), then every prefix; overlaps
    of address prefixes and of subnets are found by sorting (`first_overlap`), so a
    network of N subnets and P prefixes costs O((N + P) log(N + P)).
    """
    limits = limits or Limits()
    if not vnet.address_prefixes:
        raise errors.InvalidRequestContent(
            f"Virtual network {vnet.id} needs addressSpace.addressPrefixes."
        )
    _check_counts(vnet, limits)
    spaces = [parse_prefix(p, vnet.id) for p in vnet.address_prefixes]
    clash = first_overlap([span(s) for s in spaces])
    if clash is not None:
        a, b = spaces[clash[0]], spaces[clash[1]]
        raise errors.AddressSpacesOverlap(prefix=str(a), other=str(b), id=vnet.id)
    check_unique_names(vnet.id, [s.name for s in vnet.subnets])
    inside = _Spaces(spaces)
    spans: list[Span] = []
    for subnet in vnet.subnets:
        sub = span(_subnet_prefix(vnet.id, subnet))
        _check_inside(vnet.id, subnet, sub, inside)
        spans.append(sub)
    clash = first_overlap(spans)
    if clash is not None:
        earlier, later = vnet.subnets[clash[0]], vnet.subnets[clash[1]]
        raise errors.SubnetRangesOverlap(
            subnet=later.name, prefix=later.address_prefix, other=earlier.name, id=vnet.id
        )


# --- who uses a subnet ----------------------------------------------------------------------


def subnet_users(view: StateView, subnet_id: str) -> list[Resource]:
    """Resources that use a subnet (NICs, load balancer frontends, private endpoints)."""
    return view.referrers(key(subnet_id), "subnet")


def users_by_subnet(view: StateView, vnet: VirtualNetwork) -> dict[str, list[Resource]]:
    """`subnet_users` of every subnet of a network, in one query: subnet key -> users."""
    return view.referrers_within(vnet.id, "subnet")


def _check_kept(
    old: VirtualNetwork, subnet: Subnet, kept: Subnet | None, users: list[Resource]
) -> None:
    """What may happen to a subnet in use: it stays, with its prefix; PLS NAT IPs in it
    keep its private link service network policies disabled."""
    sid = old.subnet_id(subnet.name)
    if kept is None:
        raise errors.InUseSubnetCannotBeDeleted(id=sid, user=users[0].id)
    if stored_span(kept.address_prefix) != stored_span(subnet.address_prefix):
        raise errors.InUseSubnetCannotBeUpdated(id=sid, user=users[0].id)
    if kept.private_link_service_network_policies != DISABLED:
        # NAT IPs of a private link service need the policies to stay disabled.
        for user in users:
            owner = getattr(user, "managed_by", None) or ""
            if "/privatelinkservices/" in owner.lower():
                raise errors.PrivateLinkServiceNetworkPoliciesInUse(subnet=sid, pls=owner)


def _check_subnet_change(view: StateView, old: VirtualNetwork, new: VirtualNetwork) -> None:
    """Subnets in use survive a PUT of their network: O(N) and one query."""
    in_use = users_by_subnet(view, old)
    if not in_use:
        return
    kept = {s.name.lower(): s for s in new.subnets}
    for subnet in old.subnets:
        users = in_use.get(key(old.subnet_id(subnet.name)))
        if users:
            _check_kept(old, subnet, kept.get(subnet.name.lower()), users)


# --- PUT of a whole network -----------------------------------------------------------------


def check_network(ctx: Context, desired: VirtualNetwork) -> tuple[VirtualNetwork]:
    """The body alone (no state): location, policy spellings, every address rule, limits."""
    vnet = replace(
        desired,
        location=normalize_location(desired.location),
        provisioning_state=ctx.initial_state,
        subnets=tuple(normalize_subnet(s) for s in desired.subnets),
    )
    validate_virtual_network(vnet, ctx.limits)
    return (vnet,)


def put_network(view: StateView, ctx: Context, vnet: VirtualNetwork) -> Changes:
    """The stored state's part of a PUT of `check_network`'s result: O(N), one query."""
    existing = get_typed(view, vnet.id, VirtualNetwork)
    if existing is not None:
        if existing.location != vnet.location:
            raise errors.ResourceLocationMismatch(
                id=vnet.id,
                location=vnet.location,
                ref="its existing location",
                other=existing.location,
            )
        # Keep the existing casing of subnet names the user did not rename.
        names = {s.name.lower(): s.name for s in existing.subnets}
        vnet = replace(
            vnet,
            id=existing.id,
            name=existing.name,
            subnets=tuple(
                replace(s, name=names[s.name.lower()])
                if names.get(s.name.lower(), s.name) != s.name
                else s
                for s in vnet.subnets
            ),
        )
        _check_subnet_change(view, existing, vnet)
    changes = Changes()
    changes.put(vnet)
    return changes


#: PUT a virtual network (subnets given inline replace the old set).
create_or_update = Staged(check=check_network, run=put_network)


# --- PUT of one subnet ----------------------------------------------------------------------


def check_subnet(ctx: Context, subnet_id: str, subnet: Subnet) -> tuple[str, Subnet]:
    """One subnet's body alone: its name, policy spellings, prefix syntax and size."""
    rid = ResourceId.parse(subnet_id)
    check_unique_names(str(rid.parent()), [rid.name])
    subnet = normalize_subnet(replace(subnet, name=rid.name))
    _subnet_prefix(str(rid.parent()), subnet)
    return subnet_id, subnet


def put_subnet(view: StateView, ctx: Context, subnet_id: str, subnet: Subnet) -> Changes:
    """Add or replace one subnet of a stored network: O(N) for N subnets, one query.

    The other subnets were valid when stored, so only the new one is checked against
    them, the address space and the subnet limit.
    """
    rid = ResourceId.parse(subnet_id)
    vnet = get_typed(view, str(rid.parent()), VirtualNetwork)
    if vnet is None:
        raise errors.ParentResourceNotFound(id=str(rid.parent()))
    index = next(
        (i for i, s in enumerate(vnet.subnets) if s.name.lower() == rid.name.lower()), None
    )
    current = vnet.subnets[index] if index is not None else None
    subnet = replace(subnet, name=current.name if current else rid.name)
    if current is None and len(vnet.subnets) >= ctx.limits.subnets_per_vnet:
        raise errors.SubnetsPerVirtualNetworkLimitReached(
            id=vnet.id, count=len(vnet.subnets) + 1, limit=ctx.limits.subnets_per_vnet
        )
    first, last = span(parse_prefix(subnet.address_prefix, vnet.subnet_id(subnet.name)))
    spaces = [IPv4Network(p) for p in vnet.address_prefixes]
    _check_inside(vnet.id, subnet, (first, last), _Spaces(spaces))
    for other in vnet.subnets:
        if other is current:
            continue
        o_first, o_last = stored_span(other.address_prefix)
        if first <= o_last and o_first <= last:
            raise errors.SubnetRangesOverlap(
                subnet=subnet.name, prefix=subnet.address_prefix, other=other.name, id=vnet.id
            )
    if current is not None:
        users = subnet_users(view, vnet.subnet_id(current.name))
        if users:
            _check_kept(vnet, current, subnet, users)
    subnets = list(vnet.subnets)
    if index is None:
        subnets.append(subnet)
    else:
        subnets[index] = subnet
    changes = Changes()
    changes.put(replace(vnet, subnets=tuple(subnets), provisioning_state=ctx.initial_state))
    return changes


#: PUT one subnet of an existing network.
create_or_update_subnet = Staged(check=check_subnet, run=put_subnet)


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
    in_use = users_by_subnet(view, vnet)
    for subnet in vnet.subnets:
        users = in_use.get(key(vnet.subnet_id(subnet.name)))
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
