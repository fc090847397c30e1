"""Aliases and ARM resource ids (pure)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privatelink.core import errors
from privatelink.core.alias import SUFFIX, alias_region, looks_like_alias, make_alias
from privatelink.core.ids import (
    ResourceId,
    is_guid,
    key,
    parse_ref,
    valid_name,
    valid_resource_group,
)

SUB = "11111111-1111-4111-8111-111111111111"
VNET = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v1"

names = st.from_regex(r"\A[A-Za-z0-9_]([A-Za-z0-9_.\-]{0,20}[A-Za-z0-9_])?\Z")
regions = st.from_regex(r"\A[a-z][a-z0-9]{0,15}\Z")
guids = st.uuids().map(str)


# --- alias ------------------------------------------------------------------------------------


def test_make_alias_shape() -> None:
    guid = "ABCDEF01-2345-4678-9ABC-DEF012345678"
    alias = make_alias("pls1", guid, "EastUS")
    assert alias == "pls1.abcdef01-2345-4678-9abc-def012345678.eastus.azure.privatelinkservice"
    assert SUFFIX == "azure.privatelinkservice"


@settings(max_examples=200, deadline=None)
@given(names, guids, regions)
def test_alias_round_trip(name: str, guid: str, region: str) -> None:
    alias = make_alias(name, guid, region)
    assert looks_like_alias(alias)
    assert looks_like_alias(alias.upper())
    assert looks_like_alias(f"  {alias} ")
    assert alias_region(alias) == region
    assert alias == f"{name}.{guid.lower()}.{region}.azure.privatelinkservice"
    m = re.fullmatch(r"(.+)\.([0-9a-f-]{36})\.([a-z0-9]+)\.azure\.privatelinkservice", alias)
    assert m is not None
    assert m.groups() == (name, guid.lower(), region)


@given(guids, guids)
def test_aliases_differ_by_guid(a: str, b: str) -> None:
    if a != b:
        assert make_alias("svc", a, "eastus") != make_alias("svc", b, "eastus")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "pls1",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/privateLinkServices/p",
        "pls1.eastus.azure.privatelinkservice",
        "pls1.not-a-guid.eastus.azure.privatelinkservice",
        "pls1.11111111-1111-4111-8111-111111111111.eastus.azure.privatelink",
        "pls1.11111111-1111-4111-8111-111111111111.east us.azure.privatelinkservice",
        ".11111111-1111-4111-8111-111111111111.eastus.azure.privatelinkservice",
        "pls 1.11111111-1111-4111-8111-111111111111.eastus.azure.privatelinkservice",
        "pls1.11111111-1111-4111-8111-11111111111.eastus.azure.privatelinkservice",
    ],
)
def test_not_an_alias(value: str) -> None:
    assert not looks_like_alias(value)
    assert alias_region(value) is None


# --- ids --------------------------------------------------------------------------------------

child_types = st.from_regex(r"\A[A-Za-z][A-Za-z0-9]{0,20}\Z")


@st.composite
def resource_ids(draw: st.DrawFn) -> ResourceId:
    depth = draw(st.integers(min_value=1, max_value=3))
    return ResourceId(
        draw(guids),
        draw(st.from_regex(r"\A[-\w._()]{0,20}[-\w_()]\Z", alphabet=st.characters(codec="ascii"))),
        tuple(draw(child_types) for _ in range(depth)),
        tuple(draw(names) for _ in range(depth)),
    )


@settings(max_examples=200, deadline=None)
@given(resource_ids())
def test_resource_id_round_trip(rid: ResourceId) -> None:
    text = str(rid)
    assert ResourceId.parse(text) == rid
    assert str(ResourceId.parse(text)) == text
    assert rid.key == text.lower()
    assert key(text.upper()) == rid.key
    assert rid.name == rid.names[-1]
    assert rid.type == "Microsoft.Network/" + "/".join(rid.types)
    assert rid.is_type(*[t.upper() for t in rid.types])
    if len(rid.types) > 1:
        assert rid.parent().child(rid.types[-1], rid.names[-1]) == rid


def test_key_is_case_insensitive_and_ignores_trailing_slash() -> None:
    assert key(VNET + "/") == key(VNET.upper()) == VNET.lower()


def test_parse_subnet_id() -> None:
    rid = ResourceId.parse(VNET + "/subnets/s1")
    assert rid.subscription == SUB
    assert rid.resource_group == "rg"
    assert rid.types == ("virtualNetworks", "subnets")
    assert rid.names == ("v1", "s1")
    assert str(rid.parent()) == VNET
    assert rid.is_type("VIRTUALNETWORKS", "Subnets")
    assert not rid.is_type("virtualNetworks")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v1",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/s",
        f"/subscriptions/{SUB}/resourceGroup/rg/providers/Microsoft.Network/virtualNetworks/v1",
        "/subscriptions//resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v1",
        f"/subscriptions/{SUB}/resourceGroups//providers/Microsoft.Network/virtualNetworks/v1",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks//x/y",
    ],
)
def test_parse_refuses_malformed_ids(value: str) -> None:
    with pytest.raises(errors.ArmError) as exc:
        ResourceId.parse(value)
    assert type(exc.value) is errors.InvalidResourceId
    assert exc.value.code == "LinkedInvalidPropertyId"
    assert exc.value.status == 400


def test_parse_ref_checks_the_type_chain() -> None:
    assert parse_ref(VNET + "/subnets/s1", "virtualNetworks", "subnets").name == "s1"
    with pytest.raises(errors.InvalidResourceId) as exc:
        parse_ref(VNET, "virtualNetworks", "subnets")
    assert exc.value.code == "LinkedInvalidPropertyId"
    assert "virtualNetworks/subnets" in exc.value.message


def test_parent_of_top_level_is_refused() -> None:
    with pytest.raises(errors.InvalidResourceId):
        ResourceId.parse(VNET).parent()


def test_build() -> None:
    rid = ResourceId.build(SUB, "rg", "virtualNetworks", "v1", "subnets", "s1")
    assert str(rid) == VNET + "/subnets/s1"


@given(guids)
def test_is_guid_accepts_guids(value: str) -> None:
    assert is_guid(value)
    assert is_guid(value.upper())


@pytest.mark.parametrize(
    "value", ["", "*", "1111", "11111111-1111-4111-8111-11111111111g", f"{SUB}0", f"{{{SUB}}}"]
)
def test_is_guid_refuses(value: str) -> None:
    assert not is_guid(value)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("pls-1.x_y", True),
        ("_a", True),
        ("a" * 80, True),
        ("a" * 81, False),
        ("", False),
        ("-a", False),
        ("a-", False),
        ("a.", False),
        ("a/b", False),
        ("a b", False),
    ],
)
def test_valid_name(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [("rg", True), ("my-rg_(1)", True), ("a" * 90, True), ("a" * 91, False), ("rg.", False)],
)
def test_valid_resource_group(name: str, ok: bool) -> None:
    assert valid_resource_group(name) is ok
