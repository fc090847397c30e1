"""The kernel watcher: one thread that tells the reconciler what changed behind its back.

It reads `privileged.KernelEvents` (deleted interfaces, addresses and routes, nftables
commits, namespaces leaving /run/netns) and hands each event to `Reconciler.report()`,
which decides whether it damaged something of ours. Netlink events name a namespace by
its id: after each sync (`refresh()`) the watcher gives every hub an id in our namespace
(`privileged.netns_id`) and keeps the id -> hub map. Every `TICK_SECONDS` it samples
each hub's conntrack count (`privileged.ConntrackGauge`, one pread per hub) for the
reconciler's admission control, and collects the refusal counters of full hubs.

Only `privileged` touches the kernel; this module holds no socket of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from privatelink.dataplane.events import EventsLost, KernelEvent, NetnsAdded, NetnsGone
from privatelink.dataplane.privileged import KernelError

if TYPE_CHECKING:
    from privatelink.dataplane.reconciler import Reconciler

log = logging.getLogger("privatelink.dataplane.watcher")

TICK_SECONDS = 1.0  # conntrack sampling period
RETRY_SECONDS = 5.0  # before opening the event sockets again after a failure
# Hubs at their limit whose expired conntrack entries are freed per tick (a dump each,
# ~25 ms); more wait for the next ticks.
REAPS_PER_TICK = 8


class Watcher:
    """Kernel events and conntrack samples for one reconciler."""

    def __init__(self, reconciler: Reconciler, kernel: Any) -> None:
        self.reconciler = reconciler
        self.kernel = kernel
        self._stop = threading.Event()
        self._refresh = threading.Event()
        self._thread: threading.Thread | None = None
        self._events: Any = None
        self._nsids: dict[int, str] = {}  # namespace id (in ours) -> hub
        self._hubs: dict[str, tuple[int, int | None]] = {}  # hub -> (nsid, inode)
        self._gauges: dict[str, Any] = {}  # hub -> ConntrackGauge
        self._reaped: dict[str, float] = {}  # hub -> when its expired entries were freed
        self._opened = False
        self.watching = False  # kernel events are being read

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._loop, name="dataplane-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and release its descriptors."""
        self._stop.set()
        events = self._events
        if events is not None:
            events.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close()

    def refresh(self) -> None:
        """The set of hubs may have changed (after a sync): re-subscribe soon."""
        self._refresh.set()
        events = self._events
        if events is not None:
            events.wake()

    # --- the thread -------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._run()
        except Exception:  # a bug here must not go unnoticed, nor take the server down
            log.exception("the kernel watcher stopped; only the periodic full pass repairs")
        finally:
            self.watching = False

    def _run(self) -> None:
        try:
            self.kernel.raise_open_files_limit()
        except (OSError, ValueError) as exc:
            log.debug("open files limit unchanged: %s", exc)
        next_tick = time.monotonic()
        retry_at = 0.0
        while not self._stop.is_set():
            if self._events is None and time.monotonic() >= retry_at:
                self._open()
                retry_at = time.monotonic() + RETRY_SECONDS
            timeout = max(0.0, next_tick - time.monotonic())
            if self._events is not None:
                try:
                    found = self._events.read(timeout)
                except KernelError as exc:
                    log.warning("kernel events unreadable (%s): reopening", exc.message)
                    self._reopen()
                    found = []
                for event in found:
                    self._handle(event)
            else:
                self._stop.wait(min(timeout, 0.5))
            if self._stop.is_set():
                return
            if self._refresh.is_set():
                self._refresh.clear()
                self._subscribe()
            if time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + TICK_SECONDS

    def _open(self) -> None:
        try:
            self._events = self.kernel.KernelEvents()
        except KernelError as exc:
            log.warning(
                "cannot watch the kernel (%s): damage is repaired by the periodic full pass",
                exc.message,
            )
            self._events = None
            return
        self.watching = True
        self._hubs.clear()
        self._nsids.clear()
        self._refresh.set()
        if self._opened:
            # Events were missed while the sockets were closed: check everything once.
            # (Not on the first start: the reconciler's first sync is a full pass.)
            self.reconciler.report(EventsLost("kernel events reopened"))
        self._opened = True

    def _reopen(self) -> None:
        if self._events is not None:
            self._events.close()
        self._events = None
        self.watching = False
        self._open()

    def _handle(self, event: KernelEvent) -> None:
        if isinstance(event, NetnsGone):
            self._unsubscribe(event.name)
            self.reconciler.report(event)
        elif isinstance(event, NetnsAdded):
            return  # ours are made by the reconciler, which then refreshes us
        elif isinstance(event, EventsLost):
            self.reconciler.report(event)
            if event.source.startswith("namespace directory"):
                self._reopen()  # the inotify watch went with the directory
        else:
            netns = self._nsids.get(event.nsid)
            if netns is not None:
                self.reconciler.report(event, netns)

    # --- subscriptions ----------------------------------------------------------------

    def _subscribe(self) -> None:
        """Give each hub of the current plan an id and a conntrack gauge; drop the rest."""
        hubs = self.reconciler.owned().watched()
        for netns in list(self._hubs.keys() | self._gauges.keys()):
            if netns not in hubs:
                self._unsubscribe(netns)
        for netns in sorted(hubs):
            inode = self.kernel.netns_inode(netns)
            known = self._hubs.get(netns)
            if known is not None and known[1] == inode and netns in self._gauges:
                continue
            if known is not None:
                self._unsubscribe(netns)  # made again: a new namespace behind the name
            if inode is None:
                continue  # not there (yet): the reconciler makes it and refreshes us
            try:
                nsid = self.kernel.netns_id(netns) if self._events is not None else -1
                gauge = self.kernel.ConntrackGauge(netns)
            except KernelError as exc:
                log.debug("cannot watch %s yet: %s", netns, exc.message)
                continue
            self._hubs[netns] = (nsid, inode)
            if nsid >= 0:
                self._nsids[nsid] = netns
            self._gauges[netns] = gauge
            try:
                self.reconciler.observe_conntrack(netns, gauge.count(), gauge.drops())
            except KernelError:
                continue

    def _unsubscribe(self, netns: str) -> None:
        known = self._hubs.pop(netns, None)
        if known is not None and self._nsids.get(known[0]) == netns:
            del self._nsids[known[0]]
        gauge = self._gauges.pop(netns, None)
        if gauge is not None:
            gauge.close()
        self._reaped.pop(netns, None)
        self.reconciler.forget_conntrack(netns)

    def _tick(self) -> None:
        limit = self.reconciler.conntrack_limit
        near = limit - max(1, limit // 10)
        counts: dict[str, int] = {}
        for netns, gauge in list(self._gauges.items()):
            try:
                counts[netns] = gauge.count()
            except KernelError:
                self._unsubscribe(netns)  # gone; the namespace event (or a sync) follows
                self._refresh.set()
        # Expired entries stay counted until the kernel's collector reaches them (up to
        # a minute): free them before taking a hub for full, least recently reaped first.
        full = sorted((n for n, c in counts.items() if c >= limit), key=self._reaped_at)
        for netns in full[:REAPS_PER_TICK]:
            try:
                self.kernel.conntrack_reap(netns)
                counts[netns] = self._gauges[netns].count()
            except (KernelError, KeyError):
                continue
            self._reaped[netns] = time.monotonic()
        for netns, count in counts.items():
            gauge = self._gauges.get(netns)
            if gauge is None:
                continue
            try:
                # The drop counter costs a line per CPU to read: only near the limit,
                # the only place where the kernel can run out.
                drops = gauge.drops() if count >= near else None
            except KernelError:
                continue
            self.reconciler.observe_conntrack(netns, count, drops)
        self.reconciler.collect_refusals()

    def _reaped_at(self, netns: str) -> float:
        return self._reaped.get(netns, 0.0)

    def _close(self) -> None:
        for gauge in self._gauges.values():
            gauge.close()
        self._gauges.clear()
        self._hubs.clear()
        self._nsids.clear()
        if self._events is not None:
            self._events.close()
            self._events = None
        self.watching = False
