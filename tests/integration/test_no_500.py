"""Odd requests never produce a 5xx: every PUT endpoint answers 4xx + ARM error.

A 5xx is worse than wrong here: azure-core silently retries 500/502/503/504 (a persistent
one costs ~5 s per call) and the caller never sees why. The hand-made and hypothesis
sweeps are bounded to ~100 requests; the schemathesis run over the served OpenAPI
document (every ARM operation, positive and negative cases, against a real topology) to
~2,600 requests, about a minute and a half here.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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
    reach = _reach(server, p)
    remote = f"{p}/virtualNetworks/peer-remote"
    remote_body = {
        "location": "eastus",
        "properties": {"addressSpace": {"addressPrefixes": ["10.60.0.0/16"]}},
    }
    server.http.put(remote + Q, json=remote_body).raise_for_status()
    bodies = {
        "vnet": (f"{p}/virtualNetworks/", vnet_body),
        "subnet": (
            f"{c}/virtualNetworks/{consumer.vnet}/subnets/",
            {"properties": {"addressPrefix": "10.0.200.0/24"}},
        ),
        "peering": (
            f"{c}/virtualNetworks/{consumer.vnet}/virtualNetworkPeerings/",
            {"properties": {"remoteVirtualNetwork": {"id": remote}}},
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
        **reach,
    }
    return Target(server, provider, consumer, pls_name, conn.name, bodies)


def _reach(server: Any, base: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Issue 13's kinds: a hub VNet with a GatewaySubnet, a public IP, a VPN gateway and a
    site in `base`; valid bodies of a public IP, a gateway, a site and a connection."""
    http = server.http
    hub = f"{base}/virtualNetworks/hub"
    writes = [
        (
            hub,
            {
                "location": "eastus",
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.70.0.0/16"]},
                    "subnets": [
                        {"name": "GatewaySubnet", "properties": {"addressPrefix": "10.70.255.0/27"}}
                    ],
                },
            },
        ),
        (f"{base}/publicIPAddresses/gwpip", {"location": "eastus", "sku": {"name": "Standard"}}),
    ]
    gateway = {
        "location": "eastus",
        "properties": {
            "gatewayType": "Vpn",
            "vpnType": "RouteBased",
            "sku": {"name": "VpnGw1", "tier": "VpnGw1"},
            "ipConfigurations": [
                {
                    "name": "default",
                    "properties": {
                        "subnet": {"id": f"{hub}/subnets/GatewaySubnet"},
                        "publicIPAddress": {"id": f"{base}/publicIPAddresses/gwpip"},
                    },
                }
            ],
        },
    }
    site = {
        "location": "eastus",
        "properties": {
            "gatewayIpAddress": "203.0.113.5",
            "localNetworkAddressSpace": {"addressPrefixes": ["192.168.0.0/16"]},
        },
    }
    writes += [
        (f"{base}/virtualNetworkGateways/gw", gateway),
        (f"{base}/localNetworkGateways/site", site),
    ]
    for path, body in writes:
        reply = http.put(path + Q, json=body)
        assert reply.status_code in (200, 201), reply.text
    connection = {
        "location": "eastus",
        "properties": {
            "connectionType": "IPsec",
            "virtualNetworkGateway1": {"id": f"{base}/virtualNetworkGateways/gw"},
            "localNetworkGateway2": {"id": f"{base}/localNetworkGateways/site"},
            "sharedKey": "Abc123",
        },
    }
    return {
        "pip": (
            f"{base}/publicIPAddresses/",
            {
                "location": "eastus",
                "sku": {"name": "Standard", "tier": "Regional"},
                "properties": {"publicIPAllocationMethod": "Static", "idleTimeoutInMinutes": 4},
            },
        ),
        "vng": (f"{base}/virtualNetworkGateways/", gateway),
        "lng": (f"{base}/localNetworkGateways/", site),
        "vpnconn": (f"{base}/connections/", connection),
    }


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
    "pip",
    "vng",
    "lng",
    "vpnconn",
    "peering",
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


