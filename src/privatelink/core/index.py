"""What the store indexes about each resource, so workflows can ask "who uses X".

`references(resource)` lists (kind, target key) pairs; `ip_usages(resource)` lists the
(subnet key, ip) addresses a resource holds. The store keeps both in tables, rewritten
with every write, and answers `StateView.referrers` and `StateView.used_ips` from them.
"""

from __future__ import annotations

from privatelink.core.ids import key, parse_ref
from privatelink.core.load_balancer import LoadBalancer
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.private_dns import ARecordSet, PrivateDnsZoneGroup, VirtualNetworkLink
from privatelink.core.private_endpoint import PrivateEndpoint
from privatelink.core.private_link_service import PrivateLinkService
from privatelink.core.resource import Resource


def _vnet_of_subnet(subnet_id: str) -> str:
    return parse_ref(subnet_id, "virtualNetworks", "subnets").parent().key


def references(resource: Resource) -> list[tuple[str, str]]:
    """Index entries (kind, target key) for a resource."""
    refs: list[tuple[str, str]] = []
    if isinstance(resource, LoadBalancer):
        for fe in resource.frontends:
            refs.append(("subnet", key(fe.subnet_id)))
    elif isinstance(resource, NetworkInterface):
        for config in resource.ip_configurations:
            refs.append(("subnet", key(config.subnet_id)))
            refs.extend(("pool", key(p)) for p in config.pool_ids)
        if resource.managed_by:
            refs.append(("owner", key(resource.managed_by)))
    elif isinstance(resource, PrivateLinkService):
        if resource.frontend_ids:
            refs.append(("lb", resource.load_balancer_key))
        refs.extend(("frontend", key(f)) for f in resource.frontend_ids)
        if resource.alias:
            refs.append(("alias", resource.alias.lower()))
        refs.extend(("autoapproval", s.lower()) for s in resource.auto_approval)
    elif isinstance(resource, PrivateEndpoint):
        refs.append(("subnet", key(resource.subnet_id)))
        refs.append(("pe-vnet", _vnet_of_subnet(resource.subnet_id)))
        for conn in resource.connections:
            if conn.private_link_service_id:
                refs.append(("pls", key(conn.private_link_service_id)))
    elif isinstance(resource, VirtualNetworkLink):
        refs.append(("dnslink-zone", key(resource.zone_id)))
        refs.append(("dnslink-vnet", key(resource.virtual_network_id)))
    elif isinstance(resource, ARecordSet):
        refs.append(("dnsrecord-zone", key(resource.zone_id)))
    elif isinstance(resource, PrivateDnsZoneGroup):
        refs.append(("dnsgroup-pe", key(resource.endpoint_id)))
        refs.extend(("dnsgroup-zone", key(c.zone_id)) for c in resource.configs)
    return list(dict.fromkeys(refs))


def ip_usages(resource: Resource) -> list[tuple[str, str]]:
    """Addresses held: (subnet key, ip). NAT IPs are held by the service's NIC."""
    if isinstance(resource, LoadBalancer):
        return [(key(f.subnet_id), f.private_ip) for f in resource.frontends if f.private_ip]
    if isinstance(resource, NetworkInterface):
        return [
            (key(c.subnet_id), c.private_ip) for c in resource.ip_configurations if c.private_ip
        ]
    return []
