"""nftables rulesets of a hub, rendered as text for one atomic transaction.

One owned table per hub (`ip privatelink`); static chains; per-object data in maps and
sets so per-packet cost does not grow with the number of links:

consumer side  prerouting  PE ip . port -> ct mark = link (map); no DNAT: the hub's
                           endpoint routing table sends a live PE ip into its link
               postrouting snat to the link's consumer address (map by oifname)
provider side  prerouting  iifname -> link chain (vmap): ct mark = link, jump service;
                           what no rule DNATs is dropped
               service     protocol . port -> rule chain (vmap)
               rule        dnat to a backend by hash (jhash over healthy backends)
               frontends   frontend ip . protocol . port -> rule chain (intra-VNet LB)
               postrouting ct mark -> snat chain: a NAT IP of the service by hash
both           forward     flows of links being removed are reset (only during that
                           sync: no per-packet link check otherwise); a link carries
                           only flows its consumer marked and its provider DNATs
               input       PE and NAT IPs are local to the hub: without a live NATed
                           flow a TCP packet to them gets a reset here
               admission   only while the hub's conntrack table is at its limit: new
                           flows are counted and refused (TCP reset, ICMP otherwise)
                           before the kernel would drop them silently
same network   prerouting  PE ip -> link chain (vmap) when endpoint and service share a
                           hub: no veth, the provider side's NAT happens in place
"""

from __future__ import annotations

from dataclasses import dataclass

from privatelink.dataplane.desired import HubPlan, RulePlan
from privatelink.dataplane.names import REFUSED_COUNTER, TABLE

_HASH = {
    "Default": "jhash ip saddr . th sport . ip daddr . th dport",
    "SourceIP": "jhash ip saddr",
    "SourceIPProtocol": "jhash ip saddr . meta l4proto",
}


@dataclass(frozen=True)
class Table:
    """A hub's table as data: what `render` writes and `delta` compares.

    `sets` and `maps` hold their element texts (a map's by key); `chains` the rules of
    every chain, base chains (hooked, `BASE`) and per-object ones alike.
    """

    sets: tuple[tuple[str, str, tuple[str, ...]], ...]  # (name, type, elements)
    maps: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]  # (name, type, (key, value))
    chains: tuple[tuple[str, tuple[str, ...]], ...]  # (name, rules), in render order


# Base chains: their hook line is part of the chain's definition, not a rule.
BASE = {
    "prerouting": "type nat hook prerouting priority dstnat; policy accept;",
    "postrouting": "type nat hook postrouting priority srcnat; policy accept;",
    "forward": "type filter hook forward priority filter; policy accept;",
    "input": "type filter hook input priority filter; policy accept;",
}


def _rule_chain(rule: RulePlan) -> tuple[str, ...]:
    n = len(rule.backends)
    if not n:
        return ()
    targets = ", ".join(f"{i} : {ip} . {rule.backend_port}" for i, ip in enumerate(rule.backends))
    hashed = _HASH.get(rule.distribution, _HASH["Default"])
    return (f"meta l4proto {rule.protocol} dnat ip to {hashed} mod {n} map {{ {targets} }}",)


def _pairs(items: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(item.split(" : ", 1)) for item in items)  # type: ignore[misc]


