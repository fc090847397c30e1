"""ARM request/response mechanics shared by every resource router.

api-version checks, the wire base model, body parsing into wire models, long-running
operation responses (Azure-AsyncOperation / Location), etag preconditions, paging.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticSerializationError, to_json

from privatelink.api import limits
from privatelink.core import errors
from privatelink.core.ids import ResourceId, is_guid
from privatelink.core.ip_configuration import IpConfiguration, check_allocation_method
from privatelink.core.resource import Resource, StateView, check_resource_id
from privatelink.store.repository import Operation

LATEST_API_VERSION = "2026-03-01"
_DATED = re.compile(r"(\d{4})-(\d{2})-(\d{2})(-preview)?")
_LONGEST_API_VERSION = len("2000-01-01-preview")
OLDEST_API_VERSION = "2015-05-01"
JSON = "application/json; charset=utf-8"
# While an operation runs, clients wait Retry-After seconds before polling again (else
# their own interval: 30 s in az). Changes normally finish before the answer is sent.
POLL_HINT = {"Retry-After": "1"}

M = TypeVar("M", bound=BaseModel)


class ArmJSONResponse(JSONResponse):
    """A JSON response that renders whatever is stored.

    Compact JSON, non-ASCII text as UTF-8: what Starlette's `JSONResponse` writes, built
    by pydantic-core's serializer (a third of the time of `json.dumps` for a resource;
    an infinite or NaN number, which no request can store, becomes `null` rather than a
    failed response). Should a stored string not be encodable (a lone surrogate written
    before requests were checked), the body falls back to ASCII with `\\u` escapes, the
    same JSON the client sent, instead of failing the read.
    """

    def render(self, content: Any) -> bytes:
        try:
            return to_json(content, inf_nan_mode="null")
        except PydanticSerializationError:
            return json.dumps(
                content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
            ).encode("ascii")


class Wire(BaseModel):
    """Base of ARM wire models: camelCase aliases, unknown fields ignored on input."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SubResource(Wire):
    """A reference: `{"id": ...}`."""

    id: str | None = None


class ChildWire(Wire):
    """What every resource and child resource has on the wire."""

    id: str | None = None
    name: str | None = None
    type: str | None = None
    etag: str | None = None


class TrackedWire(ChildWire):
    """A top-level (tracked) resource."""

    location: str | None = None
    tags: dict[str, str] | None = None


class IpConfigurationProperties(Wire):
    """The private-IP part shared by NIC, NAT and frontend IP configurations."""

    private_ip_address: str | None = Field(default=None, alias="privateIPAddress")
    private_ip_allocation_method: str | None = Field(
        default=None, alias="privateIPAllocationMethod"
    )
    private_ip_address_version: str | None = Field(default=None, alias="privateIPAddressVersion")
    subnet: SubResource | None = None
    primary: bool | None = None
    provisioning_state: str | None = None


def ip_configuration_fields(
    name: str, props: IpConfigurationProperties, where: str
) -> dict[str, Any]:
    """Core IpConfiguration fields from wire properties (a subnet is required)."""
    if props.subnet is None or not props.subnet.id:
        raise errors.InvalidRequestContent(f"{where}: subnet.id is required.")
    method = check_allocation_method(
        props.private_ip_allocation_method or ("Static" if props.private_ip_address else "Dynamic"),
        where,
    )
    return {
        "name": name,
        "subnet_id": props.subnet.id,
        "private_ip": props.private_ip_address if method == "Static" else None,
        "allocation": method,
        "ip_version": props.private_ip_address_version or "IPv4",
        "primary": props.primary,
    }


def ip_configuration_wire(config: IpConfiguration, state: str) -> dict[str, Any]:
    """Wire properties of a core IpConfiguration (for the response models)."""
    return {
        "private_ip_address": config.private_ip,
        "private_ip_allocation_method": config.allocation,
        "private_ip_address_version": config.ip_version,
        "subnet": SubResource(id=config.subnet_id),
        "provisioning_state": state,
    }


