"""A data-plane test world: control plane + reconciler on real namespaces, no HTTP.

Resources go through the same `ControlPlane.change` path as the API, so the
reconciler is marked dirty exactly as in `privatelink serve`. Processes and sockets
run inside NIC namespaces ("VMs"). Everything is torn down by `close()`.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from privatelink.core import connection as connm
from privatelink.core import load_balancer as lbm
from privatelink.core import local_network_gateway as lngm
from privatelink.core import network_interface as nim
from privatelink.core import private_endpoint as pem
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import public_ip_address as pipm
from privatelink.core import virtual_network as vnm
from privatelink.core import virtual_network_gateway as vngm
from privatelink.core import virtual_network_peering as vpm
from privatelink.core.resource import Resource
from privatelink.core.site import Site
from privatelink.dataplane import names, privileged
from privatelink.dataplane.reconciler import Reconciler, cleanup
from privatelink.service import ControlPlane
from privatelink.store.sql import SqlRepository

PROVIDER = "11111111-1111-4111-8111-111111111111"
CONSUMER = "22222222-2222-4222-8222-222222222222"
CONSUMER2 = "33333333-3333-4333-8333-333333333333"
REGION = "eastus"

WHOAMI = r"""
import http.server, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = f"{name} saw {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[2])), H).serve_forever()
"""

ECHO = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen()
def serve(c):
    try:
        while (d := c.recv(4096)):
            c.sendall(d)
    except OSError:
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@contextlib.contextmanager
def hub_pair(stem: str, lo_up: bool = False) -> Iterator[tuple[str, str]]:
    """Two namespaces `<stem><4 hex>-v-a` and `-v-b` (with `lo` up if asked), always
    deleted after, and none of that prefix left."""
    prefix = stem + secrets.token_hex(2)
    made = [f"{prefix}-v-a", f"{prefix}-v-b"]
    try:
        for name in made:
            privileged.create_netns(name)
            if lo_up:
                subprocess.run(
                    ["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10
                )
        yield made[0], made[1]
    finally:
        for name in made:
            privileged.delete_netns(name)
        assert not [n for n in privileged.list_netns() if n.startswith(prefix)]


def rid(sub: str, kind: str, name: str, rg: str = "rg") -> str:
    """A top-level resource id."""
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/{kind}/{name}"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll until `condition()` is truthy (returned) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def seconds_until_broken(sock: socket.socket, started: float, tries: int = 200) -> float | None:
    """Send "ping" on an echo flow every 10 ms (at most `tries` times) until it fails:
    the seconds from `started` (time.monotonic) to that failure, None if it never did."""
    for _ in range(tries):
        try:
            sock.settimeout(0.2)
            sock.sendall(b"ping")
            if sock.recv(16) != b"ping":
                raise OSError("flow ended")
        except OSError:
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def http_get(netns: str, ip: str, port: int, timeout: float = 2.0) -> str:
    """GET / from inside a namespace; returns the body; raises OSError on failure."""
    with privileged.socket_in_netns(netns) as sock:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected answer {head[:40]!r}")
    return body.decode()


def try_get(netns: str, ip: str, port: int, timeout: float = 1.0) -> str | None:
    """Like http_get, but None instead of an error."""
    try:
        return http_get(netns, ip, port, timeout)
    except OSError:
        return None


class World:
    """One isolated data plane with a unique namespace prefix."""

    def __init__(self, data_dir: Path, realize: bool = True) -> None:
        """`realize=False`: resources only go into the store (a server process started
        on `data_dir` with `--netns-prefix <prefix>` makes them real)."""
        self.prefix = "t" + secrets.token_hex(3)  # unique per test: never touches others
        self.data_dir = data_dir
        self.repo = SqlRepository.sqlite_in(data_dir)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._reconciler = Reconciler(self.repo, self.prefix, data_dir) if realize else None
        self.plane = ControlPlane(self.repo, realizer=self._reconciler)
        if self._reconciler is not None:
            self._reconciler.start()

    @property
    def reconciler(self) -> Reconciler:
        """The in-process data plane (a world made with `realize=False` has none)."""
        assert self._reconciler is not None, "this world has no data plane of its own"
        return self._reconciler

    # --- lifecycle --------------------------------------------------------------------

    def restart_reconciler(self) -> None:
        """Stop the data plane loop and start a fresh one (what a server restart does)."""
        self.reconciler.stop()
        self._reconciler = Reconciler(self.repo, self.prefix, self.data_dir)
        self.plane.realizer = self._reconciler
        self._reconciler.start()

    def close(self) -> None:
        """Stop everything and remove every namespace of this world."""
        try:
            for proc in self.procs:
                proc.kill()
            for proc in self.procs:
                with contextlib.suppress(Exception):
                    proc.wait(timeout=5)
            if self._reconciler is not None:
                self._reconciler.stop()
        finally:
            cleanup(self.prefix)
            self.repo.dispose()

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the reconciler has applied everything written so far (a sync takes
        well under a second; the deadline is for a loaded CI machine, where one kernel
        call may stall and be retried after a back-off)."""
        self.reconciler.mark_dirty()
        assert self.reconciler.wait_idle(timeout), "data plane did not settle"
        last = self.reconciler.last
        assert last is not None and last.error is None, f"sync failed: {last}"

    # --- resources --------------------------------------------------------------------

    def put(self, workflow: Callable[..., Any], resource: Resource) -> Resource:
        """Create or update through the control plane; returns the stored resource."""
        self.plane.change(None, resource.id, "put", workflow, resource)
        with self.plane.read() as view:
            stored = view.get(resource.id)
        assert stored is not None
        return stored

    def get(self, resource_id: str) -> Any:
        with self.plane.read() as view:
            return view.get(resource_id)

    def vnet(
        self, sub: str, name: str, prefix: str, subnets: dict[str, str], location: str = REGION
    ) -> vnm.VirtualNetwork:
        """A network; subnets named 'nat*' get private link service policies disabled."""
        return self.put(
            vnm.create_or_update,
            vnm.VirtualNetwork(
                id=rid(sub, "virtualNetworks", name),
                name=name,
                location=location,
                address_prefixes=(prefix,),
                subnets=tuple(
                    vnm.Subnet(
                        n,
                        p,
                        private_link_service_network_policies="Disabled"
                        if n.startswith("nat")
                        else "Enabled",
                    )
                    for n, p in subnets.items()
                ),
            ),
        )  # type: ignore[return-value]

    def peering(
        self, local: vnm.VirtualNetwork, remote: vnm.VirtualNetwork, **flags: bool
    ) -> vpm.VirtualNetworkPeering:
        """One side of a peering, `local` -> `remote` (flags as the model's fields)."""
        return self.put(
            vpm.create_or_update,
            vpm.VirtualNetworkPeering(
                id=f"{local.id}/virtualNetworkPeerings/to-{remote.name}",
                name=f"to-{remote.name}",
                location="",
                remote_vnet_id=remote.id,
                **flags,
            ),
        )  # type: ignore[return-value]

    def public_ip(self, sub: str, name: str) -> pipm.PublicIPAddress:
        """A Standard static public IP (its address from the public range)."""
        return self.put(
            pipm.create_or_update,
            pipm.PublicIPAddress(
                id=rid(sub, "publicIPAddresses", name), name=name, location=REGION
            ),
        )  # type: ignore[return-value]

    def vpn_gateway(
        self, sub: str, name: str, vnet: vnm.VirtualNetwork, pip: pipm.PublicIPAddress
    ) -> vngm.VirtualNetworkGateway:
        """A route-based VPN gateway in the network's GatewaySubnet."""
        return self.put(
            vngm.create_or_update,
            vngm.VirtualNetworkGateway(
                id=rid(sub, "virtualNetworkGateways", name),
                name=name,
                location=REGION,
                ip_configurations=(
                    vngm.GatewayIpConfiguration("default", vnet.subnet_id("GatewaySubnet"), pip.id),
                ),
            ),
        )  # type: ignore[return-value]

    def local_gateway(
        self, sub: str, name: str, ip: str, prefixes: tuple[str, ...]
    ) -> lngm.LocalNetworkGateway:
        """A local network gateway: what Azure knows of an on-premises site."""
        return self.put(
            connm.create_or_update_local_network_gateway,
            lngm.LocalNetworkGateway(
                id=rid(sub, "localNetworkGateways", name),
                name=name,
                location=REGION,
                gateway_ip_address=ip,
                address_prefixes=prefixes,
            ),
        )  # type: ignore[return-value]

    def vpn_connection(
        self,
        sub: str,
        name: str,
        gateway: vngm.VirtualNetworkGateway,
        local: lngm.LocalNetworkGateway,
        key: str,
    ) -> connm.VirtualNetworkGatewayConnection:
        """A site-to-site IPsec connection with a pre-shared key."""
        return self.put(
            connm.create_or_update,
            connm.VirtualNetworkGatewayConnection(
                id=rid(sub, "connections", name),
                name=name,
                location=REGION,
                virtual_network_gateway1_id=gateway.id,
                local_network_gateway2_id=local.id,
                shared_key=key,
            ),
        )  # type: ignore[return-value]

    def site(self, name: str, space: tuple[str, ...], gateway_ip: str, key: str) -> Site:
        """An on-premises site (what `privatelink site create` stores)."""
        site = Site(name, space, gateway_ip, key, "2026-01-01T00:00:00Z")
        self.repo.put_site(site)
        if self._reconciler is not None:
            self._reconciler.mark_dirty()
        return site

    def peer(self, a: vnm.VirtualNetwork, b: vnm.VirtualNetwork) -> None:
        """Both sides of a peering between two networks (Connected)."""
        self.peering(a, b)
        self.peering(b, a)

    def nic(
        self,
        sub: str,
        name: str,
        subnet_id: str,
        pools: tuple[str, ...] = (),
        location: str = REGION,
    ) -> nim.NetworkInterface:
        """A VM's NIC, optionally in load balancer pools."""
        return self.put(
            nim.create_or_update,
            nim.NetworkInterface(
                id=rid(sub, "networkInterfaces", name),
                name=name,
                location=location,
                ip_configurations=(nim.NicIpConfiguration("ip1", subnet_id, pool_ids=pools),),
            ),
        )  # type: ignore[return-value]

    def load_balancer(
        self,
        sub: str,
        name: str,
        frontends: dict[str, str],
        rules: list[tuple[str, str, int, int, str]],
        probe: tuple[str, int, str | None, int] | None = ("Tcp", 8080, None, 5),
        pools: tuple[str, ...] = ("be",),
        distribution: str = "Default",
    ) -> lbm.LoadBalancer:
        """A Standard LB; rules are (name, frontend, frontend port, backend port, pool)."""
        lb_id = rid(sub, "loadBalancers", name)
        probes = ()
        if probe is not None:
            proto, port, path, interval = probe
            probes = (lbm.Probe("probe", proto, port, path, interval, 1, 1),)
        return self.put(
            pl.create_or_update_load_balancer,
            lbm.LoadBalancer(
                id=lb_id,
                name=name,
                location=REGION,
                frontends=tuple(lbm.Frontend(n, s) for n, s in frontends.items()),
                pools=tuple(lbm.BackendPool(p) for p in pools),
                probes=probes,
                rules=tuple(
                    lbm.Rule(
                        rn,
                        "Tcp",
                        fport,
                        bport,
                        f"{lb_id}/frontendIPConfigurations/{fe}",
                        (f"{lb_id}/backendAddressPools/{pool}",),
                        f"{lb_id}/probes/probe" if probe else None,
                        load_distribution=distribution,
                    )
                    for rn, fe, fport, bport, pool in rules
                ),
            ),
        )  # type: ignore[return-value]

    def service(
        self,
        sub: str,
        name: str,
        frontend_ids: tuple[str, ...],
        nat_subnet: str,
        nat_ips: int = 2,
        auto_approval: tuple[str, ...] = (),
    ) -> plsm.PrivateLinkService:
        """A private link service visible to everyone."""
        return self.put(
            pl.create_or_update_service,
            plsm.PrivateLinkService(
                id=rid(sub, "privateLinkServices", name),
                name=name,
                location=REGION,
                frontend_ids=frontend_ids,
                ip_configurations=tuple(
                    plsm.NatIpConfiguration(f"nat{i}", nat_subnet, primary=i == 0)
                    for i in range(nat_ips)
                ),
                visibility=("*",),
                auto_approval=auto_approval,
            ),
        )  # type: ignore[return-value]

    def endpoint(self, sub: str, name: str, subnet_id: str, target: str) -> pem.PrivateEndpoint:
        """A private endpoint (manual connection) to a service."""
        return self.put(
            pl.create_or_update_endpoint,
            pem.PrivateEndpoint(
                id=rid(sub, "privateEndpoints", name),
                name=name,
                location=REGION,
                subnet_id=subnet_id,
                connections=(
                    pem.PrivateLinkServiceConnection("conn", target, request_message="hi"),
                ),
                manual=True,
            ),
        )  # type: ignore[return-value]

    def endpoint_ip(self, endpoint: pem.PrivateEndpoint) -> str:
        nic = self.get(endpoint.nic_id)
        assert nic is not None and nic.primary_ip
        return str(nic.primary_ip)

    def set_connection(self, service_id: str, endpoint: pem.PrivateEndpoint, status: str) -> None:
        """Approve or reject an endpoint's connection (as the provider)."""
        remote = self.get(endpoint.id).connection.remote_name
        self.plane.change(
            None,
            service_id,
            "put",
            pl.update_connection,
            service_id,
            remote,
            status,
            status,
            None,
        )

    def delete_connection(self, service_id: str, endpoint: pem.PrivateEndpoint) -> None:
        remote = self.get(endpoint.id).connection.remote_name
        self.plane.change(None, service_id, "delete", pl.delete_connection, service_id, remote)

    def delete(self, workflow: Callable[..., Any], resource_id: str) -> None:
        self.plane.change(None, resource_id, "delete", workflow, resource_id)

    # --- namespaces ---------------------------------------------------------------------

    def netns(self, nic: nim.NetworkInterface) -> str:
        """The namespace of a NIC."""
        return names.nic_netns(self.prefix, nic.id)

    def run(self, nic: nim.NetworkInterface, script: str, *args: str) -> subprocess.Popen[bytes]:
        """Start a Python program inside a NIC's namespace (killed at close)."""
        self.settle()  # the NIC's namespace exists once the data plane has synced
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns(nic), sys.executable, "-c", script, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def serve_whoami(
        self, nic: nim.NetworkInterface, name: str, port: int = 8080
    ) -> subprocess.Popen[bytes]:
        """An HTTP backend answering '<name> saw <source ip>'; waits until it listens."""
        proc = self.run(nic, WHOAMI, name, str(port))
        ip = nic.ip_configurations[0].private_ip
        assert ip
        wait_for(lambda: _listening(self.netns(nic), ip, port), 10, f"{name} to listen")
        return proc

    def serve_echo(self, nic: nim.NetworkInterface, port: int = 8080) -> subprocess.Popen[bytes]:
        proc = self.run(nic, ECHO, str(port))
        ip = nic.ip_configurations[0].private_ip
        assert ip
        wait_for(lambda: _listening(self.netns(nic), ip, port), 10, "echo server to listen")
        return proc

    @contextlib.contextmanager
    def connection(self, nic: nim.NetworkInterface, ip: str, port: int) -> Iterator[socket.socket]:
        """A TCP connection opened from inside a NIC's namespace."""
        sock = privileged.socket_in_netns(self.netns(nic))
        sock.settimeout(2)
        try:
            sock.connect((ip, port))
            yield sock
        finally:
            sock.close()


def _listening(netns: str, ip: str, port: int) -> bool:
    try:
        with privileged.socket_in_netns(netns) as sock:
            sock.settimeout(0.5)
            sock.connect((ip, port))
        return True
    except OSError:
        return False
