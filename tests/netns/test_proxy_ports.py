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
from pathlib import Path

import pytest
from test_proxy import (
    BACKEND,
    connected,
    hello,
    provider,
    serve_backend,
    world_socket,
    world_ss,
)
from world import World, wait_for

pytestmark = pytest.mark.netns


def test_a_client_port_used_for_two_service_ports_is_relayed_with_its_own_port(
    world: World, tmp_path: Path
) -> None:
    _vnet, nic, pls = provider(world, extra_rules=(("other", "fe", 81, 8081, "be"),))
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
