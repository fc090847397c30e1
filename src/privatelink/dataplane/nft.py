"""nftables rulesets of a hub, rendered as text for one atomic transaction.

One owned table per hub (`ip privatelink`); static chains; per-object data in maps and
sets so per-packet cost does not grow with the number of links:

consumer side  prerouting  PE ip . port -> ct mark = link (map), or PE ip -> ct mark
                           (a Direct Connect service's PE: every TCP port); no DNAT:
                           the hub's endpoint routing table sends a live PE ip into
                           its link
               postrouting snat to the pair veth's consumer address (map by oifname)
provider side  prerouting  iifname . PE ip -> ct mark = link (map), the same -> jump
                           service (vmap); what no rule DNATs is dropped (no chain
                           per link). Connections between two hubs share one veth
                           (its "pair"): the PE ip, routed untranslated, tells them
                           apart
               service     protocol . port -> rule chain (vmap); Direct Connect:
                           every TCP port dnat to the destination IP, the port kept
               rule        dnat to a backend by hash (jhash over healthy backends)
               frontends   frontend ip . protocol . port -> rule chain (intra-VNet LB)
               postrouting ct mark -> snat chain: a NAT IP of the service by hash
               proxy       a service with enableProxyProtocol: its chain redirects new
                           flows to the relay's port (dataplane/proxy), which writes the
                           header, picks the backend and connects from a NAT IP itself;
                           input lets in only redirected flows and the relay's replies
both           forward     flows of links being removed are reset (only during that
                           sync: no per-packet link check otherwise); a link carries
                           only flows its consumer marked and its provider DNATs
               input       PE and NAT IPs are local to the hub: without a live NATed
                           flow a TCP packet to them gets a reset here
               admission   only while the hub's conntrack table is at its limit: new
                           flows are counted and refused (TCP reset, ICMP otherwise)
                           before the kernel would drop them silently
same network   prerouting  PE ip -> ct mark, PE ip -> jump service (maps) when endpoint
                           and service share a hub: no veth, the provider side's NAT
                           happens in place
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from privatelink.dataplane.desired import HubPlan, LinkPlan, RulePlan
from privatelink.dataplane.names import PROXY_PORT, REFUSED_COUNTER, TABLE

# The key of the metric counter sets: link mark . original destination . protocol .
# backend port (dataplane/metrics.py reads them).
TRAFFIC_KEY = "mark . ipv4_addr . inet_proto . inet_service"

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


# What one link puts into its hubs' sets and maps: (set or map, key, value or None).
_Item = tuple[str, str, str | None]


def _out_items(x: LinkPlan) -> list[_Item]:
    """A link's own elements in its consumer hub (the hub its endpoint is in)."""
    items: list[_Item] = [("live_links", str(x.mark), None)]
    if x.all_ports:  # Direct Connect: every TCP port of the PE is the service's
        items.append(("pe_mark_any", x.pe_ip, str(x.mark)))
    else:
        items += [("pe_mark", f"{x.pe_ip} . {port}", str(x.mark)) for port in x.ports]
    return items


def _out_pair_items(x: LinkPlan) -> list[_Item]:
    """The elements of a link's pair veth in its consumer hub (shared by its links)."""
    return [
        ("link_out_ifs", f'"{x.consumer_ifname}"', None),
        ("link_src", f'"{x.consumer_ifname}"', x.consumer_addr),
    ]


def _in_pair_items(x: LinkPlan) -> list[_Item]:
    """The elements of a link's pair veth in its provider hub (shared by its links)."""
    return [] if x.local else [("link_in_ifs", f'"{x.provider_ifname}"', None)]


def _in_items(x: LinkPlan, snat_chain: dict[str, str]) -> list[_Item]:
    """A link's own elements in its provider hub (`snat_chain`: snat chain by service
    chain), keyed by its pair veth and its PE ip.

    Its mark and service come from maps, not a chain of its own: a transaction on a
    table of thousands of chains costs libnftables a listing of all of them (22 ms at
    10,000 against 1.3 ms without, `bench/kernel_objects.py`)."""
    items: list[_Item] = [("live_links", str(x.mark), None)]
    if x.local:
        items.append(("pe_local_marks", x.pe_ip, str(x.mark)))
        items.append(("pe_local", x.pe_ip, f"jump {x.service_chain}"))
    else:
        at = f'"{x.provider_ifname}" . {x.pe_ip}'
        items.append(("link_marks", at, str(x.mark)))
        items.append(("links", at, f"jump {x.service_chain}"))
    if x.service_chain in snat_chain:
        items.append(("snat_by_mark", str(x.mark), f"jump {snat_chain[x.service_chain]}"))
    return items


