"""`make demo` runs `python -m privatelink.demo`: it must complete, with real traffic as root.

The demo is issue 10's proof: the provider (the default tenant's admin) and the consumer
(the admin of a tenant made with `privatelink tenant create`) are different principals in
different tenants; a stranger in a third tenant can't see the service; the consumer can't
approve its own connection (401 across tenants), nor can a Reader of the provider's tenant
(403), while a principal with a custom approval role can; and the service's activity log
says who approved and who rejected.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _row(out: str, *cells: str) -> str:
    """The one table row of `out` holding every cell (in order), or a failed assertion."""
    pattern = r".*".join(re.escape(cell) for cell in cells)
    rows = [line for line in out.splitlines() if re.search(pattern, line)]
    assert len(rows) == 1, (cells, rows)
    return rows[0]


def test_the_demo_runs_to_completion() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "privatelink.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, COLUMNS="250"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Traceback" not in out + proc.stderr
    assert "Demo complete." in out
    # The portal's URL and a user of the provider's tenant, with its password.
    assert re.search(r"portal: https://127\.0\.0\.1:\d+/", out), out[-2000:]
    assert re.search(r"sign in as: demo@default", out)
    assert re.search(r"password: \S{20,}", out)
    assert "PrivateLinkServiceNotSupportedOnBasicLoadBalancer" in out
    assert "PrivateLinkServiceHasPrivateEndpointConnections" in out
    if os.geteuid() == 0:  # with the data plane: a page fetched through the endpoint
        assert "one of the service's NAT IPs" in out
        assert "nothing (pending connections carry no traffic)" in out
        assert "nothing (the flow is cut)" in out
        # Private DNS: the name resolved to the endpoint, then stopped resolving.
        assert "curl http://svc.contoso.example/ by name" in out
        assert "nothing (the name no longer resolves)" in out
    assert "('svc', [" in out  # the zone group's record while Approved

    # Who is who: three principals, three tenants, read from their tokens.
    assert "privatelink tenant create fabrikam --data-dir" in out
    ids = {}
    for who in ("contoso admin (provider)", "fabrikam admin (consumer)", "northwind admin"):
        # The table's first column (the log's "who" column has the same names).
        (row,) = [line for line in out.splitlines() if line.startswith(f"│ {who} ")]
        tenant, oid, subscription = re.findall(GUID, row)
        ids[who] = (tenant, oid, subscription)
    assert len({tenant for tenant, _, _ in ids.values()}) == 3
    assert len({oid for _, oid, _ in ids.values()}) == 3
    provider_oid = ids["contoso admin (provider)"][1]

    # Visibility: the consumer sees the service, the stranger of a third tenant does not.
    assert "fabrikam admin (consumer): visible=True" in out
    assert "northwind admin (stranger): visible=False" in out

    # The consumer can't approve its own connection; a Reader can't; the approver can.
    assert "refused: 401 InvalidAuthenticationTokenTenant" in out
    assert "refused: 403 AuthorizationFailed" in out
    assert "approver sees: Approved" in out

    # The activity log, as the provider reads it: who approved, who rejected, and the refusal.
    approver_oid = re.search(rf"approver: object ({GUID})", out)
    reader_oid = re.search(rf"reader: object ({GUID})", out)
    assert approver_oid and reader_oid, out
    _row(
        out,
        "approve",
        reader_oid.group(1),
        "privateEndpointConnections/write",
        "Failed (Forbidden)",
    )
    _row(out, "approve", approver_oid.group(1), "privateEndpointConnections/write", "Succeeded")
    _row(out, "reject", provider_oid, "privateEndpointConnections/write", "Succeeded")
    _row(out, "delete (too early)", provider_oid, "Failed (Conflict)")
    assert f"approved by: approver ({approver_oid.group(1)})" in out
    assert f"rejected by: contoso admin (provider) ({provider_oid})" in out
