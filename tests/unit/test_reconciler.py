"""The reconciler against a fake kernel: what it applies, incrementally, and how it fails.

The fake records every call, so these tests see exactly which kernel work a sync does;
the real kernel is exercised by tests/netns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_kernel import FakeKernel, FakeNs

from privatelink.core import network_interface as nim
from privatelink.core import virtual_network as vnm
from privatelink.dataplane import names
from privatelink.dataplane.desired import HubPlan, LinkPlan, Plan
from privatelink.dataplane.reconciler import RESOLV_CONF, Reconciler
from privatelink.service import ControlPlane
from privatelink.store.sql import SqlRepository

SUB = "11111111-1111-4111-8111-111111111111"
BASE = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FakeKernel, Reconciler, ControlPlane]]:
    kernel = FakeKernel()
    repo = SqlRepository.sqlite_in(tmp_path)
    reconciler = Reconciler(repo, "tst", None, kernel=kernel)
    plane = ControlPlane(repo, realizer=reconciler)
    try:
        yield kernel, reconciler, plane
    finally:
        reconciler.stop()
        repo.dispose()


def make_network(plane: ControlPlane) -> tuple[str, str]:
    vnet = vnm.VirtualNetwork(
        id=f"{BASE}/virtualNetworks/v",
        name="v",
        location="eastus",
        address_prefixes=("10.0.0.0/16",),
        subnets=(vnm.Subnet("s", "10.0.1.0/24"),),
    )
    plane.change(None, vnet.id, "put", vnm.create_or_update, vnet)
    nic = nim.NetworkInterface(
        id=f"{BASE}/networkInterfaces/vm",
        name="vm",
        location="eastus",
        ip_configurations=(nim.NicIpConfiguration("ip", f"{vnet.id}/subnets/s"),),
    )
    out = plane.change(None, nic.id, "put", nim.create_or_update, nic)
    return vnet.id, out.operation.id


def test_a_sync_builds_hub_and_vm_and_the_next_one_does_nothing(setup) -> None:
    kernel, reconciler, plane = setup
    vnet_id, _ = make_network(plane)
    report = reconciler.sync_once()
    assert report.error is None
    hub = names.hub_netns("tst", vnet_id)
    vm = names.nic_netns("tst", f"{BASE}/networkInterfaces/vm")
    assert set(kernel.ns) == {hub, vm}
    assert kernel.ns[vm].routes["0.0.0.0/0"][1] == names.GATEWAY
    assert kernel.ns[vm].links["eth0"].addresses == ("10.0.1.4/32",)
    assert "table ip privatelink" in kernel.ns[hub].nft
    kernel.calls.clear()
    assert reconciler.sync_once().error is None
    assert kernel.calls == [], f"an unchanged state still touched the kernel: {kernel.calls}"


def test_provisioning_state_goes_updating_then_succeeded(setup) -> None:
    _kernel, reconciler, plane = setup
    vnet_id, op_id = make_network(plane)
    with plane.read() as view:
        assert view.get(vnet_id).provisioning_state == "Updating"  # type: ignore[union-attr]
    reconciler.sync_once()
    with plane.read() as view:
        assert view.get(vnet_id).provisioning_state == "Succeeded"  # type: ignore[union-attr]
    assert plane.repo.get_operation(op_id).status == "Succeeded"  # type: ignore[union-attr]


def test_a_failed_apply_reports_failed_with_the_reason_and_a_retry_repairs(setup) -> None:
    kernel, reconciler, plane = setup
    vnet_id, op_id = make_network(plane)
    kernel.fail_nft = 1
    report = reconciler.sync_once()
    assert report.error and "simulated" in report.error
    with plane.read() as view:
        assert view.get(vnet_id).provisioning_state == "Failed"  # type: ignore[union-attr]
    op = plane.repo.get_operation(op_id)
    assert op is not None and op.status == "Failed"
    assert op.error_code == "ProvisioningFailed" and "simulated" in (op.error_message or "")
    assert reconciler.sync_once().error is None  # the retry
    with plane.read() as view:
        assert view.get(vnet_id).provisioning_state == "Succeeded"  # type: ignore[union-attr]


def test_deleting_a_nic_removes_its_namespace(setup) -> None:
    kernel, reconciler, plane = setup
    make_network(plane)
    reconciler.sync_once()
    nic_id = f"{BASE}/networkInterfaces/vm"
    plane.change(None, nic_id, "delete", nim.delete, nic_id)
    reconciler.sync_once()
    assert names.nic_netns("tst", nic_id) not in kernel.ns
    assert len(kernel.ns) == 1  # the hub stays with its network


def test_namespaces_of_other_prefixes_are_never_touched(setup) -> None:
    kernel, reconciler, plane = setup
    kernel.ns["other-v-1234"] = FakeNs()
    kernel.ns["tstx-v-1234"] = FakeNs()
    make_network(plane)
    reconciler.sync_once()
    assert "other-v-1234" in kernel.ns and "tstx-v-1234" in kernel.ns


def test_link_slots_are_stable_and_a_freed_slot_rests_before_reuse(tmp_path: Path) -> None:
    repo = SqlRepository.sqlite_in(tmp_path)
    first = repo.link_slots({"a", "b"}, 10, now=1000.0)
    assert sorted(first.values()) == [0, 1]
    assert repo.link_slots({"a", "b"}, 10, now=1001.0) == first
    # "a" goes and "c" arrives in the same call: "c" must not get a's slot (its mark).
    second = repo.link_slots({"b", "c"}, 10, now=1002.0)
    assert second["b"] == first["b"] and second["c"] not in first.values()
    # After the quarantine the freed slot is handed out again.
    third = repo.link_slots({"b", "c", "d"}, 10, now=1100.0)
    assert third["d"] == first["a"]
    # Out of slots: the extra key simply gets none.
    assert "e" not in repo.link_slots({"b", "c", "d", "e"}, 3, now=1101.0)
    repo.dispose()


def test_every_namespace_of_a_vnet_resolves_through_its_dns_server(setup) -> None:
    kernel, reconciler, plane = setup
    vnet_id, _ = make_network(plane)
    reconciler.sync_once()
    hub = names.hub_netns("tst", vnet_id)
    vm = names.nic_netns("tst", f"{BASE}/networkInterfaces/vm")
    assert set(kernel.etc) == {hub, vm}
    for netns in (hub, vm):
        lines = kernel.etc[netns]["resolv.conf"].splitlines()
        assert "nameserver 168.63.129.16" in lines
        assert [line for line in lines if line.startswith("nameserver")] == lines[-1:]
        assert lines[0].startswith("#") and "privatelink" in lines[0]
    assert RESOLV_CONF.endswith("nameserver 168.63.129.16\n")


def test_a_deleted_nic_loses_its_resolv_conf_and_strays_of_ours_are_swept(setup) -> None:
    kernel, reconciler, plane = setup
    make_network(plane)
    kernel.etc["tst-n-0000000000"] = {"resolv.conf": "stale"}  # its namespace is gone
    kernel.etc["other-n-0000000000"] = {"resolv.conf": "not ours"}
    reconciler.sync_once()  # the first sync is a full pass
    assert "tst-n-0000000000" not in kernel.etc
    assert "other-n-0000000000" in kernel.etc
    nic_id = f"{BASE}/networkInterfaces/vm"
    plane.change(None, nic_id, "delete", nim.delete, nic_id)
    reconciler.sync_once()  # incremental: the namespace and its files go together
    assert names.nic_netns("tst", nic_id) not in kernel.etc
    assert set(kernel.etc) == {
        names.hub_netns("tst", f"{BASE}/virtualNetworks/v"),
        "other-n-0000000000",
    }


def test_listeners_hear_of_every_sync_and_a_failing_one_harms_nothing(setup) -> None:
    _kernel, reconciler, plane = setup
    heard: list[int] = []

    def broken() -> None:
        raise RuntimeError("listener bug")

    reconciler.add_listener(broken)
    reconciler.add_listener(lambda: heard.append(reconciler.syncs))
    make_network(plane)
    reconciler.start()
    assert reconciler.wait_idle(10)
    deadline = time.monotonic() + 5
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    assert heard and heard[0] >= 1, "listener not called after a sync"
    plane.change(
        None, f"{BASE}/networkInterfaces/vm", "delete", nim.delete, f"{BASE}/networkInterfaces/vm"
    )
    assert reconciler.wait_idle(10)
    deadline = time.monotonic() + 5
    while len(heard) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(heard) >= 2 and reconciler.last is not None and reconciler.last.error is None


def test_a_recreated_hub_pairs_again_with_a_vm_whose_old_peer_lives_on(setup) -> None:
    kernel, reconciler, plane = setup
    vnet_id, _ = make_network(plane)
    assert reconciler.sync_once().error is None
    hub = names.hub_netns("tst", vnet_id)
    vm = names.nic_netns("tst", f"{BASE}/networkInterfaces/vm")
    # The hub is deleted but its namespace is held open: the VM keeps its eth0.
    del kernel.ns[hub]
    assert "eth0" in kernel.ns[vm].links
    report = reconciler.sync_once()
    assert report.error is None, report.error
    hub_end = names.nic_hub_ifname(f"{BASE}/networkInterfaces/vm")
    assert hub_end in kernel.ns[hub].links
    assert f"dellink {vm}/eth0" in kernel.calls
    assert kernel.ns[vm].links["eth0"].addresses == ("10.0.1.4/32",)


def _link_plan(pe_ip: str = "10.0.2.4", slot: int = 3) -> tuple[Plan, LinkPlan]:
    link = LinkPlan.on_slot(
        slot, "svc/conn", pe_ip, "tst-v-consumer00", "tst-v-provider00", "svc_x", (80,)
    )
    hubs = (
        HubPlan(vnet_id="c", netns=link.consumer_netns, links_out=(link,), pe_ips=(pe_ip,)),
        HubPlan(vnet_id="p", netns=link.provider_netns, links_in=(link,)),
    )
    return Plan(hubs=hubs, links=(link,), health_checks=()), link


def test_a_live_endpoint_ip_is_routed_into_its_link_before_local(setup) -> None:
    kernel, reconciler, _plane = setup
    desired, link = _link_plan()
    reconciler.apply(desired, full=True)
    consumer = kernel.ns[link.consumer_netns]
    # Table 100 sends the PE ip to the provider end of the link, looked up before `local`
    # (where the PE ip also is, so that a PE without a live link answers with a reset).
    endpoint_table = consumer.tables[names.ENDPOINT_TABLE]
    k = consumer.links[link.consumer_ifname]
    assert endpoint_table == {"10.0.2.4/32": (k.index, link.provider_addr)}
    assert "10.0.2.4/32" in consumer.links["lo"].addresses
    for hub in (link.consumer_netns, link.provider_netns):
        assert kernel.ns[hub].rules == {
            (names.ENDPOINT_RULE_PREF, names.ENDPOINT_TABLE),
            (names.LOCAL_RULE_PREF, 255),
        }
    assert kernel.ns[link.provider_netns].tables.get(names.ENDPOINT_TABLE, {}) == {}

    # The same endpoint under another IP (deleted and created again in one sync): the
    # old route goes with the old veth, the new one is in place.
    moved, _ = _link_plan(pe_ip="10.0.2.9")
    reconciler.apply(moved, full=False)
    k = consumer.links[link.consumer_ifname]
    assert consumer.tables[names.ENDPOINT_TABLE] == {"10.0.2.9/32": (k.index, link.provider_addr)}

    # A stray route (a crash between steps, an operator) is swept by a full pass.
    consumer.tables[names.ENDPOINT_TABLE]["10.0.2.77/32"] = (k.index, None)
    reconciler.apply(moved, full=True)
    assert set(consumer.tables[names.ENDPOINT_TABLE]) == {"10.0.2.9/32"}

    # No link: no veth, so no route (incremental pass, nothing listed).
    unlinked = Plan(
        hubs=tuple(HubPlan(vnet_id=h.vnet_id, netns=h.netns) for h in moved.hubs),
        links=(),
        health_checks=(),
    )
    reconciler.apply(unlinked, full=False)
    assert consumer.tables[names.ENDPOINT_TABLE] == {}  # cut at once
    # The pair's veth goes once the sync is reported (its teardown waits in the kernel).
    assert link.consumer_ifname in consumer.links
    reconciler._retire_pairs()
    assert link.consumer_ifname not in consumer.links
    assert link.provider_ifname not in kernel.ns[link.provider_netns].links


@pytest.mark.parametrize("full", [False, True], ids=["by difference", "full pass"])
def test_a_removed_link_resets_its_flows_only_until_its_conntrack_entries_are_gone(
    setup, full: bool
) -> None:
    kernel, reconciler, _plane = setup
    desired, link = _link_plan()
    applied: list[tuple[str, str]] = []
    real_apply = kernel.apply_nft

    def apply_nft(name: str, text: str) -> None:
        applied.append((name, text))
        real_apply(name, text)

    kernel.apply_nft = apply_nft  # type: ignore[method-assign]
    reconciler.apply(desired, full=True)
    # Steady state: no per-packet check of the link's mark on established flows.
    assert all("@dying_links" not in text for _name, text in applied)
    assert all("jump dead_link" not in text.split("established")[0] for _n, text in applied)

    applied.clear()
    kernel.calls.clear()
    unlinked = Plan(
        hubs=tuple(HubPlan(vnet_id=h.vnet_id, netns=h.netns) for h in desired.hubs),
        links=(),
        health_checks=(),
    )
    reconciler.apply(unlinked, full=full)
    hubs = {link.consumer_netns, link.provider_netns}
    first = {name: text for name, text in applied[:2]}
    assert set(first) == hubs
    for text in first.values():  # by elements and rules, not a new table
        assert f"add element ip privatelink dying_links {{ {link.mark} }}" in text
        assert "add rule ip privatelink forward ct mark @dying_links jump dead_link" in text
        assert "delete table" not in text
    # Then the entries go (both hubs), then the veth, then the rule again.
    order = [c for c in kernel.calls if c.split()[0] in ("nft", "conntrack", "dellink")]
    deletes = [i for i, c in enumerate(order) if c.startswith("conntrack")]
    assert len(deletes) == 2 and all(f" {link.mark}" in order[i] for i in deletes)
    last = {name: text for name, text in applied[2:]}
    assert set(last) == hubs
    for name in hubs:
        assert f"delete element ip privatelink dying_links {{ {link.mark} }}" in last[name]
        assert "@dying_links" not in kernel.ns[name].table.text().split("chain forward")[1]
    assert max(deletes) < min(i for i, c in enumerate(order) if c.startswith("nft") and i > 1)


def test_one_more_endpoint_costs_its_own_objects_only(setup) -> None:
    """Issue 12: a new link among others lists no hub's interfaces, replaces no table:
    its address on `lo`, its veth and route, and nft elements of its own."""
    kernel, reconciler, _plane = setup
    first, _ = _link_plan("10.0.2.4", slot=3)
    reconciler.apply(first, full=True)
    _, added = _link_plan("10.0.2.5", slot=4)
    links = (*first.links, added)
    both = Plan(
        hubs=(
            HubPlan("c", added.consumer_netns, links_out=links, pe_ips=("10.0.2.4", "10.0.2.5")),
            HubPlan("p", added.provider_netns, links_in=links),
        ),
        links=links,
        health_checks=(),
    )
    kernel.calls.clear()
    applied: list[str] = []
    real_apply = kernel.apply_nft
    kernel.apply_nft = lambda name, text: (applied.append(text), real_apply(name, text))  # type: ignore[method-assign]
    reconciler.apply(both, full=False)
    assert not [c for c in kernel.calls if c.startswith("links ")], kernel.calls
    assert f"addr {added.consumer_netns}/lo 10.0.2.5/32" in kernel.calls
    assert all("delete table" not in text for text in applied)
    assert any(f"add element ip privatelink live_links {{ {added.mark} }}" in t for t in applied)
    # And the removal: the address goes again, still without a listing.
    kernel.calls.clear()
    reconciler.apply(first, full=False)
    assert f"deladdr {added.consumer_netns}/lo 10.0.2.5/32" in kernel.calls
    assert not [c for c in kernel.calls if c.startswith("links ")], kernel.calls


def test_a_reconciler_without_probes_holds_no_prober_thread(tmp_path: Path) -> None:
    """The prober's loop starts with its first target: a reconciler (a test's, or a data
    plane without health probes) holds no thread and no event loop descriptors."""
    import threading

    from privatelink.dataplane.desired import HealthKey, ProbeSpec
    from privatelink.dataplane.health import Prober

    before = {t.ident for t in threading.enumerate() if t.name == "prober"}
    prober = Prober(lambda: None)
    prober.track(())
    assert {t.ident for t in threading.enumerate() if t.name == "prober"} == before
    prober.track((HealthKey("tst-v-none", "10.0.0.4", ProbeSpec("Tcp", 80, None, 60.0, 1)),))
    started = {t for t in threading.enumerate() if t.name == "prober" and t.ident not in before}
    assert len(started) == 1
    prober.stop()
    assert not any(t.is_alive() for t in started)
    prober.track(())  # after stop: nothing starts again


def test_wait_idle_returns_once_a_sync_completes_and_times_out_without_one(tmp_path: Path) -> None:
    """A write waiting for its sync is woken by it (not by a poll every few ms), and a
    wait with no sync to come times out."""
    import threading

    repo = SqlRepository.sqlite_in(tmp_path)
    reconciler = Reconciler(repo, "tst", None, kernel=FakeKernel(), watch=False)
    try:
        reconciler.mark_dirty()
        assert reconciler.wait_idle(0.05) is False  # no loop running: nothing completes it
        woke: list[float] = []

        def waiter() -> None:
            start = time.monotonic()
            if reconciler.wait_idle(10):
                woke.append(time.monotonic() - start)

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.05)
        reconciler.start()  # its first sync covers the mark
        thread.join(timeout=15)
        assert woke, "wait_idle did not return True"
        assert reconciler.wait_idle(1)
    finally:
        reconciler.stop()
        repo.dispose()
