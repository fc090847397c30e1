"""Microsoft.Authorization routes on a minimal app: raw HTTP and azure-mgmt-authorization.

The app here is assembled by hand (router, error handlers, api-version check, a fixed
caller); the real gate and enforcement are not involved. The SDK talks to the app through
a `requests` adapter that hands each request to Starlette's TestClient, so its requests
(paths, `$filter`, api-versions, bodies) and its deserialization are the real ones.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.authorization import AuthorizationManagementClient
from fastapi import APIRouter, Depends, FastAPI, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from sqlalchemy import create_engine

from privatelink.api import authorization, errors
from privatelink.api.arm import check_api_version
from privatelink.core.principal import Principal
from privatelink.store.rbac import SqlRbacStore

with warnings.catch_warnings():
    # Starlette's TestClient warns at import about its httpx use (warnings are errors).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TENANT = "aaaaaaaa-0000-4000-8000-000000000001"
SUB = "11111111-1111-4111-8111-111111111111"
S = f"/subscriptions/{SUB}"
RG = f"{S}/resourceGroups/rg-prov"
PLS = f"{RG}/providers/Microsoft.Network/privateLinkServices/pls-web"
ME = Principal(
    TENANT, "bbbbbbbb-0000-4000-8000-000000000001", "cccccccc-0000-4000-8000-000000000001"
)
SP = "dddddddd-0000-4000-8000-000000000001"  # a principal that exists
GHOST = "dddddddd-0000-4000-8000-00000000dead"  # one that does not
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
RA = "providers/Microsoft.Authorization/roleAssignments"
RD = "providers/Microsoft.Authorization/roleDefinitions"
V = "?api-version=2022-04-01"
PREVIEW = "?api-version=2022-05-01-preview"


class AsCaller:
    """ASGI middleware standing in for the gate: every request is `principal`'s."""

    def __init__(self, app: Any, principal: Principal) -> None:
        self.app = app
        self.principal = principal

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (b"x-anonymous", b"1") not in scope["headers"]:
            scope.setdefault("state", {})["principal"] = self.principal
        await self.app(scope, receive, send)


async def _api_version(request: Request) -> None:
    check_api_version(request)


def build_app(tmp_path: Path) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    arm = APIRouter(dependencies=[Depends(_api_version)])
    arm.include_router(authorization.router)
    app.include_router(arm)
    app.state.rbac = SqlRbacStore(create_engine(f"sqlite:///{tmp_path / 'rbac.db'}"))
    app.state.principal_exists = lambda tenant, oid: tenant == TENANT and oid in {SP, ME.object_id}
    app.add_middleware(AsCaller, principal=ME)
    return app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(build_app(tmp_path)) as c:
        yield c


def guid() -> str:
    return str(uuid.uuid4())


def assignment_body(role: str = READER, principal: str = SP, **extra: Any) -> dict[str, Any]:
    return {
        "properties": {
            "roleDefinitionId": f"{S}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            "principalId": principal,
            "principalType": "ServicePrincipal",
            **extra,
        }
    }


def custom_role_body(name: str = "PLS Approver", scopes: list[str] | None = None) -> dict[str, Any]:
    """What `az role definition create` sends."""
    return {
        "properties": {
            "roleName": name,
            "description": "Approves private endpoint connections.",
            "type": "CustomRole",
            "assignableScopes": scopes or [S],
            "permissions": [
                {
                    "actions": [
                        "Microsoft.Network/privateLinkServices/read",
                        "Microsoft.Network/privateLinkServices/privateEndpointConnectionsApproval/action",
                    ],
                    "notActions": [],
                    "dataActions": [],
                    "notDataActions": [],
                }
            ],
        }
    }


def error_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# --- role definitions ----------------------------------------------------------------------


