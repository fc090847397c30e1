"""virtualNetworks and their subnets on the wire."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from privatelink.api import arm, crud
from privatelink.api import virtual_network_peering as peerings
from privatelink.api.arm import ChildWire, SubResource, TrackedWire, Wire
from privatelink.api.deps import caller, control_plane, page_size
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors, registry
from privatelink.core import virtual_network as core
from privatelink.core.authorization import Access
from privatelink.core.ids import key
from privatelink.core.resource import Resource, StateView, require
from privatelink.core.virtual_network_peering import NetworkWithPeerings
from privatelink.service import ControlPlane

TYPE = core.TYPE
SUBNET_TYPE = "Microsoft.Network/virtualNetworks/subnets"
BASE = "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network"
PATH = BASE + "/virtualNetworks"


class SubnetProperties(Wire):
    address_prefix: str | None = None
    address_prefixes: list[str] | None = None
    private_link_service_network_policies: str | None = None
    private_endpoint_network_policies: str | None = None
    provisioning_state: str | None = None
    ip_configurations: list[SubResource] | None = None
    private_endpoints: list[SubResource] | None = None
    network_security_group: SubResource | None = None
    route_table: SubResource | None = None
    nat_gateway: SubResource | None = None
    delegations: list[dict[str, Any]] | None = None
    service_endpoints: list[dict[str, Any]] | None = None


class SubnetWire(ChildWire):
    properties: SubnetProperties | None = None


class AddressSpace(Wire):
    address_prefixes: list[str] | None = None


class DhcpOptions(Wire):
    dns_servers: list[str] | None = None


class VirtualNetworkProperties(Wire):
    address_space: AddressSpace | None = None
    subnets: list[SubnetWire] | None = None
    provisioning_state: str | None = None
    resource_guid: str | None = None
    dhcp_options: DhcpOptions | None = None
    virtual_network_peerings: list[dict[str, Any]] | None = None
    enable_ddos_protection: bool | None = None


class VirtualNetworkWire(TrackedWire):
    properties: VirtualNetworkProperties | None = None
    extended_location: dict[str, Any] | None = Field(default=None)


def subnet_from_wire(name: str, props: SubnetProperties | None) -> core.Subnet:
    """A core subnet from its wire properties."""
    props = props or SubnetProperties()
    arm.reject_unsupported(
        {
            "networkSecurityGroup": props.network_security_group,
            "routeTable": props.route_table,
            "natGateway": props.nat_gateway,
            "delegations": props.delegations,
            "serviceEndpoints": props.service_endpoints,
        }
    )
    prefix = props.address_prefix
    if props.address_prefixes:
        if len(props.address_prefixes) != 1 or (prefix and prefix != props.address_prefixes[0]):
            raise errors.UnsupportedProperty(
                name="addressPrefixes", why="a subnet has exactly one IPv4 prefix here."
            )
        prefix = props.address_prefixes[0]
    if not prefix:
        raise errors.InvalidRequestContent(f"Subnet '{name}' needs properties.addressPrefix.")
    return core.Subnet(
        name=name,
        address_prefix=prefix,
        private_link_service_network_policies=props.private_link_service_network_policies
        or core.ENABLED,
        private_endpoint_network_policies=props.private_endpoint_network_policies or core.DISABLED,
    )


def to_domain(rid: str, name: str, wire: VirtualNetworkWire) -> core.VirtualNetwork:
    """The desired network from a PUT body."""
    props = wire.properties or VirtualNetworkProperties()
    arm.reject_unsupported(
        {
            "enableDdosProtection": props.enable_ddos_protection,
            "extendedLocation": wire.extended_location,
            "dhcpOptions.dnsServers": props.dhcp_options.dns_servers
            if props.dhcp_options
            else None,
        }
    )
    subnets = []
    for s in props.subnets or []:
        if not s.name:
            raise errors.InvalidRequestContent("Every subnet needs a name.")
        subnets.append(subnet_from_wire(s.name, s.properties))
    fields: dict[str, Any] = {
        "id": rid,
        "name": name,
        "location": wire.location or "",
        "tags": wire.tags or {},
        "address_prefixes": tuple((props.address_space or AddressSpace()).address_prefixes or ()),
        "subnets": tuple(subnets),
    }
    if props.virtual_network_peerings is not None:
        # Inline peerings: the list given is the network's whole set (see the core module).
        return NetworkWithPeerings(
            **fields, inline_peerings=peerings.inline_from_wire(rid, props.virtual_network_peerings)
        )
    return core.VirtualNetwork(**fields)


def render_subnet(
    view: StateView,
    vnet: core.VirtualNetwork,
    subnet: core.Subnet,
    users: list[Resource] | None = None,
) -> dict[str, Any]:
    """A subnet as ARM JSON, with the configurations and endpoints that use it.

    `users` are the subnet's users when the caller has them already (from
    `core.users_by_subnet`); otherwise they are read from `view`.
    """
    sid = vnet.subnet_id(subnet.name)
    if users is None:
        users = core.subnet_users(view, sid)
    ip_configs: list[dict[str, str]] = []
    endpoints: list[dict[str, str]] = []
    for user in users:
        if user.rid.is_type("privateEndpoints"):
            endpoints.append({"id": user.id})
        elif user.rid.is_type("networkInterfaces"):
            for config in getattr(user, "ip_configurations", ()):
                if config.subnet_id.lower() == sid.lower():
                    ip_configs.append({"id": f"{user.id}/ipConfigurations/{config.name}"})
        elif user.rid.is_type("loadBalancers"):
            for fe in getattr(user, "frontends", ()):
                if fe.subnet_id.lower() == sid.lower():
                    ip_configs.append({"id": f"{user.id}/frontendIPConfigurations/{fe.name}"})
    # Plain dicts, the very JSON of arm.dump(SubnetWire(...)) (a unit test compares them):
    # a network renders up to 3000 subnets, and a pydantic model costs ~15 us each.
    props: dict[str, Any] = {
        "addressPrefix": subnet.address_prefix,
        "privateLinkServiceNetworkPolicies": subnet.private_link_service_network_policies,
        "privateEndpointNetworkPolicies": subnet.private_endpoint_network_policies,
        "provisioningState": vnet.provisioning_state,
    }
    if ip_configs:
        props["ipConfigurations"] = ip_configs
    if endpoints:
        props["privateEndpoints"] = endpoints
    return {
        "id": sid,
        "name": subnet.name,
        "type": SUBNET_TYPE,
        "etag": vnet.etag,
        "properties": props,
    }


def render(view: StateView, vnet: core.VirtualNetwork) -> dict[str, Any]:
    """A virtual network as ARM JSON."""
    body = arm.dump(
        VirtualNetworkWire(
            id=vnet.id,
            name=vnet.name,
            type=TYPE,
            location=vnet.location,
            tags=vnet.tags,
            etag=vnet.etag,
            properties=VirtualNetworkProperties(
                address_space=AddressSpace(address_prefixes=list(vnet.address_prefixes)),
                provisioning_state=vnet.provisioning_state,
            ),
        )
    )
    body["properties"]["subnets"] = render_subnets(view, vnet)
    body["properties"]["virtualNetworkPeerings"] = peerings.render_all(view, vnet.id)
    return body


def render_subnets(view: StateView, vnet: core.VirtualNetwork) -> list[dict[str, Any]]:
    """Every subnet of a network as ARM JSON: one query for all their users."""
    in_use = core.users_by_subnet(view, vnet)
    return [
        render_subnet(view, vnet, s, in_use.get(key(vnet.subnet_id(s.name)), []))
        for s in vnet.subnets
    ]


router = APIRouter(route_class=LeanRoute)

KIND = crud.ResourceKind(
    entry=registry.require(TYPE),
    wire=VirtualNetworkWire,
    to_domain=to_domain,
    render=render,
)
KINDS = (KIND,)
crud.register(router, KIND)


# --- subnets as child resources ----------------------------------------------------------


@router.put(PATH + "/{vnet}/subnets/{name}")
def create_or_update_subnet(
    request: Request,
    subscription: str,
    group: str,
    vnet: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PUT one subnet."""
    vnet_id = str(arm.resource_id(subscription, group, "virtualNetworks", vnet))
    sid = str(arm.resource_id(subscription, group, "virtualNetworks", vnet, "subnets", name))
    wire = arm.parse_body(SubnetWire, body)
    subnet = subnet_from_wire(name, wire.properties)
    with plane.read() as view:
        existed = (v := view.get(vnet_id)) is not None and bool(
            isinstance(v, core.VirtualNetwork) and v.subnet(name)
        )

    def respond(view: StateView) -> tuple[dict[str, Any], str]:
        ref = core.get_subnet(view, sid)
        return render_subnet(view, ref.vnet, ref.subnet), ref.vnet.location

    out = plane.change(
        who, vnet_id, "put", core.create_or_update_subnet, sid, subnet, render=respond
    )
    body, location = out.rendered
    return arm.put_response(request, body, not existed, out.operation, location)


