"""The DNS server's bookkeeping without namespaces: a fake kernel hands out sockets on
127.0.0.1 (one port pair per "hub"), so rebuilds, wait_idle and (re)binding are tested
without root; tests/netns/test_dns.py does the same inside real namespaces."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from privatelink.core import private_dns as pdm
from privatelink.core import virtual_network as vnm
from privatelink.core.ids import key
from privatelink.dataplane import names, privileged
from privatelink.dns.server import DnsServer
from privatelink.service import ControlPlane
from privatelink.store.sql import SqlRepository

SUB = "11111111-1111-4111-8111-111111111111"
BASE = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network"


class FakeKernel:
    """`netns_inode` and `server_sockets_in_netns` on 127.0.0.1 with free ports."""

    KernelError = privileged.KernelError

    def __init__(self) -> None:
        self.inodes: dict[str, int] = {}  # namespaces that "exist"
        self.ports: dict[str, int] = {}  # where each namespace's server listens now
        self.opened: list[str] = []
        self.lock = threading.Lock()

    def netns_inode(self, name: str) -> int | None:
        with self.lock:
            return self.inodes.get(name)

    def server_sockets_in_netns(
        self, name: str, address: str, port: int
    ) -> tuple[socket.socket, socket.socket, int]:
        with self.lock:
            inode = self.inodes.get(name)
        if inode is None:
            raise privileged.NetnsNotFound(f"enter namespace {name}: gone")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        real_port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", real_port))
        except OSError:
            udp.close()
            tcp.close()
            raise privileged.KernelError(f"port {real_port} taken for TCP") from None
        tcp.listen(16)
        with self.lock:
            self.ports[name] = real_port
            self.opened.append(name)
        return udp, tcp, inode


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FakeKernel, DnsServer, ControlPlane]]:
    kernel = FakeKernel()
    repo = SqlRepository.sqlite_in(tmp_path)
    server = DnsServer(repo, "tst", recheck_seconds=0.2, kernel=kernel)
    plane = ControlPlane(repo, realizer=server)
    server.start()
    try:
        yield kernel, server, plane
    finally:
        server.stop()
        repo.dispose()


def put(plane: ControlPlane, workflow: Callable[..., Any], resource: Any) -> None:
    plane.change(None, resource.id, "put", workflow, resource)


def vnet(plane: ControlPlane, name: str) -> str:
    resource = vnm.VirtualNetwork(
        id=f"{BASE}/virtualNetworks/{name}",
        name=name,
        location="eastus",
        address_prefixes=("10.0.0.0/16",),
        subnets=(vnm.Subnet("s", "10.0.1.0/24"),),
    )
    put(plane, vnm.create_or_update, resource)
    return resource.id


def zone_with_link(plane: ControlPlane, zone: str, vnet_id: str, records: dict[str, str]) -> str:
    zone_id = f"{BASE}/privateDnsZones/{zone}"
    put(
        plane,
        pdm.create_or_update_zone,
        pdm.PrivateDnsZone(id=zone_id, name=zone, location="global"),
    )
    link = pdm.VirtualNetworkLink(
        id=f"{zone_id}/virtualNetworkLinks/l-{vnet_id.rsplit('/', 1)[1]}",
        name=f"l-{vnet_id.rsplit('/', 1)[1]}",
        location="global",
        virtual_network_id=vnet_id,
    )
    put(plane, pdm.create_or_update_link, link)
    for name, ip in records.items():
        record = pdm.ARecordSet(
            id=f"{zone_id}/A/{name}", name=name, location="", ttl=10, ipv4_addresses=(ip,)
        )
        put(plane, pdm.create_or_update_record_set, record)
    return zone_id


def query(kernel: FakeKernel, netns: str, name: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, "A")
    port = kernel.ports[netns]
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=2)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=2)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in reply.answer for rd in rrset)


def test_each_existing_hub_is_served_with_its_vnets_answers(setup) -> None:
    kernel, server, plane = setup
    v1, v2 = vnet(plane, "v1"), vnet(plane, "v2")
    zone_with_link(plane, "contoso.example", v1, {"svc": "10.1.0.5"})
    hub1, hub2 = names.hub_netns("tst", v1), names.hub_netns("tst", v2)
    kernel.inodes[hub1] = 100
    kernel.inodes[hub2] = 200
    kernel.inodes["tst-v-notavnet"] = 300  # a namespace no stored VNet names: not served
    server.hubs_changed()
    wait_for(lambda: set(server.bound()) == {hub1, hub2}, 5, "both hubs bound")
    assert server.bound() == {hub1: key(v1), hub2: key(v2)}
    assert server.wait_idle(5)
    assert addresses(query(kernel, hub1, "svc.contoso.example")) == ["10.1.0.5"]
    assert addresses(query(kernel, hub1, "SVC.contoso.example", tcp=True)) == ["10.1.0.5"]
    assert query(kernel, hub1, "nope.contoso.example").rcode() == dns.rcode.NXDOMAIN
    assert query(kernel, hub1, "example.org").rcode() == dns.rcode.REFUSED
    assert query(kernel, hub2, "svc.contoso.example").rcode() == dns.rcode.REFUSED  # no link


def test_a_change_is_answered_once_wait_idle_returns(setup) -> None:
    kernel, server, plane = setup
    v1 = vnet(plane, "v1")
    hub = names.hub_netns("tst", v1)
    kernel.inodes[hub] = 1
    zone_id = zone_with_link(plane, "contoso.example", v1, {})
    wait_for(lambda: hub in server.bound(), 5, "the hub bound")
    for i in range(5):
        record = pdm.ARecordSet(
            id=f"{zone_id}/A/svc", name="svc", location="", ttl=10, ipv4_addresses=(f"10.0.0.{i}",)
        )
        put(plane, pdm.create_or_update_record_set, record)  # marks the server dirty
        assert server.wait_idle(5)
        assert addresses(query(kernel, hub, "svc.contoso.example")) == [f"10.0.0.{i}"]
    plane.change(None, f"{zone_id}/A/svc", "delete", pdm.delete_record_set, f"{zone_id}/A/svc")
    assert server.wait_idle(5)
    assert query(kernel, hub, "svc.contoso.example").rcode() == dns.rcode.NXDOMAIN


def test_a_change_rebuilds_only_the_vnets_it_touches(setup) -> None:
    kernel, server, plane = setup
    v1, v2 = vnet(plane, "v1"), vnet(plane, "v2")
    zone_with_link(plane, "one.example", v1, {"svc": "10.1.0.5"})
    zone2 = zone_with_link(plane, "two.example", v2, {"svc": "10.2.0.5"})
    assert server.wait_idle(5)
    record = pdm.ARecordSet(
        id=f"{zone2}/A/svc", name="svc", location="", ttl=10, ipv4_addresses=("10.2.0.6",)
    )
    put(plane, pdm.create_or_update_record_set, record)
    assert server.wait_idle(5)
    assert server.table.rebuilt == {key(v2)}
    stats = server.last_rebuild
    assert stats is not None and (stats.rebuilt_vnets, stats.kept_vnets) == (1, 1)
    assert stats.mark_to_swap_seconds is not None and stats.mark_to_swap_seconds >= 0
    assert stats.read_seconds >= 0 and stats.compile_seconds >= 0
    vnet(plane, "v3")  # a change that touches no zone: every table is kept
    assert server.wait_idle(5)
    assert server.table.rebuilt == frozenset() and server.table.vnets == {key(v1), key(v2)}
    hub2 = names.hub_netns("tst", v2)
    kernel.inodes[hub2] = 1
    server.hubs_changed()
    wait_for(lambda: hub2 in server.bound(), 5, "the hub bound")
    assert addresses(query(kernel, hub2, "svc.two.example")) == ["10.2.0.6"]


def test_a_burst_of_udp_queries_is_answered_whole(setup) -> None:
    kernel, server, plane = setup
    v1 = vnet(plane, "v1")
    zone_with_link(plane, "contoso.example", v1, {"svc": "10.1.0.5"})
    hub = names.hub_netns("tst", v1)
    kernel.inodes[hub] = 1
    server.hubs_changed()
    wait_for(lambda: hub in server.bound(), 5, "the hub bound")
    assert server.wait_idle(5)
    # 150 queries sent at once (several reads' worth), and one datagram of 3000 bytes
    # (an EDNS option): each gets its reply.
    big = dns.message.make_query(
        "svc.contoso.example", "A", use_edns=0, options=[dns.edns.GenericOption(65001, b"x" * 3000)]
    )
    queries = [dns.message.make_query(f"n{i}.contoso.example", "A") for i in range(150)]
    queries[0] = big
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(2)
        for q in queries:
            sock.sendto(q.to_wire(max_size=65535), ("127.0.0.1", kernel.ports[hub]))
        replies = {}
        for _ in queries:
            reply = dns.message.from_wire(sock.recv(65535))
            replies[reply.id] = reply
    assert len(replies) == len({q.id for q in queries})
    assert addresses(replies[big.id]) == ["10.1.0.5"]
    assert {r.rcode() for r in replies.values()} == {dns.rcode.NOERROR, dns.rcode.NXDOMAIN}


def test_gone_hubs_are_closed_and_recreated_ones_rebound(setup) -> None:
    kernel, server, plane = setup
    v1 = vnet(plane, "v1")
    hub = names.hub_netns("tst", v1)
    kernel.inodes[hub] = 1
    server.hubs_changed()
    wait_for(lambda: hub in server.bound(), 5, "the hub bound")
    first_port = kernel.ports[hub]
    del kernel.inodes[hub]  # the namespace was deleted
    server.hubs_changed()
    wait_for(lambda: hub not in server.bound(), 5, "the hub's sockets closed")
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with probe:  # the TCP listener is really closed
        probe.settimeout(1)
        assert probe.connect_ex(("127.0.0.1", first_port)) != 0
    kernel.inodes[hub] = 2  # created again, unseen: the periodic check finds it
    wait_for(lambda: kernel.opened.count(hub) == 2, 5, "the periodic check rebinding")
    kernel.inodes[hub] = 3  # recreated between two checks: another inode, so rebound
    wait_for(lambda: kernel.opened.count(hub) == 3, 5, "a rebind after recreation")
    assert query(kernel, hub, "svc.contoso.example").rcode() == dns.rcode.REFUSED


def test_a_failing_bind_is_retried_and_other_hubs_are_served(setup) -> None:
    kernel, server, plane = setup
    v1, v2 = vnet(plane, "v1"), vnet(plane, "v2")
    hub1, hub2 = names.hub_netns("tst", v1), names.hub_netns("tst", v2)
    real = kernel.server_sockets_in_netns
    failures = {"left": 2}

    def flaky(name: str, address: str, port: int) -> tuple[socket.socket, socket.socket, int]:
        if name == hub1 and failures["left"]:
            failures["left"] -= 1
            raise privileged.KernelError("simulated bind failure")
        return real(name, address, port)

    kernel.server_sockets_in_netns = flaky  # type: ignore[method-assign]
    kernel.inodes[hub1] = 1
    kernel.inodes[hub2] = 2
    server.hubs_changed()
    wait_for(lambda: hub2 in server.bound(), 5, "the healthy hub bound")
    wait_for(lambda: hub1 in server.bound(), 5, "the failing hub bound on a later check")
    assert failures["left"] == 0


def test_a_hub_without_its_address_yet_is_bound_after_its_sync_quietly(
    setup, caplog: pytest.LogCaptureFixture
) -> None:
    kernel, server, plane = setup
    server.recheck_seconds = 60.0  # only hubs_changed() binds here
    v1 = vnet(plane, "v1")
    hub = names.hub_netns("tst", v1)
    real = kernel.server_sockets_in_netns
    ready = threading.Event()
    tries: list[str] = []

    def early(name: str, address: str, port: int) -> tuple[socket.socket, socket.socket, int]:
        tries.append(name)
        if not ready.is_set():
            raise privileged.AddressNotReady(f"{address} is not on an interface in {name} yet")
        return real(name, address, port)

    kernel.server_sockets_in_netns = early  # type: ignore[method-assign]
    kernel.inodes[hub] = 1  # the hub exists, its first sync has not given lo the address
    with caplog.at_level("DEBUG", logger="privatelink.dns"):
        server.hubs_changed()
        wait_for(lambda: tries, 5, "a first bind attempt")
        assert hub not in server.bound()
        ready.set()  # the sync ends: the reconciler calls hubs_changed()
        server.hubs_changed()
        wait_for(lambda: hub in server.bound(), 5, "the hub bound after its sync")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # not a failure


def test_a_failing_rebuild_keeps_the_old_table_and_is_retried(setup) -> None:
    kernel, server, plane = setup
    v1 = vnet(plane, "v1")
    hub = names.hub_netns("tst", v1)
    kernel.inodes[hub] = 1
    zone_with_link(plane, "contoso.example", v1, {"svc": "10.1.0.5"})
    assert server.wait_idle(5)
    wait_for(lambda: hub in server.bound(), 5, "the hub bound")
    real = server._read_table
    failures = {"left": 2}

    def flaky() -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database unreachable")
        return real()

    server._read_table = flaky  # type: ignore[method-assign]
    server.mark_dirty()
    # Meanwhile the old table answers.
    assert addresses(query(kernel, hub, "svc.contoso.example")) == ["10.1.0.5"]
    assert server.wait_idle(10), "the rebuild was not retried"
    assert failures["left"] == 0 and server.last_error and "unreachable" in server.last_error


def test_wait_idle_is_false_when_stopped_and_stop_closes_everything(tmp_path: Path) -> None:
    kernel = FakeKernel()
    repo = SqlRepository.sqlite_in(tmp_path)
    server = DnsServer(repo, "tst", recheck_seconds=0.2, kernel=kernel)
    try:
        server.mark_dirty()
        assert server.wait_idle(0.2) is False  # never started
        v1 = vnet(ControlPlane(repo), "v1")
        hub = names.hub_netns("tst", v1)
        kernel.inodes[hub] = 1
        server.start()
        assert server.wait_idle(5)
        wait_for(lambda: hub in server.bound(), 5, "the hub bound")
        port = kernel.ports[hub]
        server.stop()
        assert not server.running and server.bound() == {}
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with probe:
            probe.settimeout(1)
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        started = time.monotonic()
        server.mark_dirty()
        assert server.wait_idle(5) is False and time.monotonic() - started < 1
    finally:
        server.stop()
        repo.dispose()
