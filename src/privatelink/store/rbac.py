"""Role assignments and custom role definitions (SQLAlchemy), and the per-principal `Access` cache.

Own tables in their own `MetaData` (created on construction), in the same database as
the resources:

- `role_assignments`: one row per assignment, keyed by its GUID name (unique across all
  scopes, as in Azure), with the scope as written and its lower-case key, the
  subscription it lies in ("" for the root) and the directory (tenant) it belongs to.
- `custom_role_definitions`: custom roles keyed by GUID, with a role name unique per
  tenant (Azure: per directory) and the permissions/assignable scopes as JSON. Built-in
  roles live in code (`core.authorization.BUILT_IN_ROLES`), never in the database.

The rules (who may be assigned what, where; what a PUT may change) are the core's; this
module applies them inside one write transaction. Writes are serialized by a process lock
and, on PostgreSQL, a transaction-level advisory lock.

`access_for(principal)` answers from an in-process cache of `Access` objects, one per
principal, stamped with a generation counter that every write of this store increments:
a cached entry from an older generation is rebuilt on next use. The counter lives in this
process only: several server processes sharing one PostgreSQL database would not see
each other's writes in their caches (out of scope: one server per database).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from privatelink.core import errors
from privatelink.core.authorization import (
    BUILT_IN_ROLES,
    CUSTOM,
    ROOT,
    Access,
    CannotModifyBuiltInRole,
    Permission,
    RoleAssignment,
    RoleAssignmentExists,
    RoleDefinition,
    RoleDefinitionDoesNotExist,
    RoleDefinitionHasAssignments,
    RoleDefinitionIdInUse,
    RoleDefinitionWithSameNameExists,
    ancestor_keys,
    check_assignable,
    definition_applies,
    scope_key,
    subscription_of,
    updated_assignment,
)
from privatelink.core.ids import is_guid
from privatelink.core.principal import Principal

metadata = MetaData()

role_assignments = Table(
    "role_assignments",
    metadata,
    Column("name", String(36), primary_key=True),  # GUID, lower-case
    Column("scope", String(1024), nullable=False),
    Column("scope_key", String(1024), nullable=False, index=True),
    Column("role_definition_id", String(36), nullable=False, index=True),
    Column("principal_id", String(36), nullable=False, index=True),
    Column("principal_type", String(32), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("subscription", String(64), nullable=False, index=True),  # lower-case, "" = root
    Column("created_on", String(40), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_on", String(40), nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("description", Text, nullable=True),
    Column("condition", Text, nullable=True),
    Column("condition_version", String(16), nullable=True),
    Index("ix_role_assignments_tuple", "principal_id", "role_definition_id", "scope_key"),
)

custom_role_definitions = Table(
    "custom_role_definitions",
    metadata,
    Column("id", String(36), primary_key=True),  # GUID, lower-case
    Column("role_name", String(512), nullable=False),
    Column("role_name_key", String(512), nullable=False),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("description", Text, nullable=False),
    Column("body", Text, nullable=False),  # {"permissions": [...], "assignableScopes": [...]}
    Column("created_on", String(40), nullable=False),
    Column("updated_on", String(40), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_by", String(64), nullable=False),
    UniqueConstraint("tenant_id", "role_name_key", name="uq_custom_role_name_per_tenant"),
)

_ADVISORY_LOCK = 0x72626163  # "rbac"
_CACHE_LIMIT = 10_000


def now() -> str:
    """Azure's timestamp form: `2019-06-21T18:44:15.650975Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _assignment(row: Row[Any]) -> RoleAssignment:
    return RoleAssignment(
        name=row.name,
        scope=row.scope,
        role_definition_id=row.role_definition_id,
        principal_id=row.principal_id,
        principal_type=row.principal_type,
        created_on=row.created_on,
        created_by=row.created_by,
        description=row.description,
        condition=row.condition,
        condition_version=row.condition_version,
        updated_on=row.updated_on,
        updated_by=row.updated_by,
    )


def _permissions_json(permissions: tuple[Permission, ...]) -> list[dict[str, list[str]]]:
    return [
        {
            "actions": list(p.actions),
            "notActions": list(p.not_actions),
            "dataActions": list(p.data_actions),
            "notDataActions": list(p.not_data_actions),
        }
        for p in permissions
    ]


