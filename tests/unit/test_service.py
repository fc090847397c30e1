"""The control plane service: one operation per resource at a time, realizer hook."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from privatelink.core import errors
from privatelink.core.resource import Changes, Context, StateView
from privatelink.service import ControlPlane
from privatelink.store.sql import SqlRepository

RID = (
    "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg"
    "/providers/Microsoft.Network/virtualNetworks/v"
)


def test_a_second_change_to_a_busy_resource_is_409(tmp_path: Path) -> None:
    plane = ControlPlane(SqlRepository.sqlite_in(tmp_path))
    entered, release = threading.Event(), threading.Event()

    def slow(_view: StateView, _ctx: Context) -> Changes:
        entered.set()
        assert release.wait(10)
        return Changes()

    worker = threading.Thread(target=plane.change, args=(None, RID, "put", slow))
    worker.start()
    try:
        assert entered.wait(10)
        with pytest.raises(errors.AnotherOperationInProgress) as caught:
            plane.change(None, RID.upper(), "put", lambda v, c: Changes())
        assert caught.value.status == 409
        assert caught.value.code == "AnotherOperationInProgress"
    finally:
        release.set()
        worker.join(10)
    # Once the first finished, the resource takes changes again.
    plane.change(None, RID, "put", lambda v, c: Changes())


class Recorder:
    def __init__(self) -> None:
        self.marks = 0

    def mark_dirty(self) -> None:
        self.marks += 1


def test_with_a_realizer_operations_stay_in_progress_and_mark_it_dirty(tmp_path: Path) -> None:
    realizer = Recorder()
    plane = ControlPlane(SqlRepository.sqlite_in(tmp_path), realizer=realizer)
    assert plane.context(None).initial_state == "Updating"
    out = plane.change(None, RID, "put", lambda v, c: Changes())
    assert out.operation.status == "InProgress"
    assert realizer.marks == 1
    assert plane.repo.get_operation(out.operation.id).status == "InProgress"  # type: ignore[union-attr]


def test_without_a_realizer_operations_finish_at_once(tmp_path: Path) -> None:
    plane = ControlPlane(SqlRepository.sqlite_in(tmp_path))
    out = plane.change(None, RID, "put", lambda v, c: Changes())
    assert out.operation.status == "Succeeded"
    assert plane.context(None).initial_state == "Succeeded"
