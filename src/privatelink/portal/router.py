"""The portal's pages (`/portal/...`): server-side templates over the ARM API.

Sign-in is the server's own authorization code flow with PKCE (identity/signin.py) as
the portal's public client (`tokens.PORTAL_CLIENT_ID`): `/portal/signin` sends the
browser to the sign-in page, `/portal/callback` redeems the code and keeps the tokens
in a server-side session (portal/sessions.py). Everything a page shows or changes is
asked of ARM with the user's token (portal/arm.py), so RBAC applies as to any client;
an ARM refusal is shown with its code and message.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from privatelink.identity.signin import challenge_of
from privatelink.identity.tokens import PORTAL_CLIENT_ID
from privatelink.portal import endpoints, metrics, services, topology
from privatelink.portal.arm import ArmError
from privatelink.portal.context import (
    ARM_SCOPE,
    HERE,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Portal,
    origin_of,
    read_form,
)
from privatelink.portal.estate import gather
from privatelink.portal.sessions import Session, Sessions


def _claims(token: str) -> dict[str, Any]:
    """The payload of a JWT our own token endpoint just returned (no check needed)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def _safe_return(value: str | None) -> str:
    """A path of the portal to return to after sign-in (never another site)."""
    if value and value.startswith("/portal/") and not value.startswith("//"):
        return value
    return "/portal/"


REMOVE_ACTIONS = (
    "Microsoft.Network/privateLinkServices/privateEndpointConnections/delete",
    "Microsoft.Network/privateLinkServices/privateEndpointConnectionsApproval/action",
)


#: Functions `(router, portal)` that add a group of pages (each module's `add_pages`).
PAGE_GROUPS: list[Callable[[APIRouter, Portal], None]] = [
    services.add_pages,
    services.add_forms,
    endpoints.add_pages,
    metrics.add_pages,
    topology.add_pages,
]


