"""ARM request bodies of the provider topology that tests build through azure-mgmt-network.

A VNet 10.0.0.0/16 with subnets `frontend`, `backend` and `nat`, and an internal load
balancer on `frontend` whose rules go to backend port 8080 with a TCP probe there. Shared
by the integration builders (tests/integration/conftest.py) and the netns tests that drive
a real server process (tests/netns/test_graceful_shutdown.py), so the shape is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Rule:
    """One load-balancing rule: `frontend`:`port` -> `pool`:8080."""

    name: str
    frontend: str
    pool: str
    protocol: str = "Tcp"
    port: int = 80


def provider_vnet_body(location: str, *, nat_policies: str = "Disabled") -> dict[str, Any]:
    """The provider VNet; `nat_policies=""` leaves the NAT subnet's policies unset."""
    nat_props: dict[str, Any] = {"addressPrefix": "10.0.3.0/24"}
    if nat_policies:
        nat_props["privateLinkServiceNetworkPolicies"] = nat_policies
    return {
        "location": location,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [
                {"name": "frontend", "properties": {"addressPrefix": "10.0.1.0/24"}},
                {"name": "backend", "properties": {"addressPrefix": "10.0.2.0/24"}},
                {"name": "nat", "properties": nat_props},
            ],
        },
    }


def lb_body(
    lb_id: str,
    frontend_subnet: str,
    location: str,
    *,
    sku: str = "Standard",
    frontends: tuple[str, ...] = ("fe",),
    pools: tuple[str, ...] = ("be",),
    rules: list[Rule],
) -> dict[str, Any]:
    """The load balancer `lb_id`: dynamic frontends in `frontend_subnet`, a TCP probe on 8080."""
    return {
        "location": location,
        "sku": {"name": sku, "tier": "Regional"},
        "properties": {
            "frontendIPConfigurations": [
                {
                    "name": f,
                    "properties": {
                        "privateIPAllocationMethod": "Dynamic",
                        "subnet": {"id": frontend_subnet},
                    },
                }
                for f in frontends
            ],
            "backendAddressPools": [{"name": b} for b in pools],
            "probes": [
                {
                    "name": "tcp-8080",
                    "properties": {
                        "protocol": "Tcp",
                        "port": 8080,
                        "intervalInSeconds": 5,
                        "numberOfProbes": 2,
                    },
                }
            ],
            "loadBalancingRules": [
                {
                    "name": r.name,
                    "properties": {
                        "protocol": r.protocol,
                        "frontendPort": r.port,
                        "backendPort": 8080,
                        "idleTimeoutInMinutes": 4,
                        "enableFloatingIP": False,
                        "frontendIPConfiguration": {
                            "id": f"{lb_id}/frontendIPConfigurations/{r.frontend}"
                        },
                        "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/{r.pool}"},
                        "probe": {"id": f"{lb_id}/probes/tcp-8080"},
                    },
                }
                for r in rules
            ],
        },
    }


def nic_body(subnet: str, location: str, *pools: str) -> dict[str, Any]:
    """A NIC (a VM) in `subnet`, a member of the backend `pools` (ids) when given."""
    props: dict[str, Any] = {"subnet": {"id": subnet}}
    if pools:
        props["loadBalancerBackendAddressPools"] = [{"id": p} for p in pools]
    return {
        "location": location,
        "properties": {"ipConfigurations": [{"name": "ip", "properties": props}]},
    }


def pls_body(
    frontend: str, nat_subnet: str, location: str, *, visibility: list[str] | None = None
) -> dict[str, Any]:
    """A private link service on `frontend` (an id) with one dynamic NAT IP in `nat_subnet`."""
    props: dict[str, Any] = {
        "loadBalancerFrontendIpConfigurations": [{"id": frontend}],
        "ipConfigurations": [
            {
                "name": "nat-1",
                "properties": {
                    "privateIPAllocationMethod": "Dynamic",
                    "subnet": {"id": nat_subnet},
                    "primary": True,
                },
            }
        ],
    }
    if visibility is not None:
        props["visibility"] = {"subscriptions": visibility}
    return {"location": location, "properties": props}
