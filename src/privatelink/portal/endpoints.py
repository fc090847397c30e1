"""The portal's private endpoints: the list (`/portal/endpoints`), one endpoint with its
connection, NIC and DNS configuration (`/portal/endpoint?id=`), and the form that
creates one by a service's alias or resource id (`/portal/endpoints/new`).

Everything is read and written through ARM with the user's token (portal/arm.py): the
form's PUT is the same request `az network private-endpoint create` sends, so a user
without the right gets ARM's 403, and a missing resource group is ARM's error too (the
portal never creates one: it asks ARM for the group first, since this server, unlike
Azure, takes a network resource into a group never created). The PUT carries
`If-None-Match: *`: the form creates, it never overwrites an endpoint of the same name
(ARM's 412 PreconditionFailed instead).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from privatelink.portal.arm import ArmError
from privatelink.portal.context import Portal, read_form
from privatelink.portal.estate import Seen, across, state_of

RESOURCES_API = "2022-09-01"
ENDPOINT_ID = re.compile(
    r"^/subscriptions/[^/?#]+/resourceGroups/[^/?#]+/providers/Microsoft\.Network/"
    r"privateEndpoints/[^/?#]+$",
    re.IGNORECASE,
)
#: The create form's fields (`manual` is a checkbox).
FIELDS = ("target", "manual", "message", "subscription", "group", "name", "location", "subnet")
#: What each required field is called on the form (for the error naming the empty ones).
REQUIRED = {
    "target": "Private link service alias or resource id",
    "subscription": "Subscription",
    "group": "Resource group",
    "name": "Name",
    "subnet": "Subnet",
}
#: Characters that would change the ARM path a name goes into (ARM refuses them anyway).
NOT_IN_A_NAME = re.compile(r"[/?#%\\]")


def connections_of(endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The endpoint's connections, automatic then manual, each marked `manual`."""
    props = endpoint.get("properties") or {}
    return [
        dict(c, manual=manual)
        for manual, key in (
            (False, "privateLinkServiceConnections"),
            (True, "manualPrivateLinkServiceConnections"),
        )
        for c in props.get(key) or []
    ]


def segment(value: str, what: int = 4) -> str:
    """Part `what` of a resource id (`/subscriptions/{2}/resourceGroups/{4}/...`)."""
    parts = value.split("/")
    return parts[what] if len(parts) > what else ""


def subnet_label(subnet_id: str) -> str:
    """`vnet/subnet` of a subnet id (the id itself when it is no subnet's)."""
    parts = subnet_id.split("/")
    if len(parts) >= 11 and parts[-2].lower() == "subnets":
        return f"{parts[-3]}/{parts[-1]}"
    return subnet_id


