"""The Microsoft Graph subset (identity/graph.py), driven the way azure-cli 2.91 drives it.

`AzGraph` below reproduces azure-cli's `GraphClient` (role/_msgrpah/_graph_client.py):
the URL it builds (`{endpoint}/v1.0{url}`, `$filter` percent-encoded with
`quote(filter, safe='')`), the body it sends (`json.dumps`, dropped when falsy), its
`@odata.nextLink` loop and its error handling (`response.json()['error']['message']`).
The `az_*` helpers repeat the sequence of calls of the commands in role/custom.py, so a
test's request log is the exact list of Graph requests the real az sends.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from privatelink.core.principal import Principal
from privatelink.identity.graph import (
    Clause,
    GraphError,
    build_graph_router,
    parse_filter,
)
from privatelink.identity.tokens import AZURE_CLI_CLIENT_ID, InvalidToken
from privatelink.store.directory import ServicePrincipal, SqlDirectory, User

with warnings.catch_warnings():
    # Starlette warns at import that it prefers httpx2 over httpx (see test_identity.py).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TENANT_A = "aaaaaaaa-0000-4000-8000-00000000000a"
TENANT_B = "bbbbbbbb-0000-4000-8000-00000000000b"
SERVER = "https://testserver"
ENDPOINT = f"{SERVER}/graph"  # microsoftGraphResourceId.rstrip('/')
GRAPH_ERROR_KEYS = {"code", "message", "innerError"}


@dataclass
class Env:
    """A Graph server on a fresh directory with two tenants and three callers."""

    client: TestClient
    directory: SqlDirectory
    admin_a: ServicePrincipal
    other_a: ServicePrincipal
    admin_b: ServicePrincipal
    tokens: dict[str, Principal] = field(default_factory=dict)

    def az(self, token: str = "token-admin") -> AzGraph:
        return AzGraph(self.client, token)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "token-admin",
        body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            content = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        return self.client.request(method, f"/graph/v1.0{path}", content=content, headers=sent)


def make_env(db: Path) -> tuple[Env, Any]:
    engine = create_engine(f"sqlite:///{db}")
    directory = SqlDirectory(engine)
    _, admin_a, _ = directory.create_tenant("contoso", tenant_id=TENANT_A)
    _, admin_b, _ = directory.create_tenant("fabrikam", tenant_id=TENANT_B)
    reader = directory.create_application(TENANT_A, "reader")
    other_a = directory.create_service_principal(TENANT_A, reader.app_id)
    tokens = {
        "token-admin": Principal(TENANT_A, admin_a.object_id, admin_a.app_id),
        "token-other": Principal(TENANT_A, other_a.object_id, other_a.app_id),
        "token-tenant-b": Principal(TENANT_B, admin_b.object_id, admin_b.app_id),
    }

    def verify(token: str) -> Principal:
        try:
            return tokens[token]
        except KeyError:
            raise InvalidToken(
                "Access token validation failure. Invalid audience.", "wrong_audience"
            ) from None

    app = FastAPI()
    app.include_router(build_graph_router(directory, verify))
    client = TestClient(app, base_url=SERVER, raise_server_exceptions=False)
    return Env(client, directory, admin_a, other_a, admin_b, tokens), engine


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    made, engine = make_env(tmp_path / "directory.db")
    with made.client:
        yield made
    engine.dispose()


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    made, engine = make_env(tmp_path_factory.mktemp("graph") / "directory.db")
    with made.client:
        yield made
    engine.dispose()


# --- azure-cli's GraphClient, as a test double -----------------------------------------


class AzGraphError(Exception):
    def __init__(self, message: str, response: Any) -> None:
        super().__init__(message)
        self.response = response


@dataclass
class Sent:
    method: str
    path: str  # path and decoded query, relative to the Graph endpoint
    body: Any


class AzGraph:
    """azure-cli's GraphClient over a TestClient; `log` records every request sent."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.token = token
        self.log: list[Sent] = []

    def _send(self, method: str, url: str, body: Any = None) -> Any:
        url = f"{ENDPOINT}/v1.0{url}"
        data = json.dumps(body) if body else None
        list_result: list[Any] = []
        is_list_result = False
        while True:
            headers = {
                "Authorization": f"Bearer {self.token}",
                "x-ms-client-request-id": str(uuid.uuid4()),
                "CommandName": "ad sp create-for-rbac",
            }
            if data:
                headers["Content-Type"] = "application/json"
            parts = urlsplit(url)
            path = parts.path[len("/graph") :] + (f"?{unquote(parts.query)}" if parts.query else "")
            self.log.append(Sent(method, path, json.loads(data) if data else None))
            r = self.client.request(method, url, content=data, headers=headers)
            if not r.is_success:
                raise AzGraphError(r.json()["error"]["message"], r)
            if r.text:
                dic = r.json()
                if "value" in dic:
                    is_list_result = True
                    list_result.extend(dic["value"])
                if "@odata.nextLink" in dic:
                    url = dic["@odata.nextLink"]
                    continue
                if is_list_result:
                    return list_result
                return r.json()
            return None

    @staticmethod
    def _q(filter: str | None) -> str:
        return "" if filter is None else "?$filter={}".format(quote(filter, safe=""))

    def application_list(self, filter: str | None = None) -> Any:
        return self._send("GET", "/applications" + self._q(filter))

    def application_create(self, body: Any) -> Any:
        return self._send("POST", "/applications", body=body)

    def application_get(self, id: str) -> Any:
        return self._send("GET", f"/applications/{id}")

    def application_update(self, id: str, body: Any) -> Any:
        return self._send("PATCH", f"/applications/{id}", body=body)

    def application_delete(self, id: str) -> Any:
        return self._send("DELETE", f"/applications/{id}")

    def application_add_password(self, id: str, body: Any) -> Any:
        return self._send("POST", f"/applications/{id}/addPassword", body=body)

    def application_remove_password(self, id: str, body: Any) -> Any:
        return self._send("POST", f"/applications/{id}/removePassword", body=body)

    def service_principal_list(self, filter: str | None = None) -> Any:
        return self._send("GET", "/servicePrincipals" + self._q(filter))

    def service_principal_create(self, body: Any) -> Any:
        return self._send("POST", "/servicePrincipals", body=body)

    def service_principal_get(self, id: str) -> Any:
        return self._send("GET", f"/servicePrincipals/{id}")

    def service_principal_update(self, id: str, body: Any) -> Any:
        return self._send("PATCH", f"/servicePrincipals/{id}", body=body)

    def service_principal_delete(self, id: str) -> Any:
        return self._send("DELETE", f"/servicePrincipals/{id}")

    def service_principal_add_password(self, id: str, body: Any) -> Any:
        return self._send("POST", f"/servicePrincipals/{id}/addPassword", body=body)

    def service_principal_remove_password(self, id: str, body: Any) -> Any:
        return self._send("POST", f"/servicePrincipals/{id}/removePassword", body=body)

    def directory_object_get_by_ids(self, body: Any) -> Any:
        return self._send("POST", "/directoryObjects/getByIds", body=body)

    def user_list(self, filter: str | None) -> Any:
        return self._send("GET", "/users" + self._q(filter))

    def signed_in_user_get(self) -> Any:
        return self._send("GET", "/me")


