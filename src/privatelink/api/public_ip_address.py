"""publicIPAddresses on the wire: Standard, static, IPv4 public IPs.

What a public IP cannot be here is refused by name (`UnsupportedProperty`): a DNS label
(it would need an A record in Azure's public DNS, which nothing here serves), IP tags,
prefixes, DDoS plans, NAT gateways, linked and service IPs, VM delete options. The
default DDoS setting Azure shows (`VirtualNetworkInherited`) and an empty tag list are
accepted back, so a GET sent back as a PUT works.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from privatelink.api import arm, crud
from privatelink.api.arm import SubResource, TrackedWire, Wire
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors, registry
from privatelink.core import public_ip_address as core
from privatelink.core.resource import StateView

TYPE = core.TYPE
DDOS_DEFAULT = "VirtualNetworkInherited"


class PublicIPAddressSku(Wire):
    name: str | None = None
    tier: str | None = None


class PublicIPDdosSettings(Wire):
    protection_mode: str | None = None
    ddos_protection_plan: SubResource | None = None


class PublicIPAddressProperties(Wire):
    public_ip_allocation_method: str | None = Field(default=None, alias="publicIPAllocationMethod")
    public_ip_address_version: str | None = Field(default=None, alias="publicIPAddressVersion")
    ip_configuration: SubResource | None = Field(default=None, alias="ipConfiguration")
    dns_settings: Any = None  # refused: any value but null or empty
    ddos_settings: PublicIPDdosSettings | None = None
    ip_tags: Any = None  # refused unless empty
    ip_address: str | None = None
    public_ip_prefix: SubResource | None = Field(default=None, alias="publicIPPrefix")
    idle_timeout_in_minutes: int | None = None
    resource_guid: str | None = None
    provisioning_state: str | None = None
    service_public_ip_address: Any = Field(default=None, alias="servicePublicIPAddress")
    nat_gateway: Any = None
    migration_phase: str | None = None
    linked_public_ip_address: Any = Field(default=None, alias="linkedPublicIPAddress")
    delete_option: Any = None


class PublicIPAddressWire(TrackedWire):
    sku: PublicIPAddressSku | None = None
    zones: list[str] | None = None
    extended_location: Any = None
    properties: PublicIPAddressProperties | None = None


def to_domain(rid: str, name: str, wire: PublicIPAddressWire) -> core.PublicIPAddress:
    """The desired public IP from a PUT body (`ipAddress` is ignored: it is allocated)."""
    props = wire.properties or PublicIPAddressProperties()
    ddos = props.ddos_settings
    if ddos is not None and (
        ddos.ddos_protection_plan is not None
        or (ddos.protection_mode or DDOS_DEFAULT).lower() != DDOS_DEFAULT.lower()
    ):
        raise errors.UnsupportedProperty(
            name="ddosSettings", why=f"DDoS protection plans are not served; use {DDOS_DEFAULT}."
        )
    if props.migration_phase not in (None, "None"):
        raise errors.UnsupportedProperty(
            name="migrationPhase", why="there is nothing to migrate; leave it unset."
        )
    arm.reject_unsupported(
        {
            "extendedLocation": wire.extended_location,
            "dnsSettings": props.dns_settings,
            "ipTags": props.ip_tags,
            "publicIPPrefix": props.public_ip_prefix,
            "servicePublicIPAddress": props.service_public_ip_address,
            "natGateway": props.nat_gateway,
            "linkedPublicIPAddress": props.linked_public_ip_address,
            "deleteOption": props.delete_option,
        }
    )
    sku = wire.sku or PublicIPAddressSku()
    return core.PublicIPAddress(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        sku=sku.name or core.STANDARD,
        sku_tier=sku.tier or core.REGIONAL,
        allocation=props.public_ip_allocation_method or core.STATIC,
        ip_version=props.public_ip_address_version or core.IPV4,
        idle_timeout_in_minutes=(
            core.IDLE_TIMEOUT_MIN
            if props.idle_timeout_in_minutes is None
            else props.idle_timeout_in_minutes
        ),
        zones=tuple(wire.zones or ()),
    )


def render(view: StateView, pip: core.PublicIPAddress) -> dict[str, Any]:
    """A public IP as ARM JSON, with the IP configuration that uses it."""
    user = core.user_of(view, pip)
    props = arm.present(
        provisioningState=pip.provisioning_state,
        resourceGuid=pip.resource_guid or None,
        ipAddress=pip.ip_address or None,
        publicIPAddressVersion=pip.ip_version,
        publicIPAllocationMethod=pip.allocation,
        idleTimeoutInMinutes=pip.idle_timeout_in_minutes,
        ddosSettings={"protectionMode": DDOS_DEFAULT},
        ipConfiguration={"id": user} if user else None,
    )
    body = arm.tracked(pip, TYPE, props)
    body["sku"] = {"name": pip.sku, "tier": pip.sku_tier}
    if pip.zones:
        body["zones"] = list(pip.zones)
    return body


router = APIRouter(route_class=LeanRoute)

KIND = crud.ResourceKind(
    entry=registry.require(TYPE), wire=PublicIPAddressWire, to_domain=to_domain, render=render
)
KINDS = (KIND,)
crud.register(router, KIND)
