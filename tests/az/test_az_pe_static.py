"""The real azure-cli: `az network private-endpoint create --ip-config ... --nic-name ...
--asg ...`, then `show`, the managed NIC, and the refusals of a taken address and of a
changed one (`az network private-endpoint ip-config remove`).

The service side is the least az can make: a VNet with subnets `fe` (the load balancer's
frontend, and the endpoints) and `nat`, a Standard load balancer and the service (no
rule: a service needs only the frontend). Ten az runs, the two refusals at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytestmark = pytest.mark.az

LOCATION = "eastus"
NET = "Microsoft.Network"
FQDN = "static.contoso.example"
STATIC_IP = "10.0.1.10"


def _create_pe(rg: str, name: str, pls_id: str, *extra: str) -> tuple[str, ...]:
    return (
        *("network", "private-endpoint", "create", "-g", rg, "-n", name),
        *("--vnet-name", "vnet", "--subnet", "fe"),
        *("--private-connection-resource-id", pls_id, "--connection-name", f"{name}-conn"),
        *("--manual-request", "true", *extra),
    )


def _service(az: Any, rg: str) -> str:
    """VNet, load balancer and private link service in a new group: the service's id."""
    az.run("group", "create", "-n", rg, "-l", LOCATION, "-o", "none")
    az.run(
        *("network", "vnet", "create", "-g", rg, "-n", "vnet"),
        *("--address-prefixes", "10.0.0.0/16", "--subnet-name", "fe"),
        *("--subnet-prefixes", "10.0.1.0/24", "-o", "none"),
    )
    az.run(
        *("network", "vnet", "subnet", "create", "-g", rg, "--vnet-name", "vnet", "-n", "nat"),
        *("--address-prefixes", "10.0.3.0/24"),
        *("--disable-private-link-service-network-policies", "true", "-o", "none"),
    )
    az.run(
        *("network", "lb", "create", "-g", rg, "-n", "lb", "--sku", "Standard"),
        *("--vnet-name", "vnet", "--subnet", "fe", "--frontend-ip-name", "fe"),
        *("--backend-pool-name", "be", "-o", "none"),
    )
    return str(
        az.tsv(
            *("network", "private-link-service", "create", "-g", rg, "-n", "pls"),
            *("--vnet-name", "vnet", "--subnet", "nat", "--lb-name", "lb"),
            *("--lb-frontend-ip-configs", "fe", "--fqdns", FQDN, "--query", "id"),
        )
    )


def test_static_ip_nic_name_and_asg(az_exe: str, az: Any, az_helpers: Any) -> None:
    rg = az_helpers.unique("rg-static")
    pls_id = _service(az, rg)
    # An application security group id in the same group (ids are stored, not looked up).
    asg_id = f"{pls_id.split('/providers/')[0]}/providers/{NET}/applicationSecurityGroups/web"

    created = az.json(
        *_create_pe(rg, "pe", pls_id),
        *("--ip-config", "name=ipc", f"private-ip-address={STATIC_IP}"),
        *("--nic-name", "pe-nic", "--asg", f"id={asg_id}"),
    )
    shown = az.json("network", "private-endpoint", "show", "-g", rg, "-n", "pe")
    for pe in (created, shown):
        (config,) = pe["ipConfigurations"]
        assert config["name"] == "ipc"
        assert config["privateIPAddress"] == STATIC_IP
        assert pe["customNetworkInterfaceName"] == "pe-nic"
        assert pe["networkInterfaces"][0]["id"].endswith("/networkInterfaces/pe-nic")
        assert [g["id"] for g in pe["applicationSecurityGroups"]] == [asg_id]
        assert pe["customDnsConfigs"] == [{"fqdn": FQDN, "ipAddresses": [STATIC_IP]}]

    nic = az.tsv(
        *("network", "nic", "show", "-g", rg, "-n", "pe-nic"),
        *("--query", "ipConfigurations[0].[privateIPAddress, privateIPAllocationMethod]"),
    )
    assert nic.split() == [STATIC_IP, "Static"]

    taken = (
        *_create_pe(rg, "pe2", pls_id),
        *("--ip-config", "name=ipc", f"private-ip-address={STATIC_IP}"),
    )
    removed = (
        *("network", "private-endpoint", "ip-config", "remove"),
        *("-g", rg, "--endpoint-name", "pe", "-n", "ipc"),
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(az.fails, *taken, code="PrivateIPAddressIsAllocated"),
            pool.submit(az.fails, *removed, code="PrivateEndpointIpConfigurationsCannotBeModified"),
        ]
        for future in futures:
            future.result()
