"""Incremental nft updates (issue 12): `nft.delta(old, new)` applied to a table holding
`old` leaves exactly `new`, by elements and chains; nothing when nothing changed.

The fake table (tests/unit/fake_kernel.py) applies transactions as the kernel would and
fails where it would: a missing element or chain, a chain still jumped to, a map key
added twice. The netns tier checks the same against the real kernel
(tests/netns/test_nft_delta.py).
"""

from __future__ import annotations

from dataclasses import replace

from fake_kernel import FakeNftTable
from hub_plans import NS, hubs, link, rule, service
from hypothesis import given, settings
from hypothesis import strategies as st

from privatelink.dataplane import fabric, names, nft
from privatelink.dataplane.desired import HubPlan, RulePlan


def _holding(table: nft.Table) -> FakeNftTable:
    fake = FakeNftTable()
    fake.apply(nft.serialize(table))
    return fake


@settings(max_examples=300, deadline=None)
@given(old=hubs(), new=hubs())
def test_a_delta_takes_the_table_from_old_to_new(
    old: tuple[HubPlan, frozenset[int], bool], new: tuple[HubPlan, frozenset[int], bool]
) -> None:
    before, after = nft.table(*old), nft.table(*new)
    fake = _holding(before)
    fake.apply(nft.delta(before, after))
    assert fake.state() == _holding(after).state()


@settings(max_examples=50, deadline=None)
@given(same=hubs())
def test_nothing_changed_is_no_transaction(same: tuple[HubPlan, frozenset[int], bool]) -> None:
    assert nft.delta(nft.table(*same), nft.table(*same)) == ""


def test_one_link_more_is_its_elements() -> None:
    svc = service(0, [rule(0, ("10.0.1.4",))], ("10.0.3.4",))
    base = HubPlan("vnet", NS, rules=(rule(0, ("10.0.1.4",)),), services=(svc,))
    many = tuple(link(s, svc, True) for s in range(1, 200))
    before = nft.table(HubPlan(**{**base.__dict__, "links_in": many}))
    after = nft.table(HubPlan(**{**base.__dict__, "links_in": (*many, link(200, svc, True))}))
    change = nft.delta(before, after).splitlines()
    mark, pe_ip = names.link_mark(200), link(200, svc, True).pe_ip
    # Slot 200 is the first of its pair (slots 200-203 share one veth): its end comes too.
    assert change == [
        f"add element ip privatelink live_links {{ {mark} }}",
        'add element ip privatelink link_in_ifs { "k50p" }',
        # Its metric counters (dataplane/metrics.py): each way, and SYNs.
        f"add element ip privatelink traffic_in {{ {mark} . {pe_ip} . tcp . 8080 }}",
        f"add element ip privatelink traffic_out {{ {mark} . {pe_ip} . tcp . 8080 }}",
        f"add element ip privatelink syns {{ {mark} . {pe_ip} . tcp . 8080 }}",
        f'add element ip privatelink link_marks {{ "k50p" . {pe_ip} : {mark} }}',
        f'add element ip privatelink links {{ "k50p" . {pe_ip} : jump {svc.chain} }}',
        f"add element ip privatelink snat_by_mark {{ {mark} : jump {svc.snat_chain} }}",
    ]
    # One more link over a pair veth that exists: its own elements only.
    shared = (*many, link(200, svc, True))
    more = nft.table(HubPlan(**{**base.__dict__, "links_in": (*shared, link(201, svc, True))}))
    assert not any("link_in_ifs" in line for line in nft.delta(after, more).splitlines())
    # And back: only elements go.
    back = nft.delta(after, before).splitlines()
    assert back and all(line.startswith("delete element") for line in back)


