# ruff: noqa: E501  (the template is written as people write them: long lines, comments)
"""`az deployment group create --template-file` with the real az: it sends the file's
text spliced in as lenient JSON (`template:` unquoted, comments kept), which ARM reads
and so must we (api/template_body.py). The template is issue 13's: two networks peered
both ways, a VPN gateway with its public IP, a site and a connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATE = """// Hub and spoke, as people write them: comments are allowed in templates.
{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": { "key": { "type": "securestring" } },
  "resources": [
    /* the hub, with its GatewaySubnet */
    { "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2024-05-01", "name": "hub",
      "location": "eastus",
      "properties": { "addressSpace": { "addressPrefixes": ["10.80.0.0/16"] },
        "subnets": [ { "name": "GatewaySubnet", "properties": { "addressPrefix": "10.80.255.0/27" } } ] } },
    { "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2024-05-01", "name": "spoke",
      "location": "eastus",
      "properties": { "addressSpace": { "addressPrefixes": ["10.81.0.0/16"] } } },
    { "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings", "apiVersion": "2024-05-01",
      "name": "hub/to-spoke",
      "dependsOn": [ "[resourceId('Microsoft.Network/virtualNetworks', 'hub')]",
                     "[resourceId('Microsoft.Network/virtualNetworks', 'spoke')]" ],
      "properties": { "remoteVirtualNetwork": { "id": "[resourceId('Microsoft.Network/virtualNetworks', 'spoke')]" },
                      "allowGatewayTransit": true } },
    { "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings", "apiVersion": "2024-05-01",
      "name": "spoke/to-hub",
      "dependsOn": [ "[resourceId('Microsoft.Network/virtualNetworks/virtualNetworkPeerings', 'hub', 'to-spoke')]",
                     "[resourceId('Microsoft.Network/virtualNetworkGateways', 'gw')]" ],
      "properties": { "remoteVirtualNetwork": { "id": "[resourceId('Microsoft.Network/virtualNetworks', 'hub')]" },
                      "useRemoteGateways": true } },
    { "type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2024-05-01", "name": "gw-ip",
      "location": "eastus", "sku": { "name": "Standard" },
      "properties": { "publicIPAllocationMethod": "Static" } },
    { "type": "Microsoft.Network/virtualNetworkGateways", "apiVersion": "2024-05-01", "name": "gw",
      "location": "eastus",
      "dependsOn": [ "[resourceId('Microsoft.Network/virtualNetworks', 'hub')]",
                     "[resourceId('Microsoft.Network/publicIPAddresses', 'gw-ip')]" ],
      "properties": { "gatewayType": "Vpn", "vpnType": "RouteBased",
        "sku": { "name": "VpnGw1", "tier": "VpnGw1" },
        "ipConfigurations": [ { "name": "default", "properties": {
          "subnet": { "id": "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'hub', 'GatewaySubnet')]" },
          "publicIPAddress": { "id": "[resourceId('Microsoft.Network/publicIPAddresses', 'gw-ip')]" } } } ] } },
    { "type": "Microsoft.Network/localNetworkGateways", "apiVersion": "2024-05-01", "name": "branch",
      "location": "eastus",
      "properties": { "gatewayIpAddress": "198.18.210.1",
                      "localNetworkAddressSpace": { "addressPrefixes": ["192.168.0.0/16"] } } },
    { "type": "Microsoft.Network/connections", "apiVersion": "2024-05-01", "name": "to-branch",
      "location": "eastus",
      "dependsOn": [ "[resourceId('Microsoft.Network/virtualNetworkGateways', 'gw')]",
                     "[resourceId('Microsoft.Network/localNetworkGateways', 'branch')]" ],
      "properties": { "connectionType": "IPsec", "sharedKey": "[parameters('key')]",
        "virtualNetworkGateway1": { "id": "[resourceId('Microsoft.Network/virtualNetworkGateways', 'gw')]" },
        "localNetworkGateway2": { "id": "[resourceId('Microsoft.Network/localNetworkGateways', 'branch')]" } } }
  ]
}
"""


def test_a_template_file_with_a_peering_and_a_vpn_gateway_deploys(
    az: Any, az_exe: Any, tmp_path: Path
) -> None:
    path = tmp_path / "hub-spoke.json"
    path.write_text(TEMPLATE)
    az.run("group", "create", "-n", "rg-tpl", "-l", "eastus", "-o", "none")
    state = az.run(
        "deployment",
        "group",
        "create",
        "-g",
        "rg-tpl",
        "--template-file",
        str(path),
        "--parameters",
        "key=Tpl_k3y",
        "--query",
        "properties.provisioningState",
        "-o",
        "tsv",
    )
    assert state.stdout.strip() == "Succeeded", state.stderr
    peerings = json.loads(
        az.run(
            "network",
            "vnet",
            "peering",
            "list",
            "-g",
            "rg-tpl",
            "--vnet-name",
            "spoke",
            "-o",
            "json",
        ).stdout
    )
    assert [(p["name"], p["peeringState"], p["useRemoteGateways"]) for p in peerings] == [
        ("to-hub", "Connected", True)
    ]
    conn = json.loads(
        az.run(
            "network", "vpn-connection", "show", "-g", "rg-tpl", "-n", "to-branch", "-o", "json"
        ).stdout
    )
    assert conn["connectionType"] == "IPsec" and "sharedKey" not in conn
