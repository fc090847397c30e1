"""The activity log: `$filter` parsing, the events of a request, the SQL store (SQLite and
PostgreSQL), the recorder middleware and the list route, read back through azure-mgmt-monitor.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.monitor import MonitorManagementClient, models
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from privatelink.api import activity_log as api
from privatelink.api import errors as api_errors
from privatelink.core import errors
from privatelink.core.activity import (
    MAX_BODY_CHARS,
    ActivityEvent,
    InvalidActivityLogFilter,
    RequestFacts,
    parse_filter,
    parse_select,
    request_events,
    status_localized,
    status_name,
)
from privatelink.core.principal import Principal
from privatelink.store import activity as store_module
from privatelink.store.activity import SqlActivityLog

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SUB = "11111111-1111-4111-8111-111111111111"
OTHER_SUB = "22222222-2222-4222-8222-222222222222"
TENANT = "33333333-3333-4333-8333-333333333333"
OID = "44444444-4444-4444-8444-444444444444"
APP = "55555555-5555-4555-8555-555555555555"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-prov"
PLS = f"{RG}/providers/Microsoft.Network/privateLinkServices/pls-web"
CONN = f"{PLS}/privateEndpointConnections/pe-web.1234"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
RETENTION = timedelta(days=90)


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# --- $filter ------------------------------------------------------------------------------

# What `az monitor activity-log list` builds (azure-cli 2.91 monitor/custom.py): bare
# isoformat timestamps (naive = utcnow, or with the user's offset), then " and X eq 'v'".
AZ_RESOURCE = (
    "eventTimestamp ge 2026-03-01T06:00:00.123456 and eventTimestamp le "
    f"2026-03-01T12:00:00.123456 and resourceId eq '{PLS}'"
)
AZ_GROUP_CALLER_STATUS = (
    "eventTimestamp ge 2026-03-01T10:00:00+02:00 and eventTimestamp le 2026-03-02T10:00:00+02:00"
    f" and resourceGroupName eq 'rg-prov' and caller eq '{OID}' and status eq 'Succeeded'"
)
# The REST spec's example (and azure-mgmt-monitor's docstring): quoted, 7 fraction digits.
SPEC = (
    "eventTimestamp ge '2026-02-21T20:00:00Z' and eventTimestamp le '2026-02-23T20:00:00.9792776Z'"
    " and resourceUri eq '/subscriptions/X/resourceGroups/RG/providers/A.B/c/d/'"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            AZ_RESOURCE,
            {
                "start": datetime(2026, 3, 1, 6, 0, 0, 123456, tzinfo=UTC),
                "end": datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
                "resource_id": PLS.lower(),
            },
        ),
        (
            AZ_GROUP_CALLER_STATUS,
            {
                "start": datetime(2026, 3, 1, 8, tzinfo=UTC),
                "end": datetime(2026, 3, 2, 8, tzinfo=UTC),
                "resource_group": "rg-prov",
                "caller": OID,
                "status": "succeeded",
            },
        ),
        (
            SPEC,
            {
                "start": datetime(2026, 2, 21, 20, tzinfo=UTC),
                "end": datetime(2026, 2, 23, 20, 0, 0, 979277, tzinfo=UTC),
                "resource_id": "/subscriptions/x/resourcegroups/rg/providers/a.b/c/d",
            },
        ),
        # No end: now. A date alone. Field names and 'and' in any case.
        (
            "EVENTTIMESTAMP GE 2026-02-28 AND correlationid EQ 'ABC-1'",
            {"start": datetime(2026, 2, 28, tzinfo=UTC), "end": NOW, "correlation_id": "abc-1"},
        ),
        # An unencoded '+' of an offset arrives as a space.
        (
            "eventTimestamp ge 2026-03-01T10:00:00 01:00",
            {"start": datetime(2026, 3, 1, 9, tzinfo=UTC), "end": NOW},
        ),
        (
            "eventTimestamp ge '2026-03-01T00:00:00Z' and resourceProvider eq 'Microsoft.Network'"
            " and levels eq 'Critical,Error' and eventChannels eq 'Admin, Operation'",
            {
                "start": datetime(2026, 3, 1, tzinfo=UTC),
                "end": NOW,
                "resource_provider": "microsoft.network",
                "levels": frozenset({"critical", "error"}),
                "channels": frozenset({"admin", "operation"}),
            },
        ),
        # OData doubles a quote inside a string.
        (
            "eventTimestamp ge 2026-03-01 and caller eq 'o''brien@contoso.com'",
            {
                "start": datetime(2026, 3, 1, tzinfo=UTC),
                "end": NOW,
                "caller": "o'brien@contoso.com",
            },
        ),
    ],
)
def test_parse_filter_accepts_what_az_and_the_sdk_send(text: str, expected: dict[str, Any]) -> None:
    query = parse_filter(text, NOW, RETENTION)
    got = {k: v for k, v in vars(query).items() if v is not None}
    assert got == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "$filter query parameter is required"),
        ("   ", "$filter query parameter is required"),
        (f"resourceId eq '{PLS}'", "must contain 'eventTimestamp ge"),
        ("eventTimestamp ge 'yesterday'", "The format of the startTime value is invalid."),
        ("eventTimestamp ge 2026-03-01 and eventTimestamp le 2026-13-01", "endTime value"),
        ("eventTimestamp ge 2026-03-01 or status eq 'Failed'", "only 'and'"),
        ("eventTimestamp ge 2026-03-01 and (status eq 'Failed')", "could not be parsed"),
        ("eventTimestamp ge 2026-03-01 and operationName eq 'x'", "'operationName eq' is not"),
        ("eventTimestamp ge 2026-03-01 and status ne 'Failed'", "'status ne' is not"),
        ("eventTimestamp gt 2026-03-01", "'eventTimestamp gt' is not supported"),
        ("eventTimestamp ge 2026-03-01 and eventTimestamp ge 2026-03-01", "or repeated"),
        ("eventTimestamp ge 2026-03-01 and caller eq 'a' and caller eq 'b'", "more than once"),
        ("eventTimestamp ge 2026-03-01 and caller eq ''", "needs a value"),
        ("eventTimestamp ge 2026-03-01 and levels eq 'Loud'", "unknown level(s) loud"),
        ("eventTimestamp ge 2026-03-01 and eventTimestamp le 2026-02-01", "is earlier than"),
        ("eventTimestamp ge 2025-11-30T11:00:00Z", "more than 90 days in the past"),
    ],
)
def test_parse_filter_refuses_with_azure_bad_request(text: str | None, message: str) -> None:
    with pytest.raises(InvalidActivityLogFilter) as caught:
        parse_filter(text, NOW, RETENTION)
    assert caught.value.code == "BadRequest"
    assert caught.value.status == 400
    assert isinstance(caught.value, errors.BadRequest)
    assert message in caught.value.message


def test_parse_filter_window_follows_the_retention_with_a_little_grace() -> None:
    # az's --offset 90d is computed a moment before the server sees it.
    just_inside = NOW - RETENTION - timedelta(minutes=1)
    assert parse_filter(f"eventTimestamp ge {just_inside.isoformat()}", NOW, RETENTION)
    longer = timedelta(days=365)
    old = (NOW - timedelta(days=200)).isoformat()
    assert parse_filter(f"eventTimestamp ge {old}", NOW, longer).start == NOW - timedelta(days=200)
    with pytest.raises(InvalidActivityLogFilter, match="more than 7 days"):
        parse_filter(f"eventTimestamp ge {old}", NOW, timedelta(days=7))


def test_parse_filter_on_a_channel_without_administrative_events_is_empty() -> None:
    assert parse_filter("eventTimestamp ge 2026-03-01 and eventChannels eq 'Admin'", NOW, RETENTION)
    query = parse_filter(
        "eventTimestamp ge 2026-03-01 and eventChannels eq 'Admin'", NOW, RETENTION
    )
    assert query.empty
    assert not parse_filter("eventTimestamp ge 2026-03-01", NOW, RETENTION).empty


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("eventName , status , subStatus", ("eventName", "status", "subStatus")),  # az's join
        ("EVENTNAME,id,id,resourceid", ("eventName", "id", "resourceId")),
        (" , ", None),
    ],
)
def test_parse_select(text: str | None, expected: tuple[str, ...] | None) -> None:
    assert parse_select(text) == expected


def test_parse_select_refuses_unknown_properties() -> None:
    with pytest.raises(InvalidActivityLogFilter, match="'nope' is not a property"):
        parse_select("eventName,nope")


def test_select_names_are_the_sdk_event_data_attributes() -> None:
    # az offers exactly these as --select values (EventData()._attribute_map keys).
    wire = [entry["key"] for entry in models.EventData._attribute_map.values()]
    assert parse_select(",".join(wire)) == tuple(wire)


# --- the events of one request -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name", "localized"),
    [
        (200, "OK", "OK (HTTP Status Code: 200)"),
        (201, "Created", "Created (HTTP Status Code: 201)"),
        (202, "Accepted", "Accepted (HTTP Status Code: 202)"),
        (204, "NoContent", "No Content (HTTP Status Code: 204)"),
        (400, "BadRequest", "Bad Request (HTTP Status Code: 400)"),
        (401, "Unauthorized", "Unauthorized (HTTP Status Code: 401)"),
        (403, "Forbidden", "Forbidden (HTTP Status Code: 403)"),
        (404, "NotFound", "Not Found (HTTP Status Code: 404)"),
        (409, "Conflict", "Conflict (HTTP Status Code: 409)"),
        (412, "PreconditionFailed", "Precondition Failed (HTTP Status Code: 412)"),
        (500, "InternalServerError", "Internal Server Error (HTTP Status Code: 500)"),
        (599, "599", "599 (HTTP Status Code: 599)"),
    ],
)
def test_status_names_are_dotnet_names(code: int, name: str, localized: str) -> None:
    assert status_name(code) == name
    assert status_localized(code) == localized


def facts(status: int, error_code: str | None = None, **extra: Any) -> RequestFacts:
    values: dict[str, Any] = {
        "action": "Microsoft.Network/privateLinkServices/privateEndpointConnections/write",
        "scope": CONN,
        "method": "PUT",
        "subscription_id": SUB,
        "tenant_id": TENANT,
        "caller": OID,
        "caller_app_id": APP,
        "correlation_id": "corr-1",
        "operation_id": "op-1",
        "started": NOW,
        "finished": NOW + timedelta(milliseconds=30),
        "http_status": status,
        "error_code": error_code,
        "error_body": '{"error":{"code":"X"}}' if status >= 400 else None,
    }
    values.update(extra)
    return RequestFacts(**values)


def ids() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"event-{n}"


@pytest.mark.parametrize(
    ("status", "error_code", "expected"),
    [
        (200, None, [("BeginRequest", "Started", ""), ("EndRequest", "Succeeded", "OK")]),
        (201, None, [("BeginRequest", "Started", ""), ("EndRequest", "Succeeded", "Created")]),
        (202, None, [("BeginRequest", "Started", ""), ("EndRequest", "Accepted", "Accepted")]),
        (
            400,
            "InvalidRequestContent",
            [("BeginRequest", "Started", ""), ("EndRequest", "Failed", "BadRequest")],
        ),
        # Refused before it started: one event.
        (403, "AuthorizationFailed", [("EndRequest", "Failed", "Forbidden")]),
        (403, "LinkedAuthorizationFailed", [("EndRequest", "Failed", "Forbidden")]),
        (401, "InvalidAuthenticationTokenTenant", [("EndRequest", "Failed", "Unauthorized")]),
        # A 403 of the resource provider's own rules did start.
        (
            403,
            "Authorization_RequestDenied",
            [("BeginRequest", "Started", ""), ("EndRequest", "Failed", "Forbidden")],
        ),
    ],
)
def test_request_events(
    status: int, error_code: str | None, expected: list[tuple[str, ...]]
) -> None:
    counter = ids()
    events = request_events(facts(status, error_code), lambda: next(counter))
    assert [(e.event_name, e.status, e.sub_status) for e in events] == expected
    assert {e.correlation_id for e in events} == {"corr-1"}
    assert {e.operation_id for e in events} == {"op-1"}
    assert len({e.event_data_id for e in events}) == len(events)
    end = events[-1]
    assert end.timestamp == NOW + timedelta(milliseconds=30)
    assert end.http_status == status
    assert end.level == ("Error" if status >= 400 else "Informational")
    assert end.properties["statusCode"] == status_name(status)
    assert end.properties["hierarchy"] == f"{TENANT}/{SUB}"
    assert ("statusMessage" in end.properties) == (status >= 400)
    if len(events) == 2:
        assert events[0].timestamp == NOW
        assert "statusCode" not in events[0].properties
    assert end.resource_group == "rg-prov"
    assert end.resource_provider == "Microsoft.Network"
    assert end.resource_type == "Microsoft.Network/privateLinkServices/privateEndpointConnections"


ASSIGNMENT = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/a1"
ASSIGNMENT_BODY = '{"properties":{"roleDefinitionId":"r","principalId":"p"}}'


def test_role_assignment_events_carry_their_bodies() -> None:
    """Begin of a role assignment write: requestbody; End of its delete: responseBody."""
    write = facts(
        201,
        action="Microsoft.Authorization/roleAssignments/write",
        scope=ASSIGNMENT,
        request_body=ASSIGNMENT_BODY,
        response_body=ASSIGNMENT_BODY,
    )
    begin, end = request_events(write, uuid.uuid4)
    assert begin.properties["requestbody"] == ASSIGNMENT_BODY
    assert "requestbody" not in end.properties and "responseBody" not in end.properties

    delete = facts(
        200,
        action="Microsoft.Authorization/roleAssignments/delete",
        scope=ASSIGNMENT,
        method="DELETE",
        request_body=ASSIGNMENT_BODY,
        response_body=ASSIGNMENT_BODY,
    )
    begin, end = request_events(delete, uuid.uuid4)
    assert end.properties["responseBody"] == ASSIGNMENT_BODY
    assert "requestbody" not in begin.properties
    # A failed delete has no response body to show; other actions keep none.
    failed = request_events(replace(delete, http_status=400, error_code="X"), uuid.uuid4)
    assert all("responseBody" not in e.properties for e in failed)
    other = request_events(facts(200, request_body=ASSIGNMENT_BODY), uuid.uuid4)
    assert all("requestbody" not in e.properties for e in other)
    # Kept whole or not at all.
    long = replace(write, request_body='{"x":"' + "y" * MAX_BODY_CHARS + '"}')
    assert "requestbody" not in request_events(long, uuid.uuid4)[0].properties


def test_event_record_round_trip() -> None:
    events = request_events(facts(201, service_request_id="srv-1"), uuid.uuid4)
    for event in events:
        assert ActivityEvent.from_record(event.to_record()) == event
    assert events[1].properties["serviceRequestId"] == "srv-1"


# --- the store ----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = create_engine(f"sqlite:///{tmp_path / 'activity.db'}")
    else:
        eng = create_engine(request.getfixturevalue("postgres_url"))
    store_module.metadata.drop_all(eng)
    yield eng
    store_module.metadata.drop_all(eng)
    eng.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine: Engine, clock: Clock) -> SqlActivityLog:
    return SqlActivityLog(engine, retention_days=90, clock=clock)


def event(
    when: datetime,
    resource_id: str = CONN,
    *,
    subscription: str = SUB,
    status: str = "Succeeded",
    correlation: str = "corr-1",
    caller: str = OID,
    app: str = APP,
    action: str = "Microsoft.Network/privateLinkServices/privateEndpointConnections/write",
    level: str = "Informational",
) -> ActivityEvent:
    return ActivityEvent(
        event_data_id=str(uuid.uuid4()),
        correlation_id=correlation,
        operation_id=str(uuid.uuid4()),
        timestamp=when,
        submission_timestamp=when,
        subscription_id=subscription,
        tenant_id=TENANT,
        resource_id=resource_id,
        operation_name=action,
        event_name="EndRequest",
        status=status,
        caller=caller,
        caller_app_id=app,
        method="PUT",
        sub_status="OK",
        http_status=200,
        level=level,
        properties={"statusCode": "OK"},
    )


def window(store: SqlActivityLog, **filters: Any) -> list[ActivityEvent]:
    found, token = store.query(SUB, NOW - timedelta(days=1), NOW, **filters)
    assert token is None
    return found


def test_store_round_trips_events_newest_first(store: SqlActivityLog) -> None:
    a = event(NOW - timedelta(hours=2))
    b = event(NOW - timedelta(hours=1))
    c = event(NOW - timedelta(hours=1))  # same time: later insert first
    store.record(a)
    store.record(b, c)
    assert window(store) == [c, b, a]
    found, _ = store.query(SUB, NOW - timedelta(minutes=90), NOW - timedelta(minutes=60))
    assert found == [c, b]
    assert store.query(OTHER_SUB, NOW - timedelta(days=1), NOW) == ([], None)
    assert store.query(SUB.upper(), NOW - timedelta(days=1), NOW)[0] == [c, b, a]


def test_store_resource_filter_matches_the_resource_and_its_children(store: SqlActivityLog) -> None:
    on_pls = event(NOW - timedelta(minutes=5), PLS)
    on_conn = event(NOW - timedelta(minutes=4), CONN)
    sibling = event(NOW - timedelta(minutes=3), PLS + "2")
    like_chars = event(NOW - timedelta(minutes=2), f"{RG}/providers/Microsoft.Network/x/a_b%c")
    like_lookalike = event(NOW - timedelta(minutes=1), f"{RG}/providers/Microsoft.Network/x/aXbYc")
    store.record(on_pls, on_conn, sibling, like_chars, like_lookalike)
    assert window(store, resource_id=PLS) == [on_conn, on_pls]
    assert window(store, resource_id=PLS.upper() + "/") == [on_conn, on_pls]
    assert window(store, resource_id=CONN) == [on_conn]
    assert window(store, resource_id=like_chars.resource_id) == [like_chars]
    assert window(store, resource_id=f"{RG}/providers/Microsoft.Network/x/a_b") == []
    assert len(window(store, resource_id=RG)) == 5


def test_store_equality_filters(store: SqlActivityLog) -> None:
    ok = event(NOW - timedelta(minutes=3), correlation="AbC")
    failed = event(
        NOW - timedelta(minutes=2),
        status="Failed",
        level="Error",
        caller="other-oid",
        app="other-app",
        resource_id=f"/subscriptions/{SUB}/resourceGroups/RG-Cons/providers/Microsoft.Network/privateEndpoints/pe",
        action="Microsoft.Network/privateEndpoints/write",
    )
    group = event(
        NOW - timedelta(minutes=1),
        resource_id=RG,
        action="Microsoft.Resources/subscriptions/resourceGroups/write",
    )
    store.record(ok, failed, group)
    assert window(store, resource_group="RG-PROV") == [group, ok]
    assert window(store, resource_group="rg-cons") == [failed]
    assert window(store, correlation_id="abc") == [ok]
    assert window(store, caller=OID.upper()) == [group, ok]
    assert window(store, caller="OTHER-APP") == [failed]
    assert window(store, resource_provider="microsoft.resources") == [group]
    assert window(store, status="FAILED") == [failed]
    assert window(store, levels=["Error", "Critical"]) == [failed]
    assert window(store, levels=[]) == []
    assert window(store, status="Failed", caller=OID) == []
    assert window(store, caller="a\x00b") == []


def test_store_pages_with_a_stable_keyset_token(store: SqlActivityLog) -> None:
    made = [event(NOW - timedelta(minutes=10 - i // 2)) for i in range(7)]  # pairs share a time
    for item in made:
        store.record(item)
    expected = window(store)
    pages: list[list[ActivityEvent]] = []
    token: str | None = None
    while True:
        found, token = store.query(SUB, NOW - timedelta(days=1), NOW, top=3, token=token)
        pages.append(found)
        if token is None:
            break
        assert token.isdigit()
        # A newer event between pages does not shift the next page.
        store.record(event(NOW - timedelta(seconds=len(pages))))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e for p in pages for e in p] == expected


@pytest.mark.parametrize("token", ["abc", "12", "1" * 41, "-1000000000000000"])
def test_store_refuses_a_bad_token(store: SqlActivityLog, token: str) -> None:
    with pytest.raises(errors.InvalidRequestContent, match="Invalid \\$skipToken"):
        store.query(SUB, NOW - timedelta(days=1), NOW, token=token)


def test_store_retention_hides_then_purges_old_events(
    store: SqlActivityLog, clock: Clock, engine: Engine
) -> None:
    old = event(NOW - timedelta(days=89))
    new = event(NOW - timedelta(days=1))
    store.record(old, new)  # first write purges (nothing is expired yet)
    everything = (NOW - timedelta(days=400), NOW + timedelta(days=400))
    assert store.query(SUB, *everything)[0] == [new, old]
    clock.advance(days=2)  # `old` is now 91 days old
    assert store.query(SUB, *everything)[0] == [new]  # hidden at once
    # Purged on the next write after a minute since the last purge.
    newer = event(clock.now)
    store.record(newer)
    assert store.purge() == 0  # it already went
    other = SqlActivityLog(engine, retention_days=400, clock=clock)
    assert other.query(SUB, *everything)[0] == [newer, new]


def test_store_purges_at_most_once_a_minute(
    store: SqlActivityLog, clock: Clock, engine: Engine
) -> None:
    keeper = SqlActivityLog(engine, retention_days=400, clock=clock)
    everything = (NOW - timedelta(days=400), NOW + timedelta(days=400))
    store.record(event(NOW))  # purges, remembers when
    keeper.record(event(NOW - timedelta(days=100)))  # another store, longer retention
    store.record(event(NOW))  # within the minute: no purge
    assert len(keeper.query(SUB, *everything)[0]) == 3
    clock.advance(seconds=61)
    store.record(event(clock.now))
    assert len(keeper.query(SUB, *everything)[0]) == 3  # the 100-day-old one is gone
    assert store.retention == timedelta(days=90)


def test_store_refuses_a_retention_under_a_day(engine: Engine) -> None:
    with pytest.raises(ValueError, match="retention_days"):
        SqlActivityLog(engine, retention_days=0)


# --- the recorder and the route through a small app ---------------------------------------


class FakeGate:
    """Stands in for ArmGate: a principal unless the request says `x-test-anonymous`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/subscriptions"):
            headers = dict(scope["headers"])
            if b"x-test-anonymous" not in headers:
                scope.setdefault("state", {})["principal"] = Principal(TENANT, OID, APP)
        await self.app(scope, receive, send)


