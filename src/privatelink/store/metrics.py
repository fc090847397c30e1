"""SQLAlchemy store of metric points: one table, minute points for a day, hour points after.

A row is one `core.metrics.Point`: (resource key, metric, dimensions as canonical JSON,
grain, bucket start) and its total, count, minimum and maximum. `add` merges points into
the rows of their buckets (a minute is written by every sample that falls in it), so a
query sees the current minute as it fills. `compact` folds minute rows older than
`downsample_after` into hour rows and deletes rows older than the retention (30 days by
default), as `core.metrics.downsample` defines it. Works on SQLite and PostgreSQL; has its
own `MetaData`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping

from privatelink.core.metrics import HOUR, MINUTE, Dims, Point, downsample

metadata = MetaData()

metric_points = Table(
    "metric_points",
    metadata,
    Column("resource_key", Text, nullable=False),
    Column("metric", String(64), nullable=False),
    Column("dims", Text, nullable=False),  # canonical JSON of [[name, value], ...]
    Column("grain", Integer, nullable=False),  # seconds: 60 or 3600
    Column("ts", BigInteger, nullable=False),  # bucket start, seconds since the epoch
    Column("total", Float, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("minimum", Float, nullable=False),
    Column("maximum", Float, nullable=False),
    PrimaryKeyConstraint("resource_key", "metric", "dims", "grain", "ts"),
    Index("ix_metric_points_query", "resource_key", "metric", "ts"),
    Index("ix_metric_points_age", "grain", "ts"),
)

DEFAULT_RETENTION_DAYS = 30
DEFAULT_DOWNSAMPLE_AFTER = timedelta(days=1)
_BATCH = 500  # rows per statement


def _utc_now() -> datetime:
    return datetime.now(UTC)


def dims_text(dims: Dims) -> str:
    """Dimensions as stored: compact JSON of the sorted pairs."""
    return json.dumps([list(d) for d in dims], separators=(",", ":"))


def _dims(text: str) -> Dims:
    return tuple((str(k), str(v)) for k, v in json.loads(text))


class SqlMetricStore:
    """Metric points on an engine: `add`, `points`, `compact`."""

    def __init__(
        self,
        engine: Engine,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        downsample_after: timedelta = DEFAULT_DOWNSAMPLE_AFTER,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, not {retention_days}")
        if downsample_after < timedelta(hours=1):
            raise ValueError("downsample_after must be at least an hour")
        self.engine = engine
        self.retention_days = retention_days
        self.downsample_after = downsample_after
        self.clock = clock
        self._lock = threading.Lock()  # one writer at a time: merges read what they add to
        metadata.create_all(engine)

    @property
    def retention(self) -> timedelta:
        """How long points are kept."""
        return timedelta(days=self.retention_days)

    def add(self, points: Iterable[Point]) -> None:
        """Merge points into their buckets' rows (one transaction)."""
        rows = [_row(p) for p in points]
        if not rows:
            return
        with self._lock, self.engine.begin() as conn:
            for i in range(0, len(rows), _BATCH):
                self._merge(conn, rows[i : i + _BATCH])

    def _merge(self, conn: Connection, rows: list[dict[str, object]]) -> None:
        dialect = self.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(metric_points).values(rows)
        t, new = metric_points.c, stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["resource_key", "metric", "dims", "grain", "ts"],
            set_={
                "total": t.total + new.total,
                "count": t.count + new.count,
                "minimum": case((new.minimum < t.minimum, new.minimum), else_=t.minimum),
                "maximum": case((new.maximum > t.maximum, new.maximum), else_=t.maximum),
            },
        )
        conn.execute(stmt)

    def points(
        self, resource_key: str, metrics: Sequence[str], start: datetime, end: datetime
    ) -> list[Point]:
        """The points of a resource's metrics whose buckets overlap [start, end)."""
        lo = int(start.timestamp()) - HOUR  # an hour point may start before the span
        hi = int(end.timestamp())
        t = metric_points.c
        query = select(metric_points).where(
            and_(
                t.resource_key == resource_key.lower(),
                t.metric.in_(list(metrics)),
                t.ts > lo,
                t.ts < hi,
            )
        )
        with self.engine.connect() as conn:
            return [_point(row) for row in conn.execute(query).mappings()]

    def compact(self) -> tuple[int, int]:
        """Fold minute points older than `downsample_after` (whole hours) into hour points
        and delete points older than the retention: (minute rows folded, rows deleted)."""
        now = self.clock()
        cutoff = int((now - self.downsample_after).timestamp()) // HOUR * HOUR
        expired = int((now - self.retention).timestamp())
        t = metric_points.c
        with self._lock, self.engine.begin() as conn:
            old = [
                _point(row)
                for row in conn.execute(
                    select(metric_points).where(and_(t.grain == MINUTE, t.ts < cutoff))
                ).mappings()
            ]
            hours = downsample(old, HOUR)
            rows = [_row(p) for p in hours]
            for i in range(0, len(rows), _BATCH):
                self._merge(conn, rows[i : i + _BATCH])
            conn.execute(delete(metric_points).where(and_(t.grain == MINUTE, t.ts < cutoff)))
            gone = conn.execute(delete(metric_points).where(t.ts < expired)).rowcount
        return len(old), int(gone or 0)

    def count(self) -> int:
        """How many rows the table holds (tests, status)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(metric_points)).scalar_one())


def _row(p: Point) -> dict[str, object]:
    return {
        "resource_key": p.resource.lower(),
        "metric": p.metric,
        "dims": dims_text(p.dims),
        "grain": p.grain,
        "ts": p.ts,
        "total": p.total,
        "count": p.count,
        "minimum": p.minimum,
        "maximum": p.maximum,
    }


def _point(r: RowMapping) -> Point:
    return Point(
        r["resource_key"],
        r["metric"],
        _dims(r["dims"]),
        int(r["grain"]),
        int(r["ts"]),
        float(r["total"]),
        int(r["count"]),
        float(r["minimum"]),
        float(r["maximum"]),
    )