def _pe_ip(ip: Any, name: str = "ipc", **extra: Any) -> dict[str, Any]:
    """An entry of a private endpoint's ipConfigurations (consumer subnet 10.0.1.0/24)."""
    return {"name": name, "properties": {"privateIPAddress": ip, **extra}}


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
    ("pe", ("properties", "ipConfigurations"), [None]),
    ("pe", ("properties", "ipConfigurations"), "10.0.1.9"),
    ("pe", ("properties", "ipConfigurations"), [{"properties": {"privateIPAddress": "10.0.1.9"}}]),
    ("pe", ("properties", "ipConfigurations"), [{"name": "ipc", "properties": {}}]),
    ("pe", ("properties", "ipConfigurations"), [_pe_ip("1.2.3.4.5")]),
    ("pe", ("properties", "ipConfigurations"), [_pe_ip("fd00::9")]),
    ("pe", ("properties", "ipConfigurations"), [_pe_ip(HUGE)]),
    ("pe", ("properties", "ipConfigurations"), [_pe_ip("10.0.1.9", groupId="g")]),
    ("pe", ("properties", "ipConfigurations"), [_pe_ip("10.0.1.9", memberName=UNI)]),
    ("pe", ("properties", "ipConfigurations"), [_pe_ip("10.0.1.9"), _pe_ip("10.0.1.10", "b")]),
    ("pe", ("properties", "ipConfigurations"), [_pe_ip("10.0.1.9", UNI)]),
    ("pe", ("properties", "applicationSecurityGroups"), [None]),
    ("pe", ("properties", "applicationSecurityGroups"), [{"id": None}]),
    ("pe", ("properties", "applicationSecurityGroups"), [{"id": UNI}]),
    ("pe", ("properties", "applicationSecurityGroups"), [{"id": HUGE}]),
    ("pe", ("properties", "customNetworkInterfaceName"), UNI),
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
    ("pip", ("sku", "name"), UNI),
    ("pip", ("properties", "idleTimeoutInMinutes"), HUGE),
    ("pip", ("zones",), [HUGE]),
    ("pip", ("properties", "ipAddress"), HUGE),
    ("vng", ("properties", "ipConfigurations"), [None]),
    ("vng", ("properties", "ipConfigurations", 0, "properties", "subnet", "id"), UNI),
    ("vng", ("properties", "sku"), "VpnGw1"),
    ("vng", ("properties", "bgpSettings"), {"asn": HUGE}),
    ("lng", ("properties", "gatewayIpAddress"), HUGE),
    ("lng", ("properties", "gatewayIpAddress"), "fd00::1"),
    ("lng", ("properties", "localNetworkAddressSpace", "addressPrefixes"), [None]),
    ("vpnconn", ("properties", "sharedKey"), "\u00e9" * 3),
    ("vpnconn", ("properties", "dpdTimeoutSeconds"), HUGE),
    ("vpnconn", ("properties", "routingWeight"), -1),
    ("vpnconn", ("properties", "virtualNetworkGateway1"), {"id": UNI}),
    ("vpnconn", ("properties", "connectionType"), None),
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


@pytest.mark.parametrize(
    "endpoint",
    ["vnet", "pls", "pe", "zone", "link", "record", "zonegroup", "pip", "lng", "vpnconn"],
)
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


@pytest.mark.parametrize("digit", ["\u00b2", "\u0663", "1\u00b9"])
def test_non_ascii_digits_in_paging_are_a_400(target: Target, digit: str) -> None:
    """Found by schemathesis: `str.isdigit()` is true for '²' and Arabic-Indic digits, but
    `int()` refuses some of them, so a `$skipToken` or `$top` of them was a 500."""
    c = target.consumer
    zone = f"{c.base}/privateDnsZones/fuzz.example"
    log = f"/subscriptions/{c.sub}/providers/Microsoft.Insights/eventtypes/management/values"
    since = "eventTimestamp ge '2026-01-01T00:00:00Z'"
    requests_ = [
        (f"{zone}/ALL", {"api-version": API, "$skipToken": digit}),  # an in-memory page
        (f"{c.base}/virtualNetworks", {"api-version": API, "$skipToken": digit}),  # the store
        (f"{c.base}/privateDnsZones", {"api-version": API, "$top": digit}),
        (log, {"api-version": "2015-04-01", "$filter": since, "$skipToken": digit * 30}),
    ]
    for path, params in requests_:
        _assert_arm_4xx(target.server.http.get(path, params=params), f"{path} {params}")


