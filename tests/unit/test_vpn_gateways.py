"""VPN gateways, local network gateways and connections: the rules that tie them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pl_world import REGION, S1, S2, World, arm_id, make_vnet, subnet_id, vnet_id

from privatelink.api.authorize import check
from privatelink.core import connection as connm
from privatelink.core import errors
from privatelink.core import local_network_gateway as lngm
from privatelink.core import public_ip_address as pipm
from privatelink.core import virtual_network as vnm
from privatelink.core import virtual_network_gateway as vngm
from privatelink.core.actions import SHARED_KEY_READ, SHARED_KEY_WRITE, describe
from privatelink.core.authorization import (
    BUILT_IN_ROLES,
    Access,
    AuthorizationFailed,
    LinkedAuthorizationFailed,
    RoleAssignment,
)
from privatelink.core.linked import JOINS, check_links
from privatelink.core.principal import Principal
from privatelink.core.resource import Changes, Context, StateView
from privatelink.core.virtual_network import Subnet, SubnetRef

GW_SUBNET = Subnet("GatewaySubnet", "10.10.255.0/27")
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
ME = Principal(tenant_id="t", object_id="0000000a-0000-4000-8000-000000000000", client_id="c")


def access(*grants: tuple[str, str]) -> Access:
    """An Access holding `(role guid, scope)` assignments."""
    assignments = [
        RoleAssignment(
            name=f"{i:08x}-0000-4000-8000-000000000000",
            scope=scope,
            role_definition_id=role,
            principal_id=ME.object_id,
            principal_type="ServicePrincipal",
        )
        for i, (role, scope) in enumerate(grants)
    ]
    return Access(ME, assignments, BUILT_IN_ROLES)


def rg(sub: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/rg"


def as_caller(world: World, who: Access, workflow: Any, *args: Any) -> None:
    """Run a workflow as the service would for a caller: workflow, linked checks, apply."""
    ctx = replace(
        world.ctx, access=who, request_action="Microsoft.Network/x/write", request_scope=args[0].id
    )
    with world.repo.write() as uow:
        changes = workflow(uow, ctx, *args)
        check_links(uow, ctx, changes)
        uow.apply(changes)


def pip_id(name: str = "gwpip", sub: str = S1) -> str:
    return arm_id(sub, "publicIPAddresses", name)


def gw_id(name: str = "gw", sub: str = S1) -> str:
    return arm_id(sub, "virtualNetworkGateways", name)


def lng_id(name: str = "site", sub: str = S1) -> str:
    return arm_id(sub, "localNetworkGateways", name)


def conn_id(name: str = "c1", sub: str = S1) -> str:
    return arm_id(sub, "connections", name)


def make_gateway(
    name: str = "gw",
    vnet: str = "vh",
    subnet: str = "GatewaySubnet",
    pip: str = "gwpip",
    sub: str = S1,
    **kw: Any,
) -> vngm.VirtualNetworkGateway:
    config = vngm.GatewayIpConfiguration("ipconfig", subnet_id(vnet, subnet, sub), pip_id(pip, sub))
    fields: dict[str, Any] = {"ip_configurations": (config,), "location": REGION, **kw}
    return vngm.VirtualNetworkGateway(id=gw_id(name, sub), name=name, **fields)


def make_site(
    name: str = "site", prefixes: tuple[str, ...] = ("192.168.0.0/16",), sub: str = S1, **kw: Any
) -> lngm.LocalNetworkGateway:
    fields: dict[str, Any] = {"gateway_ip_address": "203.0.113.7", **kw}
    return lngm.LocalNetworkGateway(
        id=lng_id(name, sub), name=name, location=REGION, address_prefixes=prefixes, **fields
    )


def make_connection(
    name: str = "c1", site: str = "site", sub: str = S1, site_sub: str = S1, **kw: Any
) -> connm.VirtualNetworkGatewayConnection:
    fields: dict[str, Any] = {
        "virtual_network_gateway1_id": gw_id(sub=sub),
        "local_network_gateway2_id": lng_id(site, site_sub),
        "location": REGION,
        **kw,
    }
    return connm.VirtualNetworkGatewayConnection(id=conn_id(name, sub), name=name, **fields)


def hub(w: World, sub: str = S1, name: str = "vh") -> None:
    """A hub VNet 10.10.0.0/16 (subnet `default` and GatewaySubnet /27) and a public IP."""
    w.run(
        vnm.create_or_update,
        make_vnet(
            name,
            sub,
            prefixes=("10.10.0.0/16",),
            subnets=(Subnet("default", "10.10.1.0/24"), GW_SUBNET),
        ),
    )
    w.run(
        pipm.create_or_update,
        pipm.PublicIPAddress(id=pip_id(sub=sub), name="gwpip", location=REGION),
    )


@pytest.fixture
def gw(world: World) -> World:
    """The hub with its gateway `gw`."""
    hub(world)
    world.run(vngm.create_or_update, make_gateway())
    return world


@pytest.fixture
def connected(gw: World) -> World:
    """The hub's gateway connected to `site` (192.168.0.0/16) by `c1`."""
    gw.run(connm.create_or_update_local_network_gateway, make_site())
    gw.run(connm.create_or_update, make_connection(shared_key="s3cret!"))
    return gw


