"""The common query answered straight from its bytes, without building a dnspython message.

A query qualifies when it is a standard QUERY with one question of class IN whose name is
plain labels (no compression pointer), no answer or authority records, and either no
additional record or one EDNS version 0 OPT record without options; nothing may follow.
Everything else returns None here, and `ResolverTable` answers it through dnspython
(`resolver.py`), whose rules this module reproduces byte for byte:

- the reply is the query's id, flags QR | RD (copied) | AA (inside a linked zone) and
  the rcode, the question as asked, then the answer or authority records, then our OPT
  (payload 1232, no options) when the query had EDNS;
- an answer's owner is a pointer to the question name (0xC00C); the records of an rrset
  come in random order, as dnspython shuffles them when it renders;
- the SOA of a negative answer is rendered by dnspython once per question name length
  (its names compress against the zone's labels at the end of the question), then reused;
- too big for the transport (512 bytes, or the EDNS size, over UDP): the records that do
  not fit are dropped, from the first that does not, and TC is set.

The per-zone data (`ZoneWire`) holds each name's A records already in wire format, so a
positive answer is a handful of byte concatenations.
"""

from __future__ import annotations

import io
import random
import re
import socket
import struct
from dataclasses import dataclass, field
from typing import Final

import dns.name
import dns.rrset

HEADER_LEN = 12
UDP_MIN_PAYLOAD = 512
TCP_MAX = 65535
OPT_LEN = 11  # root owner, type, class (payload), ttl, rdlength 0
MAX_NAME_WIRE = 255
TYPE_A, TYPE_SOA, TYPE_ANY = 1, 6, 255
CLASS_IN = 1
RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 3, 5
# Question types left to dnspython: OPT, TKEY, TSIG (meta types a question should not
# carry) and zone transfers (REFUSED there).
SLOW_TYPES: Final = frozenset({41, 249, 250, 251, 252})
OUR_OPT: Final = (
    b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # payload 1232 (resolver.OUR_PAYLOAD)
)
_COUNTS = struct.Struct("!HHHH")
_TYPE_CLASS = struct.Struct("!HH")
_A_HEAD = struct.Struct("!HHHIH")  # owner pointer, type A, class IN, ttl, rdlength 4
A_RR_LEN = 16  # an A record whose owner is a pointer
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_*-]{1,63}(?:\.[A-Za-z0-9_*-]{1,63})*\.?")
# What dns.ipv4.inet_aton accepts in ASCII: four decimal octets, no leading zero.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")

# A name's A records in wire form: (how many, the bytes), or None when the name exists
# without any; SLOW when the name must be answered by dnspython (data the fast path does
# not reproduce, e.g. a TTL out of range).
ARecords = tuple[int, bytes] | None
SLOW: Final = (-1, b"")


def plain_name_wire(fqdn: str) -> bytes | None:
    """The wire form (lower-case) of a name of plain ASCII labels, or None when the name
    needs dnspython's parser (escapes, IDNA, `@`, over-long labels...)."""
    if not _PLAIN_NAME.fullmatch(fqdn):
        return None
    labels = fqdn.rstrip(".").lower().encode("ascii").split(b".")
    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    return wire if len(wire) <= MAX_NAME_WIRE else None


def name_wire(name: dns.name.Name) -> bytes:
    """The wire form of an absolute name, lower-case (the lookup key)."""
    return b"".join(bytes((len(label),)) + label.lower() for label in name.labels)


def ipv4_wire(address: str) -> bytes | None:
    """Four bytes of a plain dotted quad, or None when dnspython must judge it."""
    if not _PLAIN_IPV4.fullmatch(address):
        return None
    return socket.inet_aton(address)  # C, and exact on what the pattern lets through


def a_records_wire(ttl: int, addresses: list[bytes]) -> ARecords:
    """The answer records of an A rrset whose owner is the question name."""
    if not addresses:
        return None
    if not 0 <= ttl <= 0xFFFFFFFF:
        return SLOW
    head = _A_HEAD.pack(0xC00C, TYPE_A, CLASS_IN, ttl, 4)
    unique = list(dict.fromkeys(addresses))  # an rdataset is a set, in insertion order
    return len(unique), b"".join(head + address for address in unique)


def render_rrset(rrset: dns.rrset.RRset, start: int, zone: dns.name.Name, zone_at: int) -> bytes:
    """`rrset` as dnspython writes it at offset `start` of a reply whose question name
    ends with `zone`, starting at offset `zone_at` (its compression targets)."""
    compress: dict[dns.name.Name, int] = {}
    at = zone_at
    for i, label in enumerate(zone.labels[:-1]):
        compress[dns.name.Name(zone.labels[i:])] = at
        at += 1 + len(label)
    out = io.BytesIO()
    out.write(b"\x00" * start)
    rrset.to_wire(out, compress)
    return out.getvalue()[start:]


