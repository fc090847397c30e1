"""The data directory and its secrets are private at every start, and `serve` keeps the
client secret off stdout unless asked (issue 11, defect 8)."""

from __future__ import annotations

import stat
from pathlib import Path

from privatelink.cli.main import banner
from privatelink.server import build


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


SECRETS = (
    "privatelink.db",
    "identity.json",
    "token-signing-key.pem",
    "server-key.pem",
    "credentials.json",
)


def test_fresh_data_dir_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    build(data_dir, "127.0.0.1", 8443)
    assert _mode(data_dir) == 0o700
    for name in SECRETS:
        assert _mode(data_dir / name) == 0o600, name


def test_lax_modes_of_an_older_data_dir_are_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    build(data_dir, "127.0.0.1", 8443)
    data_dir.chmod(0o755)
    for name in SECRETS:
        (data_dir / name).chmod(0o644)
    (data_dir / "privatelink.db-wal").touch(mode=0o644)
    (data_dir / "privatelink.db-wal").chmod(0o644)

    build(data_dir, "127.0.0.1", 8443)

    assert _mode(data_dir) == 0o700
    for name in (*SECRETS, "privatelink.db-wal"):
        assert _mode(data_dir / name) == 0o600, name


def test_a_new_data_dir_with_only_a_lax_database_is_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "privatelink.db").touch()
    (data_dir / "privatelink.db").chmod(0o644)

    build(data_dir, "127.0.0.1", 8443)

    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "privatelink.db") == 0o600


def test_banner_names_credentials_file_but_not_the_secret(tmp_path: Path) -> None:
    server = build(tmp_path / "state", "127.0.0.1", 8443)
    secret = server.client.client_secret

    lines = banner(server, show_secret=False)
    assert not any(secret in line for line in lines), lines
    assert any(str(server.credentials_file) in line for line in lines), lines
    assert any(server.client.client_id in line for line in lines), lines

    shown = banner(server, show_secret=True)
    assert any(secret in line for line in shown), shown
