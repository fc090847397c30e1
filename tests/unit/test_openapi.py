"""The served OpenAPI document describes what the server really accepts (api/openapi.py).

The patterns it serves are checked against the validators the server runs: whatever a
generator draws from a pattern, the server takes; what the server refuses, the pattern
refuses. The document itself: api-version on every ARM operation, a schema for every
request body, no 422 (the server never sends one), ARM errors for 4xx.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privatelink.api import arm, openapi
from privatelink.core import ids
from privatelink.core import private_dns as core_dns
from privatelink.core.resource import normalize_location
from privatelink.server import build

ARM_PREFIXES = ("/subscriptions", "/providers/", "/tenants", "/{scope}/")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data: Path = tmp_path_factory.mktemp("openapi") / "data"
    document: dict[str, Any] = build(data, "127.0.0.1", 8443).app.openapi()
    return document


def _arm_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if path.startswith(ARM_PREFIXES)
    ]


# --- api-version --------------------------------------------------------------------------


def test_api_version_pattern_is_exactly_what_the_server_accepts() -> None:
    pattern = re.compile(
        openapi.api_version_pattern(arm.OLDEST_API_VERSION, arm.LATEST_API_VERSION)
    )
    day = date(2013, 1, 1)
    while day < date(2028, 1, 1):
        for value in (day.isoformat(), day.isoformat() + "-preview"):
            assert bool(pattern.fullmatch(value)) == arm.valid_api_version(value), value
        day += timedelta(days=1)
    for value in ("2020-13-45", "2021-02-29", "2020-1-01", "2020-01-01-beta", "2020-01-01\n", ""):
        assert not pattern.fullmatch(value), value
        assert not arm.valid_api_version(value), value


def test_every_arm_operation_requires_an_api_version(spec: dict[str, Any]) -> None:
    operations = _arm_operations(spec)
    assert len(operations) > 80
    for path, method, op in operations:
        refs = [p.get("$ref") for p in op["parameters"]]
        wanted = "ActivityLogApiVersion" if "/Microsoft.Insights/" in path else "ApiVersion"
        assert f"#/components/parameters/{wanted}" in refs, f"{method} {path}"
    version = spec["components"]["parameters"]["ApiVersion"]
    assert version["required"] is True and version["in"] == "query"


# --- bodies and responses -----------------------------------------------------------------


def test_every_request_body_is_described(spec: dict[str, Any]) -> None:
    assert openapi.undescribed(spec) == []
    described = {
        (method, path) for path, method, op in _arm_operations(spec) if "requestBody" in op
    }
    # No stale table entry: each names an operation the app serves.
    for key in [*openapi.BODIES, *openapi.DEPLOYMENT_BODIES]:
        assert key in described, key
    # The resource kinds' PUTs come from the kinds themselves.
    vnet = "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network"
    put = spec["paths"][vnet + "/virtualNetworks/{name}"]["put"]
    body = put["requestBody"]["content"]["application/json"]["schema"]
    assert body["allOf"][0] == {"$ref": "#/components/schemas/VirtualNetworkWire"}
    assert body["allOf"][1]["required"] == ["location"]  # a PUT needs the region
    patch = spec["paths"][vnet + "/privateDnsZones/{zone}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ZoneWire"
    }


def test_body_fields_carry_the_rules_the_core_enforces(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    location = schemas["VirtualNetworkWire"]["properties"]["location"]["anyOf"][0]
    assert location["pattern"] == openapi.LOCATION
    prefixes = schemas["AddressSpace"]["properties"]["addressPrefixes"]["anyOf"][0]
    assert prefixes["items"]["pattern"] == openapi.IPV4_PREFIX
    status = schemas["ConnectionState"]["properties"]["status"]
    assert status["enum"] == ["Pending", "Approved", "Rejected", "Disconnected"]
    # Required fields lose their null branch; refused ones are described as null.
    assert schemas["ConnectionState"]["required"] == ["status"]
    assert schemas["SubResource"]["properties"]["id"]["pattern"] == openapi.NETWORK_ID
    ddos = schemas["VirtualNetworkProperties"]["properties"]["enableDdosProtection"]
    assert ddos["type"] == "null"
    subnets = schemas["PeeringProperties"]["properties"]["localSubnetNames"]
    assert subnets["type"] == "null"
    # Inherited fields get the rule in every subclass's schema.
    nat = schemas["NatIpConfigurationProperties"]["properties"]["privateIPAllocationMethod"]
    assert nat["anyOf"][0] == {"enum": ["Dynamic", "Static"]}


def test_responses_are_arm_errors_and_never_422(spec: dict[str, Any]) -> None:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], f"{method} {path}"
    for _path, method, op in _arm_operations(spec):
        error = op["responses"]["4XX"]
        if method != "head":
            assert error["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }
    assert "HTTPValidationError" not in spec["components"]["schemas"]


# --- patterns agree with the validators ---------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.from_regex(openapi.NAME, fullmatch=True))
def test_name_pattern_draws_valid_names(name: str) -> None:
    assert ids.valid_name(name)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(openapi.RESOURCE_GROUP, fullmatch=True).filter(lambda s: len(s) <= 90))
def test_resource_group_pattern_draws_valid_groups(group: str) -> None:
    assert ids.valid_resource_group(group)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(openapi.GUID, fullmatch=True))
def test_guid_pattern_draws_guids(value: str) -> None:
    assert ids.is_guid(value)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(openapi.LOCATION, fullmatch=True))
def test_location_pattern_draws_regions(value: str) -> None:
    assert normalize_location(value) == value


@settings(max_examples=100, deadline=None)
@given(st.from_regex(openapi.ZONE, fullmatch=True).filter(lambda s: len(s) <= 253))
def test_zone_pattern_draws_zone_names(zone: str) -> None:
    if zone.rsplit(".", 1)[-1].isdigit():
        return  # an all-digit last label: the one rule the pattern leaves to the server
    assert core_dns.normalize_zone_name(zone) == zone


@settings(max_examples=100, deadline=None)
@given(st.from_regex(openapi.RECORD_NAME, fullmatch=True).filter(lambda s: len(s) <= 200))
def test_record_name_pattern_draws_record_names(name: str) -> None:
    assert core_dns.normalize_record_name(name, "fuzz.example") == name


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        (openapi.NAME, "vnl\n"),
        (openapi.NAME, "trailing."),
        (openapi.NAME, "-lead"),
        (openapi.NAME, "a" * 81),
        (openapi.RESOURCE_GROUP, "rg."),
        (openapi.RESOURCE_GROUP, "a/b"),
        (openapi.GUID, "not-a-guid"),
        (openapi.GUID, "00000000-0000-0000-0000-000000000000\n"),
        (openapi.LOCATION, "East US"),
        (openapi.IPV4, "1.2.3.4.5"),
        (openapi.IPV4, "999.1.1.1"),
        (openapi.IPV4_PREFIX, "10.0.0.0/99"),
        (openapi.IPV4_PREFIX, "fd00::/8"),
    ],
)
def test_patterns_refuse_what_the_server_refuses(pattern: str, value: str) -> None:
    assert not re.fullmatch(pattern, value)
