"""What a VNet's resolver answers: pure logic from a compiled table, wire in, wire out.

`ResolverTable.compile(answers_by_vnet(...))` turns the zones linked to each VNet into
dicts keyed by lower-case names, so one query costs a few dict lookups whatever the
number of records. `ResolverTable.answer(vnet_key, wire, over_tcp)` applies the rules of
a private zone resolver without recursion (there is no outside network):

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

Two paths give the same bytes: the common query (one IN question, EDNS or not) is
answered from its wire by `fastpath.answer`; anything else is parsed and rendered by
dnspython (`resolve`), and those replies are cached per VNet.

`compile(answers, previous)` reuses the compiled table of every VNet whose zones and
records did not change (and of every zone), so a change costs the VNets it touches.
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
from privatelink.dns import fastpath

Labels = tuple[bytes, ...]  # a name's labels, lower-case, without the root label
RecordData = tuple[int, tuple[str, ...]]  # a name's A rrset: TTL, addresses as stored

UDP_MIN_PAYLOAD = fastpath.UDP_MIN_PAYLOAD  # RFC 1035: what a UDP reply may always use
OUR_PAYLOAD = 1232  # the EDNS payload size we advertise (DNS flag day 2020)
TCP_MAX = fastpath.TCP_MAX
MAX_CACHED_REPLIES = 1024  # per VNet; only queries the fast path leaves are cached
MAX_CACHED_QUERY = 512  # longer queries are odd (a client's own options); not worth keeping
HEADER_LEN = fastpath.HEADER_LEN
SOA_SERIAL = 1  # Azure's private zones serve serial 1
_QR = 0x8000
_REFUSED_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})  # no zone transfers

ReplyCache = dict[tuple[bool, bytes], bytes]  # (over TCP, folded query) -> reply


def _labels(name: dns.name.Name) -> Labels:
    """The dict key of an absolute name (DNS names compare ASCII case-insensitively)."""
    return tuple(label.lower() for label in name.labels[:-1])


def _parse_name(fqdn: str) -> tuple[Labels, bytes] | None:
    """Labels and lower-case wire of a record's name; None when dnspython rejects it."""
    wire = fastpath.plain_name_wire(fqdn)
    if wire is not None:  # plain ASCII labels: what dns.name.from_text would give
        return tuple(fqdn.rstrip(".").lower().encode("ascii").split(b".")), wire
    try:
        name = dns.name.from_text(fqdn)
    except (dns.exception.DNSException, ValueError):
        return None
    return _labels(name), fastpath.name_wire(name)


def _parse_addresses(addresses: Sequence[str]) -> list[bytes] | None:
    """The wire form of each address; None when dnspython rejects one of them."""
    out = []
    for address in addresses:
        wire = fastpath.ipv4_wire(address)
        if wire is None:  # not a plain dotted quad: dnspython judges it
            try:
                rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, address)
            except (dns.exception.DNSException, ValueError):
                return None
            wire = rdata.to_digestable()
        out.append(wire)
    return out


@dataclass(frozen=True)
class CompiledZone:
    """One zone ready to answer: every existing name (with its A rrset, if any)."""

    source: ZoneAnswers  # what it was compiled from (an equal one reuses it)
    origin: dns.name.Name
    depth: int  # labels of the origin
    soa: dns.rrset.RRset  # the apex SOA as answered
    negative_soa: dns.rrset.RRset  # the SOA of NXDOMAIN/NODATA answers (RFC 2308 TTL)
    # Names with records, their ancestors up to the apex (empty non-terminals) and the
    # apex itself; None when a name exists but holds no A record.
    nodes: dict[Labels, RecordData | None]
    wire: fastpath.ZoneWire  # the same names in wire form, for the fast path

    @classmethod
    def compile(cls, zone: ZoneAnswers) -> CompiledZone:
        """Build the lookup dicts of one zone."""
        origin = dns.name.from_text(zone.zone)
        apex = _labels(origin)
        apex_wire = fastpath.name_wire(origin)
        soa_text = (
            f"{SOA_HOST}. {SOA_EMAIL}. {SOA_SERIAL} {SOA_TIMES['refresh']} "
            f"{SOA_TIMES['retry']} {SOA_TIMES['expire']} {SOA_TIMES['minimum']}"
        )
        soa_rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, soa_text)
        soa = dns.rrset.from_rdata(origin, SOA_TTL, soa_rdata)
        negative = dns.rrset.from_rdata(origin, min(SOA_TTL, SOA_TIMES["minimum"]), soa_rdata)
        nodes: dict[Labels, RecordData | None] = {apex: None}
        wire_nodes: dict[bytes, fastpath.ARecords] = {apex_wire: None}
        depth = len(apex)
        for fqdn, (ttl, addresses) in sorted(zone.records.items()):
            # The core validates names and addresses; never let one sink a zone.
            parsed = _parse_name(fqdn)
            if parsed is None:
                continue
            labels, name_wire = parsed
            if labels[len(labels) - depth :] != apex:
                continue  # not inside this zone: never served from it
            address_wires = _parse_addresses(addresses) if addresses else []
            if address_wires is None or (addresses and not isinstance(ttl, int)):
                continue
            # Ancestors exist as empty non-terminals unless they hold records themselves.
            at = 0
            for cut in range(1, len(labels) - depth + 1):
                nodes.setdefault(labels[cut:], None)
                at += name_wire[at] + 1
                wire_nodes.setdefault(name_wire[at:], None)
            nodes[labels] = (ttl, tuple(addresses)) if addresses else None
            wire_nodes[name_wire] = fastpath.a_records_wire(ttl, address_wires)
        zone_wire = fastpath.ZoneWire.build(origin, wire_nodes, soa, negative)
        return cls(zone, origin, depth, soa, negative, nodes, zone_wire)


