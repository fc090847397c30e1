"""Azure Monitor's metrics at the API edge: metricDefinitions and metrics of a resource.

- `GET {resourceUri}/providers/Microsoft.Insights/metricDefinitions`: the metrics the
  resource's type has (`core.metrics.DEFINITIONS`), with their units, aggregations,
  dimensions and the time grains the store keeps (`az monitor metrics list-definitions`).
- `GET {resourceUri}/providers/Microsoft.Insights/metrics`: `timespan`, `interval`,
  `metricnames`, `aggregation`, `$filter`, `top`, `orderby`, `resultType`,
  `metricnamespace` (`az monitor metrics list`, azure-mgmt-monitor, azure-monitor-query).

Both check their own api-versions (Azure Monitor's, not the network provider's), need the
resource to exist (404 otherwise) and are authorized like any ARM read: the action is
`Microsoft.Insights/metrics/read` or `Microsoft.Insights/metricDefinitions/read` at the
resource (Reader and Monitoring Reader hold them through `*/read`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from privatelink.api.arm import JSON
from privatelink.api.authorize import authorize
from privatelink.core import errors
from privatelink.core import metrics as m
from privatelink.core.resource import Resource
from privatelink.service import ControlPlane

# Azure Monitor's versions of these two operations (az 2.91 sends 2018-01-01,
# azure-mgmt-monitor 7 and azure-monitor-query 2024-02-01 or 2018-01-01).
API_VERSIONS = ("2018-01-01", "2019-07-01", "2021-05-01", "2023-10-01", "2024-02-01")
METRICS_TYPE = "Microsoft.Insights/metrics"


class MetricReader(Protocol):
    """What the routes need of the store (`store.metrics.SqlMetricStore` is one)."""

    retention_days: int

    @property
    def downsample_after(self) -> Any: ...

    def points(
        self, resource_key: str, metrics: list[str], start: datetime, end: datetime
    ) -> list[m.Point]: ...


class InvalidMonitorApiVersion(errors.BadRequest):
    code = "InvalidApiVersionParameter"
    template = (
        "The api-version '{value}' is invalid. The supported versions are "
        f"'{', '.join(API_VERSIONS)}'."
    )


class MissingMonitorApiVersion(errors.BadRequest):
    code = "MissingApiVersionParameter"
    template = "The api-version query parameter (?api-version=) is required for all requests."


class MetricsNeedAuthentication(errors.ArmError):
    status = 401
    code = "AuthenticationFailed"
    template = "Authentication failed: metrics are read under /subscriptions/... with a token."


async def require_principal(request: Request) -> None:
    """Refuse a request the gate did not authenticate (401)."""
    # The routes match any path ending in Microsoft.Insights/metrics; only /subscriptions
    # paths pass the gate that authenticates. Anything else (`//subscriptions/...`) is
    # refused here rather than served to nobody in particular.
    if getattr(request.state, "principal", None) is None:
        raise MetricsNeedAuthentication()


class MetricResourceNotFound(errors.NotFound):
    code = "ResourceNotFound"
    template = "The Resource '{id}' was not found."


def _check_version(request: Request) -> str:
    version = request.query_params.get("api-version")
    if not version:
        raise MissingMonitorApiVersion()
    if version not in API_VERSIONS:
        raise InvalidMonitorApiVersion(value=errors.clip(version, 40))
    return version


def resource_of(request: Request, resource_uri: str) -> Resource:
    """The stored resource a route's `{resource_uri}` names, or 404."""
    rid = "/" + resource_uri.strip("/")
    plane: ControlPlane = request.app.state.control_plane
    found = plane.read_with(lambda view: view.get(rid))
    if found is None:
        raise MetricResourceNotFound(id=rid)
    return found


def _type_of(resource: Resource) -> str:
    parts = resource.id.strip("/").split("/")
    at = len(parts) - 1 - [p.lower() for p in parts][::-1].index("providers")
    chain = parts[at + 1 :]
    return "/".join([chain[0], *chain[1::2]])


def _canonical_type(resource: Resource) -> str:
    wanted = _type_of(resource).lower()
    for name in (m.PLS_TYPE, m.PE_TYPE, m.LB_TYPE):
        if name.lower() == wanted:
            return name
    return _type_of(resource)


def _localizable(value: str, localized: str | None = None) -> dict[str, str]:
    return {"value": value, "localizedValue": value if localized is None else localized}


