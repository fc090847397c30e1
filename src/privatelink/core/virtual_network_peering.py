"""Virtual network peering: the rules and the two-sided state of a peering.

A peering is a child of its virtual network, stored as a document of its own (id
`<vnet>/virtualNetworkPeerings/<name>`, indexed under its network as "peering" and under
the remote network as "peering-remote"), like Azure's child resource. Two peerings, one
in each network and each naming the other network, make a connection:

- `Initiated`: this side exists, the remote side does not (yet);
- `Connected`: both sides exist; both are written `Connected` by the PUT that completes
  the pair;
- `Disconnected`: the remote side (or the remote network) was deleted after the pair was
  connected. A Disconnected peering carries nothing; a PUT of it brings it back to
  `Initiated` (or `Connected` when the remote side exists again), while creating the
  remote side against it is refused (`RemotePeeringIsDisconnected`), as in Azure.

`remote_address_space` is the remote network's space as it was when this side was last
written (Azure's "synced" space; a PUT of the peering, which `az network vnet peering sync`
sends, syncs it). `peeringSyncLevel` compares both sides' synced spaces with the
networks' current ones. The data plane routes the synced spaces, as Azure does.

Rules (Azure's codes): the two networks' spaces must not overlap
(`VnetAddressSpacesOverlap`), nor may the local space overlap a network already peered
with the remote one (`VnetAddressSpaceOverlapsWithAlreadyPeeredVnet`); one peering per
remote network (`AnotherPeeringAlreadyReferencesRemoteVnet`); `useRemoteGateways` needs a
remote gateway (`RemoteVnetHasNoGateways`) and the remote side's `allowGatewayTransit`,
no gateway of its own and no other peering using remote gateways. Peering across
regions ("global") is the same resource and works the same. A peering across
subscriptions needs `virtualNetworks/peer/action` on the remote network (linked
authorization, core/linked.py).

The virtual network's own PUT and DELETE go through `create_or_update_network` and
`delete_network` here: a network's PUT may carry its peerings inline (a list given is the
whole set: missing ones are deleted; no list keeps them), may not grow its space onto a
peered network's, and its DELETE removes its peerings and disconnects their remote sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Network

from privatelink.core import connection, errors, local_network_gateway
from privatelink.core import virtual_network as vnets
from privatelink.core.ids import ResourceId, key, parse_ref
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    Staged,
    StateView,
    check_unique_names,
    get_typed,
)
from privatelink.core.virtual_network import VirtualNetwork

TYPE = "Microsoft.Network/virtualNetworks/virtualNetworkPeerings"
SEGMENT = "virtualNetworkPeerings"

INITIATED = "Initiated"
CONNECTED = "Connected"
DISCONNECTED = "Disconnected"

FULLY_IN_SYNC = "FullyInSync"
REMOTE_NOT_IN_SYNC = "RemoteNotInSync"
LOCAL_NOT_IN_SYNC = "LocalNotInSync"
LOCAL_AND_REMOTE_NOT_IN_SYNC = "LocalAndRemoteNotInSync"

GATEWAY_SUBNET = "GatewaySubnet"


@dataclass(frozen=True, kw_only=True)
class VirtualNetworkPeering(Resource):
    """One side of a peering between two virtual networks (its location is its network's)."""

    remote_vnet_id: str
    allow_virtual_network_access: bool = True
    allow_forwarded_traffic: bool = False
    allow_gateway_transit: bool = False
    use_remote_gateways: bool = False
    peering_state: str = INITIATED
    remote_address_space: tuple[str, ...] = ()  # the remote space as last synced
    local_address_space: tuple[str, ...] = ()  # this network's space as last synced

    @property
    def vnet_id(self) -> str:
        """The id of the network this peering belongs to."""
        return str(self.rid.parent())


def references(peering: VirtualNetworkPeering) -> list[tuple[str, str]]:
    """Index entries: its own network ("peering") and the remote one ("peering-remote")."""
    return [("peering", key(peering.vnet_id)), ("peering-remote", key(peering.remote_vnet_id))]


def peerings_of(view: StateView, vnet_id: str) -> list[VirtualNetworkPeering]:
    """The peerings of a network, oldest first."""
    return [
        p for p in view.referrers(key(vnet_id), "peering") if isinstance(p, VirtualNetworkPeering)
    ]


def peerings_to(view: StateView, vnet_id: str) -> list[VirtualNetworkPeering]:
    """The peerings (of other networks) whose remote network is `vnet_id`."""
    return [
        p
        for p in view.referrers(key(vnet_id), "peering-remote")
        if isinstance(p, VirtualNetworkPeering)
    ]


def remote_side(view: StateView, peering: VirtualNetworkPeering) -> VirtualNetworkPeering | None:
    """The peering of the remote network that names this peering's network, or None."""
    local = key(peering.vnet_id)
    for other in peerings_of(view, peering.remote_vnet_id):
        if key(other.remote_vnet_id) == local:
            return other
    return None


def sync_level(peering: VirtualNetworkPeering, view: StateView) -> str:
    """Azure's peeringSyncLevel: whether each side's synced space is the network's current."""
    local = get_typed(view, peering.vnet_id, VirtualNetwork)
    remote = get_typed(view, peering.remote_vnet_id, VirtualNetwork)
    local_ok = remote is None or tuple(remote.address_prefixes) == peering.remote_address_space
    other = remote_side(view, peering) if remote is not None else None
    remote_ok = (
        other is None
        or local is None
        or tuple(local.address_prefixes) == other.remote_address_space
    )
    if local_ok and remote_ok:
        return FULLY_IN_SYNC
    if local_ok:
        return REMOTE_NOT_IN_SYNC
    if remote_ok:
        return LOCAL_NOT_IN_SYNC
    return LOCAL_AND_REMOTE_NOT_IN_SYNC


def gateway_of(view: StateView, vnet: VirtualNetwork) -> Resource | None:
    """The virtual network gateway in the network's GatewaySubnet, or None."""
    subnet = vnet.subnet(GATEWAY_SUBNET)
    if subnet is None:
        return None
    for user in view.referrers(key(vnet.subnet_id(subnet.name)), "subnet"):
        if user.rid.is_type("virtualNetworkGateways"):
            return user
    return None


# --- overlaps -----------------------------------------------------------------------------


def overlapping(ours: Sequence[str], theirs: Sequence[str]) -> list[str]:
    """Prefixes of `ours` that overlap any prefix of `theirs` (both validated prefixes)."""
    spans = [vnets.stored_span(p) for p in theirs]
    found = []
    for prefix in ours:
        first, last = vnets.stored_span(prefix)
        if any(first <= o_last and o_first <= last for o_first, o_last in spans):
            found.append(str(IPv4Network(prefix, strict=False)))
    return found


def _check_spaces(
    view: StateView, peering_id: str, local: VirtualNetwork, remote: VirtualNetwork
) -> None:
    clash = overlapping(local.address_prefixes, remote.address_prefixes)
    if clash:
        raise errors.PeeredAddressSpacesOverlap(
            id=peering_id, vnet=local.id, remote=remote.id, prefixes=", ".join(clash)
        )
    for other in peerings_of(view, remote.id):
        if key(other.remote_vnet_id) == local.key or other.peering_state == DISCONNECTED:
            continue
        third = get_typed(view, other.remote_vnet_id, VirtualNetwork)
        spaces = third.address_prefixes if third is not None else other.remote_address_space
        clash = overlapping(local.address_prefixes, spaces)
        if clash:
            raise errors.VnetAddressSpaceOverlapsWithAlreadyPeeredVnet(
                id=peering_id,
                vnet=local.id,
                remote=remote.id,
                third=other.remote_vnet_id,
                prefixes=", ".join(clash),
            )


# --- PUT of one peering ---------------------------------------------------------------------


def check_peering(ctx: Context, desired: VirtualNetworkPeering) -> tuple[VirtualNetworkPeering]:
    """The body alone: the remote reference is a virtual network's id, not its own."""
    remote = parse_ref(desired.remote_vnet_id, "virtualNetworks")
    if key(str(remote)) == key(desired.vnet_id):
        raise errors.CannotPeerVnetWithItself(id=desired.id)
    return (replace(desired, remote_vnet_id=str(remote)),)


def _check_gateways(
    view: StateView,
    peering: VirtualNetworkPeering,
    local: VirtualNetwork,
    remote: VirtualNetwork,
    remote_peering: VirtualNetworkPeering | None,
    siblings: Sequence[VirtualNetworkPeering],
) -> None:
    if not peering.use_remote_gateways:
        return
    own = gateway_of(view, local)
    if own is not None:
        raise errors.VnetWithGatewayCannotUseRemoteGateways(
            id=peering.id, vnet=local.id, gateway=own.id
        )
    if gateway_of(view, remote) is None:
        raise errors.RemoteVnetHasNoGateways(id=peering.id, remote=remote.id)
    if remote_peering is None or not remote_peering.allow_gateway_transit:
        remote_id = remote_peering.id if remote_peering else f"{remote.id}/{SEGMENT}/*"
        raise errors.RemotePeeringDoesNotAllowGatewayTransit(id=peering.id, remote=remote_id)
    for other in siblings:
        if other.key != peering.key and other.use_remote_gateways:
            raise errors.OnlyOnePeeringCanUseRemoteGateways(id=peering.id, other=other.id)


def put_peering(
    view: StateView,
    ctx: Context,
    desired: VirtualNetworkPeering,
    local: VirtualNetwork | None = None,
    siblings: Sequence[VirtualNetworkPeering] | None = None,
) -> Changes:
    """Create or update one side; completing a pair writes both sides `Connected`.

    `local` is the network as the same request leaves it (a network PUT with inline
    peerings), and `siblings` the network's other peerings after it; both are read from
    the store when not given.
    """
    vnet_id = desired.vnet_id
    if local is None:
        local = get_typed(view, vnet_id, VirtualNetwork)
        if local is None:
            raise errors.ParentResourceNotFound(id=vnet_id)
    if siblings is None:
        siblings = peerings_of(view, vnet_id)
    existing = next((p for p in siblings if p.key == desired.key), None)
    if existing is None and len(siblings) >= ctx.limits.peerings_per_vnet:
        raise errors.PeeringsPerVirtualNetworkLimitReached(
            id=vnet_id, limit=ctx.limits.peerings_per_vnet
        )
    if existing is not None and key(existing.remote_vnet_id) != key(desired.remote_vnet_id):
        raise errors.PeeringRemoteVnetCannotChange(
            id=desired.id, old=existing.remote_vnet_id, new=desired.remote_vnet_id
        )
    for other in siblings:
        if other.key != desired.key and key(other.remote_vnet_id) == key(desired.remote_vnet_id):
            raise errors.AnotherPeeringAlreadyReferencesRemoteVnet(
                id=desired.id, other=other.id, remote=desired.remote_vnet_id
            )
    remote = get_typed(view, desired.remote_vnet_id, VirtualNetwork)
    if remote is None:
        raise errors.InvalidResourceReference(ref=desired.remote_vnet_id, id=desired.id)
    _check_spaces(view, desired.id, local, remote)
    remote_peering = next(
        (p for p in peerings_of(view, remote.id) if key(p.remote_vnet_id) == local.key), None
    )
    _check_gateways(view, desired, local, remote, remote_peering, siblings)
    if remote_peering is not None and remote_peering.peering_state == DISCONNECTED:
        raise errors.RemotePeeringIsDisconnected(id=desired.id, remote=remote_peering.id)
    state = CONNECTED if remote_peering is not None else INITIATED
    peering = replace(
        desired,
        id=existing.id if existing else desired.id,
        name=existing.name if existing else desired.name,
        remote_vnet_id=remote.id,
        location=local.location,
        peering_state=state,
        remote_address_space=tuple(remote.address_prefixes),
        local_address_space=tuple(local.address_prefixes),
        provisioning_state=ctx.initial_state,
    )
    changes = Changes()
    changes.put(peering)
    if remote_peering is not None and remote_peering.peering_state != CONNECTED:
        changes.put(replace(remote_peering, peering_state=CONNECTED))
    return changes


#: PUT one peering of an existing network.
create_or_update = Staged(check=check_peering, run=put_peering)


def delete(view: StateView, ctx: Context, peering_id: str) -> Changes:
    """DELETE one side: the remote side, if connected, becomes `Disconnected`."""
    changes = Changes()
    peering = get_typed(view, peering_id, VirtualNetworkPeering)
    if peering is None:
        return changes
    changes.delete(peering.id)
    other = remote_side(view, peering)
    if other is not None and other.peering_state != DISCONNECTED:
        changes.put(replace(other, peering_state=DISCONNECTED))
    return changes


def get_peering(view: StateView, peering_id: str) -> VirtualNetworkPeering:
    """GET one peering (404 when it or its network is missing)."""
    rid = ResourceId.parse(peering_id)
    if get_typed(view, str(rid.parent()), VirtualNetwork) is None:
        raise errors.ParentResourceNotFound(id=str(rid.parent()))
    found = get_typed(view, peering_id, VirtualNetworkPeering)
    if found is None:
        raise errors.ResourceNotFound(id=peering_id)
    return found


# --- the network's own PUT and DELETE ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NetworkWithPeerings(VirtualNetwork):
    """A network PUT body with its inline peerings (None: the body has no list)."""

    inline_peerings: tuple[VirtualNetworkPeering, ...] | None = None


def _plain(vnet: VirtualNetwork) -> VirtualNetwork:
    """The network alone (what is stored), without a PUT body's inline peerings."""
    if isinstance(vnet, NetworkWithPeerings):
        fields = {k: v for k, v in vnet.__dict__.items() if k != "inline_peerings"}
        return VirtualNetwork(**fields)
    return vnet


def check_network(
    ctx: Context, desired: VirtualNetwork
) -> tuple[VirtualNetwork, tuple[VirtualNetworkPeering, ...] | None]:
    """The body alone: the network's rules, then each inline peering's."""
    inline = desired.inline_peerings if isinstance(desired, NetworkWithPeerings) else None
    (vnet,) = vnets.check_network(ctx, _plain(desired))
    checked = None
    if inline is not None:
        check_unique_names(vnet.id, [p.name for p in inline])
        checked = tuple(check_peering(ctx, p)[0] for p in inline)
    return vnet, checked


def put_network(
    view: StateView,
    ctx: Context,
    vnet: VirtualNetwork,
    inline: tuple[VirtualNetworkPeering, ...] | None,
) -> Changes:
    """The network's PUT, its space kept clear of its peers', then its inline peerings."""
    changes = vnets.put_network(view, ctx, vnet)
    stored = next(r for r in changes.puts if isinstance(r, VirtualNetwork))
    current = peerings_of(view, stored.id)
    for peering in current:
        if peering.peering_state == DISCONNECTED:
            continue
        remote = get_typed(view, peering.remote_vnet_id, VirtualNetwork)
        if remote is None:
            continue
        clash = overlapping(stored.address_prefixes, remote.address_prefixes)
        if clash:
            raise errors.PeeredVnetAddressSpaceOverlap(
                id=stored.id, remote=remote.id, prefixes=", ".join(clash)
            )
    _check_sites(view, stored)
    if inline is None:
        return changes
    wanted = {p.key for p in inline}
    for gone in current:
        if gone.key not in wanted:
            for step in (delete(view, ctx, gone.id),):
                for rid in step.deletes:
                    changes.delete(rid)
                for resource in step.puts:
                    changes.put(resource)
    kept = [p for p in current if p.key in wanted]
    for peering in inline:
        siblings = [*kept, *(p for p in inline if p.key != peering.key)]
        step = put_peering(view, ctx, peering, local=stored, siblings=siblings)
        for resource in step.puts:
            changes.put(resource)
    return changes


def _check_sites(view: StateView, vnet: VirtualNetwork) -> None:
    """A network with a VPN gateway may not grow onto a connected site's prefixes."""
    gateway = gateway_of(view, vnet)
    if gateway is None:
        return
    for conn in connection.connections_of_gateway(view, gateway.id):
        site = get_typed(
            view, conn.local_network_gateway2_id, local_network_gateway.LocalNetworkGateway
        )
        if site is not None:
            local_network_gateway.check_prefixes(site, vnet, gateway.id, conn.id)


#: PUT a virtual network, with or without its peerings inline.
create_or_update_network = Staged(check=check_network, run=put_network)


def delete_network(view: StateView, ctx: Context, vnet_id: str) -> Changes:
    """DELETE a network: its peerings go with it, and their remote sides disconnect."""
    changes = vnets.delete(view, ctx, vnet_id)
    if not changes.deletes:
        return changes
    for peering in peerings_of(view, vnet_id):
        changes.delete(peering.id)
        other = remote_side(view, peering)
        if other is not None and other.peering_state != DISCONNECTED:
            changes.put(replace(other, peering_state=DISCONNECTED))
    return changes
