"""Self-repair on real namespaces: what others break comes back, and nothing else moves.

Every case starts from one provider (a backend VM behind a private link service) and one
consumer network with a client VM and three endpoints: one Approved (carries traffic
before the fault), one Pending and one Rejected (carry nothing). Then the fault: a
namespace deleted (`ip netns del`, also while a process holds it), our nft table flushed
or deleted, a veth deleted, a conntrack table at its limit, and a server killed with -9
in the middle of its first apply. After each: the approved endpoint carries traffic
again (waited for with a deadline), the pending and rejected ones are still refused, and
the namespaces and interfaces of ours are exactly the desired ones.

Repair times are not asserted (no timing in tests); with PRIVATELINK_REPAIR_TIMES=<file>
each case appends `{"case": ..., "seconds": ...}` lines there (figures for the docs).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from serverproc import free_port, serve_process, stop
from world import CONSUMER, ECHO, PROVIDER, World, wait_for

from privatelink.core import network_interface as nim
from privatelink.core import private_endpoint as pem
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm
from privatelink.dataplane import names, privileged
from privatelink.dataplane.desired import Snapshot, approved_keys, plan
from privatelink.dataplane.repair import Owned

pytestmark = pytest.mark.netns

REPAIR_DEADLINE_S = 20.0  # events repair within a second or two; the full pass is 300 s


@dataclass
class Scene:
    """One provider, one consumer network, endpoints in the three states."""

    provider_vnet: vnm.VirtualNetwork
    consumer_vnet: vnm.VirtualNetwork
    backend: nim.NetworkInterface
    client: nim.NetworkInterface
    pls: plsm.PrivateLinkService
    approved: pem.PrivateEndpoint
    pending: pem.PrivateEndpoint
    rejected: pem.PrivateEndpoint
    approved_ip: str
    pending_ip: str
    rejected_ip: str
    prefix: str

    @property
    def provider_hub(self) -> str:
        return names.hub_netns(self.prefix, self.provider_vnet.id)

    @property
    def consumer_hub(self) -> str:
        return names.hub_netns(self.prefix, self.consumer_vnet.id)


def build(world: World, suffix: str = "") -> Scene:
    """The scene's resources in the store (and, with a data plane, in the kernel)."""
    pvnet = world.vnet(
        PROVIDER,
        f"prov{suffix}",
        "10.0.0.0/16",
        {"fe": "10.0.1.0/24", "be": "10.0.2.0/24", "nat": "10.0.3.0/24"},
    )
    lb = world.load_balancer(  # no probe: the backend takes traffic as soon as it listens
        PROVIDER,
        f"lb{suffix}",
        {"fe": pvnet.subnet_id("fe")},
        [("echo", "fe", 80, 8080, "be")],
        probe=None,
    )
    pool = lb.child_id("backendAddressPools", "be")
    backend = world.nic(PROVIDER, f"backend{suffix}", pvnet.subnet_id("be"), pools=(pool,))
    pls = world.service(
        PROVIDER,
        f"svc{suffix}",
        (lb.child_id("frontendIPConfigurations", "fe"),),
        pvnet.subnet_id("nat"),
    )
    cvnet = world.vnet(
        CONSUMER, f"cons{suffix}", "10.0.0.0/16", {"vms": "10.0.1.0/24", "pe": "10.0.2.0/24"}
    )
    client = world.nic(CONSUMER, f"client{suffix}", cvnet.subnet_id("vms"))
    endpoints = {
        state: world.endpoint(CONSUMER, f"pe-{state}{suffix}", cvnet.subnet_id("pe"), pls.alias)
        for state in ("approved", "pending", "rejected")
    }
    world.set_connection(pls.id, endpoints["approved"], "Approved")
    world.set_connection(pls.id, endpoints["rejected"], "Rejected")
    return Scene(
        pvnet,
        cvnet,
        backend,
        client,
        pls,
        endpoints["approved"],
        endpoints["pending"],
        endpoints["rejected"],
        world.endpoint_ip(endpoints["approved"]),
        world.endpoint_ip(endpoints["pending"]),
        world.endpoint_ip(endpoints["rejected"]),
        world.prefix,
    )


