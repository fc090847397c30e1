"""Fixtures of the `netns` tier: real namespaces, real TCP, root required."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from privatelink.dataplane import names, privileged

sys.path.insert(0, str(Path(__file__).parent))  # `world` helpers (importlib import mode)
from world import World


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft", "conntrack"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (make deps-system installs it)"
    return None


def _require_netns() -> None:
    """Skip where namespaces can't be made; under CI fail instead, so it can't pass empty."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"netns tests cannot run in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def netns_required() -> None:
    """For a test that makes its own namespaces: root and `ip`, `nft`, `conntrack`."""
    _require_netns()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh data plane with its own namespace prefix; always cleaned up."""
    yield from _world(tmp_path, realize=True)


@pytest.fixture
def store_world(tmp_path: Path) -> Iterator[World]:
    """Like `world`, but without a data plane: resources only go into the store, for a
    server process started on `world.data_dir` with `--netns-prefix world.prefix`."""
    yield from _world(tmp_path, realize=False)


def _world(tmp_path: Path, realize: bool) -> Iterator[World]:
    _require_netns()
    w = World(tmp_path, realize=realize)
    try:
        yield w
    finally:
        w.close()
        left = [n for n in privileged.list_netns() if names.is_ours(w.prefix, n)]
        assert not left, f"namespaces left behind: {left}"
        files = [n for n in privileged.list_netns_etc() if names.is_ours(w.prefix, n)]
        assert not files, f"/etc/netns directories left behind: {files}"
