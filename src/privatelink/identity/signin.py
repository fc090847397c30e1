"""Users' sign-in: the authorization endpoint with its sign-in page, and user realm
discovery (the parts of Entra ID that the portal and MSAL's user flows use).

The authorization code grant with PKCE (RFC 7636, `S256` only):

1. `GET /{tenant}/oauth2/v2.0/authorize?client_id&response_type=code&redirect_uri&scope
   &state&code_challenge&code_challenge_method=S256[&nonce][&login_hint]` shows the
   sign-in page (`templates/signin.html`). `tenant` may be `organizations` or `common`:
   the sign-in name (`alice@<tenant name>`) says which tenant the user is in.
2. The page posts the sign-in name and password back. A right pair redirects to
   `redirect_uri?code=...&state=...`; a wrong one shows the page again with one message
   for an unknown user and a wrong password alike (no hint whether the user exists), and
   counts against the sign-in name and the source address (`core.throttle.SignInGuard`:
   a locked sign-in is answered 429 with the time left, without looking at the password).
3. The client redeems the code at the token endpoint (`router.py`, `grant_type=
   authorization_code` with `code_verifier`): once, within `CODE_LIFETIME`, by the same
   client and redirect URI.

Only the public clients of `tokens.PUBLIC_CLIENTS` sign users in. A redirect URI must be
this server's own origin (the portal) or a loopback address (`http://localhost:<port>`,
as native clients such as the Azure CLI use): codes never go to another site.

Sign-out (`/oauth2/v2.0/logout`) keeps no session to end (the server sets no cookie:
each sign-in asks for the password), so it only returns to `post_logout_redirect_uri`
when that is allowed, or shows that the user is signed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from privatelink.core.throttle import SignInGuard
from privatelink.identity.tokens import PUBLIC_CLIENTS, TokenRequestError, UserRecord

#: How long an authorization code may be redeemed (Entra ID: 10 minutes).
CODE_LIFETIME = 600.0
#: Codes waiting to be redeemed, at most (the oldest go first).
MAX_CODES = 10_000
#: The sign-in form's fields are short; refuse to buffer a larger post.
MAX_FORM_BYTES = 16 * 1024
_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(["html"]),
)
#: What the sign-in page tells about any failed sign-in (no hint which part was wrong).
WRONG_CREDENTIALS = "Your sign-in name or password is incorrect."
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
#: The authorization request's parameters, carried through the sign-in form.
_PASSED_ON: tuple[str, ...] = (
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
)


class UserDirectory(Protocol):
    """The directory's users, as sign-in needs them (the store's `SqlDirectory`)."""

    def find_user(self, user_principal_name: str) -> UserRecord | None: ...

    def get_user(self, tenant_id: str, object_id: str) -> UserRecord | None: ...

    def check_user_password(self, user_principal_name: str, password: str) -> UserRecord | None: ...


@dataclass(frozen=True)
class Grant:
    """What an authorization code stands for until it is redeemed."""

    tenant_id: str
    object_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    nonce: str | None
    expires: float


class AuthorizationCodes:
    """Issued, unredeemed authorization codes (in memory: a code lives minutes, and a
    restart only makes the user sign in again)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def issue(self, **fields: Any) -> str:
        """A new code for a grant of `fields` (Grant's, but `expires`)."""
        code = secrets.token_urlsafe(32)
        grant = Grant(**fields, expires=self._clock() + CODE_LIFETIME)
        with self._lock:
            now = self._clock()
            for old in [c for c, g in self._grants.items() if g.expires < now]:
                del self._grants[old]
            while len(self._grants) >= MAX_CODES:
                del self._grants[next(iter(self._grants))]
            self._grants[code] = grant
        return code

    def redeem(self, code: str, client_id: str, redirect_uri: str, verifier: str) -> Grant:
        """The grant of `code`, which is used up whatever the outcome (RFC 6749 4.1.2:
        a code is single use); `TokenRequestError` (`invalid_grant`) when it is unknown,
        expired, or asked for by another client, redirect URI or PKCE verifier."""
        with self._lock:
            grant = self._grants.pop(code, None)
        if grant is None or grant.expires < self._clock():
            raise TokenRequestError(
                "invalid_grant",
                "The provided authorization code or refresh token has expired, was already "
                "redeemed, or is not valid. Send a new interactive authorization request.",
                400,
                70008,
            )
        if grant.client_id != client_id or grant.redirect_uri != redirect_uri:
            raise TokenRequestError(
                "invalid_grant",
                "The authorization code was issued to another client or redirect URI.",
                400,
                50148,
            )
        if not hmac.compare_digest(challenge_of(verifier), grant.code_challenge):
            raise TokenRequestError(
                "invalid_grant",
                "The code_verifier does not match the code_challenge supplied in the "
                "authorization request for PKCE.",
                400,
                501481,
            )
        return grant

    def __len__(self) -> int:
        return len(self._grants)


