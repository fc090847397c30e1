"""Virtual network peering through azure-mgmt-network: states, sync, errors, inline peerings,
deletion, and the rights a peering across subscriptions needs."""

from __future__ import annotations

from typing import Any

from azure.mgmt.network import NetworkManagementClient


def _vnet(
    client: NetworkManagementClient, rg: str, name: str, prefixes: list[str], location: str
) -> Any:
    return client.virtual_networks.begin_create_or_update(
        rg,
        name,
        {
            "location": location,
            "properties": {
                "addressSpace": {"addressPrefixes": prefixes},
                "subnets": [{"name": "s", "properties": {"addressPrefix": prefixes[0]}}],
            },
        },
    ).result()


def _peer(
    client: NetworkManagementClient, rg: str, vnet: str, name: str, remote: str, **props: Any
) -> Any:
    body = {"properties": {"remoteVirtualNetwork": {"id": remote}, **props}}
    return client.virtual_network_peerings.begin_create_or_update(rg, vnet, name, body).result()


def test_peering_lifecycle_across_subscriptions_and_regions(server: Any, helpers: Any) -> None:
    sub_a, sub_b = helpers.new_sub(), helpers.new_sub()
    rg_a, rg_b = helpers.unique("rg-pa"), helpers.unique("rg-pb")
    ca, cb = server.client(sub_a), server.client(sub_b)
    a = _vnet(ca, rg_a, "va", ["10.21.0.0/16"], "eastus")
    b = _vnet(cb, rg_b, "vb", ["10.22.0.0/16"], "westeurope")  # global peering

    ab = _peer(ca, rg_a, "va", "ab", b.id, allowForwardedTraffic=True)
    assert ab.peering_state == "Initiated"
    assert ab.allow_virtual_network_access is True and ab.allow_forwarded_traffic is True
    assert ab.remote_address_space.address_prefixes == ["10.22.0.0/16"]
    assert ab.peering_sync_level == "FullyInSync"
    assert ab.type == "Microsoft.Network/virtualNetworks/virtualNetworkPeerings"

    ba = _peer(cb, rg_b, "vb", "ba", a.id)
    assert ba.peering_state == "Connected"
    assert ca.virtual_network_peerings.get(rg_a, "va", "ab").peering_state == "Connected"
    # Inline in the network, and listed.
    assert [p.name for p in ca.virtual_networks.get(rg_a, "va").virtual_network_peerings] == ["ab"]
    assert [p.name for p in ca.virtual_network_peerings.list(rg_a, "va")] == ["ab"]

    # A new prefix on b: a's side is out of sync until it is synced again.
    _vnet(cb, rg_b, "vb", ["10.22.0.0/16", "10.23.0.0/16"], "westeurope")
    assert ca.virtual_network_peerings.get(rg_a, "va", "ab").peering_sync_level == (
        "LocalNotInSync"
    )
    synced = ca.virtual_network_peerings.begin_create_or_update(
        rg_a,
        "va",
        "ab",
        ca.virtual_network_peerings.get(rg_a, "va", "ab"),
        sync_remote_address_space="true",
    ).result()
    assert synced.remote_address_space.address_prefixes == ["10.22.0.0/16", "10.23.0.0/16"]
    assert synced.peering_sync_level == "FullyInSync"

    ca.virtual_network_peerings.begin_delete(rg_a, "va", "ab").result()
    assert cb.virtual_network_peerings.get(rg_b, "vb", "ba").peering_state == "Disconnected"
    helpers.expect_error(
        lambda: ca.virtual_network_peerings.get(rg_a, "va", "ab"), 404, "ResourceNotFound"
    )
    helpers.expect_error(
        lambda: _peer(ca, rg_a, "va", "ab", b.id), 400, "RemotePeeringIsDisconnected"
    )


def test_peering_errors_have_azures_codes(server: Any, helpers: Any) -> None:
    sub = helpers.new_sub()
    rg = helpers.unique("rg-pe")
    c = server.client(sub)
    a = _vnet(c, rg, "a", ["10.31.0.0/16"], "eastus")
    x = _vnet(c, rg, "x", ["10.31.128.0/17"], "eastus")
    d = _vnet(c, rg, "d", ["10.32.0.0/16"], "eastus")
    err = helpers.expect_error(
        lambda: _peer(c, rg, "a", "ax", x.id), 400, "VnetAddressSpacesOverlap"
    )
    assert "Overlapping address prefixes" in str(err)
    helpers.expect_error(lambda: _peer(c, rg, "a", "aa", a.id), 400, "CannotPeerVnetWithItself")
    _peer(c, rg, "a", "ad", d.id)
    helpers.expect_error(
        lambda: _peer(c, rg, "a", "ad2", d.id), 400, "AnotherPeeringAlreadyReferencesRemoteVnet"
    )
    helpers.expect_error(
        lambda: _peer(c, rg, "a", "ad", d.id, useRemoteGateways=True),
        400,
        "RemoteVnetHasNoGateways",
    )
    helpers.expect_error(
        lambda: _peer(c, rg, "a", "ad", d.id, localSubnetNames=["s"]), 400, "UnsupportedProperty"
    )
    helpers.expect_error(
        lambda: c.virtual_network_peerings.begin_create_or_update(
            rg, "a", "bad", {"properties": {}}
        ).result(),
        400,
        "InvalidRequestContent",
    )
    # Growing onto a peer's space is refused; deleting the network disconnects the peer.
    helpers.expect_error(
        lambda: _vnet(c, rg, "a", ["10.31.0.0/16", "10.32.1.0/24"], "eastus"),
        400,
        "VnetAddressSpacesOverlap",
    )
    _peer(c, rg, "d", "da", a.id)
    c.virtual_networks.begin_delete(rg, "a").result()
    assert c.virtual_network_peerings.get(rg, "d", "da").peering_state == "Disconnected"


def test_inline_peerings_in_a_network_put(server: Any, helpers: Any) -> None:
    sub = helpers.new_sub()
    rg = helpers.unique("rg-pi")
    c = server.client(sub)
    b = _vnet(c, rg, "b", ["10.42.0.0/16"], "eastus")
    body = {
        "location": "eastus",
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.41.0.0/16"]},
            "virtualNetworkPeerings": [
                {"name": "to-b", "properties": {"remoteVirtualNetwork": {"id": b.id}}}
            ],
        },
    }
    a = c.virtual_networks.begin_create_or_update(rg, "a", body).result()
    assert [(p.name, p.peering_state) for p in a.virtual_network_peerings] == [
        ("to-b", "Initiated")
    ]
    # A GET-modify-PUT round trip (what `az network vnet update` does) keeps them.
    again = c.virtual_networks.begin_create_or_update(rg, "a", a).result()
    assert [p.name for p in again.virtual_network_peerings] == ["to-b"]
    body["properties"]["virtualNetworkPeerings"] = []
    emptied = c.virtual_networks.begin_create_or_update(rg, "a", body).result()
    assert emptied.virtual_network_peerings == []
