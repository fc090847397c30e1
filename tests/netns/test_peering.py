"""Peered virtual networks on real namespaces: VMs reach each other and the private
endpoints of the peer, peering is not transitive, and each side's flags hold."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from world import CONSUMER, CONSUMER2, PROVIDER, World, try_get, wait_for

from privatelink.core import virtual_network_peering as vpm
from privatelink.dataplane import names, privileged

pytestmark = pytest.mark.netns


def _scene(world: World):  # type: ignore[no-untyped-def]
    """A provider's service; a consumer network `cons` (10.1/16) with an endpoint to it
    and a VM; `hub` (10.2/16, in another region: global peering) peered with `cons`; `far`
    (10.3/16) peered with `hub` only."""
    prov = world.vnet(
        PROVIDER,
        "prov",
        "10.0.0.0/16",
        {"fe": "10.0.1.0/24", "be": "10.0.2.0/24", "nat": "10.0.3.0/24"},
    )
    lb = world.load_balancer(
        PROVIDER, "lb", {"fe": prov.subnet_id("fe")}, [("http", "fe", 80, 8080, "be")], probe=None
    )
    backend = world.nic(
        PROVIDER, "backend", prov.subnet_id("be"), pools=(lb.child_id("backendAddressPools", "be"),)
    )
    pls = world.service(
        PROVIDER, "svc", (lb.child_id("frontendIPConfigurations", "fe"),), prov.subnet_id("nat")
    )
    cons = world.vnet(CONSUMER, "cons", "10.1.0.0/16", {"vms": "10.1.1.0/24", "pe": "10.1.2.0/24"})
    inside = world.nic(CONSUMER, "inside", cons.subnet_id("vms"))
    hub = world.vnet(CONSUMER2, "hub", "10.2.0.0/16", {"vms": "10.2.1.0/24"}, "westeurope")
    peer_vm = world.nic(CONSUMER2, "peer-vm", hub.subnet_id("vms"), location="westeurope")
    far = world.vnet(CONSUMER2, "far", "10.3.0.0/16", {"vms": "10.3.1.0/24"})
    far_vm = world.nic(CONSUMER2, "far-vm", far.subnet_id("vms"))
    pe = world.endpoint(CONSUMER, "pe", cons.subnet_id("pe"), pls.alias)
    world.serve_whoami(backend, "backend")
    world.serve_whoami(inside, "inside")
    world.serve_whoami(peer_vm, "peer")
    world.peer(cons, hub)
    world.peer(hub, far)
    world.settle()
    return pls, pe, cons, hub, far, inside, peer_vm, far_vm


def _ip(nic) -> str:  # type: ignore[no-untyped-def]
    return str(nic.ip_configurations[0].private_ip)


def test_a_peered_vm_reaches_vms_and_the_endpoint_two_peerings_away_nothing(
    world: World,
) -> None:
    pls, pe, cons, _hub, _far, inside, peer_vm, far_vm = _scene(world)
    pe_ip = world.endpoint_ip(pe)
    peer_ns, far_ns = world.netns(peer_vm), world.netns(far_vm)
    # VM to VM across the peering, both ways: the source is the VM's own address.
    body = wait_for(lambda: try_get(peer_ns, _ip(inside), 8080), 5, "peer -> inside")
    assert body == f"inside saw {_ip(peer_vm)}\n"
    assert try_get(world.netns(inside), _ip(peer_vm), 8080) == f"peer saw {_ip(inside)}\n"
    # Pending: the endpoint carries nothing, from here or from the peer.
    assert try_get(peer_ns, pe_ip, 80) is None
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    nat_ips = {c.private_ip for c in world.get(pls.id).ip_configurations}
    body = wait_for(lambda: try_get(peer_ns, pe_ip, 80), 5, "peer -> endpoint")
    assert body.split(" saw ")[1].strip() in nat_ips
    # Regional peering works the same: a network of cons's region, peered with it.
    near = world.vnet(CONSUMER2, "near", "10.4.0.0/16", {"vms": "10.4.1.0/24"})
    near_vm = world.nic(CONSUMER2, "near-vm", near.subnet_id("vms"))
    world.peer(near, cons)
    world.settle()
    body = wait_for(lambda: try_get(world.netns(near_vm), pe_ip, 80), 5, "near -> endpoint")
    assert body.split(" saw ")[1].strip() in nat_ips
    # Not transitive: far is peered with hub, not with cons.
    assert try_get(far_ns, pe_ip, 80, timeout=0.5) is None
    assert try_get(far_ns, _ip(inside), 8080, timeout=0.5) is None
    assert try_get(far_ns, _ip(peer_vm), 8080) == f"peer saw {_ip(far_vm)}\n"
    # Rejected: cut for the peer as for the consumer's own VMs.
    world.set_connection(pls.id, pe, "Rejected")
    world.settle()
    assert try_get(peer_ns, pe_ip, 80, timeout=0.5) is None


def test_a_side_without_network_access_opens_nothing_and_a_deleted_side_cuts(
    world: World,
) -> None:
    pls, pe, cons, hub, _far, inside, peer_vm, _far_vm = _scene(world)
    world.set_connection(pls.id, pe, "Approved")
    peer_ns = world.netns(peer_vm)
    wait_for(lambda: try_get(peer_ns, world.endpoint_ip(pe), 80), 5, "peer -> endpoint")
    # hub's side refuses access: hub's VMs open nothing in cons; cons still reaches hub.
    world.peering(hub, cons, allow_virtual_network_access=False)
    world.settle()
    assert try_get(peer_ns, _ip(inside), 8080, timeout=0.5) is None
    assert try_get(peer_ns, world.endpoint_ip(pe), 80, timeout=0.5) is None
    assert try_get(world.netns(inside), _ip(peer_vm), 8080) == f"peer saw {_ip(inside)}\n"
    world.peering(hub, cons)
    world.settle()
    wait_for(lambda: try_get(peer_ns, _ip(inside), 8080), 5, "access again")
    # One side deleted: the other is Disconnected and the wire goes.
    world.delete(vpm.delete, f"{cons.id}/virtualNetworkPeerings/to-hub")
    world.settle()
    assert world.get(f"{hub.id}/virtualNetworkPeerings/to-cons").peering_state == "Disconnected"
    assert try_get(peer_ns, _ip(inside), 8080, timeout=0.5) is None


UDP_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
with open(sys.argv[1], "a") as out:
    while True:
        data, (ip, _port) = s.recvfrom(100)
        out.write(ip + "\n"); out.flush()
"""


