"""Incremental nft updates against the real kernel (issue 12): a table that got
`nft.delta(old, new)` holds what a table loaded whole from `new` holds.

The unit tier (tests/unit/test_nft_delta.py) checks the same on a fake for hundreds of
random pairs; this checks the kernel accepts the transactions (order of chain creation
and deletion, element syntax, flushing a hooked chain) and ends up with the same sets,
maps and chains, compared through `nft -j` (element order is the kernel's own).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hub_plans import hubs, link, rule, service
from hypothesis import HealthCheck, given, settings
from world import hub_pair

from privatelink.dataplane import names, nft, privileged
from privatelink.dataplane.desired import HubPlan

pytestmark = pytest.mark.usefixtures("netns_required")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[str, str]]:
    with hub_pair("nd") as made:
        yield made


def _contents(netns: str) -> dict[str, Any]:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "ip", names.TABLE],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    found: dict[str, Any] = {}
    for item in json.loads(done.stdout)["nftables"]:
        for kind in ("set", "map"):
            if kind in item:
                elements = item[kind].get("elem", [])
                found[f"{kind} {item[kind]['name']}"] = sorted(json.dumps(e) for e in elements)
        if "chain" in item:
            found.setdefault(f"chain {item['chain']['name']}", [])
        if "rule" in item:
            rule_ = item["rule"]
            found.setdefault(f"chain {rule_['chain']}", []).append(json.dumps(rule_["expr"]))
    return found


def _same_after_delta(pair: tuple[str, str], old: nft.Table, new: nft.Table) -> None:
    by_delta, whole = pair
    privileged.apply_nft(by_delta, nft.serialize(old))
    change = nft.delta(old, new)
    if change:
        privileged.apply_nft(by_delta, change)
    privileged.apply_nft(whole, nft.serialize(new))
    assert _contents(by_delta) == _contents(whole)


def test_a_link_added_and_removed_by_elements(pair: tuple[str, str]) -> None:
    svc = service(0, [rule(0, ("10.0.1.4",))], ("10.0.3.4",))
    base = {"vnet_id": "v", "netns": "n", "rules": (rule(0, ("10.0.1.4",)),), "services": (svc,)}
    links = tuple(link(s, svc, True) for s in range(40))
    old = nft.table(HubPlan(**base, links_in=links))
    new = nft.table(HubPlan(**base, links_in=(*links[1:], link(40, svc, True))))
    _same_after_delta(pair, old, new)
    _same_after_delta(pair, new, old)
    # Removal with its flows' reset rule, then without (the reconciler's two steps).
    dying = nft.table(HubPlan(**base, links_in=links[1:]), frozenset({links[0].mark}))
    _same_after_delta(pair, old, dying)
    _same_after_delta(pair, dying, nft.table(HubPlan(**base, links_in=links[1:])))
    # A hub at its conntrack limit refuses new flows, and stops.
    _same_after_delta(pair, old, nft.table(HubPlan(**base, links_in=links), full=True))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(old=hubs(), new=hubs())
def test_random_pairs_agree_with_the_kernel(
    pair: tuple[str, str],
    old: tuple[HubPlan, frozenset[int], bool],
    new: tuple[HubPlan, frozenset[int], bool],
) -> None:
    _same_after_delta(pair, nft.table(*old), nft.table(*new))
