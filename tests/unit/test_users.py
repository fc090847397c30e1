"""Users without a server process: the directory's users and their passwords, the users
admin API (in-process), a role assignment's principalType for users, and the CLI's
requests.

The directory lives in a SQLite file in tmp_path; the routers run in Starlette's
TestClient; the CLI's network is an httpx.MockTransport. Each scrypt hash takes about
0.1 s, so the tests make few users.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import APIRouter, Depends, FastAPI, Request

from privatelink.api import authorization, errors
from privatelink.api.arm import check_api_version
from privatelink.cli import user as user_cli
from privatelink.cli.az import ServerCredentials
from privatelink.cli.main import main
from privatelink.cli.tenant import AdminClient
from privatelink.core.principal import Principal
from privatelink.identity.admin import AdminGate
from privatelink.identity.credentials import ClientCredentials, ensure_client, ensure_signing_key
from privatelink.identity.tokens import TokenIssuer, server_audiences
from privatelink.identity.user_admin import build_user_router
from privatelink.server import ensure_default_tenant
from privatelink.store import directory as directory_module
from privatelink.store.directory import (
    DirectoryError,
    SqlDirectory,
    Tenant,
    hash_user_password,
    verify_user_password,
)
from privatelink.store.rbac import SqlRbacStore
from privatelink.store.sql import SqlRepository

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

BASE = "https://127.0.0.1:9443"
ARM_SCOPE = "https://management.azure.com/.default"
USERS = "/privatelink/admin/tenants/{}/users"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SqlRepository]:
    store = SqlRepository.sqlite_in(tmp_path)
    yield store
    store.dispose()


@pytest.fixture
def directory(repo: SqlRepository) -> SqlDirectory:
    return SqlDirectory(repo.engine)


@pytest.fixture
def contoso(directory: SqlDirectory) -> Tenant:
    tenant, _admin, _secret = directory.create_tenant("Contoso")
    return tenant


# --- the directory ------------------------------------------------------------------


def test_create_find_list_delete(directory: SqlDirectory, contoso: Tenant) -> None:
    alice, password = directory.create_user(contoso.tenant_id, "alice", "correct horse")
    assert password == "correct horse"
    assert alice.user_principal_name == "alice@Contoso"  # the tenant's name, as created
    assert alice.tenant_id == contoso.tenant_id and alice.display_name == "alice"
    assert alice.object_id == str(uuid.UUID(alice.object_id)) and alice.object_id.islower()
    assert alice.created.endswith("Z")
    bob, generated = directory.create_user(contoso.tenant_id, "bob.b-1_x", display_name="Bob B")
    assert len(generated) >= 20 and bob.display_name == "Bob B"

    assert directory.get_user(contoso.tenant_id.upper(), alice.object_id.upper()) == alice
    assert directory.get_user(str(uuid.uuid4()), alice.object_id) is None  # another tenant
    assert directory.find_user("ALICE@contoso") == alice
    assert directory.find_user("alice") is None
    assert directory.list_users(contoso.tenant_id) == [alice, bob]
    assert directory.principal_exists(contoso.tenant_id, alice.object_id)
    assert directory.principal_kind(contoso.tenant_id, alice.object_id) == "User"
    assert directory.principal_kind(contoso.tenant_id, contoso.admin_object_id) == (
        "ServicePrincipal"
    )
    assert directory.principal_kind(contoso.tenant_id, str(uuid.uuid4())) is None

    assert directory.delete_user(contoso.tenant_id, alice.object_id)
    assert not directory.delete_user(contoso.tenant_id, alice.object_id)
    assert directory.find_user("alice@contoso") is None
    assert not directory.principal_exists(contoso.tenant_id, alice.object_id)
    assert directory.list_users(contoso.tenant_id) == [bob]


def test_users_of_other_tenants(directory: SqlDirectory, contoso: Tenant) -> None:
    fabrikam, _admin, _secret = directory.create_tenant("fabrikam")
    mine, _ = directory.create_user(contoso.tenant_id, "alice", "password-1")
    theirs, _ = directory.create_user(fabrikam.tenant_id, "alice", "password-2")
    assert directory.find_user("alice@fabrikam") == theirs
    assert directory.list_users(fabrikam.tenant_id) == [theirs]
    assert not directory.principal_exists(fabrikam.tenant_id, mine.object_id)
    assert not directory.delete_user(fabrikam.tenant_id, mine.object_id)
    assert directory.check_user_password("alice@contoso", "password-2") is None
    assert directory.check_user_password("alice@fabrikam", "password-2") == theirs


def test_password_check(directory: SqlDirectory, contoso: Tenant) -> None:
    alice, _ = directory.create_user(contoso.tenant_id, "alice", "S3cret pass")
    assert directory.check_user_password("alice@contoso", "S3cret pass") == alice
    assert directory.check_user_password(" Alice@CONTOSO ", "S3cret pass") == alice
    assert directory.check_user_password("alice@contoso", "s3cret pass") is None
    assert directory.check_user_password("alice@contoso", "") is None
    assert directory.check_user_password("nobody@contoso", "S3cret pass") is None
    assert directory.check_user_password("", "") is None


def test_the_hash_is_not_the_password(directory: SqlDirectory, contoso: Tenant) -> None:
    directory.create_user(contoso.tenant_id, "alice", "hunter2hunter2")
    directory.create_user(contoso.tenant_id, "bob", "hunter2hunter2")
    with directory.engine.connect() as conn:
        rows = conn.execute(directory_module.users.select()).all()
    hashes = [r.password_hash for r in rows]
    assert all("hunter2" not in h for h in hashes)
    assert all(h.startswith("scrypt$15$8$1$") for h in hashes)
    assert hashes[0] != hashes[1]  # a salt of its own
    assert verify_user_password("hunter2hunter2", hashes[0])
    assert not verify_user_password("hunter2hunter", hashes[0])


@pytest.mark.parametrize(
    "stored",
    ["", "scrypt", "md5$15$8$1$AAAA$AAAA", "scrypt$40$8$1$AAAA$AAAA", "scrypt$x$8$1$A$A"],
)
def test_damaged_hashes_never_match(stored: str) -> None:
    assert not verify_user_password("anything", stored)


def test_a_lone_surrogate_is_hashed_not_a_crash() -> None:
    assert verify_user_password("pass\ud800word", hash_user_password("pass\ud800word"))


def test_unknown_users_take_as_long(directory: SqlDirectory, contoso: Tenant) -> None:
    directory.create_user(contoso.tenant_id, "alice", "S3cret pass")

    def took(upn: str) -> float:
        start = time.perf_counter()
        for _ in range(3):
            directory.check_user_password(upn, "wrong password")
        return time.perf_counter() - start

    known, unknown = took("alice@contoso"), took("nobody@contoso")
    # Both do the scrypt work (about 0.1 s each); a skipped hash would be 100 times faster.
    assert unknown > known / 10 and known > unknown / 10


@pytest.mark.parametrize(
    "name", ["", ".alice", "alice.", "a b", "a@b", "ümlaut", "x" * 65, "a/b", 7, None]
)
def test_bad_names(directory: SqlDirectory, contoso: Tenant, name: Any) -> None:
    with pytest.raises(DirectoryError) as info:
        directory.create_user(contoso.tenant_id, name)
    assert info.value.code == "InvalidUserName"
    assert "1-64 letters" in info.value.message


def test_duplicate_names_in_any_case(directory: SqlDirectory, contoso: Tenant) -> None:
    directory.create_user(contoso.tenant_id, "alice", "password-1")
    with pytest.raises(DirectoryError) as info:
        directory.create_user(contoso.tenant_id, "ALICE", "password-2")
    assert info.value.code == "UserExists"
    assert info.value.message == "A user 'ALICE@Contoso' already exists."
    assert len(directory.list_users(contoso.tenant_id)) == 1


@pytest.mark.parametrize("password", ["short", "x" * 257, "nul\x00nul-nul"])
def test_bad_passwords(directory: SqlDirectory, contoso: Tenant, password: str) -> None:
    with pytest.raises(DirectoryError) as info:
        directory.create_user(contoso.tenant_id, "alice", password)
    assert info.value.code == "InvalidPassword"


@pytest.mark.parametrize("display", ["", "   ", "x" * 257, "tab\there", "lone \ud800"])
def test_bad_display_names(directory: SqlDirectory, contoso: Tenant, display: str) -> None:
    with pytest.raises(DirectoryError) as info:
        directory.create_user(contoso.tenant_id, "alice", "password-1", display)
    assert info.value.code == "InvalidDisplayName"


def test_unknown_tenant(directory: SqlDirectory) -> None:
    with pytest.raises(DirectoryError) as info:
        directory.create_user(str(uuid.uuid4()), "alice", "password-1")
    assert info.value.code == "TenantNotFound"


# --- the users admin API ------------------------------------------------------------


class Admin:
    """The users router in a TestClient, with tokens for its principals."""

    def __init__(self, http: TestClient, issuer: TokenIssuer, default: ClientCredentials) -> None:
        self.http = http
        self.issuer = issuer
        self.default = default

    def token(self, tenant: str, client: str, secret: str) -> dict[str, str]:
        token = self.issuer.issue(tenant, client, secret, ARM_SCOPE)["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def server_admin(self) -> dict[str, str]:
        c = self.default
        return self.token(c.tenant_id, c.client_id, c.client_secret)


@pytest.fixture
def admin(tmp_path: Path, directory: SqlDirectory) -> Iterator[Admin]:
    client = ensure_client(tmp_path / "data")
    ensure_default_tenant(directory, client)
    arm, graph = server_audiences("127.0.0.1", 9443)
    issuer = TokenIssuer(
        ensure_signing_key(tmp_path / "data"), directory, arm_audiences=arm, graph_audiences=graph
    )
    app = FastAPI()
    app.include_router(build_user_router(AdminGate(issuer, directory, client.tenant_id), directory))
    with TestClient(app, base_url=BASE) as http:
        yield Admin(http, issuer, client)


def test_server_admin_manages_users(admin: Admin) -> None:
    me = admin.server_admin()
    made = admin.http.post(
        USERS.format("default"),
        json={"name": "alice", "password": "S3cret pass", "displayName": "Alice"},
        headers=me,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert sorted(body) == sorted(
        ["object_id", "tenant_id", "user_principal_name", "display_name", "created", "password"]
    )
    assert (body["user_principal_name"], body["display_name"], body["password"]) == (
        "alice@default",
        "Alice",
        "S3cret pass",
    )
    assert body["tenant_id"] == admin.default.tenant_id
    view = {k: v for k, v in body.items() if k != "password"}
    listed = admin.http.get(USERS.format(admin.default.tenant_id.upper()), headers=me)
    assert listed.status_code == 200 and listed.json() == {"value": [view]}
    for ref in (body["object_id"].upper(), "ALICE@DEFAULT", "alice"):
        shown = admin.http.get(f"{USERS.format('default')}/{ref}", headers=me)
        assert shown.status_code == 200 and shown.json() == view, ref
    gone = admin.http.delete(f"{USERS.format('default')}/alice", headers=me)
    assert gone.status_code == 204 and gone.content == b""
    again = admin.http.delete(f"{USERS.format('default')}/{body['object_id']}", headers=me)
    assert again.status_code == 404 and again.json()["error"]["code"] == "UserNotFound"
    missing = admin.http.get(f"{USERS.format('nope')}", headers=me)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "TenantNotFound"


def test_generated_password(admin: Admin) -> None:
    made = admin.http.post(
        USERS.format("default"), json={"name": "bob"}, headers=admin.server_admin()
    ).json()
    assert len(made["password"]) >= 20 and made["display_name"] == "bob"


def test_tenant_admin_manages_only_its_own_users(admin: Admin, directory: SqlDirectory) -> None:
    fab, fab_admin, fab_secret = directory.create_tenant("fabrikam")
    other, other_admin, other_secret = directory.create_tenant("other")
    mine = admin.token(fab.tenant_id, fab_admin.app_id, fab_secret)
    made = admin.http.post(USERS.format("fabrikam"), json={"name": "carol"}, headers=mine)
    assert made.status_code == 201, made.text
    assert made.json()["user_principal_name"] == "carol@fabrikam"
    assert admin.http.get(USERS.format(fab.tenant_id), headers=mine).status_code == 200

    theirs = admin.token(other.tenant_id, other_admin.app_id, other_secret)
    for method, path in (
        ("POST", USERS.format("fabrikam")),
        ("GET", USERS.format("fabrikam")),
        ("GET", f"{USERS.format('fabrikam')}/carol"),
        ("DELETE", f"{USERS.format('fabrikam')}/carol"),
        ("GET", USERS.format("default")),
        ("GET", USERS.format("no-such-tenant")),  # 403 too: no probing of tenant names
    ):
        reply = admin.http.request(method, path, json={"name": "eve"}, headers=theirs)
        assert reply.status_code == 403, (method, path, reply.text)
        assert reply.json()["error"]["code"] == "AuthorizationFailed"
    # A principal of the tenant that is not its admin is refused as well.
    app = directory.create_application(fab.tenant_id, "worker")
    directory.create_service_principal(fab.tenant_id, app.app_id)
    _cred, secret = directory.add_password(fab.tenant_id, app.object_id)
    worker = admin.token(fab.tenant_id, app.app_id, secret)
    assert admin.http.get(USERS.format("fabrikam"), headers=worker).status_code == 403
    assert [u.user_principal_name for u in directory.list_users(fab.tenant_id)] == [
        "carol@fabrikam"
    ]


def test_users_api_needs_a_token(admin: Admin) -> None:
    reply = admin.http.get(USERS.format("default"))
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "AuthenticationFailed"
    assert "www-authenticate" in reply.headers


@pytest.mark.parametrize(
    ("body", "code", "status"),
    [
        (None, "InvalidRequestContent", 400),
        ([], "InvalidRequestContent", 400),
        ({}, "InvalidRequestContent", 400),
        ({"name": 7}, "InvalidRequestContent", 400),
        ({"name": "a", "password": 12345678}, "InvalidRequestContent", 400),
        ({"name": "a", "role": "Owner"}, "InvalidRequestContent", 400),
        ({"name": "a b"}, "InvalidUserName", 400),
        ({"name": "a", "password": "short"}, "InvalidPassword", 400),
        ({"name": "a", "displayName": "\x01"}, "InvalidDisplayName", 400),
        ({"name": "dup"}, "UserAlreadyExists", 409),
        ({"name": "\ud800"}, "InvalidUserName", 400),
        ({"name": "a", "displayName": "\udfff"}, "InvalidDisplayName", 400),
        ({"name": "a" * 10_000}, "InvalidUserName", 400),
    ],
)
def test_bad_create_bodies(admin: Admin, body: Any, code: str, status: int) -> None:
    me = admin.server_admin()
    if code == "UserAlreadyExists":
        assert admin.http.post(USERS.format("default"), json=body, headers=me).status_code == 201
    # json.dumps escapes lone surrogates (httpx's own encoding would refuse them).
    content = json.dumps(body).encode()
    headers = {**me, "Content-Type": "application/json"}
    reply = admin.http.post(USERS.format("default"), content=content, headers=headers)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code


def test_a_user_of_another_tenant_is_not_found_by_sign_in_name(
    admin: Admin, directory: SqlDirectory
) -> None:
    fab, _fab_admin, _secret = directory.create_tenant("fabrikam")
    directory.create_user(fab.tenant_id, "dave", "password-1")
    reply = admin.http.get(f"{USERS.format('default')}/dave@fabrikam", headers=admin.server_admin())
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "UserNotFound"


# --- role assignments for users -----------------------------------------------------

SUB = "11111111-1111-4111-8111-111111111111"
RA = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


class AsCaller:
    """ASGI middleware standing in for the gate: every request is `principal`'s."""

    def __init__(self, app: Any, principal: Principal) -> None:
        self.app = app
        self.principal = principal

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["principal"] = self.principal
        await self.app(scope, receive, send)