def scene(world: World) -> Scene:
    """The scene, realized, with an echo backend; the approved endpoint carries traffic."""
    s = build(world)
    world.settle()
    world.serve_echo(s.backend)
    wait_for(lambda: carries(world, s.client, s.approved_ip), 10, "traffic before the fault")
    assert_nothing_else(world, s)
    return s


def carries(world: World, client: nim.NetworkInterface, ip: str) -> bool:
    """An echo round trip through `ip:80` from the client VM."""
    try:
        with world.connection(client, ip, 80) as sock:
            sock.settimeout(1)
            sock.sendall(b"ping")
            return sock.recv(16) == b"ping"
    except (OSError, privileged.KernelError):  # the VM's namespace may be gone for now
        return False


def refused(netns: str, ip: str) -> bool:
    """A TCP connect from `netns` is answered with a reset (not a timeout, not a reply)."""
    try:
        with privileged.socket_in_netns(netns) as sock:
            sock.settimeout(2)
            sock.connect((ip, 80))
    except ConnectionRefusedError:
        return True
    except (OSError, privileged.KernelError):
        return False
    return False


def assert_nothing_else(world: World, s: Scene) -> None:
    """The pending and rejected endpoints are refused."""
    client = world.netns(s.client)
    assert refused(client, s.pending_ip), "a pending endpoint did not refuse"
    assert refused(client, s.rejected_ip), "a rejected endpoint did not refuse"


def assert_exactly(prefix: str, owned: Owned) -> None:
    """Our namespaces are the desired ones, and each hub holds exactly its interfaces."""
    ours = {n for n in privileged.list_netns() if names.is_ours(prefix, n)}
    assert ours == set(owned.hubs) | set(owned.nic_hub), "namespaces differ from the desired"
    for hub in owned.hubs:
        with privileged.Netlink(hub) as nl:
            present = set(nl.links())
        wanted = {ifname for (netns, ifname) in owned.interfaces if netns == hub}
        assert present == wanted, f"{hub} holds {sorted(present)}, wants {sorted(wanted)}"


def record(case: str, seconds: float) -> None:
    """Append a repair time to $PRIVATELINK_REPAIR_TIMES, when set (figures for docs)."""
    path = os.environ.get("PRIVATELINK_REPAIR_TIMES")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"case": case, "seconds": round(seconds, 3)}) + "\n")


def break_and_wait(world: World, s: Scene, case: str, *argv: str) -> None:
    """Run `argv` (an operator breaking something of ours); wait until the reconciler
    has repaired it and the approved endpoint carries traffic again; check the rest."""
    before = world.reconciler.stats().repairs
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    wait_for(
        lambda: world.reconciler.stats().repairs > before,
        REPAIR_DEADLINE_S,
        f"a repair after {case}",
        every=0.01,
    )
    record(f"{case}: repaired", time.monotonic() - started)
    wait_for(
        lambda: carries(world, s.client, s.approved_ip),
        REPAIR_DEADLINE_S,
        f"traffic after {case}",
        every=0.02,
    )
    record(f"{case}: traffic again", time.monotonic() - started)
    assert world.reconciler.wait_idle(10), "the data plane did not settle after the repair"
    assert_nothing_else(world, s)
    assert_exactly(world.prefix, world.reconciler.owned())


# --- namespaces -----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["client", "consumer-hub", "provider-hub"])
def test_a_deleted_namespace_is_made_again(world: World, which: str) -> None:
    s = scene(world)
    netns = {
        "client": world.netns(s.client),
        "consumer-hub": s.consumer_hub,
        "provider-hub": s.provider_hub,
    }[which]
    break_and_wait(world, s, f"ip netns del {which}", "ip", "netns", "del", netns)
    assert netns in privileged.list_netns()
    assert world.reconciler.stats().repairs >= 1