def build_portal_router(app: Any, sessions: Sessions | None = None) -> APIRouter:
    """The portal's routes; `app` is the server app its pages call ARM through."""
    router = APIRouter(include_in_schema=False)

    portal = Portal(app, sessions)
    # Other groups of pages add their routes with the same Portal (sessions, rendering).
    for add_pages in PAGE_GROUPS:
        add_pages(router, portal)
    store = portal.store
    session_of, arm_for, page = portal.session_of, portal.arm_for, portal.page
    sign_in_first, allowed, token_request = portal.sign_in_first, portal.allowed, portal.token

    @router.get("/")
    @router.get("/portal")
    async def portal_root() -> Response:
        return RedirectResponse("/portal/", 307)

    @router.get("/portal/static/portal.css")
    async def stylesheet() -> Response:
        return FileResponse(HERE / "static" / "portal.css", media_type="text/css")

    @router.get("/portal/signin")
    async def sign_in(request: Request) -> Response:
        """Off to the sign-in page, with a fresh PKCE verifier kept for the callback."""
        state, verifier = store.start_sign_in(_safe_return(request.query_params.get("return_to")))
        query = urlencode(
            {
                "client_id": PORTAL_CLIENT_ID,
                "response_type": "code",
                "redirect_uri": f"{origin_of(request)}/portal/callback",
                "scope": ARM_SCOPE,
                "state": state,
                "code_challenge": challenge_of(verifier),
                "code_challenge_method": "S256",
            }
        )
        reply = RedirectResponse(f"/organizations/oauth2/v2.0/authorize?{query}", 303)
        reply.set_cookie(
            SIGN_IN_COOKIE, state, max_age=600, httponly=True, secure=True, samesite="strict"
        )
        return reply

    @router.get("/portal/callback")
    async def callback(request: Request) -> Response:
        """The sign-in page's redirect: redeem the code, start the session."""
        state = request.query_params.get("state", "")
        code = request.query_params.get("code", "")
        if not state or state != request.cookies.get(SIGN_IN_COOKIE):
            return page(
                "error.html",
                request,
                400,
                code="SignInStateMismatch",
                message="This sign-in was not started in this browser. Sign in again.",
            )
        pending = store.finish_sign_in(state)
        if pending is None or not code:
            return page(
                "error.html",
                request,
                400,
                code="SignInExpired",
                message="The sign-in took too long or was already used. Sign in again.",
            )
        try:
            body = await token_request(
                origin_of(request),
                {
                    "grant_type": "authorization_code",
                    "client_id": PORTAL_CLIENT_ID,
                    "code": code,
                    "redirect_uri": f"{origin_of(request)}/portal/callback",
                    "code_verifier": pending.verifier,
                },
            )
        except ArmError as exc:
            return page("error.html", request, 400, code=exc.code, message=exc.message)
        who = _claims(body["id_token"])
        session = Session(
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
            expires=time.monotonic() + int(body.get("expires_in", 3600)),
            user_name=str(who.get("preferred_username", "")),
            display_name=str(who.get("name", "")),
            tenant_id=str(who.get("tid", "")),
            object_id=str(who.get("oid", "")),
        )
        reply = RedirectResponse(pending.return_to, 303)
        reply.set_cookie(
            SESSION_COOKIE, store.add(session), httponly=True, secure=True, samesite="strict"
        )
        reply.delete_cookie(SIGN_IN_COOKIE)
        return reply

    @router.get("/portal/static/portal.js")
    async def script() -> Response:
        return FileResponse(HERE / "static" / "portal.js", media_type="text/javascript")

    @router.get("/portal/static/topology.js")
    async def topology_script() -> Response:
        return FileResponse(HERE / "static" / "topology.js", media_type="text/javascript")

    @router.post("/portal/signout")
    async def sign_out(request: Request) -> Response:
        """End the session (the form carries its CSRF token)."""
        session = session_of(request)
        token = (await read_form(request)).get("csrf", [""])[0]
        if session is not None and token == session.csrf:
            store.drop(request.cookies.get(SESSION_COOKIE))
        reply = RedirectResponse("/portal/signed-out", 303)
        reply.delete_cookie(SESSION_COOKIE)
        return reply

    @router.get("/portal/signed-out", response_class=HTMLResponse)
    async def signed_out(request: Request) -> Response:
        return page("signed_out.html", request)

    @router.get("/portal/", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        """Private Link Center: counts and pending connections across subscriptions."""
        session = session_of(request)
        if session is None:
            return sign_in_first(request)
        chosen_sub = request.query_params.get("subscription", "")
        chosen_rg = request.query_params.get("resourceGroup", "")
        try:
            estate = await gather(arm_for(request, session), chosen_sub, chosen_rg)
        except ArmError as exc:
            return portal.error(request, exc)
        return page(
            "overview.html",
            request,
            subscriptions=estate.subscriptions,
            chosen_sub=chosen_sub,
            chosen_rg=chosen_rg,
            services=estate.services,
            endpoints=estate.endpoints,
            pending=estate.pending(),
            errors=estate.errors,
        )

    @router.get("/portal/service", response_class=HTMLResponse)
    async def service_page(request: Request) -> Response:
        """A private link service: its settings and connections, with the decisions."""
        session = session_of(request)
        if session is None:
            return sign_in_first(request)
        service_id = request.query_params.get("id", "")
        return await render_service(request, session, service_id)

    async def render_service(
        request: Request,
        session: Session,
        service_id: str,
        errors: list[ArmError] | None = None,
        done: str = "",
        status: int = 200,
    ) -> Response:
        arm = arm_for(request, session)
        if not service_id.lower().startswith("/subscriptions/"):
            return page(
                "error.html", request, 400, code="InvalidResourceId", message="No service id."
            )
        try:
            service = await arm.get(service_id)
        except ArmError as exc:
            return page("error.html", request, exc.status, code=exc.code, message=exc.message)
        return page(
            "service.html",
            request,
            status,
            service=service,
            connections=(service.get("properties") or {}).get("privateEndpointConnections") or [],
            can_decide=await allowed(arm, service["id"], services.DECIDE_ACTIONS),
            can_remove=await allowed(arm, service["id"], REMOVE_ACTIONS),
            can_edit=await allowed(
                arm, service["id"], ("Microsoft.Network/privateLinkServices/write",)
            ),
            errors=errors or [],
            done=done,
        )

    @router.post("/portal/service/connections", response_class=HTMLResponse)
    async def decide(request: Request) -> Response:
        """Approve, reject or remove the chosen connections, each through ARM."""
        session = session_of(request)
        if session is None:
            return sign_in_first(request)
        form = await read_form(request)
        service_id = form.get("id", [""])[0]
        if form.get("csrf", [""])[0] != session.csrf:
            return page(
                "error.html",
                request,
                403,
                code="InvalidCsrfToken",
                message="The form is out of date. Reload the page and try again.",
            )
        action = form.get("action", [""])[0]
        names = [n for n in form.get("connection", []) if n]
        description = form.get("description", [""])[0]
        if action not in ("Approved", "Rejected", "Remove") or not names:
            return await render_service(
                request,
                session,
                service_id,
                [ArmError(400, "NothingChosen", "Choose one or more connections and a decision.")],
                status=400,
            )
        arm = arm_for(request, session)
        errors: list[ArmError] = []
        for name in names:
            path = f"{service_id}/privateEndpointConnections/{name}"
            try:
                if action == "Remove":
                    await arm.request("DELETE", path)
                else:
                    state = {"status": action, "description": description}
                    body = {"properties": {"privateLinkServiceConnectionState": state}}
                    await arm.request("PUT", path, body=body)
            except ArmError as exc:
                errors.append(exc)
        done = "" if errors else f"{action if action != 'Remove' else 'Removed'}: {len(names)}"
        status = errors[0].status if errors else 200
        return await render_service(request, session, service_id, errors, done, status)

    return router
