"""Access-token issuance and verification (the local stand-in for Entra ID's STS).

Owns the token format: RS256 JWTs shaped like Entra ID v1 app-only tokens (``aud``,
``iss``, ``tid``, ``oid``, ``appid``, ``azp``, ``sub``, ``iat``, ``nbf``, ``exp``), the
OAuth client-credentials checks, the two audience classes (ARM and Microsoft Graph) and
the mapping of every rejection to a typed error with a message a human can act on.

Tokens are per tenant: client credentials are checked against a :class:`ClientDirectory`
(the store's ``SqlDirectory``) when a token is requested, so a tenant or principal
created while the server runs can sign in at once. Verification needs no directory: a
token is valid until it expires, as in Entra ID (an issued access token cannot be
revoked there either; deleting the principal or its secret stops new tokens only).

Verified tokens are remembered by their exact text (:data:`VERIFIED_CACHE_SIZE` of them,
oldest dropped first), so a client's next request with the same token skips the JWT
parsing and the RS256 check; the time checks (``exp``, ``nbf``) run on every request,
cached or not, with the same errors. Nothing but the signing key, which an issuer never
changes, decides whether a token verifies, so the cache changes no outcome.

Audience classes: an ARM token (``https://management.azure.com``,
``https://management.core.windows.net`` or the server's own resourceManager URL) is
refused where a Graph token is required and the other way round (``wrong_audience``).

Issuer choice: ``iss`` is ``https://sts.privatelink.local/{tenant}/`` (shaped like
Entra ID's ``https://sts.windows.net/{tenant}/``). It is a fixed name that does not
depend on the host or port the server listens on, so tokens stay valid when the server
restarts on another port. ``sts.privatelink.local`` is never contacted; it only names
the issuer.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from privatelink.core.ids import new_guid
from privatelink.core.principal import Principal
from privatelink.identity.credentials import ClientCredentials

DEFAULT_ISSUER_BASE = "https://sts.privatelink.local"

#: Resources (token audiences) of Azure Resource Manager, as requested by the SDKs:
#: ``https://management.azure.com/.default`` and ``https://management.core.windows.net//.default``.
ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
#: Microsoft Graph's resource; the server's own Graph resource is added per server.
GRAPH_AUDIENCES = ("https://graph.microsoft.com",)
#: Where the server serves Microsoft Graph, below its base URL (also its Graph resource).
GRAPH_PATH = "/graph"

#: The audience class a token must belong to.
Resource = Literal["arm", "graph"]

TOKEN_LIFETIME = 3600
#: Verified tokens an issuer remembers (a few hundred bytes to 2 KB each): about one per
#: active client, whose SDK reuses its token for most of an hour.
VERIFIED_CACHE_SIZE = 1024
#: Clock skew tolerated on ``exp``/``nbf`` (issuer and verifier may be different processes).
CLOCK_SKEW = 60

_ALGORITHM = "RS256"
_DEFAULT_SUFFIX = "/.default"
#: OIDC scopes MSAL may add to a request; they carry no resource and are ignored.
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_REQUIRED_CLAIMS = ("aud", "iss", "exp", "nbf", "iat", "tid", "oid", "appid")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


#: Public clients (no secret) that may sign users in: the Azure CLI's and Azure
#: PowerShell's well-known application ids, and the portal (Azure portal's id).
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
AZURE_POWERSHELL_CLIENT_ID = "1950a258-227b-4e31-a9cf-717495945fc2"
PORTAL_CLIENT_ID = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"
PUBLIC_CLIENTS = frozenset({AZURE_CLI_CLIENT_ID, AZURE_POWERSHELL_CLIENT_ID, PORTAL_CLIENT_ID})
#: How long a user's refresh token redeems (Entra ID: 90 days, sliding).
REFRESH_LIFETIME = 90 * 24 * 3600
_REFRESH_TYPE = "privatelink-refresh"


class UserRecord(Protocol):
    """A user of the directory (satisfied by `store.directory.User`): what tokens, sign-in,
    Graph and the admin API read of it."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def object_id(self) -> str: ...

    @property
    def user_principal_name(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def created(self) -> str: ...


class DirectoryTenant(Protocol):
    """A tenant as the issuer needs it (satisfied by ``store.directory.Tenant``)."""

    @property
    def tenant_id(self) -> str: ...


class DirectoryPrincipal(Protocol):
    """A service principal as the issuer needs it (``store.directory.ServicePrincipal``)."""

    @property
    def object_id(self) -> str: ...

    @property
    def app_id(self) -> str: ...

    @property
    def tenant_id(self) -> str: ...


class ClientDirectory(Protocol):
    """Where client credentials are checked (satisfied by ``store.directory.SqlDirectory``).

    ``check_client`` returns ``(outcome, principal)``; outcome is ``ok``, ``no_tenant``,
    ``no_client`` or ``bad_secret`` (wrong, missing or expired secret), and the principal
    is set for ``ok`` and ``bad_secret``.
    """

    def get_tenant(self, tenant_id: str) -> DirectoryTenant | None: ...

    def check_client(
        self, tenant_id: str, app_id: str, secret: str
    ) -> tuple[str, DirectoryPrincipal | None]: ...


@dataclass(frozen=True)
class _Verified:
    """What verifying a token established, apart from time: its caller and its window."""

    principal: Principal
    exp: int
    nbf: int


@dataclass(frozen=True)
class _StaticTenant:
    tenant_id: str


@dataclass(frozen=True)
class _StaticPrincipal:
    object_id: str
    app_id: str
    tenant_id: str


class StaticDirectory:
    """A fixed set of clients as a :class:`ClientDirectory` (tests, tools without a store)."""

    def __init__(self, clients: Iterable[ClientCredentials]) -> None:
        self._clients = {(c.tenant_id.lower(), c.client_id.lower()): c for c in clients}
        self._tenants = {t: c.tenant_id for (t, _), c in self._clients.items()}

    def get_tenant(self, tenant_id: str) -> _StaticTenant | None:
        """The tenant of some client, by id (case-insensitive)."""
        found = self._tenants.get(tenant_id.lower())
        return _StaticTenant(found) if found else None

    def check_client(
        self, tenant_id: str, app_id: str, secret: str
    ) -> tuple[str, _StaticPrincipal | None]:
        """Check a client's secret in constant time."""
        if tenant_id.lower() not in self._tenants:
            return "no_tenant", None
        client = self._clients.get((tenant_id.lower(), app_id.lower()))
        if client is None:
            return "no_client", None
        sp = _StaticPrincipal(client.object_id, client.client_id, client.tenant_id)
        ok = hmac.compare_digest(secret.encode(), client.client_secret.encode())
        return ("ok" if ok and secret else "bad_secret"), sp


def server_audiences(host: str, port: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The server's own (ARM, Graph) resources for a listen address.

    ARM: ``https://127.0.0.1:PORT``, ``https://localhost:PORT`` and ``https://HOST:PORT``
    when the configured host is another name (clients such as Ansible's azure collection
    ask for ``<resourceManager URL>/.default``). Graph: each of those plus ``/graph``, the
    ``microsoftGraphResourceId`` of the server's cloud metadata.
    """
    hosts = ["127.0.0.1", "localhost"]
    if host not in _WILDCARD_HOSTS:
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
        if shown.lower() not in hosts:
            hosts.append(shown.lower())
    arm = tuple(f"https://{h}:{port}" for h in hosts)
    return arm, tuple(a + GRAPH_PATH for a in arm)


class TokenRequestError(Exception):
    """A token request was refused; carries the OAuth error body fields and HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400, code: int = 0) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        #: The Entra ID ``AADSTS`` number of the equivalent error (0 if none).
        self.aadsts_code = code

    def to_oauth(self) -> dict[str, Any]:
        """Return the OAuth 2.0 error body (Entra ID style)."""
        codes = [self.aadsts_code] if self.aadsts_code else []
        prefix = f"AADSTS{self.aadsts_code}: " if self.aadsts_code else ""
        return {
            "error": self.error,
            "error_description": prefix + self.description,
            "error_codes": codes,
        }


class InvalidClient(TokenRequestError):
    """Unknown tenant, unknown client or wrong/missing client secret."""


class UnknownClient(InvalidClient):
    """The tenant or the application is not in the directory."""


class InvalidClientSecret(InvalidClient):
    """A known application sent a wrong, expired or no client secret (a failed sign-in)."""


class InvalidScope(TokenRequestError):
    """Missing or unusable scope/resource (not ``/.default``, or not an accepted resource)."""


class InvalidToken(Exception):
    """An access token was rejected.

    ``reason`` is one of ``malformed``, ``bad_signature``, ``unknown_key``,
    ``wrong_audience``, ``wrong_issuer``, ``expired``, ``not_yet_valid``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def resource_from_scope(scope: str) -> str:
    """Return the resource named by an OAuth ``scope`` string (``<resource>/.default``).

    Only the trailing ``/.default`` is removed, so the double-slash form
    ``https://management.core.windows.net//.default`` yields
    ``https://management.core.windows.net/`` exactly as Entra ID does.
    """
    resources = [s for s in scope.split() if s not in _RESERVED_SCOPES]
    if not resources:
        raise InvalidScope(
            "invalid_request", "The request body must contain the 'scope' parameter.", 400, 900144
        )
    if len(resources) > 1:
        raise InvalidScope(
            "invalid_scope",
            f"The scope '{scope}' names more than one resource; request one at a time.",
            400,
            70011,
        )
    (value,) = resources
    if not value.endswith(_DEFAULT_SUFFIX) or len(value) == len(_DEFAULT_SUFFIX):
        raise InvalidScope(
            "invalid_scope",
            f"The provided value for scope {value} is not valid. Client credential flows "
            "must have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
            400,
            1002012,
        )
    return value[: -len(_DEFAULT_SUFFIX)]


def _normalize_audience(value: str) -> str:
    return value[:-1] if value.endswith("/") else value


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_normalize_audience(v) for v in values))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """Issues and verifies RS256 access tokens for the principals of a directory."""

    def __init__(
        self,
        signing_key: rsa.RSAPrivateKey,
        directory: ClientDirectory,
        issuer_base: str = DEFAULT_ISSUER_BASE,
        *,
        arm_audiences: Iterable[str] = (),
        graph_audiences: Iterable[str] = (),
        lifetime: int = TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
        verified_cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        """Create an issuer.

        ``issuer_base`` names the issuer (``iss = {issuer_base}/{tenant}/``);
        ``arm_audiences`` and ``graph_audiences`` add resources of each class to
        ARM's and Graph's public ones (see :func:`server_audiences`); ``clock`` returns
        Unix time and exists for tests; ``verified_cache_size`` bounds the verified
        tokens remembered (0: none).
        """
        self._key = signing_key
        self._public_key = signing_key.public_key()
        self._directory = directory
        self._issuer_base = issuer_base.rstrip("/")
        self._lifetime = int(lifetime)
        self._clock = clock
        # (resource, token) -> what its verification established; insertion order is age.
        self._verified: dict[tuple[str, str], _Verified] = {}
        self._verified_limit = max(0, int(verified_cache_size))
        self._verified_lock = threading.Lock()
        self._classes: dict[Resource, tuple[str, ...]] = {
            "arm": _unique((*ARM_AUDIENCES, *arm_audiences)),
            "graph": _unique((*GRAPH_AUDIENCES, *graph_audiences)),
        }
        overlap = set(self._classes["arm"]) & set(self._classes["graph"])
        if overlap:
            raise ValueError(f"audiences in both ARM and Graph: {sorted(overlap)}")
        jwk = RSAAlgorithm.to_jwk(self._public_key, as_dict=True)
        self._jwk_public = {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}
        # RFC 7638 thumbprint: stable for a given key, so kid survives restarts.
        canonical = json.dumps(self._jwk_public, sort_keys=True, separators=(",", ":"))
        self.kid = _b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    @property
    def audiences(self) -> tuple[str, ...]:
        """Every accepted resource (ARM's, then Graph's), without trailing slash."""
        return self._classes["arm"] + self._classes["graph"]

    def audiences_for(self, resource: Resource) -> tuple[str, ...]:
        """The resources of one audience class, without trailing slash."""
        return self._classes[resource]

    def resource_of(self, audience: str) -> Resource | None:
        """The audience class of a token audience (either spelling), or None."""
        value = _normalize_audience(audience)
        for resource, values in self._classes.items():
            if value in values:
                return resource
        return None

    def issuer_for(self, tenant_id: str) -> str:
        """Return the ``iss`` value of tokens issued for ``tenant_id``."""
        return f"{self._issuer_base}/{tenant_id}/"

    def canonical_tenant(self, tenant_id: str) -> str | None:
        """Return the known tenant's canonical id (case-insensitive lookup), or None.

        Reads the directory: call it off the event loop.
        """
        tenant = self._directory.get_tenant(tenant_id)
        return tenant.tenant_id if tenant is not None else None

    def jwks(self) -> dict[str, Any]:
        """Return the JSON Web Key Set that verifies issued tokens."""
        return {"keys": [{**self._jwk_public, "use": "sig", "alg": _ALGORITHM, "kid": self.kid}]}

    def authenticate(self, tenant_id: str, client_id: str, client_secret: str) -> Principal:
        """Check client credentials in the directory; raise :class:`InvalidClient` if wrong.

        Reads the directory: call it off the event loop.
        """
        outcome, sp = self._directory.check_client(tenant_id, client_id, client_secret or "")
        if outcome == "no_tenant":
            raise UnknownClient(
                "invalid_request",
                f"Tenant '{tenant_id}' not found. Check to make sure you have the correct "
                "tenant ID: the one in this server's credentials.json, or in a tenant's file "
                "(`privatelink tenant list` shows them).",
                400,
                90002,
            )
        if outcome == "no_client" or sp is None:
            raise UnknownClient(
                "unauthorized_client",
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant_id}'. You may have sent your authentication request to the wrong "
                "tenant.",
                400,
                700016,
            )
        if not client_secret:
            raise InvalidClientSecret(
                "invalid_client",
                "The request body must contain the following parameter: 'client_secret'.",
                401,
                7000218,
            )
        if outcome != "ok":
            raise InvalidClientSecret(
                "invalid_client",
                f"Invalid client secret provided for app '{sp.app_id}'.",
                401,
                7000215,
            )
        return Principal(tenant_id=sp.tenant_id, object_id=sp.object_id, client_id=sp.app_id)

    def issue(
        self, tenant_id: str, client_id: str, client_secret: str, scope: str
    ) -> dict[str, Any]:
        """Run the client-credentials grant and return the OAuth token response.

        Raises :class:`InvalidClient` for wrong tenant/client/secret and
        :class:`InvalidScope` for a scope that is not ``<accepted resource>/.default``.
        Reads the directory: call it off the event loop.
        """
        principal = self.authenticate(tenant_id, client_id, client_secret)
        resource = resource_from_scope(scope)
        if self.resource_of(resource) is None:
            raise InvalidScope(
                "invalid_resource",
                f"The resource principal named {resource} was not found in the tenant "
                f"named {principal.tenant_id}. This server issues tokens for: "
                + ", ".join(self.audiences),
                400,
                500011,
            )
        now = int(self._clock())
        claims = {
            "aud": resource,
            "iss": self.issuer_for(principal.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + self._lifetime,
            "tid": principal.tenant_id,
            "oid": principal.object_id,
            "sub": principal.object_id,  # app-only tokens: sub is the service principal
            "appid": principal.client_id,  # v1 name of the client id
            "azp": principal.client_id,  # v2 name of the client id
            "appidacr": "1",  # authenticated with a client secret
            "idtyp": "app",
            "ver": "1.0",
            "uti": new_guid(),
        }
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers={"kid": self.kid})
        return {
            "token_type": "Bearer",
            "expires_in": self._lifetime,
            "ext_expires_in": self._lifetime,
            "access_token": token,
        }

    def issue_user(
        self, user: UserRecord, client_id: str, scope: str, nonce: str | None = None
    ) -> dict[str, Any]:
        """The token response of a user's sign-in (password, authorization code or
        refresh token grant) through public client `client_id`: an access token for the
        scope's resource (ARM's when the scope names only OpenID scopes), an ID token, a
        refresh token and MSAL's `client_info`.

        The access token is shaped like Entra ID's v1 user tokens: `oid`/`sub` the user,
        `appid` the client, `idtyp` user, `upn`, `name`, `scp`. Raises
        :class:`InvalidScope` for a resource this server does not issue tokens for."""
        try:
            resource = resource_from_scope(scope)
        except InvalidScope as exc:
            if exc.aadsts_code != 900144:  # no resource at all: the portal's and ARM's default
                raise
            resource = ARM_AUDIENCES[0]
        if self.resource_of(resource) is None:
            raise InvalidScope(
                "invalid_resource",
                f"The resource principal named {resource} was not found in the tenant "
                f"named {user.tenant_id}. This server issues tokens for: "
                + ", ".join(self.audiences),
                400,
                500011,
            )
        now = int(self._clock())
        common = {"iss": self.issuer_for(user.tenant_id), "iat": now, "nbf": now}
        access = common | {
            "aud": resource,
            "exp": now + self._lifetime,
            "tid": user.tenant_id,
            "oid": user.object_id,
            "sub": user.object_id,
            "appid": client_id,
            "azp": client_id,
            "appidacr": "0",  # a public client: no client authentication
            "idtyp": "user",
            "upn": user.user_principal_name,
            "unique_name": user.user_principal_name,
            "name": user.display_name,
            "scp": "user_impersonation",
            "amr": ["pwd"],
            "ver": "1.0",
            "uti": new_guid(),
        }
        identity = common | {
            "aud": client_id,
            "exp": now + self._lifetime,
            "tid": user.tenant_id,
            "oid": user.object_id,
            "sub": user.object_id,
            "preferred_username": user.user_principal_name,
            "name": user.display_name,
            "ver": "2.0",
        }
        if nonce:
            identity["nonce"] = nonce
        refresh = {
            "typ": _REFRESH_TYPE,
            "iss": self.issuer_for(user.tenant_id),
            "tid": user.tenant_id,
            "oid": user.object_id,
            "azp": client_id,
            "iat": now,
            "exp": now + REFRESH_LIFETIME,
            "uti": new_guid(),
        }
        client_info = json.dumps({"uid": user.object_id, "utid": user.tenant_id})
        return {
            "token_type": "Bearer",
            "scope": f"{resource}/user_impersonation",
            "expires_in": self._lifetime,
            "ext_expires_in": self._lifetime,
            "access_token": self._sign(access),
            "id_token": self._sign(identity),
            "refresh_token": self._sign(refresh),
            "client_info": _b64url(client_info.encode()),
        }

    def refresh_subject(self, token: str, client_id: str) -> tuple[str, str]:
        """The (tenant id, user object id) a refresh token of ours was issued to, for
        `client_id`; :class:`TokenRequestError` (`invalid_grant`) when it is not one,
        was issued to another client, or has expired."""
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[_ALGORITHM],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            claims = {}
        if claims.get("typ") != _REFRESH_TYPE or not all(
            isinstance(claims.get(k), str) for k in ("tid", "oid", "azp")
        ):
            raise TokenRequestError(
                "invalid_grant", "The provided refresh token is malformed or invalid.", 400, 9002313
            )
        if claims["azp"] != client_id:
            raise TokenRequestError(
                "invalid_grant",
                "The refresh token was issued to a different client id.",
                400,
                70000,
            )
        if not isinstance(claims.get("exp"), int) or int(self._clock()) > claims["exp"]:
            raise TokenRequestError(
                "invalid_grant",
                "The refresh token has expired due to inactivity. Sign in again.",
                400,
                700082,
            )
        return claims["tid"], claims["oid"]

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers={"kid": self.kid})

    @property
    def verified_tokens(self) -> int:
        """How many verified tokens are remembered now (at most ``verified_cache_size``)."""
        return len(self._verified)

    def verify(self, token: str, resource: Resource = "arm") -> Principal:
        """Validate an access token for ``resource`` and return its caller.

        Raises :class:`InvalidToken`; a token of the other audience class (a Graph token
        on ARM, an ARM token on Graph) is ``wrong_audience``. A token verified before is
        answered from memory, its lifetime checked again against the clock.
        """
        cache_key = (resource, token)
        known = self._verified.get(cache_key)
        if known is not None:
            try:
                self._check_times(known.exp, known.nbf)
            except InvalidToken:
                self._forget(cache_key)
                raise
            return known.principal
        claims = self._verify_signed(token, resource)
        principal = self._check_claims(claims)
        self._remember(cache_key, _Verified(principal, claims["exp"], claims["nbf"]))
        return principal

    def _remember(self, cache_key: tuple[str, str], verified: _Verified) -> None:
        if self._verified_limit == 0:
            return
        with self._verified_lock:
            while len(self._verified) >= self._verified_limit:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[cache_key] = verified

    def _forget(self, cache_key: tuple[str, str]) -> None:
        with self._verified_lock:
            self._verified.pop(cache_key, None)

    def _verify_signed(self, token: str, resource: Resource) -> dict[str, Any]:
        """The claims of a token signed by our key for ``resource`` (time not checked)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"The access token is malformed: {exc}.", "malformed") from exc
        if header.get("alg") != _ALGORITHM:
            raise InvalidToken(
                f"The access token uses algorithm {header.get('alg')!r}; only RS256 is accepted.",
                "malformed",
            )
        if header.get("kid") != self.kid:
            raise InvalidToken(
                "The access token was signed by an unknown key (the server's signing key may "
                "have been regenerated). Request a new token.",
                "unknown_key",
            )
        accepted = [v for a in self._classes[resource] for v in (a, a + "/")]
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[_ALGORITHM],
                audience=accepted,
                # Time claims are checked below against self._clock, with our messages.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": list(_REQUIRED_CLAIMS),
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("The access token signature is invalid.", "bad_signature") from exc
        except jwt.InvalidAudienceError as exc:
            aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
            raise InvalidToken(
                f"The access token has been obtained for wrong audience or resource '{aud}'. "
                "It should exactly match one of the allowed audiences "
                + ", ".join(f"'{a}'" for a in accepted)
                + ".",
                "wrong_audience",
            ) from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"The access token is malformed: {exc}.", "malformed") from exc
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> Principal:
        """Check issuer, lifetime and identity claims of a signature-checked token."""
        tid, oid, appid = claims["tid"], claims["oid"], claims["appid"]
        exp, nbf = claims["exp"], claims["nbf"]
        if not all(isinstance(v, str) and v for v in (tid, oid, appid)):
            raise InvalidToken("The access token has invalid tid/oid/appid claims.", "malformed")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, nbf)):
            raise InvalidToken("The access token has non-integer exp/nbf claims.", "malformed")
        if claims["iss"] != self.issuer_for(tid):
            raise InvalidToken(
                f"The access token issuer '{claims['iss']}' is not valid; expected "
                f"'{self.issuer_for(tid)}'.",
                "wrong_issuer",
            )
        self._check_times(exp, nbf)
        return Principal(tenant_id=tid, object_id=oid, client_id=appid)

    def _check_times(self, exp: int, nbf: int) -> None:
        """Raise :class:`InvalidToken` unless now is within [nbf, exp] (with skew)."""
        now = int(self._clock())
        if now > exp + CLOCK_SKEW:
            raise InvalidToken(
                f"The access token expiry UTC time '{_utc(exp)}' is earlier than current UTC "
                f"time '{_utc(now)}'. Request a new token.",
                "expired",
            )
        if now + CLOCK_SKEW < nbf:
            raise InvalidToken(
                f"The access token is not valid before UTC time '{_utc(nbf)}' "
                f"(current UTC time '{_utc(now)}').",
                "not_yet_valid",
            )


def _utc(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
