"""Store faults: the one place where database failures become ARM errors.

A failure of the server's own database is not the caller's fault and must never reach
a client as a 500 or a dropped connection. `classify` maps a SQLAlchemy or DB-API
exception to the typed error of `core.errors` it means, or None when it is no store
fault (a bug, a constraint violation: those keep their own handling):

* the database cannot be reached, closed the connection, is shutting down or starting
  up, has no connection slot, or (SQLite) stayed locked past the busy timeout:
  `503 StoreUnavailable` with `Retry-After` (Azure SDKs and az retry after that long);
* the disk is full (SQLite `SQLITE_FULL`, PostgreSQL SQLSTATE 53100 `disk_full`):
  `507 InsufficientStorage`, no `Retry-After`: only an operator freeing space helps.

`install(engine)` applies `classify` where every statement, commit and connect of an
engine fails (SQLAlchemy's `handle_error` event), so what leaves the store is already
the ARM error, whichever module (repository, directory, RBAC, activity log, data
plane) ran the statement. The API edge applies `classify` once more to anything that
escapes as a raw SQLAlchemy error (a pool checkout timeout never passes that event).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, ExceptionContext, make_url

from privatelink.core import errors

log = logging.getLogger("privatelink.store")

#: Seconds a client is asked to wait after a lost or refused connection: about what a
#: PostgreSQL restart takes.
RETRY_AFTER_UNREACHABLE = 5
#: ... and after a lock that outlasted the busy timeout (another writer is finishing).
RETRY_AFTER_BUSY = 2
#: Seconds libpq waits for a connection before giving up (libpq's minimum is 2), so a
#: request during an outage of an unreachable host fails fast instead of hanging.
CONNECT_TIMEOUT_S = 3

# SQLite primary result codes (https://www.sqlite.org/rescode.html); the extended code
# carries the primary one in its low byte.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14

_SQLITE_REASONS = {
    SQLITE_BUSY: ("SQLite database is locked by another writer", RETRY_AFTER_BUSY),
    SQLITE_LOCKED: ("SQLite table is locked", RETRY_AFTER_BUSY),
    SQLITE_READONLY: ("SQLite database is read-only", RETRY_AFTER_UNREACHABLE),
    SQLITE_IOERR: ("SQLite disk I/O error", RETRY_AFTER_UNREACHABLE),
    SQLITE_CANTOPEN: ("SQLite database file cannot be opened", RETRY_AFTER_UNREACHABLE),
}
# Python before 3.11 gives no sqlite_errorcode: fall back to SQLite's fixed messages.
_SQLITE_MESSAGES = {
    "database or disk is full": SQLITE_FULL,
    "database is locked": SQLITE_BUSY,
    "database table is locked": SQLITE_LOCKED,
    "attempt to write a readonly database": SQLITE_READONLY,
    "disk i/o error": SQLITE_IOERR,
    "unable to open database file": SQLITE_CANTOPEN,
}

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
PG_DISK_FULL = "53100"
_PG_UNAVAILABLE = {
    "53000": "PostgreSQL has insufficient resources",
    "53200": "PostgreSQL is out of memory",
    "53300": "PostgreSQL has no free connection slot",
    "57P01": "PostgreSQL is shutting down (admin shutdown)",
    "57P02": "PostgreSQL crashed and is restarting",
    "57P03": "PostgreSQL is starting up or shutting down",
    "57P05": "PostgreSQL closed an idle session",
    "58030": "PostgreSQL disk I/O error",
}


def classify(exc: BaseException) -> errors.StoreFault | None:
    """The store fault `exc` means, or None when it is not one.

    `exc` may be a SQLAlchemy exception (its DB-API error is `.orig`), a raw DB-API
    exception (sqlite3, psycopg), or an already classified `StoreFault`.
    """
    if isinstance(exc, errors.StoreFault):
        return exc
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection to give
        return errors.StoreUnavailable(
            "no database connection became free in time", retry_after=RETRY_AFTER_BUSY
        )
    if isinstance(exc, sa_exc.DisconnectionError):
        return errors.StoreUnavailable("the database connection was lost")
    if isinstance(exc, sa_exc.DBAPIError):
        found = _classify_driver_error(exc.orig, _pep249_kind(exc))
        if found is None and exc.connection_invalidated:
            return errors.StoreUnavailable("the database connection was lost")
        return found
    return _classify_driver_error(exc, _pep249_kind(exc))


#: What a store failure escapes as when it did not pass `install`'s hook (the API edge
#: registers `classify` for these, so it need not import SQLAlchemy itself).
RAW_ERRORS: tuple[type[Exception], ...] = (sa_exc.SQLAlchemyError, sqlite3.Error)


def _pep249_kind(exc: BaseException) -> str:
    """'operational', 'interface' or '' from the PEP 249 class an error derives from."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "OperationalError" in names:
        return "operational"
    if "InterfaceError" in names:
        return "interface"
    return ""


