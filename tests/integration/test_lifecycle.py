"""Lifecycle rules and consistency a user of the SDK relies on, beyond the happy path."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.identity import ClientSecretCredential
from azure.mgmt.network.models import PrivateLinkServiceConnectionState

pytestmark = pytest.mark.integration


def _connected(world: Any, helpers: Any, **pls_kw: Any) -> tuple[Any, Any, Any, str]:
    consumer = world.consumer()
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[consumer.sub], **pls_kw)
    consumer.create_pe("pe", pls.alias, message="hello")
    (conn,) = provider.client.private_link_services.list_private_endpoint_connections(
        provider.rg, pls.name
    )
    return provider, consumer, pls, conn.name


def _set_state(provider: Any, pls_name: str, conn_name: str, status: str) -> Any:
    ops = provider.client.private_link_services
    conn = ops.get_private_endpoint_connection(provider.rg, pls_name, conn_name)
    # Mutate the object from a GET and send it back, as SDK users do (contract 6.7).
    conn.private_link_service_connection_state = PrivateLinkServiceConnectionState(
        status=status, description=f"set {status}", actions_required="None"
    )
    return ops.update_private_endpoint_connection(provider.rg, pls_name, conn_name, conn)


def test_connection_details_on_both_sides(world: Any, helpers: Any) -> None:
    provider, consumer, pls, conn_name = _connected(world, helpers)
    conn = provider.client.private_link_services.get_private_endpoint_connection(
        provider.rg, pls.name, conn_name
    )
    assert conn.type == "Microsoft.Network/privateLinkServices/privateEndpointConnections"
    assert conn.link_identifier and conn.link_identifier.isdigit()
    assert conn.private_endpoint_location == "eastus"
    assert conn.private_link_service_connection_state.description == "hello"
    pe = consumer.client.private_endpoints.get(consumer.rg, "pe", expand="networkInterfaces")
    (local,) = pe.manual_private_link_service_connections
    assert local.private_link_service_id  # the alias (or id) it was created with
    # $expand on a GET is accepted.
    provider.client.private_link_services.get(provider.rg, pls.name, expand="networkInterfaces")


def test_connection_state_machine(world: Any, helpers: Any) -> None:
    provider, consumer, pls, conn_name = _connected(world, helpers)
    for status in ("Approved", "Rejected"):
        conn = _set_state(provider, pls.name, conn_name, status)
        assert conn.private_link_service_connection_state.status == status
    helpers.expect_error(
        lambda: _set_state(provider, pls.name, conn_name, "Approved"),
        400,
        "PrivateEndpointConnectionStatusTransitionNotAllowed",
    )
    helpers.expect_error(
        lambda: _set_state(provider, pls.name, conn_name, "Pending"),
        400,
        "InvalidPrivateEndpointConnectionStatus",
    )
    pe = consumer.client.private_endpoints.get(consumer.rg, "pe")
    (local,) = pe.manual_private_link_service_connections
    assert local.private_link_service_connection_state.status == "Rejected"


def test_missing_connection_is_404_and_delete_is_idempotent(world: Any, helpers: Any) -> None:
    provider, _consumer, pls, conn_name = _connected(world, helpers)
    ops = provider.client.private_link_services
    with pytest.raises(ResourceNotFoundError):
        ops.get_private_endpoint_connection(provider.rg, pls.name, "nope")
    helpers.expect_error(
        lambda: ops.update_private_endpoint_connection(
            provider.rg,
            pls.name,
            "nope",
            {"properties": {"privateLinkServiceConnectionState": {"status": "Approved"}}},
        ),
        404,
        "PrivateEndpointConnectionNotFound",
    )
    ops.begin_delete_private_endpoint_connection(provider.rg, pls.name, conn_name).result()
    ops.begin_delete_private_endpoint_connection(provider.rg, pls.name, conn_name).result()
    assert list(ops.list_private_endpoint_connections(provider.rg, pls.name)) == []


def test_private_endpoint_put_again_is_idempotent(world: Any, helpers: Any) -> None:
    provider, consumer, pls, _ = _connected(world, helpers)
    first = consumer.client.private_endpoints.get(consumer.rg, "pe")
    again = consumer.create_pe("pe", pls.alias, message="hello")
    assert again.network_interfaces[0].id == first.network_interfaces[0].id
    assert again.custom_dns_configs == first.custom_dns_configs
    assert (
        len(
            list(
                provider.client.private_link_services.list_private_endpoint_connections(
                    provider.rg, pls.name
                )
            )
        )
        == 1
    )
    helpers.expect_error(
        lambda: consumer.create_pe("pe", pls.alias, conn="renamed"),
        400,
        "PrivateEndpointConnectionCannotBeModified",
    )


def test_in_use_resources_cannot_be_deleted(world: Any, helpers: Any) -> None:
    provider, consumer, pls, _ = _connected(world, helpers)
    err = helpers.expect_error(
        lambda: provider.client.load_balancers.begin_delete(provider.rg, provider.lb).result(),
        409,
        "LoadBalancerInUseByPrivateLinkService",
    )
    assert isinstance(err, ResourceExistsError)
    assert provider.client.load_balancers.get(provider.rg, provider.lb).name == provider.lb

    # Removing the frontend a PLS sits on is refused, the load balancer stays as it was.
    lb = provider.client.load_balancers.get(provider.rg, provider.lb)
    body = world.lb_body(provider, frontends=("other",), rules=[helpers.Rule("r", "other", "be")])
    with pytest.raises(HttpResponseError) as info:
        provider.client.load_balancers.begin_create_or_update(
            provider.rg, provider.lb, body
        ).result()
    assert 400 <= info.value.status_code < 500
    assert provider.client.load_balancers.get(provider.rg, provider.lb).etag == lb.etag

    # The PLS NIC is managed: users cannot delete it.
    nic = pls.network_interfaces[0].id.rsplit("/", 1)[1]
    with pytest.raises(HttpResponseError) as info:
        provider.client.network_interfaces.begin_delete(provider.rg, nic).result()
    assert 400 <= info.value.status_code < 500
    assert info.value.error.code == "CannotModifyNetworkInterfaceManagedByService"
    provider.client.network_interfaces.get(provider.rg, nic)

    # The consumer VNet holds the endpoint's address: it cannot go either.
    with pytest.raises(HttpResponseError) as info:
        consumer.client.virtual_networks.begin_delete(consumer.rg, consumer.vnet).result()
    assert 400 <= info.value.status_code < 500
    consumer.client.virtual_networks.get(consumer.rg, consumer.vnet)


def test_addresses_are_released_and_reused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    first = provider.create_pls(helpers.unique("pls"), visibility=["*"])
    ip = first.ip_configurations[0].private_ip_address
    assert ip == "10.0.3.4"  # lowest non-reserved address of the NAT subnet
    provider.client.private_link_services.begin_delete(provider.rg, first.name).result()
    # A refused create holds no address either.
    nine = [provider.nat(f"n{i}", primary=i == 0) for i in range(9)]
    with pytest.raises(HttpResponseError):
        provider.client.private_link_services.begin_create_or_update(
            provider.rg, helpers.unique("pls"), provider.pls_body(nats=nine)
        ).result()
    second = provider.create_pls(helpers.unique("pls"))
    assert second.ip_configurations[0].private_ip_address == ip
    assert second.alias != first.alias


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_endpoints_get_distinct_addresses(
    request: pytest.FixtureRequest, helpers: Any, store: str
) -> None:
    server = request.getfixturevalue("server" if store == "sqlite" else "pg_server")
    world = helpers.World(server)
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=["*"])
    consumers = [world.consumer() for _ in range(2)]
    jobs = [(consumers[i % 2], f"pe-{i}") for i in range(8)]

    def create(job: tuple[Any, str]) -> Any:
        consumer, name = job
        return consumer.create_pe(name, pls.alias)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, jobs))
    assert len(results) == 8
    conns = list(
        provider.client.private_link_services.list_private_endpoint_connections(
            provider.rg, pls.name
        )
    )
    assert sorted(c.private_endpoint.id.lower() for c in conns) == sorted(
        r.id.lower() for r in results
    )
    for consumer in consumers:
        ips = [
            n.ip_configurations[0].private_ip_address
            for n in consumer.client.network_interfaces.list(consumer.rg)
        ]
        assert len(ips) == 4
        assert len(set(ips)) == 4, ips
        assert all(ipaddress.ip_address(i) in ipaddress.ip_network("10.0.1.0/24") for i in ips)


def test_wrong_client_secret_is_refused(server: Any) -> None:
    c = server.credentials
    cred = ClientSecretCredential(
        c["tenant_id"],
        c["client_id"],
        "not-the-secret",
        authority=server.url,
        disable_instance_discovery=True,
        connection_verify=server.ca_file,
    )
    with cred, pytest.raises(ClientAuthenticationError):
        cred.get_token("https://management.azure.com/.default")


@pytest.mark.skip(
    reason="AnotherOperationInProgress (409) needs two overlapping writes to one "
    "resource; every change commits synchronously, so it cannot be provoked reliably"
)
def test_another_operation_in_progress() -> None:
    pass