def test_list_role_definitions_with_filters(client: TestClient) -> None:
    r = client.get(f"{S}/{RD}{PREVIEW}")
    assert r.status_code == 200
    items = r.json()["value"]
    assert len(items) == 7
    reader = next(d for d in items if d["name"] == READER)
    assert reader == {
        "properties": {
            "roleName": "Reader",
            "type": "BuiltInRole",
            "description": "View all resources, but does not allow you to make any changes.",
            "assignableScopes": ["/"],
            "permissions": [
                {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}
            ],
            "createdOn": None,
            "updatedOn": None,
            "createdBy": None,
            "updatedBy": None,
        },
        "id": f"{S}/{RD}/{READER}",
        "type": "Microsoft.Authorization/roleDefinitions",
        "name": READER,
    }
    # az resolves --role by name at the assignment's scope, in any casing.
    r = client.get(
        f"{PLS}/{RD}",
        params={"api-version": "2022-05-01-preview", "$filter": "roleName eq 'reader'"},
    )
    assert [d["id"] for d in r.json()["value"]] == [f"{S}/{RD}/{READER}"]
    r = client.get(
        f"{S}/{RD}", params={"api-version": "2022-04-01", "$filter": "type eq 'CustomRole'"}
    )
    assert r.json()["value"] == []
    assert error_of(
        client.get(f"{S}/{RD}", params={"api-version": "2022-04-01", "$filter": "x"})
    ) == (
        400,
        "InvalidFilterInQueryString",
    )
    root = client.get(f"/{RD}{V}").json()["value"]
    assert {d["id"] for d in root} >= {f"/{RD}/{READER}"}


def test_get_role_definition(client: TestClient) -> None:
    r = client.get(f"{RG}/{RD}/{CONTRIBUTOR.upper()}{V}")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == f"{S}/{RD}/{CONTRIBUTOR}"
    assert "Microsoft.Authorization/*/Write" in body["properties"]["permissions"][0]["notActions"]
    assert client.get(f"/{RD}/{CONTRIBUTOR}{V}").json()["id"] == f"/{RD}/{CONTRIBUTOR}"
    r = client.get(f"{S}/{RD}/{guid()}{V}")
    assert error_of(r) == (404, "RoleDefinitionDoesNotExist")
    assert error_of(client.get(f"{S}/{RD}/Reader{V}")) == (400, "InvalidRoleDefinitionId")


def test_custom_role_lifecycle(client: TestClient) -> None:
    role = guid()
    r = client.put(f"{S}/{RD}/{role}{PREVIEW}", json=custom_role_body())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == role and created["id"] == f"{S}/{RD}/{role}"
    props = created["properties"]
    assert props["type"] == "CustomRole" and props["assignableScopes"] == [S]
    assert props["createdBy"] == ME.object_id and props["createdOn"]
    listed = client.get(
        f"{S}/{RD}", params={"api-version": "2022-04-01", "$filter": "type eq 'CustomRole'"}
    ).json()
    assert [d["name"] for d in listed["value"]] == [role]
    # Update (az role definition update): same GUID, 201 again.
    body = custom_role_body(name="PLS Approver v2")
    r = client.put(f"{S}/{RD}/{role}{V}", json=body)
    assert r.status_code == 201 and r.json()["properties"]["roleName"] == "PLS Approver v2"
    assert r.json()["properties"]["createdOn"] == props["createdOn"]
    # Assigned: cannot be deleted.
    name = guid()
    assert client.put(f"{RG}/{RA}/{name}{V}", json=assignment_body(role)).status_code == 201
    assert error_of(client.delete(f"{S}/{RD}/{role}{V}")) == (400, "RoleDefinitionHasAssignments")
    assert client.delete(f"{RG}/{RA}/{name}{V}").status_code == 200
    r = client.delete(f"{S}/{RD}/{role}{V}")
    assert r.status_code == 200 and r.json()["properties"]["roleName"] == "PLS Approver v2"
    assert client.delete(f"{S}/{RD}/{role}{V}").status_code == 204
    assert error_of(client.get(f"{S}/{RD}/{role}{V}")) == (404, "RoleDefinitionDoesNotExist")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda b: b["properties"].update(assignableScopes=["/"]),
            "InvalidCreateRoleDefinitionRequest",
        ),
        (
            lambda b: b["properties"].update(
                assignableScopes=["/providers/Microsoft.Management/managementGroups/mg"]
            ),
            "InvalidCreateRoleDefinitionRequest",
        ),
        (
            lambda b: b["properties"].update(assignableScopes=[]),
            "InvalidCreateRoleDefinitionRequest",
        ),
        (
            lambda b: b["properties"].update(type="BuiltInRole"),
            "InvalidCreateRoleDefinitionRequest",
        ),
        (lambda b: b["properties"].update(roleName=""), "InvalidCreateRoleDefinitionRequest"),
        (lambda b: b["properties"].update(permissions=[]), "InvalidCreateRoleDefinitionRequest"),
        (
            lambda b: b["properties"]["permissions"][0].update(actions=["not an action"]),
            "InvalidActionOrNotAction",
        ),
        (
            lambda b: b["properties"]["permissions"][0].update(condition="@Resource[x] == 1"),
            "UnsupportedProperty",
        ),
        (lambda b: b["properties"].update(permissions="*"), "InvalidRequestContent"),
        (lambda b: b.pop("properties"), "InvalidRequestContent"),
    ],
)
def test_custom_role_refusals(client: TestClient, mutate: Any, expected: str) -> None:
    body = custom_role_body()
    mutate(body)
    r = client.put(f"{S}/{RD}/{guid()}{V}", json=body)
    assert error_of(r) == (400, expected)


