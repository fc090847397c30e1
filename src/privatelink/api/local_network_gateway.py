"""localNetworkGateways on the wire: on-premises sites (device address and prefixes).

A device named by FQDN and BGP settings are refused by name.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from privatelink.api import arm, crud
from privatelink.api.arm import TrackedWire, Wire
from privatelink.api.lean_route import LeanRoute
from privatelink.core import local_network_gateway as core
from privatelink.core import registry
from privatelink.core.resource import StateView

TYPE = core.TYPE


class LocalNetworkAddressSpace(Wire):
    address_prefixes: list[str] | None = None


class LocalNetworkGatewayProperties(Wire):
    local_network_address_space: LocalNetworkAddressSpace | None = None
    gateway_ip_address: str | None = None
    fqdn: Any = None  # refused
    bgp_settings: Any = None  # refused
    resource_guid: str | None = None
    provisioning_state: str | None = None


class LocalNetworkGatewayWire(TrackedWire):
    properties: LocalNetworkGatewayProperties | None = None


def to_domain(rid: str, name: str, wire: LocalNetworkGatewayWire) -> core.LocalNetworkGateway:
    """The desired site from a PUT body."""
    props = wire.properties or LocalNetworkGatewayProperties()
    arm.reject_unsupported({"fqdn": props.fqdn, "bgpSettings": props.bgp_settings})
    space = props.local_network_address_space or LocalNetworkAddressSpace()
    return core.LocalNetworkGateway(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        gateway_ip_address=props.gateway_ip_address or "",
        address_prefixes=tuple(space.address_prefixes or ()),
    )


def render(view: StateView, lng: core.LocalNetworkGateway) -> dict[str, Any]:
    """A site as ARM JSON."""
    props = arm.present(
        provisioningState=lng.provisioning_state,
        resourceGuid=lng.resource_guid or None,
        localNetworkAddressSpace={"addressPrefixes": list(lng.address_prefixes)},
        gatewayIpAddress=lng.gateway_ip_address,
    )
    return arm.tracked(lng, TYPE, props)


router = APIRouter(route_class=LeanRoute)

KIND = crud.ResourceKind(
    entry=registry.require(TYPE), wire=LocalNetworkGatewayWire, to_domain=to_domain, render=render
)
KINDS = (KIND,)
crud.register(router, KIND)
