"""What the kernel tells the data plane about changes behind its back: event types and
the pure codecs that read them (netlink messages, inotify records, classic BPF filters).

No I/O here: `privileged.KernelEvents` owns the sockets and hands the bytes it reads to
these functions; the watcher and the reconciler only ever see the dataclasses below.
Layouts follow the kernel's UAPI headers (linux/netlink.h, rtnetlink.h, if_link.h,
if_addr.h, net_namespace.h, netfilter/nfnetlink.h, netfilter/nf_tables.h, inotify.h,
filter.h); multi-byte fields are host order except where a comment says big-endian.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

# --- netlink ------------------------------------------------------------------------------

NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLA_HDR = struct.Struct("=HH")  # len, type
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
AF_INET = 2
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4

# rtnetlink message types and the fixed headers that follow nlmsghdr
RTM_DELLINK = 17
RTM_DELADDR = 21
RTM_DELROUTE = 25
RTM_NEWNSID = 88
RTM_GETNSID = 90
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
RTGENMSG_LEN = 4  # struct rtgenmsg (one byte), aligned
IFLA_IFNAME = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
RTA_DST = 1
RTA_TABLE = 15
NETNSA_NSID = 1
NETNSA_FD = 3
NETNSA_NSID_NOT_ASSIGNED = -1

# multicast groups (setsockopt NETLINK_ADD_MEMBERSHIP takes the group number)
RTNLGRP_LINK = 1
RTNLGRP_IPV4_IFADDR = 5
RTNLGRP_IPV4_ROUTE = 7
NFNLGRP_NFTABLES = 7

# nfnetlink: type = subsystem << 8 | message; nfgenmsg is family, version, res_id (be16)
NFGENMSG_LEN = 4
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN = 15
NFT_NEWGEN = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN
NFTA_GEN_ID = 1  # be32
NFTA_GEN_PROC_PID = 2  # be32: the committing thread's id
NFTA_GEN_PROC_NAME = 3  # the committing thread's name (comm)
# The name of the threads that commit our own nft transactions (at most 15 bytes, the
# size of a thread's comm): a commit event naming it is ours, any other is not.
OWN_NFT_THREAD = "privatelink-nft"


@dataclass(frozen=True)
class Message:
    """One netlink message: its type, flags, sequence number and payload."""

    type: int
    flags: int
    seq: int
    payload: bytes


def messages(data: bytes) -> Iterator[Message]:
    """The netlink messages in one datagram (a truncated tail is ignored)."""
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, type_, flags, seq, _pid = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size or offset + length > len(data):
            return
        yield Message(type_, flags, seq, data[offset + NLMSG_HDR.size : offset + length])
        offset += (length + 3) & ~3


def attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Netlink attributes from `offset` on: type (flags masked) -> payload; first one wins."""
    found: dict[int, bytes] = {}
    while offset + NLA_HDR.size <= len(data):
        length, type_ = NLA_HDR.unpack_from(data, offset)
        if length < NLA_HDR.size or offset + length > len(data):
            break
        found.setdefault(type_ & NLA_TYPE_MASK, data[offset + NLA_HDR.size : offset + length])
        offset += (length + 3) & ~3
    return found


def _text(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def attribute(type_: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = NLA_HDR.pack(NLA_HDR.size + len(payload), type_) + payload
    return raw + b"\0" * (-len(raw) % 4)


def request(type_: int, seq: int, body: bytes, flags: int = NLM_F_REQUEST | NLM_F_ACK) -> bytes:
    """A netlink request message (header + body)."""
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), type_, flags, seq, 0) + body


def error_code(message: Message) -> int | None:
    """The errno of an NLMSG_ERROR message (0 is an ACK), None for other messages."""
    if message.type != NLMSG_ERROR or len(message.payload) < 4:
        return None
    return -int(struct.unpack_from("=i", message.payload)[0])


# --- network namespace ids (RTM_GETNSID / RTM_NEWNSID) ------------------------------------


def nsid_request(type_: int, seq: int, netns_fd: int, nsid: int | None = None) -> bytes:
    """RTM_GETNSID (nsid None) or RTM_NEWNSID for the namespace open as `netns_fd`.

    RTM_NEWNSID with NETNSA_NSID_NOT_ASSIGNED lets the kernel pick the id."""
    body = b"\0" * RTGENMSG_LEN + attribute(NETNSA_FD, struct.pack("=I", netns_fd))
    if nsid is not None:
        body += attribute(NETNSA_NSID, struct.pack("=i", nsid))
    return request(type_, seq, body)


