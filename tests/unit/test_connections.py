"""The connection state machine, the provider's delete, and deleting a service."""

from __future__ import annotations

import itertools

import pytest
from pl_world import S2, S3, World, pls_id

from privatelink.core import errors
from privatelink.core import private_endpoint as pem
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm

STATES = ("Pending", "Approved", "Rejected", "Disconnected")
ALLOWED = {
    ("Pending", "Approved"),
    ("Pending", "Rejected"),
    ("Approved", "Rejected"),
}


@pytest.fixture
def cw(service_world: World) -> World:
    """`pls1` with one Pending connection from endpoint `pe1` (subscription S2)."""
    service_world.create_pe(service_world.pls().alias, message="hello")
    return service_world


def _conn_name(w: World) -> str:
    (conn,) = w.connections()
    return conn.name


def _set(w: World, status: str, description: str | None = None) -> None:
    w.run(pl.update_connection, pls_id(), _conn_name(w), status, description, None)


def _states(w: World) -> tuple[str, str]:
    """(provider's view, consumer's view) of the one connection."""
    (conn,) = w.connections()
    return conn.status, w.pe().connection.status


# --- pure state machine -----------------------------------------------------------------------


# Pending -> Pending is left out: the rules say nobody sets Pending, while the core
# treats a state to itself as a description-only update.
PAIRS = [p for p in itertools.product(STATES[:3], STATES) if p != ("Pending", "Pending")]


@pytest.mark.parametrize(("current", "wanted"), PAIRS)
def test_next_status_table(current: str, wanted: str) -> None:
    if (current, wanted) in ALLOWED:
        assert pl.next_status(current, wanted) == wanted
        assert pl.next_status(current, wanted.lower()) == wanted
        return
    if current == wanted:
        # Approved/Rejected to itself only updates the description
        assert pl.next_status(current, wanted) == current
        return
    with pytest.raises(errors.ArmError) as exc:
        pl.next_status(current, wanted)
    assert exc.value.status == 400
    if wanted in ("Pending", "Disconnected"):
        assert type(exc.value) is errors.InvalidConnectionStatus
        assert exc.value.code == "InvalidPrivateEndpointConnectionStatus"
    else:
        assert type(exc.value) is errors.ConnectionStatusTransitionNotAllowed
        assert exc.value.code == "PrivateEndpointConnectionStatusTransitionNotAllowed"


@pytest.mark.parametrize("wanted", ["Accepted", "", "approve"])
def test_unknown_status_refused(wanted: str) -> None:
    with pytest.raises(errors.InvalidConnectionStatus) as exc:
        pl.next_status("Pending", wanted)
    assert (exc.value.code, exc.value.status) == ("InvalidPrivateEndpointConnectionStatus", 400)


# --- transitions through the store ------------------------------------------------------------


def test_new_connection_is_pending_on_both_sides(cw: World) -> None:
    assert _states(cw) == ("Pending", "Pending")


def test_approve(cw: World) -> None:
    _set(cw, "Approved", "welcome")
    assert _states(cw) == ("Approved", "Approved")
    assert cw.connections()[0].description == "welcome"
    assert cw.pe().connection.description == "welcome"
    assert pem.is_connected(cw.pe())


def test_reject(cw: World) -> None:
    _set(cw, "Rejected", "no")
    assert _states(cw) == ("Rejected", "Rejected")
    assert not pem.is_connected(cw.pe())


def test_approved_then_rejected(cw: World) -> None:
    _set(cw, "Approved")
    _set(cw, "Rejected")
    assert _states(cw) == ("Rejected", "Rejected")


def test_rejected_cannot_be_approved(cw: World) -> None:
    _set(cw, "Rejected")
    cw.refuse(
        errors.ConnectionStatusTransitionNotAllowed,
        "PrivateEndpointConnectionStatusTransitionNotAllowed",
        400,
        pl.update_connection,
        pls_id(),
        _conn_name(cw),
        "Approved",
        None,
        None,
    )
    assert _states(cw) == ("Rejected", "Rejected")


