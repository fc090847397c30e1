"""Private endpoints: the consumer's side of private link.

An endpoint lives in a consumer subnet, owns a managed NIC with one private IP there,
and carries exactly one connection to a private link service, found by alias or by
resource id (visibility permitting). Its connection state mirrors the provider's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from privatelink.core import errors
from privatelink.core.ids import ResourceId, key, valid_name
from privatelink.core.ip_configuration import STATIC
from privatelink.core.network_interface import NetworkInterface, NicIpConfiguration, managed_nic
from privatelink.core.private_link_service import (
    APPROVED,
    DISCONNECTED,
    PENDING,
    PrivateEndpointConnection,
    PrivateLinkService,
    find_service,
    is_auto_approved,
)
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    check_unique_names,
    get_typed,
    normalize_location,
)
from privatelink.core.virtual_network import resolve_subnet

TYPE = "Microsoft.Network/privateEndpoints"


@dataclass(frozen=True)
class PrivateLinkServiceConnection:
    """The consumer's request to one private link service, and its state."""

    name: str
    target: str
    private_link_service_id: str = ""
    request_message: str | None = None
    group_ids: tuple[str, ...] = ()
    status: str = PENDING
    description: str = ""
    actions_required: str = "None"
    remote_name: str = ""


@dataclass(frozen=True)
class DnsConfig:
    """A name the provider published, and the endpoint address it should resolve to."""

    fqdn: str
    ip_addresses: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PrivateEndpoint(Resource):
    """A private endpoint."""

    subnet_id: str = ""
    connections: tuple[PrivateLinkServiceConnection, ...] = ()
    manual: bool = False
    nic_id: str = ""
    custom_nic_name: str | None = None
    static_ip: str | None = None
    custom_dns_configs: tuple[DnsConfig, ...] = ()

    @property
    def connection(self) -> PrivateLinkServiceConnection:
        """The endpoint's one connection."""
        return self.connections[0]


def _dns_configs(service: PrivateLinkService, ip: str | None) -> tuple[DnsConfig, ...]:
    return tuple(DnsConfig(fqdn, (ip,) if ip else ()) for fqdn in service.fqdns)


def _link_identifier(guid: str) -> str:
    # Azure shows a 32-bit number with bit 29 set (e.g. 536870913); derive one from a GUID.
    return str(0x20000000 | (int(guid.replace("-", "")[:8], 16) & 0x1FFFFFFF))


def _check_connection_spec(ctx: Context, endpoint: PrivateEndpoint) -> PrivateLinkServiceConnection:
    if len(endpoint.connections) != 1:
        raise errors.PrivateEndpointConnectionRequired(
            id=endpoint.id, count=len(endpoint.connections)
        )
    conn = endpoint.connections[0]
    check_unique_names(endpoint.id, [conn.name])
    if conn.group_ids:
        raise errors.InvalidGroupIds(value=list(conn.group_ids))
    message = conn.request_message or ""
    if len(message) > ctx.limits.request_message_length:
        raise errors.RequestMessageTooLong(
            length=len(message), limit=ctx.limits.request_message_length
        )
    if not conn.target.strip():
        raise errors.PrivateLinkServiceNotFound(target=conn.target)
    return conn


def _update_existing(ctx: Context, endpoint: PrivateEndpoint, existing: PrivateEndpoint) -> Changes:
    """An endpoint PUT again: only tags and the request message may change."""
    conn = endpoint.connections[0]
    old = existing.connection
    if (
        conn.name.lower() != old.name.lower()
        or conn.target.strip().lower() != old.target.strip().lower()
        or endpoint.manual != existing.manual
    ):
        raise errors.PrivateEndpointConnectionTargetCannotChange(id=existing.id)
    if key(endpoint.subnet_id) != key(existing.subnet_id):
        raise errors.PrivateEndpointSubnetCannotChange(id=existing.id)
    if endpoint.location != existing.location:
        raise errors.ResourceLocationMismatch(
            id=existing.id,
            location=endpoint.location,
            ref="its existing location",
            other=existing.location,
        )
    updated = replace(
        existing,
        tags=endpoint.tags,
        connections=(replace(old, request_message=conn.request_message),),
    )
    changes = Changes()
    changes.put(updated)
    return changes