TEMPLATE_SHAPES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"outputs": {"o": False}}, {}),  # found by schemathesis: a 500 after deploying
    ({"outputs": [1]}, {}),
    ({"outputs": "x"}, {}),
    ({"variables": 5}, {}),
    ({"resources": 5}, {}),
    ({"parameters": {"p": [1]}}, {"p": {"value": 1}}),
    ({"parameters": "p"}, {}),
]


@pytest.mark.parametrize(("sections", "parameters"), TEMPLATE_SHAPES)
def test_template_sections_of_the_wrong_type_are_a_400_before_deploying(
    target: Target, sections: dict[str, Any], parameters: dict[str, Any]
) -> None:
    c = target.consumer
    zone = f"shape-{abs(hash(json.dumps(sections))) % 10**8}.example"
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            {
                "type": "Microsoft.Network/privateDnsZones",
                "apiVersion": "2020-06-01",
                "name": zone,
                "location": "global",
            }
        ],
        **sections,
    }
    body = {"properties": {"mode": "Incremental", "template": template, "parameters": parameters}}
    group = f"/subscriptions/{c.sub}/resourceGroups/{c.rg}"
    http = target.server.http
    reply = http.put(f"{group}/providers/Microsoft.Resources/deployments/shape{Q}", json=body)
    _assert_arm_4xx(reply, f"template {sections}")
    assert reply.json()["error"]["code"] == "InvalidTemplate", reply.text
    assert http.get(f"{c.base}/privateDnsZones/{zone}{Q}").status_code == 404


# Where each model of `openapi.UNSUPPORTED` sits in one of `target.bodies`.
UNSUPPORTED_AT: dict[str, tuple[str, tuple[Any, ...]]] = {
    "VirtualNetworkWire": ("vnet", ()),
    "VirtualNetworkProperties": ("vnet", ("properties",)),
    "DhcpOptions": ("vnet", ("properties", "dhcpOptions")),
    "SubnetProperties": ("subnet", ("properties",)),
    "LoadBalancerProperties": ("lb", ("properties",)),
    "FrontendProperties": ("lb", ("properties", "frontendIPConfigurations", 0, "properties")),
    "NetworkInterfaceProperties": ("nic", ("properties",)),
    "IpConfigurationProperties": ("nic", ("properties", "ipConfigurations", 0, "properties")),
    "PrivateEndpointWire": ("pe", ()),
    "PrivateLinkServiceWire": ("pls", ()),
    "PrivateLinkServiceProperties": ("pls", ("properties",)),
    "RecordSetProperties": ("record", ("properties",)),
    "PublicIPAddressWire": ("pip", ()),
    "PublicIPAddressProperties": ("pip", ("properties",)),
    "VirtualNetworkGatewayWire": ("vng", ()),
    "VirtualNetworkGatewayProperties": ("vng", ("properties",)),
    "LocalNetworkGatewayProperties": ("lng", ("properties",)),
    "VirtualNetworkGatewayConnectionProperties": ("vpnconn", ("properties",)),
    "PeeringProperties": ("peering", ("properties",)),
}
# Aliases the document calls unsupported whose wire type is a string.
_UNSUPPORTED_STRINGS = {
    "deleteOption": "Delete",
    "fqdn": "vpn.example.com",
    "authorizationKey": "key",
    "vNetExtendedLocationResourceId": "/x",
}


def _unsupported_value(alias: str) -> Any:
    if alias in _UNSUPPORTED_STRINGS:
        return _UNSUPPORTED_STRINGS[alias]
    if alias.startswith("enable"):
        return True
    if alias in ("dnsServers",):
        return ["10.0.0.53"]
    if alias.endswith("s") and alias != "publicIPAddress":
        return [{"id": "/x"}]
    return {"id": "/x", "name": "x"}


