"""The fabric's plan (peerings' wires, routes, each hub's part) and how a hub's table
renders it; pure, no kernel."""

from __future__ import annotations

from dataclasses import replace

from privatelink.core import virtual_network_peering as vp
from privatelink.core.virtual_network import VirtualNetwork
from privatelink.dataplane import fabric, names, nft
from privatelink.dataplane.desired import HubPlan

S = "11111111-1111-4111-8111-111111111111"


def _vnet(name: str, prefix: str) -> VirtualNetwork:
    rid = f"/subscriptions/{S}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/{name}"
    return VirtualNetwork(id=rid, name=name, location="eastus", address_prefixes=(prefix,))


def _side(
    local: VirtualNetwork, remote: VirtualNetwork, state: str = vp.CONNECTED, **flags: bool
) -> vp.VirtualNetworkPeering:
    return vp.VirtualNetworkPeering(
        id=f"{local.id}/virtualNetworkPeerings/to-{remote.name}",
        name=f"to-{remote.name}",
        location="eastus",
        remote_vnet_id=remote.id,
        peering_state=state,
        remote_address_space=remote.address_prefixes,
        local_address_space=local.address_prefixes,
        **flags,
    )


A, B, C = _vnet("a", "10.1.0.0/16"), _vnet("b", "10.2.0.0/16"), _vnet("c", "10.3.0.0/16")


def test_only_pairs_connected_on_both_sides_get_a_wire() -> None:
    world = [A, B, C, _side(A, B), _side(B, A), _side(A, C, vp.INITIATED)]
    assert fabric.wire_keys(world) == {fabric.peering_key(A.id, B.id)}
    plan = fabric.plan(world, {fabric.peering_key(A.id, B.id): 5}, "px")
    (wire,) = plan.wires
    assert (wire.a_ifname, wire.b_ifname) == ("w5a", "w5b")
    assert (wire.a_addr, wire.b_addr) == names.wire_addresses(5) == ("169.254.1.21", "169.254.1.22")
    assert {(r.netns, r.dst, r.via) for r in plan.routes} == {
        (names.hub_netns("px", A.id), "10.2.0.0/16", "169.254.1.22"),
        (names.hub_netns("px", B.id), "10.1.0.0/16", "169.254.1.21"),
    }
    port = plan.hubs[A.key].peers[0]
    assert port == fabric.PeerPort("w5a", ("10.2.0.0/16",), allow_in=True, allow_out=True)


def test_flags_become_directions_and_sources() -> None:
    world = [
        A,
        B,
        _side(A, B, allow_forwarded_traffic=True),
        _side(B, A, allow_virtual_network_access=False),
    ]
    plan = fabric.plan(world, {fabric.peering_key(A.id, B.id): 0})
    a_port, b_port = plan.hubs[A.key].peers[0], plan.hubs[B.key].peers[0]
    assert a_port.sources == (fabric.ANY_SOURCE,) and not a_port.allow_in and a_port.allow_out
    assert b_port.sources == ("10.1.0.0/16",) and b_port.allow_in and not b_port.allow_out


def test_routes_follow_the_synced_space_not_the_current_one() -> None:
    grown = replace(B, address_prefixes=("10.2.0.0/16", "10.4.0.0/16"))
    world = [A, grown, _side(A, B), _side(B, A)]  # a's side synced b's old space
    plan = fabric.plan(world, {fabric.peering_key(A.id, B.id): 0})
    assert [r.dst for r in plan.routes if r.ifname == "w0a"] == ["10.2.0.0/16"]


def test_a_wire_without_a_slot_is_a_problem_on_both_sides() -> None:
    ab, ba = _side(A, B), _side(B, A)
    plan = fabric.plan([A, B, ab, ba], {})
    assert plan.wires == () and set(plan.problems) == {ab.key, ba.key}


def test_a_hub_renders_peering_rules_only_when_it_has_peerings() -> None:
    bare = HubPlan(vnet_id=A.id, netns="px-v-a")
    assert "peer_ifs oifname" not in nft.render(bare)
    port = fabric.PeerPort("w0a", ("10.2.0.0/16", "10.5.0.0/24"), allow_in=False, allow_out=True)
    text = nft.render(replace(bare, fabric=fabric.HubFabric(peers=(port,))))
    assert 'elements = { "w0a" . 10.2.0.0/16, "w0a" . 10.5.0.0/24 }' in text
    assert 'set peer_in_denied { type ifname; elements = { "w0a" }; }' in text
    assert "iifname @peer_ifs oifname @peer_ifs iifname != @transit_ifs" in text
    assert "iifname @peer_ifs iifname . ip saddr != @peer_src drop" in text
    # The sets exist in every hub, so a delta can fill them.
    assert "set peer_src { type ifname . ipv4_addr; flags interval; }" in nft.render(bare)