@dataclass(frozen=True)
class Lookup:
    """The outcome of a name lookup in one zone."""

    rcode: dns.rcode.Rcode
    answer: tuple[dns.rrset.RRset, ...]
    authority: tuple[dns.rrset.RRset, ...]


def lookup(zone: CompiledZone, qname: dns.name.Name, labels: Labels, qtype: int) -> Lookup:
    """Answer `qname`/`qtype` from a zone that contains it (`labels` is its key)."""
    if labels in zone.nodes:
        apex = len(labels) == zone.depth
        return _node_answer(zone, qname, zone.nodes[labels], zone.soa if apex else None, qtype)
    # RFC 4592: the closest encloser is the longest existing ancestor (the apex at worst);
    # only `*.<closest encloser>` may synthesize an answer.
    for cut in range(1, len(labels) - zone.depth + 1):
        encloser = labels[cut:]
        if encloser in zone.nodes:
            wildcard = (b"*", *encloser)
            if wildcard not in zone.nodes:
                break
            return _node_answer(zone, qname, zone.nodes[wildcard], None, qtype)
    return Lookup(dns.rcode.NXDOMAIN, (), (zone.negative_soa,))


def _node_answer(
    zone: CompiledZone,
    qname: dns.name.Name,
    records: RecordData | None,
    soa: dns.rrset.RRset | None,
    qtype: int,
) -> Lookup:
    # The A rrset is owned by the asked name (a wildcard's is synthesized under it).
    a_rrset = (
        dns.rrset.from_text_list(qname, records[0], dns.rdataclass.IN, dns.rdatatype.A, records[1])
        if records is not None
        else None
    )
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


@dataclass(frozen=True)
class VnetTable:
    """The zones one VNet resolves, compiled; immutable once built."""

    inputs: tuple[ZoneAnswers, ...]  # what it was compiled from
    zones: dict[Labels, CompiledZone]  # by origin labels
    wire: fastpath.VnetWire  # the same zones for the fast path

    @classmethod
    def build(cls, inputs: tuple[ZoneAnswers, ...], compiled: Sequence[CompiledZone]) -> VnetTable:
        """From a VNet's compiled zones (a later zone of the same origin wins)."""
        zones = {_labels(zone.origin): zone for zone in compiled}
        wire = fastpath.VnetWire.build({zone.wire.apex: zone.wire for zone in zones.values()})
        return cls(inputs, zones, wire)


