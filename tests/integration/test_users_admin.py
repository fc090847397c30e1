"""Users end to end: `privatelink user ...` and the users admin API against a real server.

The shared SQLite server (`server`); names are fresh per test. The CLI runs as a
subprocess, the way a user types it; the tenant admins are made through the admin API
(`identities.create_tenant`, as `privatelink tenant create` does); role assignments go
through the unmodified azure-mgmt-authorization SDK.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from identities import ROLES, Identity, create_tenant
from serverproc import free_port

pytestmark = pytest.mark.integration

LOCAL = "127.0.0.1,localhost"
CLI_TIMEOUT_S = 60.0
USER_FIELDS = ["object_id", "tenant_id", "user_principal_name", "display_name", "created"]


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m privatelink.cli.main ARGS --data-dir DIR` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "privatelink.cli.main", *args, "--data-dir", str(data_dir)],
        env=dict(os.environ, NO_PROXY=LOCAL, no_proxy=LOCAL),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def cli_json(data_dir: Path, *args: str, stdin: str | None = None) -> Any:
    proc = cli(data_dir, *args, stdin=stdin)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def fresh(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(server: Any) -> Iterator[Identity]:
    """The default tenant's admin (the server's credentials.json)."""
    identity = Identity.from_json(dict(server.credentials, url=server.url, ca_file=server.ca_file))
    yield identity
    identity.close()


@pytest.fixture
def tenants(admin: Identity) -> Iterator[list[Identity]]:
    """Two new tenants' admins."""
    made = [create_tenant(admin, fresh("ut")), create_tenant(admin, fresh("ut"))]
    yield made
    for identity in made:
        identity.close()


def test_cli_create_list_show_delete(server: Any) -> None:
    d = server.data_dir
    name = fresh("alice")
    made = cli_json(d, "user", "create", "--name", name, "--display-name", "Alice A")
    assert sorted(made) == sorted([*USER_FIELDS, "password"])
    assert made["user_principal_name"] == f"{name}@default"
    assert made["tenant_id"] == server.credentials["tenant_id"]
    assert made["display_name"] == "Alice A" and len(made["password"]) >= 20
    view = {k: made[k] for k in USER_FIELDS}

    chosen = cli_json(
        d, "user", "create", "--name", fresh("bob"), "--password-stdin", stdin="my own pass\n"
    )
    assert chosen["password"] == "my own pass"

    listed = cli_json(d, "user", "list", "--tenant", "DEFAULT")
    assert view in listed and all("password" not in u for u in listed)
    assert cli_json(d, "user", "show", name.upper()) == view
    assert (
        cli_json(d, "user", "show", made["object_id"], "--tenant", server.credentials["tenant_id"])
        == view
    )
    assert cli_json(d, "user", "delete", f"{name}@default")["deleted"] is True

    gone = cli(d, "user", "show", name)
    assert gone.returncode == 1
    assert f"UserNotFound: The user '{name}' could not be found" in " ".join(gone.stderr.split())
    again = cli(d, "user", "create", "--name", chosen["user_principal_name"].split("@")[0])
    assert again.returncode == 1 and "UserAlreadyExists" in again.stderr
    bad = cli(d, "user", "create", "--name", "no spaces")
    assert bad.returncode == 1 and "InvalidUserName" in bad.stderr
    unknown = cli(d, "user", "list", "--tenant", "no-such-tenant")
    assert unknown.returncode == 1 and "TenantNotFound" in unknown.stderr


