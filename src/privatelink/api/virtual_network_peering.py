"""virtualNetworks/{vnet}/virtualNetworkPeerings on the wire (and inline in a network)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from privatelink.api import arm, crud
from privatelink.api.arm import ChildWire, SubResource, Wire
from privatelink.api.deps import caller, control_plane, page_size
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors, registry
from privatelink.core import virtual_network_peering as core
from privatelink.core.authorization import Access
from privatelink.core.resource import StateView, require
from privatelink.core.virtual_network import VirtualNetwork
from privatelink.service import ControlPlane

TYPE = core.TYPE
BASE = "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network"
PATH = BASE + "/virtualNetworks/{vnet}/virtualNetworkPeerings"


class AddressSpaceWire(Wire):
    address_prefixes: list[str] | None = None


class PeeringProperties(Wire):
    remote_virtual_network: SubResource | None = None
    allow_virtual_network_access: bool | None = None
    allow_forwarded_traffic: bool | None = None
    allow_gateway_transit: bool | None = None
    use_remote_gateways: bool | None = None
    peering_state: str | None = None
    peering_sync_level: str | None = None
    provisioning_state: str | None = None
    remote_address_space: AddressSpaceWire | None = None
    remote_virtual_network_address_space: AddressSpaceWire | None = None
    # Subnet peering (peerCompleteVnets false, local/remoteSubnetNames), IPv6 only
    # (enableOnlyIPv6Peering), BGP communities and encryption are not served.
    peer_complete_vnets: bool | None = None
    local_subnet_names: list[Any] | None = None
    remote_subnet_names: list[Any] | None = None
    enable_only_i_pv6_peering: bool | None = None
    do_not_verify_remote_gateways: bool | None = None
    remote_bgp_communities: Any = None
    remote_virtual_network_encryption: dict[str, Any] | None = None


class PeeringWire(ChildWire):
    properties: PeeringProperties | None = None


def _bool(value: bool | None, default: bool) -> bool:
    return default if value is None else bool(value)


def from_wire(peering_id: str, name: str, wire: PeeringWire) -> core.VirtualNetworkPeering:
    """The desired peering from its wire form (a PUT body, or one inline in a network)."""
    props = wire.properties or PeeringProperties()
    arm.reject_unsupported(
        {
            "peerCompleteVnets": False if props.peer_complete_vnets is False else None,
            "localSubnetNames": props.local_subnet_names,
            "remoteSubnetNames": props.remote_subnet_names,
            "enableOnlyIPv6Peering": props.enable_only_i_pv6_peering or None,
            "remoteBgpCommunities": props.remote_bgp_communities,
        }
    )
    remote = props.remote_virtual_network.id if props.remote_virtual_network else None
    if not remote:
        raise errors.InvalidRequestContent(
            f"Peering {peering_id} needs properties.remoteVirtualNetwork.id."
        )
    return core.VirtualNetworkPeering(
        id=peering_id,
        name=name,
        location="",
        remote_vnet_id=remote,
        allow_virtual_network_access=_bool(props.allow_virtual_network_access, True),
        allow_forwarded_traffic=_bool(props.allow_forwarded_traffic, False),
        allow_gateway_transit=_bool(props.allow_gateway_transit, False),
        use_remote_gateways=_bool(props.use_remote_gateways, False),
    )


def inline_from_wire(vnet_id: str, items: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The peerings listed inside a network's PUT body."""
    found = []
    for item in items:
        wire = arm.parse_body(PeeringWire, item)
        if not wire.name:
            raise errors.InvalidRequestContent("Every virtualNetworkPeerings entry needs a name.")
        found.append(from_wire(f"{vnet_id}/{core.SEGMENT}/{wire.name}", wire.name, wire))
    return tuple(found)


