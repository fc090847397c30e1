"""Private link limits and rules over the wire.

Each refusal must come synchronously on the initial request (4xx + ARM error code,
never a 201 followed by a Failed operation) and leave nothing behind.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

pytestmark = pytest.mark.integration

LOCATION = "eastus"


def _put_pls(provider: Any, name: str, body: dict[str, Any]) -> Any:
    return provider.client.private_link_services.begin_create_or_update(
        provider.rg, name, body
    ).result()


def _assert_no_pls(provider: Any, name: str) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        provider.client.private_link_services.get(provider.rg, name)
    assert info.value.status_code == 404
    assert name not in [p.name for p in provider.client.private_link_services.list(provider.rg)]
    nics = [n.name for n in provider.client.network_interfaces.list(provider.rg)]
    assert not [n for n in nics if n.startswith(f"{name}.")], nics


def _refused_pls(helpers: Any, provider: Any, body: dict[str, Any], code: str) -> str:
    name = helpers.unique("pls")
    helpers.expect_error(lambda: _put_pls(provider, name, body), 400, code)
    _assert_no_pls(provider, name)
    return name


def _two_frontends(world: Any, helpers: Any, shared_pool: bool = False) -> Any:
    pools = ("be1",) if shared_pool else ("be1", "be2")
    rules = [
        helpers.Rule("r1", "fe1", "be1"),
        helpers.Rule("r2", "fe2", "be1" if shared_pool else "be2"),
    ]
    return world.provider(frontends=("fe1", "fe2"), pools=pools, rules=rules)


# --- load balancer ------------------------------------------------------------------------


def test_basic_load_balancer_refused(world: Any, helpers: Any) -> None:
    provider = world.provider(sku="Basic")
    assert provider.client.load_balancers.get(provider.rg, provider.lb).sku.name == "Basic"
    _refused_pls(
        helpers, provider, provider.pls_body(), "PrivateLinkServiceNotSupportedOnBasicLoadBalancer"
    )


def test_udp_rule_on_the_frontend_refused(world: Any, helpers: Any) -> None:
    provider = world.provider(rules=[helpers.Rule("dns", "fe", "be", protocol="Udp", port=53)])
    _refused_pls(helpers, provider, provider.pls_body(), "PrivateLinkServiceOnlySupportsTcp")


def test_udp_rule_added_to_a_pls_frontend_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    provider.create_pls(helpers.unique("pls"))
    before = provider.client.load_balancers.get(provider.rg, provider.lb)
    body = world.lb_body(
        provider,
        rules=[helpers.Rule("rule-fe", "fe", "be"), helpers.Rule("dns", "fe", "be", "Udp", 53)],
    )
    helpers.expect_error(
        lambda: provider.client.load_balancers.begin_create_or_update(
            provider.rg, provider.lb, body
        ).result(),
        400,
        "PrivateLinkServiceOnlySupportsTcp",
    )
    after = provider.client.load_balancers.get(provider.rg, provider.lb)
    assert [r.name for r in after.load_balancing_rules] == ["rule-fe"]
    assert after.etag == before.etag


def test_second_pls_on_the_same_frontend_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    first = provider.create_pls(helpers.unique("pls"))
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(),
        "FrontendIpConfigurationInUseByAnotherPrivateLinkService",
    )
    assert provider.client.private_link_services.get(provider.rg, first.name).alias == first.alias


def test_shared_backend_pool_refused(world: Any, helpers: Any) -> None:
    provider = _two_frontends(world, helpers, shared_pool=True)
    provider.create_pls(helpers.unique("pls"), fe="fe1")
    _refused_pls(
        helpers, provider, provider.pls_body(fe="fe2"), "BackendPoolSharedByPrivateLinkServices"
    )


def test_dedicated_backend_pools_allowed(world: Any, helpers: Any) -> None:
    provider = _two_frontends(world, helpers)
    a = provider.create_pls(helpers.unique("pls"), fe="fe1")
    b = provider.create_pls(helpers.unique("pls"), fe="fe2")
    assert a.alias != b.alias
    assert a.ip_configurations[0].private_ip_address != b.ip_configurations[0].private_ip_address


def test_pls_in_another_region_than_the_load_balancer_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(location="westus"),
        "PrivateLinkServiceLocationMismatch",
    )


def test_nat_subnet_with_network_policies_enabled_refused(world: Any, helpers: Any) -> None:
    provider = world.provider(nat_policies="Enabled")
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(),
        "PrivateLinkServiceNetworkPoliciesEnabledOnSubnet",
    )


# --- NAT ip configurations ------------------------------------------------------------------


def test_nine_nat_ip_configurations_refused_eight_allowed(world: Any, helpers: Any) -> None:
    provider = world.provider()
    nine = [provider.nat(f"nat-{i}", primary=i == 0) for i in range(9)]
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(nats=nine),
        "PrivateLinkServiceNatIpConfigurationCountInvalid",
    )
    pls = provider.create_pls(helpers.unique("pls"), nats=nine[:8])
    ips = [c.private_ip_address for c in pls.ip_configurations]
    assert len(set(ips)) == 8
    nic = provider.client.network_interfaces.get(
        provider.rg, pls.network_interfaces[0].id.rsplit("/", 1)[1]
    )
    assert sorted(c.private_ip_address for c in nic.ip_configurations) == sorted(ips)


def test_zero_nat_ip_configurations_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(nats=[]),
        "PrivateLinkServiceNatIpConfigurationCountInvalid",
    )


def test_two_primary_nat_configurations_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    nats = [provider.nat("a", primary=True), provider.nat("b", primary=True)]
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(nats=nats),
        "PrivateLinkServiceNatIpConfigurationPrimaryInvalid",
    )


def test_removing_a_nat_configuration_by_update_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    name = helpers.unique("pls")
    nats = [provider.nat("a", primary=True), provider.nat("b", primary=False)]
    before = provider.create_pls(name, nats=nats)
    helpers.expect_error(
        lambda: _put_pls(provider, name, provider.pls_body(nats=nats[:1])),
        400,
        "PrivateLinkServiceNatIpConfigurationCannotBeRemoved",
    )
    after = provider.client.private_link_services.get(provider.rg, name)
    assert [(c.name, c.private_ip_address) for c in after.ip_configurations] == [
        (c.name, c.private_ip_address) for c in before.ip_configurations
    ]
    assert after.etag == before.etag
    # Adding one is fine, and the existing addresses stay.
    grown = provider.create_pls(name, nats=[*nats, provider.nat("c", primary=False)])
    assert [c.private_ip_address for c in grown.ip_configurations][:2] == [
        c.private_ip_address for c in before.ip_configurations
    ]


def test_ipv6_nat_configuration_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(nats=[provider.nat(version="IPv6")]),
        "PrivateLinkServiceIPv6NotSupported",
    )


@pytest.mark.parametrize(
    ("ip", "code"),
    [
        ("10.0.3.1", "PrivateIPAddressInReservedRange"),
        ("10.0.3.3", "PrivateIPAddressInReservedRange"),
        ("10.0.3.255", "PrivateIPAddressInReservedRange"),
        ("10.0.9.10", "PrivateIPAddressNotInSubnet"),
        ("taken", "PrivateIPAddressIsAllocated"),
    ],
)
def test_static_nat_ip_refused(world: Any, helpers: Any, ip: str, code: str) -> None:
    provider = _two_frontends(world, helpers)
    if ip == "taken":
        first = provider.create_pls(helpers.unique("pls"), fe="fe1")
        ip = first.ip_configurations[0].private_ip_address
    body = provider.pls_body(fe="fe2", nats=[provider.nat(ip=ip)])
    _refused_pls(helpers, provider, body, code)
    # A free static address is accepted as given.
    ok = provider.create_pls(helpers.unique("pls"), fe="fe2", nats=[provider.nat(ip="10.0.3.200")])
    assert ok.ip_configurations[0].private_ip_address == "10.0.3.200"
    assert ok.ip_configurations[0].private_ip_allocation_method == "Static"


# --- subscriptions lists ----------------------------------------------------------------------


def test_auto_approval_not_subset_of_visibility_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    b, c = helpers.new_sub(), helpers.new_sub()
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(visibility=[b], auto_approval=[b, c]),
        "AutoApprovalSubscriptionsNotInVisibility",
    )
    _refused_pls(
        helpers,
        provider,
        provider.pls_body(visibility=[], auto_approval=[b]),
        "AutoApprovalSubscriptionsNotInVisibility",
    )
    # With visibility "*", any auto-approval list is a subset.
    assert provider.create_pls(
        helpers.unique("pls"), visibility=["*"], auto_approval=[b, c]
    ).auto_approval.subscriptions == [b, c]


# --- private endpoints -------------------------------------------------------------------------


def _assert_no_pe(consumer: Any, name: str) -> None:
    with pytest.raises(ResourceNotFoundError):
        consumer.client.private_endpoints.get(consumer.rg, name)
    assert list(consumer.client.network_interfaces.list(consumer.rg)) == []


def test_private_endpoint_in_another_region_refused(world: Any, helpers: Any) -> None:
    consumer = world.consumer(location="westus")
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[consumer.sub])
    helpers.expect_error(
        lambda: consumer.create_pe("pe", pls.alias),
        400,
        "PrivateEndpointAndPrivateLinkServiceLocationMismatch",
    )
    _assert_no_pe(consumer, "pe")
    assert (
        provider.client.private_link_services.get(
            provider.rg, pls.name
        ).private_endpoint_connections
        == []
    )


def test_request_message_longer_than_140_refused(world: Any, helpers: Any) -> None:
    consumer = world.consumer()
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[consumer.sub])
    helpers.expect_error(
        lambda: consumer.create_pe("pe", pls.alias, message="x" * 141),
        400,
        "RequestMessageTooLong",
    )
    _assert_no_pe(consumer, "pe")
    assert (
        list(
            provider.client.private_link_services.list_private_endpoint_connections(
                provider.rg, pls.name
            )
        )
        == []
    )
    pe = consumer.create_pe("pe", pls.alias, message="y" * 140)
    assert pe.manual_private_link_service_connections[0].request_message == "y" * 140


# --- found while writing this suite: the server accepts these ---------------------------------


@pytest.mark.parametrize("nic_name", ["名前", "a" * 81, "-x.", "a b"])
def test_invalid_custom_network_interface_name_refused(
    world: Any, helpers: Any, nic_name: str
) -> None:
    consumer = world.consumer()
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[consumer.sub])
    body = consumer.pe_body(pls.alias)
    body["properties"]["customNetworkInterfaceName"] = nic_name
    with pytest.raises(HttpResponseError) as info:
        consumer.client.private_endpoints.begin_create_or_update(consumer.rg, "pe", body).result()
    assert info.value.status_code == 400
    assert info.value.error is not None and info.value.error.code
    _assert_no_pe(consumer, "pe")


def test_valid_custom_network_interface_name_is_used(world: Any, helpers: Any) -> None:
    consumer = world.consumer()
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[consumer.sub])
    body = consumer.pe_body(pls.alias)
    body["properties"]["customNetworkInterfaceName"] = "my-pe-nic"
    pe = consumer.client.private_endpoints.begin_create_or_update(consumer.rg, "pe", body).result()
    assert pe.custom_network_interface_name == "my-pe-nic"
    assert pe.network_interfaces[0].id.rsplit("/", 1)[1] == "my-pe-nic"
    nic = consumer.client.network_interfaces.get(consumer.rg, "my-pe-nic")
    assert nic.private_endpoint.id.lower() == pe.id.lower()


def test_nat_subnet_policies_cannot_be_enabled_while_in_use(world: Any, helpers: Any) -> None:
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=["*"])
    enable = {
        "properties": {
            "addressPrefix": "10.0.3.0/24",
            "privateLinkServiceNetworkPolicies": "Enabled",
        }
    }
    with pytest.raises(HttpResponseError) as info:
        provider.client.subnets.begin_create_or_update(
            provider.rg, provider.vnet, "nat", enable
        ).result()
    assert 400 <= info.value.status_code < 500
    nat = provider.client.subnets.get(provider.rg, provider.vnet, "nat")
    assert nat.private_link_service_network_policies == "Disabled"
    # The service stays manageable: a GET-modify-PUT round trip still works.
    model = provider.client.private_link_services.get(provider.rg, pls.name)
    model.fqdns = ["still.example"]
    updated = provider.client.private_link_services.begin_create_or_update(
        provider.rg, pls.name, model
    ).result()
    assert updated.fqdns == ["still.example"]


@pytest.mark.parametrize(
    "case",
    [
        "rule protocol tcp",
        "nat privateIPAllocationMethod dynamic",
        "nat privateIPAddressVersion ipv4",
        pytest.param("subnet privateLinkServiceNetworkPolicies disabled"),
    ],
)
def test_enum_values_are_case_insensitive(world: Any, helpers: Any, case: str) -> None:
    kw: dict[str, Any] = {}
    if case.startswith("rule"):
        kw["rules"] = [helpers.Rule("r", "fe", "be", protocol="tcp")]
    if case.startswith("subnet"):
        kw["nat_policies"] = "disabled"
    provider = world.provider(**kw)
    nat = provider.nat()
    if "Allocation" in case:
        nat["properties"]["privateIPAllocationMethod"] = "dynamic"
    if "Version" in case:
        nat["properties"]["privateIPAddressVersion"] = "ipv4"
    pls = provider.create_pls(helpers.unique("pls"), nats=[nat])
    assert pls.ip_configurations[0].private_ip_address == "10.0.3.4"
    if case.startswith("rule"):
        lb = provider.client.load_balancers.get(provider.rg, provider.lb)
        assert lb.load_balancing_rules[0].protocol == "Tcp"
