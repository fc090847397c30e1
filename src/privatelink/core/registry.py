"""The one registry of resource types: everything that is said once per ARM type.

Each `ResourceType` gives a type's canonical ARM name (its path segments and RBAC
actions follow from it), its model class, what the store indexes about it
(`references`, `ip_usages`), its PUT and DELETE workflows, where it falls when a
resource group is deleted, and whether templates may deploy it. The store's codec and
index tables, template deployments, resource group deletion and the API's path
canonicalisation and resource kinds all read this table.

Child types that live inside their parent's document (subnets, a load balancer's
children, a NIC's ip configurations) are listed too, without a model: they have routes,
path segments and RBAC actions of their own. Private endpoint connections are stored as
documents of their own but written only by the workflows of private link (an endpoint's
PUT and DELETE, the provider's approval and deletion): a model and no workflows.

Invariants: one entry per ARM type (case-insensitively); an entry with workflows has a
model and both workflows; order is declaration order (templates list the deployable
types in it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from privatelink.core import (
    connection,
    load_balancer,
    local_network_gateway,
    network_interface,
    private_dns,
    private_endpoint,
    private_link,
    private_link_service,
    public_ip_address,
    virtual_network,
    virtual_network_gateway,
    virtual_network_peering,
)
from privatelink.core.ids import NETWORK, ResourceId
from privatelink.core.resource import Changes, Resource

R = TypeVar("R", bound=Resource)
Index = list[tuple[str, str]]
Workflow = Callable[..., Changes]


def _nothing(_resource: Any) -> Index:
    return []


@dataclass(frozen=True)
class Actions:
    """The RBAC actions of a resource type (e.g. Microsoft.Network/privateLinkServices/read)."""

    read: str
    write: str
    delete: str


@dataclass(frozen=True, eq=False)
class ResourceType(Generic[R]):
    """One ARM resource type privatelink serves (entries compare and hash by identity).

    `model` is None for a child type stored inside its parent. `delete_order` is the
    type's place when a resource group is deleted (lower first); None for types deleted
    with their parent or owner.
    """

    arm_type: str  # canonical, e.g. "Microsoft.Network/privateLinkServices"
    model: type[R] | None = None
    references: Callable[[R], Index] = _nothing
    ip_usages: Callable[[R], Index] = _nothing
    create_or_update: Workflow | None = None
    delete: Workflow | None = None
    delete_order: int | None = None
    deployable: bool = False

    @property
    def key(self) -> str:
        """The lower-case ARM type: how the store names the type."""
        return self.arm_type.lower()

    @property
    def segments(self) -> tuple[str, ...]:
        """The type's path segments after the namespace: ("privateDnsZones", "A")."""
        return tuple(self.arm_type.split("/")[1:])

    @property
    def segment(self) -> str:
        """The last type segment, the one in a URL before the resource's name."""
        return self.segments[-1]

    @property
    def actions(self) -> Actions:
        """RBAC actions: the full type chain then read, write or delete."""
        return Actions(f"{self.arm_type}/read", f"{self.arm_type}/write", f"{self.arm_type}/delete")


def _t(*segments: str) -> str:
    return "/".join((NETWORK, *segments))