class Action:
    """Stands in for core.actions.RequestAction."""

    def __init__(self, action: str, scope: str) -> None:
        self.action = action
        self.scope = scope


def describe(method: str, path: str) -> Action | None:
    """A tiny stand-in for core.actions.describe over the paths of the test app."""
    parts = path.split("/")
    if "providers" not in parts or "unknown" in parts:
        return None
    i = parts.index("providers")
    types = [parts[i + 1], *parts[i + 2 :: 2]]
    if method == "POST":
        return Action("/".join([*types, "action"]), "/".join(parts[:-1]))
    verb = {"PUT": "write", "PATCH": "write", "DELETE": "delete"}.get(method, "read")
    return Action("/".join([*types, verb]), path)


class AuthorizationFailed(errors.ArmError):
    status = 403
    code = "AuthorizationFailed"


def build_app(log: Any) -> FastAPI:
    app = FastAPI()
    app.state.activity_log = log
    app.state.page_size = 3
    api_errors.install(app)
    app.include_router(api.router)
    conn = (
        "/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Network/privateLinkServices"
        "/{n}/privateEndpointConnections/{c}"
    )

    @app.put(conn)
    def approve(request: Request) -> JSONResponse:
        if request.headers.get("x-test-deny"):
            raise AuthorizationFailed("The client does not have authorization.")
        if request.headers.get("x-test-bad"):
            raise errors.InvalidRequestContent("The request content is invalid.")
        if request.headers.get("x-test-crash"):
            raise RuntimeError("boom")
        return JSONResponse({"name": "c"}, headers={"x-ms-request-id": "srv-7"})

    @app.get(conn)
    def show() -> JSONResponse:
        return JSONResponse({"name": "c"})

    @app.delete(conn)
    def remove() -> Response:
        return Response(status_code=202)

    @app.post("/subscriptions/{s}/providers/Microsoft.Network/locations/{l}/checkVisibility")
    def check() -> JSONResponse:
        return JSONResponse({"visible": True})

    assignment = "/subscriptions/{s}/providers/Microsoft.Authorization/roleAssignments/{n}"

    @app.put(assignment)
    async def assign(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": {"code": "InvalidRequestContent"}}, status_code=400)
        return JSONResponse({"properties": body["properties"], "name": "a1"}, status_code=201)

    @app.delete(assignment)
    def unassign() -> JSONResponse:
        return JSONResponse({"properties": {"principalId": OID, "scope": f"/subscriptions/{SUB}"}})

    @app.put("/subscriptions/{s}/providers/Microsoft.Network/unknown/{n}")
    def unknown() -> JSONResponse:
        return JSONResponse({})

    # Added last = runs first: the gate, then the recorder (as in the real app).
    app.add_middleware(api.ActivityRecorder, log=log, describe=describe)
    app.add_middleware(FakeGate)
    return app


@pytest.fixture
def live_log(tmp_path: Any) -> Iterator[SqlActivityLog]:
    eng = create_engine(f"sqlite:///{tmp_path / 'live.db'}")
    yield SqlActivityLog(eng)
    eng.dispose()


@pytest.fixture
def client(live_log: SqlActivityLog) -> Iterator[TestClient]:
    with TestClient(build_app(live_log), base_url="https://testserver") as c:
        yield c


CONN_URL = f"{CONN}?api-version=2024-05-01"
LOG_URL = f"/subscriptions/{SUB}/providers/Microsoft.Insights/eventtypes/management/values"


def read_log(client: TestClient, filter_tail: str = "", **params: str) -> dict[str, Any]:
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    query = {"api-version": "2015-04-01", "$filter": f"eventTimestamp ge {start}{filter_tail}"}
    response = client.get(LOG_URL, params={**query, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_recorder_records_an_approval_with_begin_and_end(client: TestClient) -> None:
    response = client.put(
        CONN_URL,
        json={},
        headers={"x-ms-correlation-request-id": "my-corr-1", "x-ms-client-request-id": "cli-1"},
    )
    assert response.status_code == 200
    assert response.headers["x-ms-correlation-request-id"] == "my-corr-1"
    body = read_log(client, f" and resourceId eq '{PLS}'")
    assert "nextLink" not in body
    end, begin = body["value"]
    action = "Microsoft.Network/privateLinkServices/privateEndpointConnections/write"
    for item in (begin, end):
        assert item["correlationId"] == "my-corr-1"
        assert item["caller"] == OID
        assert item["claims"]["appid"] == APP
        assert item["operationName"]["value"] == action
        assert item["authorization"] == {"action": action, "scope": CONN}
        assert item["resourceId"] == CONN
        assert item["resourceGroupName"] == "rg-prov"
        assert item["subscriptionId"] == SUB
        assert item["tenantId"] == TENANT
        assert item["httpRequest"] == {
            "method": "PUT",
            "clientRequestId": "cli-1",
            "clientIpAddress": "testclient",
        }
        assert item["category"] == {"value": "Administrative", "localizedValue": "Administrative"}
        assert item["id"].startswith(f"{CONN}/events/{item['eventDataId']}/ticks/")
    assert begin["operationId"] == end["operationId"]
    assert (begin["status"]["value"], begin["eventName"]["value"]) == ("Started", "BeginRequest")
    assert (end["status"]["value"], end["eventName"]["value"]) == ("Succeeded", "EndRequest")
    assert end["subStatus"] == {"value": "OK", "localizedValue": "OK (HTTP Status Code: 200)"}
    assert end["properties"]["statusCode"] == "OK"
    assert end["properties"]["serviceRequestId"] == "srv-7"
    assert begin["eventTimestamp"] <= end["eventTimestamp"]


def test_recorder_sets_a_new_correlation_id_on_every_arm_response(client: TestClient) -> None:
    seen = set()
    for _ in range(2):
        response = client.get(CONN_URL)
        assert response.status_code == 200
        seen.add(response.headers["x-ms-correlation-request-id"])
    assert len(seen) == 2
    assert all(uuid.UUID(value) for value in seen)
    bogus = client.get(CONN_URL, headers={"x-ms-correlation-request-id": "bad value!"})
    assert bogus.headers["x-ms-correlation-request-id"] != "bad value!"
    assert read_log(client)["value"] == []  # reads are not recorded
    assert "x-ms-correlation-request-id" not in client.get("/docs").headers


def test_recorder_looks_up_an_operation_by_its_correlation_id(client: TestClient) -> None:
    client.put(CONN_URL, json={})
    response = client.delete(CONN_URL)
    assert response.status_code == 202
    mine = response.headers["x-ms-correlation-request-id"]
    body = read_log(client, f" and correlationId eq '{mine}'")
    assert [(e["status"]["value"], e["httpRequest"]["method"]) for e in body["value"]] == [
        ("Accepted", "DELETE"),
        ("Started", "DELETE"),
    ]
    assert body["value"][0]["operationName"]["value"].endswith("/privateEndpointConnections/delete")


def test_recorder_keeps_the_bodies_of_role_assignments(client: TestClient) -> None:
    """What `az role assignment list-changelogs` reads: requestbody on the PUT's Begin,
    responseBody on the DELETE's End (compact JSON text)."""
    url = f"{ASSIGNMENT}?api-version=2022-04-01"
    sent = {"properties": {"roleDefinitionId": "r", "principalId": OID}}

    def events_of(correlation: str) -> tuple[dict[str, Any], dict[str, Any]]:
        end, begin = read_log(client, f" and correlationId eq '{correlation}'")["value"]
        return begin, end

    put = client.put(url, json=sent, headers={"x-ms-correlation-request-id": "c-put"})
    assert put.status_code == 201
    begin, end = events_of("c-put")
    assert begin["properties"]["requestbody"] == json.dumps(sent, separators=(",", ":"))
    assert "responseBody" not in end["properties"]

    deleted = client.delete(url, headers={"x-ms-correlation-request-id": "c-del"})
    assert deleted.status_code == 200
    begin, end = events_of("c-del")
    assert json.loads(end["properties"]["responseBody"])["properties"]["principalId"] == OID
    assert "requestbody" not in begin["properties"]

    # An unparsable body is not kept; nothing else carries bodies.
    bad = client.put(url, content=b"{not json", headers={"x-ms-correlation-request-id": "c-bad"})
    assert bad.status_code == 400
    begin, end = events_of("c-bad")
    assert "requestbody" not in begin["properties"]
    client.put(CONN_URL, json=sent)
    conn_events = read_log(client, f" and resourceId eq '{CONN}'")["value"]
    assert all("requestbody" not in e["properties"] for e in conn_events)


def test_recorder_records_actions_at_their_scope(client: TestClient) -> None:
    url = f"/subscriptions/{SUB}/providers/Microsoft.Network/locations/eastus/checkVisibility"
    assert client.post(url + "?api-version=2024-05-01", json={}).status_code == 200
    end, _begin = read_log(client, " and resourceProvider eq 'microsoft.network'")["value"]
    assert end["operationName"]["value"] == "Microsoft.Network/locations/checkVisibility/action"
    assert end["resourceId"] == f"/subscriptions/{SUB}/providers/Microsoft.Network/locations/eastus"
    assert end["resourceGroupName"] == ""


def test_recorder_records_a_denial_as_one_failed_event(client: TestClient) -> None:
    response = client.put(CONN_URL, json={}, headers={"x-test-deny": "1"})
    assert response.status_code == 403
    (denied,) = read_log(client, " and status eq 'Failed'")["value"]
    assert denied["eventName"]["value"] == "EndRequest"
    assert denied["level"] == "Error"
    assert denied["subStatus"] == {
        "value": "Forbidden",
        "localizedValue": "Forbidden (HTTP Status Code: 403)",
    }
    assert denied["properties"]["statusCode"] == "Forbidden"
    assert '"code":"AuthorizationFailed"' in denied["properties"]["statusMessage"]


def test_recorder_records_a_failed_request_after_its_start(client: TestClient) -> None:
    assert client.put(CONN_URL, json={}, headers={"x-test-bad": "1"}).status_code == 400
    failed, started = read_log(client)["value"]
    assert (started["status"]["value"], failed["status"]["value"]) == ("Started", "Failed")
    assert failed["subStatus"]["value"] == "BadRequest"
    assert "InvalidRequestContent" in failed["properties"]["statusMessage"]


def test_recorder_records_a_crash_as_a_500(live_log: SqlActivityLog) -> None:
    app = build_app(live_log)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as c:
        assert c.put(CONN_URL, json={}, headers={"x-test-crash": "1"}).status_code == 500
        failed, _started = read_log(c)["value"]
    assert failed["subStatus"]["value"] == "InternalServerError"


def test_recorder_skips_anonymous_unknown_and_non_subscription_requests(
    client: TestClient,
) -> None:
    assert client.put(CONN_URL, json={}, headers={"x-test-anonymous": "1"}).status_code == 200
    url = f"/subscriptions/{SUB}/providers/Microsoft.Network/unknown/x?api-version=2024-05-01"
    assert client.put(url, json={}).status_code == 200
    bad_sub = CONN_URL.replace(SUB, "not-a-guid")
    assert client.put(bad_sub, json={}).status_code == 200
    assert read_log(client)["value"] == []


def test_recorder_survives_a_failing_store(
    live_log: SqlActivityLog, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        clock = staticmethod(lambda: datetime.now(UTC))
        retention = timedelta(days=90)

        def record(self, *events: ActivityEvent) -> None:
            raise OSError("disk full")

        def query(self, *args: Any, **kwargs: Any) -> Any:
            return live_log.query(*args, **kwargs)

    with (
        TestClient(build_app(Broken()), base_url="https://testserver") as c,
        caplog.at_level(logging.ERROR, logger="privatelink.api.activity_log"),
    ):
        assert c.put(CONN_URL, json={}).status_code == 200
    assert "could not record PUT" in caplog.text


def test_route_pages_with_next_links_that_keep_the_filter(client: TestClient) -> None:
    for _ in range(4):
        client.put(CONN_URL, json={})  # 8 events, page size 3
    tail = f" and resourceUri eq '{PLS}'"
    first = read_log(client, tail, **{"$select": "eventDataId , status"})
    seen = [item["eventDataId"] for item in first["value"]]
    assert set(first["value"][0]) == {"eventDataId", "status"}
    link = first["nextLink"]
    assert link.startswith(f"https://testserver{LOG_URL}?api-version=2015-04-01&%24filter=")
    while link:
        page = client.get(link)
        assert page.status_code == 200
        body = page.json()
        assert all(set(item) == {"eventDataId", "status"} for item in body["value"])
        seen += [item["eventDataId"] for item in body["value"]]
        link = body.get("nextLink")
    assert len(seen) == len(set(seen)) == 8


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        (LOG_URL + "?$filter=eventTimestamp ge 2026-01-01", 400, "MissingApiVersionParameter"),
        (LOG_URL + "?api-version=2024-05-01", 400, "InvalidApiVersionParameter"),
        (LOG_URL + "?api-version=2015-04-01", 400, "BadRequest"),
        (LOG_URL + "?api-version=2015-04-01&$filter=eventTimestamp ge x", 400, "BadRequest"),
        (
            LOG_URL.replace(SUB, "nope") + "?api-version=2015-04-01&$filter=eventTimestamp ge x",
            400,
            "InvalidSubscriptionId",
        ),
        (
            LOG_URL.replace("management", "other") + "?api-version=2015-04-01",
            404,
            "InvalidResourceType",
        ),
    ],
)
def test_route_errors(client: TestClient, url: str, status: int, code: str) -> None:
    response = client.get(url)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_route_refuses_bad_select_and_token(client: TestClient) -> None:
    start = datetime.now(UTC).isoformat()
    params = {"api-version": "2015-04-01", "$filter": f"eventTimestamp ge '{start}'"}
    bad_select = client.get(LOG_URL, params={**params, "$select": "nope"})
    assert (bad_select.status_code, bad_select.json()["error"]["code"]) == (400, "BadRequest")
    bad_token = client.get(LOG_URL, params={**params, "$skipToken": "x"})
    assert bad_token.status_code == 400
    assert bad_token.json()["error"]["code"] == "InvalidRequestContent"
    empty = client.get(
        LOG_URL,
        params={**params, "$filter": params["$filter"] + " and eventChannels eq 'Admin'"},
    )
    assert empty.json() == {"value": []}


def test_route_shape_matches_the_sdk_model(client: TestClient) -> None:
    client.put(CONN_URL, json={}, headers={"x-test-deny": "1"})
    client.put(CONN_URL, json={})
    body = read_log(client)
    nested = {
        "authorization": models.SenderAuthorization,
        "eventName": models.LocalizableString,
        "category": models.LocalizableString,
        "httpRequest": models.HttpRequestInfo,
        "resourceProviderName": models.LocalizableString,
        "resourceType": models.LocalizableString,
        "operationName": models.LocalizableString,
        "status": models.LocalizableString,
        "subStatus": models.LocalizableString,
    }
    top_keys = {entry["key"] for entry in models.EventData._attribute_map.values()}
    for item in body["value"]:
        assert set(item) == top_keys  # every EventData property, nothing else
        for name, model in nested.items():
            assert set(item[name]) <= {e["key"] for e in model._attribute_map.values()}
        for name in ("claims", "properties"):  # {str} in the model
            assert all(isinstance(v, str) for v in item[name].values())
    parsed = models.EventDataCollection.deserialize(body)
    assert [e.status.value for e in parsed.value] == ["Succeeded", "Started", "Failed"]
    assert parsed.value[0].event_timestamp.tzinfo is not None
    assert parsed.value[2].sub_status.localized_value == "Forbidden (HTTP Status Code: 403)"


# --- azure-mgmt-monitor, unchanged, against the test app ----------------------------------


class _TestClientAdapter(requests.adapters.BaseAdapter):
    """A requests adapter that hands each request to a Starlette TestClient."""

    def __init__(self, client: TestClient) -> None:
        super().__init__()
        self.client = client

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        answer = self.client.request(
            str(request.method),
            str(request.url),
            headers=dict(request.headers),
            content=request.body,
        )
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-encoding"}
        headers["content-length"] = str(len(answer.content))
        response = requests.Response()
        response.status_code = answer.status_code
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(answer.content),
            headers=headers,
            status=answer.status_code,
            preload_content=False,
        )
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        response.url = str(request.url)
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(datetime.now(UTC).timestamp()) + 3600)


