"""ARM request/response mechanics on the wire (raw HTTPS where the SDK hides them)."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.mgmt.network import NetworkManagementClient

pytestmark = pytest.mark.integration

API = "2026-03-01"
Q = f"?api-version={API}"


def _arm_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], body
    assert isinstance(body["error"].get("message"), str), body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def _vnet_body(prefix: str = "10.0.0.0/16") -> dict[str, Any]:
    subnet = prefix.replace("0.0/16", "1.0/24")
    return {
        "location": "eastus",
        "properties": {
            "addressSpace": {"addressPrefixes": [prefix]},
            "subnets": [{"name": "s1", "properties": {"addressPrefix": subnet}}],
        },
    }


@pytest.fixture
def vnet_path(server: Any, helpers: Any) -> str:
    # In an existing subscription: a read in a fresh GUID is 404 SubscriptionNotFound.
    sub = server.credentials["subscription_id"]
    return f"{helpers.base_path(sub, helpers.unique('rg'))}/virtualNetworks/vnet1"


def _assert_https_url_with_api_version(url: str, server: Any) -> None:
    parts = urlsplit(url)
    assert parts.scheme == "https"
    assert f"{parts.scheme}://{parts.netloc}" == server.url
    assert parse_qs(parts.query).get("api-version") == [API]


# --- PUT / DELETE and their long-running operation headers -------------------------------


def test_put_create_then_update_is_idempotent(server: Any, world: Any, helpers: Any) -> None:
    provider = world.provider()
    http = server.http
    path = provider.pls_id(helpers.unique("pls"))
    body = provider.pls_body(visibility=["*"], fqdns=["a.example"])

    created = http.put(path + Q, json=body)
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/json")
    op_url = created.headers["Azure-AsyncOperation"]
    _assert_https_url_with_api_version(op_url, server)
    status = http.get(op_url)
    assert status.status_code == 200
    assert status.json()["status"] == "Succeeded"
    first = created.json()
    assert first["id"].lower() == path.lower()
    assert first["properties"]["provisioningState"] == "Succeeded"

    again = http.put(path + Q, json=body)
    assert again.status_code == 200, again.text
    assert "Azure-AsyncOperation" in again.headers
    second = again.json()
    assert second["properties"]["alias"] == first["properties"]["alias"]
    assert second["properties"]["networkInterfaces"] == first["properties"]["networkInterfaces"]
    ips = [c["properties"]["privateIPAddress"] for c in first["properties"]["ipConfigurations"]]
    assert [
        c["properties"]["privateIPAddress"] for c in second["properties"]["ipConfigurations"]
    ] == ips
    got = http.get(path + Q)
    assert got.status_code == 200
    assert got.json()["properties"]["alias"] == first["properties"]["alias"]


def test_delete_is_202_with_location_then_204(server: Any, vnet_path: str) -> None:
    http = server.http
    assert http.put(vnet_path + Q, json=_vnet_body()).status_code == 201

    deleted = http.delete(vnet_path + Q)
    assert deleted.status_code == 202, deleted.text
    location = deleted.headers["Location"]
    _assert_https_url_with_api_version(location, server)
    done = http.get(location)
    assert done.status_code in (200, 204), done.text
    if "Azure-AsyncOperation" in deleted.headers:
        assert http.get(deleted.headers["Azure-AsyncOperation"]).json()["status"] == "Succeeded"
    _arm_error(http.get(vnet_path + Q), 404)

    assert http.delete(vnet_path + Q).status_code == 204
    missing_rg = vnet_path.replace("/resourceGroups/", "/resourceGroups/nope-")
    assert http.delete(missing_rg + Q).status_code == 204


def test_get_missing_is_404_resource_not_found(server: Any, vnet_path: str) -> None:
    _arm_error(server.http.get(vnet_path + Q), 404, "ResourceNotFound")


# --- etags ------------------------------------------------------------------------------------


def test_if_match_and_if_none_match(server: Any, vnet_path: str) -> None:
    http = server.http
    created = http.put(vnet_path + Q, json=_vnet_body())
    assert created.status_code == 201
    etag = created.json()["etag"]
    assert etag

    wrong = http.put(vnet_path + Q, json=_vnet_body(), headers={"If-Match": 'W/"nope"'})
    _arm_error(wrong, 412, "PreconditionFailed")
    assert http.get(vnet_path + Q).json()["etag"] == etag

    tagged = _vnet_body() | {"tags": {"k": "v"}}
    right = http.put(vnet_path + Q, json=tagged, headers={"If-Match": etag})
    assert right.status_code == 200, right.text
    new_etag = right.json()["etag"]
    assert new_etag != etag
    assert right.json()["tags"] == {"k": "v"}

    stale = http.put(vnet_path + Q, json=_vnet_body(), headers={"If-Match": etag})
    _arm_error(stale, 412, "PreconditionFailed")

    _arm_error(
        http.put(vnet_path + Q, json=_vnet_body(), headers={"If-None-Match": "*"}),
        412,
        "PreconditionFailed",
    )
    assert http.get(vnet_path + Q).json()["etag"] == new_etag

    other = vnet_path[: -len("vnet1")] + "vnet2"
    assert (
        http.put(other + Q, json=_vnet_body("10.9.0.0/16"), headers={"If-None-Match": "*"})
    ).status_code == 201
    _arm_error(http.delete(other + Q, headers={"If-Match": 'W/"nope"'}), 412, "PreconditionFailed")
    assert http.get(other + Q).status_code == 200


def test_if_match_on_private_endpoint_connections(server: Any, world: Any, helpers: Any) -> None:
    provider, _consumer, pls = _connected_pls(world, helpers)
    http = server.http
    (conn,) = http.get(provider.pls_id(pls.name) + "/privateEndpointConnections" + Q).json()[
        "value"
    ]
    path = provider.pls_id(pls.name) + "/privateEndpointConnections/" + conn["name"]

    def body(status: str) -> dict[str, Any]:
        state = {"status": status, "description": f"set {status}", "actionsRequired": "None"}
        return {"properties": {"privateLinkServiceConnectionState": state}}

    def status() -> str:
        state = http.get(path + Q).json()["properties"]["privateLinkServiceConnectionState"]
        return str(state["status"])

    etag = http.get(path + Q).json()["etag"]
    assert etag
    approved = http.put(path + Q, json=body("Approved"), headers={"If-Match": etag})
    assert approved.status_code == 200, approved.text
    new_etag = approved.json()["etag"]
    assert new_etag and new_etag != etag

    # The second writer holds the etag the first one already spent: refused, nothing lost.
    stale = http.put(path + Q, json=body("Rejected"), headers={"If-Match": etag})
    _arm_error(stale, 412, "PreconditionFailed")
    assert status() == "Approved"
    bogus = http.put(path + Q, json=body("Rejected"), headers={"If-Match": 'W/"nope"'})
    _arm_error(bogus, 412, "PreconditionFailed")
    assert status() == "Approved"
    assert http.get(path + Q).json()["etag"] == new_etag

    # If-Match: * means "the connection exists".
    missing = path[: -len(conn["name"])] + "nope"
    _arm_error(
        http.put(missing + Q, json=body("Approved"), headers={"If-Match": "*"}),
        412,
        "PreconditionFailed",
    )
    _arm_error(http.delete(missing + Q, headers={"If-Match": "*"}), 412, "PreconditionFailed")

    _arm_error(http.delete(path + Q, headers={"If-Match": etag}), 412, "PreconditionFailed")
    assert status() == "Approved"
    deleted = http.delete(path + Q, headers={"If-Match": new_etag})
    assert deleted.status_code in (200, 202, 204), deleted.text
    _arm_error(http.get(path + Q), 404)


# --- api-version, body, auth -------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2099-01-01", "banana", "2026-13-45x"])
def test_unknown_api_version_is_400(server: Any, vnet_path: str, version: str) -> None:
    _arm_error(
        server.http.get(f"{vnet_path}?api-version={version}"), 400, "InvalidApiVersionParameter"
    )
    _arm_error(
        server.http.put(f"{vnet_path}?api-version={version}", json=_vnet_body()),
        400,
        "InvalidApiVersionParameter",
    )
    _arm_error(server.http.get(vnet_path + Q), 404)


def test_unknown_api_version_through_the_sdk(server: Any, helpers: Any) -> None:
    client = server.client(server.credentials["subscription_id"])
    err = helpers.expect_error(
        lambda: client.virtual_networks.get("rg", "v", api_version="2099-01-01"),
        400,
        "InvalidApiVersionParameter",
    )
    assert "2099-01-01" in str(err)


def test_missing_api_version_is_400(server: Any, vnet_path: str) -> None:
    _arm_error(server.http.get(vnet_path), 400)
    _arm_error(server.http.put(vnet_path, json=_vnet_body()), 400)
    _arm_error(server.http.get(vnet_path + Q), 404)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"location": "eastus",', b"\xff\xfe\x00garbage", b"", b"null", b"[]"],
)
def test_malformed_json_body_is_400(server: Any, vnet_path: str, content: bytes) -> None:
    resp = server.http.put(
        vnet_path + Q, content=content, headers={"Content-Type": "application/json"}
    )
    _arm_error(resp, 400)
    _arm_error(server.http.get(vnet_path + Q), 404)


def test_no_token_is_401(server: Any, vnet_path: str) -> None:
    with server.anonymous() as anon:
        for resp in (
            anon.get(vnet_path + Q),
            anon.put(vnet_path + Q, json=_vnet_body()),
            anon.delete(vnet_path + Q),
            anon.get(vnet_path),  # authentication comes before api-version checks
        ):
            _arm_error(resp, 401)
            assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")
        _arm_error(anon.get(vnet_path + Q, headers={"Authorization": "Bearer not.a.token"}), 401)
        _arm_error(anon.get(vnet_path + Q, headers={"Authorization": "Basic dTpw"}), 401)
    assert server.http.get(vnet_path + Q).status_code == 404  # nothing was created


def test_sdk_with_a_bad_token_gets_client_authentication_error(server: Any, helpers: Any) -> None:
    import time

    from azure.core.credentials import AccessToken

    class Bogus:
        def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
            return AccessToken("eyJhbGciOiJub25lIn0.e30.", int(time.time()) + 3600)

    with NetworkManagementClient(
        Bogus(),  # type: ignore[arg-type]
        helpers.new_sub(),
        base_url=server.url,
        connection_verify=server.ca_file,
        polling_interval=0,
        retry_total=0,
    ) as client:
        with pytest.raises(ClientAuthenticationError) as info:
            client.virtual_networks.get("rg", "v")
        assert info.value.status_code == 401


# --- case-insensitive paths ----------------------------------------------------------------------


def test_paths_match_case_insensitively(server: Any, helpers: Any) -> None:
    http = server.http
    sub, rg = helpers.new_sub(), helpers.unique("RG-Mixed")
    canonical = f"{helpers.base_path(sub, rg)}/virtualNetworks/vnet1"
    created = http.put(canonical + Q, json=_vnet_body())
    assert created.status_code == 201
    vid = created.json()["id"]

    variants = [
        f"/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.network/virtualnetworks/vnet1",
        f"/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{rg}/PROVIDERS/MICROSOFT.NETWORK/VIRTUALNETWORKS/vnet1",
        f"/subscriptions/{sub.upper()}/resourceGroups/{rg.lower()}/providers/Microsoft.Network/virtualNetworks/VNET1",
    ]
    for path in variants:
        got = http.get(path + Q)
        assert got.status_code == 200, (path, got.text)
        assert got.json()["id"].lower() == vid.lower()
    updated = http.put(variants[0] + Q, json=_vnet_body() | {"tags": {"via": "lower"}})
    assert updated.status_code == 200, updated.text  # same resource: update, not create
    listing = http.get(
        f"/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.network/virtualnetworks{Q}"
    )
    assert listing.status_code == 200
    assert [v["id"].lower() for v in listing.json()["value"]] == [vid.lower()]
    assert (
        http.get(
            f"/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.network/virtualnetworks/vnet1/subnets/S1{Q}"
        ).status_code
        == 200
    )


# --- read-only fields in a GET-modify-PUT round trip -------------------------------------------


def _connected_pls(world: Any, helpers: Any) -> tuple[Any, Any, Any]:
    consumer = world.consumer()
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[consumer.sub], fqdns=["a.example"])
    consumer.create_pe("pe", pls.alias)
    return provider, consumer, pls


def test_sdk_round_trip_keeps_alias_and_connections(world: Any, helpers: Any) -> None:
    provider, consumer, pls = _connected_pls(world, helpers)
    model = provider.client.private_link_services.get(provider.rg, pls.name)
    (conn,) = model.private_endpoint_connections
    model.fqdns = ["a.example", "b.example"]
    model.tags = {"round": "trip"}
    updated = provider.client.private_link_services.begin_create_or_update(
        provider.rg, pls.name, model
    ).result()
    assert updated.alias == pls.alias
    assert updated.fqdns == ["a.example", "b.example"]
    assert updated.tags == {"round": "trip"}
    assert [c.name for c in updated.private_endpoint_connections] == [conn.name]
    assert [c.private_ip_address for c in updated.ip_configurations] == [
        c.private_ip_address for c in pls.ip_configurations
    ]
    assert [n.id for n in updated.network_interfaces] == [n.id for n in pls.network_interfaces]
    # The endpoint's DNS configs follow the new FQDNs.
    pe = consumer.client.private_endpoints.get(consumer.rg, "pe")
    assert sorted(d.fqdn for d in pe.custom_dns_configs) == ["a.example", "b.example"]


def test_raw_round_trip_ignores_read_only_fields(server: Any, world: Any, helpers: Any) -> None:
    provider, _consumer, pls = _connected_pls(world, helpers)
    http = server.http
    path = provider.pls_id(pls.name)
    original = http.get(path + Q).json()
    body = copy.deepcopy(original)
    body["properties"]["alias"] = (
        "evil.00000000-0000-4000-8000-000000000000.eastus.azure.privatelinkservice"
    )
    body["properties"]["privateEndpointConnections"] = []
    body["properties"]["networkInterfaces"] = [{"id": path + "/nope"}]
    body["properties"]["provisioningState"] = "Failed"
    body["name"] = "other-name"
    body["type"] = "Microsoft.Network/virtualNetworks"
    body["etag"] = 'W/"made-up"'
    resp = http.put(path + Q, json=body)
    assert resp.status_code == 200, resp.text
    after = resp.json()
    assert after["name"] == pls.name
    assert after["type"] == "Microsoft.Network/privateLinkServices"
    assert after["properties"]["alias"] == pls.alias
    assert after["properties"]["provisioningState"] == "Succeeded"
    assert after["properties"]["networkInterfaces"] == original["properties"]["networkInterfaces"]
    assert [c["name"] for c in after["properties"]["privateEndpointConnections"]] == [
        c["name"] for c in original["properties"]["privateEndpointConnections"]
    ]
    assert http.get(path + Q).json()["properties"]["alias"] == pls.alias


def test_no_token_is_401_for_any_arm_path(server: Any, helpers: Any) -> None:
    sub = helpers.new_sub()
    with server.anonymous() as anon:
        for path in (
            f"/subscriptions/{sub}/providers/Microsoft.Network/bogusThings{Q}",
            f"/subscriptions/{sub}{Q}",
            f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{Q}",
        ):
            _arm_error(anon.get(path), 401)
