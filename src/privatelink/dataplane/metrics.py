"""The metrics sampler: reads the kernel's counters and the probes into metric points.

Every `interval` seconds (60 by default, `"metrics": {"sample_seconds": N}`) one thread
(`metrics`) reads, for each hub of the plan last applied (`Reconciler.plan`):

- the per-element counters of the hub's `traffic_in`, `traffic_out` and `syns` sets
  (`nft.TRAFFIC_KEY`: link mark . original destination . protocol . backend port; the
  forward chain counts every load-balanced packet in its flow's element), as differences
  from the last reading: bytes and packets of each private link service, private endpoint
  and load balancer frontend, each way, and SYNs;
- the probes' verdicts of each rule's members (`RulePlan.probed`): the health probe status
  (100 up, 0 down; a member not probed yet counts as up, as the data plane treats it), and
  each rule's data path availability (100 while it has a healthy backend);
- the provider hubs' conntrack tables: the NAT ports each NAT IP holds per destination
  (`nat_usage`), the kernel's failed insertions (what a SNAT without a free port ends in).

It writes them as `core.metrics` points to the store (`store.metrics.SqlMetricStore`) and
keeps running totals for the Prometheus exporter (`totals()`). Kernel access goes through
`privileged` (a fake in unit tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from privatelink.core import metrics as m
from privatelink.core.ids import key
from privatelink.dataplane import privileged
from privatelink.dataplane.desired import HubPlan, LinkPlan, Plan, RulePlan, ServicePlan
from privatelink.dataplane.names import TABLE

log = logging.getLogger("privatelink.metrics")

DEFAULT_INTERVAL = 60.0
COMPACT_EVERY = 3600.0  # seconds between folds of old minutes into hours
TRAFFIC_SETS = ("traffic_in", "traffic_out", "syns")
UP, DOWN = 100.0, 0.0
# Ports one NAT IP can give flows to one destination (backend IP, port, protocol): Linux
# keeps a client's port when it is free, else picks another of its class, so a class of
# client ports has this many (nf_nat_l4proto_unique_tuple: 1-511, 600-1023, 1024-65535).
PORTS_PER_CLASS = {"low": 511, "reserved": 424, "high": 64512}
CLASS_PORTS = {"low": "1-511", "reserved": "600-1023", "high": "1024-65535"}
NAT_PORTS_PER_DESTINATION = PORTS_PER_CLASS["high"]
# At this usage of some NAT IP's ports to one destination, with the kernel failing to
# insert new flows, a service counts as out of NAT ports.
EXHAUSTED_PERCENT = 90.0


class MetricSink(Protocol):
    """Where points go (`store.metrics.SqlMetricStore`)."""

    def add(self, points: Iterable[m.Point]) -> None: ...

    def compact(self) -> tuple[int, int]: ...


class PlanSource(Protocol):
    """What the sampler needs of the reconciler."""

    @property
    def plan(self) -> Plan | None: ...

    @property
    def prober(self) -> Any: ...


def port_class(port: int) -> str:
    """The class of a NAT port, as Linux's SNAT picks within it."""
    if port < 512:
        return "low"
    return "reserved" if port < 1024 else "high"


@dataclass(frozen=True)
class NatUsage:
    """What a NAT IP holds: used ports per (protocol, destination ip, port, class)."""

    nat_ip: str
    used: Mapping[tuple[str, str, int, str], int]

    @property
    def percent(self) -> float:
        """The fullest destination's share of its class's ports, in percent."""
        return self.fullest[0]

    @property
    def fullest(self) -> tuple[float, str]:
        """The fullest destination's share of its class's ports (percent) and the class
        ("high" when nothing is used)."""
        shares = [(n / PORTS_PER_CLASS[c], c) for (_p, _d, _dp, c), n in self.used.items()]
        share, cls = max(shares, default=(0.0, "high"))
        return round(100.0 * share, 3), cls

    @property
    def ports(self) -> int:
        """Ports held in all."""
        return sum(self.used.values())


