"""Azure RBAC, pure: role definitions, role assignments, the built-in roles and the evaluator.

Owns Azure's authorization model as data plus the rules that read it:

- `RoleDefinition` (a named set of `Permission`s: actions, notActions, data actions) and
  `RoleAssignment` (a principal holds a role at a scope); the built-in roles with Azure's
  GUIDs, descriptions and action lists (`BUILT_IN_ROLES`).
- Action matching as Azure evaluates it: case-insensitive, `*` matches any run of
  characters (including `/`), the whole action must match.
- Scope containment: an assignment at scope S applies at S and below it, segment-wise
  and case-insensitively (`/subscriptions/x` contains `/subscriptions/x/resourceGroups/g`
  but not `/subscriptions/xy`); `/` (the root) contains every scope.
- `Access`: one principal's effective permissions. An action is allowed at a scope when
  some assignment at that scope or above it names a role with a permission block whose
  `actions` match the action and whose `notActions` do not (notActions subtract within a
  block, never across roles: Azure's union of grants).
- The wire rules the Microsoft.Authorization routes need and that are pure: parsing
  scopes, role definition ids and `$filter` expressions, validating custom roles and
  assignment updates. Every refusal is an `ArmError` with Azure's code.

No I/O: the store loads assignments and definitions and builds `Access` objects; the API
edge renders errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from privatelink.core import errors
from privatelink.core.errors import ArmError, BadRequest, Conflict, NotFound
from privatelink.core.ids import is_guid, valid_resource_group
from privatelink.core.principal import Principal

BUILT_IN = "BuiltInRole"
CUSTOM = "CustomRole"
NAMESPACE = "Microsoft.Authorization"
ROLE_DEFINITIONS_TYPE = f"{NAMESPACE}/roleDefinitions"
ROLE_ASSIGNMENTS_TYPE = f"{NAMESPACE}/roleAssignments"
ROOT = "/"

#: ARM's principal types for role assignments (2022-04-01 and later), canonical casing.
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")

# --- errors ----------------------------------------------------------------------------


class AuthorizationFailed(ArmError):
    status = 403
    code = "AuthorizationFailed"
    template = (
        "The client '{client}' with object id '{oid}' does not have authorization to perform "
        "action '{action}' over scope '{scope}' or the scope is invalid. If access was "
        "recently granted, please refresh your credentials."
    )

    @classmethod
    def of(cls, access: Access, action: str, scope: str) -> AuthorizationFailed:
        """The refusal of `action` at `scope` for the principal behind `access`."""
        oid = access.principal.object_id if access.principal else ""
        return cls(client=oid, oid=oid, action=action, scope=scope)


class LinkedAuthorizationFailed(ArmError):
    status = 403
    code = "LinkedAuthorizationFailed"
    template = (
        "The client '{client}' with object id '{oid}' has permission to perform action "
        "'{request_action}' on scope '{request_scope}'; however, it does not have permission "
        "to perform action(s) '{action}' on the linked scope(s) '{linked}' (respectively) or "
        "the linked scope(s) are invalid."
    )

    @classmethod
    def of(
        cls,
        access: Access,
        actions: Sequence[str],
        linked: Sequence[str],
        request_action: str,
        request_scope: str,
    ) -> LinkedAuthorizationFailed:
        """The refusal of `actions` (one per linked scope, respectively)."""
        oid = access.principal.object_id if access.principal else ""
        return cls(
            client=oid,
            oid=oid,
            action=",".join(actions),
            linked=",".join(linked),
            request_action=request_action,
            request_scope=request_scope,
        )


class RoleDefinitionNotFound(NotFound):
    code = "RoleDefinitionDoesNotExist"
    template = "The specified role definition with ID '{id}' does not exist."


class RoleDefinitionDoesNotExist(BadRequest):
    """A role assignment names a role definition that does not exist (400, as in Azure)."""

    code = "RoleDefinitionDoesNotExist"
    template = "The specified role definition with ID '{id}' does not exist."


class RoleAssignmentNotFound(NotFound):
    code = "RoleAssignmentNotFound"
    template = "The role assignment '{name}' is not found."


class RoleAssignmentExists(Conflict):
    code = "RoleAssignmentExists"
    template = "The role assignment already exists. The ID of the existing role assignment is {id}."


class RoleAssignmentUpdateNotPermitted(BadRequest):
    code = "RoleAssignmentUpdateNotPermitted"
    template = "Tenant ID, application ID, principal ID, and scope are not allowed to be updated."


class InvalidRoleAssignmentId(BadRequest):
    code = "InvalidRoleAssignmentId"
    template = (
        "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
    )


class InvalidRoleDefinitionId(BadRequest):
    code = "InvalidRoleDefinitionId"
    template = "The role definition ID '{id}' is not valid."


class InvalidPrincipalId(BadRequest):
    code = "InvalidPrincipalId"
    template = "A valid principal ID must be provided for role assignment."


class InvalidPrincipalType(BadRequest):
    code = "InvalidPrincipalType"
    template = "The principal type '{value}' is not valid; use one of {allowed}."


class PrincipalNotFound(BadRequest):
    code = "PrincipalNotFound"
    template = (
        "Principal {principal} does not exist in the directory {tenant}. Check that you have "
        "the correct principal ID. If you are creating this principal and then immediately "
        "assigning a role, this error might be related to a replication delay. In this case, "
        "set the role assignment principalType property to a value, such as ServicePrincipal, "
        "User, or Group.  See https://aka.ms/docs-principaltype"
    )

    @classmethod
    def of(cls, principal_id: str, tenant_id: str) -> PrincipalNotFound:
        """Azure prints the principal id without dashes."""
        return cls(principal=principal_id.replace("-", ""), tenant=tenant_id)


class UnmatchedPrincipalType(BadRequest):
    """The assignment's principalType is not the directory's type of that object."""

    code = "UnmatchedPrincipalType"
    template = (
        "The PrincipalId '{principal}' has type '{actual}' , which is different from "
        "specified PrincipalType '{given}'."
    )


class InvalidCreateRoleAssignmentRequest(BadRequest):
    code = "InvalidCreateRoleAssignmentRequest"


class RoleNotAssignableAtScope(InvalidCreateRoleAssignmentRequest):
    template = "The role {role} is not available for assignment at the requested scope."


class RoleDefinitionWithSameNameExists(Conflict):
    code = "RoleDefinitionWithSameNameExists"
    template = "A custom role with the same name already exists in this directory."


class RoleDefinitionHasAssignments(BadRequest):
    code = "RoleDefinitionHasAssignments"
    template = "There are existing role assignments referencing role."


class CannotModifyBuiltInRole(BadRequest):
    code = "CannotModifyBuiltInRole"
    template = "The built-in role '{name}' ({id}) cannot be created, updated or deleted."


class RoleDefinitionIdInUse(Conflict):
    code = "RoleDefinitionIdInUse"
    template = "The role definition ID '{id}' is used by a custom role of another directory."


class InvalidCreateRoleDefinitionRequest(BadRequest):
    code = "InvalidCreateRoleDefinitionRequest"


class InvalidActionOrNotAction(BadRequest):
    code = "InvalidActionOrNotAction"
    template = "'{action}' does not match any of the actions supported by the providers."


class InvalidScope(BadRequest):
    code = "InvalidScope"
    template = "The scope '{scope}' is not valid: {why}"


class MissingSubscription(BadRequest):
    code = "MissingSubscription"
    template = "The request did not have a subscription or a valid tenant level resource provider."


class UnsupportedFilter(BadRequest):
    code = "InvalidFilterInQueryString"
    template = "The $filter '{value}' is not supported: {why}"


# --- the model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Permission:
    """One permission block of a role: allowed actions minus notActions (data: ditto)."""

    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoleDefinition:
    """A role: `id` is the GUID name (lower-case), never a full resource id."""

    id: str
    role_name: str
    description: str
    role_type: str  # BUILT_IN | CUSTOM
    permissions: tuple[Permission, ...]
    assignable_scopes: tuple[str, ...]
    created_on: str = ""
    updated_on: str = ""
    created_by: str = ""
    updated_by: str = ""

    @property
    def is_custom(self) -> bool:
        """True for a custom role (stored), False for a built-in one (code)."""
        return self.role_type == CUSTOM


@dataclass(frozen=True)
class RoleAssignment:
    """A principal holds a role (`role_definition_id`, a GUID) at a scope.

    `name` is the assignment's GUID (lower-case), unique across all scopes as in Azure.
    """

    name: str
    scope: str
    role_definition_id: str
    principal_id: str
    principal_type: str
    created_on: str = ""
    created_by: str = ""
    description: str | None = None
    condition: str | None = None
    condition_version: str | None = None
    updated_on: str = ""
    updated_by: str = ""

    @property
    def id(self) -> str:
        """The assignment's resource id: `{scope}/providers/Microsoft.Authorization/...`."""
        prefix = "" if self.scope == ROOT else self.scope
        return f"{prefix}/providers/{ROLE_ASSIGNMENTS_TYPE}/{self.name}"


