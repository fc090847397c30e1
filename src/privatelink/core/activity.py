"""The activity log, pure part: the event, the events of one request, and `$filter` parsing.

Azure Monitor's activity log (`Microsoft.Insights/eventtypes/management/values`, api-version
2015-04-01) records every ARM write, delete and action. What this module copies from it:

- One request that passed authorization gives two events with one `correlationId` and one
  `operationId`: `BeginRequest` with status `Started`, then `EndRequest` with `Succeeded`
  (2xx except 202), `Accepted` (202) or `Failed` (4xx/5xx); `subStatus` and
  `properties.statusCode` carry the HTTP status by its .NET name (`Created`, `Forbidden`).
- A request refused by authentication or authorization (401, or 403 `AuthorizationFailed` /
  `LinkedAuthorizationFailed`) never started: it gives one `EndRequest` event, `Failed`.
- Failed events have level `Error`, the others `Informational`.
- `$filter` is Azure's restricted grammar: `eventTimestamp ge <t>` is required, `eventTimestamp
  le <t>` is optional (default now), and any of `resourceGroupName`, `resourceUri` (az sends
  `resourceId`), `correlationId`, `resourceProvider`, `caller`, `status`, `levels`,
  `eventChannels` with `eq '<value>'`, all joined by `and`. Timestamps may be quoted or not
  (az sends them bare), with or without a UTC offset (none means UTC). A start older than the
  retention is refused, as Azure refuses one older than 90 days. Anything else is a 400
  `BadRequest`, Azure's code for a bad activity-log query.

Role assignments carry their bodies, as in Azure (`az role assignment list-changelogs` reads
them): the `BeginRequest` of a `Microsoft.Authorization/roleAssignments/write` has the request
body as `properties.requestbody` (Azure's casing), the `EndRequest` of a successful
`.../roleAssignments/delete` the response body as `properties.responseBody`. Both are JSON
text; other operations record no bodies.

Matching rules (ours, documented): string comparisons are case-insensitive; `resourceUri eq X`
matches events on X and on X's child resources, so a private link service's id shows the
approvals of its private endpoint connections; `caller eq X` matches the caller's object id
or its application (client) id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from privatelink.core.errors import BadRequest

STARTED = "Started"
ACCEPTED = "Accepted"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
BEGIN_REQUEST = "BeginRequest"
END_REQUEST = "EndRequest"
INFORMATIONAL = "Informational"
ERROR = "Error"
CATEGORY = "Administrative"
WRITE_METHODS = frozenset({"PUT", "PATCH", "POST", "DELETE"})
AUTHORIZATION_CODES = frozenset({"AuthorizationFailed", "LinkedAuthorizationFailed"})
LEVELS = ("Critical", "Error", "Warning", "Informational", "Verbose")
# Administrative events travel on Azure's "Operation" channel.
CHANNEL = "Operation"
#: Actions whose request body the BeginRequest event keeps (`properties.requestbody`).
REQUEST_BODY_ACTIONS = frozenset({"microsoft.authorization/roleassignments/write"})
#: Actions whose response body a successful EndRequest event keeps (`properties.responseBody`).
RESPONSE_BODY_ACTIONS = frozenset({"microsoft.authorization/roleassignments/delete"})
#: Longest body kept in an event (a role assignment is under 1 KB); longer ones are dropped.
MAX_BODY_CHARS = 4096
# A client computing "now - 90 days" is a little older by the time the query arrives.
START_GRACE = timedelta(minutes=5)


class InvalidActivityLogFilter(BadRequest):
    """A `$filter` / `$select` the activity log does not accept (Azure answers `BadRequest`)."""

    code = "BadRequest"


@dataclass(frozen=True)
class ActivityEvent:
    """One activity log record; `timestamp` is timezone-aware UTC.

    `resource_id` is the scope the request acted on (the resource, or the collection for a
    create-by-POST); `operation_name` is the RBAC action string.
    """

    event_data_id: str
    correlation_id: str
    operation_id: str
    timestamp: datetime
    submission_timestamp: datetime
    subscription_id: str
    tenant_id: str
    resource_id: str
    operation_name: str
    event_name: str
    status: str
    caller: str
    caller_app_id: str
    method: str
    sub_status: str = ""
    http_status: int | None = None
    level: str = INFORMATIONAL
    client_ip: str = ""
    client_request_id: str = ""
    description: str = ""
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def resource_group(self) -> str:
        """The resource group named in `resource_id`, or ""."""
        parts = self.resource_id.split("/")
        if len(parts) > 4 and parts[3].lower() == "resourcegroups":
            return parts[4]
        return ""

    @property
    def resource_provider(self) -> str:
        """The namespace of the operation, e.g. `Microsoft.Network`."""
        return self.operation_name.split("/", 1)[0]

    @property
    def resource_type(self) -> str:
        """The operation's resource type: its action string without the verb."""
        head, _, _verb = self.operation_name.rpartition("/")
        return head or self.operation_name

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe dict (timestamps as ISO strings); `from_record` reads it back."""
        data = asdict(self)
        data["timestamp"] = self.timestamp.isoformat()
        data["submission_timestamp"] = self.submission_timestamp.isoformat()
        return data

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> ActivityEvent:
        """The event from `to_record` output."""
        values = dict(data)
        values["timestamp"] = datetime.fromisoformat(values["timestamp"])
        values["submission_timestamp"] = datetime.fromisoformat(values["submission_timestamp"])
        values["properties"] = dict(values.get("properties") or {})
        return cls(**values)


def status_name(code: int) -> str:
    """.NET's HttpStatusCode name, as Azure writes it: 201 -> `Created`, 204 -> `NoContent`."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        return str(code)
    return "OK" if code == 200 else re.sub(r"[^A-Za-z]", "", phrase.title())


