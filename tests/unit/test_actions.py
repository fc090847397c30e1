"""core.actions: the RBAC action and scope of each ARM request, derived from its path."""

from __future__ import annotations

import pytest

from privatelink.api.authorize import check
from privatelink.core.actions import LB_RULE_HEALTH, PLS_APPROVAL, describe
from privatelink.core.authorization import (
    BUILT_IN_ROLES,
    Access,
    AuthorizationFailed,
    RoleAssignment,
)
from privatelink.core.principal import Principal

S = "/subscriptions/11111111-1111-4111-8111-111111111111"
G = f"{S}/resourceGroups/rg"
N = f"{G}/providers/Microsoft.Network"


@pytest.mark.parametrize(
    ("method", "path", "action", "scope"),
    [
        (
            "PUT",
            f"{N}/privateLinkServices/p",
            "Microsoft.Network/privateLinkServices/write",
            f"{N}/privateLinkServices/p",
        ),
        (
            "GET",
            f"{N}/privateLinkServices/p",
            "Microsoft.Network/privateLinkServices/read",
            f"{N}/privateLinkServices/p",
        ),
        ("HEAD", G, "Microsoft.Resources/subscriptions/resourceGroups/read", G),
        (
            "DELETE",
            f"{N}/privateEndpoints/e",
            "Microsoft.Network/privateEndpoints/delete",
            f"{N}/privateEndpoints/e",
        ),
        (
            "PATCH",
            f"{N}/privateDnsZones/z/A/www",
            "Microsoft.Network/privateDnsZones/A/write",
            f"{N}/privateDnsZones/z/A/www",
        ),
        (
            "GET",
            f"{N}/virtualNetworks/v/subnets",
            "Microsoft.Network/virtualNetworks/subnets/read",
            f"{N}/virtualNetworks/v",
        ),
        (
            "PUT",
            f"{N}/virtualNetworks/v/subnets/s",
            "Microsoft.Network/virtualNetworks/subnets/write",
            f"{N}/virtualNetworks/v/subnets/s",
        ),
        (
            "POST",
            f"{S}/providers/Microsoft.Network/locations/eastus/checkPrivateLinkServiceVisibility",
            "Microsoft.Network/locations/checkPrivateLinkServiceVisibility/action",
            f"{S}/providers/Microsoft.Network/locations/eastus",
        ),
        (
            "GET",
            f"{S}/providers/Microsoft.Network/locations/eastus/autoApprovedPrivateLinkServices",
            "Microsoft.Network/locations/autoApprovedPrivateLinkServices/read",
            f"{S}/providers/Microsoft.Network/locations/eastus",
        ),
        (
            "GET",
            f"{S}/providers/Microsoft.Network/locations/eastus/operations/abc",
            "Microsoft.Network/locations/operations/read",
            f"{S}/providers/Microsoft.Network/locations/eastus/operations/abc",
        ),
        (
            "PUT",
            f"{G}/providers/Microsoft.Resources/deployments/d",
            "Microsoft.Resources/deployments/write",
            f"{G}/providers/Microsoft.Resources/deployments/d",
        ),
        (
            "POST",
            f"{G}/providers/Microsoft.Resources/deployments/d/validate",
            "Microsoft.Resources/deployments/validate/action",
            f"{G}/providers/Microsoft.Resources/deployments/d",
        ),
        (
            "GET",
            f"{G}/deployments/d/operations",
            "Microsoft.Resources/deployments/operations/read",
            f"{G}/providers/Microsoft.Resources/deployments/d",
        ),
        ("PUT", G, "Microsoft.Resources/subscriptions/resourceGroups/write", G),
        ("DELETE", G, "Microsoft.Resources/subscriptions/resourceGroups/delete", G),
        ("GET", S, "Microsoft.Resources/subscriptions/read", S),
        (
            "PUT",
            f"{S}/providers/Microsoft.Authorization/roleAssignments/a",
            "Microsoft.Authorization/roleAssignments/write",
            f"{S}/providers/Microsoft.Authorization/roleAssignments/a",
        ),
        (
            "GET",
            f"{N}/privateLinkServices/p/providers/Microsoft.Authorization/roleAssignments",
            "Microsoft.Authorization/roleAssignments/read",
            f"{N}/privateLinkServices/p",
        ),
        (
            "GET",
            "/providers/Microsoft.Authorization/roleDefinitions/x",
            "Microsoft.Authorization/roleDefinitions/read",
            "/providers/Microsoft.Authorization/roleDefinitions/x",
        ),
        (
            "POST",
            f"{N}/loadBalancers/lb/loadBalancingRules/r1/health",
            LB_RULE_HEALTH,
            f"{N}/loadBalancers/lb/loadBalancingRules/r1",
        ),
        (
            "GET",
            f"{S}/providers/Microsoft.Insights/eventtypes/management/values",
            "Microsoft.Insights/eventtypes/values/read",
            f"{S}/providers/Microsoft.Insights/eventtypes/management",
        ),
    ],
)
def test_action_and_scope(method: str, path: str, action: str, scope: str) -> None:
    found = describe(method, path)
    assert found is not None
    assert (found.action, found.scope) == (action, scope)
    assert not found.collection


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        (f"{N}/privateLinkServices", G),
        (f"{S}/providers/Microsoft.Network/privateEndpoints", S),
        (f"{S}/resourceGroups", S),
        (f"{G}/resources", G),
    ],
)
def test_lists_of_tracked_resources_are_filtered_not_refused(path: str, scope: str) -> None:
    found = describe("GET", path)
    assert found is not None and found.collection and found.scope == scope


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_connection_changes_also_allowed_by_the_approval_action(method: str) -> None:
    found = describe(method, f"{N}/privateLinkServices/p/privateEndpointConnections/c")
    assert found is not None
    assert found.alternatives == (PLS_APPROVAL,)
    assert found.action.startswith(
        "Microsoft.Network/privateLinkServices/privateEndpointConnections/"
    )


