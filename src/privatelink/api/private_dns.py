"""privateDnsZones on the wire: zones, their A record sets and virtual network links.

Zones and links are long-running operations in ARM (Azure-AsyncOperation); record sets
are synchronous (200/201, 200/204 on delete). Record sets are listed per type
(`/A`) or all together (`/ALL`, which the SDK spells `aLL`), the zone's SOA first.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from privatelink.api import arm, crud
from privatelink.api.arm import ChildWire, SubResource, TrackedWire, Wire
from privatelink.api.deps import caller, control_plane, page_size
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors, registry
from privatelink.core import private_dns as core
from privatelink.core.authorization import Access
from privatelink.core.ids import ResourceId, is_guid, valid_name, valid_resource_group
from privatelink.core.resource import StateView, get_typed, require
from privatelink.service import ControlPlane

ZONES = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network"
    "/privateDnsZones"
)
ZONE = ZONES + "/{zone}"
MAX_RECORD_SETS = 25000
MAX_LINKS = 1000
MAX_LINKS_WITH_REGISTRATION = 100


class ZoneProperties(Wire):
    max_number_of_record_sets: int | None = None
    number_of_record_sets: int | None = None
    max_number_of_virtual_network_links: int | None = None
    number_of_virtual_network_links: int | None = None
    max_number_of_virtual_network_links_with_registration: int | None = None
    number_of_virtual_network_links_with_registration: int | None = None
    provisioning_state: str | None = None
    internal_id: str | None = None


class ZoneWire(TrackedWire):
    properties: ZoneProperties | None = None


class LinkProperties(Wire):
    virtual_network: SubResource | None = None
    registration_enabled: bool | None = None
    resolution_policy: str | None = None
    virtual_network_link_state: str | None = None
    provisioning_state: str | None = None


class LinkWire(TrackedWire):
    properties: LinkProperties | None = None


class ARecordWire(Wire):
    ipv4_address: str | None = None


class SoaRecordWire(Wire):
    host: str | None = None
    email: str | None = None
    serial_number: int | None = None
    refresh_time: int | None = None
    retry_time: int | None = None
    expire_time: int | None = None
    minimum_ttl: int | None = None


class RecordSetProperties(Wire):
    metadata: dict[str, str] | None = None
    ttl: int | None = None
    fqdn: str | None = None
    is_auto_registered: bool | None = None
    a_records: list[ARecordWire] | None = None
    aaaa_records: list[dict[str, Any]] | None = None
    cname_record: dict[str, Any] | None = None
    mx_records: list[dict[str, Any]] | None = None
    ptr_records: list[dict[str, Any]] | None = None
    soa_record: SoaRecordWire | None = None
    srv_records: list[dict[str, Any]] | None = None
    txt_records: list[dict[str, Any]] | None = None


class RecordSetWire(ChildWire):
    properties: RecordSetProperties | None = None


# --- ids from URLs ------------------------------------------------------------------------


def _zone_id(subscription: str, group: str, zone: str) -> str:
    if not is_guid(subscription):
        raise errors.InvalidSubscriptionId(value=subscription)
    if not valid_resource_group(group):
        raise errors.InvalidResourceGroupName(name=group)
    core.normalize_zone_name(zone)
    return str(ResourceId.build(subscription, group, "privateDnsZones", zone))


def _link_id(subscription: str, group: str, zone: str, name: str) -> str:
    zone_id = _zone_id(subscription, group, zone)
    if not valid_name(name):
        raise errors.InvalidResourceName(name=name)
    return str(ResourceId.parse(zone_id).child("virtualNetworkLinks", name))


def _record_id(subscription: str, group: str, zone: str, record_type: str, name: str) -> str:
    zone_id = _zone_id(subscription, group, zone)
    kind = core.check_record_type(record_type)
    core.normalize_record_name(name, core.normalize_zone_name(zone))
    return str(ResourceId.parse(zone_id).child(kind, name))


# --- rendering ----------------------------------------------------------------------------


def render_zone(view: StateView, zone: core.PrivateDnsZone) -> dict[str, Any]:
    """A zone as ARM JSON, with its record set and link counts."""
    records = len(core.zone_records(view, zone)) + 1  # + the SOA
    links = view.count_referrers(zone.key, "dnslink-zone")
    return arm.dump(
        ZoneWire(
            id=zone.id,
            name=zone.name,
            type=core.ZONE_TYPE,
            location=zone.location,
            tags=zone.tags,
            etag=zone.etag,
            properties=ZoneProperties(
                max_number_of_record_sets=MAX_RECORD_SETS,
                number_of_record_sets=records,
                max_number_of_virtual_network_links=MAX_LINKS,
                number_of_virtual_network_links=links,
                max_number_of_virtual_network_links_with_registration=MAX_LINKS_WITH_REGISTRATION,
                number_of_virtual_network_links_with_registration=0,
                provisioning_state=zone.provisioning_state,
                internal_id=zone.internal_id,
            ),
        )
    )


def render_link(view: StateView, link: core.VirtualNetworkLink) -> dict[str, Any]:
    """A virtual network link as ARM JSON."""
    return arm.dump(
        LinkWire(
            id=link.id,
            name=link.name,
            type=core.LINK_TYPE,
            location=link.location,
            tags=link.tags,
            etag=link.etag,
            properties=LinkProperties(
                virtual_network=SubResource(id=link.virtual_network_id),
                registration_enabled=link.registration_enabled,
                resolution_policy=link.resolution_policy,
                virtual_network_link_state="Completed",
                provisioning_state=link.provisioning_state,
            ),
        )
    )


def _derived_etag(record: core.RecordView) -> str:
    text = f"{record.name}|{record.ttl}|{','.join(record.ipv4_addresses)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def render_record(zone: core.PrivateDnsZone, record: core.RecordView) -> dict[str, Any]:
    """An A record set as ARM JSON (stored addresses plus zone-group ones)."""
    stored = record.stored
    name = stored.name if stored else record.name
    return arm.dump(
        RecordSetWire(
            id=f"{zone.id}/A/{name}",
            name=name,
            type=core.A_TYPE,
            etag=(stored.etag if stored and not record.groups else _derived_etag(record)),
            properties=RecordSetProperties(
                metadata=dict(stored.metadata) if stored else {},
                ttl=record.ttl,
                fqdn=record.fqdn(zone.domain) + ".",
                is_auto_registered=False,
                a_records=[ARecordWire(ipv4_address=ip) for ip in record.ipv4_addresses],
            ),
        )
    )


def render_soa(zone: core.PrivateDnsZone) -> dict[str, Any]:
    """The zone's SOA record set (read-only, as Azure shows it)."""
    times = core.SOA_TIMES
    return arm.dump(
        RecordSetWire(
            id=f"{zone.id}/SOA/@",
            name="@",
            type=core.SOA_TYPE,
            etag=zone.etag,
            properties=RecordSetProperties(
                metadata={},
                ttl=core.SOA_TTL,
                fqdn=zone.domain + ".",
                is_auto_registered=False,
                soa_record=SoaRecordWire(
                    host=core.SOA_HOST,
                    email=core.SOA_EMAIL,
                    serial_number=1,
                    refresh_time=times["refresh"],
                    retry_time=times["retry"],
                    expire_time=times["expire"],
                    minimum_ttl=times["minimum"],
                ),
            ),
        )
    )


