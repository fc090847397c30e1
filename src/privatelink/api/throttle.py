"""ARM's request throttling at the edge: a pure ASGI middleware around `core.throttle`.

Runs inside the gate (it reads the principal the gate authenticated) and outside the
activity recorder (a throttled request never reaches a resource provider, so it is not an
activity). Only authenticated ARM requests are charged: anonymous or refused ones (401,
404 SubscriptionNotFound) never reach it, and neither do the token endpoint, Graph or
/privatelink/admin.

A request under `/subscriptions/{guid}` is charged to that subscription; every other ARM
path (`/subscriptions`, `/tenants`, `/providers/...`) to the caller's tenant. A refused
request is answered here: 429 with ARM's error body, `Retry-After` and the remaining
header at 0. Every other answer gets the remaining-requests headers of its category.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from privatelink.api.activity_log import CORRELATION_HEADER, correlation_id
from privatelink.api.paths import is_arm_path
from privatelink.core.ids import is_guid
from privatelink.core.principal import Principal
from privatelink.core.throttle import Throttle, category_of

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class ArmThrottle:
    """ASGI middleware charging each authenticated ARM request to its budgets."""

    def __init__(self, app: ASGIApp, throttle: Throttle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        state = scope.get("state")
        principal = state.get("principal") if state else None
        if (
            scope["type"] != "http"
            or not isinstance(principal, Principal)
            or not is_arm_path(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        parts = scope["path"].split("/", 3)
        subscription = (
            parts[2]
            if len(parts) > 2 and parts[1] == "subscriptions" and is_guid(parts[2])
            else None
        )
        charge = self.throttle.charge(
            category_of(scope["method"]), principal.object_id, principal.tenant_id, subscription
        )
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in charge.headers()]
        if not charge.allowed:
            error = charge.error()
            await _refuse(scope, send, error.code, error.message, headers)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(
    scope: Scope, send: Any, code: str, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps({"error": {"code": code, "message": message}}).encode()
    correlation = correlation_id(_header(scope, CORRELATION_HEADER.encode()))
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(payload)).encode()),
                (CORRELATION_HEADER.encode(), correlation.encode("latin-1")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None