def test_connection_reads_have_no_alternative() -> None:
    found = describe("GET", f"{N}/privateLinkServices/p/privateEndpointConnections/c")
    assert found is not None and found.alternatives == ()


@pytest.mark.parametrize("path", ["/subscriptions", "/tenants", "/metadata/endpoints", "/"])
def test_unchecked_paths(path: str) -> None:
    assert describe("GET", path) is None


def test_subscription_of_scope() -> None:
    found = describe("GET", f"{N}/privateLinkServices/p")
    assert found is not None and found.subscription == S.split("/")[2]
    root = describe("GET", "/providers/Microsoft.Authorization/roleDefinitions")
    assert root is not None and root.subscription == "" and root.scope == "/"


# --- the enforcement decision (api.authorize.check) over these descriptions -------------


def _access(role: str, scope: str) -> Access:
    principal = Principal("t", "0000000a-0000-4000-8000-000000000000", "c")
    assignment = RoleAssignment("a", scope, role, principal.object_id, "ServicePrincipal")
    return Access(principal, [assignment], BUILT_IN_ROLES)


READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"


def _allowed(access: Access, method: str, path: str) -> bool:
    described = describe(method, path)
    assert described is not None
    try:
        check(access, described)
    except AuthorizationFailed:
        return False
    return True


def test_a_list_is_served_to_a_caller_with_some_role_below_it() -> None:
    in_group = _access(NETWORK_CONTRIBUTOR, G)
    assert _allowed(in_group, "GET", f"{S}/providers/Microsoft.Network/virtualNetworks")
    elsewhere = _access(NETWORK_CONTRIBUTOR, f"{S}/resourceGroups/other")
    assert _allowed(elsewhere, "GET", f"{S}/providers/Microsoft.Network/virtualNetworks")
    nobody = _access(READER, "/subscriptions/22222222-2222-4222-8222-222222222222")
    assert not _allowed(nobody, "GET", f"{S}/providers/Microsoft.Network/virtualNetworks")


def test_subscription_and_operation_reads_need_only_some_role_in_it() -> None:
    in_group = _access(NETWORK_CONTRIBUTOR, G)
    assert _allowed(in_group, "GET", S)
    assert _allowed(in_group, "GET", f"{S}/providers/Microsoft.Network/locations/l/operations/x")
    nobody = _access(READER, "/subscriptions/22222222-2222-4222-8222-222222222222")
    assert not _allowed(nobody, "GET", S)


def test_writes_follow_the_roles() -> None:
    reader = _access(READER, G)
    assert _allowed(reader, "GET", f"{N}/privateLinkServices/p")
    assert not _allowed(reader, "PUT", f"{N}/privateLinkServices/p")
    netc = _access(NETWORK_CONTRIBUTOR, G)
    assert _allowed(netc, "PUT", f"{N}/privateLinkServices/p")
    assert _allowed(netc, "PUT", f"{N}/privateLinkServices/p/privateEndpointConnections/c")
    assert not _allowed(netc, "PUT", f"{S}/providers/Microsoft.Authorization/roleAssignments/a")
    assert not _allowed(netc, "PUT", f"{S}/resourceGroups/rg2/providers/Microsoft.Network/x/y")


def test_asking_for_ones_permissions_needs_only_some_role_in_the_subscription() -> None:
    path = f"{N}/privateLinkServices/p/providers/Microsoft.Authorization/permissions"
    described = describe("GET", path)
    assert described is not None
    assert described.action == "Microsoft.Authorization/permissions/read"
    assert described.scope == f"{N}/privateLinkServices/p"
    elsewhere = _access(NETWORK_CONTRIBUTOR, f"{S}/resourceGroups/other")
    assert _allowed(elsewhere, "GET", path)
    assert _allowed(elsewhere, "GET", f"{G}/providers/Microsoft.Authorization/permissions")
    nobody = _access(READER, "/subscriptions/22222222-2222-4222-8222-222222222222")
    assert not _allowed(nobody, "GET", path)
    assert not _allowed(nobody, "GET", f"{S}/providers/Microsoft.Authorization/permissions")


def test_a_rules_health_is_an_action_a_reader_may_not_take() -> None:
    # Azure publishes it as .../health/action, not a read: `*/read` does not reach it.
    path = f"{N}/loadBalancers/lb/loadBalancingRules/r1/health"
    assert not _allowed(_access(READER, G), "POST", path)
    assert _allowed(_access(NETWORK_CONTRIBUTOR, G), "POST", path)
