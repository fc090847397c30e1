"""What the user can read across subscriptions, as the portal's lists show it: asked of
ARM per subscription, each refusal kept beside what the others gave."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from privatelink.portal.arm import SUBSCRIPTIONS_API, Arm, ArmError


@dataclass
class Seen:
    """What the user can read across subscriptions (and what ARM refused)."""

    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ArmError] = field(default_factory=list)


@dataclass
class Estate:
    """What the user can read: subscriptions, services and endpoints (and what failed)."""

    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ArmError] = field(default_factory=list)

    def pending(self) -> list[dict[str, Any]]:
        """Every connection awaiting a decision, with its service."""
        return [
            {"service": s, "connection": c}
            for s in self.services
            for c in (s.get("properties") or {}).get("privateEndpointConnections") or []
            if status_of(c) == "Pending"
        ]


def state_of(connection: dict[str, Any]) -> dict[str, Any]:
    """A connection's privateLinkServiceConnectionState (status, description)."""
    state: dict[str, Any] = (connection.get("properties") or {}).get(
        "privateLinkServiceConnectionState"
    ) or {}
    return state


def status_of(connection: dict[str, Any]) -> str:
    """A connection's state (Pending, Approved, Rejected, Disconnected)."""
    return str(state_of(connection).get("status") or "")


async def across(
    arm: Arm,
    kind: str,
    subscription: str = "",
    subscriptions: list[dict[str, Any]] | None = None,
) -> Seen:
    """Every Microsoft.Network resource of `kind` (e.g. `privateEndpoints`) in every
    subscription the user can see (or just `subscription`); an ARM refusal per
    subscription is kept, the rest still shown. `subscriptions`: the list, when known."""
    if subscriptions is None:
        subscriptions = await arm.list_all("/subscriptions", SUBSCRIPTIONS_API)
    seen = Seen(subscriptions=subscriptions)
    for sub in subscriptions:
        sid = sub.get("subscriptionId", "")
        if subscription and sid != subscription:
            continue
        try:
            seen.items += await arm.list_all(
                f"/subscriptions/{sid}/providers/Microsoft.Network/{kind}"
            )
        except ArmError as exc:
            seen.errors.append(exc)
    return seen


async def gather(arm: Arm, subscription: str = "", group: str = "") -> Estate:
    """Services and endpoints of every subscription the user can see (or one), in one
    resource group when `group` is given; an ARM refusal per subscription is kept."""
    services = await across(arm, "privateLinkServices", subscription)
    endpoints = await across(arm, "privateEndpoints", subscription, services.subscriptions)
    estate = Estate(
        services.subscriptions, services.items, endpoints.items, services.errors + endpoints.errors
    )
    if group:
        key = f"/resourcegroups/{group.lower()}/"
        estate.services = [s for s in estate.services if key in s["id"].lower()]
        estate.endpoints = [e for e in estate.endpoints if key in e["id"].lower()]
    return estate