def test_custom_role_conflicts(client: TestClient) -> None:
    assert client.put(f"{S}/{RD}/{guid()}{V}", json=custom_role_body()).status_code == 201
    r = client.put(f"{S}/{RD}/{guid()}{V}", json=custom_role_body(name="pls approver"))
    assert error_of(r) == (409, "RoleDefinitionWithSameNameExists")
    assert r.json()["error"]["message"] == (
        "A custom role with the same name already exists in this directory."
    )
    r = client.put(f"{S}/{RD}/{READER}{V}", json=custom_role_body(name="Mine"))
    assert error_of(r) == (400, "CannotModifyBuiltInRole")
    assert error_of(client.delete(f"{S}/{RD}/{READER}{V}")) == (400, "CannotModifyBuiltInRole")
    assert error_of(client.put(f"/{RD}/{guid()}{V}", json=custom_role_body())) == (
        400,
        "MissingSubscription",
    )
    r = client.put(f"{S}/{RD}/not-a-guid{V}", json=custom_role_body())
    assert error_of(r) == (400, "InvalidRoleDefinitionId")


# --- role assignments ----------------------------------------------------------------------


def test_assignment_create_get_list_delete(client: TestClient) -> None:
    name = guid()
    url = f"{RG}/{RA}/{name}{V}"
    r = client.put(url, json=assignment_body())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] == f"{RG}/{RA}/{name}"
    assert created["name"] == name and created["type"] == "Microsoft.Authorization/roleAssignments"
    props = created["properties"]
    assert props["roleDefinitionId"] == f"{S}/{RD}/{READER}"
    assert props["principalId"] == SP and props["principalType"] == "ServicePrincipal"
    assert props["scope"] == RG and props["createdBy"] == ME.object_id
    assert props["condition"] is None and props["description"] is None
    # GET by scope+name and by id (the same path), case-insensitive scope.
    assert client.get(url).json() == created
    assert client.get(f"{RG.lower()}/{RA}/{name.upper()}{V}").json() == created
    assert error_of(client.get(f"{S}/{RA}/{name}{V}")) == (404, "RoleAssignmentNotFound")
    assert error_of(client.get(f"{S}/{RA}/{guid()}{V}")) == (404, "RoleAssignmentNotFound")
    # PUT again: an update (200); only the description may change.
    r = client.put(url, json=assignment_body(description="provider team"))
    assert r.status_code == 200 and r.json()["properties"]["description"] == "provider team"
    r = client.put(url, json=assignment_body(role=CONTRIBUTOR))
    assert error_of(r) == (400, "RoleAssignmentUpdateNotPermitted")
    # The same role for the same principal at the same scope under another name: 409.
    r = client.put(f"{RG}/{RA}/{guid()}{V}", json=assignment_body())
    assert error_of(r) == (409, "RoleAssignmentExists")
    assert "role assignment already exists" in r.json()["error"]["message"]
    # DELETE: 200 with the body, then 204; at another scope: 204.
    assert client.delete(f"{S}/{RA}/{name}{V}").status_code == 204
    r = client.delete(url)
    assert r.status_code == 200 and r.json()["name"] == name
    assert client.delete(url).status_code == 204