@pytest.mark.parametrize("which", ["client", "consumer-hub", "provider-hub"])
def test_a_namespace_deleted_while_a_process_holds_it_is_paired_again(
    world: World, which: str
) -> None:
    """`ip netns del` of a namespace with a process in it: the old namespace lives on,
    with its veths still paired. No interface event: the name's disappearance is the
    signal, and the veths are paired with the new namespace."""
    s = scene(world)
    netns = {
        "client": world.netns(s.client),
        "consumer-hub": s.consumer_hub,
        "provider-hub": s.provider_hub,
    }[which]
    holder = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", "import time; time.sleep(600)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    world.procs.append(holder)
    wait_for(lambda: _in_netns(holder.pid, netns), 10, "the holder to enter the namespace")
    break_and_wait(world, s, f"ip netns del {which} (held)", "ip", "netns", "del", netns)
    assert not _in_netns(holder.pid, netns), "the new namespace should not be the held one"


def _in_netns(pid: int, name: str) -> bool:
    """Whether process `pid` runs in the namespace now named `name` (by its inode)."""
    try:
        mine = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return False
    return privileged.netns_inode(name) == mine


# --- nftables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "which"),
    [("flush", "provider"), ("flush", "consumer"), ("delete", "provider"), ("delete", "consumer")],
)
def test_our_nft_table_flushed_or_deleted_is_applied_again(
    world: World, command: str, which: str
) -> None:
    s = scene(world)
    hub = s.provider_hub if which == "provider" else s.consumer_hub
    argv = ("ip", "netns", "exec", hub, "nft", command, "table", "ip", names.TABLE)
    break_and_wait(world, s, f"nft {command} table ({which} hub)", *argv)
    assert "chain forward" in privileged.list_nft(hub, names.TABLE)


def test_our_own_commits_are_not_taken_for_damage(world: World) -> None:
    scene(world)
    before = world.reconciler.stats().repairs
    world.reconciler.mark_dirty()  # a sync with nothing to do, then one changing tables
    assert world.reconciler.wait_idle(10)
    world.vnet(PROVIDER, "another", "10.9.0.0/16", {"s": "10.9.0.0/24"})
    world.settle()
    world.settle()
    assert world.reconciler.stats().repairs == before


# --- veths ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["link-consumer-end", "link-provider-end", "client-veth"])
def test_a_deleted_veth_is_made_again(world: World, which: str) -> None:
    s = scene(world)
    owned = world.reconciler.owned()
    if which == "client-veth":
        hub, ifname = s.consumer_hub, names.nic_hub_ifname(s.client.id)
    else:
        hub = s.consumer_hub if which == "link-consumer-end" else s.provider_hub
        ifname = next(i for (h, i) in owned.interfaces if h == hub and i.startswith("k"))
    break_and_wait(world, s, f"ip link del {which}", "ip", "-n", hub, "link", "del", ifname)


# --- conntrack ------------------------------------------------------------------------


