"""Private endpoints: finding the service (visibility), the connection request, region."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pl_world import (
    OTHER_REGION,
    S1,
    S2,
    S3,
    World,
    arm_id,
    make_lb,
    make_pe,
    make_vnet,
    nat,
    pe_id,
    pls_id,
    subnet_id,
)

from privatelink.core import errors
from privatelink.core import private_endpoint as pem
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm

MISSING_ALIAS = "ghost.99999999-9999-4999-8999-999999999999.eastus.azure.privatelinkservice"


def _service_with(w: World, **kwargs: object) -> plsm.PrivateLinkService:
    """Provider and consumer networks (consumer in S2 and S3) plus `pls1`."""
    w.provider(n=1)
    w.consumer(S2)
    w.consumer(S3)
    w.consumer(S1, prefix="10.8.0.0/16", subnet_prefix="10.8.1.0/24")
    return w.create_pls(**kwargs)


def _not_found(w: World, target: str, sub: str) -> errors.ArmError:
    return w.refuse(
        errors.PrivateLinkServiceNotFound,
        "PrivateLinkServiceNotFound",
        400,
        pl.create_or_update_endpoint,
        make_pe(target, sub=sub),
    )


# --- the connection request ------------------------------------------------------------------


def test_pe_by_alias_starts_pending(service_world: World) -> None:
    pls = service_world.pls()
    pe = service_world.create_pe(pls.alias, message="please", location="East US")
    assert pe.location == "eastus"
    conn = pe.connection
    assert conn.status == "Pending"
    assert conn.private_link_service_id == pls.id
    assert conn.description == "please"
    service = service_world.pls()
    (remote,) = service_world.connections()
    assert remote.status == "Pending"
    assert remote.private_endpoint_id == pe.id
    assert remote.name == conn.remote_name
    assert service.alias == pls.alias


def test_pe_gets_managed_nic_in_its_subnet(service_world: World) -> None:
    pe = service_world.create_pe(service_world.pls().alias)
    nic = service_world.nic(pe.nic_id)
    assert nic.managed_by == pe.id
    assert nic.primary_ip == "10.1.1.4"
    assert service_world.used_ips(subnet_id("vc", "pe", S2)) == {"10.1.1.4": nic.id}


def test_pe_by_resource_id(service_world: World) -> None:
    pe = service_world.create_pe(pls_id())
    assert pe.connection.private_link_service_id == pls_id()
    assert pe.connection.status == "Pending"
    assert len(service_world.connections()) == 1


def test_pe_alias_lookup_ignores_case(service_world: World) -> None:
    pe = service_world.create_pe(service_world.pls().alias.upper())
    assert pe.connection.private_link_service_id == pls_id()


def test_pe_from_auto_approval_subscription_is_approved_at_once(world: World) -> None:
    pls = _service_with(world, visibility=(S2, S3), auto_approval=(S2,))
    approved = world.create_pe(pls.alias, name="a", sub=S2)
    pending = world.create_pe(pls.alias, name="b", sub=S3)
    assert approved.connection.status == "Approved"
    assert pending.connection.status == "Pending"
    statuses = {c.private_endpoint_id: c.status for c in world.connections()}
    assert statuses == {approved.id: "Approved", pending.id: "Pending"}


def test_auto_approval_with_star_visibility(world: World) -> None:
    pls = _service_with(world, visibility=("*",), auto_approval=(S3,))
    assert world.create_pe(pls.alias, sub=S3).connection.status == "Approved"
    assert world.create_pe(pls.alias, name="pe2", sub=S2).connection.status == "Pending"


# --- visibility -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visibility", "visible_to", "hidden_from"),
    [
        ((), (S1,), (S2, S3)),  # RBAC only: the provider's own subscription
        (("*",), (S1, S2, S3), ()),
        ((S2,), (S1, S2), (S3,)),
        ((S2.upper(), S3), (S1, S2, S3), ()),
    ],
)
def test_check_visibility(
    world: World,
    visibility: tuple[str, ...],
    visible_to: tuple[str, ...],
    hidden_from: tuple[str, ...],
) -> None:
    pls = _service_with(world, visibility=visibility)
    with world.repo.read() as view:
        for sub in visible_to:
            assert plsm.check_visibility(view, sub, pls.alias), sub
            assert plsm.check_visibility(view, sub.upper(), pls.alias), sub
        for sub in hidden_from:
            assert not plsm.check_visibility(view, sub, pls.alias), sub
        assert not plsm.check_visibility(view, S1, MISSING_ALIAS)


@pytest.mark.parametrize(
    ("visibility", "sub"),
    [((), S2), ((S2,), S3), ((S3,), S2)],
)
def test_invisible_service_is_indistinguishable_from_missing(
    world: World, visibility: tuple[str, ...], sub: str
) -> None:
    pls = _service_with(world, visibility=visibility)
    hidden = _not_found(world, pls.alias, sub)
    missing = _not_found(world, MISSING_ALIAS, sub)
    assert hidden.message == hidden.template.format(target=pls.alias)
    assert missing.message == missing.template.format(target=MISSING_ALIAS)
    assert type(hidden) is type(missing)
    assert (hidden.code, hidden.status) == (missing.code, missing.status)
    # by resource id too
    by_id = _not_found(world, pls.id, sub)
    missing_id = _not_found(world, pls_id("ghost"), sub)
    assert by_id.message == by_id.template.format(target=pls.id)
    assert (by_id.code, by_id.status) == (missing_id.code, missing_id.status)
    assert world.connections() == ()


@pytest.mark.parametrize(("visibility", "sub"), [((), S1), ((S2,), S2), ((S2,), S1), (("*",), S3)])
def test_visible_subscription_can_connect(
    world: World, visibility: tuple[str, ...], sub: str
) -> None:
    pls = _service_with(world, visibility=visibility)
    pe = world.create_pe(pls.alias, sub=sub)
    assert pe.connection.status == "Pending"
    assert [c.private_endpoint_id for c in world.connections()] == [pe.id]


def test_target_that_is_not_a_service_is_not_found(service_world: World) -> None:
    _not_found(service_world, service_world.lb().id, S2)


def test_narrowing_visibility_hides_service_from_new_endpoints(world: World) -> None:
    pls = _service_with(world, visibility=(S2, S3))
    world.create_pe(pls.alias, sub=S3)
    world.update_pls(visibility=(S2,))
    world.refuse(
        errors.PrivateLinkServiceNotFound,
        "PrivateLinkServiceNotFound",
        400,
        pl.create_or_update_endpoint,
        make_pe(pls.alias, name="pe2", sub=S3),
    )


# --- region -----------------------------------------------------------------------------------


def test_pe_in_another_region_refused(service_world: World) -> None:
    service_world.consumer(
        S2, name="vw", location=OTHER_REGION, prefix="10.3.0.0/16", subnet_prefix="10.3.1.0/24"
    )
    service_world.refuse(
        errors.PrivateEndpointLocationMismatch,
        "PrivateEndpointAndPrivateLinkServiceLocationMismatch",
        400,
        pl.create_or_update_endpoint,
        make_pe(service_world.pls().alias, vnet="vw", location=OTHER_REGION),
    )


def test_pe_region_must_match_its_vnet(service_world: World) -> None:
    service_world.refuse(
        errors.ResourceLocationMismatch,
        "ResourceLocationMismatch",
        400,
        pl.create_or_update_endpoint,
        make_pe(service_world.pls().alias, location=OTHER_REGION),
    )


def test_pe_and_service_both_in_other_region_is_fine(world: World) -> None:
    world.run(
        vnm.create_or_update,
        make_vnet(
            location=OTHER_REGION,
            subnets=(
                vnm.Subnet("fe", "10.0.1.0/24"),
                vnm.Subnet("nat", "10.0.3.0/24", private_link_service_network_policies="Disabled"),
            ),
        ),
    )
    world.run(pl.create_or_update_load_balancer, make_lb(n=1, location=OTHER_REGION))
    pls = world.create_pls(location=OTHER_REGION, nats=(nat(),))
    world.consumer(location=OTHER_REGION)
    pe = world.create_pe(pls.alias, location=OTHER_REGION)
    assert pe.connection.private_link_service_id == pls.id


# --- request validation -----------------------------------------------------------------------


def test_request_message_of_140_is_accepted(service_world: World) -> None:
    pe = service_world.create_pe(service_world.pls().alias, message="m" * 140)
    assert pe.connection.request_message == "m" * 140


def test_request_message_over_140_refused(service_world: World) -> None:
    service_world.refuse(
        errors.RequestMessageTooLong,
        "RequestMessageTooLong",
        400,
        pl.create_or_update_endpoint,
        make_pe(service_world.pls().alias, message="m" * 141),
    )


@pytest.mark.parametrize("count", [0, 2])
def test_exactly_one_connection(service_world: World, count: int) -> None:
    alias = service_world.pls().alias
    conns = tuple(pem.PrivateLinkServiceConnection(f"c{i}", alias) for i in range(count))
    service_world.refuse(
        errors.PrivateEndpointConnectionRequired,
        "PrivateEndpointRequiresOneConnection",
        400,
        pl.create_or_update_endpoint,
        make_pe(alias, connections=conns),
    )


def test_group_ids_refused(service_world: World) -> None:
    alias = service_world.pls().alias
    service_world.refuse(
        errors.InvalidGroupIds,
        "InvalidGroupIds",
        400,
        pl.create_or_update_endpoint,
        make_pe(
            alias, connections=(pem.PrivateLinkServiceConnection("c", alias, group_ids=("x",)),)
        ),
    )


@pytest.mark.parametrize("target", ["", "   "])
def test_empty_target_refused(service_world: World, target: str) -> None:
    service_world.refuse(
        errors.PrivateLinkServiceNotFound,
        "PrivateLinkServiceNotFound",
        400,
        pl.create_or_update_endpoint,
        make_pe(target),
    )


def test_pe_subnet_must_exist(service_world: World) -> None:
    service_world.refuse(
        errors.InvalidResourceReference,
        "InvalidResourceReference",
        400,
        pl.create_or_update_endpoint,
        make_pe(service_world.pls().alias, subnet="missing"),
    )


def test_static_pe_ip(service_world: World) -> None:
    pe = service_world.create_pe(service_world.pls().alias, static_ip="10.1.1.40")
    assert service_world.nic(pe.nic_id).primary_ip == "10.1.1.40"


@pytest.mark.parametrize(
    ("ip", "cls", "code"),
    [
        ("10.1.1.3", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.1.1.255", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.1.2.10", errors.PrivateIPAddressNotInSubnet, "PrivateIPAddressNotInSubnet"),
        ("fd00::1", errors.IPv6NotSupported, "IPv6NotSupported"),
    ],
)
def test_static_pe_ip_refusals(service_world: World, ip: str, cls: type, code: str) -> None:
    service_world.refuse(
        cls,
        code,
        400,
        pl.create_or_update_endpoint,
        make_pe(service_world.pls().alias, static_ip=ip),
    )
    assert service_world.connections() == ()


def test_static_pe_ip_taken_refused(service_world: World) -> None:
    alias = service_world.pls().alias
    service_world.create_pe(alias, name="a", static_ip="10.1.1.40")
    service_world.refuse(
        errors.PrivateIPAddressIsAllocated,
        "PrivateIPAddressIsAllocated",
        400,
        pl.create_or_update_endpoint,
        make_pe(alias, name="b", static_ip="10.1.1.40"),
    )


def test_dynamic_pe_ips_are_distinct(service_world: World) -> None:
    alias = service_world.pls().alias
    a = service_world.create_pe(alias, name="a")
    b = service_world.create_pe(alias, name="b")
    assert service_world.nic(a.nic_id).primary_ip == "10.1.1.4"
    assert service_world.nic(b.nic_id).primary_ip == "10.1.1.5"


# --- ipConfigurations, customNetworkInterfaceName, applicationSecurityGroups -------------------

ASG = f"/subscriptions/{S2}/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups"


def _static(target: str, ip: str | None, name: str = "pe1", ipc: str = "ipc", **kw: str) -> Any:
    """An endpoint asking for `ip` through ipConfigurations (entry `ipc`)."""
    config = pem.EndpointIpConfiguration(ipc, ip, **kw)
    return replace(make_pe(target, name=name), ip_configurations=(config,))


def test_ip_configuration_sets_the_nic_address_and_dns(world: World) -> None:
    pls = _service_with(world, visibility=("*",), fqdns=("svc.example",))
    world.run(pl.create_or_update_endpoint, _static(pls.alias, "10.1.1.40"))
    pe = world.pe()
    assert pe.ip_configurations == (pem.EndpointIpConfiguration("ipc", "10.1.1.40"),)
    assert pe.static_ip == "10.1.1.40"
    (config,) = world.nic(pe.nic_id).ip_configurations
    assert (config.private_ip, config.allocation) == ("10.1.1.40", "Static")
    assert pe.custom_dns_configs == (pem.DnsConfig("svc.example", ("10.1.1.40",)),)
    assert world.used_ips(subnet_id("vc", "pe", S2)) == {"10.1.1.40": pe.nic_id}


def test_bare_static_ip_gets_a_default_ip_configuration(service_world: World) -> None:
    pe = service_world.create_pe(service_world.pls().alias, static_ip="10.1.1.41")
    assert pe.ip_configurations == (pem.EndpointIpConfiguration("ipconfig1", "10.1.1.41"),)


def test_dynamic_endpoint_has_no_ip_configurations(service_world: World) -> None:
    pe = service_world.create_pe(service_world.pls().alias)
    assert (pe.ip_configurations, pe.static_ip) == ((), None)
    assert service_world.nic(pe.nic_id).ip_configurations[0].allocation == "Dynamic"


def test_static_ip_is_not_handed_out_dynamically_later(service_world: World) -> None:
    alias = service_world.pls().alias
    service_world.run(pl.create_or_update_endpoint, _static(alias, "10.1.1.4", name="a"))
    b = service_world.create_pe(alias, name="b")
    assert service_world.nic(b.nic_id).primary_ip == "10.1.1.5"


def test_static_ip_taken_by_a_dynamic_endpoint_refused(service_world: World) -> None:
    alias = service_world.pls().alias
    service_world.create_pe(alias, name="a")  # 10.1.1.4
    exc = service_world.refuse(
        errors.PrivateIPAddressIsAllocated,
        "PrivateIPAddressIsAllocated",
        400,
        pl.create_or_update_endpoint,
        _static(alias, "10.1.1.4", name="b"),
    )
    assert "10.1.1.4" in exc.message


@pytest.mark.parametrize(
    ("ip", "cls", "code"),
    [
        ("10.1.1.0", errors.PrivateIPAddressInReservedRange, "PrivateIPAddressInReservedRange"),
        ("10.1.2.10", errors.PrivateIPAddressNotInSubnet, "PrivateIPAddressNotInSubnet"),
        ("10.1.1.999", errors.InvalidPrivateIPAddress, "PrivateIPAddressInvalid"),
        ("", errors.PrivateIPAddressRequired, "PrivateIPAddressRequired"),
        (None, errors.PrivateIPAddressRequired, "PrivateIPAddressRequired"),
    ],
)
def test_ip_configuration_address_refusals(
    service_world: World, ip: str | None, cls: type[errors.ArmError], code: str
) -> None:
    service_world.refuse(
        cls, code, 400, pl.create_or_update_endpoint, _static(service_world.pls().alias, ip)
    )
    assert service_world.connections() == ()


@pytest.mark.parametrize(
    "groups", [{"group_id": "g"}, {"member_name": "m"}, {"group_id": "g", "member_name": "m"}]
)
def test_ip_configuration_group_or_member_refused(
    service_world: World, groups: dict[str, str]
) -> None:
    exc = service_world.refuse(
        errors.PrivateEndpointIpConfigurationHasGroupId,
        "PrivateEndpointWithIpConfigurationsCannotHaveGroupIdsOrMemberNames",
        400,
        pl.create_or_update_endpoint,
        _static(service_world.pls().alias, "10.1.1.40", **groups),
    )
    assert "'ipc'" in exc.message


def test_two_ip_configurations_refused(service_world: World) -> None:
    configs = (
        pem.EndpointIpConfiguration("a", "10.1.1.40"),
        pem.EndpointIpConfiguration("b", "10.1.1.41"),
    )
    desired = replace(make_pe(service_world.pls().alias), ip_configurations=configs)
    service_world.refuse(
        errors.PrivateEndpointTooManyIpConfigurations,
        "PrivateEndpointTooManyIpConfigurations",
        400,
        pl.create_or_update_endpoint,
        desired,
    )


@pytest.mark.parametrize("name", ["", "a b", "x" * 81, "-x"])
def test_ip_configuration_name_must_be_valid(service_world: World, name: str) -> None:
    service_world.refuse(
        errors.InvalidResourceName,
        "InvalidResourceName",
        400,
        pl.create_or_update_endpoint,
        _static(service_world.pls().alias, "10.1.1.40", ipc=name),
    )


def test_ip_configurations_may_be_sent_again_but_not_changed(service_world: World) -> None:
    alias = service_world.pls().alias
    service_world.run(pl.create_or_update_endpoint, _static(alias, "10.1.1.40"))
    again = replace(_static(alias, "10.1.1.40", ipc="IPC"), tags={"k": "v"})
    service_world.run(pl.create_or_update_endpoint, again)
    pe = service_world.pe()
    assert pe.tags == {"k": "v"}
    assert pe.ip_configurations == (pem.EndpointIpConfiguration("ipc", "10.1.1.40"),)
    for changed in (
        _static(alias, "10.1.1.41"),  # another address
        _static(alias, "10.1.1.40", ipc="other"),  # another name
        make_pe(alias),  # dropped
    ):
        service_world.refuse(
            errors.PrivateEndpointIpConfigurationsCannotChange,
            "PrivateEndpointIpConfigurationsCannotBeModified",
            400,
            pl.create_or_update_endpoint,
            changed,
        )


def test_dynamic_endpoint_cannot_gain_a_static_ip(service_world: World) -> None:
    alias = service_world.pls().alias
    first = service_world.create_pe(alias)
    ip = service_world.nic(first.nic_id).primary_ip
    service_world.refuse(
        errors.PrivateEndpointIpConfigurationsCannotChange,
        "PrivateEndpointIpConfigurationsCannotBeModified",
        400,
        pl.create_or_update_endpoint,
        _static(alias, ip),
    )


def test_custom_nic_name_names_the_nic_and_cannot_change(service_world: World) -> None:
    alias = service_world.pls().alias
    named = replace(make_pe(alias), custom_nic_name="my-nic")
    service_world.run(pl.create_or_update_endpoint, named)
    pe = service_world.pe()
    assert pe.nic_id == arm_id(S2, "networkInterfaces", "my-nic")
    assert service_world.nic(pe.nic_id).managed_by == pe.id
    service_world.run(pl.create_or_update_endpoint, replace(named, custom_nic_name="MY-NIC"))
    assert service_world.pe().custom_nic_name == "my-nic"
    for changed in (replace(named, custom_nic_name="other"), make_pe(alias)):
        service_world.refuse(
            errors.PrivateEndpointNicNameCannotChange,
            "NameOfExistingPrivateEndpointNicCannotBeChanged",
            400,
            pl.create_or_update_endpoint,
            changed,
        )


def test_default_nic_name_may_be_sent_back_but_not_replaced(service_world: World) -> None:
    alias = service_world.pls().alias
    pe = service_world.create_pe(alias)
    default = pe.nic_id.rsplit("/", 1)[-1]
    assert default.startswith("pe1.nic.")
    service_world.run(
        pl.create_or_update_endpoint, replace(make_pe(alias), custom_nic_name=default)
    )
    assert service_world.pe().custom_nic_name is None
    service_world.refuse(
        errors.PrivateEndpointNicNameCannotChange,
        "NameOfExistingPrivateEndpointNicCannotBeChanged",
        400,
        pl.create_or_update_endpoint,
        replace(make_pe(alias), custom_nic_name="renamed"),
    )


def test_custom_nic_name_taken_refused(service_world: World) -> None:
    alias = service_world.pls().alias
    service_world.run(pl.create_or_update_endpoint, replace(make_pe(alias), custom_nic_name="n"))
    service_world.refuse(
        errors.InvalidRequestContent,
        "InvalidRequestContent",
        400,
        pl.create_or_update_endpoint,
        replace(make_pe(alias, name="pe2"), custom_nic_name="n"),
    )


def test_application_security_groups_are_stored_and_may_change(service_world: World) -> None:
    alias = service_world.pls().alias
    groups = (
        f"{ASG}/web",
        f"{ASG}/db".replace("/providers/Microsoft.Network", "/PROVIDERS/Microsoft.Network"),
    )
    service_world.run(
        pl.create_or_update_endpoint, replace(make_pe(alias), application_security_groups=groups)
    )
    assert service_world.pe().application_security_groups == (f"{ASG}/web", f"{ASG}/db")
    service_world.run(
        pl.create_or_update_endpoint,
        replace(make_pe(alias), application_security_groups=(f"{ASG}/app",)),
    )
    assert service_world.pe().application_security_groups == (f"{ASG}/app",)
    service_world.run(pl.create_or_update_endpoint, make_pe(alias))
    assert service_world.pe().application_security_groups == ()


@pytest.mark.parametrize(
    "group",
    [
        "not-an-id",
        f"{ASG}",
        f"{ASG}/web/rules/x",
        f"/subscriptions/{S2}/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n",
    ],
)
def test_application_security_group_ids_must_be_well_formed(
    service_world: World, group: str
) -> None:
    desired = replace(make_pe(service_world.pls().alias), application_security_groups=(group,))
    service_world.refuse(
        errors.InvalidResourceId,
        "LinkedInvalidPropertyId",
        400,
        pl.create_or_update_endpoint,
        desired,
    )


def test_application_security_groups_are_bounded(service_world: World) -> None:
    alias = service_world.pls().alias
    groups = tuple(f"{ASG}/g{i}" for i in range(pem.MAX_APPLICATION_SECURITY_GROUPS + 1))
    service_world.refuse(
        errors.PrivateEndpointApplicationSecurityGroupsLimitReached,
        "PrivateEndpointApplicationSecurityGroupsLimitReached",
        400,
        pl.create_or_update_endpoint,
        replace(make_pe(alias), application_security_groups=groups),
    )
    service_world.run(
        pl.create_or_update_endpoint,
        replace(make_pe(alias), application_security_groups=groups[1:]),
    )
    assert len(service_world.pe().application_security_groups) == 20


# --- updates ----------------------------------------------------------------------------------


def test_update_may_change_message_and_tags_only(service_world: World) -> None:
    alias = service_world.pls().alias
    first = service_world.create_pe(alias, message="v1")
    desired = replace(make_pe(alias, message="v2"), tags={"k": "v"})
    service_world.run(pl.create_or_update_endpoint, desired)
    pe = service_world.pe()
    assert pe.tags == {"k": "v"}
    assert pe.connection.request_message == "v2"
    assert pe.nic_id == first.nic_id
    assert len(service_world.connections()) == 1


def test_update_cannot_change_target(service_world: World) -> None:
    service_world.create_pe(service_world.pls().alias)
    service_world.refuse(
        errors.PrivateEndpointConnectionTargetCannotChange,
        "PrivateEndpointConnectionCannotBeModified",
        400,
        pl.create_or_update_endpoint,
        make_pe(pls_id("other")),
    )


def test_update_cannot_change_subnet(service_world: World) -> None:
    service_world.run(
        vnm.create_or_update_subnet, subnet_id("vc", "pe2", S2), vnm.Subnet("pe2", "10.1.2.0/24")
    )
    service_world.create_pe(service_world.pls().alias)
    service_world.refuse(
        errors.PrivateEndpointSubnetCannotChange,
        "PrivateEndpointSubnetCannotBeModified",
        400,
        pl.create_or_update_endpoint,
        make_pe(service_world.pls().alias, subnet="pe2"),
    )


def test_update_cannot_exceed_message_limit(service_world: World) -> None:
    alias = service_world.pls().alias
    service_world.create_pe(alias, message="ok")
    service_world.refuse(
        errors.RequestMessageTooLong,
        "RequestMessageTooLong",
        400,
        pl.create_or_update_endpoint,
        make_pe(alias, message="x" * 141),
    )


# --- deletion ---------------------------------------------------------------------------------


def test_deleting_pe_removes_its_connection_and_nic(service_world: World) -> None:
    alias = service_world.pls().alias
    keep = service_world.create_pe(alias, name="keep")
    gone = service_world.create_pe(alias, name="gone")
    service_world.run(pl.delete_endpoint, gone.id)
    assert service_world.get(gone.id) is None
    assert service_world.get(gone.nic_id) is None
    assert [c.private_endpoint_id for c in service_world.connections()] == [keep.id]
    assert set(service_world.used_ips(subnet_id("vc", "pe", S2))) == {
        service_world.nic(keep.nic_id).primary_ip
    }


def test_delete_missing_pe_is_a_no_op(service_world: World) -> None:
    assert service_world.run(pl.delete_endpoint, pe_id("nothing")) == {}