def challenge_of(verifier: str) -> str:
    """PKCE's S256 challenge of a code verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect_allowed(redirect_uri: str, origin: str) -> bool:
    """A redirect URI codes may go to: this server's own origin, or a loopback
    address over http (native clients), never another site."""
    try:
        parts = urlsplit(redirect_uri)
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    if parts.fragment:
        return False  # RFC 6749 3.1.2: no fragment
    if f"{parts.scheme}://{parts.netloc}".lower() == origin.lower():
        return True
    return parts.scheme == "http" and host in _LOOPBACK_HOSTS


class Locked(Exception):
    """Too many failed sign-ins: refused for `seconds` without looking at the password."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"locked for {seconds} s")
        self.seconds = seconds


async def check_password(
    users: UserDirectory, guard: SignInGuard, username: str, password: str, address: str
) -> UserRecord | None:
    """The user whose sign-in name and password these are, or None; `Locked` while
    failures lock the name (or the address).

    As for applications (router.py): a known user's failures count against the user
    (Entra ID's smart lockout), failures naming no user count against the source
    address, so that made-up names cannot fill the table nor dodge the lock."""
    user_key = ("user", username.strip().lower())
    locked = guard.locked_for(user_key)
    if locked:
        raise Locked(locked)
    user = await run_in_threadpool(users.check_user_password, username.strip(), password)
    if user is not None:
        guard.succeeded(user_key)
        return user
    # The KDF ran either way; only now is it asked whether the name exists.
    if await run_in_threadpool(users.find_user, username.strip()) is not None:
        guard.failed(user_key)
        return None
    address_key = ("address", address)
    locked = guard.locked_for(address_key)
    if locked:
        raise Locked(locked)
    guard.failed(address_key)
    return None


