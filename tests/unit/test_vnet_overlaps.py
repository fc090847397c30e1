"""Issue 11, defect 3: overlap checks by sorting agree with the pairwise checks they replace.

The sweep in `first_overlap` (and the bisect in `_Spaces`) are property-tested against
brute force: the old O(N²) scan, `ipaddress`'s own `overlaps`/`subnet_of`, on networks
drawn from a small range so that overlaps and nesting are common.
"""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privatelink.core import errors
from privatelink.core import virtual_network as vnm
from privatelink.core.addressing import parse_prefix
from privatelink.core.limits import Limits

BASE = int(IPv4Network("10.0.0.0/16").network_address)
VNET_ID = (
    "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg"
    "/providers/Microsoft.Network/virtualNetworks/vp"
)


@st.composite
def networks(draw: st.DrawFn, min_len: int = 16, max_len: int = 32) -> IPv4Network:
    """A network inside 10.0.0.0/16 (so that random ones often overlap)."""
    length = draw(st.integers(min_len, max_len))
    offset = draw(st.integers(0, 2**16 - 1))
    return IPv4Network((BASE + offset, length), strict=False)


def pairwise_overlap(nets: list[IPv4Network]) -> bool:
    """The reference: every pair, as validate_virtual_network did before (O(N²))."""
    return any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


@settings(max_examples=400, deadline=None)
@given(st.lists(networks(), max_size=40))
def test_first_overlap_agrees_with_pairwise(nets: list[IPv4Network]) -> None:
    found = vnm.first_overlap([vnm.span(n) for n in nets])
    assert (found is not None) == pairwise_overlap(nets)
    if found is not None:
        i, j = found
        assert 0 <= i < j < len(nets)
        assert nets[i].overlaps(nets[j])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=30))
def test_first_overlap_holds_for_any_ranges(pairs: list[tuple[int, int]]) -> None:
    # Not only CIDR blocks (which nest or are disjoint): any ranges, where the range
    # reaching furthest is not always the one just before.
    spans = [(a, a + n) for a, n in pairs]
    pairwise = any(
        a[0] <= b[1] and b[0] <= a[1] for i, a in enumerate(spans) for b in spans[i + 1 :]
    )
    found = vnm.first_overlap(spans)
    assert (found is not None) == pairwise
    if found is not None:
        (a0, a1), (b0, b1) = spans[found[0]], spans[found[1]]
        assert found[0] < found[1] and a0 <= b1 and b0 <= a1


@settings(max_examples=200, deadline=None)
@given(st.lists(networks(), max_size=40, unique=True), st.randoms(use_true_random=False))
def test_disjoint_sets_are_never_reported(nets: list[IPv4Network], rnd: object) -> None:
    # Keep a maximal disjoint subset (greedy), then shuffle it: no overlap may be found.
    kept: list[IPv4Network] = []
    for net in nets:
        if not any(net.overlaps(k) for k in kept):
            kept.append(net)
    rnd.shuffle(kept)  # type: ignore[attr-defined]
    assert vnm.first_overlap([vnm.span(n) for n in kept]) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(networks(8, 20), max_size=12), st.lists(networks(), max_size=30))
def test_spaces_holds_agrees_with_subnet_of(
    spaces: list[IPv4Network], subnets: list[IPv4Network]
) -> None:
    disjoint: list[IPv4Network] = []
    for space in spaces:
        if not any(space.overlaps(d) for d in disjoint):
            disjoint.append(space)
    index = vnm._Spaces(disjoint)
    for net in subnets:
        assert index.holds(vnm.span(net)) == any(net.subnet_of(s) for s in disjoint)


@settings(max_examples=300, deadline=None)
@given(networks(0, 32))
def test_stored_span_reads_what_parse_prefix_accepted(net: IPv4Network) -> None:
    assert vnm.stored_span(str(net)) == vnm.span(net)
    assert vnm.stored_span(f"{net.network_address}/0{net.prefixlen}") == vnm.span(net)
    # parse_prefix also accepts a netmask or a hostmask after the slash; such prefixes
    # are stored as written and must read back as ipaddress reads them.
    for text in (net.with_netmask, net.with_hostmask):
        try:
            accepted = parse_prefix(text, "test")
        except errors.ArmError:
            continue  # never stored (e.g. a /32's hostmask reads as the netmask /0)
        assert vnm.stored_span(text) == vnm.span(accepted)


