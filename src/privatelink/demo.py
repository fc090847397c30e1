"""`make demo`: start a privatelink server and walk through the private link workflow.

Drives the server with Microsoft's own SDKs (azure-mgmt-network, -privatedns,
-authorization, -monitor), exactly as a user's automation would, with one principal per
party, each in its own tenant:

- the provider is the default tenant's admin (`credentials.json`): it publishes a service
  behind a Standard Load Balancer, and makes two principals of its own tenant through
  Microsoft Graph, a Reader and an approver holding a custom role with only the approval
  action;
- the consumer is the admin of another tenant, made with `privatelink tenant create`, in
  that tenant's subscription (with an overlapping address space): it finds the service by
  alias and asks for a connection, and its attempt to approve it itself is refused;
- a stranger, the admin of a third tenant, can't see the service.

The approver approves, traffic flows through the endpoint and by name, the provider rejects
and deletes the connection, deletes the service, and reads in the service's activity log
who did what.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
from rich.console import Console
from rich.table import Table

console = Console()

REGION = "eastus"
ZONE = "contoso.example"
FQDN = f"svc.{ZONE}"  # the name the provider publishes; the consumer resolves it privately
PROVIDER_RG = "provider-rg"
CONSUMER_RG = "consumer-rg"
CONSUMER_TENANT = "fabrikam"
STRANGER_TENANT = "northwind"
ARM_SCOPE = "https://management.azure.com/.default"
READER_ROLE = "acdd72a7-3385-48ef-bd42-f606fba81ae7"  # the built-in Reader, Azure's GUID
NETWORK_CONTRIBUTOR_ROLE = "4d97b98b-1d4f-4787-a291-c67834d212e7"  # Azure's GUID
APPROVER_ROLE_NAME = "Private Link Connection Approver"
APPROVAL_ACTION = "Microsoft.Network/privateLinkServices/privateEndpointConnectionsApproval/action"
CORRELATION_HEADER = "x-ms-correlation-request-id"
#: The demo's requests that decide a connection, and how the activity log summary says it.
VERDICTS = {"approve": "approved by", "reject": "rejected by"}
_MISSING_ACTION = re.compile(r"perform action '([^']+)'")

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


WHOAMI = (
    "import http.server, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = f'hello from the provider backend; I saw you as {self.client_address[0]}\\n'\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(body.encode())\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"
)


class Traffic:
    """Runs commands inside the demo's VMs (NIC namespaces) with `privatelink exec`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.procs: list[subprocess.Popen[str]] = []

    def _argv(self, nic: str, *command: str) -> list[str]:
        cli = [sys.executable, "-m", "privatelink.cli.main", "exec"]
        return [*cli, "--data-dir", str(self.data_dir), "--nic", nic, "--", *command]

    def start(self, nic: str, *command: str) -> None:
        """Start a long-running program in a VM."""
        self.procs.append(
            subprocess.Popen(
                self._argv(nic, *command),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )

    def curl(self, nic: str, url: str) -> str | None:
        """`curl` from a VM; the page, or None when nothing answered."""
        proc = subprocess.run(
            self._argv(nic, "curl", "-s", "-m", "2", url),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout else None

    def site_curl(self, site: str, ip: str, url: str) -> str | None:
        """`curl` from a host of an on-premises site (`privatelink exec --site`)."""
        cli = [sys.executable, "-m", "privatelink.cli.main", "exec", "--data-dir"]
        argv = [*cli, str(self.data_dir), "--site", site, "--ip", ip]
        proc = subprocess.run(
            [*argv, "--", "curl", "-s", "-m", "2", url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout else None

    def curl_until(self, nic: str, url: str, timeout: float = 15.0) -> str | None:
        """curl until a page comes back (bounded in time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            page = self.curl(nic, url)
            if page:
                return page
            time.sleep(0.2)
        return None

    def stop(self) -> None:
        """Stop every program started in a VM."""
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def running_server(
    data_dir: Path, dataplane: bool, timeout: float = 30.0
) -> Iterator[dict[str, Any]]:
    """Run `privatelink serve` as a child process until the block ends."""
    port = _free_port()
    cmd = [sys.executable, "-m", "privatelink.cli.main", "serve", "--data-dir", str(data_dir)]
    cmd += ["--dataplane", "on" if dataplane else "off"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        creds_file = data_dir / "credentials.json"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
            if creds_file.exists():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            time.sleep(0.05)
        creds = json.loads(creds_file.read_text())
        if creds["url"] != f"https://127.0.0.1:{port}":
            raise RuntimeError(f"unexpected server url {creds['url']}")
        yield creds
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- principals ------------------------------------------------------------------------


@dataclass
class Principal:
    """A service principal the demo acts as: its credentials, home subscription and clients.

    Tokens come from the server (`authority` is its url), as they would from Entra ID.
    """

    label: str
    url: str
    ca_file: str
    tenant_id: str
    client_id: str
    client_secret: str
    subscription_id: str
    _credential: Any = field(default=None, repr=False)
    _claims: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, label: str, raw: dict[str, Any]) -> Principal:
        """From `credentials.json` or what `privatelink tenant create` prints."""
        return cls(
            label,
            raw["url"],
            raw["ca_file"],
            raw["tenant_id"],
            raw["client_id"],
            raw["client_secret"],
            raw["subscription_id"],
        )

    @property
    def credential(self) -> Any:
        """An azure-identity credential for this principal."""
        if self._credential is None:
            from azure.identity import ClientSecretCredential

            self._credential = ClientSecretCredential(
                self.tenant_id,
                self.client_id,
                self.client_secret,
                authority=self.url,
                disable_instance_discovery=True,
                connection_verify=self.ca_file,
            )
        return self._credential

    @property
    def claims(self) -> dict[str, Any]:
        """The claims of its ARM token (`tid`, `oid`, `appid`): who the server sees."""
        if self._claims is None:
            token = self.credential.get_token(ARM_SCOPE).token
            # Only read, to show them: the server checks the signature of every token it gets.
            self._claims = dict(jwt.decode(token, options={"verify_signature": False}))
        return self._claims

    @property
    def object_id(self) -> str:
        return str(self.claims["oid"])

    def sdk(self, cls: Callable[..., T], subscription: str | None = None) -> T:
        """An azure-mgmt-* client as this principal (its own subscription by default)."""
        return cls(
            self.credential,
            subscription or self.subscription_id,
            base_url=self.url,
            connection_verify=self.ca_file,
            polling_interval=0,
            retry_total=0,
        )

    def graph(self) -> httpx.Client:
        """httpx on the server's Microsoft Graph, with a Graph token of this principal."""
        token = self.credential.get_token(f"{self.url}/graph/.default").token
        return httpx.Client(
            base_url=f"{self.url}/graph/v1.0",
            verify=ssl.create_default_context(cafile=self.ca_file),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            trust_env=False,
        )


def privatelink_json(data_dir: Path, *args: str) -> dict[str, Any]:
    """`privatelink ARGS --data-dir DIR`, shown as typed; the JSON it prints."""
    console.print(f"    $ privatelink {' '.join(args)} --data-dir {data_dir}")
    cli = [sys.executable, "-m", "privatelink.cli.main"]
    proc = subprocess.run(
        [*cli, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"demo failed: privatelink {' '.join(args)}: {proc.stderr.strip()}")
    made: dict[str, Any] = json.loads(proc.stdout)
    return made


def create_tenant(data_dir: Path, name: str, label: str) -> Principal:
    """A new tenant, its admin and subscription, with `privatelink tenant create NAME`."""
    return Principal.from_json(label, privatelink_json(data_dir, "tenant", "create", name))


def _graph_json(reply: httpx.Response) -> dict[str, Any]:
    if reply.status_code not in (200, 201):
        raise SystemExit(f"demo failed: Graph {reply.request.url}: {reply.text}")
    body: dict[str, Any] = reply.json()
    return body


def create_service_principal(admin: Principal, name: str, label: str) -> Principal:
    """A service principal in the admin's tenant, made through Graph as `az ad sp` does."""
    with admin.graph() as graph:
        app = _graph_json(graph.post("/applications", json={"displayName": name}))
        _graph_json(graph.post("/servicePrincipals", json={"appId": app["appId"]}))
        secret = _graph_json(
            graph.post(
                f"/applications/{app['id']}/addPassword",
                json={"passwordCredential": {"displayName": "demo"}},
            )
        )
    return Principal(
        label,
        admin.url,
        admin.ca_file,
        admin.tenant_id,
        app["appId"],
        secret["secretText"],
        admin.subscription_id,
    )


class Requests:
    """The demo's own writes, by the correlation id each one sends, to name them in the log."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def tag(self, name: str) -> dict[str, Any]:
        """Keyword arguments for an SDK call: a fresh `x-ms-correlation-request-id`."""
        correlation = str(uuid.uuid4())
        self.names[correlation] = name
        return {"headers": {CORRELATION_HEADER: correlation}}


# --- printing --------------------------------------------------------------------------


def _status(endpoint: Any) -> str:
    """The state of an endpoint's (manual) connection."""
    conn = (endpoint.manual_private_link_service_connections or [])[0]
    return str(conn.private_link_service_connection_state.status)


def step(text: str) -> None:
    """Print one scenario step."""
    console.print(f"\n[bold cyan]==>[/] [bold]{text}[/]")


def show(label: str, value: object) -> None:
    """Print one observed value."""
    console.print(f"    {label}: [green]{value}[/]")


def folding_table(*headers: str) -> Table:
    """A table whose long cells (ids) wrap in a narrow terminal rather than being cut."""
    table = Table()
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def refused(exc: Any) -> str:
    """`status code` of an ARM error, and the action it lacks when it says so."""
    code = exc.error.code if exc.error else ""
    lacks = _MISSING_ACTION.search(str(exc.error.message if exc.error else ""))
    return f"{exc.status_code} {code}" + (f" (lacks {lacks.group(1)})" if lacks else "")


def make_reader_and_approver(
    provider: Principal, pls_id: str, requests: Requests
) -> tuple[Principal, Principal]:
    """Two principals of the provider's tenant: a Reader on its group, an approver.

    Made as a user makes them: service principals through Microsoft Graph, a custom role
    holding only the approval action and the assignments through azure-mgmt-authorization.
    """
    from azure.mgmt.authorization import AuthorizationManagementClient

    reader = create_service_principal(provider, "contoso-reader", "reader")
    approver = create_service_principal(provider, "contoso-approver", "approver")
    sub = f"/subscriptions/{provider.subscription_id}"
    authz = provider.sdk(AuthorizationManagementClient)
    role = str(uuid.uuid4())
    authz.role_definitions.create_or_update(
        sub,
        role,
        {
            "properties": {
                "roleName": APPROVER_ROLE_NAME,
                "description": "Approves and rejects private endpoint connections, nothing else",
                "type": "CustomRole",
                "permissions": [{"actions": [APPROVAL_ACTION], "notActions": []}],
                "assignableScopes": [sub],
            }
        },
    )
    grants = (
        (reader, f"{sub}/resourceGroups/{PROVIDER_RG}", READER_ROLE, "assign Reader"),
        (approver, pls_id, role, "assign approver role"),
    )
    for who, scope, role_guid, tag in grants:
        authz.role_assignments.create(
            scope,
            str(uuid.uuid4()),
            {
                "properties": {
                    "roleDefinitionId": (
                        f"{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"
                    ),
                    "principalId": who.object_id,
                    "principalType": "ServicePrincipal",
                }
            },
            **requests.tag(tag),
        )
    show("reader", f"object {reader.object_id}, Reader on {PROVIDER_RG}")
    show("approver", f"object {approver.object_id}, a custom role on the service:")
    show(f"    {APPROVER_ROLE_NAME!r}", f"{APPROVAL_ACTION} only")
    return reader, approver


def show_activity_log(
    provider: Principal,
    pls_id: str,
    since: datetime,
    requests: Requests,
    names: dict[str, str],
) -> None:
    """The service's activity log as the provider reads it, and who approved and rejected.

    What `az monitor activity-log list --resource-id PLS --start-time T` shows, through
    azure-mgmt-monitor: one `EndRequest` event per request, on the service and its
    children (connections, role assignments), oldest first here. `names` labels callers by
    object id; the request column names the demo's own calls by their correlation id.
    """
    from azure.mgmt.monitor import MonitorManagementClient

    monitor = provider.sdk(MonitorManagementClient)
    events = monitor.activity_logs.list(
        filter=(
            f"eventTimestamp ge '{since.strftime('%Y-%m-%dT%H:%M:%SZ')}' "
            f"and resourceUri eq '{pls_id}'"
        )
    )
    ended = sorted(
        (e for e in events if e.event_name and e.event_name.value == "EndRequest"),
        key=lambda e: e.event_timestamp or since,
    )
    table = folding_table("time (UTC)", "request", "caller (oid)", "who", "operation", "status")
    verdicts: list[tuple[str, str]] = []
    for event in ended:
        caller = str(event.caller or "")
        request = requests.names.get(str(event.correlation_id), "")
        status = event.status.value if event.status else ""
        sub_status = event.sub_status.value if event.sub_status else ""
        operation = event.operation_name.value if event.operation_name else ""
        table.add_row(
            (event.event_timestamp or since).strftime("%H:%M:%S"),
            request,
            caller,
            names.get(caller.lower(), ""),
            str(operation).removeprefix("Microsoft.Network/"),
            f"{status} ({sub_status})" if sub_status else status,
        )
        if request in VERDICTS and status == "Succeeded":
            verdicts.append((VERDICTS[request], f"{names.get(caller.lower(), '?')} ({caller})"))
    show(
        "read as", "one row per request, oldest first; request = the demo's call, by correlation id"
    )
    console.print(table)
    for label, value in verdicts:
        show(label, value)
    show(
        "not in it",
        "the consumer's cross-tenant attempt: refused at authentication, which is not logged",
    )


# --- the scenario ------------------------------------------------------------------------


def run_scenario(creds: dict[str, Any], data_dir: Path, traffic: Traffic | None) -> None:
    """The private link workflow of the seed, step by step, one principal per party."""
    try:
        from azure.core.exceptions import HttpResponseError
        from azure.identity import ClientSecretCredential  # noqa: F401
        from azure.mgmt.authorization import AuthorizationManagementClient  # noqa: F401
        from azure.mgmt.monitor import MonitorManagementClient  # noqa: F401
        from azure.mgmt.network import NetworkManagementClient
        from azure.mgmt.privatedns import PrivateDnsManagementClient
    except ImportError as exc:  # pragma: no cover - make demo installs them
        raise SystemExit(
            "the demo needs azure-mgmt-network, -privatedns, -authorization, -monitor and "
            f"azure-identity: {exc}"
        ) from exc

    started = datetime.now(UTC) - timedelta(minutes=1)
    requests = Requests()

    step("Who is who: one principal per party, each in its own tenant")
    provider_id = Principal.from_json("contoso admin (provider)", creds)
    show("provider", "the default tenant's admin, from credentials.json")
    show("consumer and stranger", "the admins of two new tenants, made with the admin API:")
    consumer_id = create_tenant(data_dir, CONSUMER_TENANT, f"{CONSUMER_TENANT} admin (consumer)")
    stranger_id = create_tenant(data_dir, STRANGER_TENANT, f"{STRANGER_TENANT} admin (stranger)")
    show("their credentials", f"printed as JSON, and kept in {data_dir}/tenants/<name>.json")
    table = folding_table("principal", "tenant id (tid)", "object id (oid)", "subscription")
    for who in (provider_id, consumer_id, stranger_id):
        table.add_row(who.label, who.claims["tid"], who.object_id, who.subscription_id)
    console.print(table)
    if len({w.claims["tid"] for w in (provider_id, consumer_id, stranger_id)}) != 3:
        raise SystemExit("demo failed: the parties do not have tenants of their own")
    show("tid and oid", "the claims of each principal's token, as the server sees them")
    show("provider and consumer", "different principals in different tenants")
    names = {w.object_id.lower(): w.label for w in (provider_id, consumer_id, stranger_id)}

    provider = provider_id.sdk(NetworkManagementClient)
    consumer = consumer_id.sdk(NetworkManagementClient)
    stranger = stranger_id.sdk(NetworkManagementClient)
    consumer_dns = consumer_id.sdk(PrivateDnsManagementClient)
    psub, csub = provider_id.subscription_id, consumer_id.subscription_id

    def zone_records() -> list[tuple[str, list[str]]]:
        return [
            (r.name or "", [a.ipv4_address or "" for a in r.a_records or []])
            for r in consumer_dns.record_sets.list_by_type(CONSUMER_RG, ZONE, "A")
        ]

    net = f"/subscriptions/{psub}/resourceGroups/{PROVIDER_RG}/providers/Microsoft.Network"
    cnet = f"/subscriptions/{csub}/resourceGroups/{CONSUMER_RG}/providers/Microsoft.Network"

    step("Provider: virtual network 10.0.0.0/16 with frontend, backend and NAT subnets")
    vnet = provider.virtual_networks.begin_create_or_update(
        PROVIDER_RG,
        "provider-vnet",
        {
            "location": REGION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [
                    {"name": "frontend", "properties": {"addressPrefix": "10.0.1.0/24"}},
                    {"name": "backend", "properties": {"addressPrefix": "10.0.2.0/24"}},
                    {
                        "name": "nat",
                        "properties": {
                            "addressPrefix": "10.0.3.0/24",
                            "privateLinkServiceNetworkPolicies": "Disabled",
                        },
                    },
                ],
            },
        },
    ).result()
    show("subnets", ", ".join(f"{s.name}={s.address_prefix}" for s in vnet.subnets or []))

    step("Provider: Standard internal load balancer, TCP 80 -> backend 8080, TCP probe")
    lb_id = f"{net}/loadBalancers/provider-lb"
    lb = provider.load_balancers.begin_create_or_update(
        PROVIDER_RG,
        "provider-lb",
        {
            "location": REGION,
            "sku": {"name": "Standard"},
            "properties": {
                "frontendIPConfigurations": [
                    {"name": "fe", "properties": {"subnet": {"id": f"{vnet.id}/subnets/frontend"}}}
                ],
                "backendAddressPools": [{"name": "be"}],
                "probes": [
                    {
                        "name": "tcp-8080",
                        "properties": {"protocol": "Tcp", "port": 8080, "intervalInSeconds": 5},
                    }
                ],
                "loadBalancingRules": [
                    {
                        "name": "http",
                        "properties": {
                            "protocol": "Tcp",
                            "frontendPort": 80,
                            "backendPort": 8080,
                            "frontendIPConfiguration": {
                                "id": f"{lb_id}/frontendIPConfigurations/fe"
                            },
                            "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/be"},
                            "probe": {"id": f"{lb_id}/probes/tcp-8080"},
                        },
                    }
                ],
            },
        },
    ).result()
    fe = (lb.frontend_ip_configurations or [])[0]
    show("frontend IP", fe.private_ip_address)

    step("Provider: a backend VM NIC in the load balancer's pool")
    nic = provider.network_interfaces.begin_create_or_update(
        PROVIDER_RG,
        "backend-vm-nic",
        {
            "location": REGION,
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "properties": {
                            "subnet": {"id": f"{vnet.id}/subnets/backend"},
                            "loadBalancerBackendAddressPools": [
                                {"id": f"{lb_id}/backendAddressPools/be"}
                            ],
                        },
                    }
                ]
            },
        },
    ).result()
    backend_ip = (nic.ip_configurations or [])[0].private_ip_address
    show("backend IP", backend_ip)
    if traffic is not None:
        traffic.start("backend-vm-nic", sys.executable, "-c", WHOAMI)
        show("backend VM", "runs an HTTP server on :8080 (privatelink exec --nic backend-vm-nic)")

    step("Provider: Basic load balancers are refused for private link")
    try:
        provider.load_balancers.begin_create_or_update(
            PROVIDER_RG,
            "basic-lb",
            {
                "location": REGION,
                "sku": {"name": "Basic"},
                "properties": {
                    "frontendIPConfigurations": [
                        {
                            "name": "fe",
                            "properties": {"subnet": {"id": f"{vnet.id}/subnets/frontend"}},
                        }
                    ]
                },
            },
        ).result()
        provider.private_link_services.begin_create_or_update(
            PROVIDER_RG,
            "basic-pls",
            {
                "location": REGION,
                "properties": {
                    "loadBalancerFrontendIpConfigurations": [
                        {"id": f"{net}/loadBalancers/basic-lb/frontendIPConfigurations/fe"}
                    ],
                    "ipConfigurations": [
                        {"name": "nat", "properties": {"subnet": {"id": f"{vnet.id}/subnets/nat"}}}
                    ],
                },
            },
        ).result()
    except HttpResponseError as exc:
        show("refused", refused(exc))
    provider.load_balancers.begin_delete(PROVIDER_RG, "basic-lb").result()

    step("Provider: publish the private link service, visible to the consumer's subscription")
    pls = provider.private_link_services.begin_create_or_update(
        PROVIDER_RG,
        "contoso-svc",
        {
            "location": REGION,
            "properties": {
                "loadBalancerFrontendIpConfigurations": [{"id": fe.id}],
                "ipConfigurations": [
                    {
                        "name": f"nat-{i}",
                        "properties": {
                            "primary": i == 1,
                            "subnet": {"id": f"{vnet.id}/subnets/nat"},
                        },
                    }
                    for i in (1, 2)
                ],
                "visibility": {"subscriptions": [csub]},
                "fqdns": [FQDN],
            },
        },
        **requests.tag("publish"),
    ).result()
    pls_id = str(pls.id)
    show("alias", pls.alias)
    show("NAT IPs", ", ".join(c.private_ip_address or "" for c in pls.ip_configurations or []))
    show("provisioningState", getattr(pls.provisioning_state, "value", pls.provisioning_state))

    step(f"Consumer ({CONSUMER_TENANT} tenant, its own subscription): overlapping VNet 10.0.0.0/16")
    cvnet = consumer.virtual_networks.begin_create_or_update(
        CONSUMER_RG,
        "consumer-vnet",
        {
            "location": REGION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [
                    {"name": "endpoints", "properties": {"addressPrefix": "10.0.1.0/24"}},
                    {"name": "vms", "properties": {"addressPrefix": "10.0.2.0/24"}},
                ],
            },
        },
    ).result()
    show("vnet", cvnet.id)
    vm = consumer.network_interfaces.begin_create_or_update(
        CONSUMER_RG,
        "consumer-vm-nic",
        {
            "location": REGION,
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "properties": {"subnet": {"id": f"{cvnet.id}/subnets/vms"}},
                    }
                ]
            },
        },
    ).result()
    show(
        "consumer VM",
        f"{(vm.ip_configurations or [])[0].private_ip_address} "
        "(the provider's backend has the same address: the spaces overlap)",
    )

    step("Who can see the alias? checkPrivateLinkServiceVisibility, each in its own subscription")
    for who, c in ((consumer_id, consumer), (stranger_id, stranger)):
        visible = c.private_link_services.begin_check_private_link_service_visibility(
            REGION, {"privateLinkServiceAlias": pls.alias}
        ).result()
        show(who.label, f"visible={visible.visible}")

    step("Consumer: private endpoint by alias, manual approval with a request message")
    pe = consumer.private_endpoints.begin_create_or_update(
        CONSUMER_RG,
        "to-contoso",
        {
            "location": REGION,
            "properties": {
                "subnet": {"id": f"{cnet}/virtualNetworks/consumer-vnet/subnets/endpoints"},
                "manualPrivateLinkServiceConnections": [
                    {
                        "name": "contoso",
                        "properties": {
                            "privateLinkServiceId": pls.alias,
                            "requestMessage": "Fabrikam, order #42",
                        },
                    }
                ],
            },
        },
    ).result()
    show("endpoint connection", _status(pe))
    show("customDnsConfigs", [(d.fqdn, d.ip_addresses) for d in pe.custom_dns_configs or []])
    pe_nic_name = (pe.network_interfaces or [])[0].id.rsplit("/", 1)[-1]  # type: ignore[union-attr]
    pe_nic = consumer.network_interfaces.get(CONSUMER_RG, pe_nic_name)
    pe_ip = (pe_nic.ip_configurations or [])[0].private_ip_address
    show("private endpoint IP", pe_ip)
    url = f"http://{pe_ip}/"
    if traffic is not None:
        step(f"Consumer VM: curl {url} while the connection is Pending")
        show(
            "answer",
            traffic.curl("consumer-vm-nic", url)
            or "nothing (pending connections carry no traffic)",
        )

    step(f"Consumer: private DNS zone {ZONE}, linked to consumer-vnet; a zone group on the PE")
    zone = consumer_dns.private_zones.begin_create_or_update(
        CONSUMER_RG, ZONE, {"location": "global"}
    ).result()
    consumer_dns.virtual_network_links.begin_create_or_update(
        CONSUMER_RG,
        ZONE,
        "consumer-vnet-link",
        {
            "location": "global",
            "properties": {
                "virtualNetwork": {"id": f"{cnet}/virtualNetworks/consumer-vnet"},
                "registrationEnabled": False,
            },
        },
    ).result()
    consumer.private_dns_zone_groups.begin_create_or_update(
        CONSUMER_RG,
        "to-contoso",
        "default",
        {
            "properties": {
                "privateDnsZoneConfigs": [
                    {"name": "contoso", "properties": {"privateDnsZoneId": zone.id}}
                ]
            }
        },
    ).result()
    show("A records in the zone (connection Pending)", zone_records() or "none")

    step("Provider: pending requests on the service")
    conns = list(
        provider.private_link_services.list_private_endpoint_connections(PROVIDER_RG, "contoso-svc")
    )
    table = folding_table("connection", "private endpoint", "status", "message")
    for conn in conns:
        s = conn.private_link_service_connection_state
        table.add_row(
            conn.name,
            conn.private_endpoint.id if conn.private_endpoint else "",
            s.status,
            s.description,
        )
    console.print(table)
    conn_name = str(conns[0].name)

    def set_state(client: Any, status: str, description: str, tag: str) -> Any:
        """Approve or reject the connection, as the principal behind `client`."""
        return client.private_link_services.update_private_endpoint_connection(
            PROVIDER_RG,
            "contoso-svc",
            conn_name,
            {
                "properties": {
                    "privateLinkServiceConnectionState": {
                        "status": status,
                        "description": description,
                    }
                }
            },
            **requests.tag(tag),
        )

    step("Consumer: tries to approve its own request on the provider's service")
    try:
        set_state(
            consumer_id.sdk(NetworkManagementClient, psub),
            "Approved",
            "self-service",
            "approve",
        )
        raise SystemExit("demo failed: the consumer approved its own connection")
    except HttpResponseError as exc:
        show("refused", refused(exc))
        show("why", f"its token is {CONSUMER_TENANT}'s; the subscription is the provider tenant's")

    step("Provider: two principals of its tenant, made through Microsoft Graph, and their roles")
    reader_id, approver_id = make_reader_and_approver(provider_id, pls_id, requests)
    names.update({w.object_id.lower(): w.label for w in (reader_id, approver_id)})

    step(f"Reader (provider's tenant, Reader on {PROVIDER_RG}): sees the request, tries to approve")
    as_reader = reader_id.sdk(NetworkManagementClient)
    seen = as_reader.private_link_services.list_private_endpoint_connections(
        PROVIDER_RG, "contoso-svc"
    )
    show("reader sees", [c.private_link_service_connection_state.status for c in seen])
    try:
        set_state(as_reader, "Approved", "Welcome", "approve")
        raise SystemExit("demo failed: a Reader approved a connection")
    except HttpResponseError as exc:
        show("refused", refused(exc))

    step("Approver (custom role on the service): approve")
    show("allowed by", "the service's approval action, which stands in for the connection's write")
    approved = set_state(approver_id.sdk(NetworkManagementClient), "Approved", "Welcome", "approve")
    show("approver sees", approved.private_link_service_connection_state.status)
    pe = consumer.private_endpoints.get(CONSUMER_RG, "to-contoso")
    show("consumer sees", _status(pe))
    if traffic is not None:
        step(f"Consumer VM: curl {url} through the private endpoint")
        page = traffic.curl_until("consumer-vm-nic", url)
        show("answer", page or "nothing!")
        nat_ips = {c.private_ip_address for c in pls.ip_configurations or []}
        seen_as = page.rsplit(" ", 1)[-1] if page else ""
        show("the backend saw", f"{seen_as}, one of the service's NAT IPs {sorted(nat_ips)}")
        if seen_as not in nat_ips:
            raise SystemExit("demo failed: traffic did not arrive from a NAT IP")
    show(f"A records in {ZONE} (Approved)", zone_records())
    if traffic is not None:
        by_name = f"http://{FQDN}/"
        step(f"Consumer VM: curl {by_name} by name (resolver 168.63.129.16 in its VNet)")
        page = traffic.curl_until("consumer-vm-nic", by_name)
        show("answer", page or "nothing!")
        if not page:
            raise SystemExit(f"demo failed: {FQDN} did not resolve to the private endpoint")

    reach = None
    if traffic is not None:
        reach = show_reach(consumer, cnet, data_dir, traffic, url)

    step("Provider: the service cannot be deleted while it has connections")
    try:
        provider.private_link_services.begin_delete(
            PROVIDER_RG, "contoso-svc", **requests.tag("delete (too early)")
        ).result()
    except HttpResponseError as exc:
        show("refused", refused(exc))

    step("Provider: reject, then delete the connection")
    set_state(provider, "Rejected", "Contract ended", "reject")
    provider.private_link_services.begin_delete_private_endpoint_connection(
        PROVIDER_RG, "contoso-svc", conn_name, **requests.tag("delete connection")
    ).result()
    pe = consumer.private_endpoints.get(CONSUMER_RG, "to-contoso")
    show("consumer sees", _status(pe))
    show(f"A records in {ZONE}", zone_records() or "none")
    if traffic is not None:
        show(
            "consumer VM curl", traffic.curl("consumer-vm-nic", url) or "nothing (the flow is cut)"
        )
        if reach is not None:
            show("peered VM curl", traffic.curl(SPOKE_NIC, url) or "nothing (cut there too)")
            show(
                "on-premises host curl",
                traffic.site_curl(SITE, SITE_HOST, url) or "nothing (cut there too)",
            )
        show(
            f"consumer VM curl http://{FQDN}/",
            traffic.curl("consumer-vm-nic", f"http://{FQDN}/")
            or "nothing (the name no longer resolves)",
        )

    step("Provider: delete the service (no connections left)")
    provider.private_link_services.begin_delete(
        PROVIDER_RG, "contoso-svc", **requests.tag("delete")
    ).result()
    left = [p.name for p in provider.private_link_services.list(PROVIDER_RG)]
    show("services left", left or "none")

    step("Provider: the service's activity log (az monitor activity-log list --resource-id ...)")
    show_activity_log(provider_id, pls_id, started, requests, names)
    portal_user(provider_id, data_dir, creds["url"])
    console.print("\n[bold green]Demo complete.[/]")


