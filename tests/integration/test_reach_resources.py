"""Reach's resources over HTTPS with azure-mgmt-network: public IPs, VPN gateways, local
network gateways, connections and their shared key, public load balancers with a private
link service, the rules between them with Azure's codes, and resource group deletion."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.network.models import (
    AddressSpace,
    ConnectionResetSharedKey,
    ConnectionSharedKey,
    LocalNetworkGateway,
    PublicIPAddress,
    PublicIPAddressSku,
    SubResource,
    VirtualNetworkGateway,
    VirtualNetworkGatewayConnection,
    VirtualNetworkGatewayIPConfiguration,
    VirtualNetworkGatewaySku,
)

pytestmark = pytest.mark.integration

Q = {"api-version": "2026-03-01"}
LOCATION = "eastus"
PUBLIC_RANGE = IPv4Network("198.18.0.0/15")


@dataclass
class Hub:
    """A subscription's hub: VNet `hub` (default, nat, GatewaySubnet) in one group."""

    server: Any
    client: Any
    sub: str
    rg: str

    @property
    def base(self) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{self.rg}/providers/Microsoft.Network"

    def id(self, kind: str, name: str) -> str:
        return f"{self.base}/{kind}/{name}"

    def subnet(self, name: str) -> str:
        return f"{self.id('virtualNetworks', 'hub')}/subnets/{name}"

    def public_ip(self, name: str) -> Any:
        return self.client.public_ip_addresses.begin_create_or_update(
            self.rg,
            name,
            PublicIPAddress(
                location=LOCATION,
                sku=PublicIPAddressSku(name="Standard", tier="Regional"),
                public_ip_allocation_method="Static",
            ),
        ).result()

    def gateway_body(self, pip: str, **props: Any) -> dict[str, Any]:
        return {
            "location": LOCATION,
            "properties": {
                "gatewayType": "Vpn",
                "vpnType": "RouteBased",
                "sku": {"name": "VpnGw1", "tier": "VpnGw1"},
                "ipConfigurations": [
                    {
                        "name": "default",
                        "properties": {
                            "privateIPAllocationMethod": "Dynamic",
                            "subnet": {"id": self.subnet("GatewaySubnet")},
                            "publicIPAddress": {"id": self.id("publicIPAddresses", pip)},
                        },
                    }
                ],
                **props,
            },
        }

    def gateway(self, name: str, pip: str) -> Any:
        return self.client.virtual_network_gateways.begin_create_or_update(
            self.rg,
            name,
            VirtualNetworkGateway(
                location=LOCATION,
                gateway_type="Vpn",
                vpn_type="RouteBased",
                sku=VirtualNetworkGatewaySku(name="VpnGw1AZ", tier="VpnGw1AZ"),
                enable_bgp=False,
                active_active=False,
                ip_configurations=[
                    VirtualNetworkGatewayIPConfiguration(
                        name="default",
                        subnet=SubResource(id=self.subnet("GatewaySubnet")),
                        public_ip_address=SubResource(id=self.id("publicIPAddresses", pip)),
                    )
                ],
            ),
        ).result()

    def site(self, name: str, prefixes: list[str], ip: str = "203.0.113.10") -> Any:
        return self.client.local_network_gateways.begin_create_or_update(
            self.rg,
            name,
            LocalNetworkGateway(
                location=LOCATION,
                gateway_ip_address=ip,
                local_network_address_space=AddressSpace(address_prefixes=prefixes),
            ),
        ).result()

    def connection_body(self, gateway: str, site: str, **props: Any) -> dict[str, Any]:
        return {
            "location": LOCATION,
            "properties": {
                "connectionType": "IPsec",
                "virtualNetworkGateway1": {"id": self.id("virtualNetworkGateways", gateway)},
                "localNetworkGateway2": {"id": self.id("localNetworkGateways", site)},
                **props,
            },
        }


@pytest.fixture
def hub(server: Any, helpers: Any) -> Hub:
    sub, rg = helpers.new_sub(), helpers.unique("rg-reach")
    client = server.client(sub)
    client.virtual_networks.begin_create_or_update(
        rg,
        "hub",
        {
            "location": LOCATION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.10.0.0/16"]},
                "subnets": [
                    {"name": "default", "properties": {"addressPrefix": "10.10.1.0/24"}},
                    {
                        "name": "nat",
                        "properties": {
                            "addressPrefix": "10.10.3.0/24",
                            "privateLinkServiceNetworkPolicies": "Disabled",
                        },
                    },
                    {"name": "GatewaySubnet", "properties": {"addressPrefix": "10.10.255.0/27"}},
                ],
            },
        },
    ).result()
    return Hub(server, client, sub, rg)