def test_a_full_conntrack_table_refuses_new_flows_visibly(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """At the limit the hub refuses new flows with a reset (counted, logged) instead of
    the kernel's silent drop; once flows are closed and gone, new ones get in."""
    caplog.set_level(logging.INFO, logger="privatelink.dataplane")
    s = scene(world)
    gauges = [privileged.ConntrackGauge(h) for h in (s.consumer_hub, s.provider_hub)]
    try:
        for hub in (s.consumer_hub, s.provider_hub):
            privileged.conntrack_reap(hub)  # count live entries only, as the watcher does
        base = max(g.count() for g in gauges)
    finally:
        for g in gauges:
            g.close()
    room = 6
    world.reconciler.conntrack_limit = base + room
    flows: list[socket.socket] = []
    try:
        for _ in range(room):  # each echo flow holds one entry in each hub
            sock = privileged.socket_in_netns(world.netns(s.client))
            sock.settimeout(2)
            sock.connect((s.approved_ip, 80))
            flows.append(sock)
        at_limit = time.monotonic()
        full = wait_for(lambda: world.reconciler.stats().full_hubs, 10, "a hub to be full")
        wait_for(
            lambda: all(
                "ct state new jump refuse_new" in privileged.list_nft(h, names.TABLE) for h in full
            ),
            10,
            "the full hub's table to refuse new flows",
        )
        record("conntrack at its limit: refusing", time.monotonic() - at_limit)
        with (
            pytest.raises(ConnectionRefusedError),  # a reset at once, never a timeout
            privileged.socket_in_netns(world.netns(s.client)) as extra,
        ):
            extra.settimeout(5)
            extra.connect((s.approved_ip, 80))
        wait_for(lambda: world.reconciler.stats().refused_flows >= 1, 10, "the refusal count")
        assert any(
            r.levelno == logging.WARNING and "refused" in r.getMessage() for r in caplog.records
        ), "no warning about refused flows"
        assert world.reconciler.stats().kernel_drops == 0
        for sock in flows:  # close with a reset: the entries leave conntrack after 10 s
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        flows.clear()
        closed = time.monotonic()
        wait_for(
            lambda: carries(world, s.client, s.approved_ip),
            40,
            "a new flow once the closed ones are gone",
            every=0.5,
        )
        record("conntrack: admitting again after closing (10 s CLOSE)", time.monotonic() - closed)
        assert not world.reconciler.stats().full_hubs
        assert_nothing_else(world, s)
    finally:
        for sock in flows:
            sock.close()


# --- kill -9 in the middle of an apply ------------------------------------------------

CONSUMERS = 4  # networks (hub + client VM + three endpoints each): a first sync of ~1 s


def test_a_server_killed_in_the_middle_of_an_apply_converges_after_a_restart(
    store_world: World,
) -> None:
    world = store_world
    scenes = [build(world, suffix=str(i)) for i in range(CONSUMERS)]
    owned = _desired(world)
    world.repo.dispose()  # the server owns the database from here on
    expected = set(owned.hubs) | set(owned.nic_hub)
    argv = [sys.executable, "-m", "privatelink.cli.main", "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(free_port()), "--data-dir", str(world.data_dir)]
    argv += ["--dataplane", "on", "--netns-prefix", world.prefix]
    log_path = world.data_dir / "killed-server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
    try:
        # Poll the kernel (bounded) until the first sync is under way but not done.
        deadline = time.monotonic() + 60
        made: set[str] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            made = {n for n in privileged.list_netns() if names.is_ours(world.prefix, n)}
            if len(made) >= len(expected) // 2:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
    assert made, f"the server made no namespace: {log_path.read_text()[-2000:]}"
    assert made < expected, "killed too late: the first apply had finished"
    assert not (world.data_dir / "dataplane.json").exists(), "killed after the first sync"

    started = time.monotonic()
    with serve_process(world.data_dir, "--dataplane", "on", "--netns-prefix", world.prefix):
        index = world.data_dir / "dataplane.json"
        wait_for(index.exists, 30, "the restarted server's first sync")
        record("kill -9 mid-apply: restart to first sync done", time.monotonic() - started)
        for i, s in enumerate(scenes):
            proc = subprocess.Popen(
                ["ip", "netns", "exec", world.netns(s.backend), sys.executable, "-c", ECHO, "8080"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            world.procs.append(proc)
            wait_for(
                lambda s=s: carries(world, s.client, s.approved_ip),
                REPAIR_DEADLINE_S,
                f"traffic through network {i} after the restart",
                every=0.05,
            )
            assert_nothing_else(world, s)
        record("kill -9 mid-apply: restart to traffic in every network", time.monotonic() - started)
        assert_exactly(world.prefix, owned)


def _desired(world: World) -> Owned:
    """What the server should build from the store (the reconciler's own computation)."""
    stored = world.repo.snapshot()
    snapshot = Snapshot.of(stored)
    keys = approved_keys(stored)
    slots = world.repo.link_slots(keys, names.MAX_SLOTS)
    return Owned.of(plan(snapshot, slots, {}, world.prefix))
