"""Azure Monitor metrics over HTTPS, driven by the unmodified azure-mgmt-monitor SDK.

The server runs without the data plane; points are written into its store the way the
sampler writes them (tests/netns/test_metrics.py makes the kernel write them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.mgmt.monitor import MonitorManagementClient
from sqlalchemy import create_engine

from privatelink.core import metrics as m
from privatelink.store.metrics import SqlMetricStore
from privatelink.store.sql import SqlRepository
from tests.integration.conftest import Provider, RunningServer, World, expect_error

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def provider(world: World) -> Provider:
    return world.provider()


@pytest.fixture
def monitor(server: RunningServer, provider: Provider) -> Iterator[MonitorManagementClient]:
    client = MonitorManagementClient(
        server.credential,
        provider.sub,
        base_url=server.url,
        connection_verify=server.ca_file,
        retry_total=0,
    )
    yield client
    client.close()


def _store(server: RunningServer) -> SqlMetricStore:
    engine = create_engine(f"sqlite:///{server.data_dir / SqlRepository.SQLITE_FILE}")
    return SqlMetricStore(engine)


def _lb_id(p: Provider) -> str:
    return f"{p.base}/loadBalancers/{p.lb}"


def _write(
    server: RunningServer,
    resource: str,
    metric: str,
    values: list[tuple[int, float, dict[str, Any]]],
) -> None:
    """Samples `minutes ago -> value` with their dimensions, as the sampler writes them."""
    samples = [
        m.Sample(
            resource.lower(),
            metric,
            m.dims_of(dims),
            (NOW - timedelta(minutes=ago)).timestamp() + 5,
            value,
        )
        for ago, value, dims in values
    ]
    store = _store(server)
    store.add(m.points_of(samples))
    store.engine.dispose()


def test_definitions_are_azures(
    server: RunningServer, provider: Provider, monitor: MonitorManagementClient
) -> None:
    pls = provider.create_pls("pls-defs")
    found = {d.name.value: d for d in monitor.metric_definitions.list(pls.id)}
    assert set(found) == {"PLSBytesIn", "PLSBytesOut", "PLSNatPortsUsage"}
    usage = found["PLSNatPortsUsage"]
    assert (usage.unit, usage.primary_aggregation_type) == ("Percent", "Average")
    assert [d.value for d in usage.dimensions] == ["PrivateLinkServiceIPAddress"]
    assert {a.time_grain for a in usage.metric_availabilities} >= {
        timedelta(minutes=1),
        timedelta(hours=1),
    }
    lb = {d.name.value: d for d in monitor.metric_definitions.list(_lb_id(provider))}
    assert set(lb) == {"ByteCount", "PacketCount", "SYNCount", "DipAvailability", "VipAvailability"}
    assert lb["ByteCount"].unit == "Bytes"
    assert [d.value for d in lb["DipAvailability"].dimensions] == [
        "ProtocolType",
        "BackendPort",
        "FrontendIPAddress",
        "FrontendPort",
        "BackendIPAddress",
    ]
    vnet = f"{provider.base}/virtualNetworks/{provider.vnet}"
    assert list(monitor.metric_definitions.list(vnet)) == []  # a type without metrics


def test_metrics_aggregate_filter_and_split(
    server: RunningServer, provider: Provider, monitor: MonitorManagementClient
) -> None:
    lb = _lb_id(provider)
    inbound = {"FrontendIPAddress": "10.0.1.4", "FrontendPort": 80, "Direction": "Inbound"}
    outbound = {**inbound, "Direction": "Outbound"}
    _write(server, lb, "ByteCount", [(3, 1000, inbound), (3, 500, inbound), (2, 70, outbound)])
    _write(
        server,
        lb,
        "DipAvailability",
        [(2, 100, {"BackendIPAddress": "10.0.2.4"}), (2, 0, {"BackendIPAddress": "10.0.2.5"})],
    )
    span = f"{(NOW - timedelta(minutes=5)).isoformat()}/{(NOW + timedelta(minutes=1)).isoformat()}"
    result = monitor.metrics.list(
        lb,
        timespan=span,
        interval="PT1M",
        metricnames="ByteCount,DipAvailability",
        aggregation="Total,Average",
    )
    assert result.interval in ("PT1M", timedelta(minutes=1))
    by_name = {v.name.value: v for v in result.value}
    total = by_name["ByteCount"]
    assert total.unit == "Bytes" and len(total.timeseries) == 1
    data = total.timeseries[0].data
    assert len(data) == 6
    assert [d.total for d in data] == [0, 0, 1500, 70, 0, 0]
    dip = by_name["DipAvailability"].timeseries[0].data
    assert [d.average for d in dip if d.average is not None] == [50.0]
    # Split by Direction, only inbound at port 80.
    split = monitor.metrics.list(
        lb,
        timespan=span,
        interval="PT5M",
        metricnames="ByteCount",
        aggregation="Total",
        filter="Direction eq '*' and FrontendPort eq '80'",
    )
    series = {
        tuple((mv.name.value, mv.value) for mv in ts.metadatavalues): sum(
            d.total or 0 for d in ts.data
        )
        for ts in split.value[0].timeseries
    }
    assert series == {
        (("direction", "Inbound"), ("frontendport", "80")): 1500,
        (("direction", "Outbound"), ("frontendport", "80")): 70,
    }
    # FULL: one point for the whole timespan.
    full = monitor.metrics.list(
        lb,
        timespan=span,
        interval="FULL",
        metricnames="ByteCount",
        aggregation="Total,Count,Maximum",
    )
    (point,) = full.value[0].timeseries[0].data
    assert (point.total, point.count, point.maximum) == (1570, 3, 1000)


def test_bad_queries_are_400_with_azures_codes(
    server: RunningServer, provider: Provider, monitor: MonitorManagementClient
) -> None:
    lb = _lb_id(provider)
    err = expect_error(
        lambda: monitor.metrics.list(lb, metricnames="PLSBytesIn"), 400, "BadRequest"
    )
    assert "Failed to find metric configuration for provider: Microsoft.Network" in str(err)
    expect_error(lambda: monitor.metrics.list(lb, interval="PT7M"), 400, "InvalidMetricInterval")
    expect_error(
        lambda: monitor.metrics.list(lb, timespan="tomorrow"), 400, "InvalidMetricTimespan"
    )
    expect_error(
        lambda: monitor.metrics.list(lb, aggregation="median"), 400, "InvalidMetricAggregation"
    )
    expect_error(
        lambda: monitor.metrics.list(lb, metricnames="ByteCount", filter="Colour eq 'red'"),
        400,
        "InvalidMetricFilter",
    )
    missing = f"{provider.base}/loadBalancers/nope"
    expect_error(lambda: monitor.metrics.list(missing), 404, "ResourceNotFound")
    expect_error(lambda: list(monitor.metric_definitions.list(missing)), 404, "ResourceNotFound")
    # api-version 2018-01-01 (what az sends) is served too; an unknown one is refused.
    path = f"{lb}/providers/Microsoft.Insights/metrics"
    ok = server.http.get(path, params={"api-version": "2018-01-01", "metricnames": "SYNCount"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["value"][0]["name"]["value"] == "SYNCount"
    bad = server.http.get(path, params={"api-version": "2015-04-01"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidApiVersionParameter"
    with server.anonymous() as anon:
        assert anon.get(path, params={"api-version": "2018-01-01"}).status_code == 401
        sneaky = anon.get("/" + path, params={"api-version": "2018-01-01"})
        assert sneaky.status_code in (401, 404)
