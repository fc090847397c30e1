"""azure-monitor-query's `MetricsQueryClient` pointed at the server (`endpoint=`): it asks
for a token for the server's own URL (its audience) and reads metrics and definitions
(api-version 2024-02-01)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.monitor.query import MetricAggregationType, MetricsQueryClient
from sqlalchemy import create_engine

from privatelink.core import metrics as m
from privatelink.store.metrics import SqlMetricStore
from privatelink.store.sql import SqlRepository
from tests.integration.conftest import RunningServer, World

pytestmark = pytest.mark.integration


def test_metrics_query_client_reads_the_server(server: RunningServer, world: World) -> None:
    provider = world.provider()
    pls = provider.create_pls("pls-query")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    engine = create_engine(f"sqlite:///{server.data_dir / SqlRepository.SQLITE_FILE}")
    try:
        at = (now - timedelta(minutes=3)).timestamp() + 1
        SqlMetricStore(engine).add(
            m.points_of([m.Sample(pls.id.lower(), "PLSBytesOut", (), at, 4321)])
        )
    finally:
        engine.dispose()
    client = MetricsQueryClient(
        server.credential, endpoint=server.url, connection_verify=server.ca_file
    )
    try:
        result = client.query_resource(
            pls.id,
            metric_names=["PLSBytesOut"],
            timespan=timedelta(minutes=10),
            granularity=timedelta(minutes=1),
            aggregations=[MetricAggregationType.TOTAL],
        )
        (metric,) = result.metrics
        assert metric.name == "PLSBytesOut" and metric.unit == "Count"
        assert result.granularity == timedelta(minutes=1)
        assert sum(v.total or 0 for v in metric.timeseries[0].data) == 4321
        names = [d.name for d in client.list_metric_definitions(pls.id)]
        assert names == ["PLSBytesIn", "PLSBytesOut", "PLSNatPortsUsage"]
    finally:
        client.close()
