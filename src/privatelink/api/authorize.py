"""Enforcement: every ARM request is authorized before its route runs.

The gate has authenticated the caller; this dependency asks `core.actions` which action
the request performs at which scope, builds the caller's `Access` (its role assignments,
cached by the store) and asks it. A refusal is `403 AuthorizationFailed` before the
route runs, so nothing is written. Lists of tracked resources are not refused when the
caller may read some of them: the route lists only what it may read (`readable`).

A few kinds of request need no role of their own beyond access to the subscription, as
in ARM: reading the subscription itself, polling an operation's status and asking what
one may do at a scope (Microsoft.Authorization/permissions: its answer is the caller's
own roles, so a custom role without `*/read` may ask too).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from privatelink.core.actions import RequestAction, describe
from privatelink.core.authorization import ALLOW_ALL, Access, AuthorizationFailed
from privatelink.core.principal import Principal

#: Reads that any principal with some role in the subscription may make.
_SUBSCRIPTION_READS = frozenset(
    a.lower()
    for a in (
        "Microsoft.Resources/subscriptions/read",
        "Microsoft.Network/locations/operations/read",
        "Microsoft.Network/locations/operationResults/read",
        "Microsoft.Resources/deployments/operationStatuses/read",
        "Microsoft.Authorization/permissions/read",
    )
)

AccessFor = Callable[[Principal], Access]


def access_of(request: Request) -> Access:
    """The caller's access (set by `authorize`; everything allowed where no gate ran)."""
    access: Access = getattr(request.state, "access", ALLOW_ALL)
    return access


def request_action(request: Request) -> RequestAction | None:
    """What the current request does, as `authorize` saw it."""
    found: RequestAction | None = getattr(request.state, "request_action", None)
    return found


async def authorize(request: Request) -> None:
    """FastAPI dependency: refuse the request unless the caller's roles allow it."""
    principal: Principal | None = getattr(request.state, "principal", None)
    access_for: AccessFor | None = getattr(request.app.state, "access_for", None)
    access = ALLOW_ALL if principal is None or access_for is None else access_for(principal)
    request.state.access = access
    # The routed path (as FastAPI matched it), root path first as in `request.url`.
    described = describe(request.method, request.scope.get("root_path", "") + request.scope["path"])
    request.state.request_action = described
    if described is None or access is ALLOW_ALL:
        return
    check(access, described)


def check(access: Access, described: RequestAction) -> None:
    """Raise `AuthorizationFailed` unless `access` allows the described request."""
    if described.collection:
        if access.allows(described.action, described.scope):
            return
        if access.can_read_anything_under(described.scope):
            return  # the route lists what the caller may read
        raise AuthorizationFailed.of(access, described.action, described.scope)
    subscription = f"/subscriptions/{described.subscription}" if described.subscription else ""
    if (
        subscription
        and described.action.lower() in _SUBSCRIPTION_READS
        and access.can_read_anything_under(subscription)
    ):
        return
    access.require_any(described.actions, described.scope)


def readable(request: Request, item_id: str, item_action: str = "") -> bool:
    """Whether the caller may read an item of the list being served.

    `item_action` is the item's own read action where the list mixes types (generic
    resource lists); by default the list's.
    """
    described = request_action(request)
    if described is None or not described.collection:
        return True
    access = access_of(request)
    if access is ALLOW_ALL or access.allows(described.action, described.scope):
        return True
    return access.allows(item_action or described.item_action or described.action, item_id)
