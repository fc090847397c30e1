"""The admin endpoints behind `privatelink tenant ...` and `privatelink subscription create`.

Routes (JSON in and out, errors as `{"error": {"code", "message"}}`):

* `POST /privatelink/admin/tenants` `{"name"}` -> 201: a tenant, its admin service
  principal (application + service principal + secret) and one subscription with the
  admin as owner. The body has the fields of `credentials.json` (`url`, `ca_file`,
  `tenant_id`, `client_id`, `client_secret`, `subscription_id`) plus `object_id` and
  `name`: the only time the admin's secret is shown.
* `GET /privatelink/admin/tenants` -> `{"value": [tenant, ...]}`;
  `GET /privatelink/admin/tenants/{name or id}` -> one tenant (never a secret).
* `POST /privatelink/admin/subscriptions` `{"tenant", "display_name"?}` -> 201: a new
  subscription in that tenant, its admin as owner.

Only the default tenant's admin may call them, with an ARM bearer token: 401 without a
(valid) token, 403 `AuthorizationFailed` for anyone else (`AdminGate`, which the site
routes of `api/site.py` share). A tenant name is 1-63 of
`[A-Za-z0-9-]` and not a GUID (it names a file, `tenants/<name>.json`).

The directory and the subscriptions table are reached through small protocols (this
layer does not import the store); the directory's own errors carry a `code` and are
matched by it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response

from privatelink.core.errors import ArmError, StoreFault
from privatelink.core.ids import new_guid
from privatelink.core.principal import Principal, SubscriptionCreated, no_owner
from privatelink.identity.auth import AuthenticationFailed, principal_from_header
from privatelink.identity.tokens import TokenIssuer

log = logging.getLogger("privatelink.admin")

PREFIX = "/privatelink/admin"
TENANT_NAME = re.compile(r"[A-Za-z0-9-]{1,63}")


class TenantRecord(Protocol):
    """A tenant as the admin API shows it (satisfied by `store.directory.Tenant`)."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def default_domain(self) -> str: ...

    @property
    def admin_object_id(self) -> str: ...

    @property
    def admin_app_id(self) -> str: ...

    @property
    def created(self) -> str: ...


class AdminPrincipal(Protocol):
    """The admin service principal of a new tenant."""

    @property
    def object_id(self) -> str: ...

    @property
    def app_id(self) -> str: ...


class TenantDirectory(Protocol):
    """The directory's tenant operations (satisfied by `store.directory.SqlDirectory`)."""

    def create_tenant(self, name: str) -> tuple[TenantRecord, AdminPrincipal, str]: ...

    def find_tenant(self, name_or_id: str) -> TenantRecord | None: ...

    def list_tenants(self) -> Sequence[TenantRecord]: ...

    def is_admin(self, tenant_id: str, object_id: str) -> bool: ...


class SubscriptionLedger(Protocol):
    """The subscriptions table (satisfied by `SqlRepository`)."""

    def ensure_subscription(self, subscription_id: str, tenant_id: str, name: str = "") -> bool: ...

    def list_subscriptions(self) -> Sequence[Mapping[str, str]]: ...


