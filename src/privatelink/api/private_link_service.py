"""privateLinkServices on the wire: the service, its connections, visibility checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from privatelink.api import arm, crud
from privatelink.api.arm import (
    ChildWire,
    IpConfigurationProperties,
    SubResource,
    TrackedWire,
    Wire,
)
from privatelink.api.deps import caller, control_plane, page_size
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors, private_link, registry
from privatelink.core import private_link_service as core
from privatelink.core.authorization import Access
from privatelink.core.resource import StateView, normalize_location, require
from privatelink.service import ControlPlane

TYPE = core.TYPE
CONNECTION_TYPE = core.CONNECTION_TYPE


class SubscriptionList(Wire):
    subscriptions: list[str] | None = None


class NatIpConfigurationProperties(IpConfigurationProperties):
    """A NAT IP configuration's properties."""


class NatIpConfigurationWire(ChildWire):
    properties: NatIpConfigurationProperties | None = None


class ConnectionState(Wire):
    status: str | None = None
    description: str | None = None
    actions_required: str | None = None


class ConnectionProperties(Wire):
    private_endpoint: SubResource | None = None
    private_link_service_connection_state: ConnectionState | None = None
    provisioning_state: str | None = None
    link_identifier: str | None = None
    private_endpoint_location: str | None = None


class ConnectionWire(ChildWire):
    properties: ConnectionProperties | None = None


class PrivateLinkServiceProperties(Wire):
    load_balancer_frontend_ip_configurations: list[SubResource] | None = Field(
        default=None, alias="loadBalancerFrontendIpConfigurations"
    )
    ip_configurations: list[NatIpConfigurationWire] | None = None
    visibility: SubscriptionList | None = None
    auto_approval: SubscriptionList | None = None
    fqdns: list[str] | None = None
    enable_proxy_protocol: bool | None = None
    alias: str | None = None
    network_interfaces: list[SubResource] | None = None
    private_endpoint_connections: list[ConnectionWire] | None = None
    provisioning_state: str | None = None
    destination_ip_address: str | None = Field(default=None, alias="destinationIPAddress")
    access_mode: str | None = None


class PrivateLinkServiceWire(TrackedWire):
    extended_location: dict[str, Any] | None = None
    properties: PrivateLinkServiceProperties | None = None


class VisibilityRequest(Wire):
    private_link_service_alias: str | None = None


def to_domain(rid: str, name: str, wire: PrivateLinkServiceWire) -> core.PrivateLinkService:
    """The desired service from a PUT body (read-only fields are ignored)."""
    props = wire.properties or PrivateLinkServiceProperties()
    arm.reject_unsupported({"extendedLocation": wire.extended_location})
    configs = []
    for c in props.ip_configurations or []:
        if not c.name:
            raise errors.InvalidRequestContent("Every NAT ipConfiguration needs a name.")
        p = c.properties or NatIpConfigurationProperties()
        where = f"{rid}/ipConfigurations/{c.name}"
        configs.append(core.NatIpConfiguration(**arm.ip_configuration_fields(c.name, p, where)))
    frontends = []
    for ref in props.load_balancer_frontend_ip_configurations or []:
        if not ref.id:
            raise errors.InvalidRequestContent(
                "loadBalancerFrontendIpConfigurations[].id is required."
            )
        frontends.append(ref.id)
    return core.PrivateLinkService(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        frontend_ids=tuple(frontends),
        ip_configurations=tuple(configs),
        visibility=tuple((props.visibility or SubscriptionList()).subscriptions or ()),
        auto_approval=tuple((props.auto_approval or SubscriptionList()).subscriptions or ()),
        fqdns=tuple(props.fqdns or ()),
        enable_proxy_protocol=bool(props.enable_proxy_protocol),
        # Checked (and, when not given, kept from the stored service) by the core.
        access_mode=props.access_mode or "",
        # Direct Connect (core/direct_connect.py); checked, and kept when not given, there.
        destination_ip_address=props.destination_ip_address or "",
    )


def _id(value: str | None) -> dict[str, Any]:
    """A reference, `{"id": ...}` (`{}` without one)."""
    return {} if value is None else {"id": value}


# The two renderers below build the JSON directly: they run on every GET and list, and
# building the wire models (`ConnectionWire`, `PrivateLinkServiceWire`) to dump them
# cost more than the rest of such a request. The output is the models' dump (camelCase
# names in field order, None left out); tests/unit/test_api_speed.py compares. Fields
# that are never None are set directly (cheaper than `arm.present` on this path).


