"""The private DNS answer rules, wire in and wire out (no sockets): dns/resolver.py."""

from __future__ import annotations

import struct
from dataclasses import replace

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privatelink.core.private_dns import SOA_HOST, SOA_TIMES, SOA_TTL, ZoneAnswers
from privatelink.dns.resolver import ResolverTable

V1 = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/v1"
V2 = "/subscriptions/s/resourcegroups/rg2/providers/microsoft.network/virtualnetworks/v2"
BARE = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/bare"

CONTOSO = ZoneAnswers(
    "contoso.example",
    {
        "contoso.example": (300, ("10.1.0.1",)),
        "svc.contoso.example": (10, ("10.1.0.5",)),
        "multi.contoso.example": (20, ("10.1.0.6", "10.1.0.7")),
        "a.deep.contoso.example": (10, ("10.1.0.8",)),  # deep.contoso.example: non-terminal
        "*.w.contoso.example": (30, ("10.1.0.9",)),
        "own.w.contoso.example": (10, ("10.1.0.10",)),
        "empty.contoso.example": (10, ()),  # a record set without addresses
        "big.contoso.example": (10, tuple(f"10.2.0.{i}" for i in range(1, 61))),
        "hidden.sub.contoso.example": (10, ("10.1.0.11",)),  # shadowed by the sub zone
    },
)
SUB = ZoneAnswers("sub.contoso.example", {"x.sub.contoso.example": (10, ("10.3.0.1",))})
# Another zone of the same name (another resource group) with other records.
CONTOSO_2 = ZoneAnswers("contoso.example", {"svc.contoso.example": (10, ("10.9.0.5",))})

TABLE = ResolverTable.compile({V1: (CONTOSO, SUB), V2: (CONTOSO_2,)})


def ask(
    name: str,
    rdtype: str = "A",
    vnet: str = V1,
    *,
    over_tcp: bool = False,
    table: ResolverTable = TABLE,
    **query_args: object,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **query_args)  # type: ignore[arg-type]
    wire = table.answer(vnet, query.to_wire(), over_tcp)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id and reply.flags & dns.flags.QR
    assert reply.question == query.question  # echoed as asked (case included)
    return reply


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in reply.answer for rd in rrset)


def soa_of(reply: dns.message.Message) -> dns.rrset.RRset:
    assert reply.answer == []
    (soa,) = reply.authority
    assert soa.rdtype == dns.rdatatype.SOA
    return soa


# --- positive answers ------------------------------------------------------------------


def test_a_record_of_a_linked_zone_is_answered_authoritatively_with_its_ttl() -> None:
    reply = ask("svc.contoso.example")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert not reply.flags & dns.flags.RA  # no recursion: there is no outside network
    (rrset,) = reply.answer
    assert rrset.name == dns.name.from_text("svc.contoso.example")
    assert rrset.ttl == 10 and [rd.address for rd in rrset] == ["10.1.0.5"]
    assert reply.authority == []


def test_names_match_case_insensitively() -> None:
    reply = ask("SvC.CONTOSO.Example.")
    assert addresses(reply) == ["10.1.0.5"]


def test_every_address_of_a_record_set_and_the_apex_answer() -> None:
    assert addresses(ask("multi.contoso.example")) == ["10.1.0.6", "10.1.0.7"]
    assert ask("multi.contoso.example").answer[0].ttl == 20
    assert addresses(ask("contoso.example")) == ["10.1.0.1"]


def test_the_apex_answers_its_soa_and_any_returns_what_a_name_holds() -> None:
    reply = ask("contoso.example", "SOA")
    (soa,) = reply.answer
    assert soa.ttl == SOA_TTL and soa[0].mname == dns.name.from_text(SOA_HOST)
    assert soa[0].serial == 1 and soa[0].minimum == SOA_TIMES["minimum"]
    held = {r.rdtype for r in ask("contoso.example", "ANY").answer}
    assert held == {dns.rdatatype.A, dns.rdatatype.SOA}
    assert {r.rdtype for r in ask("svc.contoso.example", "ANY").answer} == {dns.rdatatype.A}


# --- negative answers ------------------------------------------------------------------


