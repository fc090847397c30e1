"""Private DNS: zones, A record sets, virtual network links and endpoint zone groups.

A zone (`privateDnsZones/contoso.example`) holds A record sets and is linked to the
virtual networks that may resolve it. A private endpoint's zone group names zones; while
the endpoint's connection is Approved the group contributes one A record per endpoint
FQDN (customDnsConfigs) that falls inside a named zone. Those records are derived, never
stored: approval, rejection and deletion change what a zone answers without rewriting it.
`answers_by_vnet` is what a VNet's resolver serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import AddressValueError, IPv4Address

from privatelink.core import errors
from privatelink.core.ids import ResourceId, key, valid_name
from privatelink.core.private_endpoint import PrivateEndpoint, is_connected
from privatelink.core.resource import Changes, Context, Resource, StateView, get_typed
from privatelink.core.virtual_network import VirtualNetwork

ZONE_TYPE = "Microsoft.Network/privateDnsZones"
LINK_TYPE = "Microsoft.Network/privateDnsZones/virtualNetworkLinks"
A_TYPE = "Microsoft.Network/privateDnsZones/A"
SOA_TYPE = "Microsoft.Network/privateDnsZones/SOA"
GROUP_TYPE = "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"
GLOBAL = "global"
APEX = "@"
GROUP_RECORD_TTL = 10  # what Azure gives the records of a zone group
MAX_ZONE_CONFIGS = 5  # zone configurations per zone group (Azure's limit)
MAX_TTL = 2147483647
# Azure's SOA of a private zone (served in negative answers).
SOA_HOST = "azureprivatedns.net"
SOA_EMAIL = "azureprivatedns-host.microsoft.com"
SOA_TIMES = {"refresh": 3600, "retry": 300, "expire": 2419200, "minimum": 10}
SOA_TTL = 3600

_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
SUPPORTED_RECORD_TYPES = ("A",)


@dataclass(frozen=True, kw_only=True)
class PrivateDnsZone(Resource):
    """A private DNS zone; its name is the domain (lower-case, no trailing dot)."""

    internal_id: str = ""

    @property
    def domain(self) -> str:
        """The zone's domain name, lower-case."""
        return self.name.lower()


@dataclass(frozen=True, kw_only=True)
class VirtualNetworkLink(Resource):
    """A zone made resolvable inside one virtual network."""

    virtual_network_id: str = ""
    registration_enabled: bool = False
    resolution_policy: str = "Default"

    @property
    def zone_id(self) -> str:
        """The linked zone."""
        return str(self.rid.parent())


@dataclass(frozen=True, kw_only=True)
class ARecordSet(Resource):
    """A record set of type A, stored (the user's own), named relative to its zone."""

    ttl: int = 3600
    ipv4_addresses: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def zone_id(self) -> str:
        """The zone holding it."""
        return str(self.rid.parent())


@dataclass(frozen=True)
class ZoneConfig:
    """One zone a zone group writes into."""

    name: str
    zone_id: str


@dataclass(frozen=True, kw_only=True)
class PrivateDnsZoneGroup(Resource):
    """A private endpoint's zone group (location unused: it is a child resource)."""

    configs: tuple[ZoneConfig, ...] = ()

    @property
    def endpoint_id(self) -> str:
        """The endpoint owning the group."""
        return str(self.rid.parent())


@dataclass(frozen=True)
class RecordView:
    """An A record set as it is served: stored addresses plus zone-group ones."""

    name: str  # relative: "@" or "svc" or "*.svc"
    ttl: int
    ipv4_addresses: tuple[str, ...]
    stored: ARecordSet | None = None
    groups: tuple[str, ...] = ()  # zone groups contributing addresses

    def fqdn(self, zone: str) -> str:
        """The full name (lower-case, no trailing dot)."""
        return zone if self.name == APEX else f"{self.name.lower()}.{zone}"


@dataclass(frozen=True)
class ZoneAnswers:
    """What one zone answers: its domain and A records by full name."""

    zone: str  # lower-case, no trailing dot
    records: dict[str, tuple[int, tuple[str, ...]]]  # fqdn -> (ttl, ipv4 addresses)


# --- names --------------------------------------------------------------------------------


def normalize_zone_name(name: str) -> str:
    """A valid zone name in its canonical form (lower-case, no trailing dot)."""
    # No trailing dot: the name is also the resource name in ids and URLs.
    domain = name.lower() if name else ""
    labels = domain.split(".")
    ok = (
        len(domain) <= 253
        and len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )
    if not ok:
        raise errors.InvalidPrivateDnsZoneName(name=name)
    return domain