# --- built-in roles (Azure's GUIDs, descriptions and action lists) -------------------------

_NETWORK_COMMON = (
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
)

OWNER = RoleDefinition(
    id="8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    role_name="Owner",
    description=(
        "Grants full access to manage all resources, including the ability to assign roles "
        "in Azure RBAC."
    ),
    role_type=BUILT_IN,
    permissions=(Permission(actions=("*",)),),
    assignable_scopes=(ROOT,),
)

CONTRIBUTOR = RoleDefinition(
    id="b24988ac-6180-42a0-ab88-20f7382dd24c",
    role_name="Contributor",
    description=(
        "Grants full access to manage all resources, but does not allow you to assign roles "
        "in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries."
    ),
    role_type=BUILT_IN,
    permissions=(
        Permission(
            actions=("*",),
            not_actions=(
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
                "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                "Microsoft.Subscription/cancel/action",
                "Microsoft.Subscription/enable/action",
            ),
        ),
    ),
    assignable_scopes=(ROOT,),
)

READER = RoleDefinition(
    id="acdd72a7-3385-48ef-bd42-f606fba81ae7",
    role_name="Reader",
    description="View all resources, but does not allow you to make any changes.",
    role_type=BUILT_IN,
    permissions=(Permission(actions=("*/read",)),),
    assignable_scopes=(ROOT,),
)

