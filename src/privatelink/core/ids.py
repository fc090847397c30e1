"""ARM resource ids: parsing, building and the canonical (case-insensitive) key.

ARM treats every segment of a resource id case-insensitively; we keep the casing a
resource was created with for display and use `key()` (lower-case) for identity.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from privatelink.core.errors import InvalidResourceId

NETWORK = "Microsoft.Network"

_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# ARM resource names: no slashes, no control characters, bounded length.
_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.\-]{0,78}[A-Za-z0-9_])?")
_RG = re.compile(r"[-\w._()]{1,90}")


def key(resource_id: str) -> str:
    """The canonical identity of a resource id: lower-case, no trailing slash."""
    return resource_id.rstrip("/").lower()


def is_guid(value: str) -> bool:
    """True when `value` is a GUID in its 8-4-4-4-12 text form."""
    return bool(_GUID.fullmatch(value))


def new_guid() -> str:
    """A random (version 4) GUID string drawn from the ``secrets`` CSPRNG."""
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


def valid_name(name: str) -> bool:
    """True for a valid network resource (or child) name."""
    return bool(_NAME.fullmatch(name)) and not name.endswith(".")


def valid_resource_group(name: str) -> bool:
    """True for a valid resource group name (ARM: 1-90 chars, no trailing period)."""
    return bool(_RG.fullmatch(name)) and not name.endswith(".")


@dataclass(frozen=True)
class ResourceId:
    """A parsed Microsoft.Network resource id, possibly of a child resource.

    `types` and `names` pair up: ("virtualNetworks", "subnets") with ("v1", "s1").
    """

    subscription: str
    resource_group: str
    types: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, value: str) -> ResourceId:
        """Parse an ARM id; raise InvalidResourceId if it is not a Microsoft.Network id."""
        parts = [p for p in value.strip().split("/")]
        if not value.startswith("/") or len(parts) < 9:
            raise InvalidResourceId(value)
        parts = parts[1:]
        if (
            parts[0].lower() != "subscriptions"
            or parts[2].lower() != "resourcegroups"
            or parts[4].lower() != "providers"
            or parts[5].lower() != NETWORK.lower()
        ):
            raise InvalidResourceId(value)
        rest = parts[6:]
        if len(rest) < 2 or len(rest) % 2:
            raise InvalidResourceId(value)
        types = tuple(rest[0::2])
        names = tuple(rest[1::2])
        if not all(names) or not all(types) or not parts[1] or not parts[3]:
            raise InvalidResourceId(value)
        return cls(parts[1], parts[3], types, names)

    @classmethod
    def build(cls, subscription: str, resource_group: str, *pairs: str) -> ResourceId:
        """Build from alternating type/name pairs."""
        return cls(subscription, resource_group, tuple(pairs[0::2]), tuple(pairs[1::2]))

    def __str__(self) -> str:
        tail = "/".join(f"{t}/{n}" for t, n in zip(self.types, self.names, strict=True))
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{NETWORK}/{tail}"
        )

    @property
    def key(self) -> str:
        """Canonical key of this id."""
        return key(str(self))

    @property
    def name(self) -> str:
        """The last name segment."""
        return self.names[-1]

    @property
    def type(self) -> str:
        """Full ARM type, e.g. Microsoft.Network/virtualNetworks/subnets."""
        return NETWORK + "/" + "/".join(self.types)

    def parent(self) -> ResourceId:
        """The parent resource of a child id."""
        if len(self.types) < 2:
            raise InvalidResourceId(str(self))
        return ResourceId(self.subscription, self.resource_group, self.types[:-1], self.names[:-1])

    def child(self, child_type: str, name: str) -> ResourceId:
        """A child of this resource."""
        return ResourceId(
            self.subscription, self.resource_group, (*self.types, child_type), (*self.names, name)
        )

    def is_type(self, *types: str) -> bool:
        """True when this id's type chain equals `types` (case-insensitively)."""
        return len(types) == len(self.types) and all(
            a.lower() == b.lower() for a, b in zip(types, self.types, strict=True)
        )


def parse_ref(value: str, *types: str) -> ResourceId:
    """Parse a reference that must be of the given type chain (raise InvalidResourceId)."""
    rid = ResourceId.parse(value)
    if not rid.is_type(*types):
        raise InvalidResourceId(value, expected="/".join(types))
    return rid
