"""Store faults: real database failures classified, raised typed, rendered as ARM errors.

The exceptions come from real databases wherever one can produce them here: a SQLite
file whose page budget is spent (`PRAGMA max_page_count` makes SQLite answer
SQLITE_FULL exactly as a full disk does), a SQLite lock held by another connection,
a read-only SQLite file, a port where no PostgreSQL listens, PostgreSQL backends
terminated by an administrator, and a PostgreSQL trigger raising SQLSTATE 53100.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Engine, make_url

from privatelink.api import errors as api_errors
from privatelink.api.activity_log import ActivityRecorder
from privatelink.core import errors
from privatelink.core.actions import describe
from privatelink.core.principal import Principal
from privatelink.core.resource import Changes, Context, StateView
from privatelink.core.virtual_network import VirtualNetwork
from privatelink.service import ControlPlane
from privatelink.store import faults
from privatelink.store.activity import SqlActivityLog
from privatelink.store.repository import utc_now
from privatelink.store.sql import SqlRepository

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SUB = "11111111-1111-4111-8111-111111111111"
VNETS = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks"
VNET = f"{VNETS}/v"
DEPLOYMENT = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Resources/deployments/d"


def _raised(fn: Any) -> BaseException:
    try:
        fn()
    except BaseException as caught:  # what a real driver raised
        return caught
    raise AssertionError("nothing was raised")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- classify: real SQLite errors ---------------------------------------------------------


def test_sqlite_full_is_507_insufficient_storage(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "x.db")) as conn:
        conn.execute("CREATE TABLE t (v BLOB)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        err = _raised(lambda: conn.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,)))
    assert isinstance(err, sqlite3.OperationalError)
    assert err.sqlite_errorcode == faults.SQLITE_FULL
    fault = faults.classify(err)
    assert isinstance(fault, errors.InsufficientStorage)
    assert (fault.status, fault.code, fault.retry_after) == (507, "InsufficientStorage", None)
    assert "no space left" in fault.message


def test_sqlite_locked_past_the_busy_timeout_is_503_with_a_short_retry(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as holder:
        holder.execute("CREATE TABLE t (v)")
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        with contextlib.closing(sqlite3.connect(db, timeout=0, isolation_level=None)) as other:
            err = _raised(lambda: other.execute("BEGIN IMMEDIATE"))
        holder.execute("ROLLBACK")
    assert str(err) == "database is locked"
    fault = faults.classify(err)
    assert isinstance(fault, errors.StoreUnavailable)
    assert (fault.status, fault.code) == (503, "StoreUnavailable")
    assert fault.retry_after == faults.RETRY_AFTER_BUSY
    assert "locked" in fault.message and f"{faults.RETRY_AFTER_BUSY} seconds" in fault.message


def test_sqlite_read_only_is_503(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE t (v)")
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as ro:
        err = _raised(lambda: ro.execute("INSERT INTO t VALUES (1)"))
    assert isinstance(faults.classify(err), errors.StoreUnavailable)


def test_sqlite_errors_that_are_no_store_fault_stay_unclassified(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "x.db")) as conn:
        conn.execute("CREATE TABLE t (v PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        duplicate = _raised(lambda: conn.execute("INSERT INTO t VALUES (1)"))
        missing = _raised(lambda: conn.execute("SELECT * FROM nope"))
    assert isinstance(duplicate, sqlite3.IntegrityError)
    assert isinstance(missing, sqlite3.OperationalError)  # OperationalError, not a fault
    assert faults.classify(duplicate) is None
    assert faults.classify(missing) is None
    assert faults.classify(ValueError("database is locked")) is None


def test_sqlite_messages_are_understood_without_an_error_code() -> None:
    # Python before 3.11 (or a re-raised copy) carries no sqlite_errorcode.
    full = sqlite3.OperationalError("database or disk is full")
    assert not hasattr(full, "sqlite_errorcode")
    assert isinstance(faults.classify(full), errors.InsufficientStorage)
    assert isinstance(
        faults.classify(sqlite3.OperationalError("database is locked")), errors.StoreUnavailable
    )


# --- classify: PostgreSQL driver errors ---------------------------------------------------


def test_postgres_connection_refused_is_503() -> None:
    port = _free_port()  # nothing listens there
    err = _raised(lambda: psycopg.connect(f"host=127.0.0.1 port={port} connect_timeout=2"))
    assert isinstance(err, psycopg.OperationalError) and err.sqlstate is None
    fault = faults.classify(err)
    assert isinstance(fault, errors.StoreUnavailable)
    assert fault.retry_after == faults.RETRY_AFTER_UNREACHABLE
    assert "127.0.0.1" not in fault.message  # the database's address stays in the server log


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.errors.DiskFull("could not extend file: No space left on device"), 507),
        (psycopg.errors.AdminShutdown("terminating connection due to administrator"), 503),
        (psycopg.errors.CrashShutdown("terminating connection: crash"), 503),
        (psycopg.errors.CannotConnectNow("the database system is shutting down"), 503),
        (psycopg.errors.TooManyConnections("too many clients already"), 503),
        (psycopg.errors.ConnectionFailure("connection failure"), 503),  # class 08
        (psycopg.InterfaceError("the connection is closed"), 503),
        (psycopg.errors.UniqueViolation("duplicate key"), None),
        (psycopg.errors.UndefinedTable("relation does not exist"), None),
        (psycopg.errors.QueryCanceled("canceling statement"), None),
    ],
)
def test_postgres_errors_by_sqlstate(error: Exception, expected: int | None) -> None:
    fault = faults.classify(error)
    assert (fault.status if fault else None) == expected
    # The same, wrapped by SQLAlchemy as it reaches the application.
    wrapped = exc.DBAPIError.instance("SELECT 1", None, error, psycopg.Error)
    again = faults.classify(wrapped)
    assert (again.status if again else None) == expected


def test_sqlalchemy_pool_and_disconnect_errors_are_503() -> None:
    assert isinstance(faults.classify(exc.TimeoutError("QueuePool limit")), errors.StoreUnavailable)
    assert isinstance(faults.classify(exc.DisconnectionError("gone")), errors.StoreUnavailable)
    invalidated = exc.DBAPIError.instance(
        "SELECT 1", None, psycopg.errors.UndefinedTable("x"), psycopg.Error
    )
    invalidated.connection_invalidated = True
    assert isinstance(faults.classify(invalidated), errors.StoreUnavailable)
    assert faults.classify(exc.ArgumentError("bad")) is None


def test_engine_options_bound_the_connect_and_ping_the_pool() -> None:
    pg = faults.engine_options("postgresql+psycopg://u@127.0.0.1:5432/db")
    assert pg == {"pool_pre_ping": True, "connect_args": {"connect_timeout": 3}}
    # A connect_timeout in the URL is the operator's choice: kept.
    own = "postgresql+psycopg://u@h/db?connect_timeout=10"
    assert "connect_args" not in faults.engine_options(own)
    assert make_url(own).query["connect_timeout"] == "10"
    assert faults.engine_options("sqlite:///x.db") == {"pool_pre_ping": True}


# --- the repository raises typed errors -----------------------------------------------------


@contextlib.contextmanager
def page_budget(engine: Engine, extra_pages: int = 0) -> Iterator[None]:
    """Every new connection of `engine` may not grow the file past its size now."""
    with engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())

    def limit(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + extra_pages}")

    engine.dispose()
    event.listen(engine, "connect", limit)
    try:
        yield
    finally:
        event.remove(engine, "connect", limit)
        engine.dispose()


def _vnet(view: StateView, ctx: Context, tags: dict[str, str]) -> Changes:
    return Changes(
        puts=[
            VirtualNetwork(
                id=VNET,
                name="v",
                location="eastus",
                tags=tags,
                provisioning_state=ctx.initial_state,
                address_prefixes=("10.0.0.0/16",),
            )
        ]
    )


def test_sqlite_full_repository_write_is_insufficient_storage_and_reads_go_on(
    tmp_path: Path,
) -> None:
    repo = SqlRepository.sqlite_in(tmp_path)
    plane = ControlPlane(repo)
    plane.change(None, VNET, "put", _vnet, {"n": "1"})
    with page_budget(repo.engine):
        with pytest.raises(errors.InsufficientStorage) as caught:
            repo.put_deployment(DEPLOYMENT, {"big": "x" * 200_000})
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(errors.InsufficientStorage):
            plane.change(None, VNET, "put", _vnet, {"n": "2" * 200_000})
        # Reads keep working, and see the state before the refused writes.
        assert repo.get_deployment(DEPLOYMENT) is None
        with plane.read() as view:
            stored = view.get(VNET)
        assert stored is not None and stored.tags == {"n": "1"}
    with repo.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").all() == [("ok",)]
    repo.put_deployment(DEPLOYMENT, {"big": "x" * 200_000})  # space again: it works
    assert repo.get_deployment(DEPLOYMENT) is not None
    repo.dispose()


def test_sqlite_lock_past_the_busy_timeout_is_store_unavailable(tmp_path: Path) -> None:
    repo = SqlRepository.sqlite_in(tmp_path)

    def short_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout = 50")  # after the store's own 10 s

    repo.engine.dispose()
    event.listen(repo.engine, "connect", short_wait)
    with contextlib.closing(
        sqlite3.connect(tmp_path / SqlRepository.SQLITE_FILE, isolation_level=None)
    ) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(errors.StoreUnavailable) as caught:
            repo.put_deployment(DEPLOYMENT, {})
        other.execute("ROLLBACK")
    assert caught.value.retry_after == faults.RETRY_AFTER_BUSY
    repo.put_deployment(DEPLOYMENT, {})
    repo.dispose()


def test_unreachable_postgres_fails_fast_with_store_unavailable() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/nothing"
    with pytest.raises(errors.StoreUnavailable) as caught:
        SqlRepository(url)  # creating the tables connects
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


# --- PostgreSQL: a change and its operation record are one transaction; reconnects ----------


def _terminate_others(repo: SqlRepository) -> int:
    """Terminate every other backend of the repository's database, as an admin would."""
    url = repo.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