def test_assignment_lists_follow_azure_filters(client: TestClient) -> None:
    other = "dddddddd-0000-4000-8000-000000000002"
    client.app.state.principal_exists = lambda tenant, oid: True  # type: ignore[attr-defined]
    at_sub, at_rg, at_pls, other_at_pls = guid(), guid(), guid(), guid()
    for name, scope, role, principal in (
        (at_sub, S, READER, SP),
        (at_rg, RG, NETWORK_CONTRIBUTOR, SP),
        (at_pls, PLS, CONTRIBUTOR, SP),
        (other_at_pls, PLS, READER, other),
    ):
        r = client.put(f"{scope}/{RA}/{name}{V}", json=assignment_body(role, principal))
        assert r.status_code == 201, r.text

    def names(path: str, query: str | None = None) -> set[str]:
        params = {"api-version": "2022-04-01"}
        if query is not None:
            params["$filter"] = query
        r = client.get(f"{path}/{RA}", params=params)
        assert r.status_code == 200, r.text
        return {a["name"] for a in r.json()["value"]}

    everything = {at_sub, at_rg, at_pls, other_at_pls}
    assert names(S) == everything  # ListForSubscription: at, above and below
    assert names(S, "atScope()") == {at_sub}
    assert names(RG, "atScope()") == {at_sub, at_rg}
    assert names(RG) == everything
    assert names(PLS, "atScope()") == everything
    assert names(S, f"principalId eq '{other}'") == {other_at_pls}
    assert names(RG, f"assignedTo('{SP}')") == {at_sub, at_rg, at_pls}
    assert names(RG, f"atScope() and assignedTo('{SP}')") == {at_sub, at_rg}
    assert names(f"{RG}/providers/Microsoft.Network/privateLinkServices/other") == {at_sub, at_rg}
    assert names("") == everything  # the tenant root
    r = client.get(
        f"{S}/{RA}", params={"api-version": "2022-04-01", "$filter": "principalId eq 'x'"}
    )
    assert error_of(r) == (400, "InvalidFilterInQueryString")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (f"{RG}/{RA}/not-a-guid", assignment_body(), (400, "InvalidRoleAssignmentId")),
        (f"{RG}/{RA}/{guid()}", assignment_body(role=guid()), (400, "RoleDefinitionDoesNotExist")),
        (
            f"{RG}/{RA}/{guid()}",
            {"properties": {"roleDefinitionId": "Reader", "principalId": SP}},
            (400, "InvalidRoleDefinitionId"),
        ),
        (
            f"{RG}/{RA}/{guid()}",
            {"properties": {"roleDefinitionId": READER}},
            (400, "InvalidPrincipalId"),
        ),
        (f"{RG}/{RA}/{guid()}", assignment_body(principal=GHOST), (400, "PrincipalNotFound")),
        (
            f"{RG}/{RA}/{guid()}",
            assignment_body(principalType="Robot"),
            (400, "InvalidPrincipalType"),
        ),
        (
            f"{RG}/{RA}/{guid()}",
            assignment_body(condition="@Resource[x] StringEquals 'y'", conditionVersion="2.0"),
            (400, "UnsupportedProperty"),
        ),
        (f"{RG}/{RA}/{guid()}", {"properties": None}, (400, "InvalidRequestContent")),
        (f"{RG}/{RA}/{guid()}", [], (400, "InvalidRequestContent")),
        (
            f"{RG}/{RA}/{guid()}",
            {"properties": {"principalId": SP}},
            (400, "InvalidRequestContent"),
        ),
        (f"/{RA}/{guid()}", assignment_body(), (400, "MissingSubscription")),
        (f"/subscriptions/x/{RA}/{guid()}", assignment_body(), (400, "InvalidScope")),
        (
            f"/providers/Microsoft.Management/managementGroups/mg/{RA}/{guid()}",
            assignment_body(),
            (400, "InvalidScope"),
        ),
        (
            f"{PLS}/{RA}/{guid()}/{RA}/{guid()}",
            assignment_body(),
            (400, "InvalidScope"),
        ),
    ],
)
def test_assignment_refusals(
    client: TestClient, path: str, body: Any, expected: tuple[int, str]
) -> None:
    assert error_of(client.put(path + V, json=body)) == expected