def nsid_of(message: Message) -> int | None:
    """The id in an RTM_NEWNSID answer (-1: none assigned), None for other messages."""
    if message.type != RTM_NEWNSID:
        return None
    raw = attributes(message.payload, RTGENMSG_LEN).get(NETNSA_NSID)
    return int(struct.unpack("=i", raw[:4])[0]) if raw and len(raw) >= 4 else None


# --- conntrack (ctnetlink) ---------------------------------------------------------------

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_DELETE = 2
CTA_MARK = 8  # big-endian u32
CTA_MARK_MASK = 21  # big-endian u32


def conntrack_flush_mark_request(seq: int, mark: int) -> bytes:
    """IPCTNL_MSG_CT_DELETE without a tuple, filtered by mark: the kernel deletes every
    entry of the socket's namespace with exactly this mark, in one request (what
    `conntrack -D --mark` does by a dump and one request per entry)."""
    body = struct.pack("=BBH", AF_INET, 0, 0)  # nfgenmsg: family, version 0, res_id
    body += attribute(CTA_MARK, struct.pack("!I", mark))
    body += attribute(CTA_MARK_MASK, struct.pack("!I", 0xFFFFFFFF))
    return request(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE, seq, body)


IPCTNL_MSG_CT_GET = 1
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
NLA_F_NESTED = 0x8000
IPPROTO_TCP = 6


