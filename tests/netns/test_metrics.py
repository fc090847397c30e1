"""Metrics from the kernel on real namespaces: real TCP through a private endpoint moves
the bytes of the service, the endpoint and the load balancer frontend (within 10 % of what
was sent), and a backend that dies drops its health probe status."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from test_private_link import consumer, provider
from world import CONSUMER, World, wait_for

from privatelink.core import metrics as m
from privatelink.core.private_endpoint import TYPE as PE_TYPE
from privatelink.dataplane.metrics import MetricsSampler, endpoint_index
from privatelink.store.metrics import SqlMetricStore

pytestmark = pytest.mark.netns

SENT = 2_000_000  # bytes the client sends
ANSWER = 300_000  # bytes the backend answers with

# Reads SENT bytes (until the client shuts its side), answers ANSWER bytes, closes.
SINK = r"""
import socket, sys
sent, answer, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(16)
while True:
    c, _ = s.accept()
    got = 0
    while got < sent:
        b = c.recv(1 << 16)
        if not b:
            break
        got += len(b)
    c.sendall(b"y" * answer)
    c.close()
"""


def _sampler(world: World) -> tuple[MetricsSampler, SqlMetricStore]:
    store = SqlMetricStore(world.repo.engine)
    sampler = MetricsSampler(
        world.reconciler,
        store,
        endpoints=lambda: endpoint_index(world.repo.iter_all(PE_TYPE)),
        interval=60,
    )
    return sampler, store


def _series(samples: list[m.Sample]) -> dict[tuple[str, str, m.Dims], float]:
    out: dict[tuple[str, str, m.Dims], float] = {}
    for s in samples:
        out[(s.resource, s.metric, s.dims)] = out.get((s.resource, s.metric, s.dims), 0) + s.value
    return out


def test_bytes_through_an_endpoint_move_the_service_endpoint_and_frontend(world: World) -> None:
    _vnet, lb, backends, pls = provider(world, backends=1)
    world.run(backends[0], SINK, str(SENT), str(ANSWER), "8080")
    cvnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", cvnet.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    sampler, store = _sampler(world)
    sampler.sample_once()  # the baseline: what the counters held before this traffic

    def exchange() -> int:
        with world.connection(client, pe_ip, 80) as sock:
            sock.settimeout(10)
            sock.sendall(b"x" * SENT)
            sock.shutdown(socket.SHUT_WR)
            got = 0
            while chunk := sock.recv(1 << 16):
                got += len(chunk)
            return got

    received = wait_for(exchange, 15, "the exchange through the endpoint", every=0.5)
    assert received == ANSWER
    got = _series(sampler.sample_once())
    pls_key, pe_key, lb_key = pls.key, pe.key, lb.key
    frontend = {"FrontendIPAddress": "10.0.1.4", "FrontendPort": 80}
    inbound = m.dims_of({**frontend, "Direction": "Inbound"})
    outbound = m.dims_of({**frontend, "Direction": "Outbound"})
    for metric_key, expected in (
        ((pls_key, "PLSBytesIn", ()), SENT),
        ((pe_key, "PEBytesIn", ()), SENT),
        ((lb_key, "ByteCount", inbound), SENT),
        ((pls_key, "PLSBytesOut", ()), ANSWER),
        ((pe_key, "PEBytesOut", ()), ANSWER),
        ((lb_key, "ByteCount", outbound), ANSWER),
    ):
        value = got.get(metric_key, 0)
        # IP and TCP headers (and the other side's ACKs) count too: a few percent more.
        assert expected <= value <= 1.1 * expected, (metric_key, value, expected)
    assert got[(lb_key, "PacketCount", inbound)] > 0
    assert got[(lb_key, "SYNCount", inbound)] >= 1
    # The same figures come back from the store as Azure Monitor answers a query.
    now = datetime.now(UTC)
    definition = next(d for d in m.definitions_for(m.PLS_TYPE) if d.name == "PLSBytesIn")
    points = store.points(pls_key, ["PLSBytesIn"], now - timedelta(minutes=5), now)
    (series,) = m.query(points, definition, now - timedelta(minutes=5), now, None, ["Total"])
    assert series.data[0].values["Total"] == got[(pls_key, "PLSBytesIn", ())]


def test_a_dead_backend_drops_its_health_probe_status(world: World) -> None:
    _vnet, lb, backends, _pls = provider(world, backends=2, probe_interval=5)
    procs = [world.serve_whoami(nic, f"b{i}") for i, nic in enumerate(backends)]
    sampler, _store = _sampler(world)
    ips = [nic.ip_configurations[0].private_ip for nic in backends]

    def status() -> dict[str, float]:
        got = _series(sampler.sample_once())
        return {
            dict(dims)["BackendIPAddress"]: value
            for (resource, metric, dims), value in got.items()
            if metric == "DipAvailability" and resource == lb.key
        }

    # A probe that ran before a backend listened keeps it down for one interval.
    wait_for(lambda: status() == {ips[0]: 100.0, ips[1]: 100.0}, 15, "both up", every=0.5)
    procs[1].kill()
    procs[1].wait()
    wait_for(lambda: status() == {ips[0]: 100.0, ips[1]: 0.0}, 15, "b1 down", every=0.5)
    vip = m.dims_of({"FrontendIPAddress": "10.0.1.4", "FrontendPort": 80})
    assert _series(sampler.sample_once())[(lb.key, "VipAvailability", vip)] == 100.0
    procs[0].kill()
    procs[0].wait()
    wait_for(
        lambda: _series(sampler.sample_once()).get((lb.key, "VipAvailability", vip)) == 0.0,
        15,
        "the data path to go down with its last backend",
        every=0.5,
    )