async def _api_version(request: Request) -> None:
    check_api_version(request)


def _assign(http: TestClient, principal: str, kind: str | None) -> httpx.Response:
    props: dict[str, Any] = {
        "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/"
        f"roleDefinitions/{READER}",
        "principalId": principal,
    }
    if kind is not None:
        props["principalType"] = kind
    return http.put(f"{RA}/{uuid.uuid4()}?api-version=2022-04-01", json={"properties": props})


def test_role_assignments_for_users(
    tmp_path: Path, directory: SqlDirectory, contoso: Tenant
) -> None:
    alice, _ = directory.create_user(contoso.tenant_id, "alice", "password-1")
    rbac = SqlRbacStore(directory.engine)
    app = FastAPI()
    errors.install(app)
    arm = APIRouter(dependencies=[Depends(_api_version)])
    arm.include_router(authorization.router)
    app.include_router(arm)
    app.state.rbac = rbac
    app.state.principal_exists = directory.principal_exists
    app.state.principal_kind = directory.principal_kind
    caller = Principal(contoso.tenant_id, contoso.admin_object_id, contoso.admin_app_id)
    app.add_middleware(AsCaller, principal=caller)
    with TestClient(app) as http:
        made = _assign(http, alice.object_id, "User")
        assert made.status_code == 201, made.text
        assert made.json()["properties"]["principalType"] == "User"
        # Without principalType the directory's type is taken, as ARM infers it.
        rbac.delete_assignment(made.json()["name"], scope=f"/subscriptions/{SUB}")
        inferred = _assign(http, alice.object_id, None)
        assert inferred.status_code == 201 and inferred.json()["properties"]["principalType"] == (
            "User"
        )
        wrong = _assign(http, alice.object_id, "ServicePrincipal")
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == (
            "UnmatchedPrincipalType"
        )
        wrong = _assign(http, contoso.admin_object_id, "user")
        assert wrong.json()["error"]["code"] == "UnmatchedPrincipalType"
        ghost = _assign(http, str(uuid.uuid4()), "User")
        assert ghost.status_code == 400 and ghost.json()["error"]["code"] == "PrincipalNotFound"
    # A token with the user's oid and tid gets the role (no app id is looked at).
    access = rbac.access_for(
        Principal(contoso.tenant_id, alice.object_id, "04b07795-8ddb-461a-bbee-02f9e1bf7b46")
    )
    assert access.allows("Microsoft.Network/privateLinkServices/read", f"/subscriptions/{SUB}")
    assert not access.allows("Microsoft.Network/privateLinkServices/write", f"/subscriptions/{SUB}")