def render_connection(
    service: core.PrivateLinkService, conn: core.PrivateEndpointConnection
) -> dict[str, Any]:
    """One connection as the provider sees it.

    A connection is a document of its own with its own etag (as in Azure): connection
    preconditions (If-Match) are checked against it, not against its service.
    """
    # Every field is a str (never None): set directly, as a service renders 1000 of these.
    return {
        "id": service.connection_id(conn.name),
        "name": conn.name,
        "type": CONNECTION_TYPE,
        "etag": conn.etag,
        "properties": {
            "privateEndpoint": {"id": conn.private_endpoint_id},
            "privateLinkServiceConnectionState": {
                "status": conn.status,
                "description": conn.description,
                "actionsRequired": conn.actions_required,
            },
            "provisioningState": conn.provisioning_state,
            "linkIdentifier": conn.link_identifier,
            "privateEndpointLocation": conn.private_endpoint_location,
        },
    }


def render(view: StateView, service: core.PrivateLinkService) -> dict[str, Any]:
    """A private link service as ARM JSON."""
    state = service.provisioning_state
    props = arm.present(
        loadBalancerFrontendIpConfigurations=[_id(f) for f in service.frontend_ids],
        ipConfigurations=[
            arm.present(
                id=f"{service.id}/ipConfigurations/{c.name}",
                name=c.name,
                type=f"{TYPE}/ipConfigurations",
                etag=service.etag,
                properties=arm.present(
                    privateIPAddress=c.private_ip,
                    privateIPAllocationMethod=c.allocation,
                    privateIPAddressVersion=c.ip_version,
                    subnet=_id(c.subnet_id),
                    primary=bool(c.primary),
                    provisioningState=state,
                ),
            )
            for c in service.ip_configurations
        ],
        visibility={"subscriptions": list(service.visibility)},
        autoApproval={"subscriptions": list(service.auto_approval)},
        fqdns=list(service.fqdns),
        enableProxyProtocol=service.enable_proxy_protocol,
        alias=service.alias,
        networkInterfaces=[_id(service.nic_id)],
        provisioningState=state,
        destinationIPAddress=service.destination_ip_address or None,
        accessMode=service.access_mode or core.DEFAULT_ACCESS,
    )
    props["privateEndpointConnections"] = [
        render_connection(service, c) for c in core.connections_of(view, service.id)
    ]
    return arm.tracked(service, TYPE, props)


router = APIRouter(route_class=LeanRoute)

KIND = crud.ResourceKind(
    entry=registry.require(TYPE),
    wire=PrivateLinkServiceWire,
    to_domain=to_domain,
    render=render,
)
KINDS = (KIND,)
crud.register(router, KIND)

CONNECTIONS = crud.GROUP_PATH + "/privateLinkServices/{name}/privateEndpointConnections"


