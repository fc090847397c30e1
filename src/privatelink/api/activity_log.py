"""The activity log at the API edge: Azure Monitor's list route and the recorder middleware.

- `router`: `GET /subscriptions/{s}/providers/Microsoft.Insights/eventtypes/management/values`
  (api-version 2015-04-01, `$filter`, `$select`, `$skipToken`), what `az monitor activity-log
  list` and azure-mgmt-monitor's `activity_logs.list` call. Events are newest first, as in
  Azure; `nextLink` carries the filter, the select and the skip token.
- `ActivityRecorder`: ASGI middleware inside the authentication gate that records every PUT,
  PATCH, POST and DELETE on /subscriptions/... once its status is known, just before the
  last byte of the response goes out (so a client that reads the log right after sees its
  own operation). Unauthenticated requests (no principal) are not recorded, as in Azure;
  nor are paths `describe` does not know. Every /subscriptions response carries
  `x-ms-correlation-request-id`: the client's own if it sent one, else a new GUID. For the
  few operations whose events carry bodies (role assignments, see `core/activity.py`) it
  keeps the request or response body too, up to `MAX_BODY_CHARS`.

The rules of which events a request gives live in `core/activity.py`.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders

from privatelink.api.arm import JSON, base_url, check_subscription
from privatelink.core import errors
from privatelink.core.activity import (
    MAX_BODY_CHARS,
    WRITE_METHODS,
    ActivityEvent,
    RequestFacts,
    keeps_request_body,
    keeps_response_body,
    parse_filter,
    parse_select,
    request_events,
    status_localized,
)
from privatelink.core.ids import is_guid

log = logging.getLogger("privatelink.api.activity_log")

API_VERSIONS = ("2015-04-01",)
EVENT_TYPE = "management"
CORRELATION_HEADER = "x-ms-correlation-request-id"
_CORRELATION_KEY = CORRELATION_HEADER.encode("latin-1")
CLIENT_REQUEST_HEADER = "x-ms-client-request-id"
DEFAULT_PAGE_SIZE = 100
MAX_ERROR_BODY = 4096
_HEADER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_NET_EPOCH_TICKS = 621355968000000000  # .NET ticks (100 ns) at 1970-01-01
# Responses that report a store fault: ARM code -> status.
_STORE_FAULTS = {e.code: e.status for e in (errors.StoreUnavailable, errors.InsufficientStorage)}


class ActivityStore(Protocol):
    """What the route and the recorder need of the store (`SqlActivityLog` is one)."""

    clock: Callable[[], datetime]

    @property
    def retention(self) -> timedelta: ...

    def record(self, *events: ActivityEvent) -> None: ...

    def query(
        self,
        subscription: str,
        start: datetime,
        end: datetime,
        resource_id: str | None = None,
        resource_group: str | None = None,
        correlation_id: str | None = None,
        caller: str | None = None,
        resource_provider: str | None = None,
        status: str | None = None,
        levels: Iterable[str] | None = None,
        top: int = DEFAULT_PAGE_SIZE,
        token: str | None = None,
    ) -> tuple[list[ActivityEvent], str | None]: ...


class RequestActionLike(Protocol):
    """The part of `core.actions.RequestAction` the recorder reads."""

    @property
    def action(self) -> str: ...

    @property
    def scope(self) -> str: ...


Describe = Callable[[str, str], RequestActionLike | None]


class InvalidActivityLogApiVersion(errors.BadRequest):
    code = "InvalidApiVersionParameter"
    template = (
        "The api-version '{value}' is invalid. The supported versions are "
        f"'{', '.join(API_VERSIONS)}'."
    )


class MissingActivityLogApiVersion(errors.BadRequest):
    code = "MissingApiVersionParameter"
    template = "The api-version query parameter (?api-version=) is required for all requests."


class EventTypeNotFound(errors.NotFound):
    code = "InvalidResourceType"
    template = "The event type '{name}' was not found; the activity log serves 'management'."


# --- the wire shape -----------------------------------------------------------------------


def _timestamp(when: datetime) -> str:
    # Azure writes seven fraction digits (.NET ticks); we have six.
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _ticks(when: datetime) -> int:
    delta = when - datetime(1970, 1, 1, tzinfo=when.tzinfo)
    return _NET_EPOCH_TICKS + (delta // timedelta(microseconds=1)) * 10


def _localizable(value: str, localized: str | None = None) -> dict[str, str]:
    return {"value": value, "localizedValue": value if localized is None else localized}


def event_data(event: ActivityEvent) -> dict[str, Any]:
    """An event as Azure's EventData JSON."""
    http_request: dict[str, str] = {"method": event.method}
    if event.client_request_id:
        http_request["clientRequestId"] = event.client_request_id
    if event.client_ip:
        http_request["clientIpAddress"] = event.client_ip
    sub_status = (
        _localizable(event.sub_status, status_localized(event.http_status))
        if event.sub_status and event.http_status is not None
        else _localizable("")
    )
    return {
        "authorization": {"action": event.operation_name, "scope": event.resource_id},
        "caller": event.caller,
        "claims": {
            "http://schemas.microsoft.com/identity/claims/tenantid": event.tenant_id,
            "http://schemas.microsoft.com/identity/claims/objectidentifier": event.caller,
            "appid": event.caller_app_id,
        },
        "correlationId": event.correlation_id,
        "description": event.description,
        "eventDataId": event.event_data_id,
        "eventName": _localizable(
            event.event_name,
            "Begin request" if event.event_name == "BeginRequest" else "End request",
        ),
        "category": _localizable("Administrative"),
        "httpRequest": http_request,
        "id": f"{event.resource_id}/events/{event.event_data_id}/ticks/{_ticks(event.timestamp)}",
        "level": event.level,
        "resourceGroupName": event.resource_group,
        "resourceProviderName": _localizable(event.resource_provider),
        "resourceId": event.resource_id,
        "resourceType": _localizable(event.resource_type),
        "operationId": event.operation_id,
        "operationName": _localizable(event.operation_name),
        "properties": dict(event.properties),
        "status": _localizable(event.status),
        "subStatus": sub_status,
        "eventTimestamp": _timestamp(event.timestamp),
        "submissionTimestamp": _timestamp(event.submission_timestamp),
        "subscriptionId": event.subscription_id,
        "tenantId": event.tenant_id,
    }


