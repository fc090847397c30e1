"""Fixtures for the integration suite: the real `privatelink serve` over HTTPS.

`server` (SQLite, session), `pg_server` (PostgreSQL via `--db-url`, session),
`paged_server` (`config.json` page_size 2, session) and `backend_server` (parametrized
over SQLite and PostgreSQL) each start the CLI as a subprocess on a free 127.0.0.1
port with a temporary data directory, wait for it to answer 401 over TLS, and stop it
afterwards (terminate, then kill). A failing test gets the server's stderr attached.

Tests can't import this module (pytest runs with --import-mode=importlib), so the
shared helpers are reached through fixtures: `world` builds provider/consumer
topologies on a server, and `RunningServer` gives SDK clients and raw HTTP.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from arm_bodies import Rule, lb_body, provider_vnet_body
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.privatedns import PrivateDnsManagementClient
from identities import Identity, create_subscription, create_tenant
from serverproc import serve_process, tail_of

API_VERSION = "2026-03-01"
C = TypeVar("C", NetworkManagementClient, PrivateDnsManagementClient)
ARM_SCOPE = "https://management.azure.com/.default"
LOCATION = "eastus"

# Every running server, for attaching stderr to failing tests.
_RUNNING: list[RunningServer] = []


# --------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------


def new_sub() -> str:
    """A fresh subscription id: the default tenant's admin creates it with its first PUT.

    A read of it first answers 404 `SubscriptionNotFound` (a read never creates), and so
    does any use by another principal: `World.new_subscription` makes one for a tenant.
    """
    return str(uuid.uuid4())


def unique(prefix: str) -> str:
    """A fresh resource (group) name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class RunningServer:
    """A started `privatelink serve`: where it is, how to talk to it."""

    url: str
    ca_file: str
    credentials: dict[str, Any]
    data_dir: Path
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_path: Path
    _credential: ClientSecretCredential | None = field(default=None, repr=False)
    _http: httpx.Client | None = field(default=None, repr=False)
    # Open keep-alive connections make uvicorn's graceful shutdown wait: close them first.
    _clients: list[NetworkManagementClient | PrivateDnsManagementClient] = field(
        default_factory=list, repr=False
    )

    # --- SDK --------------------------------------------------------------------------

    @property
    def credential(self) -> ClientSecretCredential:
        if self._credential is None:
            c = self.credentials
            self._credential = ClientSecretCredential(
                c["tenant_id"],
                c["client_id"],
                c["client_secret"],
                authority=self.url,
                disable_instance_discovery=True,
                connection_verify=self.ca_file,
            )
        return self._credential

    def client(self, subscription: str) -> NetworkManagementClient:
        """An unmodified azure-mgmt-network client for one subscription."""
        return self._sdk(NetworkManagementClient, subscription)

    def dns_client(self, subscription: str) -> PrivateDnsManagementClient:
        """An unmodified azure-mgmt-privatedns client for one subscription."""
        return self._sdk(PrivateDnsManagementClient, subscription)

    def _sdk(self, cls: type[C], subscription: str) -> C:
        client = cls(
            self.credential,
            subscription,
            base_url=self.url,
            connection_verify=self.ca_file,
            polling_interval=0,
            retry_total=0,
        )
        self._clients.append(client)
        return client

    # --- raw HTTP ---------------------------------------------------------------------

    def token(self) -> str:
        return self.credential.get_token(ARM_SCOPE).token

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    @property
    def http(self) -> httpx.Client:
        """httpx client with the bearer token (pass `headers={"Authorization": ""}` to drop)."""
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.url,
                verify=self.ssl_context(),
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=30,
                trust_env=False,
            )
        return self._http

    def anonymous(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, verify=self.ssl_context(), timeout=30, trust_env=False
        )

    # --- diagnostics ------------------------------------------------------------------

    def stderr(self, tail: int = 80) -> str:
        return tail_of(self.stderr_path, tail)

    def close(self) -> None:
        while self._clients:
            self._clients.pop().close()
        # azure-core leaves the connection of an error response checked out of the pool
        # until the response is collected; uvicorn's graceful shutdown would wait for it.
        gc.collect()
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._credential is not None:
            self._credential.close()
            self._credential = None