@router.get(CONNECTIONS)
def list_private_endpoint_connections(
    request: Request,
    subscription: str,
    group: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """List a service's connections."""
    rid = str(arm.resource_id(subscription, group, "privateLinkServices", name))
    token = arm.skip_token(request)
    start = int(token) if token else 0
    with plane.read() as view:
        service = require(view, rid, core.PrivateLinkService)
        # One more than a page: whether a next page exists, without counting them all.
        connections = core.connections_of(view, rid, start, size + 1)
    page = [render_connection(service, c) for c in connections[:size]]
    return arm.page(request, page, str(start + size) if len(connections) > size else None)


@router.get(CONNECTIONS + "/{connection}")
def get_private_endpoint_connection(
    subscription: str,
    group: str,
    name: str,
    connection: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """GET one connection."""
    rid = str(arm.resource_id(subscription, group, "privateLinkServices", name))
    with plane.read() as view:
        service, conn = core.get_connection(view, rid, connection)
        return arm.ok(render_connection(service, conn))


def _connection(
    view: StateView, service_id: str, name: str
) -> core.PrivateEndpointConnection | None:
    """A service's connection by name, or None (no service, or no such connection)."""
    found = view.get(f"{service_id}/privateEndpointConnections/{name}")
    return found if isinstance(found, core.PrivateEndpointConnection) else None


def _connection_precondition(
    request: Request, service_id: str, connection: str
) -> Callable[[StateView], None]:
    """If-Match / If-None-Match on a connection, against its own etag.

    A connection that does not exist counts as absent (`If-Match: *` fails).
    """

    def check(view: StateView) -> None:
        arm.check_preconditions(request, _connection(view, service_id, connection))

    return check


@router.put(CONNECTIONS + "/{connection}")
def update_private_endpoint_connection(
    request: Request,
    subscription: str,
    group: str,
    name: str,
    connection: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """Approve or reject a connection: synchronous, always 200 (the SDK rejects 201)."""
    rid = str(arm.resource_id(subscription, group, "privateLinkServices", name))
    wire = arm.parse_body(ConnectionWire, body)
    state = (wire.properties or ConnectionProperties()).private_link_service_connection_state
    if state is None or not state.status:
        raise errors.InvalidRequestContent(
            "properties.privateLinkServiceConnectionState.status is required "
            "(Approved or Rejected)."
        )
    out = plane.change(
        who,
        rid,
        "put",
        private_link.update_connection,
        rid,
        connection,
        state.status,
        state.description,
        state.actions_required,
        precondition=_connection_precondition(request, rid, connection),
        # Built before the commit: no "failed" for a stored change.
        render=lambda view: render_connection(*core.get_connection(view, rid, connection)),
    )
    return arm.ok(out.rendered)


@router.delete(CONNECTIONS + "/{connection}")
def delete_private_endpoint_connection(
    request: Request,
    subscription: str,
    group: str,
    name: str,
    connection: str,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """Delete a connection: the endpoint then shows Disconnected."""
    rid = str(arm.resource_id(subscription, group, "privateLinkServices", name))
    with plane.read() as view:
        current = view.get(rid)
        exists = _connection(view, rid, connection) is not None
    if not exists or current is None:
        arm.check_preconditions(request, None)
        return arm.delete_response(request, None, "")
    out = plane.change(
        who,
        rid,
        "delete",
        private_link.delete_connection,
        rid,
        connection,
        precondition=_connection_precondition(request, rid, connection),
    )
    return arm.delete_response(request, out.operation, current.location)


def _check_visibility(
    subscription: str, location: str, body: Any, plane: ControlPlane, who: Access
) -> Response:
    arm.check_subscription(subscription)
    normalize_location(location)
    wire = arm.parse_body(VisibilityRequest, body)
    if not wire.private_link_service_alias:
        raise errors.InvalidRequestContent("privateLinkServiceAlias is required.")
    with plane.read() as view:
        visible = core.check_visibility(view, subscription, wire.private_link_service_alias, who)
    return arm.ok({"visible": visible})


@router.post(crud.SUB_PATH + "/locations/{location}/checkPrivateLinkServiceVisibility")
def check_private_link_service_visibility(
    subscription: str,
    location: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """Can this subscription see the service with this alias?"""
    return _check_visibility(subscription, location, body, plane, who)


@router.post(crud.GROUP_PATH + "/locations/{location}/checkPrivateLinkServiceVisibility")
def check_private_link_service_visibility_by_resource_group(
    subscription: str,
    group: str,
    location: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """The same check, at resource group scope."""
    arm.resource_id(subscription, group, "locations", location)
    return _check_visibility(subscription, location, body, plane, who)


def _auto_approved(
    request: Request, subscription: str, location: str, plane: ControlPlane, size: int
) -> Response:
    arm.check_subscription(subscription)
    with plane.read() as view:
        services = core.auto_approved_services(view, subscription, location)
    items = [{"privateLinkService": s.id} for s in services]
    return arm.page_slice(request, items, size)


@router.get(crud.SUB_PATH + "/locations/{location}/autoApprovedPrivateLinkServices")
def list_auto_approved_private_link_services(
    request: Request,
    subscription: str,
    location: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """Services that auto-approve this subscription, in a region."""
    return _auto_approved(request, subscription, location, plane, size)


@router.get(crud.GROUP_PATH + "/locations/{location}/autoApprovedPrivateLinkServices")
def list_auto_approved_private_link_services_by_resource_group(
    request: Request,
    subscription: str,
    group: str,
    location: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """The same list, at resource group scope."""
    arm.resource_id(subscription, group, "locations", location)
    return _auto_approved(request, subscription, location, plane, size)