# --- wire -> domain -----------------------------------------------------------------------


def _zone_domain(rid: str, name: str, wire: ZoneWire) -> core.PrivateDnsZone:
    return core.PrivateDnsZone(
        id=rid, name=name, location=wire.location or "", tags=wire.tags or {}
    )


def _link_domain(rid: str, name: str, wire: LinkWire) -> core.VirtualNetworkLink:
    props = wire.properties or LinkProperties()
    if props.virtual_network is None or not props.virtual_network.id:
        raise errors.InvalidRequestContent("properties.virtualNetwork.id is required.")
    return core.VirtualNetworkLink(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        virtual_network_id=props.virtual_network.id,
        registration_enabled=bool(props.registration_enabled),
        resolution_policy=props.resolution_policy or "Default",
    )


def _record_domain(rid: str, name: str, wire: RecordSetWire) -> core.ARecordSet:
    props = wire.properties or RecordSetProperties()
    arm.reject_unsupported(
        {
            "aaaaRecords": props.aaaa_records,
            "cnameRecord": props.cname_record,
            "mxRecords": props.mx_records,
            "ptrRecords": props.ptr_records,
            "srvRecords": props.srv_records,
            "txtRecords": props.txt_records,
        }
    )
    addresses = []
    for record in props.a_records or []:
        if not record.ipv4_address:
            raise errors.InvalidARecord(value=record.ipv4_address or "")
        addresses.append(record.ipv4_address)
    return core.ARecordSet(
        id=rid,
        name=name,
        location="",
        ttl=3600 if props.ttl is None else props.ttl,
        ipv4_addresses=tuple(addresses),
        metadata=props.metadata or {},
    )


