"""Store faults against the real server process: the database goes away, or fills up.

* PostgreSQL restarted in the middle of a burst of writes: every request during the
  outage answers `503 StoreUnavailable` with an ARM body and `Retry-After` (routes, the
  gate's subscription lookup, the token endpoint), never a 500 or a dropped connection;
  once PostgreSQL is back the same server process answers again, the Azure SDK (which
  retries a 503 after `Retry-After`) completes a create begun during the outage, every
  acknowledged write is there with its operation record, and no refused one is.
* SQLite on a full disk (a small tmpfs, as root): writes answer `507
  InsufficientStorage`, reads keep working, `PRAGMA integrity_check` says ok, and
  writes succeed again once space is freed.

Both use a database of their own: the session's PostgreSQL is never stopped.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import VirtualNetwork

pytestmark = pytest.mark.integration

API = "2026-03-01"
Q = f"?api-version={API}"
BURST_MAX_WRITES = 400  # the burst stops here at the latest ...
BURST_DEADLINE_S = 20.0  # ... or after this long
FAILURES_TO_SEE = 5  # refused writes the burst waits for once the database is down
WAIT_S = 20.0


def _vnet_body(index: int = 0) -> dict[str, Any]:
    return {
        "location": "eastus",
        "tags": {"n": str(index)},
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}},
    }


def _deployment_body(vnet: str) -> dict[str, Any]:
    """A template deploying one virtual network."""
    resource = {
        "type": "Microsoft.Network/virtualNetworks",
        "apiVersion": "2023-04-01",
        "name": vnet,
        **_vnet_body(),
    }
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [resource],
    }
    return {"properties": {"mode": "Incremental", "template": template}}


def _assert_store_fault(resp: httpx.Response, status: int, code: str) -> None:
    """An ARM error body with this status and code (and Retry-After on a 503)."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    error = resp.json()["error"]
    assert error["code"] == code, error
    assert "database" in error["message"], error
    if status == 503:
        assert int(resp.headers["Retry-After"]) > 0, resp.headers
    else:
        assert "Retry-After" not in resp.headers, resp.headers


def _client(server: Any) -> httpx.Client:
    """httpx: no retries, so every refusal is seen as it was sent."""
    return httpx.Client(
        base_url=server.url,
        verify=server.ssl_context(),
        headers={"Authorization": f"Bearer {server.token()}"},
        timeout=30,
        trust_env=False,
    )


def _wait_for(condition: Any, what: str, deadline_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _names(http: httpx.Client, base: str) -> set[str]:
    """Names of every virtual network in a resource group (all pages)."""
    names: set[str] = set()
    url: str | None = f"{base}/virtualNetworks{Q}"
    while url:
        page = http.get(url)
        assert page.status_code == 200, page.text
        body = page.json()
        names |= {item["name"] for item in body["value"]}
        url = body.get("nextLink")
    return names


@dataclass
class Outcome:
    name: str
    status: int | None  # None: no HTTP answer at all (a dropped connection)
    detail: str
    operation_url: str | None = None


class Burst:
    """PUTs of fresh virtual networks, one after the other, in a thread (bounded)."""

    def __init__(self, server: Any, base: str) -> None:
        self.http = _client(server)
        self.base = base
        self.outcomes: list[Outcome] = []
        self.database_down = threading.Event()
        self.thread = threading.Thread(target=self._run, name="burst", daemon=True)

    def acknowledged(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is not None and o.status < 300]

    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is None or o.status >= 300]

    def _run(self) -> None:
        deadline = time.monotonic() + BURST_DEADLINE_S
        refused_while_down = 0
        for i in range(BURST_MAX_WRITES):
            if time.monotonic() > deadline or refused_while_down >= FAILURES_TO_SEE:
                return
            name = f"burst-{i}"
            try:
                resp = self.http.put(f"{self.base}/virtualNetworks/{name}{Q}", json=_vnet_body(i))
            except httpx.HTTPError as exc:
                self.outcomes.append(Outcome(name, None, repr(exc)))
                continue
            self.outcomes.append(
                Outcome(
                    name,
                    resp.status_code,
                    resp.text[:300] + f" Retry-After={resp.headers.get('Retry-After')}",
                    resp.headers.get("Azure-AsyncOperation"),
                )
            )
            if resp.status_code >= 300 and self.database_down.is_set():
                refused_while_down += 1