def test_principal_not_found_message(client: TestClient) -> None:
    r = client.put(f"{RG}/{RA}/{guid()}{V}", json=assignment_body(principal=GHOST))
    assert r.json()["error"]["message"].startswith(
        f"Principal {GHOST.replace('-', '')} does not exist in the directory {TENANT}."
    )


def test_a_role_assigned_at_a_resource(client: TestClient) -> None:
    name = guid()
    r = client.put(f"{PLS}/{RA}/{name}{V}", json=assignment_body(NETWORK_CONTRIBUTOR))
    assert r.status_code == 201
    assert r.json()["id"] == f"{PLS}/{RA}/{name}"
    r = client.get(f"{PLS}/{RA}", params={"api-version": "2022-04-01", "$filter": "atScope()"})
    assert [a["name"] for a in r.json()["value"]] == [name]


def test_malformed_requests_are_400s(client: TestClient) -> None:
    url = f"{RG}/{RA}/{guid()}{V}"
    r = client.put(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert error_of(client.put(url)) == (400, "InvalidRequestContent")
    assert error_of(client.get(f"{S}/{RA}")) == (400, "MissingApiVersionParameter")
    r = client.put(
        f"{S}/{RD}/{guid()}{V}", json=custom_role_body(name="a\u0000b")
    )  # NUL never reaches the database
    assert error_of(r) == (400, "InvalidCreateRoleDefinitionRequest")
    r = client.put(url, json=assignment_body(description="x" * 5000))
    assert error_of(r) == (400, "InvalidRequestContent")


def test_anonymous_callers_are_refused(client: TestClient) -> None:
    r = client.get(f"/{RA}{V}", headers={"x-anonymous": "1"})
    assert error_of(r) == (401, "AuthenticationFailed")
    r = client.delete(f"/{RA}/{guid()}{V}", headers={"x-anonymous": "1"})
    assert r.status_code == 401


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    segments=st.lists(_TEXT.filter(bool), max_size=6),
    name=_TEXT,
    body=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["properties", "x"]),
            st.recursive(
                st.one_of(st.none(), st.booleans(), st.integers(), _TEXT),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(
                        st.sampled_from(
                            [
                                "roleDefinitionId",
                                "principalId",
                                "principalType",
                                "roleName",
                                "assignableScopes",
                                "permissions",
                                "actions",
                                "description",
                            ]
                        ),
                        inner,
                        max_size=4,
                    )
                ),
                max_leaves=8,
            ),
            max_size=2,
        ),
    ),
    kind=st.sampled_from([RA, RD]),
    method=st.sampled_from(["GET", "PUT", "DELETE"]),
)
def test_no_input_gives_a_500(
    client: TestClient,
    segments: list[str],
    name: str,
    body: Any,
    kind: str,
    method: str,
) -> None:
    parts = ["subscriptions", SUB, *segments, *kind.split("/"), *([name] if name else [])]
    path = "/" + "/".join(quote(p, safe="") for p in parts)
    r = client.request(method, path + V, json=body)
    assert r.status_code < 500, (path, body, r.text)


# --- routing -----------------------------------------------------------------------------


