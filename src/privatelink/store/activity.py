"""SQLAlchemy store of the activity log: one table of events, kept for a retention period.

The table holds each event as JSON (`ActivityEvent.to_record`) beside the columns the
`$filter`s need, lower-cased: subscription, time (integer microseconds since the epoch, UTC),
resource id, resource group, provider, correlation id, caller (object id) and its app id,
status and level. Queries are newest first, paged by a keyset token (time, sequence), so a
page boundary stays put while events are added or purged. Events older than the retention
are deleted at most once a minute, on write, and never returned. Works on SQLite and
PostgreSQL; has its own `MetaData`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    insert,
    or_,
    select,
)
from sqlalchemy.engine import Engine

from privatelink.core import errors
from privatelink.core.activity import ActivityEvent

metadata = MetaData()

activity_events = Table(
    "activity_events",
    metadata,
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),  # SQLite autoincrements INTEGER only
        primary_key=True,
        autoincrement=True,
    ),
    Column("subscription", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),  # microseconds since 1970-01-01 UTC
    Column("resource_key", Text, nullable=False),
    Column("resource_group", String(200), nullable=False),
    Column("provider", String(200), nullable=False),
    Column("correlation_id", String(200), nullable=False),
    Column("caller", String(200), nullable=False),
    Column("app_id", String(200), nullable=False),
    Column("status", String(32), nullable=False),
    Column("level", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_activity_events_subscription_ts", "subscription", "ts", "seq"),
    Index("ix_activity_events_correlation", "subscription", "correlation_id"),
    Index("ix_activity_events_ts", "ts"),
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PURGE_INTERVAL = timedelta(minutes=1)
DEFAULT_PAGE = 100
_SEQ_DIGITS = 12  # a token is "<ts><seq padded to 12 digits>", digits only
_MAX_TOKEN = 40


def micros(when: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (when - EPOCH) // timedelta(microseconds=1)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _clean(value: str) -> str:
    # PostgreSQL text cannot hold NUL; no request path or header we record has one anyway.
    return value.replace("\x00", "")


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class SqlActivityLog:
    """The activity log on an engine: `record` events, `query` them, `purge` old ones."""

    def __init__(
        self,
        engine: Engine,
        retention_days: int = 90,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, not {retention_days}")
        self.engine = engine
        self.retention_days = retention_days
        self.clock = clock
        self._lock = threading.Lock()
        self._last_purge: datetime | None = None
        metadata.create_all(engine)

    @property
    def retention(self) -> timedelta:
        """How long events are kept."""
        return timedelta(days=self.retention_days)

    def record(self, *events: ActivityEvent) -> None:
        """Store events (one transaction); purge expired ones if a minute has passed."""
        rows = [self._row(event) for event in events]
        now = self.clock()
        with self._lock:
            due = self._last_purge is None or now - self._last_purge >= PURGE_INTERVAL
            with self.engine.begin() as conn:
                if rows:
                    conn.execute(insert(activity_events), rows)
                if due:
                    conn.execute(
                        delete(activity_events).where(
                            activity_events.c.ts < micros(now - self.retention)
                        )
                    )
            if due:
                self._last_purge = now

    def purge(self) -> int:
        """Delete every event older than the retention now; how many went."""
        now = self.clock()
        with self._lock, self.engine.begin() as conn:
            result = conn.execute(
                delete(activity_events).where(activity_events.c.ts < micros(now - self.retention))
            )
            self._last_purge = now
        return int(result.rowcount or 0)

    @staticmethod
    def _row(event: ActivityEvent) -> dict[str, object]:
        return {
            "subscription": _clean(event.subscription_id.lower()),
            "ts": micros(event.timestamp),
            "resource_key": _clean(event.resource_id.rstrip("/").lower()),
            "resource_group": _clean(event.resource_group.lower()),
            "provider": _clean(event.resource_provider.lower()),
            "correlation_id": _clean(event.correlation_id.lower()),
            "caller": _clean(event.caller.lower()),
            "app_id": _clean(event.caller_app_id.lower()),
            "status": _clean(event.status.lower()),
            "level": _clean(event.level.lower()),
            "body": _clean(json.dumps(event.to_record(), separators=(",", ":"))),
        }

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
        top: int = DEFAULT_PAGE,
        token: str | None = None,
    ) -> tuple[list[ActivityEvent], str | None]:
        """One page of a subscription's events in [start, end], newest first.

        String filters are case-insensitive; `resource_id` matches the resource and its
        children; `caller` matches the object id or the app id. `token` is the previous
        page's next token (None for the first page); the result's token is None on the
        last page. An unreadable token is a 400 InvalidRequestContent.
        """
        if top < 1:
            raise ValueError(f"top must be at least 1, not {top}")
        level_set = None if levels is None else sorted({level.lower() for level in levels})
        wanted = [subscription, resource_id, resource_group, correlation_id, caller]
        wanted += [resource_provider, status, *(level_set or ())]
        if any("\x00" in value for value in wanted if value):
            return [], None
        col = activity_events.c
        floor = micros(self.clock() - self.retention)
        cond: list[ColumnElement[bool]] = [
            col.subscription == subscription.lower(),
            col.ts >= max(micros(start), floor),
            col.ts <= micros(end),
        ]
        if resource_id:
            rid = resource_id.rstrip("/").lower()
            cond.append(
                or_(col.resource_key == rid, col.resource_key.like(_like_prefix(rid + "/"), "\\"))
            )
        if resource_group:
            cond.append(col.resource_group == resource_group.lower())
        if correlation_id:
            cond.append(col.correlation_id == correlation_id.lower())
        if caller:
            cond.append(or_(col.caller == caller.lower(), col.app_id == caller.lower()))
        if resource_provider:
            cond.append(col.provider == resource_provider.lower())
        if status:
            cond.append(col.status == status.lower())
        if level_set is not None:
            cond.append(col.level.in_(level_set))
        if token is not None:
            ts, seq = self._parse_token(token)
            cond.append(or_(col.ts < ts, and_(col.ts == ts, col.seq < seq)))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(col.seq, col.ts, col.body)
                .where(and_(*cond))
                .order_by(col.ts.desc(), col.seq.desc())
                .limit(top + 1)
            ).all()
        events = [ActivityEvent.from_record(json.loads(row.body)) for row in rows[:top]]
        next_token = None
        if len(rows) > top:
            last = rows[top - 1]
            next_token = f"{last.ts}{last.seq:0{_SEQ_DIGITS}d}"
        return events, next_token

    @staticmethod
    def _parse_token(token: str) -> tuple[int, int]:
        digits = token.isascii() and token.isdigit()  # str.isdigit() admits '²'
        if not digits or not (_SEQ_DIGITS < len(token) <= _MAX_TOKEN):
            raise errors.InvalidRequestContent(f"Invalid $skipToken '{token[:40]}'.")
        return int(token[:-_SEQ_DIGITS]), int(token[-_SEQ_DIGITS:])
