"""The Prometheus exposition of `privatelink serve --metrics-addr HOST:PORT`.

The same figures as Azure Monitor's metrics (the sampler's running totals, dataplane/
metrics.py), under Prometheus' conventions (snake case, a unit suffix, `_total` on
counters, 0/1 gauges for states, ratios rather than percents), plus what only an operator
needs: connection states, the reconciler's syncs (count, failures, duration) and the
data plane's admission and repair counters, and the API's requests (count and latency by
operation and status class). Labels are bounded: resource ids, addresses and ports of
existing resources, RBAC operation names, never raw paths.

Served by prometheus-client's own HTTP server (plain HTTP, its own thread) on the address
given; nothing else listens there.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from privatelink.core.actions import describe
from privatelink.dataplane.metrics import NAT_PORTS_PER_DESTINATION, MetricsSampler

log = logging.getLogger("privatelink.prometheus")

SYNC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, all addresses) as (host, port); ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


class DataplaneCollector(Collector):
    """Reads the sampler, the reconciler and the store at each scrape."""

    def __init__(
        self,
        sampler: MetricsSampler | None,
        reconciler: Any | None,
        connection_states: Callable[[], Iterable[str]],
    ) -> None:
        self.sampler = sampler
        self.reconciler = reconciler
        self.connection_states = connection_states

    def collect(self) -> Iterator[Any]:
        """The families, built afresh from the current figures."""
        yield from self._connections()
        if self.sampler is not None:
            yield from self._traffic()
        if self.reconciler is not None:
            yield from self._dataplane()

    def _connections(self) -> Iterator[Any]:
        family = GaugeMetricFamily(
            "privatelink_private_endpoint_connections",
            "Private endpoint connections by state (as their endpoints see them).",
            labels=["state"],
        )
        counts = Counter(self.connection_states())
        for state in ("Pending", "Approved", "Rejected", "Disconnected"):
            family.add_metric([state], counts.pop(state, 0))
        for state, n in sorted(counts.items()):
            family.add_metric([state], n)
        yield family

    def _traffic(self) -> Iterator[Any]:
        assert self.sampler is not None
        totals = self.sampler.totals()
        pls_bytes = CounterMetricFamily(
            "privatelink_private_link_service_bytes",
            "Bytes through a private link service: in (from consumers) and out.",
            labels=["resource_id", "direction"],
        )
        pe_bytes = CounterMetricFamily(
            "privatelink_private_endpoint_bytes",
            "Bytes through a private endpoint: in (from its clients) and out.",
            labels=["resource_id", "direction"],
        )
        lb = {
            name: CounterMetricFamily(
                f"privatelink_load_balancer_{name}",
                help_text,
                labels=["resource_id", "frontend_ip", "frontend_port", "direction"],
            )
            for name, help_text in (
                ("bytes", "Bytes of load-balanced flows per frontend and direction."),
                ("packets", "Packets of load-balanced flows per frontend and direction."),
                ("syn_packets", "SYN packets received per frontend."),
            )
        }
        names = {"ByteCount": "bytes", "PacketCount": "packets", "SYNCount": "syn_packets"}
        for (resource, metric, dims), value in sorted(totals.counters.items()):
            d = dict(dims)
            if metric.startswith("PLSBytes"):
                pls_bytes.add_metric([resource, metric[8:].lower()], value)
            elif metric.startswith("PEBytes"):
                pe_bytes.add_metric([resource, metric[7:].lower()], value)
            elif metric in names:
                way = "in" if d.get("Direction") == "Inbound" else "out"
                lb[names[metric]].add_metric(
                    [resource, d.get("FrontendIPAddress", ""), d.get("FrontendPort", ""), way],
                    value,
                )
        yield pls_bytes
        yield pe_bytes
        yield from lb.values()
        backend_up = GaugeMetricFamily(
            "privatelink_load_balancer_backend_up",
            "Health probe status of a backend of a rule: 1 up, 0 down (DipAvailability).",
            labels=[
                "resource_id",
                "frontend_ip",
                "frontend_port",
                "backend_ip",
                "backend_port",
                "protocol",
            ],
        )
        frontend_up = GaugeMetricFamily(
            "privatelink_load_balancer_frontend_available",
            "1 while a rule's frontend has a healthy backend (VipAvailability).",
            labels=["resource_id", "frontend_ip", "frontend_port"],
        )
        for (resource, metric, dims), value in sorted(totals.gauges.items()):
            d = dict(dims)
            if metric == "DipAvailability":
                backend_up.add_metric(
                    [
                        resource,
                        d["FrontendIPAddress"],
                        d["FrontendPort"],
                        d["BackendIPAddress"],
                        d["BackendPort"],
                        d["ProtocolType"].lower(),
                    ],
                    value / 100.0,
                )
            elif metric == "VipAvailability":
                frontend_up.add_metric(
                    [resource, d["FrontendIPAddress"], d["FrontendPort"]], value / 100.0
                )
        yield backend_up
        yield frontend_up
        used = GaugeMetricFamily(
            "privatelink_nat_ports_used",
            "Ports a NAT IP of a private link service holds (all destinations).",
            labels=["resource_id", "nat_ip"],
        )
        ratio = GaugeMetricFamily(
            "privatelink_nat_ports_usage_ratio",
            "The fullest destination's share of the ports a NAT IP has for it "
            "(PLSNatPortsUsage / 100).",
            labels=["resource_id", "nat_ip"],
        )
        for (pls, ip), usage in sorted(totals.nat.items()):
            used.add_metric([pls, ip], usage.ports)
            ratio.add_metric([pls, ip], usage.percent / 100.0)
        yield used
        yield ratio
        yield GaugeMetricFamily(
            "privatelink_nat_ports_per_destination",
            "Ports one NAT IP can give flows to one backend IP, port and protocol.",
            value=NAT_PORTS_PER_DESTINATION,
        )
        exhausted = GaugeMetricFamily(
            "privatelink_nat_ports_exhausted",
            "1 while a private link service's new connections fail for want of NAT ports.",
            labels=["resource_id"],
        )
        for pls in sorted({p for p, _ in totals.nat}):
            exhausted.add_metric([pls], 1.0 if pls in totals.exhausted else 0.0)
        yield exhausted
        yield CounterMetricFamily(
            "privatelink_conntrack_insert_failures",
            "New flows the kernel could not insert in provider hubs (a SNAT without a free "
            "port ends so): dropped.",
            value=totals.insert_failures,
        )
        yield CounterMetricFamily(
            "privatelink_metrics_samples", "Samples the metrics sampler took.", value=totals.samples
        )
        yield GaugeMetricFamily(
            "privatelink_metrics_sample_duration_seconds",
            "How long the last sample took.",
            value=totals.last_seconds,
        )

    def _dataplane(self) -> Iterator[Any]:
        stats = self.reconciler.stats()  # type: ignore[union-attr]
        yield CounterMetricFamily(
            "privatelink_dataplane_refused_flows",
            "New flows refused (reset) while their hub's conntrack table was at its limit.",
            value=stats.refused_flows,
        )
        yield CounterMetricFamily(
            "privatelink_dataplane_kernel_drops",
            "Packets the kernel dropped because a conntrack table was full.",
            value=stats.kernel_drops,
        )
        yield CounterMetricFamily(
            "privatelink_dataplane_repairs",
            "Syncs that re-checked kernel state reported damaged.",
            value=stats.repairs,
        )
        entries = GaugeMetricFamily(
            "privatelink_dataplane_conntrack_entries",
            "Conntrack entries per hub (last sampled).",
            labels=["hub"],
        )
        for hub, count in sorted(stats.conntrack.items()):
            entries.add_metric([hub], count)
        yield entries
        yield GaugeMetricFamily(
            "privatelink_dataplane_full_hubs",
            "Hubs refusing new flows right now (conntrack at its limit).",
            value=len(stats.full_hubs),
        )


class SyncObserver:
    """Counts the reconciler's syncs, failures and durations (a sync listener)."""

    def __init__(self, reconciler: Any, registry: CollectorRegistry) -> None:
        self.reconciler = reconciler
        self.seconds = Histogram(
            "privatelink_reconciler_sync_duration_seconds",
            "How long each sync of the data plane took.",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.failures = PromCounter(
            "privatelink_reconciler_sync_failures",
            "Syncs that failed (retried with back-off).",
            registry=registry,
        )
        self._seen: object = None

    def __call__(self) -> None:
        last = self.reconciler.last
        if last is None or last is self._seen:
            return
        self._seen = last
        self.seconds.observe(last.seconds)
        if last.error:
            self.failures.inc()


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class RequestMetrics:
    """ASGI middleware: counts every HTTP request and its latency, labelled by the RBAC
    operation it performs (`core.actions.describe`; `other` outside ARM), its method and
    the class of its status (2xx, 4xx, ...)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = PromCounter(
            "privatelink_api_requests",
            "API requests by operation, method and status class.",
            ["operation", "method", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "privatelink_api_request_duration_seconds",
            "API request latency (until the last byte of the answer) by operation.",
            ["operation", "method"],
            buckets=API_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = str(scope["method"]).upper()
        described = describe(method, scope["path"])
        operation = described.action if described is not None else "other"
        status = [500]

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.requests.labels(operation, method, f"{status[0] // 100}xx").inc()
            self.seconds.labels(operation, method).observe(time.perf_counter() - started)


class PrometheusExporter:
    """The registry and its HTTP server (started and stopped with `serve`)."""

    def __init__(
        self,
        address: str,
        sampler: MetricsSampler | None,
        reconciler: Any | None,
        connection_states: Callable[[], Iterable[str]],
    ) -> None:
        self.host, self.port = parse_address(address)
        self.registry = CollectorRegistry()
        self.registry.register(DataplaneCollector(sampler, reconciler, connection_states))
        self.sync_observer = (
            SyncObserver(reconciler, self.registry) if reconciler is not None else None
        )
        self._server: Any = None

    def middleware(self, app: ASGIApp) -> RequestMetrics:
        """The request-counting middleware for the API app, on this registry."""
        return RequestMetrics(app, self.registry)

    def start(self) -> None:
        """Listen on the address (a thread of prometheus-client's)."""
        self._server, _thread = start_http_server(self.port, self.host, registry=self.registry)
        log.info("Prometheus metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