def _tcp_tuple(src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = attribute(CTA_IP_V4_SRC, socket.inet_aton(src)) + attribute(
        CTA_IP_V4_DST, socket.inet_aton(dst)
    )
    proto = (
        attribute(CTA_PROTO_NUM, bytes([IPPROTO_TCP]))
        + attribute(CTA_PROTO_SRC_PORT, struct.pack("!H", sport))
        + attribute(CTA_PROTO_DST_PORT, struct.pack("!H", dport))
    )
    return attribute(CTA_TUPLE_IP | NLA_F_NESTED, ip) + attribute(
        CTA_TUPLE_PROTO | NLA_F_NESTED, proto
    )


def conntrack_get_by_reply_request(
    seq: int, src: str, dst: str, sport: int, dport: int, ack: bool = True
) -> bytes:
    """IPCTNL_MSG_CT_GET of the TCP entry whose reply direction is this tuple (what
    `conntrack -G --reply-src ...` asks): a flow seen after SNAT, looked up in the
    namespace that translated it, to learn its original source.

    The entry comes flagged NLM_F_MULTI: with `ack` an ACK ends the answer; without,
    the answer is one datagram, the entry or an error (`conntrack_get_answer`)."""
    body = struct.pack("=BBH", AF_INET, 0, 0)
    body += attribute(CTA_TUPLE_REPLY | NLA_F_NESTED, _tcp_tuple(src, dst, sport, dport))
    flags = NLM_F_REQUEST | NLM_F_ACK if ack else NLM_F_REQUEST
    return request(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET, seq, body, flags)


def _nested(data: bytes, start: int, end: int, wanted: int) -> tuple[int, int] | None:
    """The payload span (start, end) of the first attribute `wanted` in data[start:end]."""
    while start + 4 <= end:
        length, type_ = NLA_HDR.unpack_from(data, start)
        if length < 4 or start + length > end:
            return None
        if type_ & NLA_TYPE_MASK == wanted:
            return start + 4, start + length
        start += (length + 3) & ~3
    return None


def conntrack_get_answer(data: bytes, seq: int) -> tuple[str, int] | int | None:
    """What a datagram answering a no-ACK `conntrack_get_by_reply_request` says: the
    entry's original source (address, port); an errno (an int, e.g. ENOENT: no entry);
    None when it is no answer to `seq` or holds no source.

    The relay asks this for every connection: the datagram's attributes are walked in
    place, without building the message and attribute tables `messages` does."""
    if len(data) < NLMSG_HDR.size:
        return None
    length, type_, _flags, got_seq, _pid = NLMSG_HDR.unpack_from(data)
    if got_seq != seq or length > len(data):
        return None
    if type_ == NLMSG_ERROR:
        if length < NLMSG_HDR.size + 4:
            return None
        return -int(struct.unpack_from("=i", data, NLMSG_HDR.size)[0])
    if type_ >> 8 != NFNL_SUBSYS_CTNETLINK:
        return None
    orig = _nested(data, NLMSG_HDR.size + NFGENMSG_LEN, length, CTA_TUPLE_ORIG)
    if orig is None:
        return None
    ip = _nested(data, *orig, CTA_TUPLE_IP)
    proto = _nested(data, *orig, CTA_TUPLE_PROTO)
    src = _nested(data, *ip, CTA_IP_V4_SRC) if ip is not None else None
    port = _nested(data, *proto, CTA_PROTO_SRC_PORT) if proto is not None else None
    if src is None or port is None or src[1] - src[0] != 4 or port[1] - port[0] != 2:
        return None
    return socket.inet_ntoa(data[src[0] : src[1]]), int.from_bytes(data[port[0] : port[1]], "big")


def conntrack_original_source(message: Message) -> tuple[str, int] | None:
    """The original direction's source address and port of a conntrack entry message."""
    if message.type >> 8 != NFNL_SUBSYS_CTNETLINK or len(message.payload) < NFGENMSG_LEN:
        return None
    orig = attributes(message.payload, NFGENMSG_LEN).get(CTA_TUPLE_ORIG)
    if orig is None:
        return None
    parts = attributes(orig)
    ip = attributes(parts.get(CTA_TUPLE_IP, b"")).get(CTA_IP_V4_SRC)
    port = attributes(parts.get(CTA_TUPLE_PROTO, b"")).get(CTA_PROTO_SRC_PORT)
    if ip is None or len(ip) != 4 or port is None or len(port) != 2:
        return None
    return socket.inet_ntoa(ip), int(struct.unpack("!H", port)[0])


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkGone:
    """An interface was deleted in the namespace with id `nsid`."""

    nsid: int
    ifname: str


@dataclass(frozen=True)
class AddressGone:
    """An IPv4 address ("a.b.c.d/len") was removed from an interface."""

    nsid: int
    ifname: str
    address: str


@dataclass(frozen=True)
class RouteGone:
    """An IPv4 route was removed from a routing table."""

    nsid: int
    table: int
    dst: str  # "a.b.c.d/len"


@dataclass(frozen=True)
class NftCommitted:
    """An nftables transaction was committed in a namespace (a new ruleset generation);
    `thread` is the committing thread's name, which tells our own commits apart."""

    nsid: int
    generation: int
    thread: str


@dataclass(frozen=True)
class NetnsGone:
    """A named namespace left /run/netns (`ip netns del`, or our own removal)."""

    name: str


@dataclass(frozen=True)
class NetnsAdded:
    """A named namespace appeared in /run/netns."""

    name: str


@dataclass(frozen=True)
class EventsLost:
    """Events were dropped (a socket buffer or the inotify queue overflowed): anything
    may have changed; `source` says which."""

    source: str


KernelEvent = (
    LinkGone | AddressGone | RouteGone | NftCommitted | NetnsGone | NetnsAdded | EventsLost
)


def rtnetlink_event(nsid: int, message: Message) -> KernelEvent | None:
    """A deletion event from an rtnetlink multicast message, or None if it is not one."""
    data = message.payload
    if message.type == RTM_DELLINK and len(data) >= IFINFOMSG.size:
        name = _text(attributes(data, IFINFOMSG.size).get(IFLA_IFNAME))
        return LinkGone(nsid, name) if name else None
    if message.type == RTM_DELADDR and len(data) >= IFADDRMSG.size:
        family, prefixlen, _flags, _scope, _index = IFADDRMSG.unpack_from(data)
        attrs = attributes(data, IFADDRMSG.size)
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        name = _text(attrs.get(IFA_LABEL))
        if family != AF_INET or raw is None or len(raw) != 4 or not name:
            return None
        # An alias label ("lo:1") names its interface before the colon.
        return AddressGone(nsid, name.split(":", 1)[0], f"{IPv4Address(raw)}/{prefixlen}")
    if message.type == RTM_DELROUTE and len(data) >= RTMSG.size:
        family, dst_len, _src, _tos, table, *_rest = RTMSG.unpack_from(data)
        attrs = attributes(data, RTMSG.size)
        if family != AF_INET:
            return None
        raw_table = attrs.get(RTA_TABLE)
        if raw_table is not None and len(raw_table) >= 4:
            table = struct.unpack("=I", raw_table[:4])[0]
        raw_dst = attrs.get(RTA_DST)
        dst = str(IPv4Address(raw_dst)) if raw_dst and len(raw_dst) == 4 else "0.0.0.0"
        return RouteGone(nsid, table, f"{dst}/{dst_len}")
    return None


def nftables_event(nsid: int, message: Message) -> NftCommitted | None:
    """A commit event (NFT_MSG_NEWGEN) from an nfnetlink multicast message, else None."""
    if message.type != NFT_NEWGEN or len(message.payload) < NFGENMSG_LEN:
        return None
    attrs = attributes(message.payload, NFGENMSG_LEN)
    raw_gen = attrs.get(NFTA_GEN_ID)
    generation = struct.unpack(">I", raw_gen[:4])[0] if raw_gen and len(raw_gen) >= 4 else 0
    return NftCommitted(nsid, generation, _text(attrs.get(NFTA_GEN_PROC_NAME)) or "")


# --- inotify --------------------------------------------------------------------------------

INOTIFY_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, len (then the name, NUL-padded)
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
NETNS_DIR_MASK = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF


def inotify_events(data: bytes) -> Iterator[KernelEvent]:
    """Namespace events from inotify records on the namespace directory."""
    offset = 0
    while offset + INOTIFY_EVENT.size <= len(data):
        _wd, mask, _cookie, length = INOTIFY_EVENT.unpack_from(data, offset)
        raw = data[offset + INOTIFY_EVENT.size : offset + INOTIFY_EVENT.size + length]
        offset += INOTIFY_EVENT.size + length
        name = _text(raw) or ""
        if mask & IN_Q_OVERFLOW:
            yield EventsLost("inotify")
        elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
            yield EventsLost("namespace directory replaced")  # the watch is gone
        elif name and mask & (IN_DELETE | IN_MOVED_FROM):
            yield NetnsGone(name)
        elif name and mask & (IN_CREATE | IN_MOVED_TO):
            yield NetnsAdded(name)


# --- classic BPF: keep only the message types we read ---------------------------------------

BPF_INSN = struct.Struct("=HBBI")  # code, jt, jf, k
BPF_LD_H_ABS = 0x28
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
NLMSG_TYPE_OFFSET = 4


def type_filter(types: Iterable[int]) -> bytes:
    """A socket filter (struct sock_filter[]) passing netlink datagrams whose first
    message has one of `types`, dropping the rest before they use the socket's buffer.

    The kernel sends each of these notifications in a datagram of its own. `ld h`
    reads big-endian, nlmsg_type is host order: the constants are swapped to match."""
    wanted = list(dict.fromkeys(types))
    if not wanted:
        raise ValueError("a filter needs at least one message type")
    program = [BPF_INSN.pack(BPF_LD_H_ABS, 0, 0, NLMSG_TYPE_OFFSET)]
    for i, type_ in enumerate(wanted):
        wire = int.from_bytes(type_.to_bytes(2, sys.byteorder), "big")
        program.append(BPF_INSN.pack(BPF_JEQ_K, len(wanted) - i, 0, wire))
    program.append(BPF_INSN.pack(BPF_RET_K, 0, 0, 0))  # drop
    program.append(BPF_INSN.pack(BPF_RET_K, 0, 0, 0xFFFFFFFF))  # keep all of it
    return b"".join(program)


# --- conntrack statistics (/proc/net/stat/nf_conntrack of one namespace) ---------------------


def conntrack_drops(text: str) -> int:
    """Packets dropped because conntrack could not track them (`drop`, summed over CPUs):
    what the kernel logs as "nf_conntrack: table full, dropping packet".

    A flow whose insertion failed on a clash (a SNAT that found no free port: a service
    out of NAT ports, dataplane/metrics.py) counts in `drop` too, and in `insert_failed`
    (observed: 24 and 24); an insertion refused for a too long hash chain counts in
    `insert_failed` and `chainlength` only (kernel source, not observed). Neither is a full
    table: taken out."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or "drop" not in lines[0]:
        return 0

    def total(name: str) -> int:
        if name not in lines[0]:
            return 0
        column = lines[0].index(name)
        return sum(int(row[column], 16) for row in lines[1:] if len(row) > column)

    clashes = total("insert_failed") - total("chainlength")
    return max(total("drop") - max(clashes, 0), 0)
