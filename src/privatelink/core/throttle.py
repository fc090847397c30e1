"""Rate accounting, pure: ARM's request budgets and Entra-style sign-in lockout.

Owns the arithmetic and the bookkeeping; the edges (`api/throttle.py`, the token
endpoint in `identity/router.py`) read the clock, classify requests and render answers.
Every class takes its clock as an argument (seconds, monotonic), so tests drive time.

ARM (since 2024, "Understand how Azure Resource Manager throttles requests") throttles
with token buckets: per subscription, per principal and per operation type (reads,
writes, deletes), bucket 250 / refill 25 per second for reads and 200 / 10 per second
for writes and deletes; a global bucket per subscription and operation type, shared by
all principals, holds 15 times as much; tenant-level requests (no subscription in the
path) have the same per-principal budgets keyed by tenant. A request is refused when
any of its buckets is empty (HTTP 429, `Retry-After` in whole seconds, nothing taken);
every answered request says what is left (`x-ms-ratelimit-remaining-subscription-reads`,
`...-global-reads`, `x-ms-ratelimit-remaining-tenant-writes`, ...).

Sign-in lockout copies Entra ID's smart lockout defaults (10 failed sign-ins, then 60
seconds locked; each further lockout of the same key lasts twice as long, up to a cap;
the first failure after a lockout locks again). A success forgets the key.

Both tables are bounded: a bucket that has refilled is indistinguishable from a fresh
one and is dropped first; past the cap the least recently used entries go (a dropped
bucket comes back full, a dropped lockout record forgets its failures: the bound wins
over strictness). Neither is thread-safe: the server uses them from its event loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from privatelink.core import errors

Clock = Callable[[], float]
Category = Literal["reads", "writes", "deletes"]
CATEGORIES: tuple[Category, ...] = ("reads", "writes", "deletes")

#: The word ARM's throttling messages use for each category.
_OPERATION: dict[Category, str] = {"reads": "read", "writes": "write", "deletes": "delete"}


@dataclass(frozen=True)
class Budget:
    """One token bucket's shape: `bucket` tokens at most, `refill_per_second` added back."""

    bucket: float
    refill_per_second: float

    def __post_init__(self) -> None:
        if not (self.bucket >= 1 and math.isfinite(self.bucket)):
            raise ValueError(f"a bucket holds at least 1 token (got {self.bucket})")
        if not (self.refill_per_second > 0 and math.isfinite(self.refill_per_second)):
            raise ValueError(f"refill_per_second must be > 0 (got {self.refill_per_second})")

    def scaled(self, factor: float) -> Budget:
        """The same shape, `factor` times larger (bucket and refill)."""
        return Budget(self.bucket * factor, self.refill_per_second * factor)


#: Azure Resource Manager's per-principal budgets (2024 token-bucket architecture).
ARM_BUDGETS: dict[Category, Budget] = {
    "reads": Budget(250, 25),
    "writes": Budget(200, 10),
    "deletes": Budget(200, 10),
}
#: ARM's global (all principals) subscription budget, as a multiple of the per-principal one.
ARM_GLOBAL_FACTOR = 15.0
#: Our default budgets are ARM's times this: one server process on a small machine serves
#: fewer requests per second than the refill rates, so a single caller is never throttled
#: by default (the test suite and the benchmarks do hundreds of requests a second with
#: one principal); `"scale": 1` in config.json gives Azure's own limits.
DEFAULT_SCALE = 100.0


@dataclass(frozen=True)
class SignInPolicy:
    """Failed client-credential sign-ins: when a key locks, and for how long.

    Defaults are Entra ID's smart lockout: 10 failures, 60 s. `max_lockout_seconds` caps
    the doubling; failures are forgotten after `reset_after_seconds` without one.
    """

    enabled: bool = True
    failures: int = 10
    lockout_seconds: float = 60.0
    max_lockout_seconds: float = 900.0
    reset_after_seconds: float = 900.0
    max_tracked: int = 10_000

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("sign_in.failures must be at least 1")
        if not 0 < self.lockout_seconds <= self.max_lockout_seconds:
            raise ValueError("need 0 < sign_in.lockout_seconds <= sign_in.max_lockout_seconds")
        if self.reset_after_seconds <= 0 or self.max_tracked < 1:
            raise ValueError("sign_in.reset_after_seconds and max_tracked must be positive")


