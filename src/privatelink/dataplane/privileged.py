"""Everything that needs root: namespaces, links, addresses, routes, nft, conntrack.

The one module of privatelink that changes the kernel or runs programs, and the one that
listens to it (`KernelEvents`, `ConntrackGauge`). Kernel errors (errno) become typed
exceptions here; a namespace that vanished mid-operation is reported as `NetnsNotFound`
so the next sync can repair.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from privatelink.dataplane import events
from privatelink.dataplane.events import KernelEvent
from privatelink.dataplane.ipsec import (
    IpsecEndpoint,
    Mode,
    SaState,
    choose_mode,
    parse_list_sas,
    render_strongswan_conf,
    render_swanctl_conf,
)

T = TypeVar("T")


class KernelError(Exception):
    """A kernel operation failed; `message` says what and where."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NetnsNotFound(KernelError):
    """The namespace does not exist (any more)."""


class AddressNotReady(KernelError):
    """The address to listen on is not on an interface of the namespace yet."""


class InterfaceNotFound(KernelError):
    """An interface is missing in a namespace."""


class NftApplyFailed(KernelError):
    """nft refused a transaction (nothing of it was applied)."""


class CommandFailed(KernelError):
    """A helper program (conntrack, ip) failed."""


def _pyroute2() -> Any:
    import pyroute2

    return pyroute2


def _wrap(exc: Exception, what: str, netns: str) -> KernelError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if code == errno.ENODEV:
        return InterfaceNotFound(f"{what} in {netns}: no such interface")
    return KernelError(f"{what} in {netns}: {exc}")


# --- namespaces -------------------------------------------------------------------------


NETNS_DIR = "/run/netns"


def list_netns() -> list[str]:
    """Names of all named network namespaces."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_ok(name: str) -> bool:
    """Whether /run/netns/<name> is a namespace: a mount of nsfs, not the empty file that
    `ip netns add` (or pyroute2) leaves when it is killed between creating and mounting."""
    try:
        return os.stat(os.path.join(NETNS_DIR, name)).st_dev != os.stat(NETNS_DIR).st_dev
    except OSError:
        return False


def create_netns(name: str) -> None:
    """Create a named namespace (no error if it exists; a half-made one is made again)."""
    if name in list_netns():
        if netns_ok(name):
            return
        _remove_netns_file(name)
    try:
        _pyroute2().netns.create(name)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise KernelError(f"create namespace {name}: {exc}") from exc


def _remove_netns_file(name: str) -> None:
    path = os.path.join(NETNS_DIR, name)
    _libc().umount2(path.encode(), MNT_DETACH)  # not mounted: EINVAL, fine
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise KernelError(f"remove the half-made namespace {name}: {exc}") from exc


def delete_netns(name: str) -> None:
    """Delete a named namespace (no error if already gone)."""
    forget_nft(name)
    try:
        _pyroute2().netns.remove(name)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise KernelError(f"delete namespace {name}: {exc}") from exc


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread that has entered namespace `name`.

    setns(2) changes only the calling thread, so the rest of the process stays put.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _pyroute2().netns.setns(name, flags=0)
        except OSError as exc:
            failure.append(NetnsNotFound(f"enter namespace {name}: {exc}"))
            return
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def socket_in_netns(name: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in namespace `name` (sockets keep their namespace)."""
    return in_netns(name, lambda: socket.socket(socket.AF_INET, kind))


def netns_inode(name: str) -> int | None:
    """The inode of a named namespace (it changes when the namespace is recreated), or None."""
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


LOOPBACK_INDEX = 1  # the kernel gives `lo` this index in every namespace (LOOPBACK_IFINDEX)
# select(2) takes descriptors below this only: libnftables (1.0.6) waits on its netlink
# socket with select(), and glibc aborts the process when that socket is numbered higher.
FD_SETSIZE = 1024


