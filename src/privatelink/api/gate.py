"""The gate in front of every ARM path: authenticate before routing, refuse NUL bytes.

Authentication runs before the router so that an anonymous caller gets 401 for every
/subscriptions path, served or not, and learns nothing about which routes exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request

from privatelink.api.errors import error_response
from privatelink.core.ids import is_guid
from privatelink.identity.auth import AuthenticationFailed

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class ArmGate:
    """ASGI middleware: NUL check and bearer authentication for /subscriptions paths."""

    def __init__(
        self,
        app: ASGIApp,
        authenticate: Callable[[Request], Awaitable[Any]],
        tenant: str,
        on_subscription: Callable[[str, Any], object] | None = None,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.tenant = tenant
        self.on_subscription = on_subscription
        self._seen: set[str] = set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].lower().startswith("/subscriptions"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        raw = scope["path"] + "?" + unquote(scope.get("query_string", b"").decode("latin-1"))
        if "\x00" in raw:
            response = error_response(
                400, "InvalidRequestContent", "The URL contains a NUL character."
            )
            await response(scope, receive, send)
            return
        try:
            principal = await self.authenticate(request)
        except AuthenticationFailed as exc:
            base = str(request.base_url).rstrip("/")
            response = error_response(
                401,
                exc.code,
                exc.message,
                {"WWW-Authenticate": exc.www_authenticate(f"{base}/{self.tenant}")},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        parts = scope["path"].split("/")
        if self.on_subscription and len(parts) > 2 and is_guid(parts[2]):
            sub = parts[2].lower()
            if sub not in self._seen:  # subscriptions come to exist on first use
                self.on_subscription(parts[2], principal)
                self._seen.add(sub)
        await self.app(scope, receive, send)
