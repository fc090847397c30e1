"""enableProxyProtocol with the real azure-cli: `create --enable-proxy-protocol` and
`update --enable-proxy-protocol` turn the PROXY path on and off (the data path itself is
tested on namespaces: tests/netns/test_proxy.py).

The network and the load balancer are built through azure-mgmt-network; three az runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

pytestmark = pytest.mark.az

LOCATION = "eastus"


def test_proxy_protocol_on_and_off_with_az(
    az: Any,
    az_server: Any,
    az_helpers: Any,
    network: NetworkManagementClient,
    provider_lb: Any,
) -> None:
    rg = az_helpers.unique("rg-pp")
    provider_lb(rg)

    pls = az.json(
        *("network", "private-link-service", "create", "-g", rg, "-n", "pls", "-l", LOCATION),
        *("--vnet-name", "vnet", "--subnet", "nat", "--lb-name", "lb"),
        *("--lb-frontend-ip-configs", "fe", "--enable-proxy-protocol", "true"),
    )
    assert (pls["provisioningState"], pls["enableProxyProtocol"]) == ("Succeeded", True)
    assert network.private_link_services.get(rg, "pls").enable_proxy_protocol is True

    off = az.json(
        *("network", "private-link-service", "update", "-g", rg, "-n", "pls"),
        *("--enable-proxy-protocol", "false"),
    )
    assert (off["provisioningState"], off["enableProxyProtocol"]) == ("Succeeded", False)
    shown = az.json("network", "private-link-service", "show", "-g", rg, "-n", "pls")
    assert shown["enableProxyProtocol"] is False
