"""Private link services: the provider's side of private link.

Owns the service resource, its NAT IP configurations (held by a managed NIC), its
alias, visibility, access mode and auto-approval, its FQDNs, the rules that tie it to one Standard
load balancer (or, for Direct Connect, to a destination IP: core/direct_connect.py), and the
provider's record of private endpoint connections with the
statuses they take. The connection state machine, and every workflow that also changes
an endpoint (the service's PUT refreshes endpoints' DNS), are in `private_link`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from privatelink.core import direct_connect, errors
from privatelink.core.actions import PLS_APPROVAL, PLS_READ
from privatelink.core.alias import make_alias
from privatelink.core.authorization import ALLOW_ALL, Access
from privatelink.core.ids import ResourceId, is_guid, key
from privatelink.core.ip_configuration import IPV4, IpConfiguration, is_ipv4
from privatelink.core.load_balancer import STANDARD, LoadBalancer, backend_network, resolve_child
from privatelink.core.network_interface import NetworkInterface, NicIpConfiguration, managed_nic
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    check_unique_names,
    get_typed,
    normalize_location,
    require,
)
from privatelink.core.virtual_network import DISABLED, resolve_subnet
from privatelink.core.virtual_network_gateway import refuse_gateway_subnet

TYPE = "Microsoft.Network/privateLinkServices"
CONNECTION_TYPE = f"{TYPE}/privateEndpointConnections"
PENDING = "Pending"
APPROVED = "Approved"
REJECTED = "Rejected"
DISCONNECTED = "Disconnected"
STATUSES = (PENDING, APPROVED, REJECTED, DISCONNECTED)
EVERYONE = "*"
# accessMode (api-version 2025-01-01 on): Default admits the visibility list, '*' and the
# service's RBAC holders; Restricted admits only the subscriptions the list names.
DEFAULT_ACCESS = "Default"
RESTRICTED = "Restricted"
ACCESS_MODES = (DEFAULT_ACCESS, RESTRICTED)

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class NatIpConfiguration(IpConfiguration):
    """A NAT IP: consumer traffic reaches the provider from one of these addresses."""


@dataclass(frozen=True, kw_only=True)
class PrivateEndpointConnection(Resource):
    """The provider's record of one private endpoint connected to the service.

    A document of its own (id `<service>/privateEndpointConnections/<name>`, indexed
    under its service as "connection"), not part of the service's: a connection's
    change writes one small row and reads its service by key, however many
    connections the service has (issue 12). Its location is the service's.
    """

    private_endpoint_id: str
    private_endpoint_location: str
    link_identifier: str
    status: str = PENDING
    description: str = ""
    actions_required: str = "None"

    @property
    def service_id(self) -> str:
        """The id of the service this connection belongs to."""
        return str(self.rid.parent())


@dataclass(frozen=True, kw_only=True)
class PrivateLinkService(Resource):
    """A private link service."""

    frontend_ids: tuple[str, ...] = ()
    ip_configurations: tuple[NatIpConfiguration, ...] = ()
    visibility: tuple[str, ...] = ()
    auto_approval: tuple[str, ...] = ()
    fqdns: tuple[str, ...] = ()
    enable_proxy_protocol: bool = False
    alias: str = ""
    nic_id: str = ""
    # "" in a desired service: not given, so the stored mode stays (Default when new);
    # a stored service always has one of ACCESS_MODES ("" in documents from before it).
    access_mode: str = ""
    # Direct Connect (core/direct_connect.py): the IPv4 address new flows go to, instead
    # of a load balancer's frontends ("" for a load-balanced service).
    destination_ip_address: str = ""

    @property
    def restricted(self) -> bool:
        """Whether only the subscriptions its visibility list names may connect."""
        return self.access_mode == RESTRICTED

    def connection_id(self, name: str) -> str:
        """ARM id of a connection of this service."""
        return f"{self.id}/privateEndpointConnections/{name}"

    @property
    def load_balancer_key(self) -> str:
        """Key of the load balancer of this service's frontends ("" for a Direct Connect
        service, which has none)."""
        if not self.frontend_ids:
            return ""
        return ResourceId.parse(self.frontend_ids[0]).parent().key

    @property
    def direct_connect(self) -> bool:
        """Whether the service sends its flows to a destination IP, not a load balancer."""
        return bool(self.destination_ip_address)

    @property
    def subscription(self) -> str:
        """The provider's subscription."""
        return self.rid.subscription