def _utc(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# The command flows of role/custom.py, call for call.


def az_create_for_rbac(graph: AzGraph, display_name: str) -> dict[str, Any]:
    """`az ad sp create-for-rbac -n NAME` (role assignments go to ARM, not Graph)."""
    existing_sps = list(graph.service_principal_list(filter=f"displayName eq '{display_name}'"))
    start = datetime.now(UTC)
    end = start + timedelta(days=365)
    # create_application -> list_applications(display_name=...)
    existing_apps = graph.application_list(filter=f"startswith(displayName,'{display_name}')")
    existing_apps = [x for x in existing_apps if x["displayName"] == display_name]
    if len(existing_apps) == 1:
        graph.application_update(existing_apps[0]["id"], {"displayName": display_name})
        app = graph.application_get(existing_apps[0]["id"])
    else:
        app = graph.application_create({"displayName": display_name, "keyCredentials": []})
    for cred in app["passwordCredentials"]:
        graph.application_remove_password(app["id"], {"keyId": cred["keyId"]})
    body = {
        "passwordCredential": {
            "displayName": "rbac",
            "endDateTime": _utc(end),
            "startDateTime": _utc(start),
        }
    }
    password = graph.application_add_password(app["id"], body)["secretText"]
    sp = existing_sps[0] if existing_sps else None
    if sp is None:
        sp = graph.service_principal_create({"appId": app["appId"], "accountEnabled": True})
    return {"appId": app["appId"], "password": password, "displayName": display_name, "sp": sp}


def az_resolve_sp(graph: AzGraph, identifier: str) -> str:
    """`_resolve_service_principal` (show, delete, credential reset)."""
    result = graph.service_principal_list(
        filter=f"servicePrincipalNames/any(c:c eq '{identifier}')"
    )
    if result:
        return str(result[0]["id"])
    if _is_guid(identifier):
        return identifier
    raise LookupError(identifier)


def az_sp_show(graph: AzGraph, identifier: str) -> Any:
    return graph.service_principal_get(az_resolve_sp(graph, identifier))


def az_sp_credential_reset(graph: AzGraph, identifier: str, append: bool = False) -> Any:
    sp = az_sp_show(graph, identifier)
    start = datetime.now(UTC)
    if not append:
        for cred in sp["passwordCredentials"]:
            graph.service_principal_remove_password(sp["id"], {"keyId": cred["keyId"]})
    body = {
        "passwordCredential": {
            "displayName": None,
            "endDateTime": _utc(start + timedelta(days=365)),
            "startDateTime": _utc(start),
        }
    }
    added = graph.service_principal_add_password(sp["id"], body)
    return {"appId": sp["appId"], "password": added["secretText"]}


def az_resolve_application(graph: AzGraph, identifier: str) -> str:
    result = graph.application_list(filter=f"appId eq '{identifier}'")
    return str(result[0]["id"]) if result else identifier


def az_resolve_assignee(graph: AzGraph, assignee: str) -> tuple[str, str]:
    """`_resolve_object_id_and_type` (`az role assignment create --assignee X`)."""
    if "@" in assignee:
        result = graph.user_list(filter=f"userPrincipalName eq '{assignee}'")
        if result:
            return result[0]["id"], "User"
    result = graph.service_principal_list(filter=f"servicePrincipalNames/any(c:c eq '{assignee}')")
    if result:
        return result[0]["id"], "ServicePrincipal"
    if _is_guid(assignee):
        body = {
            "ids": [assignee],
            "types": ["user", "group", "servicePrincipal", "directoryObjectPartnerReference"],
        }
        result = graph.directory_object_get_by_ids(body)
        if result:
            kind = {
                "#microsoft.graph.servicePrincipal": "ServicePrincipal",
                "#microsoft.graph.user": "User",
            }
            return result[0]["id"], kind[result[0]["@odata.type"]]
    raise LookupError(assignee)


def az_object_stubs(graph: AzGraph, ids: list[str]) -> list[dict[str, Any]]:
    """`_get_object_stubs` (`az role assignment list` filling in `principalName`)."""
    body = {
        "ids": ids,
        "types": ["user", "group", "servicePrincipal", "directoryObjectPartnerReference"],
    }
    return list(graph.directory_object_get_by_ids(body))


def az_displayable_name(obj: dict[str, Any]) -> str:
    """`_get_displayable_name`: a user's UPN, a service principal's first SPN."""
    if "userPrincipalName" in obj:
        return str(obj["userPrincipalName"])
    if "servicePrincipalNames" in obj:
        return str(obj["servicePrincipalNames"][0])
    return str(obj["displayName"] or "")


def assert_graph_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == GRAPH_ERROR_KEYS
    assert error["code"] == code
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert response.headers["request-id"] == error["innerError"]["request-id"]
    return dict(error)


# --- create-for-rbac, exactly as az sends it ---------------------------------------------


def test_create_for_rbac_sends_what_az_sends_and_the_secret_signs_in(env: Env) -> None:
    graph = env.az()
    result = az_create_for_rbac(graph, "my-app")

    app_id, sp = result["appId"], result["sp"]
    app_object_id = graph.log[3].path.split("/")[3]
    assert [(s.method, s.path) for s in graph.log] == [
        ("GET", "/v1.0/servicePrincipals?$filter=displayName eq 'my-app'"),
        ("GET", "/v1.0/applications?$filter=startswith(displayName,'my-app')"),
        ("POST", "/v1.0/applications"),
        ("POST", f"/v1.0/applications/{app_object_id}/addPassword"),
        ("POST", "/v1.0/servicePrincipals"),
    ]
    assert graph.log[2].body == {"displayName": "my-app", "keyCredentials": []}
    assert graph.log[4].body == {"appId": app_id, "accountEnabled": True}
    assert sp["appId"] == app_id
    assert sp["servicePrincipalNames"] == [app_id]
    assert sp["servicePrincipalType"] == "Application"
    assert sp["appOwnerOrganizationId"] == TENANT_A
    assert sp["accountEnabled"] is True
    assert sp["appDisplayName"] == "my-app"
    assert sp["passwordCredentials"][0]["displayName"] == "rbac"
    assert sp["passwordCredentials"][0]["secretText"] is None
    outcome, signed_in = env.directory.check_client(TENANT_A, app_id, result["password"])
    assert outcome == "ok" and signed_in is not None and signed_in.object_id == sp["id"]


def test_create_for_rbac_again_patches_and_replaces_the_secret(env: Env) -> None:
    first = az_create_for_rbac(env.az(), "my-app")
    graph = env.az()
    second = az_create_for_rbac(graph, "my-app")

    assert second["appId"] == first["appId"]
    assert second["sp"]["id"] == first["sp"]["id"]
    app_object_id = graph.log[2].path.split("/")[3]
    assert [(s.method, s.path) for s in graph.log] == [
        ("GET", "/v1.0/servicePrincipals?$filter=displayName eq 'my-app'"),
        ("GET", "/v1.0/applications?$filter=startswith(displayName,'my-app')"),
        ("PATCH", f"/v1.0/applications/{app_object_id}"),
        ("GET", f"/v1.0/applications/{app_object_id}"),
        ("POST", f"/v1.0/applications/{app_object_id}/removePassword"),
        ("POST", f"/v1.0/applications/{app_object_id}/addPassword"),
    ]
    assert env.directory.check_client(TENANT_A, first["appId"], first["password"])[0] == (
        "bad_secret"
    )
    assert env.directory.check_client(TENANT_A, second["appId"], second["password"])[0] == "ok"


def test_application_and_password_shapes(env: Env) -> None:
    created = env.call("POST", "/applications", body={"displayName": "shape"})
    assert created.status_code == 201
    app = created.json()
    assert created.headers["location"].endswith(f"/graph/v1.0/applications/{app['id']}")
    assert app["@odata.context"] == f"{SERVER}/graph/v1.0/$metadata#applications/$entity"
    assert app["signInAudience"] == "AzureADMyOrg"
    assert app["identifierUris"] == [] and app["keyCredentials"] == []
    assert app["passwordCredentials"] == []
    assert app["publisherDomain"] == "contoso.privatelink.local"
    assert _is_guid(app["id"]) and _is_guid(app["appId"])
    assert app["createdDateTime"].endswith("Z")

    end = _utc(datetime.now(UTC) + timedelta(days=30))
    added = env.call(
        "POST",
        f"/applications/{app['id']}/addPassword",
        body={"passwordCredential": {"displayName": "ci", "endDateTime": end}},
    )
    assert added.status_code == 200
    cred = added.json()
    assert set(cred) == {
        "@odata.context",
        "customKeyIdentifier",
        "displayName",
        "endDateTime",
        "hint",
        "keyId",
        "secretText",
        "startDateTime",
    }
    assert cred["customKeyIdentifier"] is None
    assert cred["displayName"] == "ci" and cred["endDateTime"] == end
    assert cred["hint"] == cred["secretText"][:3] and len(cred["secretText"]) >= 16

    shown = env.call("GET", f"/applications/{app['id']}").json()
    listed = shown["passwordCredentials"]
    assert listed == [
        {**{k: v for k, v in cred.items() if k != "@odata.context"}, "secretText": None}
    ]


# --- the other az commands ------------------------------------------------------------


def test_sp_list_show_by_app_id_and_object_id(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "web-frontend")
    az_create_for_rbac(env.az(), "web-backend")
    az_create_for_rbac(env.az(), "db")
    graph = env.az()

    # az ad sp list --display-name web
    listed = graph.service_principal_list(filter="startswith(displayName,'web')")
    assert sorted(s["displayName"] for s in listed) == ["web-backend", "web-frontend"]
    # az ad sp list --spn <appId>
    by_spn = graph.service_principal_list(
        filter=f"servicePrincipalNames/any(c:c eq '{made['appId']}')"
    )
    assert [s["id"] for s in by_spn] == [made["sp"]["id"]]
    # az ad sp show --id <appId> / --id <objectId>
    graph.log.clear()
    assert az_sp_show(graph, made["appId"])["id"] == made["sp"]["id"]
    assert [(s.method, s.path) for s in graph.log] == [
        (
            "GET",
            f"/v1.0/servicePrincipals?$filter=servicePrincipalNames/any(c:c eq '{made['appId']}')",
        ),
        ("GET", f"/v1.0/servicePrincipals/{made['sp']['id']}"),
    ]
    shown = az_sp_show(graph, made["sp"]["id"])
    assert shown["appId"] == made["appId"]
    assert shown["@odata.context"].endswith("/$metadata#servicePrincipals/$entity")
    # the case of a GUID does not matter
    assert az_sp_show(graph, made["appId"].upper())["id"] == made["sp"]["id"]
    # az ad sp list --all
    everyone = graph.service_principal_list()
    assert {s["displayName"] for s in everyone} >= {"web-frontend", "web-backend", "db", "reader"}


def test_sp_list_by_display_name_eq_is_exact_and_case_insensitive(env: Env) -> None:
    az_create_for_rbac(env.az(), "Web")
    az_create_for_rbac(env.az(), "web-2")
    graph = env.az()
    assert [s["displayName"] for s in graph.service_principal_list("displayName eq 'WEB'")] == [
        "Web"
    ]
    # LIKE wildcards in a prefix are plain characters
    assert graph.service_principal_list("startswith(displayName,'w_b')") == []
    assert graph.service_principal_list("startswith(displayName,'%')") == []


def test_sp_delete_keeps_the_application(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "gone")
    graph = env.az()
    graph.service_principal_delete(az_resolve_sp(graph, made["appId"]))
    assert graph.service_principal_list(f"appId eq '{made['appId']}'") == []
    assert len(graph.application_list(f"appId eq '{made['appId']}'")) == 1
    missing = env.call("GET", f"/servicePrincipals/{made['sp']['id']}")
    error = assert_graph_error(missing, 404, "Request_ResourceNotFound")
    assert made["sp"]["id"] in error["message"]
    assert_graph_error(
        env.call("DELETE", f"/servicePrincipals/{made['sp']['id']}"),
        404,
        "Request_ResourceNotFound",
    )


def test_sp_credential_reset_replaces_and_append_keeps(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "rotating")
    graph = env.az()
    reset = az_sp_credential_reset(graph, made["appId"])
    sp_id = made["sp"]["id"]
    assert [(s.method, s.path) for s in graph.log][2:] == [
        ("POST", f"/v1.0/servicePrincipals/{sp_id}/removePassword"),
        ("POST", f"/v1.0/servicePrincipals/{sp_id}/addPassword"),
    ]
    assert graph.log[3].body["passwordCredential"]["displayName"] is None
    assert env.directory.check_client(TENANT_A, made["appId"], made["password"])[0] == "bad_secret"
    assert env.directory.check_client(TENANT_A, made["appId"], reset["password"])[0] == "ok"
    shown = az_sp_show(graph, made["appId"])
    assert len(shown["passwordCredentials"]) == 1
    assert shown["passwordCredentials"][0]["displayName"] is None

    appended = az_sp_credential_reset(env.az(), made["appId"], append=True)
    assert env.directory.check_client(TENANT_A, made["appId"], reset["password"])[0] == "ok"
    assert env.directory.check_client(TENANT_A, made["appId"], appended["password"])[0] == "ok"
    assert len(az_sp_show(graph, made["appId"])["passwordCredentials"]) == 2


def test_app_list_and_show(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "catalog")
    az_create_for_rbac(env.az(), "catalog-admin")
    graph = env.az()
    # az ad app list --display-name catalog / --app-id X / both (joined with ' and ')
    names = [a["displayName"] for a in graph.application_list("startswith(displayName,'catalog')")]
    assert sorted(names) == ["catalog", "catalog-admin"]
    by_app_id = graph.application_list(f"appId eq '{made['appId']}'")
    assert [a["displayName"] for a in by_app_id] == ["catalog"]
    both = graph.application_list(
        f"appId eq '{made['appId']}' and startswith(displayName,'catalog-')"
    )
    assert both == []
    # az ad app list (no filter) follows paging
    assert len(graph.application_list()) >= 4  # two admins' tenant A app, reader, the two
    # az ad app show --id <appId> / --id <objectId>
    object_id = az_resolve_application(graph, made["appId"])
    app = graph.application_get(object_id)
    assert app["appId"] == made["appId"]
    assert graph.application_get(az_resolve_application(graph, object_id))["id"] == object_id
    # az ad app show --id <identifierUri>: nothing has identifier URIs here
    assert graph.application_list("identifierUris/any(s:s eq 'api://catalog')") == []


def test_app_delete_deletes_its_service_principal(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "temporary")
    graph = env.az()
    graph.application_delete(az_resolve_application(graph, made["appId"]))
    assert graph.service_principal_list(f"appId eq '{made['appId']}'") == []
    assert env.directory.check_client(TENANT_A, made["appId"], made["password"])[0] == "no_client"


def test_app_update_renames_and_empty_patch_is_a_no_op(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "old-name")
    graph = env.az()
    object_id = az_resolve_application(graph, made["appId"])
    graph.application_update(object_id, {"displayName": "new-name"})
    assert graph.application_get(object_id)["displayName"] == "new-name"
    graph.application_update(object_id, {})  # az sends no body for {}
    graph.service_principal_update(made["sp"]["id"], {})  # az ad sp update
    assert graph.log[-1].body is None
    assert graph.application_get(object_id)["displayName"] == "new-name"


def test_role_assignment_assignee_resolution(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "deployer")
    graph = env.az()
    # --assignee <appId>: one servicePrincipalNames query
    assert az_resolve_assignee(graph, made["appId"]) == (made["sp"]["id"], "ServicePrincipal")
    assert len(graph.log) == 1
    # --assignee <objectId>: the SPN query finds nothing, getByIds does
    graph.log.clear()
    assert az_resolve_assignee(graph, made["sp"]["id"]) == (made["sp"]["id"], "ServicePrincipal")
    assert [(s.method, s.path) for s in graph.log][1] == ("POST", "/v1.0/directoryObjects/getByIds")
    # --assignee user@domain: no users here
    with pytest.raises(LookupError):
        az_resolve_assignee(graph, "someone@contoso.example")
    # an unknown GUID
    with pytest.raises(LookupError):
        az_resolve_assignee(graph, str(uuid.uuid4()))


def test_get_by_ids_types_order_and_shapes(env: Env) -> None:
    one = az_create_for_rbac(env.az(), "one")
    two = az_create_for_rbac(env.az(), "two")
    app_two = az_resolve_application(env.az(), two["appId"])
    ids = [two["sp"]["id"], str(uuid.uuid4()), one["sp"]["id"].upper(), app_two]
    response = env.call(
        "POST", "/directoryObjects/getByIds", body={"ids": ids, "types": ["servicePrincipal"]}
    )
    assert response.status_code == 200
    value = response.json()["value"]
    assert [o["id"] for o in value] == [two["sp"]["id"], one["sp"]["id"]]
    assert {o["@odata.type"] for o in value} == {"#microsoft.graph.servicePrincipal"}
    everything = env.call("POST", "/directoryObjects/getByIds", body={"ids": ids}).json()["value"]
    assert [o["@odata.type"] for o in everything] == [
        "#microsoft.graph.servicePrincipal",
        "#microsoft.graph.servicePrincipal",
        "#microsoft.graph.application",
    ]
    single = env.call("GET", f"/directoryObjects/{one['sp']['id']}").json()
    assert single["@odata.type"] == "#microsoft.graph.servicePrincipal"
    assert_graph_error(
        env.call("POST", "/directoryObjects/getByIds", body={"ids": ["nope"]}),
        400,
        "Request_BadRequest",
    )
    assert_graph_error(
        env.call("POST", "/directoryObjects/getByIds", body={"ids": [], "types": ["planet"]}),
        400,
        "Request_BadRequest",
    )


def test_me_is_refused_for_app_only_tokens(env: Env) -> None:
    error = assert_graph_error(env.call("GET", "/me"), 400, "BadRequest")
    assert error["message"] == "/me request is only valid with delegated authentication flow."
    assert_graph_error(env.call("GET", "/me/ownedObjects"), 400, "BadRequest")


def test_a_tenant_without_users_has_an_empty_collection(env: Env) -> None:
    response = env.call("GET", "/users?$filter=userPrincipalName eq 'a@b.example'")
    assert response.status_code == 200 and response.json()["value"] == []
    assert_graph_error(env.call("GET", "/users/a@b.example"), 404, "Request_ResourceNotFound")


# --- users ------------------------------------------------------------------------------

USER_KEYS = {
    "id",
    "accountEnabled",
    "businessPhones",
    "createdDateTime",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "userType",
}


def make_user(env: Env, tenant: str, name: str, display_name: str | None = None) -> User:
    user, _ = env.directory.create_user(tenant, name, "a-password-1", display_name)
    return user


def test_assignee_upn_resolves_to_a_user_with_one_request(env: Env) -> None:
    alice = make_user(env, TENANT_A, "alice", "Alice Liddell")
    graph = env.az()
    assert az_resolve_assignee(graph, "alice@contoso") == (alice.object_id, "User")
    assert [(s.method, s.path) for s in graph.log] == [
        ("GET", "/v1.0/users?$filter=userPrincipalName eq 'alice@contoso'")
    ]
    # sign-in names match in any case, as in Entra ID
    assert az_resolve_assignee(env.az(), "ALICE@Contoso")[0] == alice.object_id
    # --assignee <user object id>: the users and SPN queries miss, getByIds finds a user
    graph = env.az()
    assert az_resolve_assignee(graph, alice.object_id) == (alice.object_id, "User")
    assert graph.log[-1].body["types"][0] == "user"
    with pytest.raises(LookupError):
        az_resolve_assignee(env.az(), "bob@contoso")
    # a user of another tenant cannot be resolved from tenant B
    with pytest.raises(LookupError):
        az_resolve_assignee(env.az("token-tenant-b"), "alice@contoso")
    with pytest.raises(LookupError):
        az_resolve_assignee(env.az("token-tenant-b"), alice.object_id)


def test_user_list_filters_select_and_count(env: Env) -> None:
    alice = make_user(env, TENANT_A, "alice", "Alice Liddell")
    make_user(env, TENANT_A, "albert", "Albert Camus")
    make_user(env, TENANT_B, "alan", "Alan Turing")
    graph = env.az()
    everyone = graph.user_list(None)
    assert [u["userPrincipalName"] for u in everyone] == ["alice@contoso", "albert@contoso"]
    assert set(everyone[0]) == USER_KEYS
    assert everyone[0] | {"createdDateTime": None} == {
        "id": alice.object_id,
        "accountEnabled": True,
        "businessPhones": [],
        "createdDateTime": None,
        "displayName": "Alice Liddell",
        "givenName": None,
        "jobTitle": None,
        "mail": None,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": None,
        "userPrincipalName": "alice@contoso",
        "userType": "Member",
    }
    # `az ad user list --display-name Al` and `--upn`, alone and together (joined by 'and')
    assert len(graph.user_list("startswith(displayName,'al')")) == 2
    assert [u["id"] for u in graph.user_list("startswith(displayName,'Alice')")] == [
        alice.object_id
    ]
    both = "userPrincipalName eq 'albert@contoso' and startswith(displayName,'Alice')"
    assert graph.user_list(both) == []
    assert graph.user_list(f"id eq '{alice.object_id.upper()}'")[0]["id"] == alice.object_id
    assert graph.user_list("userPrincipalName eq 'alan@fabrikam'") == []  # tenant B's
    assert graph.user_list("userPrincipalName eq 'no-at-sign'") == []
    assert graph.user_list("mail eq 'alice@contoso'") == []  # no user has mail
    assert [u["displayName"] for u in env.az("token-tenant-b").user_list(None)] == ["Alan Turing"]
    selected = env.call("GET", "/users?$select=id,userPrincipalName&$top=1").json()
    assert selected["@odata.context"].endswith("$metadata#users(id,userPrincipalName)")
    assert set(selected["value"][0]) == {"id", "userPrincipalName"}
    assert "@odata.nextLink" in selected
    count = env.call("GET", "/users/$count", headers={"ConsistencyLevel": "eventual"})
    assert count.status_code == 200 and count.text == "2"
    refused = [
        ("$filter=id eq 'nope'", "Request_BadRequest"),
        ("$select=password", "Request_BadRequest"),
        ("$filter=userType eq 'Member'", "Request_UnsupportedQuery"),
        ("$filter=endswith(userPrincipalName,'@contoso')", "Request_UnsupportedQuery"),
    ]
    for query, code in refused:
        assert_graph_error(env.call("GET", f"/users?{query}"), 400, code)


def test_user_show_by_id_and_upn_in_own_tenant_only(env: Env) -> None:
    alice = make_user(env, TENANT_A, "alice")
    for key in (alice.object_id, alice.object_id.upper(), "alice@contoso", "Alice@CONTOSO"):
        shown = env.call("GET", f"/users/{key}")
        assert shown.status_code == 200, shown.text
        body = shown.json()
        assert body["@odata.context"].endswith("$metadata#users/$entity")
        assert body["id"] == alice.object_id and body["userPrincipalName"] == "alice@contoso"
    assert set(env.call("GET", "/users/alice@contoso?$select=displayName").json()) == {
        "@odata.context",
        "displayName",
    }
    missing = [
        str(uuid.uuid4()),
        "bob@contoso",
        "alice",
        "alice@fabrikam",
        "%00@x",
        "a%23b@contoso",
    ]
    for key in missing:
        error = assert_graph_error(
            env.call("GET", f"/users/{key}"), 404, "Request_ResourceNotFound"
        )
        assert error["message"].startswith("Resource '")
    for key in (alice.object_id, "alice@contoso"):
        assert_graph_error(
            env.call("GET", f"/users/{key}", token="token-tenant-b"),
            404,
            "Request_ResourceNotFound",
        )
    # users are read here, never written
    assert env.call("POST", "/users", body={"displayName": "x"}).status_code == 405
    assert env.call("DELETE", f"/users/{alice.object_id}").status_code == 405
    error = assert_graph_error(
        env.call("GET", f"/users/{alice.object_id}/memberOf"), 400, "Request_BadRequest"
    )
    assert error["message"].startswith("Resource not found for the segment 'memberOf'.")


def test_get_by_ids_mixes_users_and_service_principals(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "deployer")
    alice = make_user(env, TENANT_A, "alice")
    stranger = make_user(env, TENANT_B, "stranger")
    ids = [alice.object_id, str(uuid.uuid4()), made["sp"]["id"], stranger.object_id]
    found = az_object_stubs(env.az(), ids)
    assert [(o["id"], o["@odata.type"]) for o in found] == [
        (alice.object_id, "#microsoft.graph.user"),
        (made["sp"]["id"], "#microsoft.graph.servicePrincipal"),
    ]
    # what `az role assignment list` shows as principalName
    assert [az_displayable_name(o) for o in found] == ["alice@contoso", made["appId"]]
    only_sps = env.call(
        "POST", "/directoryObjects/getByIds", body={"ids": ids, "types": ["servicePrincipal"]}
    ).json()["value"]
    assert [o["id"] for o in only_sps] == [made["sp"]["id"]]
    only_users = env.call(
        "POST", "/directoryObjects/getByIds", body={"ids": ids, "types": ["microsoft.graph.user"]}
    ).json()["value"]
    assert [o["id"] for o in only_users] == [alice.object_id]
    single = env.call("GET", f"/directoryObjects/{alice.object_id}").json()
    assert single["@odata.type"] == "#microsoft.graph.user"
    assert single["userPrincipalName"] == "alice@contoso"
    assert [o["id"] for o in az_object_stubs(env.az("token-tenant-b"), ids)] == [stranger.object_id]


def test_me_is_the_signed_in_user(env: Env) -> None:
    alice = make_user(env, TENANT_A, "alice", "Alice")
    env.tokens["token-alice"] = Principal(TENANT_A, alice.object_id, AZURE_CLI_CLIENT_ID)
    me = env.az("token-alice").signed_in_user_get()  # az ad signed-in-user show
    assert me["@odata.context"].endswith("$metadata#users/$entity")
    assert me["id"] == alice.object_id and me["userPrincipalName"] == "alice@contoso"
    selected = env.call("GET", "/me?$select=id", token="token-alice").json()
    assert set(selected) == {"@odata.context", "id"}
    error = assert_graph_error(
        env.call("GET", "/me/ownedObjects", token="token-alice"), 400, "Request_BadRequest"
    )
    assert "'ownedObjects'" in error["message"]
    assert_graph_error(
        env.call("PATCH", "/me", token="token-alice", body={}), 405, "Request_BadRequest"
    )
    # a user reads the directory as any principal of its tenant does (writes are the admin's)
    assert az_resolve_assignee(env.az("token-alice"), "alice@contoso") == (alice.object_id, "User")
    assert_graph_error(
        env.call("POST", "/applications", token="token-alice", body={"displayName": "x"}),
        403,
        "Authorization_RequestDenied",
    )
    # a deleted user's still-valid token: /me is refused as for an app-only token
    env.directory.delete_user(TENANT_A, alice.object_id)
    assert_graph_error(env.call("GET", "/me", token="token-alice"), 400, "BadRequest")


# --- who may do what --------------------------------------------------------------------


def test_non_admin_reads_but_may_not_write(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "admins-app")
    other = env.az("token-other")
    assert other.service_principal_list(f"appId eq '{made['appId']}'")[0]["id"] == made["sp"]["id"]
    app_id = az_resolve_application(other, made["appId"])
    sp_id = made["sp"]["id"]
    end = _utc(datetime.now(UTC) + timedelta(days=1))
    writes: list[tuple[str, str, Any]] = [
        ("POST", "/applications", {"displayName": "mine"}),
        ("PATCH", f"/applications/{app_id}", {"displayName": "mine"}),
        ("DELETE", f"/applications/{app_id}", None),
        ("POST", f"/applications/{app_id}/addPassword", {"passwordCredential": {}}),
        ("POST", f"/applications/{app_id}/removePassword", {"keyId": str(uuid.uuid4())}),
        ("POST", "/servicePrincipals", {"appId": made["appId"], "accountEnabled": True}),
        ("PATCH", f"/servicePrincipals/{sp_id}", {}),
        ("DELETE", f"/servicePrincipals/{sp_id}", None),
        (
            "POST",
            f"/servicePrincipals/{sp_id}/addPassword",
            {"passwordCredential": {"endDateTime": end}},
        ),
        ("POST", f"/servicePrincipals/{sp_id}/removePassword", {"keyId": str(uuid.uuid4())}),
    ]
    for method, path, body in writes:
        error = assert_graph_error(
            env.call(method, path, token="token-other", body=body),
            403,
            "Authorization_RequestDenied",
        )
        assert error["message"] == "Insufficient privileges to complete the operation."
    # az turns this message into its "Directory permission is needed" hint
    with pytest.raises(AzGraphError, match="Insufficient privileges"):
        az_create_for_rbac(env.az("token-other"), "mine")
    assert env.directory.check_client(TENANT_A, made["appId"], made["password"])[0] == "ok"


def test_the_admin_cannot_delete_itself(env: Env) -> None:
    assert_graph_error(
        env.call("DELETE", f"/servicePrincipals/{env.admin_a.object_id}"),
        403,
        "Authorization_RequestDenied",
    )
    assert_graph_error(
        env.call("DELETE", f"/applications/{env.admin_a.app_object_id}"),
        403,
        "Authorization_RequestDenied",
    )


def test_tenants_do_not_see_each_other(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "contoso-app")
    app_object_id = az_resolve_application(env.az(), made["appId"])
    b = env.az("token-tenant-b")
    assert b.service_principal_list(f"appId eq '{made['appId']}'") == []
    assert b.application_list("startswith(displayName,'contoso')") == []
    assert {s["appOwnerOrganizationId"] for s in b.service_principal_list()} == {TENANT_B}
    assert b.directory_object_get_by_ids({"ids": [made["sp"]["id"]]}) == []
    refused: list[tuple[str, str, Any]] = [
        ("GET", f"/servicePrincipals/{made['sp']['id']}", None),
        ("GET", f"/applications/{app_object_id}", None),
        ("DELETE", f"/servicePrincipals/{made['sp']['id']}", None),
        ("DELETE", f"/applications/{app_object_id}", None),
        ("POST", f"/applications/{app_object_id}/addPassword", {"passwordCredential": {}}),
        ("GET", f"/directoryObjects/{made['sp']['id']}", None),
    ]
    for method, path, body in refused:
        assert_graph_error(
            env.call(method, path, token="token-tenant-b", body=body),
            404,
            "Request_ResourceNotFound",
        )
    # B's admin cannot make a service principal for A's application
    assert_graph_error(
        env.call(
            "POST",
            "/servicePrincipals",
            token="token-tenant-b",
            body={"appId": made["appId"], "accountEnabled": True},
        ),
        404,
        "Request_ResourceNotFound",
    )
    assert env.directory.check_client(TENANT_A, made["appId"], made["password"])[0] == "ok"


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({}, "/applications"),
        ({"Authorization": "Bearer"}, "/applications"),
        ({"Authorization": "Basic abc"}, "/servicePrincipals"),
        ({"Authorization": "Bearer token-forged"}, "/servicePrincipals"),
        ({"Authorization": "Bearer token-forged"}, "/no-such-thing"),
        ({}, "/me"),
    ],
)
def test_unauthenticated_requests_get_401(env: Env, headers: dict[str, str], path: str) -> None:
    response = env.call("GET", path, token=None, headers=headers)
    error = assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert response.headers["www-authenticate"].startswith("Bearer")
    if "forged" in headers.get("Authorization", ""):
        assert "Invalid audience" in error["message"]
    else:
        assert error["message"] == "Access token is empty."


