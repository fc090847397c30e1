"""A server's SQLite store keeps its locks: another process opening and closing the same
database file (a second server starting on the data dir, a backup, `sqlite3` for a look)
must not take the WAL away from under the server, so no committed write is lost.

Found by bench/chaos.py: POSIX advisory locks belong to the process and are dropped by
*any* close() of the file, so opening and closing the database file once more after the
engine had connected (as `build` did to fix its mode) released SQLite's lock. The next
process to close its own connection then took itself for the last user, checkpointed and
deleted `-wal` and `-shm`; the server went on writing into its unlinked WAL (writes
acknowledged, then lost; later "disk I/O error" and "database disk image is malformed").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from privatelink.server import build
from privatelink.store.sql import SqlRepository

# Another process using the database: open it, read, close (SQLite's close checkpoints and
# deletes the WAL when it believes no other connection is left).
OTHER_PROCESS = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
print(c.execute(sys.argv[2]).fetchall())
c.close()
"""


def other_process(db: Path, sql: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, str(db), sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_write_after_another_process_used_the_database_is_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    server = build(data_dir, "127.0.0.1", 8443)
    db = data_dir / SqlRepository.SQLITE_FILE
    engine = server.repo.engine
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE probe (x INTEGER)"))

        other_process(db, "SELECT count(*) FROM sqlite_master")
        with engine.begin() as conn:  # committed: acknowledged to whoever asked for it
            conn.execute(text("INSERT INTO probe VALUES (42)"))

        assert (db.parent / (db.name + "-wal")).exists(), "the WAL was deleted under the server"
        assert other_process(db, "SELECT x FROM probe") == "[(42,)]"
    finally:
        engine.dispose()
    # Once the server is gone, the database holds the write too.
    assert other_process(db, "SELECT x FROM probe") == "[(42,)]"