NETWORK_CONTRIBUTOR = RoleDefinition(
    id="4d97b98b-1d4f-4787-a291-c67834d212e7",
    role_name="Network Contributor",
    description="Lets you manage networks, but not access to them.",
    role_type=BUILT_IN,
    permissions=(
        Permission(
            actions=(
                *_NETWORK_COMMON,
                "Microsoft.Network/*",
                "Microsoft.ResourceHealth/availabilityStatuses/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
            )
        ),
    ),
    assignable_scopes=(ROOT,),
)

USER_ACCESS_ADMINISTRATOR = RoleDefinition(
    id="18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    role_name="User Access Administrator",
    description="Lets you manage user access to Azure resources.",
    role_type=BUILT_IN,
    permissions=(
        Permission(actions=("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*")),
    ),
    assignable_scopes=(ROOT,),
)

ROLE_BASED_ACCESS_CONTROL_ADMINISTRATOR = RoleDefinition(
    id="f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    role_name="Role Based Access Control Administrator",
    description=(
        "Manage access to Azure resources by assigning roles using Azure RBAC. This role does "
        "not allow you to manage access using other ways, such as Azure Policy."
    ),
    role_type=BUILT_IN,
    permissions=(
        Permission(
            actions=(
                "Microsoft.Authorization/roleAssignments/write",
                "Microsoft.Authorization/roleAssignments/delete",
                "*/read",
                "Microsoft.Support/*",
            )
        ),
    ),
    assignable_scopes=(ROOT,),
)

PRIVATE_DNS_ZONE_CONTRIBUTOR = RoleDefinition(
    id="b12aa53e-6015-4669-85d0-8515ebb3ae7f",
    role_name="Private DNS Zone Contributor",
    description=(
        "Lets you manage private DNS zone resources, but not the virtual networks they are "
        "linked to."
    ),
    role_type=BUILT_IN,
    permissions=(
        Permission(
            actions=(
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
                "Microsoft.Network/privateDnsZones/*",
                "Microsoft.Network/privateDnsOperationResults/*",
                "Microsoft.Network/privateDnsOperationStatuses/*",
                "Microsoft.Network/virtualNetworks/read",
                "Microsoft.Network/virtualNetworks/join/action",
                "Microsoft.Authorization/*/read",
            )
        ),
    ),
    assignable_scopes=(ROOT,),
)

#: The built-in roles privatelink serves, by GUID (lower-case).
BUILT_IN_ROLES: Mapping[str, RoleDefinition] = {
    role.id: role
    for role in (
        OWNER,
        CONTRIBUTOR,
        READER,
        NETWORK_CONTRIBUTOR,
        USER_ACCESS_ADMINISTRATOR,
        ROLE_BASED_ACCESS_CONTROL_ADMINISTRATOR,
        PRIVATE_DNS_ZONE_CONTRIBUTOR,
    )
}
_BUILT_IN_NAMES = {role.role_name.lower(): role for role in BUILT_IN_ROLES.values()}


def built_in_role(id_or_name: str) -> RoleDefinition | None:
    """A built-in role by GUID or by role name (case-insensitive)."""
    key = id_or_name.strip().lower()
    return BUILT_IN_ROLES.get(key) or _BUILT_IN_NAMES.get(key)