def test_client_request_id_is_echoed(env: Env) -> None:
    response = env.call("GET", "/applications/not-a-guid", headers={"client-request-id": "abc-1"})
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert error["innerError"]["client-request-id"] == "abc-1"
    assert response.headers["client-request-id"] == "abc-1"


# --- query options ------------------------------------------------------------------------


def test_top_pages_with_next_link_and_az_follows_it(env: Env) -> None:
    for i in range(5):
        env.call("POST", "/applications", body={"displayName": f"paged-{i}"})
    first = env.call("GET", "/applications?$filter=startswith(displayName,'paged')&$top=2").json()
    assert [a["displayName"] for a in first["value"]] == ["paged-0", "paged-1"]
    link = first["@odata.nextLink"]
    assert link.startswith(f"{SERVER}/graph/v1.0/applications?")
    second = env.client.get(link, headers={"Authorization": "Bearer token-admin"}).json()
    assert [a["displayName"] for a in second["value"]] == ["paged-2", "paged-3"]
    third = env.client.get(
        second["@odata.nextLink"], headers={"Authorization": "Bearer token-admin"}
    )
    assert [a["displayName"] for a in third.json()["value"]] == ["paged-4"]
    assert "@odata.nextLink" not in third.json()
    # GraphClient gathers every page into one list
    graph = env.az()
    everything = graph._send("GET", "/applications?$top=1&$filter=startswith(displayName,'paged')")
    assert len(everything) == 5 and len(graph.log) == 5


