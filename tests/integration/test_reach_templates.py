"""Reach's resources in ARM templates, deployed with azure-mgmt-resource and checked with
azure-mgmt-network: a hub-and-spoke template (two VNets, a peering each way as child
resources, a public IP, a VPN gateway in the hub's GatewaySubnet, a local network gateway
and their connection; the spoke uses the hub's gateway), its redeployment, a peering
declared inline in a VNet's `virtualNetworkPeerings`, and an overlapping pair that fails
the deployment with Azure's code."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource import ResourceManagementClient

pytestmark = pytest.mark.integration

NET = "Microsoft.Network"
API = "2023-04-01"
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
PEERINGS = "virtualNetworks/virtualNetworkPeerings"
PEERING = f"{NET}/{PEERINGS}"
PUBLIC_RANGE = IPv4Network("198.18.0.0/15")


def _id_of(kind: str, *names: str) -> str:
    """`resourceId('Microsoft.Network/KIND', 'NAME', ...)`, for use inside an expression."""
    quoted = ", ".join(f"'{n}'" for n in names)
    return f"resourceId('{NET}/{kind}', {quoted})"


def _rid(kind: str, *names: str) -> str:
    """`[resourceId('Microsoft.Network/KIND', 'NAME', ...)]`."""
    return f"[{_id_of(kind, *names)}]"


def _vnet(name: str, prefix: str, *subnets: tuple[str, str], **props: Any) -> dict[str, Any]:
    return {
        "type": f"{NET}/virtualNetworks",
        "apiVersion": API,
        "name": name,
        "location": "[parameters('location')]",
        "properties": {
            "addressSpace": {"addressPrefixes": [prefix]},
            "subnets": [{"name": n, "properties": {"addressPrefix": p}} for n, p in subnets],
            **props,
        },
    }


def _peering(vnet: str, name: str, remote: str, depends: list[str], **props: Any) -> dict[str, Any]:
    """A peering as a child resource (`VNET/NAME`), after the networks and `depends`."""
    return {
        "type": PEERING,
        "apiVersion": API,
        "name": f"{vnet}/{name}",
        "dependsOn": [_rid("virtualNetworks", vnet), _rid("virtualNetworks", remote), *depends],
        "properties": {"remoteVirtualNetwork": {"id": _rid("virtualNetworks", remote)}, **props},
    }


def _template(resources: list[dict[str, Any]], **outputs: str) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {
            "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
            "sharedKey": {"type": "securestring", "defaultValue": "Hub_k3y"},
        },
        "resources": resources,
        "outputs": {k: {"type": "string", "value": v} for k, v in outputs.items()},
    }


# Listed out of order on purpose: dependsOn decides the order.
HUB_AND_SPOKE = _template(
    [
        _peering(
            "spoke",
            "spoke-to-hub",
            "hub",
            [_rid("virtualNetworkGateways", "hub-gw"), _rid(PEERINGS, "hub", "hub-to-spoke")],
            allowForwardedTraffic=True,
            useRemoteGateways=True,
        ),
        {
            "type": f"{NET}/connections",
            "apiVersion": API,
            "name": "to-onprem",
            "location": "[parameters('location')]",
            "dependsOn": [
                _rid("virtualNetworkGateways", "hub-gw"),
                _rid("localNetworkGateways", "onprem"),
            ],
            "properties": {
                "connectionType": "IPsec",
                "virtualNetworkGateway1": {"id": _rid("virtualNetworkGateways", "hub-gw")},
                "localNetworkGateway2": {"id": _rid("localNetworkGateways", "onprem")},
                "sharedKey": "[parameters('sharedKey')]",
            },
        },
        _peering(
            "hub",
            "hub-to-spoke",
            "spoke",
            [_rid("virtualNetworkGateways", "hub-gw")],
            allowGatewayTransit=True,
        ),
        {
            "type": f"{NET}/virtualNetworkGateways",
            "apiVersion": API,
            "name": "hub-gw",
            "location": "[parameters('location')]",
            "dependsOn": [_rid("virtualNetworks", "hub"), _rid("publicIPAddresses", "hub-gw-pip")],
            "properties": {
                "gatewayType": "Vpn",
                "vpnType": "RouteBased",
                "sku": {"name": "VpnGw1", "tier": "VpnGw1"},
                "ipConfigurations": [
                    {
                        "name": "default",
                        "properties": {
                            "privateIPAllocationMethod": "Dynamic",
                            "subnet": {
                                "id": _rid("virtualNetworks/subnets", "hub", "GatewaySubnet")
                            },
                            "publicIPAddress": {"id": _rid("publicIPAddresses", "hub-gw-pip")},
                        },
                    }
                ],
            },
        },
        {
            "type": f"{NET}/localNetworkGateways",
            "apiVersion": API,
            "name": "onprem",
            "location": "[parameters('location')]",
            "properties": {
                "gatewayIpAddress": "203.0.113.30",
                "localNetworkAddressSpace": {"addressPrefixes": ["192.168.0.0/16"]},
            },
        },
        {
            "type": f"{NET}/publicIPAddresses",
            "apiVersion": API,
            "name": "hub-gw-pip",
            "location": "[parameters('location')]",
            "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"publicIPAllocationMethod": "Static"},
        },
        _vnet("spoke", "10.61.0.0/16", ("default", "10.61.1.0/24")),
        _vnet(
            "hub",
            "10.60.0.0/16",
            ("default", "10.60.1.0/24"),
            ("GatewaySubnet", "10.60.255.0/27"),
        ),
    ],
    hubState=f"[reference({_id_of(PEERINGS, 'hub', 'hub-to-spoke')}).peeringState]",
    gatewayIp=f"[reference({_id_of('publicIPAddresses', 'hub-gw-pip')}).ipAddress]",
)


@dataclass
class Group:
    """A fresh subscription and resource group, with a resources and a network client."""

    rg: str
    rm: ResourceManagementClient
    net: NetworkManagementClient

    def deploy(self, name: str, template: dict[str, Any]) -> Any:
        return self.rm.deployments.begin_create_or_update(
            self.rg, name, {"properties": {"mode": "Incremental", "template": template}}
        ).result()


@pytest.fixture
def group(server: Any, helpers: Any) -> Iterator[Group]:
    sub, rg = helpers.new_sub(), helpers.unique("rg-rtpl")
    with ResourceManagementClient(
        server.credential,
        sub,
        base_url=server.url,
        connection_verify=server.ca_file,
        polling_interval=0,
        retry_total=0,
    ) as rm:
        rm.resource_groups.create_or_update(rg, {"location": "eastus"})
        yield Group(rg, rm, server.client(sub))


def _states(g: Group) -> dict[str, str]:
    """Every peering of hub and spoke: `vnet/name` -> peeringState."""
    return {
        f"{vnet}/{p.name}": p.peering_state
        for vnet in ("hub", "spoke")
        for p in g.net.virtual_network_peerings.list(g.rg, vnet)
    }


def test_a_hub_and_spoke_template_with_a_vpn_connection(group: Group) -> None:
    g = group
    result = g.deploy("hub-spoke", HUB_AND_SPOKE)
    props = result.properties
    assert props.provisioning_state == "Succeeded"
    assert props.outputs["hubState"]["value"] == "Connected"
    assert IPv4Address(props.outputs["gatewayIp"]["value"]) in PUBLIC_RANGE
    deployed = {r.id.split("/providers/Microsoft.Network/", 1)[1] for r in props.output_resources}
    assert deployed == {
        "virtualNetworks/hub",
        "virtualNetworks/spoke",
        "virtualNetworks/hub/virtualNetworkPeerings/hub-to-spoke",
        "virtualNetworks/spoke/virtualNetworkPeerings/spoke-to-hub",
        "publicIPAddresses/hub-gw-pip",
        "virtualNetworkGateways/hub-gw",
        "localNetworkGateways/onprem",
        "connections/to-onprem",
    }

    assert _states(g) == {"hub/hub-to-spoke": "Connected", "spoke/spoke-to-hub": "Connected"}
    hub_side = g.net.virtual_network_peerings.get(g.rg, "hub", "hub-to-spoke")
    spoke_side = g.net.virtual_network_peerings.get(g.rg, "spoke", "spoke-to-hub")
    assert hub_side.allow_gateway_transit is True and hub_side.use_remote_gateways is False
    assert spoke_side.use_remote_gateways is True and spoke_side.allow_forwarded_traffic is True
    assert spoke_side.remote_address_space.address_prefixes == ["10.60.0.0/16"]
    # The peerings are in their networks too.
    hub = g.net.virtual_networks.get(g.rg, "hub")
    assert [p.name for p in hub.virtual_network_peerings] == ["hub-to-spoke"]

    gw = g.net.virtual_network_gateways.get(g.rg, "hub-gw")
    assert gw.provisioning_state == "Succeeded"
    assert gw.ip_configurations[0].subnet.id.endswith("/subnets/GatewaySubnet")
    conns = g.net.virtual_network_gateway_connections
    conn = conns.get(g.rg, "to-onprem")
    assert conn.provisioning_state == "Succeeded" and conn.connection_status is not None
    assert str(conn.virtual_network_gateway1.id).lower() == str(gw.id).lower()
    assert str(conn.local_network_gateway2.id).lower().endswith("/localnetworkgateways/onprem")
    assert conns.get_shared_key(g.rg, "to-onprem").value == "Hub_k3y"
    assert [c.name for c in conns.list(g.rg)] == ["to-onprem"]

    # Redeployed as is (the networks declare no peerings): Azure keeps the peerings.
    again = g.deploy("hub-spoke-2", HUB_AND_SPOKE)
    assert again.properties.provisioning_state == "Succeeded"
    assert _states(g) == {"hub/hub-to-spoke": "Connected", "spoke/spoke-to-hub": "Connected"}
    assert conns.get_shared_key(g.rg, "to-onprem").value == "Hub_k3y"
    assert (
        g.net.virtual_network_gateways.get(g.rg, "hub-gw").ip_configurations[0].private_ip_address
        == gw.ip_configurations[0].private_ip_address
    )


def test_a_peering_inline_in_a_vnet(group: Group) -> None:
    """vnet-a declares its peering in `virtualNetworkPeerings`; vnet-b's is a child."""
    g = group
    inline = {
        "name": "a-to-b",
        "properties": {
            "remoteVirtualNetwork": {"id": _rid("virtualNetworks", "vnet-b")},
            "allowForwardedTraffic": True,
        },
    }
    vnet_a = _vnet("vnet-a", "10.70.0.0/16", ("s", "10.70.1.0/24"), virtualNetworkPeerings=[inline])
    vnet_a["dependsOn"] = [_rid("virtualNetworks", "vnet-b")]
    template = _template(
        [
            _peering("vnet-b", "b-to-a", "vnet-a", []),
            vnet_a,
            _vnet("vnet-b", "10.71.0.0/16", ("s", "10.71.1.0/24")),
        ],
        aState=f"[reference({_id_of('virtualNetworks', 'vnet-a')})"
        ".virtualNetworkPeerings[0].properties.peeringState]",
    )
    result = g.deploy("inline", template)
    assert result.properties.provisioning_state == "Succeeded"
    # Outputs are evaluated once every resource is deployed: b-to-a exists by then.
    assert result.properties.outputs["aState"]["value"] == "Connected"

    a = g.net.virtual_networks.get(g.rg, "vnet-a")
    (peering,) = a.virtual_network_peerings
    assert (peering.name, peering.peering_state) == ("a-to-b", "Connected")
    assert peering.allow_forwarded_traffic is True
    assert peering.remote_virtual_network.id.lower().endswith("/virtualnetworks/vnet-b")
    child = g.net.virtual_network_peerings.get(g.rg, "vnet-a", "a-to-b")
    assert str(child.id).lower() == str(peering.id).lower()
    assert g.net.virtual_network_peerings.get(g.rg, "vnet-b", "b-to-a").peering_state == (
        "Connected"
    )


def test_an_overlapping_peering_fails_the_deployment(group: Group) -> None:
    g = group
    template = _template(
        [
            _vnet("left", "10.80.0.0/16", ("s", "10.80.1.0/24")),
            _vnet("right", "10.80.128.0/17", ("s", "10.80.128.0/24")),
            _peering("left", "to-right", "right", []),
        ]
    )
    with pytest.raises(HttpResponseError) as caught:
        g.deploy("overlap", template)
    assert "VnetAddressSpacesOverlap" in str(caught.value)
    record = g.rm.deployments.get(g.rg, "overlap")
    assert record.properties.provisioning_state == "Failed"
    # The networks were deployed; the peering was not.
    assert list(g.net.virtual_network_peerings.list(g.rg, "left")) == []
