"""Virtual network gateways: route-based, active-standby VPN gateways (no BGP).

A gateway lives in its virtual network's subnet named GatewaySubnet (/29 or larger, at
most one gateway per network) with one ipConfiguration: that subnet, where it takes one
private address (its side of the network), and a Standard static public IP no other
resource uses (its side of the tunnels). Sites connect to it through `connection`s.

GatewaySubnet is the gateway's alone: `refuse_gateway_subnet` is what network
interfaces, private endpoints, load balancer frontends and private link NAT IPs ask.

`ipsec_mode` is the data plane's report of how the gateway's IPsec runs ("kernel" or
"libipsec"), empty until it has said; a PUT keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from privatelink.core import errors
from privatelink.core.addressing import MIN_SUBNET_PREFIXLEN
from privatelink.core.ids import key, parse_ref
from privatelink.core.ip_configuration import DYNAMIC, Allocator, IpConfiguration
from privatelink.core.public_ip_address import USER_KIND, claim, resolve
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    check_unique_names,
    get_typed,
    normalize_location,
    pick,
)
from privatelink.core.virtual_network import SubnetRef, resolve_subnet

TYPE = "Microsoft.Network/virtualNetworkGateways"
GATEWAY_SUBNET = "GatewaySubnet"
VPN = "Vpn"
ROUTE_BASED = "RouteBased"
GATEWAY_TYPES = (VPN, "ExpressRoute", "LocalGateway")
VPN_TYPES = (ROUTE_BASED, "PolicyBased")
GENERATIONS = ("Generation1", "Generation2", "None")
#: The VPN SKUs served: VpnGw1-5 and their zone-redundant (AZ) twins.
SKUS = tuple(f"VpnGw{n}{az}" for az in ("", "AZ") for n in range(1, 6))
BASIC = "Basic"
AZURE_ASN = 65515  # the ASN Azure shows for a gateway without BGP
#: The index kind under which a gateway files its virtual network (one per network).
VNET_KIND = "gateway-vnet"
#: The index kind under which a connection files its virtual network gateway.
CONNECTION_KIND = "connection-gateway"
IPSEC_MODES = ("kernel", "libipsec")


@dataclass(frozen=True)
class GatewayIpConfiguration:
    """A gateway's ipConfiguration: GatewaySubnet, its address there, its public IP."""

    name: str
    subnet_id: str
    public_ip_id: str
    private_ip: str | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualNetworkGateway(Resource):
    """A route-based VPN gateway (one ipConfiguration, no BGP, no active-active)."""

    gateway_type: str = VPN
    vpn_type: str = ROUTE_BASED
    sku: str = "VpnGw1"
    generation: str = "Generation1"
    ip_configurations: tuple[GatewayIpConfiguration, ...] = ()
    resource_guid: str = ""
    ipsec_mode: str = ""  # the data plane's: "kernel" or "libipsec", "" until known

    @property
    def ip_configuration(self) -> GatewayIpConfiguration:
        """The one ipConfiguration."""
        return self.ip_configurations[0]

    @property
    def virtual_network_id(self) -> str:
        """The gateway's virtual network."""
        subnet = parse_ref(self.ip_configuration.subnet_id, "virtualNetworks", "subnets")
        return str(subnet.parent())

    @property
    def public_ip_id(self) -> str:
        """The public IP of its tunnels."""
        return self.ip_configuration.public_ip_id

    def config_id(self, name: str) -> str:
        """The id of an ipConfiguration of this gateway."""
        return f"{self.id}/ipConfigurations/{name}"

    def public_ip_configs(self) -> dict[str, str]:
        """Public IP key -> the ipConfiguration using it."""
        return {key(c.public_ip_id): self.config_id(c.name) for c in self.ip_configurations}


# --- GatewaySubnet ------------------------------------------------------------------------------


def is_gateway_subnet(name: str) -> bool:
    """Whether a subnet name is Azure's reserved GatewaySubnet (case-insensitive)."""
    return name.lower() == GATEWAY_SUBNET.lower()