def test_default_page_is_100(env: Env) -> None:
    for i in range(102):
        env.directory.create_application(TENANT_A, f"bulk-{i:03}")
    page = env.call("GET", "/applications?$filter=startswith(displayName,'bulk')").json()
    assert len(page["value"]) == 100 and "@odata.nextLink" in page
    assert len(env.az().application_list("startswith(displayName,'bulk')")) == 102


def test_select_and_count(env: Env) -> None:
    az_create_for_rbac(env.az(), "counted")
    selected = env.call(
        "GET", "/servicePrincipals?$select=id,APPID&$filter=displayName eq 'counted'"
    )
    body = selected.json()
    assert body["@odata.context"].endswith("$metadata#servicePrincipals(id,appId)")
    assert set(body["value"][0]) == {"id", "appId"}
    # $count=true counts only with ConsistencyLevel: eventual, else it is ignored (as Graph)
    assert "@odata.count" not in env.call("GET", "/servicePrincipals?$count=true").json()
    counted = env.call(
        "GET", "/servicePrincipals?$count=true", headers={"ConsistencyLevel": "eventual"}
    ).json()
    assert counted["@odata.count"] == len(counted["value"]) == 3  # admin, reader, counted
    bare = env.call("GET", "/servicePrincipals/$count", headers={"ConsistencyLevel": "eventual"})
    assert bare.status_code == 200 and bare.text == "3"
    error = assert_graph_error(env.call("GET", "/applications/$count"), 400, "Request_BadRequest")
    assert error["message"] == "$count is not currently supported."
    one = env.call("GET", f"/servicePrincipals/{env.admin_a.object_id}?$select=displayName").json()
    assert set(one) == {"@odata.context", "displayName"}
    assert_graph_error(
        env.call("GET", "/servicePrincipals?$select=nonsense"), 400, "Request_BadRequest"
    )


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("$filter=displayName ne 'x'", "Request_UnsupportedQuery"),
        ("$filter=endswith(displayName,'x')", "Request_UnsupportedQuery"),
        ("$filter=displayName eq 'x' or displayName eq 'y'", "Request_UnsupportedQuery"),
        ("$filter=not(displayName eq 'x')", "Request_UnsupportedQuery"),
        ("$filter=createdDateTime eq '2024-01-01'", "Request_UnsupportedQuery"),
        ("$filter=servicePrincipalNames/any(c:c eq 'x')", "Request_UnsupportedQuery"),
        ("$filter=identifierUris/all(c:c eq 'x')", "Request_UnsupportedQuery"),
        ("$filter=displayName eq null", "Request_UnsupportedQuery"),
        ("$filter=displayName eq", "Request_BadRequest"),
        ("$filter=displayName eq 'unterminated", "Request_BadRequest"),
        ("$filter=startswith(displayName 'x')", "Request_BadRequest"),
        ("$filter=", "Request_BadRequest"),
        ("$filter=appId eq 'not-a-guid'", "Request_BadRequest"),
        ("$filter=(" * 40 + "displayName eq 'x'" + ")" * 40, "Request_BadRequest"),
        ("$orderby=displayName", "Request_UnsupportedQuery"),
        ("$expand=owners", "Request_UnsupportedQuery"),
        ('$search="displayName:x"', "Request_UnsupportedQuery"),
        ("$skip=1", "Request_UnsupportedQuery"),
        ("$top=0", "Request_BadRequest"),
        ("$top=1000", "Request_BadRequest"),
        ("$top=ten", "Request_BadRequest"),
        ("$skiptoken=garbage!", "Request_BadRequest"),
        ("$count=maybe", "Request_BadRequest"),
        ("$frobnicate=1", "Request_BadRequest"),
        ("$filter=displayName eq 'a'&$filter=displayName eq 'b'", "Request_BadRequest"),
    ],
)
def test_unsupported_queries_are_refused_in_graph_shape(env: Env, query: str, code: str) -> None:
    assert_graph_error(env.call("GET", f"/applications?{query}"), 400, code)