@dataclass(frozen=True)
class ThrottlingConfig:
    """The `throttling` key of config.json, validated.

    ```
    "throttling": {
      "enabled": true,            # false: no request budgets and no sign-in lockout
      "scale": 100,               # ARM's budgets times this (1 = Azure's own limits)
      "reads":   {"bucket": 250, "refill_per_second": 25},   # overrides, taken as given
      "writes":  {...}, "deletes": {...},
      "global_factor": 15,        # the subscription-wide bucket, times the per-principal one
      "max_tracked": 100000,      # buckets kept in memory
      "sign_in": {"enabled": true, "failures": 10, "lockout_seconds": 60,
                  "max_lockout_seconds": 900, "reset_after_seconds": 900}
    }
    ```
    """

    enabled: bool = True
    budgets: Mapping[Category, Budget] = field(
        default_factory=lambda: {c: b.scaled(DEFAULT_SCALE) for c, b in ARM_BUDGETS.items()}
    )
    global_factor: float = ARM_GLOBAL_FACTOR
    max_tracked: int = 100_000
    sign_in: SignInPolicy = field(default_factory=SignInPolicy)

    def __post_init__(self) -> None:
        if set(self.budgets) != set(CATEGORIES):
            raise ValueError(f"budgets for exactly {', '.join(CATEGORIES)}")
        if not (self.global_factor >= 1 and math.isfinite(self.global_factor)):
            raise ValueError("throttling.global_factor must be >= 1")
        if self.max_tracked < 1:
            raise ValueError("throttling.max_tracked must be positive")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> ThrottlingConfig:
        """Parse the config.json object (absent keys take the defaults).

        Raises `ValueError` naming the bad key, so that `serve` refuses a bad config.
        """
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise ValueError("throttling must be an object")
        _known(raw, {"enabled", "scale", *CATEGORIES, "global_factor", "max_tracked", "sign_in"})
        scale = _number(raw, "scale", DEFAULT_SCALE)
        if scale <= 0:
            raise ValueError("throttling.scale must be > 0")
        budgets: dict[Category, Budget] = {}
        for category in CATEGORIES:
            default = ARM_BUDGETS[category].scaled(scale)
            given = raw.get(category)
            if given is None:
                budgets[category] = default
                continue
            if not isinstance(given, Mapping):
                raise ValueError(f"throttling.{category} must be an object")
            _known(given, {"bucket", "refill_per_second"}, f"throttling.{category}.")
            budgets[category] = Budget(
                _number(given, "bucket", default.bucket, f"throttling.{category}."),
                _number(
                    given, "refill_per_second", default.refill_per_second, f"throttling.{category}."
                ),
            )
        sign_in_raw = raw.get("sign_in") or {}
        if not isinstance(sign_in_raw, Mapping):
            raise ValueError("throttling.sign_in must be an object")
        fields = {
            "enabled",
            "failures",
            "lockout_seconds",
            "max_lockout_seconds",
            "reset_after_seconds",
            "max_tracked",
        }
        _known(sign_in_raw, fields, "throttling.sign_in.")
        base = SignInPolicy()
        sign_in = SignInPolicy(
            enabled=_flag(sign_in_raw, "enabled", base.enabled, "throttling.sign_in."),
            failures=int(_number(sign_in_raw, "failures", base.failures, "throttling.sign_in.")),
            lockout_seconds=_number(
                sign_in_raw, "lockout_seconds", base.lockout_seconds, "throttling.sign_in."
            ),
            max_lockout_seconds=_number(
                sign_in_raw, "max_lockout_seconds", base.max_lockout_seconds, "throttling.sign_in."
            ),
            reset_after_seconds=_number(
                sign_in_raw, "reset_after_seconds", base.reset_after_seconds, "throttling.sign_in."
            ),
            max_tracked=int(
                _number(sign_in_raw, "max_tracked", base.max_tracked, "throttling.sign_in.")
            ),
        )
        return cls(
            enabled=_flag(raw, "enabled", True),
            budgets=budgets,
            global_factor=_number(raw, "global_factor", ARM_GLOBAL_FACTOR),
            max_tracked=int(_number(raw, "max_tracked", 100_000)),
            sign_in=sign_in,
        )


def _known(raw: Mapping[str, Any], allowed: set[str], where: str = "throttling.") -> None:
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise ValueError(
            f"unknown setting {where}{unknown[0]} (known: {', '.join(sorted(allowed))})"
        )


def _number(raw: Mapping[str, Any], key: str, default: float, where: str = "throttling.") -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}{key} must be a number")
    return float(value)


def _flag(raw: Mapping[str, Any], key: str, default: bool, where: str = "throttling.") -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}{key} must be true or false")
    return value


def category_of(method: str) -> Category:
    """ARM's operation type of an HTTP method: GET/HEAD/OPTIONS read, DELETE deletes,
    everything else (PUT, PATCH, POST actions) writes."""
    upper = method.upper()
    if upper in ("GET", "HEAD", "OPTIONS"):
        return "reads"
    if upper == "DELETE":
        return "deletes"
    return "writes"


# --- token buckets ---------------------------------------------------------------------


