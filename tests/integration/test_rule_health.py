"""A load-balancing rule's backend health through the unmodified SDK (`begin_health`).

The shared server runs without a data plane: every backend is there, with no state and
reason "NA" (nothing probes it); tests/netns/test_rule_health.py sees real probes.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

pytestmark = pytest.mark.integration


def test_the_sdk_reads_a_rules_backends(world: Any) -> None:
    p = world.provider()
    nic = p.client.network_interfaces.begin_create_or_update(
        p.rg,
        "nic-b0",
        {
            "location": p.location,
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "properties": {
                            "subnet": {"id": p.subnet_id("backend")},
                            "loadBalancerBackendAddressPools": [{"id": p.pool_id("be")}],
                        },
                    }
                ]
            },
        },
    ).result()
    rules = p.client.load_balancer_load_balancing_rules
    health = rules.begin_health(p.rg, p.lb, "rule-fe").result()
    assert (health.up, health.down) == (0, 0)
    (address,) = health.load_balancer_backend_addresses
    assert address.ip_address == nic.ip_configurations[0].private_ip_address
    assert address.network_interface_ip_configuration_id.lower() == (
        nic.ip_configurations[0].id.lower()
    )
    assert address.state is None
    assert address.reason == "NA"

    with pytest.raises(ResourceNotFoundError) as info:
        rules.begin_health(p.rg, p.lb, "no-such-rule").result()
    assert info.value.status_code == 404
    assert isinstance(info.value, HttpResponseError)
    assert info.value.error is not None and info.value.error.code == "ResourceNotFound"