def test_search_message_names_the_header(env: Env) -> None:
    error = assert_graph_error(
        env.call("GET", '/servicePrincipals?$search="displayName:x"'),
        400,
        "Request_UnsupportedQuery",
    )
    assert "ConsistencyLevel: eventual" in error["message"]


def test_parse_filter_forms() -> None:
    assert parse_filter("displayName eq 'O''Brien'") == (Clause("eq", "displayName", "O'Brien"),)
    assert parse_filter("startswith(displayName,'x') and (appId eq 'y')") == (
        Clause("startswith", "displayName", "x"),
        Clause("eq", "appId", "y"),
    )
    assert parse_filter("servicePrincipalNames/any(c:c eq 'abc')") == (
        Clause("any", "servicePrincipalNames", "abc"),
    )
    assert parse_filter("  DisplayName  EQ  'x'  ") == (Clause("eq", "DisplayName", "x"),)
    with pytest.raises(GraphError) as caught:
        parse_filter("displayName eq 'a\x00'")
    assert caught.value.code == "Request_BadRequest"


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/applications", {}),
        ("/applications", {"displayName": ""}),
        ("/applications", {"displayName": 5}),
        ("/applications", {"displayName": "x" * 300}),
        ("/applications", {"displayName": "tab\there"}),
        ("/applications", {"displayName": "x", "web": {"redirectUris": ["https://x"]}}),
        ("/applications", {"displayName": "x", "keyCredentials": [{"key": "abc"}]}),
        ("/applications", {"displayName": "x", "identifierUris": ["api://x"]}),
        ("/applications", {"displayName": "x", "signInAudience": "AzureADMultipleOrgs"}),
        ("/applications", []),
        ("/servicePrincipals", {"appId": "nope"}),
        ("/servicePrincipals", {"appId": str(uuid.uuid4()), "accountEnabled": False}),
        ("/servicePrincipals", {"appId": str(uuid.uuid4()), "tags": ["x"]}),
        ("/directoryObjects/getByIds", {"ids": "one"}),
        ("/directoryObjects/getByIds", {"ids": [str(uuid.uuid4())] * 1001}),
        ("/directoryObjects/getByIds", {}),
    ],
)
def test_bad_bodies_are_400(env: Env, path: str, body: Any) -> None:
    assert_graph_error(env.call("POST", path, body=body), 400, "Request_BadRequest")


