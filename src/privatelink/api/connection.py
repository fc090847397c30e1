"""connections on the wire: site-to-site IPsec connections and their shared key.

A connection's GET never shows `sharedKey` (Azure made reading it a right of its own);
`GET .../connections/{name}/sharedkey` does, `PUT` there sets it (long-running, like
Azure's) and `POST .../sharedkey/reset` replaces it with a generated one of the length
asked (200 with `{"keyLength": n}`). Everything a connection cannot be here (another
type than IPsec, IKEv1, BGP, custom IPsec policies, policy-based selectors, NAT rules,
certificate authentication, ...) is refused by name.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from privatelink.api import arm, crud
from privatelink.api.arm import SubResource, TrackedWire, Wire
from privatelink.api.deps import caller, control_plane
from privatelink.api.lean_route import LeanRoute
from privatelink.core import connection as core
from privatelink.core import errors, registry
from privatelink.core.authorization import Access
from privatelink.core.resource import StateView, require
from privatelink.service import ControlPlane

TYPE = core.TYPE
PATH = crud.GROUP_PATH + "/connections"
PSK = "PSK"


class VirtualNetworkGatewayConnectionProperties(Wire):
    authorization_key: Any = None  # refused, as are the Any fields below
    virtual_network_gateway1: SubResource | None = None
    virtual_network_gateway2: Any = None
    local_network_gateway2: SubResource | None = None
    ingress_nat_rules: list[SubResource] | None = None
    egress_nat_rules: list[SubResource] | None = None
    connection_type: str | None = None
    connection_protocol: str | None = None
    routing_weight: int | None = None
    dpd_timeout_seconds: int | None = None
    connection_mode: str | None = None
    tunnel_properties: Any = None
    shared_key: str | None = None
    connection_status: str | None = None
    tunnel_connection_status: list[dict[str, Any]] | None = None
    egress_bytes_transferred: int | None = None
    ingress_bytes_transferred: int | None = None
    peer: Any = None
    enable_bgp: bool | None = None
    gateway_custom_bgp_ip_addresses: Any = None
    use_local_azure_ip_address: bool | None = None
    use_policy_based_traffic_selectors: bool | None = None
    ipsec_policies: Any = None
    traffic_selector_policies: Any = None
    express_route_gateway_bypass: bool | None = None
    enable_private_link_fast_path: bool | None = None
    authentication_type: str | None = None
    certificate_authentication: Any = None
    routing_configuration: Any = None
    resource_guid: str | None = None
    provisioning_state: str | None = None


class VirtualNetworkGatewayConnectionWire(TrackedWire):
    properties: VirtualNetworkGatewayConnectionProperties | None = None


class ConnectionSharedKeyWire(Wire):
    value: str | None = None


class ConnectionResetSharedKeyWire(Wire):
    key_length: int | None = None


def _id(ref: SubResource | None) -> str:
    return ref.id if ref is not None and ref.id else ""


def to_domain(
    rid: str, name: str, wire: VirtualNetworkGatewayConnectionWire
) -> core.VirtualNetworkGatewayConnection:
    """The desired connection from a PUT body (read-only fields are ignored; a missing
    `sharedKey` keeps the stored one, or gets a generated one)."""
    props = wire.properties or VirtualNetworkGatewayConnectionProperties()
    if (props.authentication_type or PSK).upper() != PSK:
        raise errors.UnsupportedProperty(
            name="authenticationType", why="connections authenticate with a shared key (PSK)."
        )
    arm.reject_unsupported(
        {
            "authorizationKey": props.authorization_key,
            "virtualNetworkGateway2": props.virtual_network_gateway2,
            "peer": props.peer,
            "ingressNatRules": props.ingress_nat_rules,
            "egressNatRules": props.egress_nat_rules,
            "tunnelProperties": props.tunnel_properties,
            "enableBgp": props.enable_bgp,
            "gatewayCustomBgpIpAddresses": props.gateway_custom_bgp_ip_addresses,
            "useLocalAzureIpAddress": props.use_local_azure_ip_address,
            "usePolicyBasedTrafficSelectors": props.use_policy_based_traffic_selectors,
            "ipsecPolicies": props.ipsec_policies,
            "trafficSelectorPolicies": props.traffic_selector_policies,
            "expressRouteGatewayBypass": props.express_route_gateway_bypass,
            "enablePrivateLinkFastPath": props.enable_private_link_fast_path,
            "certificateAuthentication": props.certificate_authentication,
            "routingConfiguration": props.routing_configuration,
        }
    )
    if not props.connection_type:
        raise errors.InvalidRequestContent(
            f"Connection {rid} needs properties.connectionType (IPsec)."
        )
    return core.VirtualNetworkGatewayConnection(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        connection_type=props.connection_type,
        virtual_network_gateway1_id=_id(props.virtual_network_gateway1),
        local_network_gateway2_id=_id(props.local_network_gateway2),
        shared_key=props.shared_key or "",
        connection_protocol=props.connection_protocol or core.IKEV2,
        connection_mode=props.connection_mode or core.DEFAULT_MODE,
        routing_weight=props.routing_weight or 0,
        dpd_timeout_seconds=(
            core.DPD_DEFAULT if props.dpd_timeout_seconds is None else props.dpd_timeout_seconds
        ),
    )


def render(view: StateView, conn: core.VirtualNetworkGatewayConnection) -> dict[str, Any]:
    """A connection as ARM JSON, without its shared key."""
    props = arm.present(
        provisioningState=conn.provisioning_state,
        resourceGuid=conn.resource_guid or None,
        virtualNetworkGateway1={"id": conn.virtual_network_gateway1_id},
        localNetworkGateway2={"id": conn.local_network_gateway2_id},
        connectionType=conn.connection_type,
        connectionProtocol=conn.connection_protocol,
        routingWeight=conn.routing_weight,
        dpdTimeoutSeconds=conn.dpd_timeout_seconds,
        connectionMode=conn.connection_mode,
        authenticationType=PSK,
        enableBgp=False,
        useLocalAzureIpAddress=False,
        usePolicyBasedTrafficSelectors=False,
        ipsecPolicies=[],
        trafficSelectorPolicies=[],
        ingressNatRules=[],
        egressNatRules=[],
        expressRouteGatewayBypass=False,
        enablePrivateLinkFastPath=False,
        connectionStatus=conn.connection_status,
        ingressBytesTransferred=conn.ingress_bytes_transferred,
        egressBytesTransferred=conn.egress_bytes_transferred,
    )
    return arm.tracked(conn, TYPE, props)


router = APIRouter(route_class=LeanRoute)

KIND = crud.ResourceKind(
    entry=registry.require(TYPE),
    wire=VirtualNetworkGatewayConnectionWire,
    to_domain=to_domain,
    render=render,
)
KINDS = (KIND,)
crud.register(router, KIND)

SHARED_KEY = PATH + "/{name}/sharedKey"


def _connection_id(subscription: str, group: str, name: str) -> str:
    return str(arm.resource_id(subscription, group, "connections", name))


@router.get(SHARED_KEY, name="connections_get_shared_key")
def get_shared_key(
    subscription: str, group: str, name: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """The connection's shared key: `{"value": ...}`."""
    rid = _connection_id(subscription, group, name)
    with plane.read() as view:
        conn = require(view, rid, core.VirtualNetworkGatewayConnection)
        return arm.ok({"value": conn.shared_key})