def _traffic_items(x: LinkPlan, ports: dict[str, tuple[tuple[str, int], ...]]) -> list[_Item]:
    """A link's metric counters in its provider hub: one element per (protocol, backend
    port) of its service's rules (`ports`: by service chain), each way, and SYNs."""
    items: list[_Item] = []
    for proto, port in ports.get(x.service_chain, ()):
        at = f"{x.mark} . {x.pe_ip} . {proto} . {port}"
        items += [("traffic_in", at, None), ("traffic_out", at, None)]
        if proto == "tcp":
            items.append(("syns", at, None))
    return items


def _backend_ports(hub: HubPlan) -> dict[str, tuple[tuple[str, int], ...]]:
    """(protocol, backend port) of each service's rules, by service chain."""
    rules = {r.chain: r for r in hub.rules}
    return {
        s.chain: tuple(sorted({(p, rules[c].backend_port) for p, _, c in s.ports if c in rules}))
        for s in hub.services
    }


def _rule_traffic(hub: HubPlan) -> list[str]:
    """The metric counters of the hub's rules, for flows no link marked (mark 0): keyed
    by frontend IP, protocol and backend port (Azure refuses two rules of one pool on one
    backend port without floating IP; here the first would count both)."""
    keys = (f"0 . {r.frontend_ip} . {r.protocol} . {r.backend_port}" for r in hub.rules)
    return list(dict.fromkeys(k for k, r in zip(keys, hub.rules, strict=True) if r.frontend_ip))


def _snat_chains(hub: HubPlan) -> dict[str, str]:
    # By chain: a scan of every service per link was quadratic (10,000 links x 1000).
    return {s.chain: s.snat_chain for s in hub.services}


def table(hub: HubPlan, dying: frozenset[int] = frozenset(), full: bool = False) -> Table:
    """The hub's table (see `render` for `dying` and `full`)."""
    snat_chain = _snat_chains(hub)
    ports = _backend_ports(hub)
    elements: dict[str, list[str]] = {name: [] for name in _SETS}
    pairs: dict[str, list[tuple[str, str]]] = {name: [] for name in _MAPS}
    for items in [
        *map(_out_items, hub.links_out),
        *(_in_items(x, snat_chain) + _traffic_items(x, ports) for x in hub.links_in),
        # A pair's elements once (from its link of the lowest slot: lists are by slot).
        *(_out_pair_items(x) for x in _first_of_pairs(hub.links_out)),
        *(_in_pair_items(x) for x in _first_of_pairs(hub.links_in)),
    ]:
        for name, k, v in items:
            if v is None:
                elements[name].append(k)
            else:
                pairs[name].append((k, v))
    # A mark once, in order (a link has one end in each of two hubs, both ends in one).
    elements["live_links"] = sorted(set(elements["live_links"]), key=int)
    elements["dying_links"] = [str(m) for m in sorted(dying)]
    elements["pe_ips"] = list(hub.pe_ips)
    elements["nat_ips"] = sorted({ip for s in hub.services for ip in s.nat_ips})
    elements["direct_destinations"] = sorted({s.destination for s in hub.services if s.destination})
    elements["identity_targets"] = sorted(
        {
            f"{ip} . {r.protocol} . {r.backend_port}"
            for r in hub.rules
            if r.backend_port == r.frontend_port
            for ip in r.backends
        }
    )
    pairs["frontends"] = [
        (f"{r.frontend_ip} . {r.protocol} . {r.frontend_port}", f"jump {r.chain}")
        for r in hub.rules
        if r.frontend_ip
    ]
    rule_traffic = _rule_traffic(hub)
    for name in ("traffic_in", "traffic_out", "syns"):
        tcp = [k for k in rule_traffic if name != "syns" or " . tcp . " in k]
        elements[name] = tcp + elements[name]
    peers = hub.fabric.peers
    elements["peer_ifs"] = [f'"{p.ifname}"' for p in peers]
    elements["peer_in_denied"] = [f'"{p.ifname}"' for p in peers if not p.allow_in]
    elements["peer_out_denied"] = [f'"{p.ifname}"' for p in peers if not p.allow_out]
    elements["peer_src"] = [f'"{p.ifname}" . {src}' for p in peers for src in p.sources]
    elements["transit_ifs"] = [f'"{name}"' for name in hub.fabric.transit]
    elements["uplink_ifs"] = [f'"{name}"' for name in hub.fabric.uplinks]
    sets = tuple((name, type_, tuple(elements[name])) for name, type_ in _SETS.items())
    maps = tuple((name, type_, tuple(pairs[name])) for name, type_ in _MAPS.items())
    chains: list[tuple[str, tuple[str, ...]]] = list(
        _base_chains(bool(dying), full, bool(peers), bool(hub.fabric.uplinks))
    )
    chains += _object_chains(hub)
    return Table(sets=sets, maps=maps, chains=tuple(chains))


