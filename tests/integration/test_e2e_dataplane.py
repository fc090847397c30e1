"""End to end: `privatelink serve` with the data plane, driven by azure-mgmt-network,
then real traffic from a consumer VM through its private endpoint (`privatelink exec`)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.network.models import PrivateDnsZoneConfig, PrivateDnsZoneGroup

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WHOAMI = Path(__file__).with_name("whoami_backend.py")
CURL_COULD_NOT_RESOLVE = 6  # curl's exit code for "Couldn't resolve host"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft", "conntrack", "curl"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (make deps-system installs it)"
    return None


@pytest.fixture
def dp_server(helpers: Any) -> Iterator[Any]:
    """A server with the data plane on and a namespace prefix of its own."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    prefix = "e" + secrets.token_hex(3)
    data_dir = Path(tempfile.mkdtemp(prefix="pl-e2e-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with helpers.run_server(data_dir, dataplane_prefix=prefix) as server:
            server.procs = procs
            server.prefix = prefix
            yield server
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        cli(data_dir, "cleanup", "--netns-prefix", prefix)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        shutil.rmtree(data_dir, ignore_errors=True)
        assert f"{prefix}-" not in left, f"namespaces left behind: {left}"


def cli(
    data_dir: Path, command: str, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the `privatelink` command as a user would."""
    argv = [sys.executable, "-m", "privatelink.cli.main", command, "--data-dir", str(data_dir)]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def curl(server: Any, nic: str, url: str) -> subprocess.CompletedProcess[str]:
    return cli(server.data_dir, "exec", "--nic", nic, "--", "curl", "-s", "-m", "2", url)


def nic_body(subnet: str, pool: str | None = None) -> dict[str, Any]:
    """A NIC ("VM") in a subnet, optionally in a load balancer's backend pool."""
    props: dict[str, Any] = {"subnet": {"id": subnet}}
    if pool:
        props["loadBalancerBackendAddressPools"] = [{"id": pool}]
    return {
        "location": "eastus",
        "properties": {"ipConfigurations": [{"name": "ip", "properties": props}]},
    }


def start_backend(server: Any, nic: str, label: str) -> None:
    """The whoami backend on :8080 in a NIC's namespace (it exists once the NIC succeeded)."""
    argv = [sys.executable, "-m", "privatelink.cli.main", "exec", "--data-dir"]
    argv += [str(server.data_dir), "--nic", nic, "--", sys.executable, str(WHOAMI), label]
    server.procs.append(
        subprocess.Popen(
            [*argv, "8080"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )


def set_status(provider: Any, pls_name: str, status: str) -> None:
    """The provider approves or rejects the service's one connection."""
    client = provider.client.private_link_services
    conn = next(iter(client.list_private_endpoint_connections(provider.rg, pls_name)))
    client.update_private_endpoint_connection(
        provider.rg,
        pls_name,
        conn.name,
        {"properties": {"privateLinkServiceConnectionState": {"status": status}}},
    )


def test_consumer_reaches_the_provider_through_its_private_endpoint(
    dp_server: Any, helpers: Any
) -> None:
    server = dp_server
    provider = helpers.World(server).provider()
    prov = provider.client
    # Backend VMs in the load balancer's pool.
    backend_ips = []
    for i in range(2):
        body = nic_body(provider.subnet_id("backend"), provider.pool_id())
        nic = prov.network_interfaces.begin_create_or_update(
            provider.rg, f"backend{i}", body
        ).result()
        assert nic.provisioning_state == "Succeeded"
        backend_ips.append(nic.ip_configurations[0].private_ip_address)
        start_backend(server, f"backend{i}", f"b{i}")
    pls = provider.create_pls(
        helpers.unique("svc"), visibility=["*"], fqdns=["svc.contoso.example"]
    )
    assert pls.provisioning_state == "Succeeded"
    nat_ips = {c.private_ip_address for c in pls.ip_configurations}

    consumer = helpers.World(server).consumer()  # overlapping 10.0.0.0/16
    cons = consumer.client
    cons.network_interfaces.begin_create_or_update(
        consumer.rg, "client", nic_body(consumer.subnet)
    ).result()
    pe = consumer.create_pe("pe", pls.alias)
    assert (
        pe.manual_private_link_service_connections[0].private_link_service_connection_state.status
        == "Pending"
    )
    pe_nic = cons.network_interfaces.get(
        consumer.rg, pe.network_interfaces[0].id.rsplit("/", 1)[-1]
    )
    pe_ip = pe_nic.ip_configurations[0].private_ip_address
    url = f"http://{pe_ip}/"

    assert curl(server, "client", url).returncode != 0, "a pending connection carried traffic"

    approved_at = time.monotonic()
    set_status(provider, pls.name, "Approved")
    answer = None
    for _ in range(100):  # bounded: ~10 s
        result = curl(server, "client", url)
        if result.returncode == 0 and " saw " in result.stdout:
            answer = result.stdout
            break
        time.sleep(0.1)
    assert answer is not None, "no answer through the private endpoint after approval"
    first_byte = time.monotonic() - approved_at
    source = answer.split(" saw ")[1].strip()
    assert source in nat_ips, f"backend saw {source}; NAT IPs are {nat_ips}"
    assert first_byte < 10

    set_status(provider, pls.name, "Rejected")
    cut = False
    for _ in range(20):  # bounded: ~2 s
        if curl(server, "client", url).returncode != 0:
            cut = True
            break
        time.sleep(0.1)
    assert cut, "a rejected connection still carries traffic"


def test_consumer_reaches_the_service_by_name(dp_server: Any, helpers: Any) -> None:
    """Private DNS end to end: the consumer links a zone to its VNet and gives its endpoint
    a zone group; after approval `curl http://svc.contoso.example/` from a consumer VM
    reaches the backend; after rejection the name no longer resolves."""
    server = dp_server
    zone, fqdn = "contoso.example", "svc.contoso.example"
    provider = helpers.World(server).provider()
    provider.client.network_interfaces.begin_create_or_update(
        provider.rg, "backend0", nic_body(provider.subnet_id("backend"), provider.pool_id())
    ).result()
    start_backend(server, "backend0", "b0")
    pls = provider.create_pls(helpers.unique("svc"), visibility=["*"], fqdns=[fqdn])
    nat_ips = {c.private_ip_address for c in pls.ip_configurations}

    consumer = helpers.World(server).consumer()
    consumer.client.network_interfaces.begin_create_or_update(
        consumer.rg, "client", nic_body(consumer.subnet)
    ).result()
    consumer.create_pe("pe", pls.alias)
    dns = server.dns_client(consumer.sub)
    zone_id = (
        dns.private_zones.begin_create_or_update(consumer.rg, zone, {"location": "global"})
        .result()
        .id
    )
    vnet_id = f"{consumer.base}/virtualNetworks/{consumer.vnet}"
    dns.virtual_network_links.begin_create_or_update(
        consumer.rg,
        zone,
        "consumer",
        {"location": "global", "properties": {"virtualNetwork": {"id": vnet_id}}},
    ).result()
    consumer.client.private_dns_zone_groups.begin_create_or_update(
        consumer.rg,
        "pe",
        "default",
        PrivateDnsZoneGroup(
            private_dns_zone_configs=[PrivateDnsZoneConfig(name="z", private_dns_zone_id=zone_id)]
        ),
    ).result()
    url = f"http://{fqdn}/"
    pending = curl(server, "client", url)
    assert pending.returncode == CURL_COULD_NOT_RESOLVE, pending

    set_status(provider, pls.name, "Approved")
    answer = None
    for _ in range(50):  # bounded: ~5 s
        result = curl(server, "client", url)
        if result.returncode == 0 and " saw " in result.stdout:
            answer = result.stdout
            break
        time.sleep(0.1)
    assert answer is not None, f"no answer by name after approval: {result}"
    assert answer.split(" saw ")[1].strip() in nat_ips

    set_status(provider, pls.name, "Rejected")
    gone = None
    for _ in range(20):  # bounded: ~2 s
        gone = curl(server, "client", url)
        if gone.returncode == CURL_COULD_NOT_RESOLVE:
            break
        time.sleep(0.1)
    assert gone is not None and gone.returncode == CURL_COULD_NOT_RESOLVE, gone


ECHO = (
    "import socket, sys, threading\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 8080)); s.listen()\n"
    "def serve(c):\n"
    "    while (d := c.recv(64)): c.sendall(d)\n"
    "while True:\n"
    "    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
)
PINGER = (
    "import socket, sys, time\n"
    "s = socket.create_connection((sys.argv[1], 80), timeout=5)\n"
    "print('connected', flush=True)\n"
    "while True:\n"
    "    line = sys.stdin.readline()\n"
    "    if not line: break\n"
    "    s.sendall(b'ping'); print(s.recv(16).decode() or 'EOF', flush=True)\n"
)


def test_restarting_the_server_keeps_an_established_flow(helpers: Any) -> None:
    """Stop `privatelink serve`, start it again on the same data: the flow lives on."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    prefix = "r" + secrets.token_hex(3)
    data_dir = Path(tempfile.mkdtemp(prefix="pl-restart-"))
    procs: list[subprocess.Popen[str]] = []

    def run_in(nic: str, code: str, *args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "privatelink.cli.main", "exec", "--data-dir", str(data_dir)]
        proc = subprocess.Popen(
            [*argv, "--nic", nic, "--", sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(proc)
        return proc

    try:
        with helpers.run_server(data_dir, dataplane_prefix=prefix) as server:
            provider = helpers.World(server).provider()
            nic = provider.client.network_interfaces.begin_create_or_update(
                provider.rg, "backend", nic_body(provider.subnet_id("backend"), provider.pool_id())
            ).result()
            assert nic.provisioning_state == "Succeeded"
            run_in("backend", ECHO)
            pls = provider.create_pls(helpers.unique("svc"), visibility=["*"])
            consumer = helpers.World(server).consumer()
            consumer.client.network_interfaces.begin_create_or_update(
                consumer.rg, "client", nic_body(consumer.subnet)
            ).result()
            pe = consumer.create_pe("pe", pls.id)
            set_status(provider, pls.name, "Approved")
            pe_nic = consumer.client.network_interfaces.get(
                consumer.rg, pe.network_interfaces[0].id.rsplit("/", 1)[-1]
            )
            pe_ip = pe_nic.ip_configurations[0].private_ip_address
            pinger = None
            for _ in range(50):  # bounded: the backend may still be starting
                candidate = run_in("client", PINGER, pe_ip)
                assert candidate.stdout is not None
                if candidate.stdout.readline().strip() == "connected":
                    pinger = candidate
                    break
                candidate.kill()
                time.sleep(0.2)
            assert pinger is not None and pinger.stdin is not None and pinger.stdout is not None
            pinger.stdin.write("\n")
            pinger.stdin.flush()
            assert pinger.stdout.readline().strip() == "ping"
        # The server is stopped here. Start it again on the same data directory.
        with helpers.run_server(data_dir, dataplane_prefix=prefix) as server:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # wait for the first full sync
                if (data_dir / "dataplane.json").stat().st_mtime > time.time() - 5:
                    break
                time.sleep(0.1)
            pinger.stdin.write("\n")
            pinger.stdin.flush()
            assert pinger.stdout.readline().strip() == "ping", "the flow died with the restart"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        cli(data_dir, "cleanup", "--netns-prefix", prefix)
        shutil.rmtree(data_dir, ignore_errors=True)