# --- action matching -----------------------------------------------------------------------

Matcher = Callable[[str], bool]


def _never(_action: str) -> bool:
    return False


def _always(_action: str) -> bool:
    return True


def compile_patterns(patterns: Iterable[str]) -> Matcher:
    """One matcher for a list of action patterns (case-insensitive, `*` = any run)."""
    items = [p.strip() for p in patterns if p and p.strip()]
    if not items:
        return _never
    if any(p == "*" for p in items):
        return _always
    body = "|".join(".*".join(re.escape(part) for part in p.split("*")) for p in items)
    fullmatch = re.compile(f"(?:{body})", re.IGNORECASE | re.DOTALL).fullmatch

    def matches(action: str) -> bool:
        return fullmatch(action) is not None

    return matches


def action_matches(pattern: str, action: str) -> bool:
    """Whether one action pattern matches an action, as Azure evaluates it."""
    return compile_patterns((pattern,))(action)


class _RoleMatcher:
    """A role definition's permission blocks, compiled: (actions, notActions) pairs."""

    __slots__ = ("blocks",)

    def __init__(self, definition: RoleDefinition) -> None:
        self.blocks = tuple(
            (compile_patterns(p.actions), compile_patterns(p.not_actions))
            for p in definition.permissions
        )

    def allows(self, action: str) -> bool:
        # A plain loop: on the hot path it is cheaper than any() over a generator.
        for allow, deny in self.blocks:  # noqa: SIM110
            if allow(action) and not deny(action):
                return True
        return False


@lru_cache(maxsize=4096)
def _matcher(definition: RoleDefinition) -> _RoleMatcher:
    return _RoleMatcher(definition)


def role_allows(definition: RoleDefinition, action: str) -> bool:
    """Whether a role grants a control-plane action (at a scope where it is assigned)."""
    return _matcher(definition).allows(action)


# --- scopes ----------------------------------------------------------------------------


def scope_key(scope: str) -> str:
    """The identity of a scope: lower-case, no trailing slash, `/` for the root."""
    k = scope.strip().lower().rstrip("/")
    if not k:
        return ROOT
    return k if k.startswith("/") else "/" + k


def scope_contains(outer: str, inner: str) -> bool:
    """Whether an assignment at `outer` applies at `inner` (at it, or below, segment-wise)."""
    o, i = scope_key(outer), scope_key(inner)
    return o == ROOT or i == o or i.startswith(o + "/")


def ancestor_keys(scope: str) -> Iterator[str]:
    """Keys of `scope` and every scope above it, root first (segment prefixes)."""
    k = scope_key(scope)
    yield ROOT
    if k == ROOT:
        return
    start = 1
    while True:
        cut = k.find("/", start)
        if cut < 0:
            yield k
            return
        yield k[:cut]
        start = cut + 1


MAX_SCOPE = 1024


def subscription_of(scope: str) -> str:
    """The subscription id of a scope as written, or "" (root, management groups)."""
    parts = scope.strip().strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1]
    return ""


def parse_scope(value: str, *, allow_root: bool = False) -> str:
    """Validate an RBAC scope; return it with canonical literals and no trailing slash.

    Scopes: `/subscriptions/{guid}`, `.../resourceGroups/{name}` and resources below them
    (`.../providers/{Namespace}/{type}/{name}[/{type}/{name}...]`); `/` only when
    `allow_root`. Management groups and extension-resource scopes are refused.
    """
    raw = value.strip()
    if len(raw) > MAX_SCOPE or "\x00" in raw:
        raise InvalidScope(scope=raw[:300], why="it is too long or holds a NUL character.")
    trimmed = raw.strip("/")
    if not trimmed:
        if allow_root:
            return ROOT
        raise MissingSubscription()
    parts = trimmed.split("/")
    if any(not p for p in parts):
        raise InvalidScope(scope=raw, why="it contains an empty segment.")
    head = parts[0].lower()
    if head == "providers":
        if len(parts) >= 2 and parts[1].lower() == "microsoft.management":
            raise InvalidScope(scope=raw, why="management groups are not supported by privatelink.")
        raise MissingSubscription()
    if head != "subscriptions" or len(parts) < 2:
        raise InvalidScope(scope=raw, why="a scope starts with /subscriptions/{subscriptionId}.")
    if not is_guid(parts[1]):
        raise InvalidScope(scope=raw, why=f"'{parts[1]}' is not a subscription id (a GUID).")
    out = ["subscriptions", parts[1]]
    rest = parts[2:]
    if rest and rest[0].lower() == "resourcegroups":
        if len(rest) < 2 or not valid_resource_group(rest[1]):
            raise InvalidScope(scope=raw, why="the resource group name is missing or invalid.")
        out += ["resourceGroups", rest[1]]
        rest = rest[2:]
    if rest:
        if rest[0].lower() != "providers" or len(rest) < 4 or len(rest) % 2:
            raise InvalidScope(
                scope=raw, why="a resource scope is .../providers/{namespace}/{type}/{name}."
            )
        pairs = rest[2:]
        if any(p.lower() == "providers" for p in pairs[0::2]):
            raise InvalidScope(scope=raw, why="extension resources cannot be scopes.")
        if rest[1].lower() == NAMESPACE.lower():
            raise InvalidScope(scope=raw, why=f"{NAMESPACE} resources cannot be scopes.")
        out += ["providers", *rest[1:]]
    return "/" + "/".join(out)


