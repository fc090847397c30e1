"""A private link service's accessMode: who may connect, and what everyone else is told.

Azure's AccessMode enum (REST spec privateLinkService.json from 2025-01-01): "Default:
Allows unrestricted access to the private link service. Restricted: Limits access to
subscriptions which are inside visibility list only." Decided here (Azure documents no
more): Restricted admits only the subscriptions the visibility list names; RBAC rights on
the service admit nobody else (in Default they do); a '*' beside Restricted is a 400.
A caller who holds rights on the service but is not listed is told why (403
PrivateLinkServiceAccessRestricted); anyone else keeps getting "not found".
checkPrivateLinkServiceVisibility answers true exactly for the callers admitted.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pl_world import S1, S2, S3, World, make_pe, make_pls, pls_id

from privatelink.core import errors
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core.actions import PLS_APPROVAL
from privatelink.core.authorization import (
    ALLOW_ALL,
    BUILT_IN_ROLES,
    Access,
    Permission,
    RoleAssignment,
    RoleDefinition,
)
from privatelink.core.linked import check_links
from privatelink.core.principal import Principal

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
APPROVER = "11111111-aaaa-4aaa-8aaa-111111111111"
ROLES = {
    **BUILT_IN_ROLES,
    APPROVER: RoleDefinition(
        id=APPROVER,
        role_name="approver",
        description="approves connections",
        role_type="CustomRole",
        permissions=(Permission(actions=(PLS_APPROVAL,), not_actions=()),),
        assignable_scopes=(f"/subscriptions/{S1}",),
    ),
}
ME = Principal(tenant_id="t", object_id="0000000a-0000-4000-8000-000000000000", client_id="c")
D, R = plsm.DEFAULT_ACCESS, plsm.RESTRICTED
NOT_FOUND = ("PrivateLinkServiceNotFound", 400)
RESTRICTED = ("PrivateLinkServiceAccessRestricted", 403)
NO_APPROVAL_RIGHT = ("LinkedAuthorizationFailed", 403)


def access(sub: str, rights: str | None) -> Access:
    """A caller who may build endpoints in `sub`, with `rights` (a role) on the service."""
    grants = [(NETWORK_CONTRIBUTOR, f"/subscriptions/{sub}/resourceGroups/rg")]
    if rights is not None:
        grants.append((rights, pls_id()))
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


def serve(world: World, **pls: Any) -> plsm.PrivateLinkService:
    """Provider, consumer networks in S1 (the provider's own), S2 and S3, and `pls1`."""
    world.provider()
    for sub in (S1, S2, S3):
        world.consumer(sub=sub, name="vc", prefix="10.9.0.0/16", subnet_prefix="10.9.1.0/24")
    return world.create_pls(**pls)


def connect(world: World, sub: str, who: Access, manual: bool) -> str:
    """An endpoint in `sub` asks for `pls1`, as the API would run it: its status."""
    ctx = replace(
        world.ctx,
        access=who,
        request_action="Microsoft.Network/privateEndpoints/write",
        request_scope=make_pe(pls_id(), sub=sub).id,
    )
    with world.repo.write() as uow:
        changes = pl.create_or_update_endpoint(uow, ctx, make_pe(pls_id(), sub=sub, manual=manual))
        check_links(uow, ctx, changes)
        uow.apply(changes)
    return world.pe(sub=sub).connection.status


# (visibility, accessMode, autoApproval, caller's subscription, rights on the service,
#  manual request, what happens)
CASES: list[tuple[tuple[str, ...], str, tuple[str, ...], str, str | None, bool, Any]] = [
    # Default: the list, '*', and RBAC holders.
    ((S2,), D, (), S2, None, True, "Pending"),
    ((S2,), D, (), S3, None, True, NOT_FOUND),
    ((S2,), D, (), S3, READER, True, "Pending"),
    (("*",), D, (), S3, None, True, "Pending"),
    ((), D, (), S2, APPROVER, False, "Approved"),
    ((), D, (), S2, None, True, NOT_FOUND),
    # Restricted: the subscriptions the list names, nobody else.
    ((S2,), R, (), S2, None, True, "Pending"),
    ((S2,), R, (S2,), S2, None, False, "Approved"),  # auto-approval works as before
    ((S2,), R, (), S2, APPROVER, False, "Approved"),  # and so does the approval right
    ((S2,), R, (), S2, READER, False, NO_APPROVAL_RIGHT),  # admitted, not approved
    ((S2,), R, (), S3, None, True, NOT_FOUND),
    ((S2,), R, (), S3, READER, True, RESTRICTED),
    ((S2,), R, (), S3, APPROVER, False, RESTRICTED),
    ((), R, (), S2, APPROVER, False, RESTRICTED),
    ((), R, (), S2, None, True, NOT_FOUND),
    ((S2,), R, (), S1, READER, True, RESTRICTED),  # the provider's own subscription too
    ((S1, S2), R, (), S1, READER, True, "Pending"),
]


@pytest.mark.parametrize(("visibility", "mode", "auto", "sub", "rights", "manual", "want"), CASES)
def test_who_may_connect(
    world: World,
    visibility: tuple[str, ...],
    mode: str,
    auto: tuple[str, ...],
    sub: str,
    rights: str | None,
    manual: bool,
    want: Any,
) -> None:
    service = serve(world, visibility=visibility, auto_approval=auto)
    service = world.update_pls(access_mode=mode)
    assert service.access_mode == mode
    who = access(sub, rights)
    with world.repo.read() as view:
        visible = plsm.check_visibility(view, sub, service.alias, who)
    if isinstance(want, str):
        assert connect(world, sub, who, manual) == want
        assert visible
        return
    code, status = want
    before = world.snapshot()
    with pytest.raises(errors.ArmError) as info:
        connect(world, sub, who, manual)
    assert (info.value.code, info.value.status) == (code, status), info.value.message
    assert world.snapshot() == before
    # checkPrivateLinkServiceVisibility: false exactly for those not admitted.
    assert visible is (code == NO_APPROVAL_RIGHT[0])
    if code == RESTRICTED[0]:
        assert sub in info.value.message and service.id in info.value.message


@pytest.mark.parametrize(
    ("visibility", "mode", "sub", "visible"),
    [
        # Authorization off: the service's own subscription stands in for RBAC holders.
        ((S2,), D, S1, True),
        ((S2,), R, S1, False),
        ((S2,), R, S2, True),
        ((), R, S1, False),
    ],
)
def test_authorization_off(visibility: tuple[str, ...], mode: str, sub: str, visible: bool) -> None:
    service = replace(make_pls(visibility=visibility), access_mode=mode)
    assert plsm.is_visible(service, sub, ALLOW_ALL) is visible


def test_authorization_off_tells_the_provider_why(world: World) -> None:
    serve(world, visibility=(S2,))
    world.update_pls(access_mode=R)
    with pytest.raises(errors.PrivateLinkServiceAccessRestricted):
        connect(world, S1, ALLOW_ALL, True)
    with pytest.raises(errors.PrivateLinkServiceNotFound):
        connect(world, S3, ALLOW_ALL, True)


def test_a_document_from_before_access_mode_is_default() -> None:
    service = make_pls(visibility=())  # access_mode "" as decoded from an old document
    assert service.access_mode == ""
    assert not service.restricted
    assert plsm.is_visible(service, S1, ALLOW_ALL)


# --- the field ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [("", D), ("Default", D), ("DEFAULT", D), ("restricted", R), ("Restricted", R)],
)
def test_access_mode_is_matched_case_insensitively(world: World, given: str, stored: str) -> None:
    service = serve(world, visibility=(S2,))
    assert service.access_mode == D  # a new service is Default
    assert world.update_pls(access_mode=given).access_mode == stored


