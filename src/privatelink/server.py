"""Composition root of `privatelink serve`: data directory, PKI, identity, store, app."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from privatelink.api.app import DEFAULT_PAGE_SIZE, create_app
from privatelink.core.limits import Limits
from privatelink.dataplane import names
from privatelink.dataplane.reconciler import Reconciler
from privatelink.dns.server import DnsServer
from privatelink.identity.credentials import (
    ClientCredentials,
    ensure_client,
    ensure_signing_key,
    write_credentials_file,
)
from privatelink.identity.pki import Pki, ensure_pki
from privatelink.identity.tokens import TokenIssuer
from privatelink.service import ControlPlane, Realizer, Realizers
from privatelink.store.sql import SqlRepository

CONFIG_FILE = "config.json"


def default_data_dir() -> Path:
    """$PRIVATELINK_DATA_DIR, else ~/.privatelink."""
    env = os.environ.get("PRIVATELINK_DATA_DIR")
    return Path(env) if env else Path.home() / ".privatelink"


@dataclass(frozen=True)
class ServerConfig:
    """Optional settings read from `<data-dir>/config.json`: limits and page size."""

    limits: Limits
    page_size: int
    netns_prefix: str

    @classmethod
    def load(cls, data_dir: Path) -> ServerConfig:
        """Read config.json if present (`{"limits": {...}, "page_size": N}`)."""
        path = data_dir / CONFIG_FILE
        raw = json.loads(path.read_text()) if path.exists() else {}
        return cls(
            limits=Limits.from_mapping(raw.get("limits", {})),
            page_size=int(raw.get("page_size", DEFAULT_PAGE_SIZE)),
            netns_prefix=names.check_prefix(
                str(raw.get("netns_prefix") or names.prefix_for(str(data_dir.resolve())))
            ),
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


def build(
    data_dir: Path,
    host: str,
    port: int,
    db_url: str | None = None,
    dataplane: bool = False,
    netns_prefix: str | None = None,
) -> Server:
    """Create (first start) or load the data directory and assemble the app."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = ensure_pki(data_dir)
    client = ensure_client(data_dir)
    issuer = TokenIssuer(ensure_signing_key(data_dir), [client])
    config = ServerConfig.load(data_dir)
    repo = SqlRepository(db_url) if db_url else SqlRepository.sqlite_in(data_dir)
    reconciler = None
    dns = None
    realizer: Realizer | None = None
    on_start: Callable[[], None] | None = None
    on_stop: Callable[[], None] | None = None
    if dataplane:
        prefix = netns_prefix or config.netns_prefix
        reconciler = Reconciler(repo, prefix, data_dir)
        # Each VNet's resolver (168.63.129.16 in its hub) follows the store like the
        # kernel state does, and re-checks its sockets whenever hubs may have changed.
        dns = DnsServer(repo, prefix)
        reconciler.add_listener(dns.hubs_changed)
        realizer = Realizers(reconciler, dns)
        on_start = _both(dns.start, reconciler.start)
        on_stop = _both(reconciler.stop, dns.stop)
    # A change waits (bounded) until the kernel has it, so clients rarely poll.
    plane = ControlPlane(repo, config.limits, realizer=realizer, realization_wait=5.0)
    app = create_app(
        plane,
        issuer,
        tenant_id=client.tenant_id,
        page_size=config.page_size,
        on_start=on_start,
        on_stop=on_stop,
    )
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1") else host
    url = f"https://{shown_host}:{port}"
    known = repo.list_subscriptions()
    if not known:
        repo.ensure_subscription(str(uuid.uuid4()), client.tenant_id, "privatelink default")
        known = repo.list_subscriptions()
    default = next((s for s in known if s["display_name"] == "privatelink default"), known[0])
    creds_file = write_credentials_file(
        data_dir, url, pki.ca_file, client, {"subscription_id": default["subscription_id"]}
    )
    return Server(app, pki, client, url, creds_file, repo, reconciler, dns)


def _both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    """Run two lifecycle steps in order; the second runs even if the first fails."""

    def run() -> None:
        try:
            first()
        finally:
            second()

    return run