def _first_of_pairs(links: Iterable[LinkPlan]) -> list[LinkPlan]:
    seen: set[int] = set()
    first = []
    for x in links:
        if x.pair not in seen:
            seen.add(x.pair)
            first.append(x)
    return first


_SETS = {
    "live_links": "mark",
    "dying_links": "mark",
    "pe_ips": "ipv4_addr",
    "nat_ips": "ipv4_addr",
    "link_in_ifs": "ifname",
    "link_out_ifs": "ifname",
    # Peerings (dataplane/fabric.py): their wires, the directions their sides refuse
    # (allowVirtualNetworkAccess false), and the sources each may carry new flows from.
    "peer_ifs": "ifname",
    "peer_in_denied": "ifname",
    "peer_out_denied": "ifname",
    "peer_src": "ifname . ipv4_addr; flags interval",
    # A gateway's wire: flows may cross between it and a peering (gateway transit).
    "transit_ifs": "ifname",
    # Wires to the internet: only flows to a public frontend come in, nothing goes out.
    "uplink_ifs": "ifname",
    # Direct Connect destinations of this hub's services, and the healthy backends of
    # rules whose backend port is the frontend port: where a DNAT may change nothing
    # (see `forward`).
    "direct_destinations": "ipv4_addr",
    "identity_targets": "ipv4_addr . inet_proto . inet_service",
    # Metrics (dataplane/metrics.py): per-element counters of load-balanced flows, keyed
    # by the link's mark (0: no link), the flow's original destination (a frontend IP or
    # a PE IP), its protocol and its backend port: bytes and packets each way, and SYNs.
    "traffic_in": f"{TRAFFIC_KEY}; counter",
    "traffic_out": f"{TRAFFIC_KEY}; counter",
    "syns": f"{TRAFFIC_KEY}; counter",
}
_MAPS = {
    "pe_mark": "ipv4_addr . inet_service : mark",
    "pe_mark_any": "ipv4_addr : mark",
    "link_marks": "ifname . ipv4_addr : mark",
    "links": "ifname . ipv4_addr : verdict",
    "pe_local_marks": "ipv4_addr : mark",
    "pe_local": "ipv4_addr : verdict",
    "frontends": "ipv4_addr . inet_proto . inet_service : verdict",
    "snat_by_mark": "mark : verdict",
    "link_src": "ifname : ipv4_addr",
}


