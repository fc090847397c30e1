"""Microsoft.Resources/deployments: ARM templates of the network resources we serve.

`az network lb create` deploys a generated template; users can deploy their own (and
compiled Bicep). Template-level problems (syntax, unknown function or resource type,
missing parameters) are a synchronous 400 `InvalidTemplate`; a resource the control
plane refuses fails the deployment (`DeploymentFailed`, with the resource's own ARM
error as detail), and resources deployed before it stay, as in ARM.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from privatelink.api import arm, crud, limits
from privatelink.api.deps import caller, control_plane
from privatelink.api.lean_route import LeanRoute
from privatelink.api.virtual_network import SubnetWire, render_subnet, subnet_from_wire
from privatelink.core import errors, registry
from privatelink.core import virtual_network as vnm
from privatelink.core.authorization import Access
from privatelink.core.ids import ResourceId, is_guid, valid_name, valid_resource_group
from privatelink.core.registry import ResourceType
from privatelink.core.resource import normalize_location
from privatelink.core.template import (
    Evaluator,
    InvalidTemplate,
    Planned,
    Scope,
    plan_resources,
    resolve_parameters,
)
from privatelink.service import ControlPlane
from privatelink.store.repository import utc_now

router = APIRouter(route_class=LeanRoute)
PATH = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Resources/deployments"
)
TYPE = "Microsoft.Resources/deployments"
SUBNETS = "microsoft.network/virtualnetworks/subnets"


class DeploymentNotFound(errors.NotFound):
    code = "DeploymentNotFound"
    template = "Deployment '{name}' could not be found."


def _deployment_id(subscription: str, group: str, name: str) -> str:
    if not is_guid(subscription):
        raise errors.InvalidSubscriptionId(value=subscription)
    if not valid_resource_group(group):
        raise errors.InvalidResourceGroupName(name=group)
    if not valid_name(name) or len(name) > 64:
        raise errors.InvalidResourceName(name=name)
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{TYPE}/{name}"


def _properties(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise InvalidTemplate("The deployment needs 'properties' with 'template' and 'mode'.")
    props = body["properties"]
    if "templateLink" in props or "parametersLink" in props:
        raise InvalidTemplate(
            "templateLink/parametersLink need the network; send the template inline."
        )
    template = props.get("template")
    if not isinstance(template, dict):
        raise InvalidTemplate("properties.template must be a template object.")
    _check_sections(template)
    mode = str(props.get("mode", "Incremental"))
    if mode.lower() != "incremental":
        raise InvalidTemplate(f"Deployment mode '{mode}' is not supported; use Incremental.")
    parameters = props.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidTemplate("properties.parameters must be an object.")
    return {"template": template, "parameters": parameters, "mode": "Incremental"}


def _check_sections(template: dict[str, Any]) -> None:
    """The template's sections have ARM's JSON types, before anything is deployed (else a
    `false` output, found by schemathesis, was a 500 after the resources were made)."""
    for section, kinds in (("parameters", dict), ("variables", dict), ("outputs", dict)):
        value = template.get(section)
        if value is not None and not isinstance(value, kinds):
            raise InvalidTemplate(f"The template's '{section}' must be an object.")
    if template.get("resources") is not None and not isinstance(template["resources"], list | dict):
        raise InvalidTemplate("The template's 'resources' must be an array.")
    for section in ("parameters", "outputs"):
        for name, item in (template.get(section) or {}).items():
            if not isinstance(item, dict) and (item is not None or section == "outputs"):
                raise InvalidTemplate(f"The template's {section} '{name[:80]}' must be an object.")


Kinds = Mapping[ResourceType[Any], crud.ResourceKind]


def resource_kinds(request: Request) -> Kinds:
    """The kinds the app serves, by registry entry (assembled by `app.resource_kinds`)."""
    kinds: Kinds = request.app.state.kinds
    return kinds


class Deployer:
    """Deploys one template's resources through the control plane, in dependsOn order."""

    def __init__(self, plane: ControlPlane, who: Access, scope: Scope, kinds: Kinds) -> None:
        self.plane = plane
        self.who = who
        self.scope = scope
        self.kinds = kinds
        self.by_name: dict[str, Planned] = {}

    def kind(self, arm_type: str) -> crud.ResourceKind | None:
        """The kind of an ARM type (any casing), or None."""
        entry = registry.get(arm_type)
        return self.kinds.get(entry) if entry is not None else None

    def reference(self, target: str, full: bool) -> dict[str, Any]:
        planned = self.by_name.get(target.lower())
        rid = planned.resource_id if planned else target
        body = self.render(rid)
        return body if full else body.get("properties", {})

    def render(self, resource_id: str) -> dict[str, Any]:
        try:
            parsed = ResourceId.parse(resource_id)
        except errors.ArmError as exc:
            raise InvalidTemplate(
                f"reference('{resource_id}'): not a resource of this template."
            ) from exc
        with self.plane.read() as view:
            if parsed.is_type("virtualNetworks", "subnets"):
                ref = vnm.get_subnet(view, str(parsed))
                return render_subnet(view, ref.vnet, ref.subnet)
            kind = self.kind(parsed.type)
            resource = view.get(str(parsed))
            if kind is None or resource is None:
                raise InvalidTemplate(f"reference('{resource_id}'): the resource does not exist.")
            return kind.render(view, resource)

    def deploy(self, planned: Planned, ev: Evaluator) -> None:
        raw = planned.raw
        body = {k: ev.value(raw[k]) for k in ("location", "tags", "sku", "properties") if k in raw}
        body.setdefault("location", self.scope.location)
        names = planned.name.split("/")
        if planned.type.lower() == SUBNETS:
            vnet_id = str(ResourceId.parse(planned.resource_id).parent())
            subnet = subnet_from_wire(names[-1], arm.parse_body(SubnetWire, body).properties)
            self.plane.change(
                self.who, vnet_id, "put", vnm.create_or_update_subnet, planned.resource_id, subnet
            )
            return
        kind = self.kind(planned.type)
        assert kind is not None, f"no kind for {planned.type}"
        desired = kind.to_domain(planned.resource_id, names[-1], arm.parse_body(kind.wire, body))
        self.plane.change(self.who, planned.resource_id, "put", kind.create_or_update, desired)


