"""Identity, tenants and RBAC with the real azure-cli only (plus `privatelink tenant create`
and `privatelink az --identity`).

- `az ad sp create-for-rbac` makes a principal (Graph: application, service principal,
  password; ARM: the role assignment); its printed JSON is an `--identity` file. A Network
  Contributor on one resource group works there and is refused (`AuthorizationFailed`)
  everywhere else; `az ad sp|app list/show`, `az ad sp credential reset` (new secret in,
  old secret out) and `az ad sp delete` (no more sign-in). Graph writes are the tenant
  admin's: anyone else gets az's "Directory permission is needed" hint.
- `az role definition ...` and `az role assignment ...`: a custom role with only the
  approval action of private endpoint connections, assigned, listed, deleted (a role in
  use can't be deleted).
- The seed's workflow across tenants: the provider (the server's default admin) shares a
  private link service; tenant `fabrikam` (another directory) asks for connections by
  alias; the provider approves one and a principal holding only the custom role the
  other; the activity log shows who approved.

One server per module. Each az run costs a second or so; an identity's first run sets up
its own AZURE_CONFIG_DIR (five az runs). The module takes about two minutes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.az

LOCATION = "eastus"
NETWORK = "Microsoft.Network"
APPROVAL = f"{NETWORK}/privateLinkServices/privateEndpointConnectionsApproval/action"
CONNECTION_WRITE = f"{NETWORK}/privateLinkServices/privateEndpointConnections/write"
PEC_API = "2023-09-01"
STATE = "privateLinkServiceConnectionState"


@dataclass
class Provider:
    """The default admin's network: VNet, Standard LB, and a private link service."""

    sub: str
    rg: str
    pls_id: str
    alias: str


@dataclass
class Fabrikam:
    """Another tenant (`privatelink tenant create fabrikam`) with a VNet for endpoints."""

    creds: dict[str, Any]
    az: Any
    rg: str

    @property
    def sub(self) -> str:
        return str(self.creds["subscription_id"])


@dataclass
class Approver:
    """A principal whose only role is the custom approval role, at the service."""

    role_name: str
    app_id: str
    object_id: str
    assignment: str
    az: Any


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider(az_exe: str, az: Any, az_server: Any, az_helpers: Any) -> Provider:
    """Group, VNet (frontend + nat subnets), Standard LB and a service visible to no one
    but its own subscription (fabrikam is added by the workflow)."""
    sub = az_server.subscription
    rg = az_helpers.unique("rg-prov")
    az.run("group", "create", "-n", rg, "-l", LOCATION, "-o", "none")
    az.run(
        *("network", "vnet", "create", "-g", rg, "-n", "vnet-prov"),
        *("--address-prefixes", "10.0.0.0/16"),
        *("--subnet-name", "frontend", "--subnet-prefixes", "10.0.1.0/24", "-o", "none"),
    )
    az.run(
        *("network", "vnet", "subnet", "create", "-g", rg, "--vnet-name", "vnet-prov"),
        *("-n", "nat", "--address-prefixes", "10.0.3.0/24"),
        *("--private-link-service-network-policies", "Disabled", "-o", "none"),
    )
    az.run(
        *("network", "lb", "create", "-g", rg, "-n", "lb-prov", "--sku", "Standard"),
        *("--vnet-name", "vnet-prov", "--subnet", "frontend"),
        *("--frontend-ip-name", "fe", "--backend-pool-name", "be", "-o", "none"),
    )
    pls = az.json(
        *("network", "private-link-service", "create", "-g", rg, "-n", "pls-web"),
        *("--vnet-name", "vnet-prov", "--subnet", "nat"),
        *("--lb-name", "lb-prov", "--lb-frontend-ip-configs", "fe", "--visibility", sub),
        *("--query", "{id: id, alias: alias}"),
    )
    return Provider(sub, rg, pls["id"], pls["alias"])


@pytest.fixture(scope="module")
def fabrikam(az_exe: str, az: Any, az_server: Any, az_helpers: Any) -> Fabrikam:
    """`privatelink tenant create fabrikam`; as its admin: a group and a VNet."""
    creds = az_helpers.tenant_create(az_server.data_dir, "fabrikam")
    fab = Fabrikam(creds, az.as_("fabrikam"), az_helpers.unique("rg-cons"))
    account = fab.az.json("account", "show", "--query", "{id: id, tenant: tenantId}")
    assert account == {"id": fab.sub, "tenant": creds["tenant_id"]}
    fab.az.run("group", "create", "-n", fab.rg, "-l", LOCATION, "-o", "none")
    fab.az.run(
        *("network", "vnet", "create", "-g", fab.rg, "-n", "vnet-cons"),
        *("--address-prefixes", "10.0.0.0/16"),
        *("--subnet-name", "pe", "--subnet-prefixes", "10.0.1.0/24", "-o", "none"),
    )
    return fab


