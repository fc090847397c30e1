"""The portal's lists of services and of pending connections (`/portal/services`,
`/portal/pending`): what the user can read across subscriptions, and the decisions
they may take, through ARM."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from privatelink.portal.arm import SUBSCRIPTIONS_API, Arm, ArmError
from privatelink.portal.context import Portal, read_form
from privatelink.portal.estate import gather

#: What deciding on a connection takes (either: ARM's own check is the same).
DECIDE_ACTIONS = (
    "Microsoft.Network/privateLinkServices/privateEndpointConnections/write",
    "Microsoft.Network/privateLinkServices/privateEndpointConnectionsApproval/action",
)


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


def _listed(value: str) -> list[str]:
    """A comma- or space-separated field as a list (empty items dropped)."""
    return [v for v in value.replace(",", " ").split() if v]


async def _choices(
    arm: Arm, subscription: str
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The Standard load balancers' frontends and the subnets of a subscription, as
    (id, label) choices for a new service."""
    base = f"/subscriptions/{subscription}/providers/Microsoft.Network"
    frontends = [
        {"id": f["id"], "label": f"{lb['name']} / {f['name']}"}
        for lb in await arm.list_all(f"{base}/loadBalancers")
        if (lb.get("sku") or {}).get("name", "Standard") == "Standard"
        for f in (lb.get("properties") or {}).get("frontendIPConfigurations") or []
    ]
    subnets = [
        {"id": s["id"], "label": f"{vnet['name']} / {s['name']}"}
        for vnet in await arm.list_all(f"{base}/virtualNetworks")
        for s in (vnet.get("properties") or {}).get("subnets") or []
    ]
    return frontends, subnets


def add_forms(router: APIRouter, portal: Portal) -> None:
    """`/portal/services/new` (create) and `/portal/service/edit` (change a service's
    visibility, auto-approval, FQDNs and PROXY protocol)."""

    async def show_form(
        request: Request,
        values: dict[str, str],
        errors: list[ArmError] | None = None,
        status: int = 200,
        editing: dict[str, Any] | None = None,
    ) -> Response:
        session = portal.session_of(request)
        assert session is not None
        arm = portal.arm_for(request, session)
        try:
            subscriptions = await arm.list_all("/subscriptions", SUBSCRIPTIONS_API)
            frontends, subnets = (
                await _choices(arm, values["subscription"])
                if values.get("subscription") and editing is None
                else ([], [])
            )
        except ArmError as exc:
            return portal.error(request, exc)
        return portal.page(
            "service_form.html",
            request,
            status,
            values=values,
            subscriptions=subscriptions,
            frontends=frontends,
            subnets=subnets,
            errors=errors or [],
            editing=editing,
        )

    @router.get("/portal/services/new", response_class=HTMLResponse)
    async def new_service(request: Request) -> Response:
        """The form for a new private link service (choose the subscription first)."""
        if portal.session_of(request) is None:
            return portal.sign_in_first(request)
        values = {"subscription": request.query_params.get("subscription", ""), "location": ""}
        return await show_form(request, values)

    @router.post("/portal/services/new", response_class=HTMLResponse)
    async def create_service(request: Request) -> Response:
        """PUT the service through ARM; its page on success, the form with ARM's error
        (and the values given) otherwise."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        form = {k: v[0] for k, v in (await read_form(request)).items()}
        if form.get("csrf") != session.csrf:
            return portal.error(request, ArmError(403, "InvalidCsrfToken", "Reload the page."))
        missing = [
            k
            for k in ("subscription", "group", "name", "location", "frontend", "subnet")
            if not form.get(k, "").strip()
        ]
        if missing:
            problem = ArmError(400, "MissingField", f"Fill in: {', '.join(missing)}.")
            return await show_form(request, form, [problem], 400)
        path = (
            f"/subscriptions/{form['subscription']}/resourceGroups/{form['group'].strip()}"
            f"/providers/Microsoft.Network/privateLinkServices/{form['name'].strip()}"
        )
        body = {
            "location": form["location"].strip(),
            "properties": {
                "loadBalancerFrontendIpConfigurations": [{"id": form["frontend"]}],
                "ipConfigurations": [
                    {
                        "name": "nat",
                        "properties": {"subnet": {"id": form["subnet"]}, "primary": True},
                    }
                ],
                "visibility": {"subscriptions": _listed(form.get("visibility", ""))},
                "autoApproval": {"subscriptions": _listed(form.get("autoApproval", ""))},
                "fqdns": _listed(form.get("fqdns", "")),
                "enableProxyProtocol": form.get("proxy") == "on",
            },
        }
        arm = portal.arm_for(request, session)
        try:
            await arm.request("PUT", path, body=body)
        except ArmError as exc:
            return await show_form(request, form, [exc], exc.status)
        return RedirectResponse(f"/portal/service?{urlencode({'id': path})}", 303)

    @router.get("/portal/service/edit", response_class=HTMLResponse)
    async def edit_service(request: Request) -> Response:
        """The form for a service's visibility, auto-approval, FQDNs and PROXY protocol."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        try:
            service = await portal.arm_for(request, session).get(request.query_params.get("id", ""))
        except ArmError as exc:
            return portal.error(request, exc)
        props = service.get("properties") or {}
        values = {
            "visibility": " ".join((props.get("visibility") or {}).get("subscriptions") or []),
            "autoApproval": " ".join((props.get("autoApproval") or {}).get("subscriptions") or []),
            "fqdns": " ".join(props.get("fqdns") or []),
            "proxy": "on" if props.get("enableProxyProtocol") else "",
        }
        return await show_form(request, values, editing=service)

    @router.post("/portal/service/edit", response_class=HTMLResponse)
    async def save_service(request: Request) -> Response:
        """PUT the service back with the changed settings (its etag: If-Match)."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        form = {k: v[0] for k, v in (await read_form(request)).items()}
        if form.get("csrf") != session.csrf:
            return portal.error(request, ArmError(403, "InvalidCsrfToken", "Reload the page."))
        arm = portal.arm_for(request, session)
        try:
            service = await arm.get(form.get("id", ""))
        except ArmError as exc:
            return portal.error(request, exc)
        props = dict(service.get("properties") or {})
        props.pop("privateEndpointConnections", None)  # children, not settings
        props["visibility"] = {"subscriptions": _listed(form.get("visibility", ""))}
        props["autoApproval"] = {"subscriptions": _listed(form.get("autoApproval", ""))}
        props["fqdns"] = _listed(form.get("fqdns", ""))
        props["enableProxyProtocol"] = form.get("proxy") == "on"
        body = {
            "location": service["location"],
            "tags": service.get("tags") or {},
            "properties": props,
        }
        try:
            await arm.request(
                "PUT", service["id"], body=body, headers={"If-Match": service.get("etag", "*")}
            )
        except ArmError as exc:
            return await show_form(request, form, [exc], exc.status, editing=service)
        return RedirectResponse(f"/portal/service?{urlencode({'id': service['id']})}", 303)
