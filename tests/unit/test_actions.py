"""core.actions: the RBAC action and scope of each ARM request, derived from its path."""

from __future__ import annotations

import pytest

from privatelink.core.actions import PLS_APPROVAL, describe

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
