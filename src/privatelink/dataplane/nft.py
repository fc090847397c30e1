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

from privatelink.dataplane.desired import HubPlan, RulePlan
from privatelink.dataplane.names import REFUSED_COUNTER, TABLE

_HASH = {
    "Default": "jhash ip saddr . th sport . ip daddr . th dport",
    "SourceIP": "jhash ip saddr",
    "SourceIPProtocol": "jhash ip saddr . meta l4proto",
}


def _elements(items: list[str]) -> str:
    return f"elements = {{ {', '.join(items)} }}" if items else ""


def _set(name: str, type_: str, items: list[str], flags: str = "") -> str:
    body = [f"type {type_};"]
    if flags:
        body.append(f"flags {flags};")
    if items:
        body.append(_elements(items) + ";")
    return f"  set {name} {{ {' '.join(body)} }}"


def _map(name: str, type_: str, items: list[str]) -> str:
    body = [f"type {type_};"]
    if items:
        body.append(_elements(items) + ";")
    return f"  map {name} {{ {' '.join(body)} }}"


def _rule_chain(rule: RulePlan) -> list[str]:
    lines = [f"  chain {rule.chain} {{"]
    n = len(rule.backends)
    if n:
        targets = ", ".join(
            f"{i} : {ip} . {rule.backend_port}" for i, ip in enumerate(rule.backends)
        )
        hashed = _HASH.get(rule.distribution, _HASH["Default"])
        lines.append(
            f"    meta l4proto {rule.protocol} dnat ip to {hashed} mod {n} map {{ {targets} }}"
        )
    lines.append("  }")
    return lines


def render(hub: HubPlan, dying: frozenset[int] = frozenset(), full: bool = False) -> str:
    """The hub's whole table, replacing any previous one in the same transaction.

    `dying`: marks of links being removed right now; their flows get a reset on the
    next packet until the reconciler has deleted their conntrack entries. `full`: the
    hub's conntrack table is at its limit; new flows are refused (and counted) until it
    is not (no rule otherwise: no per-packet cost in the normal case)."""
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

    lines = [
        f"table ip {TABLE} {{}}",
        f"delete table ip {TABLE}",
        f"table ip {TABLE} {{",
        f"  counter {REFUSED_COUNTER} {{ }}",
        _set("live_links", "mark", live),
        _set("dying_links", "mark", [str(m) for m in sorted(dying)]) if dying else None,
        _set("pe_ips", "ipv4_addr", list(hub.pe_ips)),
        _set("nat_ips", "ipv4_addr", nat_ips),
        _set("link_in_ifs", "ifname", link_ifs),
        _set("link_out_ifs", "ifname", out_ifs),
        _map("pe_mark", "ipv4_addr . inet_service : mark", pe_mark),
        _map("links", "ifname : verdict", link_chains),
        _map("pe_local", "ipv4_addr : verdict", pe_local),
        _map("frontends", "ipv4_addr . inet_proto . inet_service : verdict", frontends),
        _map("snat_by_mark", "mark : verdict", snat),
        _map("link_src", "ifname : ipv4_addr", link_src),
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    iifname vmap @links",
        "    meta l4proto tcp ip daddr vmap @pe_local",
        # Only a mark: the endpoint routing table routes the PE ip into its link, one
        # NAT fewer than a DNAT to the link's address (which then needs routing anyway).
        "    meta l4proto tcp ct state new ct mark set ip daddr . tcp dport map @pe_mark",
        "    ip daddr . meta l4proto . th dport vmap @frontends",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        # The link's address from a map (no per-connection device lookup). The client's
        # port is kept when free, so a client reusing its port maps to the same tuple on
        # the provider side too (see the service's snat chain).
        "    snat ip to oifname map @link_src",
        "    ct mark vmap @snat_by_mark",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        # Only while links are being removed: their flows get a reset at once. (No
        # per-packet check otherwise: conntrack deletion cuts them, see reconciler.)
        "    ct mark @dying_links jump dead_link" if dying else None,
        # Established flows of live links (and all others) need no further checks.
        "    ct state established,related accept",
        "    ct state new jump refuse_new" if full else None,
        "    iifname @link_in_ifs ct mark != @live_links drop",
        # What the provider did not DNAT to a backend never enters its network.
        "    iifname @link_in_ifs ct status & dnat == 0 drop",
        # The route takes every port of a live PE into the link; unmarked (not a
        # service port) or dead-link flows get a reset here.
        "    oifname @link_out_ifs ct mark != @live_links jump dead_link",
        "    oifname @link_out_ifs accept",
        "    ip daddr @pe_ips meta l4proto tcp reject with tcp reset",
        "    ip daddr @pe_ips drop",
        "    ip daddr @nat_ips meta l4proto tcp reject with tcp reset",
        "    ip daddr @nat_ips drop",
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        "    ct state new jump refuse_new" if full else None,
        "    iifname @link_in_ifs drop",
        "    iifname @link_out_ifs drop",
        "    ip daddr @pe_ips meta l4proto tcp reject with tcp reset",
        "    ip daddr @pe_ips drop",
        "    ip daddr @nat_ips meta l4proto tcp reject with tcp reset",
        "    ip daddr @nat_ips drop",
        "  }",
    ]
    lines += [
        "  chain dead_link {",
        "    meta l4proto tcp reject with tcp reset",
        "    drop",
        "  }",
        # A refused flow's entry is never confirmed (it is freed with the packet), so
        # refusing keeps the table below the kernel's limit; the client learns at once.
        "  chain refuse_new {",
        f'    counter name "{REFUSED_COUNTER}"',
        "    meta l4proto tcp reject with tcp reset",
        "    reject with icmp type admin-prohibited",
        "  }",
    ]
    for x in hub.links_in:
        lines += [
            f"  chain link_{x.slot} {{",
            f"    ct mark set {x.mark}",
            f"    jump {x.service_chain}",
            # Back here only when no rule translated it (no healthy backend, a port
            # without a rule): nothing from a link is routed untranslated. (In the
            # same network the PE ip is local: `input` resets it.)
            *([] if x.local else ["    drop"]),
            "  }",
        ]
    for s in hub.services:
        ports = ", ".join(f"{proto} . {port} : jump {chain}" for proto, port, chain in s.ports)
        lines.append(f"  chain {s.chain} {{")
        if ports:
            lines.append(f"    meta l4proto . th dport vmap {{ {ports} }}")
        lines.append("  }")
        lines.append(f"  chain {s.snat_chain} {{")
        if s.nat_ips:
            targets = ", ".join(f"{i} : {ip}" for i, ip in enumerate(s.nat_ips))
            lines.append(
                f"    snat ip to jhash ip saddr . th sport mod {len(s.nat_ips)} map {{ {targets} }}"
            )
        lines.append("  }")
    for rule in hub.rules:
        lines += _rule_chain(rule)
    lines.append("}")
    return "\n".join(line for line in lines if line is not None) + "\n"