@dataclass(frozen=True)
class ZoneWire:
    """One zone in wire form: its names' A records and its SOA records.

    `nodes` holds every existing name of the zone, like `CompiledZone.nodes`, keyed by
    the lower-case wire name.
    """

    apex: bytes  # the origin, lower-case wire
    origin: dns.name.Name
    nodes: dict[bytes, ARecords]
    apex_soa: bytes  # the SOA answer to a question for the apex
    apex_any: tuple[tuple[int, bytes], ...]  # ANY at the apex: A records then the SOA
    negative_soa: dns.rrset.RRset
    # False when a SOA name lies inside the zone: labels of the question below the apex
    # could then be compression targets, so the SOA's bytes would depend on the whole
    # name, not only its length; dnspython answers those negatives.
    negative_fast: bool
    _negative: dict[int, bytes] = field(default_factory=dict)  # question name length -> SOA

    @classmethod
    def build(
        cls,
        origin: dns.name.Name,
        nodes: dict[bytes, ARecords],
        soa: dns.rrset.RRset,
        negative_soa: dns.rrset.RRset,
    ) -> ZoneWire:
        """Pre-render what does not depend on the question."""
        apex = name_wire(origin)
        question_end = HEADER_LEN + len(apex) + 4
        apex_soa = render_rrset(soa, question_end, origin, HEADER_LEN)
        held = nodes.get(apex)
        units: list[tuple[int, bytes]] = []
        if held is not None and held is not SLOW:
            units.append(held)
        after = question_end + sum(len(data) for _, data in units)
        units.append((1, render_rrset(soa, after, origin, HEADER_LEN)))
        soa_names = [soa[0].mname, soa[0].rname]
        negative_fast = not any(n != origin and n.is_subdomain(origin) for n in soa_names)
        return cls(apex, origin, nodes, apex_soa, tuple(units), negative_soa, negative_fast)

    def negative(self, name_len: int) -> bytes:
        """The SOA authority record after a question whose name is `name_len` bytes."""
        found = self._negative.get(name_len)
        if found is None:
            zone_at = HEADER_LEN + name_len - len(self.apex)
            found = render_rrset(self.negative_soa, HEADER_LEN + name_len + 4, self.origin, zone_at)
            self._negative[name_len] = found  # at most 255 per zone
        return found


@dataclass(frozen=True)
class VnetWire:
    """What one VNet resolves, for the fast path.

    `names` holds every name of the VNet's zones, each taken from the longest linked zone
    containing it (a name of an outer zone below an inner zone's apex is hidden, as
    `ResolverTable.resolve` never looks there); `zones` are the zones by apex. The values
    of `names` hold no object the garbage collector tracks, so a table of thousands of
    names adds little to the cost of a full collection.
    """

    names: dict[bytes, ARecords]
    zones: dict[bytes, ZoneWire]

    @classmethod
    def build(cls, zones: dict[bytes, ZoneWire]) -> VnetWire:
        """From a VNet's zones by apex."""
        if len(zones) == 1:
            (zone,) = zones.values()
            return cls(zone.nodes, zones)  # shared: neither side ever changes
        names: dict[bytes, ARecords] = {}
        for zone in zones.values():
            for name, records in zone.nodes.items():
                if _zone_of(zones, name, 0) is zone:
                    names[name] = records
        return cls(names, zones)


def _zone_of(zones: dict[bytes, ZoneWire], name: bytes, at: int) -> ZoneWire | None:
    """The longest zone whose apex is a suffix of `name[at:]` (a wire name)."""
    while name[at]:
        zone = zones.get(name[at:])
        if zone is not None:
            return zone
        at += name[at] + 1
    return None


_MISSING: Final = (-2, b"")  # a dict.get default (None is a value)


