"""Private link: the rules that span resources, in one module above the resource modules.

A resource module imports only modules below it and writes only its own resources and
what they own (a managed NIC, child resources). A workflow that must also change, or
re-check, another resource is here:

- the connection between an endpoint and a service, with its state machine: requested
  by the endpoint's PUT (Pending, or Approved at once when auto-approved or asked for
  automatically by a holder of the service's approval right), approved or
  rejected by the provider (Pending -> Approved | Rejected; Approved -> Rejected),
  deleted by the provider (the endpoint sees Disconnected), removed from the service by
  the endpoint's DELETE; the endpoint's copy of the state and of the service's FQDNs;
- the re-check of the private link services on a load balancer when the load balancer
  changes.

Import graph of core's layers (a module imports only modules to its right; no cycles and
no imports inside functions, which tests/unit/test_architecture.py checks):
    template > registry > private_link > private_dns > private_endpoint > private_link_service
    > network_interface > load_balancer > ip_configuration > virtual_network > resource
    > {limits, principal, addressing, alias} > ids > errors
"""

from __future__ import annotations

from dataclasses import replace

from privatelink.core import errors, load_balancer, private_endpoint, private_link_service
from privatelink.core.actions import PLS_APPROVAL
from privatelink.core.authorization import ALLOW_ALL
from privatelink.core.load_balancer import LoadBalancer
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.private_endpoint import PrivateEndpoint
from privatelink.core.private_link_service import (
    APPROVED,
    DISCONNECTED,
    PENDING,
    REJECTED,
    STATUSES,
    PrivateEndpointConnection,
    PrivateLinkService,
    connections_of,
    count_connections,
    find_service,
    get_connection,
    is_auto_approved,
)
from privatelink.core.resource import Changes, Context, StateView, get_typed

# --- a load balancer and the services on it -------------------------------------------------


def services_on(view: StateView, lb: LoadBalancer) -> list[PrivateLinkService]:
    """The private link services whose frontends are on a load balancer."""
    return [s for s in view.referrers(lb.key, "lb") if isinstance(s, PrivateLinkService)]


def create_or_update_load_balancer(view: StateView, ctx: Context, desired: LoadBalancer) -> Changes:
    """PUT a load balancer: its own rules, then those of every service on it."""
    lb = load_balancer.prepare(view, ctx, desired)
    services = services_on(view, lb)
    for service in services:
        private_link_service.check_on_load_balancer(view, ctx, service, lb, services)
    changes = Changes()
    changes.put(lb)
    return changes


# --- a service and its endpoints ------------------------------------------------------------


def create_or_update_service(view: StateView, ctx: Context, desired: PrivateLinkService) -> Changes:
    """PUT a private link service; when its FQDNs change, its endpoints' DNS follows."""
    existing = get_typed(view, desired.id, PrivateLinkService)
    service, nic = private_link_service.prepare(view, ctx, desired)
    changes = Changes()
    changes.put(nic)
    changes.put(service)
    if existing is not None and existing.fqdns != service.fqdns:
        for conn in connections_of(view, service.id):
            refresh_dns(view, changes, conn.private_endpoint_id, service)
    return changes


def create_or_update_endpoint(view: StateView, ctx: Context, desired: PrivateEndpoint) -> Changes:
    """PUT a private endpoint: allocate its IP, create its NIC and request the connection.

    The service (found by alias or id, visibility for the caller permitting) gets the
    provider's record of the connection: Approved at once when the consumer's
    subscription is auto-approved or when an automatic request comes from a holder of the
    approval right (refused without it), Pending otherwise. An endpoint PUT again only
    changes its tags and request message.
    """
    endpoint, request = private_endpoint.check_request(ctx, desired)
    existing = get_typed(view, endpoint.id, PrivateEndpoint)
    if existing is not None:
        return private_endpoint.update_existing(ctx, endpoint, existing)

    subnet = private_endpoint.resolve_placement(view, endpoint)
    consumer = endpoint.rid.subscription
    service = find_service(view, request.target, consumer, ctx.access)
    if service is None:
        raise errors.PrivateLinkServiceNotFound(target=request.target)
    if service.location != endpoint.location:
        raise errors.PrivateEndpointLocationMismatch(
            id=endpoint.id, location=endpoint.location, other=service.location
        )
    if count_connections(view, service.id) >= ctx.limits.pe_per_pls:
        raise errors.PrivateEndpointsPerPrivateLinkServiceLimitReached(limit=ctx.limits.pe_per_pls)
    endpoint, nic, guid = private_endpoint.place(view, ctx, endpoint, subnet)

    approved = is_auto_approved(service, consumer) or _may_approve(ctx, endpoint, service)
    status = APPROVED if approved else PENDING
    description = "Auto-Approved" if approved else (request.request_message or "Awaiting approval")
    remote_name = f"{endpoint.name}.{guid}"
    remote = PrivateEndpointConnection(
        id=service.connection_id(remote_name),
        name=remote_name,
        location=service.location,
        private_endpoint_id=endpoint.id,
        private_endpoint_location=endpoint.location,
        link_identifier=_new_link_identifier(view, ctx),
        status=status,
        description=description,
    )
    local = replace(
        request,
        private_link_service_id=service.id,
        status=status,
        description=description,
        actions_required="None",
        remote_name=remote_name,
    )
    endpoint = replace(
        endpoint,
        connections=(local,),
        custom_dns_configs=private_endpoint.dns_configs(service.fqdns, nic.primary_ip),
    )
    changes = Changes()
    changes.put(nic)
    changes.put(endpoint)
    changes.put(remote)
    return changes


