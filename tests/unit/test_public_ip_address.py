"""Public IPs: the server's public range, allocation, rules, and public load balancers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from pl_world import (
    PROVIDER_SUBNETS,
    REGION,
    S1,
    S2,
    World,
    arm_id,
    fe_id,
    lb_id,
    make_lb,
    make_vnet,
    nat,
    nic_id,
    pe_id,
    pool_id,
    probe_id,
    subnet_id,
)

from privatelink.core import errors
from privatelink.core import load_balancer as lbm
from privatelink.core import network_interface as nim
from privatelink.core import private_endpoint as pem
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import public_ip_address as pipm
from privatelink.core import virtual_network as vnm
from privatelink.core.limits import Limits

MakeWorld = Callable[..., World]


def pip_id(name: str = "pip1", sub: str = S1) -> str:
    return arm_id(sub, "publicIPAddresses", name)


def make_pip(name: str = "pip1", sub: str = S1, **kw: object) -> pipm.PublicIPAddress:
    return pipm.PublicIPAddress(id=pip_id(name, sub), name=name, location=REGION, **kw)  # type: ignore[arg-type]


def create_pip(w: World, name: str = "pip1", sub: str = S1, **kw: object) -> pipm.PublicIPAddress:
    w.run(pipm.create_or_update, make_pip(name, sub, **kw))
    return w.typed(pip_id(name, sub), pipm.PublicIPAddress)


def public_lb(
    name: str = "plb",
    pips: tuple[str, ...] = ("pip1",),
    sku: str = lbm.STANDARD,
    pools: tuple[lbm.BackendPool, ...] = (lbm.BackendPool("be1"),),
) -> lbm.LoadBalancer:
    """A public load balancer: frontends fe1..feN on public IPs, one TCP rule on fe1."""
    frontends = tuple(
        lbm.Frontend(f"fe{i}", "", public_ip_id=pip_id(p)) for i, p in enumerate(pips, 1)
    )
    rule = lbm.Rule(
        "r1", "Tcp", 80, 8080, fe_id("fe1", name), (pool_id("be1", name),), probe_id("p", name)
    )
    return lbm.LoadBalancer(
        id=lb_id(name),
        name=name,
        location=REGION,
        sku=sku,
        frontends=frontends,
        pools=pools,
        probes=(lbm.Probe("p", "Tcp", 8080),),
        rules=(rule,),
    )


# --- the range ---------------------------------------------------------------------------------


def test_default_range_hosts_and_reserved_addresses() -> None:
    limits = Limits()
    assert limits.public_ip_range == "198.18.0.0/15"
    first, last = pipm.range_hosts(limits)
    assert (str(IPv4Address(first)), str(IPv4Address(last))) == (
        "198.18.0.1",
        "198.19.255.252",
    )
    assert pipm.reserved(limits) == ("198.19.255.253", "198.19.255.254")


def test_a_configured_range() -> None:
    limits = Limits.from_mapping({"public_ip_range": "203.0.113.0/24", "pe_per_pls": "7"})
    assert limits.pe_per_pls == 7
    assert pipm.reserved(limits) == ("203.0.113.253", "203.0.113.254")
    assert pipm.range_hosts(limits)[1] - pipm.range_hosts(limits)[0] + 1 == 252


@pytest.mark.parametrize("value", ["fd00::/8", "10.0.0.0/25", "10.0.0.1/16", "nonsense", ""])
def test_the_range_must_be_an_ipv4_network_of_a_24_or_larger(value: str) -> None:
    with pytest.raises(ValueError, match="public_ip_range"):
        Limits(public_ip_range=value)


def test_addresses_come_from_the_first_host_upward_unique_across_subscriptions(
    world: World,
) -> None:
    a = create_pip(world, "a", S1)
    b = create_pip(world, "b", S2)
    c = create_pip(world, "c", S1)
    assert (a.ip_address, b.ip_address, c.ip_address) == (
        "198.18.0.1",
        "198.18.0.2",
        "198.18.0.3",
    )
    assert a.resource_guid and a.provisioning_state == "Succeeded"
    with world.repo.read() as view:
        assert view.used_ips(pipm.RANGE_KEY) == {
            "198.18.0.1": a.id,
            "198.18.0.2": b.id,
            "198.18.0.3": c.id,
        }


def test_an_address_is_stable_and_a_freed_one_is_taken_again(world: World) -> None:
    a = create_pip(world, "a")
    create_pip(world, "b")
    # A PUT's ipAddress is ignored: the address is the one allocated.
    world.run(pipm.create_or_update, replace(make_pip("a"), ip_address="8.8.8.8", tags={"k": "v"}))
    again = world.typed(a.id, pipm.PublicIPAddress)
    assert again.ip_address == a.ip_address and again.tags == {"k": "v"}
    world.run(pipm.delete, a.id)
    assert create_pip(world, "c").ip_address == "198.18.0.1"


def test_the_range_runs_out_before_its_reserved_addresses(make_world: MakeWorld) -> None:
    w = make_world()
    w.ctx = replace(w.ctx, limits=Limits(public_ip_range="203.0.113.0/24"))
    addresses = [create_pip(w, f"p{i}").ip_address for i in range(252)]
    assert addresses[0] == "203.0.113.1" and addresses[-1] == "203.0.113.252"
    assert not set(addresses) & set(pipm.reserved(w.ctx.limits))
    w.refuse(
        errors.PublicIPCountLimitReached,
        "PublicIPCountLimitReached",
        400,
        pipm.create_or_update,
        make_pip("one-more"),
    )


# --- the rules of a public IP ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        (
            {"sku": "Basic"},
            errors.BasicSkuPublicIPAddressesRetired,
            "IPv4BasicSkuPublicIpCountLimitReached",
        ),
        (
            {"allocation": "Dynamic"},
            errors.StandardSkuPublicIPAddressesMustBeStatic,
            "StandardSkuPublicIPAddressesMustBeStatic",
        ),
        ({"ip_version": "IPv6"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"sku_tier": "Global"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"sku": "Premium"}, errors.InvalidRequestContent, "InvalidRequestContent"),
        (
            {"idle_timeout_in_minutes": 3},
            errors.InvalidPublicIPIdleTimeout,
            "PublicIPIdleTimeoutOutOfRange",
        ),
        (
            {"idle_timeout_in_minutes": 31},
            errors.InvalidPublicIPIdleTimeout,
            "PublicIPIdleTimeoutOutOfRange",
        ),
        ({"zones": ("4",)}, errors.InvalidRequestContent, "InvalidRequestContent"),
        ({"location": ""}, errors.LocationRequired, "LocationRequired"),
    ],
)
def test_what_a_public_ip_cannot_be(
    world: World, changes: dict[str, object], error: type[errors.ArmError], code: str
) -> None:
    world.refuse(error, code, 400, pipm.create_or_update, replace(make_pip(), **changes))  # type: ignore[arg-type]


def test_spellings_are_canonical_and_zones_stay(world: World) -> None:
    pip = create_pip(
        world, sku="standard", allocation="static", ip_version="ipv4", zones=("2", "1", "2")
    )
    assert (pip.sku, pip.allocation, pip.ip_version, pip.zones) == (
        "Standard",
        "Static",
        "IPv4",
        ("1", "2"),
    )
    world.refuse(
        errors.PublicIPAddressPropertyCannotChange,
        "PublicIPAddressPropertyCannotChange",
        400,
        pipm.create_or_update,
        make_pip(zones=("3",)),
    )
    world.refuse(
        errors.ResourceLocationMismatch,
        "ResourceLocationMismatch",
        400,
        pipm.create_or_update,
        replace(make_pip(zones=("1", "2")), location="westus"),
    )


# --- public load balancers -----------------------------------------------------------------------


@pytest.fixture
def public(world: World) -> World:
    """Provider VNet `vp` with a GatewaySubnet, public IPs pip1..pip3, and `plb` on pip1."""
    subnets = (*PROVIDER_SUBNETS, vnm.Subnet("GatewaySubnet", "10.0.255.0/27"))
    world.run(vnm.create_or_update, make_vnet(subnets=subnets))
    for name in ("pip1", "pip2", "pip3"):
        create_pip(world, name)
    world.run(pl.create_or_update_load_balancer, public_lb())
    return world


def test_a_public_frontend_takes_its_public_ips_address(public: World) -> None:
    lb = public.lb("plb")
    (fe,) = lb.frontends
    pip = public.typed(pip_id("pip1"), pipm.PublicIPAddress)
    assert fe.is_public and lb.is_public
    assert (fe.subnet_id, fe.private_ip, fe.public_ip_id) == ("", None, pip.id)
    assert fe.address == fe.public_ip_address == pip.ip_address == "198.18.0.1"
    with public.repo.read() as view:
        assert pipm.user_of(view, pip) == fe_id("fe1", "plb")
        assert lbm.vnet_of(lb) is None
    # A public frontend holds no address in any subnet.
    assert public.used_ips(subnet_id("vp", "fe")) == {}


def test_a_public_ip_in_use_cannot_be_deleted_until_its_frontend_goes(public: World) -> None:
    exc = public.refuse(
        errors.PublicIPAddressCannotBeDeleted,
        "PublicIPAddressCannotBeDeleted",
        400,
        pipm.delete,
        pip_id("pip1"),
    )
    assert fe_id("fe1", "plb") in exc.message
    public.run(pl.create_or_update_load_balancer, public_lb(pips=("pip2",)))
    public.run(pipm.delete, pip_id("pip1"))
    assert public.get(pip_id("pip1")) is None


def test_a_public_ip_serves_one_frontend(public: World) -> None:
    public.refuse(
        errors.PublicIPAddressInUse,
        "PublicIPAddressInUse",
        400,
        pl.create_or_update_load_balancer,
        public_lb("other"),
    )
    public.refuse(
        errors.PublicIPAddressInUse,
        "PublicIPAddressInUse",
        400,
        pl.create_or_update_load_balancer,
        public_lb(pips=("pip2", "pip2")),
    )


def test_frontends_are_all_public_or_all_private(public: World) -> None:
    mixed = replace(
        public_lb(),
        frontends=(
            lbm.Frontend("fe1", "", public_ip_id=pip_id("pip2")),
            lbm.Frontend("fe2", subnet_id("vp", "fe")),
        ),
    )
    public.refuse(
        errors.LoadBalancerMixesPublicAndPrivateFrontends,
        "LoadBalancerCannotHavePublicAndPrivateFrontendIPConfigurations",
        400,
        pl.create_or_update_load_balancer,
        mixed,
    )
    both = replace(
        public_lb(),
        frontends=(lbm.Frontend("fe1", subnet_id("vp", "fe"), public_ip_id=pip_id("pip2")),),
    )
    public.refuse(
        errors.FrontendIPConfigHasBothSubnetAndPublicIP,
        "FrontendIPConfigHasBothSubnetAndPublicIP",
        400,
        pl.create_or_update_load_balancer,
        both,
    )
    neither = replace(public_lb(), frontends=(lbm.Frontend("fe1", ""),))
    public.refuse(
        errors.FrontendIPConfigHasNoSubnetOrPublicIP,
        "FrontendIPConfigHasNoSubnetOrPublicIP",
        400,
        pl.create_or_update_load_balancer,
        neither,
    )


def test_a_public_frontends_ip_must_exist_match_the_sku_and_the_region(public: World) -> None:
    public.refuse(
        errors.InvalidResourceReference,
        "InvalidResourceReference",
        400,
        pl.create_or_update_load_balancer,
        public_lb("other", pips=("missing",)),
    )
    public.refuse(
        errors.PublicIPAndLBSkuDoNotMatch,
        "PublicIPAndLBSkuDoNotMatch",
        400,
        pl.create_or_update_load_balancer,
        public_lb("basic", pips=("pip2",), sku=lbm.BASIC),
    )
    public.run(pipm.create_or_update, replace(make_pip("west"), location="westus"))
    public.refuse(
        errors.ResourceLocationMismatch,
        "ResourceLocationMismatch",
        400,
        pl.create_or_update_load_balancer,
        public_lb("other", pips=("west",)),
    )


def test_a_private_link_service_sits_on_a_public_frontend(public: World) -> None:
    service = plsm.PrivateLinkService(
        id=arm_id(S1, "privateLinkServices", "ppls"),
        name="ppls",
        location=REGION,
        frontend_ids=(fe_id("fe1", "plb"),),
        ip_configurations=(nat(),),
        visibility=("*",),
    )
    public.run(pl.create_or_update_service, service)
    stored = public.typed(service.id, plsm.PrivateLinkService)
    assert stored.ip_configurations[0].private_ip == "10.0.3.4"
    # Its network is now the load balancer's backend: a pool member elsewhere is refused.
    public.run(
        vnm.create_or_update,
        make_vnet("vx", prefixes=("10.9.0.0/16",), subnets=(vnm.Subnet("a", "10.9.1.0/24"),)),
    )
    nic = nim.NetworkInterface(
        id=nic_id("n1"),
        name="n1",
        location=REGION,
        ip_configurations=(
            nim.NicIpConfiguration(
                "ip1", subnet_id("vx", "a"), primary=True, pool_ids=(pool_id("be1", "plb"),)
            ),
        ),
    )
    public.refuse(
        errors.BackendPoolVirtualNetworkMismatch,
        "BackendPoolVirtualNetworkMismatch",
        400,
        nim.create_or_update,
        nic,
    )
    member = replace(
        nic,
        ip_configurations=(replace(nic.ip_configurations[0], subnet_id=subnet_id("vp", "be")),),
    )
    public.run(nim.create_or_update, member)
    # The load balancer's PUT re-checks the service on it.
    public.run(pl.create_or_update_load_balancer, replace(public.lb("plb"), tags={"t": "1"}))


def test_a_public_load_balancers_nat_ips_share_one_network(public: World) -> None:
    public.run(
        vnm.create_or_update,
        make_vnet(
            "vx",
            prefixes=("10.9.0.0/16",),
            subnets=(
                vnm.Subnet("n", "10.9.1.0/24", private_link_service_network_policies="Disabled"),
            ),
        ),
    )
    service = plsm.PrivateLinkService(
        id=arm_id(S1, "privateLinkServices", "ppls"),
        name="ppls",
        location=REGION,
        frontend_ids=(fe_id("fe1", "plb"),),
        ip_configurations=(nat("a", primary=True), nat("b", subnet="n", vnet="vx")),
    )
    public.refuse(
        errors.NatSubnetNotInLoadBalancerVirtualNetwork,
        "PrivateLinkServiceNatSubnetNotInLoadBalancerVnet",
        400,
        pl.create_or_update_service,
        service,
    )


# --- GatewaySubnet is the gateway's --------------------------------------------------------------


def test_nothing_but_a_gateway_takes_an_address_in_gateway_subnet(public: World) -> None:
    gw = subnet_id("vp", "GatewaySubnet")
    code = "GatewaySubnet"
    frontend = make_lb("ilb", subnet="GatewaySubnet", n=1)
    public.refuse(
        errors.SubnetIsGatewaySubnet, code, 400, pl.create_or_update_load_balancer, frontend
    )
    nic = nim.NetworkInterface(
        id=nic_id("n1"),
        name="n1",
        location=REGION,
        ip_configurations=(nim.NicIpConfiguration("ip1", gw),),
    )
    public.refuse(errors.SubnetIsGatewaySubnet, code, 400, nim.create_or_update, nic)
    service = plsm.PrivateLinkService(
        id=arm_id(S1, "privateLinkServices", "ppls"),
        name="ppls",
        location=REGION,
        frontend_ids=(fe_id("fe1", "plb"),),
        ip_configurations=(nat(subnet="GatewaySubnet"),),
    )
    public.refuse(errors.SubnetIsGatewaySubnet, code, 400, pl.create_or_update_service, service)
    endpoint = pem.PrivateEndpoint(
        id=pe_id("pe1", S1),
        name="pe1",
        location=REGION,
        subnet_id=gw,
        connections=(pem.PrivateLinkServiceConnection("c1", "/nowhere"),),
    )
    public.refuse(errors.SubnetIsGatewaySubnet, code, 400, pl.create_or_update_endpoint, endpoint)
