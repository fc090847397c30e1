"""Virtual networks and subnets: address space, subnet rules, subnets in use."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pl_world import (
    PROVIDER_SUBNETS,
    S1,
    World,
    make_vnet,
    nic_id,
    subnet_id,
    vnet_id,
)

from privatelink.core import errors
from privatelink.core import load_balancer as lbm
from privatelink.core import network_interface as nicm
from privatelink.core import private_link as pl
from privatelink.core import virtual_network as vnm
from privatelink.core.network_interface import NicIpConfiguration


def _user_nic(name: str = "vm1", subnet: str = "be") -> nicm.NetworkInterface:
    return nicm.NetworkInterface(
        id=nic_id(name),
        name=name,
        location="eastus",
        ip_configurations=(NicIpConfiguration("ipc", subnet_id("vp", subnet)),),
    )


def test_create_normalizes_location_and_keeps_subnets(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet(location="East US"))
    vnet = world.vnet()
    assert vnet.location == "eastus"
    assert [s.name for s in vnet.subnets] == ["fe", "be", "nat", "nat2"]
    assert vnet.subnet("NAT") == PROVIDER_SUBNETS[2]


@pytest.mark.parametrize("prefix", ["10.0.0.1/16", "10.0.0.0", "10.0.0.0/40", "ten/8"])
def test_invalid_address_prefix(world: World, prefix: str) -> None:
    world.refuse(
        errors.InvalidAddressPrefix,
        "InvalidAddressPrefixFormat",
        400,
        vnm.create_or_update,
        make_vnet(prefixes=(prefix,), subnets=()),
    )
    assert world.get(vnet_id()) is None


def test_ipv6_address_space_refused(world: World) -> None:
    world.refuse(
        errors.IPv6NotSupported,
        "IPv6NotSupported",
        400,
        vnm.create_or_update,
        make_vnet(prefixes=("10.0.0.0/16", "fd00::/48"), subnets=()),
    )


def test_ipv6_subnet_refused(world: World) -> None:
    world.refuse(
        errors.IPv6NotSupported,
        "IPv6NotSupported",
        400,
        vnm.create_or_update,
        make_vnet(subnets=(vnm.Subnet("s6", "fd00::/64"),)),
    )


def test_address_space_required(world: World) -> None:
    world.refuse(
        errors.InvalidRequestContent,
        "InvalidRequestContent",
        400,
        vnm.create_or_update,
        make_vnet(prefixes=(), subnets=()),
    )


@pytest.mark.parametrize(
    "prefixes",
    [("10.0.0.0/16", "10.0.128.0/17"), ("10.0.0.0/8", "10.1.0.0/16"), ("10.0.0.0/16",) * 2],
)
def test_overlapping_address_prefixes_refused(world: World, prefixes: tuple[str, ...]) -> None:
    world.refuse(
        errors.AddressSpacesOverlap,
        "VnetAddressSpacesOverlap",
        400,
        vnm.create_or_update,
        make_vnet(prefixes=prefixes, subnets=()),
    )


def test_disjoint_address_prefixes_accepted(world: World) -> None:
    vnet = make_vnet(
        prefixes=("10.0.0.0/16", "10.1.0.0/16"),
        subnets=(vnm.Subnet("a", "10.0.0.0/24"), vnm.Subnet("b", "10.1.0.0/24")),
    )
    world.run(vnm.create_or_update, vnet)
    assert world.vnet().address_prefixes == ("10.0.0.0/16", "10.1.0.0/16")


@pytest.mark.parametrize("prefix", ["10.1.0.0/24", "10.0.0.0/15", "192.168.0.0/29"])
def test_subnet_outside_address_space(world: World, prefix: str) -> None:
    world.refuse(
        errors.SubnetOutsideAddressSpace,
        "NetcfgSubnetRangeOutsideVnet",
        400,
        vnm.create_or_update,
        make_vnet(subnets=(vnm.Subnet("s", prefix),)),
    )


def test_subnet_spanning_two_address_prefixes_refused(world: World) -> None:
    world.refuse(
        errors.SubnetOutsideAddressSpace,
        "NetcfgSubnetRangeOutsideVnet",
        400,
        vnm.create_or_update,
        make_vnet(
            prefixes=("10.0.0.0/25", "10.0.0.128/25"), subnets=(vnm.Subnet("s", "10.0.0.0/24"),)
        ),
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("10.0.1.0/24", "10.0.1.0/24"),
        ("10.0.0.0/20", "10.0.1.0/24"),
        ("10.0.1.0/25", "10.0.1.64/26"),
    ],
)
def test_overlapping_subnets_refused(world: World, a: str, b: str) -> None:
    world.refuse(
        errors.SubnetRangesOverlap,
        "NetcfgSubnetRangesOverlap",
        400,
        vnm.create_or_update,
        make_vnet(subnets=(vnm.Subnet("a", a), vnm.Subnet("b", b))),
    )


@pytest.mark.parametrize("prefix", ["10.0.0.0/30", "10.0.0.0/31", "10.0.0.0/32"])
def test_subnet_smaller_than_29_refused(world: World, prefix: str) -> None:
    world.refuse(
        errors.SubnetTooSmall,
        "SubnetTooSmall",
        400,
        vnm.create_or_update,
        make_vnet(subnets=(vnm.Subnet("tiny", prefix),)),
    )


def test_subnet_of_29_accepted(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet(subnets=(vnm.Subnet("s", "10.0.0.8/29"),)))
    assert world.vnet().subnet("s") is not None


def test_subnet_prefix_with_host_bits_refused(world: World) -> None:
    world.refuse(
        errors.InvalidAddressPrefix,
        "InvalidAddressPrefixFormat",
        400,
        vnm.create_or_update,
        make_vnet(subnets=(vnm.Subnet("s", "10.0.1.5/24"),)),
    )


def test_duplicate_subnet_names_refused(world: World) -> None:
    world.refuse(
        errors.DuplicateResourceName,
        "DuplicateResourceName",
        400,
        vnm.create_or_update,
        make_vnet(subnets=(vnm.Subnet("s", "10.0.1.0/24"), vnm.Subnet("S", "10.0.2.0/24"))),
    )


def test_invalid_network_policy_refused(world: World) -> None:
    world.refuse(
        errors.InvalidRequestContent,
        "InvalidRequestContent",
        400,
        vnm.create_or_update,
        make_vnet(
            subnets=(vnm.Subnet("s", "10.0.1.0/24", private_link_service_network_policies="Maybe"),)
        ),
    )


def test_location_cannot_change(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet())
    world.refuse(
        errors.ResourceLocationMismatch,
        "ResourceLocationMismatch",
        400,
        vnm.create_or_update,
        make_vnet(location="westus"),
    )


def test_unused_subnet_can_be_reprefixed_and_removed(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet())
    reprefixed = tuple(
        replace(s, address_prefix="10.0.20.0/24") if s.name == "be" else s for s in PROVIDER_SUBNETS
    )
    world.run(vnm.create_or_update, make_vnet(subnets=reprefixed))
    assert world.vnet().subnet("be").address_prefix == "10.0.20.0/24"  # type: ignore[union-attr]
    world.run(vnm.delete_subnet, subnet_id("vp", "be"))
    assert world.vnet().subnet("be") is None


# --- subnets in use -------------------------------------------------------------------------


@pytest.fixture
def used_world(world: World) -> World:
    """`be` holds a user NIC, `fe` a load balancer frontend, `nat` a PLS NAT IP."""
    world.provider(n=1)
    world.run(nicm.create_or_update, _user_nic())
    world.create_pls()
    return world


@pytest.mark.parametrize("subnet", ["fe", "be", "nat"])
def test_subnet_in_use_cannot_be_removed_by_vnet_put(used_world: World, subnet: str) -> None:
    remaining = tuple(s for s in PROVIDER_SUBNETS if s.name != subnet)
    used_world.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.create_or_update,
        make_vnet(subnets=remaining),
    )


@pytest.mark.parametrize("subnet", ["fe", "be", "nat"])
def test_subnet_in_use_cannot_be_deleted(used_world: World, subnet: str) -> None:
    used_world.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.delete_subnet,
        subnet_id("vp", subnet),
    )


@pytest.mark.parametrize(
    ("subnet", "prefix"), [("fe", "10.0.1.0/25"), ("be", "10.0.2.128/25"), ("nat", "10.0.30.0/24")]
)
def test_subnet_in_use_cannot_be_reprefixed(used_world: World, subnet: str, prefix: str) -> None:
    changed = tuple(
        replace(s, address_prefix=prefix) if s.name == subnet else s for s in PROVIDER_SUBNETS
    )
    used_world.refuse(
        errors.InUseSubnetCannotBeUpdated,
        "InUseSubnetCannotBeUpdated",
        400,
        vnm.create_or_update,
        make_vnet(subnets=changed),
    )


def test_subnet_in_use_cannot_be_reprefixed_via_subnet_put(used_world: World) -> None:
    used_world.refuse(
        errors.InUseSubnetCannotBeUpdated,
        "InUseSubnetCannotBeUpdated",
        400,
        vnm.create_or_update_subnet,
        subnet_id("vp", "be"),
        vnm.Subnet("be", "10.0.2.0/25"),
    )


def test_subnet_in_use_by_private_endpoint_cannot_be_deleted(service_world: World) -> None:
    service_world.create_pe(service_world.pls().alias)
    service_world.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.delete_subnet,
        subnet_id("vc", "pe", "22222222-2222-4222-8222-222222222222"),
    )


def test_vnet_with_subnet_in_use_cannot_be_deleted(used_world: World) -> None:
    used_world.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.delete,
        vnet_id(),
    )


def test_address_space_cannot_shrink_away_from_used_subnet(used_world: World) -> None:
    used_world.refuse(
        errors.SubnetOutsideAddressSpace,
        "NetcfgSubnetRangeOutsideVnet",
        400,
        vnm.create_or_update,
        make_vnet(prefixes=("10.0.0.0/24",)),
    )


def test_used_subnet_may_keep_its_prefix_on_update(used_world: World) -> None:
    changed = (*PROVIDER_SUBNETS, vnm.Subnet("extra", "10.0.9.0/24"))
    used_world.run(vnm.create_or_update, make_vnet(subnets=changed, location="East US"))
    assert used_world.vnet().subnet("extra") is not None


def test_subnet_freed_after_user_is_gone(used_world: World) -> None:
    used_world.run(nicm.delete, nic_id("vm1"))
    used_world.run(vnm.delete_subnet, subnet_id("vp", "be"))
    assert used_world.vnet().subnet("be") is None


def test_vnet_without_users_can_be_deleted(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet())
    world.run(vnm.delete, vnet_id())
    assert world.get(vnet_id()) is None


def test_subnet_put_on_missing_vnet_is_404(world: World) -> None:
    world.refuse(
        errors.ParentResourceNotFound,
        "ParentResourceNotFound",
        404,
        vnm.create_or_update_subnet,
        subnet_id("nope", "s"),
        vnm.Subnet("s", "10.0.0.0/24"),
    )


def test_get_missing_subnet_is_404(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet())
    with world.repo.read() as view, pytest.raises(errors.ArmError) as exc:
        vnm.get_subnet(view, subnet_id("vp", "missing"))
    assert type(exc.value) is errors.ResourceNotFound
    assert (exc.value.code, exc.value.status) == ("ResourceNotFound", 404)


def test_subnet_put_validates_like_vnet_put(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet())
    world.refuse(
        errors.SubnetRangesOverlap,
        "NetcfgSubnetRangesOverlap",
        400,
        vnm.create_or_update_subnet,
        subnet_id("vp", "new"),
        vnm.Subnet("new", "10.0.1.128/25"),
    )
    world.refuse(
        errors.SubnetTooSmall,
        "SubnetTooSmall",
        400,
        vnm.create_or_update_subnet,
        subnet_id("vp", "new"),
        vnm.Subnet("new", "10.0.9.0/30"),
    )


def test_lb_frontend_makes_subnet_in_use(world: World) -> None:
    world.run(vnm.create_or_update, make_vnet())
    world.run(
        pl.create_or_update_load_balancer,
        lbm.LoadBalancer(
            id=f"/subscriptions/{S1}/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/x",
            name="x",
            location="eastus",
            frontends=(lbm.Frontend("f", subnet_id("vp", "nat2")),),
        ),
    )
    world.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.delete_subnet,
        subnet_id("vp", "nat2"),
    )