# --- visibility ---------------------------------------------------------------------------


def _listed(service: PrivateLinkService, sub: str) -> bool:
    """Whether the visibility list names `sub` (lower-case) itself ('*' names nobody)."""
    return sub in (s.lower() for s in service.visibility)


def _holds_rights(service: PrivateLinkService, sub: str, access: Access) -> bool:
    """Whether the caller holds RBAC rights on the service: its read or approval action.

    With authorization off the service's own subscription stands in for its RBAC holders.
    """
    if access is ALLOW_ALL:
        return sub == service.subscription.lower()
    return access.allows(PLS_READ, service.id) or access.allows(PLS_APPROVAL, service.id)


def is_visible(service: PrivateLinkService, subscription: str, access: Access = ALLOW_ALL) -> bool:
    """Whether a caller in `subscription` may find the service, and so connect to it.

    accessMode Default: visibility `*` exposes it to everyone and a subscription list to
    those subscriptions; beyond that, only principals with RBAC rights on the service
    find it (the seed's "RBAC permissions only"): `Microsoft.Network/privateLinkServices/
    read` or the approval action on it.

    accessMode Restricted ("Limits access to subscriptions which are inside visibility
    list only", Azure's AccessMode enum): only the subscriptions the list names; rights
    on the service admit nobody else (and a '*' is refused when the service is written).
    """
    sub = subscription.lower()
    if service.restricted:
        return _listed(service, sub)
    if EVERYONE in service.visibility or _listed(service, sub):
        return True
    return _holds_rights(service, sub, access)


def is_auto_approved(service: PrivateLinkService, subscription: str) -> bool:
    """Whether connections from a subscription are approved at once."""
    return subscription.lower() in (s.lower() for s in service.auto_approval)


def _resolve(view: StateView, target: str) -> PrivateLinkService | None:
    """The service an alias or resource id names, whoever asks (None: no such service)."""
    found: Resource | None
    if target.startswith("/"):
        rid = ResourceId.parse(target)
        if not rid.is_type("privateLinkServices"):
            return None
        found = view.get(target)
    else:
        matches = view.referrers(target.strip().lower(), "alias")
        found = matches[0] if matches else None
    return found if isinstance(found, PrivateLinkService) else None


def find_service(
    view: StateView, target: str, subscription: str, access: Access = ALLOW_ALL
) -> PrivateLinkService | None:
    """Resolve an alias or resource id as seen by a caller (`access`) in `subscription`.

    A service outside the caller's visibility is indistinguishable from one that does
    not exist: both give None. One exception: a Restricted service refuses the callers
    accessMode Default would have admitted by their rights on it (403
    PrivateLinkServiceAccessRestricted): they can read the service anyway, so "not
    found" would only mislead them.
    """
    found = _resolve(view, target)
    if found is None or is_visible(found, subscription, access):
        return found
    if found.restricted and _holds_rights(found, subscription.lower(), access):
        raise errors.PrivateLinkServiceAccessRestricted(id=found.id, subscription=subscription)
    return None


def check_visibility(
    view: StateView, subscription: str, alias: str, access: Access = ALLOW_ALL
) -> bool:
    """checkPrivateLinkServiceVisibility: can the caller in `subscription` see `alias`.

    True exactly when an endpoint of that subscription may connect to it, so a
    Restricted service answers false to a subscription it does not list, even to a
    caller with rights on it.
    """
    found = _resolve(view, alias)
    return found is not None and is_visible(found, subscription, access)


def auto_approved_services(
    view: StateView, subscription: str, location: str
) -> list[PrivateLinkService]:
    """Services in `location` whose auto-approval lists `subscription`."""
    loc = normalize_location(location)
    return [
        s
        for s in view.referrers(subscription.lower(), "autoapproval")
        if isinstance(s, PrivateLinkService) and s.location == loc
    ]


# --- validation ---------------------------------------------------------------------------


def _check_unique(values: tuple[str, ...], field: str) -> tuple[str, ...]:
    """The values stripped; a repeat (compared case-insensitively, as GUIDs are) is a 400.

    A list is a set to ARM's clients (Terraform keeps these as sets); a repeat is most
    likely a mistake, and accepting it would store and echo something else than was sent.
    """
    seen: set[str] = set()
    cleaned = []
    for value in values:
        value = value.strip()
        key = value.lower()
        if key in seen:
            raise errors.DuplicateSubscriptionInList(value=value, field=field)
        seen.add(key)
        cleaned.append(value)
    return tuple(cleaned)


