"""Azure's private link limits, configurable per server."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Service limits (defaults are Azure's published ones)."""

    pls_per_subscription: int = 800
    pls_per_load_balancer: int = 8
    nat_ip_configurations: int = 8
    pe_per_pls: int = 1000
    pe_per_vnet: int = 1000
    subnets_per_vnet: int = 3000
    address_prefixes_per_vnet: int = 3000  # Azure publishes none: ours
    visibility_subscriptions: int = 100
    auto_approval_subscriptions: int = 100
    fqdns: int = 100  # Azure publishes none: ours (see _check_fqdns)
    request_message_length: int = 140

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Limits:
        """Build from a mapping of field names; unknown names raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
        return cls(**{k: int(v) for k, v in values.items()})