# --- the route ----------------------------------------------------------------------------

router = APIRouter()


def _store(request: Request) -> ActivityStore:
    store: ActivityStore = request.app.state.activity_log
    return store


def _skip_token(request: Request) -> str | None:
    token = request.query_params.get("$skipToken") or request.query_params.get("$skiptoken")
    return token or None


@router.get(
    "/subscriptions/{subscription}/providers/Microsoft.Insights/eventtypes/{event_type}/values"
)
def list_activity_log(request: Request, subscription: str, event_type: str) -> JSONResponse:
    """Azure Monitor's `ActivityLogs_List`: one page of the subscription's events."""
    version = request.query_params.get("api-version")
    if not version:
        raise MissingActivityLogApiVersion()
    if version not in API_VERSIONS:
        raise InvalidActivityLogApiVersion(value=version[:40])
    check_subscription(subscription)
    if event_type.lower() != EVENT_TYPE:
        raise EventTypeNotFound(name=event_type[:80])
    store = _store(request)
    raw_filter = request.query_params.get("$filter")
    raw_select = request.query_params.get("$select")
    query = parse_filter(raw_filter, store.clock(), store.retention)
    fields = parse_select(raw_select)
    if query.empty:
        return JSONResponse({"value": []}, media_type=JSON)
    size = int(getattr(request.app.state, "page_size", DEFAULT_PAGE_SIZE))
    events, next_token = store.query(
        subscription,
        query.start,
        query.end,
        resource_id=query.resource_id,
        resource_group=query.resource_group,
        correlation_id=query.correlation_id,
        caller=query.caller,
        resource_provider=query.resource_provider,
        status=query.status,
        levels=query.levels,
        top=size,
        token=_skip_token(request),
    )
    items = [event_data(event) for event in events]
    if fields is not None:
        items = [{name: item[name] for name in fields} for item in items]
    body: dict[str, Any] = {"value": items}
    if next_token is not None:
        params = {"api-version": version, "$filter": raw_filter or ""}
        if raw_select:
            params["$select"] = raw_select
        params["$skipToken"] = next_token
        body["nextLink"] = f"{base_url(request)}{request.url.path}?{urlencode(params)}"
    return JSONResponse(body, media_type=JSON)