def subnets_of(vnets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each VNet with its subnets (id, name, prefix) and location, for the form."""
    out = []
    for vnet in vnets:
        subnets = [
            {
                "id": s.get("id", ""),
                "name": s.get("name", ""),
                "prefix": (s.get("properties") or {}).get("addressPrefix")
                or ", ".join((s.get("properties") or {}).get("addressPrefixes") or []),
            }
            for s in (vnet.get("properties") or {}).get("subnets") or []
        ]
        if subnets:
            out.append(
                {
                    "name": vnet.get("name", ""),
                    "group": segment(vnet.get("id", "")),
                    "subscription": segment(vnet.get("id", ""), 2),
                    "location": vnet.get("location", ""),
                    "subnets": subnets,
                }
            )
    return out


def endpoint_body(values: dict[str, str], manual: bool) -> dict[str, Any]:
    """The PUT body of a new endpoint with one connection (named as the endpoint, as
    Azure's portal does) to the service of an alias or resource id: ARM takes either
    in `privateLinkServiceId`."""
    connection: dict[str, Any] = {"privateLinkServiceId": values["target"]}
    if values["message"]:
        connection["requestMessage"] = values["message"]
    key = "manualPrivateLinkServiceConnections" if manual else "privateLinkServiceConnections"
    return {
        "location": values["location"],
        "properties": {
            "subnet": {"id": values["subnet"]},
            key: [{"name": values["name"], "properties": connection}],
        },
    }


def endpoint_path(values: dict[str, str]) -> str:
    """Where the new endpoint goes."""
    return (
        f"/subscriptions/{values['subscription']}/resourceGroups/{values['group']}"
        f"/providers/Microsoft.Network/privateEndpoints/{values['name']}"
    )


def form_problem(values: dict[str, str]) -> ArmError | None:
    """What the form lacks before it can be sent to ARM (ARM checks everything else)."""
    empty = [label for name, label in REQUIRED.items() if not values[name]]
    if empty:
        return ArmError(400, "RequiredFieldMissing", f"Fill in: {', '.join(empty)}.")
    bad = [
        REQUIRED[name]
        for name in ("subscription", "group", "name")
        if NOT_IN_A_NAME.search(values[name]) or values[name] in (".", "..")
    ]
    if bad:
        return ArmError(
            400,
            "InvalidResourceName",
            f"{', '.join(bad)}: a name cannot contain '/', '?', '#', '%' or '\\'.",
        )
    return None


def add_pages(router: APIRouter, portal: Portal) -> None:
    """`/portal/endpoints`, `/portal/endpoint` and `/portal/endpoints/new`."""

    @router.get("/portal/endpoints", response_class=HTMLResponse)
    async def endpoints(request: Request) -> Response:
        """Every private endpoint the user can read, with its connection's state."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        try:
            seen = await across(portal.arm_for(request, session), "privateEndpoints")
        except ArmError as exc:
            return portal.error(request, exc)
        rows = [{"endpoint": e, "connections": connections_of(e)} for e in seen.items]
        return portal.page(
            "endpoints.html",
            request,
            rows=rows,
            errors=seen.errors,
            subnet_label=subnet_label,
            segment=segment,
            state_of=state_of,
        )

    @router.get("/portal/endpoint", response_class=HTMLResponse)
    async def endpoint(request: Request) -> Response:
        """One endpoint: its connections, NIC and address, and its DNS configuration."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        endpoint_id = request.query_params.get("id", "")
        if not ENDPOINT_ID.match(endpoint_id):
            return portal.error(
                request, ArmError(400, "InvalidResourceId", "No private endpoint id.")
            )
        arm = portal.arm_for(request, session)
        try:
            found = await arm.get(endpoint_id)
        except ArmError as exc:
            return portal.error(request, exc)
        props = found.get("properties") or {}
        errors: list[ArmError] = []
        nics: list[dict[str, Any]] = []
        # The NIC and the zone groups are separate reads: one refused still shows the rest.
        for ref in props.get("networkInterfaces") or []:
            try:
                nics.append(await arm.get(ref.get("id", "")))
            except ArmError as exc:
                errors.append(exc)
                nics.append({"id": ref.get("id", ""), "name": segment(ref.get("id", ""), 8)})
        try:
            groups = await arm.list_all(f"{found['id']}/privateDnsZoneGroups")
        except ArmError as exc:
            errors.append(exc)
            groups = []
        return portal.page(
            "endpoint.html",
            request,
            endpoint=found,
            connections=connections_of(found),
            nics=nics,
            groups=groups,
            errors=errors,
            subnet_label=subnet_label,
            segment=segment,
            state_of=state_of,
        )

    async def show_form(
        request: Request,
        values: dict[str, str],
        manual: bool,
        errors: list[ArmError] | None = None,
        status: int = 200,
        choices: Seen | None = None,
    ) -> Response:
        session = portal.session_of(request)
        assert session is not None
        if choices is None:
            try:
                choices = await across(portal.arm_for(request, session), "virtualNetworks")
            except ArmError as exc:
                return portal.error(request, exc)
        return portal.page(
            "endpoint_new.html",
            request,
            status,
            values=values,
            manual=manual,
            subscriptions=choices.subscriptions,
            vnets=subnets_of(choices.items),
            errors=(errors or []) + choices.errors,
        )

    @router.get("/portal/endpoints/new", response_class=HTMLResponse)
    async def new_endpoint(request: Request) -> Response:
        """The form; `?target=` fills in the alias or id (a link from elsewhere)."""
        if portal.session_of(request) is None:
            return portal.sign_in_first(request)
        values = {name: "" for name in FIELDS}
        values["target"] = request.query_params.get("target", "")
        return await show_form(request, values, manual=True)

    @router.post("/portal/endpoints/new", response_class=HTMLResponse)
    async def create_endpoint(request: Request) -> Response:
        """PUT the endpoint through ARM; its page on success, the form with ARM's error
        (and the user's values) otherwise."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        form = await read_form(request)
        if form.get("csrf", [""])[0] != session.csrf:
            return portal.error(
                request,
                ArmError(403, "InvalidCsrfToken", "The form is out of date: reload the page."),
            )
        values = {name: form.get(name, [""])[0].strip() for name in FIELDS}
        manual = bool(values["manual"])
        problem = form_problem(values)
        if problem is not None:
            return await show_form(request, values, manual, [problem], problem.status)
        arm = portal.arm_for(request, session)
        try:
            choices = await across(arm, "virtualNetworks")
        except ArmError as exc:
            return portal.error(request, exc)
        if not values["location"]:
            # Blank: the chosen subnet's virtual network's location (ARM wants one).
            for vnet in subnets_of(choices.items):
                if any(s["id"].lower() == values["subnet"].lower() for s in vnet["subnets"]):
                    values["location"] = vnet["location"]
        quoted = {k: quote(v, safe="") for k, v in values.items()}
        path = endpoint_path(quoted)
        try:
            # ARM here keeps resource groups implicit for network resources; Azure
            # refuses a PUT into a missing group, and so does the form (ARM's 404).
            await arm.get(
                f"/subscriptions/{quoted['subscription']}/resourceGroups/{quoted['group']}",
                RESOURCES_API,
            )
            made = await arm.request(
                "PUT", path, body=endpoint_body(values, manual), headers={"If-None-Match": "*"}
            )
        except ArmError as exc:
            return await show_form(request, values, manual, [exc], exc.status, choices)
        made_id = (made or {}).get("id") or endpoint_path(values)
        return RedirectResponse(f"/portal/endpoint?{urlencode({'id': made_id})}", 303)