def gateway(w: World, name: str = "gw") -> vngm.VirtualNetworkGateway:
    return w.typed(gw_id(name), vngm.VirtualNetworkGateway)


def conn(w: World, name: str = "c1") -> connm.VirtualNetworkGatewayConnection:
    return w.typed(conn_id(name), connm.VirtualNetworkGatewayConnection)


# --- gateways -------------------------------------------------------------------------------------


def test_a_gateway_takes_an_address_in_gateway_subnet_and_its_public_ip(gw: World) -> None:
    g = gateway(gw)
    assert (g.gateway_type, g.vpn_type, g.sku, g.generation) == (
        "Vpn",
        "RouteBased",
        "VpnGw1",
        "Generation1",
    )
    assert g.ip_configuration.private_ip == "10.10.255.4"
    assert g.public_ip_id == pip_id() and g.virtual_network_id == vnet_id("vh")
    assert g.ipsec_mode == "" and g.resource_guid
    assert gw.used_ips(subnet_id("vh", "GatewaySubnet")) == {"10.10.255.4": g.id}
    with gw.repo.read() as view:
        pip = view.get(pip_id())
        assert isinstance(pip, pipm.PublicIPAddress)
        assert pipm.user_of(view, pip) == f"{g.id}/ipConfigurations/ipconfig"
        assert vngm.gateway_of_network(view, vnet_id("vh")) == g


def test_an_update_keeps_address_and_ipsec_mode(gw: World) -> None:
    def report(view: StateView, ctx: Context, mode: str) -> Changes:
        changes = Changes()
        current = view.get(gw_id())
        assert isinstance(current, vngm.VirtualNetworkGateway)
        changes.put(vngm.with_ipsec_mode(current, mode))
        return changes

    gw.run(report, "libipsec")
    gw.run(vngm.create_or_update, make_gateway(sku="vpngw2az", tags={"a": "b"}))
    g = gateway(gw)
    assert (g.sku, g.tags, g.ipsec_mode) == ("VpnGw2AZ", {"a": "b"}, "libipsec")
    assert g.ip_configuration.private_ip == "10.10.255.4"
    with pytest.raises(ValueError, match="ipsec mode"):
        vngm.with_ipsec_mode(g, "userspace")


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        (
            {"sku": "Basic"},
            errors.VirtualNetworkGatewaySkuNotSupported,
            "VirtualNetworkGatewaySkuNotSupported",
        ),
        (
            {"sku": "ErGw1AZ"},
            errors.VirtualNetworkGatewaySkuNotSupported,
            "VirtualNetworkGatewaySkuNotSupported",
        ),
        ({"gateway_type": "ExpressRoute"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"vpn_type": "PolicyBased"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"generation": "Generation3"}, errors.InvalidRequestContent, "InvalidRequestContent"),
        (
            {"ip_configurations": ()},
            errors.VirtualNetworkGatewayIpConfigurationCount,
            "VirtualNetworkGatewayIpConfigurationCountInvalid",
        ),
        ({"location": "westus"}, errors.ResourceLocationMismatch, "ResourceLocationMismatch"),
    ],
)
def test_what_a_gateway_cannot_be(
    world: World, changes: dict[str, Any], error: type[errors.ArmError], code: str
) -> None:
    hub(world)
    world.refuse(error, code, 400, vngm.create_or_update, make_gateway(**changes))


