"""Private endpoints: the consumer's side of private link.

An endpoint lives in a consumer subnet, owns a managed NIC with one private IP there,
and carries exactly one connection to a private link service, found by alias or by
resource id (visibility permitting). Its connection state mirrors the provider's.

This module holds the endpoint's own rules (its request, subnet, NIC and address); its
PUT and DELETE also change the service's connections, so those workflows are
`private_link.create_or_update_endpoint` and `private_link.delete_endpoint`.

Properties set at creation only (Azure: "static IP address and network interface name
... must be set when the private endpoint is created", learn.microsoft.com
azure/private-link/manage-private-endpoint):
- `ipConfigurations`: a static address for the endpoint, checked like any static IP
  (in the endpoint's subnet, not reserved, free). Azure maps each entry to a member
  (groupId/memberName) of a first-party resource; a private link service has no groups
  and gives its endpoint one IPv4 address, so at most one entry, with groupId and
  memberName empty (Azure's code for those on a target without groups:
  PrivateEndpointWithIpConfigurationsCannotHaveGroupIdsOrMemberNames). Azure itself
  offers static IPs to first-party targets only; privatelink offers them to its
  services too.
- `customNetworkInterfaceName`: the name of the managed NIC (default
  `<endpoint>.nic.<guid>`); a PUT naming another, or none when it was named, is
  Azure's NameOfExistingPrivateEndpointNicCannotBeChanged.
`applicationSecurityGroups` may change on any PUT. Application security groups are not
a resource type here, so their ids are checked for shape
(`Microsoft.Network/applicationSecurityGroups/<name>`), stored and returned, never
looked up; nothing filters traffic by them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from privatelink.core import errors
from privatelink.core.addressing import parse_address
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

# An endpoint to a private link service has one IPv4 address, so one ipConfiguration.
MAX_IP_CONFIGURATIONS = 1
# Azure's limit of application security groups over a NIC's IP configurations.
MAX_APPLICATION_SECURITY_GROUPS = 20
# The name of the ipConfiguration made for a bare `static_ip` (callers of the core).
DEFAULT_IP_CONFIGURATION = "ipconfig1"


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
class EndpointIpConfiguration:
    """An entry of ipConfigurations: a static address of the endpoint, in its subnet.

    groupId and memberName name a first-party resource's member; always empty here.
    """

    name: str
    private_ip: str | None = None
    group_id: str = ""
    member_name: str = ""


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
    # The address of its ipConfiguration; `check_request` keeps the two in step (a bare
    # `static_ip` gets a configuration named DEFAULT_IP_CONFIGURATION).
    static_ip: str | None = None
    ip_configurations: tuple[EndpointIpConfiguration, ...] = ()
    application_security_groups: tuple[str, ...] = ()
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
    endpoint = _check_ip_configurations(endpoint)
    endpoint = _check_application_security_groups(endpoint)
    return endpoint, conn


def _check_ip_configurations(endpoint: PrivateEndpoint) -> PrivateEndpoint:
    """At most one ipConfiguration, named, without groupId or memberName, with an
    address (checked against the subnet when the NIC is made)."""
    configs = endpoint.ip_configurations
    if not configs and endpoint.static_ip:
        configs = (EndpointIpConfiguration(DEFAULT_IP_CONFIGURATION, endpoint.static_ip),)
    if len(configs) > MAX_IP_CONFIGURATIONS:
        raise errors.PrivateEndpointTooManyIpConfigurations(
            id=endpoint.id, count=len(configs), limit=MAX_IP_CONFIGURATIONS
        )
    for config in configs:
        where = f"{endpoint.id}/ipConfigurations/{config.name}"
        if not valid_name(config.name):
            raise errors.InvalidResourceName(name=config.name)
        if config.group_id or config.member_name:
            raise errors.PrivateEndpointIpConfigurationHasGroupId(
                id=endpoint.id,
                name=config.name,
                group_id=config.group_id,
                member_name=config.member_name,
            )
        if not config.private_ip:
            raise errors.PrivateIPAddressRequired(
                f"{errors.clip(where, errors.MAX_FIELD)}: an ipConfiguration of a private "
                "endpoint needs a privateIPAddress."
            )
    static_ip = configs[0].private_ip if configs else None
    return replace(endpoint, ip_configurations=configs, static_ip=static_ip)


def _check_application_security_groups(endpoint: PrivateEndpoint) -> PrivateEndpoint:
    """Application security group ids: well-formed, at most Azure's 20; not looked up."""
    groups = endpoint.application_security_groups
    if len(groups) > MAX_APPLICATION_SECURITY_GROUPS:
        raise errors.PrivateEndpointApplicationSecurityGroupsLimitReached(
            id=endpoint.id, count=len(groups), limit=MAX_APPLICATION_SECURITY_GROUPS
        )
    ids = tuple(str(parse_ref(g, "applicationSecurityGroups")) for g in groups)
    return replace(endpoint, application_security_groups=ids)


def _same_address(wanted: str | None, held: str | None) -> bool:
    """Whether a requested address is the one held (one that is no IPv4 address is
    refused as such, not as a change)."""
    if wanted is None or held is None:
        return wanted == held
    return str(parse_address(wanted)) == held


def _same_ip_configurations(endpoint: PrivateEndpoint, existing: PrivateEndpoint) -> bool:
    """Whether a PUT asks for the ipConfigurations the endpoint has (names ignore case)."""
    wanted, held = endpoint.ip_configurations, existing.ip_configurations
    return len(wanted) == len(held) and all(
        w.name.lower() == h.name.lower() and _same_address(w.private_ip, h.private_ip)
        for w, h in zip(wanted, held, strict=True)
    )


def _same_nic_name(endpoint: PrivateEndpoint, existing: PrivateEndpoint) -> bool:
    """Whether a PUT's customNetworkInterfaceName fits the NIC the endpoint has.

    None fits only an endpoint whose NIC got the default name (Azure refuses an empty
    name for a NIC named at creation); a name fits when it is the NIC's (any case).
    """
    if endpoint.custom_nic_name is None:
        return existing.custom_nic_name is None
    return endpoint.custom_nic_name.lower() == existing.nic_id.rsplit("/", 1)[-1].lower()


def update_existing(ctx: Context, endpoint: PrivateEndpoint, existing: PrivateEndpoint) -> Changes:
    """An endpoint PUT again: only tags, the request message and the application
    security groups may change."""
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
    if not _same_ip_configurations(endpoint, existing):
        raise errors.PrivateEndpointIpConfigurationsCannotChange(id=existing.id)
    if not _same_nic_name(endpoint, existing):
        raise errors.PrivateEndpointNicNameCannotChange(
            id=existing.id,
            nic=existing.nic_id.rsplit("/", 1)[-1],
            name=endpoint.custom_nic_name or "",
        )
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
        application_security_groups=endpoint.application_security_groups,
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
    # The stored configuration shows the address as the NIC holds it.
    configs = tuple(replace(c, private_ip=nic.primary_ip) for c in endpoint.ip_configurations)
    static_ip = nic.primary_ip if endpoint.static_ip else None
    placed = replace(
        staged, subnet_id=subnet.id, nic_id=nic.id, ip_configurations=configs, static_ip=static_ip
    )
    return placed, nic, guid


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
    "EndpointIpConfiguration",
    "PrivateEndpoint",
    "PrivateLinkServiceConnection",
    "is_connected",
]