def status_localized(code: int) -> str:
    """Azure's localized subStatus: `Created (HTTP Status Code: 201)`."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = str(code)
    return f"{phrase} (HTTP Status Code: {code})"


def outcome(code: int) -> str:
    """The end status of a request answered with this HTTP status."""
    if code >= 400:
        return FAILED
    return ACCEPTED if code == 202 else SUCCEEDED


def is_refusal(code: int, error_code: str | None) -> bool:
    """True when the request never started: authentication or authorization refused it."""
    return code == 401 or (code == 403 and error_code in AUTHORIZATION_CODES)


@dataclass(frozen=True)
class RequestFacts:
    """What the recorder knows about one finished ARM write/delete/action."""

    action: str
    scope: str
    method: str
    subscription_id: str
    tenant_id: str
    caller: str
    caller_app_id: str
    correlation_id: str
    operation_id: str
    started: datetime
    finished: datetime
    http_status: int
    error_code: str | None = None
    error_body: str | None = None
    client_ip: str = ""
    client_request_id: str = ""
    service_request_id: str = ""
    request_body: str | None = None
    response_body: str | None = None


def keeps_request_body(action: str) -> bool:
    """Whether the events of `action` carry the request body (the recorder keeps it then)."""
    return action.lower() in REQUEST_BODY_ACTIONS


def keeps_response_body(action: str) -> bool:
    """Whether the events of `action` carry the response body."""
    return action.lower() in RESPONSE_BODY_ACTIONS


def _kept(body: str | None) -> bool:
    """A body is kept whole or not at all (a cut JSON text would not parse)."""
    return bool(body) and len(body or "") <= MAX_BODY_CHARS


def request_events(facts: RequestFacts, new_id: Callable[[], object]) -> list[ActivityEvent]:
    """The events of one request, oldest first; `new_id()` gives each event's id."""
    common = {
        "eventCategory": CATEGORY,
        "entity": facts.scope,
        "message": facts.action,
        "hierarchy": f"{facts.tenant_id}/{facts.subscription_id}",
    }
    status = outcome(facts.http_status)
    end_props = {**common, "statusCode": status_name(facts.http_status)}
    if facts.service_request_id:
        end_props["serviceRequestId"] = facts.service_request_id
    if status == FAILED and facts.error_body:
        end_props["statusMessage"] = facts.error_body
    if status != FAILED and _kept(facts.response_body) and keeps_response_body(facts.action):
        end_props["responseBody"] = str(facts.response_body)
    end = ActivityEvent(
        event_data_id=str(new_id()),
        correlation_id=facts.correlation_id,
        operation_id=facts.operation_id,
        timestamp=facts.finished,
        submission_timestamp=facts.finished,
        subscription_id=facts.subscription_id,
        tenant_id=facts.tenant_id,
        resource_id=facts.scope,
        operation_name=facts.action,
        event_name=END_REQUEST,
        status=status,
        caller=facts.caller,
        caller_app_id=facts.caller_app_id,
        method=facts.method,
        sub_status=status_name(facts.http_status),
        http_status=facts.http_status,
        level=ERROR if status == FAILED else INFORMATIONAL,
        client_ip=facts.client_ip,
        client_request_id=facts.client_request_id,
        properties=end_props,
    )
    if is_refusal(facts.http_status, facts.error_code):
        return [end]
    begin_props = dict(common)
    if _kept(facts.request_body) and keeps_request_body(facts.action):
        begin_props["requestbody"] = str(facts.request_body)
    begin = replace(
        end,
        event_data_id=str(new_id()),
        timestamp=facts.started,
        event_name=BEGIN_REQUEST,
        status=STARTED,
        sub_status="",
        http_status=None,
        level=INFORMATIONAL,
        properties=begin_props,
    )
    return [begin, end]


