"""The pure plan and its nft text: from stored resources to maps, chains and links."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from privatelink.core import load_balancer as lbm
from privatelink.core import network_interface as nim
from privatelink.core import private_endpoint as pem
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm
from privatelink.dataplane import names, nft
from privatelink.dataplane.desired import HealthKey, Snapshot, connection_key, plan
from privatelink.service import ControlPlane
from privatelink.store.sql import SqlRepository

P = "11111111-1111-4111-8111-111111111111"
C = "22222222-2222-4222-8222-222222222222"


def rid(sub: str, kind: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/{kind}/{name}"


@pytest.fixture
def world(tmp_path: Path):
    plane = ControlPlane(SqlRepository.sqlite_in(tmp_path))

    def put(workflow, resource):
        plane.change(None, resource.id, "put", workflow, resource)
        with plane.read() as view:
            return view.get(resource.id)

    pv = put(
        vnm.create_or_update,
        vnm.VirtualNetwork(
            id=rid(P, "virtualNetworks", "pv"),
            name="pv",
            location="eastus",
            address_prefixes=("10.0.0.0/16",),
            subnets=(
                vnm.Subnet("fe", "10.0.1.0/24"),
                vnm.Subnet("be", "10.0.2.0/24"),
                vnm.Subnet("nat", "10.0.3.0/24", private_link_service_network_policies="Disabled"),
            ),
        ),
    )
    lb_id = rid(P, "loadBalancers", "lb")
    lb = put(
        pl.create_or_update_load_balancer,
        lbm.LoadBalancer(
            id=lb_id,
            name="lb",
            location="eastus",
            frontends=(lbm.Frontend("fe", pv.subnet_id("fe")),),
            pools=(lbm.BackendPool("be"),),
            probes=(lbm.Probe("p", "Tcp", 8080),),
            rules=(
                lbm.Rule(
                    "r",
                    "Tcp",
                    80,
                    8080,
                    f"{lb_id}/frontendIPConfigurations/fe",
                    (f"{lb_id}/backendAddressPools/be",),
                    f"{lb_id}/probes/p",
                ),
            ),
        ),
    )
    for n in ("b0", "b1"):
        put(
            nim.create_or_update,
            nim.NetworkInterface(
                id=rid(P, "networkInterfaces", n),
                name=n,
                location="eastus",
                ip_configurations=(
                    nim.NicIpConfiguration(
                        "ip", pv.subnet_id("be"), pool_ids=(f"{lb_id}/backendAddressPools/be",)
                    ),
                ),
            ),
        )
    pls = put(
        pl.create_or_update_service,
        plsm.PrivateLinkService(
            id=rid(P, "privateLinkServices", "s"),
            name="s",
            location="eastus",
            frontend_ids=(f"{lb_id}/frontendIPConfigurations/fe",),
            ip_configurations=(plsm.NatIpConfiguration("n", pv.subnet_id("nat")),),
            visibility=("*",),
            auto_approval=(C,),
        ),
    )
    cv = put(
        vnm.create_or_update,
        vnm.VirtualNetwork(
            id=rid(C, "virtualNetworks", "cv"),
            name="cv",
            location="eastus",
            address_prefixes=("10.0.0.0/16",),
            subnets=(vnm.Subnet("pe", "10.0.1.0/24"),),
        ),
    )
    pe = put(
        pl.create_or_update_endpoint,
        pem.PrivateEndpoint(
            id=rid(C, "privateEndpoints", "pe"),
            name="pe",
            location="eastus",
            subnet_id=cv.subnet_id("pe"),
            connections=(pem.PrivateLinkServiceConnection("c", pls.id),),
        ),
    )
    return plane, lb, pls, pe


def snapshot(plane: ControlPlane) -> Snapshot:
    return Snapshot.of(plane.repo.snapshot())  # type: ignore[attr-defined]


def test_an_approved_connection_becomes_a_link_with_nat_entries(world) -> None:
    plane, lb, pls, pe = world
    link_key = connection_key(pls.id, pe.connection.remote_name)
    desired = plan(snapshot(plane), {link_key: 7}, {}, "x")
    assert len(desired.links) == 1
    link = desired.links[0]
    assert (link.slot, link.mark, link.ports) == (7, 8, (80,))
    # The veth is its pair of hubs', the first pair: slot 0 names it and gives its /30.
    assert link.pair == 0 and (link.consumer_ifname, link.provider_ifname) == ("k0c", "k0p")
    assert (link.consumer_addr, link.provider_addr) == names.link_addresses(0)
    consumer = desired.hub(link.consumer_netns)
    provider = desired.hub(link.provider_netns)
    assert consumer is not None and provider is not None
    c_text, p_text = nft.render(consumer), nft.render(provider)
    # The consumer only marks (PE ip . service port -> link); routing takes it into the link.
    assert f"{link.pe_ip} . 80 : 8" in c_text
    assert "dnat ip to" not in c_text
    # From the link: its mark and its service's chain, by maps (no chain per link).
    service = provider.services[0]
    # Keyed by the pair veth and the PE ip: other connections share the veth.
    at_link = f'"k0p" . {link.pe_ip}'
    assert f"{at_link} : 8 }}" in p_text.split("map link_marks")[1].split("\n")[0]
    assert f"{at_link} : jump {service.chain} }}" in p_text.split("map links ")[1].split("\n")[0]
    assert "chain link_" not in p_text
    # What no rule DNATs (a port without a rule, no healthy backend) stops right after.
    prerouting = p_text.split("chain prerouting {")[1].split("}")[0].splitlines()
    rules = [r.strip() for r in prerouting if r.strip()]
    at = rules.index("iifname . ip daddr vmap @links")
    assert rules[at - 1] == "ct mark set iifname . ip daddr map @link_marks"
    assert rules[at + 1] == "iifname @link_in_ifs drop"
    assert "snat ip to jhash ip saddr . th sport mod 1 map { 0 : 10.0.3.4 }" in p_text
    assert "mod 2 map { 0 : 10.0.2.4 . 8080, 1 : 10.0.2.5 . 8080 }" in p_text
    assert f"{lb.frontends[0].private_ip} . tcp . 80 : jump" in p_text


def test_no_slot_or_no_approval_means_no_link(world) -> None:
    plane, _lb, pls, pe = world
    assert plan(snapshot(plane), {}, {}, "x").links == ()
    remote = pe.connection.remote_name
    plane.change(None, pls.id, "put", pl.update_connection, pls.id, remote, "Rejected", "", None)
    desired = plan(snapshot(plane), {connection_key(pls.id, remote): 0}, {}, "x")
    assert desired.links == ()
    hub = next(h for h in desired.hubs if h.pe_ips)
    assert "elements" not in nft.render(hub).split("map pe_mark")[1].split("}")[0]


def test_unhealthy_backends_leave_the_rule(world) -> None:
    plane, _lb, _pls, _pe = world
    desired = plan(snapshot(plane), {}, {}, "x")
    checks = {c.backend_ip: c for c in desired.health_checks}
    assert set(checks) == {"10.0.2.4", "10.0.2.5"}
    down = {checks["10.0.2.5"]: False}
    rule = next(r for h in plan(snapshot(plane), {}, down, "x").hubs for r in h.rules)
    assert rule.backends == ("10.0.2.4",)


def test_ha_ports_rules_are_reported_not_realized(world) -> None:
    plane, lb, _pls, _pe = world
    ha = replace(lb.rules[0], name="ha", protocol="All", frontend_port=0, backend_port=0)
    snap = snapshot(plane)
    lbs = tuple(replace(x, rules=(*x.rules, ha)) for x in snap.load_balancers)
    desired = plan(replace(snap, load_balancers=lbs), {}, {}, "x")
    assert lb.key in desired.problems
    assert "HA ports" in desired.problems[lb.key]


def test_health_key_is_stable_for_the_same_probe(world) -> None:
    plane, _lb, _pls, _pe = world
    a = plan(snapshot(plane), {}, {}, "x").health_checks
    b = plan(snapshot(plane), {}, {}, "x").health_checks
    assert a == b and all(isinstance(k, HealthKey) for k in a)
