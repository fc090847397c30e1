"""The store's interface: what the API and (later) the data plane need from storage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from privatelink.core.resource import Changes, Resource, StateView


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


@dataclass(frozen=True)
class Page:
    """One page of a list."""

    items: list[Resource]
    next_token: str | None


class Repository(Protocol):
    """Storage for resources and operations."""

    def read(self) -> AbstractContextManager[StateView]:
        """A consistent read-only view."""

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