class TokenBucket:
    """A bucket's level at a moment; `level(now)` refills lazily, never above the bucket."""

    __slots__ = ("budget", "stamp", "tokens")

    def __init__(self, budget: Budget, tokens: float, stamp: float) -> None:
        self.budget = budget
        self.tokens = tokens
        self.stamp = stamp

    def level(self, now: float) -> float:
        """Refill up to `now` and return the tokens available."""
        if now > self.stamp:
            budget = self.budget
            self.tokens = min(
                budget.bucket, self.tokens + (now - self.stamp) * budget.refill_per_second
            )
            self.stamp = now
        return self.tokens


def wait_seconds(tokens: float, budget: Budget) -> int:
    """Whole seconds until the bucket holds one token again (at least 1): `Retry-After`."""
    missing = max(0.0, 1.0 - tokens)
    return max(1, math.ceil(missing / budget.refill_per_second - 1e-9))


class BucketTable:
    """Token buckets by key, each with the budget it is charged against.

    `take` charges one token from every named bucket, or from none when any is empty.
    """

    def __init__(self, clock: Clock, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._max = max_entries
        # Insertion order is recency order: a used bucket moves to the end.
        self._buckets: dict[Hashable, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, charges: Sequence[tuple[Hashable, Budget]]) -> tuple[bool, list[float], int]:
        """Take one token from each bucket of `charges`, all or nothing.

        Returns (taken, levels after the attempt, `Retry-After` seconds or 0). A refused
        attempt takes nothing, so retrying early only gets a new `Retry-After`.
        """
        now = self._clock()
        buckets = [self._bucket(key, budget, now) for key, budget in charges]
        # Plain loops: this runs on every ARM request.
        allowed = True
        for bucket in buckets:
            if bucket.level(now) < 1:
                allowed = False
        if allowed:
            for bucket in buckets:
                bucket.tokens -= 1
            return True, [b.tokens for b in buckets], 0
        wait = max(wait_seconds(b.tokens, b.budget) for b in buckets if b.tokens < 1)
        return False, [b.tokens for b in buckets], wait

    def _bucket(self, key: Hashable, budget: Budget, now: float) -> TokenBucket:
        found = self._buckets.pop(key, None)
        if found is None:
            if len(self._buckets) >= self._max:
                self._evict(now)
            found = TokenBucket(budget, budget.bucket, now)
        self._buckets[key] = found
        return found

    def _evict(self, now: float) -> None:
        """Drop buckets that have refilled (same as absent), then the least recently used."""
        full = [k for k, b in self._buckets.items() if b.level(now) >= b.budget.bucket]
        for key in full:
            del self._buckets[key]
        target = int(self._max * 0.9)
        while len(self._buckets) > target:
            del self._buckets[next(iter(self._buckets))]


# --- ARM's request throttle ------------------------------------------------------------


_TENANT_HEADER = {c: f"x-ms-ratelimit-remaining-tenant-{c}" for c in CATEGORIES}
_SUBSCRIPTION_HEADERS = {
    c: (
        f"x-ms-ratelimit-remaining-subscription-{c}",
        f"x-ms-ratelimit-remaining-subscription-global-{c}",
    )
    for c in CATEGORIES
}


class SubscriptionRequestsThrottled(errors.ArmError):
    """ARM's answer when a subscription-level budget is exhausted."""

    status = 429
    code = "SubscriptionRequestsThrottled"


class TenantRequestsThrottled(errors.ArmError):
    """ARM's answer when a tenant-level budget is exhausted."""

    status = 429
    code = "TenantRequestsThrottled"


class Charge(NamedTuple):
    """The outcome of charging one request: allowed or not, and what is left.

    `headers` are ARM's `x-ms-ratelimit-remaining-*` response headers for it (and
    `Retry-After` when refused); `error` is the 429 to answer when refused.
    """

    allowed: bool
    category: Category
    subscription: str | None
    tenant: str
    principal: str
    remaining: int
    global_remaining: int | None
    retry_after: int
    global_exhausted: bool = False

    def headers(self) -> list[tuple[str, str]]:
        """ARM's remaining-requests headers (names lower-case), plus Retry-After if refused."""
        if self.global_remaining is None:
            out = [(_TENANT_HEADER[self.category], str(self.remaining))]
        else:
            own, shared = _SUBSCRIPTION_HEADERS[self.category]
            out = [(own, str(self.remaining)), (shared, str(self.global_remaining))]
        if not self.allowed:
            out.append(("retry-after", str(self.retry_after)))
        return out

    def error(self) -> errors.ArmError:
        """The 429 of a refused request, in ARM's words."""
        operation = _OPERATION[self.category]
        again = f"Please try again after '{self.retry_after}' seconds."
        if self.subscription is None:
            return TenantRequestsThrottled(
                f"Number of '{operation}' requests for tenant '{self.tenant}' actor "
                f"'{self.principal}' exceeded. {again}"
            )
        if self.global_exhausted:
            return SubscriptionRequestsThrottled(
                f"Number of '{operation}' requests for subscription '{self.subscription}' "
                f"exceeded the subscription-wide limit of all principals. {again}"
            )
        return SubscriptionRequestsThrottled(
            f"Number of '{operation}' requests for subscription '{self.subscription}' actor "
            f"'{self.principal}' exceeded. {again}"
        )


class Throttle:
    """ARM's request budgets: one bucket per (scope, principal, category), plus one
    subscription-wide bucket per (subscription, category) shared by every principal."""

    def __init__(self, config: ThrottlingConfig, clock: Clock) -> None:
        self.config = config
        self._table = BucketTable(clock, config.max_tracked)
        self._global = {c: b.scaled(config.global_factor) for c, b in config.budgets.items()}

    def __len__(self) -> int:
        return len(self._table)

    def charge(
        self, category: Category, principal: str, tenant: str, subscription: str | None
    ) -> Charge:
        """Charge one request of `principal` (object id) at a subscription, or at its
        tenant when `subscription` is None; ids compare case-insensitively."""
        principal, tenant = principal.lower(), tenant.lower()
        budget = self.config.budgets[category]
        if subscription is None:
            taken, levels, wait = self._table.take([(("t", tenant, principal, category), budget)])
            return Charge(taken, category, None, tenant, principal, _floor(levels[0]), None, wait)
        subscription = subscription.lower()
        glob = self._global[category]
        taken, levels, wait = self._table.take(
            [
                (("s", subscription, principal, category), budget),
                (("g", subscription, category), glob),
            ]
        )
        return Charge(
            taken,
            category,
            subscription,
            tenant,
            principal,
            _floor(levels[0]),
            _floor(levels[1]),
            wait,
            global_exhausted=not taken and levels[0] >= 1,
        )


def _floor(level: float) -> int:
    return max(0, math.floor(level + 1e-9))


# --- sign-in lockout -------------------------------------------------------------------


@dataclass
class _Failures:
    count: int = 0
    lockouts: int = 0
    locked_until: float = 0.0
    last: float = 0.0

    def forgotten(self, now: float, reset_after: float) -> bool:
        """Idle for `reset_after` seconds since the last failure or the end of the lock."""
        return now - max(self.last, self.locked_until) > reset_after


class SignInGuard:
    """Failed sign-ins by key (a client, a source address): lock after too many.

    `locked_for(key)` says how long a key stays locked (whole seconds, 0 = not locked);
    `failed(key)` records a failure and returns the same after it; `succeeded(key)`
    forgets the key. Failures while locked are not counted: a locked key is refused
    before its credentials are checked.
    """

    def __init__(self, policy: SignInPolicy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock
        self._records: dict[Hashable, _Failures] = {}

    def __len__(self) -> int:
        return len(self._records)

    def locked_for(self, key: Hashable) -> int:
        """Whole seconds `key` stays locked (0 when it may sign in)."""
        record = self._records.get(key)
        if record is None or not self.policy.enabled:
            return 0
        left = record.locked_until - self._clock()
        return math.ceil(left - 1e-9) if left > 0 else 0

    def failed(self, key: Hashable) -> int:
        """Record a failed sign-in of `key`; the seconds it is now locked for (0: not)."""
        if not self.policy.enabled:
            return 0
        now = self._clock()
        locked = self.locked_for(key)
        if locked:
            return locked
        record = self._records.pop(key, None)
        if record is None or record.forgotten(now, self.policy.reset_after_seconds):
            if len(self._records) >= self.policy.max_tracked:
                self._evict(now)
            record = _Failures()
        self._records[key] = record  # most recent last
        record.count += 1
        record.last = now
        if record.count < self.policy.failures:
            return 0
        record.lockouts += 1
        duration = min(
            self.policy.max_lockout_seconds,
            self.policy.lockout_seconds * 2 ** min(record.lockouts - 1, 32),
        )
        record.locked_until = now + duration
        # The first failure after the lockout locks again (for longer), as in Entra ID.
        record.count = self.policy.failures - 1
        return math.ceil(duration - 1e-9)

    def succeeded(self, key: Hashable) -> None:
        """A successful sign-in: forget the key's failures."""
        self._records.pop(key, None)

    def _evict(self, now: float) -> None:
        """Drop forgotten records, then the least recently failed."""
        stale = [
            k for k, r in self._records.items() if r.forgotten(now, self.policy.reset_after_seconds)
        ]
        for key in stale:
            del self._records[key]
        target = int(self.policy.max_tracked * 0.9)
        while len(self._records) > target:
            del self._records[next(iter(self._records))]
