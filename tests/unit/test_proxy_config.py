"""The relay's view of a plan, its backend and NAT IP choices, and the nft rules of a
PROXY service: pure, no kernel (tests/netns/test_proxy.py runs the real thing)."""

from __future__ import annotations

from collections import Counter

from privatelink.dataplane import names, nft
from privatelink.dataplane.desired import HubPlan, LinkPlan, Plan, RulePlan, ServicePlan
from privatelink.dataplane.proxy.config import (
    Route,
    Service,
    choose,
    link_id_of,
    nat_ip,
    proxy_config,
)

RULE = RulePlan("r1", "rule_1", "tcp", "10.0.1.4", 80, 8080, ("10.0.2.4", "10.0.2.5"), "Default")
UDP = RulePlan("r2", "rule_2", "udp", "10.0.1.4", 53, 53, ("10.0.2.4",), "Default")


def service(proxy: bool, chain: str = "pls_a") -> ServicePlan:
    return ServicePlan(
        pls_id=f"/svc/{chain}",
        chain=chain,
        snat_chain=chain.replace("pls", "snat"),
        nat_ips=("10.0.3.4", "10.0.3.5"),
        ports=(("tcp", 80, "rule_1"),),
        proxy=proxy,
    )


def link(slot: int, chain: str, local: bool = False, pe_ip: str = "10.9.2.4") -> LinkPlan:
    return LinkPlan.on_slot(slot, f"conn{slot}", pe_ip, "cons", "prov", chain, (80,), local=local)


def plan(*links: LinkPlan, proxied: bool = True) -> Plan:
    hub = HubPlan(
        vnet_id="/vnet/prov",
        netns="prov",
        rules=(RULE, UDP),
        services=(service(proxied), service(False, "pls_b")),
        links_in=links,
    )
    return Plan(hubs=(hub,), links=links, health_checks=())


def test_only_hubs_with_a_proxy_service_and_links_with_a_link_id_are_served() -> None:
    a, b, local = link(0, "pls_a"), link(1, "pls_b"), link(2, "pls_a", local=True, pe_ip="10.0.1.9")
    config = proxy_config(plan(a, b, local), {"conn0": 7, "conn1": 8, "conn2": 9})
    hub = config.hubs["prov"]
    assert set(hub.services) == {"pls_a"}  # pls_b has no flag
    assert hub.services["pls_a"].routes == {80: Route(8080, RULE.backends, "Default")}
    assert hub.link(a.consumer_addr, a.pe_ip) == hub.remote[(a.consumer_addr, a.pe_ip)]
    assert hub.link(a.consumer_addr, a.pe_ip).link_id == 7  # type: ignore[union-attr]
    assert hub.link("10.0.1.7", "10.0.1.9").link_id == 9  # type: ignore[union-attr]
    assert hub.link(b.consumer_addr, b.pe_ip) is None  # a kernel-path service's link
    assert config.live == {"conn0", "conn1", "conn2"}  # every live link: flows outlive flags
    assert "prov" not in proxy_config(plan(a, proxied=False), {"conn0": 7}).hubs
    # Without its LinkID a link is not served (no header without its TLV).
    assert proxy_config(plan(a), {}).hubs["prov"].remote == {}


def test_link_ids_are_uint32_or_nothing() -> None:
    assert link_id_of("536870913") == 536870913
    assert link_id_of("4294967295") == 0xFFFFFFFF
    assert link_id_of("4294967296") is None
    assert link_id_of("-1") is None
    assert link_id_of("abc") is None


def test_the_backend_follows_the_rules_distribution_mode() -> None:
    route = Route(8080, ("a", "b", "c"), "Default")
    picks = Counter(choose(route, "10.0.0.1", port, "10.9.2.4", 80) for port in range(1000, 1600))
    assert set(picks) == {"a", "b", "c"} and min(picks.values()) > 120  # spread per flow
    by_source = Route(8080, ("a", "b", "c"), "SourceIP")
    for src in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert len({choose(by_source, src, p, "10.9.2.4", 80) for p in range(1000, 1100)}) == 1
    sources = {choose(by_source, f"10.0.0.{i}", 1, "x", 80) for i in range(1, 60)}
    assert sources == {"a", "b", "c"}
    by_proto = Route(8080, ("a", "b"), "SourceIPProtocol")
    assert len({choose(by_proto, "10.0.0.1", p, "x", 80) for p in range(1000, 1100)}) == 1
    assert choose(Route(8080, (), "Default"), "10.0.0.1", 1, "x", 80) is None


def test_a_flow_leaves_from_a_nat_ip_by_its_source() -> None:
    svc = Service("pls_a", ("10.0.3.4", "10.0.3.5"), {})
    assert {nat_ip(svc, "169.254.64.1", p) for p in range(1000, 1100)} == set(svc.nat_ips)
    assert nat_ip(svc, "169.254.64.1", 1234) == nat_ip(svc, "169.254.64.1", 1234)
    assert nat_ip(Service("x", (), {}), "a", 1) is None


def test_a_proxy_services_chain_redirects_its_tcp_ports_to_the_relay() -> None:
    hub = plan(link(0, "pls_a")).hubs[0]
    chains = dict(nft.table(hub).chains)
    assert chains["pls_a"] == (f"tcp dport {{ 80 }} redirect to :{names.PROXY_PORT}",)
    assert chains["pls_b"] == ("meta l4proto . th dport vmap { tcp . 80 : jump rule_1 }",)
    # Only redirected flows reach the relay's port; its backend replies come in.
    assert chains["input"][:3] == (
        f"tcp dport {names.PROXY_PORT} ct status & dnat != 0 accept",
        f"tcp dport {names.PROXY_PORT} drop",
        "ip daddr @nat_ips ct state established ct direction reply accept",
    )
    # The same input rules without any PROXY service: a relayed flow outlives its flag.
    plain = dict(nft.table(plan(link(0, "pls_a"), proxied=False).hubs[0]).chains)
    assert plain["input"][:3] == chains["input"][:3]