def _check_subscriptions(ctx: Context, service: PrivateLinkService) -> PrivateLinkService:
    checked: dict[str, tuple[str, ...]] = {}
    for field, values, limit in (
        ("visibility.subscriptions", service.visibility, ctx.limits.visibility_subscriptions),
        (
            "autoApproval.subscriptions",
            service.auto_approval,
            ctx.limits.auto_approval_subscriptions,
        ),
    ):
        # The count first: it bounds the work of every check after it.
        if len(values) > limit:
            raise errors.SubscriptionListLimitExceeded(field=field, count=len(values), limit=limit)
        star_ok = field.startswith("visibility")
        for value in values:
            if not (is_guid(value.strip()) or (star_ok and value.strip() == EVERYONE)):
                raise errors.InvalidVisibilitySubscription(
                    value=value, field=field, star=" or '*'" if star_ok else ""
                )
        checked[field] = _check_unique(values, field)
    vis = checked["visibility.subscriptions"]
    auto = checked["autoApproval.subscriptions"]
    if EVERYONE not in vis:
        listed = {v.lower() for v in vis}
        for value in auto:
            if value.lower() not in listed:
                raise errors.AutoApprovalNotSubsetOfVisibility(value=value)
    return replace(service, visibility=vis, auto_approval=auto)


def normalize_access_mode(value: str, existing: PrivateLinkService | None) -> str:
    """accessMode as stored: Default or Restricted, matched case-insensitively (ARM enums
    are), else a 400.

    Not given ("") keeps the stored mode (Default for a new service) rather than resetting
    it: clients on an api-version before 2025-01-01, which has no accessMode (the pinned
    azure-cli's `private-link-service update` PUTs at 2024-03-01), rewrite the whole
    service without it, and must not silently open a Restricted one. Default is sent
    explicitly to leave Restricted.
    """
    if value == "":
        return (existing.access_mode if existing else "") or DEFAULT_ACCESS
    for mode in ACCESS_MODES:
        if value.lower() == mode.lower():
            return mode
    raise errors.InvalidAccessMode(value=value)


def _check_fqdns(ctx: Context, fqdns: tuple[str, ...]) -> tuple[str, ...]:
    """The FQDNs, each a DNS name of at most 253 characters in labels of 1-63.

    Azure publishes no limit on their number; ours (`Limits.fqdns`, 100 by default, like
    the visibility list's) keeps a service's endpoints' DNS configurations bounded. A
    repeat (case-insensitive, trailing dot ignored: DNS names compare so) is a 400.
    """
    if len(fqdns) > ctx.limits.fqdns:
        raise errors.FqdnListLimitExceeded(count=len(fqdns), limit=ctx.limits.fqdns)
    seen: set[str] = set()
    cleaned = []
    for fqdn in fqdns:
        name = fqdn.strip().rstrip(".")
        if not name or len(name) > 253 or not all(_LABEL.fullmatch(p) for p in name.split(".")):
            raise errors.InvalidFqdn(value=fqdn)
        if name.lower() in seen:
            raise errors.DuplicateFqdn(value=fqdn)
        seen.add(name.lower())
        cleaned.append(name)
    return tuple(cleaned)


def _resolve_frontends(
    view: StateView, service: PrivateLinkService
) -> tuple[LoadBalancer, tuple[str, ...]]:
    if not service.frontend_ids:
        raise errors.PrivateLinkServiceFrontendRequired(id=service.id)
    lb: LoadBalancer | None = None
    ids: list[str] = []
    for ref in service.frontend_ids:
        this_lb, fe_id = resolve_child(view, ref, "frontendIPConfigurations", service.id)
        if lb is not None and lb.key != this_lb.key:
            raise errors.PrivateLinkServiceFrontendsOnMultipleLoadBalancers(id=service.id)
        lb = this_lb
        if fe_id.lower() not in (i.lower() for i in ids):
            ids.append(fe_id)
    assert lb is not None
    return lb, tuple(ids)


def _pools_of(lb: LoadBalancer, frontend_ids: tuple[str, ...]) -> set[str]:
    pools: set[str] = set()
    for fe in frontend_ids:
        for rule in lb.rules_on(fe):
            pools.update(key(p) for p in rule.pool_ids)
    return pools