def test_sdk_lists_the_activity_log_unchanged(client: TestClient) -> None:
    for _ in range(2):
        client.put(CONN_URL, json={}, headers={"x-ms-correlation-request-id": "sdk-corr"})
    client.put(CONN_URL, json={}, headers={"x-test-deny": "1"})
    session = requests.Session()
    session.mount("https://", _TestClientAdapter(client))
    monitor = MonitorManagementClient(
        _Credential(),
        SUB,
        base_url="https://testserver",
        transport=RequestsTransport(session=session, session_owner=False),
    )
    start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = f"eventTimestamp ge '{start}' and eventTimestamp le '{end}'"
    everything = list(monitor.activity_logs.list(filter=f"{base} and resourceUri eq '{PLS}'"))
    assert len(everything) == 5  # two pages of three
    assert {e.caller for e in everything} == {OID}
    assert [e.status.value for e in everything].count("Failed") == 1
    mine = list(
        monitor.activity_logs.list(
            filter=f"{base} and correlationId eq 'sdk-corr'",
            select="eventName,operationName,status,correlationId",
        )
    )
    assert [(e.event_name.value, e.status.value) for e in mine] == [
        ("EndRequest", "Succeeded"),
        ("BeginRequest", "Started"),
    ] * 2
    assert all(e.caller is None and e.correlation_id == "sdk-corr" for e in mine)
    assert mine[0].operation_name.value.endswith("/privateEndpointConnections/write")


def test_recorder_with_the_real_action_table(live_log: SqlActivityLog) -> None:
    actions = pytest.importorskip("privatelink.core.actions", reason="core/actions.py not there")
    app = build_app(live_log)
    app.user_middleware = [
        m
        if m.cls is not api.ActivityRecorder
        else type(m)(m.cls, log=live_log, describe=actions.describe)
        for m in app.user_middleware
    ]
    with TestClient(app, base_url="https://testserver") as c:
        assert c.put(CONN_URL, json={}).status_code == 200
        end, begin = read_log(c, f" and resourceUri eq '{PLS}'")["value"]
    write = "Microsoft.Network/privateLinkServices/privateEndpointConnections/write"
    assert end["operationName"]["value"] == begin["operationName"]["value"] == write
    assert end["resourceId"] == CONN
