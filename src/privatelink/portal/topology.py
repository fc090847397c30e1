"""A service's topology (`/portal/topology?id=...`): consumer networks → private
endpoints → their links (coloured by connection state) → the service → its load
balancer frontends → the backends (coloured by their live probe state, from the rules'
health, `LoadBalancerLoadBalancingRules_Health`). Drawn as SVG on the server; the page
fetches the drawing again every few seconds (`/portal/topology.svg`), so a backend that
dies turns red within its probe interval and the next fetch.

The provider cannot read a consumer's network (another tenant, usually): an endpoint is
placed under the subscription and resource group its id names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from privatelink.portal.arm import Arm, ArmError
from privatelink.portal.context import PAGE_HEADERS, Portal
from privatelink.portal.estate import status_of

#: Seconds between the page's fetches of a new drawing.
REFRESH_SECONDS = 3
COLUMNS = (20, 250, 480, 700)  # x of: endpoints, the service, frontends, backends
BOX_W, BOX_H, ROW = 190, 46, 64
STATE_CLASS = {"approved": "ok", "pending": "wait", "rejected": "bad", "disconnected": "bad"}


@dataclass
class Picture:
    """What the drawing shows."""

    service: dict[str, Any]
    links: list[dict[str, str]] = field(default_factory=list)  # endpoint, group, state
    frontends: list[dict[str, str]] = field(default_factory=list)  # id, name, address
    backends: list[dict[str, str]] = field(default_factory=list)  # frontend, ip, state, reason
    errors: list[ArmError] = field(default_factory=list)


async def picture(arm: Arm, service_id: str) -> Picture:
    """Everything the drawing needs, asked of ARM (a refused part is kept as an error)."""
    service = await arm.get(service_id)
    pic = Picture(service)
    props = service.get("properties") or {}
    for c in props.get("privateEndpointConnections") or []:
        endpoint = ((c.get("properties") or {}).get("privateEndpoint") or {}).get("id", "")
        parts = endpoint.split("/")
        group = f"{parts[2][:8]}… / {parts[4]}" if len(parts) > 4 else "?"
        pic.links.append(
            {"endpoint": parts[-1] or c.get("name", ""), "group": group, "state": status_of(c)}
        )
    for ref in props.get("loadBalancerFrontendIpConfigurations") or []:
        fid = ref.get("id", "")
        lb_id = fid.split("/frontendIPConfigurations/")[0]
        try:
            lb = await arm.get(lb_id)
        except ArmError as exc:
            pic.errors.append(exc)
            continue
        lb_props = lb.get("properties") or {}
        frontend: dict[str, Any] = next(
            (
                f
                for f in lb_props.get("frontendIPConfigurations") or []
                if f["id"].lower() == fid.lower()
            ),
            {},
        )
        address = (frontend.get("properties") or {}).get("privateIPAddress", "")
        pic.frontends.append(
            {"id": fid, "name": frontend.get("name", fid.rsplit("/", 1)[-1]), "address": address}
        )
        for rule in lb_props.get("loadBalancingRules") or []:
            rule_fe = ((rule.get("properties") or {}).get("frontendIPConfiguration") or {}).get(
                "id", ""
            )
            if rule_fe.lower() != fid.lower():
                continue
            try:
                health = await arm.request("POST", f"{rule['id']}/health")
            except ArmError as exc:
                pic.errors.append(exc)
                health = {}
            for b in (health or {}).get("loadBalancerBackendAddresses") or []:
                ip = b.get("ipAddress", "")
                if any(x["ip"] == ip and x["frontend"] == fid for x in pic.backends):
                    continue
                pic.backends.append(
                    {
                        "frontend": fid,
                        "ip": ip,
                        "state": b.get("state") or "Unknown",
                        "reason": b.get("reason", ""),
                    }
                )
    return pic


def _box(x: int, y: int, label: str, sub: str, css: str, box_id: str) -> str:
    return (
        f'<g class="node {css}" id="{escape(box_id)}"><rect x="{x}" y="{y}" width="{BOX_W}" '
        f'height="{BOX_H}" rx="6"/><text x="{x + 8}" y="{y + 19}">{escape(label[:28])}</text>'
        f'<text x="{x + 8}" y="{y + 37}" class="sub">{escape(sub[:30])}</text></g>'
    )


def _line(x1: int, y1: int, x2: int, y2: int, css: str) -> str:
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="edge {css}"/>'


def draw(pic: Picture) -> str:
    """The SVG of a picture, with a text summary as its title (screen readers)."""
    rows = max(len(pic.links), len(pic.frontends), len(pic.backends), 1)
    height = 40 + rows * ROW
    mid = lambda i: 30 + i * ROW + BOX_H // 2  # noqa: E731 - the y of row i's centre
    up = sum(1 for b in pic.backends if b["state"] == "Up")
    summary = (
        f"{len(pic.links)} connection(s) to {pic.service.get('name', '')}, "
        f"{len(pic.frontends)} frontend(s), {len(pic.backends)} backend(s), {up} up"
    )
    out = [
        f'<svg class="topology" viewBox="0 0 910 {height}" role="img" '
        f'aria-labelledby="topology-title"><title id="topology-title">{escape(summary)}</title>'
    ]
    service_row = (rows - 1) / 2
    sy = int(30 + service_row * ROW)
    for i, link in enumerate(pic.links):
        css = STATE_CLASS.get(link["state"].lower(), "bad")
        out.append(_line(COLUMNS[0] + BOX_W, mid(i), COLUMNS[1], sy + BOX_H // 2, css))
        out.append(
            _box(
                COLUMNS[0],
                30 + i * ROW,
                link["endpoint"],
                f"{link['group']} · {link['state']}",
                css,
                f"link-{link['endpoint']}",
            )
        )
    out.append(
        _box(COLUMNS[1], sy, pic.service.get("name", ""), "private link service", "svc", "service")
    )
    for i, fe in enumerate(pic.frontends):
        out.append(_line(COLUMNS[1] + BOX_W, sy + BOX_H // 2, COLUMNS[2], mid(i), "plain"))
        out.append(
            _box(
                COLUMNS[2],
                30 + i * ROW,
                f"frontend {fe['name']}",
                fe["address"],
                "fe",
                f"fe-{fe['name']}",
            )
        )
    for i, b in enumerate(pic.backends):
        css = {"Up": "ok", "Down": "bad"}.get(b["state"], "unknown")
        fi = next((k for k, fe in enumerate(pic.frontends) if fe["id"] == b["frontend"]), 0)
        out.append(_line(COLUMNS[2] + BOX_W, mid(fi), COLUMNS[3], mid(i), css))
        out.append(
            _box(
                COLUMNS[3], 30 + i * ROW, b["ip"], f"probe: {b['state']}", css, f"backend-{b['ip']}"
            )
        )
    out.append("</svg>")
    return "".join(out)


def add_pages(router: APIRouter, portal: Portal) -> None:
    """`/portal/topology` and its drawing, `/portal/topology.svg`."""

    @router.get("/portal/topology", response_class=HTMLResponse)
    async def topology(request: Request) -> Response:
        """The page: the drawing now, and the script that fetches it again."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        service_id = request.query_params.get("id", "")
        try:
            pic = await picture(portal.arm_for(request, session), service_id)
        except ArmError as exc:
            return portal.error(request, exc)
        return portal.page(
            "topology.html",
            request,
            service=pic.service,
            drawing=Markup(draw(pic)),
            errors=pic.errors,
            refresh=REFRESH_SECONDS,
        )

    @router.get("/portal/topology.svg")
    async def drawing(request: Request) -> Response:
        """The drawing alone (SVG), for the page's refresh."""
        session = portal.session_of(request)
        if session is None:
            return Response(status_code=401)
        try:
            pic = await picture(
                portal.arm_for(request, session), request.query_params.get("id", "")
            )
        except ArmError as exc:
            return Response(f"{exc.code}: {exc.message}", status_code=exc.status)
        return Response(draw(pic), media_type="image/svg+xml", headers=PAGE_HEADERS)
