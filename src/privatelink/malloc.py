"""glibc malloc tuning of the server process: fewer arenas, and freed memory returned.

The server runs many threads (the HTTP worker pool, the reconciler, the watcher, the
prober, DNS, the nft thread). glibc gives threads arenas of their own, up to 8 per core,
and memory freed in one arena serves only that arena: with 10,000 endpoints most of the
resident set was free space spread over arenas, not live objects (docs/benchmarks.md,
"Scale"). Two arenas keep contention low on a small host, and `malloc_trim` hands free
pages back to the kernel after the bursts of a sync or of many requests.

Set `PRIVATELINK_MALLOC_ARENAS` (0: leave glibc's default) to change the cap, and
`PRIVATELINK_MALLOC_TRIM_SECONDS` (0: never) the trimming period. Elsewhere than glibc
(musl) these are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

log = logging.getLogger("privatelink.malloc")

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
DEFAULT_ARENAS = 2
TRIM_SECONDS = 60.0


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int | None = None) -> int:
    """Cap malloc arenas (call before the threads start); the cap set, 0 for none."""
    if arenas is None:
        arenas = int(os.environ.get("PRIVATELINK_MALLOC_ARENAS", DEFAULT_ARENAS))
    libc = _libc()
    if arenas <= 0 or libc is None:
        return 0
    return arenas if libc.mallopt(M_ARENA_MAX, arenas) == 1 else 0


def trim() -> bool:
    """Return free heap pages to the kernel; whether any were."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class Trimmer:
    """A daemon thread that trims every `seconds` until stopped."""

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is None:
            seconds = float(os.environ.get("PRIVATELINK_MALLOC_TRIM_SECONDS", TRIM_SECONDS))
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)

    def start(self) -> Trimmer:
        """Start trimming."""
        if self.seconds > 0 and _libc() is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop (at most one trim later)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                trim()
            except Exception:  # tuning must never take the server down
                log.exception("malloc_trim failed")