@contextlib.contextmanager
def run_server(
    data_dir: Path,
    *,
    db_url: str | None = None,
    config: dict[str, Any] | None = None,
    dataplane_prefix: str | None = None,
) -> Iterator[RunningServer]:
    """Start `privatelink serve` in `data_dir`; yield when it answers; always stop it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (data_dir / "config.json").write_text(json.dumps(config))
    # Control plane only unless a test asks for the data plane with its own prefix.
    args = (
        ["--dataplane", "on", "--netns-prefix", dataplane_prefix]
        if dataplane_prefix
        else ["--dataplane", "off"]
    )
    if db_url:
        args += ["--db-url", db_url]
    with serve_process(data_dir, *args) as started:
        server = RunningServer(
            url=started.url,
            ca_file=started.ca_file,
            credentials=started.credentials,
            data_dir=data_dir,
            proc=started.proc,
            stderr_path=started.stderr_path,
            stdout_path=started.stdout_path,
        )
        _RUNNING.append(server)
        try:
            yield server
        finally:
            _RUNNING.remove(server)
            server.close()
            if started.proc.poll() is not None:
                print(
                    f"privatelink serve died during the tests (exit {started.proc.returncode}); "
                    f"stderr:\n{server.stderr()}",
                    file=sys.stderr,
                )


def _tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """The server on SQLite, shared by the session (tests use fresh names)."""
    d = _tmpdir("privatelink-it-")
    try:
        with run_server(d / "data") as s:
            yield s
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(postgres_url: str) -> Iterator[RunningServer]:
    """The server on PostgreSQL (`--db-url`)."""
    d = _tmpdir("privatelink-it-pg-")
    try:
        with run_server(d / "data", db_url=postgres_url) as s:
            yield s
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def paged_server() -> Iterator[RunningServer]:
    """A server with `config.json` = {"page_size": 2}, written before it starts."""
    d = _tmpdir("privatelink-it-paged-")
    try:
        with run_server(d / "data", config={"page_size": 2}) as s:
            yield s
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend_server(request: pytest.FixtureRequest) -> RunningServer:
    """The server on each store: SQLite, then PostgreSQL."""
    name = "server" if request.param == "sqlite" else "pg_server"
    s: RunningServer = request.getfixturevalue(name)
    return s


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for s in list(_RUNNING):
            text = s.stderr()
            if text.strip():
                report.sections.append((f"privatelink serve stderr ({s.url})", text))


# --------------------------------------------------------------------------------------
# Topology builders
# --------------------------------------------------------------------------------------


def base_path(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"


def expect_error(fn: Callable[[], Any], status: int, code: str) -> HttpResponseError:
    """Run `fn`; it must raise an HttpResponseError with this status and ARM code."""
    with pytest.raises(HttpResponseError) as info:
        fn()
    err = info.value
    assert err.status_code == status, f"status {err.status_code} != {status}: {err}"
    assert err.error is not None, f"no ARM error body: {err}"
    assert err.error.code == code, f"code {err.error.code} != {code}: {err}"
    return err


@dataclass
class Provider:
    """A provider subscription with a VNet (frontend/backend/nat) and a load balancer."""

    server: RunningServer
    client: NetworkManagementClient
    sub: str
    rg: str
    vnet: str
    lb: str
    location: str

    @property
    def base(self) -> str:
        return base_path(self.sub, self.rg)

    def subnet_id(self, name: str) -> str:
        return f"{self.base}/virtualNetworks/{self.vnet}/subnets/{name}"

    def fe_id(self, name: str = "fe") -> str:
        return f"{self.base}/loadBalancers/{self.lb}/frontendIPConfigurations/{name}"

    def pool_id(self, name: str = "be") -> str:
        return f"{self.base}/loadBalancers/{self.lb}/backendAddressPools/{name}"

    def pls_id(self, name: str) -> str:
        return f"{self.base}/privateLinkServices/{name}"

    def nat(
        self,
        name: str = "nat-1",
        *,
        primary: bool | None = True,
        ip: str | None = None,
        version: str = "IPv4",
        subnet: str = "nat",
    ) -> dict[str, Any]:
        props: dict[str, Any] = {
            "privateIPAllocationMethod": "Static" if ip else "Dynamic",
            "privateIPAddressVersion": version,
            "subnet": {"id": self.subnet_id(subnet)},
        }
        if primary is not None:
            props["primary"] = primary
        if ip:
            props["privateIPAddress"] = ip
        return {"name": name, "properties": props}

    def pls_body(
        self,
        *,
        fe: str | list[str] = "fe",
        nats: list[dict[str, Any]] | None = None,
        visibility: list[str] | None = None,
        auto_approval: list[str] | None = None,
        fqdns: list[str] | None = None,
        location: str | None = None,
    ) -> dict[str, Any]:
        fes = [fe] if isinstance(fe, str) else fe
        props: dict[str, Any] = {
            "loadBalancerFrontendIpConfigurations": [{"id": self.fe_id(f)} for f in fes],
            "ipConfigurations": nats if nats is not None else [self.nat()],
        }
        if visibility is not None:
            props["visibility"] = {"subscriptions": visibility}
        if auto_approval is not None:
            props["autoApproval"] = {"subscriptions": auto_approval}
        if fqdns is not None:
            props["fqdns"] = fqdns
        return {"location": location or self.location, "properties": props}

    def create_pls(self, name: str, **kw: Any) -> Any:
        body = self.pls_body(**kw)
        return self.client.private_link_services.begin_create_or_update(
            self.rg, name, body
        ).result()


@dataclass
class Consumer:
    """A consumer subscription with a VNet and subnet `pe`."""

    server: RunningServer
    client: NetworkManagementClient
    sub: str
    rg: str
    vnet: str
    location: str

    @property
    def base(self) -> str:
        return base_path(self.sub, self.rg)

    @property
    def subnet(self) -> str:
        return f"{self.base}/virtualNetworks/{self.vnet}/subnets/pe"

    def pe_body(
        self,
        target: str,
        *,
        manual: bool = True,
        message: str | None = None,
        conn: str = "conn",
        location: str | None = None,
    ) -> dict[str, Any]:
        props: dict[str, Any] = {"privateLinkServiceId": target}
        if message is not None:
            props["requestMessage"] = message
        key = "manualPrivateLinkServiceConnections" if manual else "privateLinkServiceConnections"
        return {
            "location": location or self.location,
            "properties": {
                "subnet": {"id": self.subnet},
                key: [{"name": conn, "properties": props}],
            },
        }

    def create_pe(self, name: str, target: str, **kw: Any) -> Any:
        return self.client.private_endpoints.begin_create_or_update(
            self.rg, name, self.pe_body(target, **kw)
        ).result()


class World:
    """Builds fresh provider and consumer topologies on one server.

    By default everything is built by the server's default tenant admin; `as_identity`
    gives a world whose topologies belong to another principal, and `new_tenant` one
    in a tenant of its own (a consumer in another Microsoft Entra tenant).

    A topology built without a subscription gets a fresh one: a new GUID for the
    default tenant (its admin's first PUT creates it), else one made through the admin
    API in the world's tenant (only the default tenant's admin creates subscriptions
    implicitly).
    """

    def __init__(self, server: RunningServer, identity: Identity | None = None) -> None:
        self.server = server
        self.identity = identity
        self._made: list[Identity] = []

    def client(self, sub: str) -> NetworkManagementClient:
        """azure-mgmt-network for `sub` as this world's principal."""
        if self.identity is None:
            return self.server.client(sub)
        return self.identity.network(sub)

    def admin(self) -> Identity:
        """The default tenant's admin (credentials.json) as an Identity."""
        identity = Identity.from_json(self.server.credentials)
        self._made.append(identity)
        return identity

    def as_identity(self, identity: Identity) -> World:
        """The same builders acting as another principal."""
        return World(self.server, identity)

    def new_tenant(self) -> World:
        """Builders acting as the admin of a new tenant (and in its subscription)."""
        identity = create_tenant(self.admin())
        self._made.append(identity)
        return World(self.server, identity)

    def close(self) -> None:
        while self._made:
            self._made.pop().close()

    def provider(
        self,
        sub: str | None = None,
        *,
        sku: str = "Standard",
        frontends: tuple[str, ...] = ("fe",),
        pools: tuple[str, ...] = ("be",),
        rules: list[Rule] | None = None,
        location: str = LOCATION,
        nat_policies: str = "Disabled",
    ) -> Provider:
        sub = sub or self._default_sub()
        rg = unique("rg-prov")
        client = self.client(sub)
        p = Provider(self.server, client, sub, rg, "vnet-prov", "lb-std", location)
        client.virtual_networks.begin_create_or_update(
            rg, p.vnet, provider_vnet_body(location, nat_policies=nat_policies)
        ).result()
        if rules is None:
            rules = [
                Rule(f"rule-{f}", f, pools[min(i, len(pools) - 1)]) for i, f in enumerate(frontends)
            ]
        client.load_balancers.begin_create_or_update(
            rg, p.lb, self.lb_body(p, sku=sku, frontends=frontends, pools=pools, rules=rules)
        ).result()
        return p

    @staticmethod
    def lb_body(p: Provider, **kw: Any) -> dict[str, Any]:
        """The body of `p`'s load balancer; `kw` as for arm_bodies.lb_body (`rules` needed)."""
        return lb_body(f"{p.base}/loadBalancers/{p.lb}", p.subnet_id("frontend"), p.location, **kw)

    def consumer(
        self,
        sub: str | None = None,
        *,
        prefix: str = "10.0.0.0/16",
        subnet: str = "10.0.1.0/24",
        location: str = LOCATION,
        rg: str | None = None,
    ) -> Consumer:
        sub = sub or self._default_sub()
        rg = rg or unique("rg-cons")
        client = self.client(sub)
        c = Consumer(self.server, client, sub, rg, "vnet-cons", location)
        client.virtual_networks.begin_create_or_update(
            rg,
            c.vnet,
            {
                "location": location,
                "properties": {
                    "addressSpace": {"addressPrefixes": [prefix]},
                    "subnets": [{"name": "pe", "properties": {"addressPrefix": subnet}}],
                },
            },
        ).result()
        return c

    def new_subscription(self) -> str:
        """A fresh subscription id in this world's tenant (see the class docstring)."""
        default_tenant = str(self.server.credentials["tenant_id"]).lower()
        if self.identity is None or self.identity.tenant_id.lower() == default_tenant:
            return new_sub()
        return create_subscription(self.admin(), self.identity.tenant_id)

    def existing_subscription(self) -> str:
        """A fresh subscription that exists already, so that a read of it answers 200.

        Its first write makes it (in the default tenant): an empty resource group.
        """
        sub = self.new_subscription()
        group = f"/subscriptions/{sub}/resourceGroups/{unique('rg-made')}"
        http = self.server.http if self.identity is None else self.identity.http()
        reply = http.put(f"{group}?api-version={API_VERSION}", json={"location": LOCATION})
        assert reply.status_code == 201, reply.text
        return sub

    def _default_sub(self) -> str:
        return self.new_subscription()


@pytest.fixture
def world(server: RunningServer) -> Iterator[World]:
    """Topology builders on the shared SQLite server."""
    w = World(server)
    yield w
    w.close()


@pytest.fixture(scope="session")
def helpers() -> Any:
    """Module-level helpers of this conftest (tests cannot import it)."""

    class _H:
        expect_error = staticmethod(expect_error)
        new_sub = staticmethod(new_sub)
        unique = staticmethod(unique)
        base_path = staticmethod(base_path)
        Rule = Rule
        World = World
        Identity = Identity
        API_VERSION = API_VERSION
        run_server = staticmethod(run_server)

    return _H
