"""glibc malloc tuning of the server (`privatelink.malloc`): the arena cap and the
trimming thread follow their settings, and do nothing where there is no glibc."""

from __future__ import annotations

import threading

import pytest

from privatelink import malloc

GLIBC = malloc._libc() is not None


@pytest.mark.skipif(not GLIBC, reason="not glibc: the tuning is a no-op there")
def test_the_arena_cap_follows_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVATELINK_MALLOC_ARENAS", "3")
    assert malloc.limit_arenas() == 3
    monkeypatch.setenv("PRIVATELINK_MALLOC_ARENAS", "0")
    assert malloc.limit_arenas() == 0  # left to glibc
    monkeypatch.delenv("PRIVATELINK_MALLOC_ARENAS")
    assert malloc.limit_arenas() == malloc.DEFAULT_ARENAS


def test_no_trimming_thread_when_the_period_is_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVATELINK_MALLOC_TRIM_SECONDS", "0")
    trimmer = malloc.Trimmer().start()
    assert not any(t.name == "malloc-trim" and t.is_alive() for t in threading.enumerate())
    trimmer.stop()


@pytest.mark.skipif(not GLIBC, reason="not glibc: the tuning is a no-op there")
def test_the_trimming_thread_trims_and_stops() -> None:
    trimmer = malloc.Trimmer(seconds=0.01).start()
    try:
        assert trimmer._thread.is_alive()
        malloc.trim()  # callable alongside it
    finally:
        trimmer.stop()
    trimmer._thread.join(timeout=2)
    assert not trimmer._thread.is_alive()