def above_select(fd: int) -> int:
    """`fd` moved to a number at or above FD_SETSIZE (the original closed) when the open
    files limit allows: descriptors kept per namespace (DNS, conntrack) then leave the
    low numbers to the nft contexts, which need them (see FD_SETSIZE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft <= FD_SETSIZE + 64:
        return fd
    try:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_SETSIZE)
    except OSError:
        return fd  # no free number up there: keep it where it is
    os.close(fd)
    return moved


def socket_above_select(sock: socket.socket) -> socket.socket:
    """`above_select` for a socket (its options and binding go with the descriptor;
    blocking mode and timeout are the caller's to set again)."""
    return socket.socket(fileno=above_select(sock.detach()))


def server_sockets_in_netns(
    name: str, address: str, port: int
) -> tuple[socket.socket, socket.socket, int]:
    """A UDP socket and a listening TCP socket on address:port inside namespace `name`,
    with the inode of the namespace they live in (compare with `netns_inode`).

    Raises `AddressNotReady` while `address` is not on an interface there yet (a new
    hub gets its addresses later in its first sync; the caller binds after it). The
    check is not bind's own: in a namespace without a local routing table yet (nothing
    up), the kernel takes any address for a broadcast one, so the bind succeeds with no
    fixed source, and the UDP replies then leave from the route's source (169.254.0.1),
    which clients reject. (IP_FREEBIND, used before, allowed exactly that.)
    """

    def make() -> tuple[socket.socket, socket.socket, int]:
        if not _is_local(address):
            raise AddressNotReady(f"{address} is not on an interface in {name} yet")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            for sock in (udp, tcp):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setblocking(False)
                sock.bind((address, port))
            tcp.listen(128)
            inode = os.stat("/proc/thread-self/ns/net").st_ino
        except OSError as exc:
            udp.close()
            tcp.close()
            if exc.errno == errno.EADDRNOTAVAIL:
                raise AddressNotReady(f"{address} is not on an interface in {name} yet") from exc
            raise KernelError(f"listen on {address}:{port} in {name}: {exc}") from exc
        udp, tcp = socket_above_select(udp), socket_above_select(tcp)
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp, inode

    return in_netns(name, make)


# --- the PROXY relay's sockets (dataplane/proxy/relay.py) ----------------------------------

SO_ORIGINAL_DST = 80  # SOL_IP: a redirected flow's destination before the redirect
IP_BIND_ADDRESS_NO_PORT = 24  # bind an address now, the port at connect (per 4-tuple)
CLONE_NEWNET = 0x40000000


def listener_in_netns(name: str, port: int, backlog: int = 4096) -> tuple[socket.socket, int]:
    """A non-blocking TCP listener on 0.0.0.0:port inside namespace `name`, with the
    inode of that namespace (compare with `netns_inode`)."""

    def make() -> tuple[socket.socket, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # The relay's worker processes each listen on the port (proxy/workers.py).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(backlog)
            inode = os.stat("/proc/thread-self/ns/net").st_ino
        except OSError as exc:
            sock.close()
            raise KernelError(f"listen on port {port} in {name}: {exc}") from exc
        sock = socket_above_select(sock)
        sock.setblocking(False)
        return sock, inode

    return in_netns(name, make)


def open_netns(name: str) -> int:
    """A descriptor of namespace `name`, for `enter_netns` (the caller closes it)."""
    try:
        return above_select(os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        raise NetnsNotFound(f"open namespace {name}: {exc}") from exc


def open_own_netns() -> int:
    """A descriptor of the calling thread's namespace (to come back to with
    `enter_netns`; the caller closes it)."""
    return above_select(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))


def enter_netns(fd: int) -> None:
    """Move the calling thread into the namespace open as `fd`: the sockets it makes
    from now on live there (setns(2) changes only this thread)."""
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise KernelError(f"enter namespace (fd {fd}): {os.strerror(code)}")


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where a redirected TCP flow was going (its address and port before nft's
    `redirect`), from the socket's conntrack entry."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    return socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big")


F_SETPIPE_SZ = 1031


EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
EPOLLHUP, EPOLLERR = select.EPOLLHUP, select.EPOLLERR


def epoll() -> select.epoll:
    """A new epoll instance (the relay's event loop)."""
    return select.epoll()


def relay_pipe(size: int) -> tuple[int, int]:
    """A non-blocking pipe (read end, write end) holding up to `size` bytes when the
    system allows it (/proc/sys/fs/pipe-max-size), for splice(2)."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, F_SETPIPE_SZ, size)
    return r, w


def connecting_socket(source: str) -> socket.socket:
    """A non-blocking TCP socket bound to `source` (the port comes with connect, so one
    address carries a flow per port and destination, as SNAT does), in the calling
    thread's namespace."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
    except OSError:
        sock.close()
        raise
    return sock


def relay_worker_process(module: str, fd: int) -> subprocess.Popen[bytes]:
    """Start `python -m module FD` (a relay worker, proxy/workers.py) with the socket
    `fd` passed on, in a session of its own: the terminal's Ctrl-C goes to the server,
    which stops it (and when the server dies, the child sees the socket close)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, str(fd)],
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
    )


def end_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait up to `timeout` for a process this server started to exit, then SIGTERM
    it, then SIGKILL it; reaped either way."""
    for step in (None, proc.terminate, proc.kill):
        if step is not None:
            with contextlib.suppress(ProcessLookupError):
                step()
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class ConntrackLookup:
    """Original sources of flows, asked of the namespace that translated them: one
    ctnetlink socket per namespace, kept; for one thread (the relay's).

    A lookup is one send and one receive on a blocking socket (a receive timeout
    bounds it): no ACK is asked for, and Python's own timeouts, which poll(2) before
    every call, are left out. Sockets are checked against their namespace's inode by
    `revalidate`, not per lookup (the relay calls it after every sync)."""

    TIMEOUT = struct.pack("ll", 1, 0)  # SO_RCVTIMEO: a second

    def __init__(self) -> None:
        self._made: dict[str, tuple[int, socket.socket]] = {}
        self._seq = 0

    def original_source(
        self, netns: str, src: str, dst: str, sport: int, dport: int
    ) -> tuple[str, int] | None:
        """The original source (address, port) of the TCP entry of `netns` whose reply
        direction is src:sport -> dst:dport; None when there is none."""
        made = self._made.get(netns)
        if made is None:
            made = self._open(netns)
            if made is None:
                return None
        sock = made[1]
        self._seq = seq = self._seq % 0x7FFFFFFF + 1
        try:
            sock.send(events.conntrack_get_by_reply_request(seq, src, dst, sport, dport, False))
            for _ in range(4):  # an answer to an earlier, timed-out request may be queued
                found = events.conntrack_get_answer(sock.recv(1 << 16), seq)
                if found is not None:
                    return found if isinstance(found, tuple) else None
        except OSError:
            self.forget(netns)  # a later call starts on a fresh socket
        return None

    def _open(self, netns: str) -> tuple[int, socket.socket] | None:
        inode = netns_inode(netns)
        if inode is None:
            return None
        try:
            sock = in_netns(netns, _ctnetlink_socket)
        except (KernelError, OSError):
            return None
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self.TIMEOUT)
        made = self._made[netns] = (inode, sock)
        return made

    def revalidate(self) -> None:
        """Close the sockets of namespaces that are gone or were made again."""
        for netns, (inode, _sock) in list(self._made.items()):
            if netns_inode(netns) != inode:
                self.forget(netns)

    def forget(self, netns: str) -> None:
        """Close the socket of a namespace."""
        made = self._made.pop(netns, None)
        if made is not None:
            made[1].close()

    def close(self) -> None:
        """Close every socket."""
        for netns in list(self._made):
            self.forget(netns)


def _is_local(address: str) -> bool:
    """Whether the calling thread's namespace holds `address`: the kernel routes to a
    local address from that address itself (its local route's preferred source)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address, 9))  # UDP: a route lookup, nothing is sent
        except OSError:
            return False  # no route at all
        return bool(probe.getsockname()[0] == address)


# --- files a namespace sees (`ip netns exec` bind-mounts /etc/netns/<name>/* over /etc) ---

NETNS_ETC = "/etc/netns"


def list_netns_etc() -> list[str]:
    """Names of the namespaces that have an /etc/netns directory."""
    try:
        return sorted(os.listdir(NETNS_ETC))
    except FileNotFoundError:
        return []


def _etc_dir(name: str) -> str:
    # rmtree on a path built from a name: refuse anything but one plain path component.
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid namespace name {name!r}")
    return os.path.join(NETNS_ETC, name)


def write_netns_etc(name: str, filename: str, text: str) -> None:
    """Make /etc/netns/<name>/<filename> hold `text` (unchanged files are not rewritten)."""
    directory = _etc_dir(name)
    if not filename or "/" in filename or filename in (".", ".."):
        raise ValueError(f"invalid file name {filename!r}")
    path = os.path.join(directory, filename)
    try:
        with open(path) as handle:
            if handle.read() == text:
                return
    except OSError:
        pass
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # never a half-written file for a process starting now
    except OSError as exc:
        raise KernelError(f"write {path}: {exc}") from exc


def remove_netns_etc(name: str) -> None:
    """Remove /etc/netns/<name> (no error if already gone)."""
    directory = _etc_dir(name)
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KernelError(f"remove {directory}: {exc}") from exc


def write_sysctls(name: str, values: dict[str, str]) -> None:
    """Write /proc/sys entries inside a namespace (per-namespace network sysctls)."""

    def write() -> None:
        for path, value in values.items():
            full = "/proc/sys/" + path.replace(".", "/")
            try:
                with open(full, "w") as handle:
                    handle.write(value)
            except FileNotFoundError:
                continue  # e.g. conntrack sysctls before the module is loaded

    in_netns(name, write)


# --- links, addresses, routes ------------------------------------------------------------

MAIN_TABLE = 254
LOCAL_TABLE = 255


@dataclass(frozen=True)
class Link:
    """An interface as seen in a namespace."""

    name: str
    index: int
    up: bool
    addresses: tuple[str, ...]  # "a.b.c.d/len"


class Netlink:
    """Link, address and route operations in one namespace (pyroute2)."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        try:
            self._ns = _pyroute2().NetNS(netns)
        except OSError as exc:
            raise NetnsNotFound(f"open namespace {netns}: {exc}") from exc

    def close(self) -> None:
        """Release the netlink socket."""
        self._ns.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def links(self) -> dict[str, Link]:
        """All interfaces with their IPv4 addresses.

        From one `ip -json` dump: iproute2 parses it in C. pyroute2 took 4.4 s and
        350 MB (kept by the allocator) for 10,000 interfaces, `ip` 0.4 s and 27 MB."""
        out = {}
        for item in self._ip_json(["addr", "show"], "list links"):
            name = item["ifname"]
            out[name] = Link(
                name=name,
                index=int(item["ifindex"]),
                up="UP" in item.get("flags", ()),
                addresses=tuple(
                    sorted(
                        f"{a['local']}/{a['prefixlen']}"
                        for a in item.get("addr_info", ())
                        if a.get("family") == "inet"
                    )
                ),
            )
        return out

    def _ip_json(self, args: list[str], what: str) -> list[dict[str, Any]]:
        try:
            done = subprocess.run(
                ["ip", "-n", self.netns, "-json", *args],
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KernelError(f"{what} in {self.netns}: {exc}") from exc
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip()
            if "FIB table does not exist" in err:
                return []  # a routing table nothing was put in yet
            if not os.path.exists(os.path.join(NETNS_DIR, self.netns)):
                raise NetnsNotFound(f"{what}: namespace {self.netns} not found")
            raise KernelError(f"{what} in {self.netns}: {err[:500]}")
        try:
            found = json.loads(done.stdout or b"[]")
        except ValueError as exc:
            raise KernelError(f"{what} in {self.netns}: unreadable answer") from exc
        return found if isinstance(found, list) else []

    def _get(self, name: str) -> Any | None:
        """The kernel's message for one interface, None when there is none."""
        try:
            # link("get") asks the kernel for one interface; get_links(ifname=) and
            # get_addr(index=) dump everything and filter, O(n) per call.
            found = self._ns.link("get", ifname=name)
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ENODEV, errno.ENOENT):
                return None
            raise _wrap(exc, f"get {name}", self.netns) from exc
        return found[0] if found else None

    def link(self, name: str) -> Link | None:
        """One interface by name, without its addresses (cheap at any link count)."""
        msg = self._get(name)
        if msg is None:
            return None
        return Link(name=name, index=msg["index"], up=bool(msg["flags"] & 1), addresses=())

    def operational(self, name: str) -> bool:
        """Whether an interface is operationally up: its carrier is on and the kernel has
        attached its queueing discipline (until then, from the linkwatch worker, it drops
        what is sent: a new veth needs a moment after both ends are set up)."""
        msg = self._get(name)
        return msg is not None and msg.get_attr("IFLA_OPERSTATE") == "UP"

    def add_address(self, name: str, address: str, index: int | None = None) -> None:
        """Add "ip/len" to an interface (`index`: its index, when known; saves a lookup);
        already there is fine."""
        try:
            ip, plen = address.split("/")
            at = self._index(name) if index is None else index
            self._ns.addr("add", index=at, address=ip, prefixlen=int(plen))
        except KernelError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return
            raise _wrap(exc, f"add {address} to {name}", self.netns) from exc

    def delete_address(self, name: str, address: str) -> None:
        """Remove "ip/len" from an interface; already gone is fine."""
        try:
            ip, plen = address.split("/")
            self._ns.addr("del", index=self._index(name), address=ip, prefixlen=int(plen))
        except KernelError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                return
            raise _wrap(exc, f"delete {address} from {name}", self.netns) from exc

    def add_veth(self, name: str, peer: str, peer_netns: str) -> None:
        """A veth pair: `name` here, `peer` in `peer_netns` (never in the root namespace)."""
        try:
            self._ns.link(
                "add", ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": peer_netns}
            )
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return
            raise _wrap(exc, f"add veth {name}/{peer}", self.netns) from exc

    def delete_link(self, name: str) -> None:
        """Delete an interface (no error if already gone)."""
        try:
            idx = self._ns.link_lookup(ifname=name)
            if idx:
                self._ns.link("del", index=idx[0])
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ENODEV, errno.ENOENT):
                return
            raise _wrap(exc, f"delete {name}", self.netns) from exc

    def _index(self, name: str) -> int:
        if name == "lo":
            return LOOPBACK_INDEX  # the same in every namespace: no lookup
        idx = self._ns.link_lookup(ifname=name)
        if not idx:
            raise InterfaceNotFound(f"{name} not found in {self.netns}")
        return int(idx[0])

    def set_up(self, name: str, index: int | None = None) -> None:
        """Bring an interface up (`index`: as for `add_address`)."""
        try:
            self._ns.link("set", index=self._index(name) if index is None else index, state="up")
        except KernelError:
            raise
        except Exception as exc:
            raise _wrap(exc, f"set {name} up", self.netns) from exc

    def set_addresses(self, name: str, wanted: list[str], current: tuple[str, ...]) -> None:
        """Make an interface hold exactly `wanted` ("ip/len") addresses."""
        try:
            idx = self._index(name)
            for addr in current:
                if addr not in wanted:
                    ip, plen = addr.split("/")
                    self._ns.addr("del", index=idx, address=ip, prefixlen=int(plen))
            for addr in wanted:
                if addr not in current:
                    ip, plen = addr.split("/")
                    self._ns.addr("add", index=idx, address=ip, prefixlen=int(plen))
        except KernelError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return
            raise _wrap(exc, f"set addresses of {name}", self.netns) from exc

    def routes(self, table: int = MAIN_TABLE) -> dict[str, tuple[int, str | None]]:
        """IPv4 routes of a table: "dst/len" -> (out interface index, gateway).

        From `ip -json` dumps, as `links` (pyroute2: 2 s for 5000 routes, `ip` 0.2 s)."""
        found = self._ip_json(["-4", "route", "show", "table", str(table)], "list routes")
        if not found:
            return {}
        index = {
            item["ifname"]: int(item["ifindex"])
            for item in self._ip_json(["link", "show"], "list links")
        }
        out: dict[str, tuple[int, str | None]] = {}
        for r in found:
            dst = str(r.get("dst", ""))
            if r.get("type", "unicast") != "unicast" or "dev" not in r:
                continue  # only routes through an interface are ours to compare
            dst = "0.0.0.0/0" if dst == "default" else dst if "/" in dst else f"{dst}/32"
            out[dst] = (index.get(r["dev"], 0), r.get("gateway"))
        return out

    def replace_route(
        self,
        dst: str,
        ifname: str,
        gateway: str | None = None,
        table: int = MAIN_TABLE,
        index: int | None = None,
        src: str | None = None,
    ) -> None:
        """Install (or replace) a route; with a gateway it is marked on-link (`index`:
        the interface's, when known; saves a lookup; `src`: the preferred source address
        of the namespace's own packets on it)."""
        try:
            oif = self._index(ifname) if index is None else index
            kwargs: dict[str, Any] = {"dst": dst, "oif": oif, "table": table}
            if src:
                kwargs["prefsrc"] = src
            if gateway:
                kwargs.update(gateway=gateway, flags=4)  # RTNH_F_ONLINK
            else:
                kwargs.update(scope=253)  # link scope
            self._ns.route("replace", **kwargs)
        except KernelError:
            raise
        except Exception as exc:
            raise _wrap(exc, f"route {dst} via {ifname}", self.netns) from exc

    def delete_route(self, dst: str, table: int = MAIN_TABLE) -> None:
        """Remove a route (no error if absent)."""
        try:
            self._ns.route("del", dst=dst, table=table)
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ESRCH, errno.ENOENT):
                return
            raise _wrap(exc, f"delete route {dst}", self.netns) from exc

    def ensure_table_before_local(self, table: int, pref: int, local_pref: int) -> None:
        """Policy rules: `pref: lookup table`, then `local_pref: lookup local`, nothing
        else for `local` (the kernel's own rule 0 is removed). Idempotent."""
        try:
            rules = {
                (r.get_attr("FRA_PRIORITY") or 0, r.get_attr("FRA_TABLE") or r["table"])
                for r in self._ns.get_rules(family=socket.AF_INET)
            }
            # Add before removing: a packet never finds no rule for `local`.
            if (local_pref, LOCAL_TABLE) not in rules:
                self._ns.rule("add", table=LOCAL_TABLE, priority=local_pref)
            if (pref, table) not in rules:
                self._ns.rule("add", table=table, priority=pref)
            for prio, tab in rules:
                if tab == LOCAL_TABLE and prio != local_pref:
                    self._ns.rule("del", table=LOCAL_TABLE, priority=prio)
        except Exception as exc:
            raise _wrap(exc, f"policy rules for table {table}", self.netns) from exc


