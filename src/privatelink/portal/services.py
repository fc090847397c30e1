"""The portal's lists of services and of pending connections (`/portal/services`,
`/portal/pending`): what the user can read across subscriptions, and the decisions
they may take, through ARM."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from privatelink.portal.arm import SUBSCRIPTIONS_API, Arm, ArmError
from privatelink.portal.context import Portal, read_form

#: What deciding on a connection takes (either: ARM's own check is the same).
DECIDE_ACTIONS = (
    "Microsoft.Network/privateLinkServices/privateEndpointConnections/write",
    "Microsoft.Network/privateLinkServices/privateEndpointConnectionsApproval/action",
)


@dataclass
class Estate:
    """What the user can read: subscriptions, services and endpoints (and what failed)."""

    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ArmError] = field(default_factory=list)

    def pending(self) -> list[dict[str, Any]]:
        """Every connection awaiting a decision, with its service."""
        return [
            {"service": s, "connection": c}
            for s in self.services
            for c in (s.get("properties") or {}).get("privateEndpointConnections") or []
            if status_of(c) == "Pending"
        ]


def status_of(connection: dict[str, Any]) -> str:
    """A connection's state (Pending, Approved, Rejected, Disconnected)."""
    props = connection.get("properties") or {}
    return str((props.get("privateLinkServiceConnectionState") or {}).get("status") or "")


async def gather(arm: Arm, subscription: str = "", group: str = "") -> Estate:
    """Services and endpoints of every subscription the user can see (or one), in one
    resource group when `group` is given; an ARM refusal per subscription is kept."""
    estate = Estate(subscriptions=await arm.list_all("/subscriptions", SUBSCRIPTIONS_API))
    for sub in estate.subscriptions:
        sid = sub.get("subscriptionId", "")
        if subscription and sid != subscription:
            continue
        base = f"/subscriptions/{sid}/providers/Microsoft.Network"
        try:
            estate.services += await arm.list_all(f"{base}/privateLinkServices")
            estate.endpoints += await arm.list_all(f"{base}/privateEndpoints")
        except ArmError as exc:
            estate.errors.append(exc)
    if group:
        key = f"/resourcegroups/{group.lower()}/"
        estate.services = [s for s in estate.services if key in s["id"].lower()]
        estate.endpoints = [e for e in estate.endpoints if key in e["id"].lower()]
    return estate


def add_pages(router: APIRouter, portal: Portal) -> None:
    """`/portal/services` and `/portal/pending`."""

    @router.get("/portal/services", response_class=HTMLResponse)
    async def services(request: Request) -> Response:
        """Every private link service the user can read."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        try:
            estate = await gather(portal.arm_for(request, session))
        except ArmError as exc:
            return portal.error(request, exc)
        return portal.page("services.html", request, services=estate.services, errors=estate.errors)

    async def show_pending(
        request: Request, errors: list[ArmError] | None = None, done: str = "", status: int = 200
    ) -> Response:
        session = portal.session_of(request)
        assert session is not None
        arm = portal.arm_for(request, session)
        try:
            estate = await gather(arm)
        except ArmError as exc:
            return portal.error(request, exc)
        rows = estate.pending()
        may: dict[str, bool] = {}
        for row in rows:
            sid = row["service"]["id"]
            if sid not in may:
                may[sid] = await portal.allowed(arm, sid, DECIDE_ACTIONS)
            row["may_decide"] = may[sid]
        return portal.page(
            "pending.html",
            request,
            status,
            rows=rows,
            any_decision=any(may.values()),
            errors=(errors or []) + estate.errors,
            done=done,
        )

    @router.get("/portal/pending", response_class=HTMLResponse)
    async def pending(request: Request) -> Response:
        """One list of every connection awaiting the user's decision."""
        if portal.session_of(request) is None:
            return portal.sign_in_first(request)
        return await show_pending(request)

    @router.post("/portal/pending", response_class=HTMLResponse)
    async def decide(request: Request) -> Response:
        """Approve or reject the chosen connections (of any services) through ARM."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        form = await read_form(request)
        if form.get("csrf", [""])[0] != session.csrf:
            return portal.error(
                request,
                ArmError(403, "InvalidCsrfToken", "The form is out of date: reload the page."),
            )
        action = form.get("action", [""])[0]
        chosen = [c for c in form.get("connection", []) if "|" in c]
        if action not in ("Approved", "Rejected") or not chosen:
            problem = ArmError(
                400, "NothingChosen", "Choose one or more connections and a decision."
            )
            return await show_pending(request, [problem], status=400)
        description = form.get("description", [""])[0]
        arm = portal.arm_for(request, session)
        errors: list[ArmError] = []
        for value in chosen:
            service_id, _, name = value.partition("|")
            state = {"status": action, "description": description}
            try:
                await arm.request(
                    "PUT",
                    f"{service_id}/privateEndpointConnections/{name}",
                    body={"properties": {"privateLinkServiceConnectionState": state}},
                )
            except ArmError as exc:
                errors.append(exc)
        done = "" if errors else f"{action}: {len(chosen)}"
        return await show_pending(request, errors, done, errors[0].status if errors else 200)
