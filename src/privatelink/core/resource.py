"""What every resource workflow shares: the base resource, the read view, the change set.

Workflows are pure: they read current state through a `StateView`, and return the
`Changes` to apply; the store applies a change set in one transaction or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from privatelink.core import errors
from privatelink.core.authorization import ALLOW_ALL, Access
from privatelink.core.ids import ResourceId, is_guid, key, valid_name, valid_resource_group
from privatelink.core.limits import Limits
from privatelink.core.principal import Principal

SUCCEEDED = "Succeeded"
_LOCATION = re.compile(r"[a-z][a-z0-9]{1,39}")


@dataclass(frozen=True, kw_only=True)
class Resource:
    """Fields every tracked ARM resource has."""

    id: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)
    etag: str = ""
    provisioning_state: str = SUCCEEDED

    @property
    def key(self) -> str:
        """Canonical identity."""
        return key(self.id)

    @property
    def rid(self) -> ResourceId:
        """Parsed id."""
        return ResourceId.parse(self.id)


R = TypeVar("R", bound=Resource)


class StateView(Protocol):
    """Read access to current state that workflows need (implemented by the store)."""

    def get(self, resource_id: str) -> Resource | None:
        """The resource with this id (case-insensitive), or None."""

    def referrers(
        self, target: str, kind: str, offset: int = 0, limit: int | None = None
    ) -> list[Resource]:
        """Resources whose index entries point at `target` with `kind` (core.registry),
        oldest first; `offset`/`limit` read one page of them."""

    def count_referrers(self, target: str, kind: str) -> int:
        """How many resources index `target` under `kind` (without loading them)."""

    def referrers_within(self, parent: str, kind: str) -> dict[str, list[Resource]]:
        """`referrers` of every child of `parent` at once: target key -> resources.

        One query however many children `parent` has (the subnets of a network).
        """

    def used_ips(self, subnet_id: str) -> dict[str, str]:
        """Allocated addresses of a subnet: ip -> owning resource id (every one of them)."""

    def ip_holders(self, subnet_id: str, ips: Collection[str]) -> dict[str, str]:
        """`used_ips` for just these addresses: ip -> owning resource id of those held."""

    def lowest_free_ip(self, subnet_id: str, first: int, last: int) -> int | None:
        """The lowest address (as an integer) in [first, last] that nothing in the subnet
        holds, or None when all are held (an indexed lookup, not a read of every address)."""

    def count(self, resource_type: str, subscription: str) -> int:
        """How many resources of an ARM type a subscription has."""


@dataclass(frozen=True)
class Context:
    """What a workflow may use besides state: caller, limits and a GUID source.

    `access` is the caller's effective RBAC permissions (everything allowed when
    authorization is off); workflows ask it where a request reaches beyond its own
    resource: visibility of a service, an automatic connection's approval.
    `request_action` and `request_scope` name the request, for linked-check errors.
    """

    caller: Principal | None
    limits: Limits
    new_guid: Callable[[], str]
    initial_state: str = SUCCEEDED
    access: Access = ALLOW_ALL
    request_action: str = ""
    request_scope: str = ""


@dataclass(frozen=True)
class Staged:
    """A workflow in two steps, so that checking a large request holds no lock.

    `check(ctx, *args)` looks at the request alone (no state): it validates and
    normalizes, and returns the arguments of `run(view, ctx, *checked)`, which does what
    needs stored state. `ControlPlane.change` runs `check` before it takes the store's
    write lock; called like a plain workflow, a `Staged` runs both steps in order.
    `run` trusts its arguments: they must come from `check`.
    """

    check: Callable[..., tuple[Any, ...]]
    run: Callable[..., Changes]

    def __call__(self, view: StateView, ctx: Context, *args: Any) -> Changes:
        """Both steps, as one plain workflow."""
        return self.run(view, ctx, *self.check(ctx, *args))


@dataclass
class Changes:
    """Resources to write and ids to delete, applied atomically, in order."""

    puts: list[Resource] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)

    def put(self, resource: Resource) -> None:
        """Write (replace) a resource; a later put of the same id wins."""
        self.puts = [r for r in self.puts if r.key != resource.key]
        self.puts.append(resource)

    def delete(self, resource_id: str) -> None:
        """Delete a resource."""
        self.puts = [r for r in self.puts if r.key != key(resource_id)]
        self.deletes.append(resource_id)


def get_typed(view: StateView, resource_id: str, cls: type[R]) -> R | None:
    """Get a resource and check it is of `cls` (None when absent or of another type)."""
    found = view.get(resource_id)
    return found if isinstance(found, cls) else None


def require(view: StateView, resource_id: str, cls: type[R]) -> R:
    """Get a resource that must exist (404 ResourceNotFound otherwise)."""
    found = get_typed(view, resource_id, cls)
    if found is None:
        raise errors.ResourceNotFound(id=resource_id)
    return found


def normalize_location(location: str | None) -> str:
    """ARM's normal form of a region name: 'East US' -> 'eastus'; required."""
    if not location or not location.strip():
        raise errors.LocationRequired()
    normal = location.replace(" ", "").lower()
    if not _LOCATION.fullmatch(normal):
        raise errors.InvalidLocation(value=location)
    return normal


def pick(value: str, allowed: tuple[str, ...], field: str) -> str:
    """An ARM enum value in its canonical spelling (ARM enums are case-insensitive); a
    value outside `allowed` is a 400 that lists them."""
    for known in allowed:
        if value.lower() == known.lower():
            return known
    raise errors.InvalidRequestContent(
        f"{field} must be one of {', '.join(allowed)}; got '{errors.clip(value)}'."
    )


def check_resource_id(rid: ResourceId) -> None:
    """Validate the subscription, resource group and names of an id from a URL."""
    if not is_guid(rid.subscription):
        raise errors.InvalidSubscriptionId(value=rid.subscription)
    if not valid_resource_group(rid.resource_group):
        raise errors.InvalidResourceGroupName(name=rid.resource_group)
    for name in rid.names:
        if not valid_name(name):
            raise errors.InvalidResourceName(name=name)


def check_unique_names(owner: str, names: list[str]) -> None:
    """Child names must be unique (case-insensitively) and valid."""
    seen: set[str] = set()
    for name in names:
        if not valid_name(name):
            raise errors.InvalidResourceName(name=name)
        if name.lower() in seen:
            raise errors.DuplicateResourceName(id=owner, name=name)
        seen.add(name.lower())


def same_parent(child_ref: str, parent_id: str) -> bool:
    """True when a child reference (e.g. a frontend id) belongs to `parent_id`."""
    try:
        return ResourceId.parse(child_ref).parent().key == key(parent_id)
    except errors.ArmError:
        return False
