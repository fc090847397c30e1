"""The PROXY v2 header with Azure's LinkID TLV, byte for byte against the spec's layout
(HAProxy's doc/proxy-protocol.txt; Azure's "TCP Proxy v2" TLV 0xEE / 0x01, LinkID
little-endian), and decoding what we encode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privatelink.dataplane.proxy import header

SIG = "0d0a0d0a000d0a515549540a"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # 10.0.1.4:53238 -> 10.0.2.4:80, LinkID 536870913 (0x20000001, as Azure shows them)
        (
            ("10.0.1.4", "10.0.2.4", 53238, 80, 536870913),
            SIG
            + "21"
            + "11"
            + "0014"
            + "0a000104"
            + "0a000204"
            + "cff6"
            + "0050"
            + "ee"
            + "0005"
            + "01"
            + "01000020",
        ),
        # The extremes: LinkID 0 and 2^32 - 1, ports 0 and 65535.
        (
            ("0.0.0.0", "255.255.255.255", 0, 65535, 0),
            SIG + "21110014" + "00000000" + "ffffffff" + "0000" + "ffff" + "ee000501" + "00000000",
        ),
        (
            ("192.168.1.10", "10.1.2.3", 1024, 443, 0xFFFFFFFF),
            SIG + "21110014" + "c0a8010a" + "0a010203" + "0400" + "01bb" + "ee000501" + "ffffffff",
        ),
        # Little-endian LinkID: 0x12345678 is written 78 56 34 12.
        (
            ("10.0.0.1", "10.0.0.2", 1, 2, 0x12345678),
            SIG + "21110014" + "0a000001" + "0a000002" + "0001" + "0002" + "ee000501" + "78563412",
        ),
    ],
)
def test_header_bytes(args: tuple[str, str, int, int, int], expected: str) -> None:
    assert header.encode(*args).hex() == expected


def test_a_local_header_has_no_addresses() -> None:
    assert header.encode_local().hex() == SIG + "20" + "00" + "0000"
    assert header.encode_local(536870913).hex() == SIG + "2000" + "0008" + "ee000501" + "01000020"
    decoded = header.decode(header.encode_local(7))
    assert decoded.local and decoded.source is None and decoded.link_id == 7


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_a_link_id_is_a_uint32(bad: int) -> None:
    with pytest.raises(ValueError):
        header.azure_tlv(bad)


@given(
    src=st.ip_addresses(v=4).map(str),
    dst=st.ip_addresses(v=4).map(str),
    sport=st.integers(0, 65535),
    dport=st.integers(0, 65535),
    link_id=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=64),
)
def test_decode_reads_back_what_encode_wrote(
    src: str, dst: str, sport: int, dport: int, link_id: int, payload: bytes
) -> None:
    wire = header.encode(src, dst, sport, dport, link_id)
    got = header.decode(wire + payload)  # what follows the header is the stream's
    assert (got.source, got.destination, got.source_port, got.destination_port) == (
        src,
        dst,
        sport,
        dport,
    )
    assert got.link_id == link_id and not got.local
    assert got.length == len(wire) == header.needed(wire[:16])


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "no PROXY v2 signature"),
        (bytes.fromhex(SIG + "21110014"), "incomplete"),
        (bytes.fromhex(SIG + "11110000"), "version 1, not 2"),
        (bytes.fromhex(SIG + "2f110000"), "unknown command"),
        (bytes.fromhex(SIG + "2121000c") + bytes(12), "only TCP over IPv4"),
        (bytes.fromhex(SIG + "21110003") + bytes(3), "shorter than 12"),
        (bytes.fromhex(SIG + "2111000e") + bytes(12) + bytes.fromhex("ee00"), "truncated TLV"),
        (bytes.fromhex(SIG + "2111000f") + bytes(12) + bytes.fromhex("ee0005"), "TLV value"),
        (bytes.fromhex(SIG + "21110011") + bytes(12) + bytes.fromhex("ee000201ff"), "not 5"),
    ],
)
def test_what_is_not_a_header_says_why(data: bytes, says: str) -> None:
    with pytest.raises(header.HeaderError, match=says):
        header.decode(data)
