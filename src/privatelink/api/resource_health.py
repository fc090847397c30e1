"""Azure Resource Health of a resource: where a service out of NAT ports says so.

`GET {resourceUri}/providers/Microsoft.ResourceHealth/availabilityStatuses/current` is how
Azure tells an owner that a resource works but not fully (`Degraded`) and why (`summary`).
A private link service whose new connections fail for want of NAT ports (the metrics
sampler finds a NAT IP near the ports it has for one destination while the kernel fails
to insert new flows: dataplane/metrics.py) is `Degraded`, with the NAT IP, its usage and
what to do; otherwise resources are `Available`, or `Unknown` while no data plane runs.
Authorized as any read (`Microsoft.ResourceHealth/availabilityStatuses/read`, in Reader).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from privatelink.api.arm import JSON
from privatelink.api.authorize import authorize
from privatelink.api.monitor import require_principal, resource_of
from privatelink.core import errors

API_VERSIONS = ("2015-01-01", "2017-07-01", "2018-07-01", "2020-05-01", "2022-10-01", "2025-05-01")
TYPE = "Microsoft.ResourceHealth/AvailabilityStatuses"


class InvalidHealthApiVersion(errors.BadRequest):
    code = "InvalidApiVersionParameter"
    template = (
        "The api-version '{value}' is invalid. The supported versions are "
        f"'{', '.join(API_VERSIONS)}'."
    )


def build_resource_health_router(
    degraded: Callable[[], Mapping[str, str]] | None,
) -> APIRouter:
    """The route; `degraded()`: resource key -> why it is degraded (None: no data plane,
    every state is Unknown)."""
    router = APIRouter(dependencies=[Depends(require_principal), Depends(authorize)])

    @router.get(
        "/{resource_uri:path}/providers/Microsoft.ResourceHealth/availabilityStatuses/current"
    )
    def get_availability_status(request: Request, resource_uri: str) -> JSONResponse:
        """Azure Resource Health's `AvailabilityStatuses_GetByResource`."""
        version = request.query_params.get("api-version") or ""
        if version not in API_VERSIONS:
            raise InvalidHealthApiVersion(value=errors.clip(version, 40))
        resource = resource_of(request, resource_uri)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if degraded is None:
            state, summary, reason = (
                "Unknown",
                "The data plane is off: nothing measures this resource.",
                "",
            )
        elif why := degraded().get(resource.key):
            state, summary, reason = "Degraded", why, "Customer Initiated"
        else:
            state, summary, reason = "Available", "There are no known problems.", ""
        body = {
            "id": f"{resource.id}/providers/Microsoft.ResourceHealth/availabilityStatuses/current",
            "name": "current",
            "type": TYPE,
            "location": resource.location,
            "properties": {
                "availabilityState": state,
                "title": state,
                "summary": summary,
                "reasonType": reason,
                "reasonChronicity": "Persistent" if state == "Degraded" else "",
                "occuredTime": now,  # sic: Azure's name (2020-05-01)
                "reportedTime": now,
            },
        }
        return JSONResponse(body, media_type=JSON)

    return router
