"""The RBAC store on SQLite and PostgreSQL: assignments, custom roles, the Access cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from privatelink.core import authorization as rbac
from privatelink.core.authorization import (
    CONTRIBUTOR,
    CUSTOM,
    OWNER,
    READER,
    Permission,
    RoleAssignment,
    RoleDefinition,
)
from privatelink.core.errors import ArmError
from privatelink.core.principal import Principal
from privatelink.store import rbac as store_module
from privatelink.store.rbac import SqlRbacStore

TENANT = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER_TENANT = "aaaaaaaa-0000-4000-8000-000000000002"
SUB = "11111111-1111-4111-8111-111111111111"
S = f"/subscriptions/{SUB}"
RG1 = f"{S}/resourceGroups/rg1"
RG10 = f"{S}/resourceGroups/rg10"
PLS = f"{RG1}/providers/Microsoft.Network/privateLinkServices/pls1"
P1 = "33333333-3333-4333-8333-333333333331"
P2 = "33333333-3333-4333-8333-333333333332"
NET_WRITE = "Microsoft.Network/privateLinkServices/write"
NET_READ = "Microsoft.Network/privateLinkServices/read"
ROLE_ID = "66666666-6666-4666-8666-666666666666"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlRbacStore]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'rbac.db'}")
    else:
        engine = create_engine(request.getfixturevalue("postgres_url"))
        store_module.metadata.drop_all(engine)  # a clean slate per test
    try:
        yield SqlRbacStore(engine)
    finally:
        if request.param == "postgres":
            store_module.metadata.drop_all(engine)
        engine.dispose()


_n = 0


def assignment(
    scope: str, role: str = READER.id, principal: str = P1, name: str | None = None
) -> RoleAssignment:
    global _n
    _n += 1
    return RoleAssignment(
        name=name or f"00000000-0000-4000-8000-{_n:012d}",
        scope=scope,
        role_definition_id=role,
        principal_id=principal,
        principal_type="ServicePrincipal",
        created_by=P2,
    )


def custom(
    name: str = "Network Operator",
    scopes: tuple[str, ...] = (S,),
    actions: tuple[str, ...] = ("Microsoft.Network/*/read",),
    guid: str = ROLE_ID,
) -> RoleDefinition:
    return RoleDefinition(
        id=guid,
        role_name=name,
        description="Reads networks.",
        role_type=CUSTOM,
        permissions=(Permission(actions=actions, not_actions=("*/delete",)),),
        assignable_scopes=scopes,
    )


# --- assignments ---------------------------------------------------------------------------


def test_create_get_delete_assignment(store: SqlRbacStore) -> None:
    a = assignment(RG1, name="ABCDEF00-0000-4000-8000-000000000001")
    saved, created = store.create_assignment(a, TENANT)
    assert created
    assert saved.name == a.name.lower()
    assert saved.created_on.endswith("Z") and saved.updated_on == saved.created_on
    assert saved.created_by == P2 and saved.updated_by == P2
    assert store.get_assignment(a.name.upper()) == saved
    assert store.get_assignment(a.name, tenant_id=OTHER_TENANT) is None
    assert store.get_assignment("not-a-guid") is None
    assert store.delete_assignment(a.name, scope=RG10) is None  # wrong scope
    assert store.delete_assignment(a.name, tenant_id=OTHER_TENANT) is None
    assert store.delete_assignment(a.name, scope=RG1.upper() + "/") == saved
    assert store.get_assignment(a.name) is None
    assert store.delete_assignment(a.name) is None
    assert store.delete_assignment("nope") is None


def test_put_of_an_existing_name_updates_only_the_description(store: SqlRbacStore) -> None:
    a = assignment(RG1)
    first, _ = store.create_assignment(a, TENANT)
    again, created = store.create_assignment(
        RoleAssignment(**{**a.__dict__, "description": "on call"}), TENANT
    )
    assert not created
    assert again.description == "on call" and again.created_on == first.created_on
    assert store.get_assignment(a.name) == again
    for change in ({"role_definition_id": CONTRIBUTOR.id}, {"principal_id": P2}, {"scope": RG10}):
        with pytest.raises(rbac.RoleAssignmentUpdateNotPermitted):
            store.create_assignment(RoleAssignment(**{**a.__dict__, **change}), TENANT)
    with pytest.raises(ArmError) as info:
        store.create_assignment(a, OTHER_TENANT)
    assert info.value.status == 409


def test_duplicate_role_principal_scope_is_role_assignment_exists(store: SqlRbacStore) -> None:
    first, _ = store.create_assignment(assignment(RG1), TENANT)
    with pytest.raises(rbac.RoleAssignmentExists) as info:
        store.create_assignment(assignment(RG1.lower()), TENANT)
    assert info.value.status == 409
    assert first.name.replace("-", "") in info.value.message
    assert "The role assignment already exists." in info.value.message
    # Same role and principal elsewhere, or another role at the same scope: fine.
    store.create_assignment(assignment(RG10), TENANT)
    store.create_assignment(assignment(RG1, role=CONTRIBUTOR.id), TENANT)
    store.create_assignment(assignment(RG1, principal=P2), TENANT)


def test_unknown_or_unassignable_role_is_refused(store: SqlRbacStore) -> None:
    with pytest.raises(rbac.RoleDefinitionDoesNotExist) as info:
        store.create_assignment(assignment(RG1, role=ROLE_ID), TENANT)
    assert info.value.status == 400
    store.put_definition(custom(scopes=(RG1,)), TENANT)
    store.create_assignment(assignment(PLS, role=ROLE_ID), TENANT)
    with pytest.raises(rbac.RoleNotAssignableAtScope):
        store.create_assignment(assignment(RG10, role=ROLE_ID), TENANT)
    with pytest.raises(rbac.RoleDefinitionDoesNotExist):  # another directory's custom role
        store.create_assignment(assignment(RG1, role=ROLE_ID, principal=P2), OTHER_TENANT)


def test_assignments_at_above_and_below(store: SqlRbacStore) -> None:
    at_sub, _ = store.create_assignment(assignment(S), TENANT)
    at_rg1, _ = store.create_assignment(assignment(RG1), TENANT)
    at_rg10, _ = store.create_assignment(assignment(RG10), TENANT)
    at_pls, _ = store.create_assignment(assignment(PLS, principal=P2), TENANT)
    at_root, _ = store.create_assignment(assignment("/"), TENANT)
    elsewhere, _ = store.create_assignment(assignment("/", principal=P2), OTHER_TENANT)

    def names(found: list[RoleAssignment]) -> set[str]:
        return {a.name for a in found}

    assert names(store.assignments_at(RG1, include_above=False)) == {at_rg1.name}
    assert names(store.assignments_at(RG1)) == {
        at_root.name,
        elsewhere.name,
        at_sub.name,
        at_rg1.name,
    }
    assert names(store.assignments_at(RG1, tenant_id=TENANT)) == {
        at_root.name,
        at_sub.name,
        at_rg1.name,
    }
    assert names(store.assignments_at(RG1, include_below=True, tenant_id=TENANT)) == {
        at_root.name,
        at_sub.name,
        at_rg1.name,
        at_pls.name,
    }
    assert names(store.assignments_at(S, include_above=False, include_below=True)) == {
        at_sub.name,
        at_rg1.name,
        at_rg10.name,
        at_pls.name,
    }
    assert names(store.assignments_at(PLS.upper(), principal_id=P2.upper())) == {
        at_pls.name,
        elsewhere.name,
    }
    found = store.assignments_at(PLS, principal_id=P2, tenant_id=TENANT)
    assert names(found) == {at_pls.name}
    assert names(store.assignments_at("/", include_below=True, tenant_id=OTHER_TENANT)) == {
        elsewhere.name
    }
    assert len(store.assignments_at("/", include_below=True)) == 6


def test_like_wildcards_in_scope_names_are_literal(store: SqlRbacStore) -> None:
    under = f"{S}/resourceGroups/a_b"
    store.create_assignment(assignment(f"{S}/resourceGroups/aXb/providers/N.S/t/n"), TENANT)
    store.create_assignment(assignment(f"{S}/resourceGroups/a%b/providers/N.S/t/n"), TENANT)
    assert store.assignments_at(under, include_above=False, include_below=True) == []
    pct = store.assignments_at(f"{S}/resourceGroups/a%b", include_above=False, include_below=True)
    assert len(pct) == 1


def test_lists_and_counts(store: SqlRbacStore) -> None:
    other = "22222222-2222-4222-8222-222222222222"
    one, _ = store.create_assignment(assignment(S, role=OWNER.id), TENANT)
    two, _ = store.create_assignment(assignment(RG1, principal=P2), TENANT)
    three, _ = store.create_assignment(assignment(f"/subscriptions/{other}"), TENANT)
    assert store.assignments_for(P1.upper()) == [one, three]
    assert store.assignments_for(P1, tenant_id=OTHER_TENANT) == []
    assert store.list_assignments(SUB.upper()) == [one, two]
    assert store.list_assignments(other) == [three]
    assert store.count_for_definition(READER.id) == 2
    assert store.count_for_definition(OWNER.id.upper()) == 1


# --- role definitions ----------------------------------------------------------------------


def test_custom_role_lifecycle(store: SqlRbacStore) -> None:
    saved, created = store.put_definition(custom(), TENANT, by=P1)
    assert created and saved.is_custom and saved.created_by == P1
    assert saved.permissions == custom().permissions
    assert store.get_definition(ROLE_ID.upper()) == saved
    assert store.get_definition(ROLE_ID, tenant_id=OTHER_TENANT) is None
    updated, created = store.put_definition(
        custom(name="Network Reader", actions=("*/read",)), TENANT, by=P2
    )
    assert not created
    assert updated.role_name == "Network Reader" and updated.created_on == saved.created_on
    assert updated.updated_by == P2 and updated.permissions[0].actions == ("*/read",)
    store.create_assignment(assignment(RG1, role=ROLE_ID), TENANT)
    with pytest.raises(rbac.RoleDefinitionHasAssignments):
        store.delete_definition(ROLE_ID, TENANT)
    for a in store.assignments_at(RG1):
        store.delete_assignment(a.name)
    assert store.delete_definition(ROLE_ID, OTHER_TENANT) is None
    assert store.delete_definition(ROLE_ID, TENANT) == updated
    assert store.get_definition(ROLE_ID) is None
    assert store.delete_definition(ROLE_ID, TENANT) is None
    assert store.delete_definition("nope") is None


def test_role_names_are_unique_per_directory(store: SqlRbacStore) -> None:
    store.put_definition(custom(), TENANT)
    with pytest.raises(rbac.RoleDefinitionWithSameNameExists) as info:
        store.put_definition(
            custom(name="network OPERATOR", guid="77777777-7777-4777-8777-777777777777"), TENANT
        )
    assert info.value.status == 409
    store.put_definition(  # another directory may use the name
        custom(guid="77777777-7777-4777-8777-777777777777"), OTHER_TENANT
    )
    with pytest.raises(rbac.RoleDefinitionWithSameNameExists):
        store.put_definition(
            custom(name="reader", guid="88888888-8888-4888-8888-888888888888"), TENANT
        )
    with pytest.raises(rbac.RoleDefinitionIdInUse):
        store.put_definition(custom(), OTHER_TENANT)


def test_built_in_roles_cannot_be_written(store: SqlRbacStore) -> None:
    with pytest.raises(rbac.CannotModifyBuiltInRole):
        store.put_definition(custom(guid=READER.id), TENANT)
    with pytest.raises(rbac.CannotModifyBuiltInRole):
        store.delete_definition(OWNER.id.upper(), TENANT)
    assert store.get_definition(OWNER.id) is OWNER


def test_list_definitions_by_scope(store: SqlRbacStore) -> None:
    at_rg = custom(name="At rg1", scopes=(RG1,))
    at_sub = custom(name="At sub", scopes=(S,), guid="77777777-7777-4777-8777-777777777777")
    store.put_definition(at_rg, TENANT)
    store.put_definition(at_sub, TENANT)
    store.put_definition(
        custom(name="Elsewhere", guid="88888888-8888-4888-8888-888888888888"), OTHER_TENANT
    )
    built_in = {r.role_name for r in rbac.BUILT_IN_ROLES.values()}

    def names(scope: str, below: bool = False) -> set[str]:
        found = store.list_definitions(scope, TENANT, include_below=below)
        return {d.role_name for d in found} - built_in

    assert names(PLS) == {"At rg1", "At sub"}
    assert names(RG1) == {"At rg1", "At sub"}
    assert names(RG10) == {"At sub"}
    assert names(S) == {"At sub"}
    assert names(S, below=True) == {"At rg1", "At sub"}
    assert names("/") == set()
    assert names("/", below=True) == {"At rg1", "At sub"}
    everyone = {d.role_name for d in store.list_definitions(S)} - built_in
    assert everyone == {"At sub", "Elsewhere"}
    assert [d.role_name for d in store.list_definitions(S)][:3] == [
        "Owner",
        "Contributor",
        "Reader",
    ]


# --- the Access cache ----------------------------------------------------------------------


def test_access_for_is_cached_until_a_write(store: SqlRbacStore) -> None:
    me = Principal(TENANT, P1.upper(), "client")
    first = store.access_for(me)
    assert not first.allows(NET_READ, PLS)
    assert store.access_for(me) is first
    store.create_assignment(assignment(RG1), TENANT)
    second = store.access_for(me)
    assert second is not first and second.allows(NET_READ, PLS)
    assert not second.allows(NET_READ, RG10)
    assert store.access_for(me) is second
    store.invalidate()
    assert store.access_for(me) is not second


def test_access_follows_custom_role_changes(store: SqlRbacStore) -> None:
    me = Principal(TENANT, P1, "client")
    store.put_definition(custom(actions=("Microsoft.Network/*/read",)), TENANT)
    store.create_assignment(assignment(S, role=ROLE_ID), TENANT)
    assert store.access_for(me).allows(NET_READ, PLS)
    assert not store.access_for(me).allows(NET_WRITE, PLS)
    store.put_definition(custom(actions=("Microsoft.Network/*",)), TENANT)
    assert store.access_for(me).allows(NET_WRITE, PLS)
    assert not store.access_for(me).allows("Microsoft.Network/privateLinkServices/delete", PLS)


def test_access_is_per_directory_and_principal(store: SqlRbacStore) -> None:
    store.create_assignment(assignment(S, role=OWNER.id), TENANT)
    assert store.access_for(Principal(TENANT, P1, "c")).allows(NET_WRITE, PLS)
    assert not store.access_for(Principal(OTHER_TENANT, P1, "c")).allows(NET_WRITE, PLS)
    assert not store.access_for(Principal(TENANT, P2, "c")).allows(NET_WRITE, PLS)


def test_deleting_an_assignment_revokes_at_once(store: SqlRbacStore) -> None:
    me = Principal(TENANT, P1, "client")
    a, _ = store.create_assignment(assignment(RG1, role=CONTRIBUTOR.id), TENANT)
    assert store.access_for(me).allows(NET_WRITE, PLS)
    generation = store.generation
    store.delete_assignment(a.name)
    assert store.generation > generation
    assert not store.access_for(me).allows(NET_WRITE, PLS)


def test_failed_write_still_invalidates(store: SqlRbacStore) -> None:
    generation = store.generation
    with pytest.raises(rbac.RoleDefinitionDoesNotExist):
        store.create_assignment(assignment(RG1, role=ROLE_ID), TENANT)
    assert store.generation > generation


def test_concurrent_duplicate_creates_make_one_assignment(store: SqlRbacStore) -> None:
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            store.create_assignment(assignment(RG1), TENANT)
            outcomes.append("created")
        except rbac.RoleAssignmentExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["created"] + ["exists"] * 5
    assert len(store.assignments_at(RG1, include_above=False)) == 1


def test_tables_are_created_once_and_reused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'rbac.db'}")
    SqlRbacStore(engine).create_assignment(assignment(RG1), TENANT)
    assert len(SqlRbacStore(engine).assignments_at(RG1)) == 1
    engine.dispose()
