"""The store's interface: what the API and (later) the data plane need from storage."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from privatelink.core.resource import Changes, Resource, StateView

T = TypeVar("T")


class InlineReadRefused(Exception):
    """The store will not run this read on the caller's thread (its database is not a
    local file, another connection holds a lock, or the read outgrew its budget): read
    through `Repository.read` in a worker thread instead. Never reaches a client."""


def utc_now() -> str:
    """ISO-8601 UTC timestamp as ARM writes them (fixed width, so text order is time order)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Operation:
    """A long-running operation record (the target of Azure-AsyncOperation)."""

    id: str
    resource_id: str
    kind: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    start_time: str = ""
    end_time: str | None = None


class UnitOfWork(StateView, Protocol):
    """A write transaction: read through the view, then apply one change set."""

    def apply(self, changes: Changes) -> dict[str, Resource]:
        """Write all changes; returns what was written by key (with fresh etags)."""

    def save_operation(self, operation: Operation) -> None:
        """Record the change's operation in the same transaction (both or neither)."""


@dataclass(frozen=True)
class Page:
    """One page of a list."""

    items: list[Resource]
    next_token: str | None


class Repository(Protocol):
    """Storage for resources and operations."""

    def read(self) -> AbstractContextManager[StateView]:
        """A consistent read-only view."""

    def read_inline(self, fn: Callable[[StateView], T]) -> T:
        """`fn(view)` on the calling thread, when the store can promise it will not wait:
        a local database, nothing locked, at most a small budget of documents decoded
        (else `InlineReadRefused`, possibly after `fn` began: `fn` must only read).
        Lets an event loop answer small reads without a thread hop."""

    def write(self) -> AbstractContextManager[UnitOfWork]:
        """A serialized write transaction (commits on success, rolls back on error)."""

    def list(
        self,
        resource_type: str,
        subscription: str,
        resource_group: str | None,
        token: str | None,
        top: int,
    ) -> Page:
        """Resources of a type in a subscription (and resource group), in creation order."""

    def iter_all(self, resource_type: str) -> Iterator[Resource]:
        """Every resource of a type (for background work)."""

    def save_operation(self, operation: Operation) -> None:
        """Insert or replace an operation record."""

    def get_operation(self, operation_id: str) -> Operation | None:
        """An operation record by id."""

    def ensure_subscription(self, subscription_id: str, tenant_id: str, name: str = "") -> bool:
        """Record a subscription on first use; True when it was new."""

    def list_subscriptions(self) -> builtins.list[dict[str, str]]:
        """Every known subscription."""

    def put_resource_group(
        self, subscription: str, name: str, location: str, tags: dict[str, str]
    ) -> tuple[dict[str, object], bool]:
        """Create or update a resource group; (record, created)."""

    def get_resource_group(self, subscription: str, name: str) -> dict[str, object] | None:
        """A resource group created through the API, or None."""

    def list_resource_groups(self, subscription: str) -> builtins.list[dict[str, object]]:
        """Resource groups of a subscription."""

    def delete_resource_group_record(self, subscription: str, name: str) -> None:
        """Forget a resource group."""

    def put_deployment(self, deployment_id: str, body: dict[str, object]) -> None:
        """Insert or replace a deployment record."""

    def get_deployment(self, deployment_id: str) -> dict[str, object] | None:
        """A deployment record."""

    def list_deployments(self, subscription: str, group: str) -> builtins.list[dict[str, object]]:
        """Deployments of a resource group."""

    def delete_deployment(self, deployment_id: str) -> None:
        """Forget a deployment."""

    def resources_in_group(self, subscription: str, name: str | None) -> builtins.list[Resource]:
        """Every network resource of a resource group (or, with None, a subscription)."""
