"""Private DNS on real namespaces: each VNet's 168.63.129.16 answers from its linked zones.

Queries are real DNS packets sent from inside NIC namespaces ("VMs") to the hub's
server, with dnspython over a socket created in the namespace, or by programs started
with `ip netns exec` (which sees /etc/netns/<ns>/resolv.conf as /etc/resolv.conf).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from serverproc import serve_process
from world import CONSUMER, CONSUMER2, PROVIDER, WHOAMI, World, hub_pair, rid, try_get, wait_for

from privatelink.core import network_interface as nim
from privatelink.core import private_dns as pdm
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm
from privatelink.core.ids import key
from privatelink.dataplane import names, privileged
from privatelink.dns.server import DnsServer
from privatelink.service import Realizers

pytestmark = pytest.mark.netns

DNS_IP = names.AZURE_PLATFORM_IP
WHOAMI_ARGS = ("b0", "8080")  # whoami's name and port


@pytest.fixture
def dns_world(world: World) -> Iterator[tuple[World, DnsServer]]:
    """The world's data plane plus its DNS server, wired as `privatelink serve` does."""
    server = DnsServer(world.repo, world.prefix, recheck_seconds=1.0)
    world.reconciler.add_listener(server.hubs_changed)
    world.plane.realizer = Realizers(world.reconciler, server)
    server.start()
    try:
        yield world, server
    finally:
        server.stop()  # before the world removes the namespaces (sockets pin them)


# --- helpers --------------------------------------------------------------------------


