"""A load-balancing rule's backend health over the API, from real probes of real backends.

The load balancer router in an app on this world's control plane, with the reconciler's
`rule_health` as `serve --dataplane on` wires it (server.py); the caller is let through
(tests/unit/test_rule_health.py covers enforcement). A backend whose server stops goes
Down within a probe interval (plus the probe's timeout), and Up again once it listens.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from world import PROVIDER, World, wait_for

from privatelink.api import errors, load_balancer
from privatelink.api.arm import check_api_version
from privatelink.core import network_interface as nim
from privatelink.dataplane.health import TIMEOUT

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.netns

INTERVAL = 5  # Azure's minimum probe interval, seconds
V = {"api-version": "2024-05-01"}

# Listens on a port: answers every request with argv[2] as its status ("503"), or, with
# "silent", accepts and never answers.
ANSWER = r"""
import socket, sys, threading
port, status = int(sys.argv[1]), sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(16)
held = []
def answer(c):
    try:
        c.recv(4096)
        head = f"HTTP/1.1 {status} No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        c.sendall(head.encode())
    finally:
        c.close()
while True:
    c, _ = s.accept()
    if status == "silent":
        held.append(c)
    else:
        threading.Thread(target=answer, args=(c,), daemon=True).start()
"""


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    app = FastAPI()
    errors.install(app)

    async def arm(request: Request) -> None:
        check_api_version(request)

    app.include_router(load_balancer.router, dependencies=[Depends(arm)])
    app.state.control_plane = world.plane
    app.state.rule_health = world.reconciler.rule_health
    with TestClient(app) as c:
        yield c


def _network(world: World, probe: tuple[str, int, str | None, int]) -> tuple[Any, list[Any]]:
    """An internal load balancer (frontend 10.0.1.4:80 -> pool `be` :8080, probed by
    `probe`) and two backend NICs."""
    vnet = world.vnet(PROVIDER, "prov", "10.0.0.0/16", {"fe": "10.0.1.0/24", "be": "10.0.2.0/24"})
    lb = world.load_balancer(
        PROVIDER, "lb", {"fe": vnet.subnet_id("fe")}, [("http", "fe", 80, 8080, "be")], probe
    )
    pool = lb.child_id("backendAddressPools", "be")
    nics = [world.nic(PROVIDER, f"b{i}", vnet.subnet_id("be"), pools=(pool,)) for i in range(2)]
    world.settle()
    return lb, nics


def _health(client: TestClient, lb: Any) -> dict[str, Any]:
    url = lb.child_id("loadBalancingRules", "http") + "/health"
    r = client.post(url, params=V)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _states(client: TestClient, lb: Any) -> dict[str, tuple[str | None, str]]:
    return {
        a["ipAddress"]: (a.get("state"), a["reason"])
        for a in _health(client, lb)["loadBalancerBackendAddresses"]
    }


def _ip(nic: nim.NetworkInterface) -> str:
    ip = nic.ip_configurations[0].private_ip
    assert ip
    return ip


def test_a_backend_that_stops_goes_down_and_comes_back_up(world: World, client: TestClient) -> None:
    lb, nics = _network(world, ("Tcp", 8080, None, INTERVAL))
    ips = [_ip(n) for n in nics]
    procs = [world.serve_whoami(nic, f"b{i}") for i, nic in enumerate(nics)]
    up = ("Up", "Up_Probe_Success")
    # A probe that ran before a backend listened keeps it down for one interval.
    wait_for(lambda: _states(client, lb) == {ips[0]: up, ips[1]: up}, 3 * INTERVAL, "both up")
    body = _health(client, lb)
    assert (body["up"], body["down"]) == (2, 0)
    assert body["loadBalancerBackendAddresses"][0]["networkInterfaceIPConfigurationId"] == (
        f"{nics[0].id}/ipConfigurations/ip1"
    )

    procs[1].kill()
    procs[1].wait()
    stopped = time.monotonic()
    down = ("Down", "Down_Probe_TcpProbeTimeout")
    wait_for(lambda: _states(client, lb)[ips[1]] == down, 3 * INTERVAL, "b1 down")
    # The threshold is 1: the next probe after the stop takes it out.
    assert time.monotonic() - stopped <= INTERVAL + TIMEOUT + 1.0
    body = _health(client, lb)
    assert (body["up"], body["down"]) == (1, 1)
    assert _states(client, lb)[ips[0]] == up
    # The data path agrees once the verdict is synced: b1 is out of the rule's rotation.
    world.settle()
    plan = world.reconciler.plan
    assert plan is not None
    (rule,) = [r for h in plan.hubs for r in h.rules]
    assert rule.backends == (ips[0],)

    world.serve_whoami(nics[1], "b1 again")
    wait_for(lambda: _states(client, lb)[ips[1]] == up, 3 * INTERVAL, "b1 up again")
    world.settle()
    plan = world.reconciler.plan
    assert plan is not None
    assert sorted(r.backends for h in plan.hubs for r in h.rules) == [tuple(sorted(ips))]


def test_http_probe_failures_carry_azures_reasons(world: World, client: TestClient) -> None:
    lb, nics = _network(world, ("Http", 8080, "/healthz", INTERVAL))
    ips = [_ip(n) for n in nics]
    world.run(nics[0], ANSWER, "8080", "503")
    world.run(nics[1], ANSWER, "8080", "silent")
    wanted = {
        ips[0]: ("Down", "Down_Probe_HttpStatusCodeError"),
        ips[1]: ("Down", "Down_Probe_HttpNoResponse"),
    }
    wait_for(lambda: _states(client, lb) == wanted, 3 * INTERVAL, "both down, with reasons")
    body = _health(client, lb)
    assert (body["up"], body["down"]) == (0, 2)