def test_another_type_of_an_existing_name_is_nodata_with_the_soa() -> None:
    for name, rdtype in [
        ("svc.contoso.example", "AAAA"),
        ("svc.contoso.example", "TXT"),
        ("deep.contoso.example", "A"),  # an empty non-terminal exists
        ("empty.contoso.example", "A"),  # a record set with no address
        ("empty.contoso.example", "ANY"),
    ]:
        reply = ask(name, rdtype)
        assert reply.rcode() == dns.rcode.NOERROR, (name, rdtype)
        assert reply.flags & dns.flags.AA
        soa = soa_of(reply)
        assert soa.name == dns.name.from_text("contoso.example")
        # RFC 2308: a negative answer's SOA lives min(SOA TTL, minimum) seconds.
        assert soa.ttl == min(SOA_TTL, SOA_TIMES["minimum"])


def test_a_missing_name_in_a_linked_zone_is_nxdomain_with_the_soa() -> None:
    for name in ("nope.contoso.example", "b.svc.contoso.example", "x.deep.contoso.example"):
        reply = ask(name)
        assert reply.rcode() == dns.rcode.NXDOMAIN, name
        assert reply.flags & dns.flags.AA
        assert soa_of(reply).name == dns.name.from_text("contoso.example")


def test_the_longest_linked_zone_is_authoritative() -> None:
    assert addresses(ask("x.sub.contoso.example")) == ["10.3.0.1"]
    # contoso.example holds hidden.sub..., but sub.contoso.example is the closer zone.
    reply = ask("hidden.sub.contoso.example")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert soa_of(reply).name == dns.name.from_text("sub.contoso.example")
    # The apex of the inner zone exists (it holds the SOA): NODATA for A, not NXDOMAIN.
    assert ask("sub.contoso.example").rcode() == dns.rcode.NOERROR


# --- wildcards (RFC 4592) ----------------------------------------------------------------


def test_a_wildcard_answers_missing_names_below_it_under_the_asked_name() -> None:
    for name in ("a.w.contoso.example", "B.a.W.contoso.example"):
        reply = ask(name)
        (rrset,) = reply.answer
        assert rrset.name == dns.name.from_text(name) and rrset.ttl == 30
        assert addresses(reply) == ["10.1.0.9"]
        assert reply.flags & dns.flags.AA


