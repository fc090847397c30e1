"""Case-insensitive ARM paths: rewrite known literal segments to one canonical casing.

ARM matches `resourcegroups` and `resourceGroups` alike; our routes are declared once
in canonical casing, and this rewrite runs before routing. Only literal positions are
touched (never a resource name).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any

from privatelink.core import registry

# The literals that are not resource types; the resource type segments come from the
# registry.
_OTHER_LITERALS = [
    "subscriptions",
    "resourceGroups",
    "providers",
    "Microsoft.Network",
    "Microsoft.Resources",
    "Microsoft.Authorization",
    "Microsoft.Insights",
    "roleAssignments",
    "roleDefinitions",
    "permissions",  # Microsoft.Authorization/permissions under any scope
    "eventtypes",
    "metrics",  # Azure Monitor's, under any resource (api/monitor.py)
    "metricDefinitions",
    "Microsoft.ResourceHealth",  # availabilityStatuses/current (api/resource_health.py)
    "availabilityStatuses",
    "values",
    "locations",
    "operations",
    "operationResults",
    "checkPrivateLinkServiceVisibility",
    "autoApprovedPrivateLinkServices",
    "resources",
    "deployments",
    "validate",
    "operationStatuses",
    "health",  # a load-balancing rule's (api/load_balancer.py)
]
_LITERALS = [*_OTHER_LITERALS, *registry.segments()]
_CANON = {s.lower(): s for s in _LITERALS}


_CACHED_PATH = 1024  # longer paths are rewritten afresh: the cache stays a few MB


def canonicalize(path: str) -> str:
    """Rewrite the literal segments of an ARM path to canonical casing."""
    return _canonical(path) if len(path) <= _CACHED_PATH else _canonicalize(path)


@lru_cache(maxsize=4096)  # every ARM request asks, and the same paths repeat
def _canonical(path: str) -> str:
    return _canonicalize(path)


def _canonicalize(path: str) -> str:
    parts = path.split("/")
    # Counting the non-empty segments only (`at`: an SDK sends an empty
    # parentResourcePath as `//`), literals sit at even positions until "providers",
    # then at the namespace and every other segment after it. An extension resource
    # (`.../providers/Microsoft.Authorization/roleAssignments/x`) starts again at its
    # own "providers".
    out = list(parts)
    at = [k for k, part in enumerate(parts) if part]
    i = 0
    while i < len(at):
        seg = out[at[i]].lower()
        if seg in ("subscriptions", "resourcegroups"):
            out[at[i]] = _CANON[seg]
            i += 2
            continue
        if seg == "providers":
            out[at[i]] = "providers"
            if i + 1 < len(at):
                out[at[i + 1]] = _CANON.get(out[at[i + 1]].lower(), out[at[i + 1]])
            i += 2
            # After the namespace: type, name, type, name, ...
            while i < len(at):
                if out[at[i]].lower() == "providers":
                    break
                out[at[i]] = _CANON.get(out[at[i]].lower(), out[at[i]])
                i += 2
            continue
        i += 2
    return "/".join(out)


def is_arm_path(path: str) -> bool:
    """Paths ARM serves: subscriptions, tenants and tenant-level provider paths."""
    low = path.lower()
    return low.startswith(("/subscriptions", "/providers/")) or low == "/tenants"


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class CanonicalPathMiddleware:
    """ASGI middleware applying `canonicalize` to ARM paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and is_arm_path(scope["path"]):
            path = canonicalize(scope["path"])
            scope = dict(scope, path=path, raw_path=path.encode())
        await self.app(scope, receive, send)
