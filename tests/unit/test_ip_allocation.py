"""Dynamic allocation through the store's (subnet, num) index instead of every address.

The allocator asks the store for the holder of one address and for the lowest free
one; it must give exactly what `addressing.allocate` gives over the whole used set.
"""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pl_world import World, make_vnet, nic_id, subnet_id
from sqlalchemy import Column, MetaData, String, Table, create_engine, inspect, select, update

from privatelink.core import addressing, errors
from privatelink.core import network_interface as nicm
from privatelink.core import virtual_network as vnm
from privatelink.core.ip_configuration import DYNAMIC, STATIC, Allocator
from privatelink.core.limits import Limits
from privatelink.core.network_interface import NetworkInterface, NicIpConfiguration
from privatelink.core.resource import Changes
from privatelink.store.sql import SqlRepository, ips

SMALL = IPv4Network("10.0.5.0/27")
NEXT = IPv4Network("10.0.5.32/27")  # a neighbour whose rows must never count
SUBNETS = (vnm.Subnet("small", str(SMALL)), vnm.Subnet("next", str(NEXT)))


def _holder_nic(name: str, subnet: str, addresses: list[str]) -> NetworkInterface:
    """A NIC holding these addresses (stored as is: the workflows' checks are skipped)."""
    return NetworkInterface(
        id=nic_id(name),
        name=name,
        location="eastus",
        ip_configurations=tuple(
            NicIpConfiguration(f"c{i}", subnet_id("vp", subnet), private_ip=ip, allocation=STATIC)
            for i, ip in enumerate(addresses)
        ),
    )


def _small_world(tmp_path: Path) -> World:
    w = World(tmp_path / uuid.uuid4().hex, Limits())
    w.run(vnm.create_or_update, make_vnet(subnets=SUBNETS))
    return w


def _config(name: str, ip: str | None = None) -> NicIpConfiguration:
    return NicIpConfiguration(
        name, subnet_id("vp", "small"), private_ip=ip, allocation=STATIC if ip else DYNAMIC
    )


# --- the allocator gives what a walk over every address gives -----------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    held=st.one_of(
        st.sets(st.integers(0, 31)),
        # Dense from the start with a gap or two: allocation's usual shape, and the edges.
        st.builds(
            lambda n, gaps: set(range(n)) - gaps,
            st.integers(0, 32) | st.integers(28, 32),  # often nearly full
            st.sets(st.integers(0, 31), max_size=2),
        ),
    ),
    neighbour=st.sets(st.integers(0, 31)),
    static=st.lists(st.integers(4, 30), unique=True, max_size=6),
    dynamic=st.integers(0, 4),
)
def test_allocator_matches_a_walk_over_every_address(
    tmp_path: Path, held: set[int], neighbour: set[int], static: list[int], dynamic: int
) -> None:
    """Stored rows (reserved offsets too), rows of another subnet with the same numbers,
    static claims earlier in the request: the dynamic answer is `allocate`'s."""
    w = _small_world(tmp_path)
    try:
        stored = [str(SMALL.network_address + i) for i in sorted(held)]
        # Another subnet's rows with this subnet's numbers: only a broken filter sees them.
        foreign = [str(SMALL.network_address + i) for i in sorted(neighbour)]
        with w.repo.write() as uow:
            uow.apply(
                Changes(
                    puts=[_holder_nic("old", "small", stored), _holder_nic("n", "next", foreign)]
                )
            )
        ref = vnm.SubnetRef(w.vnet(), SUBNETS[0])
        with w.repo.read() as view:
            used = dict(view.used_ips(ref.id))
            assert set(used) == set(stored)
            allocator = Allocator(view, nic_id("new"))
            for n, offset in enumerate(static):
                ip = str(SMALL.network_address + offset)
                if ip in used:
                    with pytest.raises(errors.PrivateIPAddressIsAllocated):
                        allocator.assign(ref, _config(f"s{n}", ip), None)
                    continue
                assert allocator.assign(ref, _config(f"s{n}", ip), None) == ip
                used[ip] = "this request"
            for n in range(dynamic):
                try:
                    want = addressing.allocate(SMALL, used, ref.id)
                except errors.SubnetIsFull:
                    with pytest.raises(errors.SubnetIsFull):
                        allocator.assign(ref, _config(f"d{n}"), None)
                    break
                assert allocator.assign(ref, _config(f"d{n}"), None) == want
                used[want] = "this request"
    finally:
        w.dispose()


def test_lowest_free_ip_edges(tmp_path: Path) -> None:
    w = _small_world(tmp_path)
    try:
        base = int(SMALL.network_address)
        held = [str(IPv4Address(base + i)) for i in (4, 5, 6, 8, 30)]
        w.run(lambda _view, _ctx: Changes(puts=[_holder_nic("old", "small", held)]))
        s = subnet_id("vp", "small")
        with w.repo.read() as view:
            assert view.lowest_free_ip(s, base + 4, base + 30) == base + 7
            assert view.lowest_free_ip(s, base + 7, base + 30) == base + 7  # `first` free
            assert view.lowest_free_ip(s, base + 8, base + 30) == base + 9
            assert view.lowest_free_ip(s, base + 4, base + 6) is None  # all held
            assert view.lowest_free_ip(s, base + 29, base + 31) == base + 29
            assert view.lowest_free_ip(s, base + 30, base + 31) == base + 31  # gap at `last`
            assert view.lowest_free_ip(s, base + 30, base + 30) is None
            assert view.lowest_free_ip(s, base + 9, base + 8) is None  # empty range
            assert view.lowest_free_ip(subnet_id("vp", "next"), base + 4, base + 6) == base + 4
            assert view.ip_holders(s, [held[0], "10.0.5.7", "x\x00"]) == {held[0]: nic_id("old")}
            assert view.ip_holders(s, []) == {}
    finally:
        w.dispose()


