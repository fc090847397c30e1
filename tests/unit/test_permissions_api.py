"""Microsoft.Authorization/permissions: what the caller may do at a scope, with enforcement.

A minimal app (the authorization router behind the api-version check and the real
enforcement dependency, the canonical-path middleware, the real `SqlRbacStore`); the
caller is the principal named by an `x-caller` header, standing in for the gate.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from header_caller import AsHeaderCaller, arm_request
from sqlalchemy import create_engine

from privatelink.api import authorization, errors
from privatelink.api.paths import CanonicalPathMiddleware
from privatelink.core.authorization import (
    BUILT_IN_ROLES,
    Access,
    Permission,
    RoleAssignment,
    RoleDefinition,
)
from privatelink.core.principal import Principal
from privatelink.store.rbac import SqlRbacStore

with warnings.catch_warnings():
    # Starlette's TestClient warns at import about its httpx use (warnings are errors).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TENANT = "aaaaaaaa-0000-4000-8000-000000000001"
SUB = "11111111-1111-4111-8111-111111111111"
OTHER_SUB = "22222222-2222-4222-8222-222222222222"
S = f"/subscriptions/{SUB}"
RG = f"{S}/resourceGroups/rg-a"
RG_B = f"{S}/resourceGroups/rg-b"
PLS = f"{RG}/providers/Microsoft.Network/privateLinkServices/pls-web"
SUBNET = f"{RG}/providers/Microsoft.Network/virtualNetworks/v1/subnets/s1"
PERMS = "providers/Microsoft.Authorization/permissions"
V = "?api-version=2022-04-01"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
APPROVAL = "Microsoft.Network/privateLinkServices/privateEndpointConnectionsApproval/action"
APPROVER = "eeeeeeee-0000-4000-8000-000000000001"
APPROVER_ROLE = RoleDefinition(
    id=APPROVER,
    role_name="PLS Approver",
    description="Approves private endpoint connections.",
    role_type="CustomRole",
    permissions=(
        Permission(actions=(APPROVAL,)),
        Permission(
            actions=("Microsoft.Network/privateLinkServices/*",),
            not_actions=("Microsoft.Network/privateLinkServices/delete",),
        ),
    ),
    assignable_scopes=(S,),
)


def entry(actions: list[str], not_actions: list[str] | None = None) -> dict[str, Any]:
    return {
        "actions": actions,
        "notActions": not_actions or [],
        "dataActions": [],
        "notDataActions": [],
    }


def block(role: str) -> list[dict[str, Any]]:
    """A built-in role's permission entries, as the API renders them."""
    return [entry(list(p.actions), list(p.not_actions)) for p in BUILT_IN_ROLES[role].permissions]


READER_ENTRY = entry(["*/read"])


def build_app(store: SqlRbacStore, *, enforce: bool = True) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(authorization.router, dependencies=[Depends(arm_request)])
    app.state.rbac = store
    app.state.access_for = store.access_for if enforce else None
    app.add_middleware(AsHeaderCaller, tenant=TENANT)
    app.add_middleware(CanonicalPathMiddleware)  # outermost, as in the server
    return app


@pytest.fixture
def store(tmp_path: Path) -> SqlRbacStore:
    rbac = SqlRbacStore(create_engine(f"sqlite:///{tmp_path / 'rbac.db'}"))
    rbac.put_definition(APPROVER_ROLE, TENANT)
    return rbac


@pytest.fixture
def client(store: SqlRbacStore) -> Iterator[TestClient]:
    with TestClient(build_app(store)) as c:
        yield c


def principal() -> str:
    return str(uuid.uuid4())


def grant(store: SqlRbacStore, who: str, role: str, scope: str) -> None:
    assignment = RoleAssignment(str(uuid.uuid4()), scope, role, who, "ServicePrincipal")
    store.create_assignment(assignment, TENANT)


def ask(client: TestClient, who: str, scope: str, query: str = V) -> Any:
    return client.get(f"{scope}/{PERMS}{query}", headers={"x-caller": who})


def permissions(client: TestClient, who: str, scope: str) -> list[dict[str, Any]]:
    r = ask(client, who, scope)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"value", "nextLink"} and body["nextLink"] is None
    value: list[dict[str, Any]] = body["value"]
    return value


def test_reader_at_the_subscription_reads_everywhere_below(
    client: TestClient, store: SqlRbacStore
) -> None:
    reader = principal()
    grant(store, reader, READER, S)
    for scope in (S, RG, PLS, SUBNET):
        assert permissions(client, reader, scope) == [READER_ENTRY], scope
    # As the SDK sends them: lower-case literals, and `//` for an empty parentResourcePath.
    lower = f"{S}/resourcegroups/rg-a/providers/Microsoft.Network//privateLinkServices/pls-web"
    r = client.get(
        f"{lower}/providers/microsoft.authorization/Permissions{V}", headers={"x-caller": reader}
    )
    assert r.status_code == 200 and r.json()["value"] == [READER_ENTRY]
    # The preview api-version answers the same.
    r = ask(client, reader, RG, "?api-version=2022-05-01-preview")
    assert r.status_code == 200 and r.json()["value"] == [READER_ENTRY]


