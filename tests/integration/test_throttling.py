"""Throttling on the real server: ARM's request budgets and the sign-in lockout.

One server for the module with tiny budgets in config.json (reads 5, writes 4, deletes 2,
each refilling at 0.5 per second; sign-ins locked after 3 failures for 3 s). Each test
works in a subscription of its own (made through the admin API, which is not counted), so
the buckets it sees start full. Nothing here asserts on timing: refills only ever make a
count higher, so the counts asserted hold whatever the machine's speed. Two steps need
the machine not to stall for seconds between two requests sent back to back: the sign-in
right after the third failure must meet the 3 s lockout, and the SDK's first request the
empty bucket (that one is tried up to three times).
"""

from __future__ import annotations

import gc
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.pipeline import PipelineResponse
from azure.identity import ClientSecretCredential
from azure.mgmt.network import NetworkManagementClient
from identities import Identity, assign, create_principal

pytestmark = pytest.mark.integration

API = "2026-03-01"
READS, WRITES, DELETES = 5, 4, 2
CONFIG = {
    "throttling": {
        "reads": {"bucket": READS, "refill_per_second": 0.5},
        "writes": {"bucket": WRITES, "refill_per_second": 0.5},
        "deletes": {"bucket": DELETES, "refill_per_second": 0.5},
        "sign_in": {"failures": 3, "lockout_seconds": 3},
    }
}
# A loop that must meet a 429 gives up after this many requests (the bucket holds 5).
MAX_REQUESTS = 100
DEADLINE_S = 15.0
REMAINING = "x-ms-ratelimit-remaining-subscription-{}"


@pytest.fixture(scope="module")
def throttled(helpers: Any) -> Iterator[Any]:
    d = Path(tempfile.mkdtemp(prefix="privatelink-it-throttle-"))
    try:
        with helpers.run_server(d / "data", config=CONFIG) as s:
            yield s
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def admin(throttled: Any) -> Iterator[Identity]:
    identity = Identity.from_json(throttled.credentials)
    yield identity
    identity.close()


@pytest.fixture
def sub(admin: Identity) -> str:
    """A new subscription of the default tenant, its admin Owner (admin API: not counted)."""
    with admin.http() as http:
        reply = http.post("/privatelink/admin/subscriptions", json={"tenant": admin.tenant_id})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["subscription_id"])


def _read_until_throttled(http: httpx.Client, path: str) -> tuple[list[int], httpx.Response]:
    """GET until a 429 (bounded); the remaining-reads counts seen, and the 429."""
    seen: list[int] = []
    for _ in range(MAX_REQUESTS):
        reply = http.get(f"{path}?api-version={API}")
        if reply.status_code == 429:
            return seen, reply
        assert reply.status_code == 200, reply.text
        seen.append(int(reply.headers[REMAINING.format("reads")]))
    pytest.fail(f"no 429 after {MAX_REQUESTS} reads: {seen}")


def test_reads_run_out_with_arm_429_while_writes_and_deletes_go_on(
    admin: Identity, sub: str
) -> None:
    http = admin.http()
    groups = f"/subscriptions/{sub}/resourceGroups"
    seen, refused = _read_until_throttled(http, groups)
    # A fresh bucket: the first answer says bucket - 1, the last one before the 429 says 0
    # (the 429 comes when less than one token is left), and at least a bucket's worth went.
    assert seen[0] == READS - 1
    assert seen[-1] == 0
    assert len(seen) >= READS
    assert refused.headers[REMAINING.format("reads")] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 2  # 1 token at 0.5 per second
    assert int(refused.headers[REMAINING.format("global-reads")]) > 0
    error = refused.json()["error"]
    assert error["code"] == "SubscriptionRequestsThrottled"
    assert error["message"].startswith(
        f"Number of 'read' requests for subscription '{sub}' actor '{admin.oid()}' exceeded."
    )
    # Writes are counted apart: this PUT is the first write in the subscription.
    put = http.put(f"{groups}/rg-t?api-version={API}", json={"location": "eastus"})
    assert put.status_code in (200, 201), put.text
    assert put.headers[REMAINING.format("writes")] == str(WRITES - 1)
    assert REMAINING.format("reads") not in put.headers
    assert int(put.headers[REMAINING.format("global-writes")]) == 15 * WRITES - 1
    # So are deletes.
    gone = http.delete(f"{groups}/rg-t?api-version={API}")
    assert gone.status_code in (200, 202), gone.text
    assert gone.headers[REMAINING.format("deletes")] == str(DELETES - 1)
    # Writes run out on their own, with the write words.
    for i in range(MAX_REQUESTS):
        put = http.put(f"{groups}/rg-{i}?api-version={API}", json={"location": "eastus"})
        if put.status_code == 429:
            break
        assert put.status_code in (200, 201), put.text
    assert put.status_code == 429, "writes never ran out"
    assert put.headers[REMAINING.format("writes")] == "0"
    assert "Number of 'write' requests" in put.json()["error"]["message"]


