"""`make demo`: start a privatelink server and walk through the private link workflow.

Drives the server with Microsoft's own azure-mgmt-network SDK, exactly as a user's
automation would: a provider publishes a service behind a Standard Load Balancer, a
consumer in another subscription (with an overlapping address space) finds it by
alias and asks for a connection, the provider approves, rejects and deletes it, and
finally deletes the service.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()

PROVIDER = "11111111-1111-4111-8111-111111111111"
CONSUMER = "22222222-2222-4222-8222-222222222222"
STRANGER = "33333333-3333-4333-8333-333333333333"
REGION = "eastus"
ZONE = "contoso.example"
FQDN = f"svc.{ZONE}"  # the name the provider publishes; the consumer resolves it privately


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


def run_scenario(creds: dict[str, Any], traffic: Traffic | None) -> None:
    """The private link workflow of the seed, step by step."""
    try:
        from azure.core.exceptions import HttpResponseError
        from azure.identity import ClientSecretCredential
        from azure.mgmt.network import NetworkManagementClient
        from azure.mgmt.privatedns import PrivateDnsManagementClient
    except ImportError as exc:  # pragma: no cover - make demo installs them
        raise SystemExit(
            f"the demo needs azure-mgmt-network, azure-mgmt-privatedns and azure-identity: {exc}"
        ) from exc

    credential = ClientSecretCredential(
        creds["tenant_id"],
        creds["client_id"],
        creds["client_secret"],
        authority=creds["url"],
        disable_instance_discovery=True,
        connection_verify=creds["ca_file"],
    )

    def client(subscription: str) -> NetworkManagementClient:
        return NetworkManagementClient(
            credential,
            subscription,
            base_url=creds["url"],
            connection_verify=creds["ca_file"],
            polling_interval=0,
            retry_total=0,
        )

    provider, consumer, stranger = client(PROVIDER), client(CONSUMER), client(STRANGER)
    consumer_dns = PrivateDnsManagementClient(
        credential,
        CONSUMER,
        base_url=creds["url"],
        connection_verify=creds["ca_file"],
        polling_interval=0,
        retry_total=0,
    )

    def zone_records() -> list[tuple[str, list[str]]]:
        return [
            (r.name or "", [a.ipv4_address or "" for a in r.a_records or []])
            for r in consumer_dns.record_sets.list_by_type("consumer-rg", ZONE, "A")
        ]

    net = f"/subscriptions/{PROVIDER}/resourceGroups/provider-rg/providers/Microsoft.Network"
    cnet = f"/subscriptions/{CONSUMER}/resourceGroups/consumer-rg/providers/Microsoft.Network"

    step("Provider: virtual network 10.0.0.0/16 with frontend, backend and NAT subnets")
    vnet = provider.virtual_networks.begin_create_or_update(
        "provider-rg",
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
        "provider-rg",
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
        "provider-rg",
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
            "provider-rg",
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
            "provider-rg",
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
        show("refused", f"{exc.status_code} {exc.error.code if exc.error else ''}")
    provider.load_balancers.begin_delete("provider-rg", "basic-lb").result()

    step("Provider: publish the private link service (visible to the consumer's subscription)")
    pls = provider.private_link_services.begin_create_or_update(
        "provider-rg",
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
                "visibility": {"subscriptions": [CONSUMER]},
                "fqdns": [FQDN],
            },
        },
    ).result()
    show("alias", pls.alias)
    show("NAT IPs", ", ".join(c.private_ip_address or "" for c in pls.ip_configurations or []))
    show("provisioningState", pls.provisioning_state)

    step("Consumer (another subscription): overlapping virtual network 10.0.0.0/16")
    cvnet = consumer.virtual_networks.begin_create_or_update(
        "consumer-rg",
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
        "consumer-rg",
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

    step("Who can see the alias? checkPrivateLinkServiceVisibility")
    for name, c in (("consumer", consumer), ("stranger", stranger)):
        visible = c.private_link_services.begin_check_private_link_service_visibility(
            REGION, {"privateLinkServiceAlias": pls.alias}
        ).result()
        show(name, f"visible={visible.visible}")

    step("Consumer: private endpoint by alias, manual approval with a request message")
    pe = consumer.private_endpoints.begin_create_or_update(
        "consumer-rg",
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
    state = (pe.manual_private_link_service_connections or [])[
        0
    ].private_link_service_connection_state
    show("endpoint connection", state.status if state else None)
    show("customDnsConfigs", [(d.fqdn, d.ip_addresses) for d in pe.custom_dns_configs or []])
    pe_nic_name = (pe.network_interfaces or [])[0].id.rsplit("/", 1)[-1]  # type: ignore[union-attr]
    pe_nic = consumer.network_interfaces.get("consumer-rg", pe_nic_name)
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
        "consumer-rg", ZONE, {"location": "global"}
    ).result()
    consumer_dns.virtual_network_links.begin_create_or_update(
        "consumer-rg",
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
        "consumer-rg",
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
        provider.private_link_services.list_private_endpoint_connections(
            "provider-rg", "contoso-svc"
        )
    )
    table = Table("connection", "private endpoint", "status", "message")
    for conn in conns:
        s = conn.private_link_service_connection_state
        table.add_row(
            conn.name,
            conn.private_endpoint.id if conn.private_endpoint else "",
            s.status,
            s.description,
        )
    console.print(table)

    step("Provider: approve")
    approved = provider.private_link_services.update_private_endpoint_connection(
        "provider-rg",
        "contoso-svc",
        conns[0].name,
        {
            "properties": {
                "privateLinkServiceConnectionState": {
                    "status": "Approved",
                    "description": "Welcome",
                }
            }
        },
    )
    show("provider sees", approved.private_link_service_connection_state.status)
    pe = consumer.private_endpoints.get("consumer-rg", "to-contoso")
    show("consumer sees", _status(pe))
    if traffic is not None:
        step(f"Consumer VM: curl {url} through the private endpoint")
        page = traffic.curl_until("consumer-vm-nic", url)
        show("answer", page or "nothing!")
        nat_ips = {c.private_ip_address for c in pls.ip_configurations or []}
        seen = page.rsplit(" ", 1)[-1] if page else ""
        show("the backend saw", f"{seen}, one of the service's NAT IPs {sorted(nat_ips)}")
        if seen not in nat_ips:
            raise SystemExit("demo failed: traffic did not arrive from a NAT IP")
    show(f"A records in {ZONE} (Approved)", zone_records())
    if traffic is not None:
        by_name = f"http://{FQDN}/"
        step(f"Consumer VM: curl {by_name} by name (resolver 168.63.129.16 in its VNet)")
        page = traffic.curl_until("consumer-vm-nic", by_name)
        show("answer", page or "nothing!")
        if not page:
            raise SystemExit(f"demo failed: {FQDN} did not resolve to the private endpoint")

    step("Provider: the service cannot be deleted while it has connections")
    try:
        provider.private_link_services.begin_delete("provider-rg", "contoso-svc").result()
    except HttpResponseError as exc:
        show("refused", f"{exc.status_code} {exc.error.code if exc.error else ''}")

    step("Provider: reject, then delete the connection")
    provider.private_link_services.update_private_endpoint_connection(
        "provider-rg",
        "contoso-svc",
        conns[0].name,
        {
            "properties": {
                "privateLinkServiceConnectionState": {
                    "status": "Rejected",
                    "description": "Contract ended",
                }
            }
        },
    )
    provider.private_link_services.begin_delete_private_endpoint_connection(
        "provider-rg", "contoso-svc", conns[0].name
    ).result()
    pe = consumer.private_endpoints.get("consumer-rg", "to-contoso")
    show("consumer sees", _status(pe))
    show(f"A records in {ZONE}", zone_records() or "none")
    if traffic is not None:
        show(
            "consumer VM curl", traffic.curl("consumer-vm-nic", url) or "nothing (the flow is cut)"
        )
        show(
            f"consumer VM curl http://{FQDN}/",
            traffic.curl("consumer-vm-nic", f"http://{FQDN}/")
            or "nothing (the name no longer resolves)",
        )

    step("Provider: delete the service (no connections left)")
    provider.private_link_services.begin_delete("provider-rg", "contoso-svc").result()
    left = [p.name for p in provider.private_link_services.list("provider-rg")]
    show("services left", left or "none")
    console.print("\n[bold green]Demo complete.[/]")


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
                run_scenario(creds, traffic)
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
