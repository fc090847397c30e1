"""Microsoft.Authorization on the wire: role definitions and role assignments at any scope.

Served at `{scope}/providers/Microsoft.Authorization/roleDefinitions[/{guid}]` and
`{scope}/providers/Microsoft.Authorization/roleAssignments[/{guid}]`, where `{scope}` is a
subscription, a resource group or a resource (several path segments: a `path` converter),
and at the tenant root (`/providers/Microsoft.Authorization/...`, reads and deletes only).
A role assignment's id is its scope plus that suffix, so the SDKs' `*_by_id` calls land
on the same routes. Shapes follow the 2022-04-01 / 2022-05-01-preview api-versions that
azure-mgmt-authorization and az send.

`{scope}/providers/Microsoft.Authorization/permissions` (GET) answers what the caller
may do at a subscription, resource group or resource (Permissions_ListForResourceGroup /
ListForResource; ARM also serves it at a subscription): one entry per permission block of
each role assigned to the caller at that scope or above it.

The store is `request.app.state.rbac` (`SqlRbacStore`); whether a principal exists in a
directory is `request.app.state.principal_exists(tenant_id, object_id)` (absent: every
principal exists), and its type `request.app.state.principal_kind(tenant_id, object_id)`
(`ServicePrincipal`, `User` or None; absent: principalType is taken as given). The
caller must be authenticated (`request.state.principal`, set by the gate); whether it
may do what it asks is the enforcement dependency's business (`api/authorize.py`), never
these routes'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from privatelink.api import arm
from privatelink.api.arm import Wire
from privatelink.api.lean_route import LeanRoute
from privatelink.core import authorization as core
from privatelink.core import errors
from privatelink.core.authorization import (
    ALLOW_ALL,
    CUSTOM,
    NAMESPACE,
    ROLE_ASSIGNMENTS_TYPE,
    ROLE_DEFINITIONS_TYPE,
    Access,
    Permission,
    RoleAssignment,
    RoleDefinition,
)
from privatelink.core.principal import Principal
from privatelink.identity.auth import AuthenticationFailed

if TYPE_CHECKING:
    from privatelink.store.rbac import SqlRbacStore

router = APIRouter(route_class=LeanRoute)

ASSIGNMENTS = f"/providers/{ROLE_ASSIGNMENTS_TYPE}"
DEFINITIONS = f"/providers/{ROLE_DEFINITIONS_TYPE}"
PERMISSIONS = f"/providers/{NAMESPACE}/permissions"
SCOPED = "/{scope:path}"


# --- wire models (input) -------------------------------------------------------------------


class RoleAssignmentProperties(Wire):
    role_definition_id: str | None = None
    principal_id: str | None = None
    principal_type: str | None = None
    description: str | None = None
    condition: str | None = None
    condition_version: str | None = None
    delegated_managed_identity_resource_id: str | None = None


class RoleAssignmentWire(Wire):
    properties: RoleAssignmentProperties | None = None


class PermissionWire(Wire):
    actions: list[str] | None = None
    not_actions: list[str] | None = None
    data_actions: list[str] | None = None
    not_data_actions: list[str] | None = None
    condition: str | None = None
    condition_version: str | None = None


class RoleDefinitionProperties(Wire):
    role_name: str | None = None
    description: str | None = None
    type: str | None = None
    permissions: list[PermissionWire] | None = None
    assignable_scopes: list[str] | None = None


class RoleDefinitionWire(Wire):
    properties: RoleDefinitionProperties | None = None


# --- rendering -----------------------------------------------------------------------------


def render_assignment(assignment: RoleAssignment) -> dict[str, Any]:
    """A role assignment as ARM JSON (roleDefinitionId under the scope's subscription)."""
    return {
        "properties": {
            "roleDefinitionId": core.role_definition_id(
                assignment.scope, assignment.role_definition_id
            ),
            "principalId": assignment.principal_id,
            "principalType": assignment.principal_type,
            "scope": assignment.scope,
            "condition": assignment.condition,
            "conditionVersion": assignment.condition_version,
            "createdOn": assignment.created_on or None,
            "updatedOn": assignment.updated_on or None,
            "createdBy": assignment.created_by or None,
            "updatedBy": assignment.updated_by or None,
            "delegatedManagedIdentityResourceId": None,
            "description": assignment.description,
        },
        "id": assignment.id,
        "type": ROLE_ASSIGNMENTS_TYPE,
        "name": assignment.name,
    }


def render_permission(permission: Permission) -> dict[str, Any]:
    """One permission block as ARM JSON (a role's, or an entry of `permissions`)."""
    return {
        "actions": list(permission.actions),
        "notActions": list(permission.not_actions),
        "dataActions": list(permission.data_actions),
        "notDataActions": list(permission.not_data_actions),
    }


def render_definition(definition: RoleDefinition, scope: str) -> dict[str, Any]:
    """A role definition as ARM JSON, its id as seen from the request's scope."""
    return {
        "properties": {
            "roleName": definition.role_name,
            "type": definition.role_type,
            "description": definition.description,
            "assignableScopes": list(definition.assignable_scopes),
            "permissions": [render_permission(p) for p in definition.permissions],
            "createdOn": definition.created_on or None,
            "updatedOn": definition.updated_on or None,
            "createdBy": definition.created_by or None,
            "updatedBy": definition.updated_by or None,
        },
        "id": core.role_definition_id(scope, definition.id),
        "type": ROLE_DEFINITIONS_TYPE,
        "name": definition.id,
    }


# --- request context -----------------------------------------------------------------------


def _store(request: Request) -> SqlRbacStore:
    store: SqlRbacStore = request.app.state.rbac
    return store


def _caller(request: Request) -> Principal:
    """The authenticated caller; these routes never act for an anonymous one."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise AuthenticationFailed("Authentication failed. The 'Authorization' header is missing.")
    return principal


def _check_principal_exists(request: Request, tenant_id: str, principal_id: str) -> None:
    exists: Callable[[str, str], bool] | None = getattr(request.app.state, "principal_exists", None)
    if exists is not None and not exists(tenant_id, principal_id):
        raise core.PrincipalNotFound.of(principal_id, tenant_id)


def _principal_type(request: Request, tenant_id: str, principal_id: str, given: str | None) -> str:
    """The assignment's principalType: the directory's type of the object when it knows
    it (ARM infers it when absent, and refuses a different one), else `given` or
    ServicePrincipal."""
    kind_of: Callable[[str, str], str | None] | None = getattr(
        request.app.state, "principal_kind", None
    )
    actual = kind_of(tenant_id, principal_id) if kind_of is not None else None
    if actual is None:
        return core.principal_type(given)
    if given is None or not given.strip():
        return actual
    kind = core.principal_type(given)
    if kind != actual:
        raise core.UnmatchedPrincipalType(principal=principal_id, actual=actual, given=kind)
    return kind


def _scope(raw: str, *, allow_root: bool) -> str:
    return core.parse_scope("/" + raw, allow_root=allow_root)


# --- role definitions ----------------------------------------------------------------------


def _list_definitions(request: Request, raw_scope: str) -> Response:
    who = _caller(request)
    scope = _scope(raw_scope, allow_root=True)
    wanted = core.parse_definition_filter(request.query_params.get("$filter"))
    found = _store(request).list_definitions(
        scope, who.tenant_id, include_below=wanted.at_scope_and_below
    )
    items = [render_definition(d, scope) for d in found if core.definition_matches(d, wanted)]
    return arm.ok({"value": items})


@router.get(SCOPED + DEFINITIONS, name="roleDefinitions_list")
def list_role_definitions(request: Request, scope: str) -> Response:
    """Role definitions assignable at a scope (built-in and custom), with `$filter`."""
    return _list_definitions(request, scope)


@router.get(DEFINITIONS, name="roleDefinitions_list_at_root")
def list_role_definitions_at_root(request: Request) -> Response:
    """Role definitions seen from the tenant root."""
    return _list_definitions(request, "")


def _get_definition(request: Request, raw_scope: str, role_id: str) -> Response:
    who = _caller(request)
    scope = _scope(raw_scope, allow_root=True)
    guid = core.check_role_definition_name(role_id)
    definition = _store(request).get_definition(guid, who.tenant_id)
    if definition is None:
        raise core.RoleDefinitionNotFound(id=guid)
    return arm.ok(render_definition(definition, scope))


@router.get(SCOPED + DEFINITIONS + "/{role_id}", name="roleDefinitions_get")
def get_role_definition(request: Request, scope: str, role_id: str) -> Response:
    """One role definition by GUID (RoleDefinitions_Get / GetById)."""
    return _get_definition(request, scope, role_id)


@router.get(DEFINITIONS + "/{role_id}", name="roleDefinitions_get_at_root")
def get_role_definition_at_root(request: Request, role_id: str) -> Response:
    """`/providers/Microsoft.Authorization/roleDefinitions/{guid}` (GetById, tenant level)."""
    return _get_definition(request, "", role_id)


def _definition_from_wire(guid: str, body: Any) -> RoleDefinition:
    props = arm.parse_body(RoleDefinitionWire, body).properties
    if props is None:
        raise errors.InvalidRequestContent("The request body needs 'properties'.")
    kind = (props.type or CUSTOM).strip()
    if kind.lower() != CUSTOM.lower():
        raise core.InvalidCreateRoleDefinitionRequest(
            f"Only custom roles can be created: properties.type must be '{CUSTOM}', "
            f"not '{kind[:100]}'."
        )
    permissions = []
    for p in props.permissions or []:
        arm.reject_unsupported(
            {
                "permissions[].condition": p.condition,
                "permissions[].conditionVersion": p.condition_version,
            }
        )
        permissions.append(
            Permission(
                actions=tuple(p.actions or ()),
                not_actions=tuple(p.not_actions or ()),
                data_actions=tuple(p.data_actions or ()),
                not_data_actions=tuple(p.not_data_actions or ()),
            )
        )
    return core.check_custom_role(
        RoleDefinition(
            id=guid,
            role_name=props.role_name or "",
            description=props.description or "",
            role_type=CUSTOM,
            permissions=tuple(permissions),
            assignable_scopes=tuple(props.assignable_scopes or ()),
        )
    )


@router.put(SCOPED + DEFINITIONS + "/{role_id}", name="roleDefinitions_create_or_update")
def create_or_update_role_definition(
    request: Request, scope: str, role_id: str, body: Any = Body(None)
) -> Response:
    """Create or update a custom role: 201 with the role (the only success status)."""
    who = _caller(request)
    at = _scope(scope, allow_root=False)
    guid = core.check_role_definition_name(role_id)
    definition = _definition_from_wire(guid, body)
    saved, _created = _store(request).put_definition(definition, who.tenant_id, by=who.object_id)
    return arm.ok(render_definition(saved, at), status=201)


@router.put(DEFINITIONS + "/{role_id}", name="roleDefinitions_create_at_root")
def create_role_definition_at_root(role_id: str) -> Response:
    """Custom roles live under a subscription here (no management groups, no root)."""
    raise core.MissingSubscription()


def _delete_definition(request: Request, raw_scope: str, role_id: str) -> Response:
    who = _caller(request)
    scope = _scope(raw_scope, allow_root=False)
    guid = core.check_role_definition_name(role_id)
    deleted = _store(request).delete_definition(guid, who.tenant_id)
    if deleted is None:
        return Response(status_code=204)
    return arm.ok(render_definition(deleted, scope))


@router.delete(SCOPED + DEFINITIONS + "/{role_id}", name="roleDefinitions_delete")
def delete_role_definition(request: Request, scope: str, role_id: str) -> Response:
    """Delete a custom role: 200 with it, 204 when absent; refused while assigned."""
    return _delete_definition(request, scope, role_id)


@router.delete(DEFINITIONS + "/{role_id}", name="roleDefinitions_delete_at_root")
def delete_role_definition_at_root(request: Request, role_id: str) -> Response:
    """Root-level delete: custom roles are not stored at the root here."""
    return _delete_definition(request, "", role_id)


# --- role assignments ----------------------------------------------------------------------


def _list_assignments(request: Request, raw_scope: str) -> Response:
    who = _caller(request)
    scope = _scope(raw_scope, allow_root=True)
    wanted = core.parse_assignment_filter(request.query_params.get("$filter"))
    # atScope(): at the scope and above it; otherwise also below it (Azure's default).
    found = _store(request).assignments_at(
        scope,
        include_above=True,
        include_below=not wanted.at_scope,
        principal_id=wanted.principal,
        tenant_id=who.tenant_id,
    )
    return arm.ok({"value": [render_assignment(a) for a in found]})


@router.get(SCOPED + ASSIGNMENTS, name="roleAssignments_list_for_scope")
def list_role_assignments(request: Request, scope: str) -> Response:
    """Assignments that apply at a scope (RoleAssignments_ListForScope/Subscription/...)."""
    return _list_assignments(request, scope)


@router.get(ASSIGNMENTS, name="roleAssignments_list_at_root")
def list_role_assignments_at_root(request: Request) -> Response:
    """Every assignment of the caller's directory."""
    return _list_assignments(request, "")


def _get_assignment(request: Request, raw_scope: str, name: str) -> Response:
    who = _caller(request)
    scope = _scope(raw_scope, allow_root=True)
    guid = core.check_assignment_name(name)
    found = _store(request).get_assignment(guid, who.tenant_id)
    if found is None or core.scope_key(found.scope) != core.scope_key(scope):
        raise core.RoleAssignmentNotFound(name=guid)
    return arm.ok(render_assignment(found))


@router.get(SCOPED + ASSIGNMENTS + "/{name}", name="roleAssignments_get")
def get_role_assignment(request: Request, scope: str, name: str) -> Response:
    """One assignment by scope and name, or by id (RoleAssignments_GetById)."""
    return _get_assignment(request, scope, name)


@router.get(ASSIGNMENTS + "/{name}", name="roleAssignments_get_at_root")
def get_role_assignment_at_root(request: Request, name: str) -> Response:
    """An assignment at the tenant root."""
    return _get_assignment(request, "", name)


@router.put(SCOPED + ASSIGNMENTS + "/{name}", name="roleAssignments_create")
def create_role_assignment(
    request: Request, scope: str, name: str, body: Any = Body(None)
) -> Response:
    """Assign a role: 201 with the assignment; 200 for a PUT of an existing name."""
    who = _caller(request)
    at = _scope(scope, allow_root=False)
    guid = core.check_assignment_name(name)
    wire = arm.parse_body(RoleAssignmentWire, body)
    props = wire.properties
    if props is None:
        raise errors.InvalidRequestContent("The request body needs 'properties'.")
    if not props.role_definition_id:
        raise errors.InvalidRequestContent("properties.roleDefinitionId is required.")
    arm.reject_unsupported(
        {
            "condition": props.condition,
            "conditionVersion": props.condition_version,
            "delegatedManagedIdentityResourceId": props.delegated_managed_identity_resource_id,
        }
    )
    role = core.parse_role_definition_id(props.role_definition_id)
    principal_id = core.check_principal_id(props.principal_id)
    core.principal_type(props.principal_type)  # a bad value is a 400 before the lookup
    _check_principal_exists(request, who.tenant_id, principal_id)
    kind = _principal_type(request, who.tenant_id, principal_id, props.principal_type)
    assignment = RoleAssignment(
        name=guid,
        scope=at,
        role_definition_id=role,
        principal_id=principal_id,
        principal_type=kind,
        created_by=who.object_id,
        updated_by=who.object_id,
        description=core.check_text(props.description, "properties.description"),
    )
    saved, created = _store(request).create_assignment(assignment, who.tenant_id)
    return arm.ok(render_assignment(saved), status=201 if created else 200)


@router.put(ASSIGNMENTS + "/{name}", name="roleAssignments_create_at_root")
def create_role_assignment_at_root(name: str) -> Response:
    """Assignments at the tenant root are not made through the API here."""
    raise core.MissingSubscription()


def _delete_assignment(request: Request, raw_scope: str, name: str) -> Response:
    who = _caller(request)
    scope = _scope(raw_scope, allow_root=True)
    guid = core.check_assignment_name(name)
    deleted = _store(request).delete_assignment(guid, scope=scope, tenant_id=who.tenant_id)
    if deleted is None:
        return Response(status_code=204)
    return arm.ok(render_assignment(deleted))


@router.delete(SCOPED + ASSIGNMENTS + "/{name}", name="roleAssignments_delete")
def delete_role_assignment(request: Request, scope: str, name: str) -> Response:
    """Remove an assignment: 200 with it, 204 when there is none at that scope."""
    return _delete_assignment(request, scope, name)


@router.delete(ASSIGNMENTS + "/{name}", name="roleAssignments_delete_at_root")
def delete_role_assignment_at_root(request: Request, name: str) -> Response:
    """Remove an assignment made at the tenant root."""
    return _delete_assignment(request, "", name)


# --- permissions ---------------------------------------------------------------------------


def _access(request: Request, who: Principal) -> Access:
    """The caller's access as enforcement built it; everything when authorization is off."""
    access = getattr(request.state, "access", None)
    if isinstance(access, Access):
        return access
    access_for: Callable[[Principal], Access] | None = getattr(
        request.app.state, "access_for", None
    )
    return ALLOW_ALL if access_for is None else access_for(who)


@router.get(SCOPED + PERMISSIONS, name="permissions_list")
def list_permissions(request: Request, scope: str) -> Response:
    """What the caller may do at a subscription, resource group or resource.

    Any caller with a role somewhere in the subscription may ask (`api/authorize.py`);
    the answer holds the roles in force at the scope, possibly none. As ARM, this neither
    looks the resource group nor the resource up: the answer is about the caller's roles,
    which hold at a scope whether or not something exists there yet.
    """
    who = _caller(request)
    # azure-mgmt-authorization's list_for_resource sends an empty parentResourcePath as
    # `//`; ARM reads it as one `/`.
    raw = "/".join(part for part in scope.split("/") if part)
    at = _scope(raw, allow_root=False)
    items = [render_permission(p) for p in _access(request, who).permissions_at(at)]
    return arm.ok({"value": items, "nextLink": None})