# --- ids and names -------------------------------------------------------------------------

_ROLE_DEFINITION_ID = re.compile(
    r"(?:/.*)?/providers/microsoft\.authorization/roledefinitions/([^/]+)/?", re.IGNORECASE
)


def parse_role_definition_id(value: str) -> str:
    """The GUID of a role definition given as a bare GUID or any `.../roleDefinitions/{guid}`."""
    text = (value or "").strip()
    if is_guid(text):
        return text.lower()
    m = _ROLE_DEFINITION_ID.fullmatch(text)
    if m and is_guid(m.group(1)):
        return m.group(1).lower()
    raise InvalidRoleDefinitionId(id=text[:300])


def role_definition_id(scope: str, guid: str) -> str:
    """The resource id Azure renders for a role definition seen from `scope`.

    Under the scope's subscription (`/subscriptions/{s}/providers/...`), else at the
    tenant root (`/providers/...`); az matches assignments to definitions on this string.
    """
    sub = subscription_of(scope)
    prefix = f"/subscriptions/{sub.lower()}" if sub else ""
    return f"{prefix}/providers/{ROLE_DEFINITIONS_TYPE}/{guid.lower()}"


def check_assignment_name(name: str) -> str:
    """A role assignment name (a GUID), lower-case."""
    if not is_guid(name.strip()):
        raise InvalidRoleAssignmentId(name=name[:100])
    return name.strip().lower()


def check_role_definition_name(name: str) -> str:
    """A role definition name (a GUID), lower-case."""
    if not is_guid(name.strip()):
        raise InvalidRoleDefinitionId(id=name[:100])
    return name.strip().lower()


def check_principal_id(value: str | None) -> str:
    """A principal object id (a GUID), lower-case."""
    if not value or not is_guid(value.strip()):
        raise InvalidPrincipalId()
    return value.strip().lower()


def principal_type(value: str | None, default: str = "ServicePrincipal") -> str:
    """A principal type in canonical casing (`default` when absent)."""
    if value is None or not value.strip():
        return default
    for known in PRINCIPAL_TYPES:
        if value.strip().lower() == known.lower():
            return known
    raise InvalidPrincipalType(value=value[:100], allowed=", ".join(PRINCIPAL_TYPES))


# --- rules for writes ----------------------------------------------------------------------

MAX_DESCRIPTION = 2048


def check_text(value: str | None, what: str, limit: int = MAX_DESCRIPTION) -> str | None:
    """A free-text property (descriptions): bounded, no NUL (PostgreSQL text cannot hold it)."""
    if value is None:
        return None
    if len(value) > limit or "\x00" in value:
        raise errors.InvalidRequestContent(
            f"{what} must be at most {limit} characters without NUL characters."
        )
    return value


def check_assignable(definition: RoleDefinition, scope: str) -> None:
    """A role may be assigned only within its assignable scopes."""
    if not any(scope_contains(s, scope) for s in definition.assignable_scopes):
        raise RoleNotAssignableAtScope(role=definition.role_name)


def updated_assignment(existing: RoleAssignment, wanted: RoleAssignment) -> RoleAssignment:
    """The result of a PUT on an existing assignment name: only description may change.

    Azure: the role, principal and scope of an assignment are fixed once created; a PUT
    that changes one of them is `RoleAssignmentUpdateNotPermitted`.
    """
    if (
        scope_key(existing.scope) != scope_key(wanted.scope)
        or existing.principal_id.lower() != wanted.principal_id.lower()
        or existing.role_definition_id.lower() != wanted.role_definition_id.lower()
    ):
        raise RoleAssignmentUpdateNotPermitted()
    return replace(
        existing,
        description=wanted.description,
        condition=wanted.condition,
        condition_version=wanted.condition_version,
        updated_on=wanted.updated_on or existing.updated_on,
        updated_by=wanted.updated_by or existing.updated_by,
    )