def test_owner_and_a_custom_role_give_an_entry_per_permission_block(
    client: TestClient, store: SqlRbacStore
) -> None:
    admin = principal()
    grant(store, admin, OWNER, S)
    grant(store, admin, APPROVER, RG)
    both = [
        *block(OWNER),
        entry([APPROVAL]),
        entry(
            ["Microsoft.Network/privateLinkServices/*"],
            ["Microsoft.Network/privateLinkServices/delete"],
        ),
    ]
    assert permissions(client, admin, RG) == both
    assert permissions(client, admin, PLS) == both
    # The custom role is assigned below the subscription: not in force there.
    assert permissions(client, admin, S) == block(OWNER)
    # The same role twice (subscription and group) is listed once.
    grant(store, admin, OWNER, RG)
    assert permissions(client, admin, RG) == both


def test_a_role_on_another_group_does_not_show(client: TestClient, store: SqlRbacStore) -> None:
    who = principal()
    grant(store, who, READER, RG)
    grant(store, who, CONTRIBUTOR, RG_B)
    assert permissions(client, who, RG) == [READER_ENTRY]
    assert permissions(client, who, PLS) == [READER_ENTRY]
    assert permissions(client, who, RG_B) == block(CONTRIBUTOR)
    # A role somewhere in the subscription lets the caller ask anywhere in it; where none
    # of its roles holds, the answer is empty (ARM's rule for subscription-wide reads).
    assert permissions(client, who, S) == []
    assert permissions(client, who, f"{S}/resourceGroups/rg-c") == []


def test_a_custom_role_without_read_may_ask(client: TestClient, store: SqlRbacStore) -> None:
    approver = principal()
    grant(store, approver, APPROVER, PLS)
    assert len(permissions(client, approver, PLS)) == 2
    assert permissions(client, approver, RG) == []


def test_a_caller_without_a_role_in_the_subscription_is_refused(
    client: TestClient, store: SqlRbacStore
) -> None:
    nobody, elsewhere = principal(), principal()
    grant(store, elsewhere, OWNER, f"/subscriptions/{OTHER_SUB}")
    for who in (nobody, elsewhere):
        for scope in (S, RG, PLS):
            r = ask(client, who, scope)
            assert r.status_code == 403, r.text
            error = r.json()["error"]
            assert error["code"] == "AuthorizationFailed"
            assert "Microsoft.Authorization/permissions/read" in error["message"]
            assert who in error["message"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"{RG}/providers/Microsoft.Network/{PERMS}", 400, "InvalidScope"),
        (f"{RG}/providers/Microsoft.Network/privateLinkServices/{PERMS}", 400, "InvalidScope"),
        (f"{S}/resourceGroups/bad!group/{PERMS}", 400, "InvalidScope"),
        (f"{S}/resourceGroups/{PERMS}", 400, "InvalidScope"),
        (f"{S}/somethingElse/x/{PERMS}", 400, "InvalidScope"),
        (f"{S}/providers/Microsoft.Authorization/roleAssignments/x/{PERMS}", 400, "InvalidScope"),
        (f"{S}/resourceGroups/rg-a/{PERMS}/x", 404, None),
    ],
)
def test_bad_paths_are_arm_errors(
    client: TestClient, store: SqlRbacStore, path: str, status: int, code: str | None
) -> None:
    owner = principal()
    grant(store, owner, OWNER, S)
    r = client.get(f"{path}{V}", headers={"x-caller": owner})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


def test_bad_requests_are_arm_errors(client: TestClient, store: SqlRbacStore) -> None:
    owner = principal()
    grant(store, owner, OWNER, S)
    headers = {"x-caller": owner}
    r = client.get(f"{RG}/{PERMS}", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    r = client.get(f"/{PERMS}{V}", headers=headers)
    assert 400 <= r.status_code < 500 and r.json()["error"]["code"]
    for method in ("PUT", "POST", "DELETE"):
        r = client.request(method, f"{RG}/{PERMS}{V}", headers=headers)
        assert 400 <= r.status_code < 500 and r.json()["error"]["code"], method
    # An anonymous request never reaches the roles.
    r = client.get(f"{RG}/{PERMS}{V}")
    assert r.status_code == 401 and r.json()["error"]["code"]


def test_authorization_off_allows_everything(store: SqlRbacStore) -> None:
    with TestClient(build_app(store, enforce=False)) as c:
        assert permissions(c, principal(), PLS) == [entry(["*"])]


def test_access_roles_at_follows_scope_containment() -> None:
    me = Principal(TENANT, "0000000a-0000-4000-8000-000000000000", "c")
    grants = [(OWNER, S), (READER, RG), (APPROVER, PLS), (READER, RG_B), (CONTRIBUTOR, "/")]
    access = Access(
        me,
        [
            RoleAssignment(f"{i:08x}", scope, role, me.object_id, "User")
            for i, (role, scope) in enumerate(grants)
        ],
        {**BUILT_IN_ROLES, APPROVER: APPROVER_ROLE},
    )
    names = [r.role_name for r in access.roles_at(PLS.upper())]
    assert names == ["Contributor", "Owner", "Reader", "PLS Approver"]
    assert [r.role_name for r in access.roles_at(RG_B)] == ["Contributor", "Owner", "Reader"]
    assert [r.role_name for r in access.roles_at(f"/subscriptions/{OTHER_SUB}")] == ["Contributor"]
    assert len(access.permissions_at(PLS)) == 5
