"""Issue 11, defect 3: Azure's per-network limits, and overlaps found among thousands.

Through the real server: 3000 subnets (Azure's limit) are accepted, the 3001st is refused
with `SubnetsPerVirtualNetworkLimitReached` whether it comes in the network's body or as a
subnet PUT, and one overlapping pair among thousands is found (`NetcfgSubnetRangesOverlap`).
Nothing refused is written. Speed is measured in bench/write_stall.py, not here.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

API = "2026-03-01"
Q = f"?api-version={API}"
AZURE_SUBNET_LIMIT = 3000


def _subnets(count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` disjoint /24 subnets in 10.0.0.0/8."""
    return [
        {"name": f"s{i}", "properties": {"addressPrefix": f"10.{i // 256}.{i % 256}.0/24"}}
        for i in range(start, start + count)
    ]


def _vnet(subnets: list[dict[str, Any]], prefixes: list[str] | None = None) -> dict[str, Any]:
    return {
        "location": "eastus",
        "properties": {
            "addressSpace": {"addressPrefixes": prefixes or ["10.0.0.0/8"]},
            "subnets": subnets,
        },
    }


def _arm_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    error = resp.json()["error"]
    assert error["code"] == code, error
    return dict(error)


@pytest.fixture
def base(server: Any, helpers: Any) -> str:
    return str(helpers.base_path(helpers.new_sub(), helpers.unique("rg")))


def test_subnet_limit_is_azures(server: Any, base: str) -> None:
    http = server.http
    path = f"{base}/virtualNetworks/big"
    error = _arm_error(
        http.put(path + Q, json=_vnet(_subnets(AZURE_SUBNET_LIMIT + 1))),
        400,
        "SubnetsPerVirtualNetworkLimitReached",
    )
    assert "3001" in error["message"] and "3000" in error["message"]
    assert http.get(path + Q).status_code == 404

    created = http.put(path + Q, json=_vnet(_subnets(AZURE_SUBNET_LIMIT)))
    assert created.status_code == 201, created.text[:500]
    got = http.get(path + Q)
    assert got.status_code == 200
    subnets = got.json()["properties"]["subnets"]
    assert len(subnets) == AZURE_SUBNET_LIMIT
    assert subnets[-1]["properties"]["addressPrefix"] == "10.11.183.0/24"

    # One more through the subnets child resource: refused too; replacing one is not more.
    extra = {"properties": {"addressPrefix": "10.200.0.0/24"}}
    _arm_error(
        http.put(f"{path}/subnets/extra{Q}", json=extra),
        400,
        "SubnetsPerVirtualNetworkLimitReached",
    )
    assert http.get(f"{path}/subnets/extra{Q}").status_code == 404
    replaced = http.put(f"{path}/subnets/s7{Q}", json=extra)
    assert replaced.status_code == 200, replaced.text[:500]
    assert replaced.json()["properties"]["addressPrefix"] == "10.200.0.0/24"


def test_overlapping_pair_among_thousands_is_found(server: Any, base: str, helpers: Any) -> None:
    http = server.http
    path = f"{base}/virtualNetworks/clash"
    subnets = _subnets(2999)
    subnets.append({"name": "late", "properties": {"addressPrefix": "10.9.99.128/25"}})
    error = _arm_error(http.put(path + Q, json=_vnet(subnets)), 400, "NetcfgSubnetRangesOverlap")
    assert "late" in error["message"] and "s2403" in error["message"]
    assert http.get(path + Q).status_code == 404

    # The same through the unmodified SDK, as its users see it.
    sub = base.split("/")[2]
    rg = base.split("/")[4]
    client = server.client(sub)
    body = _vnet(subnets[-1000:])
    helpers.expect_error(
        lambda: client.virtual_networks.begin_create_or_update(rg, "clash", body).result(),
        400,
        "NetcfgSubnetRangesOverlap",
    )

    # A subnet PUT overlapping one of many stored subnets is refused as well.
    assert http.put(path + Q, json=_vnet(_subnets(2000))).status_code == 201
    _arm_error(
        http.put(f"{path}/subnets/late{Q}", json={"properties": {"addressPrefix": "10.7.0.0/23"}}),
        400,
        "NetcfgSubnetRangesOverlap",
    )


def test_address_prefix_limit(server: Any, base: str) -> None:
    spaces = [f"10.{i // 256}.{i % 256}.0/24" for i in range(3001)]
    resp = server.http.put(f"{base}/virtualNetworks/wide{Q}", json=_vnet([], spaces))
    error = _arm_error(resp, 400, "AddressPrefixesPerVirtualNetworkLimitReached")
    assert "3001" in error["message"]
    resp = server.http.put(f"{base}/virtualNetworks/wide{Q}", json=_vnet([], spaces[:3000]))
    assert resp.status_code == 201, resp.text[:500]
