"""A load-balancing rule's backend health (LoadBalancerLoadBalancingRules_Health).

The route in a minimal app (the load balancer router behind the api-version check and the
real enforcement, the canonical-path middleware, a real `SqlRbacStore`; the caller named
by an `x-caller` header stands in for the gate) with a fake health source; then the data
plane's side: the prober's reason codes (its probe replaced by a script) and
`health.rule_health` over a plan. tests/netns/test_rule_health.py probes real backends.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from header_caller import AsHeaderCaller, arm_request
from pl_world import S1, World, lb_id, nic_id, pool_id, subnet_id, vnet_id
from sqlalchemy import create_engine

from privatelink.api import errors, load_balancer
from privatelink.api.paths import CanonicalPathMiddleware
from privatelink.core import load_balancer as lbm
from privatelink.core import network_interface as nim
from privatelink.core import private_link as pl
from privatelink.core.authorization import RoleAssignment
from privatelink.core.limits import Limits
from privatelink.dataplane import health
from privatelink.dataplane.desired import HealthKey, HubPlan, Plan, ProbeSpec, RulePlan
from privatelink.service import ControlPlane
from privatelink.store.rbac import SqlRbacStore

with warnings.catch_warnings():
    # Starlette's TestClient warns at import about its httpx use (warnings are errors).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TENANT = "aaaaaaaa-0000-4000-8000-000000000001"
V = "?api-version=2024-05-01"
LB = lb_id()
RULE = f"{LB}/loadBalancingRules/r1"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
B0, B1, B2 = "10.0.2.10", "10.0.2.11", "10.0.2.9"


class FakeHealth:
    """A health source: rule id -> {ip: state}; records what it was asked."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, lbm.ProbeState]] = {}
        self.asked: list[str] = []

    def __call__(self, rule_id: str) -> Mapping[str, lbm.ProbeState]:
        self.asked.append(rule_id)
        return self.states.get(rule_id.lower(), {})


def _nic(name: str, ip: str, pools: tuple[str, ...]) -> nim.NetworkInterface:
    config = nim.NicIpConfiguration(
        "ipconfig1", subnet_id("vp", "be"), private_ip=ip, allocation="Static", pool_ids=pools
    )
    return nim.NetworkInterface(
        id=nic_id(name), name=name, location="eastus", ip_configurations=(config,)
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[World, SqlRbacStore]]:
    """Provider `lb` (rules r1 on pool be1 and r2 on be2, both probed by `p`), NICs b0 and
    b1 in be1, and b2 in be2."""
    world = World(tmp_path / "world", Limits())
    world.provider(n=2)
    for name, ip, pool in (("b0", B0, "be1"), ("b1", B1, "be1"), ("b2", B2, "be2")):
        world.run(nim.create_or_update, _nic(name, ip, (pool_id(pool),)))
    rbac = SqlRbacStore(create_engine(f"sqlite:///{tmp_path / 'rbac.db'}"))
    try:
        yield world, rbac
    finally:
        world.dispose()


def _app(world: World, rbac: SqlRbacStore, source: Any) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(load_balancer.router, dependencies=[Depends(arm_request)])
    app.state.control_plane = ControlPlane(world.repo)
    app.state.rule_health = source
    app.state.access_for = rbac.access_for
    app.add_middleware(AsHeaderCaller, tenant=TENANT)
    app.add_middleware(CanonicalPathMiddleware)  # outermost, as in the server
    return app


@pytest.fixture
def fake() -> FakeHealth:
    return FakeHealth()


@pytest.fixture
def client(served: tuple[World, SqlRbacStore], fake: FakeHealth) -> Iterator[TestClient]:
    with TestClient(_app(*served, fake)) as c:
        yield c


def grant(rbac: SqlRbacStore, role: str, scope: str) -> str:
    """A new principal with `role` at `scope`; returns its object id."""
    who = str(uuid.uuid4())
    rbac.create_assignment(
        RoleAssignment(str(uuid.uuid4()), scope, role, who, "ServicePrincipal"), TENANT
    )
    return who


def ask(client: TestClient, who: str, path: str = f"{RULE}/health") -> Any:
    return client.post(path + V, headers={"x-caller": who})


def _config(name: str) -> str:
    return f"{nic_id(name)}/ipConfigurations/ipconfig1"


