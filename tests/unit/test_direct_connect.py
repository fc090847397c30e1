"""Direct Connect private link services (destinationIPAddress): the rules and their codes.

Azure documents the rules ("Configure Private Link service Direct Connect": 2 to 8 NAT IP
configurations in multiples of 2, a static destination, no private endpoint as the
destination, 10 per region per subscription, no migration); the codes are ours
(core/errors.py). Each refusal is checked with `World.refuse`: exactly that error, and
nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from pl_world import (
    OTHER_REGION,
    S1,
    S2,
    World,
    fe_id,
    make_pls,
    make_vnet,
    nat,
    nic_id,
    pls_id,
    subnet_id,
)

from privatelink.core import direct_connect as dc
from privatelink.core import errors
from privatelink.core import network_interface as nim
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm

MakeWorld = Callable[..., World]
TWO_NATS = (nat("nat1"), nat("nat2"))


def make_dc(
    name: str = "dc1",
    destination: str = "10.0.2.9",
    nats: tuple[plsm.NatIpConfiguration, ...] = TWO_NATS,
    **kwargs: Any,
) -> plsm.PrivateLinkService:
    """A Direct Connect service in `vp`: no frontends, a destination, two NAT IPs (the
    first primary, unless one is)."""
    if nats and not any(c.primary for c in nats):
        nats = (replace(nats[0], primary=True), *nats[1:])
    return replace(
        make_pls(name=name, frontends=(), nats=nats, **kwargs), destination_ip_address=destination
    )


def create_dc(w: World, **kwargs: Any) -> plsm.PrivateLinkService:
    desired = make_dc(**kwargs)
    w.run(pl.create_or_update_service, desired)
    return w.typed(desired.id, plsm.PrivateLinkService)


def refused(w: World, error: type[errors.ArmError], code: str, desired: Any) -> errors.ArmError:
    return w.refuse(error, code, 400, pl.create_or_update_service, desired)


def vm(w: World, name: str, subnet: str, ip: str) -> None:
    """A user NIC (a VM) holding a static address."""
    w.run(
        nim.create_or_update,
        nim.NetworkInterface(
            id=nic_id(name),
            name=name,
            location="eastus",
            ip_configurations=(
                nim.NicIpConfiguration(
                    "ip", subnet_id("vp", subnet), private_ip=ip, allocation="Static"
                ),
            ),
        ),
    )


@pytest.fixture
def pw(world: World) -> World:
    """Provider VNet `vp` (and load balancer `lb`), a VM at 10.0.2.9, a consumer VNet."""
    world.provider(n=2)
    world.consumer()
    vm(world, "server", "be", "10.0.2.9")
    return world


# --- creation ----------------------------------------------------------------------------------


def test_a_direct_connect_service_has_a_destination_and_no_load_balancer(pw: World) -> None:
    pls = create_dc(pw)
    assert pls.destination_ip_address == "10.0.2.9"
    assert pls.direct_connect and pls.frontend_ids == () and pls.load_balancer_key == ""
    assert [c.private_ip for c in pls.ip_configurations] == ["10.0.3.4", "10.0.3.5"]
    assert [c.primary for c in pls.ip_configurations] == [True, False]
    assert pls.alias.startswith("dc1.")
    assert pw.nic(pls.nic_id).managed_by == pls.id
    # A load-balanced service is none of this.
    lb_service = pw.create_pls(name="plain")
    assert not lb_service.direct_connect and lb_service.destination_ip_address == ""


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("10.0.2.9", "10.0.2.9"),
        ("10.0.2.10", "10.0.2.10"),  # nothing holds it yet: the VM may come later
        ("10.0.200.7", "10.0.200.7"),  # in the address space, in no subnet
    ],
)
def test_destinations_in_the_providers_network_are_accepted(
    pw: World, given: str, stored: str
) -> None:
    assert create_dc(pw, destination=given).destination_ip_address == stored


def test_the_same_approval_workflow_as_any_service(pw: World) -> None:
    pls = create_dc(pw, visibility=("*",))
    pe = pw.create_pe(pls.id)
    assert pe.connection.status == "Pending"
    pw.decide(pe, "Approved")
    assert pw.pe().connection.status == "Approved"
    auto = create_dc(pw, name="dc2", destination="10.0.2.10", auto_approval=(S2,))
    assert pw.create_pe(auto.alias, name="pe2").connection.status == "Approved"
    # Connections block deletion, as for any service.
    pw.refuse(
        errors.PrivateLinkServiceHasConnections,
        "PrivateLinkServiceHasPrivateEndpointConnections",
        409,
        plsm.delete,
        pls.id,
    )


# --- the destination -----------------------------------------------------------------------------


def test_a_destination_and_load_balancer_frontends_are_exclusive(pw: World) -> None:
    both = replace(make_dc(), frontend_ids=(fe_id("fe1"),))
    exc = refused(
        pw,
        errors.DestinationWithLoadBalancerFrontends,
        "PrivateLinkServiceDestinationIPAddressWithLoadBalancerFrontends",
        both,
    )
    assert "one or the other" in exc.message


def test_neither_a_destination_nor_frontends_is_refused(pw: World) -> None:
    exc = refused(
        pw,
        errors.PrivateLinkServiceFrontendRequired,
        "PrivateLinkServiceFrontendIpConfigurationRequired",
        make_dc(destination=""),
    )
    assert "destinationIPAddress" in exc.message


@pytest.mark.parametrize("value", ["nope", "10.0.2", "10.0.2.9/32", "10.0.2.256", " 10.0.2.9"])
def test_a_destination_must_be_an_ipv4_address(pw: World, value: str) -> None:
    refused(
        pw,
        errors.DestinationIPAddressInvalid,
        "PrivateLinkServiceDestinationIPAddressInvalid",
        make_dc(destination=value),
    )


def test_an_ipv6_destination_is_refused(pw: World) -> None:
    refused(
        pw,
        errors.PrivateLinkServiceIPv6NotSupported,
        "PrivateLinkServiceIPv6NotSupported",
        make_dc(destination="fd00::9"),
    )


@pytest.mark.parametrize("value", ["10.1.1.4", "192.168.0.1", "8.8.8.8"])
def test_a_destination_outside_the_providers_network_is_refused(pw: World, value: str) -> None:
    # 10.1.1.4 is in the consumer's network (another VNet, another subscription).
    exc = refused(
        pw,
        errors.DestinationNotInVirtualNetwork,
        "PrivateLinkServiceDestinationIPAddressNotInVnet",
        make_dc(destination=value),
    )
    assert pw.vnet().id in exc.message


@pytest.mark.parametrize("value", ["10.0.2.0", "10.0.2.3", "10.0.2.255"])
def test_a_reserved_address_is_refused(pw: World, value: str) -> None:
    refused(
        pw,
        errors.PrivateIPAddressInReservedRange,
        "PrivateIPAddressInReservedRange",
        make_dc(destination=value),
    )


def test_a_private_endpoint_cannot_be_the_destination(pw: World) -> None:
    target = pw.create_pls(name="other")
    pe = pw.create_pe(target.id, name="pe-in-vp", sub=S1, vnet="vp", subnet="be")
    pe_ip = pw.nic(pe.nic_id).primary_ip
    assert pe_ip is not None
    exc = refused(
        pw,
        errors.DestinationIsPrivateEndpoint,
        "PrivateLinkServiceDestinationIPAddressIsPrivateEndpoint",
        make_dc(destination=pe_ip),
    )
    assert pe.id in exc.message


def test_the_services_own_nat_ip_cannot_be_the_destination(pw: World) -> None:
    own = (nat("nat1", ip="10.0.3.20"), nat("nat2"))
    refused(
        pw,
        errors.DestinationIsNatIp,
        "PrivateLinkServiceDestinationIPAddressIsNatIp",
        make_dc(destination="10.0.3.20", nats=own),
    )
    # A dynamic NAT IP the destination would be given is refused too.
    refused(
        pw,
        errors.DestinationIsNatIp,
        "PrivateLinkServiceDestinationIPAddressIsNatIp",
        make_dc(destination="10.0.3.4"),
    )


def test_another_services_nat_ip_cannot_be_the_destination(pw: World) -> None:
    other = pw.create_pls(name="other")
    exc = refused(
        pw,
        errors.DestinationIsNatIp,
        "PrivateLinkServiceDestinationIPAddressIsNatIp",
        make_dc(destination=other.ip_configurations[0].private_ip or "", nats=(nat("a"), nat("b"))),
    )
    assert other.id in exc.message


def test_a_load_balancer_frontend_cannot_be_the_destination(pw: World) -> None:
    frontend_ip = pw.lb().frontends[0].private_ip
    assert frontend_ip is not None
    exc = refused(
        pw,
        errors.DestinationNotSupported,
        "PrivateLinkServiceDestinationIPAddressNotSupported",
        make_dc(destination=frontend_ip),
    )
    assert pw.lb().id in exc.message


# --- NAT IP configurations -----------------------------------------------------------------------


def _nats(n: int) -> tuple[plsm.NatIpConfiguration, ...]:
    return tuple(nat(f"n{i}", subnet="nat" if i % 2 else "nat2") for i in range(n))


@pytest.mark.parametrize("count", [2, 4, 6, 8])
def test_two_to_eight_nat_ips_in_multiples_of_two(pw: World, count: int) -> None:
    pls = create_dc(pw, nats=_nats(count))
    assert len(pls.ip_configurations) == count
    assert sum(bool(c.primary) for c in pls.ip_configurations) == 1


@pytest.mark.parametrize("count", [0, 1, 3, 5, 7, 9, 10])
def test_other_nat_ip_counts_are_refused(pw: World, count: int) -> None:
    exc = refused(
        pw,
        errors.DirectConnectNatIpConfigurationCount,
        "PrivateLinkServiceDirectConnectNatIpConfigurationCountInvalid",
        make_dc(nats=_nats(count)),
    )
    assert f"has {count} NAT" in exc.message and "multiples of 2" in exc.message


def test_nat_ips_in_one_network(pw: World) -> None:
    other = make_vnet(
        "vp2",
        prefixes=("10.5.0.0/16",),
        subnets=(
            vnm.Subnet("nat", "10.5.3.0/24", private_link_service_network_policies="Disabled"),
        ),
    )
    pw.run(vnm.create_or_update, other)
    refused(
        pw,
        errors.DirectConnectNatSubnetsInDifferentVirtualNetworks,
        "PrivateLinkServiceNatSubnetsInDifferentVnets",
        make_dc(nats=(nat("a"), nat("b", vnet="vp2"))),
    )


def test_the_network_must_be_in_the_services_region(pw: World) -> None:
    far = make_vnet(
        "far",
        location=OTHER_REGION,
        prefixes=("10.6.0.0/16",),
        subnets=(
            vnm.Subnet("nat", "10.6.3.0/24", private_link_service_network_policies="Disabled"),
        ),
    )
    pw.run(vnm.create_or_update, far)
    refused(
        pw,
        errors.PrivateLinkServiceLocationMismatch,
        "PrivateLinkServiceLocationMismatch",
        make_dc(destination="10.6.3.50", nats=(nat("a", vnet="far"), nat("b", vnet="far"))),
    )


def test_nat_subnets_need_network_policies_disabled(pw: World) -> None:
    refused(
        pw,
        errors.PrivateLinkServiceNetworkPoliciesEnabled,
        "PrivateLinkServiceNetworkPoliciesEnabledOnSubnet",
        make_dc(nats=(nat("a", subnet="be"), nat("b", subnet="be"))),
    )


# --- no migration, and updates ------------------------------------------------------------------


def test_a_load_balanced_service_cannot_become_direct_connect(pw: World) -> None:
    plain = pw.create_pls(name="plain", nats=(nat("nat1", primary=True), nat("nat2")))
    exc = refused(
        pw,
        errors.PrivateLinkServiceKindCannotChange,
        "PrivateLinkServiceDirectConnectMigrationNotSupported",
        replace(plain, frontend_ids=(), destination_ip_address="10.0.2.9"),
    )
    assert "uses a load balancer" in exc.message


def test_a_direct_connect_service_cannot_become_load_balanced(pw: World) -> None:
    pls = create_dc(pw)
    exc = refused(
        pw,
        errors.PrivateLinkServiceKindCannotChange,
        "PrivateLinkServiceDirectConnectMigrationNotSupported",
        replace(pls, frontend_ids=(fe_id("fe1"),), destination_ip_address=""),
    )
    assert "is a Direct Connect service" in exc.message


def test_an_update_without_a_destination_keeps_it(pw: World) -> None:
    """A client on an api-version before 2024-03-01 rewrites the service without it."""
    pls = create_dc(pw)
    pw.run(pl.create_or_update_service, replace(pls, destination_ip_address="", tags={"a": "b"}))
    after = pw.typed(pls.id, plsm.PrivateLinkService)
    assert after.destination_ip_address == "10.0.2.9" and after.tags == {"a": "b"}


def test_the_destination_may_change(pw: World) -> None:
    pls = create_dc(pw)
    pw.run(pl.create_or_update_service, replace(pls, destination_ip_address="10.0.2.10"))
    assert pw.typed(pls.id, plsm.PrivateLinkService).destination_ip_address == "10.0.2.10"


def test_proxy_protocol_is_refused_for_direct_connect(pw: World) -> None:
    exc = refused(
        pw,
        errors.UnsupportedProperty,
        "UnsupportedProperty",
        replace(make_dc(), enable_proxy_protocol=True),
    )
    assert "enableProxyProtocol" in exc.message


# --- the per-region limit ------------------------------------------------------------------------


def test_the_region_limit(make_world: MakeWorld) -> None:
    w = make_world(direct_connect_per_region=2)
    w.provider(n=1)
    vm(w, "server", "be", "10.0.2.9")
    create_dc(w, name="a", nats=(nat("a1"), nat("a2")))
    create_dc(w, name="b", nats=(nat("b1"), nat("b2")))
    exc = refused(
        w,
        errors.DirectConnectLimitReached,
        "PrivateLinkServiceDirectConnectLimitReached",
        make_dc(name="c", nats=(nat("c1"), nat("c2"))),
    )
    assert "2 Direct Connect" in exc.message and "eastus" in exc.message
    # Another region has its own count.
    far = make_vnet(
        "far",
        location=OTHER_REGION,
        prefixes=("10.6.0.0/16",),
        subnets=(
            vnm.Subnet("nat", "10.6.3.0/24", private_link_service_network_policies="Disabled"),
        ),
    )
    w.run(vnm.create_or_update, far)
    west = make_dc(
        name="west",
        location=OTHER_REGION,
        destination="10.6.3.50",
        nats=(nat("w1", vnet="far"), nat("w2", vnet="far")),
    )
    w.run(pl.create_or_update_service, west)
    # Load-balanced services do not count, updates of counted ones pass.
    w.create_pls(name="plain")
    w.run(pl.create_or_update_service, replace(w.pls("a"), tags={"x": "y"}))
    # Deleting one frees its place.
    w.run(plsm.delete, pls_id("a"))
    create_dc(w, name="c", nats=(nat("c1"), nat("c2")))


def test_the_default_region_limit_is_ten(make_world: MakeWorld) -> None:
    w = make_world()
    assert w.ctx.limits.direct_connect_per_region == 10
    w.provider(n=1)
    for i in range(10):
        create_dc(
            w, name=f"d{i}", nats=(nat(f"d{i}a", subnet="nat2"), nat(f"d{i}b", subnet="nat2"))
        )
    refused(
        w,
        errors.DirectConnectLimitReached,
        "PrivateLinkServiceDirectConnectLimitReached",
        make_dc(name="d10", nats=(nat("x"), nat("y"))),
    )


def test_region_keys() -> None:
    assert dc.region_key("ABC", "EastUS") == "abc/eastus"
    assert dc.references("", S1, "eastus") == []
    assert dc.references("10.0.0.9", S1, "eastus") == [("directconnect", f"{S1}/eastus")]
