"""Issue 11: names, ids and api-versions are validated whole, before anything is written;
a read never creates a subscription; a private link service's lists are bounded and unique.
"""

from __future__ import annotations

import uuid
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
    # 10,000 characters: within the request line's limit (16 KiB, else 414 before routing).
    resp = server.http.put(f"{base}/virtualNetworks/{'n' * 10_000}{Q}", json=VNET)
    error = _arm_error(resp, 400, "InvalidResourceName")
    assert len(error["message"]) < 500
    assert "n" * 200 + "..." in error["message"]


# --- defect 6: reads never create subscriptions; PLS lists are bounded and unique -------------


def _all_subscriptions(http: httpx.Client) -> list[str]:
    """GET /subscriptions, every page (nextLink followed, as the SDKs do)."""
    ids: list[str] = []
    url: str | None = f"/subscriptions{Q}"
    for _ in range(1000):  # bounded: a nextLink loop fails the test instead of hanging it
        if url is None:
            return ids
        resp = http.get(url)
        assert resp.status_code == 200, resp.text
        ids += [s["subscriptionId"] for s in resp.json()["value"]]
        url = resp.json().get("nextLink")
    raise AssertionError("nextLink loop")


def test_reads_of_unknown_subscriptions_create_nothing(server: Any) -> None:
    # Before: 2000 GETs created 2000 subscriptions, listed in one page with no nextLink.
    http = server.http
    before = _all_subscriptions(http)
    paths = [
        "",
        "/resourceGroups",
        "/resourceGroups/rg",
        "/providers/Microsoft.Network/virtualNetworks",
        "/resourceGroups/rg/providers/Microsoft.Network/privateLinkServices/pls",
    ]
    for i in range(50):
        sub = str(uuid.uuid4())
        if i % 10 == 9:
            head = http.head(f"/subscriptions/{sub}/resourceGroups/rg{Q}")
            assert head.status_code == 404
            continue
        resp = http.get(f"/subscriptions/{sub}{paths[i % len(paths)]}{Q}")
        error = _arm_error(resp, 404, "SubscriptionNotFound")
        assert error["message"] == f"The subscription '{sub}' could not be found."
    assert _all_subscriptions(http) == before


def test_pls_subscription_lists_refuse_repeats(world: Any, helpers: Any) -> None:
    provider = world.provider()
    sub = provider.sub
    path = f"{provider.pls_id(helpers.unique('pls'))}{Q}"
    for body, field in (
        (provider.pls_body(visibility=[sub, sub.upper()]), "visibility.subscriptions"),
        (provider.pls_body(visibility=["*"], auto_approval=[sub, sub]), "autoApproval"),
    ):
        resp = world.server.http.put(path, json=body)
        error = _arm_error(resp, 400, "DuplicateSubscriptionInPrivateLinkServiceList")
        assert field in error["message"]
    assert world.server.http.get(path).status_code == 404


def test_pls_fqdns_are_bounded_and_unique(world: Any, helpers: Any) -> None:
    provider = world.provider()
    path = f"{provider.pls_id(helpers.unique('pls'))}{Q}"
    http = world.server.http
    many = [f"h{i}.contoso.example" for i in range(10_000)]
    error = _arm_error(
        http.put(path, json=provider.pls_body(fqdns=many)), 400, "FqdnListLimitExceeded"
    )
    assert "10000" in error["message"]
    _arm_error(
        http.put(path, json=provider.pls_body(fqdns=["a.example", "A.Example."])),
        400,
        "DuplicateFqdnInPrivateLinkService",
    )
    for bad in ("x" * 64 + ".example", ".".join(["a" * 63] * 4)):
        _arm_error(http.put(path, json=provider.pls_body(fqdns=[bad])), 400, "InvalidFqdn")
    assert http.get(path).status_code == 404
    created = http.put(path, json=provider.pls_body(fqdns=many[:100]))
    assert created.status_code in (200, 201), created.text
    assert created.json()["properties"]["fqdns"] == many[:100]
