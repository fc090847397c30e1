"""The one registry of resource types, and the places that read it."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from privatelink.api import app, crud
from privatelink.api.paths import canonicalize
from privatelink.core import private_link, registry
from privatelink.core import template as tpl
from privatelink.core.ids import key
from privatelink.core.private_dns import ARecordSet, PrivateDnsZoneGroup
from privatelink.core.private_link_service import PrivateEndpointConnection, PrivateLinkService
from privatelink.store import codec

PLS = "Microsoft.Network/privateLinkServices"


def test_types_are_unique_and_canonical() -> None:
    keys = [t.key for t in registry.TYPES]
    assert len(keys) == len(set(keys))
    for entry in registry.TYPES:
        assert entry.arm_type.startswith("Microsoft.Network/")
        assert entry.segments[-1] == entry.segment
        assert "/".join(("Microsoft.Network", *entry.segments)) == entry.arm_type


def test_types_with_workflows_have_a_model_and_both() -> None:
    for entry in registry.TYPES:
        if entry.create_or_update is not None or entry.delete is not None:
            assert entry.model is not None, entry.arm_type
            assert entry.create_or_update is not None and entry.delete is not None, entry.arm_type
    assert set(registry.served()) <= set(registry.stored())


def test_connections_are_stored_but_written_only_by_private_link() -> None:
    entry = registry.require(f"{PLS}/privateEndpointConnections")
    assert entry in registry.stored() and entry not in registry.served()
    assert entry.model is PrivateEndpointConnection and entry.delete_order is None
    conn = PrivateEndpointConnection(
        id=f"/subscriptions/s/resourceGroups/rg/providers/{PLS}/p1/privateEndpointConnections/c",
        name="c",
        location="eastus",
        private_endpoint_id="/subscriptions/t/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe",
        private_endpoint_location="eastus",
        link_identifier="1",
    )
    assert registry.references(conn) == [
        ("connection", f"/subscriptions/s/resourcegroups/rg/providers/{PLS.lower()}/p1"),
        ("linkid", "1"),
    ]


@pytest.mark.parametrize(
    ("arm_type", "read", "write", "delete"),
    [
        (PLS, f"{PLS}/read", f"{PLS}/write", f"{PLS}/delete"),
        (
            "microsoft.network/privatednszones/a",
            "Microsoft.Network/privateDnsZones/A/read",
            "Microsoft.Network/privateDnsZones/A/write",
            "Microsoft.Network/privateDnsZones/A/delete",
        ),
        (
            "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
            "Microsoft.Network/privateEndpoints/privateDnsZoneGroups/read",
            "Microsoft.Network/privateEndpoints/privateDnsZoneGroups/write",
            "Microsoft.Network/privateEndpoints/privateDnsZoneGroups/delete",
        ),
        (
            "Microsoft.Network/virtualNetworks/subnets",
            "Microsoft.Network/virtualNetworks/subnets/read",
            "Microsoft.Network/virtualNetworks/subnets/write",
            "Microsoft.Network/virtualNetworks/subnets/delete",
        ),
    ],
)
def test_rbac_actions_are_the_full_type_chain(
    arm_type: str, read: str, write: str, delete: str
) -> None:
    actions = registry.require(arm_type).actions
    assert (actions.read, actions.write, actions.delete) == (read, write, delete)


def test_lookup_by_type_id_and_object() -> None:
    entry = registry.require(PLS.upper())
    assert registry.get(PLS.lower()) is entry
    assert registry.get("Microsoft.Network/natGateways") is None
    pls_id = f"/subscriptions/s/resourceGroups/rg/providers/{PLS}/p1"
    assert registry.for_id(pls_id) is entry
    assert registry.for_id(pls_id + "/privateEndpointConnections/c").segment == (  # type: ignore[union-attr]
        "privateEndpointConnections"
    )
    assert registry.of(PrivateLinkService(id=pls_id, name="p1", location="eastus")) is entry
    assert entry.create_or_update is private_link.create_or_update_service


def test_codec_reads_the_registry() -> None:
    assert {t.key: t.model for t in registry.stored()} == codec.TYPES


def test_template_supports_the_deployable_types_in_order() -> None:
    assert tpl.SUPPORTED_TYPES == (
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Network/virtualNetworks/subnets",
        "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
        "Microsoft.Network/loadBalancers",
        "Microsoft.Network/networkInterfaces",
        "Microsoft.Network/privateLinkServices",
        "Microsoft.Network/privateEndpoints",
        "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
        "Microsoft.Network/privateDnsZones",
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
        "Microsoft.Network/privateDnsZones/A",
        "Microsoft.Network/publicIPAddresses",
        "Microsoft.Network/virtualNetworkGateways",
        "Microsoft.Network/localNetworkGateways",
        "Microsoft.Network/connections",
    )


def test_resource_group_deletion_order() -> None:
    # Endpoints (and their zone groups) before the services they connect to, services
    # before the load balancers they sit on, connections before gateways and sites, public
    # IPs after the frontends and gateways using them, links before zones, networks last.
    assert [t.arm_type.split("/", 1)[1] for t in registry.deletion_order()] == [
        "privateEndpoints",
        "connections",
        "privateEndpoints/privateDnsZoneGroups",
        "privateLinkServices",
        "networkInterfaces",
        "loadBalancers",
        "virtualNetworkGateways",
        "localNetworkGateways",
        "privateDnsZones/virtualNetworkLinks",
        "publicIPAddresses",
        "privateDnsZones",
        "virtualNetworks",
    ]


def test_index_entries_come_from_the_resource_modules() -> None:
    zone = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateDnsZones/z.io"
    pe = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe"
    record = ARecordSet(id=f"{zone}/A/www", name="www", location="")
    assert registry.references(record) == [("dnsrecord-zone", key(zone))]
    assert registry.ip_usages(record) == []
    group = PrivateDnsZoneGroup(id=f"{pe}/privateDnsZoneGroups/g", name="g", location="")
    assert registry.references(group) == [("dnsgroup-pe", key(pe))]


def test_every_type_segment_is_canonicalised_in_paths() -> None:
    base = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network"
    for entry in registry.TYPES:
        path = base + "".join(f"/{segment}/n{i}" for i, segment in enumerate(entry.segments))
        assert canonicalize(path.lower()) == path


def test_api_kinds_cover_the_stored_types_without_import_side_effects() -> None:
    kinds = app.resource_kinds()
    assert set(kinds) == set(registry.served())
    for entry, kind in kinds.items():
        assert kind.entry is entry
        assert kind.cls is entry.model
        assert kind.create_or_update is entry.create_or_update
        assert kind.delete is entry.delete
    assert not hasattr(crud, "KINDS")


def test_a_kind_needs_a_stored_type() -> None:
    subnets = registry.require("Microsoft.Network/virtualNetworks/subnets")
    with pytest.raises(ValueError, match="no model"):
        crud.ResourceKind(subnets, BaseModel, lambda *a: None, lambda *a: {})  # type: ignore[arg-type, return-value]
