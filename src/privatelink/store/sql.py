"""SQLAlchemy implementation of the repository (SQLite by default, PostgreSQL by URL).

Resources are JSON documents keyed by their lower-cased id; two side tables index them
(`refs`: who points at what; `ips`: which address of which subnet is held by whom) and
are rewritten with every write. Writes are serialized: a process lock, and on
PostgreSQL a transaction-level advisory lock so several servers may share a database.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from privatelink.core import errors
from privatelink.core.ids import key
from privatelink.core.private_link_service import (
    CONNECTION_TYPE,
    PrivateEndpointConnection,
    PrivateLinkService,
)
from privatelink.core.private_link_service import TYPE as PLS_TYPE
from privatelink.core.public_ip_address import RANGE_KEY
from privatelink.core.registry import ip_usages, references
from privatelink.core.resource import Changes, Resource, StateView
from privatelink.core.site import Site
from privatelink.core.site import key as site_key
from privatelink.core.virtual_network_peering import TYPE as PEERING_TYPE
from privatelink.store import codec, faults
from privatelink.store.inline import InlineReader, local_sqlite_file
from privatelink.store.repository import InlineReadRefused, Operation, Page

metadata = MetaData()

resources = Table(
    "resources",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("seq", Integer, nullable=False, index=True),
    Column("type", String(200), nullable=False),
    Column("subscription", String(64), nullable=False),
    Column("resource_group", String(200), nullable=False),
    Column("body", Text, nullable=False),
    # A list's page walks one of these in creation order and stops after the page (no
    # sort of every resource of the type in the subscription, bodies and all).
    Index("ix_resources_list", "type", "subscription", "seq"),
    Index("ix_resources_group_list", "type", "subscription", "resource_group", "seq"),
)

refs = Table(
    "refs",
    metadata,
    Column("src", String(1024), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("dst", String(1024), primary_key=True, index=True),
    # A count of one kind of reference to one target (endpoints per network, checked
    # on every endpoint created) reads this index alone, not every row pointing there.
    Index("ix_refs_dst_kind", "dst", "kind"),
)

ips = Table(
    "ips",
    metadata,
    Column("subnet", String(1024), primary_key=True),
    Column("ip", String(64), primary_key=True),
    Column("owner", String(1024), nullable=False, index=True),
    Column("owner_id", String(1024), nullable=False),
    # The address as an integer (`_ip_number`): dynamic allocation finds the lowest free
    # address through `ix_ips_subnet_num` instead of reading every address of the subnet.
    # Nullable only for ALTER TABLE on an older database (`_add_ip_numbers` fills it).
    Column("num", BigInteger),
)
_IPS_BY_NUMBER = Index("ix_ips_subnet_num", ips.c.subnet, ips.c.num)

operations = Table(
    "operations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("resource_id", String(1024), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("error_code", String(200)),
    Column("error_message", Text),
    Column("start_time", String(40), nullable=False),
    Column("end_time", String(40)),
    # Every sync completes the operations still in progress: found through this, not
    # by a scan of every operation ever recorded.
    Index("ix_operations_status_start", "status", "start_time"),
)

# The change feed: every write transaction takes the next "change" version (a counter
# row, so writers, even of several servers on one PostgreSQL, commit versions in order)
# and records the keys it put or deleted under it. The data plane reads what changed
# since the version it last saw instead of every resource (`changes_since`).
changes = Table(
    "changes",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("key", String(1024), primary_key=True),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)


def _slot_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("slot", Integer, primary_key=True, autoincrement=False),
        Column("key", String(1024), unique=True, nullable=True),  # NULL: free
        Column("released_at", Float, nullable=True),
    )


link_slots = _slot_table("link_slots")  # a connection's slot: its conntrack mark
# A pair of hubs' slot (its shared veth's names and /30), handed out like link slots.
pair_slots = _slot_table("pair_slots")
# A fabric wire's slot: its veth names and /30 (dataplane/fabric.py).
wire_slots = _slot_table("wire_slots")
SLOT_TABLES = {"link": link_slots, "pair": pair_slots, "wire": wire_slots}
SLOT_QUARANTINE_SECONDS = 60.0  # a freed slot (its mark, its veth names) rests this long

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("subscription_id", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("tenant_id", String(64), nullable=False),
)

resource_groups = Table(
    "resource_groups",
    metadata,
    Column("key", String(400), primary_key=True),  # "<subscription>/<group>" lower-case
    Column("subscription", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("location", String(64), nullable=False),
    Column("tags", Text, nullable=False),
    Column("seq", Integer, nullable=False),
)

deployments = Table(
    "deployments",
    metadata,
    Column("key", String(600), primary_key=True),  # deployment id, lower-case
    Column("subscription", String(64), nullable=False),
    Column("resource_group", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("body", Text, nullable=False),
)

# On-premises sites (core/site.py): admin objects, not resources. A site's gateway IP is
# also a row of `ips` under the public range's key (owner "site:<key>"), so public IPs
# are never given it; the "sites" counter moves with every put and delete
# (`sites_version`).
sites = Table(
    "sites",
    metadata,
    Column("key", String(64), primary_key=True),  # the name, lower-case
    Column("name", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("address_space", Text, nullable=False),  # a JSON list of prefixes
    Column("gateway_ip", String(64), nullable=False),
    Column("shared_key", String(256), nullable=False),
    Column("created", String(40), nullable=False),
)
SITE_OWNER = "site:"  # + the site's key: its row in `ips`

T = TypeVar("T")
_ADVISORY_LOCK = 0x706C6E6B  # "plnk"
REALIZED_TYPES = tuple(codec.TYPES)


def _save_operation(conn: Connection, operation: Operation) -> None:
    values = {
        "id": operation.id,
        "resource_id": operation.resource_id,
        "kind": operation.kind,
        "status": operation.status,
        "error_code": operation.error_code,
        "error_message": operation.error_message,
        "start_time": operation.start_time,
        "end_time": operation.end_time,
    }
    conn.execute(delete(operations).where(operations.c.id == operation.id))
    conn.execute(insert(operations).values(**values))


# Built once: the hottest statement (every GET); SQLAlchemy memoizes its cache key.
_GET_RESOURCE = select(resources.c.type, resources.c.body).where(
    resources.c.key == bindparam("key")
)
# The same for an inline read, straight to sqlite3 (no SQLAlchemy execution around it).
_GET_RESOURCE_SQLITE = "SELECT type, body FROM resources WHERE key = ?"
#: Stored bytes an inline read may decode before it is refused (then it runs in a worker
#: thread): a few ordinary documents, about a millisecond of decoding and rendering.
INLINE_READ_BUDGET = 64 * 1024
_IP_ROW_BYTES = 64  # what a row of `ips` counts against that budget
# No stored document is smaller: an inline read of a longer list than its budget has
# room for at this size is refused before the rows are read (not after reading them).
_MIN_DOCUMENT_BYTES = 256


def _ip_number(ip: str) -> int | None:
    """`ips.num` of an address; None for a string that is not an IPv4 address."""
    try:
        return int(IPv4Address(ip))
    except ValueError:
        return None


# Built once (see _GET_RESOURCE): is an address held; the first free one after a held one.
_IP_NUMBER_HELD = (
    select(ips.c.num)
    .where(and_(ips.c.subnet == bindparam("subnet"), ips.c.num == bindparam("first")))
    .limit(1)
)
_held, _next = ips.alias("held"), ips.alias("next")
# The lowest held address in [first, last) whose successor is free, walked in index
# order and stopped at the first hit: the successor is the lowest free address above
# `first` (which is held when this runs) up to `last`.
_IP_NUMBER_GAP = (
    select(_held.c.num + 1)
    .where(
        and_(
            _held.c.subnet == bindparam("subnet"),
            _held.c.num >= bindparam("first"),
            _held.c.num < bindparam("last"),
            ~select(_next.c.num)
            .where(and_(_next.c.subnet == bindparam("subnet"), _next.c.num == _held.c.num + 1))
            .exists(),
        )
    )
    .order_by(_held.c.num)
    .limit(1)
)


class SqlView:
    """StateView over one connection, with a per-transaction cache of decoded documents.

    An inline view (`SqlRepository.read_inline`) has a `budget` of stored bytes it may
    decode (beyond it: `InlineReadRefused`) and reads single documents through the raw
    sqlite3 connection `raw`.
    """

    def __init__(self, conn: Connection, budget: int | None = None, raw: Any = None) -> None:
        self._conn = conn
        self._cache: dict[str, Resource | None] = {}
        self._budget = budget
        self._raw = raw

    def _spend(self, size: int) -> None:
        if self._budget is not None:
            self._budget -= size
            if self._budget < 0:
                raise InlineReadRefused("the read outgrew the inline budget")

    def _decode(self, resource_type: str, body: str) -> Resource:
        self._spend(len(body))
        return codec.loads(resource_type, body)

    def get(self, resource_id: str) -> Resource | None:
        """The resource with this id, or None."""
        k = key(resource_id)
        if "\x00" in k:
            return None  # PostgreSQL text cannot hold NUL; no such resource can exist
        if k not in self._cache:
            if self._raw is not None:
                found = self._raw.execute(_GET_RESOURCE_SQLITE, (k,)).fetchone()
            else:
                found = self._conn.execute(_GET_RESOURCE, {"key": k}).first()
            self._cache[k] = self._decode(found[0], found[1]) if found else None
        return self._cache[k]

    def referrers(
        self, target: str, kind: str, offset: int = 0, limit: int | None = None
    ) -> list[Resource]:
        """Resources that index `target` under `kind`, oldest first; `offset` and
        `limit` read one page of them (only that page is decoded)."""
        if "\x00" in target:
            return []
        query = (
            select(resources.c.key, resources.c.type, resources.c.body)
            .join(refs, refs.c.src == resources.c.key)
            .where(and_(refs.c.dst == target.lower(), refs.c.kind == kind))
            .order_by(resources.c.seq)
        )
        if offset:
            query = query.offset(offset)
        room = None if self._budget is None else self._budget // _MIN_DOCUMENT_BYTES
        if room is not None and (limit is None or limit > room):
            query = query.limit(room + 1)  # more than fit: refused without reading them
        elif limit is not None:
            query = query.limit(limit)
        rows = self._conn.execute(query).all()
        if room is not None and len(rows) > room:
            raise InlineReadRefused("the list outgrew the inline budget")
        self._decode_rows([r for r in rows if r.key not in self._cache])
        return [item for row in rows if (item := self._cache[row.key]) is not None]

    def _decode_rows(self, rows: Sequence[Row[Any, Any, Any]]) -> None:
        """Decode (key, type, body) rows into the cache: those of one type in one call
        (`codec.loads_many`), as a long list of referrers mostly is."""
        by_type: dict[str, list[Row[Any, Any, Any]]] = {}
        for row in rows:
            by_type.setdefault(row.type, []).append(row)
        for resource_type, group in by_type.items():
            if len(group) == 1:
                self._cache[group[0].key] = self._decode(resource_type, group[0].body)
                continue
            self._spend(sum(len(r.body) for r in group))
            decoded = codec.loads_many(resource_type, [r.body for r in group])
            self._cache.update(zip((r.key for r in group), decoded, strict=True))

    def count_referrers(self, target: str, kind: str) -> int:
        """Index entries pointing at `target` with `kind` (an indexed COUNT)."""
        if "\x00" in target:
            return 0
        return int(
            self._conn.execute(
                select(func.count())
                .select_from(refs)
                .where(and_(refs.c.dst == target.lower(), refs.c.kind == kind))
            ).scalar_one()
        )

    def referrers_within(self, parent: str, kind: str) -> dict[str, list[Resource]]:
        """Resources that index a child of `parent` under `kind`, by target key (one query)."""
        prefix = key(parent) + "/"
        if "\x00" in prefix:
            return {}
        rows = self._conn.execute(
            select(refs.c.dst, resources.c.key, resources.c.type, resources.c.body)
            .join(refs, refs.c.src == resources.c.key)
            .where(and_(refs.c.kind == kind, refs.c.dst.startswith(prefix, autoescape=True)))
            .order_by(resources.c.seq)
        ).all()
        found: dict[str, list[Resource]] = {}
        for row in rows:
            if not row.dst.startswith(prefix):
                continue  # SQLite's LIKE ignores ASCII case; keys are compared exactly
            if row.key not in self._cache:
                self._cache[row.key] = self._decode(row.type, row.body)
            item = self._cache[row.key]
            if item is not None:
                found.setdefault(row.dst, []).append(item)
        return found

    def used_ips(self, subnet_id: str) -> dict[str, str]:
        """ip -> owner id for a subnet."""
        rows = self._conn.execute(
            select(ips.c.ip, ips.c.owner_id).where(ips.c.subnet == key(subnet_id))
        ).all()
        self._spend(len(rows) * _IP_ROW_BYTES)
        return {row.ip: row.owner_id for row in rows}

    def ip_holders(self, subnet_id: str, addresses: Collection[str]) -> dict[str, str]:
        """ip -> owner id of those of `addresses` held in a subnet (primary key lookups)."""
        wanted = sorted({ip for ip in addresses if "\x00" not in ip})
        found: dict[str, str] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            rows = self._conn.execute(
                select(ips.c.ip, ips.c.owner_id).where(
                    and_(
                        ips.c.subnet == key(subnet_id),
                        ips.c.ip.in_(wanted[start : start + _IN_CHUNK]),
                    )
                )
            ).all()
            self._spend(max(1, len(rows)) * _IP_ROW_BYTES)
            found.update((row.ip, row.owner_id) for row in rows)
        return found

    def lowest_free_ip(self, subnet_id: str, first: int, last: int) -> int | None:
        """The lowest address in [first, last] no row of the subnet holds (None: all are).

        At most two queries on `ix_ips_subnet_num`: `first` itself, then the first gap."""
        if first > last:
            return None
        params = {"subnet": key(subnet_id), "first": first, "last": last}
        self._spend(_IP_ROW_BYTES)
        if self._conn.execute(_IP_NUMBER_HELD, params).first() is None:
            return first
        self._spend(_IP_ROW_BYTES)
        found = self._conn.execute(_IP_NUMBER_GAP, params).scalar()
        return None if found is None else int(found)

    def count(self, resource_type: str, subscription: str) -> int:
        """Number of resources of a type in a subscription."""
        return int(
            self._conn.execute(
                select(func.count())
                .select_from(resources)
                .where(
                    and_(
                        resources.c.type == resource_type.lower(),
                        resources.c.subscription == subscription.lower(),
                    )
                )
            ).scalar_one()
        )


_CONNECTION_TYPE = CONNECTION_TYPE.lower()
# Children stored as rows of their own but not tracked resources: never in group listings.
_UNLISTED_TYPES = (_CONNECTION_TYPE, PEERING_TYPE.lower())
_PLS_TYPE = PLS_TYPE.lower()
_IN_CHUNK = 500  # keys per `IN (...)`: SQLite allows 32766 parameters, stay well below


def _counter(conn: Connection, name: str) -> int:
    """A counter's value (0 before its first use)."""
    row = conn.execute(select(counters.c.value).where(counters.c.name == name)).first()
    return int(row.value) if row else 0