def test_basic_is_refused_with_azures_reason(world: World) -> None:
    hub(world)
    exc = world.refuse(
        errors.VirtualNetworkGatewaySkuNotSupported,
        "VirtualNetworkGatewaySkuNotSupported",
        400,
        vngm.create_or_update,
        make_gateway(sku="basic"),
    )
    assert "Basic SKU (dynamic) public IP" in exc.message


def test_a_gateway_lives_in_gateway_subnet_once_per_network(gw: World) -> None:
    gw.refuse(
        errors.GatewaySubnetRequired,
        "VirtualNetworkGatewaySubnetMustBeNamedGatewaySubnet",
        400,
        vngm.create_or_update,
        make_gateway("gw2", subnet="default"),
    )
    gw.run(pipm.create_or_update, pipm.PublicIPAddress(id=pip_id("p2"), name="p2", location=REGION))
    gw.refuse(
        errors.VirtualNetworkGatewayAlreadyExists,
        "OnlyOneVpnGatewayPerVirtualNetwork",
        400,
        vngm.create_or_update,
        make_gateway("gw2", pip="p2"),
    )
    gw.refuse(
        errors.InvalidResourceReference,
        "InvalidResourceReference",
        400,
        vngm.create_or_update,
        make_gateway("gw3", vnet="nowhere"),
    )


def test_a_gateway_subnet_is_29_or_larger() -> None:
    vnet = make_vnet("vh", prefixes=("10.10.0.0/16",))
    small = SubnetRef(vnet, Subnet("GatewaySubnet", "10.10.255.0/30"))
    with pytest.raises(errors.GatewaySubnetTooSmall) as info:
        vngm.check_gateway_subnet(small, gw_id())
    assert info.value.code == "GatewaySubnetTooSmall"
    vngm.check_gateway_subnet(SubnetRef(vnet, Subnet("gatewaysubnet", "10.10.255.0/29")), gw_id())


def test_a_gateways_public_ip_is_its_own(gw: World) -> None:
    gw.run(
        vnm.create_or_update,
        make_vnet(
            "vh2", prefixes=("10.20.0.0/16",), subnets=(Subnet("GatewaySubnet", "10.20.255.0/27"),)
        ),
    )
    gw.refuse(
        errors.PublicIPAddressInUse,
        "PublicIPAddressInUse",
        400,
        vngm.create_or_update,
        make_gateway("gw2", vnet="vh2"),
    )
    gw.refuse(
        errors.PublicIPAddressCannotBeDeleted,
        "PublicIPAddressCannotBeDeleted",
        400,
        pipm.delete,
        pip_id(),
    )


def test_a_gateways_ip_configuration_cannot_change(gw: World) -> None:
    gw.run(pipm.create_or_update, pipm.PublicIPAddress(id=pip_id("p2"), name="p2", location=REGION))
    gw.refuse(
        errors.VirtualNetworkGatewayIpConfigurationCannotChange,
        "VirtualNetworkGatewayIpConfigurationCannotChange",
        400,
        vngm.create_or_update,
        make_gateway(pip="p2"),
    )