def _record(
    deployment_id: str,
    name: str,
    spec: dict[str, Any],
    started: float,
    deployed: list[Planned],
    outputs: dict[str, Any],
    error: dict[str, Any] | None,
    operation_id: str,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": deployment_id,
        "name": name,
        "type": TYPE,
        "properties": {
            "templateHash": str(abs(hash(str(spec["template"]))) % 10**19),
            "parameters": {k: {"type": "String", "value": v} for k, v in parameters.items()},
            "mode": spec["mode"],
            "provisioningState": "Failed" if error else "Succeeded",
            "timestamp": utc_now(),
            "duration": f"PT{time.monotonic() - started:.3f}S",
            "correlationId": str(uuid.uuid4()),
            "providers": [],
            "dependencies": [
                {
                    "id": p.resource_id,
                    "resourceType": p.type,
                    "resourceName": p.name,
                    "dependsOn": [{"id": d} for d in p.depends_on],
                }
                for p in deployed
                if p.depends_on
            ],
            "outputs": outputs,
            "outputResources": [{"id": p.resource_id} for p in deployed],
            **({"error": error} if error else {}),
        },
        "_operation": operation_id,
        "_operations": [
            {
                "id": f"{deployment_id}/operations/{i}",
                "operationId": str(i),
                "properties": {
                    "provisioningOperation": "Create",
                    "provisioningState": "Succeeded",
                    "timestamp": utc_now(),
                    "statusCode": "OK",
                    "targetResource": {
                        "id": p.resource_id,
                        "resourceType": p.type,
                        "resourceName": p.name,
                    },
                },
            }
            for i, p in enumerate(deployed)
        ],
    }


def _public(plane: ControlPlane, record: dict[str, Any]) -> dict[str, Any]:
    """A stored record as ARM shows it (state follows the operation with a data plane)."""
    body = {k: v for k, v in record.items() if not k.startswith("_")}
    op = plane.repo.get_operation(str(record.get("_operation", "")))
    if op is not None and op.status == "InProgress":
        body = dict(body, properties=dict(body["properties"], provisioningState="Running"))
    return body


def _location(plane: ControlPlane, subscription: str, group: str, body: Any) -> str:
    if isinstance(body, dict) and body.get("location"):
        return normalize_location(str(body["location"]))
    record = plane.repo.get_resource_group(subscription, group)
    return str(record["location"]) if record else "eastus"


def _prepare(
    plane: ControlPlane,
    who: Access,
    subscription: str,
    group: str,
    name: str,
    body: Any,
    kinds: Kinds,
    reference: Any = None,
) -> tuple[str, dict[str, Any], Scope, dict[str, Any], Evaluator, list[Planned], Deployer]:
    """Everything checked before a template runs: a problem here is a synchronous 400."""
    deployment_id = _deployment_id(subscription, group, name)
    limits.check_text(body)  # the template is stored and echoed back whole
    spec = _properties(body)
    location = _location(plane, subscription, group, body)
    tenant = who.principal.tenant_id if who.principal is not None else ""
    scope = Scope(subscription, group, location, name, tenant)
    parameters = resolve_parameters(spec["template"], spec["parameters"], scope)
    deployer = Deployer(plane, who, scope, kinds)
    variables = spec["template"].get("variables") or {}
    ev = Evaluator(scope, parameters, variables, deployer.reference if reference else None)
    order = plan_resources(spec["template"], ev)
    for planned in order:
        # As ARM's preflight: every resource's own write is checked before any is made.
        entry = registry.get(planned.type)
        if entry is not None:
            who.require(entry.actions.write, planned.resource_id)
    deployer.by_name = {p.symbol.lower(): p for p in order} | {p.name.lower(): p for p in order}
    return deployment_id, spec, scope, parameters, ev, order, deployer