# --- $filter ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventQuery:
    """A parsed `$filter`: a time window and optional equality filters (lower-cased)."""

    start: datetime
    end: datetime
    resource_id: str | None = None
    resource_group: str | None = None
    correlation_id: str | None = None
    caller: str | None = None
    resource_provider: str | None = None
    status: str | None = None
    levels: frozenset[str] | None = None
    channels: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        """True when no event can match (e.g. a channel other than Operation)."""
        return self.channels is not None and CHANNEL.lower() not in self.channels


_EQ_FIELDS = {
    "resourcegroupname": "resource_group",
    "resourceuri": "resource_id",
    "resourceid": "resource_id",
    "correlationid": "correlation_id",
    "caller": "caller",
    "resourceprovider": "resource_provider",
    "status": "status",
    "levels": "levels",
    "eventchannels": "channels",
}
_CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z][A-Za-z0-9_.]*)\s+(?P<op>[A-Za-z]+)\s+"
    r"(?P<value>'(?:[^']|'')*'|[^\s'()]+)\s*",
)
_AND = re.compile(r"and\s", re.IGNORECASE)
# A '+' of a UTC offset that arrived as a space (an unencoded '+' in a hand-made URL).
_SPACED_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})\b")
_USAGE = (
    "use eventTimestamp ge '<start>' [and eventTimestamp le '<end>'] and optionally "
    "resourceGroupName, resourceUri (or resourceId), correlationId, resourceProvider, caller, "
    "status, levels or eventChannels eq '<value>', joined by 'and'"
)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def parse_timestamp(value: str, which: str) -> datetime:
    """An OData timestamp (quoted or bare, offset optional: none means UTC) as aware UTC."""
    text = _unquote(value).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidActivityLogFilter(f"The format of the {which} value is invalid.") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _clauses(text: str) -> list[tuple[str, str, str]]:
    text = _SPACED_OFFSET.sub(r"\1+\2", text)
    out: list[tuple[str, str, str]] = []
    pos = 0
    while True:
        m = _CLAUSE.match(text, pos)
        if m is None:
            raise InvalidActivityLogFilter(
                f"$filter '{text[:200]}' could not be parsed at position {pos}: {_USAGE}."
            )
        out.append((m["field"], m["op"].lower(), m["value"]))
        pos = m.end()
        if pos >= len(text):
            return out
        joiner = _AND.match(text, pos)
        if joiner is None:
            raise InvalidActivityLogFilter(
                f"$filter '{text[:200]}': only 'and' may join conditions ({_USAGE})."
            )
        pos = joiner.end()