@router.get(PATH + "/{vnet}/subnets/{name}")
def get_subnet(
    subscription: str,
    group: str,
    vnet: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """GET one subnet."""
    sid = str(arm.resource_id(subscription, group, "virtualNetworks", vnet, "subnets", name))
    with plane.read() as view:
        ref = core.get_subnet(view, sid)
        return arm.ok(render_subnet(view, ref.vnet, ref.subnet))


@router.delete(PATH + "/{vnet}/subnets/{name}")
def delete_subnet(
    request: Request,
    subscription: str,
    group: str,
    vnet: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """DELETE one subnet."""
    vnet_id = str(arm.resource_id(subscription, group, "virtualNetworks", vnet))
    sid = str(arm.resource_id(subscription, group, "virtualNetworks", vnet, "subnets", name))
    with plane.read() as view:
        current = view.get(vnet_id)
        exists = isinstance(current, core.VirtualNetwork) and current.subnet(name) is not None
    if not exists or current is None:
        return arm.delete_response(request, None, "")
    out = plane.change(who, vnet_id, "delete", core.delete_subnet, sid)
    return arm.delete_response(request, out.operation, current.location)


@router.get(PATH + "/{vnet}/subnets")
def list_subnets(
    request: Request,
    subscription: str,
    group: str,
    vnet: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """List the subnets of a network."""
    vnet_id = str(arm.resource_id(subscription, group, "virtualNetworks", vnet))
    with plane.read() as view:
        network = require(view, vnet_id, core.VirtualNetwork)
        items = render_subnets(view, network)
    return arm.page_slice(request, items, size)
