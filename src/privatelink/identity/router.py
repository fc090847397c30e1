"""HTTP endpoints of the local identity provider (the subset of Entra ID that MSAL uses).

Owns the OpenID discovery documents, the OAuth 2.0 token endpoints (v2 ``scope`` and
v1 ``resource`` style: client credentials for applications; password, authorization
code and refresh token grants for users, `_UserGrants`), the JWKS and AAD instance
discovery. The sign-in page and user realm discovery are `signin.py`'s. URLs in
discovery documents are built from the request's own scheme, host and port, so they
are right whatever address the server was started on.

Tenants and clients are looked up in the issuer's directory (a database) on each
request, off the event loop.

Form bodies are parsed here with :mod:`urllib.parse`: Starlette's ``request.form()``
needs ``python-multipart``, which is not a dependency of this project.

Failed client-credential sign-ins are slowed down (``core.throttle.SignInGuard``, Entra
ID's smart lockout defaults): a known application that sent too many wrong secrets is
locked for a while, and so is a source address that named too many unknown tenants or
applications. A locked sign-in is answered at once (the event loop never waits) with 429,
``Retry-After`` and an Entra-shaped body (``AADSTS50053`` for the application,
``AADSTS50196`` for the address), without looking at the secret; the failure that locks
still gets its usual answer. A correct secret works again once the lock has passed, and
forgets the failures.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from privatelink.core.errors import StoreFault
from privatelink.core.ids import new_guid
from privatelink.core.throttle import SignInGuard, SignInPolicy
from privatelink.identity.signin import AuthorizationCodes, Locked, UserDirectory, check_password
from privatelink.identity.tokens import (
    PUBLIC_CLIENTS,
    InvalidClientSecret,
    TokenIssuer,
    TokenRequestError,
    UnknownClient,
    UserRecord,
)

#: Grants that sign a user in (`_user_grant`); client credentials sign an application in.
USER_GRANTS = ("password", "authorization_code", "refresh_token")

#: Token requests are a few hundred bytes; refuse to buffer anything much larger.
MAX_FORM_BYTES = 64 * 1024
_FORM_TYPE = "application/x-www-form-urlencoded"
#: RFC 6749 section 5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _BadForm(TokenRequestError):
    """The token request body could not be read as an OAuth form."""


class SignInLocked(TokenRequestError):
    """Too many failed sign-ins: refused for ``retry_after`` seconds (HTTP 429)."""

    def __init__(
        self, description: str, code: int, retry_after: int, error: str = "invalid_client"
    ) -> None:
        super().__init__(error, description, 429, code)
        self.retry_after = retry_after


def build_identity_router(
    issuer: TokenIssuer,
    guard: SignInGuard | None = None,
    users: UserDirectory | None = None,
    codes: AuthorizationCodes | None = None,
) -> APIRouter:
    """Return a router serving discovery, token and key endpoints for ``issuer``.

    ``guard`` tracks failed sign-ins (default: Entra ID's smart lockout defaults);
    ``users`` and ``codes`` (the sign-in page's codes) let users sign in: without
    them, the token endpoint serves client credentials only.
    """
    router = APIRouter(tags=["identity"])
    sign_ins = guard if guard is not None else SignInGuard(SignInPolicy(), time.monotonic)
    user_grants = _UserGrants(issuer, sign_ins, users, codes) if users is not None else None

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration_v2(tenant: str, request: Request) -> JSONResponse:
        """OpenID discovery (v2); MSAL reads ``token_endpoint`` and ``authorization_endpoint``."""
        return await _openid_configuration(issuer, tenant, request, v2=True)

    @router.get("/{tenant}/.well-known/openid-configuration")
    async def openid_configuration_v1(tenant: str, request: Request) -> JSONResponse:
        """OpenID discovery (v1 endpoints)."""
        return await _openid_configuration(issuer, tenant, request, v2=False)

    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token_v2(tenant: str, request: Request) -> JSONResponse:
        """Client-credentials grant with ``scope=<resource>/.default``."""
        return await _token(issuer, sign_ins, tenant, request, v1=False, users=user_grants)

    @router.post("/{tenant}/oauth2/token")
    async def token_v1(tenant: str, request: Request) -> JSONResponse:
        """Client-credentials grant with ``resource=<resource>`` (``scope`` also accepted)."""
        return await _token(issuer, sign_ins, tenant, request, v1=True, users=user_grants)

    @router.get("/{tenant}/discovery/v2.0/keys")
    @router.get("/{tenant}/discovery/keys")
    async def keys(tenant: str) -> JSONResponse:
        """JWKS with the token-signing public key (public, so served for any tenant path)."""
        return JSONResponse(issuer.jwks())

    @router.get("/common/discovery/instance")
    async def instance_discovery(request: Request) -> JSONResponse:
        """AAD instance discovery: point MSAL at this server's tenant discovery document."""
        base = _base_url(request)
        tenant = "common"
        endpoint = request.query_params.get("authorization_endpoint")
        if endpoint:
            # e.g. https://host/{tenant}/oauth2/v2.0/authorize -> {tenant}
            segments = [s for s in urlsplit(endpoint).path.split("/") if s]
            if segments:
                tenant = segments[0]
        host = request.url.netloc
        return JSONResponse(
            {
                "tenant_discovery_endpoint": (
                    f"{base}/{tenant}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            }
        )

    return router


def _base_url(request: Request) -> str:
    """Scheme, host, port (and any root path) the client used to reach us."""
    return str(request.base_url).rstrip("/")


async def _openid_configuration(
    issuer: TokenIssuer, tenant: str, request: Request, *, v2: bool
) -> JSONResponse:
    try:
        if tenant.lower() in ("organizations", "common"):
            # Users of any tenant sign in here; Entra ID's issuer then names the
            # template `{tenantid}`.
            canonical: str | None = tenant.lower()
        else:
            canonical = await run_in_threadpool(issuer.canonical_tenant, tenant)
    except StoreFault as exc:
        return _store_fault(request, exc)
    if canonical is None:
        # Entra ID answers an unknown tenant here already, with 400 invalid_tenant.
        return _oauth_error(
            request,
            TokenRequestError(
                "invalid_tenant",
                f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                "tenant ID: the one in this server's credentials.json, or in a tenant's file "
                "(`privatelink tenant list` shows them).",
                400,
                90002,
            ),
        )
    base = f"{_base_url(request)}/{canonical}"
    version = "/v2.0" if v2 else ""
    return JSONResponse(
        {
            "issuer": issuer.issuer_for(
                "{tenantid}" if canonical in ("organizations", "common") else canonical
            ),
            "token_endpoint": f"{base}/oauth2{version}/token",
            "authorization_endpoint": f"{base}/oauth2{version}/authorize",
            "device_authorization_endpoint": f"{base}/oauth2{version}/devicecode",
            "jwks_uri": f"{base}/discovery{version}/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["client_credentials", *USER_GRANTS],
            "code_challenge_methods_supported": ["S256"],
            "end_session_endpoint": f"{base}/oauth2{version}/logout",
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "scopes_supported": [f"{a}/.default" for a in issuer.audiences],
            "claims_supported": [
                "aud",
                "iss",
                "iat",
                "nbf",
                "exp",
                "tid",
                "oid",
                "sub",
                "appid",
                "azp",
            ],
            "tenant_region_scope": None,
            "cloud_instance_name": "privatelink.local",
        }
    )


async def _token(
    issuer: TokenIssuer,
    guard: SignInGuard,
    tenant: str,
    request: Request,
    *,
    v1: bool,
    users: _UserGrants | None = None,
) -> JSONResponse:
    try:
        form = await _read_form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _missing("grant_type")
        served = ("client_credentials", *USER_GRANTS) if users else ("client_credentials",)
        if grant_type not in served:
            raise TokenRequestError(
                "unsupported_grant_type",
                f"The grant type '{grant_type}' is not supported; this server issues tokens "
                f"for grant_type {', '.join(served)}.",
                400,
                70003,
            )
        scope = form.get("scope", "")
        resource = form.get("resource")
        if v1 and resource and not scope:
            # v1 names the resource itself; appending /.default keeps its exact spelling
            # (https://management.core.windows.net/ -> ...windows.net//.default).
            scope = f"{resource}/.default"
        if grant_type in USER_GRANTS and users is not None:
            body = await users.grant(grant_type, tenant, form, scope, request)
        else:
            client_id, client_secret = _client_auth(request, form)
            if not scope:
                raise _missing("resource" if v1 else "scope")
            body = await _guarded_issue(
                issuer, guard, tenant, client_id, client_secret, scope, request
            )
    except TokenRequestError as exc:
        response = _oauth_error(request, exc)
        if isinstance(exc, SignInLocked):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except StoreFault as exc:
        return _store_fault(request, exc)
    if v1:
        # Entra ID v1 responses also carry these, as strings.
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        body |= {
            "resource": claims["aud"],
            "expires_on": str(claims["exp"]),
            "not_before": str(claims["nbf"]),
        }
    return JSONResponse(body, headers=_echo_request_id(request) | _NO_STORE)


class _UserGrants:
    """The token endpoint's user grants: a public client's password (ROPC, as MSAL's
    username/password flow and `az login -u -p` use), authorization code (the sign-in
    page's, with PKCE) and refresh token grants."""

    def __init__(
        self,
        issuer: TokenIssuer,
        guard: SignInGuard,
        users: UserDirectory,
        codes: AuthorizationCodes | None,
    ) -> None:
        self.issuer = issuer
        self.guard = guard
        self.users = users
        self.codes = codes

    async def grant(
        self, grant_type: str, tenant: str, form: dict[str, str], scope: str, request: Request
    ) -> dict[str, Any]:
        client_id = form.get("client_id", "")
        if not client_id:
            raise _missing("client_id")
        if client_id.lower() not in PUBLIC_CLIENTS:
            raise TokenRequestError(
                "unauthorized_client",
                f"The client '{client_id}' may not sign users in: only the Azure CLI, Azure "
                "PowerShell and the portal do (public clients).",
                400,
                700016,
            )
        tenant_id = await self._tenant(tenant)
        nonce: str | None = None
        if grant_type == "password":
            user = await self._password(tenant_id, form, request)
        elif grant_type == "authorization_code":
            for name in ("code", "redirect_uri", "code_verifier"):
                if not form.get(name):
                    raise _missing(name)
            if self.codes is None:
                raise TokenRequestError("invalid_grant", "No codes are issued here.", 400, 70008)
            granted = self.codes.redeem(
                form["code"], client_id, form["redirect_uri"], form["code_verifier"]
            )
            if tenant_id is not None and granted.tenant_id != tenant_id:
                raise TokenRequestError(
                    "invalid_grant", "The code was issued in another tenant.", 400, 50148
                )
            scope = scope or granted.scope
            nonce = granted.nonce
            user = await self._user(granted.tenant_id, granted.object_id)
        else:
            if not form.get("refresh_token"):
                raise _missing("refresh_token")
            owner, object_id = self.issuer.refresh_subject(form["refresh_token"], client_id)
            if tenant_id is not None and owner != tenant_id:
                raise TokenRequestError(
                    "invalid_grant", "The refresh token was issued in another tenant.", 400, 50148
                )
            user = await self._user(owner, object_id)
        body: dict[str, Any] = self.issuer.issue_user(user, client_id, scope, nonce)
        return body

    async def _tenant(self, tenant: str) -> str | None:
        """The path's tenant (None for organizations/common: the user's own)."""
        if tenant.lower() in ("organizations", "common"):
            return None
        found = await run_in_threadpool(self.issuer.canonical_tenant, tenant)
        if found is None:
            raise TokenRequestError("invalid_tenant", f"Tenant '{tenant}' not found.", 400, 90002)
        return found

    async def _user(self, tenant_id: str, object_id: str) -> UserRecord:
        user = await run_in_threadpool(self.users.get_user, tenant_id, object_id)
        if user is None:
            raise TokenRequestError(
                "invalid_grant",
                "The user account does not exist in the directory any more. Sign in again.",
                400,
                50034,
            )
        return user

    async def _password(
        self, tenant_id: str | None, form: dict[str, str], request: Request
    ) -> UserRecord:
        username, password = form.get("username", ""), form.get("password", "")
        if not username:
            raise _missing("username")
        if not password:
            raise _missing("password")
        address = request.client.host if request.client else "unknown"
        try:
            user = await check_password(self.users, self.guard, username, password, address)
        except Locked as exc:
            raise SignInLocked(
                "The account is locked because of too many failed sign-ins. Try again in "
                f"{exc.seconds} seconds.",
                50053,
                exc.seconds,
                "invalid_grant",  # a user's credentials, not the client's
            ) from None
        if user is None or (tenant_id is not None and user.tenant_id != tenant_id):
            # Entra ID's answer for a wrong password and for an unknown user alike.
            raise TokenRequestError(
                "invalid_grant",
                "Error validating credentials due to invalid username or password.",
                400,
                50126,
            )
        return user


async def _guarded_issue(
    issuer: TokenIssuer,
    guard: SignInGuard,
    tenant: str,
    client_id: str,
    client_secret: str,
    scope: str,
    request: Request,
) -> dict[str, Any]:
    """``issuer.issue`` behind the sign-in lockout (see the module docstring).

    A known application's failures count against the application; failures naming an
    unknown tenant or application count against the source address (so that made-up
    client ids cannot fill the table). Keys are looked at, never inserted, before the
    directory has said which kind a failure is.
    """
    client_key = ("client", tenant.lower(), client_id.lower())
    locked = guard.locked_for(client_key)
    if locked:
        raise SignInLocked(
            f"The application '{client_id}' is locked because it tried to sign in too many "
            f"times with an invalid client secret. Try again in {locked} seconds.",
            50053,
            locked,
        )
    try:
        body: dict[str, Any] = await run_in_threadpool(
            issuer.issue, tenant, client_id, client_secret, scope
        )
    except InvalidClientSecret:
        guard.failed(client_key)
        raise
    except UnknownClient:
        address = request.client.host if request.client else "unknown"
        address_key = ("address", address)
        locked = guard.locked_for(address_key)
        if locked:
            raise SignInLocked(
                f"A client loop has been detected: too many sign-ins from {address} named an "
                f"unknown tenant or application. Try again in {locked} seconds.",
                50196,
                locked,
            ) from None
        guard.failed(address_key)
        raise
    guard.succeeded(client_key)
    return body


async def _read_form(request: Request) -> dict[str, str]:
    """Parse a bounded url-encoded body; each OAuth parameter may appear at most once."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise _BadForm(
            "invalid_request",
            f"The token request must be sent with Content-Type: {_FORM_TYPE}.",
            400,
            900144,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise _BadForm("invalid_request", "The token request body is too large.", 400)
        chunks.append(chunk)
    try:
        parsed = parse_qs(b"".join(chunks).decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadForm("invalid_request", f"The token request body is invalid: {exc}", 400) from exc
    repeated = sorted(k for k, v in parsed.items() if len(v) > 1)
    if repeated:
        raise _BadForm(
            "invalid_request", f"Parameters must not be repeated: {', '.join(repeated)}.", 400
        )
    return {k: v[0] for k, v in parsed.items()}


def _client_auth(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from the form (client_secret_post) or HTTP Basic."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        if "client_secret" in form:
            raise TokenRequestError(
                "invalid_request", "Use only one client authentication method.", 400
            )
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise TokenRequestError(
                "invalid_client", "Malformed HTTP Basic client credentials.", 401
            ) from exc
        raw_id, _, raw_secret = decoded.partition(":")
        # RFC 6749 2.3.1: both parts are form-url-encoded before base64.
        client_id, client_secret = (
            unquote(raw_id.replace("+", " ")),
            unquote(raw_secret.replace("+", " ")),
        )
        if form.get("client_id") not in (None, client_id):
            raise TokenRequestError(
                "invalid_request", "client_id differs between body and Authorization.", 400
            )
    else:
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id:
        raise _missing("client_id")
    return client_id, client_secret


def _missing(name: str) -> TokenRequestError:
    return TokenRequestError(
        "invalid_request",
        f"The request body must contain the following parameter: '{name}'.",
        400,
        900144,
    )


def _echo_request_id(request: Request) -> dict[str, str]:
    request_id = request.headers.get("client-request-id")
    return {"client-request-id": request_id} if request_id else {}


def _oauth_error(request: Request, exc: TokenRequestError) -> JSONResponse:
    """Entra ID shaped error: OAuth fields plus timestamp and correlation ids."""
    body: dict[str, Any] = exc.to_oauth()
    body |= {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": new_guid(),
        "correlation_id": request.headers.get("client-request-id") or new_guid(),
    }
    # Close the connection after a refusal: a failed client (azure-identity keeps its last
    # error response alive) would otherwise pin an idle keep-alive TLS connection, which
    # delays server shutdown by the TLS close timeout.
    headers = _echo_request_id(request) | _NO_STORE | {"Connection": "close"}
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _store_fault(request: Request, exc: StoreFault) -> JSONResponse:
    """The directory's database failed: OAuth's `temporarily_unavailable` (RFC 6749), with
    the fault's status (503/507) and `Retry-After` (MSAL retries a 5xx token request)."""
    response = _oauth_error(
        request, TokenRequestError("temporarily_unavailable", exc.message, exc.status)
    )
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response