_ACTION = re.compile(r"[A-Za-z0-9*][A-Za-z0-9*._\-]*(/[A-Za-z0-9*._\-]+)*")
MAX_ROLE_NAME = 512


def check_action(pattern: str) -> str:
    """An action pattern of a custom role: `*`, `*/read`, `Namespace/type/verb`..."""
    text = pattern.strip() if isinstance(pattern, str) else ""
    if not text or len(text) > 1024 or not _ACTION.fullmatch(text):
        raise InvalidActionOrNotAction(action=str(pattern)[:300])
    return text


def check_custom_role(definition: RoleDefinition) -> RoleDefinition:
    """Validate a custom role; return it with canonical assignable scopes and actions.

    Custom roles may be assigned at subscriptions, resource groups and resources only:
    not at the root (as in Azure) nor at management groups (not modelled here).
    """
    name = definition.role_name.strip()
    if not name:
        raise InvalidCreateRoleDefinitionRequest("The role name (properties.roleName) is required.")
    if len(name) > MAX_ROLE_NAME or any(ord(c) < 32 for c in name):
        raise InvalidCreateRoleDefinitionRequest(
            f"The role name must be at most {MAX_ROLE_NAME} characters without control characters."
        )
    check_text(definition.description, "properties.description")
    if definition.role_type != CUSTOM:
        raise InvalidCreateRoleDefinitionRequest(
            f"The role type must be '{CUSTOM}'; got '{definition.role_type}'."
        )
    if not definition.assignable_scopes:
        raise InvalidCreateRoleDefinitionRequest(
            "A custom role needs at least one assignable scope (properties.assignableScopes)."
        )
    scopes: list[str] = []
    for raw in definition.assignable_scopes:
        if scope_key(raw) == ROOT:
            raise InvalidCreateRoleDefinitionRequest(
                "The root scope '/' cannot be an assignable scope of a custom role."
            )
        try:
            scope = parse_scope(raw)
        except (InvalidScope, MissingSubscription) as exc:
            raise InvalidCreateRoleDefinitionRequest(
                f"Assignable scope '{raw[:300]}' is not valid: {exc.message}"
            ) from exc
        if all(scope_key(scope) != scope_key(s) for s in scopes):
            scopes.append(scope)
    if not definition.permissions:
        raise InvalidCreateRoleDefinitionRequest(
            "A custom role needs at least one permission block (properties.permissions)."
        )
    permissions = tuple(
        Permission(
            actions=tuple(check_action(a) for a in p.actions),
            not_actions=tuple(check_action(a) for a in p.not_actions),
            data_actions=tuple(check_action(a) for a in p.data_actions),
            not_data_actions=tuple(check_action(a) for a in p.not_data_actions),
        )
        for p in definition.permissions
    )
    return replace(
        definition,
        role_name=name,
        assignable_scopes=tuple(scopes),
        permissions=permissions,
    )


def definition_applies(definition: RoleDefinition, scope: str, *, include_below: bool) -> bool:
    """Whether a role definition is listed at `scope`.

    Azure lists the definitions assignable at the scope (an assignable scope at or above
    it); `atScopeAndBelow()` adds those assignable only below it.
    """
    for s in definition.assignable_scopes:
        if scope_contains(s, scope) or (include_below and scope_contains(scope, s)):
            return True
    return False


# --- $filter -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentFilter:
    """A roleAssignments `$filter`: `atScope()`, `principalId eq`, `assignedTo()`."""

    at_scope: bool = False
    principal_id: str | None = None
    assigned_to: str | None = None

    @property
    def principal(self) -> str | None:
        """The principal the list is restricted to (no groups here: same for both forms)."""
        return self.principal_id or self.assigned_to


@dataclass(frozen=True)
class DefinitionFilter:
    """A roleDefinitions `$filter`: `roleName eq`, `type eq`, `atScopeAndBelow()`."""

    role_name: str | None = None
    role_type: str | None = None
    at_scope_and_below: bool = False


