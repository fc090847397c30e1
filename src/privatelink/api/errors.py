"""The one place where exceptions become ARM error responses.

Store faults (the server's database unreachable, locked or full; classified by
`store.faults`) answer 503 `StoreUnavailable` with `Retry-After`, or 507
`InsufficientStorage`, wherever they surface: in a route, in a middleware (the gate's
subscription lookup), or as a raw driver error that escaped classification.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from privatelink.api.arm import JSON, ArmJSONResponse
from privatelink.core.errors import ArmError, StoreFault
from privatelink.identity.auth import AuthenticationFailed
from privatelink.store import faults

log = logging.getLogger("privatelink.api")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """`{"error": {"code", "message"}}` with a status."""
    return ArmJSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers=headers,
        media_type=JSON,
    )


def arm_error_response(exc: ArmError) -> JSONResponse:
    """The response for a typed error (a store fault adds `Retry-After` when it has one)."""
    headers = None
    if isinstance(exc, StoreFault) and exc.retry_after is not None:
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(exc.status, exc.code, exc.message, headers)


def _unexpected_response(exc: Exception) -> JSONResponse:
    """A store fault's ARM error, else (a bug) a logged 500."""
    if isinstance(exc, ArmError):  # raised in a middleware, outside the routes' handlers
        return arm_error_response(exc)
    fault = faults.classify(exc)
    if fault is not None:
        log.warning("store fault %s: %s", fault.code, type(exc).__name__)
        return arm_error_response(fault)
    log.exception("unhandled error")
    return error_response(500, "InternalServerError", f"Unexpected error: {type(exc).__name__}.")


def install(app: FastAPI) -> None:
    """Register the exception handlers on an app."""

    @app.exception_handler(ArmError)
    async def arm_error(_request: Request, exc: ArmError) -> JSONResponse:
        return arm_error_response(exc)

    async def raw_store_error(_request: Request, exc: Exception) -> JSONResponse:
        return _unexpected_response(exc)

    for raw in faults.RAW_ERRORS:
        app.add_exception_handler(raw, raw_store_error)

    @app.exception_handler(AuthenticationFailed)
    async def auth_failed(request: Request, exc: AuthenticationFailed) -> JSONResponse:
        tenant = getattr(request.app.state, "tenant_id", "common")
        authority = f"{str(request.base_url).rstrip('/')}/{tenant}"
        return error_response(
            401, exc.code, exc.message, {"WWW-Authenticate": exc.www_authenticate(authority)}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
            for e in exc.errors()[:10]
        )
        return error_response(400, "InvalidRequestContent", f"The request is invalid: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(
                404,
                "InvalidResourceType",
                f"No operation is served at {request.method} {request.url.path}.",
            )
        if exc.status_code == 405:
            return error_response(
                405, "MethodNotAllowed", f"{request.method} is not allowed on {request.url.path}."
            )
        if exc.status_code == 400:  # only the framework raises these: a body it cannot parse
            return error_response(
                400, "InvalidRequestContent", f"The request content is invalid: {exc.detail}"
            )
        return error_response(exc.status_code, "HttpError", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this outermost, for what escaped every middleware too, and then
        # re-raises, so uvicorn closes the connection: say so, or a client reusing it
        # sees its next request dropped without an answer.
        response = _unexpected_response(exc)
        response.headers["Connection"] = "close"
        return response