def _set_counter(conn: Connection, name: str, value: int) -> None:
    if conn.execute(update(counters).where(counters.c.name == name).values(value=value)).rowcount:
        return
    conn.execute(insert(counters).values(name=name, value=value))


def _next_counter(conn: Connection, name: str) -> int:
    """The counter's next value, taken in the caller's transaction."""
    row = conn.execute(select(counters.c.value).where(counters.c.name == name)).first()
    value = (row.value if row else 0) + 1
    if row:
        conn.execute(update(counters).where(counters.c.name == name).values(value=value))
    else:
        conn.execute(insert(counters).values(name=name, value=value))
    return value


def _record_changes(conn: Connection, keys: Iterable[str]) -> None:
    """Record `keys` as changed by this transaction (one new version for all of them)."""
    unique = sorted(set(keys))
    if unique:
        version = _next_counter(conn, "change")
        conn.execute(insert(changes), [{"version": version, "key": k} for k in unique])


def _site(row: Row[Any]) -> Site:
    return Site(
        name=row.name,
        address_space=tuple(json.loads(row.address_space)),
        gateway_ip=row.gateway_ip,
        shared_key=row.shared_key,
        created=row.created,
    )


def _give_slots(
    conn: Connection,
    table: Table,
    keys: Iterable[str],
    rested: list[int],
    fresh: Iterator[int],
) -> dict[str, int]:
    """Give each key a slot, rested ones first (lowest first), then fresh ones, until
    none is left; returns what was given."""
    given: dict[str, int] = {}
    for k in keys:
        if rested:
            slot = rested.pop(0)
            conn.execute(update(table).where(table.c.slot == slot).values(key=k, released_at=None))
        else:
            new = next(fresh, None)
            if new is None:
                break
            slot = new
            conn.execute(insert(table).values(slot=slot, key=k))
        given[k] = slot
    return given


