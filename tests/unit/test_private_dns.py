"""Private DNS core: names, zones, links, record sets, zone groups and what VNets resolve."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pl_world import S1, S2, World, arm_id, make_vnet, pe_id, pls_id, vnet_id

from privatelink.core import errors
from privatelink.core import private_dns as dns
from privatelink.core import private_link as pl
from privatelink.core import virtual_network as vnm

ZONE = "contoso.example"


def zone_id(name: str = ZONE, sub: str = S2, rg: str = "rg") -> str:
    return arm_id(sub, "privateDnsZones", name, rg)


def make_zone(name: str = ZONE, sub: str = S2, rg: str = "rg") -> dns.PrivateDnsZone:
    return dns.PrivateDnsZone(id=zone_id(name, sub, rg), name=name, location="global")


def make_link(
    name: str, vnet: str, zone: str = ZONE, sub: str = S2, rg: str = "rg", **kw: object
) -> dns.VirtualNetworkLink:
    return dns.VirtualNetworkLink(
        id=f"{zone_id(zone, sub, rg)}/virtualNetworkLinks/{name}",
        name=name,
        location="global",
        virtual_network_id=vnet,
        **kw,  # type: ignore[arg-type]
    )


def make_a(name: str, *ips: str, ttl: int = 60, zone: str = ZONE) -> dns.ARecordSet:
    return dns.ARecordSet(
        id=f"{zone_id(zone)}/A/{name}", name=name, location="", ttl=ttl, ipv4_addresses=ips
    )


def make_group(name: str = "default", *zones: str, pe: str = "pe1") -> dns.PrivateDnsZoneGroup:
    return dns.PrivateDnsZoneGroup(
        id=f"{pe_id(pe)}/privateDnsZoneGroups/{name}",
        name=name,
        location="",
        configs=tuple(dns.ZoneConfig(f"c{i}", z) for i, z in enumerate(zones or (zone_id(),))),
    )


def answers(w: World) -> dict[str, dict[str, dict[str, tuple[int, tuple[str, ...]]]]]:
    with w.repo.read() as view:
        table = dns.answers_by_vnet(view, w.repo.iter_all(dns.LINK_TYPE))
    return {v: {z.zone: z.records for z in zones} for v, zones in table.items()}


@pytest.fixture
def dw(world: World) -> World:
    """Provider with `pls1` (fqdns in and out of the zone), a consumer VNet `vc` in S2 with a
    pending endpoint `pe1`, and the zone contoso.example in S2."""
    world.provider()
    world.consumer()
    world.create_pls(fqdns=(f"svc.{ZONE}", ZONE, "elsewhere.example.net"))
    world.create_pe(world.pls().alias)
    world.run(dns.create_or_update_zone, make_zone())
    return world


def _set_status(w: World, status: str) -> None:
    (conn,) = w.connections()
    w.run(pl.update_connection, pls_id(), conn.name, status, None, None)


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("Contoso.Example", "contoso.example"), ("privatelink.blob.core.windows.net", None)],
)
def test_zone_names_normalize(raw: str, normal: str | None) -> None:
    assert dns.normalize_zone_name(raw) == (normal or raw)


@pytest.mark.parametrize(
    "bad",
    ["", "contoso", "-a.example", "a-.example", "a..example", "a.123", "x" * 64 + ".com", "a.b."],
)
def test_bad_zone_names_are_refused(bad: str) -> None:
    with pytest.raises(errors.InvalidPrivateDnsZoneName):
        dns.normalize_zone_name(bad)


def test_record_names() -> None:
    assert dns.normalize_record_name("@", ZONE) == "@"
    assert dns.normalize_record_name("SVC.Api", ZONE) == "svc.api"
    assert dns.normalize_record_name("*.svc", ZONE) == "*.svc"
    for bad in ("", "a..b", "svc.*", "-x", "x" * 64, ("a." * 120) + "b", "svc.", " svc"):
        with pytest.raises(errors.InvalidRecordSetName):
            dns.normalize_record_name(bad, ZONE)
    assert dns.relative_name("SVC.contoso.example.", ZONE) == "svc"
    assert dns.relative_name("contoso.example", ZONE) == "@"
    assert dns.relative_name("notcontoso.example", ZONE) is None


@given(st.text(max_size=300))
def test_name_checks_only_raise_their_own_errors(text: str) -> None:
    for check in (dns.normalize_zone_name, lambda t: dns.normalize_record_name(t, ZONE)):
        with contextlib.suppress(errors.InvalidPrivateDnsZoneName, errors.InvalidRecordSetName):
            check(text)


# --- zones, links, record sets ---------------------------------------------------------------


def test_zone_is_global_and_keeps_its_internal_id(world: World) -> None:
    world.refuse(
        errors.PrivateDnsZoneLocationMustBeGlobal,
        "PrivateDnsZoneLocationMustBeGlobal",
        400,
        dns.create_or_update_zone,
        dns.PrivateDnsZone(id=zone_id(), name=ZONE, location="eastus"),
    )
    world.run(dns.create_or_update_zone, make_zone())
    first = world.typed(zone_id(), dns.PrivateDnsZone)
    world.run(dns.create_or_update_zone, make_zone())
    again = world.typed(zone_id(), dns.PrivateDnsZone)
    assert first.internal_id == again.internal_id != ""
    assert again.location == "global"


def test_link_rules(dw: World) -> None:
    vc = vnet_id("vc", S2)
    dw.refuse(
        errors.VirtualNetworkLinkTargetNotFound,
        "VirtualNetworkLinkTargetNotFound",
        400,
        dns.create_or_update_link,
        make_link("l1", vnet_id("ghost", S2)),
    )
    dw.refuse(
        errors.ParentResourceNotFound,
        "ParentResourceNotFound",
        404,
        dns.create_or_update_link,
        make_link("l1", vc, zone="missing.example"),
    )
    dw.refuse(
        errors.UnsupportedProperty,
        "UnsupportedProperty",
        400,
        dns.create_or_update_link,
        make_link("l1", vc, registration_enabled=True),
    )
    dw.run(dns.create_or_update_link, make_link("l1", vc))
    dw.run(dns.create_or_update_link, make_link("l1", vc))  # idempotent PUT
    dw.refuse(
        errors.VirtualNetworkLinkAlreadyExists,
        "VirtualNetworkLinkAlreadyExists",
        409,
        dns.create_or_update_link,
        make_link("l2", vc),
    )
    dw.run(dns.create_or_update_zone, make_zone(rg="rg2"))
    dw.refuse(
        errors.VirtualNetworkLinkOverlappingZones,
        "VirtualNetworkLinkOverlappingZones",
        400,
        dns.create_or_update_link,
        make_link("l1", vc, rg="rg2"),
    )
    dw.run(vnm.create_or_update, make_vnet("vd", S2, prefixes=("10.9.0.0/16",), subnets=()))
    dw.refuse(
        errors.VirtualNetworkLinkCannotChange,
        "VirtualNetworkLinkCannotChange",
        400,
        dns.create_or_update_link,
        make_link("l1", vnet_id("vd", S2)),
    )
    dw.refuse(
        errors.PrivateDnsZoneHasVirtualNetworkLinks,
        "PrivateDnsZoneHasVirtualNetworkLinks",
        409,
        dns.delete_zone,
        zone_id(),
    )
    dw.run(dns.delete_link, make_link("l1", vc).id)
    dw.run(dns.create_or_update_record_set, make_a("svc", "10.1.1.9"))
    dw.run(dns.delete_zone, zone_id())
    assert dw.get(zone_id()) is None
    assert dw.get(make_a("svc").id) is None  # record sets go with their zone


def test_record_set_rules(dw: World) -> None:
    for bad, error, code in (
        (make_a("svc", "10.1.1.300"), errors.InvalidARecord, "InvalidARecord"),
        (make_a("svc", "::1"), errors.InvalidARecord, "InvalidARecord"),
        (make_a("svc", "10.0.0.1", ttl=-1), errors.InvalidRecordSetTtl, "InvalidRecordSetTtl"),
        (make_a("a..b", "10.0.0.1"), errors.InvalidRecordSetName, "InvalidRecordSetName"),
        (make_a("svc", "10.0.0.1", zone="nozone.example"), errors.ParentResourceNotFound, None),
    ):
        dw.refuse(error, code or error.code, error.status, dns.create_or_update_record_set, bad)
    dw.run(dns.create_or_update_record_set, make_a("svc", "10.1.1.9", " 10.1.1.9", "10.1.1.8"))
    stored = dw.typed(make_a("svc").id, dns.ARecordSet)
    assert stored.ipv4_addresses == ("10.1.1.9", "10.1.1.8")  # normalized, no duplicates


# --- zone groups and derived records ----------------------------------------------------------


def test_group_rules(dw: World) -> None:
    dw.refuse(
        errors.PrivateDnsZoneNotFound,
        "PrivateDnsZoneNotFound",
        400,
        dns.create_or_update_group,
        make_group("default", zone_id("missing.example")),
    )
    dw.refuse(
        errors.DuplicatePrivateDnsZoneInGroup,
        "DuplicatePrivateDnsZoneInGroup",
        400,
        dns.create_or_update_group,
        make_group(
            "default", zone_id(), zone_id().upper().replace("SUBSCRIPTIONS", "subscriptions")
        ),
    )
    dw.refuse(
        errors.PrivateDnsZoneConfigsLimitReached,
        "PrivateDnsZoneConfigsLimitReached",
        400,
        dns.create_or_update_group,
        make_group("default", *[zone_id(f"z{i}.example") for i in range(6)]),
    )
    dw.refuse(
        errors.PrivateDnsZoneConfigRequired,
        "PrivateDnsZoneConfigRequired",
        400,
        dns.create_or_update_group,
        dns.PrivateDnsZoneGroup(id=f"{pe_id()}/privateDnsZoneGroups/g", name="g", location=""),
    )
    dw.refuse(
        errors.ParentResourceNotFound,
        "ParentResourceNotFound",
        404,
        dns.create_or_update_group,
        make_group("default", pe="ghost"),
    )
    dw.run(dns.create_or_update_group, make_group("default"))
    dw.refuse(
        errors.OnlyOnePrivateDnsZoneGroupPerPrivateEndpointAllowed,
        "OnlyOnePrivateDnsZoneGroupPerPrivateEndpointAllowed",
        400,
        dns.create_or_update_group,
        make_group("second"),
    )


def test_group_records_follow_the_connection_state(dw: World) -> None:
    vc = vnet_id("vc", S2)
    dw.run(dns.create_or_update_link, make_link("l1", vc))
    dw.run(dns.create_or_update_record_set, make_a("www", "10.1.1.50"))
    dw.run(dns.create_or_update_group, make_group("default"))
    pe_ip = dw.pe().custom_dns_configs[0].ip_addresses[0]
    www = {f"www.{ZONE}": (60, ("10.1.1.50",))}

    assert answers(dw) == {vc.lower(): {ZONE: www}}  # Pending: only the stored record
    _set_status(dw, "Approved")
    expected = {**www, f"svc.{ZONE}": (10, (pe_ip,)), ZONE: (10, (pe_ip,))}
    assert answers(dw) == {vc.lower(): {ZONE: expected}}
    with dw.repo.read() as view:
        zone = dw.typed(zone_id(), dns.PrivateDnsZone)
        names = [r.name for r in dns.zone_records(view, zone)]
    assert names == ["@", "svc", "www"]  # apex first; the other zone's FQDN is not here
    _set_status(dw, "Rejected")
    assert answers(dw) == {vc.lower(): {ZONE: www}}


def test_deleting_the_endpoint_deletes_its_group(dw: World) -> None:
    dw.run(dns.create_or_update_group, make_group("default"))
    _set_status(dw, "Approved")
    group_id = make_group("default").id
    assert dw.get(group_id) is not None
    dw.run(pl.delete_endpoint, pe_id())
    assert dw.get(group_id) is None
    with dw.repo.read() as view:
        assert view.referrers(zone_id().lower(), "dnsgroup-zone") == []


def test_two_vnets_with_same_name_zones_resolve_differently(dw: World) -> None:
    dw.consumer(S1, name="vx", prefix="10.7.0.0/16", subnet_prefix="10.7.1.0/24")
    vx = vnet_id("vx", S1)
    vc = vnet_id("vc", S2)
    dw.run(dns.create_or_update_zone, make_zone(sub=S1))
    dw.run(dns.create_or_update_link, make_link("l1", vc))
    dw.run(dns.create_or_update_link, make_link("l1", vx, sub=S1))
    dw.run(dns.create_or_update_record_set, make_a("svc", "10.1.1.5"))
    dw.run(
        dns.create_or_update_record_set,
        dns.ARecordSet(
            id=f"{zone_id(sub=S1)}/A/svc", name="svc", location="", ipv4_addresses=("10.7.1.5",)
        ),
    )
    dw.run(vnm.create_or_update, make_vnet("vn", S2, prefixes=("10.5.0.0/16",), subnets=()))
    table = answers(dw)
    assert table[vc.lower()][ZONE][f"svc.{ZONE}"][1] == ("10.1.1.5",)
    assert table[vx.lower()][ZONE][f"svc.{ZONE}"][1] == ("10.7.1.5",)
    assert vnet_id("vn", S2).lower() not in table  # no link, no zones