def normalize_record_name(name: str, zone: str) -> str:
    """A valid relative record set name (lower-case; '@' for the apex)."""
    relative = name.lower() if name else ""
    if relative == APEX:
        return APEX
    labels = relative.split(".")
    ok = (
        bool(relative)
        and len(relative) + 1 + len(zone) <= 253
        and all(
            _LABEL.fullmatch(label) or (i == 0 and label == "*") for i, label in enumerate(labels)
        )
    )
    if not ok:
        raise errors.InvalidRecordSetName(name=name, zone=zone)
    return relative


def check_record_type(record_type: str) -> str:
    """The canonical (upper-case) type of a record set path segment we support."""
    upper = record_type.upper()
    if upper not in SUPPORTED_RECORD_TYPES:
        raise errors.UnsupportedRecordType(type=record_type)
    return upper


def relative_name(fqdn: str, zone: str) -> str | None:
    """The name of `fqdn` relative to `zone` ('@' at the apex), or None when outside."""
    name = fqdn.strip().rstrip(".").lower()
    if name == zone:
        return APEX
    if name.endswith("." + zone):
        return name[: -len(zone) - 1]
    return None


# --- zones --------------------------------------------------------------------------------


def _put(resource: Resource) -> Changes:
    """A change set writing one resource."""
    changes = Changes()
    changes.put(resource)
    return changes


def _delete_if(view: StateView, resource_id: str, cls: type[Resource]) -> Changes:
    """Delete a resource of `cls` if it exists (DELETE is idempotent)."""
    changes = Changes()
    if get_typed(view, resource_id, cls) is not None:
        changes.delete(resource_id)
    return changes


def _check_global(location: str) -> str:
    if not location or not location.strip():
        raise errors.LocationRequired()
    normal = location.replace(" ", "").lower()
    if normal != GLOBAL:
        raise errors.PrivateDnsZoneLocationMustBeGlobal(location=location)
    return GLOBAL


def create_or_update_zone(view: StateView, ctx: Context, desired: PrivateDnsZone) -> Changes:
    """PUT a zone: only tags change on an existing one."""
    normalize_zone_name(desired.name)
    location = _check_global(desired.location)
    existing = get_typed(view, desired.id, PrivateDnsZone)
    if existing is not None:
        zone = replace(existing, tags=desired.tags)
    else:
        zone = replace(
            desired, location=location, internal_id=ctx.new_guid(), provisioning_state="Succeeded"
        )
    return _put(zone)


def delete_zone(view: StateView, ctx: Context, zone_id: str) -> Changes:
    """DELETE a zone with its record sets; refused while virtual networks are linked."""
    changes = Changes()
    zone = get_typed(view, zone_id, PrivateDnsZone)
    if zone is None:
        return changes
    links = view.count_referrers(zone.key, "dnslink-zone")
    if links:
        raise errors.PrivateDnsZoneHasVirtualNetworkLinks(id=zone.id, count=links)
    for record in view.referrers(zone.key, "dnsrecord-zone"):
        changes.delete(record.id)
    changes.delete(zone.id)
    return changes


# --- virtual network links ------------------------------------------------------------------


def create_or_update_link(view: StateView, ctx: Context, desired: VirtualNetworkLink) -> Changes:
    """PUT a link: the VNet must exist, be linked to this zone once and to no other zone
    of the same name."""
    location = _check_global(desired.location)
    if not valid_name(desired.name):
        raise errors.InvalidResourceName(name=desired.name)
    zone = get_typed(view, desired.zone_id, PrivateDnsZone)
    if zone is None:
        raise errors.ParentResourceNotFound(id=desired.zone_id)
    if desired.registration_enabled:
        raise errors.UnsupportedProperty(
            name="registrationEnabled",
            why="automatic registration of VM records is not implemented; use false.",
        )
    if desired.resolution_policy not in ("Default", "NxDomainRedirect"):
        raise errors.InvalidRequestContent(
            f"resolutionPolicy '{desired.resolution_policy}' is invalid: use Default or "
            "NxDomainRedirect."
        )
    try:
        vnet_rid = ResourceId.parse(desired.virtual_network_id)
    except errors.ArmError:
        raise errors.InvalidResourceId(
            desired.virtual_network_id, expected="virtualNetworks"
        ) from None
    if not vnet_rid.is_type("virtualNetworks"):
        raise errors.InvalidResourceId(desired.virtual_network_id, expected="virtualNetworks")
    vnet = get_typed(view, desired.virtual_network_id, VirtualNetwork)
    existing = get_typed(view, desired.id, VirtualNetworkLink)
    if existing is not None and key(existing.virtual_network_id) != vnet_rid.key:
        raise errors.VirtualNetworkLinkCannotChange(id=existing.id)
    if vnet is None:
        raise errors.VirtualNetworkLinkTargetNotFound(
            vnet=desired.virtual_network_id, id=desired.id
        )
    for other in view.referrers(vnet.key, "dnslink-vnet"):
        if not isinstance(other, VirtualNetworkLink) or other.key == desired.key:
            continue
        if key(other.zone_id) == zone.key:
            raise errors.VirtualNetworkLinkAlreadyExists(
                zone=zone.name, vnet=vnet.id, link=other.id
            )
        other_zone = ResourceId.parse(other.zone_id).name.lower()
        if other_zone == zone.domain:
            raise errors.VirtualNetworkLinkOverlappingZones(
                vnet=vnet.id, zone=zone.domain, other=other_zone
            )
    link = replace(
        desired,
        location=location,
        virtual_network_id=vnet.id,
        etag=existing.etag if existing else "",
        provisioning_state="Succeeded",
    )
    return _put(link)