def test_dynamic_allocation_reads_no_whole_subnet(tmp_path: Path) -> None:
    """Creating a NIC in a subnet of many addresses never lists them all."""
    w = _small_world(tmp_path)
    try:
        with w.repo.read() as view:
            calls: list[str] = []
            real = view.used_ips

            def spy(subnet: str) -> dict[str, str]:
                calls.append(subnet)
                return real(subnet)

            view.used_ips = spy  # type: ignore[method-assign]
            nic = nicm.NetworkInterface(
                id=nic_id("vm"), name="vm", location="eastus", ip_configurations=(_config("c"),)
            )
            changes = nicm.create_or_update(view, w.ctx, nic)
        assert calls == []
        put = changes.puts[0]
        assert isinstance(put, NetworkInterface)
        assert put.ip_configurations[0].private_ip == "10.0.5.4"
    finally:
        w.dispose()


# --- a full subnet ---------------------------------------------------------------------------


def test_smallest_subnet_is_full_after_three(world: World) -> None:
    net = IPv4Network("10.0.6.0/29")
    assert addressing.usable_count(net) == 3
    world.run(vnm.create_or_update, make_vnet(subnets=(vnm.Subnet("tiny", str(net)),)))
    tiny = subnet_id("vp", "tiny")
    for i in range(3):
        nic = nicm.NetworkInterface(
            id=nic_id(f"vm{i}"),
            name=f"vm{i}",
            location="eastus",
            ip_configurations=(NicIpConfiguration("c", tiny),),
        )
        world.run(nicm.create_or_update, nic)
    assert sorted(world.used_ips(tiny)) == ["10.0.6.4", "10.0.6.5", "10.0.6.6"]
    last = nicm.NetworkInterface(
        id=nic_id("vm3"),
        name="vm3",
        location="eastus",
        ip_configurations=(NicIpConfiguration("c", tiny),),
    )
    world.refuse(errors.SubnetIsFull, "SubnetIsFull", 400, nicm.create_or_update, last)
    # Freeing the middle address gives it to the next one.
    world.run(nicm.delete, nic_id("vm1"))
    world.run(nicm.create_or_update, last)
    assert world.nic(nic_id("vm3")).ip_configurations[0].private_ip == "10.0.6.5"


# --- a database made before `ips.num` ----------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database whose `ips` table has the shape before `num` (and no index)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    try:
        old = MetaData()
        Table(
            "ips",
            old,
            Column("subnet", String(1024), primary_key=True),
            Column("ip", String(64), primary_key=True),
            Column("owner", String(1024), nullable=False, index=True),
            Column("owner_id", String(1024), nullable=False),
        )
        old.create_all(engine)
    finally:
        engine.dispose()
    return url


def test_old_database_gets_numbers_and_allocation_skips_its_rows(old_db: str) -> None:
    small = subnet_id("vp", "small").lower()
    engine = create_engine(old_db)
    old_rows = ["10.0.5.4", "10.0.5.5", "10.0.5.7"]
    try:
        with engine.begin() as conn:
            old_shape = Table("ips", MetaData(), autoload_with=conn)
            conn.execute(
                old_shape.insert(),
                [
                    {"subnet": small, "ip": ip, "owner": "o", "owner_id": "O"}
                    for ip in [*old_rows, "10.0.5.40"]
                ],
            )
        assert "num" not in {c["name"] for c in inspect(engine).get_columns("ips")}
    finally:
        engine.dispose()

    repo = SqlRepository(old_db)
    try:
        assert "num" in {c["name"] for c in inspect(repo.engine).get_columns("ips")}
        assert "ix_ips_subnet_num" in {i["name"] for i in inspect(repo.engine).get_indexes("ips")}
        with repo.engine.connect() as conn:
            rows = conn.execute(select(ips.c.ip, ips.c.num)).all()
        assert sorted(rows) == sorted((ip, int(IPv4Address(ip))) for ip in [*old_rows, "10.0.5.40"])
        base = int(SMALL.network_address)
        with repo.read() as view:
            assert view.lowest_free_ip(small, base + 4, base + 30) == base + 6
        with repo.write() as uow:
            uow.apply(Changes(puts=[make_vnet(subnets=SUBNETS)]))
        with repo.read() as view:
            vnet = view.get(make_vnet().id)
            assert isinstance(vnet, vnm.VirtualNetwork)
            ref = vnm.SubnetRef(vnet, SUBNETS[0])
            allocator = Allocator(view, nic_id("new"))
            assert [allocator.assign(ref, _config(f"d{i}"), None) for i in range(2)] == [
                "10.0.5.6",
                "10.0.5.8",
            ]
        # A fill cut short (SQLite commits the ALTER by itself) leaves rows without a
        # number: the next start finishes it.
        with repo.engine.begin() as conn:
            conn.execute(update(ips).where(ips.c.ip == "10.0.5.7").values(num=None))
    finally:
        repo.dispose()
    again = SqlRepository(old_db)
    try:
        with again.read() as view:
            assert view.lowest_free_ip(small, base + 7, base + 30) == base + 8
    finally:
        again.dispose()
