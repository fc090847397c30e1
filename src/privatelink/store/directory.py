"""The directory: tenants, applications, service principals, users and their passwords.

This is the local stand-in for Microsoft Entra ID's directory, in the same database as
the resources (its own tables and `MetaData`, created on first use). Secrets are never
stored: a password credential keeps a SHA-256 digest of its secret (secrets are random
and long, so a slow KDF would add nothing) and a three-character hint, as Graph shows.
A user's password, which a person chose and may be weak, is kept as a scrypt hash
(random salt; salt, parameters and hash in one string).

Users sign in as `<name>@<tenant name>` (`user_principal_name`), matched without regard
to case across all tenants (tenant names are unique without regard to case).

Identity is case-insensitive for GUIDs: every id is stored lower-case.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import hmac
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from privatelink.core.ids import new_guid

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("default_domain", String(300), nullable=False),
    Column("admin_object_id", String(64), nullable=False),
    Column("admin_app_id", String(64), nullable=False),
    Column("created", String(40), nullable=False),
    Column("seq", Integer, nullable=False),
)

applications = Table(
    "directory_applications",
    metadata,
    Column("object_id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("display_name", String(256), nullable=False),
    Column("display_name_key", String(256), nullable=False),
    Column("created", String(40), nullable=False),
    Column("seq", Integer, nullable=False),
    Index("ix_directory_applications_name", "tenant_id", "display_name_key"),
)

service_principals = Table(
    "directory_service_principals",
    metadata,
    Column("object_id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("display_name_key", String(256), nullable=False),
    Column("app_object_id", String(64), nullable=False),
    Column("created", String(40), nullable=False),
    Column("seq", Integer, nullable=False),
    Index("ux_directory_sp_app", "tenant_id", "app_id", unique=True),
    Index("ix_directory_sp_name", "tenant_id", "display_name_key"),
)

passwords = Table(
    "directory_passwords",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("app_object_id", String(64), nullable=False, index=True),
    Column("display_name", String(256), nullable=False),
    Column("hint", String(8), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("start", String(40), nullable=False),
    Column("end", String(40), nullable=False),
)

users = Table(
    "directory_users",
    metadata,
    Column("object_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("user_principal_name", String(330), nullable=False),
    # Sign-in names match without regard to case; tenant names are unique that way too.
    Column("upn_key", String(330), nullable=False, unique=True),
    Column("display_name", String(256), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("created", String(40), nullable=False),
    Column("seq", Integer, nullable=False),
)

_seq = Table(
    "directory_seq",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)

#: How long a password credential is valid when the caller does not say (Graph: 2 years).
DEFAULT_PASSWORD_YEARS = 2

#: A user name (the part of the sign-in name before `@`).
USER_NAME = re.compile(r"(?![.])[A-Za-z0-9._-]{1,64}(?<![.])")
#: A user's password: Entra ID's length bounds (8-256), no complexity rule.
MIN_USER_PASSWORD = 8
MAX_USER_PASSWORD = 256
#: scrypt's cost: n = 2**15, r = 8, p = 1 takes 32 MiB and about 0.1 s a check.
_SCRYPT_LOG_N = 15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_SALT_BYTES = 16
_SCRYPT_LENGTH = 32


class DirectoryError(Exception):
    """A directory rule was broken; `code` names it (the edges map codes to their errors)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Tenant:
    """A directory (Entra ID tenant) and its admin service principal."""

    tenant_id: str
    name: str
    display_name: str
    default_domain: str
    admin_object_id: str
    admin_app_id: str
    created: str


@dataclass(frozen=True)
class PasswordCredential:
    """A client secret of an application (the secret itself is not kept)."""

    key_id: str
    display_name: str
    hint: str
    start: str
    end: str


@dataclass(frozen=True)
class Application:
    """An app registration: the application (client) id and its secrets."""

    object_id: str
    app_id: str
    tenant_id: str
    display_name: str
    created: str
    password_credentials: tuple[PasswordCredential, ...] = ()


@dataclass(frozen=True)
class ServicePrincipal:
    """An application's identity in a tenant: its object id is the token's `oid`."""

    object_id: str
    app_id: str
    tenant_id: str
    display_name: str
    app_object_id: str
    created: str