# --- public IPs ---------------------------------------------------------------------------------


def test_public_ip_lifecycle(hub: Hub) -> None:
    pips = hub.client.public_ip_addresses
    pip = hub.public_ip("pip1")
    assert pip.sku.name == "Standard" and pip.public_ip_allocation_method == "Static"
    assert IPv4Address(pip.ip_address) in PUBLIC_RANGE
    assert pip.provisioning_state == "Succeeded" and pip.ip_configuration is None
    # What a GET gives, sent back as a PUT, is accepted and keeps the address.
    again = pips.begin_create_or_update(hub.rg, "pip1", pips.get(hub.rg, "pip1")).result()
    assert again.ip_address == pip.ip_address
    other = hub.public_ip("pip2")
    assert other.ip_address != pip.ip_address
    assert {p.name for p in pips.list(hub.rg)} == {"pip1", "pip2"}
    assert {p.name for p in pips.list_all()} >= {"pip1", "pip2"}
    pips.begin_delete(hub.rg, "pip1").result()
    with pytest.raises(ResourceNotFoundError):
        pips.get(hub.rg, "pip1")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"sku": {"name": "Basic"}}, "IPv4BasicSkuPublicIpCountLimitReached"),
        (
            {"sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Dynamic"}},
            "StandardSkuPublicIPAddressesMustBeStatic",
        ),
        ({"properties": {"publicIPAddressVersion": "IPv6"}}, "UnsupportedProperty"),
        ({"properties": {"dnsSettings": {"domainNameLabel": "x"}}}, "UnsupportedProperty"),
        ({"properties": {"publicIPPrefix": {"id": "/x"}}}, "UnsupportedProperty"),
        ({"properties": {"idleTimeoutInMinutes": 60}}, "PublicIPIdleTimeoutOutOfRange"),
    ],
)
def test_what_a_public_ip_cannot_be(hub: Hub, body: dict[str, Any], code: str) -> None:
    reply = hub.server.http.put(
        hub.id("publicIPAddresses", "bad"), params=Q, json={"location": LOCATION, **body}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == code


# --- VPN gateways, sites, connections ----------------------------------------------------------


def test_gateway_site_connection_and_shared_key(hub: Hub, helpers: Any) -> None:
    client = hub.client
    pip = hub.public_ip("gwpip")
    gw = hub.gateway("gw", "gwpip")
    (config,) = gw.ip_configurations
    assert (gw.gateway_type, gw.vpn_type, gw.sku.name) == ("Vpn", "RouteBased", "VpnGw1AZ")
    assert config.private_ip_address == "10.10.255.4"
    assert config.public_ip_address.id.lower() == pip.id.lower()
    assert gw.bgp_settings.asn == 65515 and gw.enable_bgp is False
    assert client.public_ip_addresses.get(hub.rg, "gwpip").ip_configuration.id.lower() == (
        config.id.lower()
    )
    # A GET sent back as a PUT is accepted.
    gws = client.virtual_network_gateways
    gws.begin_create_or_update(hub.rg, "gw", gws.get(hub.rg, "gw")).result()

    site = hub.site("site", ["192.168.0.0/16"])
    assert site.gateway_ip_address == "203.0.113.10"
    assert site.local_network_address_space.address_prefixes == ["192.168.0.0/16"]

    conns = client.virtual_network_gateway_connections
    created = conns.begin_create_or_update(
        hub.rg,
        "c1",
        VirtualNetworkGatewayConnection(
            location=LOCATION,
            connection_type="IPsec",
            virtual_network_gateway1=VirtualNetworkGateway(id=gw.id),
            local_network_gateway2=LocalNetworkGateway(id=site.id),
            shared_key="Abc123",
        ),
    ).result()
    assert created.shared_key is None  # the key is read through its own route only
    assert (created.connection_status, created.connection_protocol) == ("Unknown", "IKEv2")
    assert (created.ingress_bytes_transferred, created.egress_bytes_transferred) == (0, 0)
    assert conns.get_shared_key(hub.rg, "c1").value == "Abc123"
    # A GET sent back keeps the key.
    conns.begin_create_or_update(hub.rg, "c1", conns.get(hub.rg, "c1")).result()
    assert conns.get_shared_key(hub.rg, "c1").value == "Abc123"
    key = conns.begin_set_shared_key(hub.rg, "c1", ConnectionSharedKey(value="N3w_k3y")).result()
    assert key.value == "N3w_k3y" == conns.get_shared_key(hub.rg, "c1").value
    reset = conns.begin_reset_shared_key(hub.rg, "c1", ConnectionResetSharedKey(key_length=64))
    assert reset.result().key_length == 64
    assert len(conns.get_shared_key(hub.rg, "c1").value) == 64
    assert [c.name for c in gws.list_connections(hub.rg, "gw")] == ["c1"]
    assert [c.name for c in conns.list(hub.rg)] == ["c1"]

    # What is in use stays.
    expect = helpers.expect_error
    expect(
        lambda: gws.begin_delete(hub.rg, "gw").result(), 400, "VirtualNetworkGatewayCannotBeDeleted"
    )
    expect(
        lambda: client.local_network_gateways.begin_delete(hub.rg, "site").result(),
        400,
        "LocalNetworkGatewayCannotBeDeleted",
    )
    expect(
        lambda: client.public_ip_addresses.begin_delete(hub.rg, "gwpip").result(),
        400,
        "PublicIPAddressCannotBeDeleted",
    )
    expect(
        lambda: client.subnets.begin_delete(hub.rg, "hub", "GatewaySubnet").result(),
        400,
        "InUseSubnetCannotBeDeleted",
    )
    # ... until what uses it goes.
    conns.begin_delete(hub.rg, "c1").result()
    client.local_network_gateways.begin_delete(hub.rg, "site").result()
    gws.begin_delete(hub.rg, "gw").result()
    client.public_ip_addresses.begin_delete(hub.rg, "gwpip").result()
    client.subnets.begin_delete(hub.rg, "hub", "GatewaySubnet").result()


def test_the_shared_key_paths_are_case_insensitive(hub: Hub) -> None:
    hub.public_ip("gwpip")
    hub.gateway("gw", "gwpip")
    hub.site("site", ["192.168.0.0/16"])
    http = hub.server.http
    conn = hub.id("connections", "c1")
    reply = http.put(conn, params=Q, json=hub.connection_body("gw", "site"))
    assert reply.status_code == 201, reply.text
    assert "sharedKey" not in reply.json()["properties"]
    generated = http.get(f"{conn}/SharedKey", params=Q).json()["value"]
    assert len(generated) == 32 and generated.isalnum()
    put = http.put(f"{conn}/sharedkey", params=Q, json={"value": "abc"})
    assert put.status_code == 200 and put.json() == {"value": "abc"}
    assert "Azure-AsyncOperation" in put.headers
    for path, body, code in (
        ("sharedkey", {"value": "has space"}, "InvalidSharedKey"),
        ("sharedkey", {}, "InvalidRequestContent"),
        ("sharedkey/reset", {"keyLength": 129}, "InvalidRequestContent"),
        ("sharedkey/reset", {"keyLength": "x"}, "InvalidRequestContent"),
    ):
        call = http.put if path == "sharedkey" else http.post
        reply = call(f"{conn}/{path}", params=Q, json=body)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == code, reply.text
    missing = http.get(hub.id("connections", "nope") + "/sharedkey", params=Q)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("props", "code"),
    [
        ({"sku": {"name": "Basic", "tier": "Basic"}}, "VirtualNetworkGatewaySkuNotSupported"),
        ({"enableBgp": True}, "UnsupportedProperty"),
        ({"activeActive": True}, "UnsupportedProperty"),
        ({"vpnType": "PolicyBased"}, "UnsupportedProperty"),
        ({"gatewayType": "ExpressRoute"}, "UnsupportedProperty"),
        ({"vpnClientConfiguration": {"vpnClientAddressPool": {}}}, "UnsupportedProperty"),
        ({"bgpSettings": {"asn": 65000}}, "UnsupportedProperty"),
        ({"sku": {"name": "VpnGw2", "tier": "VpnGw1"}}, "InvalidRequestContent"),
    ],
)
def test_what_a_gateway_cannot_be(hub: Hub, props: dict[str, Any], code: str) -> None:
    hub.public_ip("gwpip")
    reply = hub.server.http.put(
        hub.id("virtualNetworkGateways", "gw"), params=Q, json=hub.gateway_body("gwpip", **props)
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == code


def test_gateway_subnet_rules(hub: Hub, helpers: Any) -> None:
    http = hub.server.http
    hub.public_ip("gwpip")
    hub.public_ip("gwpip2")
    body = hub.gateway_body("gwpip")
    body["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"] = hub.subnet("default")
    reply = http.put(hub.id("virtualNetworkGateways", "gw"), params=Q, json=body)
    assert reply.json()["error"]["code"] == "VirtualNetworkGatewaySubnetMustBeNamedGatewaySubnet"
    hub.gateway("gw", "gwpip")
    second = http.put(
        hub.id("virtualNetworkGateways", "gw2"), params=Q, json=hub.gateway_body("gwpip2")
    )
    assert second.json()["error"]["code"] == "OnlyOneVpnGatewayPerVirtualNetwork", second.text
    nic = {
        "location": LOCATION,
        "properties": {
            "ipConfigurations": [
                {"name": "ip1", "properties": {"subnet": {"id": hub.subnet("GatewaySubnet")}}}
            ]
        },
    }
    reply = http.put(hub.id("networkInterfaces", "nic1"), params=Q, json=nic)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "GatewaySubnet"


@pytest.mark.parametrize(
    ("props", "code"),
    [
        ({"connectionProtocol": "IKEv1"}, "UnsupportedProperty"),
        ({"connectionType": "Vnet2Vnet"}, "UnsupportedProperty"),
        ({"connectionType": "ExpressRoute"}, "UnsupportedProperty"),
        ({"enableBgp": True}, "UnsupportedProperty"),
        ({"usePolicyBasedTrafficSelectors": True}, "UnsupportedProperty"),
        ({"ipsecPolicies": [{"saLifeTimeSeconds": 3600}]}, "UnsupportedProperty"),
        ({"connectionType": None}, "InvalidRequestContent"),
        ({"localNetworkGateway2": {"id": "/nope"}}, "LinkedInvalidPropertyId"),
        ({"sharedKey": "x" * 129}, "InvalidSharedKey"),
    ],
)
def test_what_a_connection_cannot_be(hub: Hub, props: dict[str, Any], code: str) -> None:
    hub.public_ip("gwpip")
    hub.gateway("gw", "gwpip")
    hub.site("site", ["192.168.0.0/16"])
    reply = hub.server.http.put(
        hub.id("connections", "c1"), params=Q, json=hub.connection_body("gw", "site", **props)
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == code


def test_site_rules(hub: Hub) -> None:
    http = hub.server.http
    for props, code in (
        ({"fqdn": "vpn.example.com", "gatewayIpAddress": "203.0.113.1"}, "UnsupportedProperty"),
        ({"gatewayIpAddress": "203.0.113.1", "bgpSettings": {"asn": 65010}}, "UnsupportedProperty"),
        ({}, "LocalNetworkGatewayIpAddressRequired"),
        ({"gatewayIpAddress": "not-an-ip"}, "InvalidLocalNetworkGatewayIpAddress"),
        (
            {
                "gatewayIpAddress": "203.0.113.1",
                "localNetworkAddressSpace": {"addressPrefixes": ["10.0.0.0/99"]},
            },
            "InvalidAddressPrefixFormat",
        ),
    ):
        reply = http.put(
            hub.id("localNetworkGateways", "bad"),
            params=Q,
            json={"location": LOCATION, "properties": props},
        )
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == code
    # A site overlapping the gateway's network cannot be connected.
    hub.public_ip("gwpip")
    hub.gateway("gw", "gwpip")
    hub.site("near", ["10.10.5.0/24"])
    reply = http.put(hub.id("connections", "c1"), params=Q, json=hub.connection_body("gw", "near"))
    assert reply.json()["error"]["code"] == "LocalNetworkGatewayAddressSpaceOverlapsVirtualNetwork"


# --- public load balancers ----------------------------------------------------------------------


def _public_lb(hub: Hub, name: str, frontends: list[dict[str, Any]]) -> dict[str, Any]:
    lb = hub.id("loadBalancers", name)
    return {
        "location": LOCATION,
        "sku": {"name": "Standard"},
        "properties": {
            "frontendIPConfigurations": frontends,
            "backendAddressPools": [{"name": "be"}],
            "probes": [{"name": "p", "properties": {"protocol": "Tcp", "port": 8080}}],
            "loadBalancingRules": [
                {
                    "name": "r",
                    "properties": {
                        "protocol": "Tcp",
                        "frontendPort": 80,
                        "backendPort": 8080,
                        "frontendIPConfiguration": {
                            "id": f"{lb}/frontendIPConfigurations/{frontends[0]['name']}"
                        },
                        "backendAddressPool": {"id": f"{lb}/backendAddressPools/be"},
                        "probe": {"id": f"{lb}/probes/p"},
                    },
                }
            ],
        },
    }


def _public_fe(hub: Hub, name: str, pip: str) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {"publicIPAddress": {"id": hub.id("publicIPAddresses", pip)}},
    }


def test_public_load_balancer_with_a_private_link_service(
    hub: Hub, world: Any, helpers: Any
) -> None:
    client = hub.client
    pip = hub.public_ip("lbpip")
    lb = client.load_balancers.begin_create_or_update(
        hub.rg, "plb", _public_lb(hub, "plb", [_public_fe(hub, "fe", "lbpip")])
    ).result()
    (fe,) = lb.frontend_ip_configurations
    assert fe.public_ip_address.id.lower() == pip.id.lower()
    assert fe.subnet is None and fe.private_ip_address is None
    assert client.public_ip_addresses.get(hub.rg, "lbpip").ip_configuration.id.lower() == (
        fe.id.lower()
    )
    # A GET sent back as a PUT is accepted.
    client.load_balancers.begin_create_or_update(
        hub.rg, "plb", client.load_balancers.get(hub.rg, "plb")
    ).result()
    service = client.private_link_services.begin_create_or_update(
        hub.rg,
        "pls",
        {
            "location": LOCATION,
            "properties": {
                "loadBalancerFrontendIpConfigurations": [{"id": fe.id}],
                "ipConfigurations": [
                    {
                        "name": "nat",
                        "properties": {
                            "primary": True,
                            "privateIPAllocationMethod": "Dynamic",
                            "subnet": {"id": hub.subnet("nat")},
                        },
                    }
                ],
                "visibility": {"subscriptions": ["*"]},
            },
        },
    ).result()
    assert service.ip_configurations[0].private_ip_address == "10.10.3.4"
    consumer = world.consumer()
    endpoint = consumer.create_pe("pe", service.alias)
    assert (
        endpoint.manual_private_link_service_connections[
            0
        ].private_link_service_connection_state.status
        == "Pending"
    )

    expect = helpers.expect_error
    expect(
        lambda: client.public_ip_addresses.begin_delete(hub.rg, "lbpip").result(),
        400,
        "PublicIPAddressCannotBeDeleted",
    )
    hub.public_ip("other")
    for frontends, code in (
        (
            [
                _public_fe(hub, "fe", "other"),
                {"name": "fe2", "properties": {"subnet": {"id": hub.subnet("default")}}},
            ],
            "LoadBalancerCannotHavePublicAndPrivateFrontendIPConfigurations",
        ),
        (
            [
                {
                    "name": "fe",
                    "properties": {
                        "subnet": {"id": hub.subnet("default")},
                        "publicIPAddress": {"id": hub.id("publicIPAddresses", "other")},
                    },
                }
            ],
            "FrontendIPConfigHasBothSubnetAndPublicIP",
        ),
        ([{"name": "fe", "properties": {}}], "FrontendIPConfigHasNoSubnetOrPublicIP"),
        ([_public_fe(hub, "fe", "lbpip")], "PublicIPAddressInUse"),
    ):
        reply = hub.server.http.put(
            hub.id("loadBalancers", "lb2"), params=Q, json=_public_lb(hub, "lb2", frontends)
        )
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == code


# --- resource group deletion --------------------------------------------------------------------


def test_resource_group_deletion_removes_them_all(hub: Hub) -> None:
    client = hub.client
    hub.public_ip("gwpip")
    hub.public_ip("lbpip")
    hub.gateway("gw", "gwpip")
    hub.site("site", ["192.168.0.0/16"])
    http = hub.server.http
    reply = http.put(hub.id("connections", "c1"), params=Q, json=hub.connection_body("gw", "site"))
    assert reply.status_code == 201, reply.text
    client.load_balancers.begin_create_or_update(
        hub.rg, "plb", _public_lb(hub, "plb", [_public_fe(hub, "fe", "lbpip")])
    ).result()
    reply = http.delete(
        f"/subscriptions/{hub.sub}/resourcegroups/{hub.rg}", params={"api-version": "2022-09-01"}
    )
    assert reply.status_code in (200, 202), reply.text
    for kind in (
        "connections",
        "virtualNetworkGateways",
        "localNetworkGateways",
        "publicIPAddresses",
        "loadBalancers",
        "virtualNetworks",
    ):
        listed = http.get(f"{hub.base}/{kind}", params=Q)
        assert listed.status_code == 200 and listed.json()["value"] == [], (kind, listed.text)


# --- templates ---------------------------------------------------------------------------------


def _template_resources() -> list[dict[str, Any]]:
    """A public IP, a gateway, a site and their connection, listed out of order."""
    net = "Microsoft.Network"
    return [
        {
            "type": f"{net}/connections",
            "apiVersion": "2023-04-01",
            "name": "tpl-conn",
            "location": LOCATION,
            "dependsOn": [
                f"[resourceId('{net}/virtualNetworkGateways', 'tpl-gw')]",
                f"[resourceId('{net}/localNetworkGateways', 'tpl-site')]",
            ],
            "properties": {
                "connectionType": "IPsec",
                "virtualNetworkGateway1": {
                    "id": f"[resourceId('{net}/virtualNetworkGateways', 'tpl-gw')]"
                },
                "localNetworkGateway2": {
                    "id": f"[resourceId('{net}/localNetworkGateways', 'tpl-site')]"
                },
                "sharedKey": "Tpl_k3y",
            },
        },
        {
            "type": f"{net}/virtualNetworkGateways",
            "apiVersion": "2023-04-01",
            "name": "tpl-gw",
            "location": LOCATION,
            "dependsOn": [f"[resourceId('{net}/publicIPAddresses', 'tpl-pip')]"],
            "properties": {
                "gatewayType": "Vpn",
                "vpnType": "RouteBased",
                "sku": {"name": "VpnGw2", "tier": "VpnGw2"},
                "ipConfigurations": [
                    {
                        "name": "default",
                        "properties": {
                            "subnet": {
                                "id": f"[resourceId('{net}/virtualNetworks/subnets', 'hub', "
                                "'GatewaySubnet')]"
                            },
                            "publicIPAddress": {
                                "id": f"[resourceId('{net}/publicIPAddresses', 'tpl-pip')]"
                            },
                        },
                    }
                ],
            },
        },
        {
            "type": f"{net}/publicIPAddresses",
            "apiVersion": "2023-04-01",
            "name": "tpl-pip",
            "location": LOCATION,
            "sku": {"name": "Standard"},
            "properties": {"publicIPAllocationMethod": "Static"},
        },
        {
            "type": f"{net}/localNetworkGateways",
            "apiVersion": "2023-04-01",
            "name": "tpl-site",
            "location": LOCATION,
            "properties": {
                "gatewayIpAddress": "203.0.113.20",
                "localNetworkAddressSpace": {"addressPrefixes": ["172.16.0.0/16"]},
            },
        },
    ]


def test_a_template_deploys_gateway_site_and_connection(hub: Hub) -> None:
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": _template_resources(),
        "outputs": {
            "gatewayIp": {
                "type": "string",
                "value": "[reference('tpl-pip').ipAddress]",
            }
        },
    }
    group = f"/subscriptions/{hub.sub}/resourceGroups/{hub.rg}"
    reply = hub.server.http.put(
        f"{group}/providers/Microsoft.Resources/deployments/reach",
        params=Q,
        json={"properties": {"mode": "Incremental", "template": template}},
    )
    assert reply.status_code in (200, 201), reply.text
    deployment = hub.server.http.get(
        f"{group}/providers/Microsoft.Resources/deployments/reach", params=Q
    ).json()
    assert deployment["properties"]["provisioningState"] == "Succeeded", deployment
    address = deployment["properties"]["outputs"]["gatewayIp"]["value"]
    assert IPv4Address(address) in PUBLIC_RANGE
    conns = hub.client.virtual_network_gateway_connections
    assert conns.get_shared_key(hub.rg, "tpl-conn").value == "Tpl_k3y"
