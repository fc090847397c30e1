"""What every portal page needs: the session of a request, ARM as its user, rendering
with the shared templates and headers, and whether the user may do something.

One `Portal` per server app; each group of pages (router.py, ...) adds its routes with
it, so they share sessions and rendering.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from privatelink.identity.tokens import PORTAL_CLIENT_ID
from privatelink.portal.arm import Arm, ArmError
from privatelink.portal.sessions import Session, Sessions

SESSION_COOKIE = "pl_portal"
SIGN_IN_COOKIE = "pl_portal_signin"
ARM_SCOPE = "https://management.azure.com/.default openid profile offline_access"
AUTHORIZATION_API = "2022-04-01"
MAX_FORM_BYTES = 256 * 1024
HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
)
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}


def origin_of(request: Request) -> str:
    """Scheme, host and port the browser used."""
    return f"{request.url.scheme}://{request.url.netloc}"


def _matches(pattern: str, action: str) -> bool:
    """An RBAC action pattern (`*` any run of characters, any case) against an action."""
    regex = "^" + re.escape(pattern.lower()).replace(r"\*", ".*") + "$"
    return re.match(regex, action.lower()) is not None


def permitted(permissions: list[dict[str, Any]], action: str) -> bool:
    """Whether the Microsoft.Authorization/permissions entries grant `action` (one role
    grants it when an `actions` pattern matches and no `notActions` pattern does)."""
    return any(
        any(_matches(a, action) for a in p.get("actions") or [])
        and not any(_matches(n, action) for n in p.get("notActions") or [])
        for p in permissions
    )


async def read_form(request: Request) -> dict[str, list[str]]:
    """A bounded url-encoded form, every value of each field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


class Portal:
    """Sessions, ARM and rendering for the pages of one server app."""

    def __init__(self, app: Any, sessions: Sessions | None = None) -> None:
        self.app = app
        self.store = sessions if sessions is not None else Sessions()

    async def token(self, origin: str, form: dict[str, str]) -> dict[str, Any]:
        """A token request to the server's own endpoint (in process), as the portal."""
        transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 0))
        async with httpx.AsyncClient(transport=transport, base_url=origin) as client:
            reply = await client.post("/organizations/oauth2/v2.0/token", data=form, timeout=60)
        body: dict[str, Any] = reply.json()
        if reply.status_code != 200:
            raise ArmError(
                reply.status_code, str(body.get("error")), str(body.get("error_description"))
            )
        return body

    def session_of(self, request: Request) -> Session | None:
        """The signed-in session of the request's cookie, or None."""
        return self.store.get(request.cookies.get(SESSION_COOKIE))

    def arm_for(self, request: Request, session: Session) -> Arm:
        """ARM as the session's user (its access token renewed when due)."""
        origin = origin_of(request)

        async def renew(s: Session) -> None:
            try:
                body = await self.token(
                    origin,
                    {
                        "grant_type": "refresh_token",
                        "client_id": PORTAL_CLIENT_ID,
                        "refresh_token": s.refresh_token,
                        "scope": ARM_SCOPE,
                    },
                )
            except ArmError as exc:
                # The refresh token expired, or the user is gone: this session is over,
                # and the next page asks for a sign-in.
                self.store.drop(request.cookies.get(SESSION_COOKIE))
                raise ArmError(
                    401,
                    "SessionExpired",
                    f"Your sign-in has expired ({exc.message}). Sign in again.",
                ) from exc
            s.access_token = body["access_token"]
            s.refresh_token = body.get("refresh_token", s.refresh_token)
            s.expires = time.monotonic() + int(body.get("expires_in", 3600))

        return Arm(self.app, origin, session, renew)

    def page(self, name: str, request: Request, status: int = 200, **values: Any) -> HTMLResponse:
        """A template rendered with the session and the page's path."""
        body = TEMPLATES.get_template(name).render(
            session=self.session_of(request), path=request.url.path, **values
        )
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    def error(self, request: Request, exc: ArmError) -> HTMLResponse:
        """An ARM refusal as a page: its status, code and message."""
        return self.page("error.html", request, exc.status, code=exc.code, message=exc.message)

    def sign_in_first(self, request: Request) -> Response:
        """Off to sign in, then back to this page."""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/portal/signin?{urlencode({'return_to': target})}", 303)

    async def allowed(self, arm: Arm, scope: str, actions: tuple[str, ...]) -> bool:
        """Whether the user may do any of `actions` at `scope`, asked of ARM
        (Microsoft.Authorization/permissions); when ARM cannot say, the control shows
        and ARM's own check answers its use."""
        try:
            got = await arm.get(
                f"{scope}/providers/Microsoft.Authorization/permissions", AUTHORIZATION_API
            )
        except ArmError:
            return True
        entries = got.get("value") or []
        return any(permitted(entries, a) for a in actions)