class AdminError(Exception):
    """A refused admin request: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        """`{"error": {"code", "message"}}` with the status."""
        return JSONResponse(
            {"error": {"code": self.code, "message": self.message}},
            status_code=self.status,
            headers=headers,
        )


def check_tenant_name(name: Any) -> str:
    """`name` when it is a valid tenant name, else `AdminError` 400 `InvalidTenantName`."""
    if not isinstance(name, str) or not TENANT_NAME.fullmatch(name) or _is_guid(name):
        raise AdminError(
            400,
            "InvalidTenantName",
            f"The tenant name {name!r} is invalid: use 1-63 letters, digits or '-' "
            "(not a GUID); it also names the file tenants/<name>.json.",
        )
    return name


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class AdminGate:
    """Who may call the admin API, and how an admin route answers.

    Only the default tenant's admin passes (`require`); `run` answers 401 (with a
    `WWW-Authenticate` challenge) without a valid token, 403 `AuthorizationFailed` for
    anyone else, an `AdminError` or a domain error (`ArmError`) as its error body, and
    otherwise the action's (status, body). Store faults are left to the app's handler
    (they carry `Retry-After`). Used by every router under `/privatelink/admin`.
    `run_for_tenant` also lets a tenant's own admin in, for that tenant's routes (users).
    """

    def __init__(
        self, issuer: TokenIssuer, directory: TenantDirectory, default_tenant_id: str
    ) -> None:
        self.issuer = issuer
        self.directory = directory
        self.default_tenant_id = default_tenant_id
        self._default_tenant = default_tenant_id.lower()

    def require(self, request: Request) -> Principal:
        """The caller, when it is the default tenant's admin; else AdminError/401."""
        principal = principal_from_header(self.issuer, request.headers.get("authorization"))
        if not self._is_server_admin(principal):
            raise AdminError(
                403,
                "AuthorizationFailed",
                f"The client '{principal.client_id}' with object id '{principal.object_id}' "
                "may not use the admin API (tenants, sites): only the default tenant's admin "
                "(the client of the server's credentials.json) may.",
            )
        return principal

    def run(self, request: Request, action: Callable[[], tuple[int, Any]]) -> Response:
        """`action()` for the default tenant's admin, as a response (see the class)."""

        def guarded() -> tuple[int, Any]:
            self.require(request)
            return action()

        return self._respond(request, guarded)

    def run_for_tenant(
        self,
        request: Request,
        name_or_id: str,
        action: Callable[[TenantRecord], tuple[int, Any]],
    ) -> Response:
        """`action(tenant)` for the default tenant's admin or that tenant's own admin.

        The default tenant's admin gets 404 `TenantNotFound` for an unknown tenant; anyone
        else gets 403 `AuthorizationFailed` whether or not the tenant exists (so another
        tenant's admin cannot probe tenant names).
        """

        def guarded() -> tuple[int, Any]:
            principal = principal_from_header(self.issuer, request.headers.get("authorization"))
            tenant = self.directory.find_tenant(name_or_id)
            if self._is_server_admin(principal):
                if tenant is None:
                    raise AdminError(
                        404,
                        "TenantNotFound",
                        f"The tenant '{name_or_id[:100]}' could not be found.",
                    )
            elif (
                tenant is None
                or principal.tenant_id.lower() != tenant.tenant_id.lower()
                or not self.directory.is_admin(tenant.tenant_id, principal.object_id)
            ):
                raise AdminError(
                    403,
                    "AuthorizationFailed",
                    f"The client '{principal.client_id}' with object id "
                    f"'{principal.object_id}' may not manage tenant '{name_or_id[:100]}': only "
                    "that tenant's admin or the default tenant's admin may.",
                )
            return action(tenant)

        return self._respond(request, guarded)

    def _is_server_admin(self, principal: Principal) -> bool:
        return principal.tenant_id.lower() == self._default_tenant and self.directory.is_admin(
            principal.tenant_id, principal.object_id
        )

    def _respond(self, request: Request, guarded: Callable[[], tuple[int, Any]]) -> Response:
        """`guarded()`'s (status, body) as a response, its errors as error bodies."""
        try:
            status, body = guarded()
        except AuthenticationFailed as exc:
            base = str(request.base_url).rstrip("/")
            return AdminError(401, exc.code, exc.message).response(
                {"WWW-Authenticate": exc.www_authenticate(f"{base}/{self.default_tenant_id}")}
            )
        except AdminError as exc:
            return exc.response()
        except StoreFault:
            raise
        except ArmError as exc:
            return AdminError(exc.status, exc.code, exc.message).response()
        if body is None:
            return Response(status_code=status)
        return JSONResponse(body, status_code=status)