@router.put(PATH + "/{name}")
def create_or_update(
    request: Request,
    subscription: str,
    group: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
    kinds: Kinds = Depends(resource_kinds),
) -> Response:
    """Deploy a template (synchronously; the operation ends when the kernel caught up)."""
    deployment_id, spec, scope, parameters, ev, order, deployer = _prepare(
        plane, who, subscription, group, name, body, kinds, reference=True
    )
    existed = plane.repo.get_deployment(deployment_id) is not None
    started = time.monotonic()
    deployed: list[Planned] = []
    error: dict[str, Any] | None = None
    for planned in order:
        try:
            deployer.deploy(planned, ev)
            deployed.append(planned)
        except errors.StoreFault:
            raise  # the server failed, not the template: 503/507, and a retry redeploys
        except errors.ArmError as exc:
            error = {
                "code": "DeploymentFailed",
                "message": (
                    f"At least one resource deployment operation failed: {planned.type} "
                    f"'{planned.name}': ({exc.code}) {exc.message}"
                ),
                "details": [
                    {"code": exc.code, "message": exc.message, "target": planned.resource_id}
                ],
            }
            break
    outputs: dict[str, Any] = {}
    if error is None:
        try:
            for key, out in (spec["template"].get("outputs") or {}).items():
                outputs[key] = {
                    "type": out.get("type", "String"),
                    "value": ev.value(out.get("value")),
                }
        except errors.StoreFault:
            raise
        except errors.ArmError as exc:
            error = {"code": exc.code, "message": exc.message}
    op = plane.record_operation(
        deployment_id, "put", (error["code"], error["message"]) if error else None
    )
    record = _record(
        deployment_id, name, spec, started, deployed, outputs, error, op.id, parameters
    )
    plane.repo.put_deployment(deployment_id, record)
    return arm.put_response(request, _public(plane, record), not existed, op, scope.location)


@router.post(PATH + "/{name}/validate")
def validate(
    subscription: str,
    group: str,
    name: str,
    body: Any = Body(None),
    plane: ControlPlane = Depends(control_plane),
    who: Access = Depends(caller),
    kinds: Kinds = Depends(resource_kinds),
) -> Response:
    """Check a template without deploying it."""
    deployment_id, spec, _scope, _params, _ev, order, _deployer = _prepare(
        plane, who, subscription, group, name, body, kinds
    )
    return arm.ok(
        {
            "id": deployment_id,
            "name": name,
            "type": TYPE,
            "properties": {
                "provisioningState": "Succeeded",
                "mode": spec["mode"],
                "validatedResources": [{"id": p.resource_id} for p in order],
            },
        }
    )


@router.get(PATH + "/{name}")
def get(
    subscription: str, group: str, name: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """A deployment."""
    record = plane.repo.get_deployment(_deployment_id(subscription, group, name))
    if record is None:
        raise DeploymentNotFound(name=name)
    return arm.ok(_public(plane, record))


@router.get(PATH + "/{name}/operations")
@router.get("/subscriptions/{subscription}/resourceGroups/{group}/deployments/{name}/operations")
def list_operations(
    subscription: str, group: str, name: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """What a deployment did, one operation per resource."""
    record = plane.repo.get_deployment(_deployment_id(subscription, group, name))
    if record is None:
        raise DeploymentNotFound(name=name)
    return arm.ok({"value": record.get("_operations", [])})


@router.get(PATH)
def list_deployments(
    subscription: str, group: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """Deployments of a resource group."""
    _deployment_id(subscription, group, "x")
    records = plane.repo.list_deployments(subscription, group)
    return arm.ok({"value": [_public(plane, r) for r in records]})


@router.delete(PATH + "/{name}")
def delete(
    subscription: str, group: str, name: str, plane: ControlPlane = Depends(control_plane)
) -> Response:
    """Forget a deployment (its resources stay)."""
    deployment_id = _deployment_id(subscription, group, name)
    if plane.repo.get_deployment(deployment_id) is None:
        return Response(status_code=204)
    plane.repo.delete_deployment(deployment_id)
    return Response(status_code=200)
