"""Direct Connect: a private link service with a destination IP instead of a load balancer.

Owns the rules of a service with `destinationIPAddress` (api-version 2024-03-01 and
later), as Azure documents them ("Configure Private Link service Direct Connect"):

* a destination or `loadBalancerFrontendIpConfigurations`, never both, and no migration
  of an existing service from one to the other;
* a static IPv4 destination: a literal address (nothing allocates it), in the address
  space of the provider's network (the network of the NAT IPs), not a private endpoint,
  not a NAT IP. Azure accepts any privately routable address; here the data plane
  delivers only inside that network, and to a NIC's address (an address nothing holds
  yet is accepted: the NIC may come later), so peered networks, sites and load balancer
  frontends are refused;
* 2 to 8 NAT IP configurations, in multiples of 2 (for high availability);
* at most 10 Direct Connect services per subscription and region (`Limits`).

Azure publishes no error codes for these; ours are in core/errors.py. Connections and
their approval are the same as any service's. The data plane carries TCP only, to the
port the client chose (dataplane/desired.py, docs/dataplane.md); nothing here says which
ports, since the service has no load-balancing rules.

Pure: reads state through `StateView`, never writes.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address

from privatelink.core import errors
from privatelink.core.addressing import is_reserved
from privatelink.core.ids import ResourceId
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.resource import Context, StateView
from privatelink.core.virtual_network import VirtualNetwork

#: The index kind under which a Direct Connect service files itself: `region_key`.
KIND = "directconnect"


def region_key(subscription: str, location: str) -> str:
    """What a Direct Connect service is indexed by: its subscription and region."""
    return f"{subscription.lower()}/{location.lower()}"


def normalize_destination(service_id: str, value: str) -> str:
    """The destination as stored: '' (none) or an IPv4 address in its canonical form.

    Garbage is a 400 `PrivateLinkServiceDestinationIPAddressInvalid`, an IPv6 address a
    400 `PrivateLinkServiceIPv6NotSupported` (private link services are IPv4 only).
    """
    if not value:
        return ""
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise errors.DestinationIPAddressInvalid(value=value, id=service_id) from None
    if not isinstance(addr, IPv4Address):
        raise errors.PrivateLinkServiceIPv6NotSupported(what="destinationIPAddress", id=service_id)
    return str(addr)


def settle_kind(
    service_id: str, destination: str, has_frontends: bool, existing: str | None
) -> str:
    """The destination a PUT stores: '' for a load-balanced service.

    `existing` is the stored service's destination ('' for a load-balanced one), None
    when the service is new. Both a destination and frontends: 400. A stored service
    keeps its kind (Azure: "Migration of existing private link services isn't
    supported"). A PUT with neither keeps a stored destination: clients on api-versions
    before 2024-03-01 know no `destinationIPAddress`, and rewrite the whole service
    without it (as `accessMode`, core/private_link_service.py).
    """
    if destination and has_frontends:
        raise errors.DestinationWithLoadBalancerFrontends(id=service_id)
    if existing is None:
        return destination
    if existing and not destination and not has_frontends:
        return existing
    if bool(existing) != bool(destination):
        kinds = ("uses a load balancer", "is a Direct Connect service (destinationIPAddress)")
        was, now = (kinds[1], "load-balanced") if existing else (kinds[0], "Direct Connect")
        raise errors.PrivateLinkServiceKindCannotChange(id=service_id, was=was, now=now)
    return destination


def check_nat_count(service_id: str, count: int, limit: int) -> None:
    """2 to `limit` NAT IP configurations, an even number of them."""
    if count < 2 or count > limit or count % 2:
        raise errors.DirectConnectNatIpConfigurationCount(id=service_id, count=count, limit=limit)


def check_region_limit(view: StateView, ctx: Context, subscription: str, location: str) -> None:
    """A new Direct Connect service fits under the per-subscription, per-region limit."""
    limit = ctx.limits.direct_connect_per_region
    if view.count_referrers(region_key(subscription, location), KIND) >= limit:
        raise errors.DirectConnectLimitReached(
            subscription=subscription, location=location, limit=limit
        )


def check_destination(
    view: StateView,
    service_id: str,
    destination: str,
    vnet: VirtualNetwork,
    nat_ips: set[str],
) -> None:
    """The destination is an address the provider's network `vnet` may deliver to.

    Inside its address space; when inside a subnet, not one of the subnet's reserved
    addresses, and held by nothing or by a user NIC: not a private endpoint's, not a NAT
    IP (`nat_ips`: the service's own, assigned in this request), not a load balancer
    frontend's or a gateway's. One indexed lookup of the address's holder.
    """
    addr = IPv4Address(destination)
    if not any(addr in ipaddress.ip_network(p, strict=False) for p in vnet.address_prefixes):
        raise errors.DestinationNotInVirtualNetwork(ip=destination, id=service_id, vnet=vnet.id)
    if destination in nat_ips:
        raise errors.DestinationIsNatIp(ip=destination, id=service_id, owner=service_id)
    subnet = next((s for s in vnet.subnets if addr in s.network()), None)
    if subnet is None:
        return
    subnet_id = vnet.subnet_id(subnet.name)
    if is_reserved(addr, subnet.network()):
        raise errors.PrivateIPAddressInReservedRange(ip=destination, subnet=subnet_id)
    owner = view.ip_holders(subnet_id, [destination]).get(destination)
    if owner is None:
        return
    holder = view.get(owner)
    if isinstance(holder, NetworkInterface):
        if not holder.managed_by:
            return  # a VM's address: what Direct Connect is for
        managed_by = ResourceId.parse(holder.managed_by)
        if managed_by.is_type("privateEndpoints"):
            raise errors.DestinationIsPrivateEndpoint(
                ip=destination, id=service_id, owner=holder.managed_by
            )
        if managed_by.is_type("privateLinkServices"):
            raise errors.DestinationIsNatIp(ip=destination, id=service_id, owner=holder.managed_by)
    raise errors.DestinationNotSupported(ip=destination, id=service_id, owner=owner)


def references(destination: str, subscription: str, location: str) -> list[tuple[str, str]]:
    """The index entry of a Direct Connect service (none for a load-balanced one)."""
    return [(KIND, region_key(subscription, location))] if destination else []