# --- the CLI ------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    creds = {
        "url": BASE,
        "ca_file": "/data/ca.pem",
        "tenant_id": str(uuid.uuid4()),
        "client_id": "c1",
        "client_secret": "s1",
        "subscription_id": "sub",
    }
    (d / "credentials.json").write_text(json.dumps(creds))
    return d


def _use_handler(monkeypatch: pytest.MonkeyPatch, seen: list[tuple[str, str, Any]]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/v2.0/token"):
            return httpx.Response(200, json={"access_token": "tok"})
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.raw_path.decode(), body))
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith("/users") and request.method == "GET":
            return httpx.Response(200, json={"value": [{"object_id": "o"}]})
        if request.url.path.endswith("/nobody"):
            error = {"code": "UserNotFound", "message": "The user 'nobody' could not be found."}
            return httpx.Response(404, json={"error": error})
        return httpx.Response(200, json={"object_id": "o"})

    def client(data_dir: Path | None, identity: str | None) -> AdminClient:
        assert data_dir is not None and identity is None
        creds = ServerCredentials.load(data_dir)
        return AdminClient(data_dir, creds, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(user_cli, "_client", client)


def test_cli_requests(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, Any]] = []
    _use_handler(monkeypatch, seen)
    d = ["--data-dir", str(data_dir)]
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["user", "create", "--name", "alice", "--password-stdin", "--display-name", "A", *d],
        input="pass word 1\n",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"object_id": "o"}
    result = runner.invoke(main, ["user", "create", "--tenant", "fab", "--name", "bob", *d])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["user", "list", *d]).stdout.startswith("[")
    assert runner.invoke(main, ["user", "show", "alice@default", *d]).exit_code == 0
    result = runner.invoke(main, ["user", "delete", "--tenant", "a/b", "alice", *d])
    assert json.loads(result.stdout) == {"user": "alice", "tenant": "a/b", "deleted": True}
    assert seen == [
        (
            "POST",
            "/privatelink/admin/tenants/default/users",
            {"name": "alice", "password": "pass word 1", "displayName": "A"},
        ),
        ("POST", "/privatelink/admin/tenants/fab/users", {"name": "bob"}),
        ("GET", "/privatelink/admin/tenants/default/users", None),
        ("GET", "/privatelink/admin/tenants/default/users/alice%40default", None),
        ("DELETE", "/privatelink/admin/tenants/a%2Fb/users/alice", None),
    ]
    result = runner.invoke(main, ["user", "show", "nobody", *d])
    assert result.exit_code == 1
    assert "UserNotFound: The user 'nobody' could not be found." in result.output


def test_cli_empty_password_stdin(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_handler(monkeypatch, [])
    result = CliRunner().invoke(
        main,
        ["user", "create", "--name", "alice", "--password-stdin", "--data-dir", str(data_dir)],
        input="\n",
    )
    assert result.exit_code == 2 and "holds no password" in result.output


@pytest.mark.parametrize(
    "path",
    [
        "/privatelink/admin/tenants/%00/users",
        "/privatelink/admin/tenants/default/users/%00",
        "/privatelink/admin/tenants/default/users/a%40%00",
        "/privatelink/admin/tenants/default/users/" + "x" * 5000,
    ],
)
def test_odd_paths(admin: Admin, path: str) -> None:
    reply = admin.http.get(path, headers=admin.server_admin())
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"]["code"] in ("TenantNotFound", "UserNotFound")
