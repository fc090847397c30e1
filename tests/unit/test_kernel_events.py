"""The pure codecs of kernel events (dataplane/events.py), against hand-built bytes.

Layouts are those of the kernel's UAPI headers; each message here is built field by field
as the kernel would send it, so a wrong offset or byte order fails a test.
"""

from __future__ import annotations

import struct
import sys

import pytest

from privatelink.dataplane import events


def nla(type_: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), type_) + payload
    return raw + b"\0" * (-len(raw) % 4)


def nlmsg(type_: int, body: bytes, seq: int = 0, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), type_, flags, seq, 0) + body


def test_a_deleted_interface() -> None:
    body = struct.pack("=BxHiII", 0, 1, 7, 0, 0) + nla(events.IFLA_IFNAME, b"k12c\0")
    (msg,) = events.messages(nlmsg(events.RTM_DELLINK, body))
    assert events.rtnetlink_event(3, msg) == events.LinkGone(3, "k12c")


def test_a_removed_address_names_its_interface_even_through_an_alias_label() -> None:
    body = struct.pack("=BBBBi", 2, 30, 0, 0, 5)
    body += nla(events.IFA_ADDRESS, bytes([169, 254, 64, 1]))
    body += nla(events.IFA_LOCAL, bytes([169, 254, 64, 1]))
    body += nla(events.IFA_LABEL, b"lo:pe\0")
    (msg,) = events.messages(nlmsg(events.RTM_DELADDR, body))
    assert events.rtnetlink_event(0, msg) == events.AddressGone(0, "lo", "169.254.64.1/30")


def test_an_ipv6_address_is_not_ours() -> None:
    body = struct.pack("=BBBBi", 10, 64, 0, 0, 5) + nla(events.IFA_ADDRESS, b"\0" * 16)
    (msg,) = events.messages(nlmsg(events.RTM_DELADDR, body))
    assert events.rtnetlink_event(0, msg) is None


def test_a_removed_route_in_a_table_above_255_reads_the_table_attribute() -> None:
    body = struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 252, 4, 0, 1, 0)
    body += nla(events.RTA_TABLE, struct.pack("=I", 100))
    body += nla(events.RTA_DST, bytes([10, 0, 2, 4]))
    (msg,) = events.messages(nlmsg(events.RTM_DELROUTE, body))
    assert events.rtnetlink_event(1, msg) == events.RouteGone(1, 100, "10.0.2.4/32")


def test_an_nftables_commit_names_its_thread() -> None:
    body = struct.pack("=BBH", 0, 0, 0)
    body += nla(events.NFTA_GEN_ID, struct.pack(">I", 42))
    body += nla(events.NFTA_GEN_PROC_PID, struct.pack(">I", 4242))
    body += nla(events.NFTA_GEN_PROC_NAME, b"nft\0")
    (msg,) = events.messages(nlmsg(events.NFT_NEWGEN, body))
    assert events.nftables_event(2, msg) == events.NftCommitted(2, 42, "nft")
    other = next(events.messages(nlmsg((10 << 8) | 0, body)))  # NFT_MSG_NEWTABLE
    assert events.nftables_event(2, other) is None


def test_several_messages_in_one_datagram_and_a_truncated_tail() -> None:
    first = nlmsg(events.RTM_DELLINK, struct.pack("=BxHiII", 0, 1, 7, 0, 0) + nla(3, b"a\0"))
    second = nlmsg(events.RTM_DELLINK, struct.pack("=BxHiII", 0, 1, 8, 0, 0) + nla(3, b"bb\0"))
    found = [events.rtnetlink_event(0, m) for m in events.messages(first + second + b"\x40\0")]
    assert found == [events.LinkGone(0, "a"), events.LinkGone(0, "bb")]


