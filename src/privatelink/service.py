"""The control plane's application service: runs core workflows against the store.

It owns what sits between one HTTP request and the pure core: the caller, limits and
GUID source handed to workflows, one serialized transaction per change, operation
records for long-running operations, and the "one operation per resource at a time"
rule (a second concurrent change to the same resource gets 409).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from privatelink.core import errors
from privatelink.core.ids import key
from privatelink.core.limits import Limits
from privatelink.core.principal import Principal
from privatelink.core.resource import Changes, Context, Resource, StateView
from privatelink.store.repository import Operation, Repository

Workflow = Callable[..., Changes]


def utc_now() -> str:
    """ISO-8601 UTC timestamp as ARM writes them."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Outcome:
    """What a change did: the resources written (by key) and its operation record."""

    written: dict[str, Resource]
    operation: Operation
    existed: bool


class ControlPlane:
    """Entry point of every change and read the API makes."""

    def __init__(
        self,
        repo: Repository,
        limits: Limits | None = None,
        new_guid: Callable[[], str] | None = None,
    ) -> None:
        self.repo = repo
        self.limits = limits or Limits()
        self._new_guid = new_guid or (lambda: str(uuid.uuid4()))
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()

    def context(self, caller: Principal | None) -> Context:
        """The workflow context for a caller."""
        return Context(caller=caller, limits=self.limits, new_guid=self._new_guid)

    @contextmanager
    def _exclusive(self, resource_id: str) -> Iterator[None]:
        k = key(resource_id)
        with self._busy_lock:
            if k in self._busy:
                raise errors.AnotherOperationInProgress(id=resource_id)
            self._busy.add(k)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy.discard(k)

    def change(
        self,
        caller: Principal | None,
        resource_id: str,
        kind: str,
        workflow: Workflow,
        *args: Any,
        precondition: Callable[[StateView], None] | None = None,
    ) -> Outcome:
        """Run one workflow in one transaction and record its (finished) operation.

        `resource_id` is the resource the operation is about; `precondition` runs on
        the same view first (If-Match / If-None-Match checks).
        """
        with self._exclusive(resource_id), self.repo.write() as uow:
            existed = uow.get(resource_id) is not None
            if precondition is not None:
                precondition(uow)
            changes = workflow(uow, self.context(caller), *args)
            written = uow.apply(changes)
        now = utc_now()
        operation = Operation(
            id=str(uuid.uuid4()),
            resource_id=resource_id,
            kind=kind,
            status="Succeeded",
            start_time=now,
            end_time=now,
        )
        self.repo.save_operation(operation)
        return Outcome(written, operation, existed)

    @contextmanager
    def read(self) -> Iterator[StateView]:
        """A consistent read view."""
        with self.repo.read() as view:
            yield view
