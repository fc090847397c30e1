"""Bearer-token authentication of ARM requests, as a FastAPI dependency.

Owns turning an ``Authorization`` header into a :class:`Principal` or an
:class:`AuthenticationFailed` carrying ARM's error code, HTTP status and message. The
API layer renders the error (``{"error": {"code", "message"}}``, 401, and a
``WWW-Authenticate`` header, see :meth:`AuthenticationFailed.www_authenticate`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from privatelink.core.principal import Principal
from privatelink.identity.tokens import InvalidToken, Resource, TokenIssuer


class AuthenticationFailed(Exception):
    """The request is not authenticated; render as an ARM error with ``status`` 401.

    ``code`` is ``AuthenticationFailed`` when no usable bearer header was sent and
    ``InvalidAuthenticationToken`` when a token was sent but rejected; ``reason`` is
    the :class:`InvalidToken` reason in the latter case (``expired``,
    ``wrong_audience``, ...), else ``None``.
    """

    status = 401

    def __init__(self, message: str, code: str = "AuthenticationFailed", reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason

    def www_authenticate(self, authorization_uri: str) -> str:
        """Value for the ``WWW-Authenticate`` header, in ARM's format.

        ``authorization_uri`` is the authority clients should get tokens from, e.g.
        ``https://127.0.0.1:PORT/{tenant}``.
        """
        # Quotes inside a quoted-string would break the header; messages never need them.
        description = self.message.replace('"', "'")
        return (
            f'Bearer authorization_uri="{authorization_uri}", error="invalid_token", '
            f'error_description="{description}"'
        )


def principal_from_header(
    issuer: TokenIssuer, header: str | None, resource: Resource = "arm"
) -> Principal:
    """The caller named by an ``Authorization`` header value, for ``resource``.

    Raises :class:`AuthenticationFailed` for a missing, non-Bearer or invalid token.
    RSA verification takes microseconds and touches no store, so it may run on the
    event loop.
    """
    if not header:
        raise AuthenticationFailed("Authentication failed. The 'Authorization' header is missing.")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed(
            "Authentication failed. The 'Authorization' header is provided in an invalid "
            "format; expected 'Bearer <access token>'."
        )
    try:
        return issuer.verify(token, resource)
    except InvalidToken as exc:
        raise AuthenticationFailed(
            exc.message, code="InvalidAuthenticationToken", reason=exc.reason
        ) from exc


def bearer_principal(
    issuer: TokenIssuer, resource: Resource = "arm"
) -> Callable[[Request], Awaitable[Principal]]:
    """Return a FastAPI dependency yielding the caller's :class:`Principal`.

    The dependency raises :class:`AuthenticationFailed` for a missing, non-Bearer or
    invalid token, or a token of the other audience class than ``resource``.
    """

    async def principal(request: Request) -> Principal:
        return principal_from_header(issuer, request.headers.get("authorization"), resource)

    return principal
