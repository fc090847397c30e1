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


# --- the internet, gateways and sites ------------------------------------------------------

from privatelink.core import connection as connm  # noqa: E402
from privatelink.core import load_balancer as lbm  # noqa: E402
from privatelink.core import local_network_gateway as lngm  # noqa: E402
from privatelink.core import public_ip_address as pipm  # noqa: E402
from privatelink.core import virtual_network_gateway as vngm  # noqa: E402
from privatelink.core.network_interface import NetworkInterface, NicIpConfiguration  # noqa: E402
from privatelink.core.site import Site  # noqa: E402

BASE = f"/subscriptions/{S}/resourceGroups/rg/providers/Microsoft.Network"


def _pip(name: str, ip: str) -> pipm.PublicIPAddress:
    return pipm.PublicIPAddress(
        id=f"{BASE}/publicIPAddresses/{name}", name=name, location="eastus", ip_address=ip
    )


def _vpn_world(site_key: str = "k1", conn_key: str = "k1") -> list[object]:
    gw_pip = _pip("gw", "198.18.0.1")
    gateway = vngm.VirtualNetworkGateway(
        id=f"{BASE}/virtualNetworkGateways/gw",
        name="gw",
        location="eastus",
        ip_configurations=(
            vngm.GatewayIpConfiguration(
                "default", f"{A.id}/subnets/GatewaySubnet", gw_pip.id, "10.1.255.4"
            ),
        ),
    )
    local = lngm.LocalNetworkGateway(
        id=f"{BASE}/localNetworkGateways/branch",
        name="branch",
        location="eastus",
        gateway_ip_address="198.18.200.1",
        address_prefixes=("192.168.0.0/16",),
    )
    conn = connm.VirtualNetworkGatewayConnection(
        id=f"{BASE}/connections/c",
        name="c",
        location="eastus",
        virtual_network_gateway1_id=gateway.id,
        local_network_gateway2_id=local.id,
        shared_key=conn_key,
    )
    return [
        A,
        B,
        gw_pip,
        gateway,
        local,
        conn,
        _side(A, B, allow_gateway_transit=True),
        _side(B, A, use_remote_gateways=True),
    ]


SITE = Site("branch", ("192.168.0.0/16",), "198.18.200.1", "k1", "2026-01-01T00:00:00Z")


def _slots(world: list[object], sites: tuple[Site, ...] = ()) -> dict[str, int]:
    return {k: i for i, k in enumerate(sorted(fabric.wire_keys(world, sites)))}  # type: ignore[arg-type]


def test_a_gateway_serves_its_connections_and_a_site_dials_it_with_its_own_key() -> None:
    world = _vpn_world(site_key="k1", conn_key="k1")
    site = replace(SITE, shared_key="other")
    plan = fabric.plan(world, _slots(world, (site,)), "px", (site,))  # type: ignore[arg-type]
    gw_ns, site_ns = (
        names.gateway_netns("px", f"{BASE}/virtualNetworkGateways/gw"),
        names.site_netns("px", "branch"),
    )
    tunnels = {t.netns: t for t in plan.tunnels}
    (gw_end,) = tunnels[gw_ns].endpoints
    (site_end,) = tunnels[site_ns].endpoints
    # Each end holds its own key: the tunnel comes up only when they match (IKE decides).
    assert (gw_end.psk, site_end.psk) == ("k1", "other")
    assert not gw_end.initiator and site_end.initiator
    assert (gw_end.local_address, gw_end.remote_address) == ("198.18.0.1", "198.18.200.1")
    # Transit: b uses a's gateway, so the tunnel carries b's space too.
    assert gw_end.local_ts == ("10.1.0.0/16", "10.2.0.0/16") == site_end.remote_ts
    assert gw_end.remote_ts == ("192.168.0.0/16",)
    assert tunnels[gw_ns].connections == ((gw_end.conn, f"{BASE}/connections/c"),)
    routes = {(r.netns, r.dst) for r in plan.routes}
    hub_a, hub_b = names.hub_netns("px", A.id), names.hub_netns("px", B.id)
    assert {(hub_a, "192.168.0.0/16"), (hub_b, "192.168.0.0/16")} <= routes
    # The hub accepts on-premises sources from the gateway and lets them cross to b.
    a_ports = {p.ifname: p for p in plan.hubs[A.key].peers}
    gw_port = next(p for p in a_ports.values() if p.sources == ("192.168.0.0/16",))
    assert plan.hubs[A.key].transit == (gw_port.ifname,)
    b_port = plan.hubs[B.key].peers[0]
    assert "192.168.0.0/16" in b_port.sources
    # The gateway has an anchor address in b's space (strongSwan's routes need one).
    nodes = {n.netns: n for n in plan.nodes}
    assert "10.2.0.0" in nodes[gw_ns].addresses and "10.1.255.4" in nodes[gw_ns].addresses
    assert nodes[site_ns].addresses == ("198.18.200.1", "192.168.0.0")


def test_without_a_matching_site_the_gateway_still_answers_and_no_site_dials() -> None:
    world = _vpn_world()
    plan = fabric.plan(world, _slots(world), "px")  # type: ignore[arg-type]
    assert [t.netns for t in plan.tunnels] == [
        names.gateway_netns("px", f"{BASE}/virtualNetworkGateways/gw")
    ]


def test_a_public_frontend_gets_an_uplink_and_the_internet_routes_it() -> None:
    lb_id = f"{BASE}/loadBalancers/lb"
    nic = NetworkInterface(
        id=f"{BASE}/networkInterfaces/vm",
        name="vm",
        location="eastus",
        ip_configurations=(
            NicIpConfiguration(
                "ip", f"{A.id}/subnets/s", "10.1.0.4", pool_ids=(f"{lb_id}/backendAddressPools/be",)
            ),
        ),
    )
    lb = lbm.LoadBalancer(
        id=lb_id,
        name="lb",
        location="eastus",
        frontends=(
            lbm.Frontend(
                "fe", "", public_ip_id=f"{BASE}/publicIPAddresses/p", public_ip_address="198.18.0.7"
            ),
        ),
        pools=(lbm.BackendPool("be"),),
    )
    world = [A, nic, lb]
    plan = fabric.plan(world, _slots(world), "px", (), "198.18.0.0/15")  # type: ignore[arg-type]
    inet = names.inet_netns("px")
    (uplink,) = plan.hubs[A.key].uplinks
    assert {(r.netns, r.dst, r.src) for r in plan.routes} == {
        (inet, "198.18.0.7/32", "198.19.255.254"),
        (names.hub_netns("px", A.id), "198.18.0.0/15", None),
    }
    text = nft.render(HubPlan(vnet_id=A.id, netns="px-v-a", fabric=plan.hubs[A.key]))
    assert f'set uplink_ifs {{ type ifname; elements = {{ "{uplink}" }}; }}' in text
    assert "iifname @uplink_ifs ct status & dnat == 0 drop" in text