def check_api_version(request: Request) -> str:
    """The request's api-version; a missing, repeated or unknown one is a 400."""
    given = request.query_params.getlist("api-version")
    if len(given) > 1:
        raise MultipleApiVersions(values=", ".join(given))
    value = given[0] if given else None
    if not value:
        raise MissingApiVersion()
    if not valid_api_version(value):
        raise InvalidApiVersion(value=value)
    return value


@lru_cache(maxsize=256)  # asked on every request; a longer value is refused below
def valid_api_version(value: str) -> bool:
    """True for a dated version (a real calendar date, optionally `-preview`) we serve."""
    if len(value) > _LONGEST_API_VERSION or _DATED.fullmatch(value) is None:
        return False
    try:
        date.fromisoformat(value[:10])
    except ValueError:
        return False
    return OLDEST_API_VERSION <= value[:10] <= LATEST_API_VERSION


class MissingApiVersion(errors.BadRequest):
    code = "MissingApiVersionParameter"
    template = "The api-version query parameter (?api-version=) is required for all requests."


class InvalidApiVersion(errors.BadRequest):
    code = "InvalidApiVersionParameter"
    echo_limit = errors.MAX_ECHO
    template = (
        "The api-version '{value}' is invalid. Supported: dated versions from "
        f"{OLDEST_API_VERSION} to {LATEST_API_VERSION}."
    )


class MultipleApiVersions(errors.BadRequest):
    code = "InvalidApiVersionParameter"
    echo_limit = errors.MAX_ECHO
    template = "The api-version query parameter may be given only once; got '{values}'."


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def parse_body(model: type[M], body: Any) -> M:
    """Validate a JSON body into a wire model; errors become one 400 with every problem.

    Every string must be encodable (no lone surrogate) and `tags`, where the model has
    them, must keep within ARM's limits (`limits.check_tags`).
    """
    if body is None:
        raise errors.InvalidRequestContent("The request body is missing.")
    if not isinstance(body, dict):
        raise errors.InvalidRequestContent("The request body must be a JSON object.")
    limits.check_text(body)
    try:
        wire = model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        raise errors.InvalidRequestContent(f"The request content is invalid: {problems}") from exc
    tags = getattr(wire, "tags", None)
    if isinstance(tags, dict):
        limits.check_tags(tags)
    return wire


def present(**fields: Any) -> dict[str, Any]:
    """The fields that are not None, in order (ARM leaves absent properties out): for
    renderers that build their JSON directly instead of dumping the wire models."""
    return {k: v for k, v in fields.items() if v is not None}