@pytest.mark.parametrize("given", ["Private", " ", "Restricted ", "None", "x" * 300])
def test_other_access_modes_are_refused(world: World, given: str) -> None:
    serve(world, visibility=(S2,))
    exc = world.refuse(
        errors.InvalidAccessMode,
        "InvalidPrivateLinkServiceAccessMode",
        400,
        pl.create_or_update_service,
        replace(world.pls(), access_mode=given),
    )
    assert len(exc.message) < 300


def test_a_put_without_access_mode_keeps_it(world: World) -> None:
    serve(world, visibility=(S2,))
    world.update_pls(access_mode=R)
    # Older api-versions have no accessMode: a rewrite of the service without it keeps it.
    assert world.update_pls(access_mode="", fqdns=("a.example",)).access_mode == R
    assert world.update_pls(access_mode="default").access_mode == D


def test_restricted_refuses_everyone_in_visibility(world: World) -> None:
    serve(world, visibility=("*",))
    code = "PrivateLinkServiceRestrictedAccessModeRequiresSubscriptionList"
    world.refuse(
        errors.RestrictedAccessModeWithEveryone,
        code,
        400,
        pl.create_or_update_service,
        replace(world.pls(), access_mode=R),
    )
    world.refuse(
        errors.RestrictedAccessModeWithEveryone,
        code,
        400,
        pl.create_or_update_service,
        replace(world.pls(), access_mode=R, visibility=(S2, " * ")),
    )
    # Kept from the stored Restricted service, the mode still forbids a '*'.
    world.update_pls(visibility=(S2,), access_mode=R)
    world.refuse(
        errors.RestrictedAccessModeWithEveryone,
        code,
        400,
        pl.create_or_update_service,
        replace(world.pls(), access_mode="", visibility=("*",)),
    )


def test_auto_approval_stays_a_subset_of_visibility(world: World) -> None:
    serve(world, visibility=(S2,))
    world.refuse(
        errors.AutoApprovalNotSubsetOfVisibility,
        "AutoApprovalSubscriptionsNotInVisibility",
        400,
        pl.create_or_update_service,
        replace(world.pls(), access_mode=R, auto_approval=(S3,)),
    )


def test_existing_connections_survive_a_switch_to_restricted(world: World) -> None:
    serve(world, visibility=("*",))
    assert connect(world, S3, access(S3, None), True) == "Pending"
    world.update_pls(visibility=(S2,), access_mode=R)
    assert [c.status for c in world.connections()] == ["Pending"]
    # ... and the provider still decides on them.
    world.decide(world.pe(sub=S3), "Approved")
    assert world.pe(sub=S3).connection.status == "Approved"
    # A new endpoint from the same subscription is refused.
    ctx = replace(world.ctx, access=access(S3, None))
    with pytest.raises(errors.PrivateLinkServiceNotFound), world.repo.write() as uow:
        pl.create_or_update_endpoint(uow, ctx, make_pe(pls_id(), name="pe2", sub=S3, manual=True))