@pytest.fixture(scope="module")
def approver(
    az_exe: str, az: Any, provider: Provider, az_helpers: Any, tmp_path_factory: Any
) -> Approver:
    """A custom role with only the approval action, and a principal made by
    `az ad sp create-for-rbac` without --role that holds it at the service."""
    files = tmp_path_factory.mktemp("approver")
    role_name = az_helpers.unique("PLS approver")
    role_file = _write_json(
        files / "role.json",
        {
            "Name": role_name,
            "Description": "Approves private endpoint connections, nothing else",
            "Actions": [APPROVAL],
            "NotActions": [],
            "AssignableScopes": [f"/subscriptions/{provider.sub}"],
        },
    )
    role = az.json("role", "definition", "create", "--role-definition", f"@{role_file}")
    assert role["roleName"] == role_name and role["roleType"] == "CustomRole"
    assert role["permissions"][0]["actions"] == [APPROVAL]
    assert role["assignableScopes"] == [f"/subscriptions/{provider.sub}"]
    assert role["id"].endswith(f"/providers/Microsoft.Authorization/roleDefinitions/{role['name']}")

    # Without --role: no role assignment, only the directory objects and a password.
    name = az_helpers.unique("approver")
    sp = az.json("ad", "sp", "create-for-rbac", "-n", name)
    assert sp["displayName"] == name and sp["password"]
    oid = az.tsv("ad", "sp", "show", "--id", sp["appId"], "--query", "id")
    assert az.json("role", "assignment", "list", "--assignee", sp["appId"], "--all") == []

    assignment = az.json(
        *("role", "assignment", "create", "--assignee-object-id", oid),
        *("--assignee-principal-type", "ServicePrincipal"),
        *("--role", role_name, "--scope", provider.pls_id),
    )
    assert assignment["principalId"] == oid
    assert assignment["principalType"] == "ServicePrincipal"
    assert assignment["roleDefinitionId"] == role["id"]
    assert assignment["scope"] == provider.pls_id
    sp_file = _write_json(files / "approver.json", sp)
    return Approver(role_name, sp["appId"], oid, assignment["name"], az.as_(sp_file))


# --------------------------------------------------------------------------------------
# Principals: az ad sp / az ad app
# --------------------------------------------------------------------------------------