def answer(vnet: VnetWire | None, wire: bytes, over_tcp: bool) -> bytes | None:
    """The reply to a common query from a VNet (None: a VNet without links), or None when
    the query is not one for this path."""
    size = len(wire)
    # Header: QR clear and opcode QUERY, then exactly one question and no answer or
    # authority records.
    if size < HEADER_LEN + 5 or wire[2] & 0xF8 or wire[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None
    at = HEADER_LEN
    length = wire[at]
    while length:
        if length > 63:  # a compression pointer or a reserved label type
            return None
        at += length + 1
        if at >= size:
            return None
        length = wire[at]
    name_end = at + 1
    question_end = name_end + 4
    if name_end - HEADER_LEN > MAX_NAME_WIRE or question_end > size:
        return None
    qtype, qclass = _TYPE_CLASS.unpack_from(wire, name_end)
    if qclass != CLASS_IN or qtype in SLOW_TYPES:
        return None
    additional = wire[10:12]
    if additional == b"\x00\x00":
        if size != question_end:
            return None
        limit = TCP_MAX if over_tcp else UDP_MIN_PAYLOAD
        opt = b""
    elif additional == b"\x00\x01":
        # One OPT record: root owner, version 0, no options, nothing after it.
        if (
            size != question_end + OPT_LEN
            or wire[question_end : question_end + 3] != b"\x00\x00\x29"
            or wire[question_end + 6] != 0  # EDNS version (BADVERS is dnspython's)
            or wire[question_end + 9 : question_end + 11] != b"\x00\x00"
        ):
            return None
        payload = (wire[question_end + 3] << 8) | wire[question_end + 4]
        limit = TCP_MAX if over_tcp else max(UDP_MIN_PAYLOAD, payload)
        opt = OUR_OPT
    else:
        return None
    rd = wire[2] & 0x01
    if vnet is None:
        return _reply(wire, question_end, 0x80 | rd, RCODE_REFUSED, (), b"", opt, limit)
    qname = wire[HEADER_LEN:name_end].lower()
    names = vnet.names
    records = names.get(qname, _MISSING)
    if records is not _MISSING:
        if records is not None and qtype == TYPE_A:  # the common answer needs no zone
            if records is SLOW:
                return None
            return _reply(wire, question_end, 0x84 | rd, RCODE_NOERROR, (records,), b"", opt, limit)
        zone = _zone_of(vnet.zones, qname, 0)
        apex = zone is not None and len(qname) == len(zone.apex)
    else:
        # The closest existing ancestor decides: none means no linked zone holds the name.
        at = 0
        while True:
            at += qname[at] + 1
            if at >= len(qname) or not qname[at]:  # the root is no zone's name
                return _reply(wire, question_end, 0x80 | rd, RCODE_REFUSED, (), b"", opt, limit)
            if qname[at:] in names:
                break
        zone = _zone_of(vnet.zones, qname, at)
        if zone is None:
            return None
        wildcard = b"\x01*" + qname[at:]
        records = zone.nodes.get(wildcard, _MISSING)
        if records is _MISSING:
            return _negative(wire, question_end, rd, RCODE_NXDOMAIN, zone, opt, limit)
        apex = False  # a wildcard synthesizes A records only, under the asked name
    if zone is None or records is SLOW:
        return None
    if qtype == TYPE_A:
        if records is not None:
            return _reply(wire, question_end, 0x84 | rd, RCODE_NOERROR, (records,), b"", opt, limit)
    elif apex and qtype == TYPE_SOA:
        units = ((1, zone.apex_soa),)
        return _reply(wire, question_end, 0x84 | rd, RCODE_NOERROR, units, b"", opt, limit)
    elif qtype == TYPE_ANY:
        if apex:
            return _reply(
                wire, question_end, 0x84 | rd, RCODE_NOERROR, zone.apex_any, b"", opt, limit
            )
        if records is not None:
            return _reply(wire, question_end, 0x84 | rd, RCODE_NOERROR, (records,), b"", opt, limit)
    return _negative(wire, question_end, rd, RCODE_NOERROR, zone, opt, limit)


def _negative(
    wire: bytes, question_end: int, rd: int, rcode: int, zone: ZoneWire, opt: bytes, limit: int
) -> bytes | None:
    """NXDOMAIN or NODATA: the zone's SOA in authority."""
    if not zone.negative_fast:
        return None
    soa = zone.negative(question_end - 4 - HEADER_LEN)
    return _reply(wire, question_end, 0x84 | rd, rcode, (), soa, opt, limit)


def _reply(
    wire: bytes,
    question_end: int,
    flags: int,
    rcode: int,
    answers: tuple[tuple[int, bytes], ...],
    authority: bytes,
    opt: bytes,
    limit: int,
) -> bytes:
    """Header, the question as asked, whole rrsets while they fit, then the OPT record."""
    size = question_end + len(opt)
    parts = [wire[:question_end]]
    answered = 0
    truncated = False
    for count, data in answers:
        if count > 1:  # only A rrsets have several records
            rrs = [data[i : i + A_RR_LEN] for i in range(0, len(data), A_RR_LEN)]
            data = b"".join(random.sample(rrs, count))
        if size + len(data) > limit:
            truncated = True
            break
        size += len(data)
        answered += count
        parts.append(data)
    authorities = 0
    if authority and not truncated:
        if size + len(authority) > limit:
            truncated = True
        else:
            authorities = 1
            parts.append(authority)
    if truncated:
        flags |= 0x02
    parts[0] = (
        wire[:2]
        + bytes((flags, rcode))
        + _COUNTS.pack(1, answered, authorities, 1 if opt else 0)
        + wire[HEADER_LEN:question_end]
    )
    parts.append(opt)
    return b"".join(parts)