def test_namespace_directory_events() -> None:
    def record(mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name))
        return struct.pack("=iIII", 1, mask, 0, len(padded)) + padded

    data = (
        record(events.IN_CREATE, b"pl1-v-abc")
        + record(events.IN_DELETE, b"pl1-n-def")
        + record(events.IN_Q_OVERFLOW, b"")
        + record(events.IN_IGNORED, b"")
    )
    assert list(events.inotify_events(data)) == [
        events.NetnsAdded("pl1-v-abc"),
        events.NetnsGone("pl1-n-def"),
        events.EventsLost("inotify"),
        events.EventsLost("namespace directory replaced"),
    ]


def test_the_socket_filter_program() -> None:
    program = events.type_filter([events.RTM_DELLINK, events.RTM_DELADDR])
    insns = [events.BPF_INSN.unpack_from(program, i) for i in range(0, len(program), 8)]

    def wire(type_: int) -> int:  # what `ld h [4]` reads for this host-order type
        return int.from_bytes(type_.to_bytes(2, sys.byteorder), "big")

    assert insns == [
        (0x28, 0, 0, 4),  # ld h [4]: nlmsg_type
        (0x15, 2, 0, wire(events.RTM_DELLINK)),  # jeq -> keep
        (0x15, 1, 0, wire(events.RTM_DELADDR)),  # jeq -> keep
        (0x06, 0, 0, 0),  # drop
        (0x06, 0, 0, 0xFFFFFFFF),  # keep
    ]
    with pytest.raises(ValueError):
        events.type_filter([])


def test_nsid_requests_and_answers() -> None:
    raw = events.nsid_request(events.RTM_GETNSID, 7, netns_fd=9)
    length, type_, flags, seq, _pid = struct.unpack_from("=IHHII", raw)
    assert (length, type_, seq) == (len(raw), events.RTM_GETNSID, 7)
    assert flags == events.NLM_F_REQUEST | events.NLM_F_ACK
    assert events.attributes(raw[16:], events.RTGENMSG_LEN) == {
        events.NETNSA_FD: struct.pack("=I", 9)
    }
    answer = nlmsg(events.RTM_NEWNSID, b"\0" * 4 + nla(events.NETNSA_NSID, struct.pack("=i", 3)))
    assert events.nsid_of(next(events.messages(answer))) == 3
    error = nlmsg(events.NLMSG_ERROR, struct.pack("=i", -17) + b"\0" * 16)
    assert events.error_code(next(events.messages(error))) == 17


def test_conntrack_drops_are_summed_over_cpus() -> None:
    text = (
        "entries  clashres found new invalid ignore delete chainlength insert "
        "insert_failed drop early_drop icmp_error  expect_new expect_create "
        "expect_delete search_restart\n"
        "00000010  00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
        "00000000 00000000 0000000a 00000001 00000000  00000000 00000000 00000000 00000000\n"
        "00000010  00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
        "00000000 00000000 00000006 00000000 00000000  00000000 00000000 00000000 00000000\n"
    )
    assert events.conntrack_drops(text) == 16
    assert events.conntrack_drops("") == 0
    # Failed insertions (a SNAT without a free port) count in `drop` too: not a full
    # table. One refused for its hash chain counts in `chainlength`, not in `drop`.
    header = text.splitlines()[0]
    row = ["00000000"] * len(header.split())
    row[header.split().index("chainlength")] = "00000002"
    row[header.split().index("insert_failed")] = "00000005"
    row[header.split().index("drop")] = "00000009"
    assert events.conntrack_drops(f"{text}{' '.join(row)}\n") == 16 + 9 - (5 - 2)


def test_a_conntrack_flush_by_mark_request() -> None:
    raw = events.conntrack_flush_mark_request(9, 0x01020304)
    (message,) = events.messages(raw)
    # IPCTNL_MSG_CT_DELETE of ctnetlink, asking for an ACK; no tuple: a filtered flush.
    assert (message.type, message.flags, message.seq) == (0x0102, 0x5, 9)
    assert message.payload[:4] == bytes([events.AF_INET, 0, 0, 0])  # nfgenmsg, version 0
    attrs = events.attributes(message.payload, 4)
    assert attrs == {events.CTA_MARK: b"\x01\x02\x03\x04", events.CTA_MARK_MASK: b"\xff" * 4}