def test_create_for_rbac_principal_lifecycle(
    az_exe: str, az: Any, az_server: Any, az_helpers: Any, tmp_path: Path
) -> None:
    """create-for-rbac with a role on rg-a; log in as it; list/show; reset; delete."""
    sub = az_server.subscription
    rg_a, rg_b = az_helpers.unique("rg-a"), az_helpers.unique("rg-b")
    scope_a = f"/subscriptions/{sub}/resourceGroups/{rg_a}"
    name = az_helpers.unique("sp-net")
    created = az.run(
        *("ad", "sp", "create-for-rbac", "-n", name, "--role", "Network Contributor"),
        *("--scopes", scope_a, "-o", "json"),
    )
    sp = created.json()
    assert set(sp) == {"appId", "password", "displayName", "tenant"}
    assert sp["displayName"] == name
    assert sp["tenant"] == az_server.credentials["tenant_id"]
    assert len(sp["password"]) >= 32
    assert f"Creating 'Network Contributor' role assignment under scope '{scope_a}'" in (
        created.stderr
    )
    app_id = sp["appId"]
    sp_file = _write_json(tmp_path / "sp.json", sp)
    as_sp = az.as_(sp_file)

    # Network Contributor on rg-a: a VNet there, nothing in rg-b, no role assignments.
    vnet = ("network", "vnet", "create", "-n", "vnet", "-l", LOCATION, "--query", "newVNet.name")
    assert as_sp.tsv(*vnet, "-g", rg_a) == "vnet"
    refused = as_sp.fails(*vnet, "-g", rg_b, code="AuthorizationFailed")
    assert "Microsoft.Network/virtualNetworks/write" in refused.stderr
    assert f"/resourceGroups/{rg_b}/providers/Microsoft.Network/virtualNetworks/vnet" in (
        refused.stderr
    )
    # --assignee <appId>: a principal that is no admin may still read the directory.
    refused = as_sp.fails(
        *("role", "assignment", "create", "--assignee", app_id, "--role", "Reader"),
        *("--scope", scope_a),
        code="AuthorizationFailed",
    )
    assert "'Microsoft.Authorization/roleAssignments/write'" in refused.stderr
    # Graph writes are the tenant admin's: az's hint plus Graph's message.
    denied = as_sp.run("ad", "sp", "create-for-rbac", "-n", name + "-x", check=False)
    assert denied.returncode != 0
    assert "Directory permission is needed" in denied.stderr, denied
    assert "Insufficient privileges to complete the operation." in denied.stderr

    # The directory, as the admin sees it.
    (listed,) = az.json("ad", "sp", "list", "--display-name", name)
    assert (listed["appId"], listed["displayName"]) == (app_id, name)
    assert listed["servicePrincipalNames"] == [app_id]
    assert listed["appOwnerOrganizationId"] == sp["tenant"]
    shown = az.json("ad", "sp", "show", "--id", app_id)
    assert shown["id"] == listed["id"]
    (app,) = az.json("ad", "app", "list", "--display-name", name)
    assert app["appId"] == app_id and app["id"] != listed["id"]
    (cred,) = app["passwordCredentials"]
    assert cred["displayName"] == "rbac" and cred["hint"] == sp["password"][:3]
    assert cred["secretText"] is None
    assert az.json("ad", "app", "show", "--id", app_id)["id"] == app["id"]

    # A new secret: it signs in, the old one no longer does.
    reset = az.json("ad", "sp", "credential", "reset", "--id", app_id)
    assert reset["appId"] == app_id and reset["password"] != sp["password"]
    new_file = _write_json(tmp_path / "sp-new.json", reset)
    assert az.as_(new_file).tsv("network", "vnet", "list", "-g", rg_a, "--query", "[].name") == (
        "vnet"
    )
    old = as_sp.run("account", "show", check=False)
    assert old.returncode == 1
    assert "AADSTS7000215: Invalid client secret provided" in old.stderr, old
    assert "The server refused the sign-in of" in old.stderr

    # Deleted: no more sign-in (its application stays, as in Entra ID).
    az.run("ad", "sp", "delete", "--id", app_id)
    az.fails("ad", "sp", "show", "--id", app_id, code="does not exist")
    assert az.json("ad", "sp", "list", "--display-name", name) == []
    assert az.tsv("ad", "app", "show", "--id", app_id, "--query", "appId") == app_id
    gone = az.as_(new_file).run("account", "show", check=False)
    assert gone.returncode == 1
    assert f"AADSTS700016: Application with identifier '{app_id}' was not found" in gone.stderr


# --------------------------------------------------------------------------------------
# Roles: az role definition / az role assignment
# --------------------------------------------------------------------------------------


