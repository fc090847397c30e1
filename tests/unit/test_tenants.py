"""Tenancy without a server process: the directory, the default tenant, the ARM gate's
tenant check, the admin API (in-process) and the pure parts of the CLI.

The directory and subscriptions live in a SQLite file in tmp_path; the gate and the
admin router run in Starlette's TestClient; the CLI's network is an httpx.MockTransport.
"""

from __future__ import annotations

import json
import stat
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from privatelink.api.gate import ArmGate, wrong_tenant_message
from privatelink.api.resource_manager import cloud_metadata
from privatelink.cli import tenant as tenant_cli
from privatelink.cli.az import (
    ServerCredentials,
    ensure_setup,
    identity_config_dir,
    resolve_identity,
    setup_steps,
)
from privatelink.cli.main import main
from privatelink.core.principal import Principal
from privatelink.identity.admin import build_admin_router, check_tenant_name
from privatelink.identity.auth import AuthenticationFailed
from privatelink.identity.credentials import ClientCredentials, ensure_client, ensure_signing_key
from privatelink.identity.tokens import TokenIssuer, server_audiences
from privatelink.server import ensure_default_tenant
from privatelink.store.directory import DirectoryError, SqlDirectory
from privatelink.store.sql import SqlRepository

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

BASE = "https://127.0.0.1:9443"
ARM_SCOPE = "https://management.azure.com/.default"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SqlRepository]:
    store = SqlRepository.sqlite_in(tmp_path)
    yield store
    store.dispose()


@pytest.fixture
def directory(repo: SqlRepository) -> SqlDirectory:
    return SqlDirectory(repo.engine)


# --- the directory ------------------------------------------------------------------


def test_create_tenant_and_sign_in(directory: SqlDirectory) -> None:
    tenant, admin, secret = directory.create_tenant("Contoso")
    assert tenant.name == "Contoso" and tenant.admin_object_id == admin.object_id
    assert tenant.default_domain == "contoso.privatelink.local"
    assert directory.check_client(tenant.tenant_id, admin.app_id, secret) == ("ok", admin)
    assert directory.check_client(tenant.tenant_id.upper(), admin.app_id.upper(), secret)[0] == (
        "ok"
    )
    assert directory.check_client(tenant.tenant_id, admin.app_id, "wrong")[0] == "bad_secret"
    assert directory.check_client(tenant.tenant_id, admin.app_id, "")[0] == "bad_secret"
    assert directory.check_client(tenant.tenant_id, str(uuid.uuid4()), secret) == (
        "no_client",
        None,
    )
    assert directory.check_client(str(uuid.uuid4()), admin.app_id, secret) == ("no_tenant", None)


def test_tenant_names_are_unique_case_insensitively(directory: SqlDirectory) -> None:
    directory.create_tenant("contoso")
    with pytest.raises(DirectoryError) as info:
        directory.create_tenant("CONTOSO")
    assert info.value.code == "TenantExists"
    assert [t.name for t in directory.list_tenants()] == ["contoso"]


def test_find_tenant_by_name_or_id_and_admin(directory: SqlDirectory) -> None:
    a, a_admin, _ = directory.create_tenant("a")
    b, b_admin, _ = directory.create_tenant("b")
    assert directory.find_tenant("A") == a
    assert directory.find_tenant(b.tenant_id.upper()) == b
    assert directory.find_tenant("c") is None
    assert [t.name for t in directory.list_tenants()] == ["a", "b"]
    assert directory.is_admin(a.tenant_id, a_admin.object_id)
    assert not directory.is_admin(a.tenant_id, b_admin.object_id)
    assert not directory.is_admin(b.tenant_id, a_admin.object_id)


def test_other_principals_are_not_admins(directory: SqlDirectory) -> None:
    tenant, _admin, _ = directory.create_tenant("a")
    app = directory.create_application(tenant.tenant_id, "worker")
    sp = directory.create_service_principal(tenant.tenant_id, app.app_id)
    _cred, secret = directory.add_password(tenant.tenant_id, app.object_id)
    assert directory.check_client(tenant.tenant_id, app.app_id, secret) == ("ok", sp)
    assert not directory.is_admin(tenant.tenant_id, sp.object_id)