def test_tenant_admin_creates_users(server: Any, tenants: list[Identity], tmp_path: Path) -> None:
    fab, other = tenants
    # Over HTTP with the tenant admin's own token.
    http = fab.http()
    reply = http.post(f"/privatelink/admin/tenants/{fab.name}/users", json={"name": "carol"})
    assert reply.status_code == 201, reply.text
    carol = reply.json()
    assert carol["user_principal_name"] == f"carol@{fab.name}"
    assert carol["tenant_id"] == fab.tenant_id
    # With the CLI as that admin (`--identity FILE`).
    creds = tmp_path / "fab.json"
    creds.write_text(
        json.dumps(
            {
                "url": fab.url,
                "ca_file": fab.ca_file,
                "tenant_id": fab.tenant_id,
                "client_id": fab.client_id,
                "client_secret": fab.client_secret,
            }
        )
    )
    dave = cli_json(
        server.data_dir,
        "user",
        "create",
        "--tenant",
        fab.name,
        "--name",
        "dave",
        "--identity",
        str(creds),
    )
    assert dave["user_principal_name"] == f"dave@{fab.name}"
    listed = http.get(f"/privatelink/admin/tenants/{fab.tenant_id}/users").json()["value"]
    assert [u["user_principal_name"] for u in listed] == [f"carol@{fab.name}", f"dave@{fab.name}"]

    # Another tenant's admin: 403 with an ARM error body, for every users route.
    theirs = other.http()
    base = f"/privatelink/admin/tenants/{fab.name}/users"
    for method, path in (
        ("POST", base),
        ("GET", base),
        ("GET", f"{base}/carol"),
        ("DELETE", f"{base}/carol"),
        ("GET", "/privatelink/admin/tenants/default/users"),
    ):
        refused = theirs.request(method, path, json={"name": "eve"})
        assert refused.status_code == 403, (method, path, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "AuthorizationFailed"
        assert other.oid() in error["message"]
    # Nor may it read other tenants' users with the CLI.
    other_file = tmp_path / "other.json"
    other_file.write_text(
        json.dumps(
            {
                "url": other.url,
                "ca_file": other.ca_file,
                "tenant_id": other.tenant_id,
                "client_id": other.client_id,
                "client_secret": other.client_secret,
            }
        )
    )
    proc = cli(server.data_dir, "user", "list", "--tenant", fab.name, "--identity", str(other_file))
    assert proc.returncode == 1 and "AuthorizationFailed" in proc.stderr
    assert http.delete(f"{base}/carol").status_code == 204
    assert http.get(f"{base}/carol").status_code == 404


def test_role_assignment_for_a_user(tenants: list[Identity]) -> None:
    fab, _other = tenants
    user = (
        fab.http()
        .post(f"/privatelink/admin/tenants/{fab.name}/users", json={"name": "reader"})
        .json()
    )
    sub = fab.subscription_id
    scope = f"/subscriptions/{sub}"
    role_id = f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{ROLES['Reader']}"
    client = fab.authorization(sub)
    made = client.role_assignments.create(
        scope,
        str(uuid.uuid4()),
        {
            "properties": {
                "roleDefinitionId": role_id,
                "principalId": user["object_id"],
                "principalType": "User",
            }
        },
    )
    assert made.principal_type == "User" and made.principal_id == user["object_id"]
    listed = list(
        client.role_assignments.list_for_scope(
            scope, filter=f"principalId eq '{user['object_id']}'"
        )
    )
    assert [a.principal_type for a in listed] == ["User"]
    # The directory knows it is a user: another type is refused, as ARM does.
    with pytest.raises(HttpResponseError) as info:
        client.role_assignments.create(
            f"{scope}/resourceGroups/rg",
            str(uuid.uuid4()),
            {
                "properties": {
                    "roleDefinitionId": role_id,
                    "principalId": user["object_id"],
                    "principalType": "ServicePrincipal",
                }
            },
        )
    assert info.value.status_code == 400
    assert info.value.error is not None and info.value.error.code == "UnmatchedPrincipalType"


def test_cli_says_when_no_server_answers(server: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()  # nothing listens there
    creds = dict(server.credentials, url=f"https://127.0.0.1:{port}")
    (data_dir / "credentials.json").write_text(json.dumps(creds))
    proc = cli(data_dir, "user", "list")
    assert proc.returncode == 1
    text = " ".join(proc.stderr.split())
    assert f"no privatelink server answers at https://127.0.0.1:{port}" in text
    assert f"start it with `privatelink serve --data-dir {data_dir}`" in text