def _base_chains(
    dying: bool, full: bool, peered: bool = False, uplinked: bool = False
) -> list[tuple[str, tuple[str, ...]]]:
    """The hooked chains and their helpers: the same for every hub, but for the reset
    rule of dying links, the admission gate and the rules of peerings (only in a hub
    that has any: a rule costs every new flow a lookup, even with an empty set)."""
    base: list[tuple[str, tuple[str | None, ...]]] = [
        (
            "prerouting",
            (
                # From a link (its pair veth and PE ip): its mark, then its service's
                # chain. Back from there only when no rule translated it (no healthy
                # backend, a port without a rule): nothing from a link is routed
                # untranslated.
                "ct mark set iifname . ip daddr map @link_marks",
                "iifname . ip daddr vmap @links",
                "iifname @link_in_ifs drop",
                # An endpoint in the service's own network: the same, by its address (in
                # the same network the PE ip is local: `input` resets what comes back).
                "meta l4proto tcp ct mark set ip daddr map @pe_local_marks",
                "meta l4proto tcp ip daddr vmap @pe_local",
                # Only a mark: the endpoint routing table routes the PE ip into its link,
                # one NAT fewer than a DNAT to the link's address (which then needs
                # routing anyway).
                "meta l4proto tcp ct state new ct mark set ip daddr . tcp dport map @pe_mark",
                # A Direct Connect service's PE: every TCP port (a miss above changes
                # nothing: a PE ip is in one of the two maps, never both).
                "meta l4proto tcp ct state new ct mark set ip daddr map @pe_mark_any",
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
                # Metrics: every load-balanced packet counts in its flow's element (one
                # direction test and one lookup per forwarded packet; no element, no count).
                "ct direction original ct mark . ct original ip daddr . meta l4proto "
                ". th dport @traffic_in",
                "ct direction reply ct mark . ct original ip daddr . meta l4proto "
                ". th sport @traffic_out",
                # Only while links are being removed: their flows get a reset at once.
                # (No per-packet check otherwise: conntrack deletion cuts them.)
                "ct mark @dying_links jump dead_link" if dying else None,
                # Established flows of live links (and all others) need no further checks.
                "ct state established,related accept",
                # SYNs of new flows (counted before the admission gate: received, refused
                # or not), and their retransmissions, which are still new.
                "tcp flags & (syn | ack) == syn ct mark . ct original ip daddr . meta l4proto "
                ". th dport @syns",
                "ct state new jump refuse_new" if full else None,
                # Peering is not transitive: nothing crosses from one peering into another
                # (only to and from a gateway's wire: gateway transit).
                "iifname @peer_ifs oifname @peer_ifs iifname != @transit_ifs "
                "oifname != @transit_ifs drop"
                if peered
                else None,
                # From the internet only what a public frontend translated; no new flow
                # leaves for it (outbound connectivity is not served).
                "iifname @uplink_ifs ct status & dnat == 0 drop" if uplinked else None,
                "oifname @uplink_ifs drop" if uplinked else None,
                # A side that refuses access: no new flows from its network to the other.
                "iifname @peer_in_denied drop" if peered else None,
                "oifname @peer_out_denied drop" if peered else None,
                # A peer may only open flows from its own (synced) space, unless this side
                # allows forwarded traffic.
                "iifname @peer_ifs iifname . ip saddr != @peer_src drop" if peered else None,
                "iifname @link_in_ifs ct mark != @live_links drop",
                # What the provider did not DNAT to a backend never enters its network.
                # A Direct Connect destination, or a backend and its port, may equal the
                # PE ip and port (overlapping spaces): the DNAT then changes nothing, and
                # the kernel sets no DNAT status.
                "iifname @link_in_ifs ct status & dnat == 0 ip daddr != @direct_destinations "
                "ip daddr . meta l4proto . th dport != @identity_targets drop",
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
                # The relay: flows the service chains redirected to it, and the replies
                # to its own connections to backends (from a NAT IP, so local). In every
                # hub, not only those with a PROXY service now: a relayed flow outlives
                # its service's flag (forwarded traffic never passes here).
                f"tcp dport {PROXY_PORT} ct status & dnat != 0 accept",
                f"tcp dport {PROXY_PORT} drop",
                "ip daddr @nat_ips ct state established ct direction reply accept",
                "iifname @link_in_ifs drop",
                "iifname @link_out_ifs drop",
                # A peer reaches the hub itself only at PE and NAT IPs (answered below).
                "iifname @peer_ifs ip daddr != @pe_ips ip daddr != @nat_ips drop"
                if peered
                else None,
                "iifname @uplink_ifs drop" if uplinked else None,
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
    return [(name, tuple(r for r in rules if r is not None)) for name, rules in base]


def _object_chains(hub: HubPlan) -> list[tuple[str, tuple[str, ...]]]:
    """The chains of the hub's services and load-balancing rules."""
    chains: list[tuple[str, tuple[str, ...]]] = []
    for s in hub.services:
        if s.destination is not None:
            # Direct Connect: every TCP port to the destination, the port kept. What is
            # not TCP comes back to prerouting, which drops it (from a link) or leaves
            # it to `input` (a PE ip of this hub).
            chains.append((s.chain, (f"meta l4proto tcp dnat ip to {s.destination}",)))
        elif s.proxy:
            # The relay chooses the backend itself (the rule chains stay: the relay
            # follows the same rules), from the same healthy members.
            tcp = ", ".join(str(port) for proto, port, _ in s.ports if proto == "tcp")
            rules = (f"tcp dport {{ {tcp} }} redirect to :{PROXY_PORT}",) if tcp else ()
            chains.append((s.chain, rules))
        else:
            ports = ", ".join(f"{p} . {port} : jump {chain}" for p, port, chain in s.ports)
            chains.append(
                (s.chain, (f"meta l4proto . th dport vmap {{ {ports} }}",) if ports else ())
            )
        snat_rules: tuple[str, ...] = ()
        if s.nat_ips:
            targets = ", ".join(f"{i} : {ip}" for i, ip in enumerate(s.nat_ips))
            snat_rules = (
                f"snat ip to jhash ip saddr . th sport mod {len(s.nat_ips)} map {{ {targets} }}",
            )
        chains.append((s.snat_chain, snat_rules))
    for rule in hub.rules:
        chains.append((rule.chain, _rule_chain(rule)))
    return chains


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
# last: service chains' maps jump to rule chains.
def _deletion_rank(name: str) -> int:
    return 0 if name.startswith(("pls_", "snat_")) else 1


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


def link_delta(
    hub: HubPlan,
    added: Iterable[LinkPlan],
    removed: Iterable[LinkPlan],
    pe_ips: tuple[Iterable[str], Iterable[str]] = ((), ()),
    dying: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset()),
    full: bool = False,
    pairs: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset()),
) -> str:
    """`delta` of a hub's table when only links (of `added` and `removed`, either end in
    this hub), PE addresses (`pe_ips`: came, went) and dying marks (`dying`: applied,
    wanted) changed: built from those alone, so it costs the same with ten or ten
    thousand links. `pairs` (new, gone): the pair veths whose first link came or last
    link went, whose shared elements come and go with them. `hub` is the new plan (its
    services name the snat chains); `full` the admission gate, the same before and
    after."""
    where = f"ip {TABLE}"
    snat_chain = _snat_chains(hub)
    ports = _backend_ports(hub)

    def items(links: Iterable[LinkPlan], shared: frozenset[int]) -> list[_Item]:
        found: list[_Item] = []
        for x in links:
            if x.provider_netns == hub.netns:
                found += _in_items(x, snat_chain) + _traffic_items(x, ports)
                if x.pair in shared:
                    found += _in_pair_items(x)
            if x.consumer_netns == hub.netns and not x.local:
                found += _out_items(x)
                if x.pair in shared:
                    found += _out_pair_items(x)
        return found

    new_pairs, gone_pairs = pairs
    went, came = items(removed, gone_pairs), items(added, new_pairs)
    came_ips, went_ips = pe_ips
    went += [("pe_ips", ip, None) for ip in sorted(went_ips)]
    came += [("pe_ips", ip, None) for ip in sorted(came_ips)]
    was_dying, now_dying = dying
    went += [("dying_links", str(m), None) for m in sorted(was_dying - now_dying)]
    came += [("dying_links", str(m), None) for m in sorted(now_dying - was_dying)]
    # An element both removed and added (a link re-made on its slot) is left alone; a
    # mark is live while one end of a link in this hub has it.
    gone = Counter(went) - Counter(came)
    new = Counter(came) - Counter(went)
    live = {k for name, k, _ in came if name == "live_links"}
    gone = Counter({i: n for i, n in gone.items() if i[0] != "live_links" or i[1] not in live})
    out: list[str] = []
    if bool(was_dying) != bool(now_dying):
        # The forward chain's reset rule comes and goes with the dying links.
        forward = dict(
            _base_chains(bool(now_dying), full, bool(hub.fabric.peers), bool(hub.fabric.uplinks))
        )["forward"]
        out.append(f"flush chain {where} forward")
        out += [f"add rule {where} forward {r}" for r in forward]
    for name in (*_SETS, *_MAPS):
        keys = sorted(k for (n, k, _) in gone if n == name)
        if keys:
            out.append(f"delete element {where} {name} {{ {', '.join(keys)} }}")
    for name in (*_SETS, *_MAPS):
        texts = sorted(k if v is None else f"{k} : {v}" for (n, k, v) in new if n == name)
        if texts:
            out.append(f"add element {where} {name} {{ {', '.join(texts)} }}")
    return "\n".join(out) + "\n" if out else ""