def test_a_spoofed_source_from_a_peer_is_dropped(world: World, tmp_path: Path) -> None:
    """Only sources in the peer's (synced) space may open flows over the peering: a
    datagram from a VM's second address outside its network never arrives."""
    _pls, _pe, _cons, _hub, _far, inside, peer_vm, _far_vm = _scene(world)
    peer_ns = world.netns(peer_vm)
    seen = tmp_path / "seen.txt"
    seen.touch()
    world.run(inside, UDP_SINK, str(seen))
    subprocess.run(
        ["ip", "-n", peer_ns, "addr", "add", "10.9.9.9/32", "dev", "eth0"], check=True, timeout=10
    )

    def send(source: str) -> None:
        with privileged.socket_in_netns(peer_ns, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.sendto(b"x", (_ip(inside), 9999))

    # The sink is listening once a datagram from the peer's own address has landed.
    wait_for(lambda: send(_ip(peer_vm)) or seen.read_text().strip(), 5, "the sink to listen")
    for _ in range(3):
        send("10.9.9.9")
    # A datagram sent after the spoofed ones arrives; the spoofed ones did not.
    before = len(seen.read_text().split())
    wait_for(
        lambda: send(_ip(peer_vm)) or len(seen.read_text().split()) > before, 5, "a later datagram"
    )
    assert set(seen.read_text().split()) == {_ip(peer_vm)}


def test_a_peering_wire_deleted_by_hand_is_made_again(world: World) -> None:
    """The watcher reports the hub's lost wire; the reconciler re-verifies the fabric."""
    _pls, _pe, cons, _hub, _far, inside, peer_vm, _far_vm = _scene(world)
    peer_ns = world.netns(peer_vm)
    wait_for(lambda: try_get(peer_ns, _ip(inside), 8080), 5, "peer -> inside")
    fabric = world.reconciler._fabric
    assert fabric is not None
    hub_ns = names.hub_netns(world.prefix, cons.id)
    wire = next(
        w for w in fabric.wires if w.key.startswith("peer ") and hub_ns in (w.a_netns, w.b_netns)
    )
    end = wire.a_ifname if wire.a_netns == hub_ns else wire.b_ifname
    subprocess.run(["ip", "-n", hub_ns, "link", "del", end], check=True, timeout=10)
    wait_for(lambda: try_get(peer_ns, _ip(inside), 8080), 5, "the peering to carry again")
