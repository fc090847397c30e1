"""The fast path (dns/fastpath.py) answers exactly as the dnspython path does.

Every query is answered both ways on one table: `answer_fast` (from the bytes) and
`answer_slow` (dnspython's parse, `resolve`, render). Where the fast path answers, the
replies must be the same bytes, and parsed back by dnspython the same rcode, flags,
sections and TTLs; where it declines (None), `answer` falls back to dnspython.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privatelink.core.private_dns import ZoneAnswers
from privatelink.dns.resolver import ResolverTable

V1 = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/v1"
V2 = "/subscriptions/s/resourcegroups/rg2/providers/microsoft.network/virtualnetworks/v2"
BARE = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/bare"
LONG = ".".join(["l" * 60] * 3)  # a name near the 255-byte limit once a zone is added

CONTOSO = ZoneAnswers(
    "contoso.example",
    {
        "contoso.example": (300, ("10.1.0.1",)),
        "svc.contoso.example": (10, ("10.1.0.5",)),
        "multi.contoso.example": (20, ("10.1.0.6", "10.1.0.7", "10.1.0.6")),  # a duplicate
        "a.deep.contoso.example": (10, ("10.1.0.8",)),  # deep.contoso.example: non-terminal
        "*.w.contoso.example": (30, ("10.1.0.9",)),
        "own.w.contoso.example": (10, ("10.1.0.10",)),
        "*.e.contoso.example": (10, ()),  # a wildcard without addresses
        "empty.contoso.example": (10, ()),
        "big.contoso.example": (10, tuple(f"10.2.0.{i}" for i in range(1, 61))),
        "mid.contoso.example": (10, tuple(f"10.2.1.{i}" for i in range(1, 35))),  # ~560 B
        "hidden.sub.contoso.example": (10, ("10.1.0.11",)),  # shadowed by the sub zone
        f"{LONG}.contoso.example": (10, ("10.1.0.12",)),
        "MiXeD.contoso.example": (10, ("10.1.0.13",)),  # stored in another case
    },
)
SUB = ZoneAnswers("sub.contoso.example", {"x.sub.contoso.example": (10, ("10.3.0.1",))})
CONTOSO_2 = ZoneAnswers("contoso.example", {"svc.contoso.example": (10, ("10.9.0.5",))})
# The SOA's names compress against the question: its rname ends in .com, its mname in .net.
PL_COM = ZoneAnswers(
    "privatelink.example.com",
    {"db.privatelink.example.com": (3600, ("10.5.0.4",)), "*.privatelink.example.com": (60, ())},
)
PL_NET = ZoneAnswers("azureprivatedns.net", {"x.azureprivatedns.net": (5, ("10.6.0.1",))})
# The SOA's rname lies inside this zone: negative answers are left to dnspython.
MS = ZoneAnswers("microsoft.com", {"www.microsoft.com": (10, ("10.7.0.1",))})
# Oddities the fast path leaves alone: a TTL out of range.
ODD = ZoneAnswers("odd.example", {"neg.odd.example": (-1, ("10.8.0.1",))})

TABLE = ResolverTable.compile(
    {V1: (CONTOSO, SUB, PL_COM, PL_NET, MS, ODD), V2: (CONTOSO_2,), BARE: ()}
)

NAMES = [
    "svc.contoso.example",
    "SvC.CONTOSO.Example.",
    "multi.contoso.example",
    "contoso.example",
    "CONTOSO.EXAMPLE",
    "deep.contoso.example",
    "a.deep.contoso.example",
    "x.deep.contoso.example",
    "empty.contoso.example",
    "big.contoso.example",
    "mid.contoso.example",
    "nope.contoso.example",
    "b.svc.contoso.example",
    "a.w.contoso.example",
    "B.a.W.contoso.example",
    "*.w.contoso.example",
    "own.w.contoso.example",
    "x.own.w.contoso.example",
    "w.contoso.example",
    "q.e.contoso.example",
    "hidden.sub.contoso.example",
    "x.sub.contoso.example",
    "sub.contoso.example",
    f"{LONG}.contoso.example",
    f"{LONG}.x.contoso.example",
    "mixed.contoso.example",
    "db.privatelink.example.com",
    "nope.privatelink.example.com",
    "privatelink.example.com",
    "x.azureprivatedns.net",
    "nope.azureprivatedns.net",
    "azureprivatedns.net",
    "www.microsoft.com",
    "microsoft.com",
    "nope.microsoft.com",
    "neg.odd.example",
    "example.org",
    "xcontoso.example",
    "example",
    "com",
    ".",
]
TYPES = ["A", "AAAA", "SOA", "ANY", "TXT", "MX", "CNAME", "NS", "PTR", "TYPE0", "TYPE65535"]
EDNS = [None, (0, 512), (0, 100), (0, 600), (0, 1232), (0, 4096), (0, 65535)]


def both(vnet: str, wire: bytes, over_tcp: bool) -> tuple[bytes | None, bytes]:
    return TABLE.answer_fast(vnet, wire, over_tcp), TABLE.answer_slow(vnet, wire, over_tcp)


def assert_same(fast: bytes, slow: bytes) -> None:
    """Parsed back, the replies agree on everything; and they are the same bytes."""
    a, b = dns.message.from_wire(fast), dns.message.from_wire(slow)
    assert (a.id, a.flags, a.rcode(), a.opcode()) == (b.id, b.flags, b.rcode(), b.opcode())
    assert (a.edns, a.payload, a.ednsflags) == (b.edns, b.payload, b.ednsflags)
    for section in ("question", "answer", "authority", "additional"):
        mine, theirs = getattr(a, section), getattr(b, section)
        assert mine == theirs, section
        assert [r.ttl for r in mine] == [r.ttl for r in theirs], section
    assert len(fast) == len(slow) and fast[:12] == slow[:12]
    if all(len(rrset) == 1 for rrset in a.answer):
        assert fast == slow  # else the records of an rrset come in random order, both ways


def query_wire(
    name: str,
    rdtype: str,
    edns: tuple[int, int] | None,
    *,
    flags: int = dns.flags.RD,
    ednsflags: int = 0,
) -> bytes:
    query = dns.message.make_query(name, rdtype)
    query.flags = dns.flags.Flag(flags)
    if edns is not None:
        query.use_edns(edns[0], ednsflags, edns[1])
    return query.to_wire()


# --- the table: every kind of answer, both ways ---------------------------------------------


@pytest.mark.parametrize("rdtype", TYPES)
@pytest.mark.parametrize("edns", EDNS)
def test_common_queries_get_the_same_reply_both_ways(
    rdtype: str, edns: tuple[int, int] | None
) -> None:
    kinds: dict[int, int] = {}
    for vnet in (V1, V2, BARE, "/unknown/vnet"):
        for name in NAMES:
            for over_tcp in (False, True):
                wire = query_wire(name, rdtype, edns)
                fast, slow = both(vnet, wire, over_tcp)
                zone_is_ms = name.endswith("microsoft.com") and vnet == V1
                if fast is None:
                    # Only the odd zones are left to dnspython (checked below).
                    assert zone_is_ms or name.endswith("odd.example"), (vnet, name)
                    assert TABLE.answer(vnet, wire, over_tcp) == slow
                    continue
                assert_same(fast, slow)
                rcode = dns.message.from_wire(fast).rcode()
                kinds[rcode] = kinds.get(rcode, 0) + 1
    # The table covers positive, negative and refused answers.
    assert {dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED} <= set(kinds)


def test_the_table_covers_truncation_wildcards_and_the_apex() -> None:
    def fast(
        name: str, rdtype: str = "A", edns: tuple[int, int] | None = None
    ) -> dns.message.Message:
        wire = TABLE.answer_fast(V1, query_wire(name, rdtype, edns), False)
        assert wire is not None
        return dns.message.from_wire(wire)

    assert fast("big.contoso.example").flags & dns.flags.TC
    assert fast("mid.contoso.example").flags & dns.flags.TC  # over 512 B by a little
    assert not fast("mid.contoso.example", edns=(0, 600)).flags & dns.flags.TC
    assert fast("mid.contoso.example", edns=(0, 570)).flags & dns.flags.TC  # OPT counts
    reply = fast("B.a.W.contoso.example")
    assert reply.answer[0].name == dns.name.from_text("B.a.W.contoso.example")
    assert {r.rdtype for r in fast("contoso.example", "ANY").answer} == {1, 6}
    assert [len(r) for r in fast("multi.contoso.example").answer] == [2]  # set semantics
    nodata = fast("nope.privatelink.example.com")  # a wildcard without addresses covers it
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.authority[0].ttl == 10
    nx = fast("x.db.privatelink.example.com")  # below db: no wildcard there
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].ttl == 10


@pytest.mark.parametrize(
    ("flags", "ednsflags"),
    [
        (0, 0),  # RD clear
        (dns.flags.RD | dns.flags.AD | dns.flags.CD, 0),
        (dns.flags.AA | dns.flags.TC | dns.flags.RA, 0),
        (dns.flags.RD | 0x0040, 0),  # the Z bit
        (dns.flags.RD | 0x000F, 0),  # an rcode in a query
        (dns.flags.RD, dns.flags.DO),
        (dns.flags.RD, 0xFF000000),  # an extended rcode in the query's OPT
    ],
)
def test_query_header_bits_are_handled_alike(flags: int, ednsflags: int) -> None:
    for name in ("svc.contoso.example", "nope.contoso.example", "example.org"):
        for edns in (None, (0, 1232)):
            wire = query_wire(name, "A", edns, flags=flags, ednsflags=ednsflags)
            fast, slow = both(V1, wire, False)
            assert fast is not None
            assert_same(fast, slow)


# --- what the fast path leaves to dnspython ---------------------------------------------------


def header(flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 0xBEEF, flags, qd, an, ns, ar)


QUESTION = b"\x03svc\x07contoso\x07example\x00\x00\x01\x00\x01"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def unusual_queries() -> list[tuple[str, bytes]]:
    two = dns.message.make_query("svc.contoso.example", "A")
    two.question.append(two.question[0])
    cookie = dns.message.make_query(
        "svc.contoso.example",
        "A",
        use_edns=0,
        options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"c" * 8)],
    )
    chaos = dns.message.make_query("svc.contoso.example", "A", rdclass=dns.rdataclass.CH)
    return [
        ("two questions", two.to_wire()),
        ("no question", header(qd=0)),
        ("notify", header(flags=0x2000) + QUESTION),
        ("a response", header(flags=0x8100) + QUESTION),
        ("cut short", header() + QUESTION[:-1]),
        ("cut in the name", header() + QUESTION[:6]),
        ("pointer in the question", header() + b"\x03svc\xc0\x0c\x00\x01\x00\x01"),
        ("reserved label type", header() + b"\x43svc\x00\x00\x01\x00\x01"),
        ("trailing junk", header() + QUESTION + b"\x00"),
        ("EDNS version 1", header(ar=1) + QUESTION + OPT[:5] + b"\x00\x01" + OPT[7:]),
        ("an EDNS option", cookie.to_wire()),
        ("OPT owner not root", header(ar=1) + QUESTION + b"\xc0\x0c" + OPT[1:]),
        ("OPT cut short", header(ar=1) + QUESTION + OPT[:-1]),
        ("two additional", header(ar=2) + QUESTION + OPT + OPT),
        ("an answer record", header(an=1) + QUESTION),
        ("class CH", chaos.to_wire()),
        ("AXFR", header() + QUESTION[:-4] + b"\x00\xfc\x00\x01"),
        ("OPT in the question", header() + QUESTION[:-4] + b"\x00\x29\x00\x01"),
    ]


@pytest.mark.parametrize(("what", "wire"), unusual_queries(), ids=lambda v: str(v)[:30])
def test_unusual_queries_are_left_to_dnspython(what: str, wire: bytes) -> None:
    assert TABLE.answer_fast(V1, wire, False) is None, what
    slow = TABLE.answer(V1, wire, False)
    if wire[2] & 0x80:
        assert slow is None
    else:
        assert slow is not None and slow[:2] == wire[:2]


def test_a_name_over_255_bytes_is_left_to_dnspython() -> None:
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"  # 257 bytes
    wire = header() + name + b"\x00\x01\x00\x01"
    assert TABLE.answer_fast(V1, wire, False) is None
    reply = TABLE.answer(V1, wire, False)
    assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR


# --- fuzz: random and mutated bytes -------------------------------------------------------------

SEEDS = [
    query_wire(name, rdtype, edns)
    for name in ("svc.contoso.example", "nope.contoso.example", "a.w.contoso.example", "x.org")
    for rdtype in ("A", "AAAA", "ANY")
    for edns in (None, (0, 1232))
]


def check(wire: bytes, over_tcp: bool) -> None:
    """The fast path never raises, and where it answers dnspython answers the same."""
    for vnet in (V1, BARE):
        fast = TABLE.answer_fast(vnet, wire, over_tcp)
        reply = TABLE.answer(vnet, wire, over_tcp)  # never raises either
        if fast is not None:
            slow = TABLE.answer_slow(vnet, wire, over_tcp)
            assert reply is not None
            assert_same(fast, slow)
            assert_same(reply, slow)


@settings(max_examples=500, deadline=None)
@given(wire=st.binary(max_size=300), over_tcp=st.booleans())
def test_random_bytes_never_raise_nor_answer_differently(wire: bytes, over_tcp: bool) -> None:
    check(wire, over_tcp)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    wire = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        at = draw(st.integers(0, max(0, len(wire) - 1)))
        if kind == "flip" and wire:
            wire[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and wire:
            wire[at] = draw(st.sampled_from([0, 1, 0x3F, 0x40, 0xC0, 0xFF, ord("A"), 0x29]))
        elif kind == "insert":
            wire[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and wire:
            del wire[at]
        elif kind == "cut":
            del wire[at:]
    return bytes(wire)


@settings(max_examples=1500, deadline=None)
@given(wire=mutated(), over_tcp=st.booleans())
def test_mutated_queries_never_raise_nor_answer_differently(wire: bytes, over_tcp: bool) -> None:
    check(wire, over_tcp)


_LABEL = st.sampled_from([b"svc", b"SVC", b"w", b"own", b"*", b"sub", b"x", b"deep", b"e"])


@settings(max_examples=800, deadline=None)
@given(
    labels=st.lists(st.one_of(_LABEL, st.binary(min_size=1, max_size=63)), max_size=6),
    suffix=st.sampled_from(
        [
            (b"contoso", b"example"),
            (b"CONTOSO", b"Example"),
            (b"example",),
            (),
            (b"privatelink", b"example", b"com"),
            (b"azureprivatedns", b"net"),
        ]
    ),
    rdtype=st.integers(min_value=0, max_value=65535),
    payload=st.one_of(st.none(), st.integers(min_value=0, max_value=65535)),
    over_tcp=st.booleans(),
)
def test_well_formed_questions_of_any_name_and_type_get_the_same_reply(
    labels: list[bytes],
    suffix: tuple[bytes, ...],
    rdtype: int,
    payload: int | None,
    over_tcp: bool,
) -> None:
    try:
        name = dns.name.Name([*labels, *suffix, b""])
    except dns.name.NameTooLong:
        return
    wire = (
        header(ar=0 if payload is None else 1)
        + name.to_wire()  # type: ignore[operator]
        + struct.pack("!HH", rdtype, 1)
        + (b"" if payload is None else b"\x00\x00\x29" + struct.pack("!H", payload) + OPT[5:])
    )
    fast = TABLE.answer_fast(V1, wire, over_tcp)
    if rdtype not in (41, 249, 250, 251, 252):
        assert fast is not None  # the common query is the fast path's
    if fast is not None:
        assert_same(fast, TABLE.answer_slow(V1, wire, over_tcp))