def _vnet(spaces: list[str], prefixes: list[str]) -> vnm.VirtualNetwork:
    return vnm.VirtualNetwork(
        id=VNET_ID,
        name="vp",
        location="eastus",
        address_prefixes=tuple(spaces),
        subnets=tuple(vnm.Subnet(f"s{i}", p) for i, p in enumerate(prefixes)),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(networks(16, 29), min_size=1, max_size=40))
def test_subnet_overlap_verdict_is_the_pairwise_one(nets: list[IPv4Network]) -> None:
    vnet = _vnet(["10.0.0.0/16"], [str(n) for n in nets])
    if pairwise_overlap(nets):
        with pytest.raises(errors.SubnetRangesOverlap) as info:
            vnm.validate_virtual_network(vnet)
        names = {info.value.fields["subnet"], info.value.fields["other"]}
        a, b = (nets[int(n[1:])] for n in names)
        assert len(names) == 2 and a.overlaps(b)
    else:
        vnm.validate_virtual_network(vnet)


@settings(max_examples=300, deadline=None)
@given(st.lists(networks(8, 24), min_size=1, max_size=20))
def test_address_space_overlap_verdict_is_the_pairwise_one(spaces: list[IPv4Network]) -> None:
    vnet = _vnet([str(s) for s in spaces], [])
    if pairwise_overlap(spaces):
        with pytest.raises(errors.AddressSpacesOverlap) as info:
            vnm.validate_virtual_network(vnet)
        a = IPv4Network(info.value.fields["prefix"])
        b = IPv4Network(info.value.fields["other"])
        assert a.overlaps(b)
    else:
        vnm.validate_virtual_network(vnet)


def _grid(count: int) -> list[str]:
    """`count` disjoint /24s in 10.0.0.0/8."""
    return [f"10.{i // 256}.{i % 256}.0/24" for i in range(count)]


def test_azure_limits_by_default() -> None:
    assert Limits().subnets_per_vnet == 3000
    vnm.validate_virtual_network(_vnet(["10.0.0.0/8"], _grid(3000)))
    with pytest.raises(errors.SubnetsPerVirtualNetworkLimitReached) as info:
        vnm.validate_virtual_network(_vnet(["10.0.0.0/8"], _grid(3001)))
    assert (info.value.code, info.value.status) == ("SubnetsPerVirtualNetworkLimitReached", 400)
    assert "3001" in info.value.message and "3000" in info.value.message


def test_overlap_found_among_thousands() -> None:
    prefixes = _grid(3000)
    prefixes[2999] = "10.5.7.128/25"  # inside s1287 = 10.5.7.0/24
    with pytest.raises(errors.SubnetRangesOverlap) as info:
        vnm.validate_virtual_network(_vnet(["10.0.0.0/8"], prefixes))
    assert {info.value.fields["subnet"], info.value.fields["other"]} == {"s2999", "s1287"}


def test_address_prefix_limit() -> None:
    spaces = _grid(5)
    vnm.validate_virtual_network(_vnet(spaces, []), Limits(address_prefixes_per_vnet=5))
    with pytest.raises(errors.AddressPrefixesPerVirtualNetworkLimitReached) as info:
        vnm.validate_virtual_network(_vnet(spaces, []), Limits(address_prefixes_per_vnet=4))
    assert info.value.code == "AddressPrefixesPerVirtualNetworkLimitReached"
    assert info.value.status == 400


def test_limits_are_checked_before_any_prefix_is_parsed() -> None:
    # A body over the limit is refused for its size, however bad its prefixes.
    with pytest.raises(errors.SubnetsPerVirtualNetworkLimitReached):
        vnm.validate_virtual_network(
            _vnet(["10.0.0.0/8"], ["garbage"] * 3), Limits(subnets_per_vnet=2)
        )
