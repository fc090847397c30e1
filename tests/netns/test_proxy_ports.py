"""PROXY relay: flows of one consumer hub that clash at the relay's port.

Every flow a provider hub redirects to the relay arrives at (the pair veth's provider
address, PROXY_PORT) from (the pair's consumer address, the port the consumer hub's SNAT
kept), whatever service port or endpoint it was for. Two flows from the same client
port to two ports of a service (or to two PROXY endpoints) would have one reply tuple
there: conntrack gives the second flow another source port, which the consumer hub's
conntrack does not know. Found by bench/dataplane.py --proxy (iperf3 after wrk: every
connection reset).
"""

from __future__ import annotations

import random
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from test_proxy import BACKEND, connected, hello, serve_backend, world_socket, world_ss
from world import PROVIDER, World, wait_for

from privatelink.core import private_link as pl

pytestmark = pytest.mark.netns


def test_a_client_port_used_for_two_service_ports_is_relayed_with_its_own_port(
    world: World, tmp_path: Path
) -> None:
    vnet = world.vnet(
        PROVIDER,
        "prov",
        "10.0.0.0/16",
        {"fe": "10.0.1.0/24", "be": "10.0.2.0/24", "nat": "10.0.3.0/24"},
    )
    lb = world.load_balancer(
        PROVIDER,
        "lb",
        {"fe": vnet.subnet_id("fe")},
        [("app", "fe", 80, 8080, "be"), ("other", "fe", 81, 8081, "be")],
        probe=None,
    )
    nic = world.nic(
        PROVIDER, "backend", vnet.subnet_id("be"), pools=(lb.child_id("backendAddressPools", "be"),)
    )
    pls = world.service(
        PROVIDER, "svc", (lb.child_id("frontendIPConfigurations", "fe"),), vnet.subnet_id("nat")
    )
    pls = world.put(pl.create_or_update_service, replace(pls, enable_proxy_protocol=True))
    serve_backend(world, nic, tmp_path / "probes")  # port 8080
    world.run(nic, BACKEND, "8081", str(tmp_path / "probes"))
    wait_for(lambda: ":8081" in world_ss(world.netns(nic)), 10, "the backend on 8081")
    client, _pe, pe_ip = connected(world, pls)
    client_ip = client.ip_configurations[0].private_ip
    port = random.randrange(20000, 30000)

    def from_port(dport: int) -> socket.socket | None:
        sock = world_socket(world, client)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        try:
            sock.connect((pe_ip, dport))
            return sock
        except OSError:
            sock.close()
            return None

    first = wait_for(lambda: from_port(80), 5, "a flow to port 80")
    with first:
        assert hello(first)["source_port"] == port
        # The same client port to the service's other port: its own flow in both hubs'
        # conntrack, but the same reply tuple at the relay's port as the first.
        second = wait_for(lambda: from_port(81), 5, "a flow to port 81")
        with second:
            seen = hello(second)
            assert (seen["source"], seen["source_port"]) == (client_ip, port)
            assert (seen["destination"], seen["destination_port"]) == (pe_ip, 81)
            second.sendall(b"ping")
            assert second.recv(16) == b"ping"
    relay = world.reconciler.relay
    assert relay.stats.refused == 0
