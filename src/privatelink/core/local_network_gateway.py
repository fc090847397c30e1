"""Local network gateways: an on-premises site as a connection sees it.

A site is the public IPv4 address of its VPN device (`gateway_ip_address`) and the
prefixes behind it (`address_prefixes`), routed through the tunnel of each connection
that names it. FQDN devices and BGP are not served. While connections use a site its
prefixes must keep clear of their gateways' virtual networks (`check_prefixes`, which
the PUTs of both ask: see `connection`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import AddressValueError, IPv4Address

from privatelink.core import errors
from privatelink.core.addressing import parse_prefix
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    get_typed,
    normalize_location,
)
from privatelink.core.virtual_network import VirtualNetwork, span, stored_span

TYPE = "Microsoft.Network/localNetworkGateways"
#: The index kind under which a connection files its local network gateway.
CONNECTION_KIND = "connection-localgateway"


@dataclass(frozen=True, kw_only=True)
class LocalNetworkGateway(Resource):
    """An on-premises site: its VPN device's IPv4 address and the prefixes behind it."""

    gateway_ip_address: str = ""
    address_prefixes: tuple[str, ...] = ()
    resource_guid: str = ""


def check(ctx: Context, desired: LocalNetworkGateway) -> LocalNetworkGateway:
    """The body's own rules: an IPv4 device address and valid IPv4 prefixes (each once)."""
    lng = replace(desired, location=normalize_location(desired.location))
    value = lng.gateway_ip_address.strip()
    if not value:
        raise errors.LocalNetworkGatewayIpAddressRequired(id=lng.id)
    try:
        address = IPv4Address(value)
    except (AddressValueError, ValueError):
        if ":" in value:
            raise errors.UnsupportedProperty(
                name="gatewayIpAddress", why="IPv6 VPN devices are not served; use IPv4."
            ) from None
        raise errors.InvalidLocalNetworkGatewayIpAddress(value=value, id=lng.id) from None
    limit = ctx.limits.address_prefixes_per_vnet
    if len(lng.address_prefixes) > limit:
        raise errors.AddressPrefixesPerVirtualNetworkLimitReached(
            id=lng.id, count=len(lng.address_prefixes), limit=limit
        )
    prefixes = tuple(dict.fromkeys(str(parse_prefix(p, lng.id)) for p in lng.address_prefixes))
    return replace(lng, gateway_ip_address=str(address), address_prefixes=prefixes)


def check_prefixes(
    lng: LocalNetworkGateway, vnet: VirtualNetwork, gateway_id: str, connection_id: str
) -> None:
    """No prefix of the site may overlap the address space of the network it connects to."""
    theirs = [(p, stored_span(p)) for p in vnet.address_prefixes]
    for prefix in lng.address_prefixes:
        first, last = span(parse_prefix(prefix, lng.id))
        for other, (o_first, o_last) in theirs:
            if first <= o_last and o_first <= last:
                raise errors.LocalNetworkAddressSpaceOverlapsVirtualNetwork(
                    prefix=prefix,
                    lng=lng.id,
                    other=other,
                    vnet=vnet.id,
                    gateway=gateway_id,
                    id=connection_id,
                )


def prepare(view: StateView, ctx: Context, desired: LocalNetworkGateway) -> LocalNetworkGateway:
    """The site a PUT writes (an existing one keeps its id casing and resource GUID).

    The PUT workflow is `connection.create_or_update_local_network_gateway`: it also
    checks the new prefixes against the networks of the connections using the site.
    """
    lng = check(ctx, desired)
    existing = get_typed(view, lng.id, LocalNetworkGateway)
    if existing is not None:
        if existing.location != lng.location:
            raise errors.ResourceLocationMismatch(
                id=existing.id,
                location=lng.location,
                ref="its existing location",
                other=existing.location,
            )
        lng = replace(lng, id=existing.id, name=existing.name, resource_guid=existing.resource_guid)
    else:
        lng = replace(lng, resource_guid=ctx.new_guid())
    return replace(lng, provisioning_state=ctx.initial_state)


def delete(view: StateView, ctx: Context, lng_id: str) -> Changes:
    """DELETE a site (refused while a connection uses it)."""
    changes = Changes()
    lng = get_typed(view, lng_id, LocalNetworkGateway)
    if lng is None:
        return changes
    users = view.referrers(lng.key, CONNECTION_KIND, 0, 1)
    if users:
        raise errors.LocalNetworkGatewayCannotBeDeleted(id=lng.id, connection=users[0].id)
    changes.delete(lng.id)
    return changes


def references(lng: LocalNetworkGateway) -> list[tuple[str, str]]:
    """Index entries: none (connections file it)."""
    return []
