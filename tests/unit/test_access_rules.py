"""The core's RBAC-aware rules: who finds a service, who is approved, what may be joined.

Visibility `[]` means RBAC holders only; a subscription list or `*` exposes the service
to those subscriptions whoever asks; an automatic connection is approved by its
creator's approval right and refused without it (unless auto-approved); every new
reference of a change needs its join action (linked authorization).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pl_world import (
    REGION,
    S1,
    S2,
    S3,
    World,
    fe_id,
    make_pe,
    make_pls,
    nic_id,
    pls_id,
    pool_id,
    subnet_id,
    vnet_id,
)

from privatelink.core import errors
from privatelink.core import network_interface as nim
from privatelink.core import private_link as pl
from privatelink.core.actions import PLS_APPROVAL, SUBNET_JOIN
from privatelink.core.authorization import (
    ALLOW_ALL,
    BUILT_IN_ROLES,
    Access,
    LinkedAuthorizationFailed,
    Permission,
    RoleAssignment,
    RoleDefinition,
)
from privatelink.core.linked import check_links
from privatelink.core.principal import Principal
from privatelink.core.private_link_service import is_visible
from privatelink.core.resource import Changes

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
APPROVER = "11111111-aaaa-4aaa-8aaa-111111111111"
APPROVER_ROLE = RoleDefinition(
    id=APPROVER,
    role_name="approver",
    description="approves connections",
    role_type="CustomRole",
    permissions=(Permission(actions=(PLS_APPROVAL,), not_actions=()),),
    assignable_scopes=(f"/subscriptions/{S1}",),
)
ROLES = {**BUILT_IN_ROLES, APPROVER: APPROVER_ROLE}
ME = Principal(tenant_id="t", object_id="0000000a-0000-4000-8000-000000000000", client_id="c")


def access(*grants: tuple[str, str]) -> Access:
    """An Access holding `(role guid, scope)` assignments."""
    assignments = [
        RoleAssignment(
            name=f"{i:08x}-0000-4000-8000-000000000000",
            scope=scope,
            role_definition_id=role,
            principal_id=ME.object_id,
            principal_type="ServicePrincipal",
        )
        for i, (role, scope) in enumerate(grants)
    ]
    return Access(ME, assignments, ROLES)


def rg(sub: str, name: str = "rg") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{name}"


def as_caller(world: World, who: Access, workflow: Any, *args: Any) -> None:
    """Run a workflow as the service would for a caller: workflow, linked checks, apply."""
    resource_id = args[0].id if hasattr(args[0], "id") else str(args[0])
    ctx = replace(
        world.ctx,
        access=who,
        request_action="Microsoft.Network/x/write",
        request_scope=resource_id,
    )
    with world.repo.write() as uow:
        changes = workflow(uow, ctx, *args)
        check_links(uow, ctx, changes)
        uow.apply(changes)


# --- visibility ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visibility", "subscription", "who", "visible"),
    [
        # RBAC only: rights on the service, whatever the subscription.
        ((), S2, access((READER, pls_id())), True),
        ((), S2, access((READER, rg(S1))), True),
        ((), S2, access((APPROVER, pls_id())), True),
        ((), S1, access((READER, rg(S1, "other"))), False),
        ((), S1, access(), False),
        ((), S2, access((NETWORK_CONTRIBUTOR, rg(S2))), False),
        # A subscription list: those subscriptions, plus RBAC holders.
        ((S2,), S2, access(), True),
        ((S2,), S3, access(), False),
        ((S2,), S3, access((READER, pls_id())), True),
        # Everyone.
        (("*",), S3, access(), True),
        # Authorization off: the service's own subscription stands in for its RBAC holders.
        ((), S1, ALLOW_ALL, True),
        ((), S2, ALLOW_ALL, False),
    ],
)
def test_visibility(
    visibility: tuple[str, ...], subscription: str, who: Access, visible: bool
) -> None:
    service = make_pls(visibility=visibility)
    assert is_visible(service, subscription, who) is visible


# --- connections -------------------------------------------------------------------------------


@pytest.fixture
def served(world: World) -> World:
    world.provider()
    world.consumer()
    world.create_pls(visibility=())
    return world


CONSUMER = ((NETWORK_CONTRIBUTOR, rg(S2)),)


def _status(world: World) -> str:
    return world.pe().connection.status


def test_rbac_only_service_is_missing_for_others(served: World) -> None:
    before = served.snapshot()
    with pytest.raises(errors.PrivateLinkServiceNotFound):
        as_caller(served, access(*CONSUMER), pl.create_or_update_endpoint, make_pe(pls_id()))
    assert served.snapshot() == before


def test_reader_on_the_service_may_request_a_manual_connection(served: World) -> None:
    who = access(*CONSUMER, (READER, pls_id()))
    as_caller(served, who, pl.create_or_update_endpoint, make_pe(pls_id(), manual=True))
    assert _status(served) == "Pending"


def test_automatic_connection_without_the_approval_right_is_refused(served: World) -> None:
    who = access(*CONSUMER, (READER, pls_id()))
    before = served.snapshot()
    with pytest.raises(LinkedAuthorizationFailed) as info:
        as_caller(served, who, pl.create_or_update_endpoint, make_pe(pls_id()))
    assert PLS_APPROVAL in info.value.message
    assert pls_id() in info.value.message
    assert served.snapshot() == before


def test_automatic_connection_with_the_approval_right_is_approved(served: World) -> None:
    who = access(*CONSUMER, (APPROVER, pls_id()))
    as_caller(served, who, pl.create_or_update_endpoint, make_pe(pls_id()))
    assert _status(served) == "Approved"
    assert served.connections()[0].status == "Approved"


def test_auto_approval_needs_no_right(world: World) -> None:
    world.provider()
    world.consumer()
    world.create_pls(visibility=(S2,), auto_approval=(S2,))
    as_caller(world, access(*CONSUMER), pl.create_or_update_endpoint, make_pe(pls_id()))
    assert _status(world) == "Approved"


def test_authorization_off_keeps_automatic_connections_pending(world: World) -> None:
    world.provider()
    world.consumer()
    world.create_pls(visibility=(S2,))
    as_caller(world, ALLOW_ALL, pl.create_or_update_endpoint, make_pe(pls_id()))
    assert _status(world) == "Pending"


# --- linked authorization ----------------------------------------------------------------------


def _nic(subnet: str, pools: tuple[str, ...] = (), name: str = "n1") -> nim.NetworkInterface:
    config = nim.NicIpConfiguration(name="ip", subnet_id=subnet, pool_ids=pools, primary=True)
    return nim.NetworkInterface(
        id=nic_id(name, S2), name=name, location=REGION, ip_configurations=(config,)
    )


def test_joining_a_subnet_needs_its_join_action(served: World) -> None:
    # Rights on the NIC's own group only: the provider's subnet is someone else's.
    who = access(*CONSUMER)
    before = served.snapshot()
    with pytest.raises(LinkedAuthorizationFailed) as info:
        as_caller(served, who, nim.create_or_update, _nic(subnet_id("vp", "be")))
    assert SUBNET_JOIN in info.value.message
    assert subnet_id("vp", "be").lower() in info.value.message.lower()
    assert served.snapshot() == before
    # Network Contributor on the subnet's group grants the join.
    who = access(*CONSUMER, (NETWORK_CONTRIBUTOR, rg(S1)))
    as_caller(served, who, nim.create_or_update, _nic(subnet_id("vp", "be")))


def test_joining_a_backend_pool_needs_its_join_action(served: World) -> None:
    # The join right on the backend subnet (an assignment at that scope), not on the pool.
    backend = subnet_id("vp", "be")
    who = access(*CONSUMER, (NETWORK_CONTRIBUTOR, backend))
    with pytest.raises(LinkedAuthorizationFailed) as info:
        as_caller(served, who, nim.create_or_update, _nic(backend, (pool_id("be1"),)))
    assert "backendAddressPools/join/action" in info.value.message


def test_only_new_references_are_checked(served: World) -> None:
    # The admin made a NIC in the provider's subnet; a caller with rights on the NIC
    # alone may still update it (tags), since it adds no reference.
    nic = _nic(subnet_id("vp", "be"))
    as_caller(served, ALLOW_ALL, nim.create_or_update, nic)
    who = access(*CONSUMER)
    as_caller(served, who, nim.create_or_update, replace(nic, tags={"a": "b"}))


def test_check_links_reports_every_missing_scope_once() -> None:
    class View:
        def get(self, _id: str) -> None:
            return None

    changes = Changes()
    changes.put(_nic(subnet_id("vp", "be")))
    changes.put(_nic(subnet_id("vp", "be"), name="n2"))
    ctx: Any = type("Ctx", (), {"access": access(), "request_action": "a", "request_scope": "s"})
    with pytest.raises(LinkedAuthorizationFailed) as info:
        check_links(View(), ctx, changes)  # type: ignore[arg-type]
    assert info.value.message.lower().count(subnet_id("vp", "be").lower()) == 1
    assert fe_id()  # the helpers are shared with the other unit tests


def test_a_peering_needs_peer_action_on_the_remote_network(world: World) -> None:
    from privatelink.core import virtual_network_peering as vp
    from privatelink.core.actions import VNET_PEER
    from privatelink.core.virtual_network import VirtualNetwork

    for name, sub, prefix in (("a", S1, "10.1.0.0/16"), ("b", S2, "10.2.0.0/16")):
        world.run(
            vp.create_or_update_network,
            VirtualNetwork(
                id=vnet_id(name, sub), name=name, location=REGION, address_prefixes=(prefix,)
            ),
        )
    desired = vp.VirtualNetworkPeering(
        id=f"{vnet_id('a', S1)}/virtualNetworkPeerings/ab",
        name="ab",
        location="",
        remote_vnet_id=vnet_id("b", S2),
    )
    before = world.snapshot()
    with pytest.raises(LinkedAuthorizationFailed) as info:
        as_caller(world, access((NETWORK_CONTRIBUTOR, rg(S1))), vp.create_or_update, desired)
    assert VNET_PEER in info.value.message
    assert vnet_id("b", S2).lower() in info.value.message.lower()
    assert world.snapshot() == before
    # Network Contributor on the remote network's group includes peer/action.
    as_caller(
        world,
        access((NETWORK_CONTRIBUTOR, rg(S1)), (NETWORK_CONTRIBUTOR, rg(S2))),
        vp.create_or_update,
        desired,
    )
