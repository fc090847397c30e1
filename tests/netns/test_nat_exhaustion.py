"""A service out of NAT ports, on a real kernel.

Linux's SNAT keeps a flow's source port when the tuple it makes is free, else picks
another port of the same class (nf_nat_l4proto_unique_tuple: 1-511, 600-1023,
1024-65535). One NAT IP therefore carries 511 flows to one backend IP and port from
clients on ports 1-511. A service with one NAT IP and one backend: the client of one
consumer network holds a flow from every port 1-511, so the NAT IP has none of that
class left for that destination; the client of a second network (another pair veth,
another source address in the provider hub, so its original tuples are new) then opens
flows from low ports: the provider hub finds no free port, the kernel fails to insert the
flow and drops its SYN (`insert_failed`), and the client times out. The sampler sees the
NAT IP at 100 %, the service out of NAT ports, and Resource Health says Degraded.
"""

from __future__ import annotations

import json
import logging
import selectors
import subprocess
import sys
import time
import warnings
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from test_metrics import _sampler, _series
from test_private_link import consumer, provider
from world import CONSUMER, CONSUMER2, World, wait_for

from privatelink.api.resource_health import build_resource_health_router
from privatelink.core import metrics as m
from privatelink.dataplane import events, names, privileged
from privatelink.dataplane import metrics as sampler_mod
from privatelink.dataplane.metrics import MetricsSampler, insert_failures
from privatelink.prometheus import DataplaneCollector

pytestmark = pytest.mark.netns

LOW = sampler_mod.PORTS_PER_CLASS["low"]  # 511: ports 1-511

# Accepts every connection and holds it (reads until the peer closes), so each flow keeps
# its conntrack entry and its NAT port for as long as the client keeps it open.
HOLD = r"""
import selectors, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(2048); s.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is s:
            try:
                c, _ = s.accept()
            except OSError:
                continue
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
        else:
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
"""

# Opens one TCP flow from each source port asked (bound as root, so 1-1023 too), all at
# once, waits at most `timeout` seconds for them, prints which connected and which failed
# (a SYN nobody answered: "timed out"), closes the failed ones, and holds the others
# until its stdin closes.
CLIENTS = r"""
import json, os, selectors, socket, sys, time
ip, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ranges = [r.split("-") for r in sys.argv[4].split(",")]  # "1-511,40000-40001"
ports = [p for a, b in ranges for p in range(int(a), int(b) + 1)]
sel, held = selectors.DefaultSelector(), []
for p in ports:
    c = socket.socket(); c.setblocking(False)
    c.bind(("0.0.0.0", p))
    c.connect_ex((ip, port))
    sel.register(c, selectors.EVENT_WRITE, p)
ok, failed = [], {}
deadline = time.monotonic() + timeout
while sel.get_map() and (left := deadline - time.monotonic()) > 0:
    for key, _ in sel.select(left):
        sel.unregister(key.fileobj)
        err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            failed[key.data] = os.strerror(err)
            key.fileobj.close()
        else:
            ok.append(key.data)
            held.append(key.fileobj)  # referenced, so not closed by the garbage collector
for key in list(sel.get_map().values()):
    failed[key.data] = "timed out"
    key.fileobj.close()
print(json.dumps({"ok": sorted(ok), "failed": failed}), flush=True)
sys.stdin.read()
"""


