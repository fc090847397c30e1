"""Direct Connect private link services (destinationIPAddress) through azure-mgmt-network
33.1.0 (`PrivateLinkService.destination_ip_address`, wire `destinationIPAddress`) against a
real server: created, read back, listed, connected and approved as any service; every
rule refused synchronously with its code, leaving nothing behind.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.network import models

pytestmark = pytest.mark.integration

DESTINATION = "10.0.2.9"  # in the provider VNet's backend subnet (10.0.2.0/24)


def _nats(provider: Any, n: int = 2) -> list[models.PrivateLinkServiceIpConfiguration]:
    return [
        models.PrivateLinkServiceIpConfiguration(
            name=f"nat-{i}",
            primary=i == 0,
            private_ip_allocation_method="Dynamic",
            subnet=models.Subnet(id=provider.subnet_id("nat")),
        )
        for i in range(n)
    ]


def _direct(provider: Any, destination: str = DESTINATION, **kw: Any) -> models.PrivateLinkService:
    """A Direct Connect service body as SDK users write it (flattened properties)."""
    kw.setdefault("ip_configurations", _nats(provider))
    return models.PrivateLinkService(
        location=provider.location, destination_ip_address=destination, **kw
    )


def _put(provider: Any, name: str, body: Any) -> models.PrivateLinkService:
    return provider.client.private_link_services.begin_create_or_update(
        provider.rg, name, body
    ).result()


def _refused(helpers: Any, provider: Any, body: Any, code: str) -> None:
    name = helpers.unique("dc")
    helpers.expect_error(lambda: _put(provider, name, body), 400, code)
    with pytest.raises(ResourceNotFoundError):
        provider.client.private_link_services.get(provider.rg, name)
    nics = [n.name for n in provider.client.network_interfaces.list(provider.rg)]
    assert not [n for n in nics if n.startswith(f"{name}.")], nics


def test_create_read_list_and_connect(world: Any, helpers: Any) -> None:
    provider, consumer = world.provider(), world.consumer()
    name = helpers.unique("dc")
    created = _put(provider, name, _direct(provider, visibility={"subscriptions": ["*"]}))
    got = provider.client.private_link_services.get(provider.rg, name)
    for pls in (created, got):
        assert pls.destination_ip_address == DESTINATION
        assert not pls.load_balancer_frontend_ip_configurations
        assert [c.private_ip_address for c in pls.ip_configurations] == ["10.0.3.4", "10.0.3.5"]
        assert pls.provisioning_state == "Succeeded"
    listed = {p.name: p for p in provider.client.private_link_services.list(provider.rg)}
    assert listed[name].destination_ip_address == DESTINATION
    # The wire name is Azure's: destinationIPAddress.
    raw = provider.server.http.get(
        f"{provider.pls_id(name)}?api-version={helpers.API_VERSION}"
    ).json()
    assert raw["properties"]["destinationIPAddress"] == DESTINATION
    assert raw["properties"]["loadBalancerFrontendIpConfigurations"] == []
    # The same connection workflow as any service: pending, then approved.
    consumer.create_pe("pe", got.alias, message="direct")
    ops = provider.client.private_link_services
    (conn,) = ops.list_private_endpoint_connections(provider.rg, name)
    assert conn.private_link_service_connection_state.status == "Pending"
    conn.private_link_service_connection_state = models.PrivateLinkServiceConnectionState(
        status="Approved", description="ok", actions_required="None"
    )
    ops.update_private_endpoint_connection(provider.rg, name, conn.name, conn)
    pe = consumer.client.private_endpoints.get(consumer.rg, "pe")
    (local,) = pe.manual_private_link_service_connections
    assert local.private_link_service_connection_state.status == "Approved"


def test_an_update_keeps_or_changes_the_destination(world: Any, helpers: Any) -> None:
    provider = world.provider()
    name = helpers.unique("dc")
    pls = _put(provider, name, _direct(provider))
    # GET, change, PUT back: the SDK user's update.
    pls.destination_ip_address = "10.0.2.10"
    assert _put(provider, name, pls).destination_ip_address == "10.0.2.10"
    # A client on an api-version without the field rewrites the service without it.
    url = f"{provider.pls_id(name)}?api-version=2023-09-01"
    body = provider.server.http.get(url).json()
    del body["properties"]["destinationIPAddress"]
    reply = provider.server.http.put(url, json=body)
    assert reply.status_code == 200, reply.text
    got = provider.client.private_link_services.get(provider.rg, name)
    assert got.destination_ip_address == "10.0.2.10"


def test_no_migration_between_load_balancer_and_direct_connect(world: Any, helpers: Any) -> None:
    provider = world.provider()
    code = "PrivateLinkServiceDirectConnectMigrationNotSupported"
    lb_name, dc_name = helpers.unique("pls"), helpers.unique("dc")
    provider.create_pls(lb_name, nats=[provider.nat("n1"), provider.nat("n2", primary=False)])
    _put(provider, dc_name, _direct(provider))
    to_direct = provider.client.private_link_services.get(provider.rg, lb_name)
    to_direct.load_balancer_frontend_ip_configurations = []
    to_direct.destination_ip_address = DESTINATION
    helpers.expect_error(lambda: _put(provider, lb_name, to_direct), 400, code)
    to_lb = provider.client.private_link_services.get(provider.rg, dc_name)
    to_lb.destination_ip_address = None
    to_lb.load_balancer_frontend_ip_configurations = [
        models.FrontendIPConfiguration(id=provider.fe_id())
    ]
    helpers.expect_error(lambda: _put(provider, dc_name, to_lb), 400, code)
    assert (
        provider.client.private_link_services.get(provider.rg, dc_name).destination_ip_address
        == DESTINATION
    )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"destination": "not-an-ip"}, "PrivateLinkServiceDestinationIPAddressInvalid"),
        ({"destination": "fd00::9"}, "PrivateLinkServiceIPv6NotSupported"),
        ({"destination": "10.9.0.9"}, "PrivateLinkServiceDestinationIPAddressNotInVnet"),
        ({"destination": "10.0.2.0"}, "PrivateIPAddressInReservedRange"),
        ({"nats": 1}, "PrivateLinkServiceDirectConnectNatIpConfigurationCountInvalid"),
        ({"nats": 3}, "PrivateLinkServiceDirectConnectNatIpConfigurationCountInvalid"),
        ({"frontend": True}, "PrivateLinkServiceDestinationIPAddressWithLoadBalancerFrontends"),
        ({"proxy": True}, "UnsupportedProperty"),
    ],
)
def test_rules_are_refused_with_their_codes(
    world: Any, helpers: Any, change: dict[str, Any], code: str
) -> None:
    provider = world.provider()
    kw: dict[str, Any] = {"ip_configurations": _nats(provider, change.get("nats", 2))}
    if change.get("frontend"):
        kw["load_balancer_frontend_ip_configurations"] = [
            models.FrontendIPConfiguration(id=provider.fe_id())
        ]
    if change.get("proxy"):
        kw["enable_proxy_protocol"] = True
    body = _direct(provider, change.get("destination", DESTINATION), **kw)
    _refused(helpers, provider, body, code)


def test_a_nat_ip_or_a_frontend_cannot_be_the_destination(world: Any, helpers: Any) -> None:
    provider = world.provider()
    other = provider.create_pls(helpers.unique("pls"))
    nat_ip = other.ip_configurations[0].private_ip_address
    _refused(
        helpers,
        provider,
        _direct(provider, nat_ip),
        "PrivateLinkServiceDestinationIPAddressIsNatIp",
    )
    lb = provider.client.load_balancers.get(provider.rg, provider.lb)
    frontend_ip = lb.frontend_ip_configurations[0].private_ip_address
    _refused(
        helpers,
        provider,
        _direct(provider, frontend_ip),
        "PrivateLinkServiceDestinationIPAddressNotSupported",
    )
