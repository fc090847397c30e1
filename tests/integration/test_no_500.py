"""Odd request bodies never produce a 5xx: every PUT endpoint answers 4xx + ARM error.

A 5xx is worse than wrong here: azure-core silently retries 500/502/503/504 (a persistent
one costs ~5 s per call) and the caller never sees why. Bounded to ~100 requests.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

API = "2026-03-01"
Q = f"?api-version={API}"


@dataclass
class Target:
    """A provider and consumer with one pending connection, and valid bodies to mutate."""

    server: Any
    provider: Any
    consumer: Any
    pls_name: str
    connection: str
    bodies: dict[str, tuple[str, dict[str, Any]]]  # endpoint -> (path prefix, valid body)

    def path(self, endpoint: str, name: str) -> str:
        prefix, _ = self.bodies[endpoint]
        if endpoint == "connection":
            return prefix + self.connection
        if endpoint == "zone":
            return prefix + name + ".example"  # a zone name needs two labels
        return prefix + name


@pytest.fixture(scope="module")
def target(server: Any, helpers: Any) -> Target:
    world = helpers.World(server)
    consumer = world.consumer()
    provider = world.provider(frontends=("fe", "fe2"), pools=("be", "be2"))
    pls_name = helpers.unique("pls")
    pls = provider.create_pls(pls_name, visibility=[consumer.sub], fqdns=["svc.example"])
    consumer.create_pe("pe", pls.alias)
    zone_id = f"{consumer.base}/privateDnsZones/fuzz.example"
    server.http.put(zone_id + Q, json={"location": "global"}).raise_for_status()
    (conn,) = provider.client.private_link_services.list_private_endpoint_connections(
        provider.rg, pls_name
    )
    p, c = provider.base, consumer.base
    vnet_body = {
        "location": "eastus",
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.50.0.0/16"]},
            "subnets": [{"name": "a", "properties": {"addressPrefix": "10.50.1.0/24"}}],
        },
    }
    lb_body = world.lb_body(provider, rules=[helpers.Rule("r", "fe", "be")])
    bodies = {
        "vnet": (f"{p}/virtualNetworks/", vnet_body),
        "subnet": (
            f"{c}/virtualNetworks/{consumer.vnet}/subnets/",
            {"properties": {"addressPrefix": "10.0.200.0/24"}},
        ),
        "lb": (f"{p}/loadBalancers/", lb_body),
        "pls": (f"{p}/privateLinkServices/", provider.pls_body(fe="fe2", visibility=["*"])),
        "pe": (f"{c}/privateEndpoints/", consumer.pe_body(pls.alias, message="hi")),
        "nic": (
            f"{c}/networkInterfaces/",
            {
                "location": "eastus",
                "properties": {
                    "ipConfigurations": [
                        {"name": "ip1", "properties": {"subnet": {"id": consumer.subnet}}}
                    ]
                },
            },
        ),
        "connection": (
            f"{provider.pls_id(pls_name)}/privateEndpointConnections/",
            {
                "name": conn.name,
                "properties": {
                    "privateLinkServiceConnectionState": {"status": "Approved", "description": "x"}
                },
            },
        ),
        "zone": (f"{c}/privateDnsZones/", {"location": "global", "tags": {"a": "b"}}),
        "link": (
            f"{zone_id}/virtualNetworkLinks/",
            {
                "location": "global",
                "properties": {
                    "virtualNetwork": {"id": f"{c}/virtualNetworks/{consumer.vnet}"},
                    "registrationEnabled": False,
                },
            },
        ),
        "record": (
            f"{zone_id}/A/",
            {"properties": {"ttl": 10, "aRecords": [{"ipv4Address": "10.0.1.9"}]}},
        ),
        "zonegroup": (
            f"{c}/privateEndpoints/pe/privateDnsZoneGroups/",
            {
                "properties": {
                    "privateDnsZoneConfigs": [
                        {"name": "z", "properties": {"privateDnsZoneId": zone_id}}
                    ]
                }
            },
        ),
    }
    return Target(server, provider, consumer, pls_name, conn.name, bodies)


def _assert_arm_4xx(resp: httpx.Response, what: str) -> None:
    assert 400 <= resp.status_code < 500, f"{what}: {resp.status_code} {resp.text[:500]}"
    try:
        body = resp.json()
    except json.JSONDecodeError:
        pytest.fail(f"{what}: {resp.status_code} without a JSON body: {resp.text[:300]}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"{what}: {body}"
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], f"{what}: {body}"
    assert isinstance(err.get("message"), str), f"{what}: {body}"


def _put(target: Target, endpoint: str, name: str, body: Any) -> httpx.Response:
    path = target.path(endpoint, name) + Q
    if isinstance(body, bytes):
        return target.server.http.put(
            path, content=body, headers={"Content-Type": "application/json"}
        )
    return target.server.http.put(path, json=body)


ENDPOINTS = [
    "vnet",
    "subnet",
    "lb",
    "pls",
    "pe",
    "nic",
    "connection",
    "zone",
    "link",
    "record",
    "zonegroup",
]

# Bodies that are wrong for every endpoint.
GENERIC = {
    "array": [],
    "string": "eastus",
    "nested-nulls": {"location": None, "properties": {"x": {"y": None}}, "tags": None},
    "wrong-types": {"location": ["eastus"], "properties": "none", "tags": [1, 2]},
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_generic_odd_bodies(target: Target, endpoint: str) -> None:
    for label, body in GENERIC.items():
        if endpoint == "record" and label == "nested-nulls":
            continue  # an empty A record set is valid (`az ... record-set a create` makes one)
        resp = _put(target, endpoint, "odd-generic", body)
        _assert_arm_4xx(resp, f"{endpoint}/{label}")


def _mutate(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


HUGE = 10**40
UNI = "名前-ünïcødé-\u202e-🙂"

# (endpoint, path into its valid body, odd value): each must be refused with a 4xx.
SPECIFIC: list[tuple[str, tuple[Any, ...], Any]] = [
    ("vnet", ("properties", "addressSpace", "addressPrefixes"), [None]),
    ("vnet", ("properties", "addressSpace", "addressPrefixes"), [HUGE]),
    ("vnet", ("properties", "addressSpace", "addressPrefixes"), ["10.0.0.0/99"]),
    ("vnet", ("properties", "addressSpace", "addressPrefixes"), ["fd00::/8"]),
    ("vnet", ("properties", "subnets", 0, "name"), UNI),
    ("vnet", ("properties", "subnets", 0, "properties", "addressPrefix"), HUGE),
    ("vnet", ("properties", "subnets"), [None]),
    ("vnet", ("location",), UNI),
    ("subnet", ("properties", "addressPrefix"), None),
    ("subnet", ("properties", "addressPrefix"), "10.0.0.0/8"),
    (
        "subnet",
        ("properties",),
        {"addressPrefix": "10.0.201.0/24", "privateEndpointNetworkPolicies": 7},
    ),
    ("lb", ("properties", "probes", 0, "properties", "port"), HUGE),
    ("lb", ("properties", "probes", 0, "properties", "intervalInSeconds"), -(HUGE)),
    ("lb", ("properties", "loadBalancingRules", 0, "properties", "frontendPort"), 70000),
    ("lb", ("properties", "loadBalancingRules", 0, "properties", "protocol"), None),
    ("lb", ("properties", "frontendIPConfigurations"), [None]),
    ("pls", ("properties", "loadBalancerFrontendIpConfigurations"), [{"id": HUGE}]),
    ("pls", ("properties", "loadBalancerFrontendIpConfigurations"), [{"id": "not/an/id"}]),
    ("pls", ("properties", "ipConfigurations", 0, "properties", "subnet"), {"id": None}),
    ("pls", ("properties", "ipConfigurations", 0, "properties", "privateIPAllocationMethod"), 7),
    ("pls", ("properties", "ipConfigurations", 0, "properties"), "static"),
    ("pls", ("properties", "ipConfigurations", 0, "name"), UNI),
    ("pls", ("properties", "visibility"), {"subscriptions": "abc"}),
    ("pls", ("properties", "visibility"), {"subscriptions": [None, UNI]}),
    ("pls", ("properties", "fqdns"), ["a" * 300]),
    ("pe", ("properties", "subnet", "id"), UNI),
    (
        "pe",
        (
            "properties",
            "manualPrivateLinkServiceConnections",
            0,
            "properties",
            "privateLinkServiceId",
        ),
        HUGE,
    ),
    ("pe", ("properties", "manualPrivateLinkServiceConnections"), [None]),
    (
        "pe",
        ("properties", "privateLinkServiceConnections"),
        [{"name": "second", "properties": {"privateLinkServiceId": "x"}}],
    ),
    ("nic", ("properties", "ipConfigurations"), [None]),
    ("nic", ("properties", "ipConfigurations", 0, "properties", "privateIPAddress"), "1.2.3.4.5"),
    ("connection", ("properties", "privateLinkServiceConnectionState", "status"), "Bogus"),
    ("connection", ("properties", "privateLinkServiceConnectionState", "status"), HUGE),
    ("connection", ("properties", "privateLinkServiceConnectionState", "status"), "Disconnected"),
    ("connection", ("properties", "privateLinkServiceConnectionState"), "Approved"),
    (
        "connection",
        ("properties", "privateLinkServiceConnectionState", "description"),
        ["x" * 5000],
    ),
    ("zone", ("location",), UNI),
    ("zone", ("tags",), {"a": HUGE}),
    ("link", ("properties", "virtualNetwork", "id"), UNI),
    ("link", ("properties", "virtualNetwork"), None),
    ("link", ("properties", "registrationEnabled"), "maybe"),
    ("link", ("properties", "resolutionPolicy"), UNI),
    ("link", ("location",), "eastus"),
    ("record", ("properties", "ttl"), HUGE),
    ("record", ("properties", "ttl"), -1),
    ("record", ("properties", "aRecords"), [None]),
    ("record", ("properties", "aRecords", 0, "ipv4Address"), HUGE),
    ("record", ("properties", "aRecords", 0, "ipv4Address"), "fd00::1"),
    ("record", ("properties", "cnameRecord"), {"cname": "x.example."}),
    ("zonegroup", ("properties", "privateDnsZoneConfigs"), [None]),
    ("zonegroup", ("properties", "privateDnsZoneConfigs", 0, "properties"), {"x": 1}),
    (
        "zonegroup",
        ("properties", "privateDnsZoneConfigs", 0, "properties", "privateDnsZoneId"),
        UNI,
    ),
    ("zonegroup", ("properties", "privateDnsZoneConfigs", 0, "name"), UNI),
]


def _static_nat(target: Target, ip: Any) -> tuple[str, tuple[Any, ...], Any]:
    nat = {
        "privateIPAllocationMethod": "Static",
        "privateIPAddress": ip,
        "subnet": {"id": target.provider.subnet_id("nat")},
    }
    return ("pls", ("properties", "ipConfigurations", 0, "properties"), nat)


def test_specific_odd_values(target: Target) -> None:
    static = [_static_nat(target, ip) for ip in ("999.1.1.1", HUGE, "fd00::5")]
    for i, (endpoint, path, value) in enumerate(SPECIFIC + static):
        _, valid = target.bodies[endpoint]
        resp = _put(target, endpoint, f"odd-{i}", _mutate(valid, path, value))
        _assert_arm_4xx(resp, f"{endpoint} {path} = {str(value)[:60]!r}")
    # None of that touched the connection.
    (conn,) = target.provider.client.private_link_services.list_private_endpoint_connections(
        target.provider.rg, target.pls_name
    )
    assert conn.private_link_service_connection_state.status == "Pending"


@pytest.mark.parametrize("endpoint", ["vnet", "pls", "pe", "zone", "link", "record", "zonegroup"])
def test_odd_resource_names(target: Target, endpoint: str) -> None:
    _, valid = target.bodies[endpoint]
    prefix, _ = target.bodies[endpoint]
    http = target.server.http
    for name in (UNI, "a" * 81, "-leading-dash", "trailing.", "x" * 2000):
        resp = http.put(prefix + httpx.URL(name).path + Q, json=valid)
        _assert_arm_4xx(resp, f"{endpoint} name {name[:30]!r}")
    overlong_rg = prefix.replace("/resourceGroups/", "/resourceGroups/" + "r" * 91)
    _assert_arm_4xx(http.put(overlong_rg + "ok" + Q, json=valid), f"{endpoint} rg name")
    bad_sub = prefix.split("/resourceGroups/")[1]
    _assert_arm_4xx(
        http.put(f"/subscriptions/not-a-guid/resourceGroups/{bad_sub}ok{Q}", json=valid),
        f"{endpoint} subscription",
    )


# --- a short property-based sweep over the same bodies --------------------------------------

ODD = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_bodies_never_5xx(target: Target, data: st.DataObject) -> None:
    endpoint = data.draw(st.sampled_from(ENDPOINTS))
    _, valid = target.bodies[endpoint]
    path = data.draw(st.sampled_from(_paths(valid)))
    value = data.draw(ODD)
    body = _mutate(valid, path, value)
    raw = json.dumps(body, allow_nan=True).encode()  # NaN/Infinity are not JSON: also 4xx
    resp = _put(target, endpoint, "fuzz-" + str(abs(hash(raw)) % 10**8), raw)
    assert resp.status_code < 500, f"{endpoint} {path}={value!r}: {resp.status_code} {resp.text}"
    if resp.status_code >= 400:
        _assert_arm_4xx(resp, f"{endpoint} {path}={value!r}")


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres])]
)
def test_nul_characters_are_not_a_500(
    request: pytest.FixtureRequest, helpers: Any, store: str
) -> None:
    server = request.getfixturevalue("server" if store == "sqlite" else "pg_server")
    world = helpers.World(server)
    consumer = world.consumer()
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=["*"])
    http = server.http
    loc = f"/subscriptions/{consumer.sub}/providers/Microsoft.Network/locations/eastus"

    pe = http.put(
        f"{consumer.base}/privateEndpoints/pe-nul{Q}", json=consumer.pe_body(pls.alias + "\x00")
    )
    _assert_arm_4xx(pe, "PE with a NUL in the alias")
    assert pe.json()["error"]["code"] == "PrivateLinkServiceNotFound"
    vis = http.post(
        f"{loc}/checkPrivateLinkServiceVisibility{Q}",
        json={"privateLinkServiceAlias": "a\x00b"},
    )
    assert vis.status_code < 500, vis.text
    if vis.status_code == 200:
        assert vis.json()["visible"] is False
    op = http.get(f"{loc}/operations/a%00b{Q}")
    _assert_arm_4xx(op, "operation id with a NUL")
    # Where the store takes them (tags, messages), NUL characters round-trip.
    ok = http.put(
        f"{consumer.base}/privateEndpoints/pe-msg{Q}",
        json=consumer.pe_body(pls.alias, message="a\x00b"),
    )
    assert ok.status_code == 201, ok.text