def test_fields_the_document_calls_unsupported_are_refused(target: Target) -> None:
    """`openapi.UNSUPPORTED` (described as null) matches what the server refuses."""
    from privatelink.api import openapi

    checked = 0
    for model, aliases in openapi.UNSUPPORTED.items():
        if model.__name__ not in UNSUPPORTED_AT:
            # Role assignments and definitions: tests/unit/test_authorization_api.py.
            assert model.__module__.endswith("authorization"), model
            continue
        endpoint, at = UNSUPPORTED_AT[model.__name__]
        _, valid = target.bodies[endpoint]
        for alias in aliases:
            body = copy.deepcopy(valid)
            node = body
            for step in at:
                node = node.setdefault(step, {}) if isinstance(node, dict) else node[step]
            node[alias] = _unsupported_value(alias)
            resp = _put(target, endpoint, f"unsupported-{checked}", body)
            _assert_arm_4xx(resp, f"{model.__name__}.{alias}")
            assert resp.json()["error"]["code"] == "UnsupportedProperty", resp.text
            checked += 1
    assert checked > 25


# --- schemathesis over the served OpenAPI document ------------------------------------------
#
# Every ARM operation of /openapi.json, positive and negative cases, against the real server.
# The document describes bodies, api-version and id patterns (api/openapi.py); here its path
# parameters and references are also offered the names and ids of a real topology, so that
# generated requests pass the gate and reach validation, workflows and the store.

FUZZ_POSITIVE = 16  # examples per operation (schema-valid)
FUZZ_NEGATIVE = 8  # examples per operation (schema-violating)


@dataclass
class FuzzWorld:
    """A topology whose names and ids the generated requests use."""

    sub: str
    groups: list[str]
    names: list[str]  # resource and child names that exist
    ids: list[str]  # ids of resources and children that exist
    zone: str
    zone_id: str
    record: str
    pls_id: str
    alias: str
    connection: str
    paths: list[str]  # ids of everything that exists (resources and children)
    bodies: dict[str, dict[str, Any]]  # PUT path template ending -> a valid body