@pytest.mark.postgres
def test_postgres_disk_full_in_the_operation_record_leaves_nothing(pg_database: str) -> None:
    repo = SqlRepository(pg_database)
    plane = ControlPlane(repo)
    with repo.engine.begin() as conn:
        # The resource row is written first; then the operation record hits a full disk.
        conn.execute(
            text(
                "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'could not extend file: No space left on device' "
                "USING ERRCODE = 'disk_full'; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER full_disk BEFORE INSERT ON operations "
                "FOR EACH ROW EXECUTE FUNCTION disk_full()"
            )
        )
    with pytest.raises(errors.InsufficientStorage) as caught:
        plane.change(None, VNET, "put", _vnet, {})
    assert isinstance(caught.value.__cause__, psycopg.errors.DiskFull)
    with plane.read() as view:
        assert view.get(VNET) is None  # all or nothing: the resource is not there either
    with repo.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER full_disk ON operations"))
    out = plane.change(None, VNET, "put", _vnet, {})
    assert repo.get_operation(out.operation.id) is not None
    repo.dispose()


@pytest.mark.postgres
def test_postgres_connections_killed_while_pooled_are_replaced(pg_database: str) -> None:
    repo = SqlRepository(pg_database)
    plane = ControlPlane(repo)
    plane.change(None, VNET, "put", _vnet, {})
    assert _terminate_others(repo) >= 1  # the pooled connection is dead now
    # pool_pre_ping: the next request gets a fresh connection instead of an error.
    with plane.read() as view:
        assert view.get(VNET) is not None
    repo.dispose()