def parse_filter(text: str | None, now: datetime, retention: timedelta) -> EventQuery:
    """The typed query of a `$filter`; Azure's rules on its shape and time window.

    `now` is aware UTC; `retention` is how far back events are kept (and may be asked for).
    """
    if text is None or not text.strip():
        raise InvalidActivityLogFilter(
            "The $filter query parameter is required and must contain at least "
            f"'eventTimestamp ge <start time>': {_USAGE}."
        )
    start: datetime | None = None
    end: datetime | None = None
    values: dict[str, Any] = {}
    for name, op, raw in _clauses(text):
        key = name.lower()
        if key == "eventtimestamp":
            if op == "ge" and start is None:
                start = parse_timestamp(raw, "startTime")
            elif op == "le" and end is None:
                end = parse_timestamp(raw, "endTime")
            else:
                raise InvalidActivityLogFilter(
                    f"$filter: 'eventTimestamp {op}' is not supported or repeated; {_USAGE}."
                )
            continue
        target = _EQ_FIELDS.get(key)
        if target is None or op != "eq":
            raise InvalidActivityLogFilter(
                f"$filter: '{name} {op}' is not supported by the activity log; {_USAGE}."
            )
        if target in values:
            raise InvalidActivityLogFilter(f"$filter: '{name}' is given more than once.")
        value = _unquote(raw).strip()
        if not value:
            raise InvalidActivityLogFilter(f"$filter: '{name}' needs a value.")
        if target in ("levels", "channels"):
            items = frozenset(v.strip().lower() for v in value.split(",") if v.strip())
            if target == "levels":
                unknown = items - {level.lower() for level in LEVELS}
                if unknown:
                    raise InvalidActivityLogFilter(
                        f"$filter: unknown level(s) {', '.join(sorted(unknown))}; "
                        f"levels are {', '.join(LEVELS)}."
                    )
            values[target] = items
        elif target == "resource_id":
            values[target] = value.rstrip("/").lower()
        else:
            values[target] = value.lower()
    if start is None:
        raise InvalidActivityLogFilter(
            f"The $filter must contain 'eventTimestamp ge <start time>': {_USAGE}."
        )
    if end is None:
        end = now
    if end < start:
        raise InvalidActivityLogFilter(
            f"The end time {end.isoformat()} is earlier than the start time {start.isoformat()}."
        )
    if start < now - retention - START_GRACE:
        days = retention / timedelta(days=1)
        raise InvalidActivityLogFilter(
            f"The start time {start.isoformat()} is more than {days:g} days in the past; "
            f"the activity log keeps events for {days:g} days."
        )
    return EventQuery(start=start, end=end, **values)


# --- $select ------------------------------------------------------------------------------

# Every top-level property of EventData on the wire (azure-mgmt-monitor's attribute map).
EVENT_PROPERTIES = (
    "authorization",
    "claims",
    "caller",
    "description",
    "id",
    "eventDataId",
    "correlationId",
    "eventName",
    "category",
    "httpRequest",
    "level",
    "resourceGroupName",
    "resourceProviderName",
    "resourceId",
    "resourceType",
    "operationId",
    "operationName",
    "properties",
    "status",
    "subStatus",
    "eventTimestamp",
    "submissionTimestamp",
    "subscriptionId",
    "tenantId",
)
_BY_LOWER = {name.lower(): name for name in EVENT_PROPERTIES}


def parse_select(text: str | None) -> tuple[str, ...] | None:
    """The property names of a `$select` (az sends `a , b , c`), or None for all."""
    if text is None or not text.strip():
        return None
    names: list[str] = []
    for item in text.split(","):
        name = item.strip()
        if not name:
            continue
        canonical = _BY_LOWER.get(name.lower())
        if canonical is None:
            raise InvalidActivityLogFilter(
                f"$select: '{name[:100]}' is not a property of an activity log event; "
                f"use any of {', '.join(EVENT_PROPERTIES)}."
            )
        if canonical not in names:
            names.append(canonical)
    return tuple(names) or None