def test_each_backend_with_its_probe_state_and_the_counts(
    served: tuple[World, SqlRbacStore], client: TestClient, fake: FakeHealth
) -> None:
    _world, rbac = served
    fake.states[RULE.lower()] = {
        B0: lbm.ProbeState(True, lbm.UP_PROBE_SUCCESS),
        B1: lbm.ProbeState(False, lbm.DOWN_PROBE_TCP_TIMEOUT),
    }
    r = ask(client, grant(rbac, OWNER, f"/subscriptions/{S1}"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {
        "up": 1,
        "down": 1,
        "loadBalancerBackendAddresses": [
            {
                "ipAddress": B0,
                "networkInterfaceIPConfigurationId": _config("b0"),
                "state": "Up",
                "reason": "Up_Probe_Success",
            },
            {
                "ipAddress": B1,
                "networkInterfaceIPConfigurationId": _config("b1"),
                "state": "Down",
                "reason": "Down_Probe_TcpProbeTimeout",
            },
        ],
    }
    assert fake.asked == [RULE]


def test_a_backend_no_probe_has_judged_is_na_and_counts_neither_way(
    served: tuple[World, SqlRbacStore], client: TestClient, fake: FakeHealth
) -> None:
    _world, rbac = served
    fake.states[RULE.lower()] = {B1: lbm.ProbeState(True, lbm.UP_PROBE_APPROACHING_UNHEALTHY)}
    body = ask(client, grant(rbac, OWNER, f"/subscriptions/{S1}")).json()
    assert (body["up"], body["down"]) == (1, 0)
    first, second = body["loadBalancerBackendAddresses"]
    assert first == {
        "ipAddress": B0,
        "networkInterfaceIPConfigurationId": _config("b0"),
        "reason": "NA",
    }
    assert second["state"] == "Up"
    assert second["reason"] == "Up_Probe_ApproachingUnhealthyThreshold"


def test_without_a_data_plane_every_backend_is_na(served: tuple[World, SqlRbacStore]) -> None:
    world, rbac = served
    with TestClient(_app(world, rbac, None)) as c:
        body = ask(c, grant(rbac, OWNER, f"/subscriptions/{S1}")).json()
    assert (body["up"], body["down"]) == (0, 0)
    assert [(a["ipAddress"], a["reason"]) for a in body["loadBalancerBackendAddresses"]] == [
        (B0, "NA"),
        (B1, "NA"),
    ]
    assert all("state" not in a for a in body["loadBalancerBackendAddresses"])


def test_ip_based_members_have_no_nic_configuration(
    served: tuple[World, SqlRbacStore], client: TestClient, fake: FakeHealth
) -> None:
    world, rbac = served
    lb = world.lb()
    pools = (
        lb.pools[0],
        lbm.BackendPool("be2", (lbm.BackendAddress("a1", "10.0.2.30", vnet_id()),)),
    )
    world.run(nim.delete, nic_id("b2"))
    world.run(pl.create_or_update_load_balancer, lbm.LoadBalancer(**{**vars(lb), "pools": pools}))
    r2 = f"{LB}/loadBalancingRules/r2"
    fake.states[r2.lower()] = {"10.0.2.30": lbm.ProbeState(False, lbm.DOWN_PROBE_HTTP_STATUS)}
    body = ask(client, grant(rbac, OWNER, f"/subscriptions/{S1}"), f"{r2}/health").json()
    assert body == {
        "up": 0,
        "down": 1,
        "loadBalancerBackendAddresses": [
            {"ipAddress": "10.0.2.30", "state": "Down", "reason": "Down_Probe_HttpStatusCodeError"}
        ],
    }


def test_paths_match_in_any_case_and_the_rule_is_asked_by_its_own_name(
    served: tuple[World, SqlRbacStore], client: TestClient, fake: FakeHealth
) -> None:
    _world, rbac = served
    path = (
        f"/subscriptions/{S1}/resourcegroups/rg/providers/microsoft.network/loadbalancers/LB"
        "/loadbalancingrules/R1/Health"
    )
    r = ask(client, grant(rbac, OWNER, f"/subscriptions/{S1}"), path)
    assert r.status_code == 200, r.text
    assert fake.asked == [RULE]  # the stored casing


def test_unknown_rule_and_load_balancer_are_404_with_arm_errors(
    served: tuple[World, SqlRbacStore], client: TestClient
) -> None:
    _world, rbac = served
    owner = grant(rbac, OWNER, f"/subscriptions/{S1}")
    r = ask(client, owner, f"{LB}/loadBalancingRules/nope/health")
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "ResourceNotFound"
    assert "loadBalancingRules/nope" in error["message"]
    r = ask(client, owner, f"{lb_id('other')}/loadBalancingRules/r1/health")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ResourceNotFound"
    r = client.post(f"{RULE}/health", headers={"x-caller": owner})
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"


def test_a_reader_is_refused_and_a_network_contributor_is_not(
    served: tuple[World, SqlRbacStore], client: TestClient, fake: FakeHealth
) -> None:
    _world, rbac = served
    reader = grant(rbac, READER, f"/subscriptions/{S1}")
    r = ask(client, reader)
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert "Microsoft.Network/loadBalancers/loadBalancingRules/health/action" in error["message"]
    assert fake.asked == []  # refused before the route ran
    assert client.get(f"{RULE}{V}", headers={"x-caller": reader}).status_code == 200
    netc = grant(rbac, NETWORK_CONTRIBUTOR, f"/subscriptions/{S1}/resourceGroups/rg")
    assert ask(client, netc).status_code == 200


# --- the data plane's side ------------------------------------------------------------------


def _key(ip: str, threshold: int = 2) -> HealthKey:
    return HealthKey("tst-hub", ip, ProbeSpec("Http", 8080, "/", 0.01, threshold))


def _wait(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_prober_keeps_azures_reason_for_each_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each probe takes the next outcome of the script; then it repeats the last one.
    script = [None, lbm.DOWN_PROBE_HTTP_STATUS, lbm.DOWN_PROBE_HTTP_NO_RESPONSE]
    step = threading.Event()
    seen: list[str | None] = []

    async def scripted(key: HealthKey) -> str | None:
        while not step.is_set():  # one probe per step of the test
            await asyncio.sleep(0.005)
        step.clear()
        outcome = script[min(len(seen), len(script) - 1)]
        seen.append(outcome)
        return outcome

    monkeypatch.setattr(health, "probe_failure", scripted)
    changes: list[int] = []
    prober = health.Prober(lambda: changes.append(1))
    key = _key(B0, threshold=2)
    try:
        prober.track((key,))
        assert prober.states() == {}  # not probed yet: no state

        def probe() -> None:
            n = len(seen)
            step.set()
            _wait(lambda: len(seen) > n and key in prober.states(), "a probe")

        probe()
        assert prober.states()[key] == lbm.ProbeState(True, lbm.UP_PROBE_SUCCESS)
        probe()  # one failure of two: still in rotation
        assert prober.states()[key] == lbm.ProbeState(True, lbm.UP_PROBE_APPROACHING_UNHEALTHY)
        probe()  # the second: out, with the last failure's reason
        assert prober.states()[key] == lbm.ProbeState(False, lbm.DOWN_PROBE_HTTP_NO_RESPONSE)
        assert prober.verdicts() == {key: False}
        assert changes == [1]
        script.append(None)
        probe()  # one success brings it back
        assert prober.states()[key] == lbm.ProbeState(True, lbm.UP_PROBE_SUCCESS)
        prober.track(())  # a target dropped is forgotten
        _wait(lambda: prober.states() == {}, "the target to be dropped")
    finally:
        step.set()
        prober.stop()


def test_rule_health_reads_the_rules_probed_backends_from_the_plan() -> None:
    up, down, unprobed = _key(B0), _key(B1), _key(B2)
    rule = RulePlan(
        rule_id=RULE,
        chain="r",
        protocol="tcp",
        frontend_ip="10.0.1.4",
        frontend_port=80,
        backend_port=8080,
        backends=(B0, B2),
        distribution="Default",
        probed=(up, down, unprobed),
    )
    plan = Plan(hubs=(HubPlan("v", "tst-hub", rules=(rule,)),), links=(), health_checks=())
    states = {
        up: lbm.ProbeState(True, lbm.UP_PROBE_SUCCESS),
        down: lbm.ProbeState(False, lbm.DOWN_PROBE_TCP_TIMEOUT),
    }
    assert health.rule_health(plan, states, RULE.upper()) == {B0: states[up], B1: states[down]}
    assert health.rule_health(plan, states, f"{LB}/loadBalancingRules/r2") == {}
    assert health.rule_health(None, states, RULE) == {}