def refuse_gateway_subnet(subnet: SubnetRef, referrer: str) -> None:
    """400 GatewaySubnet when anything but a gateway wants an address in GatewaySubnet."""
    if is_gateway_subnet(subnet.subnet.name):
        raise errors.SubnetIsGatewaySubnet(id=referrer, subnet=subnet.id)


def check_gateway_subnet(subnet: SubnetRef, gateway_id: str) -> None:
    """A gateway's subnet: named GatewaySubnet and /29 or larger."""
    if not is_gateway_subnet(subnet.subnet.name):
        raise errors.GatewaySubnetRequired(id=gateway_id, subnet=subnet.id)
    if subnet.subnet.network().prefixlen > MIN_SUBNET_PREFIXLEN:
        raise errors.GatewaySubnetTooSmall(subnet=subnet.id, prefix=subnet.subnet.address_prefix)


# --- PUT ------------------------------------------------------------------------------------------


def check_sku(gateway_id: str, name: str) -> str:
    """The canonical sku name: VpnGw1-5 or VpnGw1AZ-5AZ (Basic refused with its reason)."""
    if name.lower() == BASIC.lower():
        raise errors.VirtualNetworkGatewaySkuNotSupported(
            id=gateway_id,
            sku=name,
            why=(
                "a Basic VPN gateway needs a Basic SKU (dynamic) public IP address, and Basic "
                "public IPs were retired on 30 September 2025; Basic gateways also lack IKEv2 "
                "for site-to-site. Use VpnGw1 to VpnGw5 or their AZ variants."
            ),
        )
    sku = next((s for s in SKUS if s.lower() == name.lower()), None)
    if sku is None:
        raise errors.VirtualNetworkGatewaySkuNotSupported(
            id=gateway_id,
            sku=errors.clip(name),
            why=f"use one of {', '.join(SKUS)} (ExpressRoute and legacy SKUs are not served).",
        )
    return sku


def check(desired: VirtualNetworkGateway) -> VirtualNetworkGateway:
    """The body's own rules: a route-based VPN gateway with one named ipConfiguration."""
    gateway_type = pick(desired.gateway_type or VPN, GATEWAY_TYPES, "gatewayType")
    if gateway_type != VPN:
        raise errors.UnsupportedProperty(
            name="gatewayType",
            why=f"'{gateway_type}' gateways are not served; use Vpn.",
        )
    vpn_type = pick(desired.vpn_type or ROUTE_BASED, VPN_TYPES, "vpnType")
    if vpn_type != ROUTE_BASED:
        raise errors.UnsupportedProperty(
            name="vpnType", why="policy-based VPN gateways are not served; use RouteBased."
        )
    generation = pick(desired.generation or "Generation1", GENERATIONS, "vpnGatewayGeneration")
    sku = check_sku(desired.id, desired.sku or SKUS[0])
    if len(desired.ip_configurations) != 1:
        raise errors.VirtualNetworkGatewayIpConfigurationCount(
            id=desired.id, count=len(desired.ip_configurations)
        )
    check_unique_names(desired.id, [c.name for c in desired.ip_configurations])
    return replace(
        desired,
        location=normalize_location(desired.location),
        gateway_type=gateway_type,
        vpn_type=vpn_type,
        generation=generation,
        sku=sku,
    )


def gateway_of_network(view: StateView, vnet_id: str) -> VirtualNetworkGateway | None:
    """The VPN gateway of a virtual network, or None (one indexed lookup)."""
    for found in view.referrers(key(vnet_id), VNET_KIND, 0, 1):
        if isinstance(found, VirtualNetworkGateway):
            return found
    return None


