"""Direct Connect in the data plane's pure planner and its nft text.

A Direct Connect service (destinationIPAddress) has no load balancer: its provider hub is
its NAT IPs' network, its chain DNATs every TCP port to the destination (the port kept),
and its connections are SNATed to a NAT IP by hash as any service's. The consumer marks
every TCP port of such a PE (`pe_mark_any`, by PE ip alone) instead of the frontend ports
of a load-balanced service (`pe_mark`, by PE ip and port).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hub_plans import NS, link, rule, service
from pl_world import S1, S2, World, make_pls, nat, pls_id

from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.dataplane import names, nft
from privatelink.dataplane.desired import (
    HubPlan,
    Plan,
    Snapshot,
    approved_keys,
    plan,
    service_facts,
)

DESTINATION = "10.0.2.9"


def _direct(name: str = "dc", **kwargs: object) -> plsm.PrivateLinkService:
    nats = (nat("d1", subnet="nat2", primary=True), nat("d2", subnet="nat2"))
    return replace(
        make_pls(name=name, frontends=(), nats=nats, **kwargs),  # type: ignore[arg-type]
        destination_ip_address=DESTINATION,
    )


def _plan(world: World) -> Plan:
    stored = world.repo.snapshot()
    slots = {k: i for i, k in enumerate(sorted(approved_keys(stored)))}
    return plan(Snapshot.of(stored), slots, {}, "tst")


@pytest.fixture
def dc_world(service_world: World) -> World:
    """The service world (pls1 behind `lb`), plus Direct Connect `dc` auto-approving S2,
    with an endpoint `pe1` from the consumer network."""
    w = service_world
    w.run(pl.create_or_update_service, _direct(auto_approval=(S2,)))
    w.create_pe(pls_id("dc"), name="pe1")
    return w


def test_a_direct_connect_service_plans_a_destination_and_no_ports(dc_world: World) -> None:
    desired = _plan(dc_world)
    (x,) = desired.links
    provider = desired.hub(x.provider_netns)
    assert provider is not None
    sp = next(s for s in provider.services if s.pls_id == pls_id("dc"))
    assert sp.destination == DESTINATION and sp.ports == ()
    assert sp.nat_ips == ("10.0.4.4", "10.0.4.5")
    # Its link marks every port: no frontend port list, `all_ports`.
    assert x.all_ports and x.ports == () and not x.local
    # The load-balanced service next to it is unchanged.
    other = next(s for s in provider.services if s.pls_id == pls_id("pls1"))
    assert other.destination is None and other.ports


def test_its_provider_chain_dnats_every_tcp_port_to_the_destination(dc_world: World) -> None:
    desired = _plan(dc_world)
    (x,) = desired.links
    provider, consumer = desired.hub(x.provider_netns), desired.hub(x.consumer_netns)
    assert provider is not None and consumer is not None
    sp = next(s for s in provider.services if s.destination)
    chains = dict(nft.table(provider).chains)
    assert chains[sp.chain] == (f"meta l4proto tcp dnat ip to {DESTINATION}",)
    # SNAT to a NAT IP by hash, as any service.
    assert chains[sp.snat_chain] == (
        "snat ip to jhash ip saddr . th sport mod 2 map { 0 : 10.0.4.4, 1 : 10.0.4.5 }",
    )
    p_text = nft.render(provider)
    at_link = f'"{x.provider_ifname}" . {x.pe_ip}'
    assert f"{at_link} : jump {sp.chain}" in p_text
    assert f"{x.mark} : jump {sp.snat_chain}" in p_text
    # The destination may be the PE ip itself (overlapping spaces): a DNAT that changes
    # nothing sets no DNAT status, so `forward` lets the hub's destinations through too.
    sets = {name: items for name, _, items in nft.table(provider).sets}
    assert sets["direct_destinations"] == (DESTINATION,)
    forward = dict(nft.table(provider).chains)["forward"]
    assert (
        "iifname @link_in_ifs ct status & dnat == 0 ip daddr != @direct_destinations "
        "ip daddr . meta l4proto . th dport != @identity_targets drop"
    ) in forward
    # The consumer marks the PE by its address alone; nothing by port.
    maps = {name: dict(items) for name, _, items in nft.table(consumer).maps}
    assert maps["pe_mark_any"] == {x.pe_ip: str(x.mark)}
    assert maps["pe_mark"] == {}
    prerouting = dict(nft.table(consumer).chains)["prerouting"]
    by_port = prerouting.index(
        "meta l4proto tcp ct state new ct mark set ip daddr . tcp dport map @pe_mark"
    )
    assert prerouting[by_port + 1] == (
        "meta l4proto tcp ct state new ct mark set ip daddr map @pe_mark_any"
    )


def test_an_endpoint_in_the_providers_network_is_a_local_link(dc_world: World) -> None:
    w = dc_world
    w.decide(w.create_pe(pls_id("dc"), name="pe-local", sub=S1, vnet="vp", subnet="be"), "Approved")
    desired = _plan(w)
    local = next(x for x in desired.links if x.local)
    hub = desired.hub(local.provider_netns)
    assert hub is not None
    maps = {name: dict(items) for name, _, items in nft.table(hub).maps}
    sp = next(s for s in hub.services if s.destination)
    assert maps["pe_local"][local.pe_ip] == f"jump {sp.chain}"
    assert local.pe_ip not in maps["pe_mark_any"]  # a local link has no consumer side


def test_a_changed_destination_replans_the_service(dc_world: World) -> None:
    before = dc_world.typed(pls_id("dc"), plsm.PrivateLinkService)
    dc_world.run(pl.create_or_update_service, replace(before, destination_ip_address="10.0.2.10"))
    after = dc_world.typed(pls_id("dc"), plsm.PrivateLinkService)
    assert service_facts(before) != service_facts(after)
    (x,) = _plan(dc_world).links
    provider = _plan(dc_world).hub(x.provider_netns)
    assert provider is not None
    sp = next(s for s in provider.services if s.destination)
    assert dict(nft.table(provider).chains)[sp.chain] == ("meta l4proto tcp dnat ip to 10.0.2.10",)


def test_a_direct_connect_link_more_is_one_consumer_element() -> None:
    svc = service(0, [], ("10.0.3.4",), destination=DESTINATION)
    lb_svc = service(1, [rule(0, ("10.0.1.4",))], ("10.0.3.5",))
    base = HubPlan("vnet", NS, rules=(rule(0, ("10.0.1.4",)),), services=(svc, lb_svc))
    many = tuple(link(s, lb_svc, False) for s in range(20, 40))
    one = link(41, svc, False)  # slot 41: pair 10, whose veth slots 40-43 share (none yet)
    assert one.all_ports and one.ports == ()
    before = replace(base, links_out=many, pe_ips=tuple(sorted(x.pe_ip for x in many)))
    after = replace(
        base, links_out=(*many, one), pe_ips=tuple(sorted(x.pe_ip for x in (*many, one)))
    )
    change = nft.link_delta(
        after, (one,), (), ((one.pe_ip,), ()), pairs=(frozenset({one.pair}), frozenset())
    )
    mark = names.link_mark(41)
    assert change.splitlines() == [
        f"add element ip privatelink live_links {{ {mark} }}",
        f"add element ip privatelink pe_ips {{ {one.pe_ip} }}",
        'add element ip privatelink link_out_ifs { "k10c" }',
        f"add element ip privatelink pe_mark_any {{ {one.pe_ip} : {mark} }}",
        f'add element ip privatelink link_src {{ "k10c" : {one.consumer_addr} }}',
    ]
    # The same as the whole-table delta.
    assert sorted(nft.delta(nft.table(before), nft.table(after)).splitlines()) == sorted(
        change.splitlines()
    )