def table(hub: HubPlan, dying: frozenset[int] = frozenset(), full: bool = False) -> Table:
    """The hub's table (see `render` for `dying` and `full`)."""
    live = sorted({str(x.mark) for x in (*hub.links_out, *hub.links_in)}, key=int)
    pe_mark = [f"{x.pe_ip} . {port} : {x.mark}" for x in hub.links_out for port in x.ports]
    link_chains = [
        f'"{x.provider_ifname}" : jump link_{x.slot}' for x in hub.links_in if not x.local
    ]
    pe_local = [f"{x.pe_ip} : jump link_{x.slot}" for x in hub.links_in if x.local]
    frontends = [
        f"{r.frontend_ip} . {r.protocol} . {r.frontend_port} : jump {r.chain}"
        for r in hub.rules
        if r.frontend_ip
    ]
    # By chain: a scan of every service per link was quadratic (10,000 links x 1000).
    snat_chain = {s.chain: s.snat_chain for s in hub.services}
    snat = [
        f"{x.mark} : jump {snat_chain[x.service_chain]}"
        for x in hub.links_in
        if x.service_chain in snat_chain
    ]
    nat_ips = sorted({ip for s in hub.services for ip in s.nat_ips})
    link_ifs = [f'"{x.provider_ifname}"' for x in hub.links_in if not x.local]
    out_ifs = [f'"{x.consumer_ifname}"' for x in hub.links_out]
    link_src = [f'"{x.consumer_ifname}" : {x.consumer_addr}' for x in hub.links_out]
    sets = (
        ("live_links", "mark", tuple(live)),
        ("dying_links", "mark", tuple(str(m) for m in sorted(dying))),
        ("pe_ips", "ipv4_addr", tuple(hub.pe_ips)),
        ("nat_ips", "ipv4_addr", tuple(nat_ips)),
        ("link_in_ifs", "ifname", tuple(link_ifs)),
        ("link_out_ifs", "ifname", tuple(out_ifs)),
    )
    maps = (
        ("pe_mark", "ipv4_addr . inet_service : mark", _pairs(pe_mark)),
        ("links", "ifname : verdict", _pairs(link_chains)),
        ("pe_local", "ipv4_addr : verdict", _pairs(pe_local)),
        ("frontends", "ipv4_addr . inet_proto . inet_service : verdict", _pairs(frontends)),
        ("snat_by_mark", "mark : verdict", _pairs(snat)),
        ("link_src", "ifname : ipv4_addr", _pairs(link_src)),
    )
    base: list[tuple[str, tuple[str | None, ...]]] = [
        (
            "prerouting",
            (
                "iifname vmap @links",
                "meta l4proto tcp ip daddr vmap @pe_local",
                # Only a mark: the endpoint routing table routes the PE ip into its link,
                # one NAT fewer than a DNAT to the link's address (which then needs
                # routing anyway).
                "meta l4proto tcp ct state new ct mark set ip daddr . tcp dport map @pe_mark",
                "ip daddr . meta l4proto . th dport vmap @frontends",
            ),
        ),
        (
            "postrouting",
            (
                # The link's address from a map (no per-connection device lookup). The
                # client's port is kept when free, so a client reusing its port maps to
                # the same tuple on the provider side too (see the service's snat chain).
                "snat ip to oifname map @link_src",
                "ct mark vmap @snat_by_mark",
            ),
        ),
        (
            "forward",
            (
                # Only while links are being removed: their flows get a reset at once.
                # (No per-packet check otherwise: conntrack deletion cuts them.)
                "ct mark @dying_links jump dead_link" if dying else None,
                # Established flows of live links (and all others) need no further checks.
                "ct state established,related accept",
                "ct state new jump refuse_new" if full else None,
                "iifname @link_in_ifs ct mark != @live_links drop",
                # What the provider did not DNAT to a backend never enters its network.
                "iifname @link_in_ifs ct status & dnat == 0 drop",
                # The route takes every port of a live PE into the link; unmarked (not a
                # service port) or dead-link flows get a reset here.
                "oifname @link_out_ifs ct mark != @live_links jump dead_link",
                "oifname @link_out_ifs accept",
                "ip daddr @pe_ips meta l4proto tcp reject with tcp reset",
                "ip daddr @pe_ips drop",
                "ip daddr @nat_ips meta l4proto tcp reject with tcp reset",
                "ip daddr @nat_ips drop",
            ),
        ),
        (
            "input",
            (
                "ct state new jump refuse_new" if full else None,
                "iifname @link_in_ifs drop",
                "iifname @link_out_ifs drop",
                "ip daddr @pe_ips meta l4proto tcp reject with tcp reset",
                "ip daddr @pe_ips drop",
                "ip daddr @nat_ips meta l4proto tcp reject with tcp reset",
                "ip daddr @nat_ips drop",
            ),
        ),
        ("dead_link", ("meta l4proto tcp reject with tcp reset", "drop")),
        # A refused flow's entry is never confirmed (it is freed with the packet), so
        # refusing keeps the table below the kernel's limit; the client learns at once.
        (
            "refuse_new",
            (
                f'counter name "{REFUSED_COUNTER}"',
                "meta l4proto tcp reject with tcp reset",
                "reject with icmp type admin-prohibited",
            ),
        ),
    ]
    chains: list[tuple[str, tuple[str, ...]]] = [
        (name, tuple(r for r in rules if r is not None)) for name, rules in base
    ]
    for x in hub.links_in:
        # Back from the service chain only when no rule translated it (no healthy
        # backend, a port without a rule): nothing from a link is routed untranslated.
        # (In the same network the PE ip is local: `input` resets it.)
        rules = (f"ct mark set {x.mark}", f"jump {x.service_chain}")
        chains.append((f"link_{x.slot}", rules if x.local else (*rules, "drop")))
    for s in hub.services:
        ports = ", ".join(f"{proto} . {port} : jump {chain}" for proto, port, chain in s.ports)
        chains.append((s.chain, (f"meta l4proto . th dport vmap {{ {ports} }}",) if ports else ()))
        snat_rules: tuple[str, ...] = ()
        if s.nat_ips:
            targets = ", ".join(f"{i} : {ip}" for i, ip in enumerate(s.nat_ips))
            snat_rules = (
                f"snat ip to jhash ip saddr . th sport mod {len(s.nat_ips)} map {{ {targets} }}",
            )
        chains.append((s.snat_chain, snat_rules))
    for rule in hub.rules:
        chains.append((rule.chain, _rule_chain(rule)))
    return Table(sets=sets, maps=maps, chains=tuple(chains))