@pytest.mark.postgres
def test_postgres_restart_answers_503_then_recovers(
    own_postgres: Any, helpers: Any, tmp_path: Path
) -> None:
    with helpers.run_server(tmp_path / "data", db_url=own_postgres.url) as server:
        sub, rg = helpers.new_sub(), helpers.unique("rg")
        base = helpers.base_path(sub, rg)
        http = _client(server)
        # The token is fetched now; the ARM client's token is cached from here on.
        sdk = NetworkManagementClient(
            server.credential,
            sub,
            base_url=server.url,
            connection_verify=server.ca_file,
            polling_interval=0,
        )
        try:
            first = http.put(f"{base}/virtualNetworks/before{Q}", json=_vnet_body())
            assert first.status_code == 201, first.text

            burst = Burst(server, base)
            burst.thread.start()
            _wait_for(lambda: len(burst.acknowledged()) >= 5, "writes before the outage")
            own_postgres.halt("fast")  # mid-burst
            burst.database_down.set()
            burst.thread.join(BURST_DEADLINE_S + 5)
            assert not burst.thread.is_alive()
            burst.http.close()

            # During the outage: every kind of request answers the ARM 503.
            _assert_store_fault(
                http.get(f"{base}/virtualNetworks/before{Q}"), 503, "StoreUnavailable"
            )
            _assert_store_fault(
                http.put(f"{base}/virtualNetworks/during{Q}", json=_vnet_body()),
                503,
                "StoreUnavailable",
            )
            # A subscription the gate has not seen: its lookup fails in the middleware.
            unseen = helpers.base_path(helpers.new_sub(), rg)
            _assert_store_fault(http.get(f"{unseen}/virtualNetworks/x{Q}"), 503, "StoreUnavailable")
            # The token endpoint reads the directory: OAuth's temporarily_unavailable.
            creds = server.credentials
            with server.anonymous() as anonymous:
                token = anonymous.post(
                    f"/{creds['tenant_id']}/oauth2/v2.0/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": creds["client_id"],
                        "client_secret": creds["client_secret"],
                        "scope": "https://management.azure.com/.default",
                    },
                )
            assert token.status_code == 503, token.text
            assert token.json()["error"] == "temporarily_unavailable", token.text
            assert int(token.headers["Retry-After"]) > 0

            # The Azure SDK, with its default retries, begins a create during the outage.
            seen: list[int] = []
            result: dict[str, Any] = {}

            def create() -> None:
                try:
                    result["vnet"] = sdk.virtual_networks.begin_create_or_update(
                        rg,
                        "sdk-vnet",
                        VirtualNetwork(_vnet_body()),
                        raw_response_hook=lambda r: seen.append(r.http_response.status_code),
                    ).result()
                except Exception as exc:  # reported by the assertion below
                    result["error"] = exc

            creator = threading.Thread(target=create, name="sdk-create", daemon=True)
            creator.start()
            _wait_for(lambda: 503 in seen, "the SDK's first (refused) attempt")
            own_postgres.resume()
            creator.join(WAIT_S + 30)
            assert not creator.is_alive(), "the SDK call did not finish"
            assert "error" not in result, result.get("error")
            assert result["vnet"].name == "sdk-vnet"
            assert seen[0] == 503 and seen[-1] < 300, seen

            # The same server process answers again.
            assert server.proc.poll() is None
            again = http.put(f"{base}/virtualNetworks/after{Q}", json=_vnet_body())
            assert again.status_code == 201, again.text

            # No 500, no dropped connection; refusals are the ARM 503.
            bad = [o for o in burst.outcomes if o.status not in (200, 201, 503)]
            assert not bad, bad
            refused = burst.refused()
            assert len(refused) >= FAILURES_TO_SEE, burst.outcomes
            for outcome in refused:
                assert "StoreUnavailable" in outcome.detail, outcome
                assert "Retry-After=None" not in outcome.detail, outcome

            # All or nothing: every acknowledged write is there with its operation
            # record; no refused write left anything behind.
            present = _names(http, base)
            acknowledged = burst.acknowledged()
            assert {o.name for o in acknowledged} <= present
            assert not {o.name for o in refused} & present, [
                o for o in refused if o.name in present
            ]
            assert {"before", "sdk-vnet", "after"} <= present
            for outcome in acknowledged:
                assert outcome.operation_url, outcome
                op = http.get(outcome.operation_url)
                assert op.status_code == 200 and op.json()["status"] == "Succeeded", op.text
        finally:
            sdk.close()
            http.close()


