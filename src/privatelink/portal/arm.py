"""The portal's calls to ARM: the server's own API, in process, with the user's token.

Every page reads and writes through the same routes, middleware and RBAC as any other
client (an ASGI transport into the app: no network hop, no back door). An expired
access token is renewed once with the session's refresh token; an ARM error is raised
as `ArmError` with its code and message, for the page to show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from privatelink.portal.sessions import Session

NETWORK_API = "2024-05-01"
SUBSCRIPTIONS_API = "2022-12-01"
AUTHORIZATION_API = "2022-04-01"
#: Renew the access token this long before it expires.
RENEW_EARLY_SECONDS = 120


class ArmError(Exception):
    """An ARM request was refused: its status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Arm:
    """ARM as one session's user (`request` then `json`)."""

    def __init__(
        self,
        app: Any,
        origin: str,
        session: Session,
        renew: Callable[[Session], Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._origin = origin
        self._session = session
        self._renew = renew
        self._clock = clock

    async def request(
        self,
        method: str,
        path: str,
        api_version: str = NETWORK_API,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The JSON of an ARM request (None for an empty answer); ArmError when refused.
        `headers` go with it (If-None-Match, ...)."""
        if self._session.expires - RENEW_EARLY_SECONDS < self._clock():
            await self._renew(self._session)
        query = {"api-version": api_version} | (params or {})
        transport = httpx.ASGITransport(app=self._app, client=("127.0.0.1", 0))
        async with httpx.AsyncClient(transport=transport, base_url=self._origin) as client:
            reply = await client.request(
                method,
                path,
                params=query,
                json=body,
                headers=(headers or {}) | {"Authorization": f"Bearer {self._session.access_token}"},
                timeout=60,
            )
        if reply.status_code >= 400:
            raise _error(reply)
        if not reply.content:
            return None
        return reply.json()

    async def get(self, path: str, api_version: str = NETWORK_API) -> Any:
        """GET `path`."""
        return await self.request("GET", path, api_version)

    async def list_all(self, path: str, api_version: str = NETWORK_API) -> list[Any]:
        """Every item of a list, following `nextLink` (same origin only)."""
        items: list[Any] = []
        page = await self.get(path, api_version)
        for _ in range(1000):  # bounded: a list of more pages than this is cut
            items.extend(page.get("value") or [])
            link = page.get("nextLink")
            if not link or not link.startswith(self._origin):
                break
            url = httpx.URL(link)
            page = await self.request(
                "GET",
                url.path,
                api_version,
                params={k: v for k, v in url.params.items() if k != "api-version"},
            )
        return items


def _error(reply: httpx.Response) -> ArmError:
    try:
        error = reply.json().get("error") or {}
    except ValueError:
        error = {}
    return ArmError(
        reply.status_code,
        str(error.get("code") or f"HTTP{reply.status_code}"),
        str(error.get("message") or reply.reason_phrase),
    )
