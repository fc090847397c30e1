"""Helpers both benchmarks share: ports, process CPU, ARM resource bodies."""

from __future__ import annotations

import os
import socket
from typing import Any

LOCATION = "eastus"
RG = "bench"


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc); NaN when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # utime, stime are fields 14 and 15 of stat(5).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def network_base(subscription: str) -> str:
    """ARM path prefix of the benchmarks' network resources in a subscription."""
    return f"/subscriptions/{subscription}/resourceGroups/{RG}/providers/Microsoft.Network"


def vnet_body(space: str, subnets: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    """A virtual network; subnets: name -> (prefix, PLS network policies disabled)."""
    return {
        "location": LOCATION,
        "properties": {
            "addressSpace": {"addressPrefixes": [space]},
            "subnets": [
                {
                    "name": name,
                    "properties": {
                        "addressPrefix": p,
                        **({"privateLinkServiceNetworkPolicies": "Disabled"} if off else {}),
                    },
                }
                for name, (p, off) in subnets.items()
            ],
        },
    }