def test_role_definitions_and_assignments(
    az_exe: str, az: Any, provider: Provider, approver: Approver, az_helpers: Any, tmp_path: Path
) -> None:
    (reader,) = az.json("role", "definition", "list", "--name", "Reader")
    assert reader["name"] == "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    assert reader["roleType"] == "BuiltInRole"
    assert reader["permissions"][0]["actions"] == ["*/read"]
    custom = az.json("role", "definition", "list", "--custom-role-only", "true")
    assert approver.role_name in [r["roleName"] for r in custom]

    # --assignee <appId> resolves the principal through Graph; the same role at the same
    # scope again is az's idempotent case (ARM says RoleAssignmentExists, az shows it).
    again = az.json(
        *("role", "assignment", "create", "--assignee", approver.app_id),
        *("--role", approver.role_name, "--scope", provider.pls_id),
    )
    assert again["name"] == approver.assignment
    assert again["principalName"] == approver.app_id
    assert again["roleDefinitionName"] == approver.role_name

    # A second custom role, assigned by --assignee, listed, then deleted in order.
    group = f"/subscriptions/{provider.sub}/resourceGroups/{provider.rg}"
    temp_name = az_helpers.unique("temp reader")
    role_file = _write_json(
        tmp_path / "temp.json",
        {
            "Name": temp_name,
            "Description": "Reads private link services",
            "Actions": [f"{NETWORK}/privateLinkServices/read"],
            "AssignableScopes": [f"/subscriptions/{provider.sub}"],
        },
    )
    az.run("role", "definition", "create", "--role-definition", f"@{role_file}", "-o", "none")
    made = az.json(
        *("role", "assignment", "create", "--assignee", approver.app_id),
        *("--role", temp_name, "--scope", group),
    )
    assert (made["principalId"], made["principalType"]) == (approver.object_id, "ServicePrincipal")
    at_group = az.json(
        *("role", "assignment", "list", "--scope", group),
        *("--query", "[].{p: principalId, r: roleDefinitionName}"),
    )
    assert at_group == [{"p": approver.object_id, "r": temp_name}]
    mine = az.json(
        *("role", "assignment", "list", "--assignee", approver.app_id, "--all"),
        *("--query", "sort_by([].{r: roleDefinitionName, s: scope}, &r)"),
    )
    expected = [{"r": approver.role_name, "s": provider.pls_id}, {"r": temp_name, "s": group}]
    assert mine == sorted(expected, key=lambda a: a["r"])
    az.fails(
        "role", "definition", "delete", "--name", temp_name, code="RoleDefinitionHasAssignments"
    )
    az.run(
        *("role", "assignment", "delete", "--assignee", approver.app_id),
        *("--role", temp_name, "--scope", group),
    )
    assert az.json("role", "assignment", "list", "--scope", group) == []
    # The activity log keeps the bodies of role assignment writes: az's change log.
    changes = [
        c for c in az.json("role", "assignment", "list-changelogs") if c["roleName"] == temp_name
    ]
    assert [(c["action"], c["scope"], c["scopeType"]) for c in changes] == [
        ("Revoked", group, "Resource group"),
        ("Granted", group, "Resource group"),
    ]
    assert {(c["principalId"], c["principalName"]) for c in changes} == {
        (approver.object_id, approver.app_id)
    }
    az.run("role", "definition", "delete", "--name", temp_name)
    names = az.tsv(
        "role", "definition", "list", "--custom-role-only", "true", "--query", "[].roleName"
    )
    assert temp_name not in names.splitlines() and approver.role_name in names.splitlines()


# --------------------------------------------------------------------------------------
# The workflow across tenants
# --------------------------------------------------------------------------------------