_ASSIGNMENT_CLAUSES = re.compile(
    r"(?P<at>atScope\(\s*\))"
    r"|principalId\s+eq\s+(?:'(?P<pid>(?:[^']|'')*)'|(?P<bare>[0-9A-Fa-f-]+))"
    r"|assignedTo\(\s*'(?P<to>(?:[^']|'')*)'\s*\)",
    re.IGNORECASE,
)
_DEFINITION_CLAUSES = re.compile(
    r"roleName\s+eq\s+'(?P<name>(?:[^']|'')*)'"
    r"|type\s+eq\s+'(?P<type>(?:[^']|'')*)'"
    r"|(?P<below>atScopeAndBelow\(\s*\))",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


def _clauses(value: str, pattern: re.Pattern[str], hint: str) -> Iterator[re.Match[str]]:
    text = value.strip()
    pos = 0
    while True:
        m = pattern.match(text, pos)
        if m is None:
            raise UnsupportedFilter(value=value[:300], why=hint)
        yield m
        pos = m.end()
        if pos == len(text):
            return
        sep = _AND.match(text, pos)
        if sep is None:
            raise UnsupportedFilter(value=value[:300], why=hint)
        pos = sep.end()


def _unquote(text: str) -> str:
    return text.replace("''", "'")


def parse_assignment_filter(value: str | None) -> AssignmentFilter:
    """Parse the `$filter` of a role assignment list (None or blank: no filter)."""
    if value is None or not value.strip():
        return AssignmentFilter()
    hint = (
        "use atScope(), principalId eq '{objectId}' or assignedTo('{objectId}'), joined by 'and'."
    )
    found: dict[str, Any] = {}
    for m in _clauses(value, _ASSIGNMENT_CLAUSES, hint):
        groups = m.groupdict()
        if groups.get("at"):
            found["at_scope"] = True
            continue
        to = groups.get("to")
        pid = groups["pid"] if groups.get("pid") is not None else groups.get("bare")
        target, key = (to, "assigned_to") if to is not None else (pid, "principal_id")
        if target is None or not is_guid(target.strip()):
            raise UnsupportedFilter(
                value=value[:300], why=f"'{(target or '')[:100]}' is not an object id (a GUID)."
            )
        found[key] = target.strip().lower()
    return AssignmentFilter(**found)


def parse_definition_filter(value: str | None) -> DefinitionFilter:
    """Parse the `$filter` of a role definition list (None or blank: no filter)."""
    if value is None or not value.strip():
        return DefinitionFilter()
    hint = (
        "use roleName eq '{name}', type eq 'BuiltInRole' or type eq 'CustomRole', or "
        "atScopeAndBelow(), joined by 'and'."
    )
    found: dict[str, Any] = {}
    for m in _clauses(value, _DEFINITION_CLAUSES, hint):
        groups = m.groupdict()
        if groups.get("below"):
            found["at_scope_and_below"] = True
        elif groups.get("type") is not None:
            kind = _unquote(groups["type"]).strip().lower()
            if kind not in (BUILT_IN.lower(), CUSTOM.lower()):
                raise UnsupportedFilter(value=value[:300], why=hint)
            found["role_type"] = BUILT_IN if kind == BUILT_IN.lower() else CUSTOM
        else:
            found["role_name"] = _unquote(groups["name"])
    return DefinitionFilter(**found)


def definition_matches(definition: RoleDefinition, wanted: DefinitionFilter) -> bool:
    """Whether a definition passes the name/type parts of a filter (names: any casing)."""
    if wanted.role_name is not None and definition.role_name.lower() != wanted.role_name.lower():
        return False
    return wanted.role_type is None or definition.role_type == wanted.role_type


# --- evaluation ----------------------------------------------------------------------------

_MEMO_LIMIT = 8192


class Access:
    """One principal's effective permissions, from its role assignments.

    Built from the principal's own assignments and the role definitions they name (by
    GUID, lower-case); an assignment naming an unknown role grants nothing. Assignments
    are indexed by scope key and roles compiled once, so `allows` costs a dictionary probe
    per ancestor of the scope; decisions are memoized (bounded) since an `Access` is
    immutable — a change of assignments builds a new one.
    """

    __slots__ = ("_assignments", "_index", "_memo", "_principal", "_roles")

    def __init__(
        self,
        principal: Principal | None,
        assignments: Sequence[RoleAssignment],
        definitions: Mapping[str, RoleDefinition],
    ) -> None:
        self._principal = principal
        self._assignments = tuple(assignments)
        index: dict[str, list[_RoleMatcher]] = {}
        roles: dict[str, list[RoleDefinition]] = {}
        for a in self._assignments:
            definition = definitions.get(a.role_definition_id.lower())
            if definition is not None:
                index.setdefault(scope_key(a.scope), []).append(_matcher(definition))
                roles.setdefault(scope_key(a.scope), []).append(definition)
        self._index = index
        self._roles = roles
        self._memo: dict[tuple[str, str], bool] = {}

    @property
    def principal(self) -> Principal | None:
        """Whose access this is."""
        return self._principal

    @property
    def assignments(self) -> tuple[RoleAssignment, ...]:
        """The principal's role assignments this access was built from."""
        return self._assignments

    def allows(self, action: str, scope: str) -> bool:
        """Whether some assignment at `scope` or above it grants `action`."""
        k = (action.lower(), scope_key(scope))
        hit = self._memo.get(k)
        if hit is None:
            hit = self._evaluate(*k)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[k] = hit
        return hit

    def _evaluate(self, action: str, key: str) -> bool:
        index = self._index
        if not index:
            return False
        for ancestor in ancestor_keys(key):
            for role in index.get(ancestor, ()):
                if role.allows(action):
                    return True
        return False

    def roles_at(self, scope: str) -> tuple[RoleDefinition, ...]:
        """The distinct roles assigned at `scope` or above it: outermost scope first, then
        in assignment order (the roles `allows` consults there)."""
        seen: dict[str, RoleDefinition] = {}
        for ancestor in ancestor_keys(scope):
            for role in self._roles.get(ancestor, ()):
                seen.setdefault(role.id, role)
        return tuple(seen.values())

    def permissions_at(self, scope: str) -> tuple[Permission, ...]:
        """The permission blocks in force at `scope` (Microsoft.Authorization/permissions):
        each role's blocks, for every role of `roles_at`."""
        return tuple(p for role in self.roles_at(scope) for p in role.permissions)

    def require(self, action: str, scope: str) -> None:
        """Raise `AuthorizationFailed` unless `action` is allowed at `scope`."""
        if not self.allows(action, scope):
            raise AuthorizationFailed.of(self, action, scope)

    def require_any(self, actions: Sequence[str], scope: str) -> None:
        """Allowed when any of `actions` is; the refusal names the first."""
        if not actions:
            raise ValueError("require_any needs at least one action")
        if not any(self.allows(a, scope) for a in actions):
            raise AuthorizationFailed.of(self, actions[0], scope)

    def require_linked(
        self,
        action: str,
        linked_scope: str | Sequence[str],
        request_action: str,
        request_scope: str,
    ) -> None:
        """Raise `LinkedAuthorizationFailed` unless `action` is allowed at each linked scope.

        Used when a request at `request_scope` (allowed `request_action`) refers to other
        resources, e.g. a private endpoint joining a subnet.
        """
        scopes = [linked_scope] if isinstance(linked_scope, str) else list(linked_scope)
        missing = [s for s in scopes if not self.allows(action, s)]
        if missing:
            raise LinkedAuthorizationFailed.of(
                self, [action] * len(missing), missing, request_action, request_scope
            )

    def can_read_anything_under(self, scope: str) -> bool:
        """Whether the principal has any assignment at, above or below `scope`.

        For lists: a caller with a role somewhere in a subscription may list it and sees
        the items it may read.
        """
        return any(scope_contains(s, scope) or scope_contains(scope, s) for s in self._index)


class _AllowAll(Access):
    """Everything allowed: authorization off (tests, benchmarks, `--auth off`)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, (), {})

    def allows(self, action: str, scope: str) -> bool:
        return True

    def can_read_anything_under(self, scope: str) -> bool:
        return True

    def permissions_at(self, scope: str) -> tuple[Permission, ...]:
        return (Permission(actions=("*",)),)


ALLOW_ALL: Access = _AllowAll()

#: Everything in this module that a client can see as an error code.
ERRORS: tuple[type[ArmError], ...] = (
    AuthorizationFailed,
    LinkedAuthorizationFailed,
    RoleDefinitionNotFound,
    RoleDefinitionDoesNotExist,
    RoleAssignmentNotFound,
    RoleAssignmentExists,
    RoleAssignmentUpdateNotPermitted,
    InvalidRoleAssignmentId,
    InvalidRoleDefinitionId,
    InvalidPrincipalId,
    InvalidPrincipalType,
    PrincipalNotFound,
    UnmatchedPrincipalType,
    RoleNotAssignableAtScope,
    RoleDefinitionWithSameNameExists,
    RoleDefinitionHasAssignments,
    CannotModifyBuiltInRole,
    RoleDefinitionIdInUse,
    InvalidCreateRoleDefinitionRequest,
    InvalidActionOrNotAction,
    InvalidScope,
    MissingSubscription,
    UnsupportedFilter,
)