TYPES: tuple[ResourceType[Any], ...] = (
    ResourceType(
        _t("virtualNetworks"),
        virtual_network.VirtualNetwork,
        create_or_update=virtual_network_peering.create_or_update_network,
        delete=virtual_network_peering.delete_network,
        delete_order=8,
        deployable=True,
    ),
    ResourceType(_t("virtualNetworks", "subnets"), deployable=True),
    ResourceType(
        _t("virtualNetworks", "virtualNetworkPeerings"),
        virtual_network_peering.VirtualNetworkPeering,
        references=virtual_network_peering.references,
        create_or_update=virtual_network_peering.create_or_update,
        delete=virtual_network_peering.delete,
        deployable=True,
    ),
    ResourceType(
        _t("loadBalancers"),
        load_balancer.LoadBalancer,
        references=load_balancer.references,
        ip_usages=load_balancer.ip_usages,
        create_or_update=private_link.create_or_update_load_balancer,
        delete=load_balancer.delete,
        delete_order=5,
        deployable=True,
    ),
    ResourceType(_t("loadBalancers", "frontendIPConfigurations")),
    ResourceType(_t("loadBalancers", "backendAddressPools")),
    ResourceType(_t("loadBalancers", "probes")),
    ResourceType(_t("loadBalancers", "loadBalancingRules")),
    ResourceType(
        _t("networkInterfaces"),
        network_interface.NetworkInterface,
        references=network_interface.references,
        ip_usages=network_interface.ip_usages,
        create_or_update=network_interface.create_or_update,
        delete=network_interface.delete,
        delete_order=4,
        deployable=True,
    ),
    ResourceType(_t("networkInterfaces", "ipConfigurations")),
    ResourceType(
        _t("privateLinkServices"),
        private_link_service.PrivateLinkService,
        references=private_link_service.references,
        create_or_update=private_link.create_or_update_service,
        delete=private_link_service.delete,
        delete_order=3,
        deployable=True,
    ),
    ResourceType(
        _t("privateLinkServices", "privateEndpointConnections"),
        private_link_service.PrivateEndpointConnection,
        references=private_link_service.connection_references,
    ),
    ResourceType(
        _t("privateEndpoints"),
        private_endpoint.PrivateEndpoint,
        references=private_endpoint.references,
        create_or_update=private_link.create_or_update_endpoint,
        delete=private_link.delete_endpoint,
        delete_order=1,
        deployable=True,
    ),
    ResourceType(
        _t("privateEndpoints", "privateDnsZoneGroups"),
        private_dns.PrivateDnsZoneGroup,
        references=private_dns.group_references,
        create_or_update=private_dns.create_or_update_group,
        delete=private_dns.delete_group,
        delete_order=2,
        deployable=True,
    ),
    ResourceType(
        _t("privateDnsZones"),
        private_dns.PrivateDnsZone,
        create_or_update=private_dns.create_or_update_zone,
        delete=private_dns.delete_zone,
        delete_order=7,
        deployable=True,
    ),
    ResourceType(
        _t("privateDnsZones", "virtualNetworkLinks"),
        private_dns.VirtualNetworkLink,
        references=private_dns.link_references,
        create_or_update=private_dns.create_or_update_link,
        delete=private_dns.delete_link,
        delete_order=6,
        deployable=True,
    ),
    ResourceType(
        _t("privateDnsZones", "A"),
        private_dns.ARecordSet,
        references=private_dns.record_set_references,
        create_or_update=private_dns.create_or_update_record_set,
        delete=private_dns.delete_record_set,
        deployable=True,
    ),
    # Reach (issue 13). Deletion: connections (1, after endpoints) before gateways and
    # sites (5, after load balancers), public IPs (6) after every user, networks last.
    ResourceType(
        _t("publicIPAddresses"),
        public_ip_address.PublicIPAddress,
        references=public_ip_address.references,
        ip_usages=public_ip_address.ip_usages,
        create_or_update=public_ip_address.create_or_update,
        delete=public_ip_address.delete,
        delete_order=6,
        deployable=True,
    ),
    ResourceType(
        _t("virtualNetworkGateways"),
        virtual_network_gateway.VirtualNetworkGateway,
        references=virtual_network_gateway.references,
        ip_usages=virtual_network_gateway.ip_usages,
        create_or_update=virtual_network_gateway.create_or_update,
        delete=virtual_network_gateway.delete,
        delete_order=5,
        deployable=True,
    ),
    ResourceType(_t("virtualNetworkGateways", "ipConfigurations")),
    ResourceType(
        _t("localNetworkGateways"),
        local_network_gateway.LocalNetworkGateway,
        references=local_network_gateway.references,
        create_or_update=connection.create_or_update_local_network_gateway,
        delete=local_network_gateway.delete,
        delete_order=5,
        deployable=True,
    ),
    ResourceType(
        _t("connections"),
        connection.VirtualNetworkGatewayConnection,
        references=connection.references,
        create_or_update=connection.create_or_update,
        delete=connection.delete,
        delete_order=1,
        deployable=True,
    ),
    # The key's own routes (connections/{name}/sharedkey): Azure's RBAC spells it so.
    ResourceType(_t("connections", "sharedKey")),
)

_BY_KEY: dict[str, ResourceType[Any]] = {t.key: t for t in TYPES}
_BY_MODEL: dict[type[Resource], ResourceType[Any]] = {t.model: t for t in TYPES if t.model}


def get(arm_type: str) -> ResourceType[Any] | None:
    """The entry of an ARM type (any casing), or None when privatelink does not serve it."""
    return _BY_KEY.get(arm_type.lower())


def require(arm_type: str) -> ResourceType[Any]:
    """The entry of an ARM type (any casing); KeyError when privatelink does not serve it."""
    return _BY_KEY[arm_type.lower()]


def of(resource: Resource) -> ResourceType[Any]:
    """The entry of a resource object (KeyError for a class that is not registered)."""
    return _BY_MODEL[type(resource)]


def for_id(resource_id: str) -> ResourceType[Any] | None:
    """The entry of the type a Microsoft.Network resource id names, or None."""
    return get(ResourceId.parse(resource_id).type)


def stored() -> tuple[ResourceType[Any], ...]:
    """The types stored as documents of their own (those with a model)."""
    return tuple(t for t in TYPES if t.model is not None)


def served() -> tuple[ResourceType[Any], ...]:
    """The stored types with workflows of their own: each is an API resource kind
    (private endpoint connections are stored, but written by private link's workflows)."""
    return tuple(t for t in stored() if t.create_or_update is not None)


def deployable() -> tuple[ResourceType[Any], ...]:
    """The types a template may deploy, in registry order."""
    return tuple(t for t in TYPES if t.deployable)


def deletion_order() -> tuple[ResourceType[Any], ...]:
    """The types a resource group deletion removes, in the order it removes them."""
    ordered = [t for t in TYPES if t.delete_order is not None]
    return tuple(sorted(ordered, key=lambda t: t.delete_order or 0))


def segments() -> tuple[str, ...]:
    """Every type segment in canonical casing (each once, in registry order)."""
    return tuple(dict.fromkeys(s for t in TYPES for s in t.segments))


def references(resource: Resource) -> Index:
    """What the store indexes for a resource: (kind, target key) pairs, without repeats.

    The kinds are what workflows ask `StateView.referrers` for: "subnet", "pool", "owner",
    "lb", "frontend", "alias", "autoapproval", "pls", "pe-vnet", "dnslink-zone",
    "dnslink-vnet", "dnsrecord-zone", "dnsgroup-pe", "dnsgroup-zone", "publicip",
    "gateway-vnet", "connection-gateway", "connection-localgateway", "directconnect".
    """
    return list(dict.fromkeys(of(resource).references(resource)))


def ip_usages(resource: Resource) -> Index:
    """Addresses a resource holds: (subnet key, ip). NAT IPs are held by the service's NIC."""
    return of(resource).ip_usages(resource)
