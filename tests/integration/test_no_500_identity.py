"""Odd input to the identity surfaces never produces a 5xx, on the real server.

Role assignments and definitions, Microsoft Graph, the admin endpoints behind
`privatelink tenant`, the activity log's filters and nested `providers` paths: every odd
body, id, filter or path gets a 4xx with an error body. Bounded to about 100 requests.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from identities import Identity

pytestmark = pytest.mark.integration

ODD_BODIES: list[Any] = [
    None,
    [],
    "text",
    42,
    {},
    {"properties": None},
    {"properties": []},
    {"properties": {"roleDefinitionId": 7, "principalId": ["x"]}},
    {"properties": {"roleDefinitionId": "/providers/x", "principalId": "not-a-guid"}},
    {"properties": {"roleName": "", "permissions": "all", "assignableScopes": [None]}},
    {"properties": {"permissions": [{"actions": ["\x00"]}], "assignableScopes": ["/"]}},
    {"displayName": None},
    {"displayName": "x" * 5000},
    {"appId": "0"},
    {"passwordCredential": {"endDateTime": "yesterday"}},
    {"name": "../../etc"},
    {"name": "x" * 300},
]


def _json_or_raw(client: Any, method: str, path: str, body: Any) -> Any:
    if isinstance(body, str):
        return client.request(
            method, path, content=body.encode(), headers={"Content-Type": "application/json"}
        )
    return client.request(method, path, json=body)


@pytest.fixture(scope="module")
def admin(server: Any) -> Any:
    identity = Identity.from_json(server.credentials)
    yield identity
    identity.close()


def _assert_4xx(reply: Any) -> None:
    assert 400 <= reply.status_code < 500, f"{reply.status_code}: {reply.text[:300]}"
    assert reply.json()["error"]["code"]


def test_odd_bodies_on_identity_writes(admin: Identity) -> None:
    sub = admin.subscription_id
    arm = admin.http()
    graph = admin.graph()
    app = graph.post("/graph/v1.0/applications", json={"displayName": "fuzz"}).json()
    targets = [
        (
            arm,
            f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
            f"{uuid.uuid4()}?api-version=2022-04-01",
            "PUT",
        ),
        (
            arm,
            f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
            f"{uuid.uuid4()}?api-version=2022-04-01",
            "PUT",
        ),
        (graph, "/graph/v1.0/applications", "POST"),
        (graph, "/graph/v1.0/servicePrincipals", "POST"),
        (graph, f"/graph/v1.0/applications/{app['id']}/addPassword", "POST"),
        (graph, "/graph/v1.0/directoryObjects/getByIds", "POST"),
        (arm, "/privatelink/admin/tenants", "POST"),
        (arm, "/privatelink/admin/tenants/default/users", "POST"),
    ]
    for client, path, method in targets:
        for body in ODD_BODIES:
            reply = _json_or_raw(client, method, path, body)
            if reply.status_code < 400:
                continue  # some odd bodies are valid for some endpoints (e.g. {} to getByIds)
            _assert_4xx(reply)
    graph.delete(f"/graph/v1.0/applications/{app['id']}")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "$filter=",
        "$filter=eventTimestamp ge 'never'",
        "$filter=eventTimestamp ge '2026-01-01T00:00:00Z' or 1 eq 1",
        "$filter=resourceUri eq '/x'",
        "$filter=eventTimestamp ge '1900-01-01T00:00:00Z'",
        "$filter=eventTimestamp ge '2026-01-01T00:00:00Z' and caller eq '\u00e9%00'",
        "$skipToken=zzz&$filter=eventTimestamp ge '2026-12-01T00:00:00Z'",
    ],
)
def test_odd_activity_log_queries(admin: Identity, query: str) -> None:
    sub = admin.subscription_id
    with admin.http() as arm:
        reply = arm.get(
            f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"
            f"?api-version=2015-04-01&{query}"
        )
    assert reply.status_code < 500, reply.text[:300]
    if reply.status_code >= 400:
        _assert_4xx(reply)


@pytest.mark.parametrize(
    "path",
    [
        "/providers/Microsoft.Authorization/roleAssignments/not-a-guid",
        "/providers/Microsoft.Authorization/roleDefinitions/%00",
        "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments",
        "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/privateLinkServices/"
        "p/providers/Microsoft.Authorization/roleAssignments?$filter=atScope() and nonsense",
        "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions"
        "?$filter=roleName eq 'x' or 1",
        "/subscriptions/{sub}/providers/Microsoft.Authorization/providers/Microsoft.Network/x",
        "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
        "00000000-0000-0000-0000-000000000000/providers/x/y",
        "/tenants?$filter=x",
    ],
)
def test_odd_paths(admin: Identity, path: str) -> None:
    url = path.replace("{sub}", admin.subscription_id)
    sep = "&" if "?" in url else "?"
    with admin.http() as arm:
        reply = arm.get(f"{url}{sep}api-version=2022-04-01")
    assert reply.status_code < 500, reply.text[:300]
    if reply.status_code >= 400:
        _assert_4xx(reply)