def test_tenant_level_reads_have_their_own_bucket(admin: Identity, sub: str) -> None:
    http = admin.http()
    _read_until_throttled(http, f"/subscriptions/{sub}/resourceGroups")
    reply = http.get(f"/subscriptions?api-version={API}")
    assert reply.status_code == 200, reply.text
    assert "x-ms-ratelimit-remaining-tenant-reads" in reply.headers
    assert REMAINING.format("reads") not in reply.headers


def test_another_principal_is_not_throttled_by_the_first(admin: Identity, sub: str) -> None:
    reader = create_principal(admin)
    try:
        assign(admin, f"/subscriptions/{sub}", "Reader", reader)
        groups = f"/subscriptions/{sub}/resourceGroups"
        _read_until_throttled(admin.http(), groups)
        reply = reader.http().get(f"{groups}?api-version={API}")
        assert reply.status_code == 200, reply.text
        assert reply.headers[REMAINING.format("reads")] == str(READS - 1)
    finally:
        reader.close()


def test_sdk_retries_after_the_429_and_succeeds(admin: Identity, sub: str) -> None:
    path = f"/subscriptions/{sub}/providers/Microsoft.Network/virtualNetworks"
    statuses: list[int] = []

    def record(response: PipelineResponse[Any, Any]) -> None:
        statuses.append(response.http_response.status_code)

    # Unmodified azure-mgmt-network with azure-core's own RetryPolicy (Retry-After honoured).
    client = NetworkManagementClient(
        admin.credential, sub, base_url=admin.url, connection_verify=admin.ca_file, retry_total=5
    )
    try:
        # The SDK's first request must find the bucket empty; should the machine stall
        # long enough for it to refill in between, try again (a few rounds at most).
        for _ in range(3):
            _read_until_throttled(admin.http(), path)
            statuses.clear()
            found = list(client.virtual_networks.list_all(raw_response_hook=record))
            if statuses[0] == 429:
                break
    finally:
        client.close()
        gc.collect()
    assert found == []
    assert statuses[0] == 429 and statuses[-1] == 200, statuses


def _token_request(admin: Identity, client_id: str, secret: str) -> httpx.Response:
    ctx = ssl.create_default_context(cafile=admin.ca_file)
    with httpx.Client(verify=ctx, timeout=30, trust_env=False) as http:
        return http.post(
            f"{admin.url}/{admin.tenant_id}/oauth2/v2.0/token",
            data={
                "client_id": client_id,
                "client_secret": secret,
                "grant_type": "client_credentials",
                "scope": "https://management.azure.com/.default",
            },
        )


def test_failed_sign_ins_lock_the_client_then_the_secret_works_again(admin: Identity) -> None:
    victim = create_principal(admin)
    try:
        for _ in range(3):
            reply = _token_request(admin, victim.client_id, "not-the-secret")
            assert reply.status_code == 401, reply.text
            assert reply.json()["error_codes"] == [7000215]
        locked = _token_request(admin, victim.client_id, victim.client_secret)
        assert locked.status_code == 429, locked.text
        assert 1 <= int(locked.headers["retry-after"]) <= 3
        body = locked.json()
        assert (body["error"], body["error_codes"]) == ("invalid_client", [50053])
        assert "access_token" not in body
        # Another client is not affected.
        assert _token_request(admin, admin.client_id, admin.client_secret).status_code == 200
        # Once the lock has passed, the right secret works (polled, with a deadline).
        deadline = time.monotonic() + DEADLINE_S
        reply = locked
        while reply.status_code == 429 and time.monotonic() < deadline:
            time.sleep(min(3, int(reply.headers["retry-after"])))  # as the server asks
            reply = _token_request(admin, victim.client_id, victim.client_secret)
        assert reply.status_code == 200, reply.text
        # And through azure-identity, as a user's tool would.
        credential = ClientSecretCredential(
            victim.tenant_id,
            victim.client_id,
            victim.client_secret,
            authority=admin.url,
            disable_instance_discovery=True,
            connection_verify=admin.ca_file,
        )
        try:
            assert credential.get_token("https://management.azure.com/.default").token
        finally:
            credential.close()
    finally:
        victim.close()


def test_unknown_client_ids_lock_the_address_only_for_unknown_ids(admin: Identity) -> None:
    unknown = "00000000-0000-4000-8000-00000000dead"
    for _ in range(3):
        assert _token_request(admin, unknown, "x").status_code == 400
    locked = _token_request(admin, unknown, "x")
    assert locked.status_code == 429, locked.text
    assert locked.json()["error_codes"] == [50196]
    assert _token_request(admin, admin.client_id, admin.client_secret).status_code == 200
