"""The five routes every tracked resource has: PUT, GET, DELETE, list by group, list all.

Each resource module supplies its wire model, `to_domain` and `render` for a registry
entry (which brings the model and the core workflows); this module wires them to ARM's
request/response conventions once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from privatelink.api import arm, reading
from privatelink.api.authorize import readable
from privatelink.api.deps import caller, control_plane, page_size
from privatelink.core.authorization import Access
from privatelink.core.registry import ResourceType
from privatelink.core.resource import Resource, StateView, require
from privatelink.service import ControlPlane, Workflow

GROUP_PATH = "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network"
SUB_PATH = "/subscriptions/{subscription}/providers/Microsoft.Network"


@dataclass(frozen=True)
class ResourceKind:
    """How one registered resource type maps between wire and core.

    The type itself (ARM type, model class, workflows) is its registry entry; a kind adds
    what only the wire knows. Kinds are assembled by `app.resource_kinds`, not registered
    on import.
    """

    entry: ResourceType[Any]
    wire: type[BaseModel]
    to_domain: Callable[[str, str, Any], Resource]
    render: Callable[[StateView, Any], dict[str, Any]]

    def __post_init__(self) -> None:
        entry = self.entry
        if entry.model is None or entry.create_or_update is None or entry.delete is None:
            raise ValueError(f"{entry.arm_type} has no model or workflows: it cannot be a kind")

    @property
    def segment(self) -> str:
        """The URL segment before a resource's name, e.g. "privateLinkServices"."""
        return self.entry.segment

    @property
    def arm_type(self) -> str:
        """The canonical ARM type, e.g. "Microsoft.Network/privateLinkServices"."""
        return self.entry.arm_type

    @property
    def cls(self) -> type[Resource]:
        """The model class."""
        assert self.entry.model is not None, f"{self.entry.arm_type} has no model"
        return self.entry.model

    @property
    def create_or_update(self) -> Workflow:
        """The PUT workflow."""
        assert self.entry.create_or_update is not None
        return self.entry.create_or_update

    @property
    def delete(self) -> Workflow:
        """The DELETE workflow."""
        assert self.entry.delete is not None
        return self.entry.delete


def put_resource(
    request: Request,
    plane: ControlPlane,
    who: Access,
    kind: ResourceKind,
    desired: Resource,
    location: str | None = None,
    verb: str = "put",
) -> Response:
    """A long-running PUT (or PATCH): run the kind's workflow, answer 201/200 with the
    resource and its operation. `location` names the operation's region (the resource's
    own by default)."""
    rid = desired.id

    def respond(view: StateView) -> tuple[dict[str, Any], str]:
        current = require(view, rid, kind.cls)
        return kind.render(view, current), current.location

    out = plane.change(
        who,
        rid,
        verb,
        kind.create_or_update,
        desired,
        precondition=arm.precondition_for(request, rid),
        render=respond,  # built before the commit: no "failed" for a stored change
    )
    body, own_location = out.rendered
    return arm.put_response(
        request, body, not out.existed and verb == "put", out.operation, location or own_location
    )


def delete_resource(
    request: Request,
    plane: ControlPlane,
    who: Access,
    rid: str,
    workflow: Workflow,
    location: str | None = None,
) -> Response:
    """A long-running DELETE: 202 with the operation, or 204 when there is nothing."""
    with plane.read() as view:
        current = view.get(rid)
    if current is None:
        arm.check_preconditions(request, None)
        return arm.delete_response(request, None, "")
    out = plane.change(
        who, rid, "delete", workflow, rid, precondition=arm.precondition_for(request, rid)
    )
    return arm.delete_response(request, out.operation, location or current.location)


def register(router: APIRouter, kind: ResourceKind) -> None:
    """Add the standard routes of `kind` to `router`."""
    path = f"{GROUP_PATH}/{kind.segment}"

    def put(
        request: Request,
        subscription: str,
        group: str,
        name: str,
        body: Any = Body(None),
        plane: ControlPlane = Depends(control_plane),
        who: Access = Depends(caller),
    ) -> Response:
        rid = str(arm.resource_id(subscription, group, kind.segment, name))
        desired = kind.to_domain(rid, name, arm.parse_body(kind.wire, body))
        return put_resource(request, plane, who, kind, desired)

    async def get(request: Request, subscription: str, group: str, name: str) -> Response:
        rid = str(arm.resource_id(subscription, group, kind.segment, name))
        plane: ControlPlane = request.app.state.control_plane  # not a dependency: cheaper
        body = await reading.read(
            plane, lambda view: kind.render(view, require(view, rid, kind.cls))
        )
        return arm.ok(body)

    def delete(
        request: Request,
        subscription: str,
        group: str,
        name: str,
        plane: ControlPlane = Depends(control_plane),
        who: Access = Depends(caller),
    ) -> Response:
        rid = str(arm.resource_id(subscription, group, kind.segment, name))
        return delete_resource(request, plane, who, rid, kind.delete)

    def listing(
        request: Request, plane: ControlPlane, subscription: str, group: str | None, size: int
    ) -> Response:
        arm.check_subscription(subscription)
        result = plane.repo.list(kind.arm_type, subscription, group, arm.skip_token(request), size)
        with plane.read() as view:
            items = [
                kind.render(view, x)
                for x in result.items
                if isinstance(x, kind.cls) and readable(request, x.id)
            ]
        return arm.page(request, items, result.next_token)

    def list_by_resource_group(
        request: Request,
        subscription: str,
        group: str,
        plane: ControlPlane = Depends(control_plane),
        size: int = Depends(page_size),
    ) -> Response:
        return listing(request, plane, subscription, group, size)

    def list_all(
        request: Request,
        subscription: str,
        plane: ControlPlane = Depends(control_plane),
        size: int = Depends(page_size),
    ) -> Response:
        return listing(request, plane, subscription, None, size)

    seg = kind.segment
    router.add_api_route(path + "/{name}", put, methods=["PUT"], name=f"{seg}_create_or_update")
    router.add_api_route(path + "/{name}", get, methods=["GET"], name=f"{seg}_get")
    router.add_api_route(path + "/{name}", delete, methods=["DELETE"], name=f"{seg}_delete")
    router.add_api_route(path, list_by_resource_group, methods=["GET"], name=f"{seg}_list")
    router.add_api_route(f"{SUB_PATH}/{seg}", list_all, methods=["GET"], name=f"{seg}_list_all")
