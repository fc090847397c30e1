"""Direct Connect private link services with the real azure-cli.

The pinned azure-cli (2.91.0) has `az network private-link-service create
--destination-ip-address` (api-version 2024-03-01) and `--ip-configurations`, a JSON list
of NAT IP configurations (added for Direct Connect, which needs at least two: Azure/
azure-cli issue 31727), so nothing here needs `az resource`. Its `update` GETs and PUTs
the whole service, destination included.

The network and the load balancer are built through azure-mgmt-network (no az runs
needed for them); five az runs follow.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

pytestmark = pytest.mark.az

LOCATION = "eastus"


def _ip_configurations(subnet: str, n: int) -> str:
    """--ip-configurations as az's shorthand JSON: n dynamic NAT IPs, the first primary."""
    return json.dumps(
        [
            {
                "name": f"ipconfig{i}",
                "primary": i == 0,
                "private-ip-allocation-method": "Dynamic",
                "subnet": {"id": subnet},
            }
            for i in range(n)
        ]
    )


def test_direct_connect_with_az(
    az: Any,
    az_server: Any,
    az_helpers: Any,
    network: NetworkManagementClient,
    provider_lb: Any,
) -> None:
    rg = az_helpers.unique("rg-dc")
    base = provider_lb(rg)
    nat = f"{base}/virtualNetworks/vnet/subnets/nat"
    create = ("network", "private-link-service", "create", "-g", rg, "-l", LOCATION)

    # One NAT IP (what az makes from --vnet-name/--subnet) is refused: Direct Connect needs
    # 2 to 8, in multiples of 2.
    az.fails(
        *create,
        *("-n", "one", "--destination-ip-address", "10.0.2.9"),
        *("--vnet-name", "vnet", "--subnet", "nat"),
        code="PrivateLinkServiceDirectConnectNatIpConfigurationCountInvalid",
    )

    pls = az.json(
        *create,
        *("-n", "dc", "--destination-ip-address", "10.0.2.9"),
        *("--ip-configurations", _ip_configurations(nat, 2)),
        *("--visibility", az_server.subscription),
    )
    assert pls["provisioningState"] == "Succeeded"
    assert pls["destinationIPAddress"] == "10.0.2.9"
    assert not pls.get("loadBalancerFrontendIpConfigurations")
    assert [c["privateIPAddress"] for c in pls["ipConfigurations"]] == ["10.0.3.4", "10.0.3.5"]
    assert network.private_link_services.get(rg, "dc").destination_ip_address == "10.0.2.9"

    # az's update PUTs the whole service back: a new destination, or other fields with the
    # destination kept.
    moved = az.json(
        *("network", "private-link-service", "update", "-g", rg, "-n", "dc"),
        *("--destination-ip-address", "10.0.2.10", "--fqdns", "db.example"),
    )
    assert (moved["destinationIPAddress"], moved["fqdns"]) == ("10.0.2.10", ["db.example"])

    # Adding the load balancer's frontend to it is refused (one or the other, no migration).
    az.fails(
        *("network", "private-link-service", "update", "-g", rg, "-n", "dc"),
        *("--lb-name", "lb", "--lb-frontend-ip-configs", "fe"),
        code="PrivateLinkServiceDestinationIPAddressWithLoadBalancerFrontends",
    )
    shown = az.json("network", "private-link-service", "show", "-g", rg, "-n", "dc")
    assert shown["destinationIPAddress"] == "10.0.2.10"
    assert not shown.get("loadBalancerFrontendIpConfigurations")
