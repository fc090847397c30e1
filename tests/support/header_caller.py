"""In-process ARM apps for unit tests: a stand-in for the gate (the caller is named by a
header) and the dependency every ARM route runs (api-version, then RBAC)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from privatelink.api.arm import check_api_version
from privatelink.api.authorize import authorize
from privatelink.core.principal import Principal

CLIENT_ID = "cccccccc-0000-4000-8000-000000000001"


class AsHeaderCaller:
    """ASGI middleware standing in for the gate: the caller is the `x-caller` object id,
    in `tenant`."""

    def __init__(self, app: Any, tenant: str) -> None:
        self.app = app
        self.tenant = tenant

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            oid = dict(scope["headers"]).get(b"x-caller")
            if oid:
                principal = Principal(self.tenant, oid.decode(), CLIENT_ID)
                scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def arm_request(request: Request) -> None:
    """What the app runs before an ARM route: the api-version check, then RBAC."""
    check_api_version(request)
    await authorize(request)