@dataclass(frozen=True)
class User:
    """A person in a tenant: its object id is the token's `oid`, the sign-in name its `upn`."""

    tenant_id: str
    object_id: str
    user_principal_name: str
    display_name: str
    created: str


def new_secret() -> str:
    """A client secret: 40 url-safe characters, about the length of an Entra ID secret."""
    return secrets.token_urlsafe(30)


def now_iso() -> str:
    """Graph's timestamp form: `2026-12-06T11:04:16Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_user_password() -> str:
    """A generated user password: 24 url-safe characters (144 random bits)."""
    return secrets.token_urlsafe(18)


def check_user_name(name: Any) -> str:
    """`name` when it is a valid user name (the part before `@`), else DirectoryError."""
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        shown = repr(name)[:80]
        raise DirectoryError(
            "InvalidUserName",
            f"The user name {shown} is invalid: use 1-64 letters, digits, '.', '-' or '_', "
            "not starting or ending with '.' (the sign-in name is <name>@<tenant name>).",
        )
    return name


def check_new_user_password(password: Any) -> str:
    """`password` when it is acceptable for a user, else DirectoryError `InvalidPassword`."""
    if (
        not isinstance(password, str)
        or not MIN_USER_PASSWORD <= len(password) <= MAX_USER_PASSWORD
        or "\x00" in password
    ):
        raise DirectoryError(
            "InvalidPassword",
            f"A user's password must be {MIN_USER_PASSWORD}-{MAX_USER_PASSWORD} characters "
            "without NUL characters.",
        )
    return password


def check_user_display_name(display_name: Any) -> str:
    """`display_name` when it is 1-256 printable characters, else `InvalidDisplayName`."""
    if isinstance(display_name, str) and 0 < len(display_name.strip()) <= 256:
        try:
            display_name.encode("utf-8")  # no lone surrogates: the database cannot hold them
        except UnicodeEncodeError:
            pass
        else:
            if not any(ord(ch) < 32 or ord(ch) == 127 for ch in display_name):
                return display_name
    raise DirectoryError(
        "InvalidDisplayName",
        "A user's display name must be 1-256 characters without control characters.",
    )


def hash_user_password(password: str) -> str:
    """`scrypt$<log2 n>$<r>$<p>$<salt>$<hash>` (base64) of `password`, with a new salt."""
    salt = secrets.token_bytes(_SCRYPT_SALT_BYTES)
    return _hash_text(salt, _scrypt(password, salt, _SCRYPT_LOG_N, _SCRYPT_R, _SCRYPT_P))


def _hash_text(salt: bytes, digest: bytes) -> str:
    params = (str(_SCRYPT_LOG_N), str(_SCRYPT_R), str(_SCRYPT_P))
    encoded = (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    return "$".join(("scrypt", *params, *encoded))


def verify_user_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_user_password` string (constant-time compare)."""
    try:
        scheme, log_n, r, p, salt, digest = stored.split("$")
        params = int(log_n), int(r), int(p)
        expected = base64.b64decode(digest, validate=True)
        salt_bytes = base64.b64decode(salt, validate=True)
    except (ValueError, binascii.Error):
        return False
    # Bounds keep a damaged row from asking for gigabytes of memory.
    if scheme != "scrypt" or not (10 <= params[0] <= 20 and 1 <= params[1] <= 32):
        return False
    if not 1 <= params[2] <= 16:
        return False
    actual = _scrypt(password, salt_bytes, *params)
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    kdf = Scrypt(salt=salt, length=_SCRYPT_LENGTH, n=2**log_n, r=r, p=p)
    # surrogatepass: a lone surrogate (JSON allows "\\ud800") is hashed, not a crash.
    return kdf.derive(password.encode("utf-8", "surrogatepass"))


def _canon(guid: str) -> str:
    """Lower-case canonical GUID text, or the input lower-cased when it is not a GUID."""
    try:
        return str(uuid.UUID(guid))
    except (ValueError, AttributeError, TypeError):
        return str(guid).lower()


