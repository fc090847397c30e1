"""Network interfaces: user NICs, and the read-only NICs of services and endpoints."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pl_world import OTHER_REGION, S2, World, nic_id, pool_id, subnet_id

from privatelink.core import errors
from privatelink.core import network_interface as nicm
from privatelink.core.network_interface import NicIpConfiguration


def user_nic(name: str = "vm1", *configs: NicIpConfiguration) -> nicm.NetworkInterface:
    return nicm.NetworkInterface(
        id=nic_id(name),
        name=name,
        location="eastus",
        ip_configurations=configs or (NicIpConfiguration("ipc", subnet_id("vp", "be")),),
    )


# --- managed NICs -----------------------------------------------------------------------------


@pytest.fixture
def managed(service_world: World) -> World:
    service_world.create_pe(service_world.pls().alias)
    return service_world


def _managed_nics(w: World) -> list[nicm.NetworkInterface]:
    return [w.nic(w.pls().nic_id), w.nic(w.pe().nic_id)]


@pytest.mark.parametrize("which", [0, 1], ids=["pls-nic", "pe-nic"])
def test_managed_nic_cannot_be_updated(managed: World, which: int) -> None:
    nic = _managed_nics(managed)[which]
    assert nic.managed_by in (managed.pls().id, managed.pe().id)
    managed.refuse(
        errors.ManagedNetworkInterfaceIsReadOnly,
        "CannotModifyNetworkInterfaceManagedByService",
        400,
        nicm.create_or_update,
        replace(nic, tags={"mine": "now"}, managed_by=None),
    )


@pytest.mark.parametrize("which", [0, 1], ids=["pls-nic", "pe-nic"])
def test_managed_nic_cannot_be_deleted(managed: World, which: int) -> None:
    nic = _managed_nics(managed)[which]
    managed.refuse(
        errors.ManagedNetworkInterfaceIsReadOnly,
        "CannotModifyNetworkInterfaceManagedByService",
        400,
        nicm.delete,
        nic.id,
    )
    assert managed.get(nic.id) is not None


def test_managed_nic_address_cannot_be_taken_statically(managed: World) -> None:
    nat_ip = managed.pls().ip_configurations[0].private_ip
    managed.refuse(
        errors.PrivateIPAddressIsAllocated,
        "PrivateIPAddressIsAllocated",
        400,
        nicm.create_or_update,
        user_nic(
            "vm1",
            NicIpConfiguration(
                "ipc", subnet_id("vp", "nat"), private_ip=nat_ip, allocation="Static"
            ),
        ),
    )


# --- user NICs --------------------------------------------------------------------------------


def test_user_nic_lifecycle(service_world: World) -> None:
    service_world.run(nicm.create_or_update, user_nic())
    nic = service_world.nic(nic_id("vm1"))
    assert nic.managed_by is None
    assert nic.primary_ip == "10.0.2.4"
    assert nic.ip_configurations[0].primary is True
    service_world.run(nicm.create_or_update, replace(user_nic(), tags={"a": "b"}))
    assert service_world.nic(nic_id("vm1")).primary_ip == "10.0.2.4"
    service_world.run(nicm.delete, nic_id("vm1"))
    assert service_world.get(nic_id("vm1")) is None
    assert service_world.used_ips(subnet_id("vp", "be")) == {}


def test_user_nic_cannot_claim_to_be_managed(service_world: World) -> None:
    service_world.run(nicm.create_or_update, replace(user_nic(), managed_by="/somebody"))
    assert service_world.nic(nic_id("vm1")).managed_by is None
    service_world.run(nicm.delete, nic_id("vm1"))


def test_user_nic_joins_backend_pool(service_world: World) -> None:
    config = NicIpConfiguration("ipc", subnet_id("vp", "be"), pool_ids=(pool_id("be1").upper(),))
    service_world.run(nicm.create_or_update, user_nic("vm1", config))
    assert service_world.nic(nic_id("vm1")).ip_configurations[0].pool_ids == (pool_id("be1"),)


def test_user_nic_pool_in_another_vnet_refused(service_world: World) -> None:
    config = NicIpConfiguration(
        "ipc", subnet_id("vc", "pe", S2), pool_ids=(pool_id("be1"),)
    )
    nic = replace(user_nic("vm1", config), id=nic_id("vm1", S2))
    service_world.refuse(
        errors.BackendPoolVirtualNetworkMismatch,
        "BackendPoolVirtualNetworkMismatch",
        400,
        nicm.create_or_update,
        nic,
    )


@pytest.mark.parametrize(
    ("configs", "cls", "code"),
    [
        (
            (NicIpConfiguration("a", subnet_id("vp", "be"), ip_version="IPv6"),),
            errors.IPv6NotSupported,
            "IPv6NotSupported",
        ),
        (
            (
                NicIpConfiguration("a", subnet_id("vp", "be"), primary=True),
                NicIpConfiguration("b", subnet_id("vp", "be"), primary=True),
            ),
            errors.NetworkInterfaceIpConfigurationInvalid,
            "InvalidNetworkInterfaceIpConfiguration",
        ),
        ((), errors.NetworkInterfaceIpConfigurationInvalid, "InvalidNetworkInterfaceIpConfiguration"),
        (
            (NicIpConfiguration("a", subnet_id("vp", "missing")),),
            errors.InvalidResourceReference,
            "InvalidResourceReference",
        ),
    ],
)
def test_user_nic_refusals(
    service_world: World, configs: tuple[NicIpConfiguration, ...], cls: type, code: str
) -> None:
    nic = replace(user_nic(), ip_configurations=configs)
    service_world.refuse(cls, code, 400, nicm.create_or_update, nic)


def test_user_nic_location_cannot_change(service_world: World) -> None:
    service_world.run(nicm.create_or_update, user_nic())
    service_world.refuse(
        errors.ResourceLocationMismatch,
        "ResourceLocationMismatch",
        400,
        nicm.create_or_update,
        replace(user_nic(), location=OTHER_REGION),
    )
