"""ARM's request throttling: the token buckets (core.throttle) with a fake clock, and the
ASGI middleware (api.throttle) in process.

Figures come from "Understand how Azure Resource Manager throttles requests" (2024 token
bucket: reads 250 / 25 per s, writes and deletes 200 / 10 per s, a global subscription
bucket 15 times larger) and real responses (`x-ms-ratelimit-remaining-subscription-reads:
249` with `...-global-reads: 3749` on a fresh bucket).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from privatelink.api.throttle import ArmThrottle
from privatelink.core.principal import Principal
from privatelink.core.throttle import (
    ARM_BUDGETS,
    DEFAULT_SCALE,
    BucketTable,
    Budget,
    Throttle,
    ThrottlingConfig,
    TokenBucket,
    category_of,
    wait_seconds,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

SUB = "0f7c5b1e-6a62-4c56-9a55-3c8f1c5e2a10"
OTHER_SUB = "9a8b7c6d-1111-4222-8333-444455556666"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ALICE = "aaaaaaaa-0000-4000-8000-000000000001"
BOB = "bbbbbbbb-0000-4000-8000-000000000002"


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def small(
    reads: tuple[float, float] = (3, 1),
    writes: tuple[float, float] = (2, 0.5),
    deletes: tuple[float, float] = (2, 0.25),
    global_factor: float = 15,
) -> ThrottlingConfig:
    return ThrottlingConfig(
        budgets={
            "reads": Budget(*reads),
            "writes": Budget(*writes),
            "deletes": Budget(*deletes),
        },
        global_factor=global_factor,
    )


# --- the pieces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "category"),
    [
        ("GET", "reads"),
        ("head", "reads"),
        ("OPTIONS", "reads"),
        ("PUT", "writes"),
        ("PATCH", "writes"),
        ("POST", "writes"),  # ARM counts actions (listKeys, checkVisibility) as writes
        ("DELETE", "deletes"),
    ],
)
def test_category_of_method(method: str, category: str) -> None:
    assert category_of(method) == category


@pytest.mark.parametrize(
    ("tokens", "elapsed", "budget", "level"),
    [
        (0.0, 0.0, Budget(10, 2), 0.0),
        (0.0, 1.0, Budget(10, 2), 2.0),
        (0.0, 2.5, Budget(10, 2), 5.0),
        (9.0, 10.0, Budget(10, 2), 10.0),  # never above the bucket
        (3.0, 0.5, Budget(250, 25), 15.5),
    ],
)
def test_bucket_refills_at_its_rate_up_to_its_size(
    tokens: float, elapsed: float, budget: Budget, level: float
) -> None:
    bucket = TokenBucket(budget, tokens, 100.0)
    assert bucket.level(100.0 + elapsed) == pytest.approx(level)


def test_bucket_ignores_a_clock_going_back() -> None:
    bucket = TokenBucket(Budget(10, 1), 1.0, 100.0)
    assert bucket.level(90.0) == 1.0


@pytest.mark.parametrize(
    ("tokens", "budget", "seconds"),
    [
        (0.0, Budget(250, 25), 1),  # 0.04 s, rounded up to a whole second
        (0.0, Budget(200, 10), 1),
        (0.0, Budget(5, 0.5), 2),
        (0.0, Budget(5, 0.1), 10),
        (0.5, Budget(5, 0.1), 5),
        (0.75, Budget(5, 0.25), 1),
        (0.2, Budget(5, 0.2), 4),
    ],
)
def test_retry_after_comes_from_the_refill_rate(
    tokens: float, budget: Budget, seconds: int
) -> None:
    assert wait_seconds(tokens, budget) == seconds


@pytest.mark.parametrize(
    "bad", [{"bucket": 0, "refill_per_second": 1}, {"bucket": 5, "refill_per_second": 0}]
)
def test_budget_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"bucket|refill"):
        Budget(**bad)


# --- a bucket running dry and filling up again ------------------------------------------


def test_exhaustion_then_refill() -> None:
    clock = FakeClock()
    table = BucketTable(clock)
    budget = Budget(3, 1)
    levels = [table.take([("k", budget)]) for _ in range(3)]
    assert [(ok, left[0]) for ok, left, _ in levels] == [(True, 2), (True, 1), (True, 0)]
    assert table.take([("k", budget)]) == (False, [0.0], 1)
    clock.advance(0.5)
    ok, left, wait = table.take([("k", budget)])
    assert (ok, wait) == (False, 1)  # half a token: still refused, nothing taken
    assert left[0] == pytest.approx(0.5)
    clock.advance(0.5)
    assert table.take([("k", budget)])[0] is True
    clock.advance(100)
    ok, left, _ = table.take([("k", budget)])
    assert ok and left[0] == pytest.approx(2)  # refilled to 3, minus this one


def test_take_is_all_or_nothing() -> None:
    clock = FakeClock()
    table = BucketTable(clock)
    small_budget, big = Budget(1, 1), Budget(10, 1)
    assert table.take([("a", small_budget), ("b", big)])[0]
    ok, levels, _ = table.take([("a", small_budget), ("b", big)])
    assert not ok
    assert levels == [0.0, 9.0]  # "b" was not charged for the refused request
    assert table.take([("b", big)])[1] == [8.0]


def test_table_is_bounded_and_drops_refilled_buckets_first() -> None:
    clock = FakeClock()
    table = BucketTable(clock, max_entries=10)
    budget = Budget(5, 1)
    for i in range(10):
        table.take([(i, budget)])
    assert len(table) == 10
    clock.advance(10)  # every bucket has refilled: all are as good as absent
    table.take([("new", budget)])
    assert len(table) == 1
    # Now none refills: the least recently used go, the recent ones keep their level.
    for i in range(9):
        table.take([(i, budget)])
    table.take([(0, budget)])  # 0 is used again: the least recently used is "new"
    table.take([("x", budget)])
    assert len(table) == 10
    assert table.take([(0, budget)])[1] == [2.0]  # kept: 5 - 3 takes
    assert table.take([("new", budget)])[1] == [4.0]  # dropped: it came back full


# --- ARM's rules ------------------------------------------------------------------------


def test_fresh_subscription_bucket_reports_like_arm() -> None:
    arm = ThrottlingConfig.from_mapping({"scale": 1})
    charge = Throttle(arm, FakeClock()).charge("reads", ALICE, TENANT, SUB)
    assert charge.allowed
    assert charge.headers() == [
        ("x-ms-ratelimit-remaining-subscription-reads", "249"),
        ("x-ms-ratelimit-remaining-subscription-global-reads", "3749"),
    ]
    writes = Throttle(arm, FakeClock()).charge("writes", ALICE, TENANT, SUB)
    assert writes.headers() == [
        ("x-ms-ratelimit-remaining-subscription-writes", "199"),
        ("x-ms-ratelimit-remaining-subscription-global-writes", "2999"),
    ]


def test_exhausted_principal_gets_arm_429() -> None:
    clock = FakeClock()
    throttle = Throttle(small(reads=(3, 0.5)), clock)
    remaining = [throttle.charge("reads", ALICE, TENANT, SUB).remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    refused = throttle.charge("reads", ALICE, TENANT, SUB)
    assert not refused.allowed
    assert refused.retry_after == 2  # one token at 0.5 per second
    assert ("retry-after", "2") in refused.headers()
    assert ("x-ms-ratelimit-remaining-subscription-reads", "0") in refused.headers()
    error = refused.error()
    assert (error.status, error.code) == (429, "SubscriptionRequestsThrottled")
    assert error.message == (
        f"Number of 'read' requests for subscription '{SUB}' actor '{ALICE}' exceeded. "
        "Please try again after '2' seconds."
    )
    clock.advance(2)
    assert throttle.charge("reads", ALICE, TENANT, SUB).allowed


@pytest.mark.parametrize(
    ("who", "category", "subscription", "allowed"),
    [
        (ALICE, "reads", SUB, False),  # the exhausted bucket
        (ALICE.upper(), "reads", SUB.upper(), False),  # ids compare case-insensitively
        (BOB, "reads", SUB, True),  # another principal, same subscription
        (ALICE, "reads", OTHER_SUB, True),  # same principal, another subscription
        (ALICE, "reads", None, True),  # same principal at tenant level
        (ALICE, "writes", SUB, True),  # writes are counted apart from reads
        (ALICE, "deletes", SUB, True),  # and deletes apart from both
    ],
)
def test_buckets_are_per_scope_principal_and_category(
    who: str, category: Any, subscription: str | None, allowed: bool
) -> None:
    throttle = Throttle(small(reads=(2, 0.1)), FakeClock())
    for _ in range(2):
        assert throttle.charge("reads", ALICE, TENANT, SUB).allowed
    assert not throttle.charge("reads", ALICE, TENANT, SUB).allowed
    assert throttle.charge(category, who, TENANT, subscription).allowed is allowed


def test_writes_and_deletes_have_their_own_budgets() -> None:
    throttle = Throttle(small(writes=(2, 0.5), deletes=(1, 0.25)), FakeClock())
    assert [throttle.charge("writes", ALICE, TENANT, SUB).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert throttle.charge("writes", ALICE, TENANT, SUB).retry_after == 2
    first = throttle.charge("deletes", ALICE, TENANT, SUB)
    assert first.headers()[0] == ("x-ms-ratelimit-remaining-subscription-deletes", "0")
    refused = throttle.charge("deletes", ALICE, TENANT, SUB)
    assert (refused.allowed, refused.retry_after) == (False, 4)
    assert "Number of 'delete' requests" in refused.error().message


def test_tenant_level_requests_use_the_tenant_bucket() -> None:
    throttle = Throttle(small(reads=(1, 1)), FakeClock())
    first = throttle.charge("reads", ALICE, TENANT, None)
    assert first.headers() == [("x-ms-ratelimit-remaining-tenant-reads", "0")]
    refused = throttle.charge("reads", ALICE, TENANT.upper(), None)
    assert not refused.allowed
    assert refused.error().code == "TenantRequestsThrottled"
    assert f"for tenant '{TENANT}' actor '{ALICE}'" in refused.error().message


def test_global_subscription_bucket_is_shared_by_all_principals() -> None:
    # Per principal 2, globally 2 x 2 = 4: the third principal finds the global bucket dry.
    throttle = Throttle(small(reads=(2, 0.5), global_factor=2), FakeClock())
    for who in (ALICE, BOB):
        for _ in range(2):
            assert throttle.charge("reads", who, TENANT, SUB).allowed
    third = throttle.charge("reads", str(uuid.uuid4()), TENANT, SUB)
    assert not third.allowed
    assert third.remaining == 2  # its own bucket is full
    assert third.global_remaining == 0
    assert third.retry_after == 1  # the global bucket refills at 2 x 0.5 per second
    assert "subscription-wide limit" in third.error().message


# --- configuration ----------------------------------------------------------------------


def test_default_config_is_arm_shape_scaled_up() -> None:
    config = ThrottlingConfig.from_mapping(None)
    assert config == ThrottlingConfig()
    assert config.enabled and config.sign_in.enabled
    for category, arm in ARM_BUDGETS.items():
        assert config.budgets[category] == arm.scaled(DEFAULT_SCALE)
    assert config.global_factor == 15


def test_config_scale_and_overrides() -> None:
    config = ThrottlingConfig.from_mapping(
        {
            "scale": 1,
            "writes": {"bucket": 7},
            "deletes": {"bucket": 3, "refill_per_second": 0.5},
            "sign_in": {"failures": 3, "lockout_seconds": 2},
        }
    )
    assert config.budgets["reads"] == Budget(250, 25)
    assert config.budgets["writes"] == Budget(7, 10)
    assert config.budgets["deletes"] == Budget(3, 0.5)
    assert (config.sign_in.failures, config.sign_in.lockout_seconds) == (3, 2)
    assert not ThrottlingConfig.from_mapping({"enabled": False}).enabled


@pytest.mark.parametrize(
    "raw",
    [
        {"enable": False},  # misspelt: refused, not ignored
        {"enabled": "no"},
        {"scale": 0},
        {"reads": 5},
        {"reads": {"bucket": 0}},
        {"reads": {"size": 10}},
        {"writes": {"refill_per_second": -1}},
        {"global_factor": 0.5},
        {"sign_in": {"failures": 0}},
        {"sign_in": {"lockout_seconds": 1000, "max_lockout_seconds": 10}},
        {"sign_in": {"tries": 3}},
        {"scale": True},
    ],
)
def test_config_refuses_bad_values(raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ThrottlingConfig.from_mapping(raw)


# --- the middleware ---------------------------------------------------------------------


def _app(throttle: Throttle, calls: list[str]) -> Any:
    """ArmThrottle around a 200 endpoint; an outer layer plays the gate (x-test-principal)."""

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        calls.append(f"{scope['method']} {scope['path']}")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    inner = ArmThrottle(endpoint, throttle)

    async def gate(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-principal":
                    principal = Principal(TENANT, value.decode(), "app")
                    scope.setdefault("state", {})["principal"] = principal
        await inner(scope, receive, send)

    return gate


@pytest.fixture
def served() -> Iterator[tuple[TestClient, list[str], FakeClock]]:
    clock = FakeClock()
    calls: list[str] = []
    throttle = Throttle(small(reads=(2, 0.5), writes=(2, 0.5), deletes=(1, 0.25)), clock)
    client = TestClient(_app(throttle, calls))  # no lifespan: the endpoint serves only HTTP
    yield client, calls, clock
    client.close()


def test_middleware_headers_then_429(served: tuple[TestClient, list[str], FakeClock]) -> None:
    client, calls, clock = served
    path = f"/subscriptions/{SUB}/resourceGroups/rg"
    who = {"x-test-principal": ALICE, "x-ms-correlation-request-id": "corr-1"}
    first = client.get(path, headers=who)
    assert first.status_code == 200
    assert first.headers["x-ms-ratelimit-remaining-subscription-reads"] == "1"
    assert first.headers["x-ms-ratelimit-remaining-subscription-global-reads"] == "29"
    assert "x-ms-ratelimit-remaining-subscription-writes" not in first.headers
    assert client.get(path, headers=who).headers["x-ms-ratelimit-remaining-subscription-reads"] == (
        "0"
    )
    refused = client.get(path, headers=who)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    assert refused.headers["x-ms-correlation-request-id"] == "corr-1"
    assert refused.json() == {
        "error": {
            "code": "SubscriptionRequestsThrottled",
            "message": f"Number of 'read' requests for subscription '{SUB}' actor '{ALICE}' "
            "exceeded. Please try again after '2' seconds.",
        }
    }
    assert len(calls) == 2  # the refused request never reached the app
    # Writes still go: counted apart, with their own header.
    put = client.put(path, headers=who, json={})
    assert put.status_code == 200
    assert put.headers["x-ms-ratelimit-remaining-subscription-writes"] == "1"
    assert "x-ms-ratelimit-remaining-subscription-reads" not in put.headers
    assert (
        client.post(f"{path}/x/validate", headers=who).headers[
            "x-ms-ratelimit-remaining-subscription-writes"
        ]
        == "0"
    )
    delete = client.delete(path, headers=who)
    assert delete.headers["x-ms-ratelimit-remaining-subscription-deletes"] == "0"
    clock.advance(2)
    assert client.get(path, headers=who).status_code == 200


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/subscriptions", "x-ms-ratelimit-remaining-tenant-reads"),
        ("/tenants", "x-ms-ratelimit-remaining-tenant-reads"),
        ("/providers/Microsoft.Network/operations", "x-ms-ratelimit-remaining-tenant-reads"),
        # Not a GUID: charged to the tenant, so made-up ids cannot make new buckets.
        ("/subscriptions/not-a-guid/resourceGroups", "x-ms-ratelimit-remaining-tenant-reads"),
        (f"/subscriptions/{SUB}", "x-ms-ratelimit-remaining-subscription-reads"),
    ],
)
def test_middleware_scope_of_a_path(
    served: tuple[TestClient, list[str], FakeClock], path: str, header: str
) -> None:
    client, _, _ = served
    reply = client.get(path, headers={"x-test-principal": ALICE})
    assert reply.headers[header] == "1"


@pytest.mark.parametrize(
    ("path", "who"),
    [
        (f"/subscriptions/{SUB}/resourceGroups", None),  # anonymous: the gate answers it
        (f"/{TENANT}/oauth2/v2.0/token", ALICE),  # the token endpoint
        ("/privatelink/admin/tenants", ALICE),
        ("/graph/v1.0/servicePrincipals", ALICE),
    ],
)
def test_middleware_leaves_other_requests_alone(
    served: tuple[TestClient, list[str], FakeClock], path: str, who: str | None
) -> None:
    client, calls, _ = served
    headers = {"x-test-principal": who} if who else {}
    for _ in range(5):
        reply = client.get(path, headers=headers)
        assert reply.status_code == 200
        assert not [h for h in reply.headers if h.startswith("x-ms-ratelimit")]
    assert len(calls) == 5


def test_middleware_other_principal_not_throttled(
    served: tuple[TestClient, list[str], FakeClock],
) -> None:
    client, _, _ = served
    path = f"/subscriptions/{SUB}/resourceGroups"
    for _ in range(3):
        client.get(path, headers={"x-test-principal": ALICE})
    assert client.get(path, headers={"x-test-principal": ALICE}).status_code == 429
    bob = client.get(path, headers={"x-test-principal": BOB})
    assert bob.status_code == 200
    assert bob.headers["x-ms-ratelimit-remaining-subscription-reads"] == "1"