def check_on_load_balancer(
    view: StateView,
    ctx: Context,
    service: PrivateLinkService,
    lb: LoadBalancer,
    services: list[PrivateLinkService],
) -> None:
    """The rules tying services to a load balancer, for `service` among `services`.

    Standard sku; same region; frontends exist, are IPv4 and serve one service each; at
    most N services per load balancer; only TCP rules on a service's frontends; no
    backend pool reachable from two services.
    """
    others = [s for s in services if s.key != service.key]
    if lb.sku != STANDARD:
        raise errors.PrivateLinkServiceRequiresStandardLoadBalancer(
            id=service.id, lb=lb.id, sku=lb.sku
        )
    if lb.location != service.location:
        raise errors.PrivateLinkServiceLocationMismatch(
            id=service.id, location=service.location, ref=lb.id, other=lb.location
        )
    if len(others) + 1 > ctx.limits.pls_per_load_balancer:
        raise errors.PrivateLinkServicesPerLoadBalancerLimitReached(
            lb=lb.id, limit=ctx.limits.pls_per_load_balancer
        )
    for fe_id in service.frontend_ids:
        fe = lb.frontend(fe_id)
        if fe is None:
            raise errors.InvalidResourceReference(ref=fe_id, id=service.id)
        if not is_ipv4(fe.ip_version):
            raise errors.PrivateLinkServiceIPv6NotSupported(what=f"Frontend {fe_id}", id=service.id)
        for other in others:
            if key(fe_id) in (key(f) for f in other.frontend_ids):
                raise errors.FrontendInUseByAnotherPrivateLinkService(
                    frontend=fe_id, other=other.id
                )
        for rule in lb.rules_on(fe_id):
            if rule.protocol != "Tcp":
                raise errors.PrivateLinkServiceRequiresTcpRules(
                    rule=lb.child_id("loadBalancingRules", rule.name),
                    frontend=fe_id,
                    protocol=rule.protocol,
                )
    # An internal load balancer's network is its frontends'; a public one's, its backend's.
    lb_vnet = backend_network(view, lb, exclude=service.id)
    for config in service.ip_configurations:
        nat_vnet = ResourceId.parse(config.subnet_id).parent()
        if lb_vnet is not None and nat_vnet.key != lb_vnet:
            raise errors.NatSubnetNotInLoadBalancerVirtualNetwork(
                name=config.name, subnet=config.subnet_id, vnet=lb_vnet
            )
    mine = _pools_of(lb, service.frontend_ids)
    for other in others:
        shared = mine & _pools_of(lb, other.frontend_ids)
        if shared:
            raise errors.BackendPoolSharedByPrivateLinkServices(
                pool=sorted(shared)[0], id=service.id, other=other.id
            )


def _nat_configurations(
    view: StateView,
    ctx: Context,
    service: PrivateLinkService,
    lb: LoadBalancer | None,
    existing: PrivateLinkService | None,
) -> tuple[NatIpConfiguration, ...]:
    """The NAT IP configurations checked, in one network: the load balancer's, or (a
    Direct Connect service, `lb` None) the first configuration's."""
    configs = service.ip_configurations
    limit = ctx.limits.nat_ip_configurations
    if lb is None:
        direct_connect.check_nat_count(service.id, len(configs), limit)
    elif not 1 <= len(configs) <= limit:
        raise errors.NatIpConfigurationCount(id=service.id, count=len(configs), limit=limit)
    check_unique_names(service.id, [c.name for c in configs])
    primaries = [c for c in configs if c.primary]
    if len(configs) == 1 and not primaries:
        configs = (replace(configs[0], primary=True),)
    elif len(primaries) != 1:
        raise errors.NatIpConfigurationPrimary(id=service.id)
    # The NAT IPs are in the load balancer's backend network; a public load balancer
    # that nothing ties to a network yet takes the first NAT IP's.
    lb_vnet = backend_network(view, lb, exclude=service.id) if lb is not None else None
    result = []
    for config in configs:
        where = f"{service.id}/ipConfigurations/{config.name}"
        if not is_ipv4(config.ip_version):
            raise errors.PrivateLinkServiceIPv6NotSupported(
                what=f"NAT ipConfiguration '{config.name}'", id=service.id
            )
        if config.private_ip and ":" in config.private_ip:
            raise errors.PrivateLinkServiceIPv6NotSupported(
                what=f"NAT ipConfiguration '{config.name}'", id=service.id
            )
        subnet = resolve_subnet(view, config.subnet_id, where)
        refuse_gateway_subnet(subnet, where)
        lb_vnet = lb_vnet or subnet.vnet.key
        if subnet.vnet.key != lb_vnet and lb is None:
            raise errors.DirectConnectNatSubnetsInDifferentVirtualNetworks(
                name=config.name, subnet=subnet.id, vnet=lb_vnet
            )
        if subnet.vnet.key != lb_vnet:
            raise errors.NatSubnetNotInLoadBalancerVirtualNetwork(
                name=config.name, subnet=subnet.id, vnet=lb_vnet
            )
        if subnet.subnet.private_link_service_network_policies != DISABLED:
            raise errors.PrivateLinkServiceNetworkPoliciesEnabled(subnet=subnet.id)
        result.append(
            replace(config, subnet_id=subnet.id, primary=bool(config.primary), ip_version=IPV4)
        )
    if existing is not None:
        for old in existing.ip_configurations:
            new = next((c for c in result if c.name.lower() == old.name.lower()), None)
            moved = new is not None and (
                key(new.subnet_id) != key(old.subnet_id)
                or (new.allocation == "Static" and new.private_ip != old.private_ip)
            )
            if new is None or moved:
                raise errors.NatIpConfigurationCannotBeRemoved(name=old.name, id=service.id)
    return tuple(result)


