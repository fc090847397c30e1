"""Incremental nft updates (issue 12): `nft.delta(old, new)` applied to a table holding
`old` leaves exactly `new`, by elements and chains; nothing when nothing changed.

The fake table (tests/unit/fake_kernel.py) applies transactions as the kernel would and
fails where it would: a missing element or chain, a chain still jumped to, a map key
added twice. The netns tier checks the same against the real kernel
(tests/netns/test_nft_delta.py).
"""

from __future__ import annotations

from fake_kernel import FakeNftTable
from hub_plans import NS, hubs, link, rule, service
from hypothesis import given, settings

from privatelink.dataplane import names, nft
from privatelink.dataplane.desired import HubPlan


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


def test_one_link_more_is_its_elements_and_its_chain() -> None:
    svc = service(0, [rule(0, ("10.0.1.4",))], ("10.0.3.4",))
    base = HubPlan("vnet", NS, rules=(rule(0, ("10.0.1.4",)),), services=(svc,))
    many = tuple(link(s, svc, True) for s in range(1, 200))
    before = nft.table(HubPlan(**{**base.__dict__, "links_in": many}))
    after = nft.table(HubPlan(**{**base.__dict__, "links_in": (*many, link(200, svc, True))}))
    change = nft.delta(before, after).splitlines()
    mark = names.link_mark(200)
    assert change == [
        "add chain ip privatelink link_200",
        f"add rule ip privatelink link_200 ct mark set {mark}",
        f"add rule ip privatelink link_200 jump {svc.chain}",
        "add rule ip privatelink link_200 drop",
        f"add element ip privatelink live_links {{ {mark} }}",
        'add element ip privatelink link_in_ifs { "k200p" }',
        'add element ip privatelink links { "k200p" : jump link_200 }',
        f"add element ip privatelink snat_by_mark {{ {mark} : jump {svc.snat_chain} }}",
    ]
    # And back: the elements go before the chain they jump to.
    back = nft.delta(after, before).splitlines()
    assert back[-1] == "delete chain ip privatelink link_200"
    assert all(line.startswith("delete element") for line in back[:-1])
