"""A private endpoint's static IP (`ipConfigurations`), NIC name and application security
groups, through azure-mgmt-network against a real server."""

from __future__ import annotations

from typing import Any

import pytest
from azure.mgmt.network import models

pytestmark = pytest.mark.integration

FQDN = "svc.static.example"


def _asg(sub: str, rg: str, name: str) -> str:
    return (
        f"/subscriptions/{sub}/resourceGroups/{rg}"
        f"/providers/Microsoft.Network/applicationSecurityGroups/{name}"
    )


def _endpoint(consumer: Any, target: str, ip: str, **props: Any) -> models.PrivateEndpoint:
    """A manual endpoint to `target` asking for `ip` (SDK models, flattened fields)."""
    return models.PrivateEndpoint(
        location=consumer.location,
        subnet=models.Subnet(id=consumer.subnet),
        manual_private_link_service_connections=[
            models.PrivateLinkServiceConnection(name="conn", private_link_service_id=target)
        ],
        ip_configurations=[
            models.PrivateEndpointIPConfiguration(name="ipc", private_ip_address=ip)
        ],
        **props,
    )


def _put(consumer: Any, name: str, body: Any) -> models.PrivateEndpoint:
    return consumer.client.private_endpoints.begin_create_or_update(
        consumer.rg, name, body
    ).result()


def test_static_ip_nic_name_and_groups_round_trip(world: Any, helpers: Any) -> None:
    provider, consumer = world.provider(), world.consumer()
    pls = provider.create_pls(helpers.unique("pls"), visibility=["*"], fqdns=[FQDN])
    asg = _asg(consumer.sub, consumer.rg, "web")
    body = _endpoint(
        consumer,
        pls.alias,
        "10.0.1.10",
        custom_network_interface_name="pe-nic",
        application_security_groups=[models.ApplicationSecurityGroup(id=asg)],
    )
    created = _put(consumer, "pe", body)
    pe = consumer.client.private_endpoints.get(consumer.rg, "pe")
    for got in (created, pe):
        (config,) = got.ip_configurations
        assert (config.name, config.private_ip_address) == ("ipc", "10.0.1.10")
        assert (config.group_id, config.member_name) == ("", "")
        assert config.type == "Microsoft.Network/privateEndpoints/ipConfigurations"
        assert got.custom_network_interface_name == "pe-nic"
        assert [g.id for g in got.application_security_groups] == [asg]
        assert [(d.fqdn, d.ip_addresses) for d in got.custom_dns_configs] == [(FQDN, ["10.0.1.10"])]
    assert pe.network_interfaces[0].id.rsplit("/", 1)[1] == "pe-nic"
    nic = consumer.client.network_interfaces.get(consumer.rg, "pe-nic")
    (nic_config,) = nic.ip_configurations
    assert nic_config.private_ip_address == "10.0.1.10"
    assert nic_config.private_ip_allocation_method == "Static"
    assert nic.private_endpoint.id.lower() == pe.id.lower()

    # What `az ... update` does: GET, change, PUT it all back. The groups may change.
    pe.tags = {"env": "test"}
    pe.application_security_groups = [
        models.ApplicationSecurityGroup(id=_asg(consumer.sub, consumer.rg, "db"))
    ]
    updated = _put(consumer, "pe", pe)
    assert updated.tags == {"env": "test"}
    assert updated.ip_configurations[0].private_ip_address == "10.0.1.10"
    assert [g.id.rsplit("/", 1)[1] for g in updated.application_security_groups] == ["db"]

    # Approval leaves the address where it is.
    (conn,) = provider.client.private_link_services.list_private_endpoint_connections(
        provider.rg, pls.name
    )
    conn.private_link_service_connection_state.status = "Approved"
    provider.client.private_link_services.update_private_endpoint_connection(
        provider.rg, pls.name, conn.name, conn
    )
    approved = consumer.client.private_endpoints.get(consumer.rg, "pe")
    state = approved.manual_private_link_service_connections[0]
    assert state.private_link_service_connection_state.status == "Approved"
    assert approved.ip_configurations[0].private_ip_address == "10.0.1.10"