def test_admin_cannot_be_deleted(directory: SqlDirectory) -> None:
    tenant, admin, _ = directory.create_tenant("a")
    with pytest.raises(DirectoryError) as info:
        directory.delete_service_principal(tenant.tenant_id, admin.object_id)
    assert info.value.code == "Authorization_RequestDenied"


# --- the default tenant -------------------------------------------------------------


def test_default_tenant_is_identity_json(tmp_path: Path, directory: SqlDirectory) -> None:
    client = ensure_client(tmp_path / "data")
    tenant = ensure_default_tenant(directory, client)
    assert (tenant.name, tenant.tenant_id) == ("default", client.tenant_id)
    assert tenant.admin_app_id == client.client_id
    assert tenant.admin_object_id == client.object_id
    outcome, sp = directory.check_client(client.tenant_id, client.client_id, client.client_secret)
    assert outcome == "ok" and sp is not None and sp.object_id == client.object_id
    # A restart finds it; nothing is imported twice.
    assert ensure_default_tenant(directory, client) == tenant
    assert len(directory.list_tenants()) == 1


def test_second_data_dir_on_a_shared_database(tmp_path: Path, directory: SqlDirectory) -> None:
    first = ensure_default_tenant(directory, ensure_client(tmp_path / "one"))
    other = ensure_client(tmp_path / "two")
    second = ensure_default_tenant(directory, other)
    assert first.name == "default"
    assert second.name == f"default-{other.tenant_id[:8]}"


# --- the ARM gate -------------------------------------------------------------------


