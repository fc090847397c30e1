"""IPv4 prefixes, reserved addresses, dynamic allocation and static checks (pure)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from privatelink.core import addressing, errors

SUBNET_ID = (
    "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s"
)
OWNER = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/me"
OTHER = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/them"


def _assert_error(
    exc: pytest.ExceptionInfo[errors.ArmError], cls: type, code: str, status: int = 400
) -> None:
    assert type(exc.value) is cls
    assert exc.value.code == code
    assert exc.value.status == status


# --- prefixes and addresses -----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["10.0.0.0/16", "192.168.1.0/24", "10.0.0.8/29", "0.0.0.0/0"])
def test_parse_prefix_accepts_ipv4_cidr(prefix: str) -> None:
    assert addressing.parse_prefix(prefix, "owner") == IPv4Network(prefix)


@pytest.mark.parametrize(
    "prefix",
    ["10.0.0.1/16", "10.0.0.0/33", "10.0.0.0", "10.0.0/24", "banana", "", "10.0.0.0/-1"],
)
def test_parse_prefix_refuses_invalid_cidr(prefix: str) -> None:
    with pytest.raises(errors.ArmError) as exc:
        addressing.parse_prefix(prefix, "owner")
    _assert_error(exc, errors.InvalidAddressPrefix, "InvalidAddressPrefixFormat")


@pytest.mark.parametrize("prefix", ["fd00::/64", "2001:db8::/48"])
def test_parse_prefix_refuses_ipv6(prefix: str) -> None:
    with pytest.raises(errors.ArmError) as exc:
        addressing.parse_prefix(prefix, "owner")
    _assert_error(exc, errors.IPv6NotSupported, "IPv6NotSupported")


def test_parse_address() -> None:
    assert addressing.parse_address("10.1.2.3") == IPv4Address("10.1.2.3")
    with pytest.raises(errors.ArmError) as exc:
        addressing.parse_address("10.1.2.300")
    _assert_error(exc, errors.InvalidPrivateIPAddress, "PrivateIPAddressInvalid")
    with pytest.raises(errors.ArmError) as exc:
        addressing.parse_address("fd00::1")
    _assert_error(exc, errors.IPv6NotSupported, "IPv6NotSupported")


# --- reserved addresses ------------------------------------------------------------------------


def test_reserved_are_first_four_and_last() -> None:
    net = IPv4Network("10.0.1.0/24")
    reserved = [str(ip) for ip in net if addressing.is_reserved(ip, net)]
    assert reserved == ["10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.255"]


@pytest.mark.parametrize(("prefix", "usable"), [("10.0.0.0/29", 3), ("10.0.0.0/24", 251)])
def test_usable_count(prefix: str, usable: int) -> None:
    assert addressing.usable_count(IPv4Network(prefix)) == usable


# --- dynamic allocation ------------------------------------------------------------------------


def test_allocate_gives_lowest_free_address() -> None:
    net = IPv4Network("10.0.1.0/24")
    assert addressing.allocate(net, {}, SUBNET_ID) == "10.0.1.4"
    assert addressing.allocate(net, {"10.0.1.4": OTHER}, SUBNET_ID) == "10.0.1.5"
    assert addressing.allocate(net, {"10.0.1.4": OTHER, "10.0.1.6": OTHER}, SUBNET_ID) == (
        "10.0.1.5"
    )


def test_allocate_never_hands_out_broadcast_and_reports_full() -> None:
    net = IPv4Network("10.0.0.8/29")  # usable: .12 .13 .14
    used: dict[str, str] = {}
    for expected in ("10.0.0.12", "10.0.0.13", "10.0.0.14"):
        ip = addressing.allocate(net, used, SUBNET_ID)
        assert ip == expected
        used[ip] = OTHER
    with pytest.raises(errors.ArmError) as exc:
        addressing.allocate(net, used, SUBNET_ID)
    _assert_error(exc, errors.SubnetIsFull, "SubnetIsFull")


@st.composite
def subnet_and_used(draw: st.DrawFn) -> tuple[IPv4Network, dict[str, str]]:
    prefixlen = draw(st.integers(min_value=24, max_value=29))
    base = draw(st.integers(min_value=0, max_value=2**32 - 1))
    net = IPv4Network((base >> (32 - prefixlen) << (32 - prefixlen), prefixlen))
    offsets = draw(st.sets(st.integers(0, net.num_addresses - 1)))
    used = {str(net.network_address + o): OTHER for o in offsets}
    return net, used


@settings(max_examples=200, deadline=None)
@given(subnet_and_used())
def test_allocate_property(case: tuple[IPv4Network, dict[str, str]]) -> None:
    net, used = case
    free = [ip for ip in net if not addressing.is_reserved(ip, net) and str(ip) not in used]
    if not free:
        with pytest.raises(errors.SubnetIsFull):
            addressing.allocate(net, used, SUBNET_ID)
        return
    ip = IPv4Address(addressing.allocate(net, used, SUBNET_ID))
    assert ip in net
    assert not addressing.is_reserved(ip, net)
    assert int(ip) - int(net.network_address) >= 4
    assert ip != net.broadcast_address
    assert str(ip) not in used
    assert ip == min(free)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=24, max_value=29))
def test_repeated_allocation_fills_subnet_exactly(prefixlen: int) -> None:
    net = IPv4Network(f"10.9.0.0/{prefixlen}")
    used: dict[str, str] = {}
    for _ in range(addressing.usable_count(net)):
        ip = addressing.allocate(net, used, SUBNET_ID)
        assert ip not in used
        used[ip] = OTHER
    assert len(used) == net.num_addresses - 5
    with pytest.raises(errors.SubnetIsFull):
        addressing.allocate(net, used, SUBNET_ID)


# --- static addresses --------------------------------------------------------------------------


def test_check_static_accepts_free_address() -> None:
    net = IPv4Network("10.0.1.0/24")
    assert addressing.check_static("10.0.1.10", net, {}, SUBNET_ID, OWNER) == "10.0.1.10"


def test_check_static_accepts_address_the_owner_already_holds() -> None:
    net = IPv4Network("10.0.1.0/24")
    used = {"10.0.1.10": OWNER.upper()}
    assert addressing.check_static("10.0.1.10", net, used, SUBNET_ID, OWNER) == "10.0.1.10"


@pytest.mark.parametrize(
    ("ip", "cls", "code"),
    [
        ("10.0.2.10", errors.PrivateIPAddressNotInSubnet, "PrivateIPAddressNotInSubnet"),
        ("10.0.1.0", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.0.1.3", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.0.1.255", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.0.1.20", errors.PrivateIPAddressIsAllocated, "PrivateIPAddressIsAllocated"),
        ("not-an-ip", errors.InvalidPrivateIPAddress, "PrivateIPAddressInvalid"),
        ("fd00::4", errors.IPv6NotSupported, "IPv6NotSupported"),
    ],
)
def test_check_static_refusals(ip: str, cls: type, code: str) -> None:
    net = IPv4Network("10.0.1.0/24")
    with pytest.raises(errors.ArmError) as exc:
        addressing.check_static(ip, net, {"10.0.1.20": OTHER}, SUBNET_ID, OWNER)
    _assert_error(exc, cls, code)


@settings(max_examples=300, deadline=None)
@given(subnet_and_used(), st.integers(min_value=-8, max_value=264), st.booleans())
def test_check_static_property(
    case: tuple[IPv4Network, dict[str, str]], offset: int, mine: bool
) -> None:
    net, used = case
    value = int(net.network_address) + offset
    assume(0 <= value < 2**32)
    ip = IPv4Address(value)
    if mine and str(ip) in used:
        used = {**used, str(ip): OWNER}
    try:
        result = addressing.check_static(str(ip), net, used, SUBNET_ID, OWNER)
    except errors.PrivateIPAddressNotInSubnet:
        assert ip not in net
        return
    except errors.PrivateIPAddressInReservedRange:
        assert ip in net
        assert offset < 4 or ip == net.broadcast_address
        return
    except errors.PrivateIPAddressIsAllocated:
        assert ip in net
        assert not addressing.is_reserved(ip, net)
        assert used.get(str(ip)) == OTHER
        return
    # accepted: inside, not reserved, free or already the owner's
    assert result == str(ip)
    assert ip in net
    assert not addressing.is_reserved(ip, net)
    assert used.get(str(ip)) in (None, OWNER)