def _in_background(run: Callable[[], Any]) -> Any:
    """Start `run` in a thread (for az's 10 s wait in `approve`); `.result()` joins it."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def test_cross_tenant_workflow(
    az_exe: str,
    az: Any,
    az_server: Any,
    provider: Provider,
    fabrikam: Fabrikam,
    approver: Approver,
) -> None:
    """Provider and consumer in two tenants; approvals by the provider and by the
    custom-role principal; the activity log says who approved."""
    p, fab = provider, fabrikam
    pe_create = (
        *("network", "private-endpoint", "create", "-g", fab.rg, "--vnet-name", "vnet-cons"),
        *("--subnet", "pe", "--private-connection-resource-id", p.alias),
    )

    # Outside the visibility, fabrikam (no role on the service) can't even find it.
    fab.az.fails(
        *pe_create, "-n", "pe-hidden", "--connection-name", "c", "--manual-request", "true",
        code="PrivateLinkServiceNotFound",
    )  # fmt: skip
    visibility = az.json(
        *("network", "private-link-service", "update", "-g", p.rg, "-n", "pls-web"),
        *("--visibility", p.sub, fab.sub, "--query", "visibility.subscriptions"),
    )
    assert sorted(visibility) == sorted([p.sub, fab.sub])

    # Now it can ask, manually; an automatic request needs the approval right.
    for name in ("pe-1", "pe-2"):
        status = fab.az.tsv(
            *pe_create, "-n", name, "--connection-name", f"{name}-conn",
            "--manual-request", "true", "--request-message", "from fabrikam",
            "--query", f"manualPrivateLinkServiceConnections[0].{STATE}.status",
        )  # fmt: skip
        assert status == "Pending"
    linked = fab.az.fails(
        *pe_create, "-n", "pe-auto", "--connection-name", "c",
        code="LinkedAuthorizationFailed",
    )  # fmt: skip
    assert f"'{APPROVAL}' on the linked scope(s) '{p.pls_id}'" in linked.stderr

    # The provider lists the requests and approves pe-1 (az then waits 10 s: meanwhile
    # the rest runs).
    conns = az.json(
        *("network", "private-endpoint-connection", "list", "--id", p.pls_id),
        *("--query", f"[].{{id: id, name: name, state: properties.{STATE}}}"),
    )
    by_pe = {c["name"].split(".")[0]: c for c in conns}
    assert sorted(by_pe) == ["pe-1", "pe-2"]
    # The request message is the pending connection's description, as in Azure.
    assert all(c["state"]["status"] == "Pending" for c in conns)
    assert all(c["state"]["description"] == "from fabrikam" for c in conns)
    conn1, conn2 = by_pe["pe-1"]["id"], by_pe["pe-2"]["id"]
    approving = _in_background(
        lambda: az.json(
            *("network", "private-endpoint-connection", "approve", "--id", conn1),
            *("--description", "welcome", "--query", f"properties.{STATE}"),
        )
    )

    # Fabrikam can't approve its own request. az itself refuses a subscription it has no
    # account for; sent anyway (az rest to a URL az does not take for its ARM endpoint,
    # with fabrikam's token), ARM answers 401 InvalidAuthenticationTokenTenant.
    not_mine = fab.az.run(
        "network", "private-endpoint-connection", "approve", "--id", conn2, check=False
    )
    assert not_mine.returncode != 0
    assert f"Subscription '{p.sub}' not found" in not_mine.stderr, not_mine
    body = {"properties": {STATE: {"status": "Approved"}}}
    wrong_tenant = fab.az.fails(
        *("rest", "--method", "put", "--resource", "https://management.core.windows.net/"),
        *("--url", f"https://localhost:{az_server.port}{conn2}?api-version={PEC_API}"),
        *("--body", json.dumps(body)),
        code="InvalidAuthenticationTokenTenant",
    )
    assert "Unauthorized(" in wrong_tenant.stderr
    assert f"/{az_server.credentials['tenant_id']}/' associated with this subscription" in (
        wrong_tenant.stderr
    )

    # The custom-role principal: the approval action, nothing else. az's approve command
    # reads the connection first (a read it lacks); the PUT alone is allowed.
    appr = approver.az
    read = appr.fails(
        "network", "private-endpoint-connection", "approve", "--id", conn2,
        code="AuthorizationFailed",
    )  # fmt: skip
    assert f"'{NETWORK}/privateLinkServices/privateEndpointConnections/read'" in read.stderr
    body["properties"][STATE]["description"] = "by the approver"
    state = appr.json(
        *("rest", "--method", "put", "--url", f"{conn2}?api-version={PEC_API}"),
        *("--body", json.dumps(body), "--query", f"properties.{STATE}"),
    )
    assert (state["status"], state["description"]) == ("Approved", "by the approver")
    appr.fails(
        "network", "private-link-service", "show", "--ids", p.pls_id, code="AuthorizationFailed"
    )
    appr.fails(
        *("network", "vnet", "create", "-g", p.rg, "-n", "nope", "-l", LOCATION),
        code="AuthorizationFailed",
    )

    approved = approving.result(timeout=120)
    assert approved == {"actionsRequired": "None", "description": "welcome", "status": "Approved"}
    # Fabrikam sees both approved.
    statuses = fab.az.json(
        *("network", "private-endpoint", "list", "-g", fab.rg),
        *("--query", f"[].{{n: name, s: manualPrivateLinkServiceConnections[0].{STATE}.status}}"),
    )
    assert sorted((s["n"], s["s"]) for s in statuses) == [
        ("pe-1", "Approved"),
        ("pe-2", "Approved"),
    ]

    # The provider's activity log: who approved which connection.
    events = az.json("monitor", "activity-log", "list", "--resource-id", p.pls_id)
    approvals = {
        e["resourceId"]: e
        for e in events
        if e["operationName"]["value"] == CONNECTION_WRITE
        and e["eventName"]["value"] == "EndRequest"
    }
    assert set(approvals) == {conn1, conn2}
    by_approver, by_provider = approvals[conn2], approvals[conn1]
    assert by_approver["status"]["value"] == "Succeeded"
    assert by_approver["caller"] == approver.object_id
    assert by_approver["claims"]["appid"] == approver.app_id
    assert by_approver["httpRequest"]["method"] == "PUT"
    assert by_provider["status"]["value"] == "Succeeded"
    assert by_provider["claims"]["appid"] == az_server.credentials["client_id"]
    # Fabrikam's refused attempt never reached the provider's subscription.
    tenants = {e["claims"]["http://schemas.microsoft.com/identity/claims/tenantid"] for e in events}
    assert tenants == {az_server.credentials["tenant_id"]}
