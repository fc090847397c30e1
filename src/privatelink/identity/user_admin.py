"""The admin endpoints behind `privatelink user ...`: a tenant's users (people).

Routes, under `/privatelink/admin/tenants/{tenant}` (a tenant name or id) beside the
tenant endpoints (identity/admin.py), JSON in and out, errors as `{"error": {"code",
"message"}}`:

* `POST .../users` `{"name", "password"?, "displayName"?}` -> 201: the user and its
  `password` (generated when none is given; the only time it is shown). 400
  `InvalidUserName` / `InvalidPassword` / `InvalidDisplayName` / `InvalidRequestContent`
  for a bad body (unknown fields too), 409 `UserAlreadyExists` for a taken sign-in name.
* `GET .../users` -> `{"value": [user, ...]}`, oldest first.
* `GET .../users/{user}` -> one user; `{user}` is its object id, its sign-in name
  (`alice@contoso`, any case) or the bare name (`alice`); 404 `UserNotFound`.
* `DELETE .../users/{user}` -> 204; 404 `UserNotFound`.

A user shows `object_id`, `tenant_id`, `user_principal_name` (`<name>@<tenant name>`),
`display_name` and `created`; never a password hash.

Who may call: the default tenant's admin (for any tenant) and the tenant's own admin
(`AdminGate.run_for_tenant`): 401 without a valid token, 403 `AuthorizationFailed` for
anyone else (another tenant's admin, a user), 404 `TenantNotFound` for the server's
admin naming an unknown tenant.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from privatelink.identity.admin import PREFIX, AdminError, AdminGate, TenantRecord
from privatelink.identity.tokens import UserRecord

log = logging.getLogger("privatelink.admin")

#: The fields of a create body.
FIELDS = ("name", "password", "displayName")
#: Directory error codes -> (HTTP status, the API's code).
_ERRORS = {
    "InvalidUserName": (400, "InvalidUserName"),
    "InvalidPassword": (400, "InvalidPassword"),
    "InvalidDisplayName": (400, "InvalidDisplayName"),
    "UserExists": (409, "UserAlreadyExists"),
    "Conflict": (409, "Conflict"),
    "TenantNotFound": (404, "TenantNotFound"),
}


class UserDirectory(Protocol):
    """The directory's user operations (satisfied by `store.directory.SqlDirectory`)."""

    def create_user(
        self,
        tenant_id: str,
        name: str,
        password: str | None = None,
        display_name: str | None = None,
    ) -> tuple[UserRecord, str]: ...

    def get_user(self, tenant_id: str, object_id: str) -> UserRecord | None: ...

    def find_user(self, user_principal_name: str) -> UserRecord | None: ...

    def list_users(self, tenant_id: str) -> Sequence[UserRecord]: ...

    def delete_user(self, tenant_id: str, object_id: str) -> bool: ...


def user_view(user: UserRecord) -> dict[str, Any]:
    """A user as the API shows it (no password)."""
    return {
        "object_id": user.object_id,
        "tenant_id": user.tenant_id,
        "user_principal_name": user.user_principal_name,
        "display_name": user.display_name,
        "created": user.created,
    }


def _create_body(body: Any) -> tuple[str, str | None, str | None]:
    """(name, password, displayName) of a create body; AdminError 400 when it is bad."""
    if not isinstance(body, dict):
        raise AdminError(
            400,
            "InvalidRequestContent",
            "The request body must be a JSON object with 'name' and optionally 'password' "
            "and 'displayName'.",
        )
    unknown = sorted(str(k) for k in set(body) - set(FIELDS))
    if unknown:
        raise AdminError(
            400,
            "InvalidRequestContent",
            f"Unknown field '{unknown[0][:100]}' in the user; a user has name, password and "
            "displayName.",
        )
    name = body.get("name")
    if name in (None, ""):
        raise AdminError(400, "InvalidRequestContent", "The request body must contain 'name'.")
    for field in FIELDS:
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise AdminError(400, "InvalidRequestContent", f"'{field}' must be a string.")
    return name, body.get("password"), body.get("displayName")


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def build_user_router(gate: AdminGate, directory: UserDirectory) -> APIRouter:
    """The users routes under `/privatelink/admin/tenants/{tenant}/users`."""
    router = APIRouter(prefix=PREFIX, tags=["admin"])

    def find(tenant: TenantRecord, ref: str) -> UserRecord:
        user: UserRecord | None
        if _is_guid(ref):
            user = directory.get_user(tenant.tenant_id, ref)
        else:
            user = directory.find_user(ref if "@" in ref else f"{ref}@{tenant.name}")
            # A sign-in name of another tenant is not this tenant's user.
            if user is not None and user.tenant_id.lower() != tenant.tenant_id.lower():
                user = None
        if user is None:
            raise AdminError(
                404,
                "UserNotFound",
                f"The user '{ref[:300]}' could not be found in tenant '{tenant.name}'.",
            )
        return user

    @router.post("/tenants/{tenant}/users")
    def create_user(request: Request, tenant: str, body: Any = Body(None)) -> Response:
        """Create a user in the tenant; 201 with it and its password."""

        def action(found: TenantRecord) -> tuple[int, Any]:
            name, password, display_name = _create_body(body)
            try:
                user, secret = directory.create_user(
                    found.tenant_id, name, password=password, display_name=display_name
                )
            except Exception as exc:
                known = _ERRORS.get(str(getattr(exc, "code", "")))
                if known is None:
                    raise
                raise AdminError(*known, str(getattr(exc, "message", exc))) from exc
            log.info("user %s (%s) created", user.user_principal_name, user.object_id)
            return 201, {**user_view(user), "password": secret}

        return gate.run_for_tenant(request, tenant, action)

    @router.get("/tenants/{tenant}/users")
    def list_users(request: Request, tenant: str) -> Response:
        """The tenant's users, oldest first (no passwords)."""
        return gate.run_for_tenant(
            request,
            tenant,
            lambda found: (
                200,
                {"value": [user_view(u) for u in directory.list_users(found.tenant_id)]},
            ),
        )

    @router.get("/tenants/{tenant}/users/{user}")
    def show_user(request: Request, tenant: str, user: str) -> Response:
        """One user by object id, sign-in name or bare name (no password)."""
        return gate.run_for_tenant(
            request, tenant, lambda found: (200, user_view(find(found, user)))
        )

    @router.delete("/tenants/{tenant}/users/{user}")
    def delete_user(request: Request, tenant: str, user: str) -> Response:
        """Delete a user; 204, or 404 when the tenant has no such user."""

        def action(found: TenantRecord) -> tuple[int, Any]:
            target = find(found, user)
            if not directory.delete_user(found.tenant_id, target.object_id):
                raise AdminError(
                    404, "UserNotFound", f"The user '{user[:300]}' could not be found."
                )
            log.info("user %s (%s) deleted", target.user_principal_name, target.object_id)
            return 204, None

        return gate.run_for_tenant(request, tenant, action)

    return router
