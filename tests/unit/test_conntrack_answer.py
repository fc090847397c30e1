"""The relay's conntrack lookup, byte for byte: the GET it sends (no ACK asked for: one
datagram answers) and how that datagram is read (`events.conntrack_get_answer`).
The netns tier asks a real kernel (tests/netns/test_proxy.py, test_proxy_ports.py)."""

from __future__ import annotations

import errno
import socket
import struct

from privatelink.dataplane import events as ev


def _entry(seq: int, src: str, sport: int, nested_first: bytes = b"") -> bytes:
    """A conntrack entry as the kernel sends it: nfgenmsg, then CTA_TUPLE_ORIG (with
    whatever `nested_first` puts ahead of it) and CTA_TUPLE_REPLY."""
    ip = ev.attribute(ev.CTA_IP_V4_SRC, socket.inet_aton(src)) + ev.attribute(
        ev.CTA_IP_V4_DST, socket.inet_aton("10.1.1.6")
    )
    proto = (
        ev.attribute(ev.CTA_PROTO_NUM, bytes([6]))
        + ev.attribute(ev.CTA_PROTO_SRC_PORT, struct.pack("!H", sport))
        + ev.attribute(ev.CTA_PROTO_DST_PORT, struct.pack("!H", 80))
    )
    tuple_ = ev.attribute(ev.CTA_TUPLE_IP | ev.NLA_F_NESTED, ip) + ev.attribute(
        ev.CTA_TUPLE_PROTO | ev.NLA_F_NESTED, proto
    )
    body = struct.pack("=BBH", socket.AF_INET, 0, 0) + nested_first
    body += ev.attribute(ev.CTA_TUPLE_ORIG | ev.NLA_F_NESTED, tuple_)
    body += ev.attribute(ev.CTA_TUPLE_REPLY | ev.NLA_F_NESTED, tuple_)
    type_ = ev.NFNL_SUBSYS_CTNETLINK << 8  # IPCTNL_MSG_CT_NEW (0)
    return ev.request(type_, seq, body, flags=0x2)  # NLM_F_MULTI, as the kernel flags it


def _error(seq: int, code: int) -> bytes:
    return ev.request(ev.NLMSG_ERROR, seq, struct.pack("=i", -code) + b"\0" * 16, flags=0)


def test_the_get_asks_no_ack_when_told() -> None:
    with_ack = ev.conntrack_get_by_reply_request(7, "10.2.0.1", "10.2.0.2", 1000, 15001)
    without = ev.conntrack_get_by_reply_request(7, "10.2.0.1", "10.2.0.2", 1000, 15001, False)
    flags = struct.unpack_from("=H", with_ack, 6)[0], struct.unpack_from("=H", without, 6)[0]
    assert flags == (ev.NLM_F_REQUEST | ev.NLM_F_ACK, ev.NLM_F_REQUEST)
    assert with_ack[8:] == without[8:]  # the same question otherwise


def test_an_entry_gives_its_original_source() -> None:
    assert ev.conntrack_get_answer(_entry(5, "10.0.1.4", 40123), 5) == ("10.0.1.4", 40123)
    # Attributes ahead of the tuple (the kernel's order is not relied on) are skipped.
    ahead = ev.attribute(ev.CTA_MARK, struct.pack("!I", 7))
    assert ev.conntrack_get_answer(_entry(5, "10.0.1.4", 1, ahead), 5) == ("10.0.1.4", 1)


def test_an_error_gives_its_errno_and_other_answers_none() -> None:
    assert ev.conntrack_get_answer(_error(9, errno.ENOENT), 9) == errno.ENOENT
    assert ev.conntrack_get_answer(_entry(5, "10.0.1.4", 40123), 6) is None  # another seq
    assert ev.conntrack_get_answer(b"", 5) is None
    whole = _entry(5, "10.0.1.4", 40123)
    assert ev.conntrack_get_answer(whole[:30], 5) is None  # cut short
    # An entry without an original tuple, or with a short address, holds no source.
    bare = ev.request(ev.NFNL_SUBSYS_CTNETLINK << 8, 5, struct.pack("=BBH", 2, 0, 0))
    assert ev.conntrack_get_answer(bare, 5) is None
    short_ip = ev.attribute(ev.CTA_IP_V4_SRC, b"\x0a\x00")
    tuple_ = ev.attribute(ev.CTA_TUPLE_IP | ev.NLA_F_NESTED, short_ip)
    odd = ev.request(
        ev.NFNL_SUBSYS_CTNETLINK << 8,
        5,
        struct.pack("=BBH", 2, 0, 0) + ev.attribute(ev.CTA_TUPLE_ORIG | ev.NLA_F_NESTED, tuple_),
    )
    assert ev.conntrack_get_answer(odd, 5) is None