def _classify_driver_error(err: BaseException | None, kind: str) -> errors.StoreFault | None:
    if err is None:
        return None
    if isinstance(err, sqlite3.Error):
        return _classify_sqlite(err)
    sqlstate = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate:
        return _classify_sqlstate(sqlstate)
    # A PostgreSQL driver error without SQLSTATE did not come from the server: the
    # connection failed, was refused, timed out or was closed under us.
    if kind or _pep249_kind(err):
        return errors.StoreUnavailable("the database connection failed or was closed")
    return None


def _classify_sqlite(err: sqlite3.Error) -> errors.StoreFault | None:
    code = getattr(err, "sqlite_errorcode", None)
    if not isinstance(code, int):
        code = _SQLITE_MESSAGES.get(str(err).strip().lower())
        if code is None:
            return None
    primary = code & 0xFF
    if primary == SQLITE_FULL:
        return errors.InsufficientStorage("SQLite database or disk is full")
    known = _SQLITE_REASONS.get(primary)
    if known is None:
        return None  # corruption, misuse, constraint...: not a transient store fault
    reason, retry_after = known
    return errors.StoreUnavailable(reason, retry_after=retry_after)


def _classify_sqlstate(sqlstate: str) -> errors.StoreFault | None:
    if sqlstate == PG_DISK_FULL:
        return errors.InsufficientStorage("PostgreSQL could not extend a file: disk full")
    if sqlstate.startswith("08"):  # class 08: connection exception
        return errors.StoreUnavailable("the PostgreSQL connection failed")
    reason = _PG_UNAVAILABLE.get(sqlstate)
    return errors.StoreUnavailable(reason) if reason else None


def _first_line(err: BaseException, default: str) -> str:
    """A driver message's first line, for the server log only (it may name hosts)."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text and text[0] else default


def _on_error(context: ExceptionContext) -> None:
    """`handle_error` hook: raise the store fault in place of the driver's error."""
    if context.is_pre_ping:
        # The pool is testing a pooled connection; it replaces a dead one by itself.
        return
    fault = classify(context.sqlalchemy_exception or context.original_exception)
    if fault is None:
        return
    log.warning(
        "store fault %s: %s", fault.code, _first_line(context.original_exception, fault.code)
    )
    raise fault


def install(engine: Engine) -> None:
    """Make `engine` raise `StoreFault`s (chained to the driver error) for store faults."""
    event.listen(engine, "handle_error", _on_error)


def engine_options(url: str) -> dict[str, Any]:
    """`create_engine` options that let a server ride out a database restart.

    `pool_pre_ping` tests a pooled connection before handing it out, so connections a
    restart killed are replaced instead of failing the next requests; a connect timeout
    bounds how long a request waits for an unreachable PostgreSQL.
    """
    options: dict[str, Any] = {"pool_pre_ping": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return options