class SqlUnitOfWork(SqlView):
    """A write transaction."""

    def _next_seq(self) -> int:
        return _next_counter(self._conn, "seq")

    def _drop_index(self, k: str) -> None:
        self._conn.execute(delete(refs).where(refs.c.src == k))
        self._conn.execute(delete(ips).where(ips.c.owner == k))

    def apply(self, changes: Changes) -> dict[str, Resource]:
        """Write a change set; every put gets a fresh etag."""
        written: dict[str, Resource] = {}
        for resource_id in changes.deletes:
            k = key(resource_id)
            self._drop_index(k)
            self._conn.execute(delete(resources).where(resources.c.key == k))
            self._cache[k] = None
        for resource in changes.puts:
            k = resource.key
            resource = replace(resource, etag=f'W/"{uuid.uuid4()}"')
            body = codec.dumps(resource)
            exists = self._conn.execute(select(resources.c.seq).where(resources.c.key == k)).first()
            self._drop_index(k)
            if exists:
                self._conn.execute(update(resources).where(resources.c.key == k).values(body=body))
            else:
                rid = resource.rid
                self._conn.execute(
                    insert(resources).values(
                        key=k,
                        seq=self._next_seq(),
                        type=codec.type_of(resource),
                        subscription=rid.subscription.lower(),
                        resource_group=rid.resource_group.lower(),
                        body=body,
                    )
                )
            rows = [{"src": k, "kind": kind, "dst": dst} for kind, dst in references(resource)]
            if rows:
                self._conn.execute(insert(refs), rows)
            held = [
                {
                    "subnet": subnet,
                    "ip": ip,
                    "num": _ip_number(ip),
                    "owner": k,
                    "owner_id": resource.id,
                }
                for subnet, ip in ip_usages(resource)
            ]
            if held:
                self._conn.execute(insert(ips), held)
            self._cache[k] = resource
            written[k] = resource
        _record_changes(self._conn, [key(r) for r in changes.deletes] + list(written))
        return written

    def save_operation(self, operation: Operation) -> None:
        """Insert or replace an operation record in this transaction (with the change it
        records: both are written, or neither)."""
        _save_operation(self._conn, operation)


