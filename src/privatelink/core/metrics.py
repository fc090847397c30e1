"""Azure Monitor metrics as data: definitions, points, aggregation, downsampling, queries.

Pure: no I/O. What the sampler measures becomes `Sample`s (one value of one metric of one
resource, with its dimensions, at one instant); samples fold into `Point`s, one per
(resource, metric, dimensions, grain, bucket) holding total, count, minimum and maximum,
as Azure Monitor keeps a minute. Minute points older than a day fold into hour points
(`downsample`), and a query (`query`) folds points into the buckets of the interval it
asks for, split by the dimensions its `$filter` names, as Azure Monitor answers
`GET {resource}/providers/Microsoft.Insights/metrics`.

The metric names, units, aggregations and dimensions are Azure's ("Supported metrics for
Microsoft.Network/privateLinkServices", ".../privateEndpoints", ".../loadBalancers").
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from privatelink.core import errors

MINUTE = 60
HOUR = 3600
DAY = 86400

AGGREGATIONS = ("Average", "Count", "Maximum", "Minimum", "Total")
_AGGREGATION_OF = {a.lower(): a for a in AGGREGATIONS}
# What metricDefinitions lists as supported (Azure lists "None" too: no aggregation asked).
SUPPORTED_AGGREGATIONS = ("None", "Average", "Minimum", "Maximum", "Total", "Count")

# The query intervals Azure Monitor accepts (metricAvailabilities' time grains), and FULL:
# one point for the whole timespan.
INTERVALS = {
    "PT1M": MINUTE,
    "PT5M": 5 * MINUTE,
    "PT15M": 15 * MINUTE,
    "PT30M": 30 * MINUTE,
    "PT1H": HOUR,
    "PT6H": 6 * HOUR,
    "PT12H": 12 * HOUR,
    "P1D": DAY,
}
FULL = "FULL"
DEFAULT_INTERVAL = "PT1M"
DEFAULT_TIMESPAN = timedelta(hours=1)
DEFAULT_TOP = 10
MAX_METRIC_NAMES = 20  # Azure: "At most 20 metric names can be specified"
MAX_BUCKETS = 100_000  # a query never builds more points than this per series


# --- errors --------------------------------------------------------------------------------


class MetricNotFound(errors.BadRequest):
    """Azure's own code and message for a metric the resource type does not have."""

    code = "BadRequest"
    template = (
        "Failed to find metric configuration for provider: {provider}, resource Type: "
        "{type}, metric: {metric}, Valid metrics: {valid}"
    )


class InvalidMetricTimespan(errors.BadRequest):
    code = "InvalidMetricTimespan"  # ours
    echo_limit = errors.MAX_ECHO
    template = (
        "timespan '{value}' is invalid: use 'start/end' (ISO 8601 times), 'start/duration' "
        "or a duration ending now (e.g. PT1H), with the start before the end."
    )


class InvalidMetricInterval(errors.BadRequest):
    code = "InvalidMetricInterval"  # ours
    echo_limit = errors.MAX_ECHO
    template = "interval '{value}' is invalid: use one of {valid} or FULL."


class InvalidMetricAggregation(errors.BadRequest):
    code = "InvalidMetricAggregation"  # ours
    echo_limit = errors.MAX_ECHO
    template = "aggregation '{value}' is invalid: use {valid} (comma separated)."


class InvalidMetricFilter(errors.BadRequest):
    code = "InvalidMetricFilter"  # ours
    echo_limit = errors.MAX_ECHO
    template = "$filter '{value}' is invalid: {why}"


class InvalidMetricQuery(errors.BadRequest):
    code = "InvalidMetricQuery"  # ours
    echo_limit = errors.MAX_ECHO
    template = "{why}"


# --- definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricDefinition:
    """One metric of a resource type, as metricDefinitions describes it."""

    name: str
    display_name: str
    description: str
    unit: str  # Azure's: Count, Bytes, Percent
    primary: str  # the default aggregation
    dimensions: tuple[str, ...] = ()
    # A counter (bytes, packets, SYNs): an empty bucket is 0, not missing.
    counter: bool = False


PLS_TYPE = "Microsoft.Network/privateLinkServices"
PE_TYPE = "Microsoft.Network/privateEndpoints"
LB_TYPE = "Microsoft.Network/loadBalancers"

_FRONTEND = ("FrontendIPAddress", "FrontendPort", "Direction")

