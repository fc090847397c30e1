"""Azure's private link limits, configurable per server."""

from __future__ import annotations

from dataclasses import dataclass, fields
from ipaddress import AddressValueError, IPv4Network, NetmaskValueError
from typing import Any

#: The widest prefix length a public range may have (a /24: 254 hosts, 252 to allocate).
PUBLIC_RANGE_MAX_PREFIXLEN = 24


@dataclass(frozen=True)
class Limits:
    """Service limits (defaults are Azure's published ones)."""

    pls_per_subscription: int = 800
    pls_per_load_balancer: int = 8
    nat_ip_configurations: int = 8
    # Direct Connect services (destinationIPAddress) per subscription and region: Azure's
    # "hardware limitation of 10 PLS per region per subscription".
    direct_connect_per_region: int = 10
    pe_per_pls: int = 1000
    pe_per_vnet: int = 1000
    subnets_per_vnet: int = 3000
    peerings_per_vnet: int = 500
    address_prefixes_per_vnet: int = 3000  # Azure publishes none: ours
    visibility_subscriptions: int = 100
    auto_approval_subscriptions: int = 100
    fqdns: int = 100  # Azure publishes none: ours (see _check_fqdns)
    request_message_length: int = 140
    # Where public IP addresses come from (never the host's own): any IPv4 network of /24
    # or larger; its last two host addresses are reserved (core/public_ip_address.py).
    public_ip_range: str = "198.18.0.0/15"

    def __post_init__(self) -> None:
        try:
            net = IPv4Network(self.public_ip_range)
        except (AddressValueError, NetmaskValueError, ValueError, TypeError):
            raise ValueError(
                f"public_ip_range '{self.public_ip_range}' is not an IPv4 network "
                "(a.b.c.d/n without host bits)"
            ) from None
        if net.prefixlen > PUBLIC_RANGE_MAX_PREFIXLEN:
            raise ValueError(
                f"public_ip_range {net} is too small: use a /{PUBLIC_RANGE_MAX_PREFIXLEN} or larger"
            )

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Limits:
        """Build from a mapping of field names; unknown names raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
        text = {f.name for f in fields(cls) if f.type in (str, "str")}
        given: dict[str, Any] = {k: str(v) if k in text else int(v) for k, v in values.items()}
        return cls(**given)