class FakeSubscriptions:
    """The subscriptions table in a dict, counting reads."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, str]] = {}
        self.reads = 0
        self.race_tenant: str | None = None  # another tenant wins the creation race

    def get_subscription(self, subscription_id: str) -> dict[str, str] | None:
        self.reads += 1
        return self.rows.get(subscription_id.lower())

    def ensure_subscription(self, subscription_id: str, tenant_id: str, name: str = "") -> bool:
        if self.race_tenant is not None:
            tenant_id = self.race_tenant
            self.rows[subscription_id.lower()] = {"tenant_id": tenant_id}
            return False
        if subscription_id.lower() in self.rows:
            return False
        self.rows[subscription_id.lower()] = {
            "subscription_id": subscription_id,
            "tenant_id": tenant_id,
        }
        return True


class FakeAdmins:
    def __init__(self, *admins: tuple[str, str]) -> None:
        self.admins = set(admins)

    def is_admin(self, tenant_id: str, object_id: str) -> bool:
        return (tenant_id, object_id) in self.admins


DEFAULT_T = "11111111-1111-4111-8111-111111111111"
OTHER_T = "22222222-2222-4222-8222-222222222222"
ADMIN = Principal(DEFAULT_T, "aaaaaaaa-0000-4000-8000-000000000001", "app-admin")
USER = Principal(DEFAULT_T, "aaaaaaaa-0000-4000-8000-000000000002", "app-user")
OTHER_ADMIN = Principal(OTHER_T, "bbbbbbbb-0000-4000-8000-000000000001", "app-other")
PRINCIPALS = {"admin": ADMIN, "user": USER, "other": OTHER_ADMIN}


def _issuer_for(tenant: str) -> str:
    return f"https://sts.privatelink.local/{tenant}/"


async def _authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        raise AuthenticationFailed("Authentication failed. The 'Authorization' header is missing.")
    return PRINCIPALS[header.removeprefix("Bearer ")]


@pytest.fixture
def subs() -> FakeSubscriptions:
    return FakeSubscriptions()


@pytest.fixture
def created() -> list[tuple[str, str, str]]:
    return []


@pytest.fixture
def gate(subs: FakeSubscriptions, created: list[tuple[str, str, str]]) -> Iterator[TestClient]:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        who = scope["state"]["principal"]
        await JSONResponse({"oid": who.object_id})(scope, receive, send)

    app = ArmGate(
        echo,
        authenticate=_authenticate,
        tenant=DEFAULT_T,
        subscriptions=subs,
        admins=FakeAdmins((DEFAULT_T, ADMIN.object_id), (OTHER_T, OTHER_ADMIN.object_id)),
        issuer_for=_issuer_for,
        on_subscription_created=lambda *args: created.append(args),
    )
    # Not entered: the bare ASGI callable has no lifespan.
    client = TestClient(app, base_url=BASE)
    yield client
    client.close()


def _get(gate: TestClient, who: str | None, sub: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {who}"} if who else {}
    return gate.get(f"/subscriptions/{sub}/resourceGroups?api-version=2022-12-01", headers=headers)


def _put(gate: TestClient, who: str, sub: str, path: str = "/resourceGroups/rg") -> httpx.Response:
    headers = {"Authorization": f"Bearer {who}"}
    return gate.put(f"/subscriptions/{sub}{path}?api-version=2022-12-01", headers=headers, json={})


def _assert_subscription_not_found(reply: httpx.Response, sub: str) -> None:
    assert reply.status_code == 404
    assert reply.json() == {
        "error": {
            "code": "SubscriptionNotFound",
            "message": f"The subscription '{sub}' could not be found.",
        }
    }


def test_default_admin_creates_unknown_subscription_with_a_put(
    gate: TestClient, subs: FakeSubscriptions, created: list[tuple[str, str, str]]
) -> None:
    sub = str(uuid.uuid4())
    assert _put(gate, "admin", sub).status_code == 200
    assert subs.rows[sub]["tenant_id"] == DEFAULT_T
    assert created == [(sub, DEFAULT_T, ADMIN.object_id)]
    # Known from now on: a principal of the same tenant passes, no second creation.
    assert _get(gate, "user", sub).status_code == 200
    assert len(created) == 1


def test_non_admin_gets_404_for_unknown_subscription(
    gate: TestClient, subs: FakeSubscriptions, created: list[tuple[str, str, str]]
) -> None:
    sub = str(uuid.uuid4())
    reply = _get(gate, "user", sub)
    assert reply.status_code == 404
    assert reply.json() == {
        "error": {
            "code": "SubscriptionNotFound",
            "message": f"The subscription '{sub}' could not be found.",
        }
    }
    assert not subs.rows and not created


def test_reads_never_create_a_subscription(
    gate: TestClient, subs: FakeSubscriptions, created: list[tuple[str, str, str]]
) -> None:
    # Issue 11: 2000 GETs on unknown GUIDs created 2000 subscriptions.
    auth = {"Authorization": "Bearer admin"}
    for _ in range(5):
        sub = str(uuid.uuid4())
        _assert_subscription_not_found(_get(gate, "admin", sub), sub)
        _assert_subscription_not_found(gate.get(f"/subscriptions/{sub}", headers=auth), sub)
        assert gate.head(f"/subscriptions/{sub}/resourceGroups/rg", headers=auth).status_code == 404
    assert not subs.rows and not created


@pytest.mark.parametrize("method", ["PATCH", "DELETE", "POST"])
def test_other_writes_of_the_default_admin_do_not_create(
    gate: TestClient, subs: FakeSubscriptions, created: list[tuple[str, str, str]], method: str
) -> None:
    sub = str(uuid.uuid4())
    reply = gate.request(
        method,
        f"/subscriptions/{sub}/resourceGroups/rg?api-version=2022-12-01",
        headers={"Authorization": "Bearer admin"},
    )
    _assert_subscription_not_found(reply, sub)
    assert not subs.rows and not created


@pytest.mark.parametrize("who", ["user", "other"])
def test_only_the_default_tenants_admin_creates_with_a_put(
    gate: TestClient, subs: FakeSubscriptions, created: list[tuple[str, str, str]], who: str
) -> None:
    # `other` administers its own tenant: it creates subscriptions through the admin API.
    sub = str(uuid.uuid4())
    _assert_subscription_not_found(_put(gate, who, sub), sub)
    assert not subs.rows and not created


def test_a_put_of_the_bare_subscription_does_not_create(
    gate: TestClient, subs: FakeSubscriptions, created: list[tuple[str, str, str]]
) -> None:
    sub = str(uuid.uuid4())
    _assert_subscription_not_found(_put(gate, "admin", sub, path=""), sub)
    _assert_subscription_not_found(_put(gate, "admin", sub, path="/"), sub)
    assert not subs.rows and not created


def test_token_of_another_tenant_is_refused(gate: TestClient, subs: FakeSubscriptions) -> None:
    sub = str(uuid.uuid4())
    subs.rows[sub] = {"tenant_id": DEFAULT_T}
    reply = _get(gate, "other", sub.upper())
    assert reply.status_code == 401
    authority = f"{BASE}/{DEFAULT_T}"
    message = wrong_tenant_message(_issuer_for(OTHER_T), _issuer_for(DEFAULT_T), authority)
    assert reply.json() == {
        "error": {"code": "InvalidAuthenticationTokenTenant", "message": message}
    }
    assert message.startswith(
        f"The access token is from the wrong issuer '{_issuer_for(OTHER_T)}'. It must match "
        f"the tenant '{_issuer_for(DEFAULT_T)}' associated with this subscription. Please use "
        f"the authority (URL) '{authority}' to get the token. Note, if the subscription is "
        "transferred to another tenant"
    )
    header = reply.headers["www-authenticate"]
    assert header.startswith(f'Bearer authorization_uri="{authority}", error="invalid_token"')
    # Azure PowerShell's tenant discovery splits the header on '/' and '"'.
    assert header.replace('"', "/").split("/")[4] == DEFAULT_T


def test_tenants_are_cached(gate: TestClient, subs: FakeSubscriptions) -> None:
    sub = str(uuid.uuid4())
    subs.rows[sub] = {"tenant_id": DEFAULT_T.upper()}
    for _ in range(3):
        assert _get(gate, "user", sub).status_code == 200
    assert _get(gate, "other", sub).status_code == 401
    assert subs.reads == 1


def test_unknown_subscriptions_are_not_cached(gate: TestClient, subs: FakeSubscriptions) -> None:
    sub = str(uuid.uuid4())
    assert _get(gate, "user", sub).status_code == 404
    subs.rows[sub] = {"tenant_id": DEFAULT_T}  # made by another server on the database
    assert _get(gate, "user", sub).status_code == 200


def test_creation_race_lost_to_another_tenant(
    gate: TestClient, subs: FakeSubscriptions, created: list[tuple[str, str, str]]
) -> None:
    subs.race_tenant = OTHER_T
    reply = _put(gate, "admin", str(uuid.uuid4()))
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "InvalidAuthenticationTokenTenant"
    assert not created


def test_gate_authenticates_every_subscriptions_path(gate: TestClient) -> None:
    for path in ("/subscriptions", f"/subscriptions/{uuid.uuid4()}", "/subscriptions/not-a-guid"):
        reply = gate.get(path)
        assert reply.status_code == 401, path
        assert reply.headers["www-authenticate"].startswith(
            f'Bearer authorization_uri="{BASE}/{DEFAULT_T}"'
        )
    assert (
        gate.get("/subscriptions/not-a-guid", headers={"Authorization": "Bearer user"}).status_code
        == 200
    )


# --- the admin API ------------------------------------------------------------------


class Admin:
    """The admin router in a TestClient, with tokens for its principals."""

    def __init__(
        self,
        http: TestClient,
        issuer: TokenIssuer,
        directory: SqlDirectory,
        default: ClientCredentials,
    ) -> None:
        self.http = http
        self.issuer = issuer
        self.directory = directory
        self.default = default
        self.created: list[tuple[str, str, str]] = []

    def token(self, tenant: str, client: str, secret: str, scope: str = ARM_SCOPE) -> str:
        return str(self.issuer.issue(tenant, client, secret, scope)["access_token"])

    def as_(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(
    tmp_path: Path, repo: SqlRepository, directory: SqlDirectory
) -> Iterator[tuple[Admin, str]]:
    client = ensure_client(tmp_path / "data")
    ensure_default_tenant(directory, client)
    arm, graph = server_audiences("127.0.0.1", 9443)
    issuer = TokenIssuer(
        ensure_signing_key(tmp_path / "data"), directory, arm_audiences=arm, graph_audiences=graph
    )
    app = FastAPI()
    holder: list[Admin] = []
    app.include_router(
        build_admin_router(
            issuer,
            directory,
            repo,
            client.tenant_id,
            server_url=BASE,
            ca_file="/ca.pem",
            on_subscription_created=lambda *args: holder[0].created.append(args),
        )
    )
    with TestClient(app, base_url=BASE) as http:
        a = Admin(http, issuer, directory, client)
        holder.append(a)
        yield a, a.token(client.tenant_id, client.client_id, client.client_secret)


def test_admin_api_needs_a_token(admin: tuple[Admin, str]) -> None:
    a, _token = admin
    for method, path in (("GET", "/tenants"), ("POST", "/tenants"), ("POST", "/subscriptions")):
        reply = a.http.request(method, f"/privatelink/admin{path}", json={"name": "x"})
        assert reply.status_code == 401, path
        assert reply.json()["error"]["code"] == "AuthenticationFailed"
        assert "www-authenticate" in reply.headers


def test_create_tenant(admin: tuple[Admin, str], repo: SqlRepository) -> None:
    a, token = admin
    reply = a.http.post(
        "/privatelink/admin/tenants", json={"name": "fabrikam"}, headers=a.as_(token)
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert sorted(body) == sorted(
        [
            "url",
            "ca_file",
            "tenant_id",
            "client_id",
            "client_secret",
            "subscription_id",
            "object_id",
            "name",
        ]
    )
    assert (body["url"], body["ca_file"], body["name"]) == (BASE, "/ca.pem", "fabrikam")
    sub = repo.get_subscription(body["subscription_id"])
    assert sub is not None and sub["tenant_id"] == body["tenant_id"]
    assert sub["display_name"] == "fabrikam default"
    assert a.created == [(body["subscription_id"], body["tenant_id"], body["object_id"])]
    # The new admin signs in at once, and is the admin of its tenant.
    new_token = a.token(body["tenant_id"], body["client_id"], body["client_secret"])
    assert a.issuer.verify(new_token).object_id == body["object_id"]
    assert a.directory.is_admin(body["tenant_id"], body["object_id"])

    again = a.http.post(
        "/privatelink/admin/tenants", json={"name": "FABRIKAM"}, headers=a.as_(token)
    )
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "TenantAlreadyExists",
        "message": "A tenant named 'FABRIKAM' already exists.",
    }


def test_only_the_default_admin_may_administer(admin: tuple[Admin, str]) -> None:
    a, token = admin
    body = a.http.post(
        "/privatelink/admin/tenants", json={"name": "f"}, headers=a.as_(token)
    ).json()
    other = a.token(body["tenant_id"], body["client_id"], body["client_secret"])
    reply = a.http.get("/privatelink/admin/tenants", headers=a.as_(other))
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "AuthorizationFailed"
    # A Graph token of the default admin is not an ARM token.
    c = a.default
    graph = a.token(c.tenant_id, c.client_id, c.client_secret, f"{BASE}/graph/.default")
    reply = a.http.get("/privatelink/admin/tenants", headers=a.as_(graph))
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "InvalidAuthenticationToken"


@pytest.mark.parametrize(
    "name",
    ["", "a_b", "a.b", "../x", "x" * 64, "ümlaut", "11111111-1111-4111-8111-111111111111", 7, None],
)
def test_bad_tenant_names(admin: tuple[Admin, str], name: Any) -> None:
    a, token = admin
    reply = a.http.post("/privatelink/admin/tenants", json={"name": name}, headers=a.as_(token))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] in ("InvalidTenantName", "InvalidRequestContent")


@pytest.mark.parametrize("name", ["a", "A-1", "x" * 63, "fabrikam-prod"])
def test_good_tenant_names(name: str) -> None:
    assert check_tenant_name(name) == name


def test_list_and_show_tenants(admin: tuple[Admin, str]) -> None:
    a, token = admin
    made = a.http.post(
        "/privatelink/admin/tenants", json={"name": "fab"}, headers=a.as_(token)
    ).json()
    listed = a.http.get("/privatelink/admin/tenants", headers=a.as_(token)).json()["value"]
    assert [t["name"] for t in listed] == ["default", "fab"]
    assert [t["default"] for t in listed] == [True, False]
    assert all("client_secret" not in t for t in listed)
    shown = a.http.get(
        f"/privatelink/admin/tenants/{made['tenant_id'].upper()}", headers=a.as_(token)
    )
    assert shown.status_code == 200
    assert shown.json()["subscriptions"] == [
        {"subscription_id": made["subscription_id"], "display_name": "fab default"}
    ]
    assert shown.json() == a.http.get("/privatelink/admin/tenants/FAB", headers=a.as_(token)).json()
    missing = a.http.get("/privatelink/admin/tenants/nope", headers=a.as_(token))
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "TenantNotFound",
        "message": "The tenant 'nope' could not be found.",
    }


def test_create_subscription(admin: tuple[Admin, str], repo: SqlRepository) -> None:
    a, token = admin
    made = a.http.post(
        "/privatelink/admin/tenants", json={"name": "fab"}, headers=a.as_(token)
    ).json()
    reply = a.http.post(
        "/privatelink/admin/subscriptions",
        json={"tenant": "fab", "display_name": "fab two"},
        headers=a.as_(token),
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["tenant_id"] == made["tenant_id"] and body["display_name"] == "fab two"
    assert body["owner_object_id"] == made["object_id"]
    assert a.created[-1] == (body["subscription_id"], made["tenant_id"], made["object_id"])
    record = repo.get_subscription(body["subscription_id"])
    assert record is not None and record["tenant_id"] == made["tenant_id"]
    unknown = a.http.post(
        "/privatelink/admin/subscriptions", json={"tenant": "x"}, headers=a.as_(token)
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "TenantNotFound"
    missing = a.http.post("/privatelink/admin/subscriptions", json={}, headers=a.as_(token))
    assert missing.status_code == 400


# --- cloud metadata -----------------------------------------------------------------


def test_cloud_metadata_advertises_the_servers_graph() -> None:
    doc = cloud_metadata(BASE)
    assert doc["microsoftGraphResourceId"] == f"{BASE}/graph/"
    # az: Graph endpoint = resource id without the slash; scope = resource id + "/.default".
    arm, graph = server_audiences("127.0.0.1", 9443)
    assert doc["microsoftGraphResourceId"].rstrip("/") in graph
    assert doc["resourceManager"].rstrip("/") in arm


# --- CLI: identities for `privatelink az` -------------------------------------------


SERVER = {
    "url": "https://127.0.0.1:9443/",
    "ca_file": "/data/ca.pem",
    "tenant_id": DEFAULT_T,
    "client_id": "c1",
    "client_secret": "s1",
    "subscription_id": "sub-default",
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "credentials.json").write_text(json.dumps(SERVER))
    return d


def test_credentials_from_either_form() -> None:
    server = ServerCredentials.from_mapping(SERVER, "credentials.json")
    assert server.url == "https://127.0.0.1:9443" and server.subscription_id == "sub-default"
    sp = ServerCredentials.from_mapping(
        {"appId": "a", "password": "p", "tenant": OTHER_T, "displayName": "x"}, "sp.json", server
    )
    assert (sp.url, sp.ca_file, sp.tenant_id, sp.client_id, sp.client_secret) == (
        server.url,
        server.ca_file,
        OTHER_T,
        "a",
        "p",
    )
    assert sp.subscription_id is None
    with pytest.raises(click.ClickException, match=r"sp\.json lacks url, ca_file"):
        ServerCredentials.from_mapping({"appId": "a", "password": "p", "tenant": "t"}, "sp.json")


def test_resolve_identity(data_dir: Path, tmp_path: Path) -> None:
    creds, cfg = resolve_identity(data_dir, None)
    assert (creds.client_id, cfg) == ("c1", data_dir / "az")
    assert resolve_identity(data_dir, "default") == (creds, data_dir / "az")

    fab = dict(SERVER, tenant_id=OTHER_T, client_id="c2", subscription_id="sub-fab", name="fab")
    (data_dir / "tenants").mkdir()
    (data_dir / "tenants" / "Fab.json").write_text(json.dumps(fab))
    by_name, cfg = resolve_identity(data_dir, "fab")
    assert (by_name.client_id, by_name.subscription_id) == ("c2", "sub-fab")
    assert cfg == data_dir / "az-identities" / "fab"

    sp_file = tmp_path / "sp.json"
    sp_file.write_text(json.dumps({"appId": "c3", "password": "p", "tenant": OTHER_T}))
    by_file, cfg = resolve_identity(data_dir, str(sp_file))
    assert (by_file.client_id, by_file.url) == ("c3", "https://127.0.0.1:9443")
    assert cfg.parent == data_dir / "az-identities" and cfg.name.startswith("sp.")
    assert cfg == identity_config_dir(data_dir, None, by_file)
    # Another principal, another directory.
    assert cfg != identity_config_dir(data_dir, None, by_name)

    with pytest.raises(click.ClickException, match=r"tenants/nope.json not found.*known: Fab"):
        resolve_identity(data_dir, "nope")
    with pytest.raises(click.ClickException, match="no such file"):
        resolve_identity(data_dir, str(tmp_path / "missing.json"))


def test_login_allows_no_subscriptions_and_selects_the_identitys() -> None:
    creds = ServerCredentials.from_mapping(SERVER, "credentials.json")
    steps = setup_steps(creds)
    login = next(s for s in steps if s.argv[0] == "login")
    assert "--allow-no-subscriptions" in login.argv
    assert steps[-1].argv == ["account", "set", "--subscription", "sub-default"]
    assert steps[-1].hint is not None and "role on subscription" in steps[-1].hint
    no_sub = ServerCredentials.from_mapping(dict(SERVER, subscription_id=""), "x")
    assert all(s.argv[0] != "account" for s in setup_steps(no_sub))


@pytest.mark.parametrize(
    ("output", "hint"),
    [
        ("ERROR: AADSTS7000215: Invalid client secret provided", "refused the sign-in of c1"),
        ("ERROR: HTTPSConnectionPool(host='127.0.0.1', port=9443)", "Is `privatelink serve`"),
    ],
)
def test_a_refused_login_says_so_rather_than_asking_for_the_server(
    tmp_path: Path, output: str, hint: str
) -> None:
    """The login step fails: AADSTS (the server answered) blames the credentials."""
    (tmp_path / "bin").mkdir()
    az = tmp_path / "bin" / "az"
    az.write_text(f'#!/bin/sh\nif [ "$1" = login ]; then echo "{output}" >&2; exit 1; fi\nexit 0\n')
    az.chmod(0o755)
    creds = ServerCredentials.from_mapping(SERVER, "credentials.json")
    with pytest.raises(click.ClickException) as failed:
        ensure_setup(str(az), tmp_path, creds, {"PATH": "/usr/bin:/bin"})
    message = failed.value.message
    assert "`az login --service-principal" in message and "--password=***" in message
    assert output in message and hint in message
    assert "s1" not in message.replace("sub-default", "")


def test_stamp_changes_with_the_secret_but_holds_none() -> None:
    creds = ServerCredentials.from_mapping(SERVER, "credentials.json")
    other = ServerCredentials.from_mapping(dict(SERVER, client_secret="s2"), "credentials.json")
    assert creds.stamp() != other.stamp()
    assert "s1" not in json.dumps(creds.stamp())


# --- CLI: tenant commands -----------------------------------------------------------


def _mock_server(routes: dict[tuple[str, str], httpx.Response]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/v2.0/token"):
            return httpx.Response(200, json={"access_token": "tok", "token_type": "Bearer"})
        assert request.headers["authorization"] == "Bearer tok"
        return routes[(request.method, request.url.path)]

    return httpx.MockTransport(handler)


def _use_transport(monkeypatch: pytest.MonkeyPatch, transport: httpx.BaseTransport) -> None:
    def client(data_dir: Path) -> tenant_cli.AdminClient:
        creds = ServerCredentials.load(data_dir)
        return tenant_cli.AdminClient(data_dir, creds, transport=transport)

    monkeypatch.setattr(tenant_cli, "_client", client)


def test_tenant_create_writes_the_file(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reply = {
        "url": "https://elsewhere:1",
        "ca_file": "/server/ca.pem",
        "tenant_id": OTHER_T,
        "client_id": "c2",
        "client_secret": "s2",
        "subscription_id": "sub-fab",
        "object_id": "o2",
        "name": "fab",
    }
    routes = {("POST", "/privatelink/admin/tenants"): httpx.Response(201, json=reply)}
    _use_transport(monkeypatch, _mock_server(routes))
    result = CliRunner().invoke(main, ["tenant", "create", "fab", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    path = data_dir / "tenants" / "fab.json"
    written = json.loads(path.read_text())
    # The client's own url and CA (as in its credentials.json), the server's identity fields.
    assert written == dict(reply, url="https://127.0.0.1:9443", ca_file="/data/ca.pem")
    assert list(written) == list(tenant_cli.TENANT_FILE_FIELDS)
    assert json.loads(result.stdout) == written
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700


def test_tenant_create_conflict_exits_1(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = {
        "error": {"code": "TenantAlreadyExists", "message": "A tenant named 'fab' already exists."}
    }
    routes = {("POST", "/privatelink/admin/tenants"): httpx.Response(409, json=error)}
    _use_transport(monkeypatch, _mock_server(routes))
    result = CliRunner().invoke(main, ["tenant", "create", "fab", "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert "TenantAlreadyExists: A tenant named 'fab' already exists." in result.output
    assert not (data_dir / "tenants").exists()


def test_refused_admin_credentials(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret",
    }
    transport = httpx.MockTransport(lambda _r: httpx.Response(401, json=refused))
    _use_transport(monkeypatch, transport)
    result = CliRunner().invoke(main, ["tenant", "list", "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert "refused the admin credentials" in result.output and "AADSTS7000215" in result.output


def test_no_server_answers(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    _use_transport(monkeypatch, httpx.MockTransport(down))
    result = CliRunner().invoke(main, ["tenant", "show", "fab", "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert (
        f"no privatelink server answers at https://127.0.0.1:9443 (from "
        f"{data_dir / 'credentials.json'}): start it with `privatelink serve --data-dir "
        f"{data_dir}`"
    ) in " ".join(result.output.split())


def test_no_credentials_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["tenant", "list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "credentials.json not found" in result.output


def test_subscription_create_body(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "tok"})
        seen.append(json.loads(request.content))
        return httpx.Response(201, json={"subscription_id": "s"})

    _use_transport(monkeypatch, httpx.MockTransport(handler))
    args = [
        "subscription",
        "create",
        "--tenant",
        "fab",
        "--name",
        "two",
        "--data-dir",
        str(data_dir),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert seen == [{"tenant": "fab", "display_name": "two"}]


@pytest.mark.parametrize(
    "command",
    [
        ["tenant", "create"],
        ["tenant", "list"],
        ["tenant", "show"],
        ["subscription", "create"],
        ["exec"],
        ["cleanup"],
        ["az"],
        ["serve"],
    ],
)
def test_every_command_documents_the_data_dir_default(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "--data-dir" in text and "$PRIVATELINK_DATA_DIR" in text and "~/.privatelink" in text
