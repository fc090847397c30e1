"""Long-running operation status: the URLs sent in Azure-AsyncOperation and Location."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from privatelink.api import arm, crud
from privatelink.api.deps import control_plane
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors
from privatelink.service import ControlPlane
from privatelink.store.repository import Operation

router = APIRouter(route_class=LeanRoute)
TERMINAL = ("Succeeded", "Failed", "Canceled")


class OperationNotFound(errors.NotFound):
    code = "OperationNotFound"
    template = "Operation '{id}' was not found."


def _find(plane: ControlPlane, subscription: str, operation_id: str) -> Operation:
    arm.check_subscription(subscription)
    op = plane.repo.get_operation(operation_id)
    if op is None or f"/subscriptions/{subscription.lower()}/" not in op.resource_id.lower():
        raise OperationNotFound(id=operation_id)
    return op


def status_body(op: Operation) -> dict[str, Any]:
    """The Azure-AsyncOperation body."""
    body: dict[str, Any] = {
        "id": op.id,
        "name": op.id,
        "status": op.status,
        "startTime": op.start_time,
    }
    if op.end_time:
        body["endTime"] = op.end_time
    if op.status == "Failed":
        body["error"] = {"code": op.error_code or "Failed", "message": op.error_message or ""}
    return body


@router.get(crud.SUB_PATH + "/locations/{location}/operations/{operation_id}")
def get_operation_status(
    subscription: str,
    location: str,
    operation_id: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """Azure-AsyncOperation polling target."""
    op = _find(plane, subscription, operation_id)
    response = arm.ok(status_body(op))
    if op.status not in TERMINAL:
        response.headers.update(arm.POLL_HINT)
    return response


@router.get(crud.SUB_PATH + "/locations/{location}/operationResults/{operation_id}")
def get_operation_result(
    subscription: str,
    location: str,
    operation_id: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """Location polling target: 202 while running, 204 when done, the error when failed."""
    op = _find(plane, subscription, operation_id)
    if op.status not in TERMINAL:
        return Response(status_code=202, headers=arm.POLL_HINT)
    if op.status == "Failed":
        return arm.ok({"error": {"code": op.error_code, "message": op.error_message}}, status=400)
    return Response(status_code=204)