DEFINITIONS: dict[str, tuple[MetricDefinition, ...]] = {
    PLS_TYPE.lower(): (
        MetricDefinition(
            "PLSBytesIn", "Bytes In", "Total number of Bytes In", "Count", "Total", counter=True
        ),
        MetricDefinition(
            "PLSBytesOut", "Bytes Out", "Total number of Bytes Out", "Count", "Total", counter=True
        ),
        MetricDefinition(
            "PLSNatPortsUsage",
            "Nat Ports Usage",
            "Nat Ports Usage",
            "Percent",
            "Average",
            ("PrivateLinkServiceIPAddress",),
        ),
    ),
    PE_TYPE.lower(): (
        MetricDefinition(
            "PEBytesIn", "Bytes In", "Total number of Bytes In", "Count", "Total", counter=True
        ),
        MetricDefinition(
            "PEBytesOut", "Bytes Out", "Total number of Bytes Out", "Count", "Total", counter=True
        ),
    ),
    LB_TYPE.lower(): (
        MetricDefinition(
            "VipAvailability",
            "Data Path Availability",
            "Average Load Balancer data path availability per time duration",
            "Count",
            "Average",
            ("FrontendIPAddress", "FrontendPort"),
        ),
        MetricDefinition(
            "DipAvailability",
            "Health Probe Status",
            "Average Load Balancer health probe status per time duration",
            "Count",
            "Average",
            (
                "ProtocolType",
                "BackendPort",
                "FrontendIPAddress",
                "FrontendPort",
                "BackendIPAddress",
            ),
        ),
        MetricDefinition(
            "ByteCount",
            "Byte Count",
            "Total number of Bytes transmitted within time period",
            "Bytes",
            "Total",
            _FRONTEND,
            counter=True,
        ),
        MetricDefinition(
            "PacketCount",
            "Packet Count",
            "Total number of Packets transmitted within time period",
            "Count",
            "Total",
            _FRONTEND,
            counter=True,
        ),
        MetricDefinition(
            "SYNCount",
            "SYN Count",
            "Total number of SYN Packets transmitted within time period",
            "Count",
            "Total",
            _FRONTEND,
            counter=True,
        ),
    ),
}


def definitions_for(resource_type: str) -> tuple[MetricDefinition, ...]:
    """The metrics of an ARM resource type (none for a type without metrics)."""
    return DEFINITIONS.get(resource_type.lower(), ())


def pick_metrics(resource_type: str, names: str | None) -> list[MetricDefinition]:
    """The metrics a `metricnames` value asks for (case-insensitive; Azure's `%2` stands
    for a comma inside a name); none given: the type's first metric, as Azure answers."""
    known = definitions_for(resource_type)
    provider, _, type_name = resource_type.partition("/")
    if not names:
        return list(known[:1])
    wanted = [n.strip().replace("%2", ",") for n in names.split(",") if n.strip()]
    if len(wanted) > MAX_METRIC_NAMES:
        raise InvalidMetricQuery(why=f"at most {MAX_METRIC_NAMES} metric names can be given")
    by_name = {d.name.lower(): d for d in known}
    picked: list[MetricDefinition] = []
    for name in wanted:
        found = by_name.get(name.lower())
        if found is None:
            raise MetricNotFound(
                provider=provider,
                type=type_name,
                metric=errors.clip(name),
                valid=",".join(d.name for d in known),
            )
        if found not in picked:
            picked.append(found)
    return picked


# --- samples and points --------------------------------------------------------------------

Dims = tuple[tuple[str, str], ...]  # (dimension name, value), sorted by name


def dims_of(values: Mapping[str, object]) -> Dims:
    """Dimensions in their canonical form: sorted by name, values as text."""
    return tuple(sorted((k, str(v)) for k, v in values.items()))


@dataclass(frozen=True)
class Sample:
    """One measured value of one metric of one resource at one instant (epoch seconds)."""

    resource: str  # the resource id's key (lower case)
    metric: str
    dims: Dims
    at: float
    value: float


@dataclass(frozen=True)
class Point:
    """A metric's samples within one bucket of `grain` seconds starting at `ts`."""

    resource: str
    metric: str
    dims: Dims
    grain: int
    ts: int
    total: float
    count: int
    minimum: float
    maximum: float

    @property
    def series(self) -> tuple[str, str, Dims, int, int]:
        """What identifies the point: two points of the same series merge."""
        return (self.resource, self.metric, self.dims, self.grain, self.ts)

    @property
    def average(self) -> float:
        """The mean of the samples (0 for none)."""
        return self.total / self.count if self.count else 0.0