@pytest.mark.parametrize(
    "cred",
    [
        {"endDateTime": "yesterday"},
        {"endDateTime": "2001-01-01T00:00:00Z"},
        {"startDateTime": "2999-01-01T00:00:00Z"},
        {"displayName": 7},
        {"secretText": "chosen-by-me"},
        {"keyId": str(uuid.uuid4())},
        {"colour": "blue"},
    ],
)
def test_bad_password_bodies_are_400(env: Env, cred: dict[str, Any]) -> None:
    app = env.call("POST", "/applications", body={"displayName": "pw"}).json()
    response = env.call(
        "POST", f"/applications/{app['id']}/addPassword", body={"passwordCredential": cred}
    )
    assert_graph_error(response, 400, "Request_BadRequest")


def test_password_defaults_and_timezones(env: Env) -> None:
    app = env.call("POST", "/applications", body={"displayName": "pw"}).json()
    bare = env.call("POST", f"/applications/{app['id']}/addPassword").json()
    start = datetime.fromisoformat(bare["startDateTime"])
    end = datetime.fromisoformat(bare["endDateTime"])
    assert timedelta(days=700) < end - start < timedelta(days=750)  # Graph's default: 2 years
    assert bare["displayName"] is None
    offset = env.call(
        "POST",
        f"/applications/{app['id']}/addPassword",
        body={"passwordCredential": {"endDateTime": "2099-06-01T12:00:00.123+02:00"}},
    ).json()
    assert offset["endDateTime"] == "2099-06-01T10:00:00Z"
    remove = env.call(
        "POST", f"/applications/{app['id']}/removePassword", body={"keyId": str(uuid.uuid4())}
    )
    assert_graph_error(remove, 400, "Request_BadRequest")
    assert_graph_error(
        env.call("POST", f"/applications/{app['id']}/removePassword", body={"keyId": "x"}),
        400,
        "Request_BadRequest",
    )