def test_gateway_subnet_in_use_stays(gw: World) -> None:
    gw.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.delete_subnet,
        subnet_id("vh", "GatewaySubnet"),
    )
    gw.refuse(
        errors.InUseSubnetCannotBeDeleted,
        "InUseSubnetCannotBeDeleted",
        400,
        vnm.delete,
        vnet_id("vh"),
    )
    gw.run(vngm.delete, gw_id())
    gw.run(vnm.delete_subnet, subnet_id("vh", "GatewaySubnet"))
    gw.run(pipm.delete, pip_id())
    assert gw.get(pip_id()) is None


# --- local network gateways ---------------------------------------------------------------------


def test_a_site_is_an_ipv4_device_and_its_prefixes(world: World) -> None:
    world.run(
        connm.create_or_update_local_network_gateway,
        make_site(prefixes=("192.168.1.0/24", "192.168.1.0/24", "172.16.0.0/12")),
    )
    site = world.typed(lng_id(), lngm.LocalNetworkGateway)
    assert site.address_prefixes == ("192.168.1.0/24", "172.16.0.0/12")
    assert site.gateway_ip_address == "203.0.113.7" and site.resource_guid


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        (
            {"gateway_ip_address": ""},
            errors.LocalNetworkGatewayIpAddressRequired,
            "LocalNetworkGatewayIpAddressRequired",
        ),
        (
            {"gateway_ip_address": "vpn.example.com"},
            errors.InvalidLocalNetworkGatewayIpAddress,
            "InvalidLocalNetworkGatewayIpAddress",
        ),
        ({"gateway_ip_address": "2001:db8::1"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        (
            {"prefixes": ("10.0.0.0/99",)},
            errors.InvalidAddressPrefix,
            "InvalidAddressPrefixFormat",
        ),
    ],
)
def test_what_a_site_cannot_be(
    world: World, changes: dict[str, Any], error: type[errors.ArmError], code: str
) -> None:
    world.refuse(
        error, code, 400, connm.create_or_update_local_network_gateway, make_site(**changes)
    )


# --- connections --------------------------------------------------------------------------------


def test_a_connection_joins_a_gateway_to_a_site(connected: World) -> None:
    c = conn(connected)
    assert (c.connection_type, c.connection_protocol, c.connection_mode) == (
        "IPsec",
        "IKEv2",
        "Default",
    )
    assert (c.connection_status, c.ingress_bytes_transferred, c.egress_bytes_transferred) == (
        "Unknown",
        0,
        0,
    )
    assert c.shared_key == "s3cret!" and c.dpd_timeout_seconds == 45
    with connected.repo.read() as view:
        assert connm.connections_of_gateway(view, gw_id()) == [c]


def test_a_key_is_generated_kept_set_and_reset(gw: World) -> None:
    gw.run(connm.create_or_update_local_network_gateway, make_site())
    gw.run(connm.create_or_update, make_connection())
    generated = conn(gw).shared_key
    assert len(generated) == connm.GENERATED_KEY_LENGTH and generated.isalnum()
    # A PUT without a key (a GET sent back: the GET has none) keeps it.
    gw.run(connm.create_or_update, make_connection(routing_weight=10))
    assert conn(gw).shared_key == generated and conn(gw).routing_weight == 10
    gw.run(connm.set_shared_key, conn_id(), "Abc123")
    assert conn(gw).shared_key == "Abc123"
    gw.run(connm.reset_shared_key, conn_id(), 128)
    assert len(conn(gw).shared_key) == 128
    for bad in (0, 129):
        gw.refuse(
            errors.InvalidRequestContent,
            "InvalidRequestContent",
            400,
            connm.reset_shared_key,
            conn_id(),
            bad,
        )
    for key in ("", "has space", "x" * 129, "é", "hy-phen", "til~de"):
        gw.refuse(
            errors.InvalidSharedKey, "InvalidSharedKey", 400, connm.set_shared_key, conn_id(), key
        )
    gw.refuse(
        errors.ResourceNotFound,
        "ResourceNotFound",
        404,
        connm.set_shared_key,
        conn_id("nope"),
        "Abc123",
    )


