"""Issue 11, defect 3: one big virtual network PUT must not hold the global write lock.

What the body alone decides is checked before `ControlPlane.change` takes the store's
write lock (a refused body never takes it at all); what runs under the lock reads the
subnets' users with a number of queries that does not grow with the number of subnets.
The repository here is the real SQLite one, watched: `write()` records that it was
entered and whether it is held, and the engine counts the statements run under it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pl_world import S2, World, nic_id, subnet_id, vnet_id
from sqlalchemy import event

from privatelink.core import errors
from privatelink.core import network_interface as nicm
from privatelink.core import virtual_network as vnm
from privatelink.core.limits import Limits
from privatelink.core.network_interface import NicIpConfiguration
from privatelink.core.resource import Staged
from privatelink.service import ControlPlane
from privatelink.store.sql import SqlRepository


class WatchedRepository:
    """A real repository whose write lock is watched: entries, held or not, statements."""

    def __init__(self, inner: SqlRepository) -> None:
        self.inner = inner
        self.writes = 0
        self.held = False
        self.statements_held = 0
        event.listen(inner.engine, "before_cursor_execute", self._count)

    def _count(self, *_args: Any) -> None:
        if self.held:
            self.statements_held += 1

    @contextmanager
    def write(self) -> Iterator[Any]:
        self.writes += 1
        with self.inner.write() as uow:
            self.held = True
            try:
                yield uow
            finally:
                self.held = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def watched(world: World) -> WatchedRepository:
    return WatchedRepository(world.repo)


def plane(repo: WatchedRepository, **limits: int) -> ControlPlane:
    return ControlPlane(repo, Limits(**limits))  # type: ignore[arg-type]


def grid(count: int, name: str = "s") -> tuple[vnm.Subnet, ...]:
    """`count` disjoint /24 subnets in 10.0.0.0/8."""
    return tuple(vnm.Subnet(f"{name}{i}", f"10.{i // 256}.{i % 256}.0/24") for i in range(count))


def big_vnet(
    subnets: tuple[vnm.Subnet, ...], tags: dict[str, str] | None = None
) -> vnm.VirtualNetwork:
    return vnm.VirtualNetwork(
        id=vnet_id(),
        name="vp",
        location="eastus",
        tags=tags or {},
        address_prefixes=("10.0.0.0/8",),
        subnets=subnets,
    )


def test_the_vnet_workflows_are_staged() -> None:
    # ControlPlane.change can only run `check` outside the lock for a Staged workflow.
    assert isinstance(vnm.create_or_update, Staged)
    assert isinstance(vnm.create_or_update_subnet, Staged)


@pytest.mark.parametrize(
    ("subnets", "error"),
    [
        (grid(3001), errors.SubnetsPerVirtualNetworkLimitReached),
        ((*grid(2999), vnm.Subnet("dup", "10.0.7.128/25")), errors.SubnetRangesOverlap),
        ((*grid(10), vnm.Subnet("tiny", "10.9.0.0/30")), errors.SubnetTooSmall),
        ((*grid(10), vnm.Subnet("far", "192.168.0.0/24")), errors.SubnetOutsideAddressSpace),
    ],
)
def test_refused_body_never_takes_the_write_lock(
    watched: WatchedRepository, subnets: tuple[vnm.Subnet, ...], error: type[errors.ArmError]
) -> None:
    with pytest.raises(error):
        plane(watched).change(None, vnet_id(), "put", vnm.create_or_update, big_vnet(subnets))
    assert watched.writes == 0


def test_body_is_validated_once_and_outside_the_lock(
    watched: WatchedRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []  # for each validation: was the write lock held?
    real = vnm.validate_virtual_network

    def recording(vnet: vnm.VirtualNetwork, limits: Limits | None = None) -> None:
        seen.append(watched.held)
        real(vnet, limits)

    monkeypatch.setattr(vnm, "validate_virtual_network", recording)
    cp = plane(watched)
    cp.change(None, vnet_id(), "put", vnm.create_or_update, big_vnet(grid(3000)))
    assert seen == [False]
    assert watched.writes == 1
    # An update, and a one-subnet PUT (whose stored-state part checks only that subnet).
    cp.change(None, vnet_id(), "put", vnm.create_or_update, big_vnet(grid(3000), {"a": "b"}))
    cp.change(
        None,
        vnet_id(),
        "put",
        vnm.create_or_update_subnet,
        subnet_id("vp", "s5"),
        vnm.Subnet("s5", "10.0.5.0/24"),
    )
    assert seen == [False, False]
    with watched.read() as view:
        stored = view.get(vnet_id())
    assert isinstance(stored, vnm.VirtualNetwork) and len(stored.subnets) == 3000


def test_refused_subnet_body_never_takes_the_write_lock(watched: WatchedRepository) -> None:
    cp = plane(watched)
    for bad, error in [
        (vnm.Subnet("x", "10.0.0.0/30"), errors.SubnetTooSmall),
        (vnm.Subnet("x", "10.0.0.1/24"), errors.InvalidAddressPrefix),
        (vnm.Subnet("x", "10.0.0.0/24", "Maybe"), errors.InvalidRequestContent),
    ]:
        with pytest.raises(error):
            cp.change(
                None, vnet_id(), "put", vnm.create_or_update_subnet, subnet_id("vp", "x"), bad
            )
    assert watched.writes == 0


def _nic(name: str, subnet: str) -> nicm.NetworkInterface:
    return nicm.NetworkInterface(
        id=nic_id(name),
        name=name,
        location="eastus",
        ip_configurations=(NicIpConfiguration("ipc", subnet_id("vp", subnet)),),
    )


def _statements_of_update(make_world: Callable[..., World], count: int) -> int:
    """Statements run under the write lock by a PUT that re-sends a network of `count`
    subnets, three of them in use."""
    world = make_world()
    world.run(vnm.create_or_update, big_vnet(grid(count)))
    for i in (0, 1, count - 1):
        world.run(nicm.create_or_update, _nic(f"vm{i}", f"s{i}"))
    watched = WatchedRepository(world.repo)
    plane(watched).change(
        None, vnet_id(), "put", vnm.create_or_update, big_vnet(grid(count), {"v": "2"})
    )
    return watched.statements_held


def test_statements_under_the_lock_do_not_grow_with_subnets(
    make_world: Callable[..., World],
) -> None:
    # Before: one referrer query per subnet (3000 queries for 3000 subnets).
    small, large = _statements_of_update(make_world, 5), _statements_of_update(make_world, 400)
    assert small == large


def test_in_use_subnets_are_still_protected_by_the_bulk_query(world: World) -> None:
    world.run(vnm.create_or_update, big_vnet(grid(50)))
    world.run(nicm.create_or_update, _nic("vm", "s42"))
    without = tuple(s for s in grid(50) if s.name != "s42")
    world.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.create_or_update,
        big_vnet(without),
    )
    moved = tuple(vnm.Subnet("s42", "10.200.0.0/24") if s.name == "s42" else s for s in grid(50))
    world.refuse(
        errors.InUseSubnetCannotBeUpdated,
        "InUseSubnetCannotBeUpdated",
        400,
        vnm.create_or_update,
        big_vnet(moved),
    )
    world.refuse(
        errors.InUseSubnetCannotBeDeleted, "InUseSubnetCannotBeDeleted", 400, vnm.delete, vnet_id()
    )
    # Same prefix written differently (a zero-padded length) is the same subnet.
    same = tuple(vnm.Subnet("s42", "10.0.42.0/024") if s.name == "s42" else s for s in grid(50))
    world.run(vnm.create_or_update, big_vnet(same))


def test_users_by_subnet_matches_one_query_per_subnet(world: World) -> None:
    world.run(vnm.create_or_update, big_vnet(grid(20)))
    world.run(nicm.create_or_update, _nic("a", "s3"))
    world.run(nicm.create_or_update, _nic("b", "s3"))
    world.run(nicm.create_or_update, _nic("c", "s17"))
    # Another network whose name starts like this one's must not leak in.
    other = vnm.VirtualNetwork(
        id=vnet_id("vp_x"),
        name="vp_x",
        location="eastus",
        address_prefixes=("10.0.0.0/8",),
        subnets=(vnm.Subnet("s3", "10.0.3.0/24"),),
    )
    world.run(vnm.create_or_update, other)
    world.run(
        nicm.create_or_update,
        nicm.NetworkInterface(
            id=nic_id("d"),
            name="d",
            location="eastus",
            ip_configurations=(NicIpConfiguration("ipc", f"{vnet_id('vp_x')}/subnets/s3"),),
        ),
    )
    with world.repo.read() as view:
        vnet = world.vnet()
        bulk = vnm.users_by_subnet(view, vnet)
        for s in vnet.subnets:
            one = [r.id for r in vnm.subnet_users(view, vnet.subnet_id(s.name))]
            assert [r.id for r in bulk.get(vnet.subnet_id(s.name).lower(), [])] == one
    assert sorted(bulk) == [subnet_id("vp", "s17").lower(), subnet_id("vp", "s3").lower()]


# --- one subnet at a time ----------------------------------------------------------------------


def test_subnet_put_respects_the_subnet_limit(make_world: Callable[..., World]) -> None:
    world = make_world(subnets_per_vnet=3)
    world.run(vnm.create_or_update, big_vnet(grid(3)))
    refused = world.refuse(
        errors.SubnetsPerVirtualNetworkLimitReached,
        "SubnetsPerVirtualNetworkLimitReached",
        400,
        vnm.create_or_update_subnet,
        subnet_id("vp", "s3"),
        vnm.Subnet("s3", "10.0.3.0/24"),
    )
    assert "4 subnets" in refused.message and "3" in refused.message
    # Replacing one of the three is no new subnet.
    world.run(vnm.create_or_update_subnet, subnet_id("vp", "S2"), vnm.Subnet("x", "10.0.9.0/24"))
    assert [(s.name, s.address_prefix) for s in world.vnet().subnets] == [
        ("s0", "10.0.0.0/24"),
        ("s1", "10.0.1.0/24"),
        ("s2", "10.0.9.0/24"),
    ]


def test_subnet_put_checks_against_the_stored_others(world: World) -> None:
    world.run(vnm.create_or_update, big_vnet(grid(300)))
    refused = world.refuse(
        errors.SubnetRangesOverlap,
        "NetcfgSubnetRangesOverlap",
        400,
        vnm.create_or_update_subnet,
        subnet_id("vp", "new"),
        vnm.Subnet("new", "10.1.0.0/23"),  # holds s256 and s257
    )
    assert refused.fields["other"] == "s256"
    world.refuse(
        errors.SubnetOutsideAddressSpace,
        "NetcfgSubnetRangeOutsideVnet",
        400,
        vnm.create_or_update_subnet,
        subnet_id("vp", "new"),
        vnm.Subnet("new", "11.0.0.0/24"),
    )
    # A subnet may be re-sent with its own prefix (it does not overlap itself).
    world.run(vnm.create_or_update_subnet, subnet_id("vp", "s7"), vnm.Subnet("s7", "10.0.7.0/24"))
    world.run(vnm.create_or_update_subnet, subnet_id("vp", "new"), vnm.Subnet("n", "10.2.0.0/24"))
    assert world.vnet().subnets[-1] == vnm.Subnet("new", "10.2.0.0/24")
    assert len(world.vnet().subnets) == 301


def test_subnet_put_keeps_in_use_rules(world: World) -> None:
    world.run(vnm.create_or_update, big_vnet(grid(10)))
    world.run(nicm.create_or_update, _nic("vm", "s4"))
    world.refuse(
        errors.InUseSubnetCannotBeUpdated,
        "InUseSubnetCannotBeUpdated",
        400,
        vnm.create_or_update_subnet,
        subnet_id("vp", "s4"),
        vnm.Subnet("s4", "10.0.4.0/25"),
    )
    world.run(
        vnm.create_or_update_subnet,
        subnet_id("vp", "s4"),
        vnm.Subnet("s4", "10.0.4.0/24", private_endpoint_network_policies="enabled"),
    )
    assert world.vnet().subnet("s4") == vnm.Subnet(
        "s4", "10.0.4.0/24", private_endpoint_network_policies=vnm.ENABLED
    )


def test_rendering_a_network_reads_all_subnet_users_at_once(
    make_world: Callable[..., World],
) -> None:
    # The PUT's answer (and GET, list) renders every subnet with its users: one query
    # for all of them, not one per subnet.
    from privatelink.api.virtual_network import render

    def statements(count: int) -> tuple[int, dict[str, Any]]:
        world = make_world()
        world.run(vnm.create_or_update, big_vnet(grid(count)))
        world.run(nicm.create_or_update, _nic("vm", "s1"))
        counted = WatchedRepository(world.repo)
        with world.repo.read() as view:
            vnet = world.vnet()
            counted.held = True
            body = render(view, vnet)
            counted.held = False
        return counted.statements_held, body

    (small, _), (large, body) = statements(5), statements(300)
    assert small == large
    subnets = body["properties"]["subnets"]
    assert len(subnets) == 300
    assert subnets[1]["properties"]["ipConfigurations"] == [
        {"id": f"{nic_id('vm')}/ipConfigurations/ipc"}
    ]
    assert "ipConfigurations" not in subnets[0]["properties"]


def _reference_subnet_json(
    view: Any, vnet: vnm.VirtualNetwork, subnet: vnm.Subnet
) -> dict[str, Any]:
    """The subnet as the wire model renders it (what render_subnet did through pydantic)."""
    from privatelink.api import arm
    from privatelink.api.arm import SubResource
    from privatelink.api.virtual_network import SUBNET_TYPE, SubnetProperties, SubnetWire

    sid = vnet.subnet_id(subnet.name)
    configs: list[SubResource] = []
    endpoints: list[SubResource] = []
    for user in vnm.subnet_users(view, sid):
        if user.rid.is_type("privateEndpoints"):
            endpoints.append(SubResource(id=user.id))
        for c in getattr(user, "ip_configurations", ()):
            if c.subnet_id.lower() == sid.lower():
                configs.append(SubResource(id=f"{user.id}/ipConfigurations/{c.name}"))
        for fe in getattr(user, "frontends", ()):
            if fe.subnet_id.lower() == sid.lower():
                configs.append(SubResource(id=f"{user.id}/frontendIPConfigurations/{fe.name}"))
    return arm.dump(
        SubnetWire(
            id=sid,
            name=subnet.name,
            type=SUBNET_TYPE,
            etag=vnet.etag,
            properties=SubnetProperties(
                address_prefix=subnet.address_prefix,
                private_link_service_network_policies=subnet.private_link_service_network_policies,
                private_endpoint_network_policies=subnet.private_endpoint_network_policies,
                provisioning_state=vnet.provisioning_state,
                ip_configurations=configs or None,
                private_endpoints=endpoints or None,
            ),
        )
    )


def test_subnets_render_as_the_wire_model_does(service_world: World) -> None:
    # render_subnet builds plain dicts for speed; they must be the wire model's JSON, key
    # order included, for subnets with NICs, load balancer frontends, PLS NAT IPs and
    # private endpoints, and for unused ones.
    from privatelink.api.virtual_network import render_subnet, render_subnets

    service_world.create_pe(service_world.pls().alias)
    service_world.run(nicm.create_or_update, _nic("vm", "be"))
    with service_world.repo.read() as view:
        for vnet in (service_world.vnet(), service_world.vnet("vc", S2)):
            bulk = render_subnets(view, vnet)
            for subnet, got in zip(vnet.subnets, bulk, strict=True):
                want = _reference_subnet_json(view, vnet, subnet)
                assert json.dumps(got) == json.dumps(want)
                assert json.dumps(render_subnet(view, vnet, subnet)) == json.dumps(want)
        provider = render_subnets(view, service_world.vnet())
        consumer = render_subnets(view, service_world.vnet("vc", S2))
    assert {s["name"] for s in provider if "ipConfigurations" in s["properties"]} >= {"fe", "be"}
    assert all("privateEndpoints" in s["properties"] for s in consumer)