def test_duplicate_service_principal_is_409(env: Env) -> None:
    made = az_create_for_rbac(env.az(), "twice")
    response = env.call(
        "POST", "/servicePrincipals", body={"appId": made["appId"], "accountEnabled": True}
    )
    assert_graph_error(response, 409, "Request_MultipleObjectsWithSameKeyValue")
    unknown = env.call("POST", "/servicePrincipals", body={"appId": str(uuid.uuid4())})
    error = assert_graph_error(unknown, 404, "Request_ResourceNotFound")
    assert " does not reference " in error["message"]  # az retries on exactly this


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/applications", 405),
        ("DELETE", "/servicePrincipals", 405),
        ("GET", "/applications/{app}/addPassword", 405),
        ("GET", "/groups", 400),
        ("GET", "/applications/{app}/owners", 400),
        ("GET", "/organization", 400),
        ("POST", "/me", 400),
        ("POST", "/applications/%0A0", 405),  # a newline in the id still routes
    ],
)
def test_unserved_paths_answer_in_graph_shape(
    env: Env, method: str, path: str, status: int
) -> None:
    response = env.call(method, path.format(app=str(uuid.uuid4())))
    assert response.status_code == status
    assert set(response.json()["error"]) == GRAPH_ERROR_KEYS
    other_version = env.client.get(
        "/graph/beta/applications", headers={"Authorization": "Bearer token-admin"}
    )
    assert_graph_error(other_version, 400, "Request_BadRequest")


