"""One link added or removed with N present: the kernel work the reconciler does.

Issue 12's target: "One link added or removed with 10,000 present: kernel work <= 20 ms
(nft map/set element updates and one veth, not a table replacement)". This measures that
work on real namespaces, for each N (1, 1000, 10000; `--quick`: 1, 1000; `--sizes`):

setup      hub namespaces C (consumer), P and Q (providers), with `HUB_SYSCTLS` (written
           after the first table, before any veth, as the reconciler does), `lo` holding
           168.63.129.16, the PE IPs (C) and the NAT IPs (P, Q); the N links from C to P
           share the pair veth of (C, P), `k0c`/`k0p` with its /30 (`names.link_addresses`),
           and each has its PE IP's route in C's table 100 via the provider end, made fast
           with `ip -batch` (not timed). Both tables hold the N links
           (`nft.serialize(nft.table(hub))`; a few services and one rule in P and Q).
add        REPEAT times, a new link from C to P (and its endpoint's PE IP, which comes with
           it when an endpoint is made), in `Reconciler._apply_change`'s order: the PE IP
           on C's `lo`, then `nft.link_delta` of each hub (two transactions,
           `privileged.apply_nft`, whose libnftables context per namespace is kept as in
           the server), then `Reconciler._link` itself (run on this script's netlink
           handles, with the pair veth's index known as the server keeps it: the route).
remove     the same link again: the PE IP off `lo`, the first `link_delta` per hub (link
           gone, its mark dying: the forward chain gets its reset rule), then
           `Reconciler._remove_link` (`conntrack -D --mark` in both hubs, the route), then
           the second `link_delta` per hub (the dying mark and the reset rule go).
new pair   the same for a link from C to Q, the first (and then last) of its pair of hubs:
           `_link` makes the pair veth; `_remove_link` deletes the route, and the veth
           goes in `Reconciler._retire_pairs` once the sync has been reported: timed
           apart ("then: veth deleted"), outside the removal's total.
replace    for comparison, both whole tables replaced (`nft.serialize` of the full table):
           what every change cost before issue 12; and the Python time to render them.

Totals are the sum of the kernel calls (the Python that builds the delta text is
reported apart, as `delta_text`); each figure is the median (p50) and max of REPEAT.

Safety: before measuring, waits (up to 15 minutes) until no `bench/scale.py` runs, so
the two do not disturb each other. Namespaces are `blc<3 random>-...`, swept by that
prefix at start and end, on SIGTERM/SIGHUP and in `finally`; nothing goes into the root
namespace; every loop is bounded in count and time (`--budget`). Needs root, ip, nft and
conntrack.

    sudo .venv/bin/python bench/link_change.py [--quick] [--sizes 1,1000] [--write]

`--write` stores the results in docs/benchmarks-link-change.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from common import (
    link_sizes,
    log,
    summary,
    sweep_on_signals,
    unique_prefix,
)
from kernel_objects import (
    Budget,
    OutOfTime,
    finish,
    make_netns,
    pe_ip,
    report_header,
    run,
    sample,
    sweep,
    timed,
)

from privatelink.dataplane import names, nft, privileged
from privatelink.dataplane.desired import HubPlan, LinkPlan, ServicePlan
from privatelink.dataplane.privileged import KernelError, Netlink
from privatelink.dataplane.reconciler import HUB_SYSCTLS, Reconciler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
import hub_plans  # tests/support: the plan builders the nft tests use

ROOT = Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "docs" / "benchmarks-link-change.json"
FULL_SIZES = (1, 1000, 10000)
QUICK_SIZES = (1, 1000)
REPEAT = 7
OTHER_BENCH = "bench/scale.py"
WAIT_OTHER_S = 900.0
SETTLE_S = 30.0  # after waiting for it
RULE = hub_plans.rule(0, ("10.0.2.4", "10.0.2.5"))
SERVICES = tuple(hub_plans.service(i, [RULE], (f"10.0.3.{4 + i}",)) for i in range(3))
BATCH_TIMEOUT = 600.0


# --- plans -------------------------------------------------------------------------------------


def link_plan(slot: int, consumer: str, provider: str, pair: int = 0) -> LinkPlan:
    """Link `slot` from C to one of the services in P (round robin), over `pair`'s veth."""
    service: ServicePlan = SERVICES[slot % len(SERVICES)]
    return LinkPlan.on_slot(
        slot,
        f"bench/{slot}",
        pe_ip(slot),
        consumer,
        provider,
        service.chain,
        tuple(port for _, port, _ in service.ports),
        pair=pair,
    )


