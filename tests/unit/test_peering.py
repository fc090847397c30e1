"""Virtual network peering: the two-sided state, overlaps, remote rules, the network's PUT
and DELETE with peerings."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pl_world import S1, S2, World, make_vnet, vnet_id

from privatelink.core import errors
from privatelink.core import virtual_network as vnm
from privatelink.core import virtual_network_peering as vp


def peering(
    name: str, vnet: str, remote: str, sub: str = S1, remote_sub: str = S1, **flags: bool
) -> vp.VirtualNetworkPeering:
    return vp.VirtualNetworkPeering(
        id=f"{vnet_id(vnet, sub)}/virtualNetworkPeerings/{name}",
        name=name,
        location="",
        remote_vnet_id=vnet_id(remote, remote_sub),
        **flags,
    )


def net(name: str, prefix: str, sub: str = S1, location: str = "eastus") -> vnm.VirtualNetwork:
    return make_vnet(name, sub, location=location, prefixes=(prefix,), subnets=())


@pytest.fixture
def three(world: World) -> World:
    """Networks a (10.1/16), b (10.2/16, another subscription and region), c (10.3/16)."""
    world.run(vp.create_or_update_network, net("a", "10.1.0.0/16"))
    world.run(vp.create_or_update_network, net("b", "10.2.0.0/16", S2, "westeurope"))
    world.run(vp.create_or_update_network, net("c", "10.3.0.0/16"))
    return world


def state(world: World, name: str, vnet: str, sub: str = S1) -> str:
    found = world.typed(
        f"{vnet_id(vnet, sub)}/virtualNetworkPeerings/{name}", vp.VirtualNetworkPeering
    )
    return found.peering_state


def test_one_side_is_initiated_both_sides_connected_global_across_subscriptions(
    three: World,
) -> None:
    three.run(vp.create_or_update, peering("ab", "a", "b", remote_sub=S2))
    assert state(three, "ab", "a") == vp.INITIATED
    ab = three.typed(f"{vnet_id('a')}/virtualNetworkPeerings/ab", vp.VirtualNetworkPeering)
    assert ab.remote_address_space == ("10.2.0.0/16",)
    assert ab.location == "eastus"  # its network's, though b is in westeurope
    three.run(vp.create_or_update, peering("ba", "b", "a", sub=S2))
    assert state(three, "ab", "a") == vp.CONNECTED
    assert state(three, "ba", "b", S2) == vp.CONNECTED


def test_deleting_one_side_disconnects_the_other_and_a_put_revives_it(three: World) -> None:
    three.run(vp.create_or_update, peering("ab", "a", "b", remote_sub=S2))
    three.run(vp.create_or_update, peering("ba", "b", "a", sub=S2))
    three.run(vp.delete, f"{vnet_id('b', S2)}/virtualNetworkPeerings/ba")
    assert state(three, "ab", "a") == vp.DISCONNECTED
    # Azure: the remote side cannot be made again against a Disconnected peering...
    three.refuse(
        errors.RemotePeeringIsDisconnected,
        "RemotePeeringIsDisconnected",
        400,
        vp.create_or_update,
        peering("ba", "b", "a", sub=S2),
    )
    # ...until the Disconnected side is updated (back to Initiated).
    three.run(vp.create_or_update, peering("ab", "a", "b", remote_sub=S2))
    assert state(three, "ab", "a") == vp.INITIATED
    three.run(vp.create_or_update, peering("ba", "b", "a", sub=S2))
    assert state(three, "ab", "a") == vp.CONNECTED


def test_deleting_a_network_deletes_its_peerings_and_disconnects_the_remote(three: World) -> None:
    three.run(vp.create_or_update, peering("ab", "a", "b", remote_sub=S2))
    three.run(vp.create_or_update, peering("ba", "b", "a", sub=S2))
    three.run(vp.delete_network, vnet_id("b", S2))
    assert three.get(f"{vnet_id('b', S2)}/virtualNetworkPeerings/ba") is None
    assert state(three, "ab", "a") == vp.DISCONNECTED


def test_overlapping_spaces_are_refused_with_azures_code(world: World) -> None:
    world.run(vp.create_or_update_network, net("a", "10.1.0.0/16"))
    world.run(vp.create_or_update_network, net("x", "10.1.128.0/17"))
    exc = world.refuse(
        errors.PeeredAddressSpacesOverlap,
        "VnetAddressSpacesOverlap",
        400,
        vp.create_or_update,
        peering("ax", "a", "x"),
    )
    assert "Overlapping address prefixes: 10.1.0.0/16" in exc.message


def test_overlap_with_a_network_already_peered_with_the_remote(three: World) -> None:
    # b is peered with d (10.1.5.0/24); a (10.1/16) overlaps d, so a cannot peer with b.
    three.run(vp.create_or_update_network, net("d", "10.1.5.0/24", S2))
    three.run(vp.create_or_update, peering("bd", "b", "d", sub=S2, remote_sub=S2))
    exc = three.refuse(
        errors.VnetAddressSpaceOverlapsWithAlreadyPeeredVnet,
        "VnetAddressSpaceOverlapsWithAlreadyPeeredVnet",
        400,
        vp.create_or_update,
        peering("ab", "a", "b", remote_sub=S2),
    )
    assert vnet_id("d", S2) in exc.message


def test_self_duplicate_missing_and_changed_remote_are_refused(three: World) -> None:
    three.refuse(
        errors.CannotPeerVnetWithItself,
        "CannotPeerVnetWithItself",
        400,
        vp.create_or_update,
        peering("aa", "a", "a"),
    )
    three.refuse(
        errors.InvalidResourceReference,
        "InvalidResourceReference",
        400,
        vp.create_or_update,
        peering("az", "a", "nowhere"),
    )
    three.run(vp.create_or_update, peering("ac", "a", "c"))
    three.refuse(
        errors.AnotherPeeringAlreadyReferencesRemoteVnet,
        "AnotherPeeringAlreadyReferencesRemoteVnet",
        400,
        vp.create_or_update,
        peering("ac2", "a", "c"),
    )
    three.refuse(
        errors.PeeringRemoteVnetCannotChange,
        "PeeringRemoteVnetCannotChange",
        400,
        vp.create_or_update,
        peering("ac", "a", "b", remote_sub=S2),
    )
    three.refuse(
        errors.ParentResourceNotFound,
        "ParentResourceNotFound",
        404,
        vp.create_or_update,
        peering("qa", "q", "a"),
    )


def test_use_remote_gateways_needs_a_remote_gateway(three: World) -> None:
    three.refuse(
        errors.RemoteVnetHasNoGateways,
        "RemoteVnetHasNoGateways",
        400,
        vp.create_or_update,
        peering("ac", "a", "c", use_remote_gateways=True),
    )


def test_peering_limit(make_world) -> None:  # type: ignore[no-untyped-def]
    world = make_world(peerings_per_vnet=1)
    world.run(vp.create_or_update_network, net("a", "10.1.0.0/16"))
    world.run(vp.create_or_update_network, net("c", "10.3.0.0/16"))
    world.run(vp.create_or_update_network, net("e", "10.5.0.0/16"))
    world.run(vp.create_or_update, peering("ac", "a", "c"))
    world.refuse(
        errors.PeeringsPerVirtualNetworkLimitReached,
        "PeeringsPerVirtualNetworkLimitReached",
        400,
        vp.create_or_update,
        peering("ae", "a", "e"),
    )


def test_a_peered_network_cannot_grow_onto_its_peer(three: World) -> None:
    three.run(vp.create_or_update, peering("ac", "a", "c"))
    three.refuse(
        errors.PeeredVnetAddressSpaceOverlap,
        "VnetAddressSpacesOverlap",
        400,
        vp.create_or_update_network,
        make_vnet("a", prefixes=("10.1.0.0/16", "10.3.7.0/24"), subnets=()),
    )


def test_sync_level_follows_address_space_changes(three: World) -> None:
    three.run(vp.create_or_update, peering("ac", "a", "c"))
    three.run(vp.create_or_update, peering("ca", "c", "a"))
    ac = f"{vnet_id('a')}/virtualNetworkPeerings/ac"
    with three.repo.read() as view:
        assert vp.sync_level(three.typed(ac, vp.VirtualNetworkPeering), view) == vp.FULLY_IN_SYNC
    three.run(
        vp.create_or_update_network,
        make_vnet("c", prefixes=("10.3.0.0/16", "10.4.0.0/16"), subnets=()),
    )
    with three.repo.read() as view:
        # a has not synced c's new space; c's side still holds a's (unchanged) space.
        assert vp.sync_level(three.typed(ac, vp.VirtualNetworkPeering), view) == (
            vp.LOCAL_NOT_IN_SYNC
        )
    three.run(vp.create_or_update, peering("ac", "a", "c"))  # what `peering sync` sends
    synced = three.typed(ac, vp.VirtualNetworkPeering)
    assert synced.remote_address_space == ("10.3.0.0/16", "10.4.0.0/16")
    with three.repo.read() as view:
        assert vp.sync_level(synced, view) == vp.FULLY_IN_SYNC


def test_inline_peerings_are_the_whole_set(three: World) -> None:
    with_two = vp.NetworkWithPeerings(
        **net("a", "10.1.0.0/16").__dict__,
        inline_peerings=(peering("ab", "a", "b", remote_sub=S2), peering("ac", "a", "c")),
    )
    three.run(vp.create_or_update_network, with_two)
    stored = three.get(vnet_id("a"))
    assert type(stored) is vnm.VirtualNetwork  # the inline list is never stored in it
    with three.repo.read() as view:
        assert {p.name for p in vp.peerings_of(view, vnet_id("a"))} == {"ab", "ac"}
    # No list: kept. A list: the whole set.
    three.run(vp.create_or_update_network, net("a", "10.1.0.0/16"))
    with three.repo.read() as view:
        assert len(vp.peerings_of(view, vnet_id("a"))) == 2
    three.run(
        vp.create_or_update_network,
        replace(with_two, inline_peerings=(peering("ac", "a", "c"),)),
    )
    with three.repo.read() as view:
        assert [p.name for p in vp.peerings_of(view, vnet_id("a"))] == ["ac"]


def test_an_invalid_inline_peering_writes_nothing(three: World) -> None:
    bad = vp.NetworkWithPeerings(
        **net("a", "10.1.0.0/16").__dict__, inline_peerings=(peering("aa", "a", "a"),)
    )
    three.refuse(
        errors.CannotPeerVnetWithItself,
        "CannotPeerVnetWithItself",
        400,
        vp.create_or_update_network,
        bad,
    )
