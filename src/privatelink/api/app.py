"""The FastAPI application: identity endpoints plus the ARM routers behind bearer auth."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from privatelink.api import (
    activity_log,
    authorization,
    connection,
    crud,
    deployment,
    errors,
    load_balancer,
    local_network_gateway,
    network_interface,
    openapi,
    operations,
    private_dns,
    private_dns_zone_group,
    private_endpoint,
    private_link_service,
    public_ip_address,
    resource_manager,
    route_filter,
    virtual_network,
    virtual_network_gateway,
    virtual_network_peering,
)
from privatelink.api.activity_log import ActivityRecorder
from privatelink.api.arm import check_api_version, check_subscription
from privatelink.api.authorize import authorize
from privatelink.api.gate import ArmGate, SubscriptionStore
from privatelink.api.limits import BodyLimit
from privatelink.api.paths import CanonicalPathMiddleware
from privatelink.api.template_body import TemplateBodyMiddleware
from privatelink.api.throttle import ArmThrottle
from privatelink.core.actions import describe
from privatelink.core.authorization import Access
from privatelink.core.load_balancer import RuleHealth
from privatelink.core.principal import Principal, SubscriptionCreated
from privatelink.core.registry import ResourceType
from privatelink.core.throttle import SignInGuard, SignInPolicy, Throttle, ThrottlingConfig
from privatelink.identity.auth import bearer_principal
from privatelink.identity.graph import build_graph_router
from privatelink.identity.router import build_identity_router
from privatelink.identity.signin import AuthorizationCodes, build_signin_router
from privatelink.identity.tokens import TokenIssuer
from privatelink.portal.router import build_portal_router
from privatelink.service import ControlPlane

DEFAULT_PAGE_SIZE = 100

# The API's resource modules, one per resource (router order = this order); each has a
# `router` and `KINDS`, the wire side of its registry entries.
RESOURCES = (
    virtual_network,
    virtual_network_peering,
    load_balancer,
    network_interface,
    private_link_service,
    private_endpoint,
    private_dns_zone_group,
    private_dns,
    public_ip_address,
    virtual_network_gateway,
    local_network_gateway,
    connection,
)


def resource_kinds() -> dict[ResourceType[Any], crud.ResourceKind]:
    """Every resource kind the API serves, keyed by its registry entry.

    The one place kinds are assembled: template deployments find a kind here (through
    `app.state.kinds`), never through an import side effect.
    """
    kinds: dict[ResourceType[Any], crud.ResourceKind] = {}
    for module in RESOURCES:
        for kind in module.KINDS:
            if kind.entry in kinds:
                raise ValueError(f"two kinds for {kind.arm_type}")
            kinds[kind.entry] = kind
    return kinds


@dataclass(frozen=True)
class Tenancy:
    """What the app needs besides the control plane: who is who, and what they may do.

    `subscriptions` and `directory` back the gate's tenant check; `access_for` builds a
    caller's RBAC access (None: authorization off, everything allowed); `rbac` serves
    Microsoft.Authorization, `graph` Microsoft Graph, `activity_log` the activity log;
    `on_subscription_created` records the Owner of a subscription made on first use.
    """

    subscriptions: SubscriptionStore
    directory: Any
    rbac: Any
    activity_log: Any
    access_for: Callable[[Principal], Access] | None
    on_subscription_created: SubscriptionCreated
    extra_routers: tuple[APIRouter, ...] = ()


def create_app(
    plane: ControlPlane,
    issuer: TokenIssuer,
    tenancy: Tenancy,
    *,
    tenant_id: str = "common",
    page_size: int = DEFAULT_PAGE_SIZE,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    throttling: ThrottlingConfig | None = None,
    rule_health: RuleHealth | None = None,
) -> FastAPI:
    """Assemble the server app around a control plane, a token issuer and the tenancy.

    `on_start`/`on_stop` run when the server starts and stops (the data plane loop);
    `throttling` sets ARM's request budgets and the sign-in lockout (default: generous);
    `rule_health` gives load-balancing rules' live probe states (the data plane's; None:
    no data plane, every backend's state unknown).
    """
    throttling = throttling or ThrottlingConfig()

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
    app.state.kinds = resource_kinds()
    app.state.rule_health = rule_health  # api/load_balancer.py's rule health route
    app.state.rbac = tenancy.rbac
    app.state.activity_log = tenancy.activity_log
    app.state.access_for = tenancy.access_for
    app.state.principal_exists = tenancy.directory.principal_exists
    # A role assignment's principalType comes from the directory when it can say.
    app.state.principal_kind = getattr(tenancy.directory, "principal_kind", None)
    app.state.directory = tenancy.directory
    errors.install(app)
    openapi.install(app)  # /openapi.json describes bodies, api-version, id patterns

    async def arm_request(request: Request) -> None:
        # The gate (middleware) has authenticated the caller before routing.
        check_api_version(request)
        # A malformed subscription id is a 400 before any role check or write.
        if "subscription" in request.path_params:
            check_subscription(request.path_params["subscription"])
        await authorize(request)  # one dependency, not two: each costs FastAPI a lot

    # Each module's router directly in the app, behind a path filter: FastAPI tests a
    # nested router's routes once per level, each test costly (api/route_filter.py).
    arm = [Depends(arm_request)]
    for module in (*RESOURCES, operations, resource_manager, deployment, authorization):
        app.include_router(route_filter.prefilter(module.router), dependencies=arm)
    # The activity log checks its own (older) api-version.
    app.include_router(activity_log.router, dependencies=[Depends(authorize)])
    app.include_router(resource_manager.public)
    sign_in = throttling.sign_in if throttling.enabled else SignInPolicy(enabled=False)
    guard = SignInGuard(sign_in, time.monotonic)
    users = tenancy.directory if hasattr(tenancy.directory, "check_user_password") else None
    codes = AuthorizationCodes() if users is not None else None
    app.include_router(build_identity_router(issuer, guard, users, codes))
    if users is not None and codes is not None:
        app.include_router(build_signin_router(users, codes, guard, issuer.canonical_tenant))
        # The portal (`/portal/`, and `/`, where the cloud metadata's `portal` points):
        # its pages call this app's ARM routes with the signed-in user's token.
        app.include_router(build_portal_router(app))
    app.include_router(
        build_graph_router(tenancy.directory, lambda token: issuer.verify(token, resource="graph"))
    )
    for router in tenancy.extra_routers:
        app.include_router(router)
    # Added last = runs first: canonical paths, then the gate, then the throttle and
    # the activity recorder (both need the gate's principal), then routing.
    app.add_middleware(ActivityRecorder, log=tenancy.activity_log, describe=describe)
    if throttling.enabled:
        app.add_middleware(ArmThrottle, throttle=Throttle(throttling, time.monotonic))
    app.add_middleware(
        ArmGate,
        authenticate=bearer_principal(issuer),
        tenant=tenant_id,
        subscriptions=tenancy.subscriptions,
        admins=tenancy.directory,
        issuer_for=issuer.issuer_for,
        on_subscription_created=tenancy.on_subscription_created,
    )
    app.add_middleware(CanonicalPathMiddleware)
    app.add_middleware(TemplateBodyMiddleware)  # inside BodyLimit: at most 4 MB held
    app.add_middleware(BodyLimit)
    return app
