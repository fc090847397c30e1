"""privateDnsZoneGroups of a private endpoint on the wire (long-running, like Azure).

A group shows, per zone, the A records it currently keeps there: the endpoint's FQDNs
inside that zone while its connection is Approved, none otherwise.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from privatelink.api import arm, crud
from privatelink.api.arm import ChildWire, Wire
from privatelink.api.deps import caller, control_plane, page_size
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors, registry
from privatelink.core import private_dns as core
from privatelink.core.authorization import Access
from privatelink.core.ids import ResourceId
from privatelink.core.private_endpoint import PrivateEndpoint
from privatelink.core.resource import StateView, get_typed, require
from privatelink.service import ControlPlane

GROUPS = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network"
    "/privateEndpoints/{endpoint}/privateDnsZoneGroups"
)


class RecordSetWire(Wire):
    record_type: str | None = None
    record_set_name: str | None = None
    fqdn: str | None = None
    provisioning_state: str | None = None
    ttl: int | None = None
    ip_addresses: list[str] | None = None


class ZoneConfigProperties(Wire):
    private_dns_zone_id: str | None = None
    record_sets: list[RecordSetWire] | None = None


class ZoneConfigWire(Wire):
    name: str | None = None
    properties: ZoneConfigProperties | None = None


class ZoneGroupProperties(Wire):
    provisioning_state: str | None = None
    private_dns_zone_configs: list[ZoneConfigWire] | None = None


class ZoneGroupWire(ChildWire):
    properties: ZoneGroupProperties | None = None


def _records(view: StateView, group: core.PrivateDnsZoneGroup, zone_id: str) -> list[RecordSetWire]:
    zone = get_typed(view, zone_id, core.PrivateDnsZone)
    if zone is None:
        return []
    return [
        RecordSetWire(
            record_type="A",
            record_set_name=name,
            fqdn=zone.domain if name == core.APEX else f"{name}.{zone.domain}",
            provisioning_state="Succeeded",
            ttl=core.GROUP_RECORD_TTL,
            ip_addresses=list(addresses),
        )
        for name, addresses in core.group_records(view, group, zone)
    ]


def render(view: StateView, group: core.PrivateDnsZoneGroup) -> dict[str, Any]:
    """A zone group as ARM JSON, with the records it keeps in each zone now."""
    return arm.dump(
        ZoneGroupWire(
            id=group.id,
            name=group.name,
            type=core.GROUP_TYPE,
            etag=group.etag,
            properties=ZoneGroupProperties(
                provisioning_state=group.provisioning_state,
                private_dns_zone_configs=[
                    ZoneConfigWire(
                        name=c.name,
                        properties=ZoneConfigProperties(
                            private_dns_zone_id=c.zone_id,
                            record_sets=_records(view, group, c.zone_id),
                        ),
                    )
                    for c in group.configs
                ],
            ),
        )
    )


def to_domain(rid: str, name: str, wire: ZoneGroupWire) -> core.PrivateDnsZoneGroup:
    """The desired group from a PUT body."""
    props = wire.properties or ZoneGroupProperties()
    configs = []
    for item in props.private_dns_zone_configs or []:
        zone_id = item.properties.private_dns_zone_id if item.properties else None
        if not zone_id:
            raise errors.PrivateDnsZoneConfigRequired(id=rid)
        configs.append(core.ZoneConfig(item.name or ResourceId.parse(zone_id).name, zone_id))
    return core.PrivateDnsZoneGroup(id=rid, name=name, location="", configs=tuple(configs))


def _ids(subscription: str, group: str, endpoint: str, name: str | None) -> tuple[str, str]:
    pe = arm.resource_id(subscription, group, "privateEndpoints", endpoint)
    if name is None:
        return str(pe), ""
    rid = arm.resource_id(
        subscription, group, "privateEndpoints", endpoint, "privateDnsZoneGroups", name
    )
    return str(pe), str(rid)


# Routes and template deployments create zone groups through the same workflow.
GROUP_KIND = crud.ResourceKind(
    entry=registry.require(core.GROUP_TYPE), wire=ZoneGroupWire, to_domain=to_domain, render=render
)
KINDS = (GROUP_KIND,)


router = APIRouter(route_class=LeanRoute)


@router.put(GROUPS + "/{name}", name="privateDnsZoneGroups_create_or_update")
def put_group(
    request: Request,
    subscription: str,
    group: str,
    endpoint: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PUT a zone group on an endpoint (long-running)."""
    pe_id, rid = _ids(subscription, group, endpoint, name)
    desired = to_domain(rid, name, arm.parse_body(ZoneGroupWire, body))
    with plane.read() as view:
        pe = require(view, pe_id, PrivateEndpoint)
    return crud.put_resource(request, plane, who, GROUP_KIND, desired, pe.location)


@router.get(GROUPS + "/{name}", name="privateDnsZoneGroups_get")
def get_group(
    subscription: str,
    group: str,
    endpoint: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """GET a zone group."""
    pe_id, rid = _ids(subscription, group, endpoint, name)
    with plane.read() as view:
        require(view, pe_id, PrivateEndpoint)
        return arm.ok(render(view, require(view, rid, core.PrivateDnsZoneGroup)))


@router.delete(GROUPS + "/{name}", name="privateDnsZoneGroups_delete")
def delete_group(
    request: Request,
    subscription: str,
    group: str,
    endpoint: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """DELETE a zone group: its records leave the zones (long-running)."""
    pe_id, rid = _ids(subscription, group, endpoint, name)
    with plane.read() as view:
        pe = get_typed(view, pe_id, PrivateEndpoint)
    location = pe.location if pe else None
    return crud.delete_resource(request, plane, who, rid, core.delete_group, location)


@router.get(GROUPS, name="privateDnsZoneGroups_list")
def list_groups(
    request: Request,
    subscription: str,
    group: str,
    endpoint: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """Zone groups of an endpoint (at most one)."""
    pe_id, _ = _ids(subscription, group, endpoint, None)
    with plane.read() as view:
        pe = require(view, pe_id, PrivateEndpoint)
        items = [
            g
            for g in view.referrers(pe.key, "dnsgroup-pe")
            if isinstance(g, core.PrivateDnsZoneGroup)
        ]
        return arm.page_slice(request, items, size, lambda g: render(view, g))