@pytest.mark.parametrize(
    ("first", "wanted"),
    [
        (None, "Disconnected"),
        ("Approved", "Pending"),
        ("Approved", "Disconnected"),
        ("Rejected", "Pending"),
    ],
)
def test_nobody_sets_pending_or_disconnected(cw: World, first: str | None, wanted: str) -> None:
    if first:
        _set(cw, first)
    before = _states(cw)
    cw.refuse(
        errors.InvalidConnectionStatus,
        "InvalidPrivateEndpointConnectionStatus",
        400,
        pl.update_connection,
        pls_id(),
        _conn_name(cw),
        wanted,
        None,
        None,
    )
    assert _states(cw) == before


def test_update_unknown_connection_is_404(cw: World) -> None:
    cw.refuse(
        errors.PrivateEndpointConnectionNotFound,
        "PrivateEndpointConnectionNotFound",
        404,
        pl.update_connection,
        pls_id(),
        "nope",
        "Approved",
        None,
        None,
    )


def test_update_connection_of_unknown_service_is_404(cw: World) -> None:
    cw.refuse(
        errors.ResourceNotFound,
        "ResourceNotFound",
        404,
        pl.update_connection,
        pls_id("ghost"),
        _conn_name(cw),
        "Approved",
        None,
        None,
    )


def test_auto_approved_connection_can_be_rejected(world: World) -> None:
    world.provider(n=1)
    world.consumer()
    pls = world.create_pls(visibility=(S2, S3), auto_approval=(S2,))
    world.create_pe(pls.alias)
    assert _states(world) == ("Approved", "Approved")
    _set(world, "Rejected")
    assert _states(world) == ("Rejected", "Rejected")


# --- provider deletes, consumer deletes ---------------------------------------------------------


def test_provider_delete_disconnects_the_endpoint(cw: World) -> None:
    cw.run(pl.delete_connection, pls_id(), _conn_name(cw))
    assert cw.connections() == ()
    pe = cw.pe()
    assert pe.connection.status == "Disconnected"
    assert not pem.is_connected(pe)
    # the endpoint itself (and its NIC) stays until the consumer deletes it
    assert cw.get(pe.nic_id) is not None
    cw.run(pl.delete_endpoint, pe.id)
    assert cw.get(pe.id) is None
    assert cw.connections() == ()


def test_provider_delete_of_unknown_connection_is_a_no_op(cw: World) -> None:
    before = cw.snapshot()
    assert cw.run(pl.delete_connection, pls_id(), "nope") == {}
    assert cw.snapshot() == before


def test_consumer_delete_removes_connection_from_service(cw: World) -> None:
    _set(cw, "Approved")
    cw.run(pl.delete_endpoint, cw.pe().id)
    assert cw.connections() == ()


# --- deleting a service with connections ---------------------------------------------------------


@pytest.mark.parametrize("status", [None, "Approved", "Rejected"])
def test_service_with_connection_cannot_be_deleted(cw: World, status: str | None) -> None:
    if status:
        _set(cw, status)
    cw.refuse(
        errors.PrivateLinkServiceHasConnections,
        "PrivateLinkServiceHasPrivateEndpointConnections",
        409,
        plsm.delete,
        pls_id(),
    )
    assert cw.get(pls_id()) is not None


def test_service_deletable_after_reject_and_delete(cw: World) -> None:
    _set(cw, "Rejected")
    cw.run(pl.delete_connection, pls_id(), _conn_name(cw))
    pls = cw.pls()
    cw.run(plsm.delete, pls.id)
    assert cw.get(pls.id) is None
    assert cw.get(pls.nic_id) is None
    assert cw.pe().connection.status == "Disconnected"


def test_service_deletable_after_endpoint_deleted(cw: World) -> None:
    cw.run(pl.delete_endpoint, cw.pe().id)
    cw.run(plsm.delete, pls_id())
    assert cw.get(pls_id()) is None


def test_one_of_two_connections_left_still_blocks_delete(cw: World) -> None:
    cw.create_pe(cw.pls().alias, name="pe2")
    first = cw.connections()[0].name
    cw.run(pl.update_connection, pls_id(), first, "Rejected", None, None)
    cw.run(pl.delete_connection, pls_id(), first)
    assert len(cw.connections()) == 1
    cw.refuse(
        errors.PrivateLinkServiceHasConnections,
        "PrivateLinkServiceHasPrivateEndpointConnections",
        409,
        plsm.delete,
        pls_id(),
    )
