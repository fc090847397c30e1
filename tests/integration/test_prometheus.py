"""`privatelink serve --metrics-addr`: a real scrape of the Prometheus exposition after
real API requests (the server runs without the data plane: the data plane's families are
covered by tests/unit/test_prometheus.py on a fake sampler)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.serverproc import free_port, serve_process

pytestmark = pytest.mark.integration


def _scrape(address: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        response = http.get(f"http://{address}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            families.setdefault(s.name, []).append((dict(s.labels), s.value))
    return families


def test_api_requests_and_connection_states_are_exposed() -> None:
    address = f"127.0.0.1:{free_port()}"
    data_dir = Path(tempfile.mkdtemp(prefix="plprom"))
    with serve_process(data_dir, "--dataplane", "off", "--metrics-addr", address) as server:
        assert f"Prometheus:   http://{address}/metrics" in server.stdout_path.read_text()
        creds = server.credentials
        tls = ssl.create_default_context(cafile=creds["ca_file"])
        with httpx.Client(verify=tls, trust_env=False, timeout=10) as http:
            sub = creds["subscription_id"]
            path = f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network"
            # Unauthenticated: counted, as a 4xx of the operation it asked for.
            for _ in range(3):
                http.get(f"{creds['url']}{path}/virtualNetworks/v?api-version=2024-05-01")
        families = _scrape(address)
        requests = families["privatelink_api_requests_total"]
        read = [
            value
            for labels, value in requests
            if labels["operation"] == "Microsoft.Network/virtualNetworks/read"
            and labels["status"] == "4xx"
            and labels["method"] == "GET"
        ]
        assert read == [3.0]
        counts = [
            v
            for labels, v in families["privatelink_api_request_duration_seconds_count"]
            if labels["operation"] == "Microsoft.Network/virtualNetworks/read"
        ]
        assert counts == [3.0]
        states = {
            labels["state"]: v for labels, v in families["privatelink_private_endpoint_connections"]
        }
        assert states == {"Pending": 0, "Approved": 0, "Rejected": 0, "Disconnected": 0}
        # Names follow Prometheus conventions: counters end in _total, no Azure casing.
        assert all(name == name.lower() for name in families)


def test_a_metrics_address_in_use_is_refused(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "privatelink.cli.main", "serve", "--data-dir", str(tmp_path)]

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                *serve,
                "--port",
                str(free_port()),
                "--dataplane",
                "off",
                "--metrics-addr",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode != 0
    assert "already in use" in proc.stderr
    bad = subprocess.run(
        [*serve, "--dataplane", "off", "--metrics-addr", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
