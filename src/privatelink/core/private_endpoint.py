"""Private endpoints: the consumer's side of private link.

An endpoint lives in a consumer subnet, owns a managed NIC with one private IP there,
and carries exactly one connection to a private link service, found by alias or by
resource id (visibility permitting). Its connection state mirrors the provider's.

This module holds the endpoint's own rules (its request, subnet, NIC and address); its
PUT and DELETE also change the service's connections, so those workflows are
`private_link.create_or_update_endpoint` and `private_link.delete_endpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from privatelink.core import errors
from privatelink.core.ids import ResourceId, key, parse_ref, valid_name
from privatelink.core.ip_configuration import STATIC
from privatelink.core.network_interface import NetworkInterface, NicIpConfiguration, managed_nic
from privatelink.core.private_link_service import APPROVED, DISCONNECTED, PENDING
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    check_unique_names,
    normalize_location,
)
from privatelink.core.virtual_network import SubnetRef, resolve_subnet
from privatelink.core.virtual_network_gateway import refuse_gateway_subnet

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


def dns_configs(fqdns: tuple[str, ...], ip: str | None) -> tuple[DnsConfig, ...]:
    """customDnsConfigs: each FQDN the service publishes, resolving to the endpoint's IP."""
    return tuple(DnsConfig(fqdn, (ip,) if ip else ()) for fqdn in fqdns)


def link_identifier(guid: str) -> str:
    """The connection's linkIdentifier, derived from a GUID."""
    # Azure shows a 32-bit number with bit 29 set (e.g. 536870913); derive one from a GUID.
    return str(0x20000000 | (int(guid.replace("-", "")[:8], 16) & 0x1FFFFFFF))


def check_request(
    ctx: Context, desired: PrivateEndpoint
) -> tuple[PrivateEndpoint, PrivateLinkServiceConnection]:
    """The endpoint of a PUT with its location normalised, and its one connection request."""
    endpoint = replace(desired, location=normalize_location(desired.location))
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
    if endpoint.custom_nic_name is not None and not valid_name(endpoint.custom_nic_name):
        raise errors.InvalidResourceName(name=endpoint.custom_nic_name)
    return endpoint, conn


def update_existing(ctx: Context, endpoint: PrivateEndpoint, existing: PrivateEndpoint) -> Changes:
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


def resolve_placement(view: StateView, endpoint: PrivateEndpoint) -> SubnetRef:
    """The subnet a new endpoint goes into (same region as the endpoint)."""
    subnet = resolve_subnet(view, endpoint.subnet_id, endpoint.id)
    refuse_gateway_subnet(subnet, endpoint.id)
    if subnet.vnet.location != endpoint.location:
        raise errors.ResourceLocationMismatch(
            id=endpoint.id,
            location=endpoint.location,
            ref=subnet.vnet.id,
            other=subnet.vnet.location,
        )
    return subnet


def place(
    view: StateView, ctx: Context, endpoint: PrivateEndpoint, subnet: SubnetRef
) -> tuple[PrivateEndpoint, NetworkInterface, str]:
    """A new endpoint in its subnet with its managed NIC and address.

    Returns the endpoint (in the subnet, owning the NIC), the NIC, and the GUID that
    named them (the connection's remote name is derived from it too).
    """
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
    return replace(staged, subnet_id=subnet.id, nic_id=nic.id), nic, guid


def delete_owned(view: StateView, changes: Changes, endpoint: PrivateEndpoint) -> None:
    """Delete an endpoint with what it owns: its NIC and its private DNS zone groups."""
    # Its private DNS zone groups go with it (and so do their records).
    for group in view.referrers(endpoint.key, "dnsgroup-pe"):
        changes.delete(group.id)
    changes.delete(endpoint.nic_id)
    changes.delete(endpoint.id)


def is_connected(endpoint: PrivateEndpoint) -> bool:
    """Whether the endpoint's connection may carry traffic."""
    return endpoint.connection.status == APPROVED


def references(endpoint: PrivateEndpoint) -> list[tuple[str, str]]:
    """Index entries: its subnet and virtual network, and the service it connects to."""
    refs = [
        ("subnet", key(endpoint.subnet_id)),
        ("pe-vnet", parse_ref(endpoint.subnet_id, "virtualNetworks", "subnets").parent().key),
    ]
    for conn in endpoint.connections:
        if conn.private_link_service_id:
            refs.append(("pls", key(conn.private_link_service_id)))
    return refs


__all__ = [
    "DISCONNECTED",
    "DnsConfig",
    "PrivateEndpoint",
    "PrivateLinkServiceConnection",
    "is_connected",
]