def delete_link(view: StateView, ctx: Context, link_id: str) -> Changes:
    """DELETE a link."""
    return _delete_if(view, link_id, VirtualNetworkLink)


# --- record sets ----------------------------------------------------------------------------


def create_or_update_record_set(view: StateView, ctx: Context, desired: ARecordSet) -> Changes:
    """PUT an A record set (a synchronous operation in Azure)."""
    zone = get_typed(view, desired.zone_id, PrivateDnsZone)
    if zone is None:
        raise errors.ParentResourceNotFound(id=desired.zone_id)
    normalize_record_name(desired.name, zone.domain)
    if not 0 <= desired.ttl <= MAX_TTL:
        raise errors.InvalidRecordSetTtl(ttl=desired.ttl)
    addresses: list[str] = []
    for value in desired.ipv4_addresses:
        try:
            addresses.append(str(IPv4Address(value.strip())))
        except (AddressValueError, ValueError):
            raise errors.InvalidARecord(value=value) from None
    record = replace(
        desired,
        location="",
        ipv4_addresses=tuple(dict.fromkeys(addresses)),
        provisioning_state="Succeeded",
    )
    return _put(record)


def delete_record_set(view: StateView, ctx: Context, record_id: str) -> Changes:
    """DELETE an A record set (zone-group records stay while their endpoint is approved)."""
    return _delete_if(view, record_id, ARecordSet)


# --- zone groups ----------------------------------------------------------------------------


def create_or_update_group(view: StateView, ctx: Context, desired: PrivateDnsZoneGroup) -> Changes:
    """PUT a private endpoint's zone group: one per endpoint, existing zones, at most 5."""
    endpoint = get_typed(view, desired.endpoint_id, PrivateEndpoint)
    if endpoint is None:
        raise errors.ParentResourceNotFound(id=desired.endpoint_id)
    if not valid_name(desired.name):
        raise errors.InvalidResourceName(name=desired.name)
    if not desired.configs:
        raise errors.PrivateDnsZoneConfigRequired(id=desired.id)
    if len(desired.configs) > MAX_ZONE_CONFIGS:
        raise errors.PrivateDnsZoneConfigsLimitReached(
            limit=MAX_ZONE_CONFIGS, count=len(desired.configs)
        )
    seen_names: set[str] = set()
    seen_zones: set[str] = set()
    configs = []
    for config in desired.configs:
        if not valid_name(config.name):
            raise errors.InvalidResourceName(name=config.name)
        if config.name.lower() in seen_names:
            raise errors.DuplicateResourceName(id=desired.id, name=config.name)
        seen_names.add(config.name.lower())
        try:
            zone_rid = ResourceId.parse(config.zone_id)
        except errors.ArmError:
            raise errors.InvalidResourceId(config.zone_id, expected="privateDnsZones") from None
        if not zone_rid.is_type("privateDnsZones"):
            raise errors.InvalidResourceId(config.zone_id, expected="privateDnsZones")
        zone = get_typed(view, config.zone_id, PrivateDnsZone)
        if zone is None:
            raise errors.PrivateDnsZoneNotFound(zone=config.zone_id, id=desired.id)
        if zone.key in seen_zones:
            raise errors.DuplicatePrivateDnsZoneInGroup(zone=zone.id, id=desired.id)
        seen_zones.add(zone.key)
        configs.append(ZoneConfig(config.name, zone.id))
    for other in view.referrers(endpoint.key, "dnsgroup-pe"):
        if other.key != desired.key:
            raise errors.OnlyOnePrivateDnsZoneGroupPerPrivateEndpointAllowed(
                endpoint=endpoint.id, other=other.name
            )
    existing = get_typed(view, desired.id, PrivateDnsZoneGroup)
    group = replace(
        desired,
        location="",
        configs=tuple(configs),
        etag=existing.etag if existing else "",
        provisioning_state="Succeeded",
    )
    return _put(group)