# --- the recorder -------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def correlation_id(value: str | None) -> str:
    """The client's correlation id when it is a plausible id, else a new GUID."""
    if value and _HEADER_ID.fullmatch(value):
        return value
    return str(uuid.uuid4())


def _error_of(body: bytes) -> tuple[str | None, str | None]:
    """(error code, error JSON text) of an ARM error body, if it is one."""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    error = parsed.get("error", parsed)
    code = error.get("code") if isinstance(error, dict) else None
    text = json.dumps(parsed, separators=(",", ":"))
    return (code if isinstance(code, str) else None), text[:MAX_ERROR_BODY]


@dataclass
class _Exchange:
    """One write request on its way through the recorder."""

    scope: Scope
    headers: Headers
    method: str
    correlation: str
    started: datetime
    status: int | None = None
    service_request_id: str = ""
    error: bytearray = field(default_factory=bytearray)
    recorded: bool = False
    action: RequestActionLike | None = None
    # Bodies kept for the events (None: not kept for this action); one byte over the
    # limit marks a body too long to keep.
    request_body: bytearray | None = None
    response_body: bytearray | None = None


class ActivityRecorder:
    """ASGI middleware: records ARM writes, deletes and actions in the activity log.

    Runs inside the authentication gate (it reads `scope["state"]["principal"]`). A
    failure to record is logged, never turned into a failed request.
    """

    def __init__(
        self,
        app: ASGIApp,
        log: ActivityStore,
        describe: Describe,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.app = app
        self.log = log
        self.describe = describe
        self.clock = clock or log.clock

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].lower().startswith("/subscriptions"):
            await self.app(scope, receive, send)
            return
        method = scope["method"].upper()
        if method not in WRITE_METHODS:  # a read: nothing to record, only the header to add
            correlation = correlation_id(_raw_header(scope, _CORRELATION_KEY))
            scope.setdefault("state", {})["correlation_id"] = correlation
            await self.app(scope, receive, _with_correlation(send, correlation))
            return
        headers = Headers(scope=scope)
        correlation = correlation_id(headers.get(CORRELATION_HEADER))
        scope.setdefault("state", {})["correlation_id"] = correlation
        ex = _Exchange(scope, headers, method, correlation, self.clock())
        ex.action = self.describe(method, scope["path"])
        if ex.action is not None and keeps_request_body(ex.action.action):
            ex.request_body = bytearray()
        if ex.action is not None and keeps_response_body(ex.action.action):
            ex.response_body = bytearray()

        async def receive_wrapper() -> Message:
            message: Message = await receive()
            if message["type"] == "http.request" and ex.request_body is not None:
                _keep(ex.request_body, message.get("body", b""))
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                ex.status = int(message["status"])
                out = MutableHeaders(scope=message)
                if CORRELATION_HEADER not in out:
                    out[CORRELATION_HEADER] = correlation
                ex.service_request_id = out.get("x-ms-request-id", "")
            elif message["type"] == "http.response.body":
                room = MAX_ERROR_BODY - len(ex.error)
                if ex.status is not None and ex.status >= 400 and room > 0:
                    ex.error.extend(message.get("body", b"")[:room])
                if ex.response_body is not None and ex.status is not None and ex.status < 400:
                    _keep(ex.response_body, message.get("body", b""))
                if not message.get("more_body", False):
                    await self._record(ex)  # before the last byte: the client can read it
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:
            if ex.status is None:
                ex.status = 500
            await self._record(ex)
            raise
        await self._record(ex)  # a response that never sent its last body message

    async def _record(self, ex: _Exchange) -> None:
        if ex.recorded or ex.status is None:
            return
        ex.recorded = True
        if ex.status >= 500 and _STORE_FAULTS.get(_error_of(bytes(ex.error))[0] or "") == ex.status:
            # The log lives in the store that just failed the request: writing it now would
            # fail too, only later (a connect timeout) and holding the response back.
            log.warning("not recorded (store fault): %s %s", ex.method, ex.scope["path"])
            return
        try:
            events = self._events(ex, ex.status)
            if events:
                await run_in_threadpool(self.log.record, *events)
        except errors.StoreFault as exc:
            log.warning("could not record %s %s: %s", ex.method, ex.scope["path"], exc.code)
        except Exception:
            log.exception("could not record %s %s in the activity log", ex.method, ex.scope["path"])

    def _events(self, ex: _Exchange, status: int) -> list[ActivityEvent]:
        principal = (ex.scope.get("state") or {}).get("principal")
        if principal is None:
            return []  # Azure records nothing for a caller it could not authenticate
        path: str = ex.scope["path"]
        parts = path.split("/")
        if len(parts) < 3 or not is_guid(parts[2]):
            return []  # no subscription whose log could hold it
        action = ex.action
        if action is None:
            return []
        error_code, error_text = _error_of(bytes(ex.error)) if status >= 400 else (None, None)
        client = ex.scope.get("client")
        facts = RequestFacts(
            action=action.action,
            scope=action.scope,
            method=ex.method,
            subscription_id=parts[2].lower(),
            tenant_id=str(principal.tenant_id),
            caller=str(principal.object_id),
            caller_app_id=str(principal.client_id),
            correlation_id=ex.correlation,
            operation_id=str(uuid.uuid4()),
            started=ex.started,
            finished=self.clock(),
            http_status=status,
            error_code=error_code,
            error_body=error_text,
            client_ip=str(client[0]) if client else "",
            client_request_id=(ex.headers.get(CLIENT_REQUEST_HEADER) or "")[:200],
            service_request_id=ex.service_request_id[:200],
            request_body=_json_text(ex.request_body),
            response_body=_json_text(ex.response_body),
        )
        return request_events(facts, uuid.uuid4)


def _with_correlation(send: Any, correlation: str) -> Callable[[Message], Awaitable[None]]:
    """`send` adding `x-ms-correlation-request-id` to a response that has none."""
    value = correlation.encode("latin-1")

    async def send_correlated(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if all(k.lower() != _CORRELATION_KEY for k, _ in headers):
                headers.append((_CORRELATION_KEY, value))
                message = {**message, "headers": headers}
        await send(message)

    return send_correlated


def _raw_header(scope: Scope, name: bytes) -> str | None:
    """A request header's first value (ASGI header names are lower-case)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _keep(kept: bytearray, chunk: bytes) -> None:
    """Append what fits of `chunk`, and one byte more to mark a body as too long."""
    room = MAX_BODY_CHARS + 1 - len(kept)
    if room > 0:
        kept.extend(chunk[:room])


def _json_text(body: bytearray | None) -> str | None:
    """A kept body as compact JSON text; None when absent, too long or not JSON."""
    if not body or len(body) > MAX_BODY_CHARS:
        return None
    try:
        parsed = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    text = json.dumps(parsed, separators=(",", ":"))
    return text if len(text) <= MAX_BODY_CHARS else None
