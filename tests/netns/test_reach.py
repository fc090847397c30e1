"""Reach on real namespaces: a public load balancer frontend from the internet namespace,
and an on-premises site over a real IPsec tunnel (strongSwan on both ends) to a VPN
gateway: VMs and private endpoints from the site, gateway transit to a peered network,
ESP on the wire, and a wrong key that connects nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from world import (
    CONSUMER,
    CONSUMER2,
    PROVIDER,
    WHOAMI,
    World,
    http_get,
    rid,
    try_get,
    wait_for,
)

from privatelink.core import load_balancer as lbm
from privatelink.core import private_link as pl
from privatelink.dataplane import names, privileged
from privatelink.dataplane.reconciler import IPSEC_RUN_DIR as RUN_DIR

pytestmark = pytest.mark.netns

SITE_IP = "198.18.200.1"
HOST = "192.168.1.10"
KEY = 'a"real"key,with#,quotes;and{braces}'


def _ip(nic) -> str:  # type: ignore[no-untyped-def]
    return str(nic.ip_configurations[0].private_ip)


def _cli(world: World, *args: str) -> str:
    """`privatelink exec --data-dir <the world's> ARGS...`; its output."""
    argv = [sys.executable, "-m", "privatelink.cli.main", "exec", "--data-dir", str(world.data_dir)]
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _vpn_missing() -> str | None:
    for tool in ("tcpdump", "unshare"):
        if shutil.which(tool) is None:
            return f"needs `{tool}`"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (user-space ESP)"
    return privileged.strongswan_missing()


def _public_service(world: World):  # type: ignore[no-untyped-def]
    """Provider: backends behind a public load balancer frontend :80 -> 8080, with a
    private link service on that frontend."""
    vnet = world.vnet(PROVIDER, "prov", "10.0.0.0/16", {"be": "10.0.2.0/24", "nat": "10.0.3.0/24"})
    pip = world.public_ip(PROVIDER, "lb-ip")
    lb_id = rid(PROVIDER, "loadBalancers", "lb")
    lb = world.put(
        pl.create_or_update_load_balancer,
        lbm.LoadBalancer(
            id=lb_id,
            name="lb",
            location="eastus",
            frontends=(lbm.Frontend("fe", "", public_ip_id=pip.id),),
            pools=(lbm.BackendPool("be"),),
            rules=(
                lbm.Rule(
                    "http",
                    "Tcp",
                    80,
                    8080,
                    f"{lb_id}/frontendIPConfigurations/fe",
                    (f"{lb_id}/backendAddressPools/be",),
                    None,
                ),
            ),
        ),
    )
    backend = world.nic(
        PROVIDER, "backend", vnet.subnet_id("be"), pools=(f"{lb_id}/backendAddressPools/be",)
    )
    world.serve_whoami(backend, "backend")
    pls = world.service(
        PROVIDER, "svc", (f"{lb_id}/frontendIPConfigurations/fe",), vnet.subnet_id("nat")
    )
    return world.get(pip.id), lb, backend, pls


def test_the_internet_reaches_a_public_frontend_and_a_private_endpoint_reaches_it_too(
    world: World,
) -> None:
    pip, _lb, backend, pls = _public_service(world)
    cons = world.vnet(CONSUMER, "cons", "10.1.0.0/16", {"vms": "10.1.1.0/24", "pe": "10.1.2.0/24"})
    client = world.nic(CONSUMER, "client", cons.subnet_id("vms"))
    pe = world.endpoint(CONSUMER, "pe", cons.subnet_id("pe"), pls.alias)
    world.settle()
    inet = names.inet_netns(world.prefix)
    index = world.data_dir / "dataplane.json"
    assert f'"internet": "{inet}"' in index.read_text()
    # The internet's client address is the public range's last host; backends see it.
    body = wait_for(lambda: try_get(inet, pip.ip_address, 80), 5, "internet -> public IP")
    assert body == "backend saw 198.19.255.254\n"
    # What an operator types: `privatelink exec --internet`.
    assert _cli(
        world, "--internet", "--", "curl", "-s", "-m", "2", f"http://{pip.ip_address}/"
    ) == ("backend saw 198.19.255.254\n")
    # The same service through its private endpoint: a NAT IP, once approved.
    assert try_get(world.netns(client), world.endpoint_ip(pe), 80, timeout=0.5) is None
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    nat_ips = {c.private_ip for c in world.get(pls.id).ip_configurations}
    seen = http_get(world.netns(client), world.endpoint_ip(pe), 80).split(" saw ")[1].strip()
    assert seen in nat_ips
    world.set_connection(pls.id, pe, "Rejected")
    world.settle()
    assert try_get(world.netns(client), world.endpoint_ip(pe), 80, timeout=0.5) is None
    # Nothing but the frontend's port is reachable from the internet, and a VM behind the
    # public frontend reaches nothing there (outbound is not served: its private address
    # has no way back, and its hub drops new flows into the uplink, test_fabric.py).
    assert try_get(inet, pip.ip_address, 8080, timeout=0.5) is None
    serve = [sys.executable, "-c", WHOAMI, "internet", "8081"]
    listener = subprocess.Popen(
        ["ip", "netns", "exec", inet, *serve],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    world.procs.append(listener)
    wait_for(lambda: try_get(inet, "198.19.255.254", 8081), 10, "a listener on the internet")
    assert try_get(world.netns(backend), "198.19.255.254", 8081, timeout=0.5) is None


def _vpn_scene(world: World, site_key: str = KEY):  # type: ignore[no-untyped-def]
    """Network `az` (10.1/16) with a VM, a private endpoint to the provider's service and
    a VPN gateway; `spoke` (10.2/16) peered with it, using its gateway; a site
    192.168.0.0/16 behind SITE_IP, and a connection for it with key KEY."""
    _pip, _lb, _backend, pls = _public_service(world)
    az = world.vnet(
        CONSUMER,
        "az",
        "10.1.0.0/16",
        {"vms": "10.1.1.0/24", "pe": "10.1.2.0/24", "GatewaySubnet": "10.1.255.0/27"},
    )
    vm = world.nic(CONSUMER, "vm", az.subnet_id("vms"))
    world.serve_whoami(vm, "vm")
    pe = world.endpoint(CONSUMER, "pe", az.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    gateway = world.vpn_gateway(CONSUMER, "gw", az, world.public_ip(CONSUMER, "gw-ip"))
    local = world.local_gateway(CONSUMER, "branch", SITE_IP, ("192.168.0.0/16",))
    conn = world.vpn_connection(CONSUMER, "to-branch", gateway, local, KEY)
    spoke = world.vnet(CONSUMER2, "spoke", "10.2.0.0/16", {"vms": "10.2.1.0/24"})
    spoke_vm = world.nic(CONSUMER2, "spoke-vm", spoke.subnet_id("vms"))
    world.serve_whoami(spoke_vm, "spoke")
    world.peering(az, spoke, allow_gateway_transit=True)
    world.peering(spoke, az, use_remote_gateways=True)
    world.site("branch", ("192.168.0.0/16",), SITE_IP, site_key)
    world.settle()
    host = names.host_netns(world.prefix, "branch", HOST)
    site_ns = names.site_netns(world.prefix, "branch")
    privileged.ensure_site_host(site_ns, host, HOST, names.site_host_ifname(HOST), names.GATEWAY)
    return pls, pe, vm, spoke_vm, gateway, conn, host


def _print_logs(world: World) -> None:
    """What strongSwan said on both ends (shown with a failure)."""
    for netns in sorted(world.reconciler._charons):
        log = RUN_DIR / netns / "charon.log"
        print(f"--- {log}")
        print(log.read_text()[-4000:] if log.exists() else "(none)")


@contextlib.contextmanager
def _capture(netns: str, ifname: str, pcap: Path) -> Iterator[None]:
    argv = ["ip", "netns", "exec", netns, "tcpdump", "-i", ifname, "-n", "--immediate-mode"]
    argv += ["-U", "-B", "65536", "-Z", "root", "-w", str(pcap)]
    err = pcap.with_suffix(".err")
    with err.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=sink)
    try:
        wait_for(lambda: b"listening on" in err.read_bytes(), 10, "tcpdump to listen")
        yield
        time.sleep(0.2)  # the last packets reach the file (immediate mode, -U)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _count(pcap: Path, expression: str) -> int:
    done = subprocess.run(
        ["tcpdump", "-r", str(pcap), "-n", expression],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return len(done.stdout.splitlines())


@pytest.mark.skipif(_vpn_missing() is not None, reason=str(_vpn_missing()))
def test_a_site_reaches_vms_endpoints_and_a_transit_peer_over_esp(
    world: World, tmp_path: Path
) -> None:
    pls, pe, vm, spoke_vm, gateway, conn, host = _vpn_scene(world)
    try:
        wait_for(
            lambda: world.get(conn.id).connection_status == "Connected",
            20,
            "the tunnel to come up",
        )
    except AssertionError:
        _print_logs(world)
        raise
    assert world.get(gateway.id).ipsec_mode in ("kernel", "libipsec")
    gw_ns = names.gateway_netns(world.prefix, gateway.id)
    wire = next(
        w
        for w in world.reconciler._fabric.wires
        if w.a_netns == gw_ns and w.b_netns == names.inet_netns(world.prefix)
    )  # type: ignore[union-attr]
    pcap = tmp_path / "wire.pcap"
    with _capture(wire.b_netns, wire.b_ifname, pcap):
        body = wait_for(lambda: try_get(host, _ip(vm), 8080), 10, "site -> VM")
        # What an operator types: `privatelink exec --site NAME --ip IP` (the host exists
        # already: it is only checked).
        argv = ("--site", "branch", "--ip", HOST, "--", "curl", "-s", "-m", "2")
        assert _cli(world, *argv, f"http://{_ip(vm)}:8080/") == f"vm saw {HOST}\n"
        assert body == f"vm saw {HOST}\n"  # no NAT over the tunnel: the host's own address
        assert try_get(host, world.endpoint_ip(pe), 80) is not None  # site -> endpoint
        assert try_get(host, _ip(spoke_vm), 8080) == f"spoke saw {HOST}\n"  # transit
    esp = "(udp port 4500 and udp[8:4] != 0) or ip proto 50"
    assert _count(pcap, esp) > 0, "no ESP between the gateways"
    assert _count(pcap, "tcp") == 0, "plain TCP between the gateways"
    wait_for(lambda: world.get(conn.id).ingress_bytes_transferred > 0, 10, "the connection's bytes")
    # Rejected: the endpoint is cut for the site as for everyone; the VM still answers.
    world.set_connection(pls.id, pe, "Rejected")
    world.settle()
    assert try_get(host, world.endpoint_ip(pe), 80, timeout=0.5) is None
    assert try_get(host, _ip(vm), 8080) == f"vm saw {HOST}\n"


@pytest.mark.skipif(_vpn_missing() is not None, reason=str(_vpn_missing()))
def test_a_wrong_key_connects_nothing(world: World) -> None:
    _pls, pe, vm, _spoke_vm, _gateway, conn, host = _vpn_scene(world, site_key="notTheKey")
    wait_for(lambda: world.get(conn.id).connection_status == "NotConnected", 10, "NotConnected")
    time.sleep(3)  # a bounded wait for a tunnel that must not come up
    assert world.get(conn.id).connection_status == "NotConnected"
    assert try_get(host, _ip(vm), 8080, timeout=0.5) is None
    assert try_get(host, world.endpoint_ip(pe), 80, timeout=0.5) is None