def _may_approve(ctx: Context, endpoint: PrivateEndpoint, service: PrivateLinkService) -> bool:
    """Whether an endpoint's connection is approved by its creator's own rights.

    Azure approves an automatic connection (`privateLinkServiceConnections`) when the
    caller holds the service's approval permission and refuses it otherwise
    (LinkedAuthorizationFailed: a request without it must be manual); a manual one waits
    for the provider whoever asks. With authorization off, automatic connections wait
    too (as before RBAC existed).
    """
    if endpoint.manual or ctx.access is ALLOW_ALL:
        return False
    ctx.access.require_linked(PLS_APPROVAL, service.id, ctx.request_action, ctx.request_scope)
    return True


def delete_endpoint(view: StateView, ctx: Context, endpoint_id: str) -> Changes:
    """DELETE an endpoint: its connection leaves the service, its NIC goes with it."""
    endpoint = get_typed(view, endpoint_id, PrivateEndpoint)
    changes = Changes()
    if endpoint is None:
        return changes
    conn = endpoint.connection
    service = get_typed(view, conn.private_link_service_id, PrivateLinkService)
    remote_id = service.connection_id(conn.remote_name) if service is not None else None
    if remote_id is not None and get_typed(view, remote_id, PrivateEndpointConnection):
        changes.delete(remote_id)
    private_endpoint.delete_owned(view, changes, endpoint)
    return changes


# --- the connection state machine -----------------------------------------------------------


def normalize_status(value: str) -> str:
    """'approved' -> 'Approved'; anything unknown is a 400."""
    for status in STATUSES:
        if value.lower() == status.lower():
            return status
    raise errors.InvalidConnectionStatus(status=value)


def next_status(current: str, wanted: str) -> str:
    """The connection state machine of the provider's approve/reject.

    Pending -> Approved | Rejected; Approved -> Rejected; a state to itself is allowed
    (only the description changes). A rejected connection stays rejected: the
    consumer recreates its endpoint to ask again. Nobody sets Pending or Disconnected.
    """
    status = normalize_status(wanted)
    if status == current:
        return status
    allowed = {PENDING: (APPROVED, REJECTED), APPROVED: (REJECTED,)}
    if status in (PENDING, DISCONNECTED) and current != status:
        raise errors.InvalidConnectionStatus(status=status)
    if status not in allowed.get(current, ()):
        raise errors.ConnectionStatusTransitionNotAllowed(current=current, status=status)
    return status


def update_connection(
    view: StateView,
    ctx: Context,
    service_id: str,
    name: str,
    status: str,
    description: str | None,
    actions_required: str | None,
) -> Changes:
    """Approve or reject a connection; the endpoint's copy of the state follows."""
    _service, conn = get_connection(view, service_id, name)
    new_status = next_status(conn.status, status)
    updated = replace(
        conn,
        status=new_status,
        description=description if description is not None else conn.description,
        actions_required=actions_required or conn.actions_required or "None",
    )
    changes = Changes()
    changes.put(updated)
    mirror_state(view, changes, conn.private_endpoint_id, updated)
    return changes


def delete_connection(view: StateView, ctx: Context, service_id: str, name: str) -> Changes:
    """Provider deletes a connection: gone from the service, Disconnected on the endpoint."""
    service = get_typed(view, service_id, PrivateLinkService)
    changes = Changes()
    conn = None
    if service is not None:
        conn = get_typed(view, service.connection_id(name), PrivateEndpointConnection)
    if conn is None:
        return changes
    changes.delete(conn.id)
    gone = replace(
        conn,
        status=DISCONNECTED,
        description="The private endpoint connection was deleted by the service provider.",
    )
    mirror_state(view, changes, conn.private_endpoint_id, gone)
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
    changes.put(
        replace(
            endpoint, custom_dns_configs=private_endpoint.dns_configs(service.fqdns, nic.primary_ip)
        )
    )


def _new_link_identifier(view: StateView, ctx: Context) -> str:
    """A linkIdentifier no connection on this server has: what a backend behind PROXY v2
    tells connections apart by. 29 random bits make a clash rare; it is drawn again."""
    for _ in range(64):
        candidate = private_endpoint.link_identifier(ctx.new_guid())
        if view.count_referrers(candidate, private_link_service.LINK_ID) == 0:
            return candidate
    raise errors.Conflict("No free linkIdentifier after 64 draws; retry the request.")
