"""The pure RBAC core: action matching, scopes, built-in roles, Access, wire helpers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privatelink.core import authorization as rbac
from privatelink.core.authorization import (
    ALLOW_ALL,
    BUILT_IN_ROLES,
    CONTRIBUTOR,
    CUSTOM,
    NETWORK_CONTRIBUTOR,
    OWNER,
    PRIVATE_DNS_ZONE_CONTRIBUTOR,
    READER,
    USER_ACCESS_ADMINISTRATOR,
    Access,
    AssignmentFilter,
    DefinitionFilter,
    Permission,
    RoleAssignment,
    RoleDefinition,
)
from privatelink.core.errors import ArmError
from privatelink.core.principal import Principal

SUB = "11111111-1111-4111-8111-111111111111"
OTHER_SUB = "22222222-2222-4222-8222-222222222222"
S = f"/subscriptions/{SUB}"
RG1 = f"{S}/resourceGroups/rg1"
RG10 = f"{S}/resourceGroups/rg10"
PLS = f"{RG1}/providers/Microsoft.Network/privateLinkServices/pls1"
VNET = f"{RG1}/providers/Microsoft.Network/virtualNetworks/v1"
OID = "33333333-3333-4333-8333-333333333333"
ME = Principal("44444444-4444-4444-8444-444444444444", OID, "55555555-5555-4555-8555-555555555555")

NET_WRITE = "Microsoft.Network/privateLinkServices/write"
NET_READ = "Microsoft.Network/privateLinkServices/read"
RA_WRITE = "Microsoft.Authorization/roleAssignments/write"
RA_READ = "Microsoft.Authorization/roleAssignments/read"
RD_WRITE = "Microsoft.Authorization/roleDefinitions/write"

_n = 0


def assign(scope: str, role: RoleDefinition | str) -> RoleAssignment:
    global _n
    _n += 1
    guid = role if isinstance(role, str) else role.id
    return RoleAssignment(
        name=f"00000000-0000-4000-8000-{_n:012d}",
        scope=scope,
        role_definition_id=guid,
        principal_id=OID,
        principal_type="ServicePrincipal",
    )


def access(*assignments: RoleAssignment, extra: tuple[RoleDefinition, ...] = ()) -> Access:
    definitions = dict(BUILT_IN_ROLES)
    definitions.update({d.id: d for d in extra})
    return Access(ME, assignments, definitions)


def custom(
    actions: tuple[str, ...],
    not_actions: tuple[str, ...] = (),
    scopes: tuple[str, ...] = (S,),
    guid: str = "66666666-6666-4666-8666-666666666666",
) -> RoleDefinition:
    return RoleDefinition(
        id=guid,
        role_name="Custom",
        description="",
        role_type=CUSTOM,
        permissions=(Permission(actions=actions, not_actions=not_actions),),
        assignable_scopes=scopes,
    )


# --- action matching -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", NET_WRITE, True),
        ("*", "anything/at/all", True),
        ("*/read", NET_READ, True),
        ("*/read", NET_WRITE, False),
        ("*/read", "Microsoft.Network/privateLinkServices/privateEndpointConnections/read", True),
        ("Microsoft.Network/*", NET_WRITE, True),
        ("Microsoft.Network/*", "Microsoft.Compute/virtualMachines/write", False),
        ("Microsoft.Network/*", "Microsoft.NetworkFunction/x/read", False),
        (
            "Microsoft.Network/privateLinkServices/*/read",
            "Microsoft.Network/privateLinkServices/privateEndpointConnections/read",
            True,
        ),
        ("Microsoft.Network/privateLinkServices/*/read", NET_READ, False),
        ("Microsoft.Network/privateLinkServices/*/read", NET_WRITE, False),
        ("microsoft.network/*", NET_WRITE, True),
        ("Microsoft.Authorization/*/Write", RA_WRITE, True),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/roleAssignments/delete",
            True,
        ),
        ("Microsoft.Authorization/*/Write", RA_READ, False),
        (NET_READ, NET_READ + "x", False),
        (NET_READ, "x" + NET_READ, False),
        ("Microsoft.Network/a.b", "Microsoft.Network/aXb", False),
        ("Microsoft.Network/a.b", "Microsoft.Network/a.b", True),
        ("", NET_READ, False),
    ],
)
def test_action_matching(pattern: str, action: str, expected: bool) -> None:
    assert rbac.action_matches(pattern, action) is expected


_SEGMENT = st.text(alphabet="abcXYZ.-_", min_size=1, max_size=8)
_ACTION = st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join)


@given(_ACTION)
def test_any_action_matches_itself_in_any_casing_and_star(action: str) -> None:
    assert rbac.action_matches(action.swapcase(), action)
    assert rbac.action_matches("*", action)
    assert rbac.action_matches(action.split("/")[0] + "/*", action) == ("/" in action)


@given(_ACTION, _ACTION)
def test_matching_without_stars_is_case_insensitive_equality(pattern: str, action: str) -> None:
    assert rbac.action_matches(pattern, action) == (pattern.lower() == action.lower())


@given(st.lists(_ACTION, max_size=6), _ACTION)
def test_compiled_list_is_the_union_of_single_patterns(patterns: list[str], action: str) -> None:
    patterns = [p + "*" if i % 2 else p for i, p in enumerate(patterns)]
    combined = rbac.compile_patterns(patterns)(action)
    assert combined == any(rbac.action_matches(p, action) for p in patterns)


# --- scopes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("/", PLS, True),
        ("/", "/", True),
        (S, S, True),
        (S, RG1, True),
        (S, PLS, True),
        (S.upper(), PLS, True),
        (S + "/", PLS.lower(), True),
        (RG1, PLS, True),
        (RG1, RG10, False),
        (RG10, PLS, False),
        (f"/subscriptions/{SUB[:-1]}", S, False),
        (PLS, RG1, False),
        (PLS, f"{PLS}/privateEndpointConnections/c1", True),
        (PLS, PLS + "2", False),
        (f"/subscriptions/{OTHER_SUB}", PLS, False),
    ],
)
def test_scope_containment(outer: str, inner: str, expected: bool) -> None:
    assert rbac.scope_contains(outer, inner) is expected


def test_ancestor_keys_run_from_root_to_the_scope() -> None:
    assert list(rbac.ancestor_keys(RG1)) == [
        "/",
        "/subscriptions",
        S.lower(),
        f"{S}/resourceGroups".lower(),
        RG1.lower(),
    ]
    assert list(rbac.ancestor_keys("/")) == ["/"]
    assert list(rbac.ancestor_keys(S + "/")) == ["/", "/subscriptions", S.lower()]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (S, S),
        (S + "/", S),
        (f"/subscriptions/{SUB}/resourcegroups/rg1", RG1),
        (f"SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/rg1", RG1),
        (PLS, PLS),
        (PLS.replace("/providers/", "/PROVIDERS/"), PLS),
        (
            f"{S}/providers/Microsoft.Network/privateDnsZones/z.example",
            f"{S}/providers/Microsoft.Network/privateDnsZones/z.example",
        ),
        (f"{VNET}/subnets/s1", f"{VNET}/subnets/s1"),
    ],
)
def test_parse_scope_canonical(raw: str, canonical: str) -> None:
    assert rbac.parse_scope(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("", rbac.MissingSubscription),
        ("/", rbac.MissingSubscription),
        ("/providers/Microsoft.Management/managementGroups/mg1", rbac.InvalidScope),
        ("/providers/Microsoft.Network", rbac.MissingSubscription),
        ("/subscriptions/not-a-guid", rbac.InvalidScope),
        ("/subscriptions", rbac.InvalidScope),
        ("/tenants/x", rbac.InvalidScope),
        (f"{S}//resourceGroups/rg", rbac.InvalidScope),
        (f"{S}/resourceGroups", rbac.InvalidScope),
        (f"{S}/resourceGroups/bad*name", rbac.InvalidScope),
        (f"{RG1}/providers/Microsoft.Network/privateLinkServices", rbac.InvalidScope),
        (f"{RG1}/somethingElse/x", rbac.InvalidScope),
        (f"{RG1}/providers/Microsoft.Authorization/roleAssignments/x", rbac.InvalidScope),
        (f"{PLS}/providers/Microsoft.Insights/diagnosticSettings/d", rbac.InvalidScope),
        (f"{S}/resourceGroups/a\x00b", rbac.InvalidScope),
        (S + "/resourceGroups/" + "a" * 2000, rbac.InvalidScope),
    ],
)
def test_parse_scope_refusals(raw: str, error: type[ArmError]) -> None:
    with pytest.raises(error):
        rbac.parse_scope(raw)


def test_root_scope_only_when_allowed() -> None:
    assert rbac.parse_scope("/", allow_root=True) == "/"
    assert rbac.parse_scope("", allow_root=True) == "/"


# --- built-in roles -----------------------------------------------------------------------


def test_built_in_role_guids_are_azures() -> None:
    expected = {
        "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "Network Contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7",
        "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "Private DNS Zone Contributor": "b12aa53e-6015-4669-85d0-8515ebb3ae7f",
        "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    }
    assert {r.role_name: r.id for r in BUILT_IN_ROLES.values()} == expected
    for role in BUILT_IN_ROLES.values():
        assert role.role_type == rbac.BUILT_IN and role.assignable_scopes == ("/",)
        assert rbac.built_in_role(role.role_name.upper()) is role
        assert rbac.built_in_role(role.id.upper()) is role
    assert rbac.built_in_role("nobody") is None


READS = (NET_READ, "Microsoft.Resources/subscriptions/resourceGroups/read", RA_READ)


@pytest.mark.parametrize(
    ("role", "allowed", "denied"),
    [
        (OWNER, (*READS, NET_WRITE, RA_WRITE, RD_WRITE, "Microsoft.Foo/bar/action"), ()),
        (
            CONTRIBUTOR,
            (*READS, NET_WRITE, "Microsoft.Network/virtualNetworks/delete"),
            (
                RA_WRITE,
                "Microsoft.Authorization/roleAssignments/delete",
                RD_WRITE,
                "Microsoft.Authorization/elevateAccess/action",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Subscription/cancel/action",
            ),
        ),
        (READER, READS, (NET_WRITE, RA_WRITE, "Microsoft.Network/virtualNetworks/delete")),
        (
            NETWORK_CONTRIBUTOR,
            (
                *READS,
                NET_WRITE,
                "Microsoft.Network/virtualNetworks/subnets/join/action",
                "Microsoft.Resources/deployments/write",
            ),
            (RA_WRITE, "Microsoft.Compute/virtualMachines/write", RD_WRITE),
        ),
        (
            USER_ACCESS_ADMINISTRATOR,
            (*READS, RA_WRITE, "Microsoft.Authorization/roleAssignments/delete", RD_WRITE),
            (NET_WRITE, "Microsoft.Network/virtualNetworks/delete"),
        ),
        (
            PRIVATE_DNS_ZONE_CONTRIBUTOR,
            (
                "Microsoft.Network/privateDnsZones/write",
                "Microsoft.Network/privateDnsZones/virtualNetworkLinks/write",
                "Microsoft.Network/virtualNetworks/join/action",
                "Microsoft.Network/virtualNetworks/read",
                RA_READ,
            ),
            ("Microsoft.Network/virtualNetworks/write", NET_WRITE, NET_READ, RA_WRITE),
        ),
    ],
    ids=lambda v: v.role_name if isinstance(v, RoleDefinition) else None,
)
def test_built_in_roles(role: RoleDefinition, allowed: tuple[str, ...], denied: tuple[str, ...]):
    a = access(assign(S, role))
    for action in allowed:
        assert a.allows(action, PLS), action
        assert rbac.role_allows(role, action)
    for action in denied:
        assert not a.allows(action, PLS), action


# --- evaluation ----------------------------------------------------------------------------


def test_not_actions_subtract_within_a_role_but_not_across_roles() -> None:
    assert not access(assign(S, CONTRIBUTOR)).allows(RA_WRITE, RG1)
    both = access(assign(S, CONTRIBUTOR), assign(RG1, USER_ACCESS_ADMINISTRATOR))
    assert both.allows(RA_WRITE, PLS)
    assert both.allows(NET_WRITE, PLS)
    assert not both.allows(RA_WRITE, RG10)  # UAA only at rg1


def test_not_actions_apply_per_permission_block() -> None:
    role = RoleDefinition(
        id="77777777-7777-4777-8777-777777777777",
        role_name="Two blocks",
        description="",
        role_type=CUSTOM,
        permissions=(
            Permission(actions=("Microsoft.Network/*",), not_actions=("*/delete",)),
            Permission(actions=("Microsoft.Network/virtualNetworks/delete",)),
        ),
        assignable_scopes=(S,),
    )
    a = access(assign(S, role), extra=(role,))
    assert a.allows("Microsoft.Network/virtualNetworks/delete", RG1)
    assert not a.allows("Microsoft.Network/privateLinkServices/delete", RG1)
    assert a.allows(NET_WRITE, RG1)


def test_custom_role_with_not_actions() -> None:
    role = custom(("Microsoft.Network/*",), ("Microsoft.Network/*/delete",))
    a = access(assign(RG1, role), extra=(role,))
    assert a.allows(NET_WRITE, PLS)
    assert not a.allows("Microsoft.Network/privateLinkServices/delete", PLS)
    assert not a.allows("Microsoft.Compute/virtualMachines/read", PLS)


@pytest.mark.parametrize(
    ("at", "target", "expected"),
    [
        (S, S, True),
        (S, RG1, True),
        (S, PLS, True),
        (RG1, RG1, True),
        (RG1, PLS, True),
        (RG1, f"{PLS}/privateEndpointConnections/c", True),
        (RG1, RG10, False),
        (RG1, f"{RG10}/providers/Microsoft.Network/privateLinkServices/pls1", False),
        (RG1, S, False),
        (PLS, PLS, True),
        (PLS, VNET, False),
        (PLS, RG1, False),
        ("/", PLS, True),
        (S, f"/subscriptions/{OTHER_SUB}", False),
    ],
)
def test_inheritance_down_never_sideways(at: str, target: str, expected: bool) -> None:
    assert access(assign(at, READER)).allows(NET_READ, target) is expected


def test_unknown_role_grants_nothing_and_no_assignments_deny_all() -> None:
    assert not access(assign(S, "99999999-9999-4999-8999-999999999999")).allows(NET_READ, S)
    assert not access().allows(NET_READ, S)
    assert not Access(None, (), {}).allows(NET_READ, S)


def test_allows_is_memoized_and_case_insensitive() -> None:
    a = access(assign(RG1, READER))
    assert a.allows(NET_READ.upper(), PLS.lower())
    assert a.allows(NET_READ, PLS)
    assert not a.allows(NET_WRITE, PLS)
    assert not a.allows(NET_WRITE, PLS)


def test_require_message_is_azures() -> None:
    a = access(assign(S, READER))
    a.require(NET_READ, PLS)
    with pytest.raises(rbac.AuthorizationFailed) as info:
        a.require(NET_WRITE, PLS)
    err = info.value
    assert (err.status, err.code) == (403, "AuthorizationFailed")
    assert err.message == (
        f"The client '{OID}' with object id '{OID}' does not have authorization to perform "
        f"action '{NET_WRITE}' over scope '{PLS}' or the scope is invalid. If access was "
        "recently granted, please refresh your credentials."
    )


def test_require_any_names_the_first_action() -> None:
    a = access(assign(S, READER))
    a.require_any(("x/write", NET_READ), PLS)
    with pytest.raises(rbac.AuthorizationFailed, match="action 'a/write'"):
        a.require_any(("a/write", "b/write"), PLS)
    with pytest.raises(ValueError):
        a.require_any((), PLS)


def test_require_linked_message_is_azures() -> None:
    subnet = f"{RG10}/providers/Microsoft.Network/virtualNetworks/v2/subnets/s"
    join = "Microsoft.Network/virtualNetworks/subnets/join/action"
    pe = f"{RG1}/providers/Microsoft.Network/privateEndpoints/pe"
    a = access(assign(RG1, NETWORK_CONTRIBUTOR))
    a.require_linked(join, f"{VNET}/subnets/s", "Microsoft.Network/privateEndpoints/write", pe)
    with pytest.raises(rbac.LinkedAuthorizationFailed) as info:
        a.require_linked(join, subnet, "Microsoft.Network/privateEndpoints/write", pe)
    err = info.value
    assert (err.status, err.code) == (403, "LinkedAuthorizationFailed")
    assert err.message == (
        f"The client '{OID}' with object id '{OID}' has permission to perform action "
        f"'Microsoft.Network/privateEndpoints/write' on scope '{pe}'; however, it does not "
        f"have permission to perform action(s) '{join}' on the linked scope(s) '{subnet}' "
        "(respectively) or the linked scope(s) are invalid."
    )
    with pytest.raises(rbac.LinkedAuthorizationFailed) as many:
        a.require_linked(join, [f"{VNET}/subnets/s", subnet, subnet + "2"], "w", pe)
    assert f"'{join},{join}' on the linked scope(s) '{subnet},{subnet}2'" in many.value.message


def test_can_read_anything_under() -> None:
    a = access(assign(RG1, READER))
    assert a.can_read_anything_under(S)  # below
    assert a.can_read_anything_under(RG1)  # at
    assert a.can_read_anything_under(PLS)  # above
    assert not a.can_read_anything_under(RG10)
    assert not a.can_read_anything_under(f"/subscriptions/{OTHER_SUB}")
    assert access(assign("/", READER)).can_read_anything_under(f"/subscriptions/{OTHER_SUB}")
    assert not access().can_read_anything_under(S)


def test_assignments_and_principal_properties() -> None:
    one = assign(S, READER)
    a = access(one)
    assert a.assignments == (one,)
    assert a.principal == ME


def test_allow_all() -> None:
    assert ALLOW_ALL.allows(RA_WRITE, "/")
    assert ALLOW_ALL.can_read_anything_under(S)
    ALLOW_ALL.require(RD_WRITE, PLS)
    ALLOW_ALL.require_linked(RA_WRITE, [S, RG1], NET_WRITE, PLS)
    assert ALLOW_ALL.assignments == ()


def test_many_assignments_evaluate_by_ancestor_lookup() -> None:
    many = [assign(f"{S}/resourceGroups/rg{i}", READER) for i in range(1000)]
    a = access(*many)
    assert a.allows(NET_READ, f"{S}/resourceGroups/rg999/providers/Microsoft.Network/x/y")
    assert not a.allows(NET_READ, f"{S}/resourceGroups/rg1000")
    assert not a.allows(NET_WRITE, f"{S}/resourceGroups/rg5")


# --- ids, names, filters -------------------------------------------------------------------

RD = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@pytest.mark.parametrize(
    "value",
    [
        RD,
        RD.upper(),
        f"/providers/Microsoft.Authorization/roleDefinitions/{RD}",
        f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{RD}",
        f"/subscriptions/{SUB}/providers/microsoft.authorization/roledefinitions/{RD.upper()}",
        f"{RG1}/providers/Microsoft.Authorization/roleDefinitions/{RD}",
    ],
)
def test_parse_role_definition_id(value: str) -> None:
    assert rbac.parse_role_definition_id(value) == RD


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Reader",
        f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/not-a-guid",
        f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/{RD}",
        f"/providers/Microsoft.Authorization/roleDefinitions/{RD}/extra",
    ],
)
def test_parse_role_definition_id_refusals(value: str) -> None:
    with pytest.raises(rbac.InvalidRoleDefinitionId):
        rbac.parse_role_definition_id(value)


def test_role_definition_id_rendering() -> None:
    expected = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{RD}"
    assert rbac.role_definition_id(PLS, RD.upper()) == expected
    assert rbac.role_definition_id(S.upper(), RD) == expected
    assert rbac.role_definition_id("/", RD) == (
        f"/providers/Microsoft.Authorization/roleDefinitions/{RD}"
    )


def test_assignment_id() -> None:
    a = assign(RG1, READER)
    assert a.id == f"{RG1}/providers/Microsoft.Authorization/roleAssignments/{a.name}"
    root = RoleAssignment("n", "/", RD, OID, "User")
    assert root.id == "/providers/Microsoft.Authorization/roleAssignments/n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, AssignmentFilter()),
        ("", AssignmentFilter()),
        ("atScope()", AssignmentFilter(at_scope=True)),
        ("ATSCOPE( )", AssignmentFilter(at_scope=True)),
        (f"principalId eq '{OID.upper()}'", AssignmentFilter(principal_id=OID)),
        (f"principalId eq {OID}", AssignmentFilter(principal_id=OID)),
        (f"assignedTo('{OID}')", AssignmentFilter(assigned_to=OID)),
        (f"atScope() and assignedTo('{OID}')", AssignmentFilter(at_scope=True, assigned_to=OID)),
        (f"  atScope()  AND  principalId eq '{OID}' ", AssignmentFilter(True, OID)),
    ],
)
def test_assignment_filter(value: str | None, expected: AssignmentFilter) -> None:
    parsed = rbac.parse_assignment_filter(value)
    assert parsed == expected
    assert parsed.principal == (expected.principal_id or expected.assigned_to)


@pytest.mark.parametrize(
    "value",
    [
        "atScope",
        "atScope() or principalId eq 'x'",
        "principalId eq 'not-a-guid'",
        "assignedTo('x')",
        "roleName eq 'Reader'",
        "atScope() and",
        "atScope()atScope()",
        "principalId ne '33333333-3333-4333-8333-333333333333'",
    ],
)
def test_assignment_filter_refusals(value: str) -> None:
    with pytest.raises(rbac.UnsupportedFilter) as info:
        rbac.parse_assignment_filter(value)
    assert (info.value.status, info.value.code) == (400, "InvalidFilterInQueryString")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DefinitionFilter()),
        ("roleName eq 'Reader'", DefinitionFilter(role_name="Reader")),
        ("roleName eq 'reader'", DefinitionFilter(role_name="reader")),
        ("roleName eq 'Contoso and Co'", DefinitionFilter(role_name="Contoso and Co")),
        ("roleName eq 'O''Brien'", DefinitionFilter(role_name="O'Brien")),
        ("type eq 'BuiltInRole'", DefinitionFilter(role_type="BuiltInRole")),
        ("type eq 'customrole'", DefinitionFilter(role_type="CustomRole")),
        (
            "roleName eq 'x' and type eq 'CustomRole' and atScopeAndBelow()",
            DefinitionFilter("x", "CustomRole", True),
        ),
    ],
)
def test_definition_filter(value: str | None, expected: DefinitionFilter) -> None:
    assert rbac.parse_definition_filter(value) == expected


@pytest.mark.parametrize(
    "value", ["roleName eq Reader", "type eq 'Other'", "atScope()", "roleName eq 'a' or x"]
)
def test_definition_filter_refusals(value: str) -> None:
    with pytest.raises(rbac.UnsupportedFilter):
        rbac.parse_definition_filter(value)


def test_definition_matches() -> None:
    assert rbac.definition_matches(READER, DefinitionFilter(role_name="READER"))
    assert not rbac.definition_matches(READER, DefinitionFilter(role_type=CUSTOM))
    assert rbac.definition_matches(custom(("*",)), DefinitionFilter(role_type=CUSTOM))


def test_names_and_principals() -> None:
    assert rbac.check_assignment_name(RD.upper()) == RD
    with pytest.raises(rbac.InvalidRoleAssignmentId):
        rbac.check_assignment_name("abc")
    assert rbac.check_role_definition_name(RD.upper()) == RD
    with pytest.raises(rbac.InvalidRoleDefinitionId):
        rbac.check_role_definition_name("Reader")
    assert rbac.check_principal_id(OID.upper()) == OID
    for bad in (None, "", "x"):
        with pytest.raises(rbac.InvalidPrincipalId):
            rbac.check_principal_id(bad)
    assert rbac.principal_type("serviceprincipal") == "ServicePrincipal"
    assert rbac.principal_type(None) == "ServicePrincipal"
    assert rbac.principal_type("group") == "Group"
    with pytest.raises(rbac.InvalidPrincipalType):
        rbac.principal_type("Robot")


def test_principal_not_found_prints_the_id_without_dashes() -> None:
    err = rbac.PrincipalNotFound.of(OID, "tenant-1")
    assert err.status == 400
    assert err.message.startswith(
        f"Principal {OID.replace('-', '')} does not exist in the directory tenant-1."
    )


# --- write rules ---------------------------------------------------------------------------


def test_check_assignable() -> None:
    rbac.check_assignable(READER, PLS)
    role = custom(("*/read",), scopes=(RG1,))
    rbac.check_assignable(role, PLS)
    with pytest.raises(rbac.RoleNotAssignableAtScope, match="The role Custom is not available"):
        rbac.check_assignable(role, RG10)
    with pytest.raises(rbac.RoleNotAssignableAtScope):
        rbac.check_assignable(role, S)


def test_updated_assignment_only_changes_the_description() -> None:
    existing = assign(RG1, READER)
    wanted = RoleAssignment(
        existing.name,
        RG1.upper(),
        READER.id,
        OID,
        "User",
        description="why",
        updated_by="me",
    )
    result = rbac.updated_assignment(existing, wanted)
    assert result.description == "why" and result.scope == RG1 and result.updated_by == "me"
    assert result.principal_type == existing.principal_type
    for change in (
        {"scope": RG10},
        {"principal_id": "99999999-9999-4999-8999-999999999999"},
        {"role_definition_id": CONTRIBUTOR.id},
    ):
        changed = RoleAssignment(**{**wanted.__dict__, **change})
        with pytest.raises(rbac.RoleAssignmentUpdateNotPermitted):
            rbac.updated_assignment(existing, changed)


def test_check_custom_role_canonicalizes() -> None:
    role = custom(
        ("Microsoft.Network/*", " */read "),
        ("Microsoft.Network/*/delete",),
        scopes=(S.upper() + "/", f"{S}/resourcegroups/rg1", S),
    )
    checked = rbac.check_custom_role(role)
    assert checked.assignable_scopes == (f"/subscriptions/{SUB.upper()}", RG1)
    assert checked.permissions[0].actions == ("Microsoft.Network/*", "*/read")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"role_name": "  "}, rbac.InvalidCreateRoleDefinitionRequest),
        ({"role_name": "a" * 513}, rbac.InvalidCreateRoleDefinitionRequest),
        ({"role_name": "a\x00b"}, rbac.InvalidCreateRoleDefinitionRequest),
        ({"description": "d\x00"}, ArmError),
        ({"role_type": "BuiltInRole"}, rbac.InvalidCreateRoleDefinitionRequest),
        ({"assignable_scopes": ()}, rbac.InvalidCreateRoleDefinitionRequest),
        ({"assignable_scopes": ("/",)}, rbac.InvalidCreateRoleDefinitionRequest),
        (
            {"assignable_scopes": ("/providers/Microsoft.Management/managementGroups/m",)},
            rbac.InvalidCreateRoleDefinitionRequest,
        ),
        ({"assignable_scopes": ("/subscriptions/x",)}, rbac.InvalidCreateRoleDefinitionRequest),
        ({"permissions": ()}, rbac.InvalidCreateRoleDefinitionRequest),
        ({"permissions": (Permission(actions=("bad action",)),)}, rbac.InvalidActionOrNotAction),
        ({"permissions": (Permission(actions=("",)),)}, rbac.InvalidActionOrNotAction),
        (
            {"permissions": (Permission(actions=("*",), not_actions=("a//b",)),)},
            rbac.InvalidActionOrNotAction,
        ),
    ],
)
def test_check_custom_role_refusals(change: dict[str, object], error: type[ArmError]) -> None:
    role = RoleDefinition(**{**custom(("*/read",)).__dict__, **change})  # type: ignore[arg-type]
    with pytest.raises(error):
        rbac.check_custom_role(role)


def test_invalid_action_message_is_azures() -> None:
    with pytest.raises(rbac.InvalidActionOrNotAction) as info:
        rbac.check_action("Microsoft.Network/ bad")
    assert info.value.message == (
        "'Microsoft.Network/ bad' does not match any of the actions supported by the providers."
    )


def test_definition_applies() -> None:
    role = custom(("*",), scopes=(RG1,))
    assert rbac.definition_applies(role, PLS, include_below=False)
    assert rbac.definition_applies(role, RG1, include_below=False)
    assert not rbac.definition_applies(role, S, include_below=False)
    assert rbac.definition_applies(role, S, include_below=True)
    assert not rbac.definition_applies(role, RG10, include_below=True)
    assert rbac.definition_applies(READER, PLS, include_below=False)


def test_every_error_has_a_code_and_status() -> None:
    codes = {cls.code for cls in rbac.ERRORS}
    assert "BadRequest" not in codes
    for cls in rbac.ERRORS:
        assert 400 <= cls.status < 500
        assert re.fullmatch(r"[A-Za-z]+", cls.code)