def _definition(row: Row[Any]) -> RoleDefinition:
    body = json.loads(row.body)
    return RoleDefinition(
        id=row.id,
        role_name=row.role_name,
        description=row.description,
        role_type=CUSTOM,
        permissions=tuple(
            Permission(
                actions=tuple(p.get("actions", ())),
                not_actions=tuple(p.get("notActions", ())),
                data_actions=tuple(p.get("dataActions", ())),
                not_data_actions=tuple(p.get("notDataActions", ())),
            )
            for p in body.get("permissions", ())
        ),
        assignable_scopes=tuple(body.get("assignableScopes", ())),
        created_on=row.created_on,
        updated_on=row.updated_on,
        created_by=row.created_by,
        updated_by=row.updated_by,
    )


class SqlRbacStore:
    """Role assignments and custom roles on an engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)
        self._lock = threading.Lock()
        self._generation = 0
        self._cache: dict[tuple[str, str], tuple[int, Access]] = {}

    # --- plumbing --------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    if self.engine.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
                    yield conn
            except IntegrityError as exc:
                raise errors.Conflict(
                    "The write conflicted with concurrent changes; retry the request."
                ) from exc
            finally:
                # Every write attempt invalidates: cheap, and never serves a stale grant.
                self._generation += 1

    def invalidate(self) -> None:
        """Drop every cached `Access` (e.g. after a principal was deleted elsewhere)."""
        with self._lock:
            self._generation += 1

    @property
    def generation(self) -> int:
        """Incremented by every write; cached `Access` objects of older ones are stale."""
        return self._generation

    # --- role assignments ------------------------------------------------------------

    def create_assignment(
        self, assignment: RoleAssignment, tenant_id: str
    ) -> tuple[RoleAssignment, bool]:
        """Create an assignment, or apply a PUT to an existing name: (result, created).

        Refuses an unknown role (`RoleDefinitionDoesNotExist`), a scope outside the role's
        assignable scopes, a second assignment of the same role to the same principal at
        the same scope (`RoleAssignmentExists`) and a PUT that would change an existing
        assignment's role, principal or scope (`RoleAssignmentUpdateNotPermitted`).
        """
        stamp = now()
        wanted = replace(
            assignment,
            name=assignment.name.lower(),
            role_definition_id=assignment.role_definition_id.lower(),
            principal_id=assignment.principal_id.lower(),
            created_on=assignment.created_on or stamp,
            updated_on=assignment.updated_on or stamp,
            updated_by=assignment.updated_by or assignment.created_by,
        )
        k = scope_key(wanted.scope)
        with self._write() as conn:
            definition = self._definition(conn, wanted.role_definition_id, tenant_id)
            if definition is None:
                raise RoleDefinitionDoesNotExist(id=wanted.role_definition_id)
            check_assignable(definition, wanted.scope)
            row = conn.execute(
                select(role_assignments).where(role_assignments.c.name == wanted.name)
            ).first()
            if row is not None:
                if row.tenant_id != tenant_id:
                    raise errors.Conflict(
                        f"The role assignment name '{wanted.name}' is used in another directory."
                    )
                result = updated_assignment(_assignment(row), wanted)
                conn.execute(
                    update(role_assignments)
                    .where(role_assignments.c.name == wanted.name)
                    .values(
                        description=result.description,
                        condition=result.condition,
                        condition_version=result.condition_version,
                        updated_on=result.updated_on,
                        updated_by=result.updated_by,
                    )
                )
                return result, False
            duplicate = conn.execute(
                select(role_assignments.c.name).where(
                    and_(
                        role_assignments.c.principal_id == wanted.principal_id,
                        role_assignments.c.role_definition_id == wanted.role_definition_id,
                        role_assignments.c.scope_key == k,
                        role_assignments.c.tenant_id == tenant_id,
                    )
                )
            ).first()
            if duplicate is not None:
                raise RoleAssignmentExists(id=duplicate.name.replace("-", ""))
            conn.execute(
                insert(role_assignments).values(
                    name=wanted.name,
                    scope=wanted.scope,
                    scope_key=k,
                    role_definition_id=wanted.role_definition_id,
                    principal_id=wanted.principal_id,
                    principal_type=wanted.principal_type,
                    tenant_id=tenant_id,
                    subscription=subscription_of(wanted.scope).lower(),
                    created_on=wanted.created_on,
                    created_by=wanted.created_by,
                    updated_on=wanted.updated_on,
                    updated_by=wanted.updated_by,
                    description=wanted.description,
                    condition=wanted.condition,
                    condition_version=wanted.condition_version,
                )
            )
            return wanted, True

    def get_assignment(self, name: str, tenant_id: str | None = None) -> RoleAssignment | None:
        """The assignment with this GUID name, or None (also for a non-GUID name)."""
        if not is_guid(name):
            return None
        cond = [role_assignments.c.name == name.lower()]
        if tenant_id is not None:
            cond.append(role_assignments.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(role_assignments).where(and_(*cond))).first()
        return _assignment(row) if row else None

    def delete_assignment(
        self, name: str, scope: str | None = None, tenant_id: str | None = None
    ) -> RoleAssignment | None:
        """Delete an assignment by name (at `scope`, when given); the deleted one or None."""
        if not is_guid(name):
            return None
        cond = [role_assignments.c.name == name.lower()]
        if scope is not None:
            cond.append(role_assignments.c.scope_key == scope_key(scope))
        if tenant_id is not None:
            cond.append(role_assignments.c.tenant_id == tenant_id)
        with self._write() as conn:
            row = conn.execute(select(role_assignments).where(and_(*cond))).first()
            if row is None:
                return None
            conn.execute(delete(role_assignments).where(role_assignments.c.name == row.name))
            return _assignment(row)

    def assignments_at(
        self,
        scope: str,
        include_above: bool = True,
        include_below: bool = False,
        *,
        principal_id: str | None = None,
        tenant_id: str | None = None,
    ) -> list[RoleAssignment]:
        """Assignments at `scope`, optionally those above it and/or below it.

        `principal_id` keeps one principal's; `tenant_id` one directory's (root-scope
        assignments exist per directory). Ordered by creation time, then name.
        """
        k = scope_key(scope)
        wanted = [role_assignments.c.scope_key == k]
        if include_above:
            above = [a for a in ancestor_keys(k) if a != k]
            if above:
                wanted.append(role_assignments.c.scope_key.in_(above))
        if include_below:
            if k == ROOT:
                wanted.append(role_assignments.c.scope_key != ROOT)
            else:
                wanted.append(role_assignments.c.scope_key.startswith(k + "/", autoescape=True))
        cond = [or_(*wanted)]
        if principal_id is not None:
            cond.append(role_assignments.c.principal_id == principal_id.lower())
        if tenant_id is not None:
            cond.append(role_assignments.c.tenant_id == tenant_id)
        return self._select(and_(*cond))

    def assignments_for(
        self, principal_id: str, tenant_id: str | None = None
    ) -> list[RoleAssignment]:
        """Every assignment of one principal, at any scope."""
        cond = [role_assignments.c.principal_id == principal_id.lower()]
        if tenant_id is not None:
            cond.append(role_assignments.c.tenant_id == tenant_id)
        return self._select(and_(*cond))

    def list_assignments(self, subscription: str) -> list[RoleAssignment]:
        """Every assignment at or below a subscription ("" lists the root's)."""
        return self._select(role_assignments.c.subscription == subscription.lower())

    def count_for_definition(self, guid: str) -> int:
        """How many assignments name a role definition."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(role_assignments)
                    .where(role_assignments.c.role_definition_id == guid.lower())
                ).scalar_one()
            )

    def _select(self, where: Any) -> list[RoleAssignment]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(role_assignments)
                .where(where)
                .order_by(role_assignments.c.created_on, role_assignments.c.name)
            ).all()
        return [_assignment(r) for r in rows]

    # --- role definitions ------------------------------------------------------------

    def put_definition(
        self, definition: RoleDefinition, tenant_id: str, by: str = ""
    ) -> tuple[RoleDefinition, bool]:
        """Create or update a custom role (validated by the core): (result, created).

        Refuses a built-in role's GUID (`CannotModifyBuiltInRole`), a role name already
        used by another role of the directory or by a built-in role
        (`RoleDefinitionWithSameNameExists`) and a GUID owned by another directory.
        """
        guid = definition.id.lower()
        builtin = BUILT_IN_ROLES.get(guid)
        if builtin is not None:
            raise CannotModifyBuiltInRole(name=builtin.role_name, id=guid)
        name_key = definition.role_name.strip().lower()
        if any(r.role_name.lower() == name_key for r in BUILT_IN_ROLES.values()):
            raise RoleDefinitionWithSameNameExists()
        stamp = now()
        body = json.dumps(
            {
                "permissions": _permissions_json(definition.permissions),
                "assignableScopes": list(definition.assignable_scopes),
            }
        )
        with self._write() as conn:
            current = conn.execute(
                select(custom_role_definitions).where(custom_role_definitions.c.id == guid)
            ).first()
            if current is not None and current.tenant_id != tenant_id:
                raise RoleDefinitionIdInUse(id=guid)
            clash = conn.execute(
                select(custom_role_definitions.c.id).where(
                    and_(
                        custom_role_definitions.c.tenant_id == tenant_id,
                        custom_role_definitions.c.role_name_key == name_key,
                        custom_role_definitions.c.id != guid,
                    )
                )
            ).first()
            if clash is not None:
                raise RoleDefinitionWithSameNameExists()
            values = {
                "role_name": definition.role_name.strip(),
                "role_name_key": name_key,
                "description": definition.description or "",
                "body": body,
                "updated_on": stamp,
                "updated_by": by,
            }
            if current is None:
                conn.execute(
                    insert(custom_role_definitions).values(
                        id=guid, tenant_id=tenant_id, created_on=stamp, created_by=by, **values
                    )
                )
            else:
                conn.execute(
                    update(custom_role_definitions)
                    .where(custom_role_definitions.c.id == guid)
                    .values(**values)
                )
            row = conn.execute(
                select(custom_role_definitions).where(custom_role_definitions.c.id == guid)
            ).one()
            return _definition(row), current is None

    def get_definition(self, guid: str, tenant_id: str | None = None) -> RoleDefinition | None:
        """A role by GUID: a built-in one, else a custom one (of `tenant_id`, when given)."""
        builtin = BUILT_IN_ROLES.get(guid.lower())
        if builtin is not None:
            return builtin
        with self.engine.connect() as conn:
            return self._definition(conn, guid, tenant_id)

    def _definition(
        self, conn: Connection, guid: str, tenant_id: str | None
    ) -> RoleDefinition | None:
        builtin = BUILT_IN_ROLES.get(guid.lower())
        if builtin is not None:
            return builtin
        if not is_guid(guid):
            return None
        cond = [custom_role_definitions.c.id == guid.lower()]
        if tenant_id is not None:
            cond.append(custom_role_definitions.c.tenant_id == tenant_id)
        row = conn.execute(select(custom_role_definitions).where(and_(*cond))).first()
        return _definition(row) if row else None

    def list_definitions(
        self, scope: str, tenant_id: str | None = None, *, include_below: bool = False
    ) -> list[RoleDefinition]:
        """Built-in roles, then the custom roles assignable at `scope` (at or above it).

        `include_below` (Azure's `atScopeAndBelow()`) adds custom roles assignable only
        below the scope.
        """
        found = list(BUILT_IN_ROLES.values())
        cond = []
        if tenant_id is not None:
            cond.append(custom_role_definitions.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(custom_role_definitions)
                .where(and_(true(), *cond))
                .order_by(custom_role_definitions.c.role_name_key)
            ).all()
        for row in rows:
            definition = _definition(row)
            if definition_applies(definition, scope, include_below=include_below):
                found.append(definition)
        return found

    def delete_definition(self, guid: str, tenant_id: str | None = None) -> RoleDefinition | None:
        """Delete a custom role; the deleted one, or None when there is none.

        Refuses built-in roles and roles that are still assigned
        (`RoleDefinitionHasAssignments`).
        """
        builtin = BUILT_IN_ROLES.get(guid.lower())
        if builtin is not None:
            raise CannotModifyBuiltInRole(name=builtin.role_name, id=builtin.id)
        if not is_guid(guid):
            return None
        with self._write() as conn:
            current = self._definition(conn, guid, tenant_id)
            if current is None:
                return None
            used = conn.execute(
                select(func.count())
                .select_from(role_assignments)
                .where(role_assignments.c.role_definition_id == guid.lower())
            ).scalar_one()
            if used:
                raise RoleDefinitionHasAssignments()
            conn.execute(
                delete(custom_role_definitions).where(custom_role_definitions.c.id == guid.lower())
            )
            return current

    # --- evaluation ------------------------------------------------------------------

    def access_for(self, principal: Principal) -> Access:
        """The principal's effective permissions (its own assignments in its directory).

        Cached per principal until the next write of this store.
        """
        key = (principal.tenant_id.lower(), principal.object_id.lower())
        generation = self._generation
        cached = self._cache.get(key)
        if cached is not None and cached[0] == generation and cached[1].principal == principal:
            return cached[1]
        assignments = self.assignments_for(principal.object_id, tenant_id=principal.tenant_id)
        definitions: dict[str, RoleDefinition] = dict(BUILT_IN_ROLES)
        custom_ids = {a.role_definition_id for a in assignments} - definitions.keys()
        if custom_ids:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(custom_role_definitions).where(
                        custom_role_definitions.c.id.in_(sorted(custom_ids))
                    )
                ).all()
            definitions.update({row.id: _definition(row) for row in rows})
        access = Access(principal, assignments, definitions)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        # Stamped with the generation read before loading: a write that raced the load
        # makes this entry stale at once.
        self._cache[key] = (generation, access)
        return access
