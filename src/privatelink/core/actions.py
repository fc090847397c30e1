"""Which RBAC action an ARM request performs, and at which scope: derived from its path.

ARM derives the action of a request from its URL and method, and so do we: the resource
provider namespace and the chain of resource types in the path, then `read` (GET, HEAD),
`write` (PUT, PATCH), `delete` (DELETE) or, for a POST to a type, `<type>/action`:

    PUT  .../providers/Microsoft.Network/privateLinkServices/pls1
         -> Microsoft.Network/privateLinkServices/write over that id
    GET  .../providers/Microsoft.Network/virtualNetworks/v1/subnets
         -> Microsoft.Network/virtualNetworks/subnets/read over the VNet
    POST /subscriptions/s/providers/Microsoft.Network/locations/l/checkPrivateLinkServiceVisibility
         -> Microsoft.Network/locations/checkPrivateLinkServiceVisibility/action

Extension resources (`{scope}/providers/Microsoft.Authorization/roleAssignments/{id}`)
take their provider from the last `/providers/` of the path. A few routes carry
alternatives: a private endpoint connection on a service may be approved, rejected or
deleted with the connection's own write/delete action or with the service's
`privateEndpointConnectionsApproval/action`, as in Azure.

Pure: no HTTP types; the API layer asks `describe(method, path)` with the canonical path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

READ = "read"
WRITE = "write"
DELETE = "delete"
ACTION = "action"

#: Azure's approval permission for private endpoint connections of a private link service.
PLS_APPROVAL = "Microsoft.Network/privateLinkServices/privateEndpointConnectionsApproval/action"
SUBNET_JOIN = "Microsoft.Network/virtualNetworks/subnets/join/action"
POOL_JOIN = "Microsoft.Network/loadBalancers/backendAddressPools/join/action"
FRONTEND_JOIN = "Microsoft.Network/loadBalancers/frontendIPConfigurations/join/action"
PLS_READ = "Microsoft.Network/privateLinkServices/read"
VNET_JOIN = "Microsoft.Network/virtualNetworks/join/action"
#: Azure's permission on the remote network of a peering (besides the peering's write).
VNET_PEER = "Microsoft.Network/virtualNetworks/peer/action"
DNS_ZONE_JOIN = "Microsoft.Network/privateDnsZones/join/action"
PUBLIC_IP_JOIN = "Microsoft.Network/publicIPAddresses/join/action"
# Azure publishes no join action for gateways: a connection naming a gateway or a site
# (in another subscription, say) needs the right to change it.
GATEWAY_WRITE = "Microsoft.Network/virtualNetworkGateways/write"
LOCAL_GATEWAY_WRITE = "Microsoft.Network/localNetworkGateways/write"
#: Reading a connection's shared key is a right of its own (not `*/read`), as in Azure
#: since readers could fetch VPN keys; setting or resetting it is its write.
SHARED_KEY_READ = "Microsoft.Network/connections/sharedKey/action"
SHARED_KEY_WRITE = "Microsoft.Network/connections/sharedKey/write"
#: A load-balancing rule's backend health (POST `.../loadBalancingRules/{rule}/health`),
#: checked at the rule as the path gives it. Azure publishes it as an action ("Get Health
#: Details of Load Balancing Rule"), not a read: Reader (`*/read`) may not call it, as in
#: Azure; Network Contributor (`Microsoft.Network/*`) and Contributor may.
LB_RULE_HEALTH = "Microsoft.Network/loadBalancers/loadBalancingRules/health/action"

_VERBS = {"GET": READ, "HEAD": READ, "PUT": WRITE, "PATCH": WRITE, "DELETE": DELETE}


@dataclass(frozen=True)
class RequestAction:
    """What one request does, as RBAC sees it.

    `action` is checked at `scope` (a resource id, or the resource group, subscription
    or parent resource of a collection). `alternatives` are further actions any one of
    which also allows the request. `collection` marks a list of tracked resources at a
    resource group or subscription: instead of refusing it, the API lists what the caller
    may read (`item_action` on each item); `verb` is read/write/delete/action.
    """

    action: str
    scope: str
    verb: str
    collection: bool = False
    item_action: str = ""
    alternatives: tuple[str, ...] = ()

    @property
    def actions(self) -> tuple[str, ...]:
        """The action and its alternatives."""
        return (self.action, *self.alternatives)

    @property
    def subscription(self) -> str:
        """The subscription in the scope, or "" for tenant-level scopes."""
        parts = self.scope.split("/")
        return parts[2] if len(parts) > 2 and parts[1].lower() == "subscriptions" else ""


def _segments(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


_CACHED_PATH = 1024  # longer paths are described afresh: the cache stays a few MB


def describe(method: str, path: str) -> RequestAction | None:
    """The action and scope of an ARM request, or None for paths that need no check.

    `path` is canonical (see api/paths.py). None is returned for `GET /subscriptions`
    and `GET /tenants` (their answers are filtered by the caller's roles instead) and
    for paths outside ARM.
    """
    if len(path) > _CACHED_PATH:
        return _describe(method, path)
    return _described(method, path)


@lru_cache(maxsize=4096)  # pure, asked on every request, and the same paths repeat
def _described(method: str, path: str) -> RequestAction | None:
    return _describe(method, path)


def _describe(method: str, path: str) -> RequestAction | None:
    method = method.upper()
    verb = _VERBS.get(method, ACTION if method == "POST" else "")
    if not verb:
        return None
    parts = _segments(path)
    low = [p.lower() for p in parts]
    if not parts:
        return None
    if "providers" in low:
        return _provider_action(method, verb, parts, low)
    if low[0] != "subscriptions":
        return None
    if len(parts) == 1:
        return None  # GET /subscriptions: listed by role
    sub = f"/subscriptions/{parts[1]}"
    rest = low[2:]
    if not rest:
        return RequestAction("Microsoft.Resources/subscriptions/read", sub, READ)
    if rest == ["resourcegroups"]:
        return RequestAction(
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            sub,
            READ,
            collection=True,
            item_action="Microsoft.Resources/subscriptions/resourceGroups/read",
        )
    if rest == ["resources"]:
        return RequestAction(
            "Microsoft.Resources/subscriptions/resources/read", sub, READ, collection=True
        )
    if rest[0] == "resourcegroups" and len(rest) >= 2:
        group = f"{sub}/resourceGroups/{parts[3]}"
        tail = rest[2:]
        if not tail:
            return RequestAction(
                f"Microsoft.Resources/subscriptions/resourceGroups/{verb}", group, verb
            )
        if tail == ["resources"]:
            return RequestAction(
                "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
                group,
                READ,
                collection=True,
            )
        if len(tail) >= 2 and tail[0] == "deployments":
            # The legacy `.../resourceGroups/{g}/deployments/{name}/operations` form.
            scope = f"{group}/providers/Microsoft.Resources/deployments/{parts[5]}"
            return RequestAction("Microsoft.Resources/deployments/operations/read", scope, READ)
    return None


def _provider_action(
    method: str, verb: str, parts: list[str], low: list[str]
) -> RequestAction | None:
    at = len(low) - 1 - low[::-1].index("providers")
    scope_parts = parts[:at]
    tail = parts[at + 1 :]
    if not tail:
        return None
    namespace, chain = tail[0], tail[1:]
    if not chain:
        return None
    scope = "/" + "/".join(scope_parts) if scope_parts else "/"
    types = chain[0::2]
    names = chain[1::2]
    shared_key = _shared_key_action(method, namespace, types, names, parts[: at + 4])
    if shared_key is not None:
        return shared_key
    full = "/" + "/".join(parts)
    type_path = f"{namespace}/" + "/".join(types)
    if len(chain) % 2 == 0:
        # A resource (the last segment is a name).
        result = RequestAction(f"{type_path}/{verb}", full, verb)
        return _with_alternatives(result, namespace, types)
    # A collection, or a POST to a type (an action).
    parent = "/" + "/".join(parts[: len(parts) - 1])
    if method == "POST":
        return RequestAction(f"{type_path}/action", parent, ACTION)
    if verb != READ:
        return None  # PUT/DELETE on a collection: no such route
    top_level = len(types) == 1 and names == []
    tracked = (
        top_level and len(scope_parts) in (2, 4) and namespace.lower() != "microsoft.authorization"
    )
    return RequestAction(
        f"{type_path}/read",
        parent if not top_level else (scope if scope_parts else "/"),
        READ,
        collection=tracked,
        item_action=f"{type_path}/read" if tracked else "",
    )


def _shared_key_action(
    method: str, namespace: str, types: list[str], names: list[str], connection: list[str]
) -> RequestAction | None:
    """`connections/{name}/sharedkey` (GET: read the key, PUT: set it) and its `reset`
    (POST), each checked at the connection."""
    if namespace.lower() != "microsoft.network" or [t.lower() for t in types] != [
        "connections",
        "sharedkey",
    ]:
        return None
    scope = "/" + "/".join(connection)
    if len(names) == 1 and method in ("GET", "HEAD"):
        return RequestAction(SHARED_KEY_READ, scope, ACTION)
    if (len(names) == 1 and method == "PUT") or (
        len(names) == 2 and names[1].lower() == "reset" and method == "POST"
    ):
        return RequestAction(SHARED_KEY_WRITE, scope, WRITE)
    return None


def _with_alternatives(result: RequestAction, namespace: str, types: list[str]) -> RequestAction:
    chain = [t.lower() for t in types]
    if (
        namespace.lower() == "microsoft.network"
        and chain
        == [
            "privatelinkservices",
            "privateendpointconnections",
        ]
        and result.verb in (WRITE, DELETE)
    ):
        return RequestAction(result.action, result.scope, result.verb, alternatives=(PLS_APPROVAL,))
    return result
