"""The FastAPI application: identity endpoints plus the ARM routers behind bearer auth."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request

from privatelink.api import (
    deployment,
    errors,
    load_balancer,
    network_interface,
    operations,
    private_dns,
    private_dns_zone_group,
    private_endpoint,
    private_link_service,
    resource_manager,
    virtual_network,
)
from privatelink.api.arm import check_api_version
from privatelink.api.gate import ArmGate
from privatelink.api.paths import CanonicalPathMiddleware
from privatelink.identity.auth import bearer_principal
from privatelink.identity.router import build_identity_router
from privatelink.identity.tokens import TokenIssuer
from privatelink.service import ControlPlane

DEFAULT_PAGE_SIZE = 100


def create_app(
    plane: ControlPlane,
    issuer: TokenIssuer,
    *,
    tenant_id: str = "common",
    page_size: int = DEFAULT_PAGE_SIZE,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> FastAPI:
    """Assemble the server app around a control plane and a token issuer.

    `on_start`/`on_stop` run when the server starts and stops (the data plane loop).
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_start is not None:
            on_start()
        try:
            yield
        finally:
            if on_stop is not None:
                on_stop()

    app = FastAPI(
        title="privatelink", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.control_plane = plane
    app.state.page_size = page_size
    app.state.tenant_id = tenant_id
    errors.install(app)
    authenticate = bearer_principal(issuer)

    async def arm_request(request: Request) -> None:
        # The gate (middleware) has authenticated the caller before routing.
        check_api_version(request)

    arm = APIRouter(dependencies=[Depends(arm_request)])
    for module in (
        virtual_network,
        load_balancer,
        network_interface,
        private_link_service,
        private_endpoint,
        private_dns_zone_group,
        private_dns,
        operations,
        resource_manager,
        deployment,
    ):
        arm.include_router(module.router)
    app.include_router(arm)
    app.include_router(resource_manager.public)
    app.include_router(build_identity_router(issuer))
    # Added last = runs first: canonical paths, then the gate, then routing.
    app.add_middleware(
        ArmGate,
        authenticate=authenticate,
        tenant=tenant_id,
        on_subscription=lambda sub, who: plane.repo.ensure_subscription(sub, who.tenant_id),
    )
    app.add_middleware(CanonicalPathMiddleware)
    return app
