"""The topology with the data plane on: a real server (its own namespace prefix) with a
backend VM whose TCP server answers the load balancer's probe; the portal's topology
shows the approved link and the backend up, and when the backend's server dies the
backend turns red by itself (the page fetches the drawing every 3 s; the probe runs every
5 s and a backend is down after 2 failures). Root only; every namespace is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arm_bodies import Rule, lb_body, nic_body, pls_body, provider_vnet_body
from identities import ROLES, Identity
from portal_scene import sign_in
from serverproc import ServerProcess, serve_process

from privatelink.dataplane import names, privileged

pytestmark = pytest.mark.browser

LOCATION = "eastus"
LISTEN = "import socket,sys,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',int(sys.argv[1])))\ns.listen(64)\nwhile True:\n c,_=s.accept()\n c.close()\n"  # noqa: E501
DOWN_WITHIN_S = 25.0  # 2 probes at 5 s, a sync, and the page's 3 s refresh, with room


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "privatelink.cli.main", args[0], "--data-dir", str(data_dir)]
    return subprocess.run(
        [*argv, *args[1:]], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path, str]]:
    """A server with the data plane on; its namespaces removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("nft"):
        pytest.skip("needs root and nft (the data plane)")
    prefix = "pw" + secrets.token_hex(3)
    data_dir = tmp_path / "data"
    try:
        args = ("--dataplane", "on", "--netns-prefix", prefix)
        with serve_process(data_dir, *args) as server:
            yield server, data_dir, prefix
    finally:
        _cli(data_dir, "cleanup", "--netns-prefix", prefix)
        left = [n for n in privileged.list_netns() if names.is_ours(prefix, n)]
        assert not left, f"namespaces left behind: {left}"


def _build(admin: Identity, sub: str) -> dict[str, str]:
    """Provider network, load balancer with one backend VM, service, an approved
    endpoint; returns the ids the test needs."""
    net = admin.network(sub)
    admin.http().put(
        f"/subscriptions/{sub}/resourcegroups/rg",
        params={"api-version": "2022-09-01"},
        json={"location": LOCATION},
    ).raise_for_status()
    base = f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network"
    subnet = f"{base}/virtualNetworks/vnet/subnets"
    lb = f"{base}/loadBalancers/lb"
    net.virtual_networks.begin_create_or_update("rg", "vnet", provider_vnet_body(LOCATION)).result()
    net.load_balancers.begin_create_or_update(
        "rg", "lb", lb_body(lb, f"{subnet}/frontend", LOCATION, rules=[Rule("r80", "fe", "be")])
    ).result()
    backend = net.network_interfaces.begin_create_or_update(
        "rg", "backend", nic_body(f"{subnet}/backend", LOCATION, f"{lb}/backendAddressPools/be")
    ).result()
    service = net.private_link_services.begin_create_or_update(
        "rg",
        "svc",
        pls_body(f"{lb}/frontendIPConfigurations/fe", f"{subnet}/nat", LOCATION),
    ).result()
    net.virtual_networks.begin_create_or_update(
        "rg",
        "cvnet",
        {
            "location": LOCATION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.9.0.0/16"]},
                "subnets": [{"name": "pe", "properties": {"addressPrefix": "10.9.1.0/24"}}],
            },
        },
    ).result()
    net.private_endpoints.begin_create_or_update(
        "rg",
        "pe",
        {
            "location": LOCATION,
            "properties": {
                "subnet": {"id": f"{base}/virtualNetworks/cvnet/subnets/pe"},
                "privateLinkServiceConnections": [
                    {"name": "c", "properties": {"privateLinkServiceId": service.id}}
                ],
            },
        },
    ).result()
    ip = backend.ip_configurations[0].private_ip_address
    return {"service": str(service.id), "backend_nic": str(backend.id), "backend_ip": str(ip)}


def test_a_dead_backend_turns_red(live: Any, page: Any, shot: Any) -> None:
    server, data_dir, _prefix = live
    admin = Identity.from_json(dict(server.credentials))
    sub = server.credentials["subscription_id"]
    echo: subprocess.Popen[bytes] | None = None
    try:
        ids = _build(admin, sub)
        user = (
            admin.http()
            .post("/privatelink/admin/tenants/default/users", json={"name": "ops"})
            .json()
        )
        admin.authorization(sub).role_assignments.create(
            f"/subscriptions/{sub}",
            "3f1c1f7e-4d1a-4f3e-9a51-1c9a3c1d0a01",
            {
                "properties": {
                    "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
                    f"roleDefinitions/{ROLES['Network Contributor']}",
                    "principalId": user["object_id"],
                    "principalType": "User",
                }
            },
        )
        argv = [sys.executable, "-m", "privatelink.cli.main", "exec", "--data-dir", str(data_dir)]
        argv += ["--nic", ids["backend_nic"], "--", sys.executable, "-c", LISTEN, "8080"]
        echo = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sign_in(page, server.url, user["user_principal_name"], user["password"])
        page.wait_for_url(f"{server.url}/portal/")
        page.goto(f"{server.url}/portal/topology?id={ids['service']}")
        backend = page.locator(f"[id='backend-{ids['backend_ip']}']")
        backend.wait_for(state="attached")
        page.wait_for_function(
            "id => document.getElementById(id)?.classList.contains('ok')",
            arg=f"backend-{ids['backend_ip']}",
            timeout=DOWN_WITHIN_S * 1000,
        )
        assert page.locator("[id='link-pe']").get_attribute("class") == "node ok"  # approved
        shot(page, "15-topology-live-up")
        echo.kill()
        echo.wait(10)
        killed = time.monotonic()
        page.wait_for_function(
            "id => document.getElementById(id)?.classList.contains('bad')",
            arg=f"backend-{ids['backend_ip']}",
            timeout=DOWN_WITHIN_S * 1000,
        )
        took = time.monotonic() - killed
        shot(page, "16-topology-live-down")
        assert took < DOWN_WITHIN_S, took
    finally:
        if echo is not None and echo.poll() is None:
            echo.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                echo.wait(10)
        admin.close()
