"""Self-repair and admission in the reconciler, against the fake kernel.

What a kernel event damages (repair.Owned), that the next sync re-verifies exactly that
and nothing else, that our own changes are never taken for damage, and how a hub at its
conntrack limit refuses new flows (and counts them); the watcher thread end to end with
the fake's event queue. The real kernel: tests/netns/test_self_repair.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_kernel import FakeKernel

from privatelink.dataplane import names, nft
from privatelink.dataplane.desired import HubPlan, LinkPlan, NicPlan, Plan
from privatelink.dataplane.events import (
    OWN_NFT_THREAD,
    AddressGone,
    EventsLost,
    LinkGone,
    NetnsAdded,
    NetnsGone,
    NftCommitted,
    RouteGone,
)
from privatelink.dataplane.privileged import Link
from privatelink.dataplane.reconciler import Reconciler, SyncReport
from privatelink.dataplane.repair import Damage, Owned
from privatelink.server import ServerConfig
from privatelink.store.sql import SqlRepository

CONSUMER = "tst-v-consumer00"
PROVIDER = "tst-v-provider00"
CLIENT = "tst-n-client0000"
BACKEND = "tst-n-backend000"
SLOT = 3


def world(link: bool = True, pe_ip: str = "10.0.2.4") -> Plan:
    """Two hubs with a VM each; with `link`, an approved endpoint in the consumer's."""
    x = LinkPlan.on_slot(SLOT, "svc/conn", pe_ip, CONSUMER, PROVIDER, "pls_x", (80,))
    client = NicPlan("client", CLIENT, "nclient00000", ("10.0.1.4",))
    backend = NicPlan("backend", BACKEND, "nbackend0000", ("10.0.2.4",))
    links = (x,) if link else ()
    return Plan(
        hubs=(
            HubPlan("c", CONSUMER, nics=(client,), links_out=links, pe_ips=(pe_ip,)),
            HubPlan("p", PROVIDER, nics=(backend,), links_in=links),
        ),
        links=links,
        health_checks=(),
    )


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FakeKernel, Reconciler]]:
    kernel = FakeKernel()
    repo = SqlRepository.sqlite_in(tmp_path)
    reconciler = Reconciler(repo, "tst", None, kernel=kernel)
    try:
        yield kernel, reconciler
    finally:
        reconciler.stop()
        repo.dispose()


def built(kernel: FakeKernel, reconciler: Reconciler, plan: Plan | None = None) -> Plan:
    plan = plan or world()
    reconciler.apply(plan, full=True)
    kernel.calls.clear()
    assert reconciler.apply(plan, full=False) == ()
    assert kernel.calls == [], "an unchanged plan touched the kernel"
    return plan


def kinds(calls: list[str]) -> list[str]:
    return [c.split()[0] for c in calls]


# --- what an event damages (pure) ------------------------------------------------------


def test_events_name_the_hub_or_link_they_damage() -> None:
    owned = Owned.of(world())
    k_c, k_p = names.link_ifname(SLOT, "c"), names.link_ifname(SLOT, "p")
    table: list[tuple[Any, str | None, Damage | None]] = [
        (NetnsGone(CONSUMER), None, Damage(hubs=frozenset({CONSUMER}))),
        (NetnsGone(CLIENT), None, Damage(hubs=frozenset({CONSUMER}))),
        (NetnsGone("tst-n-unknown000"), None, None),
        (NetnsAdded(CONSUMER), None, None),
        # A pair veth's end: the pair (its veth and every link over it).
        (LinkGone(0, k_c), CONSUMER, Damage(pairs=frozenset({SLOT}))),
        (LinkGone(1, k_p), PROVIDER, Damage(pairs=frozenset({SLOT}))),
        (LinkGone(0, "nclient00000"), CONSUMER, Damage(hubs=frozenset({CONSUMER}))),
        (LinkGone(0, "k9c"), CONSUMER, None),  # not ours (any more)
        (LinkGone(0, k_c), "tst-v-elsewhere0", None),
        (LinkGone(0, k_c), None, None),  # a namespace without a known id
        (AddressGone(0, "lo", "10.0.2.4/32"), CONSUMER, Damage(hubs=frozenset({CONSUMER}))),
        (AddressGone(0, "lo", "10.0.9.9/32"), CONSUMER, None),
        (AddressGone(0, k_c, "169.254.64.13/30"), CONSUMER, Damage(pairs=frozenset({SLOT}))),
        (
            AddressGone(0, "nclient00000", "169.254.0.1/32"),
            CONSUMER,
            Damage(hubs=frozenset({CONSUMER})),
        ),
        (RouteGone(0, 254, "10.0.1.4/32"), CONSUMER, Damage(hubs=frozenset({CONSUMER}))),
        (RouteGone(0, 100, "10.0.2.4/32"), CONSUMER, Damage(links=frozenset({SLOT}))),
        (RouteGone(0, 255, "10.0.2.4/32"), CONSUMER, None),  # the kernel's local route
        (NftCommitted(0, 7, "nft"), CONSUMER, Damage(tables=frozenset({CONSUMER}))),
        (NftCommitted(0, 8, OWN_NFT_THREAD), CONSUMER, None),
        (NftCommitted(0, 9, ""), CONSUMER, None),  # committer unknown: the full pass
        (EventsLost("rtnetlink"), None, Damage(everything=True)),
    ]
    for event, netns, expected in table:
        found = owned.damage(event, netns)
        if expected is None:
            assert found is None, (event, netns, found)
        else:
            assert found is not None, (event, netns)
            assert (found.hubs, found.links, found.tables, found.pairs, found.everything) == (
                expected.hubs,
                expected.links,
                expected.tables,
                expected.pairs,
                expected.everything,
            ), (event, netns)
            assert found.why and all(found.why), "damage without a reason for the log"
    assert names.link_addresses(SLOT)[0] == "169.254.64.13"