def merge(a: Point, b: Point) -> Point:
    """Two points of one series as one (sums, and the extremes of both)."""
    if a.series != b.series:
        raise ValueError("points of different series do not merge")
    return Point(
        a.resource,
        a.metric,
        a.dims,
        a.grain,
        a.ts,
        a.total + b.total,
        a.count + b.count,
        min(a.minimum, b.minimum),
        max(a.maximum, b.maximum),
    )


def _fold(points: Iterable[Point]) -> list[Point]:
    merged: dict[tuple[str, str, Dims, int, int], Point] = {}
    for p in points:
        before = merged.get(p.series)
        merged[p.series] = p if before is None else merge(before, p)
    return sorted(merged.values(), key=lambda p: (p.resource, p.metric, p.dims, p.ts))


def points_of(samples: Iterable[Sample], grain: int = MINUTE) -> list[Point]:
    """Samples folded into points of `grain` seconds (by the bucket each falls in)."""
    return _fold(
        Point(
            s.resource,
            s.metric,
            s.dims,
            grain,
            int(s.at // grain) * grain,
            s.value,
            1,
            s.value,
            s.value,
        )
        for s in samples
    )


def downsample(points: Iterable[Point], grain: int = HOUR) -> list[Point]:
    """Points folded into coarser ones of `grain` seconds: totals and counts add up,
    extremes are kept, so every aggregation of the coarse point equals that of its parts."""
    out = []
    for p in points:
        if grain % p.grain:
            raise ValueError(f"a {p.grain}s point does not fold into {grain}s")
        ts = p.ts // grain * grain
        out.append(Point(p.resource, p.metric, p.dims, grain, ts, *_values(p)))
    return _fold(out)


def _values(p: Point) -> tuple[float, int, float, float]:
    return (p.total, p.count, p.minimum, p.maximum)


# --- query parameters ----------------------------------------------------------------------

_DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta | None:
    """An ISO 8601 duration of days, hours, minutes, seconds (None if it is none)."""
    m = _DURATION.fullmatch(text.strip())
    if m is None or not any(m.groupdict().values()) or text.strip().upper().endswith("T"):
        return None
    return timedelta(
        days=int(m["d"] or 0),
        hours=int(m["h"] or 0),
        minutes=int(m["m"] or 0),
        seconds=float(m["s"] or 0),
    )


def _parse_time(text: str) -> datetime | None:
    value = text.strip()
    if not value:
        return None
    value = re.sub(r"[zZ]$", "+00:00", value)
    # .NET writes up to seven fraction digits; Python reads six.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    # A time without an offset is UTC, as Azure reads it (az sends utcnow().isoformat()).
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of a `timespan`: 'start/end', 'start/duration', 'duration/end' or a
    duration ending now; none: the last hour. az quotes it twice (`quote_plus` before its
    own encoding), so a value still holding %-escapes is decoded once more."""
    if not text:
        return now - DEFAULT_TIMESPAN, now
    raw = text
    if "%" in text:
        text = unquote(text)
    first, sep, second = text.partition("/")
    start: datetime | None
    end: datetime | None
    if not sep:
        span = parse_duration(first)
        start, end = (now - span, now) if span else (None, None)
    else:
        start, end = _parse_time(first), _parse_time(second)
        if start is not None and end is None and (span := parse_duration(second)):
            end = start + span
        elif start is None and end is not None and (span := parse_duration(first)):
            start = end - span
    if start is None or end is None or start >= end:
        raise InvalidMetricTimespan(value=raw)
    return start, end


def parse_interval(text: str | None) -> int | None:
    """Seconds of an `interval` (default PT1M); None for FULL."""
    value = (text or DEFAULT_INTERVAL).strip().upper()
    if value == FULL:
        return None
    if value in INTERVALS:
        return INTERVALS[value]
    span = parse_duration(value)
    seconds = int(span.total_seconds()) if span else -1
    if seconds in INTERVALS.values():  # e.g. PT60M
        return seconds
    raise InvalidMetricInterval(value=text or "", valid=", ".join(INTERVALS))


def interval_text(seconds: int | None) -> str:
    """The canonical text of an interval."""
    if seconds is None:
        return FULL
    return next(k for k, v in INTERVALS.items() if v == seconds)


def parse_aggregations(text: str | None, default: str) -> list[str]:
    """Aggregation names (case-insensitive, comma separated); none: `default`."""
    if not text:
        return [default]
    picked: list[str] = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name == "none":
            continue  # Azure: no aggregation asked; the data points carry only times
        if name not in _AGGREGATION_OF:
            raise InvalidMetricAggregation(value=text, valid=", ".join(AGGREGATIONS))
        if _AGGREGATION_OF[name] not in picked:
            picked.append(_AGGREGATION_OF[name])
    return picked


@dataclass(frozen=True)
class DimensionFilter:
    """A `$filter`: per dimension (lower-cased name), the values wanted (lower-cased),
    or None for every value (`'*'`). Every named dimension splits the answer."""

    wanted: Mapping[str, frozenset[str] | None] = field(default_factory=dict)

    def split(self) -> tuple[str, ...]:
        """The dimensions the answer is split by, in the order the filter named them."""
        return tuple(self.wanted)

    def admits(self, dims: Mapping[str, str]) -> bool:
        """Whether a point with these dimensions (lower-cased names) passes."""
        for name, values in self.wanted.items():
            if values is not None and dims.get(name, "").lower() not in values:
                return False
        return True


_TOKEN = re.compile(r"\s*(?:(\()|(\))|'((?:[^']|'')*)'|([^\s()']+))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError("unreadable near " + text[pos : pos + 20])
        pos = m.end()
        if m.group(1) or m.group(2):
            out.append(("paren", m.group(0).strip()))
        elif m.group(3) is not None:
            out.append(("value", m.group(3).replace("''", "'")))
        elif m.group(4):
            out.append(("word", m.group(4)))
    return out


def parse_filter(text: str | None, dimensions: Sequence[str]) -> DimensionFilter:
    """Azure Monitor's dimension `$filter`: `A eq 'a1' and B eq 'b1' or B eq 'b2'`.

    Clauses are `name eq 'value'` (`'*'`: every value) joined by `and`, or by `or` between
    clauses of the same dimension; parentheses group. A name the metric does not have is
    refused (Azure's ValidateDimensions, on by default)."""
    if not text or not text.strip():
        return DimensionFilter()
    known = {d.lower() for d in dimensions}
    try:
        tokens = [t for t in _tokens(text) if t[0] != "paren"]
    except ValueError as exc:
        raise InvalidMetricFilter(value=text, why=str(exc)) from exc
    wanted: dict[str, set[str] | None] = {}
    i = 0
    previous: str | None = None
    joiner = "and"
    while i < len(tokens):
        if len(tokens) - i < 3:
            raise InvalidMetricFilter(value=text, why="expected `name eq 'value'`")
        (kind_n, name), (kind_o, op), (kind_v, value) = tokens[i : i + 3]
        if kind_n != "word" or kind_o != "word" or op.lower() != "eq" or kind_v != "value":
            raise InvalidMetricFilter(value=text, why="expected `name eq 'value'`")
        dim = unquote(name).lower()
        if dim not in known:
            valid = ", ".join(dimensions) or "none"
            raise InvalidMetricFilter(
                value=text, why=f"the metric has no dimension '{name}' (it has: {valid})"
            )
        if joiner == "or" and previous != dim:
            raise InvalidMetricFilter(value=text, why="`or` may only join values of one dimension")
        values = wanted.setdefault(dim, set())
        if value == "*":
            wanted[dim] = None
        elif values is not None:
            values.add(unquote(value).lower())
        previous = dim
        i += 3
        if i < len(tokens):
            kind_j, word = tokens[i]
            if kind_j != "word" or word.lower() not in ("and", "or"):
                raise InvalidMetricFilter(value=text, why="clauses join with `and` or `or`")
            joiner = word.lower()
            i += 1
            if i >= len(tokens):
                raise InvalidMetricFilter(value=text, why=f"nothing after `{word}`")
    return DimensionFilter(
        {k: (frozenset(v) if v is not None else None) for k, v in wanted.items()}
    )


def parse_orderby(text: str | None, default: str) -> tuple[str, bool]:
    """(aggregation, descending) of an `orderby` like 'sum asc' (default: `default` desc)."""
    if not text or not text.strip():
        return default, True
    parts = text.split()
    name = {"sum": "total", "avg": "average", "min": "minimum", "max": "maximum"}.get(
        parts[0].lower(), parts[0].lower()
    )
    if (
        name not in _AGGREGATION_OF
        or len(parts) > 2
        or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc"))
    ):
        raise InvalidMetricQuery(why=f"orderby '{errors.clip(text)}' is invalid: e.g. 'sum asc'")
    return _AGGREGATION_OF[name], len(parts) == 1 or parts[1].lower() == "desc"


# --- answering a query ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """One data point of a series: its start and the aggregations of what fell in it."""

    ts: int
    values: Mapping[str, float]


@dataclass(frozen=True)
class Series:
    """One time series of an answer: its split dimensions' values and its data."""

    metadata: tuple[tuple[str, str], ...]  # (lower-cased dimension name, value)
    data: tuple[Bucket, ...]


def _aggregate(parts: list[Point]) -> tuple[float, int, float, float]:
    total = sum(p.total for p in parts)
    count = sum(p.count for p in parts)
    return total, count, min(p.minimum for p in parts), max(p.maximum for p in parts)


def bucket_starts(start: datetime, end: datetime, interval: int | None) -> list[int]:
    """The starts of the buckets covering [start, end): aligned down to the interval, as
    Azure aligns them (one bucket at the start for FULL)."""
    first, last = start.timestamp(), end.timestamp()
    if interval is None:
        return [int(first)]
    at = math.floor(first / interval) * interval
    count = math.ceil((last - at) / interval)
    if count > MAX_BUCKETS:
        raise InvalidMetricQuery(
            why=f"the timespan holds {count} intervals; ask for at most {MAX_BUCKETS} "
            "(a longer interval or a shorter timespan)"
        )
    return [at + i * interval for i in range(count)]


def query(
    points: Iterable[Point],
    definition: MetricDefinition,
    start: datetime,
    end: datetime,
    interval: int | None,
    aggregations: Sequence[str],
    dim_filter: DimensionFilter = DimensionFilter(),
    top: int = DEFAULT_TOP,
    orderby: tuple[str, bool] | None = None,
) -> list[Series]:
    """The time series of one metric over [start, end) in buckets of `interval` seconds.

    Points of every dimension value are folded together unless the filter names the
    dimension: then there is one series per value (the filter's `'*'` lets every value
    in). Without a filter there is always one series; a counter's empty buckets are 0
    (Total, Count), other aggregations of an empty bucket are absent. With a filter, at
    most `top` series, ordered by `orderby` (summed over the buckets)."""
    starts = bucket_starts(start, end, interval)
    lo, hi = start.timestamp(), end.timestamp()
    split = dim_filter.split()
    groups: dict[tuple[tuple[str, str], ...], dict[int, list[Point]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for p in points:
        if p.metric != definition.name or not lo - p.grain < p.ts < hi:
            continue
        # A coarse point belongs to the bucket its start falls in (and to the query when
        # it overlaps it).
        if p.ts + p.grain <= lo:
            continue
        dims = {k.lower(): v for k, v in p.dims}
        if not dim_filter.admits(dims):
            continue
        meta = tuple((name, dims.get(name, "")) for name in split)
        slot = starts[0] if interval is None else (max(p.ts, starts[0]) - starts[0]) // interval
        at = starts[0] if interval is None else starts[0] + slot * interval
        groups[meta][at].append(p)
    if not split and not groups:
        groups[()] = defaultdict(list)
    series = []
    for meta, by_bucket in groups.items():
        data = []
        for at in starts:
            parts = by_bucket.get(at, [])
            values: dict[str, float] = {}
            if parts:
                total, count, low, high = _aggregate(parts)
                all_values = {
                    "Total": total,
                    "Count": float(count),
                    "Minimum": low,
                    "Maximum": high,
                    "Average": total / count if count else 0.0,
                }
                values = {a: all_values[a] for a in aggregations}
            elif definition.counter:
                values = {a: 0.0 for a in aggregations if a in ("Total", "Count")}
            data.append(Bucket(at, values))
        series.append(Series(meta, tuple(data)))
    if split:
        by, descending = orderby or (definition.primary, True)
        series.sort(key=lambda s: sum(b.values.get(by, 0.0) for b in s.data), reverse=descending)
        series = series[: max(top, 0)]
    return series


# --- times on the wire ---------------------------------------------------------------------


def timestamp(seconds: float) -> str:
    """An instant as Azure Monitor writes it: '2021-04-20T09:00:00Z'."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retention_text(days: int) -> str:
    """A retention as an ISO 8601 duration (P30D)."""
    return f"P{days}D"
