"""Paging: a server with page_size 2 (config.json) and lists longer than a page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytestmark = pytest.mark.integration

API = "2026-03-01"


def _vnet(prefix: str) -> dict[str, Any]:
    return {
        "location": "eastus",
        "properties": {
            "addressSpace": {"addressPrefixes": [prefix]},
            "subnets": [{"name": "s", "properties": {"addressPrefix": prefix[:-2] + "24"}}],
        },
    }


def _walk(server: Any, path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Follow nextLink verbatim, as the SDK does; return all items and the links."""
    items: list[dict[str, Any]] = []
    links: list[str] = []
    url: str | None = f"{path}?api-version={API}"
    while url:
        resp = server.http.get(url)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["value"]) <= 2
        items += body["value"]
        url = body.get("nextLink")
        if url:
            links.append(url)
            assert len(links) < 20, "nextLink loop"
    return items, links


def _assert_links_carry_api_version(server: Any, links: list[str]) -> None:
    assert links
    for link in links:
        parts = urlsplit(link)
        assert f"{parts.scheme}://{parts.netloc}" == server.url
        assert parse_qs(parts.query).get("api-version") == [API], link


def test_virtual_networks_list_across_pages(paged_server: Any, helpers: Any) -> None:
    sub = helpers.new_sub()
    rg1, rg2 = helpers.unique("rg"), helpers.unique("rg")
    client = paged_server.client(sub)
    names1 = [f"vnet-{i}" for i in range(5)]
    names2 = [f"other-{i}" for i in range(2)]
    for i, name in enumerate(names1):
        client.virtual_networks.begin_create_or_update(rg1, name, _vnet(f"10.{i}.0.0/16")).result()
    for i, name in enumerate(names2):
        client.virtual_networks.begin_create_or_update(
            rg2, name, _vnet(f"10.{100 + i}.0.0/16")
        ).result()

    assert sorted(v.name for v in client.virtual_networks.list(rg1)) == names1
    assert sorted(v.name for v in client.virtual_networks.list_all()) == sorted(names1 + names2)

    items, links = _walk(paged_server, f"{helpers.base_path(sub, rg1)}/virtualNetworks")
    assert sorted(v["name"] for v in items) == names1
    assert len(links) == 2  # 2 + 2 + 1
    _assert_links_carry_api_version(paged_server, links)
    items, links = _walk(
        paged_server, f"/subscriptions/{sub}/providers/Microsoft.Network/virtualNetworks"
    )
    assert len(items) == 7 and len({v["id"] for v in items}) == 7
    _assert_links_carry_api_version(paged_server, links)


def test_private_link_services_connections_and_auto_approved_across_pages(
    paged_server: Any, helpers: Any
) -> None:
    world = helpers.World(paged_server)
    consumer = world.consumer()
    fes = tuple(f"fe{i}" for i in range(3))
    pools = tuple(f"be{i}" for i in range(3))
    rules = [helpers.Rule(f"r{i}", fes[i], pools[i]) for i in range(3)]
    provider = world.provider(frontends=fes, pools=pools, rules=rules)
    names = []
    for i, fe in enumerate(fes):
        names.append(f"pls-{i}")
        provider.create_pls(
            names[-1], fe=fe, visibility=[consumer.sub], auto_approval=[consumer.sub]
        )
    ops = provider.client.private_link_services
    assert sorted(p.name for p in ops.list(provider.rg)) == names
    assert sorted(p.name for p in ops.list_by_subscription()) == names
    auto = consumer.client.private_link_services.list_auto_approved_private_link_services("eastus")
    assert sorted(a.private_link_service.lower() for a in auto) == sorted(
        provider.pls_id(n).lower() for n in names
    )

    target = ops.get(provider.rg, "pls-0")
    pes = [f"pe-{i}" for i in range(5)]
    for pe in pes:
        consumer.create_pe(pe, target.alias)
    conns = list(ops.list_private_endpoint_connections(provider.rg, "pls-0"))
    assert len(conns) == 5
    assert sorted(c.private_endpoint.id.rsplit("/", 1)[1] for c in conns) == pes
    assert all(c.private_link_service_connection_state.status == "Approved" for c in conns)
    items, links = _walk(paged_server, provider.pls_id("pls-0") + "/privateEndpointConnections")
    assert len(items) == 5
    _assert_links_carry_api_version(paged_server, links)
    assert sorted(p.name for p in consumer.client.private_endpoints.list(consumer.rg)) == pes
    assert len(list(consumer.client.private_endpoints.list_by_subscription())) == 5
    assert len(list(consumer.client.network_interfaces.list(consumer.rg))) == 5