def test_damage_adds_up() -> None:
    a = Damage(hubs=frozenset({"a"}), why=("one",))
    b = Damage(links=frozenset({1}), tables=frozenset({"b"}), why=("two",))
    both = a | b
    assert (both.hubs, both.links, both.tables, both.why) == (
        {"a"},
        {1},
        {"b"},
        ("one", "two"),
    )
    assert not Damage() and both


# --- the reconciler re-verifies exactly what was damaged ------------------------------


def test_a_deleted_link_veth_is_made_again_and_nothing_else_is_touched(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    k_c, k_p = names.link_ifname(SLOT, "c"), names.link_ifname(SLOT, "p")
    del kernel.ns[CONSUMER].links[k_c]  # `ip link del` takes the peer and the route too
    del kernel.ns[PROVIDER].links[k_p]
    kernel.ns[CONSUMER].tables[names.ENDPOINT_TABLE].clear()
    assert reconciler.report(LinkGone(0, k_c), CONSUMER) is not None
    repaired = reconciler.apply(world(), full=False)
    assert repaired and "deleted" in repaired[0]
    assert kernel.calls[0] == f"veth {CONSUMER}/{k_c} {PROVIDER}/{k_p}"
    assert set(kinds(kernel.calls)) == {"veth", "addr", "route"}  # no hub, no nft
    assert set(kernel.ns[CONSUMER].tables[names.ENDPOINT_TABLE]) == {"10.0.2.4/32"}


def _two_links_one_pair() -> Plan:
    """Two endpoints of the consumer's network linked to the provider's: one pair veth."""
    links = tuple(
        LinkPlan.on_slot(slot, f"svc/c{slot}", ip, CONSUMER, PROVIDER, "pls_x", (80,), pair=SLOT)
        for slot, ip in ((SLOT, "10.0.2.4"), (SLOT + 1, "10.0.2.5"))
    )
    client = NicPlan("client", CLIENT, "nclient00000", ("10.0.1.4",))
    return Plan(
        hubs=(
            HubPlan(
                "c", CONSUMER, nics=(client,), links_out=links, pe_ips=("10.0.2.4", "10.0.2.5")
            ),
            HubPlan("p", PROVIDER, links_in=links),
        ),
        links=links,
        health_checks=(),
    )


def test_a_deleted_pair_veth_is_made_again_once_with_every_route_over_it(setup) -> None:
    kernel, reconciler = setup
    plan = built(kernel, reconciler, _two_links_one_pair())
    k_c, k_p = names.link_ifname(SLOT, "c"), names.link_ifname(SLOT, "p")
    assert [n for n in kernel.ns[CONSUMER].links if n.startswith("k")] == [k_c]
    del kernel.ns[CONSUMER].links[k_c]  # `ip link del` takes the peer and the routes too
    del kernel.ns[PROVIDER].links[k_p]
    kernel.ns[CONSUMER].tables[names.ENDPOINT_TABLE].clear()
    damage = reconciler.report(LinkGone(0, k_c), CONSUMER)
    assert damage is not None and damage.pairs == {SLOT}
    reconciler.apply(plan, full=False)
    assert kinds(kernel.calls).count("veth") == 1
    routes = kernel.ns[CONSUMER].tables[names.ENDPOINT_TABLE]
    assert set(routes) == {"10.0.2.4/32", "10.0.2.5/32"}


def test_a_link_end_whose_peer_namespace_was_replaced_is_paired_again(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    k_c, k_p = names.link_ifname(SLOT, "c"), names.link_ifname(SLOT, "p")
    del kernel.ns[PROVIDER].links[k_p]  # its end went with an old provider namespace
    reconciler.report(LinkGone(1, k_p), PROVIDER)
    reconciler.apply(world(), full=False)
    assert kernel.calls[:2] == [
        f"dellink {CONSUMER}/{k_c}",
        f"veth {CONSUMER}/{k_c} {PROVIDER}/{k_p}",
    ]
    assert kernel.ns[PROVIDER].links[k_p].addresses == (f"{names.link_addresses(SLOT)[1]}/30",)


def test_a_deleted_hub_is_made_again_with_its_vm_pairing_and_its_links(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    del kernel.ns[CONSUMER]  # held by someone: the VM's eth0 and the provider's end live on
    reconciler.report(NetnsGone(CONSUMER))
    repaired = reconciler.apply(world(), full=False)
    assert repaired == (f"hub namespace {CONSUMER} was deleted",)
    consumer = kernel.ns[CONSUMER]
    assert {"lo", "nclient00000", names.link_ifname(SLOT, "c")} == set(consumer.links)
    assert f"dellink {CLIENT}/eth0" in kernel.calls  # re-paired with the new hub
    assert f"dellink {PROVIDER}/{names.link_ifname(SLOT, 'p')}" in kernel.calls
    assert "table ip privatelink" in consumer.nft
    assert f"nft {PROVIDER}" not in kernel.calls, "the provider's table did not change"
    assert not any(c.startswith(f"route {PROVIDER}") for c in kernel.calls)


def test_a_namespace_missing_at_sync_time_is_made_again_without_an_event(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    del kernel.ns[CLIENT]  # gone for good: so is the hub's end of its veth
    del kernel.ns[CONSUMER].links["nclient00000"]
    repaired = reconciler.apply(world(), full=False)
    assert repaired == (f"namespace {CLIENT} was missing",)
    assert kernel.ns[CLIENT].links["eth0"].addresses == ("10.0.1.4/32",)
    assert kernel.ns[CLIENT].routes["0.0.0.0/0"][1] == names.GATEWAY
    assert not any(PROVIDER in c for c in kernel.calls), "the other hub was touched"


def test_a_vm_namespace_made_again_while_the_old_one_is_held_is_paired_again(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    del kernel.ns[CLIENT]  # a process holds the old one: the hub's end stays paired with it
    reconciler.report(NetnsGone(CLIENT))
    reconciler.apply(world(), full=False)
    assert kernel.calls.index(f"dellink {CONSUMER}/nclient00000") < kernel.calls.index(
        f"veth {CONSUMER}/nclient00000 {CLIENT}/eth0"
    )
    assert kernel.ns[CLIENT].links["eth0"].addresses == ("10.0.1.4/32",)
    assert kernel.ns[CONSUMER].routes["10.0.1.4/32"][0] == (
        kernel.ns[CONSUMER].links["nclient00000"].index
    )


def test_a_foreign_nft_commit_reapplies_that_table_and_our_own_are_ignored(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    generation = reconciler._wanted
    assert reconciler.report(NftCommitted(0, 9, OWN_NFT_THREAD), CONSUMER) is None
    assert reconciler._wanted == generation, "our own commit marked the reconciler dirty"
    kernel.ns[CONSUMER].nft = ""  # `nft flush table`
    assert reconciler.report(NftCommitted(0, 10, "nft"), CONSUMER) is not None
    assert reconciler._wanted == generation + 1
    reconciler.apply(world(), full=False)
    assert kernel.calls == [f"nft {CONSUMER}"]
    assert "chain forward" in kernel.ns[CONSUMER].nft


def test_our_own_removals_are_not_taken_for_damage(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    unlinked = world(link=False, pe_ip="10.0.2.5")
    reconciler.apply(unlinked, full=False)  # publishes the new plan before removing
    k_c = names.link_ifname(SLOT, "c")
    for event, netns in (
        (LinkGone(0, k_c), CONSUMER),
        (RouteGone(0, names.ENDPOINT_TABLE, "10.0.2.4/32"), CONSUMER),
        (AddressGone(0, "lo", "10.0.2.4/32"), CONSUMER),
    ):
        assert reconciler.report(event, netns) is None, event
    assert not reconciler.stats().damage_pending


def test_lost_events_make_the_next_pass_full(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    kernel.ns[PROVIDER].links["k9p"] = Link("k9p", 99, True, ())  # a stray an event missed
    reconciler.apply(world(), full=False)
    assert "k9p" in kernel.ns[PROVIDER].links, "an incremental pass looked for strays"
    reconciler.report(EventsLost("rtnetlink"))
    reconciler.apply(world(), full=False)
    assert "k9p" not in kernel.ns[PROVIDER].links


def test_a_half_made_namespace_file_is_made_again_by_a_full_pass(setup) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    kernel.broken.add(CLIENT)  # `ip netns add` killed between creating and mounting
    reconciler.apply(world(), full=True)
    assert f"create {CLIENT}" in kernel.calls
    assert CLIENT not in kernel.broken and "eth0" in kernel.ns[CLIENT].links


def test_a_sync_reports_what_it_repaired_and_counts_repairs(setup) -> None:
    _kernel, reconciler = setup
    reconciler.report(EventsLost("inotify"))
    report = reconciler.sync_once()  # an empty store: nothing to repair but the report
    assert report.error is None and report.repaired == ("kernel events were lost (inotify)",)
    assert reconciler.stats().repairs == 1


# --- admission: a hub at its conntrack limit refuses new flows -------------------------


def gate_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "jump refuse_new" in line]


def test_the_refusal_rules_exist_only_while_a_hub_is_full() -> None:
    hub = world().hubs[0]
    assert gate_of(nft.render(hub)) == []
    assert gate_of(nft.render(hub, full=True)) == ["ct state new jump refuse_new"] * 2
    text = nft.render(hub, full=True)
    forward = text.split("chain forward {")[1].split("}")[0]
    # After the established-flows rule: a flow admitted before keeps going.
    assert forward.index("established,related accept") < forward.index("jump refuse_new")
    chain = text.split("chain refuse_new {")[1].split("}")[0]
    assert f'counter name "{names.REFUSED_COUNTER}"' in chain
    assert "reject with tcp reset" in chain and "admin-prohibited" in chain
    assert f"counter {names.REFUSED_COUNTER} {{ }}" in nft.render(hub)  # always declared


def test_a_full_hub_refuses_new_flows_until_it_drains(
    setup, caplog: pytest.LogCaptureFixture
) -> None:
    kernel, reconciler = setup
    built(kernel, reconciler)
    reconciler.conntrack_limit = 100
    caplog.set_level(logging.INFO, logger="privatelink.dataplane")
    generation = reconciler._wanted
    reconciler.observe_conntrack(CONSUMER, 99)
    assert reconciler.stats().full_hubs == () and reconciler._wanted == generation
    reconciler.observe_conntrack(CONSUMER, 100)
    assert reconciler.stats().full_hubs == (CONSUMER,) and reconciler._wanted == generation + 1
    assert any("limit is 100" in r.getMessage() for r in caplog.records)
    reconciler.apply(world(), full=False)
    assert kernel.calls == [f"nft {CONSUMER}"]
    assert gate_of(kernel.ns[CONSUMER].nft) and not gate_of(kernel.ns[PROVIDER].nft)

    kernel.refused[CONSUMER] = 3
    assert reconciler.collect_refusals() == 3
    assert any(
        r.levelno == logging.WARNING and "refused 3 new flows" in r.getMessage()
        for r in caplog.records
    )
    reconciler.observe_conntrack(CONSUMER, 95)  # within 5 % of the limit: still full
    assert reconciler.stats().full_hubs == (CONSUMER,)
    kernel.refused[CONSUMER] = 2  # counted since: taken before the table is replaced
    kernel.calls.clear()
    reconciler.observe_conntrack(CONSUMER, 94)
    assert reconciler.stats().full_hubs == ()
    reconciler.apply(world(), full=False)
    assert kernel.calls == [f"take {CONSUMER} {names.REFUSED_COUNTER}", f"nft {CONSUMER}"]
    assert not gate_of(kernel.ns[CONSUMER].nft)
    stats = reconciler.stats()
    assert stats.refused_flows == 5 and stats.refused_by_hub == {CONSUMER: 5}
    assert stats.conntrack[CONSUMER] == 94 and stats.conntrack_limit == 100


def test_kernel_drops_are_counted_and_logged_as_errors(
    setup, caplog: pytest.LogCaptureFixture
) -> None:
    _kernel, reconciler = setup
    reconciler.observe_conntrack(PROVIDER, 10, drops=7)  # the baseline: before our time
    assert reconciler.stats().kernel_drops == 0
    reconciler.observe_conntrack(PROVIDER, 10, drops=None)
    reconciler.observe_conntrack(PROVIDER, 10, drops=12)
    assert reconciler.stats().kernel_drops == 5
    assert any(r.levelno == logging.ERROR and "dropped 5" in r.getMessage() for r in caplog.records)


def test_the_default_limit_is_a_share_of_the_kernels_and_can_be_set(setup) -> None:
    _kernel, reconciler = setup
    assert reconciler.conntrack_limit == 900  # 90 % of the fake's nf_conntrack_max 1000
    reconciler.conntrack_limit = 5
    assert reconciler.conntrack_limit == 5
    with pytest.raises(ValueError):
        reconciler.conntrack_limit = 0
    reconciler.conntrack_limit = None
    assert reconciler.conntrack_limit == 900


# --- the watcher thread, on the fake's event queue and gauges ---------------------------


def eventually(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_watcher_turns_events_into_repairs_and_samples_conntrack(setup) -> None:
    kernel, reconciler = setup
    plan = built(kernel, reconciler)
    reconciler._sync_once = lambda: _apply_and_report(reconciler, plan)  # type: ignore[method-assign]
    reconciler.start()
    watcher = reconciler._watcher
    assert watcher is not None
    eventually(lambda: CONSUMER in kernel.nsids and PROVIDER in kernel.nsids, "hub ids")
    assert reconciler.stats().watching

    del kernel.ns[CONSUMER].links["nclient00000"]  # someone deletes the VM's veth
    kernel.events.queue.put(LinkGone(kernel.nsids[CONSUMER], "nclient00000"))
    eventually(lambda: "nclient00000" in kernel.ns[CONSUMER].links, "the veth made again")
    kernel.events.queue.put(LinkGone(999, "nclient00000"))  # another namespace's: ignored

    kernel.conntrack[PROVIDER], kernel.expired[PROVIDER] = 950, 100  # 850 live
    eventually(lambda: f"reap {PROVIDER}" in kernel.calls, "expired entries freed")
    assert reconciler.stats().full_hubs == ()
    kernel.conntrack[PROVIDER] = 2000
    eventually(lambda: reconciler.stats().full_hubs == (PROVIDER,), "the provider full")
    eventually(lambda: gate_of(kernel.ns[PROVIDER].nft), "the provider's table refusing")
    kernel.refused[PROVIDER] = 4
    eventually(lambda: reconciler.stats().refused_flows == 4, "the refusals collected")

    del kernel.ns[PROVIDER]  # `ip netns del`: a new one has an empty conntrack table
    kernel.conntrack.pop(PROVIDER)
    kernel.events.queue.put(NetnsGone(PROVIDER))
    eventually(lambda: PROVIDER in kernel.ns, "the provider hub made again")
    eventually(lambda: reconciler.stats().full_hubs == (), "the gone hub's samples dropped")
    assert not gate_of(kernel.ns[PROVIDER].nft)


def _apply_and_report(reconciler: Reconciler, plan: Plan) -> Any:
    """A sync without a store: the plan applied, the watcher refreshed."""
    repaired = reconciler.apply(plan, full=False)
    if reconciler._watcher is not None:
        reconciler._watcher.refresh()
    reconciler.last = SyncReport(0.0, len(plan.hubs), len(plan.links), None, repaired)
    return reconciler.last


def test_the_limit_is_read_from_config_json(tmp_path: Path) -> None:
    assert ServerConfig.load(tmp_path).conntrack_limit is None
    (tmp_path / "config.json").write_text('{"conntrack_limit": 5000}')
    assert ServerConfig.load(tmp_path).conntrack_limit == 5000