def test_a_put_keeps_what_the_data_plane_reported(connected: World) -> None:
    def report(view: StateView, ctx: Context) -> Changes:
        changes = Changes()
        current = view.get(conn_id())
        assert isinstance(current, connm.VirtualNetworkGatewayConnection)
        changes.put(connm.with_status(current, connm.CONNECTED, 100, 200))
        return changes

    connected.run(report)
    connected.run(connm.create_or_update, make_connection(tags={"k": "v"}))
    c = conn(connected)
    assert (c.connection_status, c.ingress_bytes_transferred, c.egress_bytes_transferred) == (
        "Connected",
        100,
        200,
    )
    with pytest.raises(ValueError, match="status"):
        connm.with_status(c, "Up", 0, 0)


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"connection_type": "Vnet2Vnet"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"connection_type": "ExpressRoute"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"connection_type": "VPNClient"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"connection_type": "Tunnel"}, errors.InvalidRequestContent, "InvalidRequestContent"),
        ({"connection_protocol": "IKEv1"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"connection_mode": "ResponderOnly"}, errors.UnsupportedProperty, "UnsupportedProperty"),
        ({"dpd_timeout_seconds": 8}, errors.InvalidRequestContent, "InvalidRequestContent"),
        ({"routing_weight": 32001}, errors.InvalidRequestContent, "InvalidRequestContent"),
        ({"shared_key": "two words"}, errors.InvalidSharedKey, "InvalidSharedKey"),
        (
            {"virtual_network_gateway1_id": gw_id("nope")},
            errors.InvalidResourceReference,
            "InvalidResourceReference",
        ),
        (
            {"local_network_gateway2_id": lng_id("nope")},
            errors.InvalidResourceReference,
            "InvalidResourceReference",
        ),
        (
            {"local_network_gateway2_id": pip_id()},
            errors.InvalidResourceId,
            "LinkedInvalidPropertyId",
        ),
        ({"local_network_gateway2_id": ""}, errors.InvalidRequestContent, "InvalidRequestContent"),
        ({"location": "westus"}, errors.ResourceLocationMismatch, "ResourceLocationMismatch"),
    ],
)
def test_what_a_connection_cannot_be(
    gw: World, changes: dict[str, Any], error: type[errors.ArmError], code: str
) -> None:
    gw.run(connm.create_or_update_local_network_gateway, make_site())
    gw.refuse(error, code, 400, connm.create_or_update, make_connection(**changes))


def test_a_connection_keeps_its_gateway_and_site(connected: World) -> None:
    connected.run(connm.create_or_update_local_network_gateway, make_site("other"))
    connected.refuse(
        errors.ConnectionReferenceCannotChange,
        "VirtualNetworkGatewayConnectionReferenceCannotChange",
        400,
        connm.create_or_update,
        make_connection(site="other"),
    )


def test_a_sites_prefixes_keep_clear_of_the_gateways_network(connected: World) -> None:
    code = "LocalNetworkGatewayAddressSpaceOverlapsVirtualNetwork"
    error = errors.LocalNetworkAddressSpaceOverlapsVirtualNetwork
    connected.run(
        connm.create_or_update_local_network_gateway, make_site("near", prefixes=("10.10.5.0/24",))
    )
    connected.refuse(error, code, 400, connm.create_or_update, make_connection("c2", site="near"))
    # A connected site cannot move into the network either.
    connected.refuse(
        error,
        code,
        400,
        connm.create_or_update_local_network_gateway,
        make_site(prefixes=("192.168.0.0/16", "10.0.0.0/8")),
    )
    connected.run(
        connm.create_or_update_local_network_gateway, make_site(prefixes=("192.168.0.0/24",))
    )