def nat_usage(conntrack_text: str, nat_ips: Iterable[str]) -> dict[str, NatUsage]:
    """Per NAT IP, the ports its flows hold per destination, from `conntrack -L` lines
    (the reply tuple of a SNATed flow goes from the backend to the NAT IP and port)."""
    wanted = set(nat_ips)
    ports: dict[str, dict[tuple[str, str, int, str], set[int]]] = {
        ip: defaultdict(set) for ip in wanted
    }
    for line in conntrack_text.splitlines():
        fields = line.split()
        if not fields:
            continue
        pairs = [f.split("=", 1) for f in fields if "=" in f]
        src = [v for k, v in pairs if k == "src"]
        dst = [v for k, v in pairs if k == "dst"]
        sport = [v for k, v in pairs if k == "sport"]
        dport = [v for k, v in pairs if k == "dport"]
        if len(src) < 2 or len(dst) < 2 or len(sport) < 2 or len(dport) < 2:
            continue
        nat_ip = dst[1]
        if nat_ip not in wanted:
            continue
        try:
            backend_port, nat_port = int(sport[1]), int(dport[1])
        except ValueError:
            continue
        where = (fields[0], src[1], backend_port, port_class(nat_port))
        ports[nat_ip][where].add(nat_port)
    return {
        ip: NatUsage(ip, {k: len(v) for k, v in sorted(found.items())})
        for ip, found in ports.items()
    }


def insert_failures(stat_text: str) -> int:
    """Flows the kernel failed to insert (`insert_failed`, summed over CPUs): what a new
    flow whose SNAT found no free port ends in (it is dropped)."""
    lines = [line.split() for line in stat_text.splitlines() if line.strip()]
    if not lines or "insert_failed" not in lines[0]:
        return 0
    column = lines[0].index("insert_failed")
    return sum(int(row[column], 16) for row in lines[1:] if len(row) > column)


def _element(raw: tuple[Any, ...]) -> tuple[int, str, str, int] | None:
    """A counter element's key as (mark, destination, protocol, backend port)."""
    if len(raw) != 4:
        return None
    mark, ip, proto, port = raw
    try:
        return int(mark, 0) if isinstance(mark, str) else int(mark), str(ip), str(proto), int(port)
    except ValueError:
        return None


def _lb_of(rule_id: str) -> str:
    return key(rule_id).rsplit("/loadbalancingrules/", 1)[0]


def _pls_of(link_key: str) -> str:
    return link_key.rsplit("/privateendpointconnections/", 1)[0]


@dataclass
class Totals:
    """Running totals since the sampler started (Prometheus counters), and the latest
    gauges; every value keyed by (resource key, metric, dimensions)."""

    counters: dict[tuple[str, str, m.Dims], float] = field(default_factory=dict)
    gauges: dict[tuple[str, str, m.Dims], float] = field(default_factory=dict)
    nat: dict[tuple[str, str], NatUsage] = field(default_factory=dict)  # (pls, ip) -> usage
    exhausted: dict[str, str] = field(default_factory=dict)  # pls key -> why
    insert_failures: int = 0
    samples: int = 0
    last_seconds: float = 0.0


