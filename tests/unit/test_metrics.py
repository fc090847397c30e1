"""Metrics: aggregation, downsampling and queries (core/metrics.py), the store
(store/metrics.py), and the sampler on a fake kernel (dataplane/metrics.py)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from privatelink.core import errors
from privatelink.core import metrics as m
from privatelink.dataplane import metrics as sampler_mod
from privatelink.dataplane import nft
from privatelink.dataplane.desired import (
    HealthKey,
    HubPlan,
    LinkPlan,
    Plan,
    ProbeSpec,
    RulePlan,
    ServicePlan,
)
from privatelink.store.metrics import SqlMetricStore

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LB = "/subscriptions/s/resourcegroups/g/providers/microsoft.network/loadbalancers/lb"
PLS = "/subscriptions/s/resourcegroups/g/providers/microsoft.network/privatelinkservices/pls"
PE = "/subscriptions/c/resourcegroups/g/providers/microsoft.network/privateendpoints/pe"
BYTES = next(d for d in m.definitions_for(m.LB_TYPE) if d.name == "ByteCount")
DIP = next(d for d in m.definitions_for(m.LB_TYPE) if d.name == "DipAvailability")


def sample(metric: str, at: float, value: float, **dims: object) -> m.Sample:
    return m.Sample(LB, metric, m.dims_of(dims), T0.timestamp() + at, value)


# --- aggregation -------------------------------------------------------------------------


def test_samples_of_a_minute_fold_into_one_point() -> None:
    points = m.points_of([sample("ByteCount", s, v) for s, v in ((0, 10), (20, 30), (59, 5))])
    assert len(points) == 1
    p = points[0]
    assert (p.ts, p.total, p.count, p.minimum, p.maximum) == (T0.timestamp(), 45, 3, 5, 30)
    assert p.average == 15


def test_points_of_other_series_do_not_merge() -> None:
    a, b = (
        m.points_of([sample("ByteCount", 0, 1, Direction="Inbound")]),
        m.points_of([sample("ByteCount", 0, 1, Direction="Outbound")]),
    )
    with pytest.raises(ValueError):
        m.merge(a[0], b[0])


values = st.floats(min_value=0, max_value=1e6, allow_nan=False)
samples_strategy = st.lists(
    st.tuples(st.integers(0, 3 * 3600 - 1), values, st.sampled_from(["a", "b"])),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(raw=samples_strategy, aggregation=st.sampled_from(m.AGGREGATIONS))
def test_hourly_queries_are_the_same_before_and_after_downsampling(
    raw: list[tuple[int, float, str]], aggregation: str
) -> None:
    minutes = m.points_of(sample("ByteCount", at, v, FrontendIPAddress=ip) for at, v, ip in raw)
    hours = m.downsample(minutes, m.HOUR)
    assert all(p.grain == m.HOUR and p.ts % m.HOUR == 0 for p in hours)
    end = T0 + timedelta(hours=3)
    for split in (
        m.DimensionFilter(),
        m.parse_filter("FrontendIPAddress eq '*'", BYTES.dimensions),
    ):
        before = m.query(minutes, BYTES, T0, end, m.HOUR, [aggregation], split)
        after = m.query(hours, BYTES, T0, end, m.HOUR, [aggregation], split)
        assert [s.metadata for s in before] == [s.metadata for s in after]
        for x, y in zip(before, after, strict=True):
            for bx, by in zip(x.data, y.data, strict=True):
                assert bx.ts == by.ts
                assert bx.values.keys() == by.values.keys()
                for k in bx.values:
                    assert bx.values[k] == pytest.approx(by.values[k])


def test_a_query_splits_by_the_dimensions_its_filter_names() -> None:
    points = m.points_of(
        [
            sample("DipAvailability", 0, 100, BackendIPAddress="10.0.2.4"),
            sample("DipAvailability", 30, 100, BackendIPAddress="10.0.2.4"),
            sample("DipAvailability", 0, 0, BackendIPAddress="10.0.2.5"),
            sample("DipAvailability", 30, 0, BackendIPAddress="10.0.2.5"),
        ]
    )
    end = T0 + timedelta(minutes=2)
    whole = m.query(points, DIP, T0, end, m.MINUTE, ["Average"])
    assert len(whole) == 1 and whole[0].metadata == ()
    assert [b.values for b in whole[0].data] == [{"Average": 50.0}, {}]  # no data: absent
    split = m.query(
        points,
        DIP,
        T0,
        end,
        m.MINUTE,
        ["Average"],
        m.parse_filter("BackendIPAddress eq '*'", DIP.dimensions),
    )
    assert {s.metadata: s.data[0].values["Average"] for s in split} == {
        (("backendipaddress", "10.0.2.4"),): 100.0,
        (("backendipaddress", "10.0.2.5"),): 0.0,
    }
    one = m.query(
        points,
        DIP,
        T0,
        end,
        None,
        ["Minimum", "Maximum", "Count"],
        m.parse_filter("backendipaddress eq '10.0.2.5'", DIP.dimensions),
    )
    assert len(one) == 1 and one[0].data[0].values == {"Minimum": 0, "Maximum": 0, "Count": 2}


def test_counters_are_zero_in_empty_buckets_and_top_orders_series() -> None:
    points = m.points_of(
        [sample("ByteCount", 60 * i, 10 * (i + 1), FrontendPort=i) for i in range(3)]
    )
    end = T0 + timedelta(minutes=5)
    whole = m.query(points, BYTES, T0, end, m.MINUTE, ["Total"])
    assert [b.values["Total"] for b in whole[0].data] == [10, 20, 30, 0, 0]
    assert m.query([], BYTES, T0, end, 300, ["Total"])[0].data[0].values == {"Total": 0.0}
    split = m.parse_filter("FrontendPort eq '*'", BYTES.dimensions)
    top2 = m.query(points, BYTES, T0, end, 300, ["Total"], split, top=2)
    assert [s.metadata for s in top2] == [(("frontendport", "2"),), (("frontendport", "1"),)]
    asc = m.query(points, BYTES, T0, end, 300, ["Total"], split, top=5, orderby=("Total", False))
    assert [s.metadata[0][1] for s in asc] == ["0", "1", "2"]
    assert m.query([], BYTES, T0, end, 300, ["Total"], split) == []


def test_buckets_align_to_the_interval() -> None:
    start = T0 + timedelta(minutes=7, seconds=12)
    assert m.bucket_starts(start, start + timedelta(minutes=10), 300) == [
        int((T0 + timedelta(minutes=5 * i)).timestamp()) for i in (1, 2, 3)
    ]
    assert m.bucket_starts(start, start + timedelta(hours=1), None) == [int(start.timestamp())]
    with pytest.raises(m.InvalidMetricQuery):
        m.bucket_starts(T0, T0 + timedelta(days=100), 60)


# --- parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        (None, T0 - timedelta(hours=1), T0),
        ("PT30M", T0 - timedelta(minutes=30), T0),
        (
            "2026-01-05T10:00:00Z/2026-01-05T11:00:00Z",
            T0 - timedelta(hours=2),
            T0 - timedelta(hours=1),
        ),
        ("2026-01-05T10:00:00.1234567Z/PT1H", T0 - timedelta(hours=2, microseconds=-123456), None),
        # az: utcnow().isoformat() (no zone: UTC), quoted once more than the wire needs.
        (
            "2026-01-05T10%3A00%3A00%2F2026-01-05T11%3A00%3A00",
            T0 - timedelta(hours=2),
            T0 - timedelta(hours=1),
        ),
        ("2026-01-05T12:00:00+02:00/2026-01-05T12:30:00+02:00", T0 - timedelta(hours=2), None),
    ],
)
def test_timespans(text: str | None, start: datetime, end: datetime | None) -> None:
    got = m.parse_timespan(text, T0)
    assert got[0] == start
    if end is not None:
        assert got[1] == end


@pytest.mark.parametrize(
    "text", ["yesterday", "2026-01-05T11:00:00Z/2026-01-05T10:00:00Z", "PT", "/"]
)
def test_bad_timespans_are_400(text: str) -> None:
    with pytest.raises(m.InvalidMetricTimespan) as info:
        m.parse_timespan(text, T0)
    assert info.value.status == 400 and info.value.code == "InvalidMetricTimespan"


def test_intervals_and_aggregations() -> None:
    assert m.parse_interval(None) == 60
    assert m.parse_interval("pt1h") == 3600
    assert m.parse_interval("PT60M") == 3600
    assert m.parse_interval("FULL") is None
    assert m.interval_text(300) == "PT5M"
    for bad in ("PT2M", "P1W", "soon"):
        with pytest.raises(m.InvalidMetricInterval):
            m.parse_interval(bad)
    assert m.parse_aggregations(None, "Total") == ["Total"]
    assert m.parse_aggregations("average,COUNT, total", "Total") == ["Average", "Count", "Total"]
    with pytest.raises(m.InvalidMetricAggregation):
        m.parse_aggregations("median", "Total")
    assert m.parse_orderby("sum asc", "Total") == ("Total", False)
    with pytest.raises(m.InvalidMetricQuery):
        m.parse_orderby("sideways", "Total")


def test_filters() -> None:
    f = m.parse_filter(
        "FrontendIPAddress eq '10.0.1.4' and Direction eq 'Inbound' or Direction eq 'outbound'",
        BYTES.dimensions,
    )
    assert f.split() == ("frontendipaddress", "direction")
    assert f.admits({"frontendipaddress": "10.0.1.4", "direction": "Outbound"})
    assert not f.admits({"frontendipaddress": "10.0.1.5", "direction": "Inbound"})
    assert m.parse_filter("(FrontendPort eq '*')", BYTES.dimensions).wanted == {
        "frontendport": None
    }
    for bad, why in (
        ("Colour eq 'red'", "no dimension"),
        ("FrontendPort eq '80' or Direction eq 'Inbound'", "`or`"),
        ("FrontendPort gt '80'", "expected"),
        ("FrontendPort eq '80' and", "nothing after"),
    ):
        with pytest.raises(m.InvalidMetricFilter, match=why):
            m.parse_filter(bad, BYTES.dimensions)


def test_metric_names_are_azures() -> None:
    assert [d.name for d in m.pick_metrics(m.PLS_TYPE, "plsbytesin,PLSNatPortsUsage")] == [
        "PLSBytesIn",
        "PLSNatPortsUsage",
    ]
    assert [d.name for d in m.pick_metrics(m.PE_TYPE, None)] == ["PEBytesIn"]
    with pytest.raises(m.MetricNotFound) as info:
        m.pick_metrics(m.PLS_TYPE, "PLSBytesIn,ByteCount")
    assert info.value.code == "BadRequest"
    assert "Failed to find metric configuration for provider: Microsoft.Network" in str(info.value)
    assert "Valid metrics: PLSBytesIn,PLSBytesOut,PLSNatPortsUsage" in str(info.value)
    assert isinstance(info.value, errors.BadRequest)
    assert m.definitions_for("Microsoft.Network/virtualNetworks") == ()


# --- the store ---------------------------------------------------------------------------


def _store(tmp_path: Path, now: list[datetime]) -> SqlMetricStore:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    return SqlMetricStore(engine, retention_days=2, clock=lambda: now[0])


def test_the_store_merges_points_of_one_bucket(tmp_path: Path) -> None:
    now = [T0]
    store = _store(tmp_path, now)
    store.add(m.points_of([sample("ByteCount", 1, 10)]))
    store.add(m.points_of([sample("ByteCount", 2, 30), sample("ByteCount", 61, 1)]))
    got = store.points(LB, ["ByteCount"], T0, T0 + timedelta(minutes=5))
    assert [(p.ts - T0.timestamp(), p.total, p.count, p.minimum, p.maximum) for p in got] == [
        (0, 40, 2, 10, 30),
        (60, 1, 1, 1, 1),
    ]
    assert store.points(LB, ["SYNCount"], T0, T0 + timedelta(minutes=5)) == []
    assert store.points(PLS, ["ByteCount"], T0, T0 + timedelta(minutes=5)) == []


def test_compaction_folds_old_minutes_into_hours_and_drops_expired(tmp_path: Path) -> None:
    now = [T0]
    store = _store(tmp_path, now)
    samples = [sample("ByteCount", 60 * i, 1.0 + i) for i in range(180)]  # 12:00-15:00
    store.add(m.points_of(samples))
    assert store.count() == 180
    end = T0 + timedelta(hours=3)
    before = m.query(
        store.points(LB, ["ByteCount"], T0, end), BYTES, T0, end, 3600, ["Total", "Maximum"]
    )
    now[0] = T0 + timedelta(days=1, hours=2, minutes=30)  # 12:00 and 13:00 are a day old
    assert store.compact() == (120, 0)
    assert store.count() == 2 + 60
    after = m.query(
        store.points(LB, ["ByteCount"], T0, end), BYTES, T0, end, 3600, ["Total", "Maximum"]
    )
    assert [b.values for s in before for b in s.data] == [b.values for s in after for b in s.data]
    now[0] = T0 + timedelta(days=3, hours=1)  # past the retention of two days
    store.compact()
    assert store.count() == 0


# --- the sampler -------------------------------------------------------------------------

NS = "plt-v-provider"
PROBE = ProbeSpec("Tcp", 8080, None, 5.0, 1)
CHECK_A, CHECK_B = HealthKey(NS, "10.0.2.4", PROBE), HealthKey(NS, "10.0.2.5", PROBE)
RULE = RulePlan(
    rule_id=f"{LB}/loadBalancingRules/r",
    chain="rule_a",
    protocol="tcp",
    frontend_ip="10.0.1.4",
    frontend_port=80,
    backend_port=8080,
    backends=("10.0.2.4", "10.0.2.5"),
    distribution="Default",
    probed=(CHECK_A, CHECK_B),
)
SERVICE = ServicePlan(PLS, "pls_a", "snat_a", ("10.0.3.4",), (("tcp", 80, "rule_a"),))
LINK = LinkPlan.on_slot(
    4,
    f"{PLS}/privateendpointconnections/pe.conn",
    "10.9.0.5",
    "plt-v-consumer",
    NS,
    "pls_a",
    (80,),
    pair=0,
)


class FakeKernel:
    """Counter sets and conntrack as the sampler reads them."""

    def __init__(self) -> None:
        self.sets: dict[tuple[str, str], dict[tuple[Any, ...], tuple[int, int]]] = {}
        self.conntrack = ""
        self.stat = "entries insert_failed drop\n00000001 00000000 00000000\n"

    def nft_set_counters(self, netns: str, table: str, name: str) -> dict[Any, tuple[int, int]]:
        return dict(self.sets.get((netns, name), {}))

    def conntrack_list_text(self, netns: str) -> str:
        return self.conntrack

    def conntrack_stat_text(self, netns: str) -> str:
        return self.stat


class FakeProber:
    def __init__(self) -> None:
        self.state: dict[HealthKey, bool] = {}

    def verdicts(self) -> dict[HealthKey, bool]:
        return dict(self.state)


class FakeReconciler:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.prober = FakeProber()


class Sink:
    def __init__(self) -> None:
        self.points: list[m.Point] = []

    def add(self, points: Any) -> None:
        self.points += list(points)

    def compact(self) -> tuple[int, int]:
        return 0, 0


def _world(rule: RulePlan = RULE) -> tuple[FakeKernel, FakeReconciler, Sink, Any]:
    hub = HubPlan("vnet", NS, rules=(rule,), services=(SERVICE,), links_in=(LINK,))
    plan = Plan(hubs=(hub,), links=(LINK,), health_checks=(CHECK_A, CHECK_B))
    kernel, reconciler, sink = FakeKernel(), FakeReconciler(plan), Sink()
    clock = [T0.timestamp()]
    sampler = sampler_mod.MetricsSampler(
        reconciler,
        sink,
        endpoints=lambda: {LINK.link_key: PE},
        interval=1,
        kernel=kernel,
        clock=lambda: clock[0],
    )
    return kernel, reconciler, sink, sampler


def _by_series(samples: list[m.Sample]) -> dict[tuple[str, str, m.Dims], float]:
    return {(s.resource, s.metric, s.dims): s.value for s in samples}


def test_the_sampler_counts_differences_per_service_endpoint_and_frontend() -> None:
    kernel, _rec, sink, sampler = _world()
    link_key = (LINK.mark, "10.9.0.5", "tcp", 8080)
    intra_key = (0, "10.0.1.4", "tcp", 8080)
    kernel.sets[(NS, "traffic_in")] = {link_key: (10, 5000), intra_key: (1, 100)}
    kernel.sets[(NS, "traffic_out")] = {link_key: (8, 700)}
    kernel.sets[(NS, "syns")] = {link_key: (1, 60)}
    first = _by_series(sampler.sample_once())
    assert not any(k[1] in ("PLSBytesIn", "ByteCount") for k in first)  # the baseline
    kernel.sets[(NS, "traffic_in")] = {link_key: (30, 15000), intra_key: (3, 400)}
    kernel.sets[(NS, "traffic_out")] = {link_key: (10, 900)}
    kernel.sets[(NS, "syns")] = {link_key: (3, 180), intra_key: (1, 60)}  # new element
    got = _by_series(sampler.sample_once())
    inbound = m.dims_of(
        {"FrontendIPAddress": "10.0.1.4", "FrontendPort": 80, "Direction": "Inbound"}
    )
    outbound = m.dims_of(
        {"FrontendIPAddress": "10.0.1.4", "FrontendPort": 80, "Direction": "Outbound"}
    )
    assert got[(PLS, "PLSBytesIn", ())] == 10000
    assert got[(PLS, "PLSBytesOut", ())] == 200
    assert got[(PE, "PEBytesIn", ())] == 10000
    assert got[(PE, "PEBytesOut", ())] == 200
    assert got[(LB, "ByteCount", inbound)] == 10000 + 300  # the link's and the VNet's flows
    assert got[(LB, "PacketCount", inbound)] == 20 + 2
    assert got[(LB, "ByteCount", outbound)] == 200
    assert got[(LB, "SYNCount", inbound)] == 2 + 1
    # A table replaced behind the sampler's back starts its counters at zero again.
    kernel.sets[(NS, "traffic_in")] = {link_key: (2, 120)}
    got = _by_series(sampler.sample_once())
    assert got[(PLS, "PLSBytesIn", ())] == 120
    assert sampler.totals().counters[(PLS, "PLSBytesIn", ())] == 10120
    assert sink.points and all(p.grain == m.MINUTE for p in sink.points)


def test_probe_verdicts_are_health_probe_status_and_data_path_availability() -> None:
    _kernel, rec, _sink, sampler = _world()
    rec.prober.state = {CHECK_A: True, CHECK_B: False}
    got = _by_series(sampler.sample_once())
    dip = {
        dict(dims)["BackendIPAddress"]: value
        for (res, metric, dims), value in got.items()
        if metric == "DipAvailability"
    }
    assert dip == {"10.0.2.4": 100.0, "10.0.2.5": 0.0}
    vip = m.dims_of({"FrontendIPAddress": "10.0.1.4", "FrontendPort": 80})
    assert got[(LB, "VipAvailability", vip)] == 100.0
    key_b = next(
        k for k in got if k[1] == "DipAvailability" and ("BackendIPAddress", "10.0.2.5") in k[2]
    )
    assert dict(key_b[2]) == {
        "BackendIPAddress": "10.0.2.5",
        "BackendPort": "8080",
        "FrontendIPAddress": "10.0.1.4",
        "FrontendPort": "80",
        "ProtocolType": "Tcp",
    }
    # Every backend down: the rule has none left, the data path is down.
    _k, _r, _s, down = _world(RulePlan(**{**RULE.__dict__, "backends": ()}))
    assert _by_series(down.sample_once())[(LB, "VipAvailability", vip)] == 0.0


CONNTRACK = "\n".join(
    f"tcp      6 431999 ESTABLISHED src=169.254.64.1 dst=10.9.0.5 sport={p} dport=80 "
    f"src={backend} dst=10.0.3.4 sport=8080 dport={p} [ASSURED] mark=5 use=1"
    for p, backend in [(40000 + i, "10.0.2.4") for i in range(30)]
    + [(50000, "10.0.2.5"), (500, "10.0.2.5")]
)


def test_nat_usage_counts_ports_per_destination_and_class() -> None:
    usage = sampler_mod.nat_usage(CONNTRACK + "\nnonsense line\n", ["10.0.3.4", "10.0.3.9"])
    assert usage["10.0.3.9"].ports == 0 and usage["10.0.3.9"].percent == 0
    found = usage["10.0.3.4"]
    assert found.used == {
        ("tcp", "10.0.2.4", 8080, "high"): 30,
        ("tcp", "10.0.2.5", 8080, "high"): 1,
        ("tcp", "10.0.2.5", 8080, "low"): 1,
    }
    # The fullest class of a destination counts: one of the 511 ports for clients below 512.
    assert found.percent == round(100 * 1 / 511, 3)
    assert found.fullest == (found.percent, "low")
    assert sampler_mod.NatUsage("10.0.3.9", {}).fullest == (0.0, "high")
    assert sampler_mod.insert_failures("entries insert_failed\n0 0000000a\n0 00000001\n") == 11


def test_a_service_out_of_nat_ports_is_reported_while_connections_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel, _rec, _sink, sampler = _world()
    monkeypatch.setitem(sampler_mod.PORTS_PER_CLASS, "high", 31)  # 31 ports: 30 used
    kernel.conntrack = CONNTRACK
    got = _by_series(sampler.sample_once())
    usage = got[(PLS, "PLSNatPortsUsage", (("PrivateLinkServiceIPAddress", "10.0.3.4"),))]
    assert usage == pytest.approx(100 * 30 / 31, abs=1e-3)
    assert sampler.exhausted() == {}  # full, but nothing failed (yet)
    kernel.stat = "entries insert_failed drop\n00000001 00000005 00000005\n"
    sampler.sample_once()
    why = sampler.exhausted()[PLS]
    # The reason names the NAT IP, and the ports of the class that ran out.
    assert "NAT IP 10.0.3.4 holds 96.8 % of the 31 ports" in why
    assert "clients on ports 1024-65535" in why and "dropped 5 connection attempts" in why
    sampler.sample_once()  # no new failure: not out of ports any more
    assert sampler.exhausted() == {}


def test_the_counter_sets_hold_a_link_and_a_rule() -> None:
    hub = HubPlan("vnet", NS, rules=(RULE,), services=(SERVICE,), links_in=(LINK,))
    sets = {name: items for name, _type, items in nft.table(hub).sets}
    element = f"{LINK.mark} . 10.9.0.5 . tcp . 8080"
    assert sets["traffic_in"] == ("0 . 10.0.1.4 . tcp . 8080", element)
    assert sets["traffic_out"] == sets["traffic_in"] == sets["syns"]
    text = nft.render(hub)
    assert f"set traffic_in {{ type {nft.TRAFFIC_KEY}; counter;" in text


# --- the Prometheus exposition -----------------------------------------------------------


def test_prometheus_shows_the_samplers_figures_under_prometheus_names() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from privatelink.prometheus import DataplaneCollector, parse_address

    kernel, rec, _sink, sampler = _world()
    link_key = (LINK.mark, "10.9.0.5", "tcp", 8080)
    kernel.sets[(NS, "traffic_in")] = {link_key: (1, 100)}
    sampler.sample_once()
    kernel.sets[(NS, "traffic_in")] = {link_key: (11, 5100)}
    kernel.conntrack = CONNTRACK
    rec.prober.state = {CHECK_B: False}
    sampler.sample_once()
    registry = CollectorRegistry()
    registry.register(
        DataplaneCollector(sampler, None, lambda: ["Approved", "Approved", "Pending"])
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert (
        samples[
            (
                "privatelink_private_link_service_bytes_total",
                (("direction", "in"), ("resource_id", PLS)),
            )
        ]
        == 5000
    )
    assert (
        samples[
            ("privatelink_private_endpoint_bytes_total", (("direction", "in"), ("resource_id", PE)))
        ]
        == 5000
    )
    frontend = (
        ("direction", "in"),
        ("frontend_ip", "10.0.1.4"),
        ("frontend_port", "80"),
        ("resource_id", LB),
    )
    assert samples[("privatelink_load_balancer_bytes_total", frontend)] == 5000
    assert samples[("privatelink_load_balancer_packets_total", frontend)] == 10
    up = {
        dict(k[1])["backend_ip"]: v
        for k, v in samples.items()
        if k[0] == "privatelink_load_balancer_backend_up"
    }
    assert up == {"10.0.2.4": 1.0, "10.0.2.5": 0.0}
    nat = (("nat_ip", "10.0.3.4"), ("resource_id", PLS))
    assert samples[("privatelink_nat_ports_used", nat)] == 32
    assert samples[("privatelink_nat_ports_usage_ratio", nat)] == pytest.approx(1 / 511, abs=1e-5)
    assert samples[("privatelink_nat_ports_exhausted", (("resource_id", PLS),))] == 0
    assert samples[("privatelink_nat_ports_per_destination", ())] == 64512
    assert samples[("privatelink_private_endpoint_connections", (("state", "Approved"),))] == 2
    assert samples[("privatelink_private_endpoint_connections", (("state", "Rejected"),))] == 0
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address(":9464") == ("0.0.0.0", 9464)
    for bad in ("9464", "host:", "h:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


# --- Resource Health: a service out of NAT ports is Degraded -----------------------------


def test_resource_health_says_degraded_and_why() -> None:
    from fastapi import FastAPI, Request

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from privatelink.api import errors as api_errors
    from privatelink.api.resource_health import build_resource_health_router
    from privatelink.core.resource import Resource

    stored = {PLS: Resource(id=PLS, name="pls", location="eastus")}

    class Plane:
        def read_with(self, fn: Any) -> Any:
            class View:
                def get(self, rid: str) -> Any:
                    return stored.get(rid.lower())

            return fn(View())

    degraded = {PLS: "NAT IP 10.0.3.4 holds 99.0 % of the 64512 ports it has per destination"}
    for why, expected in ((lambda: degraded, "Degraded"), (dict, "Available"), (None, "Unknown")):
        app = FastAPI()
        api_errors.install(app)
        app.state.control_plane = Plane()

        @app.middleware("http")
        async def authenticated(request: Request, call_next: Any) -> Any:
            request.state.principal = object()
            return await call_next(request)

        app.include_router(build_resource_health_router(why))
        url = f"{PLS}/providers/Microsoft.ResourceHealth/availabilityStatuses/current"
        with TestClient(app) as client:
            got = client.get(url, params={"api-version": "2020-05-01"})
            assert got.status_code == 200, got.text
            props = got.json()["properties"]
            assert props["availabilityState"] == expected
            if expected == "Degraded":
                assert "10.0.3.4" in props["summary"]
            missing = client.get(
                url.replace("/pls/", "/nope/"), params={"api-version": "2020-05-01"}
            )
            assert missing.status_code == 404
            bad = client.get(url, params={"api-version": "2019-01-01"})
            assert bad.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_sync_observer_counts_syncs_failures_and_durations() -> None:
    from prometheus_client import CollectorRegistry

    from privatelink.dataplane.reconciler import SyncReport
    from privatelink.prometheus import SyncObserver

    class Rec:
        last: SyncReport | None = None

    registry = CollectorRegistry()
    rec = Rec()
    observe = SyncObserver(rec, registry)
    observe()  # no sync yet
    for report in (SyncReport(0.02, 1, 0), SyncReport(0.5, 1, 0, error="boom")):
        rec.last = report
        observe()
        observe()  # the same sync seen twice counts once
    assert registry.get_sample_value("privatelink_reconciler_sync_duration_seconds_count") == 2
    assert registry.get_sample_value("privatelink_reconciler_sync_duration_seconds_sum") == 0.52
    assert registry.get_sample_value("privatelink_reconciler_sync_failures_total") == 1
