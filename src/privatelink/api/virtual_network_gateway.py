"""virtualNetworkGateways on the wire: route-based, active-standby VPN gateways.

BGP, active-active, point-to-site (`vpnClientConfiguration`), NAT rules, custom routes,
policy groups, private IPs, DNS forwarding and the Virtual WAN switches are refused by
name. What Azure shows for a gateway without BGP (`bgpSettings` with ASN 65515 and the
gateway's own address) is accepted back, so a GET sent back as a PUT works.

The data plane's `ipsec_mode` has no Azure property: it is shown as
`properties.privatelinkIpsecMode` ("kernel" or "libipsec") once the data plane has set it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from privatelink.api import arm, crud
from privatelink.api import connection as connection_api
from privatelink.api.arm import ChildWire, SubResource, TrackedWire, Wire
from privatelink.api.deps import control_plane, page_size
from privatelink.api.lean_route import LeanRoute
from privatelink.core import connection as core_connection
from privatelink.core import errors, registry
from privatelink.core import virtual_network_gateway as core
from privatelink.core.resource import StateView, require
from privatelink.service import ControlPlane

TYPE = core.TYPE
PATH = crud.GROUP_PATH + "/virtualNetworkGateways"


class GatewaySku(Wire):
    name: str | None = None
    tier: str | None = None
    capacity: int | None = None


class GatewayIpConfigurationProperties(Wire):
    private_ip_allocation_method: str | None = Field(
        default=None, alias="privateIPAllocationMethod"
    )
    subnet: SubResource | None = None
    public_ip_address: SubResource | None = Field(default=None, alias="publicIPAddress")
    private_ip_address: str | None = Field(default=None, alias="privateIPAddress")
    provisioning_state: str | None = None


class GatewayIpConfigurationWire(ChildWire):
    properties: GatewayIpConfigurationProperties | None = None


class BgpSettingsWire(Wire):
    asn: int | None = None
    bgp_peering_address: str | None = None
    peer_weight: int | None = None
    bgp_peering_addresses: list[dict[str, Any]] | None = None


class VirtualNetworkGatewayProperties(Wire):
    ip_configurations: list[GatewayIpConfigurationWire] | None = None
    gateway_type: str | None = None
    vpn_type: str | None = None
    vpn_gateway_generation: str | None = None
    enable_bgp: bool | None = None
    enable_private_ip_address: bool | None = None
    active_active: bool | None = None
    disable_ip_sec_replay_protection: bool | None = Field(
        default=None, alias="disableIPSecReplayProtection"
    )
    gateway_default_site: Any = None
    sku: GatewaySku | None = None
    vpn_client_configuration: Any = None  # refused, as are the Any fields below
    virtual_network_gateway_policy_groups: Any = None
    bgp_settings: BgpSettingsWire | None = None
    custom_routes: dict[str, Any] | None = None
    enable_dns_forwarding: bool | None = None
    inbound_dns_forwarding_endpoint: str | None = None
    v_net_extended_location_resource_id: Any = Field(
        default=None, alias="vNetExtendedLocationResourceId"
    )
    nat_rules: Any = None
    enable_bgp_route_translation_for_nat: bool | None = None
    allow_virtual_wan_traffic: bool | None = None
    allow_remote_vnet_traffic: bool | None = None
    admin_state: str | None = None
    auto_scale_configuration: Any = None
    enable_high_bandwidth_vpn_gateway: bool | None = None
    resiliency_model: str | None = None
    resource_guid: str | None = None
    provisioning_state: str | None = None
    # Not Azure's: the data plane's IPsec mode ("kernel" or "libipsec"), read-only.
    privatelink_ipsec_mode: str | None = None


class VirtualNetworkGatewayWire(TrackedWire):
    extended_location: Any = None
    properties: VirtualNetworkGatewayProperties | None = None


def _refuse(props: VirtualNetworkGatewayProperties, wire: VirtualNetworkGatewayWire) -> None:
    arm.reject_unsupported(
        {
            "extendedLocation": wire.extended_location,
            "enableBgp": props.enable_bgp,
            "activeActive": props.active_active,
            "vpnClientConfiguration": props.vpn_client_configuration,
            "natRules": props.nat_rules,
            "customRoutes": {k: v for k, v in (props.custom_routes or {}).items() if v},
            "gatewayDefaultSite": props.gateway_default_site,
            "enablePrivateIpAddress": props.enable_private_ip_address,
            "enableDnsForwarding": props.enable_dns_forwarding,
            "virtualNetworkGatewayPolicyGroups": props.virtual_network_gateway_policy_groups,
            "autoScaleConfiguration": props.auto_scale_configuration,
            "enableBgpRouteTranslationForNat": props.enable_bgp_route_translation_for_nat,
            "vNetExtendedLocationResourceId": props.v_net_extended_location_resource_id,
            "enableHighBandwidthVpnGateway": props.enable_high_bandwidth_vpn_gateway,
            "allowVirtualWanTraffic": props.allow_virtual_wan_traffic,
            "allowRemoteVnetTraffic": props.allow_remote_vnet_traffic,
            "disableIPSecReplayProtection": props.disable_ip_sec_replay_protection,
        }
    )
    if (props.admin_state or "Enabled").lower() != "enabled":
        raise errors.UnsupportedProperty(
            name="adminState", why="a gateway cannot be switched off; use Enabled."
        )
    if (props.resiliency_model or "SingleHomed").lower() != "singlehomed":
        raise errors.UnsupportedProperty(
            name="resiliencyModel", why="one gateway instance serves; use SingleHomed."
        )
    bgp = props.bgp_settings
    if bgp is not None and (
        bgp.asn not in (None, core.AZURE_ASN) or bgp.peer_weight not in (None, 0)
    ):
        raise errors.UnsupportedProperty(
            name="bgpSettings",
            why=f"BGP is not served (the gateway shows ASN {core.AZURE_ASN}); leave it unset.",
        )


def to_domain(rid: str, name: str, wire: VirtualNetworkGatewayWire) -> core.VirtualNetworkGateway:
    """The desired gateway from a PUT body."""
    props = wire.properties or VirtualNetworkGatewayProperties()
    _refuse(props, wire)
    configs = []
    for config in props.ip_configurations or []:
        if not config.name:
            raise errors.InvalidRequestContent("Every ipConfiguration needs a name.")
        p = config.properties or GatewayIpConfigurationProperties()
        where = f"{rid}/ipConfigurations/{config.name}"
        if (p.private_ip_allocation_method or "Dynamic").lower() != "dynamic":
            raise errors.UnsupportedProperty(
                name="privateIPAllocationMethod",
                why="a gateway's address in GatewaySubnet is Dynamic.",
            )
        if p.subnet is None or not p.subnet.id:
            raise errors.InvalidRequestContent(f"{where}: subnet.id is required.")
        if p.public_ip_address is None or not p.public_ip_address.id:
            raise errors.InvalidRequestContent(f"{where}: publicIPAddress.id is required.")
        configs.append(
            core.GatewayIpConfiguration(
                name=config.name, subnet_id=p.subnet.id, public_ip_id=p.public_ip_address.id
            )
        )
    sku = props.sku or GatewaySku()
    if sku.name and sku.tier and sku.tier.lower() != sku.name.lower():
        raise errors.InvalidRequestContent(
            f"Virtual network gateway {rid}: sku.tier '{errors.clip(sku.tier)}' must be the "
            f"same as sku.name '{errors.clip(sku.name)}'."
        )
    return core.VirtualNetworkGateway(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        gateway_type=props.gateway_type or core.VPN,
        vpn_type=props.vpn_type or core.ROUTE_BASED,
        generation=props.vpn_gateway_generation or "Generation1",
        sku=sku.name or sku.tier or "VpnGw1",
        ip_configurations=tuple(configs),
    )


def render(view: StateView, gateway: core.VirtualNetworkGateway) -> dict[str, Any]:
    """A gateway as ARM JSON."""
    state = gateway.provisioning_state
    configs = [
        {
            "id": gateway.config_id(c.name),
            "name": c.name,
            "type": f"{TYPE}/ipConfigurations",
            "etag": gateway.etag,
            "properties": arm.present(
                privateIPAllocationMethod="Dynamic",
                subnet={"id": c.subnet_id},
                publicIPAddress={"id": c.public_ip_id},
                privateIPAddress=c.private_ip,
                provisioningState=state,
            ),
        }
        for c in gateway.ip_configurations
    ]
    address = gateway.ip_configurations[0].private_ip if gateway.ip_configurations else None
    props = arm.present(
        provisioningState=state,
        resourceGuid=gateway.resource_guid or None,
        ipConfigurations=configs,
        gatewayType=gateway.gateway_type,
        vpnType=gateway.vpn_type,
        vpnGatewayGeneration=gateway.generation,
        enableBgp=False,
        enablePrivateIpAddress=False,
        activeActive=False,
        disableIPSecReplayProtection=False,
        sku={"name": gateway.sku, "tier": gateway.sku},
        bgpSettings=arm.present(asn=core.AZURE_ASN, bgpPeeringAddress=address, peerWeight=0),
        enableBgpRouteTranslationForNat=False,
        allowVirtualWanTraffic=False,
        allowRemoteVnetTraffic=False,
        adminState="Enabled",
        privatelinkIpsecMode=gateway.ipsec_mode or None,
    )
    return arm.tracked(gateway, TYPE, props)


router = APIRouter(route_class=LeanRoute)

KIND = crud.ResourceKind(
    entry=registry.require(TYPE),
    wire=VirtualNetworkGatewayWire,
    to_domain=to_domain,
    render=render,
)
KINDS = (KIND,)
crud.register(router, KIND)


@router.get(PATH + "/{name}/connections", name="virtualNetworkGateways_list_connections")
def list_connections(
    request: Request,
    subscription: str,
    group: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """The connections of a gateway (`az network vnet-gateway list-connections`)."""
    rid = str(arm.resource_id(subscription, group, "virtualNetworkGateways", name))
    with plane.read() as view:
        require(view, rid, core.VirtualNetworkGateway)
        found = core_connection.connections_of_gateway(view, rid)
        return arm.page_slice(request, found, size, lambda c: connection_api.render(view, c))
