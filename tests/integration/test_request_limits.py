"""ARM request limits on the wire: body size, tags, lone surrogates (issue 11)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

API = "2026-03-01"
Q = f"?api-version={API}"
MB = 1024 * 1024


def _arm_error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.json()["error"]["code"] == code, resp.text[:300]
    message = resp.json()["error"]["message"]
    assert isinstance(message, str)
    return message


def _refused_surrogate(resp: httpx.Response) -> None:
    assert "surrogate" in _arm_error(resp, 400, "InvalidRequestContent")


def _put_raw(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    # json.dumps escapes a lone surrogate as \ud800 (valid JSON); httpx's json= cannot.
    return http.put(
        path + Q, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def _vnet(tags: dict[str, str]) -> dict[str, Any]:
    return {
        "location": "eastus",
        "tags": tags,
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}},
    }


@pytest.fixture
def group(server: Any, helpers: Any) -> str:
    """A resource group that exists (so its subscription does), as a path."""
    path = f"/subscriptions/{helpers.new_sub()}/resourceGroups/{helpers.unique('rg')}"
    resp = server.http.put(path + Q, json={"location": "eastus"})
    assert resp.status_code == 201, resp.text
    return path


def _lists(group: str) -> list[str]:
    sub = "/".join(group.split("/")[:3])
    return [
        f"{sub}/resourceGroups{Q}",
        f"{sub}/resources{Q}",
        f"{sub}/providers/Microsoft.Network/privateDnsZones{Q}",
        f"{sub}/providers/Microsoft.Network/virtualNetworks{Q}",
        f"{group}/resources{Q}",
    ]


# --- body size --------------------------------------------------------------------------------


def _big_body(size: int) -> bytes:
    head = b'{"location": "eastus", "tags": {"big": "'
    return head + b"x" * (size - len(head) - 3) + b'"}}'


def test_a_5mb_body_is_refused_with_413_and_nothing_is_stored(server: Any, group: str) -> None:
    path = f"{group}/providers/Microsoft.Network/virtualNetworks/big"
    resp = server.http.put(
        path + Q, content=_big_body(5 * MB), headers={"Content-Type": "application/json"}
    )
    _arm_error(resp, 413, "RequestContentTooLarge")
    assert server.http.get(path + Q).status_code == 404


def test_a_chunked_body_over_4mb_is_refused_while_streaming(server: Any, group: str) -> None:
    path = f"{group}/providers/Microsoft.Network/virtualNetworks/chunked"
    body = _big_body(5 * MB)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 256 * 1024):
            yield body[i : i + 256 * 1024]

    try:
        resp = server.http.put(
            path + Q, content=chunks(), headers={"Content-Type": "application/json"}
        )
    except (httpx.WriteError, httpx.RemoteProtocolError):
        resp = None  # the server may close before the client has written everything
    if resp is not None:
        _arm_error(resp, 413, "RequestContentTooLarge")
    assert server.http.get(path + Q).status_code == 404


def test_a_body_under_4mb_still_reaches_validation(server: Any, group: str) -> None:
    path = f"{group}/providers/Microsoft.Network/virtualNetworks/under"
    resp = server.http.put(
        path + Q, content=_big_body(3 * MB), headers={"Content-Type": "application/json"}
    )
    _arm_error(resp, 400, "InvalidTagValueLength")


# --- tags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ({f"t{i}": "v" for i in range(51)}, "InvalidTagCount"),
        ({"t": "v" * 257}, "InvalidTagValueLength"),
        ({"n" * 513: "v"}, "InvalidTagNameLength"),
    ],
    ids=["51-tags", "257-char-value", "513-char-name"],
)
@pytest.mark.parametrize("kind", ["resourceGroup", "virtualNetwork", "privateDnsZone"])
def test_tags_over_arm_limits_are_refused_and_nothing_is_stored(
    server: Any, helpers: Any, group: str, tags: dict[str, str], code: str, kind: str
) -> None:
    http = server.http
    if kind == "resourceGroup":
        sub = "/".join(group.split("/")[:3])
        path, body = f"{sub}/resourceGroups/{helpers.unique('rg')}", {"location": "eastus"}
    elif kind == "virtualNetwork":
        path, body = f"{group}/providers/Microsoft.Network/virtualNetworks/v1", _vnet({})
    else:
        path, body = f"{group}/providers/Microsoft.Network/privateDnsZones/z.test", {}
        body = {"location": "global"}
    _arm_error(http.put(path + Q, json={**body, "tags": tags}), 400, code)
    assert http.get(path + Q).status_code == 404


def test_tags_at_arm_limits_are_accepted(server: Any, group: str) -> None:
    tags = {f"t{i}": "v" for i in range(49)} | {"n" * 512: "v" * 256}
    resp = server.http.put(group + Q, json={"location": "eastus", "tags": tags})
    assert resp.status_code == 200, resp.text
    assert resp.json()["tags"] == tags


# --- lone surrogates --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["resourceGroup", "privateDnsZone", "virtualNetwork"])
@pytest.mark.parametrize("where", ["value", "name"])
def test_a_lone_surrogate_in_a_tag_is_refused_and_lists_keep_working(
    server: Any, helpers: Any, group: str, kind: str, where: str
) -> None:
    http = server.http
    tags = {"t": "\ud800"} if where == "value" else {"\udc00": "v"}
    if kind == "resourceGroup":
        sub = "/".join(group.split("/")[:3])
        path, body = f"{sub}/resourceGroups/{helpers.unique('rg')}", {"location": "eastus"}
    elif kind == "privateDnsZone":
        path = f"{group}/providers/Microsoft.Network/privateDnsZones/surrogate.test"
        body = {"location": "global"}
    else:
        path, body = f"{group}/providers/Microsoft.Network/virtualNetworks/v1", _vnet({})
    _refused_surrogate(_put_raw(http, path, {**body, "tags": tags}))
    # PATCH (zones) and updates of an existing resource are refused the same way.
    assert http.put(path + Q, json={**body, "tags": {"t": "ok"}}).status_code in (200, 201)
    _refused_surrogate(_put_raw(http, path, {**body, "tags": tags}))
    if kind == "privateDnsZone":
        resp = http.patch(
            path + Q,
            content=json.dumps({"tags": tags}).encode(),
            headers={"Content-Type": "application/json"},
        )
        _refused_surrogate(resp)
    got = http.get(path + Q)
    assert got.status_code == 200, got.text
    assert got.json()["tags"] == {"t": "ok"}
    for url in _lists(group):
        assert http.get(url).status_code == 200, url


def test_a_lone_surrogate_anywhere_in_a_body_is_refused(server: Any, group: str) -> None:
    path = f"{group}/providers/Microsoft.Network/virtualNetworks/v2"
    body = _vnet({})
    body["properties"]["subnets"] = [{"name": "s\ud800", "properties": {}}]
    _refused_surrogate(_put_raw(server.http, path, body))
    deployment = {"properties": {"mode": "Incremental", "template": {"x": "\udfff"}}}
    resp = _put_raw(
        server.http, f"{group}/providers/Microsoft.Resources/deployments/d1", deployment
    )
    _refused_surrogate(resp)
    for url in _lists(group):
        assert server.http.get(url).status_code == 200, url
