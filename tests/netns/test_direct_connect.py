"""Direct Connect on real namespaces: a private link service with a destination IP and no
load balancer carries TCP on every port from a consumer's private endpoint to a VM of the
provider's network, which sees a NAT IP of the service; nothing else crosses, and a
rejected connection is cut as any other."""

from __future__ import annotations

import socket
import time

import pytest
from world import CONSUMER, PROVIDER, World, rid, seconds_until_broken, try_get, wait_for

from privatelink.core import network_interface as nim
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.dataplane import privileged

pytestmark = pytest.mark.netns

UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""


def provider(
    world: World,
) -> tuple[plsm.PrivateLinkService, nim.NetworkInterface, nim.NetworkInterface]:
    """Provider VNet 10.0.0.0/16 with a server VM (the destination) and a client VM of
    its own, and a Direct Connect service with 2 NAT IPs, auto-approving nobody."""
    vnet = world.vnet(
        PROVIDER,
        "prov",
        "10.0.0.0/16",
        {"vms": "10.0.1.0/24", "be": "10.0.2.0/24", "nat": "10.0.3.0/24"},
    )
    server = world.nic(PROVIDER, "server", vnet.subnet_id("be"))
    local_client = world.nic(PROVIDER, "local-client", vnet.subnet_id("vms"))
    destination = server.ip_configurations[0].private_ip
    assert destination
    pls = world.put(
        pl.create_or_update_service,
        plsm.PrivateLinkService(
            id=rid(PROVIDER, "privateLinkServices", "direct"),
            name="direct",
            location="eastus",
            ip_configurations=tuple(
                plsm.NatIpConfiguration(f"nat{i}", vnet.subnet_id("nat"), primary=i == 0)
                for i in range(2)
            ),
            visibility=("*",),
            destination_ip_address=destination,
        ),
    )
    assert isinstance(pls, plsm.PrivateLinkService) and pls.direct_connect
    return pls, server, local_client


def consumer(world: World) -> tuple[str, nim.NetworkInterface]:
    """Consumer VNet with the SAME 10.0.0.0/16, a client VM; returns the PE subnet."""
    vnet = world.vnet(CONSUMER, "cons", "10.0.0.0/16", {"vms": "10.0.1.0/24", "pe": "10.0.2.0/24"})
    return vnet.subnet_id("pe"), world.nic(CONSUMER, "client", vnet.subnet_id("vms"))


def _seen(body: str | None) -> str | None:
    return body.split(" saw ")[1].strip() if body else None


def test_every_tcp_port_reaches_the_destination_from_a_nat_ip(world: World) -> None:
    pls, server, _ = provider(world)
    world.serve_whoami(server, "dst8080", 8080)
    world.serve_whoami(server, "dst9090", 9090)
    pe_subnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", pe_subnet, pls.alias)
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    # Overlapping spaces at their worst: the PE has the destination's very address, so
    # the provider's DNAT changes nothing (and the kernel marks no DNAT: nft.py, forward).
    assert pe_ip == server.ip_configurations[0].private_ip == "10.0.2.4"
    assert try_get(world.netns(client), pe_ip, 8080) is None, "a pending connection carried"
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    nat_ips = {c.private_ip for c in world.get(pls.id).ip_configurations}
    for port in (8080, 9090):
        body = wait_for(
            lambda port=port: try_get(world.netns(client), pe_ip, port), 5, f"port {port}"
        )
        assert body.startswith(f"dst{port} saw "), body
        assert _seen(body) in nat_ips, f"the destination saw {_seen(body)}, not {nat_ips}"
    # New connections spread over both NAT IPs (SNAT by hash, as any service).
    sources = {_seen(try_get(world.netns(client), pe_ip, 8080)) for _ in range(40)}
    assert sources == nat_ips, f"connections came from {sources}, NAT IPs are {nat_ips}"
    # A port nothing listens on is the destination's own answer: a reset, at once.
    with privileged.socket_in_netns(world.netns(client)) as sock:
        sock.settimeout(2)
        with pytest.raises(ConnectionRefusedError):
            sock.connect((pe_ip, 7070))


def test_only_tcp_crosses(world: World) -> None:
    pls, server, local_client = provider(world)
    world.run(server, UDP_ECHO, "5353")
    world.serve_whoami(server, "dst", 8080)  # listening proves the VM is up
    pe_subnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", pe_subnet, pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    wait_for(lambda: try_get(world.netns(client), pe_ip, 8080), 5, "TCP through the PE")
    # The same UDP echo answers inside the provider's network, never through the PE.
    dst = server.ip_configurations[0].private_ip
    assert dst
    assert _udp_echo(world.netns(local_client), dst, 5353)
    assert not _udp_echo(world.netns(client), pe_ip, 5353)


def test_a_rejected_connection_cuts_the_flow(world: World) -> None:
    pls, server, _ = provider(world)
    world.serve_echo(server, 7000)
    pe_subnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", pe_subnet, pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    wait_for(lambda: _echo_ok(world, client, pe_ip, 7000), 5, "echo through the PE")
    with world.connection(client, pe_ip, 7000) as sock:
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"
        started = time.monotonic()
        world.set_connection(pls.id, pe, "Rejected")
        broken_after = seconds_until_broken(sock, started)
        assert broken_after is not None, "the established flow still works"
        assert broken_after < 1.0, f"flow was cut only after {broken_after:.2f}s"
    world.settle()
    assert not _echo_ok(world, client, pe_ip, 7000), "a rejected connection carried a new flow"


def test_an_endpoint_in_the_providers_own_network(world: World) -> None:
    pls, server, local_client = provider(world)
    world.serve_whoami(server, "dst", 8080)
    pe = world.endpoint(PROVIDER, "pe-local", _be(pls), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    nat_ips = {c.private_ip for c in world.get(pls.id).ip_configurations}
    body = wait_for(lambda: try_get(world.netns(local_client), pe_ip, 8080), 5, "a local PE")
    assert _seen(body) in nat_ips


def _be(pls: plsm.PrivateLinkService) -> str:
    return pls.ip_configurations[0].subnet_id.rsplit("/", 1)[0] + "/be"


def _echo_ok(world: World, nic: nim.NetworkInterface, ip: str, port: int) -> bool:
    try:
        with world.connection(nic, ip, port) as sock:
            sock.sendall(b"hi")
            return sock.recv(16) == b"hi"
    except OSError:
        return False


def _udp_echo(netns: str, ip: str, port: int) -> bool:
    """Whether a UDP datagram to ip:port is echoed (a few tries, 0.5 s each)."""
    with privileged.socket_in_netns(netns, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for _ in range(4):
            try:
                sock.sendto(b"udp?", (ip, port))
                if sock.recvfrom(64)[0] == b"udp?":
                    return True
            except OSError:
                continue
    return False