class _RecordEndpoint:
    """ASGI middleware noting which endpoint the router picked for each request."""

    def __init__(self, app: Any, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            self.seen.append(getattr(scope.get("endpoint"), "__module__", ""))


def test_routes_do_not_shadow_the_network_routes() -> None:
    """With every router of the server, each path reaches the route it is meant for."""
    from privatelink.api import (
        deployment,
        load_balancer,
        network_interface,
        operations,
        private_dns,
        private_dns_zone_group,
        private_endpoint,
        private_link_service,
        resource_manager,
        virtual_network,
    )

    for first_mine in (True, False):
        app = FastAPI()
        modules = [
            virtual_network,
            load_balancer,
            network_interface,
            private_link_service,
            private_endpoint,
            private_dns_zone_group,
            private_dns,
            operations,
            resource_manager,
            deployment,
        ]
        routers = [m.router for m in modules]
        for r in (
            [authorization.router, *routers] if first_mine else [*routers, authorization.router]
        ):
            app.include_router(r)

        seen: list[str] = []
        app.add_middleware(_RecordEndpoint, seen=seen)
        probe = TestClient(app, raise_server_exceptions=False)

        def endpoint(
            method: str, path: str, probe: TestClient = probe, seen: list[str] = seen
        ) -> str:
            seen.clear()
            probe.request(method, path + V)  # the routes fail without state; routing is all
            return seen[0]

        mine = "privatelink.api.authorization"
        network = [
            ("GET", PLS),
            ("PUT", PLS),
            ("DELETE", PLS),
            ("GET", f"{RG}/providers/Microsoft.Network/privateLinkServices"),
            ("GET", f"{PLS}/privateEndpointConnections/c1"),
            ("GET", f"{RG}/providers/Microsoft.Network/privateDnsZones/z.example/A/www"),
            ("PUT", f"{RG}/providers/Microsoft.Network/virtualNetworks/v/subnets/s"),
            ("GET", f"{S}/providers/Microsoft.Network/privateLinkServices"),
            ("PUT", RG),
            ("GET", S),
        ]
        for method, path in network:
            assert endpoint(method, path) not in ("", mine), (method, path)
        ours = [
            ("GET", f"{PLS}/{RA}"),
            ("PUT", f"{PLS}/{RA}/{guid()}"),
            ("GET", f"{S}/{RA}"),
            ("GET", f"{RG}/{RA}"),
            ("GET", f"{RG}/{RD}/{READER}"),
            ("PUT", f"{S}/{RD}/{READER}"),
            ("DELETE", f"/{RA}/{guid()}"),
            ("GET", f"/{RD}"),
            ("GET", f"/{RD}/{READER}"),
        ]
        for method, path in ours:
            assert endpoint(method, path) == mine, (method, path)


# --- azure-mgmt-authorization --------------------------------------------------------------


class _ToTestClient(requests.adapters.BaseAdapter):
    """A requests adapter that sends each request to a Starlette TestClient."""

    def __init__(self, client: TestClient) -> None:
        super().__init__()
        self.client = client

    def send(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        target = url.path + (f"?{url.query}" if url.query else "")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        got = self.client.request(request.method or "GET", target, content=body, headers=headers)
        response = requests.Response()
        response.status_code = got.status_code
        response.headers = CaseInsensitiveDict(got.headers)
        response._content = got.content
        response.raw = _Raw()
        response.reason = got.reason_phrase
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


class _Raw:
    enforce_content_length = False


class _Credential:
    def get_token(self, *_scopes: str, **_kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)


def sdk(client: TestClient, api_version: str | None = None) -> AuthorizationManagementClient:
    session = requests.Session()
    session.mount("https://", _ToTestClient(client))
    kwargs: dict[str, Any] = {"api_version": api_version} if api_version else {}
    return AuthorizationManagementClient(
        _Credential(),  # type: ignore[arg-type]
        SUB,
        base_url="https://management.privatelink.test",
        transport=RequestsTransport(session=session, session_owner=False),
        **kwargs,
    )


def test_sdk_role_definitions(client: TestClient) -> None:
    preview = sdk(client, "2022-05-01-preview")  # what az 2.91 sends for roleDefinitions
    found = list(preview.role_definitions.list(RG, filter="roleName eq 'Network Contributor'"))
    assert [(d.name, d.role_name, d.role_type) for d in found] == [
        (NETWORK_CONTRIBUTOR, "Network Contributor", "BuiltInRole")
    ]
    assert found[0].id == f"{S}/{RD}/{NETWORK_CONTRIBUTOR}"
    assert found[0].permissions[0].actions[2] == "Microsoft.Network/*"
    by_id = preview.role_definitions.get_by_id(f"/{RD}/{READER}")
    assert by_id.role_name == "Reader" and by_id.id == f"/{RD}/{READER}"
    role = guid()
    Models = preview.models(api_version="2022-05-01-preview")
    created = preview.role_definitions.create_or_update(
        scope=S,
        role_definition_id=role,
        role_definition=Models.RoleDefinition(
            role_name="PLS Approver",
            description="Approves connections",
            role_type="CustomRole",
            assignable_scopes=[S],
            permissions=[
                Models.Permission(
                    actions=["Microsoft.Network/privateLinkServices/*/action"],
                    not_actions=[],
                    data_actions=[],
                    not_data_actions=[],
                )
            ],
        ),
    )
    assert created.name == role and created.role_type == "CustomRole"
    assert preview.role_definitions.get(S, role).role_name == "PLS Approver"
    stable = sdk(client)
    customs = list(stable.role_definitions.list(S, filter="type eq 'CustomRole'"))
    assert [d.name for d in customs] == [role]
    deleted = stable.role_definitions.delete(S, role)
    assert deleted is not None and deleted.name == role
    assert stable.role_definitions.delete(S, role) is None  # 204
    with pytest.raises(HttpResponseError) as info:
        stable.role_definitions.get(S, role)
    assert info.value.status_code == 404 and info.value.error.code == "RoleDefinitionDoesNotExist"


def test_sdk_role_assignments(client: TestClient) -> None:
    api = sdk(client)
    Models = api.models(api_version="2022-04-01")
    reader_id = f"{S}/{RD}/{READER}"
    name = guid()
    made = api.role_assignments.create(
        RG,
        name,
        Models.RoleAssignmentCreateParameters(
            role_definition_id=reader_id, principal_id=SP, principal_type="ServicePrincipal"
        ),
    )
    assert (made.name, made.scope, made.role_definition_id) == (name, RG, reader_id)
    assert made.created_on is not None and made.principal_type == "ServicePrincipal"
    assert api.role_assignments.get(RG, name).id == made.id
    assert api.role_assignments.get_by_id(made.id).name == name
    with pytest.raises(HttpResponseError) as info:  # what az's idempotency check reads
        api.role_assignments.create(
            RG,
            guid(),
            Models.RoleAssignmentCreateParameters(role_definition_id=reader_id, principal_id=SP),
        )
    assert info.value.status_code == 409
    assert "role assignment already exists" in info.value.message
    second = api.role_assignments.create_by_id(
        f"{PLS}/{RA}/{guid()}",
        Models.RoleAssignmentCreateParameters(
            role_definition_id=f"{S}/{RD}/{CONTRIBUTOR}", principal_id=SP
        ),
    )
    at_scope = list(api.role_assignments.list_for_scope(RG, filter="atScope()"))
    assert [a.name for a in at_scope] == [name]
    everything = {a.name for a in api.role_assignments.list_for_subscription()}
    assert everything == {name, second.name}
    mine = api.role_assignments.list_for_subscription(filter=f"principalId eq '{SP}'")
    assert {a.name for a in mine} == {name, second.name}
    in_group = api.role_assignments.list_for_resource_group("rg-prov")
    assert {a.name for a in in_group} == {name, second.name}
    on_pls = api.role_assignments.list_for_resource(
        "rg-prov", "Microsoft.Network", "privateLinkServices", "pls-web"
    )
    assert {a.name for a in on_pls} == {name, second.name}
    # az fills roleDefinitionName by matching the assignment's roleDefinitionId to the ids
    # of the definitions listed at the same scope: they must be the same strings.
    definitions = {d.id: d.role_name for d in api.role_definitions.list(RG)}
    assert definitions[made.role_definition_id] == "Reader"
    assert definitions[second.role_definition_id] == "Contributor"
    gone = api.role_assignments.delete_by_id(second.id)
    assert gone is not None and gone.name == second.name
    assert api.role_assignments.delete(RG, name).name == name
    assert api.role_assignments.delete(RG, name) is None
    assert list(api.role_assignments.list_for_subscription()) == []
