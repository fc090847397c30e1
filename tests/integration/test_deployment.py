"""A hand-written ARM template (vnet + Standard LB + PLS), deployed with the SDK."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resource import ResourceManagementClient

pytestmark = pytest.mark.integration

NET = "Microsoft.Network"
FE_ID = f"[resourceId('{NET}/loadBalancers/frontendIPConfigurations', variables('lbName'), 'fe')]"
POOL_ID = f"[resourceId('{NET}/loadBalancers/backendAddressPools', variables('lbName'), 'be')]"
NAT_SUBNET = f"[resourceId('{NET}/virtualNetworks/subnets', variables('vnetName'), 'nat')]"
FE_SUBNET = f"[resourceId('{NET}/virtualNetworks/subnets', variables('vnetName'), 'fe')]"
FE_IP = "[reference(variables('lbName')).frontendIPConfigurations[0].properties.privateIPAddress]"

TEMPLATE: dict[str, Any] = {
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    "contentVersion": "1.0.0.0",
    "parameters": {
        "prefix": {"type": "string", "defaultValue": "svc"},
        "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
        "visibleTo": {"type": "array", "defaultValue": ["*"]},
    },
    "variables": {
        "vnetName": "[concat(parameters('prefix'), '-vnet')]",
        "lbName": "[format('{0}-lb', parameters('prefix'))]",
        "feId": FE_ID,
        "poolId": POOL_ID,
    },
    "resources": [
        {
            "type": "Microsoft.Network/privateLinkServices",
            "apiVersion": "2023-04-01",
            "name": "[concat(parameters('prefix'), '-pls')]",
            "location": "[parameters('location')]",
            "dependsOn": ["[resourceId('Microsoft.Network/loadBalancers', variables('lbName'))]"],
            "properties": {
                "loadBalancerFrontendIpConfigurations": [{"id": "[variables('feId')]"}],
                "ipConfigurations": [
                    {
                        "name": "nat",
                        "properties": {
                            "primary": True,
                            "subnet": {"id": NAT_SUBNET},
                        },
                    }
                ],
                "visibility": {"subscriptions": "[parameters('visibleTo')]"},
                "fqdns": ["[concat(parameters('prefix'), '.contoso.example')]"],
            },
        },
        {
            "type": "Microsoft.Network/loadBalancers",
            "apiVersion": "2023-04-01",
            "name": "[variables('lbName')]",
            "location": "[parameters('location')]",
            "sku": {"name": "Standard"},
            "dependsOn": ["[variables('vnetName')]"],
            "properties": {
                "frontendIPConfigurations": [
                    {
                        "name": "fe",
                        "properties": {"subnet": {"id": FE_SUBNET}},
                    }
                ],
                "backendAddressPools": [{"name": "be"}],
                "loadBalancingRules": [
                    {
                        "name": "http",
                        "properties": {
                            "protocol": "Tcp",
                            "frontendPort": 80,
                            "backendPort": 8080,
                            "frontendIPConfiguration": {"id": "[variables('feId')]"},
                            "backendAddressPool": {"id": "[variables('poolId')]"},
                        },
                    }
                ],
            },
        },
        {
            "type": "Microsoft.Network/virtualNetworks",
            "apiVersion": "2023-04-01",
            "name": "[variables('vnetName')]",
            "location": "[parameters('location')]",
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [
                    {"name": "fe", "properties": {"addressPrefix": "10.0.1.0/24"}},
                    {
                        "name": "nat",
                        "properties": {
                            "addressPrefix": "10.0.3.0/24",
                            "privateLinkServiceNetworkPolicies": "Disabled",
                        },
                    },
                ],
            },
        },
    ],
    "outputs": {
        "alias": {
            "type": "string",
            "value": "[reference(concat(parameters('prefix'), '-pls')).alias]",
        },
        "frontendIp": {
            "type": "string",
            "value": FE_IP,
        },
    },
}


def resources_client(server: Any, sub: str) -> ResourceManagementClient:
    return ResourceManagementClient(
        server.credential,
        sub,
        base_url=server.url,
        connection_verify=server.ca_file,
        polling_interval=0,
        retry_total=0,
    )


def test_a_hand_written_template_deploys_vnet_lb_and_service(server: Any, helpers: Any) -> None:
    sub, rg = helpers.new_sub(), helpers.unique("rg-tpl")
    rm = resources_client(server, sub)
    rm.resource_groups.create_or_update(rg, {"location": "eastus"})
    result = rm.deployments.begin_create_or_update(
        rg,
        "tpl",
        {
            "properties": {
                "mode": "Incremental",
                "template": TEMPLATE,
                "parameters": {"prefix": {"value": "shop"}},
            }
        },
    ).result()
    props = result.properties
    assert props.provisioning_state == "Succeeded"
    assert props.outputs["alias"]["value"].startswith("shop-pls.")
    assert props.outputs["frontendIp"]["value"] == "10.0.1.4"
    ids = {r.id.rsplit("/", 1)[-1] for r in props.output_resources}
    assert ids == {"shop-vnet", "shop-lb", "shop-pls"}
    net = server.client(sub)
    pls = net.private_link_services.get(rg, "shop-pls")
    assert pls.fqdns == ["shop.contoso.example"] and pls.visibility.subscriptions == ["*"]
    ops = list(rm.deployment_operations.list(rg, "tpl"))
    assert len(ops) == 3
    # Deleting the group deletes its resources (the service first).
    rm.resource_groups.begin_delete(rg).result()
    assert list(net.private_link_services.list(rg)) == []
    assert list(net.virtual_networks.list(rg)) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda t: t["resources"].append(
                {"type": "Microsoft.Storage/storageAccounts", "name": "x"}
            ),
            "not supported",
        ),
        (lambda t: t["variables"].update(bad="[listKeys('x', '2020-01-01')]"), "listKeys"),
        (lambda t: t["resources"][0]["dependsOn"].append("nowhere"), "depends on"),
    ],
    ids=["resource-type", "function", "dependency"],
)
def test_template_problems_are_a_synchronous_400(
    server: Any, helpers: Any, mutate: Any, message: str
) -> None:
    import copy

    sub, rg = helpers.new_sub(), helpers.unique("rg-tpl")
    rm = resources_client(server, sub)
    template = copy.deepcopy(TEMPLATE)
    mutate(template)
    if "bad" in template["variables"]:
        template["outputs"]["bad"] = {"type": "string", "value": "[variables('bad')]"}
    with pytest.raises(HttpResponseError) as caught:
        rm.deployments.begin_create_or_update(
            rg, "tpl", {"properties": {"mode": "Incremental", "template": template}}
        ).result()
    assert message in str(caught.value)
    net = server.client(sub)
    if "bad" not in template["variables"]:  # synchronous: nothing was deployed
        assert caught.value.status_code == 400
        assert caught.value.error.code == "InvalidTemplate"
        assert list(net.virtual_networks.list(rg)) == []


def test_a_refused_resource_fails_the_deployment_with_its_code(server: Any, helpers: Any) -> None:
    import copy

    sub, rg = helpers.new_sub(), helpers.unique("rg-tpl")
    rm = resources_client(server, sub)
    template = copy.deepcopy(TEMPLATE)
    template["resources"][1]["sku"] = {"name": "Basic"}
    with pytest.raises(HttpResponseError) as caught:
        rm.deployments.begin_create_or_update(
            rg, "tpl", {"properties": {"mode": "Incremental", "template": template}}
        ).result()
    assert "PrivateLinkServiceNotSupportedOnBasicLoadBalancer" in str(caught.value)
    record = rm.deployments.get(rg, "tpl")
    assert record.properties.provisioning_state == "Failed"


DNS_TEMPLATE: dict[str, Any] = {
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    "contentVersion": "1.0.0.0",
    "parameters": {"zone": {"type": "string", "defaultValue": "contoso.example"}},
    "resources": [
        {
            "type": "Microsoft.Network/virtualNetworks",
            "apiVersion": "2023-04-01",
            "name": "app-vnet",
            "location": "[resourceGroup().location]",
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.4.0.0/16"]},
                "subnets": [{"name": "apps", "properties": {"addressPrefix": "10.4.1.0/24"}}],
            },
        },
        {
            "type": "Microsoft.Network/privateDnsZones",
            "apiVersion": "2020-06-01",
            "name": "[parameters('zone')]",
            "location": "global",
        },
        {
            "type": "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
            "apiVersion": "2020-06-01",
            "name": "[concat(parameters('zone'), '/app-link')]",
            "location": "global",
            "dependsOn": [
                "[resourceId('Microsoft.Network/privateDnsZones', parameters('zone'))]",
                "[resourceId('Microsoft.Network/virtualNetworks', 'app-vnet')]",
            ],
            "properties": {
                "registrationEnabled": False,
                "virtualNetwork": {
                    "id": "[resourceId('Microsoft.Network/virtualNetworks', 'app-vnet')]"
                },
            },
        },
        {
            "type": "Microsoft.Network/privateDnsZones/A",
            "apiVersion": "2020-06-01",
            "name": "[concat(parameters('zone'), '/db')]",
            "dependsOn": ["[resourceId('Microsoft.Network/privateDnsZones', parameters('zone'))]"],
            "properties": {"ttl": 300, "aRecords": [{"ipv4Address": "10.4.1.20"}]},
        },
    ],
    "outputs": {
        "fqdn": {
            "type": "string",
            "value": "[reference(resourceId('Microsoft.Network/privateDnsZones/A', "
            "parameters('zone'), 'db')).fqdn]",
        }
    },
}


def test_a_template_deploys_a_private_dns_zone_link_and_record(server: Any, helpers: Any) -> None:
    sub, rg = helpers.new_sub(), helpers.unique("rg-tpl")
    rm = resources_client(server, sub)
    rm.resource_groups.create_or_update(rg, {"location": "eastus"})
    result = rm.deployments.begin_create_or_update(
        rg, "dns", {"properties": {"mode": "Incremental", "template": DNS_TEMPLATE}}
    ).result()
    assert result.properties.provisioning_state == "Succeeded"
    assert result.properties.outputs["fqdn"]["value"] == "db.contoso.example."
    dns = server.dns_client(sub)
    (link,) = dns.virtual_network_links.list(rg, "contoso.example")
    assert link.name == "app-link" and link.virtual_network.id.endswith("/app-vnet")
    record = dns.record_sets.get(rg, "contoso.example", "A", "db")
    assert [a.ipv4_address for a in record.a_records] == ["10.4.1.20"] and record.ttl == 300
    rm.resource_groups.begin_delete(rg).result()
    assert list(dns.private_zones.list_by_resource_group(rg)) == []