def test_a_wildcard_does_not_cover_its_parent_own_records_or_names_below_them() -> None:
    assert addresses(ask("own.w.contoso.example")) == ["10.1.0.10"]
    soa_of(ask("w.contoso.example"))  # the parent is an empty non-terminal: NODATA
    assert ask("w.contoso.example").rcode() == dns.rcode.NOERROR
    # The closest encloser of this name is own.w..., which has no wildcard child.
    assert ask("x.own.w.contoso.example").rcode() == dns.rcode.NXDOMAIN
    # The wildcard holds only A: other types of a covered name are NODATA.
    reply = ask("a.w.contoso.example", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR and soa_of(reply)
    assert addresses(ask("*.w.contoso.example")) == ["10.1.0.9"]  # asked literally


# --- REFUSED -----------------------------------------------------------------------------


def test_names_outside_every_linked_zone_are_refused() -> None:
    for name in ("example.org", "contoso.example.org", "xcontoso.example", "example", "."):
        reply = ask(name)
        assert reply.rcode() == dns.rcode.REFUSED, name
        assert not reply.flags & dns.flags.AA
        assert reply.answer == [] and reply.authority == []


def test_a_vnet_without_links_is_refused_everything() -> None:
    for name in ("svc.contoso.example", "nope.contoso.example", "contoso.example"):
        assert ask(name, vnet=BARE).rcode() == dns.rcode.REFUSED
    assert TABLE.vnets == frozenset({V1, V2})


def test_other_classes_and_zone_transfers_are_refused() -> None:
    query = dns.message.make_query("svc.contoso.example", "A", rdclass=dns.rdataclass.CH)
    reply = dns.message.from_wire(TABLE.answer(V1, query.to_wire()) or b"")
    assert reply.rcode() == dns.rcode.REFUSED
    assert ask("contoso.example", "AXFR", over_tcp=True).rcode() == dns.rcode.REFUSED
    assert ask("contoso.example", "IXFR", over_tcp=True).rcode() == dns.rcode.REFUSED


def test_two_vnets_linked_to_zones_of_one_name_get_their_own_records() -> None:
    assert addresses(ask("svc.contoso.example", vnet=V1)) == ["10.1.0.5"]
    assert addresses(ask("svc.contoso.example", vnet=V2)) == ["10.9.0.5"]
    assert ask("multi.contoso.example", vnet=V2).rcode() == dns.rcode.NXDOMAIN
    assert ask("x.sub.contoso.example", vnet=V2).rcode() == dns.rcode.NXDOMAIN
    assert TABLE.zones(V1) == ("contoso.example", "sub.contoso.example")
    assert TABLE.zones(V2) == ("contoso.example",)


# --- malformed and unusual queries ---------------------------------------------------------


def header(query_id: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", query_id, flags, qd, an, ns, ar)


def reply_header(wire: bytes | None) -> tuple[int, int, int]:
    assert wire is not None and len(wire) >= 12
    query_id, flags = struct.unpack_from("!HH", wire)
    return query_id, flags, flags & 0xF


def test_no_reply_without_a_header_or_to_a_response() -> None:
    assert TABLE.answer(V1, b"") is None
    assert TABLE.answer(V1, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00") is None  # 11 B
    query = dns.message.make_query("svc.contoso.example", "A")
    query.flags |= dns.flags.QR  # a response: answering could loop between servers
    assert TABLE.answer(V1, query.to_wire()) is None


def test_unparsable_queries_get_formerr_with_their_id() -> None:
    rd = int(dns.flags.RD)
    cases = [
        header(0xBEEF, rd) + b"\x03svc",  # question cut short
        header(0xBEEF, rd, qd=0),  # no question
        header(0xBEEF, rd, an=1) + b"\x00\x00\x01\x00\x01",  # an answer that is not there
        dns.message.make_query("svc.contoso.example", "A", id=0xBEEF).to_wire()[:-2],
    ]
    two = dns.message.make_query("svc.contoso.example", "A")
    two.question.append(two.question[0])
    two.id = 0xBEEF
    cases.append(two.to_wire())  # two questions
    for wire in cases:
        query_id, flags, rcode = reply_header(TABLE.answer(V1, wire))
        assert (query_id, rcode) == (0xBEEF, dns.rcode.FORMERR), wire
        assert flags & dns.flags.QR and flags & dns.flags.RD


def test_an_opcode_other_than_query_is_not_implemented() -> None:
    for opcode in (dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.IQUERY, dns.opcode.STATUS):
        wire = header(7, dns.opcode.to_flags(opcode)) + b"\x00\x00\x06\x00\x01"
        query_id, flags, rcode = reply_header(TABLE.answer(V1, wire))
        assert (query_id, rcode) == (7, dns.rcode.NOTIMP)
        assert dns.opcode.from_flags(flags) == opcode


def test_an_unknown_edns_version_gets_badvers() -> None:
    reply = ask("svc.contoso.example", use_edns=1)
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0 and reply.answer == []


# --- size and transport --------------------------------------------------------------------


def test_udp_replies_over_512_bytes_are_truncated_and_tcp_carries_them() -> None:
    plain = ask("big.contoso.example")  # 60 addresses: ~1 kB
    assert plain.flags & dns.flags.TC and plain.answer == []
    full = ask("big.contoso.example", over_tcp=True)
    assert not full.flags & dns.flags.TC and len(addresses(full)) == 60


def test_the_edns_payload_size_sets_the_udp_limit() -> None:
    small = ask("big.contoso.example", use_edns=0, payload=600)
    assert small.flags & dns.flags.TC and small.answer == []
    large = ask("big.contoso.example", use_edns=0, payload=4096)
    assert not large.flags & dns.flags.TC and len(addresses(large)) == 60
    assert large.edns == 0  # we answer EDNS with EDNS
    tiny = ask("big.contoso.example", use_edns=0, payload=100)  # below 512 counts as 512
    assert tiny.flags & dns.flags.TC
    assert not ask("svc.contoso.example", use_edns=0, payload=100).flags & dns.flags.TC


def test_equal_queries_get_equal_replies_except_the_id() -> None:
    first = dns.message.make_query("svc.contoso.example", "A")
    second = dns.message.make_query("svc.contoso.example", "A")
    second.id = (first.id + 1) % 65536
    a = TABLE.answer(V1, first.to_wire())
    b = TABLE.answer(V1, second.to_wire())
    assert a is not None and b is not None and a[2:] == b[2:]
    assert a[:2] == first.to_wire()[:2] and b[:2] == second.to_wire()[:2]
    # The same bytes from another VNet or over TCP are answered for that VNet/transport.
    assert addresses(dns.message.from_wire(TABLE.answer(V2, first.to_wire()) or b"")) == [
        "10.9.0.5"
    ]


# An EDNS option (here a client cookie) leaves the fast path: dnspython answers, cached.
COOKIE = {"use_edns": 0, "options": [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"c" * 8)]}


def test_a_cached_reply_carries_each_askers_spelling_of_the_name() -> None:
    table = ResolverTable.compile({V1: (CONTOSO,)})  # its own, empty reply cache
    spellings = ["svc.contoso.example", "SVC.contoso.EXAMPLE", "sVc.CoNtOsO.eXaMpLe"]
    replies = [ask(name, table=table, **COOKIE) for name in spellings]  # `ask` checks the echo
    assert [addresses(r) for r in replies] == [["10.1.0.5"]] * 3
    assert len(table._replies[V1]) == 1  # one cached reply served all three spellings
    # A name that folds alike but differs is not served from that entry.
    assert ask("svc.contoso.examplf", table=table, **COOKIE).rcode() == dns.rcode.REFUSED
    nx = [ask(n, table=table, **COOKIE) for n in ("nope.contoso.example", "NOPE.contoso.example")]
    assert [r.rcode() for r in nx] == [dns.rcode.NXDOMAIN] * 2
    # The common query is answered from its bytes and never cached.
    assert addresses(ask("multi.contoso.example", table=table)) == ["10.1.0.6", "10.1.0.7"]
    assert len(table._replies[V1]) == 3


def test_a_table_of_1000_records_answers_each_of_them() -> None:
    zone = ZoneAnswers(
        "big.example",
        {f"h{i}.big.example": (10, (f"10.4.{i // 256}.{i % 256}",)) for i in range(1000)},
    )
    table = ResolverTable.compile({V1: (zone,)})
    for i in range(0, 1000, 37):
        assert addresses(ask(f"h{i}.big.example", table=table)) == [f"10.4.{i // 256}.{i % 256}"]
    assert ask("h1000.big.example", table=table).rcode() == dns.rcode.NXDOMAIN


# --- rebuilding: only what changed ---------------------------------------------------------


def test_a_rebuild_keeps_the_tables_and_caches_of_unchanged_vnets() -> None:
    first = ResolverTable.compile({V1: (CONTOSO, SUB), V2: (CONTOSO_2,)})
    assert first.rebuilt == {V1, V2}
    for vnet in (V1, V2, BARE):
        ask("svc.contoso.example", vnet=vnet, table=first, **COOKIE)  # fills each cache
    # Equal inputs (new objects, as a fresh store read gives): nothing is compiled.
    same = ResolverTable.compile(
        {V1: (replace(CONTOSO), replace(SUB)), V2: (replace(CONTOSO_2),)}, previous=first
    )
    assert same.rebuilt == frozenset()
    assert same._vnets[V1] is first._vnets[V1] and same._vnets[V2] is first._vnets[V2]
    assert same._replies == first._replies  # every cache kept, BARE's too
    # A record of V2's zone changes: V2 alone is rebuilt and loses its cache.
    changed = ZoneAnswers("contoso.example", {"svc.contoso.example": (10, ("10.9.0.6",))})
    after = ResolverTable.compile({V1: (CONTOSO, SUB), V2: (changed,)}, previous=same)
    assert after.rebuilt == {V2}
    assert after._vnets[V1] is first._vnets[V1]
    assert set(after._replies) == {V1, BARE}
    assert addresses(ask("svc.contoso.example", vnet=V2, table=after)) == ["10.9.0.6"]
    assert addresses(ask("svc.contoso.example", vnet=V1, table=after)) == ["10.1.0.5"]


def test_a_rebuild_recompiles_only_changed_zones_and_follows_links() -> None:
    first = ResolverTable.compile({V1: (CONTOSO, SUB), V2: (CONTOSO_2,)})
    sub_2 = ZoneAnswers("sub.contoso.example", {"y.sub.contoso.example": (10, ("10.3.0.2",))})
    # V1's sub zone changes: V1 is rebuilt, but its unchanged contoso zone is reused.
    after = ResolverTable.compile({V1: (CONTOSO, sub_2), V2: (CONTOSO_2,)}, previous=first)
    assert after.rebuilt == {V1}
    old_zones, new_zones = first._vnets[V1].zones, after._vnets[V1].zones
    contoso = (b"contoso", b"example")
    assert new_zones[contoso] is old_zones[contoso]
    assert ask("x.sub.contoso.example", table=after).rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask("y.sub.contoso.example", table=after)) == ["10.3.0.2"]
    # A link goes (V2 loses its zone) and one comes (BARE gets one).
    relinked = ResolverTable.compile({V1: (CONTOSO, sub_2), BARE: (CONTOSO_2,)}, previous=after)
    assert relinked.rebuilt == {V2, BARE}
    assert ask("svc.contoso.example", vnet=V2, table=relinked).rcode() == dns.rcode.REFUSED
    assert addresses(ask("svc.contoso.example", vnet=BARE, table=relinked)) == ["10.9.0.5"]


def test_an_empty_table_refuses() -> None:
    assert ask("svc.contoso.example", table=ResolverTable.compile({})).rcode() == (
        dns.rcode.REFUSED
    )


# --- fuzz: nothing raises ------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(wire=st.binary(max_size=600), over_tcp=st.booleans())
def test_arbitrary_bytes_never_raise(wire: bytes, over_tcp: bool) -> None:
    reply = TABLE.answer(V1, wire, over_tcp)
    if reply is None:
        assert len(wire) < 12 or wire[2] & 0x80
    else:
        assert reply[:2] == wire[:2]
        parsed = dns.message.from_wire(reply)
        assert parsed.flags & dns.flags.QR


_LABEL = st.sampled_from([b"svc", b"SVC", b"w", b"own", b"*", b"sub", b"x", b"contoso", b"a"])


@settings(max_examples=400, deadline=None)
@given(
    labels=st.lists(st.one_of(_LABEL, st.binary(min_size=1, max_size=63)), max_size=6),
    suffix=st.sampled_from([(b"contoso", b"example"), (b"example",), ()]),
    rdtype=st.integers(min_value=0, max_value=65535),
    rdclass=st.sampled_from([1, 3, 255, 254]),
    edns=st.sampled_from([-1, 0, 1]),
    over_tcp=st.booleans(),
)
def test_well_formed_queries_of_any_name_and_type_get_a_rule_based_reply(
    labels: list[bytes],
    suffix: tuple[bytes, ...],
    rdtype: int,
    rdclass: int,
    edns: int,
    over_tcp: bool,
) -> None:
    try:
        name = dns.name.Name([*labels, *suffix, b""])
    except dns.name.NameTooLong:
        return
    query = dns.message.Message()
    query.flags = dns.flags.RD
    query.question.append(
        dns.rrset.RRset(
            name, dns.rdataclass.RdataClass.make(rdclass), dns.rdatatype.RdataType.make(rdtype)
        )
    )
    if edns >= 0:
        query.use_edns(edns, payload=1232)
    try:
        wire = query.to_wire()
    except Exception:
        return  # dnspython refuses to render some meta types; not a query we can get
    reply = TABLE.answer(V1, wire, over_tcp)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.id == query.id
    allowed = {dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED, dns.rcode.FORMERR}
    if edns > 0:
        allowed = {dns.rcode.BADVERS, dns.rcode.FORMERR}
    assert parsed.rcode() in allowed
    inside = name.is_subdomain(dns.name.from_text("contoso.example"))
    if parsed.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        assert inside and rdclass == 1 and parsed.flags & dns.flags.AA
    if not inside and edns <= 0 and parsed.rcode() != dns.rcode.FORMERR:
        assert parsed.rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "MX", "SOA", "ANY", "CNAME", "TXT"])
def test_every_answer_stays_inside_the_asked_name_or_its_zone(rdtype: str) -> None:
    for name in ("svc.contoso.example", "nope.contoso.example", "q.w.contoso.example"):
        reply = ask(name, rdtype)
        for rrset in reply.answer:
            assert rrset.name == dns.name.from_text(name)
        for rrset in reply.authority:
            assert rrset.name == dns.name.from_text("contoso.example")
