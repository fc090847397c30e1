"""The DNS server of every VNet: 168.63.129.16:53 (UDP and TCP) inside each hub namespace.

One thread runs one asyncio loop that serves every hub's sockets and keeps two things
current, never both at once:

- the answer table (`ResolverTable`): `mark_dirty()` (every committed change, through
  the control plane) bumps a generation; the loop reads every VNet's zones from the
  store off the loop (in an executor, so queries keep being answered from the previous
  table), compiles only the VNets whose zones or records differ from what their table
  was built from, and swaps the new table in (`last_rebuild` says what it cost).
  `wait_idle()` returns once the table covers every mark made before it.
- the bindings: one UDP socket and one TCP listener per hub namespace of a VNet in the
  store. `hubs_changed()` (the reconciler, after each sync) and a timer every
  RECHECK_SECONDS compare them with /run/netns: new hubs are bound, sockets of gone hubs
  closed (a socket keeps its namespace alive), and a hub whose namespace was recreated
  (another inode) is rebound.

A socket knows its VNet key; a VNet without links answers REFUSED. A readable UDP socket
is drained of up to UDP_BATCH datagrams per wake-up (one loop iteration per datagram
costs more than answering it). Errors are logged and retried; nothing here raises into
the API server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from privatelink.core.ids import key
from privatelink.core.private_dns import LINK_TYPE, VirtualNetworkLink, answers_by_vnet
from privatelink.core.virtual_network import TYPE as VNET_TYPE
from privatelink.dataplane import names, privileged
from privatelink.dns.resolver import EMPTY, ResolverTable
from privatelink.store.sql import SqlRepository

log = logging.getLogger("privatelink.dns")

DNS_PORT = 53
RECHECK_SECONDS = 2.0  # bindings are compared with /run/netns at least this often
TCP_IDLE_SECONDS = 10.0  # a TCP client silent this long is disconnected
MAX_TCP_QUERIES = 1000  # queries per TCP connection before we close it
MAX_TCP_CONNECTIONS = 256  # open TCP connections over all hubs; more are closed at once
MAX_BACKOFF_SECONDS = 5.0
UDP_BATCH = 64  # datagrams read per wake-up of a UDP socket
MAX_UDP_BACKLOG = 1024  # replies waiting for a full socket buffer; more are dropped
UDP_MAX = 65535  # a datagram is read whole, however large


@dataclass(frozen=True)
class RebuildStats:
    """What the last table swap cost."""

    read_seconds: float  # reading every VNet's zones and records from the store
    compile_seconds: float  # compiling the VNets that changed
    rebuilt_vnets: int  # VNets compiled anew (or dropped)
    kept_vnets: int  # VNets whose table was kept as it was
    mark_to_swap_seconds: float | None  # oldest mark_dirty() covered -> the swap


@dataclass
class Binding:
    """The sockets serving one hub namespace."""

    vnet_key: str
    inode: int  # of the namespace the sockets live in
    udp: _UdpEndpoint
    tcp: asyncio.Server
    clients: set[asyncio.StreamWriter] = field(default_factory=set)

    def close(self) -> None:
        """Close the sockets and the TCP connections (idempotent)."""
        self.udp.close()
        self.tcp.close()
        for writer in list(self.clients):
            writer.close()
        self.clients.clear()


class _UdpEndpoint:
    """Answers the datagrams of one hub's UDP socket, read in batches on the loop.

    asyncio's datagram transport reads one datagram per loop iteration (into a 256 KiB
    buffer); under load most of a query's cost was that, not the answer. Replies go
    straight to the socket; when its buffer is full they wait (bounded) until it drains.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        server: DnsServer,
        vnet_key: str,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.server = server
        self.vnet_key = vnet_key
        self._fd = sock.fileno()
        self._buffer = bytearray(UDP_MAX)
        self._view = memoryview(self._buffer)
        self._backlog: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._closed = False
        sock.setblocking(False)
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        sock, view = self.sock, self._view
        for _ in range(UDP_BATCH):
            try:
                size, addr = sock.recvfrom_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("udp error in %s: %s", self.vnet_key, exc)
                return
            reply = self.server.reply(self.vnet_key, view[:size].tobytes(), over_tcp=False)
            if reply is not None:
                self._send(reply, addr)

    def _send(self, reply: bytes, addr: Any) -> None:
        if self._backlog:
            if len(self._backlog) < MAX_UDP_BACKLOG:
                self._backlog.append((reply, addr))
            return
        try:
            self.sock.sendto(reply, addr)
        except (BlockingIOError, InterruptedError):
            self._backlog.append((reply, addr))
            self.loop.add_writer(self._fd, self._writable)
        except OSError as exc:  # e.g. the client's address is unreachable: drop it
            log.debug("udp send in %s: %s", self.vnet_key, exc)

    def _writable(self) -> None:
        while self._backlog:
            reply, addr = self._backlog[0]
            try:
                self.sock.sendto(reply, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("udp send in %s: %s", self.vnet_key, exc)
            self._backlog.popleft()
        self.loop.remove_writer(self._fd)

    def close(self) -> None:
        """Stop reading and close the socket (idempotent; loop thread)."""
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self._fd)
        self.loop.remove_writer(self._fd)
        self._backlog.clear()
        self.sock.close()