def _block(kind: str, name: str, type_: str, elements: list[str]) -> str:
    body = [f"type {type_};"]
    if elements:
        body.append(f"elements = {{ {', '.join(elements)} }};")
    return f"  {kind} {name} {{ {' '.join(body)} }}"


def serialize(t: Table) -> str:
    """The whole table as one transaction that replaces any previous one."""
    lines = [
        f"table ip {TABLE} {{}}",
        f"delete table ip {TABLE}",
        f"table ip {TABLE} {{",
        f"  counter {REFUSED_COUNTER} {{ }}",
    ]
    lines += [_block("set", name, type_, list(items)) for name, type_, items in t.sets]
    lines += [
        _block("map", name, type_, [f"{k} : {v}" for k, v in items])
        for name, type_, items in t.maps
    ]
    for name, rules in t.chains:
        lines.append(f"  chain {name} {{")
        if name in BASE:
            lines.append(f"    {BASE[name]}")
        lines += [f"    {r}" for r in rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(hub: HubPlan, dying: frozenset[int] = frozenset(), full: bool = False) -> str:
    """The hub's whole table, replacing any previous one in the same transaction.

    `dying`: marks of links being removed right now; their flows get a reset on the
    next packet until the reconciler has deleted their conntrack entries. `full`: the
    hub's conntrack table is at its limit; new flows are refused (and counted) until it
    is not (no rule otherwise: no per-packet cost in the normal case)."""
    return serialize(table(hub, dying, full))


# Chains that rules of other per-object chains jump to come before them when deleted
# last: link chains jump to service chains, whose maps jump to rule chains.
def _deletion_rank(name: str) -> int:
    if name.startswith("link_"):
        return 0
    if name.startswith(("pls_", "snat_")):
        return 1
    return 2


def delta(old: Table, new: Table) -> str:
    """One transaction taking a table from `old` to `new` by elements and chains: what a
    link, endpoint or service added or removed costs, however many others there are
    (`render` replaces the whole table, as after damage or on a full pass).

    The order matters inside the transaction: chains exist before anything jumps to
    them, and go only after every element and rule that jumped to them.
    """
    out: list[str] = []
    where = f"ip {TABLE}"
    old_chains, new_chains = dict(old.chains), dict(new.chains)
    added = [n for n in new_chains if n not in old_chains]
    changed = [n for n in new_chains if n in old_chains and old_chains[n] != new_chains[n]]
    out += [f"add chain {where} {n}" for n in added]
    for name in [*added, *changed]:
        if name in old_chains:
            out.append(f"flush chain {where} {name}")
        out += [f"add rule {where} {name} {r}" for r in new_chains[name]]
    old_sets = {name: set(items) for name, _, items in old.sets}
    old_maps = {name: dict(items) for name, _, items in old.maps}
    adds: list[str] = []
    for name, _, items in new.sets:
        before, after = old_sets.get(name, set()), set(items)
        if gone := sorted(before - after):
            out.append(f"delete element {where} {name} {{ {', '.join(gone)} }}")
        if new_items := [i for i in items if i not in before]:
            adds.append(f"add element {where} {name} {{ {', '.join(new_items)} }}")
    for name, _, pairs in new.maps:
        before_map, after_map = old_maps.get(name, {}), dict(pairs)
        gone = [k for k, v in before_map.items() if after_map.get(k) != v]
        if gone:
            out.append(f"delete element {where} {name} {{ {', '.join(gone)} }}")
        fresh = [f"{k} : {v}" for k, v in pairs if before_map.get(k) != v]
        if fresh:
            adds.append(f"add element {where} {name} {{ {', '.join(fresh)} }}")
    out += adds
    removed = sorted((n for n in old_chains if n not in new_chains), key=_deletion_rank)
    out += [f"delete chain {where} {n}" for n in removed]
    return "\n".join(out) + "\n" if out else ""