@pytest.mark.postgres
def test_postgres_connection_killed_mid_request_is_503_then_recovers(pg_database: str) -> None:
    repo = SqlRepository(pg_database)
    with pytest.raises(errors.StoreUnavailable) as caught, repo.read() as view:
        view.get(VNET)  # the connection is checked out and alive
        _terminate_others(repo)
        view.get(f"{VNETS}/w")
    assert isinstance(caught.value.__cause__, psycopg.errors.AdminShutdown)
    with repo.read() as view:
        assert view.get(VNET) is None  # the same repository answers again
    repo.dispose()


# --- the API edge ------------------------------------------------------------------------


def _edge_app() -> FastAPI:
    app = FastAPI()
    api_errors.install(app)

    @app.get("/typed")
    def typed() -> JSONResponse:
        raise errors.StoreUnavailable("PostgreSQL is shutting down (admin shutdown)")

    @app.get("/full")
    def full() -> JSONResponse:
        raise errors.InsufficientStorage("SQLite database or disk is full")

    @app.get("/raw-locked")
    def raw_locked() -> JSONResponse:
        # A raw SQLAlchemy error that did not pass an engine with `faults.install`.
        locked = sqlite3.OperationalError("database is locked")
        raise exc.OperationalError("BEGIN", None, locked)

    @app.get("/pool")
    def pool() -> JSONResponse:
        raise exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")

    @app.get("/bug")
    def bug() -> JSONResponse:
        raise exc.ArgumentError("a bug, not a fault")

    @app.middleware("http")
    async def lookup(request: Any, call_next: Any) -> Any:
        if request.url.path == "/in-middleware":  # as the gate's subscription lookup
            raise errors.StoreUnavailable("the PostgreSQL connection failed")
        return await call_next(request)

    return app