def _skip_token_answer(server: Any, path: str, token: str) -> httpx.Response:
    resp = server.http.get(f"{path}?api-version={API}&$skipToken={token}")
    assert resp.status_code < 500, f"$skipToken={token}: {resp.status_code} {resp.text[:300]}"
    return resp


@pytest.mark.parametrize(
    ("store", "token"),
    [
        ("sqlite", str(2**31)),
        pytest.param("sqlite", str(2**63)),
        pytest.param("sqlite", "9" * 30),
        pytest.param("postgres", str(2**31), marks=[pytest.mark.postgres]),
        pytest.param("postgres", "9" * 30, marks=[pytest.mark.postgres]),
    ],
)
def test_out_of_range_skip_token_is_not_a_500(
    request: pytest.FixtureRequest, helpers: Any, store: str, token: str
) -> None:
    backend_server = request.getfixturevalue("server" if store == "sqlite" else "pg_server")
    sub = helpers.new_sub()
    client = backend_server.client(sub)
    client.virtual_networks.begin_create_or_update(
        helpers.unique("rg"), "v", _vnet("10.0.0.0/16")
    ).result()
    resp = _skip_token_answer(
        backend_server, f"/subscriptions/{sub}/providers/Microsoft.Network/virtualNetworks", token
    )
    if resp.status_code == 200:
        assert resp.json()["value"] == []
    else:
        assert resp.json()["error"]["code"]


def test_negative_skip_token_on_connections_is_refused(paged_server: Any, helpers: Any) -> None:
    world = helpers.World(paged_server)
    consumer = world.consumer()
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[consumer.sub])
    for i in range(3):
        consumer.create_pe(f"pe-{i}", pls.alias)
    path = provider.pls_id(pls.name) + "/privateEndpointConnections"
    resp = _skip_token_answer(paged_server, path, "-1")
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"]


# --- GET /subscriptions (issue 11: 2032 items in one page, no nextLink) ----------------------


def _subscription_ids(server: Any, http: httpx.Client) -> tuple[list[str], list[str]]:
    """Walk GET /subscriptions by nextLink; (ids, links)."""
    ids: list[str] = []
    links: list[str] = []
    url: str | None = f"/subscriptions?api-version={API}"
    while url:
        resp = http.get(url)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["value"]) <= 2
        ids += [s["subscriptionId"] for s in body["value"]]
        url = body.get("nextLink")
        if url:
            links.append(url)
            assert len(links) < 200, "nextLink loop"
    return ids, links


def test_subscriptions_list_across_pages(paged_server: Any, helpers: Any) -> None:
    world = helpers.World(paged_server)
    try:
        made = [world.existing_subscription() for _ in range(5)]
        ids, links = _subscription_ids(paged_server, paged_server.http)
        assert len(ids) == len(set(ids)), "a subscription on two pages"
        assert set(made) <= set(ids)
        assert paged_server.credentials["subscription_id"] in ids
        assert len(links) >= 2  # at least 6 subscriptions, 2 a page
        _assert_links_carry_api_version(paged_server, links)
        assert all(parse_qs(urlsplit(link).query).get("$skipToken") for link in links)

        # Another tenant's admin pages through its own subscriptions only.
        other = world.new_tenant()
        theirs = [
            other.identity.subscription_id,
            other.new_subscription(),
            other.new_subscription(),
        ]
        listed, links = _subscription_ids(paged_server, other.identity.http())
        assert sorted(listed) == sorted(theirs)
        assert len(links) == 1  # 2 + 1
        mine, _ = _subscription_ids(paged_server, paged_server.http)
        assert not set(theirs) & set(mine)
    finally:
        world.close()


@pytest.mark.parametrize("token", ["-1", "abc", str(2**31), "999999"])
def test_subscriptions_skip_token_is_never_a_500(paged_server: Any, token: str) -> None:
    resp = _skip_token_answer(paged_server, "/subscriptions", token)
    if resp.status_code == 200:
        assert resp.json()["value"] == [] and "nextLink" not in resp.json()
    else:
        assert resp.status_code == 400 and resp.json()["error"]["code"]
