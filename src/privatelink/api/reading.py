"""Reads for async routes: on the event loop when the store says they cannot wait.

A plain `def` route runs in the thread pool: a hop to a worker thread and back, and the
two threads passing the GIL, for a read that takes microseconds on a local SQLite file.
`read` asks the store to run it right here (`Repository.read_inline`: a local file,
nothing locked, a small budget of documents); when the store refuses (a network
database, a lock, a large document), the read runs in a worker thread as before. `fn`
only reads and renders, so running it a second time is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from privatelink.core.resource import StateView
from privatelink.service import ControlPlane
from privatelink.store.repository import InlineReadRefused

T = TypeVar("T")


async def read(plane: ControlPlane, fn: Callable[[StateView], T]) -> T:
    """`fn(view)`: inline when the store allows, else in a worker thread."""
    try:
        return plane.read_inline(fn)
    except InlineReadRefused:
        return await run_in_threadpool(plane.read_with, fn)
