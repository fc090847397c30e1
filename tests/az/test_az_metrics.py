"""The real azure-cli: `az monitor metrics list-definitions` and `az monitor metrics list`
(`--metric`, `--interval`, `--aggregation`, `--dimension`, `--filter`, `--start-time`,
`--offset`, `-o table`) on a private link service and its load balancer.

The server runs without the data plane: points are written into its store as the
sampler writes them (tests/netns/test_metrics.py has the kernel write them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine

from privatelink.core import metrics as m
from privatelink.store.metrics import SqlMetricStore
from privatelink.store.sql import SqlRepository

pytestmark = pytest.mark.az

LOCATION = "eastus"


def _service(az: Any, rg: str) -> tuple[str, str]:
    """VNet, load balancer and private link service in a new group: (service, lb) ids."""
    az.run("group", "create", "-n", rg, "-l", LOCATION, "-o", "none")
    az.run(
        *("network", "vnet", "create", "-g", rg, "-n", "vnet"),
        *("--address-prefixes", "10.0.0.0/16", "--subnet-name", "fe"),
        *("--subnet-prefixes", "10.0.1.0/24", "-o", "none"),
    )
    az.run(
        *("network", "vnet", "subnet", "create", "-g", rg, "--vnet-name", "vnet", "-n", "nat"),
        *("--address-prefixes", "10.0.3.0/24"),
        *("--disable-private-link-service-network-policies", "true", "-o", "none"),
    )
    az.run(
        *("network", "lb", "create", "-g", rg, "-n", "lb", "--sku", "Standard"),
        *("--vnet-name", "vnet", "--subnet", "fe", "--frontend-ip-name", "fe"),
        *("--backend-pool-name", "be", "-o", "none"),
    )
    lb = az.tsv("network", "lb", "show", "-g", rg, "-n", "lb", "--query", "id")
    pls = az.tsv(
        *("network", "private-link-service", "create", "-g", rg, "-n", "pls"),
        *("--vnet-name", "vnet", "--subnet", "nat", "--lb-name", "lb"),
        *("--lb-frontend-ip-configs", "fe", "--query", "id"),
    )
    return str(pls), str(lb)


def _write(az_server: Any, samples: list[m.Sample]) -> None:
    engine = create_engine(f"sqlite:///{az_server.data_dir / SqlRepository.SQLITE_FILE}")
    try:
        SqlMetricStore(engine).add(m.points_of(samples))
    finally:
        engine.dispose()


def test_az_monitor_metrics_on_a_private_link_service(
    az: Any, az_server: Any, az_helpers: Any
) -> None:
    rg = az_helpers.unique("rg-metrics")
    pls, lb = _service(az, rg)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    at = (now - timedelta(minutes=2)).timestamp() + 10
    nat = m.dims_of({"PrivateLinkServiceIPAddress": "10.0.3.4"})
    frontend = {"FrontendIPAddress": "10.0.1.4", "FrontendPort": "80"}
    _write(
        az_server,
        [
            m.Sample(pls.lower(), "PLSBytesIn", (), at, 123456),
            m.Sample(pls.lower(), "PLSBytesIn", (), at + 20, 1000),
            m.Sample(pls.lower(), "PLSNatPortsUsage", nat, at, 12.5),
            m.Sample(
                lb.lower(), "ByteCount", m.dims_of({**frontend, "Direction": "Inbound"}), at, 900
            ),
            m.Sample(
                lb.lower(), "ByteCount", m.dims_of({**frontend, "Direction": "Outbound"}), at, 90
            ),
        ],
    )
    definitions = az.json("monitor", "metrics", "list-definitions", "--resource", pls)
    assert [d["name"]["value"] for d in definitions] == [
        "PLSBytesIn",
        "PLSBytesOut",
        "PLSNatPortsUsage",
    ]
    assert definitions[2]["unit"] == "Percent"
    assert definitions[2]["dimensions"][0]["value"] == "PrivateLinkServiceIPAddress"
    result = az.json(
        "monitor",
        "metrics",
        "list",
        "--resource",
        pls,
        "--metric",
        "PLSBytesIn",
        "--interval",
        "PT1M",
    )
    (metric,) = result["value"]
    assert metric["name"]["value"] == "PLSBytesIn" and metric["unit"] == "Count"
    data = metric["timeseries"][0]["data"]
    assert len(data) in (60, 61)  # the last hour, minute by minute (az's default offset)
    assert sum(d.get("total") or 0 for d in data) == 124456
    assert max(d.get("total") or 0 for d in data) == 124456
    # Split by the NAT IP, averaged over five minutes, from a start time.
    start = (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    usage = az.json(
        *("monitor", "metrics", "list", "--resource", pls, "--metric", "PLSNatPortsUsage"),
        *("--dimension", "PrivateLinkServiceIPAddress", "--interval", "PT5M"),
        *("--start-time", start, "--offset", "15m", "--aggregation", "Average", "Maximum"),
    )
    (series,) = usage["value"][0]["timeseries"]
    assert series["metadatavalues"][0]["value"] == "10.0.3.4"
    assert [d["average"] for d in series["data"] if d.get("average") is not None] == [12.5]
    # The load balancer: one direction by $filter; the table output az prints.
    inbound = az.json(
        *("monitor", "metrics", "list", "--resource", lb, "--metric", "ByteCount"),
        *("--filter", "Direction eq 'Inbound'", "--interval", "PT1H"),
    )
    (lb_series,) = inbound["value"][0]["timeseries"]
    assert sum(d.get("total") or 0 for d in lb_series["data"]) == 900
    table = az.run(
        "monitor", "metrics", "list", "--resource", lb, "--metric", "ByteCount", "-o", "table"
    )
    assert "Byte Count  990.0" in table.stdout  # its localized name, its minute
    # An unknown metric: Azure's error, through az.
    failed = az.fails(
        "monitor", "metrics", "list", "--resource", pls, "--metric", "ByteCount", code="BadRequest"
    )
    assert "Failed to find metric configuration" in failed.stderr