def hubs(links: tuple[LinkPlan, ...], consumer: str, provider: str) -> tuple[HubPlan, HubPlan]:
    """The consumer's and the provider's hub plans with these links (as `Planner` makes
    them: the consumer's PE IPs sorted)."""
    c = HubPlan(
        vnet_id="bench-c",
        netns=consumer,
        links_out=links,
        pe_ips=tuple(sorted(x.pe_ip for x in links)),
    )
    p = HubPlan(vnet_id="bench-p", netns=provider, services=SERVICES, rules=(RULE,), links_in=links)
    return c, p


# --- the reconciler's own link code, on our handles ----------------------------------------------


class ConntrackTimer:
    """The `kernel` `Reconciler._remove_link` calls: `privileged`, the time it spends in
    `conntrack_delete_mark` added up."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def conntrack_delete_mark(self, netns: str, mark: int) -> None:
        start = time.perf_counter()
        try:
            privileged.conntrack_delete_mark(netns, mark)
        finally:
            self.seconds += time.perf_counter() - start


class Hands:
    """What `Reconciler._link` and `_remove_link` use of a reconciler (its cached netlink
    handle per hub, its kernel), so that they run as they are, without a repository."""

    _link = Reconciler._link
    _pair = Reconciler._pair
    _link_address = Reconciler._link_address
    _remove_link = Reconciler._remove_link
    _retire_pairs = Reconciler._retire_pairs

    def __init__(self, handles: dict[str, Netlink]) -> None:
        self.handles = handles
        self.kernel = ConntrackTimer()
        self._pair_index: dict[int, int] = {}
        self._retiring: list[tuple[str, str]] = []
        self._full_due = 0.0

    def _netlink(self, netns: str) -> Netlink:
        return self.handles[netns]


# --- setup ---------------------------------------------------------------------------------------


def batch(netns: str, lines: list[str]) -> None:
    """`ip -n NETNS -batch -`: one process, stops at the first failing line."""
    if lines:
        run("ip", "-n", netns, "-batch", "-", stdin="\n".join(lines) + "\n", timeout=BATCH_TIMEOUT)


def make_hub_netns(name: str, tries: int = 5) -> None:
    """`make_netns`, tried again a few times: while the kernel still destroys another
    run's namespaces, making one can outlast pyroute2's 2 s wait for its helper."""
    for attempt in range(tries):
        try:
            make_netns(name)
            return
        except KernelError as exc:
            if attempt == tries - 1:
                raise
            log(f"make {name}: {exc}; again in 5 s")
            time.sleep(5)


def setup(c: str, p: str, q: str, links: tuple[LinkPlan, ...]) -> dict[str, Any]:
    """The hubs with their sysctls, `lo` addresses, the pair veth of (C, P) and the links'
    routes, and the tables holding the links (see the module docstring)."""
    out: dict[str, Any] = {}
    start = time.perf_counter()
    for netns in (c, p, q):
        make_hub_netns(netns)
    empty_c, empty_p = hubs((), c, p)
    for hub in (empty_c, empty_p, hubs((), c, q)[1]):
        privileged.apply_nft(hub.netns, nft.serialize(nft.table(hub)))
        # After the first table (conntrack's sysctls exist then), before any veth (no
        # IPv6 on the links), as `Reconciler.apply` does.
        privileged.write_sysctls(hub.netns, HUB_SYSCTLS)
        with Netlink(hub.netns) as nl:
            nl.ensure_table_before_local(
                names.ENDPOINT_TABLE, names.ENDPOINT_RULE_PREF, names.LOCAL_RULE_PREF
            )
    platform = f"addr add {names.AZURE_PLATFORM_IP}/32 dev lo"
    lines_c = [platform, *(f"addr add {x.pe_ip}/32 dev lo" for x in links)]
    lines_p = [platform, *(f"addr add {ip}/32 dev lo" for s in SERVICES for ip in s.nat_ips)]
    batch(q, lines_p)
    for x in links[:1]:  # the pair veth all of them share
        lines_c += [
            f"link add {x.consumer_ifname} type veth peer name {x.provider_ifname} netns {p}",
            f"addr add {x.consumer_addr}/30 dev {x.consumer_ifname}",
            f"link set {x.consumer_ifname} up",
        ]
        lines_p += [
            f"addr add {x.provider_addr}/30 dev {x.provider_ifname}",
            f"link set {x.provider_ifname} up",
        ]
    lines_c += [
        f"route add {x.pe_ip}/32 via {x.provider_addr} dev {x.consumer_ifname} onlink "
        f"table {names.ENDPOINT_TABLE}"
        for x in links
    ]
    batch(c, lines_c)
    batch(p, lines_p)
    out["netlink_s"] = round(time.perf_counter() - start, 2)
    veths = len(run("ip", "-n", c, "-br", "link", "show", "type", "veth").splitlines())
    routes = run("ip", "-n", c, "route", "show", "table", str(names.ENDPOINT_TABLE))
    if veths != min(len(links), 1) or len(routes.splitlines()) != len(links):
        raise RuntimeError(f"{veths} veths and {len(routes.splitlines())} routes in {c}")
    hub_c, hub_p = hubs(links, c, p)
    texts = [nft.serialize(nft.table(h)) for h in (hub_c, hub_p)]
    out["table_kib"] = round(sum(map(len, texts)) / 1024, 1)
    load = time.perf_counter()
    for hub, text in zip((hub_c, hub_p), texts, strict=True):
        privileged.apply_nft(hub.netns, text)
    out["nft_load_s"] = round(time.perf_counter() - load, 3)
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def teardown(c: str, p: str, q: str) -> dict[str, Any]:
    """Delete C, wait (bounded) until its veth's peer is gone from P, then delete P and Q."""
    start = time.perf_counter()
    out: dict[str, Any] = {}
    privileged.delete_netns(c)
    probes = {names.link_ifname(0, "p")}
    deadline = time.monotonic() + 600
    try:
        with Netlink(p) as nl:
            while time.monotonic() < deadline:
                if all(nl.link(x) is None for x in probes):
                    break
                time.sleep(0.05)
            else:
                out["error"] = "veths still in P after 600 s"
    except KernelError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    privileged.delete_netns(p)
    privileged.delete_netns(q)
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


