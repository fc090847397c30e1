"""Private link service aliases: `<name>.<guid>.<region>.azure.privatelinkservice`."""

from __future__ import annotations

import re

SUFFIX = "azure.privatelinkservice"

_ALIAS = re.compile(
    r"(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)\."
    r"(?P<guid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\."
    r"(?P<region>[a-z0-9]+)\.azure\.privatelinkservice",
    re.IGNORECASE,
)


def make_alias(name: str, guid: str, region: str) -> str:
    """The alias of a new service: its name, a platform GUID and its region."""
    return f"{name}.{guid.lower()}.{region.lower()}.{SUFFIX}"


def looks_like_alias(value: str) -> bool:
    """True when `value` has the shape of an alias (not of a resource id)."""
    return bool(_ALIAS.fullmatch(value.strip()))


def alias_region(value: str) -> str | None:
    """The region part of an alias, or None when it is not an alias."""
    m = _ALIAS.fullmatch(value.strip())
    return m.group("region").lower() if m else None