# --- nftables and conntrack --------------------------------------------------------------


class _NftContexts:
    """One libnftables context per namespace, all used from one thread.

    A context's netlink socket lives in the namespace it was made in, so it serves that
    namespace from any thread. Kept, not made per transaction: freeing a context whose
    socket committed a deletion waits for the kernel (about 15 ms, most of what removing
    a link cost). The thread is named `OWN_NFT_THREAD`: the kernel puts that name in the
    commit's notification, which is how the watcher tells our commits from others'. A
    namespace made again under the same name gets a new context; `forget_nft` closes
    one (an open socket would keep a deleted namespace alive)."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="nft",
            initializer=_name_this_thread,
            initargs=(OWN_NFT_THREAD,),
        )
        self._made: dict[str, tuple[int, Any]] = {}  # only touched by the pool's thread

    def run(self, netns: str, command: str, json_output: bool = False) -> tuple[int, str, str]:
        """Run one nft command text in a namespace: (rc, output, error)."""
        return self._pool.submit(self._run, netns, command, json_output).result()

    def forget(self, netns: str) -> None:
        """Close the context of a namespace (deleted, or about to be)."""
        self._pool.submit(self._made.pop, netns, None).result()

    def _run(self, netns: str, command: str, json_output: bool) -> tuple[int, str, str]:
        import nftables

        inode = netns_inode(netns)
        if inode is None:
            self._made.pop(netns, None)
            raise NetnsNotFound(f"namespace {netns} not found")
        made = self._made.get(netns)
        if made is None or made[0] != inode:
            self._made.pop(netns, None)
            made = self._made[netns] = (inode, in_netns(netns, nftables.Nftables))
        nft = made[1]
        nft.set_json_output(json_output)
        rc, out, err = nft.cmd(command)
        return int(rc), str(out), str(err)


class _NftHelper:
    """The nft contexts, kept in a helper process of their own.

    libnftables (1.0.6) waits on a context's socket with select(), and glibc aborts the
    process when that socket is numbered 1024 or more (FD_SETSIZE). A server with a
    couple of hundred hubs holds more descriptors than that (a pyroute2 handle is four),
    so the contexts live in a child whose descriptors are only theirs: one per hub, up to
    about a thousand hubs. One JSON request per line on its stdin, one answer per line
    on its stdout; it ends when its stdin closes (our process gone), and is started again
    if it died. Its commits come from its thread named `OWN_NFT_THREAD`, as before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._registered = False

    def close(self) -> None:
        """End the helper: its stdin closed, it exits (its contexts go with it)."""
        with self._lock:
            if self._proc is not None:
                self._retire(self._proc, grace=5.0)

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is not None:
            self._retire(self._proc)
        if self._proc is None:
            if not self._registered:
                atexit.register(self.close)
                self._registered = True
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "privatelink.dataplane.privileged", NFT_HELPER_ARG],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        return self._proc

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            proc = self._started()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError:
                line = b""
            if not line:
                self._retire(proc)
                raise KernelError(f"the nft helper process ended (exit {proc.returncode})")
        answer: dict[str, Any] = json.loads(line)
        if answer.get("error") == "netns":
            raise NetnsNotFound(answer["message"])
        if "error" in answer:
            raise KernelError(f"nft helper: {answer['message']}")
        return answer

    def _retire(self, proc: subprocess.Popen[bytes], grace: float = 0.0) -> None:
        """Forget a helper: its pipes closed (it exits on EOF), killed if it has not
        ended within `grace` seconds (at once for one that ended or is stuck), reaped."""
        self._proc = None
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run(self, netns: str, command: str, json_output: bool = False) -> tuple[int, str, str]:
        """Run one nft command text in a namespace: (rc, output, error)."""
        got = self._ask({"op": "run", "netns": netns, "command": command, "json": json_output})
        return int(got["rc"]), str(got["out"]), str(got["err"])

    def forget(self, netns: str) -> None:
        """Close the context of a namespace (deleted, or about to be)."""
        if self._proc is not None:
            self._ask({"op": "forget", "netns": netns})


