"""The private link workflow end to end, over HTTPS, driven by azure-mgmt-network."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.mgmt.network.models import PrivateEndpointConnection, PrivateLinkServiceConnectionState

pytestmark = pytest.mark.integration

LOCATION = "eastus"


def _status_and_model(pipeline_response: Any, deserialized: Any, _headers: Any) -> Any:
    return pipeline_response.http_response.status_code, deserialized


def _pe_state(consumer: Any, name: str) -> tuple[str, Any]:
    pe = consumer.client.private_endpoints.get(consumer.rg, name)
    conns = pe.manual_private_link_service_connections or pe.private_link_service_connections
    assert len(conns) == 1
    return conns[0].private_link_service_connection_state.status, pe


def _pls_connections(provider: Any, name: str) -> list[Any]:
    listed = list(
        provider.client.private_link_services.list_private_endpoint_connections(provider.rg, name)
    )
    embedded = (
        provider.client.private_link_services.get(provider.rg, name).private_endpoint_connections
        or []
    )
    assert sorted(c.name for c in listed) == sorted(c.name for c in embedded)
    return listed


def test_full_workflow(backend_server: Any, helpers: Any) -> None:
    world = helpers.World(backend_server)
    provider = world.provider()
    consumer = world.consumer()  # the same 10.0.0.0/16 as the provider: overlap is fine
    pls_name = helpers.unique("pls")
    fqdn = f"{pls_name}.contoso.example"

    # --- provider: VNet + Standard LB + PLS -----------------------------------------------
    pls = provider.create_pls(pls_name, visibility=[consumer.sub], fqdns=[fqdn])
    assert pls.provisioning_state == "Succeeded"
    assert pls.alias.startswith(f"{pls_name}.")
    assert pls.alias.endswith(f".{LOCATION}.azure.privatelinkservice")
    assert pls.visibility.subscriptions == [consumer.sub]
    assert pls.fqdns == [fqdn]
    assert pls.private_endpoint_connections == []
    nat_ip = pls.ip_configurations[0].private_ip_address
    assert ipaddress.ip_address(nat_ip) in ipaddress.ip_network("10.0.3.0/24")
    assert len(pls.network_interfaces) == 1
    pls_nic_id = pls.network_interfaces[0].id

    # --- visibility -----------------------------------------------------------------------
    ops = consumer.client.private_link_services
    body = {"privateLinkServiceAlias": pls.alias}
    assert ops.begin_check_private_link_service_visibility(LOCATION, body).result().visible is True
    by_rg = ops.begin_check_private_link_service_visibility_by_resource_group
    assert by_rg(LOCATION, consumer.rg, body).result().visible is True
    # Another tenant's subscription (the provider's own admin has RBAC rights everywhere).
    elsewhere = world.new_tenant()
    other = elsewhere.client(elsewhere.new_subscription()).private_link_services
    assert (
        other.begin_check_private_link_service_visibility(LOCATION, body).result().visible is False
    )

    # --- consumer: PE by alias, manual ------------------------------------------------------
    pe = consumer.create_pe("pe-manual", pls.alias, message="please approve")
    assert pe.provisioning_state == "Succeeded"
    assert pe.private_link_service_connections in ([], None)
    (conn,) = pe.manual_private_link_service_connections
    assert conn.private_link_service_connection_state.status == "Pending"
    assert conn.request_message == "please approve"

    conns = _pls_connections(provider, pls_name)
    assert len(conns) == 1
    pec = conns[0]
    assert pec.private_link_service_connection_state.status == "Pending"
    assert pec.private_endpoint.id.lower() == pe.id.lower()
    assert pec.id.lower().startswith(
        provider.pls_id(pls_name).lower() + "/privateendpointconnections/"
    )
    got = provider.client.private_link_services.get_private_endpoint_connection(
        provider.rg, pls_name, pec.name
    )
    assert got.name == pec.name

    # --- approve ----------------------------------------------------------------------------
    status, approved = provider.client.private_link_services.update_private_endpoint_connection(
        provider.rg,
        pls_name,
        pec.name,
        PrivateEndpointConnection(
            name=pec.name,
            private_link_service_connection_state=PrivateLinkServiceConnectionState(
                status="Approved", description="ok", actions_required="None"
            ),
        ),
        cls=_status_and_model,
    )
    assert status == 200
    assert approved.private_link_service_connection_state.status == "Approved"
    assert approved.private_endpoint.id.lower() == pe.id.lower()
    state, pe = _pe_state(consumer, "pe-manual")
    assert state == "Approved"
    assert [
        c.private_link_service_connection_state.status for c in _pls_connections(provider, pls_name)
    ] == ["Approved"]

    # --- the PE's NIC and DNS configs ------------------------------------------------------
    (pe_nic_ref,) = pe.network_interfaces
    pe_nic = consumer.client.network_interfaces.get(consumer.rg, pe_nic_ref.id.rsplit("/", 1)[1])
    assert pe_nic.id.lower() == pe_nic_ref.id.lower()
    (pe_ipc,) = pe_nic.ip_configurations
    pe_ip = pe_ipc.private_ip_address
    assert ipaddress.ip_address(pe_ip) in ipaddress.ip_network("10.0.1.0/24")
    assert int(ipaddress.ip_address(pe_ip)) & 0xFF >= 4  # past Azure's reserved addresses
    assert pe_ipc.subnet.id.lower() == consumer.subnet.lower()
    assert [(d.fqdn, d.ip_addresses) for d in pe.custom_dns_configs] == [(fqdn, [pe_ip])]

    # --- the PLS's NIC -----------------------------------------------------------------------
    pls_nic = provider.client.network_interfaces.get(provider.rg, pls_nic_id.rsplit("/", 1)[1])
    assert [c.private_ip_address for c in pls_nic.ip_configurations] == [nat_ip]
    assert pls_nic.ip_configurations[0].subnet.id.lower() == provider.subnet_id("nat").lower()
    assert pls_nic.private_link_service.id.lower() == provider.pls_id(pls_name).lower()

    # --- delete refused while a connection exists -------------------------------------------
    err = helpers.expect_error(
        lambda: provider.client.private_link_services.begin_delete(provider.rg, pls_name).result(),
        409,
        "PrivateLinkServiceHasPrivateEndpointConnections",
    )
    assert isinstance(err, ResourceExistsError)
    assert provider.client.private_link_services.get(provider.rg, pls_name).alias == pls.alias

    # --- reject -----------------------------------------------------------------------------
    status, rejected = provider.client.private_link_services.update_private_endpoint_connection(
        provider.rg,
        pls_name,
        pec.name,
        PrivateEndpointConnection(
            name=pec.name,
            private_link_service_connection_state=PrivateLinkServiceConnectionState(
                status="Rejected", description="no"
            ),
        ),
        cls=_status_and_model,
    )
    assert status == 200
    assert rejected.private_link_service_connection_state.status == "Rejected"
    assert _pe_state(consumer, "pe-manual")[0] == "Rejected"
    assert [
        c.private_link_service_connection_state.status for c in _pls_connections(provider, pls_name)
    ] == ["Rejected"]

    # --- delete the connection --------------------------------------------------------------
    provider.client.private_link_services.begin_delete_private_endpoint_connection(
        provider.rg, pls_name, pec.name
    ).result()
    assert _pe_state(consumer, "pe-manual")[0] == "Disconnected"
    assert _pls_connections(provider, pls_name) == []

    # --- now the PLS can go, and its NIC with it -------------------------------------------
    provider.client.private_link_services.begin_delete(provider.rg, pls_name).result()
    with pytest.raises(ResourceNotFoundError):
        provider.client.private_link_services.get(provider.rg, pls_name)
    with pytest.raises(ResourceNotFoundError) as gone:
        provider.client.network_interfaces.get(provider.rg, pls_nic_id.rsplit("/", 1)[1])
    assert gone.value.status_code == 404
    # The endpoint survives its service (Disconnected) and can be deleted with its NIC.
    consumer.client.private_endpoints.begin_delete(consumer.rg, "pe-manual").result()
    with pytest.raises(ResourceNotFoundError):
        consumer.client.network_interfaces.get(consumer.rg, pe_nic.name)
    world.close()


def test_auto_approval(world: Any, helpers: Any) -> None:
    consumer = world.consumer()
    provider = world.provider()
    pls_name = helpers.unique("pls-auto")
    pls = provider.create_pls(
        pls_name, visibility=[consumer.sub], auto_approval=[consumer.sub], fqdns=["auto.example"]
    )
    assert pls.auto_approval.subscriptions == [consumer.sub]

    pe = consumer.create_pe("pe-auto", pls.id, manual=False)
    assert pe.manual_private_link_service_connections in ([], None)
    (conn,) = pe.private_link_service_connections
    assert conn.private_link_service_connection_state.status == "Approved"
    assert conn.private_link_service_id.lower() == pls.id.lower()
    (pec,) = _pls_connections(provider, pls_name)
    assert pec.private_link_service_connection_state.status == "Approved"
    assert pec.private_endpoint.id.lower() == pe.id.lower()

    ops = consumer.client.private_link_services
    listed = [
        x.private_link_service for x in ops.list_auto_approved_private_link_services(LOCATION)
    ]
    assert [x.lower() for x in listed] == [pls.id.lower()]
    assert list(ops.list_auto_approved_private_link_services("westus")) == []
    outsider = world.server.client(world.existing_subscription()).private_link_services
    assert list(outsider.list_auto_approved_private_link_services(LOCATION)) == []

    nic_name = pe.network_interfaces[0].id.rsplit("/", 1)[1]
    consumer.client.private_endpoints.begin_delete(consumer.rg, "pe-auto").result()
    assert _pls_connections(provider, pls_name) == []
    with pytest.raises(ResourceNotFoundError):
        consumer.client.network_interfaces.get(consumer.rg, nic_name)
    with pytest.raises(ResourceNotFoundError):
        consumer.client.private_endpoints.get(consumer.rg, "pe-auto")
    # No connection left: the service can be deleted.
    provider.client.private_link_services.begin_delete(provider.rg, pls_name).result()


def test_connection_by_resource_id_without_auto_approval(world: Any, helpers: Any) -> None:
    consumer = world.new_tenant().consumer()  # a principal without rights on the service
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[consumer.sub])
    pe = consumer.create_pe("pe", pls.id)
    assert pe.manual_private_link_service_connections[
        0
    ].private_link_service_connection_state.status == ("Pending")
    # An automatic connection needs the approval right on the service (Azure's rule).
    helpers.expect_error(
        lambda: consumer.create_pe("pe-auto", pls.id, manual=False),
        403,
        "LinkedAuthorizationFailed",
    )
