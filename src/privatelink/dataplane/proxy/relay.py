"""The relay: the user-space path of private link services with enableProxyProtocol.

The kernel path (nft DNAT + SNAT) cannot write into a TCP stream; this can. In each
provider hub with such a service, nft redirects the service's new flows to a listener
on `names.PROXY_PORT` (dataplane/nft.py). For each accepted flow the relay:

1. finds its link by where it came from (the pair veth's consumer address, or any
   address of the service's own network) and the PE address it went to
   (SO_ORIGINAL_DST), and its load-balancing rule by the port;
2. picks a healthy backend and a NAT IP as the kernel path would (`config.choose`,
   `config.nat_ip`), and connects from that NAT IP (a local address of the hub);
3. writes the PROXY v2 header: source = the client's own address and port in the
   consumer network (asked of the consumer hub's conntrack, which translated it),
   destination = the PE address and port it connected to, and Azure's LinkID TLV;
4. moves bytes both ways: small reads through one buffer, and a direction whose read
   fills it by splice(2) through a pipe from then on (no copy through Python), as
   HAProxy's splice-auto does (`_Pump`). A half-close is passed on; an error resets
   both ends.

One thread runs one event loop (`_EventLoop`: epoll, level-triggered) for every hub: a
socket is made in a hub by entering its namespace first (setns(2) changes only this
thread). More cores get more relays, in worker processes (`workers.py`).
Flows of a link that is no longer live are reset at the next `update` (after every
sync: within the same second as the kernel path's cut). A flow outlives its service's
flag: turning enableProxyProtocol off stops new flows coming here, not these.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from privatelink.dataplane import privileged
from privatelink.dataplane.names import PROXY_PORT
from privatelink.dataplane.proxy import header
from privatelink.dataplane.proxy.config import EMPTY, Hub, Link, ProxyConfig, choose, nat_ip

log = logging.getLogger("privatelink.proxy")

ACCEPT_BATCH = 64  # flows accepted per wake-up of a listener
PIPE_SIZE = 1 << 20  # bytes a direction moves per splice; pages are taken only when used
COPY_MAX = 1 << 14  # a read that fills this buffer makes its direction a spliced one
SPARE_PIPES = 256  # empty pipes kept for the next flows
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends a reset


_IN = privileged.EPOLLIN | privileged.EPOLLHUP | privileged.EPOLLERR  # a reader's turn
_OUT = privileged.EPOLLOUT | privileged.EPOLLHUP | privileged.EPOLLERR  # a writer's turn


class _EventLoop:
    """The relay thread's loop: what it used of asyncio's (readers and writers of
    descriptors, calls from other threads), on one level-triggered epoll.

    A flow's descriptors are watched from its start to its end, with changes only when
    what is watched changes: one epoll_ctl per change. (uvloop, used before, made and
    dropped a libuv handle per add/remove: about 18 epoll_ctl, half of them failing,
    and 5 ioctl per relayed connection.) Callbacks run on this thread; an exception is
    logged and the loop goes on, as asyncio's does."""

    def __init__(self) -> None:
        self._epoll = privileged.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self._writers: dict[int, Callable[[], None]] = {}
        self._masks: dict[int, int] = {}  # what epoll watches now, by descriptor
        # Descriptors dropped while a batch of events is dispatched: their remaining
        # events in the batch are stale (a descriptor number can be reused at once).
        self._dropped: set[int] = set()
        self._calls: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, privileged.EPOLLIN)
        self._running = False

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self._readers[fd] = callback
        self._watch(fd)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._watch(fd)

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        self._writers[fd] = callback
        self._watch(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._watch(fd)

    def forget(self, fd: int) -> None:
        """Stop watching `fd`, which its owner closes next: no epoll_ctl (closing a
        descriptor's last reference takes it out of epoll), so a flow's end costs none."""
        self._readers.pop(fd, None)
        self._writers.pop(fd, None)
        if self._masks.pop(fd, None) is not None:
            self._dropped.add(fd)

    def _watch(self, fd: int) -> None:
        mask = (privileged.EPOLLIN if fd in self._readers else 0) | (
            privileged.EPOLLOUT if fd in self._writers else 0
        )
        old = self._masks.get(fd, 0)
        if mask == old:
            return
        if not mask:
            del self._masks[fd]
            self._dropped.add(fd)
            with contextlib.suppress(OSError):  # closed already: epoll forgot it then
                self._epoll.unregister(fd)
            return
        try:
            if not old:
                self._masks[fd] = mask
                self._epoll.register(fd, mask)
            else:
                self._masks[fd] = mask
                self._epoll.modify(fd, mask)
        except FileExistsError:  # a reused number whose old file was closed unwatched
            self._epoll.modify(fd, mask)
        except FileNotFoundError:  # the same, the other way round
            self._epoll.register(fd, mask)

    def call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        self._calls.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., None], *args: Any) -> None:
        self._calls.append((callback, args))  # deque.append is atomic
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(self._wake_w, b"\0")

    def run_forever(self) -> None:
        self._running = True
        readers, writers, dropped = self._readers, self._writers, self._dropped
        while self._running:
            events = self._epoll.poll(0 if self._calls else -1, ACCEPT_BATCH * 4)
            dropped.clear()
            for fd, mask in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                if mask & _IN and fd not in dropped:
                    reader = readers.get(fd)
                    if reader is not None:
                        self._run(reader)
                if mask & _OUT and fd not in dropped:
                    writer = writers.get(fd)
                    if writer is not None:
                        self._run(writer)
            for _ in range(len(self._calls)):
                callback, args = self._calls.popleft()
                self._run(callback, *args)

    @staticmethod
    def _run(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("PROXY relay: a callback failed")

    def stop(self) -> None:
        """Return from `run_forever` after this round of callbacks (loop thread)."""
        self._running = False

    def close(self) -> None:
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


@dataclass
class RelayStats:
    """Counters since start (read from any thread; a snapshot, not atomic as a whole)."""

    accepted: int = 0  # flows the listeners took
    relayed: int = 0  # flows that reached a backend and got their header
    refused: int = 0  # flows reset at once: no live link, rule, backend or source
    failed: int = 0  # flows whose backend refused or that broke on the way
    cut: int = 0  # flows reset because their link went


class _Pipes:
    """A pool of empty pipes (read end, write end)."""

    def __init__(self) -> None:
        self._spare: list[tuple[int, int]] = []

    def get(self) -> tuple[int, int]:
        if self._spare:
            return self._spare.pop()
        return privileged.relay_pipe(PIPE_SIZE)

    def put(self, pipe: tuple[int, int], empty: bool) -> None:
        if empty and len(self._spare) < SPARE_PIPES:
            self._spare.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])

    def close(self) -> None:
        for r, w in self._spare:
            os.close(r)
            os.close(w)
        self._spare.clear()


