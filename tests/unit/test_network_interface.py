"""Network interfaces: user NICs, and the read-only NICs of services and endpoints."""

from __future__ import annotations

import uuid
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pl_world import OTHER_REGION, S2, World, make_vnet, nic_id, pool_id, subnet_id

from privatelink.core import addressing, errors
from privatelink.core import network_interface as nicm
from privatelink.core import virtual_network as vnm
from privatelink.core.limits import Limits
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
    config = NicIpConfiguration("ipc", subnet_id("vc", "pe", S2), pool_ids=(pool_id("be1"),))
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
        (
            (),
            errors.NetworkInterfaceIpConfigurationInvalid,
            "InvalidNetworkInterfaceIpConfiguration",
        ),
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


# --- allocation through the store (property) ---------------------------------------------------

_SUBNETS = {"a": IPv4Network("10.0.0.0/29"), "b": IPv4Network("10.0.0.16/28")}
_REFUSALS = (
    errors.SubnetIsFull,
    errors.PrivateIPAddressIsAllocated,
    errors.PrivateIPAddressInReservedRange,
    errors.PrivateIPAddressNotInSubnet,
)

config_specs = st.tuples(st.sampled_from(sorted(_SUBNETS)), st.none() | st.integers(0, 15))
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"), st.integers(0, 3), st.lists(config_specs, min_size=1, max_size=2)
        ),
        st.tuples(st.just("delete"), st.integers(0, 3), st.just([])),
    ),
    min_size=1,
    max_size=8,
)


def _spec_nic(index: int, specs: list[tuple[str, int | None]]) -> nicm.NetworkInterface:
    configs = []
    for i, (subnet, offset) in enumerate(specs):
        ip = None if offset is None else str(_SUBNETS[subnet].network_address + offset)
        configs.append(
            NicIpConfiguration(
                f"c{i}",
                subnet_id("vp", subnet),
                private_ip=ip,
                allocation="Static" if ip else "Dynamic",
                primary=(i == 0),
            )
        )
    return replace(user_nic(f"n{index}"), ip_configurations=tuple(configs))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_store_allocation_invariants(tmp_path: Path, ops: list[tuple[str, int, list[Any]]]) -> None:
    w = World(tmp_path / uuid.uuid4().hex, Limits())
    try:
        w.run(
            vnm.create_or_update,
            make_vnet(subnets=tuple(vnm.Subnet(n, str(p)) for n, p in _SUBNETS.items())),
        )
        for op, index, specs in ops:
            if op == "delete":
                w.run(nicm.delete, nic_id(f"n{index}"))
            else:
                desired = _spec_nic(index, specs)
                before = w.snapshot()
                try:
                    w.run(nicm.create_or_update, desired)
                except errors.ArmError as exc:
                    assert isinstance(exc, _REFUSALS), exc
                    assert w.snapshot() == before
                else:
                    stored = w.nic(desired.id)
                    for want, got in zip(
                        desired.ip_configurations, stored.ip_configurations, strict=True
                    ):
                        if want.private_ip:
                            assert got.private_ip == want.private_ip
            # invariants over everything stored
            held: dict[str, dict[str, str]] = {name: {} for name in _SUBNETS}
            for i in range(4):
                nic = w.get(nic_id(f"n{i}"))
                if nic is None:
                    continue
                assert isinstance(nic, nicm.NetworkInterface)
                for config in nic.ip_configurations:
                    subnet = config.subnet_id.rsplit("/", 1)[-1]
                    net = _SUBNETS[subnet]
                    ip = IPv4Address(config.private_ip)
                    assert ip in net
                    assert not addressing.is_reserved(ip, net)
                    assert str(ip) not in held[subnet], f"{ip} given twice"
                    held[subnet][str(ip)] = nic.id
            for name in _SUBNETS:
                assert w.used_ips(subnet_id("vp", name)) == held[name]
    finally:
        w.dispose()
