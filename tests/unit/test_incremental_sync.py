"""Syncs by difference (issue 12): after any sequence of changes, a reconciler that
applied endpoint and connection changes incrementally leaves the kernel exactly as a
fresh reconciler's full sync of the same store does; a change of endpoints touches no
hub listing and replaces no table; and a full pass over an unchanged world changes
nothing in the kernel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fake_kernel import FakeKernel
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pl_world import S1, S2, World, make_lb, make_pe, nat, pe_id, pls_id

from privatelink.core import private_link as pl
from privatelink.core import virtual_network as vnm
from privatelink.core.limits import Limits
from privatelink.core.private_endpoint import PrivateEndpoint
from privatelink.core.private_link_service import PrivateLinkService
from privatelink.dataplane.reconciler import FULL_DEFER_SECONDS, Reconciler

_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "pe",
                "local pe",
                "delete pe",
                "approve",
                "reject",
                "remove connection",
                "service fqdn",
                "service nat",
                "load balancer",
                "vnet tag",
            ]
        ),
        st.integers(0, 4),
        st.integers(0, 1),
    ),
    min_size=1,
    max_size=16,
)


def kernel_state(kernel: FakeKernel) -> dict[str, Any]:
    """Everything a sync leaves in the fake kernel, free of interface index order."""
    state: dict[str, Any] = {}
    for name, ns in kernel.ns.items():
        by_index = {link.index: link.name for link in ns.links.values()}
        state[name] = (
            {n: (sorted(x.addresses), x.up) for n, x in ns.links.items()},
            {
                table: {dst: (by_index.get(oif), gw) for dst, (oif, gw) in routes.items()}
                for table, routes in ns.tables.items()
                if routes
            },
            sorted(ns.rules),
            ns.table.state(),
        )
    return state


def _full_sync_state(world: World) -> dict[str, Any]:
    kernel = FakeKernel()
    fresh = Reconciler(world.repo, "tst", None, kernel=kernel, watch=False)
    try:
        report = fresh.sync_once()
    finally:
        fresh.stop()
    assert report.error is None, report.error
    return kernel_state(kernel)


def _counting(reconciler: Reconciler) -> dict[str, int]:
    counts = {"_sync_endpoints": 0, "_sync_all": 0}
    for name in counts:
        original = getattr(reconciler, name)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            counts[_name] += 1
            return _original(*args)

        setattr(reconciler, name, counted)
    return counts


def _step(world: World, op: str, n: int, which: int) -> None:
    target = pls_id(f"pls{which + 1}")
    endpoint = world.get(pe_id(f"pe{n}"))
    local = world.get(pe_id(f"local{n}", S1))
    if op == "pe" and endpoint is None:
        # One endpoint in a second consumer network: two pair veths into the provider,
        # one of them shared by up to four endpoints.
        vnet = "vc2" if n == 1 else "vc"
        world.run(pl.create_or_update_endpoint, make_pe(target, name=f"pe{n}", vnet=vnet))
    elif op == "local pe" and local is None:
        pe = make_pe(target, name=f"local{n}", sub=S1, vnet="vp", subnet="be")
        world.run(pl.create_or_update_endpoint, pe)
    elif op == "delete pe" and endpoint is not None:
        world.run(pl.delete_endpoint, endpoint.id)
    elif op in ("approve", "reject", "remove connection"):
        chosen = endpoint if which == 0 else local
        if not isinstance(chosen, PrivateEndpoint):
            return
        conn = chosen.connection
        if op == "remove connection" and conn.remote_name:
            world.run(pl.delete_connection, conn.private_link_service_id, conn.remote_name)
        elif op != "remove connection":
            world.decide(chosen, "Approved" if op == "approve" else "Rejected")
    elif op in ("service fqdn", "service nat"):
        service = world.get(target)
        assert isinstance(service, PrivateLinkService)
        if op == "service fqdn":
            fqdns = () if service.fqdns else (f"svc{n}.example",)
            world.run(pl.create_or_update_service, replace(service, fqdns=fqdns))
        else:
            if len(service.ip_configurations) > 1:
                return  # a NAT address, once added, stays (Azure's rule)
            nats = (*service.ip_configurations, nat("nat2", primary=False))
            world.run(pl.create_or_update_service, replace(service, ip_configurations=nats))
    elif op == "load balancer":
        world.run(pl.create_or_update_load_balancer, make_lb(n=3 + n % 2))
    elif op == "vnet tag":
        vnet = world.vnet("vc", S2)
        world.run(vnm.create_or_update, replace(vnet, tags={"n": str(n)}))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "w", Limits())
    try:
        w.two_services(auto_approval=(S2, S1))
        yield w
    finally:
        w.dispose()


# Always tried: links coming and going over a pair veth that stays (its other links keep
# it), and its last link going (random draws reach that seldom).
_PAIR_SHARED = [
    ("pe", 0, 1),
    ("pe", 2, 1),
    ("pe", 1, 1),
    ("delete pe", 0, 0),
    ("reject", 2, 0),
    ("approve", 2, 0),
    ("pe", 4, 1),
    ("delete pe", 2, 0),
    ("delete pe", 4, 0),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS, sync_every=st.integers(1, 3))
@example(ops=_PAIR_SHARED, sync_every=1)
def test_changes_applied_by_difference_leave_what_a_full_sync_leaves(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]], sync_every: int
) -> None:
    world = World(tmp_path_factory.mktemp("inc"), Limits())
    try:
        world.two_services(auto_approval=(S2, S1))
        world.consumer(name="vc2", prefix="10.2.0.0/16", subnet_prefix="10.2.1.0/24")
        kernel = FakeKernel()
        reconciler = Reconciler(world.repo, "tst", None, kernel=kernel, watch=False)
        counts = _counting(reconciler)
        assert reconciler.sync_once().error is None
        for i, (op, n, which) in enumerate(ops):
            _step(world, op, n, which)
            if i % sync_every == 0:
                assert reconciler.sync_once().error is None
                # Twice: the first sync's state reports are a change the second reads.
                assert reconciler.sync_once().error is None
                assert kernel_state(kernel) == _full_sync_state(world)
        assert reconciler.sync_once().error is None
        assert reconciler.sync_once().error is None
        assert kernel_state(kernel) == _full_sync_state(world)
        ops_made = {op for op, _, _ in ops}
        if ops_made <= {"pe", "delete pe", "approve", "reject", "service fqdn", "vnet tag"}:
            assert counts["_sync_all"] == 1  # only the first: everything else by difference
    finally:
        world.dispose()


def test_an_endpoint_change_lists_no_hub_and_replaces_no_table(world: World) -> None:
    kernel = FakeKernel()
    reconciler = Reconciler(world.repo, "tst", None, kernel=kernel, watch=False)
    for i in range(5):
        world.create_pe(pls_id("pls2"), name=f"pe{i}")
    assert reconciler.sync_once().error is None
    texts: list[str] = []
    real = kernel.apply_nft
    kernel.apply_nft = lambda name, text: (texts.append(text), real(name, text))  # type: ignore[method-assign]
    counts = _counting(reconciler)
    kernel.calls.clear()
    world.create_pe(pls_id("pls2"), name="pe9")
    assert reconciler.sync_once().error is None
    assert counts == {"_sync_endpoints": 1, "_sync_all": 0}
    assert not [c for c in kernel.calls if c.startswith(("links ", "rules "))], kernel.calls
    assert texts and all("delete table" not in t for t in texts)
    assert kernel_state(kernel) == _full_sync_state(world)
    # Rejected: the link goes by elements too, its flows cut first.
    kernel.calls.clear()
    texts.clear()
    conn = world.pe("pe9").connection
    world.run(
        pl.update_connection, conn.private_link_service_id, conn.remote_name, "Rejected", None, None
    )
    assert reconciler.sync_once().error is None
    assert counts["_sync_all"] == 0
    assert [c for c in kernel.calls if c.startswith("conntrack")], kernel.calls
    assert all("delete table" not in t for t in texts)
    assert kernel_state(kernel) == _full_sync_state(world)


def test_a_full_pass_over_an_unchanged_world_changes_nothing(world: World) -> None:
    kernel = FakeKernel()
    reconciler = Reconciler(world.repo, "tst", None, kernel=kernel, watch=False)
    for i in range(4):
        world.create_pe(pls_id("pls2"), name=f"pe{i}")
    assert reconciler.sync_once().error is None
    assert reconciler.sync_once().error is None  # reads back its own state reports
    before = kernel_state(kernel)
    kernel.calls.clear()
    reconciler._full_due = 0.0  # the periodic full pass, now
    assert reconciler.sync_once().error is None
    changes = [c for c in kernel.calls if not c.startswith(("links ", "etc "))]
    assert changes == [], changes
    assert kernel_state(kernel) == before


def test_a_periodic_full_pass_waits_for_a_sync_with_nothing_to_apply(world: World) -> None:
    kernel = FakeKernel()
    reconciler = Reconciler(world.repo, "tst", None, kernel=kernel, watch=False)
    world.create_pe(pls_id("pls2"), name="pe0")
    assert reconciler.sync_once().error is None
    assert reconciler.sync_once().error is None
    passes: list[bool] = []  # `full` of each sync that planned everything
    original = reconciler._sync_all
    reconciler._sync_all = lambda full: (passes.append(full), original(full))[1]  # type: ignore[method-assign]

    def syncs_until_full() -> int:
        for n in range(1, 5):
            assert reconciler.sync_once().error is None
            if passes:
                return n
        raise AssertionError("no full pass")

    # Due while a change waits: the change goes by difference; the pass comes with the
    # next sync, which has nothing to apply.
    reconciler._full_due = time.monotonic() - 1
    world.create_pe(pls_id("pls2"), name="pe1")
    assert syncs_until_full() == 2 and passes == [True]
    assert kernel_state(kernel) == _full_sync_state(world)
    # Overdue by FULL_DEFER_SECONDS, or forced (after a failure): at once.
    for due in (time.monotonic() - FULL_DEFER_SECONDS - 1, 0.0):
        passes.clear()
        reconciler._full_due = due
        world.create_pe(pls_id("pls2"), name=f"pe{len(kernel.ns) + int(due)}")
        assert syncs_until_full() == 1 and passes == [True]


def test_a_hub_filling_up_is_gated_by_a_sync_with_nothing_stored_changed(world: World) -> None:
    kernel = FakeKernel()
    reconciler = Reconciler(world.repo, "tst", None, kernel=kernel, watch=False)
    world.create_pe(pls_id("pls2"), name="pe0")
    assert reconciler.sync_once().error is None
    assert reconciler.sync_once().error is None
    hub = sorted(n for n in kernel.ns if "-v-" in n)[0]
    reconciler.conntrack_limit = 10
    gate = "ct state new jump refuse_new"
    reconciler.observe_conntrack(hub, 10)
    assert reconciler.sync_once().error is None
    assert gate in kernel.ns[hub].nft
    reconciler.observe_conntrack(hub, 1)
    assert reconciler.sync_once().error is None
    assert gate not in kernel.ns[hub].nft
