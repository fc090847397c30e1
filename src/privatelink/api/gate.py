"""The gate in front of every ARM path: authenticate, check the subscription's tenant.

Authentication runs before the router so that an anonymous caller gets 401 for every
/subscriptions path, served or not, and learns nothing about which routes exist.

Every subscription belongs to one tenant. On a path naming a subscription GUID:

* a subscription of another tenant than the token's: `401 InvalidAuthenticationTokenTenant`,
  with Azure's message and a `WWW-Authenticate` header naming the subscription's tenant
  authority (az and azure-identity read the tenant from it);
* an unknown subscription answers `404 SubscriptionNotFound` ("The subscription 'x'
  could not be found.", as ARM does), with one exception: a PUT inside it by the
  default tenant's admin creates it (the convenience that lets `credentials.json` use
  any GUID): it joins the default tenant and `on_subscription_created(subscription,
  tenant, owner)` runs (the Owner role assignment is made there). A read never creates
  anything, and neither does any other principal, nor another tenant's admin: they
  create subscriptions explicitly (`privatelink subscription create --tenant`, the admin
  API). Only PUT creates, since it is the one verb that creates a resource; PATCH,
  DELETE and POST act on something that exists, and in an unknown subscription nothing
  does.

A subscription never changes tenant and is never deleted, so subscription -> tenant is
cached once seen; unknown subscriptions are not cached (another server on the same
database may create them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from privatelink.api.errors import arm_error_response, error_response
from privatelink.api.paths import is_arm_path
from privatelink.core.errors import StoreFault
from privatelink.core.ids import is_guid
from privatelink.core.principal import Principal, SubscriptionCreated, no_owner
from privatelink.identity.auth import AuthenticationFailed

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class SubscriptionStore(Protocol):
    """The subscriptions table (satisfied by `SqlRepository`)."""

    def get_subscription(self, subscription_id: str) -> Mapping[str, str] | None: ...

    def ensure_subscription(self, subscription_id: str, tenant_id: str, name: str = "") -> bool: ...


class TenantAdmins(Protocol):
    """Who administers a tenant (satisfied by `SqlDirectory`)."""

    def is_admin(self, tenant_id: str, object_id: str) -> bool: ...


def wrong_tenant_message(token_issuer: str, tenant_issuer: str, authority: str) -> str:
    """ARM's `InvalidAuthenticationTokenTenant` message, with this server's URLs."""
    return (
        f"The access token is from the wrong issuer '{token_issuer}'. It must match the "
        f"tenant '{tenant_issuer}' associated with this subscription. Please use the "
        f"authority (URL) '{authority}' to get the token. Note, if the subscription is "
        "transferred to another tenant there is no impact to the services, but information "
        "about new tenant could take time to propagate (up to an hour). If you just "
        "transferred your subscription and see this error message, please try back later."
    )


def _base(request: Request) -> str:
    """This server's base URL (only error answers name it: not built for every request)."""
    return str(request.base_url).rstrip("/")


class ArmGate:
    """ASGI middleware: NUL check, bearer authentication and tenant check for /subscriptions."""

    def __init__(
        self,
        app: ASGIApp,
        authenticate: Callable[[Request], Awaitable[Principal]],
        tenant: str,
        subscriptions: SubscriptionStore,
        admins: TenantAdmins,
        issuer_for: Callable[[str], str],
        on_subscription_created: SubscriptionCreated = no_owner,
    ) -> None:
        """Wrap `app`.

        `tenant` is the default tenant (the authority named when authentication fails);
        `issuer_for(tenant)` is a tenant's token issuer (`TokenIssuer.issuer_for`).
        """
        self.app = app
        self.authenticate = authenticate
        self.tenant = tenant
        self.subscriptions = subscriptions
        self.admins = admins
        self.issuer_for = issuer_for
        self.on_subscription_created = on_subscription_created
        self._tenant_of: dict[str, str] = {}  # subscription (lower) -> tenant (lower)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_arm_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        # A NUL in the URL: in the decoded path, or percent-encoded in the query (a raw
        # NUL byte never gets past the HTTP parser).
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            response: Response = error_response(
                400, "InvalidRequestContent", "The URL contains a NUL character."
            )
            await response(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await self.authenticate(request)
        except AuthenticationFailed as exc:
            response = error_response(
                401,
                exc.code,
                exc.message,
                {"WWW-Authenticate": exc.www_authenticate(f"{_base(request)}/{self.tenant}")},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        parts = scope["path"].split("/")
        if len(parts) > 2 and is_guid(parts[2]):
            # A PUT of something inside the subscription (never of the bare
            # /subscriptions/{id}, which is no resource anyone can PUT).
            creates = scope.get("method") == "PUT" and len(parts) > 3 and parts[3] != ""
            try:
                refused = await self._check_subscription(parts[2], principal, request, creates)
            except StoreFault as exc:  # the store could not be asked (503/507, ARM body)
                refused = arm_error_response(exc)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _check_subscription(
        self, subscription: str, principal: Principal, request: Request, creates: bool
    ) -> Response | None:
        """None when `principal` may use `subscription`, else the error response.

        `creates`: the request is a write that may create an unknown subscription (when
        its caller is the default tenant's admin).
        """
        tenant = self._tenant_of.get(subscription.lower())
        if tenant is None:
            tenant = await run_in_threadpool(self._resolve, subscription, principal, creates)
            if tenant is None:
                return error_response(
                    404,
                    "SubscriptionNotFound",
                    f"The subscription '{subscription}' could not be found.",
                )
            self._tenant_of[subscription.lower()] = tenant
        if tenant == principal.tenant_id.lower():
            return None
        authority = f"{_base(request)}/{tenant}"
        failed = AuthenticationFailed(
            wrong_tenant_message(
                self.issuer_for(principal.tenant_id), self.issuer_for(tenant), authority
            ),
            code="InvalidAuthenticationTokenTenant",
            reason="wrong_tenant",
        )
        return error_response(
            401,
            failed.code,
            failed.message,
            {"WWW-Authenticate": failed.www_authenticate(authority)},
        )

    def may_create(self, principal: Principal) -> bool:
        """Whether a write by `principal` may create an unknown subscription."""
        return principal.tenant_id.lower() == self.tenant.lower() and self.admins.is_admin(
            principal.tenant_id, principal.object_id
        )

    def _resolve(self, subscription: str, principal: Principal, creates: bool) -> str | None:
        """The subscription's tenant (lower-case), else None.

        An unknown subscription is created (in the default tenant) when `creates` and the
        caller is the default tenant's admin; otherwise it stays unknown.
        """
        record = self.subscriptions.get_subscription(subscription)
        if record is None:
            if not (creates and self.may_create(principal)):
                return None
            if self.subscriptions.ensure_subscription(subscription, principal.tenant_id):
                self.on_subscription_created(subscription, principal.tenant_id, principal.object_id)
            # Re-read: it may have been created concurrently (by the admin API, in another
            # tenant).
            record = self.subscriptions.get_subscription(subscription)
            if record is None:
                return None
        return str(record["tenant_id"]).lower()
