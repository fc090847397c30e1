"""PROXY protocol v2 on real namespaces: the relay writes the header with the LinkID,
probes carry one, a cut ends a relayed flow, and the flag flips without breaking flows.

The backend is a program that requires the header (as HAProxy's `accept-proxy` or
nginx's `proxy_protocol` do): it decodes it with privatelink's codec, answers with what
it read as one JSON line, then echoes. Health probes' LOCAL headers go to a file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_private_link import provider as private_link_provider
from world import CONSUMER, PROVIDER, World, seconds_until_broken, wait_for

from privatelink.core import private_link as pl

pytestmark = pytest.mark.netns

BACKEND = r"""
import json, socket, sys, threading
from privatelink.dataplane.proxy import header
port, probes = int(sys.argv[1]), sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(128)
def serve(c, peer):
    try:
        data = b""
        while len(data) < header.needed(data):
            chunk = c.recv(header.needed(data) - len(data))
            if not chunk:
                return
            data += chunk
        h = header.decode(data)
        if h.local:
            with open(probes, "a") as f:
                f.write(f"{peer[0]}\n")
            return
        c.sendall((json.dumps({"peer": peer[0], "source": h.source,
            "source_port": h.source_port, "destination": h.destination,
            "destination_port": h.destination_port, "link_id": h.link_id}) + "\n").encode())
        while (d := c.recv(65536)):
            c.sendall(d)
    except (OSError, ValueError):
        pass  # no header: the connection is dropped, as a strict backend does
    finally:
        c.close()
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"""


def provider(
    world: World,
    proxy: bool = True,
    probe: bool = False,
    extra_rules: tuple[tuple[str, str, int, int, str], ...] = (),
):
    """test_private_link's provider with one backend (a Tcp probe on 8080 when `probe`),
    its service turned to PROXY when `proxy`."""
    vnet, _lb, nics, pls = private_link_provider(
        world, backends=1, probe_interval=5 if probe else None, extra_rules=extra_rules
    )
    if proxy:
        pls = world.put(pl.create_or_update_service, replace(pls, enable_proxy_protocol=True))
    return vnet, nics[0], pls


def serve_backend(world: World, nic, probes: Path) -> None:
    world.run(nic, BACKEND, "8080", str(probes))
    ip = nic.ip_configurations[0].private_ip
    netns = world.netns(nic)

    def listening() -> bool:
        out = world_ss(netns)
        return f"{ip}:8080" in out or "0.0.0.0:8080" in out

    wait_for(listening, 10, "the backend to listen")


def world_ss(netns: str) -> str:
    import subprocess

    done = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-ltn"], capture_output=True, text=True, timeout=10
    )
    return done.stdout


def connected(world: World, pls, sub: str = CONSUMER, same_network=None):
    """A client VM and an approved endpoint to the service (in `same_network` when
    given: the provider's own network)."""
    if same_network is None:
        vnet = world.vnet(sub, "cons", "10.0.0.0/16", {"vms": "10.0.1.0/24", "pe": "10.0.2.0/24"})
        client = world.nic(sub, "client", vnet.subnet_id("vms"))
        pe = world.endpoint(sub, "pe", vnet.subnet_id("pe"), pls.alias)
    else:
        client = world.nic(PROVIDER, "client", same_network.subnet_id("fe"))
        pe = world.endpoint(PROVIDER, "pe", same_network.subnet_id("fe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    return client, pe, world.endpoint_ip(pe)


def hello(sock: socket.socket) -> dict:
    """The backend's JSON line (what it read from the header)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "the backend closed the connection"
        data += chunk
    return json.loads(data)


def link_id(world: World, pls, pe) -> int:
    remote = world.get(pe.id).connection.remote_name
    conn = world.get(f"{pls.id}/privateEndpointConnections/{remote}")
    return int(conn.link_identifier)


def open_flow(world: World, client, pe_ip: str) -> socket.socket:
    def attempt() -> socket.socket | None:
        sock = world_socket(world, client)
        try:
            sock.connect((pe_ip, 80))
            return sock
        except OSError:
            sock.close()
            return None

    return wait_for(attempt, 5, "a connection through the PE")


def world_socket(world: World, client) -> socket.socket:
    from privatelink.dataplane import privileged

    sock = privileged.socket_in_netns(world.netns(client))
    sock.settimeout(3)
    return sock


def test_the_backend_reads_the_link_id_and_the_clients_own_address(
    world: World, tmp_path: Path
) -> None:
    _vnet, nic, pls = provider(world)
    serve_backend(world, nic, tmp_path / "probes")
    client, pe, pe_ip = connected(world, pls)
    nat_ips = {c.private_ip for c in world.get(pls.id).ip_configurations}
    sock = open_flow(world, client, pe_ip)
    with sock:
        seen = hello(sock)
        assert seen["link_id"] == link_id(world, pls, pe)
        # Azure: the client's own address (here 10.0.1.4 in the consumer network, which
        # overlaps the provider's), not the NAT IP the backend's socket sees.
        assert seen["source"] == client.ip_configurations[0].private_ip
        assert seen["source_port"] == sock.getsockname()[1]
        assert (seen["destination"], seen["destination_port"]) == (pe_ip, 80)
        assert seen["peer"] in nat_ips
        # Bytes both ways, through splice: a megabyte echoed whole.
        payload = bytes(range(256)) * 4096
        sock.sendall(payload)
        got = bytearray()
        while len(got) < len(payload):
            chunk = sock.recv(1 << 16)
            assert chunk
            got += chunk
        assert bytes(got) == payload
        # A half-close is passed on: the backend sees EOF, ends, and so does the flow.
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(16) == b""
    relay = world.reconciler.relay
    wait_for(lambda: relay.flows() == 0, 5, "the relay to end the flow")
    assert relay.stats.relayed >= 1


def test_an_endpoint_in_the_services_own_network_gets_a_header_too(
    world: World, tmp_path: Path
) -> None:
    vnet, nic, pls = provider(world)
    serve_backend(world, nic, tmp_path / "probes")
    client, pe, pe_ip = connected(world, pls, same_network=vnet)
    with open_flow(world, client, pe_ip) as sock:
        seen = hello(sock)
        port = sock.getsockname()[1]
    assert seen["link_id"] == link_id(world, pls, pe)
    # In its own network the flow is not SNATed on the way: the relay's peer is the client.
    assert (seen["source"], seen["source_port"]) == (client.ip_configurations[0].private_ip, port)
    assert (seen["destination"], seen["destination_port"]) == (pe_ip, 80)


def test_health_probes_carry_a_local_header(world: World, tmp_path: Path) -> None:
    probes = tmp_path / "probes"
    _vnet, nic, pls = provider(world, probe=True)
    serve_backend(world, nic, probes)
    # The first probe runs when the prober takes the target in: within a few seconds.
    wait_for(lambda: probes.exists() and probes.read_text().strip(), 10, "a probe's header")
    assert set(probes.read_text().split()) == {"168.63.129.16"}
    client, _pe, pe_ip = connected(world, pls)
    with open_flow(world, client, pe_ip) as sock:
        assert hello(sock)["source"] == client.ip_configurations[0].private_ip


def test_rejecting_the_connection_cuts_a_relayed_flow_within_a_second(
    world: World, tmp_path: Path
) -> None:
    _vnet, nic, pls = provider(world)
    serve_backend(world, nic, tmp_path / "probes")
    client, pe, pe_ip = connected(world, pls)
    with open_flow(world, client, pe_ip) as sock:
        hello(sock)
        started = time.monotonic()
        world.set_connection(pls.id, pe, "Rejected")
        broken_after = seconds_until_broken(sock, started)
        assert broken_after is not None, "the relayed flow still works"
        assert broken_after < 1.0, f"cut only after {broken_after:.2f}s"
    relay = world.reconciler.relay
    # The relay's side ends too (by the cut, or first by an error on the dead path).
    wait_for(lambda: relay.flows() == 0, 5, "the relay to drop the flow")


def test_flipping_the_flag_keeps_the_flows_of_the_other_path(world: World, tmp_path: Path) -> None:
    """Off -> on: a kernel-path flow (no header) goes on; on -> off: a relayed one does."""
    _vnet, nic, pls = provider(world, proxy=False)
    echo_port = 8080
    world.serve_echo(nic, echo_port)  # the kernel path's backend: a plain echo server
    client, _pe, pe_ip = connected(world, pls)
    kernel_flow = open_flow(world, client, pe_ip)
    with kernel_flow:
        kernel_flow.sendall(b"one")
        assert kernel_flow.recv(16) == b"one"
        world.put(
            pl.create_or_update_service, replace(world.get(pls.id), enable_proxy_protocol=True)
        )
        world.settle()
        kernel_flow.sendall(b"two")
        assert kernel_flow.recv(16) == b"two"  # its DNAT is in its conntrack entry
        # A new flow now goes to the relay: the echo server gets the header first.
        with open_flow(world, client, pe_ip) as relayed:
            relayed.sendall(b"x")
            first = relayed.recv(16)
            assert first.startswith(b"\r\n\r\n\x00\r\nQUIT\n"), first
            world.put(
                pl.create_or_update_service,
                replace(world.get(pls.id), enable_proxy_protocol=False),
            )
            world.settle()
            relayed.sendall(b"still")
            echoed = b""
            while not echoed.endswith(b"still"):
                chunk = relayed.recv(4096)
                assert chunk, "the relayed flow ended when the flag went off"
                echoed += chunk
        # The relay left the hub's namespace with its listener (a thread inside a deleted
        # namespace would keep it alive).
        relay = world.reconciler.relay
        assert relay.listening() == set()
        thread = relay.local._thread
        assert thread is not None and thread.native_id is not None
        ours = os.stat("/proc/self/ns/net").st_ino
        assert os.stat(f"/proc/self/task/{thread.native_id}/ns/net").st_ino == ours
        # And new flows are the kernel's again.
        with open_flow(world, client, pe_ip) as plain:
            plain.sendall(b"three")
            assert plain.recv(16) == b"three"
        kernel_flow.sendall(b"four")
        assert kernel_flow.recv(16) == b"four"


def test_relayed_bytes_move_the_services_endpoints_and_frontends_metrics(
    world: World, tmp_path: Path
) -> None:
    """Relayed flows end in the relay, not in nft's forward chain: the relay counts them."""
    from test_metrics import _sampler, _series

    from privatelink.core.ids import key

    _vnet, nic, pls = provider(world)
    serve_backend(world, nic, tmp_path / "probes")
    client, pe, pe_ip = connected(world, pls)
    sampler, _store = _sampler(world)
    sampler.sample_once()  # a baseline
    payload = b"m" * 1_000_000
    with open_flow(world, client, pe_ip) as sock:
        line = len(json.dumps(hello(sock))) + 1
        sock.sendall(payload)
        got = 0
        while got < len(payload):
            chunk = sock.recv(1 << 16)
            assert chunk
            got += len(chunk)
    series = _series(sampler.sample_once())

    def near(value: float, sent: int) -> bool:
        return abs(value - sent) <= 0.1 * sent

    pls_key, pe_key = key(pls.id), key(pe.id)
    assert near(series[(pls_key, "PLSBytesIn", ())], len(payload)), series
    assert near(series[(pls_key, "PLSBytesOut", ())], len(payload) + line), series
    assert near(series[(pe_key, "PEBytesIn", ())], len(payload)), series
    inbound = {
        k: v for k, v in series.items() if k[1] == "ByteCount" and ("Direction", "Inbound") in k[2]
    }
    assert len(inbound) == 1 and near(next(iter(inbound.values())), len(payload)), series
    syns = [v for k, v in series.items() if k[1] == "SYNCount"]
    assert syns == [1.0], series


def test_worker_processes_share_the_flows_and_a_dead_one_is_made_again(
    world: World, tmp_path: Path
) -> None:
    """The relay in 3 processes (proxy/workers.py): each takes some of 30 connections
    (SO_REUSEPORT spreads them), a killed worker is started again at the next update,
    and stopping the pool ends every worker process."""
    pool = world.reconciler.relay
    pool.workers = 3  # before the first PROXY plan: whatever this machine's core count
    _vnet, nic, pls = provider(world)
    serve_backend(world, nic, tmp_path / "probes")
    client, pe, pe_ip = connected(world, pls)
    expected = link_id(world, pls, pe)

    def some_flows(count: int) -> None:
        for _ in range(count):
            with open_flow(world, client, pe_ip) as sock:
                assert hello(sock)["link_id"] == expected

    some_flows(30)
    children = [c for c in pool._children if c is not None]
    assert len(children) == 2
    accepted = [pool.local.stats.accepted] + [
        got["accepted"] for got in pool._ask_all("stats").values()
    ]
    assert all(n > 0 for n in accepted) and sum(accepted) == 30, accepted
    assert pool.stats.relayed == 30
    # A worker killed outright: its listener goes with it, the others serve on, and the
    # next update starts it again with the current plan.
    dead = children[0].proc
    os.kill(dead.pid, 9)
    dead.wait(5)
    some_flows(5)
    pool.update(pool._config)
    assert pool.wait_applied(10)
    alive = [c for c in pool._children if c is not None]
    assert len(alive) == 2 and dead not in [c.proc for c in alive]
    some_flows(10)
    assert pool.listening() == set(pool.local.listening()) != set()
    pids = [c.proc.pid for c in alive]
    pool.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
