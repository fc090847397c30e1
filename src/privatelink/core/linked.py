"""Linked authorization: what a change refers to, the caller must be allowed to join.

ARM checks, besides the request's own action, a "join" action on every resource a
new or changed resource refers to (`LinkedAuthorizationFailed` naming the linked
scope): a NIC, a load balancer frontend, a private endpoint, a private link service's
NAT IP or a VPN gateway joins a subnet; a NIC joins a backend pool; a private DNS zone
group joins a zone; a virtual network link joins a virtual network; a peering needs
`virtualNetworks/peer/action` on its remote network; a public load
balancer frontend or a VPN gateway joins a public IP; a connection needs write on its
gateway and its site (Azure publishes no join action for them). Only references the
change adds are checked: a caller may update a resource whose links someone else made.

Pure: it reads the references the registry indexes for each written resource.
"""

from __future__ import annotations

from privatelink.core import registry
from privatelink.core.actions import (
    DNS_ZONE_JOIN,
    GATEWAY_WRITE,
    LOCAL_GATEWAY_WRITE,
    POOL_JOIN,
    PUBLIC_IP_JOIN,
    SUBNET_JOIN,
    VNET_JOIN,
    VNET_PEER,
)
from privatelink.core.authorization import ALLOW_ALL
from privatelink.core.resource import Changes, Context, StateView

#: Index kind (see the registry's `references`) -> the join action it needs.
JOINS = {
    "subnet": SUBNET_JOIN,
    "pool": POOL_JOIN,
    "dnsgroup-zone": DNS_ZONE_JOIN,
    "dnslink-vnet": VNET_JOIN,
    "peering-remote": VNET_PEER,
    "publicip": PUBLIC_IP_JOIN,
    "connection-gateway": GATEWAY_WRITE,
    "connection-localgateway": LOCAL_GATEWAY_WRITE,
}


def check_links(view: StateView, ctx: Context, changes: Changes) -> None:
    """Raise `LinkedAuthorizationFailed` unless the caller may join every new reference."""
    if ctx.access is ALLOW_ALL:
        return
    needed: dict[str, list[str]] = {}
    for resource in changes.puts:
        old = view.get(resource.id)
        before = set(registry.references(old)) if old is not None else set()
        for kind, target in registry.references(resource):
            action = JOINS.get(kind)
            if action is not None and (kind, target) not in before:
                scopes = needed.setdefault(action, [])
                if target not in scopes:
                    scopes.append(target)
    for action, scopes in needed.items():
        ctx.access.require_linked(action, scopes, ctx.request_action, ctx.request_scope)