@st.composite
def _link_changes(
    draw: st.DrawFn,
) -> tuple[tuple[HubPlan, frozenset[int], bool], HubPlan, frozenset[int]]:
    """A hub, and the same hub with links and PE addresses that came and went (links
    re-made on their slot among them) and other dying marks."""
    old, dying, full = draw(hubs())
    # Peerings and uplinks add forward rules that a change of dying links must keep.
    peer = fabric.PeerPort("w0a", ("10.2.0.0/16",), allow_in=True, allow_out=False)
    old = replace(
        old,
        fabric=draw(
            st.sampled_from(
                [
                    fabric.NO_FABRIC,
                    fabric.HubFabric(peers=(peer,)),
                    fabric.HubFabric(uplinks=("w1a",)),
                    fabric.HubFabric(peers=(peer,), transit=("w0a",), uplinks=("w1a",)),
                ]
            )
        ),
    )
    if not old.services:
        return (old, dying, full), old, dying
    kept_in = [x for x in old.links_in if draw(st.booleans())]
    kept_out = [x for x in old.links_out if draw(st.booleans())]
    taken = {x.slot for x in (*kept_in, *kept_out)}
    links_in = list(kept_in)
    for slot in draw(st.sets(st.integers(0, 12), max_size=4)) - taken:
        target = draw(st.sampled_from(old.services))
        links_in.append(link(slot, target, True, local=draw(st.booleans()) and slot % 3 == 0))
    links_out = list(kept_out)
    for slot in draw(st.sets(st.integers(20, 30), max_size=3)) - taken:
        links_out.append(link(slot, draw(st.sampled_from(old.services)), False))
    pe_ips = {x.pe_ip for x in links_out} | set(
        draw(st.sets(st.sampled_from(["10.1.9.1", "10.1.9.2"])))
    )
    new = HubPlan(
        **{
            **old.__dict__,
            "links_in": tuple(sorted(links_in, key=lambda x: x.slot)),
            "links_out": tuple(sorted(links_out, key=lambda x: x.slot)),
            "pe_ips": tuple(sorted(pe_ips)),
        }
    )
    marks = [x.mark for x in (*old.links_in, *old.links_out, *links_in, *links_out)]
    now_dying = frozenset(draw(st.sets(st.sampled_from(marks), max_size=2))) if marks else dying
    return (old, dying, full), new, now_dying


@settings(max_examples=300, deadline=None)
@given(change=_link_changes())
def test_a_link_delta_takes_the_table_where_a_whole_delta_does(
    change: tuple[tuple[HubPlan, frozenset[int], bool], HubPlan, frozenset[int]],
) -> None:
    """Issue 12: built from the links that came and went alone, the same end state."""
    (old, dying, full), new, now_dying = change
    was = {id(x) for x in (*old.links_in, *old.links_out)}
    now = {id(x) for x in (*new.links_in, *new.links_out)}
    added = [x for x in (*new.links_in, *new.links_out) if id(x) not in was]
    removed = [x for x in (*old.links_in, *old.links_out) if id(x) not in now]
    ips = (set(new.pe_ips) - set(old.pe_ips), set(old.pe_ips) - set(new.pe_ips))
    pairs_before = {x.pair for x in (*old.links_in, *old.links_out) if not x.local}
    pairs_after = {x.pair for x in (*new.links_in, *new.links_out) if not x.local}
    pairs = (frozenset(pairs_after - pairs_before), frozenset(pairs_before - pairs_after))
    fake = _holding(nft.table(old, dying, full))
    fake.apply(nft.link_delta(new, added, removed, ips, (dying, now_dying), full, pairs))
    assert fake.state() == _holding(nft.table(new, now_dying, full)).state()


def test_a_link_delta_of_nothing_is_no_transaction() -> None:
    svc = service(0, [rule(0, ("10.0.1.4",))], ("10.0.3.4",))
    hub = HubPlan("vnet", NS, services=(svc,), links_in=(link(1, svc, True),))
    assert nft.link_delta(hub, (), ()) == ""
    one = link(2, svc, True)
    assert nft.link_delta(hub, (one,), (one,)) == ""


def test_backends_on_their_frontend_port_may_be_reached_untranslated() -> None:
    """Overlapping spaces: a backend ip:port equal to the PE's ip:port makes the DNAT
    change nothing (no DNAT status); `forward` lets exactly those through."""
    plain = RulePlan("r1", "rule_1", "tcp", "10.0.1.4", 80, 8080, ("10.0.2.4",), "Default")
    same_port = RulePlan("r3", "rule_3", "tcp", "10.0.1.4", 443, 443, ("10.0.2.4",), "Default")
    hub = HubPlan(vnet_id="/vnet/prov", netns="prov", rules=(plain, same_port))
    sets = {name: items for name, _, items in nft.table(hub).sets}
    assert sets["identity_targets"] == ("10.0.2.4 . tcp . 443",)  # not r1: 80 -> 8080
