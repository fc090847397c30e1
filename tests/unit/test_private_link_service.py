"""Private link services: alias, load balancer ties, NAT IPs, visibility, deletion."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from pl_world import (
    OTHER_REGION,
    S1,
    S2,
    S3,
    World,
    fe_id,
    lb_id,
    make_lb,
    make_pls,
    make_rule,
    make_vnet,
    nat,
    pls_id,
    subnet_id,
)

from privatelink.core import errors
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm
from privatelink.core.alias import alias_region, looks_like_alias

ALIAS = re.compile(
    r"^pls1\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.eastus"
    r"\.azure\.privatelinkservice$"
)


@pytest.fixture
def pw(world: World) -> World:
    """Provider world: VNet `vp`, load balancer `lb` with fe1..fe3, no service yet."""
    world.provider(n=3)
    return world


def create_refused(w: World, error: type, code: str, desired: plsm.PrivateLinkService) -> None:
    w.refuse(error, code, 400, pl.create_or_update_service, desired)
    assert w.get(desired.id) is None


# --- creation and alias ------------------------------------------------------------------------


def test_create_generates_alias_nic_and_nat_ip(pw: World) -> None:
    pls = pw.create_pls(location="East US")
    assert pls.location == "eastus"
    assert ALIAS.match(pls.alias), pls.alias
    assert looks_like_alias(pls.alias)
    assert alias_region(pls.alias) == "eastus"
    assert pls.frontend_ids == (fe_id("fe1"),)
    (config,) = pls.ip_configurations
    assert config.primary is True
    assert config.private_ip == "10.0.3.4"
    nic = pw.nic(pls.nic_id)
    assert nic.managed_by == pls.id
    assert [c.private_ip for c in nic.ip_configurations] == ["10.0.3.4"]
    assert pw.used_ips(subnet_id("vp", "nat")) == {"10.0.3.4": nic.id}
    assert pw.connections() == ()


def test_alias_is_immutable_across_updates(pw: World) -> None:
    pls = pw.create_pls()
    updated = pw.update_pls(
        alias="evil.11111111-1111-4111-8111-111111111111.eastus.azure.privatelinkservice",
        visibility=(S2,),
        tags={"a": "b"},
        fqdns=("svc.contoso.com",),
        ip_configurations=(*pls.ip_configurations, nat("nat2", "nat2")),
    )
    assert updated.alias == pls.alias
    assert updated.nic_id == pls.nic_id
    assert updated.tags == {"a": "b"}
    assert updated.ip_configurations[0].private_ip == pls.ip_configurations[0].private_ip
    # and again, from a desired state that carries no alias at all
    again = pw.update_pls(alias="", visibility=("*",))
    assert again.alias == pls.alias


def test_recreated_service_gets_a_new_alias(pw: World) -> None:
    first = pw.create_pls()
    pw.run(plsm.delete, first.id)
    second = pw.create_pls()
    assert second.alias != first.alias
    assert ALIAS.match(second.alias)


def test_two_services_have_distinct_aliases(pw: World) -> None:
    a = pw.create_pls(name="pls1", frontends=("fe1",))
    b = pw.create_pls(name="pls2", frontends=("fe2",))
    assert a.alias != b.alias
    assert b.alias.startswith("pls2.")


def test_location_cannot_change(pw: World) -> None:
    pw.create_pls()
    pw.refuse(
        errors.ResourceLocationMismatch,
        "ResourceLocationMismatch",
        400,
        pl.create_or_update_service,
        make_pls(location=OTHER_REGION),
    )


# --- load balancer ties ------------------------------------------------------------------------


def test_basic_load_balancer_refused(pw: World) -> None:
    pw.run(pl.create_or_update_load_balancer, make_lb("basic", n=1, sku="Basic"))
    create_refused(
        pw,
        errors.PrivateLinkServiceRequiresStandardLoadBalancer,
        "PrivateLinkServiceNotSupportedOnBasicLoadBalancer",
        make_pls(lb="basic"),
    )


def test_load_balancer_in_another_region_refused(pw: World) -> None:
    pw.run(
        vnm.create_or_update,
        make_vnet(
            "vw",
            location=OTHER_REGION,
            prefixes=("10.2.0.0/16",),
            subnets=(
                vnm.Subnet("fe", "10.2.1.0/24"),
                vnm.Subnet("nat", "10.2.3.0/24", private_link_service_network_policies="Disabled"),
            ),
        ),
    )
    pw.run(pl.create_or_update_load_balancer, make_lb("lbw", n=1, vnet="vw", location=OTHER_REGION))
    create_refused(
        pw,
        errors.PrivateLinkServiceLocationMismatch,
        "PrivateLinkServiceLocationMismatch",
        make_pls(lb="lbw", nats=(nat(vnet="vw"),)),
    )
    # the same service in the load balancer's (and VNet's) region is fine
    pw.create_pls(lb="lbw", nats=(nat(vnet="vw"),), location=OTHER_REGION)


def test_frontends_on_two_load_balancers_refused(pw: World) -> None:
    pw.run(pl.create_or_update_load_balancer, make_lb("lb2", n=1))
    create_refused(
        pw,
        errors.PrivateLinkServiceFrontendsOnMultipleLoadBalancers,
        "PrivateLinkServiceFrontendsOnMultipleLoadBalancers",
        replace(make_pls(), frontend_ids=(fe_id("fe1"), fe_id("fe1", lb="lb2"))),
    )


def test_frontend_required(pw: World) -> None:
    create_refused(
        pw,
        errors.PrivateLinkServiceFrontendRequired,
        "PrivateLinkServiceFrontendIpConfigurationRequired",
        make_pls(frontends=()),
    )


@pytest.mark.parametrize("ref", [fe_id("missing"), fe_id("fe1", lb="nolb")])
def test_missing_frontend_refused(pw: World, ref: str) -> None:
    create_refused(
        pw,
        errors.InvalidResourceReference,
        "InvalidResourceReference",
        replace(make_pls(), frontend_ids=(ref,)),
    )


def test_frontend_serves_at_most_one_service(pw: World) -> None:
    pw.create_pls(name="pls1", frontends=("fe1",))
    create_refused(
        pw,
        errors.FrontendInUseByAnotherPrivateLinkService,
        "FrontendIpConfigurationInUseByAnotherPrivateLinkService",
        make_pls(name="pls2", frontends=("fe2", "fe1"), nats=(nat(subnet="nat2"),)),
    )


def test_service_may_use_several_frontends_of_one_lb(pw: World) -> None:
    pls = pw.create_pls(frontends=("fe1", "fe2"))
    assert pls.frontend_ids == (fe_id("fe1"), fe_id("fe2"))


def test_duplicate_frontend_reference_is_collapsed(pw: World) -> None:
    pls = pw.create_pls()
    pw.run(
        pl.create_or_update_service,
        replace(make_pls(), frontend_ids=(fe_id("fe1"), fe_id("fe1").upper())),
    )
    assert pw.pls().frontend_ids == pls.frontend_ids


def test_backend_pool_reachable_from_two_services_refused(world: World) -> None:
    rules = (make_rule("r1", "fe1", "be1"), make_rule("r2", "fe2", "be1"))
    world.provider(n=2, rules=rules)
    world.create_pls(name="pls1", frontends=("fe1",))
    create_refused(
        world,
        errors.BackendPoolSharedByPrivateLinkServices,
        "BackendPoolSharedByPrivateLinkServices",
        make_pls(name="pls2", frontends=("fe2",), nats=(nat(subnet="nat2"),)),
    )


def test_one_service_may_reach_a_pool_through_two_frontends(world: World) -> None:
    rules = (make_rule("r1", "fe1", "be1"), make_rule("r2", "fe2", "be1"))
    world.provider(n=2, rules=rules)
    pls = world.create_pls(frontends=("fe1", "fe2"))
    assert len(pls.frontend_ids) == 2


@pytest.mark.parametrize(("protocol", "port"), [("Udp", 53), ("All", 0)])
def test_non_tcp_rule_on_frontend_refused(world: World, protocol: str, port: int) -> None:
    rules = (
        make_rule("r1", "fe1", "be1"),
        replace(
            make_rule("x", "fe1", "be1"), protocol=protocol, frontend_port=port, backend_port=port
        ),
    )
    world.provider(n=1, rules=rules)
    create_refused(
        world,
        errors.PrivateLinkServiceRequiresTcpRules,
        "PrivateLinkServiceOnlySupportsTcp",
        make_pls(),
    )


def test_frontend_without_rules_is_accepted(world: World) -> None:
    world.provider(n=1, rules=())
    assert world.create_pls().frontend_ids == (fe_id("fe1"),)


# --- NAT ip configurations ---------------------------------------------------------------------


def _nats(count: int, subnet: str = "nat") -> tuple[plsm.NatIpConfiguration, ...]:
    return tuple(nat(f"n{i}", subnet, primary=(i == 0)) for i in range(count))


@pytest.mark.parametrize("count", [0, 9])
def test_nat_count_outside_1_to_8_refused(pw: World, count: int) -> None:
    create_refused(
        pw,
        errors.NatIpConfigurationCount,
        "PrivateLinkServiceNatIpConfigurationCountInvalid",
        make_pls(nats=_nats(count)),
    )


def test_eight_nat_ips_get_distinct_addresses(pw: World) -> None:
    pls = pw.create_pls(nats=_nats(8))
    ips = [c.private_ip for c in pls.ip_configurations]
    assert ips == [f"10.0.3.{i}" for i in range(4, 12)]
    assert [c.primary for c in pls.ip_configurations] == [True] + [False] * 7
    assert set(pw.used_ips(subnet_id("vp", "nat"))) == set(ips)


def test_nat_ips_may_come_from_any_subnet_of_the_lb_vnet(pw: World) -> None:
    pls = pw.create_pls(nats=(nat("a", "nat", primary=True), nat("b", "nat2")))
    assert [c.private_ip for c in pls.ip_configurations] == ["10.0.3.4", "10.0.4.4"]


def test_nat_ip_in_frontend_subnet_avoids_frontend_addresses(pw: World) -> None:
    pw.run(
        vnm.create_or_update_subnet,
        subnet_id("vp", "fe"),
        vnm.Subnet("fe", "10.0.1.0/24", private_link_service_network_policies="Disabled"),
    )
    pls = pw.create_pls(nats=(nat(subnet="fe"),))
    frontend_ips = {f.private_ip for f in pw.lb().frontends}
    assert frontend_ips == {"10.0.1.4", "10.0.1.5", "10.0.1.6"}
    assert pls.ip_configurations[0].private_ip == "10.0.1.7"


@pytest.mark.parametrize(
    "nats",
    [
        (nat("a", ip_version="IPv6"),),
        (nat("a", ip="fd00::5"),),
        (nat("a", primary=True), nat("b", "nat2", ip_version="IPv6")),
    ],
)
def test_ipv6_nat_refused(pw: World, nats: tuple[plsm.NatIpConfiguration, ...]) -> None:
    create_refused(
        pw,
        errors.PrivateLinkServiceIPv6NotSupported,
        "PrivateLinkServiceIPv6NotSupported",
        make_pls(nats=nats),
    )


@pytest.mark.parametrize(
    "primaries", [(True, True), (False, False), (None, None), (True, True, False)]
)
def test_exactly_one_primary_nat(pw: World, primaries: tuple[bool | None, ...]) -> None:
    nats = tuple(nat(f"n{i}", primary=p) for i, p in enumerate(primaries))
    create_refused(
        pw,
        errors.NatIpConfigurationPrimary,
        "PrivateLinkServiceNatIpConfigurationPrimaryInvalid",
        make_pls(nats=nats),
    )


def test_single_nat_becomes_primary(pw: World) -> None:
    pls = pw.create_pls(nats=(nat(primary=None),))
    assert pls.ip_configurations[0].primary is True


def test_nat_subnet_in_another_vnet_refused(pw: World) -> None:
    pw.run(
        vnm.create_or_update,
        make_vnet(
            "vo",
            prefixes=("10.7.0.0/16",),
            subnets=(
                vnm.Subnet("nat", "10.7.3.0/24", private_link_service_network_policies="Disabled"),
            ),
        ),
    )
    create_refused(
        pw,
        errors.NatSubnetNotInLoadBalancerVirtualNetwork,
        "PrivateLinkServiceNatSubnetNotInLoadBalancerVnet",
        make_pls(nats=(nat(vnet="vo"),)),
    )


@pytest.mark.parametrize("subnet", ["be", "fe"])
def test_nat_subnet_with_policies_enabled_refused(pw: World, subnet: str) -> None:
    create_refused(
        pw,
        errors.PrivateLinkServiceNetworkPoliciesEnabled,
        "PrivateLinkServiceNetworkPoliciesEnabledOnSubnet",
        make_pls(nats=(nat(subnet=subnet),)),
    )


def test_nat_subnet_must_exist(pw: World) -> None:
    create_refused(
        pw,
        errors.InvalidResourceReference,
        "InvalidResourceReference",
        make_pls(nats=(nat(subnet="missing"),)),
    )


def test_static_nat_ip(pw: World) -> None:
    pls = pw.create_pls(nats=(nat(ip="10.0.3.77"),))
    assert pls.ip_configurations[0].private_ip == "10.0.3.77"
    assert pls.ip_configurations[0].allocation == "Static"
    assert pw.used_ips(subnet_id("vp", "nat")) == {"10.0.3.77": pls.nic_id}


@pytest.mark.parametrize(
    ("ip", "cls", "code"),
    [
        ("10.0.3.0", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.0.3.2", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.0.3.255", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.0.4.10", errors.PrivateIPAddressNotInSubnet, "PrivateIPAddressNotInSubnet"),
    ],
)
def test_static_nat_ip_refusals(pw: World, ip: str, cls: type, code: str) -> None:
    create_refused(pw, cls, code, make_pls(nats=(nat(ip=ip),)))


def test_static_nat_ip_taken_by_another_service_refused(pw: World) -> None:
    pw.create_pls(name="pls1", frontends=("fe1",), nats=(nat(ip="10.0.3.50"),))
    create_refused(
        pw,
        errors.PrivateIPAddressIsAllocated,
        "PrivateIPAddressIsAllocated",
        make_pls(name="pls2", frontends=("fe2",), nats=(nat(ip="10.0.3.50"),)),
    )


def test_dynamic_nat_ip_skips_addresses_of_other_services(pw: World) -> None:
    a = pw.create_pls(name="pls1", frontends=("fe1",))
    b = pw.create_pls(name="pls2", frontends=("fe2",))
    assert a.ip_configurations[0].private_ip == "10.0.3.4"
    assert b.ip_configurations[0].private_ip == "10.0.3.5"


# --- NAT ip configurations on update -----------------------------------------------------------


@pytest.fixture
def two_nats(pw: World) -> World:
    pw.create_pls(nats=(nat("a", primary=True), nat("b", "nat2")))
    return pw


def test_nat_ip_cannot_be_removed(two_nats: World) -> None:
    current = two_nats.pls()
    two_nats.refuse(
        errors.NatIpConfigurationCannotBeRemoved,
        "PrivateLinkServiceNatIpConfigurationCannotBeRemoved",
        400,
        pl.create_or_update_service,
        replace(current, ip_configurations=current.ip_configurations[:1]),
    )


def test_primary_nat_ip_cannot_be_removed(two_nats: World) -> None:
    current = two_nats.pls()
    two_nats.refuse(
        errors.NatIpConfigurationCannotBeRemoved,
        "PrivateLinkServiceNatIpConfigurationCannotBeRemoved",
        400,
        pl.create_or_update_service,
        replace(current, ip_configurations=(replace(current.ip_configurations[1], primary=True),)),
    )


def test_nat_ip_cannot_be_renamed(two_nats: World) -> None:
    current = two_nats.pls()
    a, b = current.ip_configurations
    two_nats.refuse(
        errors.NatIpConfigurationCannotBeRemoved,
        "PrivateLinkServiceNatIpConfigurationCannotBeRemoved",
        400,
        pl.create_or_update_service,
        replace(current, ip_configurations=(a, replace(b, name="c"))),
    )


def test_nat_ip_cannot_move_to_another_subnet(two_nats: World) -> None:
    current = two_nats.pls()
    a, b = current.ip_configurations
    two_nats.refuse(
        errors.NatIpConfigurationCannotBeRemoved,
        "PrivateLinkServiceNatIpConfigurationCannotBeRemoved",
        400,
        pl.create_or_update_service,
        replace(
            current,
            ip_configurations=(a, replace(b, subnet_id=subnet_id("vp", "nat"), private_ip=None)),
        ),
    )


def test_nat_ips_can_be_added_and_keep_their_addresses(two_nats: World) -> None:
    current = two_nats.pls()
    updated = two_nats.update_pls(
        ip_configurations=(
            *(replace(c, private_ip=None) for c in current.ip_configurations),
            nat("c"),
        )
    )
    assert [c.name for c in updated.ip_configurations] == ["a", "b", "c"]
    assert [c.private_ip for c in updated.ip_configurations] == [
        "10.0.3.4",
        "10.0.4.4",
        "10.0.3.5",
    ]
    assert [c.private_ip for c in two_nats.nic(updated.nic_id).ip_configurations] == [
        "10.0.3.4",
        "10.0.4.4",
        "10.0.3.5",
    ]


def test_update_cannot_exceed_nat_limit(pw: World) -> None:
    pw.create_pls(nats=_nats(8))
    current = pw.pls()
    pw.refuse(
        errors.NatIpConfigurationCount,
        "PrivateLinkServiceNatIpConfigurationCountInvalid",
        400,
        pl.create_or_update_service,
        replace(current, ip_configurations=(*current.ip_configurations, nat("n8"))),
    )


def test_update_cannot_switch_nat_to_ipv6(two_nats: World) -> None:
    current = two_nats.pls()
    a, b = current.ip_configurations
    two_nats.refuse(
        errors.PrivateLinkServiceIPv6NotSupported,
        "PrivateLinkServiceIPv6NotSupported",
        400,
        pl.create_or_update_service,
        replace(current, ip_configurations=(a, replace(b, ip_version="IPv6"))),
    )


# --- visibility and auto-approval --------------------------------------------------------------


@pytest.mark.parametrize(
    ("visibility", "auto"),
    [
        (("not-a-guid",), ()),
        ((S2, "sub2"), ()),
        (("*",), ("*",)),
        (("*",), ("nope",)),
        (("**",), ()),
    ],
)
def test_subscription_lists_must_hold_guids(
    pw: World, visibility: tuple[str, ...], auto: tuple[str, ...]
) -> None:
    create_refused(
        pw,
        errors.InvalidVisibilitySubscription,
        "InvalidVisibilitySubscriptions",
        make_pls(visibility=visibility, auto_approval=auto),
    )


@pytest.mark.parametrize(
    ("visibility", "auto"),
    [((S2,), (S3,)), ((S2,), (S2, S3)), ((), (S2,)), ((), (S1,))],
)
def test_auto_approval_must_be_subset_of_visibility(
    pw: World, visibility: tuple[str, ...], auto: tuple[str, ...]
) -> None:
    create_refused(
        pw,
        errors.AutoApprovalNotSubsetOfVisibility,
        "AutoApprovalSubscriptionsNotInVisibility",
        make_pls(visibility=visibility, auto_approval=auto),
    )


@pytest.mark.parametrize(
    ("visibility", "auto"),
    [
        (("*",), (S2, S3)),
        ((S2, S3), (S2,)),
        ((S2.upper(),), (S2,)),
        ((), ()),
        ((S2,), ()),
    ],
)
def test_valid_visibility_and_auto_approval(
    pw: World, visibility: tuple[str, ...], auto: tuple[str, ...]
) -> None:
    pls = pw.create_pls(visibility=visibility, auto_approval=auto)
    assert pls.visibility == visibility
    assert pls.auto_approval == auto


def test_visibility_update_keeps_auto_approval_rule(pw: World) -> None:
    pw.create_pls(visibility=("*",), auto_approval=(S2,))
    current = pw.pls()
    pw.refuse(
        errors.AutoApprovalNotSubsetOfVisibility,
        "AutoApprovalSubscriptionsNotInVisibility",
        400,
        pl.create_or_update_service,
        replace(current, visibility=(S3,)),
    )


def test_invalid_fqdn_refused(pw: World) -> None:
    create_refused(pw, errors.InvalidFqdn, "InvalidFqdn", make_pls(fqdns=("bad_name!.com",)))


# Issue 11: duplicate entries in visibility and 10,000 FQDNs were accepted.


@pytest.mark.parametrize(
    ("visibility", "auto", "field"),
    [
        ((S2, S3, S2), (), "visibility.subscriptions"),
        ((S2, S2.upper()), (), "visibility.subscriptions"),
        ((S2, f" {S2} "), (), "visibility.subscriptions"),
        (("*", "*"), (), "visibility.subscriptions"),
        (("*",), (S2, S2), "autoApproval.subscriptions"),
        ((S2, S3), (S3, S3.upper()), "autoApproval.subscriptions"),
    ],
)
def test_repeated_subscriptions_are_refused(
    pw: World, visibility: tuple[str, ...], auto: tuple[str, ...], field: str
) -> None:
    with pytest.raises(errors.DuplicateSubscriptionInList) as info:
        pw.run(pl.create_or_update_service, make_pls(visibility=visibility, auto_approval=auto))
    assert info.value.code == "DuplicateSubscriptionInPrivateLinkServiceList"
    assert info.value.status == 400
    assert field in info.value.message
    assert pw.get(pls_id("pls1")) is None


def test_an_update_with_a_repeated_subscription_keeps_the_old_lists(pw: World) -> None:
    pw.create_pls(visibility=(S2, S3), auto_approval=(S2,))
    create = pl.create_or_update_service
    repeated = replace(pw.pls(), visibility=(S2, S3, S3))
    pw.refuse(
        errors.DuplicateSubscriptionInList,
        "DuplicateSubscriptionInPrivateLinkServiceList",
        400,
        create,
        repeated,
    )
    assert pw.pls().visibility == (S2, S3)


def test_fqdns_are_capped_by_the_limit(pw: World) -> None:
    many = tuple(f"h{i}.contoso.com" for i in range(10_000))
    with pytest.raises(errors.FqdnListLimitExceeded) as info:
        pw.run(pl.create_or_update_service, make_pls(fqdns=many))
    assert info.value.code == "FqdnListLimitExceeded"
    assert info.value.status == 400
    assert "10000" in info.value.message and "100 " in info.value.message
    assert pw.get(pls_id("pls1")) is None
    create_refused(
        pw, errors.FqdnListLimitExceeded, "FqdnListLimitExceeded", make_pls(fqdns=many[:101])
    )
    assert pw.create_pls(fqdns=many[:100]).fqdns == many[:100]


def test_fqdn_limit_is_configurable(make_world: Callable[..., World]) -> None:
    w = make_world(fqdns=2)
    w.provider(n=1)
    create_refused(
        w,
        errors.FqdnListLimitExceeded,
        "FqdnListLimitExceeded",
        make_pls(fqdns=("a.x", "b.x", "c.x")),
    )
    assert w.create_pls(fqdns=("a.x", "b.x")).fqdns == ("a.x", "b.x")


@pytest.mark.parametrize(
    "fqdns",
    [
        ("a.contoso.com", "a.contoso.com"),
        ("a.contoso.com", "A.Contoso.COM"),
        ("a.contoso.com", "a.contoso.com."),
    ],
)
def test_repeated_fqdns_are_refused(pw: World, fqdns: tuple[str, ...]) -> None:
    create_refused(
        pw, errors.DuplicateFqdn, "DuplicateFqdnInPrivateLinkService", make_pls(fqdns=fqdns)
    )


LABEL63 = "a" * 63


@pytest.mark.parametrize(
    "fqdn",
    [
        "a" * 64 + ".com",  # a label of 64
        ".".join([LABEL63] * 4),  # 255 characters
        ".".join([LABEL63, LABEL63, LABEL63, "a" * 62]),  # 254 characters
        "-a.com",
        "a-.com",
        "a..com",
        "",
        ".",
    ],
)
def test_fqdn_length_and_syntax(pw: World, fqdn: str) -> None:
    create_refused(pw, errors.InvalidFqdn, "InvalidFqdn", make_pls(fqdns=(fqdn,)))


def test_longest_fqdn_is_accepted(pw: World) -> None:
    longest = ".".join([LABEL63, LABEL63, LABEL63, "a" * 61])
    assert len(longest) == 253
    assert pw.create_pls(fqdns=(longest, "x.example.")).fqdns == (longest, "x.example")


def test_duplicate_error_echoes_a_clipped_value() -> None:
    message = errors.DuplicateSubscriptionInList(value="x" * 5000, field="visibility").message
    assert len(message) < 500


# --- deletion ----------------------------------------------------------------------------------


def test_delete_removes_service_and_nic_and_frees_nat_ip(pw: World) -> None:
    pls = pw.create_pls()
    pw.run(plsm.delete, pls.id)
    assert pw.get(pls.id) is None
    assert pw.get(pls.nic_id) is None
    assert pw.used_ips(subnet_id("vp", "nat")) == {}
    # the frontend is free again for another service
    pw.create_pls(name="again", frontends=("fe1",))


def test_delete_missing_service_is_a_no_op(pw: World) -> None:
    assert pw.run(plsm.delete, pls_id("nothing")) == {}


def test_lb_id_of_service(pw: World) -> None:
    pls = pw.create_pls()
    assert pls.load_balancer_key == lb_id().lower()
    assert pls.subscription == S1


def test_static_nat_ip_cannot_take_the_address_of_a_kept_nat_config(pw: World) -> None:
    """A static address must be free: the service's own NAT config `a` keeps holding it.

    Listing the new static config before or after `a` must not matter; in neither
    order may `a` silently lose the address active connections depend on.
    """
    pls = pw.create_pls(nats=(nat("a", primary=True),))
    (a,) = pls.ip_configurations
    assert a.private_ip == "10.0.3.4"
    for order in ((a, nat("c", ip="10.0.3.4")), (nat("c", ip="10.0.3.4"), a)):
        pw.refuse(
            errors.PrivateIPAddressIsAllocated,
            "PrivateIPAddressIsAllocated",
            400,
            pl.create_or_update_service,
            replace(pls, ip_configurations=order),
        )
    assert pw.pls().ip_configurations[0].private_ip == "10.0.3.4"


def test_ip_version_is_case_insensitive(pw: World) -> None:
    """'ipv4' is IPv4 (ARM enum values are case-insensitive, as for every other enum)."""
    pls = pw.create_pls(nats=(nat(ip_version="ipv4"),))
    assert pls.ip_configurations[0].private_ip == "10.0.3.4"


def test_switching_frontend_frees_the_old_one(pw: World) -> None:
    pw.create_pls(frontends=("fe1",))
    pw.update_pls(frontend_ids=(fe_id("fe2"),))
    assert pw.pls().frontend_ids == (fe_id("fe2"),)
    other = pw.create_pls(name="other", frontends=("fe1",), nats=(nat(subnet="nat2"),))
    assert other.frontend_ids == (fe_id("fe1"),)


def test_frontend_on_another_load_balancer_counts_against_that_lb(
    make_world: Callable[..., World],
) -> None:
    w = make_world(pls_per_load_balancer=1)
    w.provider(n=1)
    w.run(pl.create_or_update_load_balancer, make_lb("lb2", n=2, subnet="be"))
    w.create_pls(name="on2", lb="lb2", frontends=("fe1",))
    w.create_pls(name="pls1", frontends=("fe1",), nats=(nat(subnet="nat2"),))
    # moving pls1 onto lb2 would make two services there
    w.refuse(
        errors.PrivateLinkServicesPerLoadBalancerLimitReached,
        "PrivateLinkServicesPerLoadBalancerLimitReached",
        400,
        pl.create_or_update_service,
        replace(w.pls(), frontend_ids=(fe_id("fe2", lb="lb2"),)),
    )


def test_nat_subnet_added_on_update_becomes_in_use(pw: World) -> None:
    pls = pw.create_pls()
    pw.update_pls(ip_configurations=(*pls.ip_configurations, nat("n2", "nat2")))
    pw.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.delete_subnet,
        subnet_id("vp", "nat2"),
    )
    pw.run(plsm.delete, pls.id)
    pw.run(vnm.delete_subnet, subnet_id("vp", "nat2"))
    assert pw.vnet().subnet("nat2") is None


# --- PROXY protocol (the relay's data path: tests/netns/test_proxy.py) -----------------------


def test_enable_proxy_protocol_is_stored_and_can_be_turned_off(pw: World) -> None:
    pls = pw.create_pls()
    assert pls.enable_proxy_protocol is False
    assert pw.update_pls(enable_proxy_protocol=True).enable_proxy_protocol is True
    assert pw.update_pls(enable_proxy_protocol=False).enable_proxy_protocol is False
