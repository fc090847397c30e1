"""Issue 11: names, ids and api-versions are validated whole, before anything is written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

API = "2026-03-01"
Q = f"?api-version={API}"

VNET = {
    "location": "eastus",
    "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}},
}


def _arm_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    error = resp.json()["error"]
    assert error["code"] == code, error
    return dict(error)


def test_name_ending_in_newline_is_refused_and_not_stored(server: Any, helpers: Any) -> None:
    http = server.http
    base = helpers.base_path(helpers.new_sub(), helpers.unique("rg"))
    _arm_error(http.put(f"{base}/virtualNetworks/vnl%0A{Q}", json=VNET), 400, "InvalidResourceName")
    assert http.get(f"{base}/virtualNetworks/vnl{Q}").status_code == 404
    listed = http.get(f"{base}/virtualNetworks{Q}")
    assert listed.status_code == 200, listed.text
    assert listed.json()["value"] == []


def test_subscription_ending_in_newline_is_answered_with_400(server: Any, helpers: Any) -> None:
    http = server.http
    sub = helpers.new_sub()
    rg = helpers.unique("rg")
    bad = f"/subscriptions/{sub}%0A/resourceGroups/{rg}/providers/Microsoft.Network"
    # Before the fix the write was committed and the connection dropped (h11 refused the
    # Azure-AsyncOperation header carrying the newline): now a 400 with an ARM body.
    resp = http.put(f"{bad}/virtualNetworks/v1{Q}", json=VNET)
    _arm_error(resp, 400, "InvalidSubscriptionId")
    assert "azure-asyncoperation" not in resp.headers
    good = helpers.base_path(sub, rg)
    assert http.get(f"{good}/virtualNetworks/v1{Q}").status_code == 404


def test_api_version_must_be_a_real_date(server: Any, helpers: Any) -> None:
    path = f"{helpers.base_path(helpers.new_sub(), helpers.unique('rg'))}/virtualNetworks/v1"
    for version in ("2020-13-45", "2021-02-30", "2020-01-01%0A"):
        resp = server.http.put(f"{path}?api-version={version}", json=VNET)
        _arm_error(resp, 400, "InvalidApiVersionParameter")
    assert server.http.get(f"{path}{Q}").status_code == 404


def test_repeated_api_version_is_refused(server: Any, helpers: Any) -> None:
    path = f"{helpers.base_path(helpers.new_sub(), helpers.unique('rg'))}/virtualNetworks/v1"
    resp = server.http.put(f"{path}{Q}&api-version=2015-06-15", json=VNET)
    error = _arm_error(resp, 400, "InvalidApiVersionParameter")
    assert "only once" in error["message"]
    assert server.http.get(f"{path}{Q}").status_code == 404


def test_long_name_is_not_echoed_whole(server: Any, helpers: Any) -> None:
    base = helpers.base_path(helpers.new_sub(), helpers.unique("rg"))
    resp = server.http.put(f"{base}/virtualNetworks/{'n' * 20_000}{Q}", json=VNET)
    error = _arm_error(resp, 400, "InvalidResourceName")
    assert len(error["message"]) < 500
    assert "n" * 200 + "..." in error["message"]