NFT_HELPER_ARG = "--nft-helper"


def _nft_helper_main() -> None:
    """The helper's loop (`python -m privatelink.dataplane.privileged --nft-helper`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends with its parent's pipe
    contexts = _NftContexts()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        answer: dict[str, Any]
        try:
            if request["op"] == "run":
                rc, out, err = contexts.run(request["netns"], request["command"], request["json"])
                answer = {"rc": rc, "out": out, "err": err}
            else:
                contexts.forget(request["netns"])
                answer = {}
        except NetnsNotFound as exc:
            answer = {"error": "netns", "message": str(exc)}
        except Exception as exc:  # reported to the server, which retries its sync
            answer = {"error": "other", "message": f"{type(exc).__name__}: {exc}"}
        sys.stdout.buffer.write(json.dumps(answer).encode() + b"\n")
        sys.stdout.buffer.flush()


_NFT: list[_NftHelper] = []  # made on first use
_NFT_LOCK = threading.Lock()


def _nft() -> _NftHelper:
    with _NFT_LOCK:
        if not _NFT:
            _NFT.append(_NftHelper())
        return _NFT[0]


def forget_nft(netns: str) -> None:
    """Close our nft context and conntrack socket of a namespace (see `_NftContexts`,
    `_ConntrackSockets`): an open socket would keep a deleted namespace alive."""
    if _NFT:
        _NFT[0].forget(netns)
    _CONNTRACK.forget(netns)


def apply_nft(netns: str, ruleset: str) -> None:
    """Apply a ruleset as one atomic transaction inside a namespace (libnftables)."""
    rc, _out, err = _nft().run(netns, ruleset)
    if rc != 0:
        raise NftApplyFailed(f"nft transaction in {netns} failed: {err.strip()[:2000]}")


def list_nft(netns: str, table: str) -> str:
    """The text of a table in a namespace ('' when absent)."""
    try:
        rc, out, _err = _nft().run(netns, f"list table ip {table}")
    except NetnsNotFound:
        return ""
    return out if rc == 0 else ""


def _conntrack(netns: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`conntrack ARGS` inside a namespace; failing to run it at all is CommandFailed."""
    try:
        return subprocess.run(
            ["ip", "netns", "exec", netns, "conntrack", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandFailed(f"conntrack {args[0]} in {netns}: {exc}") from exc


class _ConntrackSockets:
    """One ctnetlink socket per namespace, kept (like the nft contexts).

    Deleting a link's entries is one request on it (`events.conntrack_flush_mark_request`):
    about 0.3 ms, where `ip netns exec NS conntrack -D --mark M` took about 20 ms per hub,
    nearly all of it starting the two processes (bench/link_change.py)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, tuple[int, socket.socket]] = {}
        self._seq = 0

    def delete_mark(self, netns: str, mark: int) -> None:
        """Delete every entry of the namespace with this mark (none is fine)."""
        with self._lock:
            inode = netns_inode(netns)
            if inode is None:
                self._close(netns)
                raise NetnsNotFound(f"namespace {netns} not found")
            made = self._made.get(netns)
            if made is None or made[0] != inode:
                self._close(netns)
                sock = in_netns(netns, _ctnetlink_socket)
                made = self._made[netns] = (inode, sock)
            self._seq = self._seq % 0x7FFFFFFF + 1
            try:
                _netlink_talk(
                    made[1], events.conntrack_flush_mark_request(self._seq, mark), self._seq
                )
            except OSError as exc:
                self._close(netns)  # a later call starts on a fresh socket
                raise CommandFailed(
                    f"delete conntrack entries of mark {mark} in {netns}: {exc}"
                ) from exc

    def forget(self, netns: str) -> None:
        """Close the socket of a namespace (deleted, or about to be)."""
        with self._lock:
            self._close(netns)

    def _close(self, netns: str) -> None:
        made = self._made.pop(netns, None)
        if made is not None:
            made[1].close()


def _ctnetlink_socket() -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
    )
    sock.bind((0, 0))
    sock = socket_above_select(sock)
    sock.settimeout(10)
    return sock


_CONNTRACK = _ConntrackSockets()


def conntrack_delete_mark(netns: str, mark: int) -> None:
    """Delete a namespace's conntrack entries with a mark (none found is fine)."""
    _CONNTRACK.delete_mark(netns, mark)


NO_SUCH_MARK = 0xFFFFFFFF  # no link has it (marks are slot + 1 <= MAX_SLOTS)


def conntrack_reap(netns: str) -> None:
    """Make the kernel free a namespace's expired conntrack entries now.

    An entry that timed out stays in the namespace's count (the one the kernel compares
    with nf_conntrack_max) until the garbage collector reaches it, up to a minute later;
    a dump frees the expired entries it walks over. This one matches nothing, so it
    prints nothing: the count then says how many entries are live."""
    proc = _conntrack(netns, ["-L", "--mark", str(NO_SUCH_MARK)], timeout=30)
    if proc.returncode not in (0, 1):
        raise CommandFailed(f"conntrack -L in {netns}: {proc.stderr.strip()[:500]}")


def exec_in_netns(netns: str, argv: list[str]) -> None:
    """Replace this process with `argv` running inside a namespace (`ip netns exec`)."""
    if netns not in list_netns():
        raise NetnsNotFound(f"namespace {netns} does not exist; is `privatelink serve` running?")
    os.execvp("ip", ["ip", "netns", "exec", netns, *argv])


def run_in_netns(
    netns: str, argv: list[str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run a program inside a namespace and capture its output."""
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def take_nft_counter(netns: str, table: str, name: str) -> int:
    """Packets counted by a named counter since the last call, zeroing it (`nft reset
    counter`); 0 when the table or counter does not exist."""

    rc, out, _err = _nft().run(netns, f"reset counter ip {table} {name}", json_output=True)
    if rc != 0:
        return 0
    try:
        items = json.loads(out).get("nftables", [])
    except ValueError as exc:
        raise KernelError(f"reset counter {name} in {netns}: unreadable answer") from exc
    return sum(int(item["counter"].get("packets", 0)) for item in items if "counter" in item)


def nft_set_counters(netns: str, table: str, name: str) -> dict[tuple[Any, ...], tuple[int, int]]:
    """(packets, bytes) of each element of a set with counters, keyed by the element's
    values as nft writes them in JSON; {} when the namespace, table or set is absent. A
    listing is no commit: the watcher sees nothing, the counters go on."""
    try:
        rc, out, _err = _nft().run(netns, f"list set ip {table} {name}", json_output=True)
    except NetnsNotFound:
        return {}
    if rc != 0:
        return {}
    try:
        items = json.loads(out).get("nftables", [])
    except ValueError as exc:
        raise KernelError(f"list set {name} in {netns}: unreadable answer") from exc
    counters: dict[tuple[Any, ...], tuple[int, int]] = {}
    for item in items:
        for element in (item.get("set") or {}).get("elem", []):
            elem = element.get("elem") if isinstance(element, dict) else None
            if not isinstance(elem, dict):
                continue  # an element without a counter (not one of ours)
            value = elem.get("val")
            values = tuple(value["concat"]) if isinstance(value, dict) else (value,)
            counter = elem.get("counter") or {}
            counters[values] = (int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
    return counters


def conntrack_stat_text(netns: str) -> str:
    """The text of a namespace's `/proc/net/stat/nf_conntrack` (per CPU, hex)."""

    def read() -> str:
        with open(CONNTRACK_STAT) as f:
            return f.read()

    try:
        return in_netns(netns, read)
    except OSError as exc:
        raise NetnsNotFound(f"conntrack statistics of {netns}: {exc}") from exc


def conntrack_list_text(netns: str) -> str:
    """`conntrack -L -f ipv4` of a namespace: one line per entry ('' when it has none)."""
    proc = _conntrack(netns, ["-L", "-f", "ipv4"], timeout=60)
    if proc.returncode not in (0, 1):
        raise CommandFailed(f"conntrack -L in {netns}: {proc.stderr.strip()[:500]}")
    return proc.stdout


# --- watching the kernel -------------------------------------------------------------------

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_LISTEN_ALL_NSID = 8
NETLINK_NETFILTER = 12
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
PR_SET_NAME = 15
MNT_DETACH = 2
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
OWN_NFT_THREAD = events.OWN_NFT_THREAD  # the kernel names it in our commits' events
EVENT_BUFFER = 8 << 20  # bytes of socket buffer per event socket (SO_RCVBUFFORCE)
CONNTRACK_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"
# The calling thread's namespace: /proc/net is /proc/self/net, the namespace of the
# process's main thread, so a thread that entered a hub (`in_netns`) would read the host's
# statistics there (observed on 6.18; tests/netns/test_nat_exhaustion.py).
CONNTRACK_STAT = "/proc/thread-self/net/stat/nf_conntrack"


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _name_this_thread(name: str) -> None:
    _libc().prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; the new limit.

    The watcher keeps two descriptors per hub (`ConntrackGauge`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return int(hard)
    return int(soft)


def conntrack_max() -> int:
    """The host's nf_conntrack_max: how many entries the kernel tracks per namespace
    before it drops new flows ("table full"); 0 when conntrack is not loaded."""
    try:
        with open(CONNTRACK_MAX) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return 0


def _netlink_talk(sock: socket.socket, message: bytes, seq: int) -> list[events.Message]:
    """Send one request on a netlink socket; its answers up to the ACK or error."""
    sock.send(message)
    answers: list[events.Message] = []
    while True:
        data = sock.recv(1 << 16)
        for msg in events.messages(data):
            if msg.seq != seq:
                continue
            code = events.error_code(msg)
            if code is not None:
                if code:
                    raise OSError(code, os.strerror(code))
                return answers
            answers.append(msg)
            if not msg.flags & 0x2:  # not NLM_F_MULTI: a single answer, no ACK asked for
                return answers


def netns_id(name: str) -> int:
    """The id of namespace `name` as seen from ours, assigned now if it has none (what
    `ip netns set NAME auto` does). Events of a namespace with an id reach a socket of
    ours that listens with NETLINK_LISTEN_ALL_NSID. Call from a thread in our namespace."""
    try:
        fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetnsNotFound(f"open namespace {name}: {exc}") from exc
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC) as sock:
            sock.bind((0, 0))
            sock.settimeout(5)
            ask = events.nsid_request(events.RTM_GETNSID, 1, fd)
            found = [n for m in _netlink_talk(sock, ask, 1) if (n := events.nsid_of(m)) is not None]
            if found and found[0] >= 0:
                return found[0]
            assign = events.nsid_request(events.RTM_NEWNSID, 2, fd, events.NETNSA_NSID_NOT_ASSIGNED)
            try:
                _netlink_talk(sock, assign, 2)
            except OSError as exc:
                if exc.errno != errno.EEXIST:  # someone else just gave it one
                    raise
            ask = events.nsid_request(events.RTM_GETNSID, 3, fd)
            found = [n for m in _netlink_talk(sock, ask, 3) if (n := events.nsid_of(m)) is not None]
            if not found or found[0] < 0:
                raise KernelError(f"namespace {name} got no id")
            return found[0]
    except OSError as exc:
        raise KernelError(f"namespace id of {name}: {exc}") from exc
    finally:
        os.close(fd)


class KernelEvents:
    """What changes in our namespaces, read from our own namespace (`read()`).

    - rtnetlink (link, IPv4 address and route groups): deleted interfaces, addresses and
      routes, from every namespace that has an id here (`netns_id`);
    - nfnetlink (NFNLGRP_NFTABLES): every nftables commit in those namespaces, with the
      committing thread's name;
    - inotify on /run/netns: namespaces appearing and disappearing.

    NETLINK_LISTEN_ALL_NSID makes two sockets serve any number of namespaces, and a
    socket filter keeps only the message types above, so our own bulk changes (new
    links, tables) never fill the buffers. A full buffer is reported as `EventsLost`.
    """

    def __init__(self) -> None:
        self._sockets: dict[int, tuple[socket.socket, Callable[..., KernelEvent | None], str]] = {}
        self._inotify = -1
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            rt = self._listen(
                socket.NETLINK_ROUTE,
                (events.RTNLGRP_LINK, events.RTNLGRP_IPV4_IFADDR, events.RTNLGRP_IPV4_ROUTE),
                (events.RTM_DELLINK, events.RTM_DELADDR, events.RTM_DELROUTE),
            )
            self._sockets[rt.fileno()] = (rt, events.rtnetlink_event, "rtnetlink")
            nf = self._listen(NETLINK_NETFILTER, (events.NFNLGRP_NFTABLES,), (events.NFT_NEWGEN,))
            self._sockets[nf.fileno()] = (nf, events.nftables_event, "nftables")
            os.makedirs(NETNS_DIR, exist_ok=True)
            libc = _libc()
            self._inotify = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if self._inotify < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(self._inotify, NETNS_DIR.encode(), events.NETNS_DIR_MASK) < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {NETNS_DIR}")
        except OSError as exc:
            self.close()
            raise KernelError(f"watch the kernel: {exc}") from exc
        self._poll = select.poll()
        for fd in (*self._sockets, self._inotify, self._wake_r):
            self._poll.register(fd, select.POLLIN)

    @staticmethod
    def _listen(protocol: int, groups: Iterable[int], types: Iterable[int]) -> socket.socket:
        sock = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            protocol,
        )
        try:
            program = events.type_filter(types)
            buffer = ctypes.create_string_buffer(program)
            fprog = struct.pack(
                "HL", len(program) // events.BPF_INSN.size, ctypes.addressof(buffer)
            )
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENT_BUFFER)
            except PermissionError:  # without CAP_NET_ADMIN: as much as rmem_max allows
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER)
            sock.bind((0, 0))
            for group in groups:
                sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            sock.setsockopt(SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1)
        except OSError:
            sock.close()
            raise
        return sock

    def read(self, timeout: float) -> list[KernelEvent]:
        """Events that arrived, waiting at most `timeout` seconds for the first one."""
        found: list[KernelEvent] = []
        for fd, _mask in self._poll.poll(max(timeout, 0.0) * 1000):
            if fd == self._wake_r:
                with _suppress_again():
                    os.read(self._wake_r, 4096)
            elif fd == self._inotify:
                while True:
                    try:
                        data = os.read(self._inotify, 1 << 16)
                    except BlockingIOError:
                        break
                    found.extend(events.inotify_events(data))
            else:
                sock, decode, source = self._sockets[fd]
                found.extend(self._drain(sock, decode, source))
        return found

    @staticmethod
    def _drain(
        sock: socket.socket, decode: Callable[..., KernelEvent | None], source: str
    ) -> list[KernelEvent]:
        found: list[KernelEvent] = []
        while True:
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(1 << 16, socket.CMSG_SPACE(4))
            except BlockingIOError:
                return found
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped some: say so, go on
                    found.append(events.EventsLost(source))
                    continue
                raise KernelError(f"read {source} events: {exc}") from exc
            nsid = next(
                (
                    struct.unpack("=i", payload[:4])[0]
                    for level, kind, payload in ancillary
                    if level == SOL_NETLINK and kind == NETLINK_LISTEN_ALL_NSID
                ),
                None,
            )
            if nsid is None or nsid < 0:
                continue  # our own namespace: nothing of ours lives here
            for message in events.messages(data):
                event = decode(nsid, message)
                if event is not None:
                    found.append(event)

    def wake(self) -> None:
        """Make a `read()` in progress return now (from another thread)."""
        with _suppress_again():
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Release the sockets and descriptors."""
        for sock, _decode, _source in self._sockets.values():
            sock.close()
        self._sockets.clear()
        for fd in (self._inotify, self._wake_r, self._wake_w):
            if fd >= 0:
                with _suppress_again():
                    os.close(fd)
        self._inotify = self._wake_r = self._wake_w = -1


@contextlib.contextmanager
def _suppress_again() -> Iterator[None]:
    """Ignore a non-blocking descriptor's EAGAIN (and a closed one's EBADF)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EBADF):
            raise


