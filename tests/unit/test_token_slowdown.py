"""Failed sign-ins at the token endpoint are slowed per client (and per address for
unknown clients): `core.throttle.SignInGuard` with a fake clock, then the token endpoint
in process.

Defaults follow Entra ID's smart lockout (10 failures, 60 s, longer on each repeated
lockout); a locked sign-in is answered at once with 429 + Retry-After in Entra's error
shape (AADSTS50053 for a client, AADSTS50196 for an address).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from privatelink.core.throttle import SignInGuard, SignInPolicy
from privatelink.identity.credentials import ClientCredentials, ensure_client, ensure_signing_key
from privatelink.identity.router import build_identity_router
from privatelink.identity.tokens import StaticDirectory, TokenIssuer

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ARM_SCOPE = "https://management.azure.com/.default"
UNKNOWN_APP = "00000000-0000-4000-8000-0000000000aa"


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- the guard --------------------------------------------------------------------------


def test_defaults_are_entra_smart_lockout() -> None:
    policy = SignInPolicy()
    assert (policy.failures, policy.lockout_seconds) == (10, 60)


def test_locks_after_threshold_and_unlocks_after_lockout() -> None:
    clock = FakeClock()
    guard = SignInGuard(SignInPolicy(failures=3, lockout_seconds=60), clock)
    assert [guard.failed("c") for _ in range(3)] == [0, 0, 60]
    assert guard.locked_for("c") == 60
    clock.advance(59.5)
    assert guard.locked_for("c") == 1  # whole seconds, rounded up
    clock.advance(0.5)
    assert guard.locked_for("c") == 0
    assert guard.locked_for("other") == 0


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Each repeated lockout doubles, up to the cap.
        (SignInPolicy(failures=2, lockout_seconds=10, max_lockout_seconds=35), [10, 20, 35, 35]),
        (SignInPolicy(failures=1, lockout_seconds=60), [60, 120, 240, 480, 900]),
    ],
)
def test_first_failure_after_a_lockout_locks_again_for_longer(
    policy: SignInPolicy, expected: list[int]
) -> None:
    clock = FakeClock()
    guard = SignInGuard(policy, clock)
    for _ in range(policy.failures - 1):
        assert guard.failed("c") == 0
    durations = []
    for _ in expected:
        durations.append(guard.failed("c"))
        clock.advance(durations[-1])  # wait the lockout out, then fail once more
    assert durations == expected


def test_failures_while_locked_do_not_count() -> None:
    clock = FakeClock()
    guard = SignInGuard(SignInPolicy(failures=2, lockout_seconds=10), clock)
    guard.failed("c")
    assert guard.failed("c") == 10
    clock.advance(4)
    assert guard.failed("c") == 6  # still the same lockout, not a longer one
    clock.advance(6)
    assert guard.locked_for("c") == 0


def test_success_forgets_and_idle_failures_expire() -> None:
    clock = FakeClock()
    guard = SignInGuard(SignInPolicy(failures=3, reset_after_seconds=100), clock)
    guard.failed("c")
    guard.failed("c")
    guard.succeeded("c")
    assert guard.failed("c") == 0  # counting starts over
    assert guard.failed("c") == 0
    clock.advance(101)
    assert guard.failed("c") == 0  # the two earlier failures were forgotten
    assert guard.failed("c") == 0
    assert guard.failed("c") == 60


def test_disabled_policy_never_locks() -> None:
    guard = SignInGuard(SignInPolicy(enabled=False, failures=1), FakeClock())
    assert [guard.failed("c") for _ in range(20)] == [0] * 20
    assert guard.locked_for("c") == 0
    assert len(guard) == 0


def test_memory_is_bounded() -> None:
    clock = FakeClock()
    guard = SignInGuard(SignInPolicy(failures=2, max_tracked=100), clock)
    guard.failed("victim")
    assert guard.failed("victim") == 60
    for i in range(1000):
        clock.advance(0.001)
        guard.failed(("address", f"10.0.{i // 256}.{i % 256}"))
    assert len(guard) <= 100
    # The most recent keys are kept.
    assert guard.failed(("address", "10.0.3.231")) == 60


# --- the token endpoint -----------------------------------------------------------------


class CountingDirectory(StaticDirectory):
    """A StaticDirectory that counts credential checks."""

    def __init__(self, clients: list[ClientCredentials]) -> None:
        super().__init__(clients)
        self.checks = 0

    def check_client(self, tenant_id: str, app_id: str, secret: str) -> tuple[str, Any]:
        self.checks += 1
        return super().check_client(tenant_id, app_id, secret)


@dataclass
class Endpoint:
    client: TestClient
    creds: ClientCredentials
    clock: FakeClock
    directory: CountingDirectory

    def token(self, secret: str | None = None, client_id: str | None = None) -> httpx.Response:
        return self.client.post(
            f"/{self.creds.tenant_id}/oauth2/v2.0/token",
            data={
                "client_id": client_id or self.creds.client_id,
                "client_secret": self.creds.client_secret if secret is None else secret,
                "grant_type": "client_credentials",
                "scope": ARM_SCOPE,
            },
        )


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    data_dir = tmp_path / "data"
    creds = ensure_client(data_dir)
    directory = CountingDirectory([creds])
    issuer = TokenIssuer(ensure_signing_key(data_dir), directory)
    clock = FakeClock()
    guard = SignInGuard(SignInPolicy(failures=3, lockout_seconds=30), clock)
    app = FastAPI()
    app.include_router(build_identity_router(issuer, guard))
    with TestClient(app, base_url="https://127.0.0.1:9443") as client:
        yield Endpoint(client, creds, clock, directory)


def test_wrong_secrets_lock_the_client_then_the_right_one_works(endpoint: Endpoint) -> None:
    for _ in range(3):
        reply = endpoint.token("wrong")
        assert reply.status_code == 401
        assert "AADSTS7000215" in reply.json()["error_description"]
    checks = endpoint.directory.checks
    locked = endpoint.token()  # the right secret, but locked
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "30"
    assert locked.headers["connection"] == "close"
    body = locked.json()
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [50053]
    assert body["error_description"].startswith("AADSTS50053: ")
    assert "Try again in 30 seconds" in body["error_description"]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)
    assert endpoint.creds.client_secret not in locked.text
    assert endpoint.directory.checks == checks  # refused without looking at the secret
    endpoint.clock.advance(10)
    assert endpoint.token().headers["retry-after"] == "20"
    endpoint.clock.advance(20)
    assert endpoint.token().status_code == 200
    # The success forgot the failures: a typo is a plain 401 again.
    assert endpoint.token("wrong").status_code == 401
    assert endpoint.token("wrong").status_code == 401
    assert endpoint.token().status_code == 200


def test_missing_secret_counts_as_a_failure(endpoint: Endpoint) -> None:
    for _ in range(3):
        assert endpoint.token("").status_code == 401
    assert endpoint.token().status_code == 429


def test_unknown_clients_lock_the_address_not_known_clients(endpoint: Endpoint) -> None:
    for _ in range(3):
        reply = endpoint.token(client_id=UNKNOWN_APP)
        assert reply.status_code == 400
        assert reply.json()["error_codes"] == [700016]
    locked = endpoint.token(client_id=UNKNOWN_APP)
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "30"
    assert locked.json()["error_codes"] == [50196]
    # Another made-up id from the same address: locked too.
    other = endpoint.token(client_id="00000000-0000-4000-8000-0000000000bb")
    assert other.status_code == 429
    # A known client from the same address is judged on its own record.
    assert endpoint.token().status_code == 200
    endpoint.clock.advance(30)
    unlocked = endpoint.token(client_id=UNKNOWN_APP)
    assert unlocked.status_code == 400


def test_unknown_tenant_counts_against_the_address(endpoint: Endpoint) -> None:
    for _ in range(3):
        reply = endpoint.client.post(
            "/00000000-0000-4000-8000-00000000cccc/oauth2/token",
            data={
                "client_id": UNKNOWN_APP,
                "client_secret": "x",
                "grant_type": "client_credentials",
                "resource": "https://management.azure.com/",
            },
        )
        assert reply.status_code == 400
    assert endpoint.token(client_id=UNKNOWN_APP).status_code == 429


def test_other_errors_are_not_sign_in_failures(endpoint: Endpoint) -> None:
    # A bad scope with the right secret is not a failed sign-in.
    for _ in range(5):
        reply = endpoint.client.post(
            f"/{endpoint.creds.tenant_id}/oauth2/v2.0/token",
            data={
                "client_id": endpoint.creds.client_id,
                "client_secret": endpoint.creds.client_secret,
                "grant_type": "client_credentials",
                "scope": "https://vault.azure.net/.default",
            },
        )
        assert reply.status_code == 400
    assert endpoint.token().status_code == 200
