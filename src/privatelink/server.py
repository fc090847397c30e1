"""Composition root of `privatelink serve`: data directory, PKI, identity, store, app.

Tenancy is assembled here: the directory (tenants and principals) lives in the store's
database; `identity.json`'s client is imported as the tenant named `default` on the
first start (so existing data directories and `credentials.json` keep working); the
token issuer checks client credentials in the directory; the ARM gate checks each
subscription's tenant; the admin router serves `privatelink tenant ...`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from privatelink.api.app import DEFAULT_PAGE_SIZE, Tenancy, create_app
from privatelink.api.monitor import build_monitor_router
from privatelink.api.resource_health import build_resource_health_router
from privatelink.api.site import build_site_router
from privatelink.core.authorization import OWNER, RoleAssignment, RoleAssignmentExists
from privatelink.core.limits import Limits
from privatelink.core.principal import SubscriptionCreated, no_owner
from privatelink.core.private_endpoint import TYPE as PE_TYPE
from privatelink.core.throttle import ThrottlingConfig
from privatelink.dataplane import names
from privatelink.dataplane.metrics import MetricsSampler, endpoint_index
from privatelink.dataplane.reconciler import Reconciler
from privatelink.dns.server import DnsServer
from privatelink.identity.admin import AdminGate, build_admin_router
from privatelink.identity.credentials import (
    ClientCredentials,
    ensure_client,
    ensure_signing_key,
    write_credentials_file,
)
from privatelink.identity.pki import Pki, ensure_pki, restrict
from privatelink.identity.tokens import TokenIssuer, server_audiences
from privatelink.identity.user_admin import build_user_router
from privatelink.prometheus import PrometheusExporter, RequestMetrics
from privatelink.service import ControlPlane, Realizer, Realizers
from privatelink.store.activity import SqlActivityLog
from privatelink.store.directory import DirectoryError, SqlDirectory, Tenant
from privatelink.store.metrics import SqlMetricStore
from privatelink.store.rbac import SqlRbacStore
from privatelink.store.sql import SqlRepository

CONFIG_FILE = "config.json"
DEFAULT_TENANT_NAME = "default"
DEFAULT_SUBSCRIPTION_NAME = "privatelink default"


def default_data_dir() -> Path:
    """$PRIVATELINK_DATA_DIR, else ~/.privatelink."""
    env = os.environ.get("PRIVATELINK_DATA_DIR")
    return Path(env) if env else Path.home() / ".privatelink"


@dataclass(frozen=True)
class ServerConfig:
    """Optional settings read from `<data-dir>/config.json`.

    `{"limits": {...}, "page_size": N, "netns_prefix": P, "authorization": true,
    "activity_log": {"retention_days": 90}}`; `authorization: false` turns RBAC
    enforcement off (every authenticated caller may do everything, as before tenants;
    benchmarks compare against it). `"throttling": {...}` sets ARM's request budgets and
    the sign-in lockout (`core.throttle.ThrottlingConfig`; `{"enabled": false}` turns both
    off, `{"scale": 1}` gives Azure's own limits). `"limits": {"public_ip_range":
    "198.18.0.0/15"}` sets where public IP addresses come from (an IPv4 /24 or larger).
    """

    limits: Limits
    page_size: int
    netns_prefix: str
    authorization: bool = True
    activity_log_retention_days: int = 90
    throttling: ThrottlingConfig = field(default_factory=ThrottlingConfig)
    # Conntrack entries per hub at which new flows are refused (data plane; default 90 %
    # of nf_conntrack_max): `"conntrack_limit": N`.
    conntrack_limit: int | None = None
    # Metrics (Azure Monitor's and Prometheus'): `"metrics": {"retention_days": 30,
    # "sample_seconds": 60, "downsample_after_hours": 24}`.
    metrics_retention_days: int = 30
    metrics_sample_seconds: float = 60.0
    metrics_downsample_after_hours: float = 24.0
    # Processes of the PROXY relay (dataplane/proxy/workers.py): `"proxy_workers": N`;
    # default one per core.
    proxy_workers: int | None = None

    @classmethod
    def load(cls, data_dir: Path) -> ServerConfig:
        """Read config.json if present."""
        path = data_dir / CONFIG_FILE
        raw = json.loads(path.read_text()) if path.exists() else {}
        return cls(
            limits=Limits.from_mapping(raw.get("limits", {})),
            page_size=int(raw.get("page_size", DEFAULT_PAGE_SIZE)),
            netns_prefix=names.check_prefix(
                str(raw.get("netns_prefix") or names.prefix_for(str(data_dir.resolve())))
            ),
            authorization=bool(raw.get("authorization", True)),
            activity_log_retention_days=int(
                (raw.get("activity_log") or {}).get("retention_days", 90)
            ),
            throttling=ThrottlingConfig.from_mapping(raw.get("throttling")),
            conntrack_limit=int(raw["conntrack_limit"]) if raw.get("conntrack_limit") else None,
            metrics_retention_days=int((raw.get("metrics") or {}).get("retention_days", 30)),
            metrics_sample_seconds=float((raw.get("metrics") or {}).get("sample_seconds", 60)),
            metrics_downsample_after_hours=float(
                (raw.get("metrics") or {}).get("downsample_after_hours", 24)
            ),
            proxy_workers=int(raw["proxy_workers"]) if raw.get("proxy_workers") else None,
        )


@dataclass
class Server:
    """Everything `serve` starts, built but not yet listening."""

    app: FastAPI
    pki: Pki
    client: ClientCredentials
    url: str
    credentials_file: Path
    repo: SqlRepository
    reconciler: Reconciler | None
    dns: DnsServer | None = None
    directory: SqlDirectory | None = None
    issuer: TokenIssuer | None = None
    metrics: SqlMetricStore | None = None
    sampler: MetricsSampler | None = None
    metrics_addr: str | None = None  # where Prometheus scrapes (`--metrics-addr`)


def dataplane_available() -> str | None:
    """None when this host can run the data plane, else why not."""
    if sys.platform != "linux":
        return "the data plane needs Linux"
    if os.geteuid() != 0:
        return "the data plane needs root (network namespaces, nftables)"
    for tool in ("ip", "nft", "conntrack"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (make deps-system installs it)"
    return None


def ensure_default_tenant(directory: SqlDirectory, client: ClientCredentials) -> Tenant:
    """The tenant of `identity.json`'s client, imported into the directory if missing.

    On a first start (or an existing data directory from before tenants) the client
    becomes the admin of the tenant named `default`, with the same tenant id, client id,
    object id and secret, so every token and credentials file handed out keeps working.
    Should the name be taken (a database shared with another data directory), the
    tenant is named `default-<first 8 of its id>`.
    """
    found = directory.get_tenant(client.tenant_id)
    if found is not None:
        return found
    name = DEFAULT_TENANT_NAME
    if directory.find_tenant(name) is not None:
        name = f"{DEFAULT_TENANT_NAME}-{client.tenant_id[:8]}"
    try:
        tenant, _admin, _secret = directory.create_tenant(
            name,
            tenant_id=client.tenant_id,
            admin_display_name="privatelink admin",
            admin_app_id=client.client_id,
            admin_object_id=client.object_id,
            admin_secret=client.client_secret,
        )
    except DirectoryError:
        # Another process sharing the database imported it first.
        again = directory.get_tenant(client.tenant_id)
        if again is None:
            raise
        return again
    return tenant


def build(
    data_dir: Path,
    host: str,
    port: int,
    db_url: str | None = None,
    dataplane: bool = False,
    netns_prefix: str | None = None,
    on_subscription_created: SubscriptionCreated = no_owner,
    metrics_addr: str | None = None,
) -> Server:
    """Create (first start) or load the data directory and assemble the app.

    `on_subscription_created(subscription, tenant, owner_object_id)` runs whenever a
    subscription comes to exist (default one, first use by a tenant admin, admin API).
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = ensure_pki(data_dir)  # also makes the data directory 700
    client = ensure_client(data_dir)
    config = ServerConfig.load(data_dir)
    if db_url:
        repo = SqlRepository(db_url)
    else:
        _restrict_sqlite(data_dir)
        repo = SqlRepository.sqlite_in(data_dir)
        _restrict_sqlite(data_dir)
    directory = SqlDirectory(repo.engine)
    ensure_default_tenant(directory, client)
    arm_audiences, graph_audiences = server_audiences(host, port)
    issuer = TokenIssuer(
        ensure_signing_key(data_dir),
        directory,
        arm_audiences=arm_audiences,
        graph_audiences=graph_audiences,
    )
    reconciler = None
    dns = None
    sampler = None
    metric_store = SqlMetricStore(
        repo.engine,
        retention_days=config.metrics_retention_days,
        downsample_after=timedelta(hours=config.metrics_downsample_after_hours),
    )
    realizer: Realizer | None = None
    on_start: Callable[[], None] | None = None
    on_stop: Callable[[], None] | None = None
    if dataplane:
        prefix = netns_prefix or config.netns_prefix
        reconciler = Reconciler(
            repo,
            prefix,
            data_dir,
            conntrack_limit=config.conntrack_limit,
            public_range=config.limits.public_ip_range,
            proxy_workers=config.proxy_workers,
        )
        # Each VNet's resolver (168.63.129.16 in its hub) follows the store like the
        # kernel state does, and re-checks its sockets whenever hubs may have changed.
        dns = DnsServer(repo, prefix)
        reconciler.add_listener(dns.hubs_changed)
        realizer = Realizers(reconciler, dns)
        # Metrics: the kernel's counters and the probes, sampled into the store.
        sampler = MetricsSampler(
            reconciler,
            metric_store,
            endpoints=lambda: endpoint_index(repo.iter_all(PE_TYPE)),
            interval=config.metrics_sample_seconds,
        )
        on_start = _both(_both(dns.start, reconciler.start), sampler.start)
        # The loop finishes the sync in progress (an nft transaction is atomic anyway)
        # and stops its probes; nothing is torn down: flows go on, a restart resumes.
        on_stop = _both(_both(sampler.stop, reconciler.stop), dns.stop)
    # Prometheus (`--metrics-addr`): the sampler's figures, the syncs, the API's requests.
    exporter = None
    if metrics_addr:
        exporter = PrometheusExporter(
            metrics_addr,
            sampler,
            reconciler,
            connection_states=lambda: _connection_states(repo),
        )
        if reconciler is not None and exporter.sync_observer is not None:
            reconciler.add_listener(exporter.sync_observer)
        on_start = _both(on_start, exporter.start) if on_start is not None else exporter.start
        on_stop = _both(exporter.stop, on_stop) if on_stop is not None else exporter.stop
    # After the last request and the data plane: close the store's connections (SQLite
    # folds its WAL into the database file).
    on_stop = _both(on_stop, repo.dispose) if on_stop is not None else repo.dispose
    # A change waits (bounded) until the kernel has it, so clients rarely poll.
    plane = ControlPlane(repo, config.limits, realizer=realizer, realization_wait=5.0)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1") else host
    url = f"https://{shown_host}:{port}"
    rbac = SqlRbacStore(repo.engine)
    activity = SqlActivityLog(repo.engine, retention_days=config.activity_log_retention_days)

    def subscription_created(subscription: str, tenant: str, owner: str) -> None:
        make_owner(rbac, subscription, tenant, owner)
        on_subscription_created(subscription, tenant, owner)

    tenancy = Tenancy(
        subscriptions=repo,
        directory=directory,
        rbac=rbac,
        activity_log=activity,
        access_for=rbac.access_for if config.authorization else None,
        on_subscription_created=subscription_created,
        extra_routers=(
            build_admin_router(
                issuer,
                directory,
                repo,
                client.tenant_id,
                server_url=url,
                ca_file=str(pki.ca_file.resolve()),
                on_subscription_created=subscription_created,
            ),
            # On-premises sites (`privatelink site ...`); a change pokes the data plane.
            build_site_router(
                AdminGate(issuer, directory, client.tenant_id),
                repo,
                config.limits,
                on_change=plane.poke,
            ),
            # A tenant's users (`privatelink user ...`), for its admin or the server's.
            build_user_router(AdminGate(issuer, directory, client.tenant_id), directory),
            # Azure Monitor's metricDefinitions and metrics under every resource.
            build_monitor_router(metric_store),
            # Resource Health: a service out of NAT ports is Degraded, and says why.
            build_resource_health_router(sampler.exhausted if sampler is not None else None),
        ),
    )
    app = create_app(
        plane,
        issuer,
        tenancy,
        tenant_id=client.tenant_id,
        page_size=config.page_size,
        on_start=on_start,
        on_stop=on_stop,
        throttling=config.throttling,
        # The rule health API reads the probes of the data plane in this process.
        rule_health=reconciler.rule_health if reconciler is not None else None,
    )
    if exporter is not None:
        app.add_middleware(RequestMetrics, registry=exporter.registry)  # outermost
    backfill_owners(repo, directory, rbac)
    known = _subscriptions_of(repo, client.tenant_id)
    if not known:
        sub = str(uuid.uuid4())
        if repo.ensure_subscription(sub, client.tenant_id, DEFAULT_SUBSCRIPTION_NAME):
            subscription_created(sub, client.tenant_id, client.object_id)
        known = _subscriptions_of(repo, client.tenant_id)
    default = next((s for s in known if s["display_name"] == DEFAULT_SUBSCRIPTION_NAME), known[0])
    creds_file = write_credentials_file(
        data_dir, url, pki.ca_file, client, {"subscription_id": default["subscription_id"]}
    )
    return Server(
        app,
        pki,
        client,
        url,
        creds_file,
        repo,
        reconciler,
        dns,
        directory=directory,
        issuer=issuer,
        metrics=metric_store,
        sampler=sampler,
        metrics_addr=metrics_addr,
    )


def _connection_states(repo: SqlRepository) -> list[str]:
    """The state of every private endpoint's connection, as the endpoint sees it."""
    states = []
    for pe in repo.iter_all(PE_TYPE):
        connection = getattr(pe, "connection", None)
        if connection is not None:
            states.append(str(connection.status))
    return states


def _restrict_sqlite(data_dir: Path) -> None:
    """The SQLite database and its WAL files: mode 600, whatever they had before.

    A missing database is created empty (a valid SQLite file) with mode 600, so that it
    is never readable by others, even before the first chmod.
    """
    db = data_dir / SqlRepository.SQLITE_FILE
    # Only when missing (O_EXCL): never open and close a database file this process may
    # hold SQLite connections on. close() drops every POSIX lock of the process on the
    # file, SQLite's too; the next process to close the database then deletes the WAL
    # under us, and committed writes are lost (tests/unit/test_sqlite_shared_file.py).
    with contextlib.suppress(FileExistsError):
        os.close(os.open(db, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        restrict(path, 0o600)


def _subscriptions_of(repo: SqlRepository, tenant_id: str) -> list[dict[str, str]]:
    return [s for s in repo.list_subscriptions() if s["tenant_id"].lower() == tenant_id.lower()]


def make_owner(rbac: SqlRbacStore, subscription: str, tenant: str, owner: str) -> None:
    """Assign `Owner` at a subscription to its creator (a tenant admin)."""
    assignment = RoleAssignment(
        name=str(uuid.uuid4()),
        scope=f"/subscriptions/{subscription.lower()}",
        role_definition_id=OWNER.id,
        principal_id=owner,
        principal_type="ServicePrincipal",
        created_by=owner,
    )
    with contextlib.suppress(RoleAssignmentExists):  # made concurrently, or already owner
        rbac.create_assignment(assignment, tenant)


def backfill_owners(repo: SqlRepository, directory: SqlDirectory, rbac: SqlRbacStore) -> int:
    """Give subscriptions from before RBAC (no role assignment at all) their tenant's admin
    as Owner, so an existing data directory keeps working for its admin; returns how many."""
    done = 0
    for record in repo.list_subscriptions():
        scope = f"/subscriptions/{record['subscription_id']}"
        if rbac.assignments_at(scope, include_above=False):
            continue
        tenant = directory.get_tenant(record["tenant_id"])
        if tenant is not None:
            make_owner(rbac, record["subscription_id"], tenant.tenant_id, tenant.admin_object_id)
            done += 1
    return done


def _both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    """Run two lifecycle steps in order; the second runs even if the first fails."""

    def run() -> None:
        try:
            first()
        finally:
            second()

    return run