class DnsServer:
    """Serves each VNet's private zones at 168.63.129.16 in its hub; a `Realizer`."""

    def __init__(
        self,
        repo: SqlRepository,
        prefix: str,
        *,
        address: str = names.AZURE_PLATFORM_IP,
        port: int = DNS_PORT,
        recheck_seconds: float = RECHECK_SECONDS,
        kernel: Any = privileged,
    ) -> None:
        """`kernel`: the privileged module (tests may pass a fake with its functions)."""
        self.repo = repo
        self.prefix = names.check_prefix(prefix)
        self.address = address
        self.port = port
        self.recheck_seconds = recheck_seconds
        self.kernel = kernel
        self.table: ResolverTable = EMPTY
        self.rebuilds = 0  # tables built so far
        self.last_rebuild: RebuildStats | None = None
        self.binds = 0  # hub bindings made so far (a recreated hub is bound again)
        self.checks = 0  # binding checks completed so far
        self.last_error: str | None = None
        self._changed = threading.Condition()
        self._wanted = 0  # generation bumped by mark_dirty
        self._marked_at: float | None = None  # the oldest mark no rebuild has started for
        self._built = 0  # generation the current table covers
        self._rebind = True
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._bindings: dict[str, Binding] = {}  # hub netns -> sockets (loop thread only)
        self._tcp_clients = 0
        self._bind_failed: set[str] = set()  # hubs whose last bind failed (logged once)

    # --- Realizer -------------------------------------------------------------------

    def mark_dirty(self) -> None:
        """The store changed: rebuild the table soon."""
        with self._changed:
            self._wanted += 1
            if self._marked_at is None:
                self._marked_at = time.monotonic()
        self._poke()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once the table reflects every mark made so far; False on timeout or when
        the server is not running."""
        with self._changed:
            target = self._wanted
            return self._changed.wait_for(
                lambda: self._built >= target or not self.running, timeout
            ) and (self._built >= target)

    def hubs_changed(self) -> None:
        """Hub namespaces may have come or gone: re-check the bindings now."""
        self._rebind = True
        self._poke()

    # --- lifecycle ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the serving thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start serving (the table is built and hubs bound at once)."""
        if self.running:
            return
        self._stopping = False
        self._rebind = True
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="dns", daemon=True)
        self._thread.start()
        started.wait(timeout=10)

    def stop(self) -> None:
        """Close every socket and stop the thread."""
        self._stopping = True
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                log.warning("the DNS server thread did not stop within 10 s")
        with self._changed:
            self._changed.notify_all()  # wake wait_idle callers: nothing will be built now

    def bound(self) -> dict[str, str]:
        """Hub namespaces served now -> their VNet keys."""
        return {netns: b.vnet_key for netns, b in list(self._bindings.items())}

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to wake
            loop.call_soon_threadsafe(wake.set)

    def _run(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._wake = asyncio.Event()
            started.set()
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("the DNS server stopped on an error")
        finally:
            started.set()
            self._loop = None
            self._wake = None
            for binding in self._bindings.values():
                binding.close()
            self._bindings.clear()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    # --- the loop -------------------------------------------------------------------

    async def _main(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        backoff = 0.0
        next_check = 0.0
        while not self._stopping:
            with self._changed:
                target = self._wanted
                dirty = self._built < target or self.rebuilds == 0
                marked_at = self._marked_at if dirty else None
                if dirty:
                    self._marked_at = None
            now = time.monotonic()
            rebind = self._rebind or now >= next_check
            if not dirty and not rebind:
                # Sleep until poked (a mark, hubs changed, stop) or the periodic check.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_check - now))
                self._wake.clear()
                continue
            failed = False
            if dirty:
                try:
                    table, read_s, compile_s = await loop.run_in_executor(None, self._read_table)
                except Exception as exc:  # e.g. the database is unreachable: retry
                    log.exception("rebuilding the DNS table failed")
                    self.last_error = f"rebuild: {exc}"
                    failed = True
                    with self._changed:  # the marks are still to be covered
                        if marked_at is not None and self._marked_at is None:
                            self._marked_at = marked_at
                else:
                    self.table = table
                    self.rebuilds += 1
                    self.last_rebuild = RebuildStats(
                        read_s,
                        compile_s,
                        len(table.rebuilt),
                        len(table.vnets) - len(table.rebuilt & table.vnets),
                        None if marked_at is None else time.monotonic() - marked_at,
                    )
                    with self._changed:
                        self._built = max(self._built, target)
                        self._changed.notify_all()
            if rebind and not self._stopping:
                self._rebind = False
                next_check = time.monotonic() + self.recheck_seconds
                try:
                    await self._check_bindings()
                    self.checks += 1
                except Exception as exc:
                    log.exception("checking the DNS server's hubs failed")
                    self.last_error = f"bindings: {exc}"
                    self._rebind = True
                    failed = True
            if failed:
                backoff = min(max(backoff * 2, 0.2), MAX_BACKOFF_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped_soon(), backoff)
            else:
                backoff = 0.0

    async def _stopped_soon(self) -> None:
        """Returns when stop() is called (a back-off wait that stop can cut short)."""
        assert self._wake is not None
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()

    def _read_table(self) -> tuple[ResolverTable, float, float]:
        """The table of the store now, with the seconds spent reading and compiling
        (runs in an executor thread). VNets whose zones did not change keep their
        compiled table (the current one is only read here, never changed)."""
        # The cyclic collector stays off meanwhile: reading thousands of records makes
        # objects that die within the rebuild, and a collection in the middle would
        # promote them to older generations, soon calling for a full collection (~50 ms
        # with a few hundred thousand live objects) in the middle of a later rebuild.
        # Off, they die uncounted; what the table keeps is collected once it is back on.
        collecting = gc.isenabled()
        gc.disable()
        try:
            started = time.perf_counter()
            with self.repo.read() as view:
                links = (
                    r for r in self.repo.iter_all(LINK_TYPE) if isinstance(r, VirtualNetworkLink)
                )
                answers = answers_by_vnet(view, links)
            read = time.perf_counter()
            table = ResolverTable.compile(answers, previous=self.table)
            return table, read - started, time.perf_counter() - read
        finally:
            if collecting:
                gc.enable()

    def _present_hubs(self) -> dict[str, tuple[str, int]]:
        """Hub namespace -> (VNet key, namespace inode) of every stored VNet whose hub
        exists now (runs in an executor thread)."""
        out = {}
        for vnet in self.repo.iter_all(VNET_TYPE):
            netns = names.hub_netns(self.prefix, vnet.id)
            inode = self.kernel.netns_inode(netns)
            if inode is not None:
                out[netns] = (key(vnet.id), inode)
        return out

    async def _check_bindings(self) -> None:
        loop = asyncio.get_running_loop()
        present = await loop.run_in_executor(None, self._present_hubs)
        for netns, binding in list(self._bindings.items()):
            if present.get(netns) != (binding.vnet_key, binding.inode):
                log.info("DNS: closing the sockets of %s (hub gone or recreated)", netns)
                self._bindings.pop(netns).close()
        for netns, (vnet_key, _inode) in sorted(present.items()):
            if netns in self._bindings or self._stopping:
                continue
            try:
                await self._bind(netns, vnet_key)
            except privileged.AddressNotReady as exc:
                # A hub in its first sync: the sync's end (hubs_changed) binds it.
                log.debug("DNS: not yet in %s: %s", netns, exc.message)
            except privileged.KernelError as exc:
                # e.g. the hub vanished since we looked: the next check sees it. A lasting
                # failure is retried every check but logged as a warning once.
                level = logging.DEBUG if netns in self._bind_failed else logging.WARNING
                log.log(level, "DNS: cannot serve in %s: %s", netns, exc.message)
                self._bind_failed.add(netns)
            else:
                self._bind_failed.discard(netns)
        self._bind_failed &= set(present)

    async def _bind(self, netns: str, vnet_key: str) -> None:
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock, inode = await loop.run_in_executor(
            None, self.kernel.server_sockets_in_netns, netns, self.address, self.port
        )
        try:
            udp = _UdpEndpoint(loop, udp_sock, self, vnet_key)
        except Exception:
            udp_sock.close()
            tcp_sock.close()
            raise
        clients: set[asyncio.StreamWriter] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve_tcp(vnet_key, clients, reader, writer)

        try:
            server = await asyncio.start_server(handle, sock=tcp_sock)
        except Exception:
            udp.close()
            tcp_sock.close()
            raise
        self._bindings[netns] = Binding(vnet_key, inode, udp, server, clients)
        self.binds += 1
        log.info("DNS: serving %s:%d in %s", self.address, self.port, netns)

    # --- queries --------------------------------------------------------------------

    def reply(self, vnet_key: str, wire: bytes, over_tcp: bool) -> bytes | None:
        """The reply to one query from a VNet (None: stay silent); never raises."""
        try:
            return self.table.answer(vnet_key, wire, over_tcp)
        except Exception:  # a resolver bug must cost one answer, not the server
            log.exception("DNS: answering a query failed")
            return None

    async def _serve_tcp(
        self,
        vnet_key: str,
        clients: set[asyncio.StreamWriter],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """RFC 7766: length-prefixed queries, several per connection, answered in order."""
        if self._tcp_clients >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._tcp_clients += 1
        clients.add(writer)
        try:
            for _ in range(MAX_TCP_QUERIES):
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                size = int.from_bytes(head, "big")
                wire = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_SECONDS)
                answer = self.reply(vnet_key, wire, over_tcp=True)
                if answer is None:
                    break
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await asyncio.wait_for(writer.drain(), TCP_IDLE_SECONDS)
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass  # the client went away or idled: close quietly
        finally:
            self._tcp_clients -= 1
            clients.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
