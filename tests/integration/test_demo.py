"""`make demo` runs `python -m privatelink.demo`: it must complete, with real traffic as root."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_the_demo_runs_to_completion() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "privatelink.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Demo complete." in out
    assert "PrivateLinkServiceNotSupportedOnBasicLoadBalancer" in out
    assert "PrivateLinkServiceHasPrivateEndpointConnections" in out
    assert "visible=False" in out
    if os.geteuid() == 0:  # with the data plane: a page fetched through the endpoint
        assert "one of the service's NAT IPs" in out
        assert "nothing (pending connections carry no traffic)" in out
        assert "nothing (the flow is cut)" in out
        # Private DNS: the name resolved to the endpoint, then stopped resolving.
        assert "curl http://svc.contoso.example/ by name" in out
        assert "nothing (the name no longer resolves)" in out
    assert "('svc', [" in out  # the zone group's record while Approved
