"""The relay on more than one core: worker processes beside the server's own relay.

The relay's per-connection work is Python's, and one interpreter runs Python on one
core at a time: one relay thread carries about 9,000 connections/s here
(bench/dataplane.py --proxy). `RelayPool` runs the relay in the server's process, as
before, and in `workers - 1` child processes (`python -m
privatelink.dataplane.proxy.workers FD`), each a `Relay` of its own with a listener in
every hub on the same port: the listeners share it with SO_REUSEPORT, and the kernel
spreads new connections over them by a hash of their addresses.

Every worker gets every plan and cuts its own flows (an `update` returns once the
children have applied it, so a cut is as prompt as before); counters and flows are the
sums of the workers'. A child that fails to answer is ended and made again with the
current plan at the next `update`. A child whose server is gone sees its end of the
socket pair close, stops its relay (its flows are reset) and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from dataclasses import fields
from multiprocessing.connection import Connection
from typing import Any

from privatelink.dataplane import privileged
from privatelink.dataplane.proxy.config import EMPTY, ProxyConfig
from privatelink.dataplane.proxy.relay import Relay, RelayStats

log = logging.getLogger("privatelink.proxy")

MODULE = "privatelink.dataplane.proxy.workers"
ANSWER_SECONDS = 15.0  # a child's answer to one request (an update waits for its apply)
MAX_WORKERS = 16


def default_workers() -> int:
    """One relay per core this process may run on (at most MAX_WORKERS)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


class _Child:
    """A worker process and this side of its socket pair."""

    def __init__(self, config: ProxyConfig) -> None:
        mine, theirs = socket.socketpair()
        try:
            self.proc = privileged.relay_worker_process(MODULE, theirs.fileno())
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        self.started = bool(self.ask("update", config))  # it serves the plan

    def send(self, op: str, arg: Any = None) -> None:
        self.conn.send((op, arg))

    def answer(self) -> Any:
        if not self.conn.poll(ANSWER_SECONDS):
            raise TimeoutError(f"no answer within {ANSWER_SECONDS:.0f} s")
        return self.conn.recv()

    def ask(self, op: str, arg: Any = None) -> Any:
        self.send(op, arg)
        return self.answer()

    def end(self) -> None:
        """Stop the child (it resets its flows) and reap it."""
        with contextlib.suppress(OSError, EOFError, TimeoutError):
            self.ask("stop")
        self.conn.close()
        privileged.end_process(self.proc, timeout=5.0)


class RelayPool:
    """`Relay`'s interface over this process's relay and `workers - 1` children."""

    def __init__(self, kernel: Any = privileged, workers: int = 1) -> None:
        self.local = Relay(kernel)
        self.workers = max(1, workers)
        self._children: list[_Child | None] = []
        self._config = EMPTY
        self._lock = threading.Lock()  # one conversation with the children at a time
        self._children_applied = True

    # --- Relay's interface -------------------------------------------------------------

    def update(self, config: ProxyConfig) -> None:
        """Serve `config` from now on: this process's relay soon, the children before
        this returns (they are started with the first plan that has a hub)."""
        self.local.update(config)
        with self._lock:
            self._config = config
            if self.workers == 1 or (not config.hubs and not self._children):
                return
            self._children_applied = all(self._each("update", config, start=True).values())

    def wait_applied(self, timeout: float = 10.0) -> bool:
        """Wait until every `update` so far is in effect in this process, and say whether
        the children took the last one."""
        return self.local.wait_applied(timeout) and self._children_applied

    @property
    def stats(self) -> RelayStats:
        """The workers' counters, summed."""
        total = RelayStats(**vars(self.local.stats))
        for got in self._ask_all("stats").values():
            for f in fields(RelayStats):
                setattr(total, f.name, getattr(total, f.name) + got.get(f.name, 0))
        return total

    def traffic(self) -> dict[tuple[str, int], tuple[int, int, int]]:
        """As `Relay.traffic`, summed over the workers."""
        total = {k: list(v) for k, v in self.local.traffic().items()}
        for got in self._ask_all("traffic").values():
            for key, values in got.items():
                sums = total.setdefault(key, [0, 0, 0])
                for i, value in enumerate(values):
                    sums[i] += value
        return {k: (v[0], v[1], v[2]) for k, v in total.items()}

    def flows(self) -> int:
        """Flows open now, in every worker."""
        return self.local.flows() + sum(self._ask_all("flows").values())

    def listening(self) -> set[str]:
        """Hubs where any worker listens now."""
        hubs = set(self.local.listening())
        for got in self._ask_all("listening").values():
            hubs |= got
        return hubs

    def stop(self) -> None:
        """Stop every worker (their flows are reset)."""
        with self._lock:
            children, self._children = self._children, []
        for child in children:
            if child is not None:
                child.end()
        self.local.stop()

    # --- the children ------------------------------------------------------------------

    def _ask_all(self, op: str) -> dict[int, Any]:
        with self._lock:
            return self._each(op, None, start=False)

    def _each(self, op: str, arg: Any, start: bool) -> dict[int, Any]:
        """Ask every child (all at once, then each answer); a child that fails is ended,
        and made again (with the current plan) when `start`. Under `_lock`."""
        want = self.workers - 1
        while start and len(self._children) < want:
            self._children.append(None)
        sent: list[int] = []
        for i, child in enumerate(self._children):
            if child is not None:
                try:
                    child.send(op, arg)
                    sent.append(i)
                    continue
                except OSError as exc:
                    self._drop(i, exc)
            if start:
                try:
                    self._children[i] = _Child(self._config)  # with the current plan
                except (OSError, EOFError, TimeoutError, privileged.KernelError) as exc:
                    log.warning("PROXY relay: worker %d did not start: %s", i + 1, exc)
        answers: dict[int, Any] = {}
        for i in sent:
            child = self._children[i]
            assert child is not None
            try:
                answers[i] = child.answer()
            except (OSError, EOFError, TimeoutError) as exc:
                self._drop(i, exc)
        if start:
            for i, child in enumerate(self._children):
                if child is not None and i not in sent:
                    answers[i] = child.started  # started just now, with this plan
        return answers

    def _drop(self, i: int, exc: BaseException) -> None:
        child = self._children[i]
        self._children[i] = None
        log.warning("PROXY relay: worker %d stopped answering (%s); it is made again", i + 1, exc)
        if child is not None:
            child.conn.close()
            privileged.end_process(child.proc, timeout=1.0)


def serve_parent(conn: Connection) -> None:
    """A child's life: answer its server's requests until `stop` or the server's end."""
    relay = Relay()
    try:
        while True:
            try:
                op, arg = conn.recv()
            except (EOFError, OSError):
                return  # the server is gone
            if op == "update":
                relay.update(arg)
                conn.send(relay.wait_applied(10.0))
            elif op == "stats":
                conn.send(vars(relay.stats).copy())
            elif op == "traffic":
                conn.send(relay.traffic())
            elif op == "flows":
                conn.send(relay.flows())
            elif op == "listening":
                conn.send(relay.listening())
            elif op == "stop":
                relay.stop()
                conn.send(True)
                return
            else:
                conn.send(None)
    finally:
        relay.stop()


def main(argv: list[str]) -> int:
    """`python -m privatelink.dataplane.proxy.workers FD`: serve the socket pair's end."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    serve_parent(Connection(int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