@router.put(SHARED_KEY, name="connections_set_shared_key")
def set_shared_key(
    request: Request,
    subscription: str,
    group: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """Set the shared key (long-running: 200 with the key and Azure-AsyncOperation)."""
    rid = _connection_id(subscription, group, name)
    wire = arm.parse_body(ConnectionSharedKeyWire, body)
    if not wire.value:
        raise errors.InvalidRequestContent("The request needs value: the new shared key.")

    def respond(view: StateView) -> tuple[dict[str, Any], str]:
        conn = require(view, rid, core.VirtualNetworkGatewayConnection)
        return {"value": conn.shared_key}, conn.location

    out = plane.change(who, rid, "put", core.set_shared_key, rid, wire.value, render=respond)
    key_body, location = out.rendered
    return arm.put_response(request, key_body, False, out.operation, location)


@router.post(SHARED_KEY + "/reset", name="connections_reset_shared_key")
def reset_shared_key(
    subscription: str,
    group: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """Replace the shared key with a generated one of `keyLength` (1-128) characters."""
    rid = _connection_id(subscription, group, name)
    wire = arm.parse_body(ConnectionResetSharedKeyWire, body)
    if wire.key_length is None:
        raise errors.InvalidRequestContent("The request needs keyLength (1 to 128).")
    plane.change(who, rid, "put", core.reset_shared_key, rid, wire.key_length)
    return arm.ok({"keyLength": wire.key_length})