def tracked(resource: Resource, arm_type: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A tracked resource's envelope as `TrackedWire`'s dump has it: id, name, type,
    etag, location, tags (left out when None), properties."""
    return present(
        id=resource.id,
        name=resource.name,
        type=arm_type,
        etag=resource.etag,
        location=resource.location,
        tags=None if resource.tags is None else dict(resource.tags),
        properties=properties,
    )


def dump(model: BaseModel) -> dict[str, Any]:
    """A wire model as ARM JSON (camelCase, no nulls)."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def reject_unsupported(values: dict[str, Any]) -> None:
    """Raise UnsupportedProperty for any property set to something other than empty."""
    for name, value in values.items():
        if value not in (None, False, [], {}, ""):
            raise errors.UnsupportedProperty(
                name=name, why="it has no equivalent in privatelink; leave it unset."
            )


def resource_id(subscription: str, resource_group: str, *pairs: str) -> ResourceId:
    """Build and validate the id addressed by a URL."""
    rid = ResourceId.build(subscription, resource_group, *pairs)
    check_resource_id(rid)
    return rid


def check_subscription(subscription: str) -> None:
    """Validate a subscription id from a URL."""
    if not is_guid(subscription):
        raise errors.InvalidSubscriptionId(value=subscription)


def base_url(request: Request) -> str:
    """The server's base URL as the client reached it."""
    return str(request.base_url).rstrip("/")


def operation_urls(request: Request, op: Operation, location: str) -> tuple[str, str]:
    """(Azure-AsyncOperation, Location) URLs of an operation."""
    # Both were validated before the write; quoting keeps a header safe regardless.
    subscription = quote(op.resource_id.split("/")[2], safe="")  # "/subscriptions/<id>/..."
    version = request.query_params.get("api-version", LATEST_API_VERSION)
    root = (
        f"{base_url(request)}/subscriptions/{subscription}/providers/Microsoft.Network"
        f"/locations/{quote(location or 'global', safe='')}"
    )
    query = "?" + urlencode({"api-version": version})
    return f"{root}/operations/{op.id}{query}", f"{root}/operationResults/{op.id}{query}"


def put_response(
    request: Request, body: dict[str, Any], created: bool, op: Operation, location: str
) -> JSONResponse:
    """201 (created) or 200 (updated) with the resource and Azure-AsyncOperation."""
    async_url, _ = operation_urls(request, op, location)
    running = body.get("properties", {}).get("provisioningState") == "Updating"
    return ArmJSONResponse(
        body,
        status_code=201 if created else 200,
        headers={"Azure-AsyncOperation": async_url, **(POLL_HINT if running else {})},
        media_type=JSON,
    )


def delete_response(request: Request, op: Operation | None, location: str) -> Response:
    """202 with Location and Azure-AsyncOperation; 204 when there was nothing to delete."""
    if op is None:
        return Response(status_code=204)
    async_url, location_url = operation_urls(request, op, location)
    return Response(
        status_code=202,
        headers={
            "Azure-AsyncOperation": async_url,
            "Location": location_url,
            **(POLL_HINT if op.status == "InProgress" else {}),
        },
    )


def check_preconditions(request: Request, current: Resource | None) -> None:
    """If-Match / If-None-Match against the current etag (412 PreconditionFailed)."""
    if_match = request.headers.get("if-match")
    if_none_match = request.headers.get("if-none-match")
    etag = current.etag if current else None
    if if_match is not None:
        wanted = [t.strip() for t in if_match.split(",")]
        if current is None or ("*" not in wanted and etag not in wanted):
            raise errors.PreconditionFailed(
                f"If-Match {if_match} does not match the current etag {etag or '(none)'}."
            )
    if if_none_match is not None:
        wanted = [t.strip() for t in if_none_match.split(",")]
        if current is not None and ("*" in wanted or etag in wanted):
            raise errors.PreconditionFailed(
                f"If-None-Match {if_none_match}: the resource exists with etag {etag}."
            )


def precondition_for(request: Request, resource_id: str) -> Callable[[StateView], None]:
    """A precondition callback for ControlPlane.change."""

    def check(view: StateView) -> None:
        check_preconditions(request, view.get(resource_id))

    return check


def page(request: Request, items: list[dict[str, Any]], next_token: str | None) -> JSONResponse:
    """A list response with a nextLink carrying api-version and the skip token."""
    body: dict[str, Any] = {"value": items}
    if next_token is not None:
        query = {"api-version": request.query_params.get("api-version", LATEST_API_VERSION)}
        query["$skipToken"] = next_token
        body["nextLink"] = f"{base_url(request)}{request.url.path}?{urlencode(query)}"
    return ArmJSONResponse(body, media_type=JSON)


def page_slice(
    request: Request,
    items: list[Any],
    size: int,
    render: Callable[[Any], dict[str, Any]] | None = None,
) -> JSONResponse:
    """Page an in-memory list (child collections) by offset; only the page is rendered."""
    token = skip_token(request)
    start = int(token) if token else 0
    chunk = items[start : start + size]
    if render is not None:
        chunk = [render(item) for item in chunk]
    more = start + size < len(items)
    return page(request, chunk, str(start + size) if more else None)


MAX_SKIP_TOKEN = 2**31 - 1


def skip_token(request: Request) -> str | None:
    """The $skipToken of a list request: a non-negative integer we handed out, or None."""
    token = request.query_params.get("$skipToken") or request.query_params.get("$skiptoken")
    if token is None:
        return None
    if not (token.isascii() and token.isdigit()) or int(token) > MAX_SKIP_TOKEN:
        raise errors.InvalidRequestContent(f"Invalid $skipToken '{token[:40]}'.")
    return token


def ok(body: dict[str, Any], status: int = 200) -> JSONResponse:
    """A JSON response."""
    return ArmJSONResponse(body, status_code=status, media_type=JSON)
