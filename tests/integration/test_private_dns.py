"""Private DNS over HTTPS: zones, record sets and links with azure-mgmt-privatedns, zone
groups on private endpoints with azure-mgmt-network, and the records a zone group keeps
while (and only while) its endpoint's connection is Approved."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.network.models import (
    PrivateDnsZoneConfig,
    PrivateDnsZoneGroup,
    PrivateEndpointConnection,
    PrivateLinkServiceConnectionState,
)

pytestmark = pytest.mark.integration

ZONE = "contoso.example"


def _vnet(client: Any, rg: str, name: str, prefix: str = "10.1.0.0/16") -> str:
    subnet = prefix.replace("0.0/16", "1.0/24")
    vnet = client.virtual_networks.begin_create_or_update(
        rg,
        name,
        {
            "location": "eastus",
            "properties": {
                "addressSpace": {"addressPrefixes": [prefix]},
                "subnets": [{"name": "pe", "properties": {"addressPrefix": subnet}}],
            },
        },
    ).result()
    return str(vnet.id)


def _a(ttl: int, *ips: str) -> dict[str, Any]:
    return {"properties": {"ttl": ttl, "aRecords": [{"ipv4Address": ip} for ip in ips]}}


def _link(vnet_id: str, registration: bool = False) -> dict[str, Any]:
    return {
        "location": "global",
        "properties": {"virtualNetwork": {"id": vnet_id}, "registrationEnabled": registration},
    }


def test_zone_record_set_and_link_lifecycle(server: Any, helpers: Any) -> None:
    sub, rg = helpers.new_sub(), helpers.unique("rg-dns")
    dns = server.dns_client(sub)
    net = server.client(sub)
    vnet_id = _vnet(net, rg, "vnet-a")

    zone = dns.private_zones.begin_create_or_update(
        rg, ZONE, {"location": "global", "tags": {"team": "a"}}
    ).result()
    assert zone.name == ZONE and zone.location == "global"
    assert zone.type == "Microsoft.Network/privateDnsZones"
    assert zone.properties.provisioning_state == "Succeeded"
    assert zone.properties.number_of_record_sets == 1  # the SOA
    assert zone.properties.max_number_of_record_sets == 25000
    assert zone.tags == {"team": "a"}
    assert [z.name for z in dns.private_zones.list_by_resource_group(rg)] == [ZONE]
    assert ZONE in [z.name for z in dns.private_zones.list()]
    updated = dns.private_zones.begin_update(rg, ZONE, {"tags": {"team": "b"}}).result()
    assert updated.tags == {"team": "b"}

    # A record sets: create-only (If-None-Match: *, as az does), get, list, patch, delete.
    created = dns.record_sets.create_or_update(
        rg, ZONE, "A", "svc", _a(30, "10.1.0.10"), match_condition=MatchConditions.IfMissing
    )
    assert created.fqdn == f"svc.{ZONE}."
    assert created.ttl == 30
    assert [r.ipv4_address for r in created.a_records] == ["10.1.0.10"]
    helpers.expect_error(
        lambda: dns.record_sets.create_or_update(
            rg, ZONE, "A", "svc", _a(30, "10.1.0.11"), match_condition=MatchConditions.IfMissing
        ),
        412,
        "PreconditionFailed",
    )
    patched = dns.record_sets.update(rg, ZONE, "A", "svc", {"properties": {"ttl": 60}})
    assert patched.ttl == 60 and [r.ipv4_address for r in patched.a_records] == ["10.1.0.10"]
    apex = dns.record_sets.create_or_update(rg, ZONE, "A", "@", _a(10, "10.1.0.1"))
    assert apex.fqdn == f"{ZONE}."
    every = list(dns.record_sets.list(rg, ZONE))
    assert [(r.type, r.name) for r in every] == [
        ("Microsoft.Network/privateDnsZones/SOA", "@"),
        ("Microsoft.Network/privateDnsZones/A", "@"),
        ("Microsoft.Network/privateDnsZones/A", "svc"),
    ]
    assert every[0].soa_record.host == "azureprivatedns.net"
    assert [r.name for r in dns.record_sets.list_by_type(rg, ZONE, "A")] == ["@", "svc"]
    assert dns.private_zones.get(rg, ZONE).properties.number_of_record_sets == 3
    assert dns.record_sets.get(rg, ZONE, "A", "SVC").name == "svc"  # DNS names ignore case
    dns.record_sets.delete(rg, ZONE, "A", "@")
    with pytest.raises(ResourceNotFoundError):
        dns.record_sets.get(rg, ZONE, "A", "@")

    # Links.
    link = dns.virtual_network_links.begin_create_or_update(
        rg, ZONE, "link-a", _link(vnet_id)
    ).result()
    assert link.virtual_network.id.lower() == vnet_id.lower()
    assert link.virtual_network_link_state == "Completed"
    assert link.provisioning_state == "Succeeded"
    assert link.registration_enabled is False
    assert [x.name for x in dns.virtual_network_links.list(rg, ZONE)] == ["link-a"]
    assert dns.private_zones.get(rg, ZONE).properties.number_of_virtual_network_links == 1
    helpers.expect_error(
        lambda: dns.virtual_network_links.begin_create_or_update(
            rg, ZONE, "link-b", _link(vnet_id)
        ).result(),
        409,
        "VirtualNetworkLinkAlreadyExists",
    )
    # A zone cannot go while linked.
    helpers.expect_error(
        lambda: dns.private_zones.begin_delete(rg, ZONE).result(),
        409,
        "PrivateDnsZoneHasVirtualNetworkLinks",
    )
    dns.virtual_network_links.begin_delete(rg, ZONE, "link-a").result()
    dns.private_zones.begin_delete(rg, ZONE).result()
    with pytest.raises(ResourceNotFoundError):
        dns.private_zones.get(rg, ZONE)
    with pytest.raises(ResourceNotFoundError):
        dns.record_sets.get(rg, ZONE, "A", "svc")


def test_bad_input_gets_arm_errors(server: Any, helpers: Any) -> None:
    sub, rg = helpers.new_sub(), helpers.unique("rg-dns")
    dns = server.dns_client(sub)
    net = server.client(sub)
    vnet_id = _vnet(net, rg, "vnet-a")
    err = helpers.expect_error

    for bad in ("contoso", "-bad.example", "a..example", "x" * 64 + ".example", "bad_.123"):
        err(
            lambda bad=bad: dns.private_zones.begin_create_or_update(
                rg, bad, {"location": "global"}
            ).result(),
            400,
            "InvalidPrivateDnsZoneName",
        )
    err(
        lambda: dns.private_zones.begin_create_or_update(rg, ZONE, {"location": "eastus"}).result(),
        400,
        "PrivateDnsZoneLocationMustBeGlobal",
    )
    dns.private_zones.begin_create_or_update(rg, ZONE, {"location": "global"}).result()
    for bad in ("-svc", "a..b", "svc*", "a.*"):
        err(
            lambda bad=bad: dns.record_sets.create_or_update(
                rg, ZONE, "A", bad, _a(10, "10.0.0.1")
            ),
            400,
            "InvalidRecordSetName",
        )
    err(
        lambda: dns.record_sets.create_or_update(
            rg, ZONE, "CNAME", "www", {"properties": {"ttl": 10, "cnameRecord": {"cname": "x."}}}
        ),
        400,
        "UnsupportedRecordType",
    )
    err(
        lambda: dns.record_sets.create_or_update(rg, ZONE, "A", "svc", _a(10, "10.0.0.300")),
        400,
        "InvalidARecord",
    )
    err(
        lambda: dns.record_sets.create_or_update(rg, ZONE, "A", "svc", _a(-1, "10.0.0.3")),
        400,
        "InvalidRecordSetTtl",
    )
    missing = vnet_id.rsplit("/", 1)[0] + "/nope"
    err(
        lambda: dns.virtual_network_links.begin_create_or_update(
            rg, ZONE, "l1", _link(missing)
        ).result(),
        400,
        "VirtualNetworkLinkTargetNotFound",
    )
    err(
        lambda: dns.virtual_network_links.begin_create_or_update(
            rg, ZONE, "l1", _link(vnet_id, registration=True)
        ).result(),
        400,
        "UnsupportedProperty",
    )
    err(
        lambda: dns.virtual_network_links.begin_create_or_update(
            rg, "other.example", "l1", _link(vnet_id)
        ).result(),
        404,
        "ParentResourceNotFound",
    )
    # The same VNet linked to two zones of the same name (another resource group).
    rg2 = helpers.unique("rg-dns2")
    dns.private_zones.begin_create_or_update(rg2, ZONE, {"location": "global"}).result()
    dns.virtual_network_links.begin_create_or_update(rg, ZONE, "l1", _link(vnet_id)).result()
    err(
        lambda: dns.virtual_network_links.begin_create_or_update(
            rg2, ZONE, "l1", _link(vnet_id)
        ).result(),
        400,
        "VirtualNetworkLinkOverlappingZones",
    )
    # Nothing was half-written by the refused requests.
    assert [x.name for x in dns.virtual_network_links.list(rg, ZONE)] == ["l1"]
    assert list(dns.virtual_network_links.list(rg2, ZONE)) == []
    assert [r.name for r in dns.record_sets.list(rg, ZONE)] == ["@"]


def _group(*zones: tuple[str, str]) -> PrivateDnsZoneGroup:
    """A zone group body (the SDK model flattens `properties`)."""
    return PrivateDnsZoneGroup(
        private_dns_zone_configs=[
            PrivateDnsZoneConfig(name=name, private_dns_zone_id=zone_id) for name, zone_id in zones
        ]
    )


def _set_status(provider: Any, pls: str, conn: str, status: str) -> None:
    provider.client.private_link_services.update_private_endpoint_connection(
        provider.rg,
        pls,
        conn,
        PrivateEndpointConnection(
            name=conn,
            private_link_service_connection_state=PrivateLinkServiceConnectionState(
                status=status, description=status
            ),
        ),
    )


def test_zone_group_keeps_records_only_while_approved(server: Any, helpers: Any) -> None:
    world = helpers.World(server)
    provider = world.provider()
    consumer = world.consumer()
    pls_name = helpers.unique("pls")
    fqdns = [f"svc.{ZONE}", "other.example.net"]  # only the first is inside the zone
    pls = provider.create_pls(pls_name, visibility=[consumer.sub], fqdns=fqdns)
    pe = consumer.create_pe("pe1", pls.alias)
    pe_ip = pe.custom_dns_configs[0].ip_addresses[0]
    assert [d.fqdn for d in pe.custom_dns_configs] == fqdns

    dns = server.dns_client(consumer.sub)
    zone = dns.private_zones.begin_create_or_update(
        consumer.rg, ZONE, {"location": "global"}
    ).result()
    groups = consumer.client.private_dns_zone_groups
    body = _group(("contoso", zone.id))
    group = groups.begin_create_or_update(consumer.rg, "pe1", "default", body).result()
    assert group.provisioning_state == "Succeeded"
    assert group.private_dns_zone_configs[0].private_dns_zone_id == zone.id
    assert group.private_dns_zone_configs[0].record_sets == []  # Pending: no records
    assert [r.name for r in dns.record_sets.list(consumer.rg, ZONE)] == ["@"]

    def records() -> list[tuple[str, list[str], int]]:
        return [
            (r.name, [a.ipv4_address for a in r.a_records], r.ttl)
            for r in dns.record_sets.list_by_type(consumer.rg, ZONE, "A")
        ]

    conn = provider.client.private_link_services.get(provider.rg, pls_name)
    conn_name = conn.private_endpoint_connections[0].name
    _set_status(provider, pls_name, conn_name, "Approved")
    assert records() == [("svc", [pe_ip], 10)]
    shown = groups.get(consumer.rg, "pe1", "default").private_dns_zone_configs[0].record_sets
    assert [(r.record_type, r.record_set_name, r.fqdn, r.ip_addresses) for r in shown] == [
        ("A", "svc", f"svc.{ZONE}", [pe_ip])
    ]
    assert dns.record_sets.get(consumer.rg, ZONE, "A", "svc").fqdn == f"svc.{ZONE}."

    _set_status(provider, pls_name, conn_name, "Rejected")
    assert records() == []
    with pytest.raises(ResourceNotFoundError):
        dns.record_sets.get(consumer.rg, ZONE, "A", "svc")

    # One group per endpoint; zones must exist; at most five configurations.
    helpers.expect_error(
        lambda: groups.begin_create_or_update(consumer.rg, "pe1", "second", body).result(),
        400,
        "OnlyOnePrivateDnsZoneGroupPerPrivateEndpointAllowed",
    )
    missing = _group(("x", zone.id + "x"))
    helpers.expect_error(
        lambda: groups.begin_create_or_update(consumer.rg, "pe1", "default", missing).result(),
        400,
        "PrivateDnsZoneNotFound",
    )
    six = _group(*[(f"c{i}", zone.id) for i in range(6)])
    helpers.expect_error(
        lambda: groups.begin_create_or_update(consumer.rg, "pe1", "default", six).result(),
        400,
        "PrivateDnsZoneConfigsLimitReached",
    )
    assert [g.name for g in groups.list("pe1", consumer.rg)] == ["default"]

    # Deleting the endpoint takes its zone group (and any records) with it.
    consumer.client.private_endpoints.begin_delete(consumer.rg, "pe1").result()
    with pytest.raises(ResourceNotFoundError):
        groups.get(consumer.rg, "pe1", "default")
    assert records() == []


def test_zone_group_records_merge_with_stored_and_leave_with_the_group(
    server: Any, helpers: Any
) -> None:
    world = helpers.World(server)
    provider = world.provider()
    consumer = world.consumer()
    pls_name = helpers.unique("pls")
    pls = provider.create_pls(
        pls_name, visibility=[consumer.sub], auto_approval=[consumer.sub], fqdns=[ZONE]
    )
    pe = consumer.create_pe("pe1", pls.alias, manual=False)
    pe_ip = pe.custom_dns_configs[0].ip_addresses[0]
    dns = server.dns_client(consumer.sub)
    zone = dns.private_zones.begin_create_or_update(
        consumer.rg, ZONE, {"location": "global"}
    ).result()
    dns.record_sets.create_or_update(consumer.rg, ZONE, "A", "@", _a(300, "192.0.2.1"))
    groups = consumer.client.private_dns_zone_groups
    body = _group(("z", zone.id))
    groups.begin_create_or_update(consumer.rg, "pe1", "default", body).result()
    apex = dns.record_sets.get(consumer.rg, ZONE, "A", "@")
    assert [a.ipv4_address for a in apex.a_records] == ["192.0.2.1", pe_ip]  # auto-approved
    groups.begin_delete(consumer.rg, "pe1", "default").result()
    apex = dns.record_sets.get(consumer.rg, ZONE, "A", "@")
    assert [a.ipv4_address for a in apex.a_records] == ["192.0.2.1"]


def test_resource_group_delete_removes_zones_and_links(server: Any, helpers: Any) -> None:
    sub, rg = helpers.new_sub(), helpers.unique("rg-dns")
    dns = server.dns_client(sub)
    net = server.client(sub)
    vnet_id = _vnet(net, rg, "vnet-a")
    dns.private_zones.begin_create_or_update(rg, ZONE, {"location": "global"}).result()
    dns.virtual_network_links.begin_create_or_update(rg, ZONE, "l1", _link(vnet_id)).result()
    dns.record_sets.create_or_update(rg, ZONE, "A", "svc", _a(10, "10.1.0.4"))
    token = server.http
    resp = token.delete(
        f"/subscriptions/{sub}/resourcegroups/{rg}", params={"api-version": "2022-09-01"}
    )
    assert resp.status_code in (200, 202), resp.text
    with pytest.raises(ResourceNotFoundError):
        dns.private_zones.get(rg, ZONE)
    assert list(dns.private_zones.list()) == []