# --- SQLite on a full disk ----------------------------------------------------------------

TMPFS_SIZE = "4m"


@contextlib.contextmanager
def small_tmpfs() -> Iterator[Path]:
    """A 4 MB tmpfs mounted on a fresh temp directory; always unmounted and removed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the full-disk test needs root")
    mountpoint = Path(tempfile.mkdtemp(prefix="privatelink-full-"))
    mounted = False
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", mountpoint],
            check=True,
            capture_output=True,
            timeout=30,
        )
        mounted = True
        yield mountpoint
    finally:
        if mounted:
            done = subprocess.run(["umount", mountpoint], capture_output=True, timeout=30)
            if done.returncode != 0:  # still busy: detach now, freed when released
                subprocess.run(["umount", "-l", mountpoint], capture_output=True, timeout=30)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def _fill(directory: Path) -> Path:
    """A file taking every free byte of the file system (bounded by its size)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    # Unbuffered: the write that finds the disk full raises, and closing has nothing left.
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        for _ in range(4096):  # 256 MB at most; the tmpfs is far smaller
            f.write(chunk)
    return filler


def test_sqlite_full_disk_answers_507_and_recovers(helpers: Any, tmp_path: Path) -> None:
    with small_tmpfs() as disk:
        db = disk / "privatelink.db"
        with helpers.run_server(tmp_path / "data", db_url=f"sqlite:///{db}") as server:
            http = _client(server)
            try:
                base = helpers.base_path(helpers.new_sub(), helpers.unique("rg"))
                kept = http.put(f"{base}/virtualNetworks/kept{Q}", json=_vnet_body())
                assert kept.status_code == 201, kept.text

                filler = _fill(disk)
                # Space SQLite's files already hold is reused first: write until refused.
                statuses: list[int] = []
                refused: list[str] = []
                for i in range(200):
                    name = f"full-{i}"
                    resp = http.put(f"{base}/virtualNetworks/{name}{Q}", json=_vnet_body(i))
                    statuses.append(resp.status_code)
                    if resp.status_code >= 300:
                        _assert_store_fault(resp, 507, "InsufficientStorage")
                        refused.append(name)
                        break
                assert refused, f"no write was refused on a full disk: {statuses}"
                assert all(s in (200, 201, 507) for s in statuses), statuses

                # Reads keep working; the refused write left nothing behind.
                assert http.get(f"{base}/virtualNetworks/kept{Q}").status_code == 200
                assert http.get(f"{base}/virtualNetworks/{refused[0]}{Q}").status_code == 404
                assert "kept" in _names(http, base)
                # Still full: a second write is refused the same way, not with a 500.
                _assert_store_fault(
                    http.put(f"{base}/virtualNetworks/{refused[0]}{Q}", json=_vnet_body()),
                    507,
                    "InsufficientStorage",
                )
                # A template deployment: the server failed, not the template (no
                # "DeploymentFailed" record), and nothing of it was written.
                deployment = base.replace(
                    "/providers/Microsoft.Network", "/providers/Microsoft.Resources/deployments/d"
                )
                _assert_store_fault(
                    http.put(f"{deployment}{Q}", json=_deployment_body(refused[0])),
                    507,
                    "InsufficientStorage",
                )
                assert http.get(f"{deployment}{Q}").status_code == 404

                with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
                    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

                filler.unlink()
                # The refused name is created now (201: it did not exist).
                retry = http.put(f"{base}/virtualNetworks/{refused[0]}{Q}", json=_vnet_body())
                assert retry.status_code == 201, retry.text
                assert server.proc.poll() is None
            finally:
                http.close()
