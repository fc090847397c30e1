"""The portal's metrics page of a service (`/portal/metrics?id=...&span=PT1H|P1D`): its
bytes in and out and NAT port usage, and its frontend's new connections (the load
balancer's SYNCount on the service's frontend address), from the Azure Monitor metrics
API (Microsoft.Insights/metrics) with the user's token, drawn as SVG on the server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from privatelink.portal.arm import ArmError
from privatelink.portal.charts import Chart, svg
from privatelink.portal.context import Portal

MONITOR_API = "2023-10-01"
#: Time spans offered, each with the interval its points have.
SPANS = {"PT1H": ("Last hour", "PT1M"), "P1D": ("Last day", "PT15M")}


def _points(reply: dict[str, Any], name: str, aggregation: str) -> list[tuple[datetime, float]]:
    """A metric's points summed over its time series (dimensions), by timestamp."""
    sums: dict[str, float] = {}
    for metric in reply.get("value") or []:
        if (metric.get("name") or {}).get("value") != name:
            continue
        for series in metric.get("timeseries") or []:
            for point in series.get("data") or []:
                stamp = point.get("timeStamp")
                if stamp:
                    sums[stamp] = sums.get(stamp, 0.0) + float(point.get(aggregation) or 0.0)
    return [(datetime.fromisoformat(t.replace("Z", "+00:00")), v) for t, v in sorted(sums.items())]


def add_pages(router: APIRouter, portal: Portal) -> None:
    """`/portal/metrics`."""

    @router.get("/portal/metrics", response_class=HTMLResponse)
    async def metrics(request: Request) -> Response:
        """A service's charts for the last hour or day."""
        session = portal.session_of(request)
        if session is None:
            return portal.sign_in_first(request)
        service_id = request.query_params.get("id", "")
        span = request.query_params.get("span", "PT1H")
        if span not in SPANS:
            span = "PT1H"
        interval = SPANS[span][1]
        arm = portal.arm_for(request, session)
        query = {"timespan": span, "interval": interval}
        try:
            service = await arm.get(service_id)
            usage = await arm.request(
                "GET",
                f"{service['id']}/providers/Microsoft.Insights/metrics",
                MONITOR_API,
                params=query
                | {
                    "metricnames": "PLSBytesIn,PLSBytesOut,PLSNatPortsUsage",
                    "aggregation": "Total,Average",
                },
            )
            frontends = (service.get("properties") or {}).get(
                "loadBalancerFrontendIpConfigurations"
            ) or []
            syns: list[tuple[datetime, float]] = []
            if frontends:
                lb_id = frontends[0]["id"].split("/frontendIPConfigurations/")[0]
                frontend = await arm.get(frontends[0]["id"])
                address = (frontend.get("properties") or {}).get("privateIPAddress", "")
                lb = await arm.request(
                    "GET",
                    f"{lb_id}/providers/Microsoft.Insights/metrics",
                    MONITOR_API,
                    params=query
                    | {
                        "metricnames": "SYNCount",
                        "aggregation": "Total",
                        "$filter": f"FrontendIPAddress eq '{address}'",
                    },
                )
                syns = _points(lb, "SYNCount", "total")
        except ArmError as exc:
            return portal.error(request, exc)
        charts = [
            Chart("Bytes in", "Count", _points(usage, "PLSBytesIn", "total")),
            Chart("Bytes out", "Count", _points(usage, "PLSBytesOut", "total")),
            Chart("NAT port usage", "Percent", _points(usage, "PLSNatPortsUsage", "average")),
            Chart("New connections", "Count", syns),
        ]
        drawn = [(c, Markup(svg(c, f"chart-{i}"))) for i, c in enumerate(charts)]
        return portal.page(
            "metrics.html", request, service=service, charts=drawn, span=span, spans=SPANS
        )
