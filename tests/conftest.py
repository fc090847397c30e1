"""Shared pytest fixtures for the privatelink test suite."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

# Shared helpers (tests/support) importable from every suite (importlib import mode).
sys.path.insert(0, str(Path(__file__).parent / "support"))

# --------------------------------------------------------------------------
# PostgreSQL: a throwaway server for the whole test session
# --------------------------------------------------------------------------

PG_DATABASE = "privatelink_test"
PG_SUPERUSER = "postgres"
PG_START_DEADLINE_S = 30.0


def _pg_bindir() -> Path | None:
    """Newest Debian PostgreSQL bin dir that has initdb and pg_ctl, if any."""

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([0-9.]+)/bin$", path)
        return tuple(int(p) for p in match.group(1).split(".") if p) if match else ()

    candidates = [
        d
        for d in glob.glob("/usr/lib/postgresql/*/bin")
        if os.access(os.path.join(d, "initdb"), os.X_OK)
        and os.access(os.path.join(d, "pg_ctl"), os.X_OK)
        and os.access(os.path.join(d, "pg_isready"), os.X_OK)
    ]
    return Path(max(candidates, key=version)) if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _world_traversable(path: Path) -> bool:
    """True if every directory up to `path` can be entered by other users."""
    return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents))


class _PgServer:
    """initdb + pg_ctl in a temp dir; as the `postgres` user when running as root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        base = Path(tempfile.gettempdir())
        if self.as_root and not _world_traversable(base):
            base = Path("/tmp")
        self.root = Path(tempfile.mkdtemp(prefix="privatelink-pg-", dir=base))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = 0

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", PG_SUPERUSER, "--", *cmd]
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{tool} failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}"
                f"{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return ""
        return "\n--- server.log ---\n" + "\n".join(lines)

    def _is_ready(self) -> bool:
        proc = subprocess.run(
            [
                str(self.bindir / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                PG_SUPERUSER,
                "-d",
                "postgres",
                "-t",
                "1",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        if self.as_root:
            pw = pwd.getpwnam(PG_SUPERUSER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        # Only the temp-dir socket and 127.0.0.1, trusted; nothing else.
        (self.datadir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )
        self.port = _free_port()
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# privatelink test settings\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 100\n"
            )
        self._run("pg_ctl", "start", "-W", "-D", str(self.datadir), "-l", str(self.logfile))
        deadline = time.monotonic() + PG_START_DEADLINE_S
        while not self._is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL not ready on 127.0.0.1:{self.port} after "
                    f"{PG_START_DEADLINE_S:.0f}s{self._log_tail()}"
                )
            time.sleep(0.1)
        self._run(
            "createdb",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            PG_SUPERUSER,
            PG_DATABASE,
        )

    def halt(self, mode: str = "fast") -> None:
        """Stop the server as an outage would (`pg_ctl stop -m MODE`), keeping its data."""
        self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w")

    def resume(self) -> None:
        """Start a halted server again, same data and port; wait until it is ready."""
        self._run("pg_ctl", "start", "-W", "-D", str(self.datadir), "-l", str(self.logfile))
        deadline = time.monotonic() + PG_START_DEADLINE_S
        while not self._is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not come back{self._log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        try:
            if self._postmaster_pid() is not None:
                try:
                    self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w")
                except (RuntimeError, subprocess.TimeoutExpired):
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl stop fails: SIGQUIT (immediate), then SIGKILL."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{self.port}/{PG_DATABASE}"


def _require_pg_bindir() -> Path:
    bindir = _pg_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
            "`make deps-system` installs them"
        )
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(reason)
    return bindir


@pytest.fixture
def own_postgres() -> Iterator[_PgServer]:
    """A PostgreSQL cluster of the test's own (temp dir, free port), which the test may
    `halt()` and `resume()`; the session's `postgres_url` server is never touched."""
    server = _PgServer(_require_pg_bindir())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of its own in the session's PostgreSQL (dropped afterwards)."""
    base = make_url(request.getfixturevalue("postgres_url"))
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a throwaway PostgreSQL database, `privatelink_test`.

    The server runs for the whole session from a fresh temp dir (as the
    `postgres` user when the tests run as root) on 127.0.0.1 and a free port,
    and is stopped and removed afterwards, also on failure.
    """
    server = _PgServer(_require_pg_bindir())
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