def definition_body(
    resource: Resource, definition: m.MetricDefinition, store: MetricReader
) -> dict[str, Any]:
    """One metric definition as Azure Monitor's MetricDefinition JSON."""
    fine_days = max(int(store.downsample_after.total_seconds() // m.DAY), 1)
    availabilities = [
        {
            "timeGrain": grain,
            "retention": m.retention_text(fine_days if seconds < m.HOUR else store.retention_days),
        }
        for grain, seconds in m.INTERVALS.items()
    ]
    namespace = _canonical_type(resource)
    return {
        "id": f"{resource.id}/providers/microsoft.insights/metricdefinitions/{definition.name}",
        "resourceId": resource.id,
        "namespace": namespace,
        "name": _localizable(definition.name, definition.display_name),
        "displayDescription": definition.description,
        "isDimensionRequired": False,
        "unit": definition.unit,
        "primaryAggregationType": definition.primary,
        "supportedAggregationTypes": list(m.SUPPORTED_AGGREGATIONS),
        "metricAvailabilities": availabilities,
        "dimensions": [_localizable(d) for d in definition.dimensions],
    }


def build_monitor_router(store: MetricReader, clock: Any = None) -> APIRouter:
    """The two routes, reading `store` (`clock()`: now, for tests)."""
    now = clock or (lambda: datetime.now(UTC))
    router = APIRouter(dependencies=[Depends(require_principal), Depends(authorize)])

    @router.get("/{resource_uri:path}/providers/Microsoft.Insights/metricDefinitions")
    def list_metric_definitions(request: Request, resource_uri: str) -> JSONResponse:
        """Azure Monitor's `MetricDefinitions_List` for one resource."""
        _check_version(request)
        resource = resource_of(request, resource_uri)
        resource_type = _canonical_type(resource)
        namespace = request.query_params.get("metricnamespace")
        found = m.definitions_for(resource_type)
        if namespace and namespace.lower() != resource_type.lower():
            found = ()
        body = {"value": [definition_body(resource, d, store) for d in found]}
        return JSONResponse(body, media_type=JSON)

    @router.get("/{resource_uri:path}/providers/Microsoft.Insights/metrics")
    def list_metrics(request: Request, resource_uri: str) -> JSONResponse:
        """Azure Monitor's `Metrics_List` for one resource."""
        _check_version(request)
        resource = resource_of(request, resource_uri)
        resource_type = _canonical_type(resource)
        q = request.query_params
        namespace = q.get("metricnamespace")
        if namespace and namespace.lower() != resource_type.lower():
            raise m.InvalidMetricQuery(
                why=f"metricnamespace '{errors.clip(namespace)}' is not the resource's "
                f"({resource_type}): it has no other metrics."
            )
        start, end = m.parse_timespan(q.get("timespan"), now())
        interval = m.parse_interval(q.get("interval"))
        wanted = m.pick_metrics(resource_type, q.get("metricnames"))
        metadata_only = (q.get("resultType") or "").lower() == "metadata"
        raw_top = q.get("top") or q.get("$top")
        try:
            top = int(raw_top) if raw_top else m.DEFAULT_TOP
        except ValueError as exc:
            raise m.InvalidMetricQuery(
                why=f"top '{errors.clip(raw_top or '')}' is not a number"
            ) from exc
        raw_filter = q.get("$filter") or q.get("filter")
        points = store.points(resource.key, [d.name for d in wanted], start, end)
        value = []
        cost = 0
        for definition in wanted:
            dim_filter = m.parse_filter(raw_filter, definition.dimensions)
            aggregations = m.parse_aggregations(q.get("aggregation"), definition.primary)
            orderby = m.parse_orderby(q.get("orderby"), definition.primary)
            series = m.query(
                points, definition, start, end, interval, aggregations, dim_filter, top, orderby
            )
            timeseries = []
            for s in series:
                entry: dict[str, Any] = {
                    "metadatavalues": [
                        {"name": _localizable(name), "value": v} for name, v in s.metadata
                    ]
                }
                if not metadata_only:
                    entry["data"] = [
                        {
                            "timeStamp": m.timestamp(b.ts),
                            **{a.lower(): v for a, v in b.values.items()},
                        }
                        for b in s.data
                    ]
                    cost += len(s.data)
                timeseries.append(entry)
            value.append(
                {
                    "id": f"{resource.id}/providers/{METRICS_TYPE}/{definition.name}",
                    "type": METRICS_TYPE,
                    "name": _localizable(definition.name, definition.display_name),
                    "displayDescription": definition.description,
                    "unit": definition.unit,
                    "timeseries": timeseries,
                    "errorCode": "Success",
                }
            )
        body: dict[str, Any] = {
            "cost": cost,
            "timespan": f"{m.timestamp(start.timestamp())}/{m.timestamp(end.timestamp())}",
            "value": value,
            "namespace": resource_type,
            "resourceregion": resource.location,
        }
        if not metadata_only:
            body["interval"] = m.interval_text(interval)
        return JSONResponse(body, media_type=JSON)

    return router