def delete_group(view: StateView, ctx: Context, group_id: str) -> Changes:
    """DELETE a zone group: its records leave the zones with it."""
    return _delete_if(view, group_id, PrivateDnsZoneGroup)


# --- what a zone holds and a VNet resolves ---------------------------------------------------


def group_records(
    view: StateView, group: PrivateDnsZoneGroup, zone: PrivateDnsZone
) -> list[tuple[str, tuple[str, ...]]]:
    """(relative name, addresses) a group puts into `zone` now: only while approved."""
    endpoint = get_typed(view, group.endpoint_id, PrivateEndpoint)
    if endpoint is None or not is_connected(endpoint):
        return []
    if not any(key(c.zone_id) == zone.key for c in group.configs):
        return []
    out = []
    for config in endpoint.custom_dns_configs:
        name = relative_name(config.fqdn, zone.domain)
        if name is not None and config.ip_addresses:
            out.append((name, config.ip_addresses))
    return out


def zone_records(view: StateView, zone: PrivateDnsZone) -> list[RecordView]:
    """Every A record set of a zone as served: stored ones merged with zone-group ones."""
    merged: dict[str, RecordView] = {}
    for stored in view.referrers(zone.key, "dnsrecord-zone"):
        if isinstance(stored, ARecordSet):
            name = stored.name.lower()
            merged[name] = RecordView(name, stored.ttl, stored.ipv4_addresses, stored)
    for group in view.referrers(zone.key, "dnsgroup-zone"):
        if not isinstance(group, PrivateDnsZoneGroup):
            continue
        for name, addresses in group_records(view, group, zone):
            current = merged.get(name)
            if current is None:
                merged[name] = RecordView(name, GROUP_RECORD_TTL, addresses, groups=(group.id,))
            else:
                merged[name] = replace(
                    current,
                    ipv4_addresses=tuple(dict.fromkeys((*current.ipv4_addresses, *addresses))),
                    groups=(*current.groups, group.id),
                )
    return sorted(merged.values(), key=lambda r: (r.name != APEX, r.name))


def record_view(view: StateView, zone: PrivateDnsZone, name: str) -> RecordView | None:
    """One A record set as served, or None."""
    wanted = name.lower()
    return next((r for r in zone_records(view, zone) if r.name == wanted), None)


def answers_by_vnet(
    view: StateView, links: Iterable[VirtualNetworkLink]
) -> dict[str, tuple[ZoneAnswers, ...]]:
    """What each linked VNet resolves: VNet key -> its zones with their A records."""
    zones: dict[str, ZoneAnswers | None] = {}
    out: dict[str, list[ZoneAnswers]] = {}
    for link in links:
        zone_key = key(link.zone_id)
        if zone_key not in zones:
            zone = get_typed(view, link.zone_id, PrivateDnsZone)
            zones[zone_key] = None
            if zone is not None:
                records = {
                    r.fqdn(zone.domain): (r.ttl, r.ipv4_addresses) for r in zone_records(view, zone)
                }
                zones[zone_key] = ZoneAnswers(zone.domain, records)
        answers = zones[zone_key]
        if answers is not None:
            out.setdefault(key(link.virtual_network_id), []).append(answers)
    return {vnet: tuple(items) for vnet, items in out.items()}


# --- what the store indexes -------------------------------------------------------------------


def link_references(link: VirtualNetworkLink) -> list[tuple[str, str]]:
    """Index entries of a virtual network link: its zone and its network."""
    return [("dnslink-zone", key(link.zone_id)), ("dnslink-vnet", key(link.virtual_network_id))]


def record_set_references(record: ARecordSet) -> list[tuple[str, str]]:
    """Index entries of a record set: its zone."""
    return [("dnsrecord-zone", key(record.zone_id))]


def group_references(group: PrivateDnsZoneGroup) -> list[tuple[str, str]]:
    """Index entries of a zone group: its endpoint and the zones it names."""
    return [
        ("dnsgroup-pe", key(group.endpoint_id)),
        *(("dnsgroup-zone", key(c.zone_id)) for c in group.configs),
    ]


def zone_of(view: StateView, child_id: str) -> PrivateDnsZone:
    """The zone of a record set or link id (404 ParentResourceNotFound when absent)."""
    parent = str(ResourceId.parse(child_id).parent())
    zone = get_typed(view, parent, PrivateDnsZone)
    if zone is None:
        raise errors.ParentResourceNotFound(id=parent)
    return zone


__all__ = [
    "ARecordSet",
    "PrivateDnsZone",
    "PrivateDnsZoneGroup",
    "RecordView",
    "VirtualNetworkLink",
    "ZoneAnswers",
    "ZoneConfig",
    "answers_by_vnet",
]
