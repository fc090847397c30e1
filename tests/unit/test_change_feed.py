"""The store's change feed and the reconciler's copy of the world built from it (issue 12).

A sync reads what changed since the version it last saw (`changes_since`), not every
resource; the copy it keeps must always equal what a full read would give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fake_kernel import FakeKernel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pl_world import World, make_vnet, vnet_id

from privatelink.core import virtual_network as vnm
from privatelink.core.limits import Limits
from privatelink.core.resource import Changes, Resource
from privatelink.dataplane.reconciler import Reconciler
from privatelink.store.sql import SqlRepository


def _put(repo: SqlRepository, *items: Resource) -> None:
    with repo.write() as uow:
        uow.apply(Changes(puts=list(items)))


def _delete(repo: SqlRepository, *ids: str) -> None:
    with repo.write() as uow:
        uow.apply(Changes(deletes=list(ids)))


def _vnet(name: str, prefix: str = "10.0.0.0/16") -> vnm.VirtualNetwork:
    return make_vnet(name=name, prefixes=(prefix,), subnets=())


def test_each_write_is_one_version_with_its_keys(world: World) -> None:
    repo = world.repo
    v0, everything = repo.versioned_snapshot()
    assert everything == []
    _put(repo, _vnet("a"), _vnet("b"))
    v1, put, deleted = repo.changes_since(v0)  # type: ignore[misc]
    assert v1 == v0 + 1
    assert [r.name for _, r in put] == ["a", "b"] and deleted == []
    _delete(repo, vnet_id("a"))
    v2, put, deleted = repo.changes_since(v1)  # type: ignore[misc]
    assert (v2, put, deleted) == (v1 + 1, [], [vnet_id("a").lower()])
    assert repo.changes_since(v2) == (v2, [], [])  # nothing new


def test_a_resource_comes_as_it_is_now_in_creation_order(world: World) -> None:
    repo = world.repo
    v0 = repo.versioned_snapshot()[0]
    _put(repo, _vnet("b"))
    _put(repo, _vnet("a"))
    _put(repo, _vnet("b", "10.9.0.0/16"))  # an update keeps b's place
    _, put, _ = repo.changes_since(v0)  # type: ignore[misc]
    assert [(r.name, r.address_prefixes) for _, r in put] == [  # type: ignore[attr-defined]
        ("b", ("10.9.0.0/16",)),
        ("a", ("10.0.0.0/16",)),
    ]
    # Deleted, then made again: it exists, so it is a put.
    _delete(repo, vnet_id("a"))
    _put(repo, _vnet("a"))
    _, put, deleted = repo.changes_since(v0)  # type: ignore[misc]
    assert {r.name for _, r in put} == {"a", "b"} and deleted == []
    assert [r.name for _, r in put] == ["b", "a"]  # a, made again, is the newest now


def test_provisioning_states_are_changes_too(world: World) -> None:
    repo = world.repo
    _put(repo, replace(_vnet("a"), provisioning_state="Updating"))
    stored = world.get(vnet_id("a"))
    assert stored is not None
    v = repo.versioned_snapshot()[0]
    repo.set_provisioning_states({stored.key: (stored.etag, "Succeeded")})
    _, put, _ = repo.changes_since(v)  # type: ignore[misc]
    assert [r.provisioning_state for _, r in put] == ["Succeeded"]
    repo.set_provisioning_states({stored.key: (stored.etag, "Succeeded")})  # no change
    assert repo.changes_since(repo.versioned_snapshot()[0])[1:] == ([], [])  # type: ignore[index]


def test_a_reader_behind_the_pruned_feed_reads_everything(world: World) -> None:
    repo = world.repo
    v0 = repo.versioned_snapshot()[0]
    _put(repo, _vnet("a"))
    v1 = repo.changes_since(v0)[0]  # type: ignore[index]
    _put(repo, _vnet("b"))
    assert repo.prune_changes(v1) == 1
    assert repo.prune_changes(v1) == 0  # once
    assert repo.changes_since(v0) is None  # too far behind
    _, put, _ = repo.changes_since(v1)  # type: ignore[misc]
    assert [r.name for _, r in put] == ["b"]


# --- the reconciler's copy of the world ------------------------------------------------------


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[World, Reconciler, dict[str, int]]]:
    world = World(tmp_path / "w", Limits())
    calls = {"versioned_snapshot": 0, "changes_since": 0}
    for name in calls:
        original: Callable[..., Any] = getattr(world.repo, name)

        def wrapped(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls[_name] += 1
            return _original(*args)

        setattr(world.repo, name, wrapped)
    reconciler = Reconciler(world.repo, "tst", None, kernel=FakeKernel(), watch=False)
    try:
        yield world, reconciler, calls
    finally:
        world.dispose()


def test_a_sync_reads_only_what_changed(counted: tuple[World, Reconciler, dict[str, int]]) -> None:
    world, reconciler, calls = counted
    world.provider()
    assert reconciler.sync_once().error is None  # the first sync reads everything
    assert calls == {"versioned_snapshot": 1, "changes_since": 0}
    world.consumer()
    assert reconciler.sync_once().error is None
    assert calls == {"versioned_snapshot": 1, "changes_since": 1}
    assert set(reconciler._world) == {r.key for r in world.repo.snapshot()}


_OPS = st.lists(
    st.tuples(st.sampled_from(["put", "update", "delete"]), st.integers(0, 5)),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS, sync_every=st.integers(1, 4))
def test_the_kept_world_always_equals_a_full_read(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]], sync_every: int
) -> None:
    world = World(tmp_path_factory.mktemp("feed"), Limits())
    reconciler = Reconciler(world.repo, "tst", None, kernel=FakeKernel(), watch=False)
    try:
        for i, (op, n) in enumerate(ops):
            name = f"v{n}"
            if op == "delete":
                _delete(world.repo, vnet_id(name))
            else:
                second = (i % 200) + 1
                _put(world.repo, _vnet(name, f"10.{second}.0.0/16"))
            if i % sync_every == 0:
                reconciler.sync_once()
                assert list(reconciler._world.values()) == world.repo.snapshot()
        reconciler.sync_once()
        assert list(reconciler._world.values()) == world.repo.snapshot()
    finally:
        world.dispose()


# --- link slots by difference ------------------------------------------------------------


def test_slots_by_difference_match_slots_from_the_whole_set(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = SqlRepository.sqlite_in(tmp_path / "a")
    diff = SqlRepository.sqlite_in(tmp_path / "b")
    try:
        steps = [{"a", "b", "c"}, {"a", "c", "d"}, {"c", "d", "e", "f"}, {"f"}, {"f", "g", "h"}]
        now = 1000.0
        held: dict[str, int] = {}
        previous: set[str] = set()
        for i, keys in enumerate(steps):
            now += 100 if i == 3 else 1  # step 3 lets the quarantine of earlier frees pass
            expected = whole.link_slots(keys, 8, now=now)
            got = diff.change_link_slots(keys - previous, previous - keys, 8, now=now)
            held = {k: v for k, v in held.items() if k in keys} | got
            assert held == expected, f"step {i}"
            previous = keys
        # Past the limit: the newest get none, as with the whole set.
        many = {f"k{i}" for i in range(10)}
        assert len(diff.change_link_slots(many, previous, 8, now=now + 1)) <= 8
    finally:
        whole.dispose()
        diff.dispose()
