"""SIGTERM on `privatelink serve` with the data plane: the kernel state stays (issue 11).

A real server process (data plane on, a namespace prefix of its own) is driven with
azure-mgmt-network: provider (VNet, Standard load balancer, backend VM, private link
service) and consumer (VNet, client VM, private endpoint, approved). An echo server runs
in the backend VM; a TCP flow goes from the client VM through the endpoint. Then:

- SIGTERM: the server exits 0, and no process of it is left in our namespaces (probes,
  DNS, reconciler all went with it);
- while it is down, the established flow keeps working, and so does a new connection
  through the endpoint: nothing was torn down;
- a restart on the same data directory changes nothing in the kernel (same namespace
  inodes, same interfaces and ifindexes, same routes), the flow still works, and an
  approval made after the restart carries traffic.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arm_bodies import Rule, lb_body, nic_body, pls_body, provider_vnet_body
from identities import Identity
from serverproc import ServerProcess, serve_process
from world import ECHO, wait_for

from privatelink.dataplane import names, privileged

pytestmark = pytest.mark.netns

LOCATION = "eastus"
STOP_DEADLINE_S = 40.0  # drain (nothing in flight) + reconciler, probes, DNS stop


class Plane:
    """One data directory and namespace prefix; processes and namespaces always cleaned."""

    def __init__(self, root: Path) -> None:
        self.prefix = "g" + secrets.token_hex(3)
        self.data_dir = root / "data"
        self.procs: list[subprocess.Popen[bytes]] = []

    @contextlib.contextmanager
    def server(self) -> Iterator[tuple[ServerProcess, Any]]:
        """`privatelink serve` with the data plane; yields it and an admin network client."""
        args = ("--dataplane", "on", "--netns-prefix", self.prefix, "--shutdown-timeout", "10")
        with serve_process(self.data_dir, *args) as server:
            admin = Identity.from_json(server.credentials)
            try:
                yield server, admin.network()
            finally:
                admin.close()

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "privatelink.cli.main", args[0], "--data-dir"]
        return subprocess.run(
            [*argv, str(self.data_dir), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_echo(self, nic: str, port: int = 8080) -> subprocess.Popen[bytes]:
        """The echo server in a VM (`privatelink exec`), killed at the end."""
        argv = [sys.executable, "-m", "privatelink.cli.main", "exec", "--data-dir"]
        argv += [str(self.data_dir), "--nic", nic, "--", sys.executable, "-c", ECHO, str(port)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def ours(self) -> list[str]:
        return [n for n in privileged.list_netns() if names.is_ours(self.prefix, n)]

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.cli("cleanup", "--netns-prefix", self.prefix)


@pytest.fixture
def plane(netns_required: None, tmp_path: Path) -> Iterator[Plane]:
    p = Plane(tmp_path)
    try:
        yield p
    finally:
        p.close()
        left = p.ours()
        assert not left, f"namespaces left behind: {left}"


# --- topology through the ARM API ----------------------------------------------------------


def build(net: Any, sub: str) -> dict[str, Any]:
    """Provider and consumer networks, the service and one approved endpoint."""
    base = f"/subscriptions/{sub}/resourceGroups/rg-prov/providers/Microsoft.Network"
    net.virtual_networks.begin_create_or_update(
        "rg-prov", "vnet-prov", provider_vnet_body(LOCATION)
    ).result()
    subnet = f"{base}/virtualNetworks/vnet-prov/subnets"
    lb = f"{base}/loadBalancers/lb"
    rule = Rule("r80", "fe", "be")  # TCP 80 -> backend 8080, probed on 8080
    net.load_balancers.begin_create_or_update(
        "rg-prov", "lb", lb_body(lb, f"{subnet}/frontend", LOCATION, rules=[rule])
    ).result()
    backend = net.network_interfaces.begin_create_or_update(
        "rg-prov",
        "backend",
        nic_body(f"{subnet}/backend", LOCATION, f"{lb}/backendAddressPools/be"),
    ).result()
    pls = net.private_link_services.begin_create_or_update(
        "rg-prov",
        "svc",
        pls_body(f"{lb}/frontendIPConfigurations/fe", f"{subnet}/nat", LOCATION, visibility=["*"]),
    ).result()
    net.virtual_networks.begin_create_or_update(
        "rg-cons",
        "vnet-cons",
        {
            "location": LOCATION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
                "subnets": [{"name": "pe", "properties": {"addressPrefix": "10.1.1.0/24"}}],
            },
        },
    ).result()
    pe_subnet = (
        f"/subscriptions/{sub}/resourceGroups/rg-cons/providers/Microsoft.Network"
        "/virtualNetworks/vnet-cons/subnets/pe"
    )
    client = net.network_interfaces.begin_create_or_update(
        "rg-cons", "client", nic_body(pe_subnet, LOCATION)
    ).result()
    assert backend.provisioning_state == "Succeeded" and client.provisioning_state == "Succeeded"
    return {"pls": pls, "pe_subnet": pe_subnet, "backend": backend, "client": client}


def endpoint(net: Any, name: str, topo: dict[str, Any]) -> str:
    """A manual private endpoint to the service, approved by the provider; its IP."""
    net.private_endpoints.begin_create_or_update(
        "rg-cons",
        name,
        {
            "location": LOCATION,
            "properties": {
                "subnet": {"id": topo["pe_subnet"]},
                "manualPrivateLinkServiceConnections": [
                    {"name": "conn", "properties": {"privateLinkServiceId": topo["pls"].id}}
                ],
            },
        },
    ).result()
    pe = net.private_endpoints.get("rg-cons", name)
    pending = [
        c
        for c in net.private_link_services.list_private_endpoint_connections("rg-prov", "svc")
        if c.private_endpoint.id.lower() == pe.id.lower()
    ]
    assert len(pending) == 1
    net.private_link_services.update_private_endpoint_connection(
        "rg-prov",
        "svc",
        pending[0].name,
        {"properties": {"privateLinkServiceConnectionState": {"status": "Approved"}}},
    )
    nic = net.network_interfaces.get("rg-cons", pe.network_interfaces[0].id.rsplit("/", 1)[-1])
    return str(nic.ip_configurations[0].private_ip_address)


# --- traffic and kernel state ----------------------------------------------------------------


def connect(netns: str, ip: str, port: int = 80) -> socket.socket:
    sock = privileged.socket_in_netns(netns)
    sock.settimeout(3)
    try:
        sock.connect((ip, port))
    except OSError:
        sock.close()
        raise
    return sock


def echo(sock: socket.socket, data: bytes) -> bool:
    """Whether `data` comes back on this connection."""
    try:
        sock.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = sock.recv(len(data) - len(got))
            if not chunk:
                return False
            got += chunk
        return got == data
    except OSError:
        return False


def echo_once(netns: str, ip: str) -> bool:
    """A new connection through the endpoint, one round trip."""
    try:
        with connect(netns, ip) as sock:
            return echo(sock, b"new connection")
    except OSError:
        return False


def kernel_state(plane: Plane) -> dict[str, object]:
    """Every namespace of ours: its inode, interfaces (with ifindex), addresses, routes."""
    state: dict[str, object] = {}
    for netns in sorted(plane.ours()):
        with privileged.Netlink(netns) as nl:
            links = sorted((link.name, link.index, link.addresses) for link in nl.links().values())
            state[netns] = (
                privileged.netns_inode(netns),
                links,
                sorted(nl.routes()),
                sorted(nl.routes(table=names.ENDPOINT_TABLE).items()),
                privileged.list_nft(netns, names.TABLE).count("chain "),
            )
    return state


def pids_in(plane: Plane) -> set[int]:
    """Processes whose network namespace is one of ours."""
    inodes = {privileged.netns_inode(n) for n in plane.ours()} - {None}
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.add(int(entry))
    return found


def index_mtime(plane: Plane) -> float:
    """When the reconciler last finished a sync (it rewrites dataplane.json each time)."""
    try:
        return (plane.data_dir / "dataplane.json").stat().st_mtime_ns / 1e9
    except OSError:
        return 0.0


# --- the test -------------------------------------------------------------------------------


def test_sigterm_leaves_the_kernel_state_and_a_restart_picks_up(plane: Plane) -> None:
    with plane.server() as (server, net):
        sub = server.credentials["subscription_id"]
        topo = build(net, sub)
        pe_ip = endpoint(net, "pe", topo)
        client_ns = names.nic_netns(plane.prefix, topo["client"].id)
        echo_proc = plane.start_echo("backend")
        wait_for(lambda: echo_once(client_ns, pe_ip), 20, "echo through the endpoint")
        flow = connect(client_ns, pe_ip)
        assert echo(flow, b"one")
        before = kernel_state(plane)
        assert before, "no namespaces of ours"
        assert echo_proc.pid in pids_in(plane), "pids_in does not see processes in our namespaces"

        server.send_signal(signal.SIGTERM)
        assert server.wait_exit(STOP_DEADLINE_S) == 0
        assert not Path(f"/proc/{server.proc.pid}").exists()

    with flow:
        # The server is down: nothing of it runs in our namespaces, the kernel state is
        # as it was, the established flow and new connections through the endpoint work.
        assert pids_in(plane) <= {p.pid for p in plane.procs}, "a server process lingers"
        assert echo_proc.poll() is None
        assert echo(flow, b"two"), "the established flow stopped with the server"
        assert echo_once(client_ns, pe_ip), "a new connection failed while the server is down"
        assert kernel_state(plane) == before, "the kernel state changed at shutdown"

        synced_before = index_mtime(plane)
        with plane.server() as (server, net):
            wait_for(lambda: index_mtime(plane) > synced_before, 30, "the first sync")
            assert echo(flow, b"three"), "the established flow did not survive the restart"
            assert kernel_state(plane) == before, "the restart tore down or rebuilt state"
            # A change after the restart is realized as usual.
            pe2_ip = endpoint(net, "pe2", topo)
            assert pe2_ip != pe_ip
            wait_for(lambda: echo_once(client_ns, pe2_ip), 20, "echo through the new endpoint")
            assert echo(flow, b"four")
