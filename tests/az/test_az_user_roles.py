"""Roles for users by sign-in name, with the real azure-cli (Graph users, identity/graph.py).

`az role assignment create --assignee alice@<tenant>` resolves the user through Graph
(`GET /users?$filter=userPrincipalName eq '...'`) and sends `principalType: User`;
`az role assignment list --assignee ...` does the same lookup, then fills in
`principalName` from `POST /directoryObjects/getByIds`. `az ad user show|list` read the
same users. A user of another tenant is not found. The user is made with `privatelink
user create` (the admin API); az runs as the server's admin.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.az

LOCAL = "127.0.0.1,localhost"


def test_role_assignment_by_user_principal_name(
    az_exe: str, az: Any, az_server: Any, az_helpers: Any
) -> None:
    data_dir = az_server.data_dir
    alice = az_helpers.privatelink_json(
        data_dir, "user", "create", "--name", "alice", "--display-name", "Alice Liddell"
    )
    upn, object_id = alice["user_principal_name"], alice["object_id"]
    scope = f"/subscriptions/{az_server.subscription}"

    shown = az.json("ad", "user", "show", "--id", upn)
    assert shown["id"] == object_id and shown["userPrincipalName"] == upn
    assert shown["displayName"] == "Alice Liddell" and shown["mail"] is None
    listed = az.json("ad", "user", "list", "--display-name", "Alice")
    assert [u["userPrincipalName"] for u in listed] == [upn]

    made = az.json(
        *("role", "assignment", "create", "--assignee", upn),
        *("--role", "Reader", "--scope", scope),
    )
    assert made["principalId"] == object_id
    assert made["principalType"] == "User"
    assert made["scope"] == scope

    found = az.json("role", "assignment", "list", "--assignee", upn, "--scope", scope)
    assert [(a["principalId"], a["principalType"]) for a in found] == [(object_id, "User")]
    assert found[0]["principalName"] == upn  # from getByIds' #microsoft.graph.user
    assert found[0]["roleDefinitionName"] == "Reader"
    # the name is matched in any case, and the object id works as well
    again = az.json("role", "assignment", "list", "--assignee", upn.upper(), "--scope", scope)
    assert [a["id"] for a in again] == [made["id"]]
    by_id = az.json("role", "assignment", "list", "--assignee", object_id, "--scope", scope)
    assert [a["principalType"] for a in by_id] == ["User"]

    # Another tenant's user is not visible to this tenant's Graph.
    az_helpers.tenant_create(data_dir, "fabrikam")
    bob = az_helpers.privatelink_json(
        data_dir, "user", "create", "--name", "bob", "--tenant", "fabrikam"
    )
    refused = az.run(
        *("role", "assignment", "create", "--assignee", bob["user_principal_name"]),
        *("--role", "Reader", "--scope", scope),
        check=False,
    )
    assert refused.returncode != 0
    assert "Cannot find user or service principal in graph database" in refused.stderr

    az.run(
        *("role", "assignment", "delete", "--assignee", upn),
        *("--role", "Reader", "--scope", scope),
    )
    assert az.json("role", "assignment", "list", "--assignee", upn, "--scope", scope) == []