def ask(netns: str, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
    """One query from inside a namespace to the VNet's resolver address."""
    query = dns.message.make_query(name, rdtype)
    if tcp:
        with privileged.socket_in_netns(netns) as sock:
            sock.settimeout(2)
            sock.connect((DNS_IP, 53))
            sock.setblocking(False)
            return dns.query.tcp(query, DNS_IP, timeout=2, sock=sock)
    with privileged.socket_in_netns(netns, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            return dns.query.udp(query, DNS_IP, timeout=2, sock=sock)
        except dns.query.UnexpectedSource as exc:
            # Seen twice in full suites, never alone: fail with what the namespaces held.
            raise AssertionError(f"{exc}\n{_udp_state(netns)}") from exc


def _udp_state(netns: str) -> str:
    """UDP sockets, addresses and conntrack entries of the namespaces of this test's
    world (those sharing `netns`'s prefix), for a failure message."""
    prefix = netns.split("-", 1)[0] + "-"
    out = []
    for name in sorted(n for n in privileged.list_netns() if n.startswith(prefix)):
        for argv in (
            ["ip", "-n", name, "-brief", "addr"],
            ["ip", "netns", "exec", name, "ss", "-uanp"],
            ["ip", "netns", "exec", name, "conntrack", "-L", "-p", "udp"],
        ):
            run = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            out.append(f"$ {' '.join(argv)}\n{run.stdout}{run.stderr}")
    return "\n".join(out)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in reply.answer for rd in rrset)


def ready(world: World, server: DnsServer, *vnet_ids: str) -> None:
    """Kernel state applied, table current, and each VNet's hub served."""
    world.settle()
    assert server.wait_idle(10), "DNS table did not catch up"
    hubs = {names.hub_netns(world.prefix, v) for v in vnet_ids}
    wait_for(lambda: hubs <= set(server.bound()), 10, f"DNS sockets in {hubs}")


def vnet(world: World, sub: str, name: str, rg: str = "rg") -> vnm.VirtualNetwork:
    """A 10.0.0.0/16 network (every test VNet overlaps: answers must not)."""
    return world.put(
        vnm.create_or_update,
        vnm.VirtualNetwork(
            id=rid(sub, "virtualNetworks", name, rg),
            name=name,
            location="eastus",
            address_prefixes=("10.0.0.0/16",),
            subnets=(vnm.Subnet("vms", "10.0.1.0/24"), vnm.Subnet("pe", "10.0.2.0/24")),
        ),
    )  # type: ignore[return-value]


def vm(world: World, sub: str, name: str, network: vnm.VirtualNetwork) -> nim.NetworkInterface:
    return world.nic(sub, name, network.subnet_id("vms"))


def zone(world: World, sub: str, rg: str, domain: str, records: dict[str, str]) -> str:
    """A private zone with A records (relative name -> address); returns its id."""
    zone_id = rid(sub, "privateDnsZones", domain, rg)
    world.put(
        pdm.create_or_update_zone,
        pdm.PrivateDnsZone(id=zone_id, name=domain, location="global"),
    )
    for name, ip in records.items():
        world.put(
            pdm.create_or_update_record_set,
            pdm.ARecordSet(
                id=f"{zone_id}/A/{name}", name=name, location="", ttl=10, ipv4_addresses=(ip,)
            ),
        )
    return zone_id


def link(world: World, zone_id: str, network: vnm.VirtualNetwork) -> str:
    link_id = f"{zone_id}/virtualNetworkLinks/to-{network.name}"
    world.put(
        pdm.create_or_update_link,
        pdm.VirtualNetworkLink(
            id=link_id,
            name=f"to-{network.name}",
            location="global",
            virtual_network_id=network.id,
        ),
    )
    return link_id


# --- the rules, asked from inside a VM ---------------------------------------------------


def test_the_server_binds_only_once_the_address_is_there_and_replies_from_it(
    netns_required: None,
) -> None:
    """A socket bound (with IP_FREEBIND) before a new namespace had its local routing
    table replied from 169.254.0.1, which clients drop: a rare full-suite failure."""
    with hub_pair("dnsbind") as (hub, client):
        with pytest.raises(privileged.AddressNotReady):
            privileged.server_sockets_in_netns(hub, DNS_IP, 53)  # a brand-new namespace

        def ip(*argv: str) -> None:
            subprocess.run(["ip", *argv], check=True, timeout=10)

        ip("link", "add", "h0", "netns", hub, "type", "veth", "peer", "c0", "netns", client)
        ip("-n", hub, "link", "set", "lo", "up")
        with pytest.raises(privileged.AddressNotReady):
            privileged.server_sockets_in_netns(hub, DNS_IP, 53)  # lo up, still no address
        ip("-n", hub, "addr", "add", f"{DNS_IP}/32", "dev", "lo")
        ip("-n", hub, "addr", "add", f"{names.GATEWAY}/32", "dev", "h0")
        ip("-n", hub, "link", "set", "h0", "up")
        ip("-n", hub, "route", "add", "10.0.1.4/32", "dev", "h0", "src", names.GATEWAY)
        ip("-n", client, "addr", "add", "10.0.1.4/32", "dev", "c0")
        ip("-n", client, "link", "set", "c0", "up")
        ip("-n", client, "route", "add", "default", "via", names.GATEWAY, "dev", "c0", "onlink")
        udp, tcp, _inode = privileged.server_sockets_in_netns(hub, DNS_IP, 53)
        with udp, tcp, privileged.socket_in_netns(client, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"query", (DNS_IP, 53))
            udp.setblocking(True)
            udp.settimeout(5)
            query, peer = udp.recvfrom(64)
            assert query == b"query"
            udp.sendto(b"reply", peer)
            assert sock.recvfrom(64) == (b"reply", (DNS_IP, 53))


def test_a_linked_zone_answers_inside_its_vnet(dns_world: tuple[World, DnsServer]) -> None:
    world, server = dns_world
    network = vnet(world, CONSUMER, "cons")
    client = vm(world, CONSUMER, "client", network)
    zone_id = zone(world, CONSUMER, "rg", "contoso.example", {"svc": "10.1.0.5", "@": "10.1.0.1"})
    link(world, zone_id, network)
    ready(world, server, network.id)
    ns = world.netns(client)

    reply = ask(ns, "svc.contoso.example")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert addresses(reply) == ["10.1.0.5"] and reply.answer[0].ttl == 10
    assert addresses(ask(ns, "SVC.Contoso.Example")) == ["10.1.0.5"]
    assert addresses(ask(ns, "contoso.example")) == ["10.1.0.1"]

    missing = ask(ns, "nope.contoso.example")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert [r.name.to_text() for r in missing.authority] == ["contoso.example."]

    nodata = ask(ns, "svc.contoso.example", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == [] and nodata.authority

    for outside in ("example.org", "microsoft.com", "svc.contoso.example.org"):
        assert ask(ns, outside).rcode() == dns.rcode.REFUSED, outside

    over_tcp = ask(ns, "svc.contoso.example", tcp=True)
    assert addresses(over_tcp) == ["10.1.0.5"]
    assert ask(ns, "nope.contoso.example", tcp=True).rcode() == dns.rcode.NXDOMAIN


def test_each_vnet_gets_its_own_zones_and_an_unlinked_one_none(
    dns_world: tuple[World, DnsServer],
) -> None:
    world, server = dns_world
    # Three VNets with one address space; two zones named contoso.example in two groups.
    net_a, net_b, net_c = (
        vnet(world, CONSUMER, "a", "rg-a"),
        vnet(world, CONSUMER2, "b", "rg-b"),
        vnet(world, CONSUMER, "c", "rg-c"),
    )
    vm_a, vm_b, vm_c = (
        vm(world, CONSUMER, "vm-a", net_a),
        vm(world, CONSUMER2, "vm-b", net_b),
        vm(world, CONSUMER, "vm-c", net_c),
    )
    link(world, zone(world, CONSUMER, "rg-a", "contoso.example", {"svc": "10.1.0.5"}), net_a)
    zone_b = zone(world, CONSUMER2, "rg-b", "contoso.example", {"svc": "10.2.0.5", "b": "10.2.0.6"})
    link(world, zone_b, net_b)
    ready(world, server, net_a.id, net_b.id, net_c.id)
    # The hubs serve with their VNets' keys: what a query gets depends on where it comes from.
    assert set(server.bound().values()) == {key(net_a.id), key(net_b.id), key(net_c.id)}

    assert addresses(ask(world.netns(vm_a), "svc.contoso.example")) == ["10.1.0.5"]
    assert addresses(ask(world.netns(vm_b), "svc.contoso.example")) == ["10.2.0.5"]
    assert ask(world.netns(vm_a), "b.contoso.example").rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask(world.netns(vm_b), "b.contoso.example")) == ["10.2.0.6"]
    for name in ("svc.contoso.example", "b.contoso.example", "example.org"):
        assert ask(world.netns(vm_c), name).rcode() == dns.rcode.REFUSED, name

    # Unlinking takes the zone away from that VNet only.
    world.delete(pdm.delete_link, f"{zone_b}/virtualNetworkLinks/to-b")
    assert server.wait_idle(5)
    assert ask(world.netns(vm_b), "svc.contoso.example").rcode() == dns.rcode.REFUSED
    assert addresses(ask(world.netns(vm_a), "svc.contoso.example")) == ["10.1.0.5"]


def test_programs_in_a_vm_resolve_through_resolv_conf(
    dns_world: tuple[World, DnsServer],
) -> None:
    world, server = dns_world
    network = vnet(world, CONSUMER, "cons")
    client = vm(world, CONSUMER, "client", network)
    link(world, zone(world, CONSUMER, "rg", "contoso.example", {"svc": "10.1.0.5"}), network)
    ready(world, server, network.id)
    ns = world.netns(client)
    conf = Path("/etc/netns") / ns / "resolv.conf"
    text = conf.read_text()
    assert "privatelink" in text and f"nameserver {DNS_IP}\n" in text
    hub_conf = Path("/etc/netns") / names.hub_netns(world.prefix, network.id) / "resolv.conf"
    assert hub_conf.read_text() == text

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=20
        )

    hosts = run("getent", "ahostsv4", "svc.contoso.example")  # glibc: nsswitch, resolv.conf
    assert hosts.returncode == 0 and hosts.stdout.split()[0] == "10.1.0.5", hosts
    assert run("getent", "ahostsv4", "nope.contoso.example").returncode == 2  # not found
    script = (
        "import socket, dns.resolver\n"
        "r = dns.resolver.Resolver()\n"  # reads /etc/resolv.conf: the namespace's copy
        "print(r.nameservers[0], socket.gethostbyname('svc.contoso.example'),"
        " r.resolve('svc.contoso.example', 'A')[0].address)\n"
        "try:\n"
        "    r.resolve('nope.contoso.example', 'A')\n"
        "except dns.resolver.NXDOMAIN:\n"
        "    print('NXDOMAIN')\n"
    )
    out = run(sys.executable, "-c", script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [DNS_IP, "10.1.0.5", "10.1.0.5", "NXDOMAIN"]

    # The VM goes: so does its resolv.conf.
    world.delete(nim.delete, client.id)
    world.settle()
    assert not conf.parent.exists()


def test_records_follow_approval_and_rejection_within_a_second(
    dns_world: tuple[World, DnsServer],
) -> None:
    world, server = dns_world
    # Provider: LB :80 -> backend :8080, a service announcing svc.contoso.example.
    prov = world.vnet(
        PROVIDER,
        "prov",
        "10.0.0.0/16",
        {"fe": "10.0.1.0/24", "be": "10.0.2.0/24", "nat": "10.0.3.0/24"},
    )
    lb = world.load_balancer(
        PROVIDER, "lb", {"fe": prov.subnet_id("fe")}, [("http", "fe", 80, 8080, "be")], probe=None
    )
    backend = world.nic(
        PROVIDER,
        "backend0",
        prov.subnet_id("be"),
        pools=(lb.child_id("backendAddressPools", "be"),),
    )
    pls: plsm.PrivateLinkService = world.put(
        pl.create_or_update_service,
        plsm.PrivateLinkService(
            id=rid(PROVIDER, "privateLinkServices", "svc"),
            name="svc",
            location="eastus",
            frontend_ids=(lb.child_id("frontendIPConfigurations", "fe"),),
            ip_configurations=(
                plsm.NatIpConfiguration("nat0", prov.subnet_id("nat"), primary=True),
            ),
            visibility=("*",),
            fqdns=("svc.contoso.example",),
        ),
    )  # type: ignore[assignment]
    world.serve_whoami(backend, "b0")
    # Consumer: a pending endpoint whose zone group names the linked zone.
    cons = vnet(world, CONSUMER, "cons")
    client = vm(world, CONSUMER, "client", cons)
    zone_id = zone(world, CONSUMER, "rg", "contoso.example", {"other": "10.1.0.9"})
    link(world, zone_id, cons)
    pe = world.endpoint(CONSUMER, "pe", cons.subnet_id("pe"), pls.alias)
    world.put(
        pdm.create_or_update_group,
        pdm.PrivateDnsZoneGroup(
            id=f"{pe.id}/privateDnsZoneGroups/default",
            name="default",
            location="",
            configs=(pdm.ZoneConfig("c1", zone_id),),
        ),
    )
    ready(world, server, cons.id)
    ns = world.netns(client)
    pe_ip = world.endpoint_ip(pe)
    assert world.get(pe.id).connection.status == "Pending"
    assert ask(ns, "svc.contoso.example").rcode() == dns.rcode.NXDOMAIN

    def answered() -> list[str]:
        return addresses(ask(ns, "svc.contoso.example"))

    approved_at = time.monotonic()
    world.set_connection(pls.id, pe, "Approved")
    assert wait_for(answered, 1.0, "the endpoint's record after approval", every=0.01) == [pe_ip]
    assert time.monotonic() - approved_at < 1.0
    # By name, through the endpoint, to the backend (which sees the service's NAT IP).
    body = wait_for(lambda: try_get(ns, pe_ip, 80), 5, "traffic through the PE")
    assert body.startswith("b0 saw 10.0.3.")
    fetch = (
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://svc.contoso.example/', timeout=3).read().decode())"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", fetch],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0 and out.stdout.startswith("b0 saw 10.0.3."), out

    rejected_at = time.monotonic()
    world.set_connection(pls.id, pe, "Rejected")
    wait_for(
        lambda: ask(ns, "svc.contoso.example").rcode() == dns.rcode.NXDOMAIN,
        1.0,
        "the record to go after rejection",
        every=0.01,
    )
    assert time.monotonic() - rejected_at < 1.0
    assert addresses(ask(ns, "other.contoso.example")) == ["10.1.0.9"]  # stored ones stay


def test_a_recreated_hub_is_served_again_and_a_gone_one_released(
    dns_world: tuple[World, DnsServer], caplog: pytest.LogCaptureFixture
) -> None:
    world, server = dns_world
    network = vnet(world, CONSUMER, "cons")
    client = vm(world, CONSUMER, "client", network)
    link_id = link(
        world, zone(world, CONSUMER, "rg", "contoso.example", {"svc": "10.1.0.5"}), network
    )
    ready(world, server, network.id)
    hub = names.hub_netns(world.prefix, network.id)
    binds, checks = server.binds, server.checks
    # The inode check recognizes our own namespace: periodic checks (1 s) do not rebind.
    wait_for(lambda: server.checks >= checks + 2, 5, "two periodic binding checks")
    assert server.binds == binds
    assert addresses(ask(world.netns(client), "svc.contoso.example")) == ["10.1.0.5"]

    # Someone deletes the hub: the next sync misses it, recreates it and DNS follows. Our
    # sockets keep the old namespace (and the VM's old veth) alive until the check after
    # that sync closes them; the sync must pair the VM with the new hub all the same.
    caplog.set_level(logging.WARNING, logger="privatelink.dataplane")
    privileged.delete_netns(hub)
    world.settle()
    failed = [r.getMessage() for r in caplog.records if "sync failed" in r.getMessage()]
    assert not failed, failed
    wait_for(lambda: server.binds > binds, 5, "a rebind in the recreated hub")
    wait_for(
        lambda: _answers(world.netns(client), "svc.contoso.example") == ["10.1.0.5"],
        5,
        "answers from the recreated hub",
    )

    # The VNet goes: its sockets are closed (they would keep the namespace alive).
    world.delete(pdm.delete_link, link_id)
    world.delete(nim.delete, client.id)
    world.delete(vnm.delete, network.id)
    world.settle()
    wait_for(lambda: hub not in server.bound(), 5, "the gone hub's sockets closed")


def _answers(netns: str, name: str) -> list[str] | None:
    try:
        return addresses(ask(netns, name))
    except (dns.exception.Timeout, OSError):
        return None


# --- the real server: `privatelink serve` wires the DNS server, `privatelink exec` uses it ----


@dataclass
class Served:
    """A `privatelink serve --dataplane on` process and SDK clients for its subscription."""

    data_dir: Path
    prefix: str
    net: Any  # azure.mgmt.network.NetworkManagementClient
    dns: Any  # azure.mgmt.privatedns.PrivateDnsManagementClient
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def exec(self, nic: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """`privatelink exec --nic <nic> -- argv` as a user runs it."""
        return subprocess.run(
            [*self.cli("exec"), "--nic", nic, "--", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def cli(self, command: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "privatelink.cli.main",
            command,
            "--data-dir",
            str(self.data_dir),
        ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The real server with the data plane and its own prefix; everything swept after."""
    for tool in ("ip", "nft", "conntrack", "curl", "getent"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs `{tool}`")
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    from azure.identity import ClientSecretCredential
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.privatedns import PrivateDnsManagementClient

    prefix = "d" + secrets.token_hex(3)
    data_dir = tmp_path / "server"
    clients: list[Any] = []
    served: Served | None = None
    try:
        with serve_process(data_dir, "--dataplane", "on", "--netns-prefix", prefix) as started:
            c = started.credentials
            credential = ClientSecretCredential(
                c["tenant_id"],
                c["client_id"],
                c["client_secret"],
                authority=started.url,
                disable_instance_discovery=True,
                connection_verify=started.ca_file,
            )
            options = {
                "base_url": started.url,
                "connection_verify": started.ca_file,
                "polling_interval": 0,
                "retry_total": 0,
            }
            sub = c["subscription_id"]
            clients += [
                NetworkManagementClient(credential, sub, **options),
                PrivateDnsManagementClient(credential, sub, **options),
                credential,
            ]
            served = Served(data_dir, prefix, clients[0], clients[1])
            try:
                yield served
            finally:
                for client in clients:
                    client.close()  # keep-alive connections would hold the server's shutdown
    finally:
        for proc in served.procs if served else []:
            proc.kill()
            proc.wait(10)
        cleanup = [sys.executable, "-m", "privatelink.cli.main", "cleanup"]
        sweep = subprocess.run(
            [*cleanup, "--data-dir", str(data_dir), "--netns-prefix", prefix],
            capture_output=True,
            text=True,
            timeout=60,
        )
        left = [n for n in privileged.list_netns() if names.is_ours(prefix, n)]
        files = [n for n in privileged.list_netns_etc() if names.is_ours(prefix, n)]
        assert not left and not files, f"left behind: {left} {files} ({sweep.stderr})"


def _body(**properties: Any) -> dict[str, Any]:
    return {"location": "eastus", "properties": properties}


def _nic_body(subnet_id: str, pools: tuple[str, ...] = ()) -> dict[str, Any]:
    ip: dict[str, Any] = {"subnet": {"id": subnet_id}}
    if pools:
        ip["loadBalancerBackendAddressPools"] = [{"id": p} for p in pools]
    return _body(ipConfigurations=[{"name": "ip", "properties": ip}])


def test_the_server_resolves_endpoint_names_for_privatelink_exec(served: Served) -> None:
    net, dnsc = served.net, served.dns
    # Provider: LB :80 -> backend :8080 behind a service announcing svc.contoso.example.
    prov = net.virtual_networks.begin_create_or_update(
        "rg-prov",
        "prov",
        _body(
            addressSpace={"addressPrefixes": ["10.0.0.0/16"]},
            subnets=[
                {"name": "fe", "properties": {"addressPrefix": "10.0.1.0/24"}},
                {"name": "be", "properties": {"addressPrefix": "10.0.2.0/24"}},
                {
                    "name": "nat",
                    "properties": {
                        "addressPrefix": "10.0.3.0/24",
                        "privateLinkServiceNetworkPolicies": "Disabled",
                    },
                },
            ],
        ),
    ).result()
    lb_id = f"{prov.id.split('/providers/')[0]}/providers/Microsoft.Network/loadBalancers/lb"
    net.load_balancers.begin_create_or_update(
        "rg-prov",
        "lb",
        {
            "location": "eastus",
            "sku": {"name": "Standard"},
            "properties": {
                "frontendIPConfigurations": [
                    {"name": "fe", "properties": {"subnet": {"id": f"{prov.id}/subnets/fe"}}}
                ],
                "backendAddressPools": [{"name": "be"}],
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
                        },
                    }
                ],
            },
        },
    ).result()
    net.network_interfaces.begin_create_or_update(
        "rg-prov",
        "backend0",
        _nic_body(f"{prov.id}/subnets/be", (f"{lb_id}/backendAddressPools/be",)),
    ).result()
    served.procs.append(
        subprocess.Popen(
            [
                *served.cli("exec"),
                "--nic",
                "backend0",
                "--",
                sys.executable,
                "-c",
                WHOAMI,
                *WHOAMI_ARGS,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    pls = net.private_link_services.begin_create_or_update(
        "rg-prov",
        "svc",
        _body(
            loadBalancerFrontendIpConfigurations=[{"id": f"{lb_id}/frontendIPConfigurations/fe"}],
            ipConfigurations=[
                {
                    "name": "nat0",
                    "properties": {"subnet": {"id": f"{prov.id}/subnets/nat"}, "primary": True},
                }
            ],
            visibility={"subscriptions": ["*"]},
            fqdns=["svc.contoso.example"],
        ),
    ).result()

    # Consumer: a VM, a private zone linked to its VNet, a pending endpoint with a zone group.
    cons = net.virtual_networks.begin_create_or_update(
        "rg-cons",
        "cons",
        _body(
            addressSpace={"addressPrefixes": ["10.0.0.0/16"]},
            subnets=[
                {"name": "vms", "properties": {"addressPrefix": "10.0.1.0/24"}},
                {"name": "pe", "properties": {"addressPrefix": "10.0.2.0/24"}},
            ],
        ),
    ).result()
    client = net.network_interfaces.begin_create_or_update(
        "rg-cons", "client", _nic_body(f"{cons.id}/subnets/vms")
    ).result()
    zone = dnsc.private_zones.begin_create_or_update(
        "rg-cons", "contoso.example", {"location": "global"}
    ).result()
    dnsc.virtual_network_links.begin_create_or_update(
        "rg-cons",
        "contoso.example",
        "to-cons",
        {
            "location": "global",
            "properties": {"virtualNetwork": {"id": cons.id}, "registrationEnabled": False},
        },
    ).result()
    dnsc.record_sets.create_or_update(
        "rg-cons",
        "contoso.example",
        "A",
        "www",
        {"properties": {"ttl": 10, "aRecords": [{"ipv4Address": "10.1.0.5"}]}},
    )
    pe = net.private_endpoints.begin_create_or_update(
        "rg-cons",
        "pe",
        _body(
            subnet={"id": f"{cons.id}/subnets/pe"},
            manualPrivateLinkServiceConnections=[
                {"name": "conn", "properties": {"privateLinkServiceId": pls.id}}
            ],
        ),
    ).result()
    net.private_dns_zone_groups.begin_create_or_update(
        "rg-cons",
        "pe",
        "default",
        {
            "properties": {
                "privateDnsZoneConfigs": [
                    {"name": "c1", "properties": {"privateDnsZoneId": zone.id}}
                ]
            }
        },
    ).result()
    pe_nic = net.network_interfaces.get("rg-cons", pe.network_interfaces[0].id.rsplit("/", 1)[1])
    pe_ip = pe_nic.ip_configurations[0].private_ip_address
    ns = names.nic_netns(served.prefix, client.id)

    # A stored record resolves for programs run with `privatelink exec` (resolv.conf).
    hosts = served.exec("client", "getent", "ahostsv4", "www.contoso.example")
    assert hosts.returncode == 0 and hosts.stdout.split()[0] == "10.1.0.5", hosts
    assert served.exec("client", "getent", "ahostsv4", "svc.contoso.example").returncode == 2

    def set_status(status: str) -> None:
        conn = next(
            iter(net.private_link_services.list_private_endpoint_connections("rg-prov", "svc"))
        )
        net.private_link_services.update_private_endpoint_connection(
            "rg-prov",
            "svc",
            conn.name,
            {"properties": {"privateLinkServiceConnectionState": {"status": status}}},
        )

    approved_at = time.monotonic()
    set_status("Approved")
    found = wait_for(lambda: _answers(ns, "svc.contoso.example"), 1.0, "svc after approval")
    assert found == [pe_ip] and time.monotonic() - approved_at < 1.0
    # curl by name from the consumer VM goes through the endpoint to the backend.
    url = "http://svc.contoso.example/"

    def curl_ok() -> str | None:
        got = served.exec("client", "curl", "-s", "-m", "2", url)
        return got.stdout if got.returncode == 0 and " saw " in got.stdout else None

    body = wait_for(curl_ok, 10, "curl through the private endpoint", every=0.2)
    assert body.startswith("b0 saw 10.0.3."), body  # the backend sees a NAT IP

    rejected_at = time.monotonic()
    set_status("Rejected")
    wait_for(
        lambda: ask(ns, "svc.contoso.example").rcode() == dns.rcode.NXDOMAIN,
        1.0,
        "svc gone after rejection",
    )
    assert time.monotonic() - rejected_at < 1.0
    assert addresses(ask(ns, "www.contoso.example")) == ["10.1.0.5"]