def _nic_id(service: PrivateLinkService, guid: str) -> str:
    rid = service.rid
    return str(
        ResourceId.build(
            rid.subscription, rid.resource_group, "networkInterfaces", f"{service.name}.nic.{guid}"
        )
    )


def prepare(
    view: StateView, ctx: Context, desired: PrivateLinkService
) -> tuple[PrivateLinkService, NetworkInterface]:
    """The service a PUT writes (create, or update keeping alias and connections) and its
    managed NIC.

    The PUT workflow is `private_link.create_or_update_service`: it also refreshes the
    DNS configurations of the service's endpoints when its FQDNs change.
    """
    existing = get_typed(view, desired.id, PrivateLinkService)
    service = replace(
        desired, location=normalize_location(desired.location), provisioning_state=ctx.initial_state
    )
    if existing is not None:
        if existing.location != service.location:
            raise errors.ResourceLocationMismatch(
                id=existing.id,
                location=service.location,
                ref="its existing location",
                other=existing.location,
            )
        service = replace(
            service,
            id=existing.id,
            name=existing.name,
            alias=existing.alias,
            nic_id=existing.nic_id,
        )
    else:
        service = replace(service, alias="", nic_id="")
    service = replace(service, access_mode=normalize_access_mode(desired.access_mode, existing))
    service = _settle_direct_connect(service, existing)
    if (
        existing is None
        and view.count(TYPE, service.rid.subscription) >= ctx.limits.pls_per_subscription
    ):
        raise errors.PrivateLinkServicesPerSubscriptionLimitReached(
            subscription=service.rid.subscription, limit=ctx.limits.pls_per_subscription
        )
    if existing is None and service.direct_connect:
        direct_connect.check_region_limit(view, ctx, service.rid.subscription, service.location)
    lb: LoadBalancer | None = None
    if not service.direct_connect:
        lb, frontend_ids = _resolve_frontends(view, service)
        service = replace(service, frontend_ids=frontend_ids)
    service = _check_subscriptions(ctx, service)
    if service.restricted and EVERYONE in service.visibility:
        raise errors.RestrictedAccessModeWithEveryone(id=service.id)
    service = replace(service, fqdns=_check_fqdns(ctx, service.fqdns))
    if lb is not None:
        services = [s for s in view.referrers(lb.key, "lb") if isinstance(s, PrivateLinkService)]
        check_on_load_balancer(view, ctx, service, lb, services)
    configs = _nat_configurations(view, ctx, service, lb, existing)
    dc_vnet = None
    if service.direct_connect:
        # No load balancer ties it to a region: its network does.
        dc_vnet = resolve_subnet(view, configs[0].subnet_id, service.id).vnet
        if dc_vnet.location != service.location:
            raise errors.PrivateLinkServiceLocationMismatch(
                id=service.id, location=service.location, ref=dc_vnet.id, other=dc_vnet.location
            )
    if not service.alias:
        service = replace(service, alias=make_alias(service.name, ctx.new_guid(), service.location))
    if not service.nic_id:
        service = replace(service, nic_id=_nic_id(service, ctx.new_guid()))
    old_nic = get_typed(view, service.nic_id, NetworkInterface)
    nic = managed_nic(
        view,
        service,
        service.nic_id,
        tuple(NicIpConfiguration(**vars(c)) for c in configs),
        old_nic,
    )
    assigned = {c.name: c for c in nic.ip_configurations}
    service = replace(
        service,
        ip_configurations=tuple(
            replace(c, private_ip=assigned[c.name].private_ip) for c in configs
        ),
    )
    if dc_vnet is not None:
        # After the NAT IPs are assigned: the destination may not be one of them.
        direct_connect.check_destination(
            view,
            service.id,
            service.destination_ip_address,
            dc_vnet,
            {c.private_ip for c in service.ip_configurations if c.private_ip},
        )
    return service, nic