def _render_record_set(view: StateView, record: core.ARecordSet) -> dict[str, Any]:
    zone = core.zone_of(view, record.id)
    served = core.record_view(view, zone, record.name)
    return render_record(zone, served or core.RecordView(record.name, record.ttl, (), record))


# The kinds (routes below and template deployments use the same workflows).
ZONE_KIND = crud.ResourceKind(
    entry=registry.require(core.ZONE_TYPE),
    wire=ZoneWire,
    to_domain=_zone_domain,
    render=render_zone,
)
LINK_KIND = crud.ResourceKind(
    entry=registry.require(core.LINK_TYPE),
    wire=LinkWire,
    to_domain=_link_domain,
    render=render_link,
)
RECORD_KIND = crud.ResourceKind(
    entry=registry.require(core.A_TYPE),
    wire=RecordSetWire,
    to_domain=_record_domain,
    render=_render_record_set,
)
KINDS = (ZONE_KIND, LINK_KIND, RECORD_KIND)


# --- routes -------------------------------------------------------------------------------

router = APIRouter(route_class=LeanRoute)


@router.put(ZONE, name="privateDnsZones_create_or_update")
def put_zone(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PUT a private DNS zone (long-running)."""
    rid = _zone_id(subscription, group, zone)
    desired = _zone_domain(rid, zone, arm.parse_body(ZoneWire, body))
    return crud.put_resource(request, plane, who, ZONE_KIND, desired, core.GLOBAL)


@router.patch(ZONE, name="privateDnsZones_update")
def patch_zone(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PATCH a zone: tags."""
    rid = _zone_id(subscription, group, zone)
    wire = arm.parse_body(ZoneWire, body)
    with plane.read() as view:
        current = require(view, rid, core.PrivateDnsZone)
    tags = current.tags if wire.tags is None else wire.tags
    desired = core.PrivateDnsZone(id=rid, name=zone, location=current.location, tags=tags)
    return crud.put_resource(request, plane, who, ZONE_KIND, desired, core.GLOBAL, "patch")


@router.get(ZONE, name="privateDnsZones_get")
def get_zone(
    subscription: str, group: str, zone: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """GET a zone."""
    rid = _zone_id(subscription, group, zone)
    with plane.read() as view:
        return arm.ok(render_zone(view, require(view, rid, core.PrivateDnsZone)))


@router.delete(ZONE, name="privateDnsZones_delete")
def delete_zone(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """DELETE a zone (refused while virtual networks are linked)."""
    rid = _zone_id(subscription, group, zone)
    return crud.delete_resource(request, plane, who, rid, core.delete_zone, core.GLOBAL)


def _page_size(request: Request, size: int) -> int:
    """The server's page size, or the caller's `$top` (1-1000) when smaller."""
    top = request.query_params.get("$top")
    if top is None:
        return size
    if not (top.isascii() and top.isdigit()) or not 1 <= int(top) <= 1000:
        raise errors.InvalidRequestContent(f"$top '{top[:20]}' must be 1 to 1000.")
    return min(size, int(top))


def _list_zones(
    request: Request, plane: ControlPlane, subscription: str, group: str | None, size: int
) -> Response:
    arm.check_subscription(subscription)
    size = _page_size(request, size)
    result = plane.repo.list(core.ZONE_TYPE, subscription, group, arm.skip_token(request), size)
    with plane.read() as view:
        items = [render_zone(view, z) for z in result.items if isinstance(z, core.PrivateDnsZone)]
    return arm.page(request, items, result.next_token)


@router.get(ZONES, name="privateDnsZones_list_by_resource_group")
def list_zones_in_group(
    request: Request,
    subscription: str,
    group: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """Zones of a resource group."""
    return _list_zones(request, plane, subscription, group, size)


@router.get(
    "/subscriptions/{subscription}/providers/Microsoft.Network/privateDnsZones",
    name="privateDnsZones_list",
)
def list_zones(
    request: Request,
    subscription: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """Zones of a subscription."""
    return _list_zones(request, plane, subscription, None, size)


# Links (declared before the record set routes: `virtualNetworkLinks` is not a type).

LINKS = ZONE + "/virtualNetworkLinks"


@router.put(LINKS + "/{name}", name="virtualNetworkLinks_create_or_update")
def put_link(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PUT a virtual network link (long-running)."""
    rid = _link_id(subscription, group, zone, name)
    desired = _link_domain(rid, name, arm.parse_body(LinkWire, body))
    return crud.put_resource(request, plane, who, LINK_KIND, desired, core.GLOBAL)


@router.patch(LINKS + "/{name}", name="virtualNetworkLinks_update")
def patch_link(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PATCH a link: tags, registrationEnabled, resolutionPolicy."""
    rid = _link_id(subscription, group, zone, name)
    wire = arm.parse_body(LinkWire, body)
    with plane.read() as view:
        current = require(view, rid, core.VirtualNetworkLink)
    props = wire.properties or LinkProperties()
    desired = core.VirtualNetworkLink(
        id=rid,
        name=name,
        location=current.location,
        tags=current.tags if wire.tags is None else wire.tags,
        virtual_network_id=(
            props.virtual_network.id
            if props.virtual_network and props.virtual_network.id
            else current.virtual_network_id
        ),
        registration_enabled=(
            current.registration_enabled
            if props.registration_enabled is None
            else props.registration_enabled
        ),
        resolution_policy=props.resolution_policy or current.resolution_policy,
    )
    return crud.put_resource(request, plane, who, LINK_KIND, desired, core.GLOBAL, "patch")


@router.get(LINKS + "/{name}", name="virtualNetworkLinks_get")
def get_link(
    subscription: str,
    group: str,
    zone: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """GET a link."""
    rid = _link_id(subscription, group, zone, name)
    with plane.read() as view:
        core.zone_of(view, rid)
        return arm.ok(render_link(view, require(view, rid, core.VirtualNetworkLink)))


@router.delete(LINKS + "/{name}", name="virtualNetworkLinks_delete")
def delete_link(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """DELETE a link (long-running)."""
    rid = _link_id(subscription, group, zone, name)
    return crud.delete_resource(request, plane, who, rid, core.delete_link, core.GLOBAL)


@router.get(LINKS, name="virtualNetworkLinks_list")
def list_links(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """Links of a zone."""
    zone_id = _zone_id(subscription, group, zone)
    with plane.read() as view:
        found = require(view, zone_id, core.PrivateDnsZone)
        links = [
            x
            for x in view.referrers(found.key, "dnslink-zone")
            if isinstance(x, core.VirtualNetworkLink)
        ]
        return arm.page_slice(request, links, size, lambda x: render_link(view, x))


# Record sets.


def _record_body(view: StateView, zone: core.PrivateDnsZone, name: str) -> dict[str, Any]:
    record = core.record_view(view, zone, name)
    if record is None:
        raise errors.ResourceNotFound(id=f"{zone.id}/A/{name}")
    return render_record(zone, record)


def _record_response(
    view: StateView, zone: core.PrivateDnsZone, name: str, status: int = 200
) -> Response:
    return arm.ok(_record_body(view, zone, name), status)


@router.put(ZONE + "/{record_type}/{name}", name="recordSets_create_or_update")
def put_record_set(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    record_type: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PUT a record set (A only; synchronous, as in Azure)."""
    if record_type.upper() == "SOA":
        raise errors.UnsupportedRecordType(type="SOA (read-only)")
    rid = _record_id(subscription, group, zone, record_type, name)
    desired = _record_domain(rid, name, arm.parse_body(RecordSetWire, body))
    out = plane.change(
        who,
        rid,
        "put",
        core.create_or_update_record_set,
        desired,
        precondition=arm.precondition_for(request, rid),
        # Built before the commit: no "failed" for a stored change.
        render=lambda view: _record_body(view, core.zone_of(view, rid), name),
    )
    return arm.ok(out.rendered, 200 if out.existed else 201)


@router.patch(ZONE + "/{record_type}/{name}", name="recordSets_update")
def patch_record_set(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    record_type: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """PATCH a record set: what the body sets replaces what is stored."""
    rid = _record_id(subscription, group, zone, record_type, name)
    wire = arm.parse_body(RecordSetWire, body)
    with plane.read() as view:
        current = require(view, rid, core.ARecordSet)
    props = wire.properties or RecordSetProperties()
    patched = _record_domain(rid, current.name, wire)
    desired = core.ARecordSet(
        id=rid,
        name=current.name,
        location="",
        ttl=current.ttl if props.ttl is None else patched.ttl,
        ipv4_addresses=(
            current.ipv4_addresses if props.a_records is None else patched.ipv4_addresses
        ),
        metadata=current.metadata if props.metadata is None else patched.metadata,
    )
    out = plane.change(
        who,
        rid,
        "patch",
        core.create_or_update_record_set,
        desired,
        precondition=arm.precondition_for(request, rid),
        render=lambda view: _record_body(view, core.zone_of(view, rid), current.name),
    )
    return arm.ok(out.rendered)


@router.get(ZONE + "/{record_type}/{name}", name="recordSets_get")
def get_record_set(
    subscription: str,
    group: str,
    zone: str,
    record_type: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """GET a record set (A, or the zone's SOA at '@')."""
    zone_id = _zone_id(subscription, group, zone)
    with plane.read() as view:
        found = require(view, zone_id, core.PrivateDnsZone)
        if record_type.upper() == "SOA":
            if name != core.APEX:
                raise errors.ResourceNotFound(id=f"{zone_id}/SOA/{name}")
            return arm.ok(render_soa(found))
        _record_id(subscription, group, zone, record_type, name)
        return _record_response(view, found, name)


@router.delete(ZONE + "/{record_type}/{name}", name="recordSets_delete")
def delete_record_set(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    record_type: str,
    name: str,
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
) -> Response:
    """DELETE a record set: 200, or 204 when there was none (synchronous)."""
    if record_type.upper() == "SOA":
        raise errors.UnsupportedRecordType(type="SOA (read-only)")
    rid = _record_id(subscription, group, zone, record_type, name)
    with plane.read() as view:
        current = get_typed(view, rid, core.ARecordSet)
    if current is None:
        arm.check_preconditions(request, None)
        return Response(status_code=204)
    plane.change(
        who,
        rid,
        "delete",
        core.delete_record_set,
        rid,
        precondition=arm.precondition_for(request, rid),
    )
    return Response(status_code=200)


@router.get(ZONE + "/{record_type}", name="recordSets_list")
def list_record_sets(
    request: Request,
    subscription: str,
    group: str,
    zone: str,
    record_type: str,
    plane: ControlPlane = Depends(control_plane),
    size: int = Depends(page_size),
) -> Response:
    """Record sets of a zone: of one type (`/A`, `/SOA`) or all (`/ALL`, `/recordsets`)."""
    zone_id = _zone_id(subscription, group, zone)
    kind = record_type.upper()
    if kind not in ("ALL", "RECORDSETS", "SOA"):
        kind = core.check_record_type(record_type)
    suffix = (request.query_params.get("$recordsetnamesuffix") or "").strip(".").lower()
    size = _page_size(request, size)
    with plane.read() as view:
        found = require(view, zone_id, core.PrivateDnsZone)
        items: list[Any] = []
        if kind in ("ALL", "RECORDSETS", "SOA"):
            items.append(None)  # the SOA
        if kind != "SOA":
            items.extend(core.zone_records(view, found))
        if suffix:
            items = [
                r
                for r in items
                if r is not None
                and (r.fqdn(found.domain) == suffix or r.fqdn(found.domain).endswith("." + suffix))
            ]
        return arm.page_slice(
            request,
            items,
            size,
            lambda r: render_soa(found) if r is None else render_record(found, r),
        )