class ConntrackGauge:
    """How full one namespace's conntrack table is, readable from any thread.

    The count and the statistics are opened inside the namespace once (sysctl and
    /proc/net files stay bound to the namespace they were opened in); reading them
    later is one pread each. Neither keeps the namespace alive: once it is gone they
    raise `NetnsNotFound`."""

    def __init__(self, netns: str) -> None:
        self.netns = netns

        def open_both() -> tuple[int, int]:
            count = above_select(os.open(CONNTRACK_COUNT, os.O_RDONLY | os.O_CLOEXEC))
            try:
                return count, above_select(os.open(CONNTRACK_STAT, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                os.close(count)
                raise

        try:
            self._count, self._stat = in_netns(netns, open_both)
        except OSError as exc:
            raise KernelError(f"conntrack of {netns}: {exc}") from exc

    def count(self) -> int:
        """Entries tracked in the namespace now (what the kernel compares to its max)."""
        try:
            return int(os.pread(self._count, 64, 0).strip() or 0)
        except OSError as exc:
            raise NetnsNotFound(f"conntrack count of {self.netns}: {exc}") from exc

    def drops(self) -> int:
        """Packets dropped so far because the table was full (all CPUs)."""
        try:
            return events.conntrack_drops(os.pread(self._stat, 1 << 20, 0).decode())
        except OSError as exc:
            raise NetnsNotFound(f"conntrack statistics of {self.netns}: {exc}") from exc

    def close(self) -> None:
        """Release the descriptors."""
        for fd in (self._count, self._stat):
            with _suppress_again():
                os.close(fd)
        self._count = self._stat = -1


if __name__ == "__main__" and sys.argv[1:] == [NFT_HELPER_ARG]:
    _nft_helper_main()


# --- strongSwan's charon (site-to-site IPsec) ------------------------------------------
# strongSwan's charon in a network namespace: kernel ESP detection, start, configure,
# initiate, read SAs, stop.
#
# The process/kernel edge of site-to-site IPsec (the configuration text comes from the
# pure `dataplane/ipsec.py`). Invariants:
#
# - One charon per namespace, all of its files in one private directory (mode 0700):
#   `strongswan.conf` (passed as STRONGSWAN_CONF, so the host's /etc/strongswan.* is never
#   read), `swanctl.conf` (0600: it holds the keys), the vici socket, `charon.log`.
# - charon-systemd writes no pid file: the `Popen` is kept and the daemon is ended by its
#   pid (`ip netns exec` execs charon, so the child's pid is charon's).
# - Every wait has a deadline, every program run a timeout; failures become `CharonFailed`
#   carrying the namespace and the tail of charon's log.

log = logging.getLogger(__name__)

CHARON = "/usr/sbin/charon-systemd"
LIBIPSEC_IFNAME = "ipsec0"  # kernel-libipsec's TUN device: what enters it is encrypted
SWANCTL = "/usr/sbin/swanctl"
TUN = "/dev/net/tun"
_POLL = 0.05


class CharonFailed(Exception):
    """charon or swanctl failed in `netns`; `message` says what, `log_tail` what charon
    logged last."""

    def __init__(self, netns: str, message: str, log_tail: str = "") -> None:
        super().__init__(f"{netns}: {message}" + (f"\n{log_tail}" if log_tail else ""))
        self.netns = netns
        self.message = message
        self.log_tail = log_tail


def strongswan_missing() -> str | None:
    """Why charon cannot run here (a missing program or TUN device), or None."""
    for path in (CHARON, SWANCTL):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (Debian: charon-systemd strongswan-swanctl)"
    if shutil.which("ip") is None:
        return "`ip` is missing (iproute2)"
    return None


# --- kernel ESP ---------------------------------------------------------------------------

_PROBE_KEY = "0x" + "00" * 32
# Test addresses (RFC 5737) for a throwaway SA in a throwaway namespace.
_PROBE_SA = ["src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi", "0x100"]
_PROBES = (
    (
        "cbc(aes)+hmac(sha256)",
        ["enc", "cbc(aes)", _PROBE_KEY, "auth-trunc", "hmac(sha256)", _PROBE_KEY],
    ),
    ("rfc4106(gcm(aes))", ["aead", "rfc4106(gcm(aes))", "0x" + "00" * 36]),
)


@dataclass(frozen=True)
class KernelEspProbe:
    """Whether the kernel can carry our ESP SAs itself (XFRM), and why (not)."""

    available: bool
    reason: str


def probe_kernel_esp(timeout: float = 5.0) -> KernelEspProbe:
    """Ask the kernel to add ESP SAs with the algorithms our proposals use, in a new
    anonymous network namespace (`unshare --net`: it vanishes with the `ip` process, so
    there is nothing to clean up and no namespace of ours is touched).

    This is the one reliable test: /proc/crypto lists ciphers, not the ESP transform, and
    /proc/net/xfrm_stat exists with XFRM alone. Without CONFIG_INET_ESP the kernel answers
    XFRM_MSG_NEWSA with EPROTONOSUPPORT ("Requested type not found"); a missing cipher
    gives "... algorithm not found"; without XFRM_USER the netlink socket itself fails.
    """
    for what, algorithms in _PROBES:
        argv = ["unshare", "--net", "--", "ip", "xfrm", "state", "add", *_PROBE_SA]
        argv += ["mode", "tunnel", *algorithms, "128"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return KernelEspProbe(False, f"cannot probe kernel ESP: {exc}")
        if done.returncode == 0:
            continue
        error = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        if "type not found" in error or "Protocol not supported" in error:
            return KernelEspProbe(False, f"the kernel has no ESP (XFRM says: {error})")
        if "unshare" in error:
            return KernelEspProbe(False, f"cannot probe kernel ESP: {error}")
        return KernelEspProbe(False, f"the kernel's ESP cannot use {what}: {error}")
    return KernelEspProbe(
        True, "the kernel accepted ESP SAs (" + ", ".join(w for w, _ in _PROBES) + ")"
    )


def esp_in_kernel() -> bool:
    """Whether the kernel does ESP with our algorithms (see `probe_kernel_esp`)."""
    return probe_kernel_esp().available


# --- the daemon --------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by root only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def _accepts(path: Path) -> bool:
    """Whether a unix socket at `path` accepts a connection (bound *and* listening)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class Charon:
    """One charon-systemd in one namespace; made by `Charon.start`, ended by `stop`."""

    def __init__(
        self,
        netns: str,
        workdir: Path,
        mode: Mode,
        process: subprocess.Popen[bytes],
        endpoints: Sequence[IpsecEndpoint],
    ) -> None:
        self.netns = netns
        self.workdir = workdir
        self.mode: Mode = mode
        self.process = process
        self.endpoints: tuple[IpsecEndpoint, ...] = tuple(endpoints)

    # files of the daemon
    @property
    def conf_path(self) -> Path:
        return self.workdir / "strongswan.conf"

    @property
    def swanctl_path(self) -> Path:
        return self.workdir / "swanctl.conf"

    @property
    def vici_path(self) -> Path:
        return self.workdir / "charon.vici"

    @property
    def log_path(self) -> Path:
        return self.workdir / "charon.log"

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        netns: str,
        workdir: str | os.PathLike[str],
        endpoints: Sequence[IpsecEndpoint],
        libipsec: bool,
        timeout: float = 10.0,
        install_routes: bool = True,
    ) -> Charon:
        """Write the configuration, start charon in `netns`, wait (up to `timeout`) for
        its vici socket and load `endpoints`. On any failure the daemon is stopped and
        `CharonFailed` raised; `InvalidIpsecConfig` comes before anything is started."""
        mode = choose_mode(esp_in_kernel=not libipsec)
        work = Path(workdir)
        conf = render_strongswan_conf(
            str(work / "charon.vici"),
            str(work / "charon.log"),
            libipsec=libipsec,
            install_routes=install_routes,
        )
        swanctl_conf = render_swanctl_conf(endpoints)
        if libipsec and not os.path.exists(TUN):
            raise CharonFailed(netns, f"user-space ESP needs {TUN}, which is missing")
        work.mkdir(mode=0o700, parents=True, exist_ok=True)
        work.chmod(0o700)
        _write_private(work / "strongswan.conf", conf)
        _write_private(work / "swanctl.conf", swanctl_conf)
        (work / "charon.vici").unlink(missing_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(work / "charon.log", "a") as f:
            f.write(f"{stamp} privatelink: starting charon in {netns}, ESP: {mode}\n")
        log.info("starting charon in %s (ESP: %s)", netns, mode)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"),
            "STRONGSWAN_CONF": str(work / "strongswan.conf"),
        }
        with open(work / "charon.stderr", "ab") as err:
            process = subprocess.Popen(
                ["ip", "netns", "exec", netns, CHARON],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # a ^C to us is not a SIGINT to charon
            )
        charon = cls(netns, work, mode, process, ())
        try:
            charon._wait_ready(timeout)
            charon.load(endpoints)
        except BaseException:
            charon.stop()
            raise
        return charon

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise self._failed(f"charon exited with status {code} while starting")
            if self.vici_path.exists() and _accepts(self.vici_path):
                return
            time.sleep(_POLL)
        raise self._failed(f"charon's vici socket did not come up within {timeout:g} s")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines charon logged (and wrote to stderr)."""
        tail: list[str] = []
        for path in (self.log_path, self.workdir / "charon.stderr"):
            with contextlib.suppress(OSError), open(path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))  # the log only grows
                tail += f.read().decode(errors="replace").splitlines()[-lines:]
        return "\n".join(tail[-lines:])

    def _failed(self, message: str) -> CharonFailed:
        return CharonFailed(self.netns, message, self.log_tail())

    def _swanctl(self, *args: str, timeout: float = 15.0) -> str:
        argv = [SWANCTL, *args, "--uri", f"unix://{self.vici_path}"]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin")}
        env["STRONGSWAN_CONF"] = str(self.conf_path)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise self._failed(f"swanctl {args[0]} took longer than {timeout:g} s") from None
        except OSError as exc:
            raise self._failed(f"swanctl {args[0]}: {exc}") from None
        if done.returncode != 0:
            said = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise self._failed(f"swanctl {args[0]} failed ({done.returncode}): " + " | ".join(said))
        return done.stdout

    def load(self, endpoints: Sequence[IpsecEndpoint]) -> None:
        """Make `endpoints` charon's whole configuration (connections and keys) without a
        restart: connections no longer listed are unloaded, changed ones replaced. A
        connection whose only change is its key keeps its (failed or live) SAs and is not
        started again: call `initiate` for it."""
        text = render_swanctl_conf(endpoints)
        _write_private(self.swanctl_path, text)
        self._swanctl("--load-all", "--noprompt", "--file", str(self.swanctl_path))
        self.endpoints = tuple(endpoints)

    def initiate(self, child: str, timeout: float = 15.0) -> None:
        """Bring up the CHILD_SA `child` (an endpoint's `conn`) and wait for the result."""
        if child not in {e.conn for e in self.endpoints}:
            raise CharonFailed(self.netns, f"no connection {child!r} is loaded")
        seconds = str(max(1, int(timeout)))
        self._swanctl("--initiate", "--child", child, "--timeout", seconds, timeout=timeout + 5)

    def list_sas(self, timeout: float = 10.0) -> dict[str, SaState]:
        """Connection name -> its IKE/CHILD SAs right now (absent: no SA at all)."""
        return parse_list_sas(self._swanctl("--list-sas", "--pretty", "--noblock", timeout=timeout))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """End charon (SIGTERM, then SIGKILL after `timeout`) and remove its socket.
        Idempotent; charon deletes its SAs, TUN device, routes and rule on SIGTERM."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("charon in %s ignored SIGTERM; killing pid %d", self.netns, self.pid)
                self.process.kill()
                self.process.wait(timeout)
        self.vici_path.unlink(missing_ok=True)

    def __enter__(self) -> Charon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def charon_pids_in(netns: str) -> list[int]:
    """The charon daemons running in one of our namespaces (`ip netns pids`), e.g. left
    by a server that stopped: a namespace holds at most the one we started there."""
    try:
        done = subprocess.run(
            ["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for word in done.stdout.split():
        if not word.isdigit():
            continue
        try:
            comm = Path(f"/proc/{word}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("charon"):
            found.append(int(word))
    return found


def stop_charons_in(netns: str, timeout: float = 5.0) -> None:
    """End the charon daemons in a namespace of ours (SIGTERM, then SIGKILL)."""
    pids = charon_pids_in(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists()]
        time.sleep(_POLL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def ensure_site_host(
    site_netns: str, host_netns: str, ip: str, site_ifname: str, gateway: str
) -> None:
    """A host of an on-premises site: namespace `host_netns` with `ip` on its eth0, whose
    default route is the site router (`gateway` on the router's end `site_ifname`, as a
    hub is its NICs' gateway). Idempotent: an existing host is only checked."""
    if site_netns not in list_netns():
        raise NetnsNotFound(
            f"namespace {site_netns} does not exist; is `privatelink serve` running?"
        )
    create_netns(host_netns)
    with Netlink(site_netns) as router:
        if router.link(site_ifname) is None:
            router.add_veth(site_ifname, "eth0", host_netns)
        link = router.link(site_ifname)
        if link is None:
            raise InterfaceNotFound(f"{site_ifname} missing in {site_netns}")
        router.set_addresses(site_ifname, [f"{gateway}/32"], link.addresses)
        router.set_up(site_ifname)
        router.replace_route(f"{ip}/32", site_ifname)
    with Netlink(host_netns) as host:
        host.set_up("lo")
        eth0 = host.link("eth0")
        if eth0 is None:
            raise InterfaceNotFound(f"eth0 missing in {host_netns}")
        host.set_addresses("eth0", [f"{ip}/32"], eth0.addresses)
        host.set_up("eth0")
        host.replace_route(f"{gateway}/32", "eth0")
        host.replace_route("0.0.0.0/0", "eth0", gateway=gateway)


def remove_run_dir(path: Path) -> None:
    """Remove a daemon's private directory (its configuration and keys); no error if gone."""
    shutil.rmtree(path, ignore_errors=True)