# --- measuring -------------------------------------------------------------------------------


def apply_timed(times: dict[str, list[float]], key: str, netns: str, text: str) -> None:
    """One nft transaction, its time added to this repetition's `key`."""
    times[key][-1] += timed(partial(privileged.apply_nft, netns, text))


ADD_PARTS = ("pe_address", "nft", "netlink")
REMOVE_PARTS = ("pe_address", "nft_first", "conntrack", "netlink", "nft_second")


def add_remove(
    c: str,
    p: str,
    links: tuple[LinkPlan, ...],
    hands: Hands,
    budget: Budget,
    pair: int = 0,
    first: int = 0,
) -> dict[str, Any]:
    """Add and remove one more link from C to P over `pair`'s veth REPEAT times (a new
    slot each time, from `first` past the links), in the reconciler's order; per part
    and in total: summaries in ms."""
    nc = hands.handles[c]
    add: dict[str, list[float]] = {k: [] for k in (*ADD_PARTS, "delta_text")}
    rem: dict[str, list[float]] = {k: [] for k in (*REMOVE_PARTS, "delta_text", "retire")}
    present_c, present_p = hubs(links, c, p)
    present_p = replace(present_p, links_in=tuple(x for x in links if x.provider_netns == p))
    n = len(links) + first
    # The pair's first link makes its veth (and its last deletes it), with its elements.
    new_pair = frozenset() if any(x.pair == pair for x in links) else frozenset({pair})
    pairs = (new_pair, frozenset())
    for i in range(REPEAT):
        budget.check(f"repetition {i}")
        link = link_plan(n + i, c, p, pair)
        # The new plans (Python, not timed: the reconciler's planner has them already).
        new_c = replace(
            present_c,
            links_out=(*links, link),
            pe_ips=tuple(sorted((*present_c.pe_ips, link.pe_ip))),
        )
        new_p = replace(present_p, links_in=(*links, link))
        for times in (add, rem):
            for values in times.values():
                values.append(0.0)

        # Add: PE address, nft elements in both hubs, then the veth (Reconciler._link).
        t0 = time.perf_counter()
        text_c = nft.link_delta(new_c, (link,), (), ((link.pe_ip,), ()), pairs=pairs)
        text_p = nft.link_delta(new_p, (link,), (), pairs=pairs)
        add["delta_text"][-1] = time.perf_counter() - t0
        add["pe_address"][-1] = timed(partial(nc.add_address, "lo", f"{link.pe_ip}/32"))
        apply_timed(add, "nft", c, text_c)
        apply_timed(add, "nft", p, text_p)
        add["netlink"][-1] = timed(partial(hands._link, link, pairs=hands._pair_index))

        # Remove: PE address, nft with the mark dying, flows and veth, nft again.
        dying = (frozenset(), frozenset({link.mark}))
        t0 = time.perf_counter()
        gone = (frozenset(), new_pair)
        first_c = nft.link_delta(present_c, (), (link,), ((), (link.pe_ip,)), dying, pairs=gone)
        first_p = nft.link_delta(present_p, (), (link,), dying=dying, pairs=gone)
        settled = (frozenset({link.mark}), frozenset())
        second = {h.netns: nft.link_delta(h, (), (), dying=settled) for h in (present_c, present_p)}
        rem["delta_text"][-1] = time.perf_counter() - t0
        rem["pe_address"][-1] = timed(partial(nc.delete_address, "lo", f"{link.pe_ip}/32"))
        apply_timed(rem, "nft_first", c, first_c)
        apply_timed(rem, "nft_first", p, first_p)
        hands.kernel.seconds = 0.0
        whole = timed(partial(hands._remove_link, link, {c, p}, bool(new_pair)))
        rem["conntrack"][-1] = hands.kernel.seconds
        rem["netlink"][-1] = whole - hands.kernel.seconds
        for netns in (c, p):
            apply_timed(rem, "nft_second", netns, second[netns])
        # A pair's last link: its veth goes after the sync is reported (not in the total).
        rem["retire"][-1] = timed(hands._retire_pairs)
    out: dict[str, Any] = {}
    for name, times, parts in (("add", add, ADD_PARTS), ("remove", rem, REMOVE_PARTS)):
        totals = [sum(times[k][i] for k in parts) for i in range(len(times[parts[0]]))]
        out[name] = {"total": raw(totals), **{k: raw(v) for k, v in times.items()}}
    return out