def _add_ip_numbers(engine: Engine) -> None:
    """Give an `ips` table made before `num` existed that column, filled, and its index.

    Rows still without a number are filled on every start, not only right after the
    column is added: on SQLite the ALTER commits by itself (pysqlite runs DDL outside
    the transaction), so a fill cut short must be finished by the next start. On
    PostgreSQL under the write lock: servers starting together on one database migrate
    it once."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
        if "num" not in {column["name"] for column in inspect(conn).get_columns(ips.name)}:
            conn.exec_driver_sql("ALTER TABLE ips ADD COLUMN num BIGINT")
        numbers = [
            {"b_subnet": row.subnet, "b_ip": row.ip, "b_num": number}
            for row in conn.execute(select(ips.c.subnet, ips.c.ip).where(ips.c.num.is_(None)))
            if (number := _ip_number(row.ip)) is not None
        ]
        if numbers:
            conn.execute(
                update(ips)
                .where(and_(ips.c.subnet == bindparam("b_subnet"), ips.c.ip == bindparam("b_ip")))
                .values(num=bindparam("b_num")),
                numbers,
            )
        _IPS_BY_NUMBER.create(conn, checkfirst=True)


class SqlRepository:
    """The repository on a SQLAlchemy engine."""

    #: The default store's file name in the data directory.
    SQLITE_FILE = "privatelink.db"

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True, **faults.engine_options(url))
        # Database failures leave the store as typed ARM errors (503/507), never as 500s.
        faults.install(self.engine)
        if self.engine.dialect.name == "sqlite":
            self._tune_sqlite(self.engine)
        metadata.create_all(self.engine)
        # Indexes added since a table was first made (create_all skips existing tables).
        for index in (*operations.indexes, *refs.indexes, *resources.indexes):
            index.create(self.engine, checkfirst=True)
        with self.engine.begin() as conn:  # superseded by ix_resources_group_list
            conn.exec_driver_sql("DROP INDEX IF EXISTS ix_resources_type_subscription")
        _add_ip_numbers(self.engine)
        self._lock = threading.Lock()
        # Small reads on the caller's thread (an event loop's GETs) for a local SQLite
        # file; a database over the network always reads in a worker thread.
        self._inline = (
            InlineReader(url, lambda conn, raw: SqlView(conn, INLINE_READ_BUDGET, raw))
            if local_sqlite_file(url)
            else None
        )
        self._split_inline_connections()

    def _split_inline_connections(self) -> None:
        """Give connections stored inside their service's document (databases made
        before connections were rows of their own) their own rows, once: each
        becomes a document, and its service is written again without them."""
        inline = resources.c.body.contains('"connections": [{', autoescape=True)
        with self.engine.connect() as conn:
            found = conn.execute(
                select(resources.c.key).where(and_(resources.c.type == _PLS_TYPE, inline))
            ).first()
        if found is None:
            return
        with self.write() as uow:
            rows = uow._conn.execute(
                select(resources.c.body).where(and_(resources.c.type == _PLS_TYPE, inline))
            ).all()
            changes = Changes()
            for row in rows:
                service = codec.loads(_PLS_TYPE, row.body)  # leaves the connections out
                assert isinstance(service, PrivateLinkService)
                for stored in json.loads(row.body).get("connections") or []:
                    changes.put(
                        PrivateEndpointConnection(
                            id=service.connection_id(stored["name"]),
                            location=service.location,
                            **stored,
                        )
                    )
                changes.put(service)
            uow.apply(changes)

    @staticmethod
    def _tune_sqlite(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

    @classmethod
    def sqlite_in(cls, data_dir: Path) -> SqlRepository:
        """The default store: a SQLite file in the data directory."""
        return cls(f"sqlite:///{data_dir / cls.SQLITE_FILE}")

    @contextmanager
    def read(self) -> Iterator[SqlView]:
        """A read-only view (one transaction)."""
        with self.engine.connect() as conn:
            yield SqlView(conn)

    def read_inline(self, fn: Callable[[StateView], T]) -> T:
        """`fn(view)` on this thread if it cannot wait (store/inline.py), else
        `InlineReadRefused`."""
        if self._inline is None:
            raise InlineReadRefused("the database is not a local file")
        return self._inline.run(fn)

    @contextmanager
    def write(self) -> Iterator[SqlUnitOfWork]:
        """One serialized write transaction."""
        with self._lock, self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
            try:
                yield SqlUnitOfWork(conn)
            except IntegrityError as exc:
                raise errors.Conflict(
                    "The write conflicted with concurrent changes; retry the request."
                ) from exc

    def list(
        self,
        resource_type: str,
        subscription: str,
        resource_group: str | None,
        token: str | None,
        top: int,
    ) -> Page:
        """One page of resources, ordered by creation; `token` is the last seq seen."""
        cond = [
            resources.c.type == resource_type.lower(),
            resources.c.subscription == subscription.lower(),
        ]
        if resource_group is not None:
            cond.append(resources.c.resource_group == resource_group.lower())
        if token:
            try:
                cond.append(resources.c.seq > int(token))
            except ValueError as exc:
                raise errors.InvalidRequestContent(f"Invalid $skipToken '{token}'.") from exc
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(resources.c.seq, resources.c.type, resources.c.body)
                .where(and_(*cond))
                .order_by(resources.c.seq)
                .limit(top + 1)
            ).all()
        items = codec.loads_many(resource_type.lower(), [r.body for r in rows[:top]])
        next_token = str(rows[top - 1].seq) if len(rows) > top else None
        return Page(items, next_token)

    def iter_all(self, resource_type: str) -> Iterator[Resource]:
        """Every resource of a type."""
        with self.engine.connect() as conn:
            for row in conn.execute(
                select(resources.c.type, resources.c.body)
                .where(resources.c.type == resource_type.lower())
                .order_by(resources.c.seq)
            ):
                yield codec.loads(row.type, row.body)

    def save_operation(self, operation: Operation) -> None:
        """Insert or replace an operation record."""
        with self.engine.begin() as conn:
            _save_operation(conn, operation)

    def get_operation(self, operation_id: str) -> Operation | None:
        """An operation by id."""
        if "\x00" in operation_id:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(operations).where(operations.c.id == operation_id)).first()
        return Operation(**row._mapping) if row else None

    # --- what the data plane needs -------------------------------------------------

    def snapshot(self) -> builtins.list[Resource]:
        """Every network resource, read in one transaction (`versioned_snapshot`)."""
        return [r for _, r in self.versioned_snapshot()[1]]

    def versioned_snapshot(self) -> tuple[int, builtins.list[tuple[int, Resource]]]:
        """Every network resource with its creation number, in creation order, and the
        change version the read includes (what to pass to `changes_since` next).

        The read starts after writes in flight (the process lock; on PostgreSQL the
        shared advisory lock, for other servers): a change records its operation inside
        its transaction, with a start time before its commit, and `complete_operations`
        relies on every operation started before a snapshot being in that snapshot. The
        process lock is held only until the version is read, not while the rows are.
        """
        with self.engine.connect() as conn:
            with self._lock:
                if self.engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({_ADVISORY_LOCK})")
                # Read first: the rows below are at least this recent (maybe more: a
                # resource changed since comes again from `changes_since`, harmlessly).
                version = _counter(conn, "change")
            rows = conn.execute(
                select(resources.c.seq, resources.c.type, resources.c.body).order_by(
                    resources.c.seq
                )
            ).all()
        return version, [(r.seq, codec.loads(r.type, r.body)) for r in rows]

    def changes_since(
        self, version: int
    ) -> tuple[int, builtins.list[tuple[int, Resource]], builtins.list[str]] | None:
        """What changed after `version`: (the version now, the resources put with their
        creation numbers, in creation order, the keys deleted); None when the feed no
        longer reaches back that far (`prune_changes`): read a `versioned_snapshot`.
        A key deleted and made again between two reads is a put with a new number.

        Taken after writes in flight, as `versioned_snapshot` is. A resource changed
        again after the version read is returned as it is now (and again next time).
        """
        with self.engine.connect() as conn:
            with self._lock:
                if self.engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({_ADVISORY_LOCK})")
                now = _counter(conn, "change")
            if version < _counter(conn, "change_pruned"):
                return None
            if now <= version:
                return version, [], []
            keys = sorted(
                {
                    row.key
                    for row in conn.execute(
                        select(changes.c.key).where(
                            and_(changes.c.version > version, changes.c.version <= now)
                        )
                    )
                }
            )
            found: dict[str, tuple[int, str, str]] = {}
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = keys[start : start + _IN_CHUNK]
                for row in conn.execute(
                    select(
                        resources.c.key, resources.c.seq, resources.c.type, resources.c.body
                    ).where(resources.c.key.in_(chunk))
                ):
                    found[row.key] = (row.seq, row.type, row.body)
        put = [(seq, codec.loads(t, b)) for seq, t, b in sorted(found.values())]
        return now, put, [k for k in keys if k not in found]

    def prune_changes(self, through: int) -> int:
        """Forget the change feed up to and including `through` (readers further behind
        read a full snapshot); returns how many entries went."""
        with self._lock, self.engine.begin() as conn:
            pruned = _counter(conn, "change_pruned")
            if through <= pruned:
                return 0
            gone = conn.execute(delete(changes).where(changes.c.version <= through)).rowcount
            _set_counter(conn, "change_pruned", through)
            return int(gone or 0)

    def link_slots(
        self, keys: set[str], limit: int, now: float | None = None, kind: str = "link"
    ) -> dict[str, int]:
        """Stable small integers for connection keys (`kind` "link") or pairs of hubs
        ("pair"), kept while a key lives.

        A freed slot is not handed out again for SLOT_QUARANTINE_SECONDS, so a new link
        never inherits the conntrack mark or the interface names of one just removed.
        Keys beyond `limit` slots get none (the caller reports them).
        """
        now = time.time() if now is None else now
        link_slots = SLOT_TABLES[kind]
        with self._lock, self.engine.begin() as conn:
            rows = conn.execute(select(link_slots)).all()
            result = {r.key: r.slot for r in rows if r.key is not None and r.key in keys}
            gone = [r.slot for r in rows if r.key is not None and r.key not in keys]
            if gone:
                conn.execute(
                    update(link_slots)
                    .where(link_slots.c.slot.in_(gone))
                    .values(key=None, released_at=now)
                )
            rested = sorted(
                r.slot
                for r in rows
                if r.key is None and (r.released_at or 0) <= now - SLOT_QUARANTINE_SECONDS
            )
            taken = {r.slot for r in rows}
            fresh = (slot for slot in range(limit) if slot not in taken)
            result.update(_give_slots(conn, link_slots, sorted(keys - set(result)), rested, fresh))
            return result

    def change_link_slots(
        self,
        added: set[str],
        removed: set[str],
        limit: int,
        now: float | None = None,
        kind: str = "link",
    ) -> dict[str, int]:
        """`link_slots` by difference: free the slots of `removed`, give slots to
        `added` (quarantine as there); returns the slots of `added` (those that got one).

        Reads only the free and resting slots, not every slot: what a link added or
        removed costs does not grow with the links that exist.
        """
        now = time.time() if now is None else now
        link_slots = SLOT_TABLES[kind]
        with self._lock, self.engine.begin() as conn:
            if removed:
                for start in range(0, len(removed), _IN_CHUNK):
                    chunk = sorted(removed)[start : start + _IN_CHUNK]
                    conn.execute(
                        update(link_slots)
                        .where(link_slots.c.key.in_(chunk))
                        .values(key=None, released_at=now)
                    )
            result: dict[str, int] = {}
            wanted = sorted(added)
            for start in range(0, len(wanted), _IN_CHUNK):  # already held (a retry)
                chunk = wanted[start : start + _IN_CHUNK]
                for row in conn.execute(
                    select(link_slots.c.key, link_slots.c.slot).where(link_slots.c.key.in_(chunk))
                ):
                    result[row.key] = row.slot
            need = [k for k in wanted if k not in result]
            if not need:
                return result
            rested = [
                row.slot
                for row in conn.execute(
                    select(link_slots.c.slot)
                    .where(
                        and_(
                            link_slots.c.key.is_(None),
                            or_(
                                link_slots.c.released_at.is_(None),
                                link_slots.c.released_at <= now - SLOT_QUARANTINE_SECONDS,
                            ),
                        )
                    )
                    .order_by(link_slots.c.slot)
                    .limit(len(need))
                )
            ]
            top = conn.execute(select(func.max(link_slots.c.slot))).scalar()
            fresh = iter(range(-1 if top is None else int(top), limit))
            next(fresh, None)  # past the highest slot ever made
            result.update(_give_slots(conn, link_slots, need, rested, fresh))
            return result

    def held_slots(self, kind: str = "link") -> dict[str, int]:
        """Every key holding a slot of this kind, and its slot (nothing is freed)."""
        table = SLOT_TABLES[kind]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.key, table.c.slot).where(table.c.key.is_not(None))
            ).all()
        return {r.key: r.slot for r in rows}

    def set_provisioning_states(self, states: dict[str, tuple[str, str]]) -> None:
        """Set provisioningState on resources whose etag is still the given one.

        `states` maps key -> (etag seen, new state). The etag is left unchanged: this is
        the platform reporting progress, not a change of the resource.
        """
        if not states:
            return
        with self._lock, self.engine.begin() as conn:
            rows = conn.execute(
                select(resources.c.key, resources.c.type, resources.c.body).where(
                    resources.c.key.in_(list(states))
                )
            ).all()
            changed = []
            for row in rows:
                resource = codec.loads(row.type, row.body)
                etag, state = states[row.key]
                if resource.etag != etag or resource.provisioning_state == state:
                    continue
                body = codec.dumps(replace(resource, provisioning_state=state))
                conn.execute(update(resources).where(resources.c.key == row.key).values(body=body))
                changed.append(row.key)
            _record_changes(conn, changed)

    def report_fields(self, updates: dict[str, dict[str, Any]]) -> None:
        """Set fields the data plane reports (a VPN connection's status and byte counts,
        a gateway's IPsec mode) on stored resources, by key; the etag is left unchanged
        and nothing enters the change feed: no plan reads these fields, and a feed entry
        per byte count would re-plan the world every few seconds."""
        if not updates:
            return
        with self._lock, self.engine.begin() as conn:
            rows = conn.execute(
                select(resources.c.key, resources.c.type, resources.c.body).where(
                    resources.c.key.in_(list(updates))
                )
            ).all()
            for row in rows:
                resource = codec.loads(row.type, row.body)
                fields = {k: v for k, v in updates[row.key].items() if hasattr(resource, k)}
                if not fields:
                    continue
                body = codec.dumps(replace(resource, **fields))
                conn.execute(update(resources).where(resources.c.key == row.key).values(body=body))

    def complete_operations(
        self, started_before: str, failed: dict[str, str] | None = None, now: str = ""
    ) -> int:
        """Finish in-progress operations started before a time; failed: resource key -> message."""
        failed = failed or {}
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(operations.c.id, operations.c.resource_id).where(
                    and_(
                        operations.c.status == "InProgress",
                        operations.c.start_time < started_before,
                    )
                )
            ).all()
            for row in rows:
                message = failed.get(key(row.resource_id))
                values: dict[str, object] = {
                    "status": "Failed" if message else "Succeeded",
                    "end_time": now,
                }
                if message:
                    values.update(error_code="ProvisioningFailed", error_message=message)
                conn.execute(update(operations).where(operations.c.id == row.id).values(**values))
            return len(rows)

    # --- subscriptions and resource groups (Microsoft.Resources) ---------------------

    def ensure_subscription(self, subscription_id: str, tenant_id: str, name: str = "") -> bool:
        """Record a subscription on first use; True when it was new."""
        k = subscription_id.lower()
        with self.engine.begin() as conn:
            if conn.execute(select(subscriptions.c.key).where(subscriptions.c.key == k)).first():
                return False
            try:
                conn.execute(
                    insert(subscriptions).values(
                        key=k,
                        subscription_id=subscription_id,
                        display_name=name or f"privatelink {subscription_id[:8]}",
                        tenant_id=tenant_id,
                    )
                )
            except IntegrityError:
                return False  # created concurrently
        return True

    def list_subscriptions(self) -> builtins.list[dict[str, str]]:
        """Every known subscription."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(subscriptions).order_by(subscriptions.c.key)).all()
        return [dict(r._mapping) for r in rows]

    def get_subscription(self, subscription_id: str) -> dict[str, str] | None:
        """One subscription by id (case-insensitive), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(subscriptions).where(subscriptions.c.key == subscription_id.lower())
            ).first()
        return dict(row._mapping) if row else None

    def put_resource_group(
        self, subscription: str, name: str, location: str, tags: dict[str, str]
    ) -> tuple[dict[str, object], bool]:
        """Create or update a resource group; (record, created)."""
        k = f"{subscription}/{name}".lower()
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(select(resource_groups).where(resource_groups.c.key == k)).first()
            if row is not None:
                conn.execute(
                    update(resource_groups)
                    .where(resource_groups.c.key == k)
                    .values(tags=json.dumps(tags))
                )
                record = dict(row._mapping, tags=json.dumps(tags))
                return record, False
            values = {
                "key": k,
                "subscription": subscription.lower(),
                "name": name,
                "location": location,
                "tags": json.dumps(tags),
                "seq": SqlUnitOfWork(conn)._next_seq(),
            }
            conn.execute(insert(resource_groups).values(**values))
            return values, True

    def get_resource_group(self, subscription: str, name: str) -> dict[str, object] | None:
        """A resource group created through the API, or None."""
        k = f"{subscription}/{name}".lower()
        with self.engine.connect() as conn:
            row = conn.execute(select(resource_groups).where(resource_groups.c.key == k)).first()
        return dict(row._mapping) if row else None

    def list_resource_groups(self, subscription: str) -> builtins.list[dict[str, object]]:
        """Resource groups of a subscription, in creation order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(resource_groups)
                .where(resource_groups.c.subscription == subscription.lower())
                .order_by(resource_groups.c.seq)
            ).all()
        return [dict(r._mapping) for r in rows]

    def delete_resource_group_record(self, subscription: str, name: str) -> None:
        """Forget a resource group (its resources are deleted by the caller first)."""
        k = f"{subscription}/{name}".lower()
        with self._lock, self.engine.begin() as conn:
            conn.execute(delete(resource_groups).where(resource_groups.c.key == k))

    def resources_in_group(self, subscription: str, name: str | None) -> builtins.list[Resource]:
        """Every network resource of a resource group (or, with None, a subscription).

        Private endpoint connections and virtual network peerings are left out: they are
        children (listed in their parent's document, deleted by its workflows), as in ARM's
        resource lists."""
        cond = [
            resources.c.subscription == subscription.lower(),
            resources.c.type.not_in(_UNLISTED_TYPES),
        ]
        if name is not None:
            cond.append(resources.c.resource_group == name.lower())
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(resources.c.type, resources.c.body)
                .where(and_(*cond))
                .order_by(resources.c.seq)
            ).all()
        return [codec.loads(r.type, r.body) for r in rows]

    # --- template deployments (Microsoft.Resources/deployments) --------------------------

    def put_deployment(self, deployment_id: str, body: dict[str, object]) -> None:
        """Insert or replace a deployment record."""
        k = deployment_id.lower()
        parts = k.split("/")
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(select(deployments.c.seq).where(deployments.c.key == k)).first()
            text = json.dumps(body)
            if row:
                conn.execute(update(deployments).where(deployments.c.key == k).values(body=text))
            else:
                conn.execute(
                    insert(deployments).values(
                        key=k,
                        subscription=parts[2],
                        resource_group=parts[4],
                        seq=SqlUnitOfWork(conn)._next_seq(),
                        body=text,
                    )
                )

    def get_deployment(self, deployment_id: str) -> dict[str, object] | None:
        """A deployment record."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(deployments.c.body).where(deployments.c.key == deployment_id.lower())
            ).first()
        return json.loads(row.body) if row else None

    def list_deployments(self, subscription: str, group: str) -> builtins.list[dict[str, object]]:
        """Deployments of a resource group."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deployments.c.body)
                .where(
                    and_(
                        deployments.c.subscription == subscription.lower(),
                        deployments.c.resource_group == group.lower(),
                    )
                )
                .order_by(deployments.c.seq)
            ).all()
        return [json.loads(r.body) for r in rows]

    def delete_deployment(self, deployment_id: str) -> None:
        """Forget a deployment (its resources stay, as in ARM)."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(delete(deployments).where(deployments.c.key == deployment_id.lower()))

    # --- on-premises sites (admin objects; core/site.py) -------------------------------

    def put_site(self, site: Site) -> None:
        """Insert a site and hold its gateway IP in the public range, in one transaction.

        `SiteAlreadyExists` when a site has its name (without regard to case),
        `SiteGatewayIpInUse` when a public IP or another site holds its gateway IP; then
        nothing is written. Checked under the write lock, so no writer slips between.
        """
        k = site.key
        with self.write() as uow:
            conn = uow._conn
            if conn.execute(select(sites.c.key).where(sites.c.key == k)).first():
                raise errors.SiteAlreadyExists(name=site.name)
            holder = conn.execute(
                select(ips.c.owner_id).where(
                    and_(ips.c.subnet == key(RANGE_KEY), ips.c.ip == site.gateway_ip)
                )
            ).first()
            if holder is not None:
                raise errors.SiteGatewayIpInUse(
                    value=site.gateway_ip, name=site.name, holder=holder.owner_id
                )
            conn.execute(
                insert(sites).values(
                    key=k,
                    name=site.name,
                    seq=_next_counter(conn, "seq"),
                    address_space=json.dumps(list(site.address_space)),
                    gateway_ip=site.gateway_ip,
                    shared_key=site.shared_key,
                    created=site.created,
                )
            )
            conn.execute(
                insert(ips).values(
                    subnet=key(RANGE_KEY),
                    ip=site.gateway_ip,
                    num=_ip_number(site.gateway_ip),
                    owner=SITE_OWNER + k,
                    owner_id=f"site {site.name}",
                )
            )
            _next_counter(conn, "sites")

    def get_site(self, name: str) -> Site | None:
        """The site of this name (without regard to case), or None."""
        if "\x00" in name:
            return None  # PostgreSQL text cannot hold NUL; no such site can exist
        with self.engine.connect() as conn:
            row = conn.execute(select(sites).where(sites.c.key == site_key(name))).first()
        return _site(row) if row else None

    def list_sites(self) -> builtins.list[Site]:
        """Every site, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(sites).order_by(sites.c.seq)).all()
        return [_site(r) for r in rows]

    def delete_site(self, name: str) -> bool:
        """Remove a site and free its gateway IP; False when there was none."""
        if "\x00" in name:
            return False
        k = site_key(name)
        with self.write() as uow:
            conn = uow._conn
            if not conn.execute(delete(sites).where(sites.c.key == k)).rowcount:
                return False
            conn.execute(delete(ips).where(ips.c.owner == SITE_OWNER + k))
            _next_counter(conn, "sites")
        return True

    def sites_version(self) -> int:
        """A number that grows with every site put or deleted (0 before the first): the
        data plane reads `list_sites` again only when it differs from the one it last saw.
        One primary-key read; a site changed after the read moves it again."""
        with self.engine.connect() as conn:
            return _counter(conn, "sites")

    def dispose(self) -> None:
        """Close pooled connections (and the inline readers')."""
        if self._inline is not None:
            self._inline.close()
        self.engine.dispose()
