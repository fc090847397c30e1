"""Access-token issuance and verification (the local stand-in for Entra ID's STS).

Owns the token format: RS256 JWTs shaped like Entra ID v1 app-only tokens for ARM
(``aud``, ``iss``, ``tid``, ``oid``, ``appid``, ``azp``, ``sub``, ``iat``, ``nbf``,
``exp``), the OAuth client-credentials checks, and the mapping of every rejection to a
typed error with a message a human can act on.

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
import time
from collections.abc import Callable, Iterable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from privatelink.core.principal import Principal
from privatelink.identity.credentials import ClientCredentials, new_guid

DEFAULT_ISSUER_BASE = "https://sts.privatelink.local"

#: Resources (token audiences) of Azure Resource Manager, as requested by the SDKs:
#: ``https://management.azure.com/.default`` and ``https://management.core.windows.net//.default``.
ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")

TOKEN_LIFETIME = 3600
#: Clock skew tolerated on ``exp``/``nbf`` (issuer and verifier may be different processes).
CLOCK_SKEW = 60

_ALGORITHM = "RS256"
_DEFAULT_SUFFIX = "/.default"
#: OIDC scopes MSAL may add to a request; they carry no resource and are ignored.
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_REQUIRED_CLAIMS = ("aud", "iss", "exp", "nbf", "iat", "tid", "oid", "appid")


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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """Issues and verifies RS256 access tokens for a fixed set of known clients."""

    def __init__(
        self,
        signing_key: rsa.RSAPrivateKey,
        clients: Iterable[ClientCredentials],
        issuer_base: str = DEFAULT_ISSUER_BASE,
        *,
        extra_audiences: Iterable[str] = (),
        lifetime: int = TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create an issuer.

        ``issuer_base`` names the issuer (``iss = {issuer_base}/{tenant}/``);
        ``extra_audiences`` adds resources accepted besides ARM's; ``clock`` returns
        Unix time and exists for tests.
        """
        self._key = signing_key
        self._public_key = signing_key.public_key()
        self._issuer_base = issuer_base.rstrip("/")
        self._lifetime = int(lifetime)
        self._clock = clock
        self._clients: dict[tuple[str, str], ClientCredentials] = {}
        self._tenants: dict[str, str] = {}  # lower-case -> canonical spelling
        for client in clients:
            self._clients[(client.tenant_id.lower(), client.client_id.lower())] = client
            self._tenants[client.tenant_id.lower()] = client.tenant_id
        self._audiences = tuple(
            dict.fromkeys(_normalize_audience(a) for a in (*ARM_AUDIENCES, *extra_audiences))
        )
        jwk = RSAAlgorithm.to_jwk(self._public_key, as_dict=True)
        self._jwk_public = {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}
        # RFC 7638 thumbprint: stable for a given key, so kid survives restarts.
        canonical = json.dumps(self._jwk_public, sort_keys=True, separators=(",", ":"))
        self.kid = _b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    @property
    def audiences(self) -> tuple[str, ...]:
        """Accepted resources, without trailing slash (either spelling is accepted)."""
        return self._audiences

    def issuer_for(self, tenant_id: str) -> str:
        """Return the ``iss`` value of tokens issued for ``tenant_id``."""
        return f"{self._issuer_base}/{tenant_id}/"

    def canonical_tenant(self, tenant_id: str) -> str | None:
        """Return the known tenant's canonical id (case-insensitive lookup), or None."""
        return self._tenants.get(tenant_id.lower())

    def jwks(self) -> dict[str, Any]:
        """Return the JSON Web Key Set that verifies issued tokens."""
        return {"keys": [{**self._jwk_public, "use": "sig", "alg": _ALGORITHM, "kid": self.kid}]}

    def authenticate(self, tenant_id: str, client_id: str, client_secret: str) -> ClientCredentials:
        """Check client credentials; raise :class:`InvalidClient` (Entra ID codes) if wrong."""
        tenant = self.canonical_tenant(tenant_id)
        if tenant is None:
            raise InvalidClient(
                "invalid_request",
                f"Tenant '{tenant_id}' not found. Check that the tenant id is the one in "
                "this server's credentials.json.",
                400,
                90002,
            )
        client = self._clients.get((tenant.lower(), client_id.lower()))
        if client is None:
            raise InvalidClient(
                "unauthorized_client",
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'.",
                400,
                700016,
            )
        if not client_secret:
            raise InvalidClient(
                "invalid_client",
                "The request body must contain the following parameter: 'client_secret'.",
                401,
                7000218,
            )
        # Constant-time comparison: do not leak how much of a guessed secret is right.
        if not hmac.compare_digest(client_secret.encode(), client.client_secret.encode()):
            raise InvalidClient(
                "invalid_client",
                f"Invalid client secret provided for app '{client.client_id}'.",
                401,
                7000215,
            )
        return client

    def issue(
        self, tenant_id: str, client_id: str, client_secret: str, scope: str
    ) -> dict[str, Any]:
        """Run the client-credentials grant and return the OAuth token response.

        Raises :class:`InvalidClient` for wrong tenant/client/secret and
        :class:`InvalidScope` for a scope that is not ``<accepted resource>/.default``.
        """
        client = self.authenticate(tenant_id, client_id, client_secret)
        resource = resource_from_scope(scope)
        if _normalize_audience(resource) not in self._audiences:
            raise InvalidScope(
                "invalid_resource",
                f"The resource principal named {resource} was not found in the tenant "
                f"named {client.tenant_id}. This server issues tokens for: "
                + ", ".join(self._audiences),
                400,
                500011,
            )
        now = int(self._clock())
        claims = {
            "aud": resource,
            "iss": self.issuer_for(client.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + self._lifetime,
            "tid": client.tenant_id,
            "oid": client.object_id,
            "sub": client.object_id,  # app-only tokens: sub is the service principal
            "appid": client.client_id,  # v1 name of the client id
            "azp": client.client_id,  # v2 name of the client id
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

    def verify(self, token: str) -> Principal:
        """Validate an access token and return its caller; raise :class:`InvalidToken`."""
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
        accepted = [v for a in self._audiences for v in (a, a + "/")]
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
        return self._check_claims(claims)

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
        return Principal(tenant_id=tid, object_id=oid, client_id=appid)


def _utc(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