class Clients:
    """A CLIENTS process in a NIC's namespace: its verdicts, and its flows held until
    `close()` (or the world's close, which kills it)."""

    def __init__(
        self, world: World, nic: Any, ip: str, ports: str, timeout: float, dport: int = 80
    ) -> None:
        args = [ip, str(dport), str(timeout), ports]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", world.netns(nic), sys.executable, "-c", CLIENTS, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        world.procs.append(self.proc)  # killed at the world's close if the test fails
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout + 10), "the clients did not report"
        got = json.loads(self.proc.stdout.readline())
        self.ok: list[int] = got["ok"]
        self.failed: dict[int, str] = {int(p): why for p, why in got["failed"].items()}

    def close(self) -> None:
        """Close every flow (the process exits when its stdin closes)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


def _listens(netns: str, ip: str, port: int) -> bool:
    try:
        with privileged.socket_in_netns(netns) as sock:
            sock.settimeout(0.5)
            sock.connect((ip, port))
        return True
    except OSError:
        return False


def _conntrack_s(netns: str) -> dict[str, int]:
    """`conntrack -S` of a namespace, summed over CPUs (found, insert_failed, drop, ...)."""
    text = subprocess.run(
        ["ip", "netns", "exec", netns, "conntrack", "-S"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    totals: dict[str, int] = {}
    for field in text.split():
        name, _, value = field.partition("=")
        if value.isdigit() and name != "cpu":
            totals[name] = totals.get(name, 0) + int(value)
    return totals


def _health(world: World, sampler: MetricsSampler, resource_id: str) -> dict[str, Any]:
    """Resource Health of a resource as the server computes it (its router, with the
    sampler's verdicts; tests/integration covers the HTTP path with authentication)."""
    from fastapi import FastAPI, Request

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    app = FastAPI()
    app.state.control_plane = world.plane

    @app.middleware("http")
    async def authenticated(request: Request, call_next: Any) -> Any:
        request.state.principal = object()
        return await call_next(request)

    app.include_router(build_resource_health_router(sampler.exhausted))
    url = f"{resource_id}/providers/Microsoft.ResourceHealth/availabilityStatuses/current"
    with TestClient(app) as client:
        got = client.get(url, params={"api-version": "2020-05-01"})
    assert got.status_code == 200, got.text
    return dict(got.json()["properties"])


def test_a_nat_ip_out_of_ports_fails_new_flows_and_degrades_the_service(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    vnet, _lb, backends, pls = provider(world, backends=1, nat_ips=1)
    backend_ip = backends[0].ip_configurations[0].private_ip
    assert backend_ip
    world.run(backends[0], HOLD, "8080")
    wait_for(lambda: _listens(world.netns(backends[0]), backend_ip, 8080), 10, "the backend")
    vnet_a, client_a = consumer(world, CONSUMER, "a")
    vnet_b, client_b = consumer(world, CONSUMER2, "b")
    pe_a = world.endpoint(CONSUMER, "pe-a", vnet_a.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe_a, "Approved")
    pe_b = world.endpoint(CONSUMER2, "pe-b", vnet_b.subnet_id("pe"), pls.id)  # auto-approved
    world.settle()
    (nat_ip,) = [c.private_ip for c in world.get(pls.id).ip_configurations]
    hub = names.hub_netns(world.prefix, vnet.id)  # the provider hub: it SNATs to the NAT IP
    sampler, _store = _sampler(world)
    sampler.sample_once()  # the baseline of the hub's failed insertions
    usage_dims = m.dims_of({"PrivateLinkServiceIPAddress": nat_ip})
    low = ("tcp", backend_ip, 8080, "low")

    # Network a takes every port of the low class of the NAT IP to backend:8080: each of
    # its flows keeps its own port, as nothing else holds it.
    started = time.monotonic()
    a = Clients(world, client_a, world.endpoint_ip(pe_a), f"1-{LOW}", timeout=20)
    try:
        filled = time.monotonic() - started
        assert (len(a.ok), a.failed) == (LOW, {})
        full = _series(sampler.sample_once())
        assert full[(pls.key, "PLSNatPortsUsage", usage_dims)] == 100.0
        assert sampler.totals().nat[(pls.key, nat_ip)].used == {low: LOW}
        # Full, but no flow has failed yet: not out of NAT ports.
        assert sampler.exhausted() == {}
        assert _health(world, sampler, pls.id)["availabilityState"] == "Available"
        before = _conntrack_s(hub)
        stat_before = privileged.conntrack_stat_text(hub)

        # Network b: another pair veth, so its original tuples are new, but their replies
        # (backend:8080 -> NAT IP:port) would all be taken for a low port: no SNAT, the
        # insertion fails, the SYN is dropped, again for each retry. A high port of the
        # same client still gets through (its class has free ports).
        tried = time.monotonic()
        b = Clients(world, client_b, world.endpoint_ip(pe_b), "1-8,40000-40001", timeout=3)
        try:
            failed_for = time.monotonic() - tried
            assert b.ok == [40000, 40001]
            assert b.failed == dict.fromkeys(range(1, 9), "timed out")
            after = _conntrack_s(hub)
            failed = after["insert_failed"] - before["insert_failed"]
            assert failed >= 8, (before, after)  # one SYN per port at least
            # What the sampler reads (/proc/net/stat/nf_conntrack of the hub) says so too,
            # and the reconciler's "conntrack table full" count does not take them.
            stat_after = privileged.conntrack_stat_text(hub)
            assert insert_failures(stat_after) - insert_failures(stat_before) == failed
            assert after["drop"] - before["drop"] == failed
            assert events.conntrack_drops(stat_after) == events.conntrack_drops(stat_before)

            with caplog.at_level(logging.WARNING, logger="privatelink.metrics"):
                got = _series(sampler.sample_once())
        finally:
            b.close()
        assert got[(pls.key, "PLSNatPortsUsage", usage_dims)] == 100.0
        why = sampler.exhausted()[pls.key]
        assert f"NAT IP {nat_ip} holds 100.0 % of the {LOW} ports" in why, why
        assert f"dropped {failed} connection attempts" in why, why
        assert any(
            r.levelno == logging.WARNING and "out of NAT ports" in r.getMessage()
            for r in caplog.records
        ), "no warning in the log"
        registry = CollectorRegistry()
        registry.register(DataplaneCollector(sampler, None, list))
        exhausted = {"resource_id": pls.key}
        assert registry.get_sample_value("privatelink_nat_ports_exhausted", exhausted) == 1
        health = _health(world, sampler, pls.id)
        assert health["availabilityState"] == "Degraded"
        assert f"NAT IP {nat_ip}" in health["summary"]

        # No new attempt fails (b has closed its sockets): no longer out of NAT ports,
        # though the ports are still held.
        assert sampler.sample_once() and sampler.exhausted() == {}
    finally:
        a.close()
    took = time.monotonic() - started
    print(
        f"held {len(a.ok)} low ports in {filled:.2f}s; 8 low-port flows of network b failed "
        f"after {failed_for:.2f}s with {failed} failed insertions; {took:.2f}s in all"
    )
    assert took < 60