def build_admin_router(
    issuer: TokenIssuer,
    directory: TenantDirectory,
    subscriptions: SubscriptionLedger,
    default_tenant_id: str,
    *,
    server_url: str,
    ca_file: str,
    on_subscription_created: SubscriptionCreated = no_owner,
) -> APIRouter:
    """The admin routes under `/privatelink/admin`.

    `server_url` and `ca_file` are what `credentials.json` says (they go into a new
    tenant's credentials); `on_subscription_created(subscription, tenant, owner)` runs
    for every subscription made here (the tenant's admin is the owner).
    """
    router = APIRouter(prefix=PREFIX, tags=["admin"])
    default_tenant = default_tenant_id.lower()
    run = AdminGate(issuer, directory, default_tenant_id).run

    def tenant_views(tenants: Sequence[TenantRecord]) -> list[dict[str, Any]]:
        owned: dict[str, list[dict[str, str]]] = {}
        for s in subscriptions.list_subscriptions():
            owned.setdefault(s["tenant_id"].lower(), []).append(
                {"subscription_id": s["subscription_id"], "display_name": s["display_name"]}
            )
        return [tenant_view(t, owned.get(t.tenant_id.lower(), [])) for t in tenants]

    def tenant_view(tenant: TenantRecord, owned: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "name": tenant.name,
            "tenant_id": tenant.tenant_id,
            "default_domain": tenant.default_domain,
            "client_id": tenant.admin_app_id,
            "object_id": tenant.admin_object_id,
            "created": tenant.created,
            "default": tenant.tenant_id.lower() == default_tenant,
            "subscriptions": owned,
        }

    def find(name_or_id: Any) -> TenantRecord:
        tenant = directory.find_tenant(name_or_id) if isinstance(name_or_id, str) else None
        if tenant is None:
            raise AdminError(
                404, "TenantNotFound", f"The tenant '{name_or_id}' could not be found."
            )
        return tenant

    def new_subscription(tenant: TenantRecord, display_name: str) -> str:
        subscription = new_guid()
        subscriptions.ensure_subscription(subscription, tenant.tenant_id, display_name)
        on_subscription_created(subscription, tenant.tenant_id, tenant.admin_object_id)
        return subscription

    @router.post("/tenants")
    def create_tenant(request: Request, body: Any = Body(None)) -> Response:
        """Create a tenant, its admin and one subscription; 201 with the admin's secret."""

        def action() -> tuple[int, Any]:
            name = check_tenant_name(_field(body, "name", required=True))
            try:
                tenant, admin, secret = directory.create_tenant(name)
            except Exception as exc:
                if getattr(exc, "code", None) in ("TenantExists", "Conflict"):
                    raise AdminError(
                        409, "TenantAlreadyExists", f"A tenant named '{name}' already exists."
                    ) from exc
                raise
            subscription = new_subscription(tenant, f"{tenant.name} default")
            log.info("tenant %s (%s) created", tenant.name, tenant.tenant_id)
            return 201, {
                "url": server_url,
                "ca_file": ca_file,
                "tenant_id": tenant.tenant_id,
                "client_id": admin.app_id,
                "client_secret": secret,
                "subscription_id": subscription,
                "object_id": admin.object_id,
                "name": tenant.name,
            }

        return run(request, action)

    @router.get("/tenants")
    def list_tenants(request: Request) -> Response:
        """Every tenant, oldest first (no secrets)."""
        return run(request, lambda: (200, {"value": tenant_views(directory.list_tenants())}))

    @router.get("/tenants/{name_or_id}")
    def show_tenant(request: Request, name_or_id: str) -> Response:
        """One tenant by name or id (no secrets)."""
        return run(request, lambda: (200, tenant_views([find(name_or_id)])[0]))

    @router.post("/subscriptions")
    def create_subscription(request: Request, body: Any = Body(None)) -> Response:
        """A new subscription in a tenant, with the tenant's admin as owner."""

        def action() -> tuple[int, Any]:
            tenant = find(_field(body, "tenant", required=True))
            display = _field(body, "display_name") or f"{tenant.name} {new_guid()[:8]}"
            if not isinstance(display, str) or len(display) > 200:
                raise AdminError(
                    400, "InvalidRequestContent", "display_name must be a string of 1-200 chars."
                )
            subscription = new_subscription(tenant, display)
            return 201, {
                "subscription_id": subscription,
                "display_name": display,
                "tenant_id": tenant.tenant_id,
                "tenant": tenant.name,
                "owner_object_id": tenant.admin_object_id,
            }

        return run(request, action)

    return router


def _field(body: Any, name: str, *, required: bool = False) -> Any:
    """A field of a JSON object body; AdminError 400 when the body or a required field is bad."""
    if not isinstance(body, dict):
        raise AdminError(400, "InvalidRequestContent", "The request body must be a JSON object.")
    value = body.get(name)
    if required and value in (None, ""):
        raise AdminError(400, "InvalidRequestContent", f"The request body must contain '{name}'.")
    return value
