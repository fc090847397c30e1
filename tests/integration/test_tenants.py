"""Tenants end to end: `privatelink tenant ...` against a real server, then the SDK as the
new tenant's admin.

One server for the module, in its own data directory (tenant names are global to a
server). The CLI runs as a subprocess, the way a user types it; azure-mgmt-network and
azure-identity run unmodified with the new tenant's credentials.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.network import NetworkManagementClient
from serverproc import free_port
from sqlalchemy import create_engine

from privatelink.store.directory import SqlDirectory

pytestmark = pytest.mark.integration

LOCAL = "127.0.0.1,localhost"
CLI_TIMEOUT_S = 60.0
FIELDS = [
    "url",
    "ca_file",
    "tenant_id",
    "client_id",
    "client_secret",
    "subscription_id",
    "object_id",
    "name",
]


@dataclass
class Cli:
    """`python -m privatelink.cli.main ... --data-dir DIR` as a subprocess."""

    data_dir: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            sys.executable,
            "-m",
            "privatelink.cli.main",
            *args,
            "--data-dir",
            str(self.data_dir),
        ]
        return subprocess.run(
            cmd,
            env=dict(os.environ, NO_PROXY=LOCAL, no_proxy=LOCAL),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )

    def json(self, *args: str) -> Any:
        proc = self.run(*args)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout)


@dataclass
class Tenancy:
    server: Any
    cli: Cli
    fabrikam: dict[str, Any]


@pytest.fixture(scope="module")
def tenancy(helpers: Any) -> Iterator[Tenancy]:
    """A server of its own, with tenant `fabrikam` made by `privatelink tenant create`."""
    d = Path(tempfile.mkdtemp(prefix="privatelink-it-tenants-"))
    try:
        with helpers.run_server(d / "data") as server:
            cli = Cli(server.data_dir)
            yield Tenancy(server, cli, cli.json("tenant", "create", "fabrikam"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Sdk:
    """azure-mgmt-network clients for one principal; closed at the end of the test."""

    def __init__(self, server: Any, tenant: str, client: str, secret: str) -> None:
        self.server = server
        self.credential = ClientSecretCredential(
            tenant,
            client,
            secret,
            authority=server.url,
            disable_instance_discovery=True,
            connection_verify=server.ca_file,
        )
        self.clients: list[NetworkManagementClient] = []

    def network(self, subscription: str) -> NetworkManagementClient:
        client = NetworkManagementClient(
            self.credential,
            subscription,
            base_url=self.server.url,
            connection_verify=self.server.ca_file,
            polling_interval=0,
            retry_total=0,
        )
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.credential.close()


@pytest.fixture
def sdk() -> Iterator[Any]:
    made: list[Sdk] = []

    def factory(server: Any, tenant: str, client: str, secret: str) -> Sdk:
        made.append(Sdk(server, tenant, client, secret))
        return made[-1]

    yield factory
    for s in made:
        s.close()


def _vnet(client: NetworkManagementClient, rg: str) -> Any:
    return client.virtual_networks.begin_create_or_update(
        rg,
        "vnet",
        {
            "location": "eastus",
            "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}},
        },
    ).result()


def test_tenant_create_prints_and_writes_credentials(tenancy: Tenancy) -> None:
    fab = tenancy.fabrikam
    creds = tenancy.server.credentials
    assert list(fab) == FIELDS
    assert fab["name"] == "fabrikam"
    assert (fab["url"], fab["ca_file"]) == (creds["url"], creds["ca_file"])
    assert fab["tenant_id"] != creds["tenant_id"]
    assert fab["subscription_id"] != creds["subscription_id"]
    path = tenancy.server.data_dir / "tenants" / "fabrikam.json"
    assert json.loads(path.read_text()) == fab
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_second_create_fails_clearly(tenancy: Tenancy) -> None:
    proc = tenancy.cli.run("tenant", "create", "fabrikam")
    assert proc.returncode == 1
    assert "TenantAlreadyExists: A tenant named 'fabrikam' already exists." in proc.stderr
    bad = tenancy.cli.run("tenant", "create", "no_underscores")
    assert bad.returncode == 1 and "InvalidTenantName" in bad.stderr


def test_tenant_list_and_show(tenancy: Tenancy) -> None:
    listed = tenancy.cli.json("tenant", "list")
    assert [t["name"] for t in listed] == ["default", "fabrikam"]
    assert listed[0]["tenant_id"] == tenancy.server.credentials["tenant_id"]
    assert listed[0]["client_id"] == tenancy.server.credentials["client_id"]
    assert "client_secret" not in json.dumps(listed)
    shown = tenancy.cli.json("tenant", "show", "fabrikam")
    assert shown["tenant_id"] == tenancy.fabrikam["tenant_id"]
    assert shown["object_id"] == tenancy.fabrikam["object_id"]
    assert tenancy.fabrikam["subscription_id"] in [
        s["subscription_id"] for s in shown["subscriptions"]
    ]
    missing = tenancy.cli.run("tenant", "show", "nobody")
    assert missing.returncode == 1 and "TenantNotFound" in missing.stderr


def test_subscription_create(tenancy: Tenancy, sdk: Any) -> None:
    made = tenancy.cli.json("subscription", "create", "--tenant", "fabrikam", "--name", "fab two")
    assert made["tenant_id"] == tenancy.fabrikam["tenant_id"]
    assert made["display_name"] == "fab two"
    assert made["owner_object_id"] == tenancy.fabrikam["object_id"]
    fab = tenancy.fabrikam
    client = sdk(tenancy.server, fab["tenant_id"], fab["client_id"], fab["client_secret"])
    assert _vnet(client.network(made["subscription_id"]), "rg-two").name == "vnet"
    unknown = tenancy.cli.run("subscription", "create", "--tenant", "nobody")
    assert unknown.returncode == 1 and "TenantNotFound" in unknown.stderr


def test_new_tenant_works_in_its_own_subscription_only(tenancy: Tenancy, sdk: Any) -> None:
    fab = tenancy.fabrikam
    as_fab = sdk(tenancy.server, fab["tenant_id"], fab["client_id"], fab["client_secret"])
    own = as_fab.network(fab["subscription_id"])
    assert _vnet(own, "rg-fab").name == "vnet"
    assert [v.name for v in own.virtual_networks.list("rg-fab")] == ["vnet"]

    default_sub = tenancy.server.credentials["subscription_id"]
    with pytest.raises(ClientAuthenticationError) as info:
        list(as_fab.network(default_sub).virtual_networks.list_all())
    err = info.value
    assert err.status_code == 401
    assert err.error is not None and err.error.code == "InvalidAuthenticationTokenTenant"
    default_tenant = tenancy.server.credentials["tenant_id"]
    authority = f"{tenancy.server.url}/{default_tenant}"
    assert err.message is not None
    assert (
        f"It must match the tenant 'https://sts.privatelink.local/{default_tenant}/' "
        f"associated with this subscription. Please use the authority (URL) '{authority}' "
        "to get the token."
    ) in err.message
    assert err.response is not None
    assert err.response.headers["WWW-Authenticate"].startswith(
        f'Bearer authorization_uri="{authority}"'
    )

    # And the other way round: the default admin on fabrikam's subscription.
    with pytest.raises(ClientAuthenticationError):
        list(tenancy.server.client(fab["subscription_id"]).virtual_networks.list_all())


def _not_found(fn: Any, sub: str) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        fn()
    assert info.value.status_code == 404
    assert info.value.error is not None and info.value.error.code == "SubscriptionNotFound"
    assert f"The subscription '{sub}' could not be found." in str(info.value.message)


def test_only_the_default_admin_creates_a_subscription_by_writing_in_it(
    tenancy: Tenancy, sdk: Any
) -> None:
    fab = tenancy.fabrikam
    as_fab = sdk(tenancy.server, fab["tenant_id"], fab["client_id"], fab["client_secret"])
    fresh = str(uuid.uuid4())
    # Another tenant's admin creates subscriptions explicitly (`subscription create`):
    # neither its reads nor its writes conjure one.
    _not_found(lambda: list(as_fab.network(fresh).virtual_networks.list_all()), fresh)
    _not_found(lambda: _vnet(as_fab.network(fresh), "rg-fab"), fresh)
    # The default tenant's admin: a read answers 404 and creates nothing ...
    as_default = tenancy.server.client(fresh)
    _not_found(lambda: list(as_default.virtual_networks.list_all()), fresh)

    def owned(tenant: str) -> list[str]:
        listed = tenancy.cli.json("tenant", "show", tenant)["subscriptions"]
        return [s["subscription_id"] for s in listed]

    assert fresh not in owned("fabrikam") and fresh not in owned("default")
    # ... its first PUT creates it, in the default tenant.
    assert _vnet(as_default, "rg-default").name == "vnet"
    assert fresh in owned("default") and fresh not in owned("fabrikam")
    with pytest.raises(ClientAuthenticationError):
        list(as_fab.network(fresh).virtual_networks.list_all())


def test_non_admin_gets_404_for_an_unknown_subscription(tenancy: Tenancy, sdk: Any) -> None:
    # A principal added to fabrikam's directory while the server runs signs in at once.
    fab = tenancy.fabrikam
    engine = create_engine(f"sqlite:///{tenancy.server.data_dir / 'privatelink.db'}")
    try:
        directory = SqlDirectory(engine)
        app = directory.create_application(fab["tenant_id"], "worker")
        directory.create_service_principal(fab["tenant_id"], app.app_id)
        _cred, secret = directory.add_password(fab["tenant_id"], app.object_id, "test")
    finally:
        engine.dispose()
    worker = sdk(tenancy.server, fab["tenant_id"], app.app_id, secret)
    fresh = str(uuid.uuid4())
    with pytest.raises(ResourceNotFoundError) as info:
        list(worker.network(fresh).virtual_networks.list_all())
    assert info.value.status_code == 404
    assert info.value.error is not None and info.value.error.code == "SubscriptionNotFound"
    assert f"The subscription '{fresh}' could not be found." in str(info.value.message)
    listed = tenancy.cli.json("tenant", "show", "fabrikam")["subscriptions"]
    assert fresh not in [s["subscription_id"] for s in listed]


def test_admin_api_refuses_other_tenants(tenancy: Tenancy) -> None:
    fab = tenancy.fabrikam
    verify = ssl.create_default_context(cafile=fab["ca_file"])
    with httpx.Client(base_url=fab["url"], verify=verify, trust_env=False) as http:
        token = http.post(
            f"/{fab['tenant_id']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": fab["client_id"],
                "client_secret": fab["client_secret"],
                "scope": "https://management.azure.com/.default",
            },
        ).json()["access_token"]
        reply = http.get("/privatelink/admin/tenants", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "AuthorizationFailed"
        assert http.get("/privatelink/admin/tenants").status_code == 401


def test_cli_says_when_no_server_answers(tenancy: Tenancy, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()  # nothing listens there
    creds = dict(tenancy.server.credentials, url=f"https://127.0.0.1:{port}")
    (data_dir / "credentials.json").write_text(json.dumps(creds))
    proc = Cli(data_dir).run("tenant", "list")
    assert proc.returncode == 1
    text = " ".join(proc.stderr.split())
    assert f"no privatelink server answers at https://127.0.0.1:{port}" in text
    assert f"start it with `privatelink serve --data-dir {data_dir}`" in text
