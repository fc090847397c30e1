"""SIGTERM/SIGINT stop `privatelink serve` gracefully (issue 11, hardening).

A request in flight when the signal comes is finished and answered, and what it wrote
is there after a restart on the same data directory; new connections are refused from
the moment the server stops; an idle keep-alive client does not hold the shutdown;
the drain is bounded; the process exits 0.

The in-flight request is a PUT sent on a raw TLS connection with `Expect:
100-continue`: the server's `100 Continue` proves the app is reading the body before
the signal is sent (a client-side generator alone cannot show the server has the head).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from identities import Identity
from rawhttp import TlsConn, request_head
from serverproc import ServerProcess, serve_process

pytestmark = pytest.mark.integration

API = "api-version=2022-12-01"
# Waits for a stop that should take about a second (the TLS close grace); far below the
# drain timeouts the tests configure, and below asyncio's own 30 s TLS close timeout.
STOP_DEADLINE_S = 20.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pl-graceful-"))
    try:
        yield d / "data"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def running(data_dir: Path, shutdown_timeout: float) -> Iterator[tuple[ServerProcess, Identity]]:
    """A control-plane server and its admin; the identity is closed afterwards."""
    args = ("--dataplane", "off", "--shutdown-timeout", str(shutdown_timeout))
    with serve_process(data_dir, *args) as server:
        admin = Identity.from_json(server.credentials)
        try:
            yield server, admin
        finally:
            admin.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_put(server: ServerProcess, admin: Identity, path: str, body: bytes) -> TlsConn:
    """A PUT whose head and first body byte are sent; returns once the app reads the body."""
    conn = TlsConn(server.url, server.ca_file)
    headers = [
        ("Authorization", f"Bearer {admin.token()}"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Expect", "100-continue"),
    ]
    conn.send(request_head("PUT", path, "127.0.0.1", headers) + body[:1])
    interim = conn.read_response()
    assert interim.status == 100, f"expected 100 Continue, got {interim}"
    return conn


def group_path(admin: Identity) -> str:
    return f"/subscriptions/{admin.subscription_id}/resourcegroups/rg-{uuid.uuid4().hex[:8]}"


def test_sigterm_finishes_the_request_in_flight_and_a_restart_has_its_write(
    data_dir: Path,
) -> None:
    body = json.dumps({"location": "eastus", "tags": {"during": "shutdown"}}).encode()
    with running(data_dir, shutdown_timeout=60) as (server, admin):
        path = group_path(admin)
        conn = start_put(server, admin, f"{path}?{API}", body)
        with conn:
            server.send_signal(signal.SIGTERM)
            wait_until(lambda: not server.accepts_connections(), 10, "new connections refused")
            assert server.proc.poll() is None, "the server exited with a request in flight"
            conn.send(body[1:])
            resp = conn.read_response()
            assert resp.status == 201, resp
            assert json.loads(resp.body)["tags"] == {"during": "shutdown"}
            assert conn.closed_by_server(), "the connection stayed open after the drain"
        assert server.wait_exit(STOP_DEADLINE_S) == 0
    with running(data_dir, shutdown_timeout=60) as (server, admin):
        got = admin.http().get(f"{path}?{API}")
        assert got.status_code == 200, got.text
        assert got.json()["tags"] == {"during": "shutdown"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_idle_keep_alive_connection_does_not_hold_the_shutdown(
    data_dir: Path, sig: signal.Signals
) -> None:
    # Drain timeout 120 s: only the idle connection could make the server wait.
    with running(data_dir, shutdown_timeout=120) as (server, admin):
        client = admin.http()
        assert client.get(f"/subscriptions?{API}").status_code == 200  # now kept alive
        server.send_signal(sig)
        assert server.wait_exit(STOP_DEADLINE_S) == 0
        with pytest.raises(httpx.TransportError):
            client.get(f"/subscriptions?{API}")


def test_the_drain_is_bounded_and_an_unfinished_request_writes_nothing(
    data_dir: Path,
) -> None:
    body = json.dumps({"location": "eastus"}).encode()
    with running(data_dir, shutdown_timeout=1) as (server, admin):
        path = group_path(admin)
        with start_put(server, admin, f"{path}?{API}", body) as conn:
            server.send_signal(signal.SIGTERM)
            # The rest of the body never comes: the drain ends, the connection is cut
            # without an answer (no 5xx for a request the server never got whole).
            assert server.wait_exit(STOP_DEADLINE_S) == 0
            assert conn.closed_by_server()
    with running(data_dir, shutdown_timeout=1) as (server, admin):
        got = admin.http().get(f"{path}?{API}")
        assert got.status_code == 404, got.text


def test_a_second_signal_stops_without_waiting_for_the_drain(data_dir: Path) -> None:
    body = json.dumps({"location": "eastus"}).encode()
    with running(data_dir, shutdown_timeout=120) as (server, admin):
        conn = start_put(server, admin, f"{group_path(admin)}?{API}", body)
        with conn:
            server.send_signal(signal.SIGTERM)
            wait_until(lambda: not server.accepts_connections(), 10, "new connections refused")
            server.send_signal(signal.SIGINT)
            assert server.wait_exit(STOP_DEADLINE_S) == 0
            assert conn.closed_by_server()