class ResolverTable:
    """The zones each VNet resolves, compiled for dict lookups; immutable once built
    (but for the reply caches of the dnspython path)."""

    def __init__(
        self,
        vnets: Mapping[str, VnetTable],
        caches: Mapping[str, ReplyCache] | None = None,
        rebuilt: frozenset[str] = frozenset(),
    ) -> None:
        """`vnets`: VNet key -> its table; `caches`: reply caches to keep (tables that did
        not change); `rebuilt`: the VNets whose table was built anew or dropped."""
        self._vnets = dict(vnets)
        # Replies of the dnspython path by VNet, then (transport, query without its id):
        # a VNet's table never changes, so equal queries get equal replies.
        self._replies: dict[str, ReplyCache] = dict(caches or {})
        self.rebuilt = rebuilt

    @classmethod
    def compile(
        cls,
        answers: Mapping[str, Sequence[ZoneAnswers]],
        previous: ResolverTable | None = None,
    ) -> ResolverTable:
        """From `answers_by_vnet` output. A zone linked to several VNets compiles once;
        with `previous`, a VNet whose zones are all equal to what its table was built
        from keeps that table (and its reply cache), and an unchanged zone is reused."""
        old_vnets = previous._vnets if previous is not None else {}
        old_zones: dict[str, list[CompiledZone]] = {}
        for table in old_vnets.values():
            for zone in table.zones.values():
                old_zones.setdefault(zone.source.zone, []).append(zone)
        compiled: dict[int, CompiledZone] = {}  # by id() of the ZoneAnswers

        def zone_of(answers: ZoneAnswers) -> CompiledZone:
            # answers_by_vnet hands every VNet the same ZoneAnswers object for a zone.
            built = compiled.get(id(answers))
            if built is None:
                same = (z for z in old_zones.get(answers.zone, ()) if z.source == answers)
                built = next(same, None) or CompiledZone.compile(answers)
                compiled[id(answers)] = built
            return built

        vnets: dict[str, VnetTable] = {}
        rebuilt: set[str] = set()
        for vnet, zones in answers.items():
            inputs = tuple(zones)
            old = old_vnets.get(vnet)
            if old is not None and old.inputs == inputs:
                vnets[vnet] = old
                continue
            vnets[vnet] = VnetTable.build(inputs, [zone_of(z) for z in inputs])
            rebuilt.add(vnet)
        caches: dict[str, ReplyCache] = {}
        if previous is not None:
            # A copy: the serving thread may add a VNet's cache meanwhile.
            for vnet, cache in previous._replies.copy().items():
                kept = vnets.get(vnet)
                if kept is not None and kept is old_vnets.get(vnet):
                    caches[vnet] = cache  # same table
                elif kept is None and vnet not in old_vnets:
                    caches[vnet] = cache  # no links before or now: same answers
        removed = frozenset(old_vnets) - frozenset(vnets)
        return cls(vnets, caches, frozenset(rebuilt) | removed)

    @property
    def vnets(self) -> frozenset[str]:
        """Keys of the VNets that have at least one linked zone."""
        return frozenset(self._vnets)

    def zones(self, vnet_key: str) -> tuple[str, ...]:
        """Domains a VNet resolves (lower-case, no trailing dot)."""
        table = self._vnets.get(vnet_key)
        return tuple(
            sorted(
                z.origin.to_text(omit_final_dot=True)
                for z in (table.zones.values() if table else ())
            )
        )

    def resolve(self, vnet_key: str, query: dns.message.Message) -> dns.message.Message:
        """The response to a parsed single-question QUERY from inside a VNet."""
        response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)  # RFC 6891: we speak EDNS version 0
            return response
        question = query.question[0]
        table = self._vnets.get(vnet_key)
        zones = table.zones if table is not None else None
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
        fast = self.answer_fast(vnet_key, query_wire, over_tcp)
        if fast is not None:
            return fast
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
        replies = self._replies.get(vnet_key)
        if replies is None:
            replies = self._replies[vnet_key] = {}
        cache_key = (over_tcp, folded)
        cached = replies.get(cache_key)
        if cached is not None:
            if end > HEADER_LEN and cached[HEADER_LEN:end].lower() == folded[10 : end - 2]:
                return (
                    query_wire[:2]
                    + cached[2:HEADER_LEN]
                    + query_wire[HEADER_LEN:end]
                    + cached[end:]
                )
            return query_wire[:2] + cached[2:]
        reply = self.answer_slow(vnet_key, query_wire, over_tcp)
        if len(query_wire) <= MAX_CACHED_QUERY:
            if len(replies) >= MAX_CACHED_REPLIES:
                replies.clear()  # bounded memory; refills with what is asked now
            replies[cache_key] = reply
        return reply

    def answer_fast(self, vnet_key: str, query_wire: bytes, over_tcp: bool = False) -> bytes | None:
        """The reply to a common query straight from its bytes, or None when the query
        is not one for the fast path (`fastpath`); never raises."""
        table = self._vnets.get(vnet_key)
        return fastpath.answer(table.wire if table is not None else None, query_wire, over_tcp)

    def answer_slow(self, vnet_key: str, query_wire: bytes, over_tcp: bool = False) -> bytes:
        """The reply through dnspython to a QUERY with a header, uncached (`answer` checks
        the header and the opcode first)."""
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
            # Too big: the rrsets from the first that does not fit are dropped and TC set
            # (the client retries over TCP).
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
