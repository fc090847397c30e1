"""The remembering planner (issue 12): whatever happened before, `Planner.plan` gives
exactly what a fresh `plan` gives, and reuses the parts whose inputs did not change;
`Planner.update`, given only the endpoints a change touched, gives it too, and says
which links and PE addresses came and went."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pl_world import S2, World, make_pe, make_pls, nat, pe_id, pls_id

from privatelink.core import private_link as pl
from privatelink.core.limits import Limits
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.private_endpoint import PrivateEndpoint
from privatelink.core.private_link_service import PrivateEndpointConnection, PrivateLinkService
from privatelink.core.resource import Resource
from privatelink.dataplane.desired import (
    MemoryPairSlots,
    Plan,
    Planner,
    Snapshot,
    approved_keys,
    plan,
    service_facts,
)

_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["pe", "delete pe", "approve", "reject", "service fqdn", "destination", "reslot"]
        ),
        st.integers(0, 3),
        st.integers(0, 2),  # pls1, pls2 or the Direct Connect pls3
    ),
    min_size=1,
    max_size=14,
)


def _inputs(world: World, shift: int) -> tuple[Snapshot, dict[str, int]]:
    stored = world.repo.snapshot()
    snapshot = Snapshot.of(stored)
    keys = sorted(approved_keys(stored))
    return snapshot, {k: (i + shift) % 50 for i, k in enumerate(keys)}


def _step(world: World, op: str, n: int, which: int) -> int:
    """Carry out one drawn operation; returns how far it moves the slots ("reslot")."""
    target = pls_id(f"pls{which + 1}")
    endpoint = world.get(pe_id(f"pe{n}"))
    if op == "pe" and endpoint is None:
        # Odd endpoints in a second consumer network: two pairs of hubs, two pair veths.
        vnet = "vc" if n % 2 == 0 else "vc2"
        world.run(pl.create_or_update_endpoint, make_pe(target, name=f"pe{n}", vnet=vnet))
    elif op == "delete pe" and endpoint is not None:
        world.run(pl.delete_endpoint, endpoint.id)
    elif op in ("approve", "reject") and isinstance(endpoint, PrivateEndpoint):
        world.decide(endpoint, "Approved" if op == "approve" else "Rejected")
    elif op == "service fqdn":
        service = world.get(target)
        assert isinstance(service, PrivateLinkService)
        fqdns = () if service.fqdns else (f"svc{n}.example",)
        world.run(pl.create_or_update_service, replace(service, fqdns=fqdns))
    elif op == "destination" and which == 2:
        service = world.get(target)
        assert isinstance(service, PrivateLinkService)
        moved = "10.0.2.10" if service.destination_ip_address == "10.0.2.9" else "10.0.2.9"
        world.run(pl.create_or_update_service, replace(service, destination_ip_address=moved))
    elif op == "reslot":
        return 1 + n
    return 0


def _worlds(world: World) -> None:
    world.two_services()
    world.consumer(name="vc2", prefix="10.2.0.0/16", subnet_prefix="10.2.1.0/24")
    # pls3: Direct Connect (destinationIPAddress, no load balancer), manual approval.
    nats = (nat("d1", subnet="nat2", primary=True), nat("d2", subnet="nat2"))
    direct = replace(
        make_pls(name="pls3", frontends=(), nats=nats), destination_ip_address="10.0.2.9"
    )
    world.run(pl.create_or_update_service, direct)


def _pairs(p: Plan) -> set[int]:
    return {x.pair for x in p.links if not x.local}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_the_remembering_planner_plans_what_plan_plans(
    tmp_path_factory: object, ops: list[tuple[str, int, int]]
) -> None:
    world = World(tmp_path_factory.mktemp("planner"), Limits())  # type: ignore[attr-defined]
    try:
        _worlds(world)
        planner, pairs = Planner(), MemoryPairSlots()
        shift = 0
        for op, n, which in ops:
            shift += _step(world, op, n, which)
            snapshot, slots = _inputs(world, shift)
            got = planner.plan(snapshot, slots, {}, "tst", pairs)
            assert got == plan(snapshot, slots, {}, "tst", pairs)
            # Links between the same two hubs share their pair's veth; other pairs differ.
            by_hubs = {(x.consumer_netns, x.provider_netns): x.pair for x in got.links}
            assert all(by_hubs[(x.consumer_netns, x.provider_netns)] == x.pair for x in got.links)
            assert len(set(by_hubs.values())) == len(by_hubs)
    finally:
        world.dispose()


def test_unchanged_parts_are_the_same_objects(service_world: World) -> None:
    world = service_world
    world.create_pls(name="pls2", frontends=("fe2",), auto_approval=(S2,))
    for i in range(3):
        world.create_pe(pls_id("pls2"), name=f"pe{i}")
    snapshot, slots = _inputs(world, 0)
    planner = Planner()
    first = planner.plan(snapshot, slots, {}, "tst")
    world.create_pe(pls_id("pls2"), name="pe9")
    snapshot, slots = _inputs(world, 0)
    second = planner.plan(snapshot, slots, {}, "tst")
    kept = {x.link_key: x for x in first.links}
    again = [x for x in second.links if x.link_key in kept]
    assert len(again) == 3 and all(x is kept[x.link_key] for x in again)
    assert second == plan(snapshot, slots, {}, "tst")
    assert make_pls  # the builders module is the one the world uses


def _endpoint_change(
    planner: Planner, before: dict[str, Resource], now: dict[str, Resource]
) -> set[str] | None:
    """The endpoints a change touched, found as the reconciler finds them; None when
    something other than endpoints, their NICs and connection states changed."""
    touched: set[str] = set()
    nics: set[str] = set()
    for k in before.keys() | now.keys():
        old, new = before.get(k), now.get(k)
        if old == new:
            continue
        either = new if new is not None else old
        if isinstance(either, PrivateEndpoint):
            touched.add(k)
        elif isinstance(either, NetworkInterface) and either.managed_by:
            nics.add(k)
        elif isinstance(old, PrivateLinkService) and isinstance(new, PrivateLinkService):
            if service_facts(old) != service_facts(new):
                return None
        elif isinstance(either, PrivateEndpointConnection):
            continue  # its approval reaches the plan as a link slot (`moved`)
        else:
            return None
    return touched | planner.endpoints_of(nic_keys=nics)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_an_update_by_the_endpoints_touched_plans_what_plan_plans(
    tmp_path_factory: object, ops: list[tuple[str, int, int]]
) -> None:
    world = World(tmp_path_factory.mktemp("update"), Limits())  # type: ignore[attr-defined]
    try:
        _worlds(world)
        planner, pairs = Planner(), MemoryPairSlots()
        shift = 0
        snapshot, slots = _inputs(world, shift)
        last = planner.plan(snapshot, slots, {}, "tst", pairs)
        before = {r.key: r for r in world.repo.snapshot()}
        updates = 0
        for op, n, which in ops:
            shift += _step(world, op, n, which)
            now = {r.key: r for r in world.repo.snapshot()}
            snapshot, new_slots = _inputs(world, shift)
            expected = plan(snapshot, new_slots, {}, "tst", pairs)
            touched = _endpoint_change(planner, before, now)
            if touched is None:
                got = planner.plan(snapshot, new_slots, {}, "tst", pairs)
            else:
                moved = {
                    k for k in new_slots.keys() | slots.keys() if new_slots.get(k) != slots.get(k)
                }
                touched |= planner.endpoints_of(link_keys=moved)
                change = planner.update(now.get, touched, new_slots)
                updates += 1
                got = change.plan
                old_links, new_links = set(last.links), set(got.links)
                assert set(change.added) == new_links - old_links
                assert set(change.removed) == old_links - new_links
                # The pair veths whose first link came or last link went.
                assert change.new_pairs == _pairs(got) - _pairs(last)
                assert change.gone_pairs == _pairs(last) - _pairs(got)
                for hub in got.hubs:
                    was = last.hub(hub.netns)
                    assert was is not None
                    came, went = change.pe_ips.get(hub.netns, (frozenset(), frozenset()))
                    assert came == set(hub.pe_ips) - set(was.pe_ips)
                    assert went == set(was.pe_ips) - set(hub.pe_ips)
                    assert (hub != was) == (hub.netns in change.hubs)
            assert got == expected
            last, before, slots = got, now, new_slots
        # A new destination is a change of the service itself: a whole plan, no update.
        assert updates or all(op == "destination" and which == 2 for op, _, which in ops)
    finally:
        world.dispose()
