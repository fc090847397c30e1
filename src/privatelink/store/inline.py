"""Reads on the caller's own thread, for a SQLite store: no pool, no thread hop, no wait.

The API answers a GET on its event loop when the store can promise the read will not
wait: the database is a local SQLite file in WAL mode (readers never wait for the
writer), the connection is the calling thread's own (opened once, never shared, so no
pool checkout), and a lock held anyway (SQLite's rare recovery, or a checkpoint that
must reset the WAL) fails at once instead of waiting (busy timeout 0). The read then
runs in one snapshot (an explicit `BEGIN`; the pooled path reads statement by
statement) and ends with a rollback: these connections never write (`query_only`).

Any database error, and a read that outgrows its budget, becomes `InlineReadRefused`:
the caller reads again the ordinary way, where errors are classified (503/507) and
locks are waited for. So the inline path never changes an answer, only how it is got.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from privatelink.core.resource import StateView
from privatelink.store.repository import InlineReadRefused

T = TypeVar("T")
ViewFactory = Callable[[Connection, Any], StateView]


def local_sqlite_file(url: str) -> bool:
    """True for a SQLite database in a file (an in-memory one is per connection)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return False
    return parsed.query.get("mode") != "memory"


class InlineReader:
    """One read-only connection per thread to a SQLite file, for `read_inline`."""

    def __init__(self, url: str, make_view: ViewFactory) -> None:
        self._engine = create_engine(
            url, poolclass=NullPool, connect_args={"check_same_thread": False}
        )
        event.listen(self._engine, "connect", _read_only)
        self._make_view = make_view
        self._local = threading.local()
        # Every open connection with its thread: closed when the thread is gone, and by
        # `close` (the server's stop), so that SQLite can fold its WAL back.
        self._open: dict[int, tuple[weakref.ref[threading.Thread], Connection]] = {}
        self._lock = threading.Lock()

    def run(self, fn: Callable[[StateView], T]) -> T:
        """`fn(view)` in one snapshot on this thread's connection (module docstring)."""
        held: tuple[Connection, Any] | None = getattr(self._local, "held", None)
        conn, raw = held if held is not None else self._connect()
        try:
            raw.execute("BEGIN")  # a connection closed by `close` fails here: refused
            return fn(self._make_view(conn, raw))
        except (SQLAlchemyError, sqlite3.Error) as exc:
            self._discard(conn)
            raise InlineReadRefused(f"inline read failed: {type(exc).__name__}") from exc
        finally:
            try:
                if conn.in_transaction():  # the view ran a statement through SQLAlchemy
                    conn.rollback()
                raw.rollback()
            except (SQLAlchemyError, sqlite3.Error):
                self._discard(conn)

    def _connect(self) -> tuple[Connection, Any]:
        try:
            conn = self._engine.connect()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise InlineReadRefused(f"no inline connection: {type(exc).__name__}") from exc
        thread = threading.current_thread()
        with self._lock:
            gone = [i for i, (t, _) in self._open.items() if not _alive(t())]
            stale = [self._open.pop(i)[1] for i in gone]
            self._open[thread.ident or 0] = (weakref.ref(thread), conn)
        for old in stale:
            _close_quietly(old)
        held = (conn, conn.connection.dbapi_connection)
        self._local.held = held
        return held

    def _discard(self, conn: Connection) -> None:
        with self._lock:
            for ident, (_, held) in list(self._open.items()):
                if held is conn:
                    del self._open[ident]
        self._local.held = None
        _close_quietly(conn)

    def close(self) -> None:
        """Close every thread's connection (a thread that reads again opens a new one)."""
        with self._lock:
            held = [conn for _, conn in self._open.values()]
            self._open.clear()
        for conn in held:
            _close_quietly(conn)
        self._engine.dispose()


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()


def _read_only(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=0")  # a lock fails now; the caller reads elsewhere
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(SQLAlchemyError, sqlite3.Error):
        conn.close()