@pytest.fixture(scope="module")
def fuzz_world(server: Any, helpers: Any) -> FuzzWorld:
    world = helpers.World(server)
    provider = world.provider()
    consumer = world.consumer(provider.sub)
    pls = provider.create_pls("pls-fuzz", visibility=["*"])
    consumer.create_pe("pe-fuzz", pls.alias)
    http = server.http
    zone_id = f"{consumer.base}/privateDnsZones/fuzz.example"
    vnet_id = f"{consumer.base}/virtualNetworks/{consumer.vnet}"
    writes = [
        (zone_id, {"location": "global"}),
        (
            f"{zone_id}/virtualNetworkLinks/link-fuzz",
            {"location": "global", "properties": {"virtualNetwork": {"id": vnet_id}}},
        ),
        (
            f"{zone_id}/A/www",
            {"properties": {"ttl": 10, "aRecords": [{"ipv4Address": "10.0.1.9"}]}},
        ),
        (
            f"{consumer.base}/privateEndpoints/pe-fuzz/privateDnsZoneGroups/zg-fuzz",
            {
                "properties": {
                    "privateDnsZoneConfigs": [
                        {"name": "z", "properties": {"privateDnsZoneId": zone_id}}
                    ]
                }
            },
        ),
    ]
    for path, body in writes:
        reply = http.put(path + Q, json=body)
        assert reply.status_code in (200, 201), reply.text
    (conn,) = provider.client.private_link_services.list_private_endpoint_connections(
        provider.rg, "pls-fuzz"
    )
    lb = f"{provider.base}/loadBalancers/{provider.lb}"
    ids = [
        provider.subnet_id("frontend"),
        provider.subnet_id("nat"),
        consumer.subnet,
        vnet_id,
        lb,
        provider.fe_id("fe"),
        provider.pool_id("be"),
        f"{lb}/probes/tcp-8080",
        provider.pls_id("pls-fuzz"),
        f"{consumer.base}/privateEndpoints/pe-fuzz",
        zone_id,
    ]
    # Everything that exists, down to children: the paths whose parameters are real together.
    paths = [
        *ids,
        f"{lb}/loadBalancingRules/rule-fe",
        f"{provider.pls_id('pls-fuzz')}/privateEndpointConnections/{conn.name}",
        *(path for path, _ in writes),
    ]
    names = [  # the two networks first (`vnet` parameters)
        provider.vnet,
        consumer.vnet,
        provider.lb,
        "frontend",
        "nat",
        "pe",
        "fe",
        "be",
        "tcp-8080",
        "rule-fe",
        "pls-fuzz",
        "pe-fuzz",
        conn.name,
        "link-fuzz",
        "zg-fuzz",
    ]
    bodies = {
        "/virtualNetworks/{name}": {
            "location": "eastus",
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.60.0.0/16"]},
                "subnets": [{"name": "a", "properties": {"addressPrefix": "10.60.1.0/24"}}],
            },
        },
        "/subnets/{name}": {"properties": {"addressPrefix": "10.0.200.0/24"}},
        "/loadBalancers/{name}": world.lb_body(provider, rules=[helpers.Rule("r", "fe", "be")]),
        "/networkInterfaces/{name}": {
            "location": "eastus",
            "properties": {
                "ipConfigurations": [
                    {"name": "ip1", "properties": {"subnet": {"id": consumer.subnet}}}
                ]
            },
        },
        "/privateLinkServices/{name}": provider.pls_body(visibility=["*"]),
        "/privateEndpoints/{name}": consumer.pe_body(pls.alias, message="fuzz"),
        "/privateEndpointConnections/{connection}": {
            "properties": {
                "privateLinkServiceConnectionState": {"status": "Approved", "description": "ok"}
            }
        },
        "/privateDnsZones/{zone}": {"location": "global", "tags": {"a": "b"}},
        "/virtualNetworkLinks/{name}": {
            "location": "global",
            "properties": {"virtualNetwork": {"id": vnet_id}, "registrationEnabled": False},
        },
        "/{record_type}/{name}": {
            "properties": {"ttl": 10, "aRecords": [{"ipv4Address": "10.0.1.9"}]}
        },
        "/privateDnsZoneGroups/{name}": writes[3][1],
        "/publicIPAddresses/{name}": {"location": "eastus", "sku": {"name": "Standard"}},
        "/localNetworkGateways/{name}": {
            "location": "eastus",
            "properties": {
                "gatewayIpAddress": "203.0.113.9",
                "localNetworkAddressSpace": {"addressPrefixes": ["192.168.9.0/24"]},
            },
        },
        "/resourceGroups/{group}": {"location": "eastus"},
    }
    return FuzzWorld(
        provider.sub,
        [provider.rg, consumer.rg],
        names,
        ids,
        "fuzz.example",
        zone_id,
        "www",
        provider.pls_id("pls-fuzz"),
        pls.alias,
        conn.name,
        paths,
        bodies,
    )


# Path parameters and body fields offered the topology's real names and ids.
REAL_PARAMS = ("group", "name", "vnet", "endpoint", "connection", "child", "zone", "location")


def _bind(spec: dict[str, Any], w: FuzzWorld, *, real: bool) -> dict[str, Any]:
    """A copy of the document aimed at `w`: its subscription always (a generated GUID would
    be an unknown subscription, and an admin's PUT there would create it); with `real`,
    only the topology's names and ids where the document has patterns.

    Two copies rather than `anyOf` of both: generators drop an enum that a pattern beside
    it already covers, so the real names would never be drawn.
    """
    out = copy.deepcopy(spec)
    _expand_scopes(out)
    values: dict[str, list[str]] = {
        "group": w.groups,
        "name": [*w.names, w.record],
        "vnet": w.names[:2],
        "endpoint": ["pe-fuzz"],
        "connection": [w.connection],
        "child": ["fe", "be", "tcp-8080", "rule-fe"],
        "zone": [w.zone],
        "location": ["eastus"],
    }
    for operations in out["paths"].values():
        for op in operations.values():
            for param in op.get("parameters", []):
                if param.get("in") != "path":
                    continue
                if param["name"] == "subscription":
                    param["schema"] = {"enum": [w.sub]}
                elif real and param["name"] in REAL_PARAMS and "pattern" in param["schema"]:
                    param["schema"] = {"enum": values[param["name"]]}
    if real:
        schemas = _bodies_apart(out)
        fields = [
            ("SubResource", "id", w.ids),
            ("LinkConnectionProperties", "privateLinkServiceId", [w.pls_id, w.alias]),
            ("VisibilityRequest", "privateLinkServiceAlias", [w.alias]),
            ("ZoneConfigProperties", "privateDnsZoneId", [w.zone_id]),
            ("SubscriptionList", "subscriptions", [w.sub, "*"]),
        ]
        for component, field, choices in fields:
            props = schemas[component]["properties"]
            branches = props[field].get("anyOf", [props[field]])
            for i, branch in enumerate(branches):
                if branch.get("type") == "array":
                    branch["items"] = {"enum": choices}
                elif branch.get("type") != "null":
                    branches[i] = {"enum": choices}
            props[field] = {"anyOf": branches} if len(branches) > 1 else branches[0]
    return out