def test_static_ip_is_checked_like_any_static_ip(world: Any, helpers: Any) -> None:
    provider, consumer = world.provider(), world.consumer()
    pls = provider.create_pls(helpers.unique("pls"), visibility=["*"])
    expect = helpers.expect_error
    _put(consumer, "a", _endpoint(consumer, pls.alias, "10.0.1.20"))
    for ip, code in (
        ("10.0.1.20", "PrivateIPAddressIsAllocated"),
        ("10.0.2.20", "PrivateIPAddressNotInSubnet"),
        ("10.0.1.3", "PrivateIPAddressInReservedRange"),
        ("10.0.1.255", "PrivateIPAddressInReservedRange"),
        ("10.0.1.300", "PrivateIPAddressInvalid"),
    ):
        expect(lambda ip=ip: _put(consumer, "b", _endpoint(consumer, pls.alias, ip)), 400, code)
    with_group = _endpoint(consumer, pls.alias, "10.0.1.21")
    with_group.ip_configurations[0].group_id = "vault"
    expect(
        lambda: _put(consumer, "b", with_group),
        400,
        "PrivateEndpointWithIpConfigurationsCannotHaveGroupIdsOrMemberNames",
    )
    two = _endpoint(consumer, pls.alias, "10.0.1.21")
    two.ip_configurations.append(
        models.PrivateEndpointIPConfiguration(name="second", private_ip_address="10.0.1.22")
    )
    expect(lambda: _put(consumer, "b", two), 400, "PrivateEndpointTooManyIpConfigurations")
    bad_group = _endpoint(
        consumer,
        pls.alias,
        "10.0.1.21",
        application_security_groups=[models.ApplicationSecurityGroup(id="/not/an/asg")],
    )
    expect(lambda: _put(consumer, "b", bad_group), 400, "LinkedInvalidPropertyId")
    assert [pe.name for pe in consumer.client.private_endpoints.list(consumer.rg)] == ["a"]
    # A refused endpoint left nothing behind; a deleted one frees its address.
    consumer.client.private_endpoints.begin_delete(consumer.rg, "a").result()
    again = _put(consumer, "b", _endpoint(consumer, pls.alias, "10.0.1.20"))
    assert again.ip_configurations[0].private_ip_address == "10.0.1.20"


def test_address_and_nic_name_are_fixed_at_creation(world: Any, helpers: Any) -> None:
    provider, consumer = world.provider(), world.consumer()
    pls = provider.create_pls(helpers.unique("pls"), visibility=["*"])
    expect = helpers.expect_error
    _put(
        consumer,
        "pe",
        _endpoint(consumer, pls.alias, "10.0.1.30", custom_network_interface_name="n1"),
    )
    moved = _endpoint(consumer, pls.alias, "10.0.1.31", custom_network_interface_name="n1")
    expect(
        lambda: _put(consumer, "pe", moved), 400, "PrivateEndpointIpConfigurationsCannotBeModified"
    )
    dropped = _endpoint(consumer, pls.alias, "10.0.1.30", custom_network_interface_name="n1")
    dropped.ip_configurations = []
    expect(
        lambda: _put(consumer, "pe", dropped),
        400,
        "PrivateEndpointIpConfigurationsCannotBeModified",
    )
    renamed = _endpoint(consumer, pls.alias, "10.0.1.30", custom_network_interface_name="n2")
    expect(
        lambda: _put(consumer, "pe", renamed),
        400,
        "NameOfExistingPrivateEndpointNicCannotBeChanged",
    )
    unnamed = _endpoint(consumer, pls.alias, "10.0.1.30")
    expect(
        lambda: _put(consumer, "pe", unnamed),
        400,
        "NameOfExistingPrivateEndpointNicCannotBeChanged",
    )
    nic = consumer.client.network_interfaces.get(consumer.rg, "n1")
    assert nic.ip_configurations[0].private_ip_address == "10.0.1.30"