@pytest.mark.parametrize(
    ("path", "segment"),
    [
        ("/groups", "groups"),
        ("/groups/x/members", "groups"),
        ("/servicePrincipals/{id}/owners", "owners"),  # az ad sp owner list
        ("/applications/{id}/owners/$ref", "owners"),
        ("/applications/{id}/federatedIdentityCredentials", "federatedIdentityCredentials"),
    ],
)
def test_unserved_segments_are_named(env: Env, path: str, segment: str) -> None:
    response = env.call("GET", path.format(id=str(uuid.uuid4())))
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert error["message"].startswith(f"Resource not found for the segment '{segment}'.")


def test_bad_object_ids_are_400(env: Env) -> None:
    for path in ("/applications/nope", "/servicePrincipals/%00", "/directoryObjects/1234"):
        assert_graph_error(env.call("GET", path), 400, "Request_BadRequest")


# --- no 500, whatever comes in -----------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=12,
)
_known_keys = st.sampled_from(
    [
        "displayName",
        "keyCredentials",
        "identifierUris",
        "signInAudience",
        "appId",
        "accountEnabled",
        "passwordCredential",
        "endDateTime",
        "startDateTime",
        "keyId",
        "ids",
        "types",
        "@odata.type",
    ]
)
_bodies = st.dictionaries(_known_keys, _json_values, max_size=4) | _json_values
_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _no_500(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == GRAPH_ERROR_KEYS


def _fuzz_targets(env: Env) -> list[str]:
    app = env.directory.list_applications(TENANT_A, display_name="reader")[0]
    return [
        "/applications",
        "/servicePrincipals",
        "/directoryObjects/getByIds",
        f"/applications/{app.object_id}/addPassword",
        f"/applications/{app.object_id}/removePassword",
        f"/servicePrincipals/{env.other_a.object_id}/addPassword",
        f"/servicePrincipals/{env.other_a.object_id}/removePassword",
    ]


@_FUZZ
@given(body=_bodies, target=st.integers(0, 6), nested=st.booleans())
def test_no_500_on_json_bodies(fuzz_env: Env, body: Any, target: int, nested: bool) -> None:
    path = _fuzz_targets(fuzz_env)[target]
    if nested and "Password" in path and "remove" not in path:
        body = {"passwordCredential": body}
    _no_500(fuzz_env.call("POST", path, body=body))


@_FUZZ
@given(
    raw=st.binary(max_size=200), target=st.integers(0, 6), method=st.sampled_from(["POST", "PATCH"])
)
def test_no_500_on_raw_bodies(fuzz_env: Env, raw: bytes, target: int, method: str) -> None:
    path = _fuzz_targets(fuzz_env)[target]
    if method == "PATCH":
        path = f"/applications/{fuzz_env.directory.list_applications(TENANT_A)[0].object_id}"
    _no_500(fuzz_env.call(method, path, content=raw))


def test_no_500_on_deep_json(env: Env) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_graph_error(env.call("POST", "/applications", content=deep), 400, "Request_BadRequest")
    huge = b'{"displayName": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert env.call("POST", "/applications", content=huge).status_code == 413


_filter_atoms = st.sampled_from(
    [
        "displayName",
        "appId",
        "id",
        "eq",
        "ne",
        "and",
        "or",
        "not",
        "startswith",
        "servicePrincipalNames/any",
        "(",
        ")",
        ",",
        ":",
        "'x'",
        "'",
        "''",
        " ",
        "c",
        "null",
        "%",
        "\x00",
        "5",
    ]
)


@_FUZZ
@given(
    atoms=st.lists(_filter_atoms | st.text(max_size=8), max_size=12),
    collection=st.sampled_from(["/applications", "/servicePrincipals", "/users"]),
)
def test_no_500_on_filters(fuzz_env: Env, atoms: list[str], collection: str) -> None:
    text = " ".join(atoms)
    response = fuzz_env.client.get(
        f"/graph/v1.0{collection}",
        params={"$filter": text},
        headers={"Authorization": "Bearer token-admin"},
    )
    _no_500(response)


@_FUZZ
@given(
    segment=st.text(max_size=40),
    query=st.dictionaries(
        st.sampled_from(["$filter", "$select", "$top", "$skiptoken", "$count", "$x", "top"]),
        st.text(max_size=20),
        max_size=3,
    ),
    method=st.sampled_from(["GET", "DELETE", "PATCH", "POST"]),
    collection=st.sampled_from(["applications", "servicePrincipals", "directoryObjects", "users"]),
)
def test_no_500_on_paths_and_queries(
    fuzz_env: Env, segment: str, query: dict[str, str], method: str, collection: str
) -> None:
    path = f"/graph/v1.0/{collection}/{quote(segment, safe='')}"
    response = fuzz_env.client.request(
        method, path, params=query, headers={"Authorization": "Bearer token-admin"}
    )
    _no_500(response)