def create_or_update(view: StateView, ctx: Context, desired: PrivateEndpoint) -> Changes:
    """PUT a private endpoint: allocate its IP, create its NIC and request the connection."""
    endpoint = replace(desired, location=normalize_location(desired.location))
    conn = _check_connection_spec(ctx, endpoint)
    if endpoint.custom_nic_name is not None and not valid_name(endpoint.custom_nic_name):
        raise errors.InvalidResourceName(name=endpoint.custom_nic_name)
    existing = get_typed(view, endpoint.id, PrivateEndpoint)
    if existing is not None:
        return _update_existing(ctx, endpoint, existing)

    subnet = resolve_subnet(view, endpoint.subnet_id, endpoint.id)
    if subnet.vnet.location != endpoint.location:
        raise errors.ResourceLocationMismatch(
            id=endpoint.id,
            location=endpoint.location,
            ref=subnet.vnet.id,
            other=subnet.vnet.location,
        )
    consumer = endpoint.rid.subscription
    service = find_service(view, conn.target, consumer)
    if service is None:
        raise errors.PrivateLinkServiceNotFound(target=conn.target)
    if service.location != endpoint.location:
        raise errors.PrivateEndpointLocationMismatch(
            id=endpoint.id, location=endpoint.location, other=service.location
        )
    if len(service.connections) >= ctx.limits.pe_per_pls:
        raise errors.PrivateEndpointsPerPrivateLinkServiceLimitReached(limit=ctx.limits.pe_per_pls)
    if view.count_referrers(subnet.vnet.key, "pe-vnet") >= ctx.limits.pe_per_vnet:
        raise errors.PrivateEndpointsPerVirtualNetworkLimitReached(
            vnet=subnet.vnet.id, limit=ctx.limits.pe_per_vnet
        )

    rid = endpoint.rid
    guid = ctx.new_guid()
    nic_name = endpoint.custom_nic_name or f"{endpoint.name}.nic.{guid}"
    nic_id = str(
        ResourceId.build(rid.subscription, rid.resource_group, "networkInterfaces", nic_name)
    )
    if view.get(nic_id) is not None:
        raise errors.InvalidRequestContent(f"Network interface {nic_id} already exists.")
    staged = replace(endpoint, provisioning_state=ctx.initial_state)
    nic_config = NicIpConfiguration(
        name=f"privateEndpointIpConfig.{guid}",
        subnet_id=subnet.id,
        private_ip=endpoint.static_ip,
        allocation=STATIC if endpoint.static_ip else "Dynamic",
        primary=True,
    )
    nic = managed_nic(view, staged, nic_id, (nic_config,), None)

    approved = is_auto_approved(service, consumer)
    status = APPROVED if approved else PENDING
    description = "Auto-Approved" if approved else (conn.request_message or "Awaiting approval")
    remote_name = f"{endpoint.name}.{guid}"
    remote = PrivateEndpointConnection(
        name=remote_name,
        private_endpoint_id=endpoint.id,
        private_endpoint_location=endpoint.location,
        link_identifier=_link_identifier(ctx.new_guid()),
        status=status,
        description=description,
    )
    local = replace(
        conn,
        private_link_service_id=service.id,
        status=status,
        description=description,
        actions_required="None",
        remote_name=remote_name,
    )
    staged = replace(
        staged,
        subnet_id=subnet.id,
        nic_id=nic.id,
        connections=(local,),
        custom_dns_configs=_dns_configs(service, nic.primary_ip),
    )
    changes = Changes()
    changes.put(nic)
    changes.put(staged)
    changes.put(replace(service, connections=(*service.connections, remote)))
    return changes


def delete(view: StateView, ctx: Context, endpoint_id: str) -> Changes:
    """DELETE an endpoint: its connection leaves the service, its NIC goes with it."""
    endpoint = get_typed(view, endpoint_id, PrivateEndpoint)
    changes = Changes()
    if endpoint is None:
        return changes
    conn = endpoint.connection
    service = get_typed(view, conn.private_link_service_id, PrivateLinkService)
    if service is not None and service.connection(conn.remote_name) is not None:
        changes.put(
            replace(
                service,
                connections=tuple(
                    c for c in service.connections if c.name.lower() != conn.remote_name.lower()
                ),
            )
        )
    # Its private DNS zone groups go with it (and so do their records).
    for group in view.referrers(endpoint.key, "dnsgroup-pe"):
        changes.delete(group.id)
    changes.delete(endpoint.nic_id)
    changes.delete(endpoint.id)
    return changes


def mirror_state(
    view: StateView, changes: Changes, endpoint_id: str, remote: PrivateEndpointConnection
) -> None:
    """Copy the provider's connection state onto the endpoint (in the same change set)."""
    endpoint = get_typed(view, endpoint_id, PrivateEndpoint)
    if endpoint is None:
        return
    conn = replace(
        endpoint.connection,
        status=remote.status,
        description=remote.description,
        actions_required=remote.actions_required,
    )
    changes.put(replace(endpoint, connections=(conn,)))


def refresh_dns(
    view: StateView, changes: Changes, endpoint_id: str, service: PrivateLinkService
) -> None:
    """Re-derive an endpoint's customDnsConfigs after the service's FQDNs changed."""
    endpoint = get_typed(view, endpoint_id, PrivateEndpoint)
    nic = get_typed(view, endpoint.nic_id, NetworkInterface) if endpoint else None
    if endpoint is None or nic is None:
        return
    changes.put(replace(endpoint, custom_dns_configs=_dns_configs(service, nic.primary_ip)))


def is_connected(endpoint: PrivateEndpoint) -> bool:
    """Whether the endpoint's connection may carry traffic."""
    return endpoint.connection.status == APPROVED


__all__ = [
    "DISCONNECTED",
    "DnsConfig",
    "PrivateEndpoint",
    "PrivateLinkServiceConnection",
    "create_or_update",
    "delete",
    "is_connected",
    "mirror_state",
    "refresh_dns",
]
