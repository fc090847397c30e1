"""The one place where exceptions become ARM error responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from privatelink.api.arm import JSON, ArmJSONResponse
from privatelink.core.errors import ArmError
from privatelink.identity.auth import AuthenticationFailed

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


def install(app: FastAPI) -> None:
    """Register the exception handlers on an app."""

    @app.exception_handler(ArmError)
    async def arm_error(_request: Request, exc: ArmError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

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
        return error_response(exc.status_code, "HttpError", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(
            500, "InternalServerError", f"Unexpected error: {type(exc).__name__}."
        )
