"""accessMode with the real azure-cli: set it, read it, and keep it across az's own updates.

The pinned azure-cli (2.91.0, the newest release) has no `--access-mode`: its
`network private-link-service` commands speak api-version 2024-03-01, which predates
accessMode (first in the 2025-01-01 REST spec), so `create --access-mode` is an
unrecognized argument, `update --set accessMode=...` is refused by az itself and `show`
leaves the field out. What works with it is the generic resource command at a newer
api-version: `az resource update --set properties.accessMode=Restricted`. Then
`az network private-link-service update` (a GET and a PUT at 2024-03-01, without
accessMode) must not reset the service to Default: the server keeps a mode a PUT omits.

The network and the load balancer are built through azure-mgmt-network (no az runs
needed for them); four az runs follow.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

pytestmark = pytest.mark.az

LOCATION = "eastus"
API = "2025-05-01"  # a version with accessMode, for `az resource`


def test_restricted_with_az(
    az_exe: str,
    az: Any,
    az_server: Any,
    az_helpers: Any,
    network: NetworkManagementClient,
    provider_lb: Any,
) -> None:
    rg = az_helpers.unique("rg-am")
    provider_lb(rg)

    pls = az.json(
        *("network", "private-link-service", "create", "-g", rg, "-n", "pls", "-l", LOCATION),
        *("--vnet-name", "vnet", "--subnet", "nat", "--lb-name", "lb"),
        *("--lb-frontend-ip-configs", "fe", "--visibility", az_server.subscription),
    )
    assert pls["provisioningState"] == "Succeeded"
    assert "accessMode" not in pls  # az 2.91's schema (2024-03-01) has no such field
    assert network.private_link_services.get(rg, "pls").access_mode == "Default"

    # Enums are case-insensitive; the server answers the canonical spelling.
    mode = az.tsv(
        *("resource", "update", "--ids", pls["id"], "--api-version", API),
        *("--set", "properties.accessMode=restricted", "--query", "properties.accessMode"),
    )
    assert mode == "Restricted"

    # az's own update PUTs the whole service at 2024-03-01, without accessMode.
    az.run(
        *("network", "private-link-service", "update", "-g", rg, "-n", "pls"),
        *("--fqdns", "db.example", "-o", "none"),
    )
    shown = az.json(
        "resource", "show", "--ids", pls["id"], "--api-version", API, "--query", "properties"
    )
    assert (shown["accessMode"], shown["fqdns"]) == ("Restricted", ["db.example"])
    assert shown["visibility"]["subscriptions"] == [az_server.subscription]
