"""Load balancers: frontends and their addresses, probes, rules, and the PLS ties."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pl_world import (
    OTHER_REGION,
    World,
    fe_id,
    lb_id,
    make_lb,
    make_rule,
    make_vnet,
    nic_id,
    pool_id,
    probe_id,
    subnet_id,
)

from privatelink.core import errors
from privatelink.core import load_balancer as lbm
from privatelink.core import network_interface as nicm
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm


@pytest.fixture
def vnet_world(world: World) -> World:
    world.run(vnm.create_or_update, make_vnet())
    return world


def _with_frontend(lb: lbm.LoadBalancer, **changes: object) -> lbm.LoadBalancer:
    """The load balancer with its first frontend changed."""
    return replace(lb, frontends=(replace(lb.frontends[0], **changes), *lb.frontends[1:]))


# --- frontends and addresses --------------------------------------------------------------------


def test_create_allocates_distinct_dynamic_frontend_ips(vnet_world: World) -> None:
    vnet_world.run(pl.create_or_update_load_balancer, make_lb(n=3, location="East US"))
    lb = vnet_world.lb()
    assert lb.location == "eastus"
    assert [f.private_ip for f in lb.frontends] == ["10.0.1.4", "10.0.1.5", "10.0.1.6"]
    assert vnet_world.used_ips(subnet_id("vp", "fe")) == {
        "10.0.1.4": lb.id,
        "10.0.1.5": lb.id,
        "10.0.1.6": lb.id,
    }


def test_dynamic_frontend_ip_is_stable_across_updates(vnet_world: World) -> None:
    vnet_world.run(pl.create_or_update_load_balancer, make_lb(n=2))
    before = [f.private_ip for f in vnet_world.lb().frontends]
    # Drop fe1 (and its rule): fe2 keeps its address instead of moving to the freed one.
    lb = make_lb(n=2)
    lb = replace(lb, frontends=lb.frontends[1:], rules=lb.rules[1:])
    vnet_world.run(pl.create_or_update_load_balancer, lb)
    assert [f.private_ip for f in vnet_world.lb().frontends] == before[1:]
    assert set(vnet_world.used_ips(subnet_id("vp", "fe"))) == set(before[1:])


def test_static_frontend_ip(vnet_world: World) -> None:
    vnet_world.run(
        pl.create_or_update_load_balancer,
        _with_frontend(make_lb(n=1), allocation="Static", private_ip="10.0.1.100"),
    )
    assert vnet_world.lb().frontends[0].private_ip == "10.0.1.100"


@pytest.mark.parametrize(
    ("ip", "cls", "code"),
    [
        ("10.0.1.1", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.0.1.255", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.0.2.10", errors.PrivateIPAddressNotInSubnet, "PrivateIPAddressNotInSubnet"),
        ("10.0.1.300", errors.InvalidPrivateIPAddress, "PrivateIPAddressInvalid"),
        ("fd00::10", errors.IPv6NotSupported, "IPv6NotSupported"),
    ],
)
def test_static_frontend_ip_refusals(vnet_world: World, ip: str, cls: type, code: str) -> None:
    vnet_world.refuse(
        cls,
        code,
        400,
        pl.create_or_update_load_balancer,
        _with_frontend(make_lb(n=1), allocation="Static", private_ip=ip),
    )
    assert vnet_world.get(lb_id()) is None


def test_static_frontend_ip_taken_by_another_load_balancer(vnet_world: World) -> None:
    vnet_world.run(pl.create_or_update_load_balancer, make_lb(n=1))
    taken = vnet_world.lb().frontends[0].private_ip
    other = _with_frontend(make_lb("lb2", n=1), allocation="Static", private_ip=taken)
    vnet_world.refuse(
        errors.PrivateIPAddressIsAllocated,
        "PrivateIPAddressIsAllocated",
        400,
        pl.create_or_update_load_balancer,
        other,
    )


def test_two_frontends_cannot_share_a_static_ip(vnet_world: World) -> None:
    lb = make_lb(n=2)
    lb = replace(
        lb,
        frontends=tuple(
            replace(f, allocation="Static", private_ip="10.0.1.50") for f in lb.frontends
        ),
    )
    vnet_world.refuse(
        errors.PrivateIPAddressIsAllocated,
        "PrivateIPAddressIsAllocated",
        400,
        pl.create_or_update_load_balancer,
        lb,
    )


def test_static_without_address_refused(vnet_world: World) -> None:
    vnet_world.refuse(
        errors.PrivateIPAddressRequired,
        "PrivateIPAddressRequired",
        400,
        pl.create_or_update_load_balancer,
        _with_frontend(make_lb(n=1), allocation="Static", private_ip=None),
    )


def test_ipv6_frontend_refused(vnet_world: World) -> None:
    vnet_world.refuse(
        errors.IPv6NotSupported,
        "IPv6NotSupported",
        400,
        pl.create_or_update_load_balancer,
        _with_frontend(make_lb(n=1), ip_version="IPv6"),
    )


def test_full_subnet_refused(world: World) -> None:
    world.run(
        vnm.create_or_update,
        make_vnet(subnets=(vnm.Subnet("fe", "10.0.1.0/29"),)),  # 3 usable addresses
    )
    world.run(pl.create_or_update_load_balancer, make_lb(n=3))
    world.refuse(
        errors.SubnetIsFull,
        "SubnetIsFull",
        400,
        pl.create_or_update_load_balancer,
        make_lb("lb2", n=1),
    )


def test_frontend_subnet_must_exist(vnet_world: World) -> None:
    vnet_world.refuse(
        errors.InvalidResourceReference,
        "InvalidResourceReference",
        400,
        pl.create_or_update_load_balancer,
        make_lb(n=1, subnet="missing"),
    )


def test_frontend_vnet_in_another_region_refused(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet(location=OTHER_REGION))
    world.refuse(
        errors.ResourceLocationMismatch,
        "ResourceLocationMismatch",
        400,
        pl.create_or_update_load_balancer,
        make_lb(n=1),
    )


def test_frontends_in_two_vnets_refused(vnet_world: World) -> None:
    vnet_world.run(
        vnm.create_or_update,
        make_vnet("v2", prefixes=("10.5.0.0/16",), subnets=(vnm.Subnet("fe", "10.5.1.0/24"),)),
    )
    lb = make_lb(n=2)
    lb = replace(
        lb, frontends=(lb.frontends[0], replace(lb.frontends[1], subnet_id=subnet_id("v2", "fe")))
    )
    vnet_world.refuse(
        errors.InvalidRequestContent,
        "InvalidRequestContent",
        400,
        pl.create_or_update_load_balancer,
        lb,
    )


def test_frontend_required(vnet_world: World) -> None:
    vnet_world.refuse(
        errors.InvalidRequestContent,
        "InvalidRequestContent",
        400,
        pl.create_or_update_load_balancer,
        make_lb(n=0),
    )


def test_gateway_sku_refused(vnet_world: World) -> None:
    vnet_world.refuse(
        errors.InvalidLoadBalancerSku,
        "InvalidLoadBalancerSku",
        400,
        pl.create_or_update_load_balancer,
        make_lb(n=1, sku="Gateway"),
    )


def test_duplicate_frontend_names_refused(vnet_world: World) -> None:
    lb = make_lb(n=1)
    lb = replace(lb, frontends=(lb.frontends[0], replace(lb.frontends[0], name="FE1")))
    vnet_world.refuse(
        errors.DuplicateResourceName,
        "DuplicateResourceName",
        400,
        pl.create_or_update_load_balancer,
        lb,
    )


def test_location_cannot_change(vnet_world: World) -> None:
    vnet_world.run(pl.create_or_update_load_balancer, make_lb(n=1))
    vnet_world.refuse(
        errors.ResourceLocationMismatch,
        "ResourceLocationMismatch",
        400,
        pl.create_or_update_load_balancer,
        make_lb(n=1, location=OTHER_REGION),
    )


# --- probes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "probe",
    [
        lbm.Probe("p", "Tcp", 0),
        lbm.Probe("p", "Tcp", 65536),
        lbm.Probe("p", "Tcp", 80, request_path="/"),
        lbm.Probe("p", "Http", 80),
        lbm.Probe("p", "Https", 443, request_path="health"),
        lbm.Probe("p", "Tcp", 80, interval_in_seconds=4),
        lbm.Probe("p", "Tcp", 80, number_of_probes=0),
        lbm.Probe("p", "Tcp", 80, probe_threshold=0),
    ],
)
def test_invalid_probe_refused(vnet_world: World, probe: lbm.Probe) -> None:
    vnet_world.refuse(
        errors.InvalidProbe,
        "InvalidProbeConfiguration",
        400,
        pl.create_or_update_load_balancer,
        replace(make_lb(n=1), probes=(probe,)),
    )


def test_unknown_probe_protocol_refused(vnet_world: World) -> None:
    vnet_world.refuse(
        errors.InvalidRequestContent,
        "InvalidRequestContent",
        400,
        pl.create_or_update_load_balancer,
        replace(make_lb(n=1), probes=(lbm.Probe("p", "Icmp", 80),)),
    )


def test_probe_protocol_normalized(vnet_world: World) -> None:
    lb = replace(make_lb(n=1), probes=(lbm.Probe("p", "http", 80, request_path="/"),))
    vnet_world.run(pl.create_or_update_load_balancer, lb)
    assert vnet_world.lb().probes[0].protocol == "Http"


# --- rules -----------------------------------------------------------------------------------


def _with_rule(rule: lbm.Rule, n: int = 1) -> lbm.LoadBalancer:
    return replace(make_lb(n=n), rules=(rule,))


@pytest.mark.parametrize(
    "changes",
    [
        {"frontend_port": 0},
        {"frontend_port": 65536},
        {"backend_port": 0},
        {"backend_port": 70000},
        {"idle_timeout_in_minutes": 3},
        {"idle_timeout_in_minutes": 101},
        {"pool_ids": ()},
        {"protocol": "All", "frontend_port": 0, "backend_port": 80},
    ],
)
def test_invalid_rule_refused(vnet_world: World, changes: dict[str, object]) -> None:
    rule = replace(make_rule("r", "fe1", "be1"), **changes)
    vnet_world.refuse(
        errors.InvalidLoadBalancerRule,
        "InvalidLoadBalancerRule",
        400,
        pl.create_or_update_load_balancer,
        _with_rule(rule),
    )


def test_ha_ports_rule_accepted(vnet_world: World) -> None:
    rule = replace(make_rule("r", "fe1", "be1"), protocol="all", frontend_port=0, backend_port=0)
    vnet_world.run(pl.create_or_update_load_balancer, _with_rule(rule))
    assert vnet_world.lb().rules[0].protocol == "All"


@pytest.mark.parametrize(
    "changes",
    [
        {"frontend_id": fe_id("missing")},
        {"frontend_id": fe_id("fe1", lb="otherlb")},
        {"pool_ids": (pool_id("missing"),)},
        {"probe_id": probe_id("missing")},
    ],
)
def test_rule_reference_must_be_a_child_of_this_lb(
    vnet_world: World, changes: dict[str, object]
) -> None:
    rule = replace(make_rule("r", "fe1", "be1"), **changes)
    vnet_world.refuse(
        errors.InvalidResourceReference,
        "InvalidResourceReference",
        400,
        pl.create_or_update_load_balancer,
        _with_rule(rule),
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"protocol": "Sctp"}, "protocol"), ({"load_distribution": "Random"}, "loadDistribution")],
)
def test_rule_enum_values_checked(
    vnet_world: World, changes: dict[str, object], field: str
) -> None:
    exc = vnet_world.refuse(
        errors.InvalidRequestContent,
        "InvalidRequestContent",
        400,
        pl.create_or_update_load_balancer,
        _with_rule(replace(make_rule("r", "fe1", "be1"), **changes)),
    )
    assert field in exc.message


@pytest.mark.parametrize(("first", "second"), [("Tcp", "Tcp"), ("All", "Tcp"), ("Udp", "All")])
def test_frontend_port_conflict(vnet_world: World, first: str, second: str) -> None:
    lb = make_lb(n=1)
    a = replace(make_rule("a", "fe1", "be1"), protocol=first)
    b = replace(make_rule("b", "fe1", "be1"), protocol=second, backend_port=9090)
    vnet_world.refuse(
        errors.LoadBalancerRuleFrontendPortConflict,
        "LoadBalancingRuleFrontendPortConflict",
        400,
        pl.create_or_update_load_balancer,
        replace(lb, rules=(a, b)),
    )


def test_same_port_different_protocol_or_frontend_ok(vnet_world: World) -> None:
    lb = make_lb(n=2)
    rules = (
        make_rule("a", "fe1", "be1"),
        replace(make_rule("b", "fe1", "be1"), protocol="Udp"),
        make_rule("c", "fe2", "be2"),
    )
    vnet_world.run(pl.create_or_update_load_balancer, replace(lb, rules=rules))
    assert [r.name for r in vnet_world.lb().rules] == ["a", "b", "c"]


# --- removals and deletion --------------------------------------------------------------------


def test_unused_frontend_can_be_removed(vnet_world: World) -> None:
    vnet_world.run(pl.create_or_update_load_balancer, make_lb(n=2))
    lb = make_lb(n=2)
    vnet_world.run(
        pl.create_or_update_load_balancer,
        replace(lb, frontends=lb.frontends[:1], rules=lb.rules[:1]),
    )
    assert [f.name for f in vnet_world.lb().frontends] == ["fe1"]
    assert set(vnet_world.used_ips(subnet_id("vp", "fe"))) == {"10.0.1.4"}


def test_frontend_used_by_pls_cannot_be_removed(world: World) -> None:
    world.provider(n=2)
    world.create_pls(frontends=("fe2",))
    lb = make_lb(n=2)
    world.refuse(
        errors.FrontendIPConfigurationInUse,
        "InUseFrontendIPConfigurationCannotBeDeleted",
        400,
        pl.create_or_update_load_balancer,
        replace(lb, frontends=lb.frontends[:1], rules=lb.rules[:1]),
    )


def test_lb_with_pls_cannot_be_deleted(world: World) -> None:
    world.provider(n=1)
    world.create_pls()
    world.refuse(
        errors.LoadBalancerInUseByPrivateLinkService,
        "LoadBalancerInUseByPrivateLinkService",
        409,
        lbm.delete,
        lb_id(),
    )


def test_lb_can_be_deleted_once_pls_is_gone(world: World) -> None:
    world.provider(n=1)
    pls = world.create_pls()
    world.run(plsm.delete, pls.id)
    world.run(lbm.delete, lb_id())
    assert world.get(lb_id()) is None
    assert world.used_ips(subnet_id("vp", "fe")) == {}


def test_pool_used_by_nic_cannot_be_removed_nor_lb_deleted(vnet_world: World) -> None:
    vnet_world.run(pl.create_or_update_load_balancer, make_lb(n=1))
    nic = nicm.NetworkInterface(
        id=nic_id("vm1"),
        name="vm1",
        location="eastus",
        ip_configurations=(
            nicm.NicIpConfiguration("ipc", subnet_id("vp", "be"), pool_ids=(pool_id("be1"),)),
        ),
    )
    vnet_world.run(nicm.create_or_update, nic)
    vnet_world.refuse(
        errors.BackendAddressPoolInUse,
        "InUseBackendAddressPoolCannotBeDeleted",
        400,
        pl.create_or_update_load_balancer,
        replace(make_lb(n=1), pools=(lbm.BackendPool("other"),), rules=()),
    )
    vnet_world.refuse(
        errors.BackendAddressPoolInUse,
        "InUseBackendAddressPoolCannotBeDeleted",
        400,
        lbm.delete,
        lb_id(),
    )


def test_delete_missing_lb_is_a_no_op(world: World) -> None:
    assert world.run(lbm.delete, lb_id()) == {}


# --- updates that would break a private link service -----------------------------------------


@pytest.fixture
def pls_world(world: World) -> World:
    """lb with fe1..fe3; pls1 on fe1, pls2 on fe2 (each with its own rule and pool)."""
    world.provider(n=3)
    world.create_pls(name="pls1", frontends=("fe1",))
    world.create_pls(
        name="pls2",
        frontends=("fe2",),
        nats=(plsm.NatIpConfiguration("nat1", subnet_id("vp", "nat2")),),
    )
    return world


@pytest.mark.parametrize("protocol", ["Udp", "All"])
def test_non_tcp_rule_on_pls_frontend_refused_on_lb_update(pls_world: World, protocol: str) -> None:
    lb = make_lb(n=3)
    extra = replace(make_rule("udp", "fe1", "be1", port=53), protocol=protocol)
    if protocol == "All":
        extra = replace(extra, frontend_port=0, backend_port=0)
    pls_world.refuse(
        errors.PrivateLinkServiceRequiresTcpRules,
        "PrivateLinkServiceOnlySupportsTcp",
        400,
        pl.create_or_update_load_balancer,
        replace(lb, rules=(*lb.rules, extra)),
    )


def test_protocol_change_to_udp_on_pls_frontend_refused(pls_world: World) -> None:
    lb = make_lb(n=3)
    rules = (replace(lb.rules[0], protocol="Udp"), *lb.rules[1:])
    pls_world.refuse(
        errors.PrivateLinkServiceRequiresTcpRules,
        "PrivateLinkServiceOnlySupportsTcp",
        400,
        pl.create_or_update_load_balancer,
        replace(lb, rules=rules),
    )


def test_udp_rule_on_frontend_without_pls_is_fine(pls_world: World) -> None:
    lb = make_lb(n=3)
    extra = replace(make_rule("udp", "fe3", "be3", port=53), protocol="Udp")
    pls_world.run(pl.create_or_update_load_balancer, replace(lb, rules=(*lb.rules, extra)))
    assert "udp" in [r.name for r in pls_world.lb().rules]


def test_lb_update_cannot_share_a_pool_between_services(pls_world: World) -> None:
    lb = make_lb(n=3)
    # A second rule on pls2's frontend into pls1's pool be1.
    extra = make_rule("cross", "fe2", "be1", port=443)
    pls_world.refuse(
        errors.BackendPoolSharedByPrivateLinkServices,
        "BackendPoolSharedByPrivateLinkServices",
        400,
        pl.create_or_update_load_balancer,
        replace(lb, rules=(*lb.rules, extra)),
    )


def test_lb_update_cannot_downgrade_to_basic(pls_world: World) -> None:
    pls_world.refuse(
        errors.PrivateLinkServiceRequiresStandardLoadBalancer,
        "PrivateLinkServiceNotSupportedOnBasicLoadBalancer",
        400,
        pl.create_or_update_load_balancer,
        make_lb(n=3, sku="Basic"),
    )


def test_lb_update_keeping_pls_rules_valid_is_accepted(pls_world: World) -> None:
    lb = make_lb(n=3)
    extra = make_rule("https", "fe1", "be1", port=443)
    pls_world.run(pl.create_or_update_load_balancer, replace(lb, rules=(*lb.rules, extra)))
    assert len(pls_world.lb().rules) == 4
    assert pls_world.pls("pls1").frontend_ids == (fe_id("fe1"),)


def test_static_frontend_ip_cannot_take_the_address_of_a_kept_frontend(vnet_world: World) -> None:
    """A static address must be free, whatever the order of the frontends in the PUT."""
    vnet_world.run(pl.create_or_update_load_balancer, make_lb(n=1))
    lb = vnet_world.lb()
    fe1 = lb.frontends[0]
    assert fe1.private_ip == "10.0.1.4"
    fe0 = lbm.Frontend("fe0", subnet_id("vp", "fe"), private_ip="10.0.1.4", allocation="Static")
    for frontends in ((fe1, fe0), (fe0, fe1)):
        vnet_world.refuse(
            errors.PrivateIPAddressIsAllocated,
            "PrivateIPAddressIsAllocated",
            400,
            pl.create_or_update_load_balancer,
            replace(make_lb(n=1), frontends=frontends),
        )
    assert vnet_world.lb().frontends[0].private_ip == "10.0.1.4"