class _Pump:
    """One direction of a flow: src -> dst.

    A direction's reads are copied through the relay's buffer while they are small,
    and spliced through a pipe once one fills the buffer (a bulk direction), as
    HAProxy's `splice-auto` does: for a request or answer of a few hundred bytes two
    splices and a pipe cost the kernel more than a copy (bench/dataplane.py --proxy)."""

    __slots__ = (
        "done",
        "dst",
        "dst_sock",
        "eof",
        "flow",
        "held",
        "pending",
        "pipe",
        "reading",
        "relay",
        "src",
        "src_sock",
        "way",
        "writing",
    )

    def __init__(self, flow: _Flow, src: socket.socket, dst: socket.socket, way: int) -> None:
        self.flow = flow
        self.relay = flow.relay
        self.way = way  # 0: client -> backend (in), 1: backend -> client (out)
        self.src_sock, self.dst_sock = src, dst
        self.src, self.dst = src.fileno(), dst.fileno()
        self.pipe: tuple[int, int] | None = None  # taken when the direction is bulk
        self.pending = 0  # bytes in the pipe
        # Bytes read by copy that dst has not taken: a view of the relay's buffer until
        # the next read (flushed before it), or bytes of their own once dst is slow.
        self.held: bytes | memoryview = b""
        self.eof = False
        self.done = False
        # What the loop watches for this pump: each change costs the loop a call (and
        # the kernel an epoll_ctl), so only real changes are made.
        self.reading = False
        self.writing = False

    def start(self) -> None:
        if not self.eof and not self.reading:
            self.reading = True
            self.relay._loop_add_reader(self.src, self.readable)

    def read(self) -> int | None:
        """Take what src holds (into the buffer, or the pipe once bulk): the bytes taken,
        0 at EOF, None when it holds nothing now or the flow ended on an error."""
        relay = self.relay
        try:
            if self.pipe is not None:
                n = os.splice(self.src, self.pipe[1], PIPE_SIZE, flags=SPLICE_FLAGS)
                self.pending += n
            else:
                n = self.src_sock.recv_into(relay.buffer)
                if n:
                    self.held = relay.view[:n]
                    if n == COPY_MAX:  # bulk: splice from the next read on
                        self.pipe = relay._pipes.get()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self.flow.close(reset=True)
            return None
        if n == 0:
            self.eof = True
        return n

    def flush(self, more: bool = False) -> bool:
        """Give dst what was read; True when all of it went (False: the loop waits for
        dst to drain, or the flow ended). `more`: the half-close follows at once, and
        MSG_MORE holds the bytes for it (one segment carries both)."""
        held = self.held
        if held:
            try:
                m = self.dst_sock.send(held, socket.MSG_MORE if more else 0)
            except (BlockingIOError, InterruptedError):
                m = 0
            except OSError:
                self.flow.close(reset=True)
                return False
            self.flow.counter[self.way] += m
            if m < len(held):
                self.held = bytes(held[m:])  # off the shared buffer before its next read
                self._wait_writable()
                return False
            self.held = b""
        while self.pending:
            assert self.pipe is not None
            try:
                m = os.splice(self.pipe[0], self.dst, self.pending, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                self._wait_writable()
                return False
            except OSError:
                self.flow.close(reset=True)
                return False
            self.pending -= m
            self.flow.counter[self.way] += m
        return True

    def readable(self) -> None:
        n = self.read()
        if n is None:
            return
        # A small read often has the sender's FIN right behind it (an answer, then a
        # close): a peek finds it, so the bytes and the half-close leave together and
        # the loop needs no further round for this direction.
        more = bool(n) and self.pipe is None and self._ended()
        if self.flush(more) and self.eof:
            self.finish()

    def _ended(self) -> bool:
        """Whether src has nothing more to send (EOF queued), without taking data."""
        try:
            if not self.src_sock.recv(1, socket.MSG_PEEK):
                self.eof = True
        except OSError:  # nothing now (EAGAIN), or an error the next read reports
            pass
        return self.eof

    def finish(self) -> None:
        """src ended and dst has it all: pass the half-close on (or, when the other way
        is done too, close the flow: close(2) sends the FIN)."""
        flow = self.flow
        if self.done or flow.closed:
            return
        self.done = True
        if flow.finished:
            flow.close(reset=False)
            return
        flow.finished += 1
        if self.reading:
            self.reading = False
            self.relay._loop_remove_reader(self.src)
        with contextlib.suppress(OSError):
            self.dst_sock.shutdown(socket.SHUT_WR)

    def _wait_writable(self) -> None:
        """The receiver is slow: stop reading until its side drains."""
        if self.reading:
            self.reading = False
            self.relay._loop_remove_reader(self.src)
        if not self.writing:
            self.writing = True
            self.relay._loop_add_writer(self.dst, self.writable)

    def writable(self) -> None:
        self.writing = False
        self.relay._loop_remove_writer(self.dst)
        if self.flush():
            if self.eof:
                self.finish()
            elif not self.flow.closed:
                self.start()

    def stop(self) -> None:
        """End the pump; its flow closes both sockets next (see `_EventLoop.forget`)."""
        relay = self.relay
        self.reading = self.writing = False
        self.held = b""
        relay._loop_forget(self.src)
        relay._loop_forget(self.dst)
        if self.pipe is not None:
            relay._pipes.put(self.pipe, empty=self.pending == 0)
            self.pipe = None


class _Flow:
    """A relayed connection: the client's socket, the backend's, a pump each way."""

    __slots__ = (
        "backend",
        "client",
        "closed",
        "connecting",
        "counter",
        "down",
        "finished",
        "header",
        "link_key",
        "relay",
        "tried",
        "up",
    )

    def __init__(
        self,
        relay: Relay,
        link_key: str,
        client: socket.socket,
        backend: socket.socket,
        header: bytes,
        counter: list[int],  # bytes in, bytes out, flows of its link and port
    ) -> None:
        self.relay = relay
        self.link_key = link_key
        self.client = client
        self.backend = backend
        self.header = header
        self.counter = counter
        self.up = _Pump(self, client, backend, 0)
        self.down = _Pump(self, backend, client, 1)
        self.tried = False  # the client's first bytes were read
        self.closed = False
        self.connecting = False  # the loop watches the backend for its connect
        self.finished = 0  # directions done

    def begin(self) -> bool:
        """Send the header and start moving bytes; False (nothing sent) while the
        backend's connect is under way.

        Tried first right after connect(2): to a backend over veths the handshake has
        usually completed within that call (the SYN and its answer are processed before
        it returns), which saves the loop a round. What the client sent meanwhile (a
        client that speaks first: most) leaves with the header in one segment (one
        sendmsg), without waiting for the loop either."""
        relay, up = self.relay, self.up
        if not self.tried:
            self.tried = True
            up.read()
            if self.closed:
                return True
        held = up.held
        try:
            sent = self.backend.sendmsg([self.header, held] if held else [self.header])
        except (BlockingIOError, InterruptedError):
            if held:
                up.held = bytes(held)  # off the shared buffer: the loop comes back later
            return False
        except OSError:  # refused (the reset came back within connect(2)) or broken
            sent = -1
        if sent < len(self.header):  # a fresh socket takes a few dozen bytes whole
            relay.stats.failed += 1
            self.close(reset=True)
            return True
        relay.stats.relayed += 1
        m = sent - len(self.header)
        self.counter[0] += m
        up.held = bytes(held[m:]) if m < len(held) else b""
        self.down.start()
        if up.flush():
            if up.eof:
                up.finish()
            else:
                up.start()
        return True

    def connected(self) -> None:
        """The backend's connect completed (or failed): the loop's report."""
        relay = self.relay
        self.connecting = False
        relay._loop_remove_writer(self.backend.fileno())
        code = self.backend.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            relay.stats.failed += 1
            self.close(reset=True)
            return
        self.wait_connect()

    def wait_connect(self) -> None:
        """`begin` now, or when the loop reports the connect done."""
        if not self.begin():
            self.connecting = True
            self.relay._loop_add_writer(self.backend.fileno(), self.connected)

    def close(self, reset: bool) -> None:
        """End the flow: both sockets closed (with a reset when `reset`)."""
        if self.closed:
            return
        self.closed = True
        relay = self.relay
        if self.connecting:
            relay._loop_forget(self.backend.fileno())
        self.up.stop()
        self.down.stop()
        relay._forget(self)
        for sock in (self.client, self.backend):
            if reset:
                _reset(sock)
            else:
                sock.close()


@dataclass(eq=False)
class _Listener:
    netns: str
    inode: int
    sock: socket.socket
    netns_fd: int
    hub: Hub


class Relay:
    """Serves every provider hub with PROXY services (see the module's docstring)."""

    def __init__(self, kernel: Any = privileged) -> None:
        self.kernel = kernel
        self.stats = RelayStats()
        self._config = EMPTY
        self._listeners: dict[str, _Listener] = {}  # loop thread only
        self._flows: dict[str, set[_Flow]] = {}  # by link key; loop thread only
        # (link key, frontend port) -> [bytes in, bytes out, flows]; written by the loop
        # thread, copied whole by `traffic` (a dict copy holds the GIL throughout).
        self._traffic: dict[tuple[str, int], list[int]] = {}
        self._pipes = _Pipes()
        # Where small reads go (loop thread only): sent on before the next read.
        self.buffer = bytearray(COPY_MAX)
        self.view = memoryview(self.buffer)
        self._ct = privileged.ConntrackLookup()
        self._entered: int | None = None  # the netns fd this thread is in
        self._home = -1  # the namespace the thread started in (an fd; the thread's own)
        self._loop: _EventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)
        self._generation = 0  # updates asked for
        self._done = 0  # updates applied

    # --- any thread -------------------------------------------------------------------

    def update(self, config: ProxyConfig) -> None:
        """Serve `config` from now on (applied on the relay's thread, soon)."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            if self._loop is None:
                if not config.hubs and not self._listeners:
                    self._done = generation
                    self._config = config
                    return  # nothing to serve: no thread until there is
                self._start()
            loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(self._apply, config, generation)

    def wait_applied(self, timeout: float = 10.0) -> bool:
        """Wait until every `update` so far is in effect."""
        with self._lock:
            target = self._generation
            return self._applied.wait_for(lambda: self._done >= target, timeout)

    def traffic(self) -> dict[tuple[str, int], tuple[int, int, int]]:
        """Since start, per (link key, frontend port): payload bytes relayed in (client
        to backend) and out, and flows relayed (what the metrics sampler reads; the
        counters of a link go a sync after its last flow when the link is gone)."""
        return {k: (v[0], v[1], v[2]) for k, v in dict(self._traffic).items()}

    def flows(self) -> int:
        """Flows open now."""
        return sum(len(f) for f in list(self._flows.values()))

    def listening(self) -> set[str]:
        """Hubs with a listener now."""
        return set(self._listeners)

    def stop(self) -> None:
        """Reset every flow, close the listeners and end the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = None
        if loop is None or thread is None:
            return

        def shutdown() -> None:
            for flows in list(self._flows.values()):
                for flow in list(flows):
                    flow.close(reset=True)
            for netns in list(self._listeners):
                self._close_listener(netns)
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        thread.join(timeout=10)
        loop.close()
        self._pipes.close()
        self._ct.close()

    def _start(self) -> None:
        loop = _EventLoop()
        started = threading.Event()

        def run() -> None:
            # Where the thread starts: it returns there when it leaves a hub for good (a
            # thread inside a deleted namespace would keep it, and its veths, alive).
            self._home = self.kernel.open_own_netns()
            loop.call_soon(started.set)
            try:
                loop.run_forever()
            finally:
                os.close(self._home)

        self._loop = loop
        self._thread = threading.Thread(target=run, name="proxy-relay", daemon=True)
        self._thread.start()
        started.wait(10)

    # --- the loop thread ----------------------------------------------------------------

    def _loop_add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.add_reader(fd, callback)

    def _loop_remove_reader(self, fd: int) -> None:
        if self._loop is not None:
            self._loop.remove_reader(fd)

    def _loop_add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.add_writer(fd, callback)

    def _loop_remove_writer(self, fd: int) -> None:
        if self._loop is not None:
            self._loop.remove_writer(fd)

    def _loop_forget(self, fd: int) -> None:
        if self._loop is not None:
            self._loop.forget(fd)

    def _apply(self, config: ProxyConfig, generation: int) -> None:
        try:
            self._config = config
            self._ct.revalidate()
            for k in [k for k in self._traffic if k[0] not in config.live]:
                if k[0] not in self._flows:
                    del self._traffic[k]
            for link_key in [k for k in self._flows if k not in config.live]:
                for flow in list(self._flows.get(link_key, ())):
                    self.stats.cut += 1
                    flow.close(reset=True)
            for netns, listener in list(self._listeners.items()):
                hub = config.hubs.get(netns)
                if hub is None or self.kernel.netns_inode(netns) != listener.inode:
                    self._close_listener(netns)
                else:
                    listener.hub = hub
            for netns, hub in config.hubs.items():
                if netns not in self._listeners:
                    self._open_listener(netns, hub)
        finally:
            with self._lock:
                self._done = max(self._done, generation)
                self._applied.notify_all()

    def _open_listener(self, netns: str, hub: Hub) -> None:
        try:
            sock, inode = self.kernel.listener_in_netns(netns, PROXY_PORT)
        except privileged.KernelError as exc:
            log.warning("PROXY relay: cannot listen in %s: %s", netns, exc.message)
            return
        try:
            fd = self.kernel.open_netns(netns)
        except privileged.KernelError as exc:
            sock.close()
            log.warning("PROXY relay: cannot open %s: %s", netns, exc.message)
            return
        listener = _Listener(netns, inode, sock, fd, hub)
        self._listeners[netns] = listener
        self._loop_add_reader(sock.fileno(), lambda: self._accept(listener))
        log.info("PROXY relay: serving in %s", netns)

    def _close_listener(self, netns: str) -> None:
        listener = self._listeners.pop(netns)
        self._loop_remove_reader(listener.sock.fileno())
        listener.sock.close()
        if self._entered == listener.netns_fd:
            self.kernel.enter_netns(self._home)
            self._entered = None
        os.close(listener.netns_fd)
        self._ct.forget(netns)

    def _accept(self, listener: _Listener) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                client, peer = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of descriptors: try again on the next wake-up
                log.debug("PROXY relay: accept in %s: %s", listener.netns, exc)
                return
            self.stats.accepted += 1
            try:
                self._relay(listener, client, peer[0], peer[1])
            except Exception:  # one flow's failure must not stop the listener
                log.exception("PROXY relay: a flow in %s failed", listener.netns)
                self.stats.failed += 1
                _reset(client)

    def _relay(self, listener: _Listener, client: socket.socket, src: str, sport: int) -> None:
        client.setblocking(False)
        hub = listener.hub
        try:
            pe_ip, port = self.kernel.original_destination(client)
        except OSError:
            pe_ip, port = "", 0
        link = hub.link(src, pe_ip)
        service = hub.services.get(link.service) if link is not None else None
        route = service.routes.get(port) if service is not None else None
        if (
            link is None
            or service is None
            or route is None
            or link.link_key not in (self._config.live)
        ):
            self._refuse(client)
            return
        backend = choose(route, src, sport, pe_ip, port)
        source_ip = nat_ip(service, src, sport)
        if link.local:
            origin: tuple[str, int] | None = (src, sport)
        else:
            origin = self._origin(listener, client, link, pe_ip, port, src, sport)
        if backend is None or source_ip is None or origin is None:
            self._refuse(client)
            return
        if self._entered != listener.netns_fd:
            self.kernel.enter_netns(listener.netns_fd)
            self._entered = listener.netns_fd
        try:
            sock = self.kernel.connecting_socket(source_ip)
        except OSError as exc:
            log.debug("PROXY relay: bind %s in %s: %s", source_ip, listener.netns, exc)
            self._refuse(client)
            return
        code = sock.connect_ex((backend, route.backend_port))
        if code not in (0, errno.EINPROGRESS):
            self.stats.failed += 1
            _reset(sock)
            _reset(client)
            return
        data = header.encode(origin[0], pe_ip, origin[1], port, link.link_id)
        counter = self._traffic.setdefault((link.link_key, port), [0, 0, 0])
        counter[2] += 1
        flow = _Flow(self, link.link_key, client, sock, data, counter)
        self._flows.setdefault(link.link_key, set()).add(flow)
        flow.wait_connect()

    def _origin(
        self,
        listener: _Listener,
        client: socket.socket,
        link: Link,
        pe_ip: str,
        port: int,
        src: str,
        sport: int,
    ) -> tuple[str, int] | None:
        """The client's own address and port, from the consumer hub's conntrack.

        Every flow from one consumer hub reaches this listener from the pair's consumer
        address, whatever endpoint or port it was for: two flows from one client port
        (to two ports, or two PROXY endpoints) would share the reply tuple here, and
        conntrack then moves the later one's source port. The port the consumer hub
        knows is then in this hub's entry (its original direction)."""
        consumer = link.consumer_netns
        origin = self._ct.original_source(consumer, pe_ip, src, port, sport)
        if origin is not None:
            return origin
        try:
            here = client.getsockname()[0]
        except OSError:
            return None
        before = self._ct.original_source(listener.netns, here, src, PROXY_PORT, sport)
        if before is None or before[1] == sport:
            return None
        return self._ct.original_source(consumer, pe_ip, src, port, before[1])

    def _refuse(self, client: socket.socket) -> None:
        self.stats.refused += 1
        _reset(client)

    def _forget(self, flow: _Flow) -> None:
        flows = self._flows.get(flow.link_key)
        if flows is not None:
            flows.discard(flow)
            if not flows:
                del self._flows[flow.link_key]