def raw(seconds: list[float]) -> dict[str, Any]:
    """`summary`, with each repetition's value in order (outliers: first or any?)."""
    return {**summary(seconds), "values_ms": [round(x * 1000, 2) for x in seconds]}


def replace_tables(c: str, p: str, links: tuple[LinkPlan, ...]) -> dict[str, Any]:
    """Both whole tables replaced, REPEAT times (fewer past 60 s): the pre-issue-12 way."""
    hub_c, hub_p = hubs(links, c, p)
    renders: list[str] = []

    def render() -> None:
        renders[:] = [nft.serialize(nft.table(h)) for h in (hub_c, hub_p)]

    render_s = sample(render, REPEAT, 30)

    def apply() -> None:
        privileged.apply_nft(c, renders[0])
        privileged.apply_nft(p, renders[1])

    return {"apply": raw(sample(apply, REPEAT, 60)), "render": summary(render_s)}


def measure(n: int, prefix: str, budget: Budget) -> dict[str, Any]:
    """Set up N links, measure one link's add and remove and the whole-table replace,
    tear everything down (always)."""
    c, p, q = f"{prefix}-c{n}", f"{prefix}-p{n}", f"{prefix}-q{n}"
    out: dict[str, Any] = {"n": n}
    handles: dict[str, Netlink] = {}
    links = tuple(link_plan(s, c, p) for s in range(n))
    try:
        out["setup"] = setup(c, p, q, links)
        handles.update({c: Netlink(c), p: Netlink(p), q: Netlink(q)})
        time.sleep(1)  # the new veths' own events settle before timing
        hands = Hands(handles)
        if links:  # the server knows its pair veths' indexes from its last sync
            hands._pair_index[0] = hands._pair(links[0], {})
        budget.check("add/remove")
        out.update(add_remove(c, p, links, hands, budget))
        budget.check("new pair")
        pair = add_remove(c, q, links, hands, budget, pair=1, first=REPEAT)
        out["add_pair"], out["remove_pair"] = pair["add"], pair["remove"]
        budget.check("replace")
        out["replace_both"] = replace_tables(c, p, links)
    except (KernelError, RuntimeError, OSError, OutOfTime, subprocess.TimeoutExpired) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(f"n={n}: {out['error']}")
    finally:
        for handle in handles.values():
            handle.close()  # an open netlink socket would keep its namespace alive
        out["teardown"] = teardown(c, p, q)
    return out


def wait_for_other_bench(limit: float) -> dict[str, Any]:
    """Wait (at most `limit` s) until no `bench/scale.py` runs; how long that took."""
    start = time.monotonic()
    while True:
        busy = subprocess.run(["pgrep", "-f", OTHER_BENCH], capture_output=True, check=False)
        pids = [x for x in busy.stdout.decode().split() if int(x) != os.getpid()]
        waited = round(time.monotonic() - start, 1)
        if not pids:
            return {"waited_s": waited, "free": True}
        if waited >= limit:
            return {"waited_s": waited, "free": False, "pids": pids}
        if waited == 0 or int(waited) % 60 < 10:
            log(f"{OTHER_BENCH} is running (pids {pids}); waiting")
        time.sleep(10)