def _settle_direct_connect(
    service: PrivateLinkService, existing: PrivateLinkService | None
) -> PrivateLinkService:
    """The desired service with its destination as stored (core/direct_connect.py): a
    canonical IPv4 address, or '' for a load-balanced service; the kind of a stored
    service never changes."""
    destination = direct_connect.settle_kind(
        service.id,
        direct_connect.normalize_destination(service.id, service.destination_ip_address),
        bool(service.frontend_ids),
        existing.destination_ip_address if existing is not None else None,
    )
    if destination and service.enable_proxy_protocol:
        raise errors.UnsupportedProperty(
            name="enableProxyProtocol",
            why="PROXY protocol is not implemented for Direct Connect services "
            "(destinationIPAddress); use false or leave it unset.",
        )
    return replace(service, destination_ip_address=destination)


def delete(view: StateView, ctx: Context, service_id: str) -> Changes:
    """DELETE a service: refused (409) while any connection exists, rejected or not."""
    service = get_typed(view, service_id, PrivateLinkService)
    changes = Changes()
    if service is None:
        return changes
    count = count_connections(view, service.id)
    if count:
        raise errors.PrivateLinkServiceHasConnections(id=service.id, count=count)
    changes.delete(service.nic_id)
    changes.delete(service.id)
    return changes


# --- connections ----------------------------------------------------------------------------


CONNECTION = "connection"  # the index kind that files a connection under its service


def connections_of(
    view: StateView, service_id: str, offset: int = 0, limit: int | None = None
) -> list[PrivateEndpointConnection]:
    """A service's connections, oldest first (one indexed query); `offset`/`limit`
    read one page of them."""
    found = view.referrers(key(service_id), CONNECTION, offset, limit)
    return [c for c in found if isinstance(c, PrivateEndpointConnection)]


def count_connections(view: StateView, service_id: str) -> int:
    """How many connections a service has (an indexed count; none is decoded)."""
    return view.count_referrers(key(service_id), CONNECTION)


#: The index kind under which a connection files its linkIdentifier (kept unique).
LINK_ID = "linkid"


def connection_references(conn: PrivateEndpointConnection) -> list[tuple[str, str]]:
    """Index entries of a connection: its service, and its LinkID (unique on the server)."""
    return [(CONNECTION, key(conn.service_id)), (LINK_ID, conn.link_identifier)]


def get_connection(
    view: StateView, service_id: str, name: str
) -> tuple[PrivateLinkService, PrivateEndpointConnection]:
    """A connection of a service (404 for a missing service or connection)."""
    service = require(view, service_id, PrivateLinkService)
    conn = get_typed(view, service.connection_id(name), PrivateEndpointConnection)
    if conn is None:
        raise errors.PrivateEndpointConnectionNotFound(name=name, pls=service.id)
    return service, conn


def references(service: PrivateLinkService) -> list[tuple[str, str]]:
    """Index entries: its load balancer and frontends, its alias, auto-approved
    subscriptions, and (Direct Connect) its subscription and region."""
    refs: list[tuple[str, str]] = []
    if service.frontend_ids:
        refs.append(("lb", service.load_balancer_key))
    refs.extend(("frontend", key(f)) for f in service.frontend_ids)
    if service.alias:
        refs.append(("alias", service.alias.lower()))
    refs.extend(("autoapproval", s.lower()) for s in service.auto_approval)
    refs.extend(
        direct_connect.references(
            service.destination_ip_address, service.rid.subscription, service.location
        )
    )
    return refs