class _Refused(Exception):
    """An authorization request that must not go back to its redirect URI: shown on a
    page of ours (RFC 6749 4.1.2.1), with Entra ID's AADSTS code."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def build_signin_router(
    users: UserDirectory,
    codes: AuthorizationCodes,
    guard: SignInGuard,
    canonical_tenant: Callable[[str], str | None],
) -> APIRouter:
    """The authorization endpoint (sign-in page), sign-out and user realm discovery."""
    router = APIRouter(tags=["identity"])

    @router.get("/{tenant}/oauth2/v2.0/authorize", response_class=HTMLResponse)
    @router.get("/{tenant}/oauth2/authorize", response_class=HTMLResponse)
    async def authorize(tenant: str, request: Request) -> Response:
        """Show the sign-in page for a valid authorization request."""
        params = dict(request.query_params)
        try:
            await _check_request(tenant, params, request, canonical_tenant)
        except _Refused as exc:
            return _refusal(exc)
        return _page(params, username=params.get("login_hint", ""))

    @router.post("/{tenant}/oauth2/v2.0/authorize", response_class=HTMLResponse)
    @router.post("/{tenant}/oauth2/authorize", response_class=HTMLResponse)
    async def sign_in(tenant: str, request: Request) -> Response:
        """Check the posted sign-in name and password; redirect with a code."""
        form = await _read_form(request)
        if form is None:
            return _refusal(_Refused(900144, "The sign-in form could not be read."))
        params = {k: form[k] for k in _PASSED_ON if k in form}
        try:
            tenant_id = await _check_request(tenant, params, request, canonical_tenant)
        except _Refused as exc:
            return _refusal(exc)
        username = form.get("username", "").strip()
        password = form.get("password", "")
        if not username or not password:
            return _page(params, username, "Enter your sign-in name and password.", 400)
        address = request.client.host if request.client else "unknown"
        try:
            user = await check_password(users, guard, username, password, address)
        except Locked as exc:
            message = (
                "Your account is locked because of too many failed sign-ins. "
                f"Try again in {exc.seconds} seconds."
            )
            page = _page(params, username, message, 429)
            page.headers["Retry-After"] = str(exc.seconds)
            return page
        if user is None or (tenant_id is not None and user.tenant_id != tenant_id):
            return _page(params, username, WRONG_CREDENTIALS, 401)
        code = codes.issue(
            tenant_id=user.tenant_id,
            object_id=user.object_id,
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
            scope=params.get("scope", ""),
            nonce=params.get("nonce") or None,
        )
        reply = {"code": code} | ({"state": params["state"]} if "state" in params else {})
        separator = "&" if "?" in params["redirect_uri"] else "?"
        return RedirectResponse(params["redirect_uri"] + separator + urlencode(reply), 302)

    @router.get("/{tenant}/oauth2/v2.0/logout", response_class=HTMLResponse)
    @router.get("/{tenant}/oauth2/logout", response_class=HTMLResponse)
    async def logout(tenant: str, request: Request) -> Response:
        """Nothing to end (no session); back to the client when its URI is allowed."""
        target = request.query_params.get("post_logout_redirect_uri", "")
        if target and redirect_allowed(target, _origin(request)):
            return RedirectResponse(target, 302)
        template = _TEMPLATES.get_template("signed_out.html")
        return HTMLResponse(template.render(), headers=_PAGE_HEADERS)

    @router.get("/common/userrealm/{username}")
    @router.get("/common/userrealm/")
    async def user_realm(request: Request, username: str = "") -> JSONResponse:
        """MSAL's user realm discovery before a username/password sign-in: every user of
        this server is a cloud ("Managed") user, whose password the token endpoint checks."""
        name = username or request.query_params.get("user", "")
        domain = name.rpartition("@")[2]
        return JSONResponse(
            {
                "ver": "1.0",
                "account_type": "Managed",
                "domain_name": domain,
                "cloud_instance_name": "privatelink.local",
                "cloud_audience_urn": "urn:federation:MicrosoftOnline",
            }
        )

    return router


_PAGE_HEADERS = {
    # The sign-in page is never framed (clickjacking) nor cached (it may carry a name).
    "X-Frame-Options": "DENY",
    # Only inline styles: the pages run no script. (No form-action: Chrome applies it to
    # the redirect after the post, which goes to the client's own redirect URI.)
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def _check_request(
    tenant: str,
    params: dict[str, str],
    request: Request,
    canonical_tenant: Callable[[str], str | None],
) -> str | None:
    """The tenant the request is for (None: `organizations`/`common`, the sign-in name
    decides), or `_Refused` for a request that cannot be served."""
    tenant_id: str | None = None
    if tenant.lower() not in ("organizations", "common"):
        tenant_id = await run_in_threadpool(canonical_tenant, tenant)
        if tenant_id is None:
            raise _Refused(90002, f"Tenant '{tenant}' not found.")
    client_id = params.get("client_id", "")
    if not client_id:
        raise _Refused(900144, "The request must contain the parameter 'client_id'.")
    if client_id.lower() not in PUBLIC_CLIENTS:
        raise _Refused(
            700016,
            f"Application with identifier '{client_id}' was not found among the clients "
            "that may sign users in to this server (the Azure CLI, Azure PowerShell and "
            "the portal).",
        )
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_allowed(redirect_uri, _origin(request)):
        raise _Refused(
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match "
            "the redirect URIs configured for the application: this server's own origin, "
            "or http://localhost.",
        )
    if params.get("response_type") != "code":
        raise _Refused(
            900144,
            "The request must ask for response_type=code (the authorization code grant).",
        )
    if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
        raise _Refused(
            9002325,
            "Proof Key for Code Exchange is required: send code_challenge with "
            "code_challenge_method=S256.",
        )
    if params.get("response_mode", "query") != "query":
        raise _Refused(900144, "Only response_mode=query is supported.")
    return tenant_id


def _page(params: dict[str, str], username: str, error: str = "", status: int = 200) -> Response:
    """The sign-in page, carrying the authorization request in hidden fields."""
    template = _TEMPLATES.get_template("signin.html")
    hidden = {k: params[k] for k in _PASSED_ON if k in params}
    body = template.render(hidden=hidden, username=username, error=error)
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


def _refusal(exc: _Refused) -> Response:
    template = _TEMPLATES.get_template("signin_error.html")
    body = template.render(code=f"AADSTS{exc.code}", message=exc.message)
    return HTMLResponse(body, status_code=exc.status, headers=_PAGE_HEADERS)


async def _read_form(request: Request) -> dict[str, str] | None:
    """A bounded url-encoded form (the first of a repeated field), or None."""
    from urllib.parse import parse_qs

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_FORM_BYTES:
            return None
    try:
        parsed = parse_qs(data.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items()}