# --- report ----------------------------------------------------------------------------------


def _cell(part: dict[str, Any] | None) -> str:
    if not part or not part.get("n"):
        return "-"
    return f"{part['p50_ms']:.2f} / {part['max_ms']:.2f}"


def _ratio(r: dict[str, Any], base: dict[str, Any] | None, what: str) -> str:
    try:
        assert base is not None
        return f"{r[what]['total']['p50_ms'] / base[what]['total']['p50_ms']:.2f}"
    except (AssertionError, KeyError, ZeroDivisionError):
        return "-"


COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], dict[str, Any] | None]], ...] = (
    ("add total", lambda r: r.get("add", {}).get("total")),
    ("add: lo PE", lambda r: r.get("add", {}).get("pe_address")),
    ("add: nft C+P", lambda r: r.get("add", {}).get("nft")),
    ("add: _link", lambda r: r.get("add", {}).get("netlink")),
    ("remove total", lambda r: r.get("remove", {}).get("total")),
    ("rm: lo PE", lambda r: r.get("remove", {}).get("pe_address")),
    ("rm: nft 1st C+P", lambda r: r.get("remove", {}).get("nft_first")),
    ("rm: conntrack C+P", lambda r: r.get("remove", {}).get("conntrack")),
    ("rm: route", lambda r: r.get("remove", {}).get("netlink")),
    ("rm: nft 2nd C+P", lambda r: r.get("remove", {}).get("nft_second")),
    ("new pair: add", lambda r: r.get("add_pair", {}).get("total")),
    ("add: veth", lambda r: r.get("add_pair", {}).get("netlink")),
    ("last of pair: remove", lambda r: r.get("remove_pair", {}).get("total")),
    ("rm: route", lambda r: r.get("remove_pair", {}).get("netlink")),
    ("then: veth deleted", lambda r: r.get("remove_pair", {}).get("retire")),
    ("whole tables C+P", lambda r: r.get("replace_both", {}).get("apply")),
)


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """One row per N: each part's median / max in ms, and the totals' ratio to N = 1."""
    head = ["N", *(label for label, _ in COLUMNS), "add ratio", "remove ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results.get("1")
    for size, r in results.items():
        cells = [size, *(_cell(get(r)) for _, get in COLUMNS)]
        cells += [_ratio(r, base, "add"), _ratio(r, base, "remove")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"N in {QUICK_SIZES}")
    parser.add_argument("--sizes", help="comma-separated N (overrides --quick)")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds of measuring")
    parser.add_argument("--write", action="store_true", help=f"write {JSON_OUT.name}")
    args = parser.parse_args()
    sizes = link_sizes(args.sizes, args.quick, QUICK_SIZES, FULL_SIZES, REPEAT)
    sweep_on_signals()
    prefix = unique_prefix("blc")
    waited = wait_for_other_bench(WAIT_OTHER_S)
    if not waited["free"]:
        sys.exit(f"{OTHER_BENCH} still running after {WAIT_OTHER_S:.0f} s: not measuring")
    if waited["waited_s"]:
        # Its namespaces may still be being destroyed by the kernel (thousands of veths).
        time.sleep(SETTLE_S)
    budget = Budget(args.budget, reserve=60.0)
    results: dict[str, dict[str, Any]] = {}
    doc: dict[str, Any] = {
        **report_header("link_change", prefix),
        "waited_for_other_bench": waited,
        "loadavg_at_start": os.getloadavg()[0],
        "sizes": list(sizes),
        "repeat": REPEAT,
        "services": len(SERVICES),
        "units": "ms; p50 is the median of `repeat`; totals sum the kernel calls of a "
        "repetition (delta_text: the Python building the nft text, not in the total)",
        "results": results,
    }
    log(f"prefix {prefix}, sizes {sizes}, budget {args.budget:.0f} s")
    sweep(prefix)
    try:
        for n in sizes:
            if budget.left() < budget.reserve:
                results[str(n)] = {"n": n, "error": "budget spent before start"}
                continue
            log(f"n={n} ({budget.left():.0f} s left)")
            results[str(n)] = measure(n, prefix, budget)
            log(json.dumps(results[str(n)]))
            if args.write:
                JSON_OUT.write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        finish(doc, prefix)
    print(markdown(results))
    if args.write:
        JSON_OUT.write_text(json.dumps(doc, indent=1) + "\n")
        log(f"wrote {JSON_OUT}")


if __name__ == "__main__":
    main()