BOUND = "Bound"


def _bodies_apart(spec: dict[str, Any]) -> dict[str, Any]:
    """Request bodies on copies of the component schemas (`Bound...`), so that narrowing
    them to real ids leaves the response schemas as served; returns the copies by name."""
    schemas = spec["components"]["schemas"]
    prefix = "#/components/schemas/"
    text = json.dumps(schemas).replace(f'"{prefix}', f'"{prefix}{BOUND}')
    copies = {BOUND + name: schema for name, schema in json.loads(text).items()}
    schemas.update(copies)
    for operations in spec["paths"].values():
        for op in operations.values():
            media = op.get("requestBody", {}).get("content", {}).get("application/json")
            if media is not None:  # a $ref, or allOf [$ref, what a PUT requires]
                body = json.dumps(media["schema"]).replace(f'"{prefix}', f'"{prefix}{BOUND}')
                media["schema"] = json.loads(body)
    return {name.removeprefix(BOUND): schema for name, schema in copies.items()}


def _expand_scopes(spec: dict[str, Any]) -> None:
    """`/{scope}/providers/...` as the subscription and resource group paths it stands for
    (a scope holds slashes, which a generated path parameter never does)."""
    group = next(
        p
        for ops in spec["paths"].values()
        for op in ops.values()
        for p in op.get("parameters", [])
        if p.get("name") == "group"
    )
    subscription = {"name": "subscription", "in": "path", "required": True, "schema": {}}
    for path in [p for p in spec["paths"] if p.startswith("/{scope}/")]:
        operations = spec["paths"].pop(path)
        rest = path.removeprefix("/{scope}")
        for prefix, extra in (
            ("/subscriptions/{subscription}", [subscription]),
            ("/subscriptions/{subscription}/resourceGroups/{group}", [subscription, group]),
        ):
            copies = copy.deepcopy(operations)
            for op in copies.values():
                rest_params = [p for p in op["parameters"] if p.get("name") != "scope"]
                op["parameters"] = copy.deepcopy(extra) + rest_params
            spec["paths"][prefix + rest] = copies


def _arm_operations(schema: Any) -> dict[str, Any]:
    """label ("PUT /subscriptions/...") -> operation, for the ARM operations of a schema."""
    out = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith(("/subscriptions", "/providers/", "/tenants")):
            out[op.label] = op
    return out


def _real_parameters(template: str, w: FuzzWorld) -> list[dict[str, str]]:
    """Path parameters naming something that exists: each id of the topology (or an
    ancestor of it, for collections) that the path template matches, as parameters."""
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    found: list[dict[str, str]] = []
    for rid in w.paths:
        segments = rid.split("/")
        for end in range(3, len(segments) + 1):
            match = re.fullmatch(pattern, "/".join(segments[:end]), flags=re.IGNORECASE)
            if match is not None and match.groupdict() not in found:
                found.append(match.groupdict())
    return found


def _valid_body(label: str, w: FuzzWorld) -> dict[str, Any] | None:
    method, path = label.split(" ", 1)
    if method != "PUT":
        return None
    return next((b for end, b in w.bodies.items() if path.endswith(end)), None)