class MetricsSampler:
    """Samples the data plane into metric points (see the module docstring)."""

    def __init__(
        self,
        reconciler: PlanSource,
        sink: MetricSink,
        endpoints: Callable[[], Mapping[str, str]],
        interval: float = DEFAULT_INTERVAL,
        kernel: Any = privileged,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`endpoints()`: link key (connection key) -> private endpoint id, read from the
        store (`endpoint_index`)."""
        if interval <= 0:
            raise ValueError("the sampling interval must be positive")
        self.reconciler = reconciler
        self.sink = sink
        self.endpoints = endpoints
        self.interval = interval
        self.kernel = kernel
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], dict[tuple[int, str, str, int], tuple[int, int]]] = {}
        self._failed: dict[str, int] = {}
        self._relay_last: dict[tuple[str, int], tuple[int, int, int]] = {}
        self._endpoint_of: Mapping[str, str] = {}
        self._endpoint_links: frozenset[str] = frozenset()
        self._totals = Totals()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._compacted = 0.0

    # --- loop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Sample every `interval` seconds in a thread named `metrics`."""
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (after the sample in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample_once()
            except Exception:  # a bad sample must not end sampling
                log.exception("sampling metrics failed")
            if self.clock() - self._compacted >= COMPACT_EVERY:
                try:
                    folded, gone = self.sink.compact()
                    self._compacted = self.clock()
                    if folded or gone:
                        log.info("metrics: %d minute points folded, %d expired", folded, gone)
                except Exception:
                    log.exception("compacting metrics failed")

    def totals(self) -> Totals:
        """A copy of the running totals (for Prometheus)."""
        with self._lock:
            t = self._totals
            return Totals(
                dict(t.counters),
                dict(t.gauges),
                dict(t.nat),
                dict(t.exhausted),
                t.insert_failures,
                t.samples,
                t.last_seconds,
            )

    def exhausted(self) -> Mapping[str, str]:
        """Services out of NAT ports right now: service key -> why."""
        with self._lock:
            return dict(self._totals.exhausted)

    # --- one sample ----------------------------------------------------------------------

    def sample_once(self) -> list[m.Sample]:
        """Read everything once, store it as points, and return the samples."""
        started = time.monotonic()
        plan = self.reconciler.plan
        if plan is None:
            return []
        now = self.clock()
        counts: dict[tuple[str, str, m.Dims], float] = defaultdict(float)
        gauges: dict[tuple[str, str, m.Dims], list[float]] = defaultdict(list)
        self._refresh_endpoints(plan)
        verdicts = self.reconciler.prober.verdicts()
        nat: dict[tuple[str, str], NatUsage] = {}
        exhausted: dict[str, str] = {}
        failures = 0
        for hub in plan.hubs:
            if hub.rules or hub.links_in:
                self._traffic(hub, counts)
            for rule in hub.rules:
                self._health(rule, verdicts, gauges)
            if any(s.nat_ips for s in hub.services):
                failed = self._nat(hub, gauges, nat, exhausted)
                failures += failed
        self._relayed(plan, counts)
        samples = [
            m.Sample(resource, metric, dims, now, value)
            for (resource, metric, dims), value in counts.items()
            if value
        ]
        samples += [
            m.Sample(resource, metric, dims, now, value)
            for (resource, metric, dims), values in gauges.items()
            for value in values
        ]
        self.sink.add(m.points_of(samples))
        with self._lock:
            t = self._totals
            for series, value in counts.items():
                t.counters[series] = t.counters.get(series, 0.0) + value
            t.gauges = {series: values[-1] for series, values in gauges.items()}
            t.nat = nat
            for pls, why in exhausted.items():
                if pls not in t.exhausted:
                    log.warning("private link service %s is out of NAT ports: %s", pls, why)
            for pls in set(t.exhausted) - set(exhausted):
                log.info("private link service %s has free NAT ports again", pls)
            t.exhausted = exhausted
            t.insert_failures += failures
            t.samples += 1
            t.last_seconds = time.monotonic() - started
        return samples

    def _refresh_endpoints(self, plan: Plan) -> None:
        links = frozenset(x.link_key for x in plan.links)
        if not links <= self._endpoint_links or not self._endpoint_of:
            self._endpoint_of = self.endpoints() if links else {}
            self._endpoint_links = frozenset(self._endpoint_of)

    def _traffic(self, hub: HubPlan, counts: dict[tuple[str, str, m.Dims], float]) -> None:
        rules = {r.chain: r for r in hub.rules}
        by_frontend = {(r.frontend_ip, r.protocol, r.backend_port): r for r in hub.rules}
        services = {s.chain: s for s in hub.services}
        links = {x.mark: x for x in hub.links_in}
        for name in TRAFFIC_SETS:
            raw = self.kernel.nft_set_counters(hub.netns, TABLE, name)
            now: dict[tuple[int, str, str, int], tuple[int, int]] = {}
            for values, counter in raw.items():
                element = _element(values)
                if element is not None:
                    now[element] = counter
            before = self._last.get((hub.netns, name))
            self._last[(hub.netns, name)] = now
            if before is None:
                continue  # the first reading is the baseline (counts from before we ran)
            for element, (packets, size) in now.items():
                was = before.get(element)
                if was is None or was[0] > packets or was[1] > size:
                    was = (0, 0)  # new since the last reading, or its table was replaced
                dp, db = packets - was[0], size - was[1]
                if dp or db:
                    self._attribute(
                        name, element, dp, db, links, services, rules, by_frontend, counts
                    )

    def _relayed(self, plan: Plan, counts: dict[tuple[str, str, m.Dims], float]) -> None:
        """The flows of PROXY services: they end in the relay (dataplane/proxy), not in
        `forward`, so the relay counts them: payload bytes each way and flows, by link
        and frontend port (no packet counts: it sees a stream, not packets)."""
        relay = getattr(self.reconciler, "relay", None)
        if relay is None:
            return
        now = relay.traffic()
        before, self._relay_last = self._relay_last, now
        links = {x.link_key: x for x in plan.links}
        for (link_key, port), (size_in, size_out, flows) in now.items():
            was = before.get((link_key, port), (0, 0, 0))
            if was[0] > size_in or was[1] > size_out or was[2] > flows:
                was = (0, 0, 0)  # counters made again (the link went and came back)
            d_in, d_out, d_flows = size_in - was[0], size_out - was[1], flows - was[2]
            link = links.get(link_key)
            if link is None or not (d_in or d_out or d_flows):
                continue
            pls, pe = _pls_of(link_key), self._endpoint_of.get(link_key)
            counts[(pls, "PLSBytesIn", ())] += d_in
            counts[(pls, "PLSBytesOut", ())] += d_out
            if pe:
                counts[(key(pe), "PEBytesIn", ())] += d_in
                counts[(key(pe), "PEBytesOut", ())] += d_out
            hub = plan.hub(link.provider_netns)
            if hub is None:
                continue
            service = next((s for s in hub.services if s.chain == link.service_chain), None)
            chains = {c for _p, fport, c in service.ports if fport == port} if service else set()
            rule = next((r for r in hub.rules if r.chain in chains), None)
            if rule is None:
                continue
            lb = _lb_of(rule.rule_id)
            for direction, size in (("Inbound", d_in), ("Outbound", d_out)):
                dims = m.dims_of(
                    {
                        "FrontendIPAddress": rule.frontend_ip,
                        "FrontendPort": rule.frontend_port,
                        "Direction": direction,
                    }
                )
                counts[(lb, "ByteCount", dims)] += size
                if direction == "Inbound":
                    counts[(lb, "SYNCount", dims)] += d_flows  # one accepted SYN per flow

    def _attribute(
        self,
        name: str,
        element: tuple[int, str, str, int],
        packets: int,
        size: int,
        links: Mapping[int, LinkPlan],
        services: Mapping[str, ServicePlan],
        rules: Mapping[str, RulePlan],
        by_frontend: Mapping[tuple[str, str, int], RulePlan],
        counts: dict[tuple[str, str, m.Dims], float],
    ) -> None:
        mark, destination, proto, port = element
        rule: RulePlan | None = None
        if mark:
            link = links.get(mark)
            if link is None:
                return  # a link gone since the plan was read
            service = services.get(link.service_chain)
            pls = _pls_of(link.link_key)
            pe = self._endpoint_of.get(link.link_key)
            way = "In" if name == "traffic_in" else "Out"
            if name != "syns":
                counts[(pls, f"PLSBytes{way}", ())] += size
                if pe:
                    counts[(key(pe), f"PEBytes{way}", ())] += size
            if service is not None:
                for p, _fport, chain in service.ports:
                    r = rules.get(chain)
                    if r is not None and p == proto and r.backend_port == port:
                        rule = r
                        break
        else:
            rule = by_frontend.get((destination, proto, port))
        if rule is None:
            return
        direction = "Outbound" if name == "traffic_out" else "Inbound"
        dims = m.dims_of(
            {
                "FrontendIPAddress": rule.frontend_ip,
                "FrontendPort": rule.frontend_port,
                "Direction": direction,
            }
        )
        lb = _lb_of(rule.rule_id)
        if name == "syns":
            counts[(lb, "SYNCount", dims)] += packets
        else:
            counts[(lb, "ByteCount", dims)] += size
            counts[(lb, "PacketCount", dims)] += packets

    def _health(
        self,
        rule: RulePlan,
        verdicts: Mapping[Any, bool],
        gauges: dict[tuple[str, str, m.Dims], list[float]],
    ) -> None:
        lb = _lb_of(rule.rule_id)
        for check in rule.probed:
            up = verdicts.get(check, True)
            dims = m.dims_of(
                {
                    "ProtocolType": rule.protocol.capitalize(),
                    "BackendPort": rule.backend_port,
                    "FrontendIPAddress": rule.frontend_ip,
                    "FrontendPort": rule.frontend_port,
                    "BackendIPAddress": check.backend_ip,
                }
            )
            gauges[(lb, "DipAvailability", dims)].append(UP if up else DOWN)
        frontend = m.dims_of(
            {"FrontendIPAddress": rule.frontend_ip, "FrontendPort": rule.frontend_port}
        )
        gauges[(lb, "VipAvailability", frontend)].append(UP if rule.backends else DOWN)

    def _nat(
        self,
        hub: HubPlan,
        gauges: dict[tuple[str, str, m.Dims], list[float]],
        nat: dict[tuple[str, str], NatUsage],
        exhausted: dict[str, str],
    ) -> int:
        """NAT port usage of the hub's services; returns the kernel's failed insertions
        since the last sample."""
        all_ips = [ip for s in hub.services for ip in s.nat_ips]
        try:
            usage = nat_usage(self.kernel.conntrack_list_text(hub.netns), all_ips)
            failed_now = insert_failures(self.kernel.conntrack_stat_text(hub.netns))
        except privileged.KernelError as exc:
            log.debug("NAT usage of %s not read: %s", hub.netns, exc)
            return 0
        before = self._failed.get(hub.netns)
        self._failed[hub.netns] = failed_now
        failed = max(failed_now - before, 0) if before is not None else 0
        for service in hub.services:
            pls = key(service.pls_id)
            fullest: tuple[float, str, str] = (0.0, "", "high")
            for ip in service.nat_ips:
                found = usage.get(ip, NatUsage(ip, {}))
                nat[(pls, ip)] = found
                dims = m.dims_of({"PrivateLinkServiceIPAddress": ip})
                gauges[(pls, "PLSNatPortsUsage", dims)].append(found.percent)
                percent, cls = found.fullest
                fullest = max(fullest, (percent, ip, cls))
            if failed and fullest[0] >= EXHAUSTED_PERCENT:
                percent, ip, cls = fullest
                # The class names the count: 511 ports for clients on ports 1-511.
                exhausted[pls] = (
                    f"NAT IP {ip} holds {percent:.1f} % of the {PORTS_PER_CLASS[cls]} "
                    f"ports it has per destination for clients on ports {CLASS_PORTS[cls]}, "
                    f"and the kernel dropped {failed} connection attempts (SYNs, retries "
                    "included) since the last sample, finding no free port: add "
                    "NAT IPs (ipConfigurations) or spread clients over more backends"
                )
        return failed


def endpoint_index(endpoints: Iterable[Any]) -> dict[str, str]:
    """Link key (connection key) -> private endpoint id, for stored private endpoints."""
    from privatelink.dataplane.desired import connection_key

    index: dict[str, str] = {}
    for pe in endpoints:
        conn = getattr(pe, "connection", None)
        if conn is None or not conn.private_link_service_id or not conn.remote_name:
            continue
        index[connection_key(conn.private_link_service_id, conn.remote_name)] = pe.id
    return index