class SqlDirectory:
    """Tenants, applications and service principals on a SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)
        self._lock = threading.Lock()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock, self.engine.begin() as conn:
            try:
                yield conn
            except IntegrityError as exc:
                raise DirectoryError(
                    "Conflict", "The directory changed concurrently; retry the request."
                ) from exc

    @staticmethod
    def _next(conn: Connection) -> int:
        row = conn.execute(select(_seq.c.value).where(_seq.c.name == "seq")).first()
        value = (row.value if row else 0) + 1
        if row:
            conn.execute(update(_seq).where(_seq.c.name == "seq").values(value=value))
        else:
            conn.execute(insert(_seq).values(name="seq", value=value))
        return value

    # --- tenants -------------------------------------------------------------------

    def create_tenant(
        self,
        name: str,
        *,
        tenant_id: str | None = None,
        admin_display_name: str | None = None,
        admin_app_id: str | None = None,
        admin_object_id: str | None = None,
        admin_secret: str | None = None,
    ) -> tuple[Tenant, ServicePrincipal, str]:
        """Create a tenant with its admin (application, service principal, one secret).

        Returns the tenant, the admin service principal and the admin's secret (the only
        time it is seen). Raises `DirectoryError("TenantExists")` for a taken name.
        """
        tid = _canon(tenant_id or new_guid())
        created = now_iso()
        secret = admin_secret or new_secret()
        with self._write() as conn:
            taken = conn.execute(
                select(tenants.c.tenant_id).where(
                    (tenants.c.name_key == name.lower()) | (tenants.c.tenant_id == tid)
                )
            ).first()
            if taken:
                raise DirectoryError("TenantExists", f"A tenant named '{name}' already exists.")
            app = self._insert_application(
                conn, tid, admin_display_name or f"{name} admin", admin_app_id, None
            )
            sp = self._insert_service_principal(conn, tid, app, admin_object_id)
            self._insert_password(conn, app.object_id, "admin", secret, None)
            conn.execute(
                insert(tenants).values(
                    tenant_id=tid,
                    name=name,
                    name_key=name.lower(),
                    display_name=name,
                    default_domain=f"{name.lower()}.privatelink.local",
                    admin_object_id=sp.object_id,
                    admin_app_id=app.app_id,
                    created=created,
                    seq=self._next(conn),
                )
            )
        tenant = self.get_tenant(tid)
        assert tenant is not None
        return tenant, sp, secret

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id (case-insensitive)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(tenants).where(tenants.c.tenant_id == _canon(tenant_id)))
            found = row.first()
        return _tenant(found) if found else None

    def find_tenant(self, name_or_id: str) -> Tenant | None:
        """A tenant by name (case-insensitive) or id."""
        if "\x00" in name_or_id:
            return None  # no name holds one (and PostgreSQL text cannot)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(tenants).where(
                    (tenants.c.name_key == name_or_id.lower())
                    | (tenants.c.tenant_id == _canon(name_or_id))
                )
            ).first()
        return _tenant(row) if row else None

    def list_tenants(self) -> builtins.list[Tenant]:
        """Every tenant, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(tenants).order_by(tenants.c.seq)).all()
        return [_tenant(r) for r in rows]

    def is_admin(self, tenant_id: str, object_id: str) -> bool:
        """Whether `object_id` is the admin of `tenant_id`."""
        tenant = self.get_tenant(tenant_id)
        return tenant is not None and tenant.admin_object_id == _canon(object_id)

    # --- applications --------------------------------------------------------------

    def _insert_application(
        self,
        conn: Connection,
        tenant_id: str,
        display_name: str,
        app_id: str | None,
        object_id: str | None,
    ) -> Application:
        app = Application(
            object_id=_canon(object_id or new_guid()),
            app_id=_canon(app_id or new_guid()),
            tenant_id=_canon(tenant_id),
            display_name=display_name,
            created=now_iso(),
        )
        conn.execute(
            insert(applications).values(
                object_id=app.object_id,
                app_id=app.app_id,
                tenant_id=app.tenant_id,
                display_name=display_name,
                display_name_key=display_name.lower(),
                created=app.created,
                seq=self._next(conn),
            )
        )
        return app

    def create_application(
        self, tenant_id: str, display_name: str, *, app_id: str | None = None
    ) -> Application:
        """Register an application in a tenant."""
        with self._write() as conn:
            return self._insert_application(conn, tenant_id, display_name, app_id, None)

    def get_application(self, tenant_id: str, object_id: str) -> Application | None:
        """An application by its object id, within a tenant."""
        return next(iter(self.list_applications(tenant_id, object_id=object_id)), None)

    def application_by_app_id(self, tenant_id: str, app_id: str) -> Application | None:
        """An application by its application (client) id, within a tenant."""
        return next(iter(self.list_applications(tenant_id, app_id=app_id)), None)

    def list_applications(
        self,
        tenant_id: str,
        *,
        display_name: str | None = None,
        display_name_prefix: str | None = None,
        app_id: str | None = None,
        object_id: str | None = None,
    ) -> builtins.list[Application]:
        """A tenant's applications, oldest first, filtered as Graph's `$filter` forms ask."""
        cond = _where(applications, tenant_id, display_name, display_name_prefix, app_id, object_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(applications).where(and_(*cond)).order_by(applications.c.seq)
            ).all()
            creds = self._passwords(conn, [r.object_id for r in rows])
        return [
            Application(
                object_id=r.object_id,
                app_id=r.app_id,
                tenant_id=r.tenant_id,
                display_name=r.display_name,
                created=r.created,
                password_credentials=tuple(creds.get(r.object_id, ())),
            )
            for r in rows
        ]

    def update_application(self, tenant_id: str, object_id: str, display_name: str) -> None:
        """Rename an application (its service principal follows, as in Graph)."""
        with self._write() as conn:
            self._require_app(conn, tenant_id, object_id)
            conn.execute(
                update(applications)
                .where(applications.c.object_id == _canon(object_id))
                .values(display_name=display_name, display_name_key=display_name.lower())
            )
            conn.execute(
                update(service_principals)
                .where(service_principals.c.app_object_id == _canon(object_id))
                .values(display_name=display_name, display_name_key=display_name.lower())
            )

    def delete_application(self, tenant_id: str, object_id: str) -> bool:
        """Delete an application, its secrets and its service principal; False if absent."""
        with self._write() as conn:
            row = conn.execute(
                select(applications.c.object_id).where(
                    and_(
                        applications.c.object_id == _canon(object_id),
                        applications.c.tenant_id == _canon(tenant_id),
                    )
                )
            ).first()
            if row is None:
                return False
            self._refuse_admin(conn, tenant_id, app_object_id=row.object_id)
            conn.execute(delete(passwords).where(passwords.c.app_object_id == row.object_id))
            conn.execute(
                delete(service_principals).where(
                    service_principals.c.app_object_id == row.object_id
                )
            )
            conn.execute(delete(applications).where(applications.c.object_id == row.object_id))
            return True

    def _require_app(self, conn: Connection, tenant_id: str, object_id: str) -> str:
        row = conn.execute(
            select(applications.c.object_id).where(
                and_(
                    applications.c.object_id == _canon(object_id),
                    applications.c.tenant_id == _canon(tenant_id),
                )
            )
        ).first()
        if row is None:
            raise DirectoryError(
                "Request_ResourceNotFound",
                f"Resource '{object_id}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        return str(row.object_id)

    def _refuse_admin(
        self, conn: Connection, tenant_id: str, *, app_object_id: str = "", sp_object_id: str = ""
    ) -> None:
        row = conn.execute(
            select(tenants.c.admin_object_id, tenants.c.admin_app_id).where(
                tenants.c.tenant_id == _canon(tenant_id)
            )
        ).first()
        if row is None:
            return
        admin_app = conn.execute(
            select(applications.c.object_id).where(applications.c.app_id == row.admin_app_id)
        ).first()
        if sp_object_id == row.admin_object_id or (
            admin_app is not None and app_object_id == admin_app.object_id
        ):
            raise DirectoryError(
                "Authorization_RequestDenied",
                "The tenant's admin cannot be deleted; delete the tenant's other principals.",
            )

    # --- password credentials ------------------------------------------------------

    def _insert_password(
        self, conn: Connection, app_object_id: str, display_name: str, secret: str, end: str | None
    ) -> PasswordCredential:
        start = datetime.now(UTC)
        cred = PasswordCredential(
            key_id=new_guid(),
            display_name=display_name,
            hint=secret[:3],
            start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            end=end
            or (start + timedelta(days=365 * DEFAULT_PASSWORD_YEARS)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        )
        conn.execute(
            insert(passwords).values(
                key_id=cred.key_id,
                app_object_id=app_object_id,
                display_name=display_name,
                hint=cred.hint,
                secret_sha256=_digest(secret),
                start=cred.start,
                end=cred.end,
            )
        )
        return cred

    def add_password(
        self,
        tenant_id: str,
        app_object_id: str,
        display_name: str = "",
        end: str | None = None,
        secret: str | None = None,
    ) -> tuple[PasswordCredential, str]:
        """Add a secret to an application; returns the credential and the secret."""
        secret = secret or new_secret()
        with self._write() as conn:
            oid = self._require_app(conn, tenant_id, app_object_id)
            cred = self._insert_password(conn, oid, display_name, secret, end)
        return cred, secret

    def remove_password(self, tenant_id: str, app_object_id: str, key_id: str) -> bool:
        """Remove one secret; False when there was none with that key id."""
        with self._write() as conn:
            oid = self._require_app(conn, tenant_id, app_object_id)
            done = conn.execute(
                delete(passwords).where(
                    and_(passwords.c.app_object_id == oid, passwords.c.key_id == _canon(key_id))
                )
            )
            return bool(done.rowcount)

    def remove_all_passwords(self, tenant_id: str, app_object_id: str) -> None:
        """Remove every secret of an application (`az ad sp credential reset` replaces)."""
        with self._write() as conn:
            oid = self._require_app(conn, tenant_id, app_object_id)
            conn.execute(delete(passwords).where(passwords.c.app_object_id == oid))

    @staticmethod
    def _passwords(
        conn: Connection, app_object_ids: builtins.list[str]
    ) -> dict[str, builtins.list[PasswordCredential]]:
        if not app_object_ids:
            return {}
        rows = conn.execute(
            select(passwords)
            .where(passwords.c.app_object_id.in_(app_object_ids))
            .order_by(passwords.c.start)
        ).all()
        found: dict[str, builtins.list[PasswordCredential]] = {}
        for r in rows:
            found.setdefault(r.app_object_id, []).append(
                PasswordCredential(r.key_id, r.display_name, r.hint, r.start, r.end)
            )
        return found

    # --- service principals --------------------------------------------------------

    def _insert_service_principal(
        self, conn: Connection, tenant_id: str, app: Application, object_id: str | None
    ) -> ServicePrincipal:
        sp = ServicePrincipal(
            object_id=_canon(object_id or new_guid()),
            app_id=app.app_id,
            tenant_id=_canon(tenant_id),
            display_name=app.display_name,
            app_object_id=app.object_id,
            created=now_iso(),
        )
        conn.execute(
            insert(service_principals).values(
                object_id=sp.object_id,
                app_id=sp.app_id,
                tenant_id=sp.tenant_id,
                display_name=sp.display_name,
                display_name_key=sp.display_name.lower(),
                app_object_id=sp.app_object_id,
                created=sp.created,
                seq=self._next(conn),
            )
        )
        return sp

    def create_service_principal(self, tenant_id: str, app_id: str) -> ServicePrincipal:
        """Create the service principal of an application of the same tenant.

        Raises `DirectoryError("Request_ResourceNotFound")` for an unknown app id and
        `DirectoryError("Request_MultipleObjectsWithSameKeyValue")` when it exists.
        """
        app = self.application_by_app_id(tenant_id, app_id)
        if app is None:
            raise DirectoryError(
                "Request_ResourceNotFound",
                f"The appId '{app_id}' of the service principal does not reference a valid "
                "application object.",
            )
        with self._write() as conn:
            exists = conn.execute(
                select(service_principals.c.object_id).where(
                    and_(
                        service_principals.c.tenant_id == _canon(tenant_id),
                        service_principals.c.app_id == app.app_id,
                    )
                )
            ).first()
            if exists:
                raise DirectoryError(
                    "Request_MultipleObjectsWithSameKeyValue",
                    "The service principal cannot be created, updated, or restored because the "
                    "service principal name "
                    f"{app.app_id} is already in use.",
                )
            return self._insert_service_principal(conn, tenant_id, app, None)

    def list_service_principals(
        self,
        tenant_id: str,
        *,
        display_name: str | None = None,
        display_name_prefix: str | None = None,
        app_id: str | None = None,
        object_id: str | None = None,
    ) -> builtins.list[ServicePrincipal]:
        """A tenant's service principals, oldest first, filtered as Graph's forms ask."""
        c = service_principals.c
        cond = _where(
            service_principals, tenant_id, display_name, display_name_prefix, app_id, object_id
        )
        with self.engine.connect() as conn:
            rows = conn.execute(select(service_principals).where(and_(*cond)).order_by(c.seq))
            return [
                ServicePrincipal(
                    r.object_id, r.app_id, r.tenant_id, r.display_name, r.app_object_id, r.created
                )
                for r in rows
            ]

    def get_service_principal(self, tenant_id: str, object_id: str) -> ServicePrincipal | None:
        """A service principal by object id, within a tenant."""
        return next(iter(self.list_service_principals(tenant_id, object_id=object_id)), None)

    def service_principal_by_app_id(self, tenant_id: str, app_id: str) -> ServicePrincipal | None:
        """A service principal by application id, within a tenant."""
        return next(iter(self.list_service_principals(tenant_id, app_id=app_id)), None)

    def delete_service_principal(self, tenant_id: str, object_id: str) -> bool:
        """Delete a service principal (its application stays, as in Graph)."""
        with self._write() as conn:
            self._refuse_admin(conn, tenant_id, sp_object_id=_canon(object_id))
            done = conn.execute(
                delete(service_principals).where(
                    and_(
                        service_principals.c.object_id == _canon(object_id),
                        service_principals.c.tenant_id == _canon(tenant_id),
                    )
                )
            )
            return bool(done.rowcount)

    def principal_exists(self, tenant_id: str, object_id: str) -> bool:
        """Whether a service principal or a user with this object id exists in the tenant."""
        return self.principal_kind(tenant_id, object_id) is not None

    def principal_kind(self, tenant_id: str, object_id: str) -> str | None:
        """`ServicePrincipal` or `User` (a role assignment's principalType), else None."""
        if self.get_service_principal(tenant_id, object_id) is not None:
            return "ServicePrincipal"
        if self.get_user(tenant_id, object_id) is not None:
            return "User"
        return None

    def count_service_principals(self, tenant_id: str) -> int:
        """How many service principals a tenant has."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(service_principals)
                    .where(service_principals.c.tenant_id == _canon(tenant_id))
                ).scalar_one()
            )

    # --- users ---------------------------------------------------------------------

    def create_user(
        self,
        tenant_id: str,
        name: str,
        password: str | None = None,
        display_name: str | None = None,
    ) -> tuple[User, str]:
        """Create user `<name>@<tenant name>`; returns the user and its password.

        A password is generated when none is given (the only time it is seen). Raises
        `DirectoryError` with `InvalidUserName`, `InvalidPassword`, `InvalidDisplayName`,
        `TenantNotFound` or `UserExists` (the sign-in name is taken, in any case).
        """
        check_user_name(name)
        password = new_user_password() if password is None else password
        check_new_user_password(password)
        display = check_user_display_name(name if display_name is None else display_name)
        tenant = self.get_tenant(tenant_id)
        if tenant is None:
            raise DirectoryError("TenantNotFound", f"The tenant '{tenant_id}' does not exist.")
        upn = f"{name}@{tenant.name}"
        # The slow hash is made outside the write lock: other writers need not wait for it.
        hashed = hash_user_password(password)
        user = User(
            tenant_id=tenant.tenant_id,
            object_id=_canon(new_guid()),
            user_principal_name=upn,
            display_name=display,
            created=now_iso(),
        )
        with self._write() as conn:
            taken = conn.execute(
                select(users.c.object_id).where(users.c.upn_key == upn.lower())
            ).first()
            if taken:
                raise DirectoryError("UserExists", f"A user '{upn}' already exists.")
            conn.execute(
                insert(users).values(
                    object_id=user.object_id,
                    tenant_id=user.tenant_id,
                    user_principal_name=upn,
                    upn_key=upn.lower(),
                    display_name=display,
                    password_hash=hashed,
                    created=user.created,
                    seq=self._next(conn),
                )
            )
        return user, password

    def get_user(self, tenant_id: str, object_id: str) -> User | None:
        """A user by object id, within a tenant."""
        cond = and_(users.c.object_id == _canon(object_id), users.c.tenant_id == _canon(tenant_id))
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(cond)).first()
        return _user(row) if row else None

    def find_user(self, user_principal_name: str) -> User | None:
        """A user by sign-in name (without regard to case), in any tenant."""
        row = self._user_row(user_principal_name)
        return _user(row) if row else None

    def list_users(self, tenant_id: str) -> builtins.list[User]:
        """A tenant's users, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(users).where(users.c.tenant_id == _canon(tenant_id)).order_by(users.c.seq)
            ).all()
        return [_user(r) for r in rows]

    def delete_user(self, tenant_id: str, object_id: str) -> bool:
        """Delete a user; False when the tenant has none with that object id.

        Role assignments naming the user stay, as in Azure (they show an unknown principal).
        """
        with self._write() as conn:
            done = conn.execute(
                delete(users).where(
                    and_(
                        users.c.object_id == _canon(object_id),
                        users.c.tenant_id == _canon(tenant_id),
                    )
                )
            )
            return bool(done.rowcount)

    def check_user_password(self, user_principal_name: str, password: str) -> User | None:
        """The user when `password` is its password; None for a wrong one or no such user.

        The hash is computed either way, so the time taken does not tell whether the
        sign-in name exists.
        """
        row = self._user_row(user_principal_name)
        stored = row.password_hash if row is not None else _dummy_hash()
        ok = verify_user_password(password if isinstance(password, str) else "", stored)
        return _user(row) if ok and row is not None else None

    def _user_row(self, user_principal_name: str) -> Any:
        if not isinstance(user_principal_name, str) or "\x00" in user_principal_name:
            return None  # no sign-in name holds a NUL (and PostgreSQL text cannot)
        with self.engine.connect() as conn:
            return conn.execute(
                select(users).where(users.c.upn_key == user_principal_name.strip().lower())
            ).first()

    # --- sign-in -------------------------------------------------------------------

    def check_client(
        self, tenant_id: str, app_id: str, secret: str
    ) -> tuple[str, ServicePrincipal | None]:
        """Check client credentials; returns (outcome, service principal).

        Outcomes: ``ok``, ``no_tenant``, ``no_client`` (no service principal of that app
        in the tenant), ``bad_secret`` (wrong, missing or expired). The comparison is in
        constant time.
        """
        if self.get_tenant(tenant_id) is None:
            return "no_tenant", None
        sp = self.service_principal_by_app_id(tenant_id, app_id)
        if sp is None:
            return "no_client", None
        digest = _digest(secret or "")
        now = now_iso()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(passwords.c.secret_sha256, passwords.c.end).where(
                    passwords.c.app_object_id == sp.app_object_id
                )
            ).all()
        ok = False
        for row in rows:
            # Compare every candidate: the time taken does not tell which one matched.
            match = hmac.compare_digest(digest, row.secret_sha256)
            ok = ok or (match and row.end >= now)
        return ("ok" if ok and secret else "bad_secret"), sp


def _where(
    table: Table,
    tenant_id: str,
    display_name: str | None,
    display_name_prefix: str | None,
    app_id: str | None,
    object_id: str | None,
) -> list[Any]:
    """The conditions of Graph's filter forms on applications or service principals."""
    c = table.c
    cond = [c.tenant_id == _canon(tenant_id)]
    if display_name is not None:
        cond.append(c.display_name_key == display_name.lower())
    if display_name_prefix is not None:
        cond.append(c.display_name_key.startswith(display_name_prefix.lower()))
    if app_id is not None:
        cond.append(c.app_id == _canon(app_id))
    if object_id is not None:
        cond.append(c.object_id == _canon(object_id))
    return cond


def _user(row: Any) -> User:
    return User(**{f.name: getattr(row, f.name) for f in fields(User)})


def _dummy_hash() -> str:
    """What an unknown user's password is checked against: random salt and digest, so
    the same scrypt work is done and nothing matches (no precomputed hash is needed)."""
    return _hash_text(secrets.token_bytes(_SCRYPT_SALT_BYTES), secrets.token_bytes(_SCRYPT_LENGTH))


def _tenant(row: Any) -> Tenant:
    return Tenant(**{f.name: getattr(row, f.name) for f in fields(Tenant)})