@pytest.mark.parametrize(
    ("path", "status", "code", "retry_after"),
    [
        ("/typed", 503, "StoreUnavailable", "5"),
        ("/full", 507, "InsufficientStorage", None),
        ("/raw-locked", 503, "StoreUnavailable", "2"),
        ("/pool", 503, "StoreUnavailable", "2"),
        ("/in-middleware", 503, "StoreUnavailable", "5"),
        ("/bug", 500, "InternalServerError", None),
    ],
)
def test_api_edge_renders_store_faults_as_arm_errors(
    path: str, status: int, code: str, retry_after: str | None
) -> None:
    with TestClient(_edge_app(), raise_server_exceptions=False) as client:
        resp = client.get(path)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert resp.headers.get("Retry-After") == retry_after


@pytest.mark.parametrize(
    ("path", "closes"), [("/typed", False), ("/in-middleware", True), ("/bug", False)]
)
def test_errors_that_escape_the_routes_close_the_connection(path: str, closes: bool) -> None:
    """Starlette re-raises what reaches the outermost handler and uvicorn then closes the
    connection: the answer must say `Connection: close`, or a client reusing the
    connection has its next request dropped without an answer."""
    with TestClient(_edge_app(), raise_server_exceptions=False) as client:
        resp = client.get(path)
    assert (resp.headers.get("Connection") == "close") is closes


# --- the activity recorder --------------------------------------------------------------