def create_or_update(view: StateView, ctx: Context, desired: VirtualNetworkGateway) -> Changes:
    """PUT a VPN gateway: its subnet, address, public IP and network are checked; an
    existing gateway keeps them (only tags and the sku change) and its `ipsec_mode`."""
    gateway = check(desired)
    existing = get_typed(view, gateway.id, VirtualNetworkGateway)
    config = gateway.ip_configuration
    where = gateway.config_id(config.name)
    subnet = resolve_subnet(view, config.subnet_id, where)
    check_gateway_subnet(subnet, gateway.id)
    if subnet.vnet.location != gateway.location:
        raise errors.ResourceLocationMismatch(
            id=gateway.id, location=gateway.location, ref=subnet.vnet.id, other=subnet.vnet.location
        )
    other = gateway_of_network(view, subnet.vnet.id)
    if other is not None and other.key != gateway.key:
        raise errors.VirtualNetworkGatewayAlreadyExists(
            vnet=subnet.vnet.id, other=other.id, id=gateway.id
        )
    pip = resolve(view, config.public_ip_id, where)
    if pip.location != gateway.location:
        raise errors.ResourceLocationMismatch(
            id=gateway.id, location=gateway.location, ref=pip.id, other=pip.location
        )
    claim(view, pip, gateway.id, where, {})
    previous: GatewayIpConfiguration | None = None
    if existing is not None:
        if existing.location != gateway.location:
            raise errors.ResourceLocationMismatch(
                id=existing.id,
                location=gateway.location,
                ref="its existing location",
                other=existing.location,
            )
        previous = existing.ip_configuration
        for field, old, new in (
            ("name", previous.name.lower(), config.name.lower()),
            ("subnet", key(previous.subnet_id), key(subnet.id)),
            ("publicIPAddress", key(previous.public_ip_id), pip.key),
        ):
            if old != new:
                raise errors.VirtualNetworkGatewayIpConfigurationCannotChange(
                    id=gateway.id, field=field, name=config.name
                )
        gateway = replace(
            gateway,
            id=existing.id,
            name=existing.name,
            resource_guid=existing.resource_guid,
            ipsec_mode=existing.ipsec_mode,
        )
    else:
        gateway = replace(gateway, resource_guid=ctx.new_guid(), ipsec_mode="")
    # The gateway's own address in GatewaySubnet (kept across updates).
    allocator = Allocator(view, gateway.id)
    address = allocator.assign(
        subnet,
        IpConfiguration(config.name, subnet.id, allocation=DYNAMIC),
        previous.private_ip if previous is not None else None,
    )
    gateway = replace(
        gateway,
        ip_configurations=(
            replace(
                config,
                name=previous.name if previous is not None else config.name,
                subnet_id=subnet.id,
                public_ip_id=pip.id,
                private_ip=address,
            ),
        ),
        provisioning_state=ctx.initial_state,
    )
    changes = Changes()
    changes.put(gateway)
    return changes


def delete(view: StateView, ctx: Context, gateway_id: str) -> Changes:
    """DELETE a gateway (refused while a connection uses it): its subnet, address and
    public IP are free again."""
    changes = Changes()
    gateway = get_typed(view, gateway_id, VirtualNetworkGateway)
    if gateway is None:
        return changes
    users = view.referrers(gateway.key, CONNECTION_KIND, 0, 1)
    if users:
        raise errors.VirtualNetworkGatewayCannotBeDeleted(id=gateway.id, connection=users[0].id)
    changes.delete(gateway.id)
    return changes


def with_ipsec_mode(gateway: VirtualNetworkGateway, mode: str) -> VirtualNetworkGateway:
    """The gateway as the data plane reports it: its IPsec runs in `mode`."""
    if mode not in IPSEC_MODES:
        raise ValueError(f"ipsec mode must be one of {', '.join(IPSEC_MODES)}; got {mode!r}")
    return replace(gateway, ipsec_mode=mode)


def references(gateway: VirtualNetworkGateway) -> list[tuple[str, str]]:
    """Index entries: its subnet (which then cannot go), network and public IP."""
    refs: list[tuple[str, str]] = []
    for config in gateway.ip_configurations:
        refs.append(("subnet", key(config.subnet_id)))
        refs.append((USER_KIND, key(config.public_ip_id)))
    if gateway.ip_configurations:
        refs.append((VNET_KIND, key(gateway.virtual_network_id)))
    return refs


def ip_usages(gateway: VirtualNetworkGateway) -> list[tuple[str, str]]:
    """Addresses held: its address in GatewaySubnet."""
    return [(key(c.subnet_id), c.private_ip) for c in gateway.ip_configurations if c.private_ip]
