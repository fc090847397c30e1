"""The PROXY protocol v2 header, with Azure's private endpoint TLV, as bytes.

Pure: no sockets. The layout is HAProxy's `doc/proxy-protocol.txt` (version 2):

    12-byte signature  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
    version/command    0x21 PROXY (a relayed connection) or 0x20 LOCAL (the proxy's own,
                       e.g. a health probe: no addresses are meaningful)
    family/transport   0x11 TCP over IPv4 (0x00 UNSPEC with LOCAL)
    length             uint16, big-endian: bytes that follow (addresses + TLVs)
    addresses          source IPv4, destination IPv4, source port, destination port
                       (4 + 4 + 2 + 2 bytes, network order)
    TLVs               type (1), length (uint16 big-endian), value

Azure's private link service adds one TLV to every connection (its documentation of
"TCP Proxy v2", and the constants the PROXY libraries use): type `0xEE`
(PP2_TYPE_AZURE), length 5, value = sub-type `0x01`
(PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID) then the connection's LinkID as a uint32 in
**little-endian** order (unlike every other field of the header).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
VERSION = 0x2
PROXY = 0x1
LOCAL = 0x0
TCP4 = 0x11
UNSPEC = 0x00
PP2_TYPE_AZURE = 0xEE
PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID = 0x01
_FIXED = 16  # signature, version/command, family, length
MAX_LINK_ID = 0xFFFFFFFF


class HeaderError(ValueError):
    """Bytes that are not a (complete) PROXY v2 header we understand."""


@dataclass(frozen=True)
class ProxyHeader:
    """A decoded header: `local` for LOCAL (addresses then None), else the connection's
    addresses; `link_id` from Azure's TLV when present; `tlvs` every TLV as read."""

    local: bool
    source: str | None = None
    destination: str | None = None
    source_port: int | None = None
    destination_port: int | None = None
    link_id: int | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()
    length: int = 0  # bytes the header takes on the wire


def azure_tlv(link_id: int) -> bytes:
    """Azure's private endpoint TLV for a LinkID (a uint32)."""
    if not 0 <= link_id <= MAX_LINK_ID:
        raise ValueError(f"a LinkID is a 32-bit unsigned integer; got {link_id}")
    value = bytes([PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID]) + struct.pack("<I", link_id)
    return bytes([PP2_TYPE_AZURE]) + struct.pack(">H", len(value)) + value


def _packed(address: str) -> bytes:
    """An IPv4 address in dotted-quad form as 4 bytes (ValueError if it is not one).
    inet_pton is as strict as IPv4Address (no short forms, no leading zeros) and a
    fraction of its cost: the relay encodes a header per connection."""
    try:
        return socket.inet_pton(socket.AF_INET, address)
    except OSError:
        raise ValueError(f"not an IPv4 address: {address!r}") from None


def encode(
    source: str, destination: str, source_port: int, destination_port: int, link_id: int
) -> bytes:
    """The header of a relayed TCP/IPv4 connection (PROXY), with Azure's TLV."""
    for port in (source_port, destination_port):
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"a port is 0-65535; got {port}")
    addresses = (
        _packed(source) + _packed(destination) + struct.pack(">HH", source_port, destination_port)
    )
    body = addresses + azure_tlv(link_id)
    return SIGNATURE + bytes([VERSION << 4 | PROXY, TCP4]) + struct.pack(">H", len(body)) + body


def encode_local(link_id: int | None = None) -> bytes:
    """A LOCAL header (the proxy's own connection, such as a health probe): no addresses;
    with Azure's TLV when a LinkID is given."""
    body = azure_tlv(link_id) if link_id is not None else b""
    return SIGNATURE + bytes([VERSION << 4 | LOCAL, UNSPEC]) + struct.pack(">H", len(body)) + body


def decode(data: bytes) -> ProxyHeader:
    """The header at the start of `data` (`HeaderError` if it is not one, or incomplete:
    a reader keeps reading until `needed(data)` bytes are there)."""
    if len(data) < _FIXED:
        raise HeaderError(f"incomplete: {len(data)} of at least {_FIXED} bytes")
    if data[:12] != SIGNATURE:
        raise HeaderError("no PROXY v2 signature")
    ver_cmd, family = data[12], data[13]
    if ver_cmd >> 4 != VERSION:
        raise HeaderError(f"version {ver_cmd >> 4}, not 2")
    command = ver_cmd & 0xF
    if command not in (PROXY, LOCAL):
        raise HeaderError(f"unknown command {command}")
    (length,) = struct.unpack(">H", data[14:16])
    if len(data) < _FIXED + length:
        raise HeaderError(f"incomplete: {len(data)} of {_FIXED + length} bytes")
    body = data[_FIXED : _FIXED + length]
    fields: dict[str, object] = {}
    rest = body
    if command == PROXY:
        if family != TCP4:
            raise HeaderError(f"family/transport 0x{family:02x}: only TCP over IPv4 (0x11)")
        if len(body) < 12:
            raise HeaderError("address block shorter than 12 bytes")
        src, dst, sport, dport = struct.unpack(">4s4sHH", body[:12])
        fields = {
            "source": str(IPv4Address(src)),
            "destination": str(IPv4Address(dst)),
            "source_port": sport,
            "destination_port": dport,
        }
        rest = body[12:]
    tlvs = _tlvs(rest)
    link_id = None
    for kind, value in tlvs:
        if kind == PP2_TYPE_AZURE and value[:1] == bytes(
            [PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID]
        ):
            if len(value) != 5:
                raise HeaderError(f"Azure LinkID TLV of {len(value)} bytes, not 5")
            (link_id,) = struct.unpack("<I", value[1:])
    return ProxyHeader(
        local=command == LOCAL,
        link_id=link_id,
        tlvs=tlvs,
        length=_FIXED + length,
        **fields,  # type: ignore[arg-type]
    )


def needed(data: bytes) -> int:
    """How many bytes the header at the start of `data` takes (at least 16: read that many
    first); raises `HeaderError` when the start is not a PROXY v2 header."""
    if len(data) < _FIXED:
        return _FIXED
    if data[:12] != SIGNATURE:
        raise HeaderError("no PROXY v2 signature")
    (length,) = struct.unpack(">H", data[14:16])
    return _FIXED + length


def _tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    found = []
    at = 0
    while at < len(data):
        if at + 3 > len(data):
            raise HeaderError("truncated TLV")
        kind = data[at]
        (size,) = struct.unpack(">H", data[at + 1 : at + 3])
        if at + 3 + size > len(data):
            raise HeaderError("truncated TLV value")
        found.append((kind, data[at + 3 : at + 3 + size]))
        at += 3 + size
    return tuple(found)
