"""The control plane's application service: runs core workflows against the store.

It owns what sits between one HTTP request and the pure core: the caller, limits and
GUID source handed to workflows, one serialized transaction per change, operation
records for long-running operations, and the "one operation per resource at a time"
rule (a second concurrent change to the same resource gets 409).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from privatelink.core import errors, registry
from privatelink.core.actions import describe
from privatelink.core.authorization import ALLOW_ALL, Access
from privatelink.core.ids import key
from privatelink.core.limits import Limits
from privatelink.core.linked import check_links
from privatelink.core.principal import Principal
from privatelink.core.resource import (
    SUCCEEDED,
    Changes,
    Context,
    Resource,
    Staged,
    StateView,
)
from privatelink.store.repository import Operation, Repository, utc_now

Workflow = Callable[..., Changes]
T = TypeVar("T")
#: Who asks for a change: the caller's access, or a bare principal / None (all allowed).
Caller = Access | Principal | None


class Realizer(Protocol):
    """Whatever makes stored state real (the data plane's reconciler)."""

    def mark_dirty(self) -> None:
        """Stored state changed: sync soon."""

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until everything marked so far is applied; False on timeout."""


class Realizers:
    """Several realizers as one (the data plane's reconciler and the DNS server)."""

    def __init__(self, *members: Realizer) -> None:
        self.members = members

    def mark_dirty(self) -> None:
        """Tell every member."""
        for member in self.members:
            member.mark_dirty()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait for every member, within one overall timeout."""
        deadline = time.monotonic() + timeout
        return all(m.wait_idle(max(0.0, deadline - time.monotonic())) for m in self.members)


@dataclass(frozen=True)
class Outcome:
    """What a change did: the resources written (by key) and its operation record."""

    written: dict[str, Resource]
    operation: Operation
    existed: bool
    #: What `change(render=...)` built of the stored state for the response.
    rendered: Any = None


class ControlPlane:
    """Entry point of every change and read the API makes."""

    def __init__(
        self,
        repo: Repository,
        limits: Limits | None = None,
        new_guid: Callable[[], str] | None = None,
        realizer: Realizer | None = None,
        realization_wait: float = 0.0,
    ) -> None:
        """`realization_wait`: how long a change waits for the data plane to apply it
        before answering (so clients usually see Succeeded at once); 0 = don't wait."""
        self.repo = repo
        self.limits = limits or Limits()
        self._new_guid = new_guid or (lambda: str(uuid.uuid4()))
        self.realizer = realizer
        self.realization_wait = realization_wait
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()

    def context(self, caller: Caller, resource_id: str = "", kind: str = "put") -> Context:
        """The workflow context for a caller (its access, or a bare principal: all allowed).

        `resource_id` and `kind` name the request for linked-authorization errors.
        """
        state = "Updating" if self.realizer is not None else SUCCEEDED
        access = caller if isinstance(caller, Access) else ALLOW_ALL
        principal = caller.principal if isinstance(caller, Access) else caller
        described = describe("DELETE" if kind == "delete" else "PUT", resource_id)
        return Context(
            caller=principal,
            limits=self.limits,
            new_guid=self._new_guid,
            initial_state=state,
            access=access,
            request_action=described.action if described else "",
            request_scope=resource_id,
        )

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
        caller: Caller,
        resource_id: str,
        kind: str,
        workflow: Workflow,
        *args: Any,
        precondition: Callable[[StateView], None] | None = None,
        render: Callable[[StateView], Any] | None = None,
    ) -> Outcome:
        """Run one workflow in one transaction and record its (finished) operation.

        `resource_id` is the resource the operation is about; `precondition` runs on
        the same view first (If-Match / If-None-Match checks). `caller` is the caller's
        `Access` (a bare principal, or None, for internal callers: all allowed); what the
        change refers to anew is checked for linked authorization before anything is
        written. A `Staged` workflow's `check` (the request alone) runs before the
        store's write lock is taken, so one large or invalid body holds up no other writer.

        `render(view)` builds the response (`Outcome.rendered`) inside the transaction,
        so a store fault after the commit never reports a stored change as failed; with
        a data plane it is built again after the realization wait (newer provisioning
        states), keeping the first one if the store fails by then.
        """
        ctx = self.context(caller, resource_id, kind)
        if isinstance(workflow, Staged):
            args = workflow.check(ctx, *args)
            workflow = workflow.run
        with self._exclusive(resource_id), self.repo.write() as uow:
            existed = uow.get(resource_id) is not None
            if precondition is not None:
                precondition(uow)
            changes = workflow(uow, ctx, *args)
            check_links(uow, ctx, changes)
            written = uow.apply(changes)
            now = utc_now()
            # With a data plane the operation ends when the kernel state is applied.
            pending = self.realizer is not None
            operation = Operation(
                id=str(uuid.uuid4()),
                resource_id=resource_id,
                kind=kind,
                status="InProgress" if pending else "Succeeded",
                start_time=now,
                end_time=None if pending else now,
            )
            # In the change's own transaction: a store fault leaves both or neither.
            uow.save_operation(operation)
            rendered = render(uow) if render is not None else None
        self._realize()
        if render is not None and self.realizer is not None:
            try:
                with self.repo.read() as view:
                    rendered = render(view)
            except errors.StoreFault:
                pass  # the change is stored: answer with what its transaction saw
        return Outcome(written, operation, existed, rendered)

    def _realize(self) -> None:
        """Hand the change to the data plane; wait a little for it, as ARM would."""
        if self.realizer is None:
            return
        self.realizer.mark_dirty()
        if self.realization_wait > 0:
            self.realizer.wait_idle(self.realization_wait)

    def poke(self) -> None:
        """State the data plane realizes changed outside `change` (an admin object such
        as an on-premises site): mark it dirty and wait a little, as a change does."""
        self._realize()

    def record_operation(
        self, resource_id: str, kind: str, error: tuple[str, str] | None = None
    ) -> Operation:
        """An operation for work done outside `change` (a template deployment).

        It fails at once with `error` (code, message); otherwise it ends like the changes
        it made: at once without a data plane, after the next sync with one.
        """
        now = utc_now()
        pending = self.realizer is not None and error is None
        status = "Failed" if error else ("InProgress" if pending else "Succeeded")
        operation = Operation(
            id=str(uuid.uuid4()),
            resource_id=resource_id,
            kind=kind,
            status=status,
            error_code=error[0] if error else None,
            error_message=error[1] if error else None,
            start_time=now,
            end_time=None if pending else now,
        )
        self.repo.save_operation(operation)
        if pending:
            self._realize()
        return operation

    def delete_resource_group(self, caller: Caller, subscription: str, group: str) -> Operation:
        """Delete every network resource of a group, then the group, in the registry's
        deletion order (endpoints first).

        Like ARM, this is not one transaction: it stops at the first resource that
        refuses (e.g. a service that still has connections from elsewhere).
        """
        last: Operation | None = None
        for entry in registry.deletion_order():
            assert entry.delete is not None
            for resource in self.repo.resources_in_group(subscription, group):
                if not resource.rid.is_type(*entry.segments) or getattr(
                    resource, "managed_by", None
                ):
                    continue
                last = self.change(
                    caller, resource.id, "delete", entry.delete, resource.id
                ).operation
        self.repo.delete_resource_group_record(subscription, group)
        now = utc_now()
        operation = Operation(
            id=str(uuid.uuid4()),
            resource_id=f"/subscriptions/{subscription}/resourceGroups/{group}",
            kind="delete",
            status=last.status if last else "Succeeded",
            start_time=now,
            end_time=None if last and last.status == "InProgress" else now,
        )
        self.repo.save_operation(operation)
        return operation

    @contextmanager
    def read(self) -> Iterator[StateView]:
        """A consistent read view."""
        with self.repo.read() as view:
            yield view

    def read_inline(self, fn: Callable[[StateView], T]) -> T:
        """`fn(view)` on this thread when the store promises not to wait, else
        `InlineReadRefused` (`Repository.read_inline`)."""
        return self.repo.read_inline(fn)

    def read_with(self, fn: Callable[[StateView], T]) -> T:
        """`fn(view)` in an ordinary read (for a worker thread)."""
        with self.repo.read() as view:
            return fn(view)