def _order(label: str) -> tuple[int, str]:
    """Deletes last (they remove what the others use), the resource group's very last."""
    method, path = label.split(" ", 1)
    if method != "DELETE":
        return (0, label)
    return (2 if path.endswith("/resourceGroups/{group}") else 1, label)


def _fuzz(
    strategy: Any,
    count: int,
    session: requests.Session,
    server: Any,
    checks: list[Any],
    counters: list[Counter[int]],
    codes: Counter[str],
) -> None:
    """Send `count` generated cases; every response is checked and counted (statuses into
    `counters`, "METHOD status ARM-code" of 4xx answers into `codes`)."""

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: Any) -> None:
        response = case.call(
            base_url=server.url, session=session, verify=server.ca_file, timeout=30
        )
        for counter in counters:
            counter[response.status_code] += 1
        if 400 <= response.status_code < 500 and response.content:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                codes[f"{case.method} {response.status_code} {body['error'].get('code')}"] += 1
        case.validate_response(response, checks=checks)

    call()


def test_schemathesis_never_5xx(server: Any, fuzz_world: FuzzWorld) -> None:
    """schemathesis over every ARM operation: no 5xx, no dropped connection, ARM 4xx bodies.

    A dropped connection is a `requests.ConnectionError` out of `case.call`: it fails the
    test like any other exception.
    """
    with server.anonymous() as anonymous:
        reply = anonymous.get("/openapi.json")
    assert reply.status_code == 200, reply.text
    spec = reply.json()
    served = _arm_operations(schemathesis.openapi.from_dict(_bind(spec, fuzz_world, real=False)))
    bound = _arm_operations(schemathesis.openapi.from_dict(_bind(spec, fuzz_world, real=True)))
    assert served.keys() == bound.keys()
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    statuses: Counter[int] = Counter()
    per_operation: dict[str, Counter[int]] = {}
    codes: Counter[str] = Counter()
    durations: dict[str, float] = {}
    started = time.monotonic()
    with requests.Session() as session:
        session.trust_env = False  # 127.0.0.1, never through a proxy
        session.headers["Authorization"] = f"Bearer {server.token()}"
        for label in sorted(served, key=_order):
            op_started = time.monotonic()
            seen = per_operation.setdefault(label, Counter())
            for mode, count in (
                (GenerationMode.POSITIVE, FUZZ_POSITIVE),
                (GenerationMode.NEGATIVE, FUZZ_NEGATIVE),
            ):
                strategies = [served[label].as_strategy(generation_mode=mode)]
                if mode is GenerationMode.POSITIVE:
                    op = bound[label]
                    strategies.append(op.as_strategy(generation_mode=mode))
                    real = _real_parameters(op.path, fuzz_world)
                    strategies += [
                        op.as_strategy(generation_mode=mode, path_parameters=p) for p in real
                    ]
                    valid = _valid_body(label, fuzz_world)
                    if valid is not None:  # a body that passes validation: the workflows run
                        # ... updating what exists, and creating under generated names
                        strategies += [
                            op.as_strategy(generation_mode=mode, body=valid, path_parameters=p)
                            for p in real
                        ]
                        strategies.append(
                            served[label].as_strategy(generation_mode=mode, body=valid)
                        )
                _fuzz(
                    st.one_of(strategies), count, session, server, checks, [statuses, seen], codes
                )
            durations[label] = time.monotonic() - op_started
    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    print(
        f"\nschemathesis: {total} requests over {len(served)} operations in {elapsed:.0f} s; "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    for code, n in codes.most_common(40):
        print(f"  {n:5d} {code}")
    for label, seen in per_operation.items():
        print(f"  {durations[label]:5.1f} s {dict(sorted(seen.items()))} {label}")
    assert len(served) >= 100, sorted(served)
    # Deep, not refused at the door: reads, creations, updates, deletions and conflicts
    # all happen, and a good share of the requests succeed.
    for status in (200, 201, 202, 204, 400, 404, 409):
        assert statuses[status], (status, statuses)
    succeeded = sum(n for status, n in statuses.items() if status < 300)
    assert succeeded >= 0.15 * total, statuses
