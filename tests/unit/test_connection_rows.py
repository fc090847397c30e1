"""Private endpoint connections as rows of their own (issue 12): a connection's change
writes that connection (and the endpoint's copy of its state), never its service's
document, and databases that kept connections inside the service are upgraded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pl_world import S1, World, make_pe, pls_id
from sqlalchemy import delete, select, update

from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core.ids import key
from privatelink.core.limits import Limits
from privatelink.store.sql import SqlRepository, changes, refs, resources

CONNECTION_FIELDS = (
    "name",
    "private_endpoint_id",
    "private_endpoint_location",
    "link_identifier",
    "status",
    "description",
    "actions_required",
    "provisioning_state",
)


def _body(world: World, resource_id: str) -> str:
    with world.repo.engine.connect() as conn:
        row = conn.execute(select(resources.c.body).where(resources.c.key == key(resource_id)))
        return str(row.scalar_one())


def test_a_connection_change_leaves_its_service_document_alone(service_world: World) -> None:
    w = service_world
    service = w.pls()
    before = _body(w, service.id)
    written = w.run(pl.create_or_update_endpoint, make_pe(service.alias, name="a"))
    (conn,) = w.connections()
    assert set(written) == {key(w.pe("a").id), key(w.pe("a").nic_id), conn.key}
    assert conn.id == service.connection_id(conn.name)
    assert conn.service_id.lower() == service.id.lower()
    # Approving writes the connection and the endpoint's copy of its state.
    written = w.run(pl.update_connection, service.id, conn.name, "Approved", None, None)
    assert set(written) == {conn.key, key(w.pe("a").id)}
    (approved,) = w.connections()
    assert approved.status == "Approved" and approved.etag != conn.etag
    # The consumer's delete removes the row; the service's document never changed.
    w.run(pl.delete_endpoint, w.pe("a").id)
    assert w.connections() == ()
    assert w.get(conn.id) is None
    assert _body(w, service.id) == before
    assert "connections" not in json.loads(before)


def test_connections_are_listed_and_counted_through_the_index(service_world: World) -> None:
    w = service_world
    alias = w.pls().alias
    for name in ("c", "a", "b"):
        w.create_pe(alias, name=name)
    got = w.connections()
    assert [c.private_endpoint_id for c in got] == [w.pe(n).id for n in ("c", "a", "b")]
    with w.repo.read() as view:
        assert plsm.count_connections(view, pls_id()) == 3
        service, found = plsm.get_connection(view, pls_id(), got[1].name.upper())
        assert found == got[1] and service.id == w.pls().id
    # A page is read (and decoded) alone: the connections list's pages.
    for offset, limit in [(0, 2), (1, 1), (2, 5), (3, 1), (0, None), (1, None)]:
        with w.repo.read() as view:
            page = plsm.connections_of(view, pls_id(), offset, limit)
        end = None if limit is None else offset + limit
        assert page == list(got[offset:end])


def _inline_connections(world: World) -> list[dict[str, object]]:
    """Rewrite the store as databases before connection rows kept it: every connection
    inside its service's document, no rows of their own. Returns what was moved."""
    service = world.pls()
    moved = [{f: getattr(c, f) for f in CONNECTION_FIELDS} for c in world.connections()]
    doc = json.loads(_body(world, service.id))
    doc["connections"] = moved
    with world.repo.engine.begin() as conn:
        for c in world.connections():
            conn.execute(delete(refs).where(refs.c.src == c.key))
            conn.execute(delete(resources).where(resources.c.key == c.key))
        conn.execute(
            update(resources).where(resources.c.key == key(service.id)).values(body=json.dumps(doc))
        )
    return moved


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind the store runs on."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_database"))


def test_a_database_with_inline_connections_is_upgraded_once(
    tmp_path: Path, store_url: str
) -> None:
    w = World(tmp_path / "w", Limits())
    w.repo.dispose()
    w.repo = SqlRepository(store_url)
    try:
        w.provider()
        w.consumer()
        alias = w.create_pls().alias
        for name in ("pe1", "pe2"):
            w.create_pe(alias, name=name)
        w.decide(w.pe("pe2"), "Approved")
        moved = _inline_connections(w)
        assert w.connections() == ()
        w.repo.dispose()
        w.repo = SqlRepository(store_url)
        got = w.connections()
        assert [{f: getattr(c, f) for f in CONNECTION_FIELDS} for c in got] == moved
        assert [c.status for c in got] == ["Pending", "Approved"]
        assert "connections" not in json.loads(_body(w, pls_id()))
        # What the upgrade wrote is in the change feed (a running data plane sees it),
        # and a second start changes nothing.
        with w.repo.engine.connect() as conn:
            fed = {r.key for r in conn.execute(select(changes.c.key))}
        assert {c.key for c in got} <= fed
        snapshot = w.snapshot()
        w.repo.dispose()
        w.repo = SqlRepository(store_url)
        assert w.snapshot() == snapshot
        # The upgraded service works as any other: its limit counts the moved rows,
        # and the provider can still act on a moved connection.
        w.create_pe(alias, name="pe3")
        assert len(w.connections()) == 3
        w.run(pl.update_connection, pls_id(sub=S1), got[0].name, "Rejected", None, None)
        assert w.pe("pe1").connection.status == "Rejected"
    finally:
        w.dispose()


def test_a_list_page_walks_an_index_and_old_databases_get_it(tmp_path: Path) -> None:
    repo = SqlRepository.sqlite_in(tmp_path)
    with repo.engine.begin() as conn:  # a database from before: the old index only
        conn.exec_driver_sql("DROP INDEX ix_resources_list")
        conn.exec_driver_sql("DROP INDEX ix_resources_group_list")
        conn.exec_driver_sql(
            "CREATE INDEX ix_resources_type_subscription"
            " ON resources (type, subscription, resource_group)"
        )
    repo.dispose()
    repo = SqlRepository.sqlite_in(tmp_path)
    try:
        with repo.engine.connect() as conn:
            names = {r[1] for r in conn.exec_driver_sql("PRAGMA index_list(resources)")}
            assert {"ix_resources_list", "ix_resources_group_list"} <= names
            assert "ix_resources_type_subscription" not in names
            for group in ("", " AND resource_group = 'rg'"):
                plan = " ".join(
                    str(row[3])
                    for row in conn.exec_driver_sql(
                        "EXPLAIN QUERY PLAN SELECT seq, type, body FROM resources"
                        f" WHERE type = 't' AND subscription = 's'{group} AND seq > 5"
                        " ORDER BY seq LIMIT 101"
                    )
                )
                assert "USING INDEX ix_resources_" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        repo.dispose()


def test_a_link_identifier_is_unique_on_the_server() -> None:
    """A drawn linkIdentifier that a connection has already is drawn again (issue 14:
    PROXY v2 backends tell connections apart by it)."""
    from privatelink.core import private_endpoint as pem
    from privatelink.core import private_link
    from privatelink.core.limits import Limits
    from privatelink.core.private_link_service import LINK_ID
    from privatelink.core.resource import Context

    guids = iter(["00000001-0000-4000-8000-000000000000", "00000002-0000-4000-8000-000000000000"])
    taken = pem.link_identifier("00000001-0000-4000-8000-000000000000")

    class View:
        def count_referrers(self, target: str, kind: str) -> int:
            return int(kind == LINK_ID and target == taken)

    ctx = Context(None, Limits(), lambda: next(guids))
    got = private_link._new_link_identifier(View(), ctx)  # type: ignore[arg-type]
    assert got == pem.link_identifier("00000002-0000-4000-8000-000000000000") != taken