class _Gate:
    """What the recorder needs of the gate: an authenticated principal in the scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["principal"] = Principal(SUB, SUB, SUB)
        await self.app(scope, receive, send)


def _recorded_app(log: SqlActivityLog) -> FastAPI:
    app = FastAPI()
    api_errors.install(app)

    @app.put(VNETS + "/{name}")
    def put(name: str) -> JSONResponse:
        if name == "down":
            raise errors.StoreUnavailable("the PostgreSQL connection failed")
        if name == "bad":
            raise errors.InvalidRequestContent("bad body")
        return JSONResponse({"name": name}, status_code=201)

    app.add_middleware(ActivityRecorder, log=log, describe=describe)
    app.add_middleware(_Gate)
    return app


def _events(log: SqlActivityLog) -> list[Any]:
    now = log.clock()
    start = now.replace(year=now.year - 1)
    return log.query(SUB, start, now.replace(year=now.year + 1), top=100)[0]


def test_recorder_skips_store_fault_responses_and_survives_a_full_log(tmp_path: Path) -> None:
    repo = SqlRepository.sqlite_in(tmp_path)
    log = SqlActivityLog(repo.engine)
    with TestClient(_recorded_app(log)) as client:
        # The store failed the request: the answer is the 503, and no event is attempted.
        down = client.put(f"{VNETS}/down")
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        assert _events(log) == []
        # Another failure is recorded as usual (the log works).
        assert client.put(f"{VNETS}/bad").status_code == 400
        recorded = len(_events(log))
        assert recorded > 0
        # The log's disk is full: the request still succeeds, answered in full.
        with page_budget(repo.engine):
            ok = client.put(f"{VNETS}/fine", content=b"x" * 100)
            assert ok.status_code == 201 and ok.json() == {"name": "fine"}
        assert len(_events(log)) == recorded  # nothing half-recorded
    repo.dispose()


# --- a change's response is built in its transaction ---------------------------------------


class _DataPlane:
    """A realizer doing what the data plane does to the store after a change commits."""

    def __init__(self, repo: SqlRepository, take_store_away: bool) -> None:
        self.repo = repo
        self.take_store_away = take_store_away

    def mark_dirty(self) -> None:
        with self.repo.read() as view:
            current = view.get(VNET)
        assert current is not None
        self.repo.set_provisioning_states({current.key: (current.etag, "Succeeded")})
        if self.take_store_away:  # then the database file cannot be opened any more
            self.repo.engine.dispose()
            db = Path(str(self.repo.engine.url.database))
            db.rename(db.with_suffix(".away"))
            db.mkdir()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return True


def _state(view: StateView) -> str:
    current = view.get(VNET)
    assert current is not None
    return current.provisioning_state


def test_a_change_renders_after_realization_when_the_store_answers(tmp_path: Path) -> None:
    repo = SqlRepository.sqlite_in(tmp_path)
    plane = ControlPlane(repo, realizer=_DataPlane(repo, False), realization_wait=1.0)
    out = plane.change(None, VNET, "put", _vnet, {}, render=_state)
    assert out.rendered == "Succeeded"  # what the data plane reported meanwhile
    repo.dispose()


def test_a_stored_change_is_not_reported_failed_when_the_store_goes_away(tmp_path: Path) -> None:
    repo = SqlRepository.sqlite_in(tmp_path)
    plane = ControlPlane(repo, realizer=_DataPlane(repo, True), realization_wait=1.0)
    out = plane.change(None, VNET, "put", _vnet, {}, render=_state)
    assert out.rendered == "Updating"  # as its own transaction saw it, no 503
    with pytest.raises(errors.StoreUnavailable):  # the store is really gone
        repo.get_operation(out.operation.id)
    db = tmp_path / SqlRepository.SQLITE_FILE
    db.rmdir()
    db.with_suffix(".away").rename(db)
    assert repo.get_operation(out.operation.id) is not None  # the change was stored
    repo.dispose()


def test_a_snapshot_includes_every_operation_started_before_it(tmp_path: Path) -> None:
    """The data plane completes operations started before its snapshot: a change whose
    operation is recorded (start time taken) but not yet committed must be in it."""
    repo = SqlRepository.sqlite_in(tmp_path)
    plane = ControlPlane(repo, realizer=_DataPlane(repo, False))
    committing, release = threading.Event(), threading.Event()

    def hold_commit(_conn: Any) -> None:  # runs before the DB-API commit
        if threading.current_thread().name == "writer":
            committing.set()
            assert release.wait(10)

    event.listen(repo.engine, "commit", hold_commit)
    writer = threading.Thread(
        target=plane.change, args=(None, VNET, "put", _vnet, {}), name="writer", daemon=True
    )
    writer.start()
    assert committing.wait(10)
    started = utc_now()  # the operation's start time is already taken
    seen: list[list[str]] = []
    reader = threading.Thread(target=lambda: seen.append([r.id for r in repo.snapshot()]))
    reader.start()
    reader.join(1.0)  # bounded: it must be waiting for the write in flight
    release.set()
    writer.join(10)
    reader.join(10)
    assert seen == [[VNET]]
    assert repo.complete_operations(started, now=utc_now()) == 1  # consistent with the snapshot
    event.remove(repo.engine, "commit", hold_commit)
    repo.dispose()
