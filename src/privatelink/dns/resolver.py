"""What a VNet's resolver answers: pure logic from a compiled table, wire in, wire out.

`ResolverTable.compile(answers_by_vnet(...))` turns the zones linked to each VNet into
dicts keyed by lower-case label tuples, so one query costs a few dict lookups whatever
the number of records. `ResolverTable.answer(vnet_key, wire, over_tcp)` applies the
rules of a private zone resolver without recursion (there is no outside network):

- the longest linked zone containing the query name is authoritative (AA);
- a name with A records answers its A rrset; the zone apex also answers its SOA;
- an existing name (or empty non-terminal) asked for another type: NOERROR, no
  answer, the zone's SOA in authority (NODATA);
- a missing name: a wildcard `*.<closest encloser>` answers for it (RFC 4592), else
  NXDOMAIN with the SOA in authority;
- a name in no linked zone, any name from a VNet without links, another class or a
  zone transfer: REFUSED;
- unparsable: FORMERR when a header could be read, else no reply; a response (QR set)
  gets no reply (never loop with another server); an opcode other than QUERY: NOTIMP.

Negative answers carry the SOA with TTL min(SOA TTL, SOA minimum) (RFC 2308 section 3).
UDP replies larger than 512 bytes, or than the query's EDNS payload size, are sent
empty with TC set so the client retries over TCP.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from privatelink.core.private_dns import (
    SOA_EMAIL,
    SOA_HOST,
    SOA_TIMES,
    SOA_TTL,
    ZoneAnswers,
)

Labels = tuple[bytes, ...]  # a name's labels, lower-case, without the root label

UDP_MIN_PAYLOAD = 512  # RFC 1035: what a UDP reply may always use
OUR_PAYLOAD = 1232  # the EDNS payload size we advertise (DNS flag day 2020)
TCP_MAX = 65535
MAX_CACHED_REPLIES = 8192
MAX_CACHED_QUERY = 512  # longer queries are odd (a client's own options); not worth keeping
HEADER_LEN = 12
SOA_SERIAL = 1  # Azure's private zones serve serial 1
_QR = 0x8000
_REFUSED_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})  # no zone transfers


def _labels(name: dns.name.Name) -> Labels:
    """The dict key of an absolute name (DNS names compare ASCII case-insensitively)."""
    return tuple(label.lower() for label in name.labels[:-1])


@dataclass(frozen=True)
class CompiledZone:
    """One zone ready to answer: every existing name (with its A rrset, if any)."""

    origin: dns.name.Name
    depth: int  # labels of the origin
    soa: dns.rrset.RRset  # the apex SOA as answered
    negative_soa: dns.rrset.RRset  # the SOA of NXDOMAIN/NODATA answers (RFC 2308 TTL)
    # Names with records, their ancestors up to the apex (empty non-terminals) and the
    # apex itself; None when a name exists but holds no A record.
    nodes: dict[Labels, dns.rrset.RRset | None]

    @classmethod
    def compile(cls, zone: ZoneAnswers) -> CompiledZone:
        """Build the lookup dict of one zone."""
        origin = dns.name.from_text(zone.zone)
        apex = _labels(origin)
        soa_text = (
            f"{SOA_HOST}. {SOA_EMAIL}. {SOA_SERIAL} {SOA_TIMES['refresh']} "
            f"{SOA_TIMES['retry']} {SOA_TIMES['expire']} {SOA_TIMES['minimum']}"
        )
        soa_rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, soa_text)
        soa = dns.rrset.from_rdata(origin, SOA_TTL, soa_rdata)
        negative = dns.rrset.from_rdata(origin, min(SOA_TTL, SOA_TIMES["minimum"]), soa_rdata)
        nodes: dict[Labels, dns.rrset.RRset | None] = {apex: None}
        for fqdn, (ttl, addresses) in sorted(zone.records.items()):
            try:
                name = dns.name.from_text(fqdn)
                rrset = (
                    dns.rrset.from_text_list(
                        name, ttl, dns.rdataclass.IN, dns.rdatatype.A, addresses
                    )
                    if addresses
                    else None
                )
            except (dns.exception.DNSException, ValueError):
                continue  # the core validates names and addresses; never let one sink a zone
            labels = _labels(name)
            if labels[len(labels) - len(apex) :] != apex:
                continue  # not inside this zone: never served from it
            # Ancestors exist as empty non-terminals unless they hold records themselves.
            for cut in range(1, len(labels) - len(apex) + 1):
                nodes.setdefault(labels[cut:], None)
            nodes[labels] = rrset
        return cls(origin, len(apex), soa, negative, nodes)


@dataclass(frozen=True)
class Lookup:
    """The outcome of a name lookup in one zone."""

    rcode: dns.rcode.Rcode
    answer: tuple[dns.rrset.RRset, ...]
    authority: tuple[dns.rrset.RRset, ...]


def lookup(zone: CompiledZone, qname: dns.name.Name, labels: Labels, qtype: int) -> Lookup:
    """Answer `qname`/`qtype` from a zone that contains it (`labels` is its key)."""
    if labels in zone.nodes:
        a_rrset = zone.nodes[labels]
        apex = len(labels) == zone.depth
        return _node_answer(zone, a_rrset, zone.soa if apex else None, qtype)
    # RFC 4592: the closest encloser is the longest existing ancestor (the apex at worst);
    # only `*.<closest encloser>` may synthesize an answer.
    for cut in range(1, len(labels) - zone.depth + 1):
        encloser = labels[cut:]
        if encloser in zone.nodes:
            wildcard = (b"*", *encloser)
            if wildcard not in zone.nodes:
                break
            source = zone.nodes[wildcard]
            synthesized = (
                dns.rrset.from_rdata_list(qname, source.ttl, list(source))
                if source is not None
                else None
            )
            return _node_answer(zone, synthesized, None, qtype)
    return Lookup(dns.rcode.NXDOMAIN, (), (zone.negative_soa,))


def _node_answer(
    zone: CompiledZone,
    a_rrset: dns.rrset.RRset | None,
    soa: dns.rrset.RRset | None,
    qtype: int,
) -> Lookup:
    held = [rrset for rrset in (a_rrset, soa) if rrset is not None]
    if qtype == dns.rdatatype.ANY:
        found = held
    else:
        found = [rrset for rrset in held if rrset.rdtype == qtype]
    if found:
        return Lookup(dns.rcode.NOERROR, tuple(found), ())
    return Lookup(dns.rcode.NOERROR, (), (zone.negative_soa,))


def _header_reply(wire: bytes, rcode: int) -> bytes:
    """A reply of only a header: the query's id, opcode and RD, and `rcode`."""
    (query_id, flags) = struct.unpack_from("!HH", wire)
    reply_flags = _QR | (flags & 0x7800) | (flags & dns.flags.RD) | (rcode & 0xF)
    return struct.pack("!HHHHHH", query_id, reply_flags, 0, 0, 0, 0)


