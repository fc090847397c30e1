"""500 live links on real namespaces (issue 12): established flows survive a restart of
the reconciler, which changes nothing in the kernel; a link rejected among them is cut
while the flows of the others go on."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

import pytest
from test_private_link import _kernel_state, provider
from world import CONSUMER2, World, wait_for

pytestmark = pytest.mark.netns

LINKS = 500


def _echo(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.settimeout(1.0)
        sock.sendall(data)
        return sock.recv(64) == data
    except OSError:
        return False


def test_five_hundred_links_restart_keeps_flows_and_a_rejected_one_is_cut(world: World) -> None:
    _vnet, _lb, backends, pls = provider(world, backends=1)
    world.serve_echo(backends[0])
    # Auto-approved consumer (CONSUMER2): every endpoint is linked as it is made.
    cvnet = world.vnet(
        CONSUMER2, "many", "10.8.0.0/16", {"vms": "10.8.0.0/24", "pe": "10.8.4.0/22"}
    )
    client = world.nic(CONSUMER2, "many-client", cvnet.subnet_id("vms"))
    endpoints = []
    began = time.monotonic()
    for i in range(LINKS):  # bounded: LINKS endpoints, each one control-plane write
        endpoints.append(world.endpoint(CONSUMER2, f"pe{i}", cvnet.subnet_id("pe"), pls.alias))
        if i % 100 == 99:
            world.settle(timeout=120)
    world.settle(timeout=120)
    made = time.monotonic() - began
    assert world.reconciler.last is not None and world.reconciler.last.links == LINKS
    chosen = [endpoints[0], endpoints[LINKS // 2], endpoints[-1]]
    ips = [world.endpoint_ip(pe) for pe in chosen]
    with ExitStack() as stack:
        socks = []
        for ip in ips:
            sock = wait_for(
                lambda ip=ip: _connected(stack, world, client, ip), 10, f"a flow to {ip}"
            )
            socks.append(sock)
        assert all(_echo(s, b"before") for s in socks)
        before = _kernel_state(world)
        world.restart_reconciler()
        world.settle(timeout=120)
        assert all(_echo(s, b"after restart") for s in socks), "a flow did not survive"
        assert _kernel_state(world) == before, "the restart changed kernel state"
        # Reject the middle one: its flow is cut, the other two go on.
        world.set_connection(pls.id, chosen[1], "Rejected")
        world.settle(timeout=30)
        assert not _echo(socks[1], b"cut?"), "the rejected link still carries its flow"
        assert _echo(socks[0], b"still") and _echo(socks[2], b"still")
    assert made < 600  # a bound on the loop above, not a speed target


def _connected(stack: ExitStack, world: World, client, ip: str) -> socket.socket | None:
    try:
        sock = stack.enter_context(world.connection(client, ip, 80))
    except OSError:
        return None
    return sock if _echo(sock, b"hello") else None