def test_the_network_cannot_grow_onto_a_connected_site(connected: World) -> None:
    from privatelink.core import virtual_network_peering as vpm

    grown = make_vnet(
        "vh",
        prefixes=("10.10.0.0/16", "192.168.7.0/24"),
        subnets=(Subnet("default", "10.10.1.0/24"), GW_SUBNET),
    )
    connected.refuse(
        errors.LocalNetworkAddressSpaceOverlapsVirtualNetwork,
        "LocalNetworkGatewayAddressSpaceOverlapsVirtualNetwork",
        400,
        vpm.create_or_update_network,
        grown,
    )


def test_gateways_and_sites_in_use_stay(connected: World) -> None:
    connected.refuse(
        errors.VirtualNetworkGatewayCannotBeDeleted,
        "VirtualNetworkGatewayCannotBeDeleted",
        400,
        vngm.delete,
        gw_id(),
    )
    connected.refuse(
        errors.LocalNetworkGatewayCannotBeDeleted,
        "LocalNetworkGatewayCannotBeDeleted",
        400,
        lngm.delete,
        lng_id(),
    )
    connected.run(connm.delete, conn_id())
    connected.run(connm.delete, conn_id())  # idempotent
    connected.run(lngm.delete, lng_id())
    connected.run(vngm.delete, gw_id())
    assert connected.get(gw_id()) is None and connected.get(lng_id()) is None


# --- linked authorization -----------------------------------------------------------------------


def test_joins_cover_the_new_references() -> None:
    assert JOINS["publicip"] == "Microsoft.Network/publicIPAddresses/join/action"
    assert JOINS["connection-gateway"] == "Microsoft.Network/virtualNetworkGateways/write"
    assert JOINS["connection-localgateway"] == "Microsoft.Network/localNetworkGateways/write"


def test_a_connection_to_another_subscriptions_site_needs_rights_there(gw: World) -> None:
    gw.run(connm.create_or_update_local_network_gateway, make_site(sub=S2))
    caller = access((NETWORK_CONTRIBUTOR, rg(S1)))
    with pytest.raises(LinkedAuthorizationFailed) as info:
        as_caller(gw, caller, connm.create_or_update, make_connection(site_sub=S2))
    assert lng_id(sub=S2).lower() in info.value.message.lower()
    assert gw.get(conn_id()) is None
    both = access((NETWORK_CONTRIBUTOR, rg(S1)), (NETWORK_CONTRIBUTOR, rg(S2)))
    as_caller(gw, both, connm.create_or_update, make_connection(site_sub=S2))
    assert conn(gw).local_network_gateway2_id == lng_id(sub=S2)


def test_a_gateway_needs_join_on_its_public_ip(world: World) -> None:
    hub(world)
    only_gateway = access((NETWORK_CONTRIBUTOR, gw_id()), (NETWORK_CONTRIBUTOR, vnet_id("vh")))
    with pytest.raises(LinkedAuthorizationFailed) as info:
        as_caller(world, only_gateway, vngm.create_or_update, make_gateway())
    assert "publicIPAddresses/join/action" in info.value.message


# --- the shared key's rights ---------------------------------------------------------------------

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def test_reading_a_shared_key_is_a_right_of_its_own() -> None:
    network = f"{rg(S1)}/providers/Microsoft.Network"
    connection = f"{network}/connections/c1"
    read = describe("GET", f"{connection}/sharedKey")
    assert read is not None
    assert (read.action, read.scope) == (SHARED_KEY_READ, connection)
    for method, path in (("PUT", "sharedKey"), ("POST", "sharedKey/reset")):
        write = describe(method, f"{connection}/{path}")
        assert write is not None
        assert (write.action, write.scope) == (SHARED_KEY_WRITE, connection)
    # A reader sees the connection but not its key; a network contributor both.
    reader = access((READER, rg(S1)))
    check(reader, describe("GET", connection))  # type: ignore[arg-type]
    with pytest.raises(AuthorizationFailed):
        check(reader, read)
    check(access((NETWORK_CONTRIBUTOR, rg(S1))), read)