def portal_user(provider: Principal, data_dir: Path, url: str) -> None:
    """A person of the provider's tenant for the portal: `privatelink user create`, with
    Reader on the provider's subscription (the pages, the metrics) and the approval role
    of the Network Contributor there (the decisions)."""
    from azure.mgmt.authorization import AuthorizationManagementClient

    step("The portal: a user of the provider's tenant (privatelink user create)")
    user = privatelink_json(data_dir, "user", "create", "--name", "demo")
    sub = f"/subscriptions/{provider.subscription_id}"
    authz = provider.sdk(AuthorizationManagementClient)
    for role in (READER_ROLE, NETWORK_CONTRIBUTOR_ROLE):
        authz.role_assignments.create(
            sub,
            str(uuid.uuid4()),
            {
                "properties": {
                    "roleDefinitionId": f"{sub}/providers/Microsoft.Authorization/"
                    f"roleDefinitions/{role}",
                    "principalId": user["object_id"],
                    "principalType": "User",
                }
            },
        )
    show("portal", f"{url}/")
    show("sign in as", user["user_principal_name"])
    show("password", user["password"])


SPOKE_NIC = "spoke-vm-nic"
SITE = "branch-office"
SITE_GATEWAY_IP = "198.18.200.1"  # of the public range: it exists only in our namespaces
SITE_SPACE = "192.168.0.0/16"
SITE_HOST = "192.168.1.10"