def render(view: StateView, peering: core.VirtualNetworkPeering) -> dict[str, Any]:
    """A peering as ARM JSON (plain dicts: a network renders all of its peerings)."""
    remote = view.get(peering.remote_vnet_id)
    current = (
        list(remote.address_prefixes)
        if isinstance(remote, VirtualNetwork)
        else list(peering.remote_address_space)
    )
    return {
        "id": peering.id,
        "name": peering.name,
        "type": TYPE,
        "etag": peering.etag,
        "properties": {
            "provisioningState": peering.provisioning_state,
            "peeringState": peering.peering_state,
            "peeringSyncLevel": core.sync_level(peering, view),
            "remoteVirtualNetwork": {"id": peering.remote_vnet_id},
            "allowVirtualNetworkAccess": peering.allow_virtual_network_access,
            "allowForwardedTraffic": peering.allow_forwarded_traffic,
            "allowGatewayTransit": peering.allow_gateway_transit,
            "useRemoteGateways": peering.use_remote_gateways,
            "peerCompleteVnets": True,
            "remoteAddressSpace": {"addressPrefixes": list(peering.remote_address_space)},
            "remoteVirtualNetworkAddressSpace": {"addressPrefixes": current},
        },
    }


def render_all(view: StateView, vnet_id: str) -> list[dict[str, Any]]:
    """Every peering of a network as ARM JSON."""
    return [render(view, p) for p in core.peerings_of(view, vnet_id)]


router = APIRouter(route_class=LeanRoute)
# A child resource: the routes below are its own; the kind serves template deployments.
KINDS = (
    crud.ResourceKind(
        entry=registry.require(TYPE), wire=PeeringWire, to_domain=from_wire, render=render
    ),
)


def _ids(subscription: str, group: str, vnet: str, name: str = "") -> tuple[str, str]:
    vnet_id = str(arm.resource_id(subscription, group, "virtualNetworks", vnet))
    if not name:
        return vnet_id, ""
    rid = arm.resource_id(subscription, group, "virtualNetworks", vnet, core.SEGMENT, name)
    return vnet_id, str(rid)


@router.put(PATH + "/{name}")
def create_or_update(
    request: Request,
    subscription: str,
    group: str,
    vnet: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PUT one peering (a long-running operation, 201 when new).

    `syncRemoteAddressSpace=true` (what `az network vnet peering sync` sends) is what
    every PUT does here: it takes the remote network's current address space.
    """
    sync = request.query_params.get("syncRemoteAddressSpace")
    if sync is not None and sync.lower() not in ("true", "false"):
        raise errors.InvalidRequestContent(
            f"syncRemoteAddressSpace must be true or false; got '{errors.clip(sync)}'."
        )
    _, pid = _ids(subscription, group, vnet, name)
    wire = arm.parse_body(PeeringWire, body)
    desired = from_wire(pid, name, wire)

    def respond(view: StateView) -> tuple[dict[str, Any], str]:
        current = core.get_peering(view, pid)
        return render(view, current), current.location

    out = plane.change(
        who,
        pid,
        "put",
        core.create_or_update,
        desired,
        precondition=arm.precondition_for(request, pid),
        render=respond,
    )
    rendered, location = out.rendered
    return arm.put_response(request, rendered, not out.existed, out.operation, location)


@router.get(PATH + "/{name}")
def get(
    subscription: str,
    group: str,
    vnet: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """GET one peering."""
    _, pid = _ids(subscription, group, vnet, name)
    with plane.read() as view:
        return arm.ok(render(view, core.get_peering(view, pid)))


@router.delete(PATH + "/{name}")
def delete(
    request: Request,
    subscription: str,
    group: str,
    vnet: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """DELETE one peering: 202 with its operation, 204 when there is none."""
    _, pid = _ids(subscription, group, vnet, name)
    with plane.read() as view:
        current = view.get(pid)
    arm.check_preconditions(request, current)
    if not isinstance(current, core.VirtualNetworkPeering):
        return arm.delete_response(request, None, "")
    out = plane.change(
        who, pid, "delete", core.delete, pid, precondition=arm.precondition_for(request, pid)
    )
    return arm.delete_response(request, out.operation, current.location)


@router.get(PATH)
def list_peerings(
    request: Request,
    subscription: str,
    group: str,
    vnet: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """List the peerings of a network."""
    vnet_id, _ = _ids(subscription, group, vnet)
    with plane.read() as view:
        require(view, vnet_id, VirtualNetwork)
        items = render_all(view, vnet_id)
    return arm.page_slice(request, items, size)