class ResolverTable:
    """The zones each VNet resolves, compiled for dict lookups; immutable once built."""

    def __init__(self, zones_by_vnet: Mapping[str, Mapping[Labels, CompiledZone]]) -> None:
        """`zones_by_vnet`: VNet key -> {zone origin labels -> zone}."""
        self._vnets = {vnet: dict(zones) for vnet, zones in zones_by_vnet.items()}
        # Replies by (VNet, transport, query without its id): the table never changes, so
        # equal queries get equal replies; parsing and rendering dominate the cost.
        self._replies: dict[tuple[str, bool, bytes], bytes] = {}

    @classmethod
    def compile(cls, answers: Mapping[str, Sequence[ZoneAnswers]]) -> ResolverTable:
        """From `answers_by_vnet` output; a zone linked to several VNets compiles once."""
        compiled: dict[int, CompiledZone] = {}
        zones_by_vnet: dict[str, dict[Labels, CompiledZone]] = {}
        for vnet, zones in answers.items():
            mine = zones_by_vnet.setdefault(vnet, {})
            for zone in zones:
                # answers_by_vnet hands every VNet the same ZoneAnswers object for a zone.
                if id(zone) not in compiled:
                    compiled[id(zone)] = CompiledZone.compile(zone)
                built = compiled[id(zone)]
                mine[_labels(built.origin)] = built
        return cls(zones_by_vnet)

    @property
    def vnets(self) -> frozenset[str]:
        """Keys of the VNets that have at least one linked zone."""
        return frozenset(self._vnets)

    def zones(self, vnet_key: str) -> tuple[str, ...]:
        """Domains a VNet resolves (lower-case, no trailing dot)."""
        return tuple(
            sorted(
                z.origin.to_text(omit_final_dot=True)
                for z in self._vnets.get(vnet_key, {}).values()
            )
        )

    def resolve(self, vnet_key: str, query: dns.message.Message) -> dns.message.Message:
        """The response to a parsed single-question QUERY from inside a VNet."""
        response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)  # RFC 6891: we speak EDNS version 0
            return response
        question = query.question[0]
        zones = self._vnets.get(vnet_key)
        if not zones or question.rdclass != dns.rdataclass.IN or question.rdtype in _REFUSED_TYPES:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        labels = _labels(question.name)
        # The longest linked zone holding the name wins: try suffixes, longest first.
        zone = next((zones[labels[i:]] for i in range(len(labels)) if labels[i:] in zones), None)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        found = lookup(zone, question.name, labels, question.rdtype)
        response.flags |= dns.flags.AA
        response.set_rcode(found.rcode)
        response.answer.extend(found.answer)
        response.authority.extend(found.authority)
        return response

    def answer(self, vnet_key: str, query_wire: bytes, over_tcp: bool = False) -> bytes | None:
        """The wire reply to a query received inside a VNet, or None to stay silent.

        Never raises: the wire comes from any process of the VNet.
        """
        if len(query_wire) < HEADER_LEN or query_wire[2] & 0x80:
            return None  # no header to answer to, or a response: never reply
        opcode = (query_wire[2] >> 3) & 0xF
        if opcode != dns.opcode.QUERY:
            return _header_reply(query_wire, dns.rcode.NOTIMP)
        # Names compare case-insensitively and clients vary the case (0x20 mixing): the
        # cache is keyed by the query with its name folded, and a cached reply gets the
        # asker's id and spelling of the name back (the question comes first, uncompressed).
        end = _qname_end(query_wire)
        folded = query_wire[2:HEADER_LEN] + query_wire[HEADER_LEN:end].lower() + query_wire[end:]
        cache_key = (vnet_key, over_tcp, folded)
        cached = self._replies.get(cache_key)
        if cached is not None:
            if end > HEADER_LEN and cached[HEADER_LEN:end].lower() == folded[10 : end - 2]:
                return (
                    query_wire[:2]
                    + cached[2:HEADER_LEN]
                    + query_wire[HEADER_LEN:end]
                    + cached[end:]
                )
            return query_wire[:2] + cached[2:]
        reply = self._answer(vnet_key, query_wire, over_tcp)
        if len(query_wire) <= MAX_CACHED_QUERY:
            if len(self._replies) >= MAX_CACHED_REPLIES:
                self._replies.clear()  # bounded memory; refills with what is asked now
            self._replies[cache_key] = reply
        return reply

    def _answer(self, vnet_key: str, query_wire: bytes, over_tcp: bool) -> bytes:
        try:
            query = dns.message.from_wire(query_wire)
        except Exception:  # any malformed input (dnspython raises many kinds): FORMERR
            return _header_reply(query_wire, dns.rcode.FORMERR)
        if len(query.question) != 1:
            return _header_reply(query_wire, dns.rcode.FORMERR)
        response = self.resolve(vnet_key, query)
        if over_tcp:
            limit = TCP_MAX
        elif query.edns >= 0:
            limit = min(max(UDP_MIN_PAYLOAD, query.payload), TCP_MAX)
        else:
            limit = UDP_MIN_PAYLOAD
        try:
            # Too big: every section is dropped and TC set (the client retries over TCP).
            return response.to_wire(max_size=limit, prefer_truncation=True)
        except Exception:  # e.g. a name that no longer fits: a reply is still owed
            return _header_reply(query_wire, dns.rcode.SERVFAIL)


def _qname_end(wire: bytes) -> int:
    """Where the first question's name ends (after its root label); HEADER_LEN when the
    name is not plain labels (then nothing is folded)."""
    at = HEADER_LEN
    for _ in range(128):  # a name has at most 127 labels
        if at >= len(wire):
            return HEADER_LEN
        length = wire[at]
        if length == 0:
            return at + 1
        if length > 63:  # a compression pointer or a reserved label type
            return HEADER_LEN
        at += 1 + length
    return HEADER_LEN


EMPTY = ResolverTable({})