def show_reach(consumer: Any, cnet: str, data_dir: Path, traffic: Traffic, url: str) -> bool:
    """The same private endpoint from a peered network and from an on-premises site over
    an IPsec VPN (strongSwan on both ends): what the seed says reaches an endpoint."""
    step("Consumer: a second network 10.5.0.0/16 with a VM, peered with consumer-vnet")
    consumer.virtual_networks.begin_create_or_update(
        CONSUMER_RG,
        "spoke-vnet",
        {
            "location": REGION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.5.0.0/16"]},
                "subnets": [{"name": "vms", "properties": {"addressPrefix": "10.5.1.0/24"}}],
            },
        },
    ).result()
    consumer.network_interfaces.begin_create_or_update(
        CONSUMER_RG,
        SPOKE_NIC,
        {
            "location": REGION,
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "properties": {
                            "subnet": {"id": f"{cnet}/virtualNetworks/spoke-vnet/subnets/vms"}
                        },
                    }
                ]
            },
        },
    ).result()
    for local, remote, extra in (
        ("consumer-vnet", "spoke-vnet", {"allowGatewayTransit": True}),
        ("spoke-vnet", "consumer-vnet", {}),
    ):
        peering = consumer.virtual_network_peerings.begin_create_or_update(
            CONSUMER_RG,
            local,
            f"to-{remote}",
            {
                "properties": {
                    "remoteVirtualNetwork": {"id": f"{cnet}/virtualNetworks/{remote}"},
                    "allowVirtualNetworkAccess": True,
                    **extra,
                }
            },
        ).result()
        state = getattr(peering.peering_state, "value", peering.peering_state)
        show(f"peering {local} -> {remote}", state)
    step(f"Peered VM: curl {url} (the endpoint is in the other network)")
    page = traffic.curl_until(SPOKE_NIC, url)
    show("answer", page or "nothing!")
    if not page:
        raise SystemExit("demo failed: the peered network did not reach the endpoint")

    step("Consumer: a VPN gateway in consumer-vnet's GatewaySubnet, with a Standard public IP")
    consumer.subnets.begin_create_or_update(
        CONSUMER_RG,
        "consumer-vnet",
        "GatewaySubnet",
        {"properties": {"addressPrefix": "10.0.255.0/27"}},
    ).result()
    pip = consumer.public_ip_addresses.begin_create_or_update(
        CONSUMER_RG,
        "vpn-gateway-ip",
        {
            "location": REGION,
            "sku": {"name": "Standard"},
            "properties": {"publicIPAllocationMethod": "Static"},
        },
    ).result()
    show("gateway public IP", f"{pip.ip_address} (the public range lives only in our namespaces)")
    gateway = consumer.virtual_network_gateways.begin_create_or_update(
        CONSUMER_RG,
        "vpn-gateway",
        {
            "location": REGION,
            "properties": {
                "gatewayType": "Vpn",
                "vpnType": "RouteBased",
                "sku": {"name": "VpnGw1", "tier": "VpnGw1"},
                "ipConfigurations": [
                    {
                        "name": "default",
                        "properties": {
                            "subnet": {
                                "id": f"{cnet}/virtualNetworks/consumer-vnet/subnets/GatewaySubnet"
                            },
                            "publicIPAddress": {"id": pip.id},
                        },
                    }
                ],
            },
        },
    ).result()
    local = consumer.local_network_gateways.begin_create_or_update(
        CONSUMER_RG,
        "branch-office",
        {
            "location": REGION,
            "properties": {
                "gatewayIpAddress": SITE_GATEWAY_IP,
                "localNetworkAddressSpace": {"addressPrefixes": [SITE_SPACE]},
            },
        },
    ).result()
    key = uuid.uuid4().hex
    connection = consumer.virtual_network_gateway_connections.begin_create_or_update(
        CONSUMER_RG,
        "to-branch-office",
        {
            "location": REGION,
            "properties": {
                "connectionType": "IPsec",
                "virtualNetworkGateway1": {"id": gateway.id},
                "localNetworkGateway2": {"id": local.id},
                "sharedKey": key,
            },
        },
    ).result()
    first = getattr(connection.connection_status, "value", connection.connection_status)
    show("connection", f"IPsec IKEv2, status {first}")

    step(f"Operator: an on-premises site {SITE_SPACE} behind {SITE_GATEWAY_IP}, same shared key")
    cli = [sys.executable, "-m", "privatelink.cli.main", "site", "create", SITE]
    options = ["--address-space", SITE_SPACE, "--gateway-ip", SITE_GATEWAY_IP]
    made = subprocess.run(
        [*cli, "--data-dir", str(data_dir), *options, "--shared-key-stdin"],
        input=key,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if made.returncode != 0:
        raise SystemExit(f"demo failed: privatelink site create: {made.stderr.strip()}")
    status = _wait_connected(consumer)
    gw = consumer.virtual_network_gateways.get(CONSUMER_RG, "vpn-gateway")
    # Not an Azure property: read from the raw body (the SDK's models are mappings of it).
    raw: Any = gw.get("properties") if hasattr(gw, "get") else None
    mode = raw.get("privatelinkIpsecMode") if hasattr(raw, "get") else None
    show("connection status", f"{status} (ESP: {mode or 'see the server log'})")
    step(f"On-premises host {SITE_HOST}: curl {url} through the tunnel")
    page = None
    deadline = time.monotonic() + 20
    while page is None and time.monotonic() < deadline:
        page = traffic.site_curl(SITE, SITE_HOST, url)
    show("answer", page or "nothing!")
    if not page:
        raise SystemExit("demo failed: the on-premises host did not reach the endpoint")
    return True


def _wait_connected(consumer: Any, timeout: float = 30.0) -> str:
    """The connection's status once Connected, or what it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        found = consumer.virtual_network_gateway_connections.get(
            CONSUMER_RG, "to-branch-office"
        ).connection_status
        status = str(getattr(found, "value", found))
        if status == "Connected":
            break
        time.sleep(0.5)
    return str(status)


def main() -> None:
    """Entry point of `python -m privatelink.demo`."""
    from privatelink.dataplane import names
    from privatelink.dataplane.reconciler import cleanup
    from privatelink.server import dataplane_available

    data_dir = Path(tempfile.mkdtemp(prefix="privatelink-demo-")).resolve()
    os.chmod(data_dir, 0o700)
    missing = dataplane_available()
    traffic = Traffic(data_dir) if missing is None else None
    try:
        console.print("[bold]privatelink demo[/]: starting `privatelink serve` (HTTPS, SQLite)")
        if missing:
            console.print(f"[yellow]data plane off: {missing}; the demo shows the API only[/]")
        with running_server(data_dir, dataplane=traffic is not None) as creds:
            show("server", creds["url"])
            show("CA file", creds["ca_file"])
            try:
                run_scenario(creds, data_dir, traffic)
                if sys.stdin.isatty():
                    # The portal needs the server: keep it until the user is done.
                    console.print(
                        "\nThe server keeps running for the portal: press Enter to stop it "
                        "(and remove the demo's namespaces and data)."
                    )
                    with contextlib.suppress(EOFError, KeyboardInterrupt):
                        input()
            finally:
                if traffic is not None:
                    traffic.stop()
    finally:
        if traffic is not None:
            removed = cleanup(names.prefix_for(str(data_dir)))
            console.print(f"removed the demo's {len(removed)} network namespaces")
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
