"""Private link traffic on real namespaces: NAT IPs, approval, cuts, load balancing."""

from __future__ import annotations

import time

import pytest
from world import (
    CONSUMER,
    CONSUMER2,
    PROVIDER,
    World,
    http_get,
    rid,
    seconds_until_broken,
    try_get,
    wait_for,
)

from privatelink.core import private_link as pl
from privatelink.dataplane import names, privileged

pytestmark = pytest.mark.netns


def provider(
    world: World,
    backends: int = 2,
    probe_interval: int | None = None,
    nat_ips: int = 2,
    backend_port: int = 8080,
    extra_rules: tuple[tuple[str, str, int, int, str], ...] = (),
):
    """Provider VNet 10.0.0.0/16: LB frontend :80 -> backends :`backend_port`, a PLS with
    `nat_ips` NAT IPs (10.0.3.4, ...); `extra_rules` (name, frontend, frontend port,
    backend port, pool) on the same load balancer.

    Without `probe_interval` the rule has no health probe (every member takes traffic at
    once); with one, a Tcp probe on 8080 decides (Azure's minimum interval is 5 s).
    """
    vnet = world.vnet(
        PROVIDER,
        "prov",
        "10.0.0.0/16",
        {"fe": "10.0.1.0/24", "be": "10.0.2.0/24", "nat": "10.0.3.0/24"},
    )
    lb = world.load_balancer(
        PROVIDER,
        "lb",
        {"fe": vnet.subnet_id("fe")},
        [("http", "fe", 80, backend_port, "be"), *extra_rules],
        probe=("Tcp", backend_port, None, probe_interval) if probe_interval else None,
    )
    pool = lb.child_id("backendAddressPools", "be")
    nics = [
        world.nic(PROVIDER, f"backend{i}", vnet.subnet_id("be"), pools=(pool,))
        for i in range(backends)
    ]
    pls = world.service(
        PROVIDER,
        "svc",
        (lb.child_id("frontendIPConfigurations", "fe"),),
        vnet.subnet_id("nat"),
        nat_ips=nat_ips,
        auto_approval=(CONSUMER2,),
    )
    return vnet, lb, nics, pls


def consumer(world: World, sub: str = CONSUMER, name: str = "cons"):
    """Consumer VNet with the SAME 10.0.0.0/16 as the provider, and a client VM."""
    vnet = world.vnet(sub, name, "10.0.0.0/16", {"vms": "10.0.1.0/24", "pe": "10.0.2.0/24"})
    client = world.nic(sub, f"{name}-client", vnet.subnet_id("vms"))
    return vnet, client


def test_backend_sees_a_nat_ip_across_overlapping_address_spaces(world: World) -> None:
    _vnet, _lb, backends, pls = provider(world)
    for i, nic in enumerate(backends):
        world.serve_whoami(nic, f"b{i}")
    cvnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", cvnet.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    nat_ips = {c.private_ip for c in world.get(pls.id).ip_configurations}
    # Both networks are 10.0.0.0/16; the client and a backend even share 10.0.1.x/10.0.2.x.
    body = wait_for(lambda: try_get(world.netns(client), pe_ip, 80), 5, "a reply through the PE")
    seen = body.split(" saw ")[1].strip()
    assert seen in nat_ips, f"backend saw {seen}, not a NAT IP of {nat_ips}"
    client_ip = client.ip_configurations[0].private_ip
    assert seen != client_ip
    # New connections spread over all of the service's NAT IPs.
    sources = set()
    for _ in range(40):
        answer = try_get(world.netns(client), pe_ip, 80)
        if answer:
            sources.add(answer.split(" saw ")[1].strip())
    assert sources == nat_ips, f"connections came from {sources}, NAT IPs are {nat_ips}"


def test_pending_and_rejected_carry_nothing_and_approval_opens(world: World) -> None:
    _vnet, _lb, backends, pls = provider(world, backends=1)
    world.serve_whoami(backends[0], "b0")
    cvnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", cvnet.subnet_id("pe"), pls.alias)
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    assert world.get(pe.id).connection.status == "Pending"
    assert try_get(world.netns(client), pe_ip, 80) is None, "a pending connection carried traffic"

    approved_at = time.monotonic()
    world.set_connection(pls.id, pe, "Approved")
    wait_for(lambda: try_get(world.netns(client), pe_ip, 80, 0.5), 5, "traffic after approval")
    assert time.monotonic() - approved_at < 5

    world.set_connection(pls.id, pe, "Rejected")
    world.settle()
    assert try_get(world.netns(client), pe_ip, 80) is None, "a rejected connection carried traffic"


@pytest.mark.parametrize("cut", ["reject", "delete-connection", "delete-endpoint"])
def test_cutting_a_connection_stops_an_established_flow_within_a_second(
    world: World, cut: str
) -> None:
    _vnet, _lb, backends, pls = provider(world, backends=1)
    world.serve_echo(backends[0])
    cvnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", cvnet.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    wait_for(lambda: _echo_ok(world, client, pe_ip), 5, "echo through the PE")
    with world.connection(client, pe_ip, 80) as sock:
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"
        started = time.monotonic()
        if cut == "reject":
            world.set_connection(pls.id, pe, "Rejected")
        elif cut == "delete-connection":
            world.delete_connection(pls.id, pe)
        else:
            world.delete(pl.delete_endpoint, pe.id)
        broken_after = seconds_until_broken(sock, started)
        assert broken_after is not None, "the established flow still works"
        assert broken_after < 1.0, f"flow was cut only after {broken_after:.2f}s"
    if cut == "delete-connection":
        assert world.get(pe.id).connection.status == "Disconnected"


def _echo_ok(world: World, client, ip: str) -> bool:
    try:
        with world.connection(client, ip, 80) as sock:
            sock.sendall(b"x")
            return sock.recv(4) == b"x"
    except OSError:
        return False


def test_traffic_spreads_over_backends_and_a_failed_probe_takes_one_out(world: World) -> None:
    _vnet, _lb, backends, pls = provider(world, backends=2, probe_interval=5)
    procs = [world.serve_whoami(nic, f"b{i}") for i, nic in enumerate(backends)]
    cvnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", cvnet.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    # A probe that ran before the backends listened keeps them out for one interval.
    wait_for(lambda: try_get(world.netns(client), pe_ip, 80), 12, "first reply", every=0.2)
    seen = set()

    def both_answer() -> bool:
        for _ in range(20):  # 5-tuple hash over fresh source ports: both backends answer
            body = try_get(world.netns(client), pe_ip, 80)
            if body:
                seen.add(body.split(" saw ")[0])
        return seen == {"b0", "b1"}

    wait_for(both_answer, 12, "both backends to answer", every=0.2)

    procs[1].kill()  # b1 stops answering its probe (interval 5 s, threshold 1)
    procs[1].wait()

    def only_b0() -> bool:
        answers = [try_get(world.netns(client), pe_ip, 80, 0.5) for _ in range(6)]
        return all(a is not None and a.startswith("b0") for a in answers)

    wait_for(only_b0, 15, "b1 to be taken out of rotation", every=0.5)
    world.serve_whoami(backends[1], "b1")  # back: the next successful probe restores it

    def both() -> bool:
        return {
            (try_get(world.netns(client), pe_ip, 80, 0.5) or "?").split(" ")[0] for _ in range(20)
        } >= {"b0", "b1"}

    wait_for(both, 15, "b1 back in rotation", every=0.5)


def test_only_frontend_ports_are_reachable_and_only_through_the_endpoint(world: World) -> None:
    _vnet, _lb, backends, pls = provider(world, backends=1)
    world.serve_whoami(backends[0], "b0")
    world.run(
        backends[0],
        "import http.server as h; "
        "h.HTTPServer(('0.0.0.0', 9090), h.SimpleHTTPRequestHandler).serve_forever()",
    )
    cvnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", cvnet.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    wait_for(lambda: try_get(world.netns(client), pe_ip, 80), 5, "the frontend port")
    assert try_get(world.netns(client), pe_ip, 9090) is None, "a port without a rule answered"
    assert try_get(world.netns(client), pe_ip, 8080) is None, "the backend port answered"
    # The PE ip routes into the link on every port; the consumer hub resets the others at
    # once (nothing crosses, so nothing times out).
    for port in (9090, 8080):
        with pytest.raises(ConnectionRefusedError), world.connection(client, pe_ip, port):
            pass
    # The backend's own address (10.0.2.4) means the consumer's own subnet, never the provider.
    backend_ip = backends[0].ip_configurations[0].private_ip
    assert try_get(world.netns(client), backend_ip, 8080) is None
    # The link's provider-side address is not a way in either.
    slot_addr = names.link_addresses(0)[1]
    assert try_get(world.netns(client), slot_addr, 80) is None


def test_two_consumer_networks_use_one_service(world: World) -> None:
    _vnet, _lb, backends, pls = provider(world, backends=1)
    world.serve_whoami(backends[0], "b0")
    vnet_a, client_a = consumer(world, CONSUMER, "a")
    vnet_b, client_b = consumer(world, CONSUMER2, "b")
    pe_a = world.endpoint(CONSUMER, "pe-a", vnet_a.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe_a, "Approved")
    pe_b = world.endpoint(CONSUMER2, "pe-b", vnet_b.subnet_id("pe"), pls.id)  # auto-approved
    assert world.get(pe_b.id).connection.status == "Approved"
    world.settle()
    for client, pe in ((client_a, pe_a), (client_b, pe_b)):
        ip = world.endpoint_ip(pe)
        body = wait_for(lambda c=client, i=ip: try_get(world.netns(c), i, 80), 5, "reply")
        assert body.startswith("b0 saw 10.0.3.")


def test_intra_vnet_load_balancing_preserves_the_client_address(world: World) -> None:
    vnet, lb, backends, _pls = provider(world, backends=1)
    world.serve_whoami(backends[0], "b0")
    client = world.nic(PROVIDER, "inside", vnet.subnet_id("fe"))
    world.settle()
    frontend_ip = lb.frontends[0].private_ip
    body = wait_for(lambda: try_get(world.netns(client), frontend_ip, 80), 5, "LB reply")
    assert body.strip() == f"b0 saw {client.ip_configurations[0].private_ip}"


def test_restart_keeps_established_flows_and_duplicates_nothing(world: World) -> None:
    _vnet, _lb, backends, pls = provider(world, backends=1)
    world.serve_echo(backends[0])
    cvnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", cvnet.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    wait_for(lambda: _echo_ok(world, client, pe_ip), 5, "echo through the PE")
    before = _kernel_state(world)
    with world.connection(client, pe_ip, 80) as sock:
        sock.sendall(b"one")
        assert sock.recv(16) == b"one"
        world.restart_reconciler()
        world.settle()
        sock.sendall(b"two")
        assert sock.recv(16) == b"two", "the established flow did not survive the restart"
    assert _kernel_state(world) == before, "the restart changed or duplicated kernel state"
    # No IPv6 on the hubs' interfaces (links included): no neighbour entries of ours in
    # the host-wide IPv6 table.
    for netns in (n for n in privileged.list_netns() if names.is_ours(world.prefix, n)):
        if "-v-" in netns:
            shown = privileged.run_in_netns(netns, ["ip", "-6", "addr"]).stdout
            assert "inet6" not in shown, f"IPv6 addresses in {netns}: {shown}"


def _kernel_state(world: World) -> dict[str, object]:
    state: dict[str, object] = {}
    for netns in sorted(n for n in privileged.list_netns() if names.is_ours(world.prefix, n)):
        with privileged.Netlink(netns) as nl:
            links = nl.links()
            state[netns] = (
                sorted((link.name, link.addresses) for link in links.values()),
                sorted(nl.routes()),
                sorted(nl.routes(table=names.ENDPOINT_TABLE).items()),
                privileged.run_in_netns(netns, ["ip", "rule"]).stdout,
                privileged.list_nft(netns, names.TABLE).count("chain "),
            )
    return state


def test_provisioning_state_follows_realization(world: World) -> None:
    vnet = world.vnet(PROVIDER, "prov", "10.1.0.0/16", {"vms": "10.1.0.0/24"})
    assert vnet.provisioning_state == "Updating"
    world.settle()
    assert world.get(vnet.id).provisioning_state == "Succeeded"
    nic = world.nic(PROVIDER, "vm", vnet.subnet_id("vms"))
    world.settle()
    assert world.get(nic.id).provisioning_state == "Succeeded"
    assert (
        world.netns(nic)
        in __import__("privatelink.dataplane.privileged", fromlist=["x"]).list_netns()
    )
    assert rid(PROVIDER, "networkInterfaces", "vm") == nic.id


def test_an_endpoint_in_the_services_own_network_works(world: World) -> None:
    vnet, _lb, backends, pls = provider(world, backends=1)
    world.serve_whoami(backends[0], "b0")
    client = world.nic(PROVIDER, "inside", vnet.subnet_id("fe"))
    pe = world.endpoint(PROVIDER, "pe-self", vnet.subnet_id("fe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    body = wait_for(
        lambda: try_get(world.netns(client), world.endpoint_ip(pe), 80), 5, "a reply in-network"
    )
    nat_ips = {c.private_ip for c in world.get(pls.id).ip_configurations}
    assert body.split(" saw ")[1].strip() in nat_ips


def test_replacing_an_endpoint_in_one_sync_cuts_the_old_and_serves_the_new(world: World) -> None:
    _vnet, _lb, backends, pls = provider(world, backends=1)
    world.serve_echo(backends[0])
    vnet_a, client_a = consumer(world, CONSUMER, "a")
    vnet_b, client_b = consumer(world, CONSUMER2, "b")
    old = world.endpoint(CONSUMER, "pe-a", vnet_a.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, old, "Approved")
    world.settle()
    old_ip = world.endpoint_ip(old)
    wait_for(lambda: _echo_ok(world, client_a, old_ip), 5, "the first endpoint")
    with world.connection(client_a, old_ip, 80) as sock:
        sock.sendall(b"a")
        assert sock.recv(4) == b"a"
        # Both changes land before the data plane syncs once.
        world.delete(pl.delete_endpoint, old.id)
        new = world.endpoint(CONSUMER2, "pe-b", vnet_b.subnet_id("pe"), pls.id)  # auto-approved
        world.settle()
        new_ip = world.endpoint_ip(new)
        wait_for(lambda: _echo_ok(world, client_b, new_ip), 5, "the new endpoint")
        with pytest.raises(OSError):
            sock.settimeout(1)
            sock.sendall(b"a")
            if not sock.recv(4):
                raise OSError("closed")


def test_two_services_share_one_load_balancer_on_different_frontends(world: World) -> None:
    vnet = world.vnet(
        PROVIDER,
        "prov",
        "10.0.0.0/16",
        {"fe": "10.0.1.0/24", "be": "10.0.2.0/24", "nat": "10.0.3.0/24"},
    )
    lb = world.load_balancer(
        PROVIDER,
        "lb",
        {"fe-a": vnet.subnet_id("fe"), "fe-b": vnet.subnet_id("fe")},
        [("a", "fe-a", 80, 8080, "pa"), ("b", "fe-b", 80, 8080, "pb")],
        probe=None,
        pools=("pa", "pb"),
    )
    pools = [lb.child_id("backendAddressPools", p) for p in ("pa", "pb")]
    backends = [
        world.nic(PROVIDER, f"b-{i}", vnet.subnet_id("be"), pools=(pool,))
        for i, pool in enumerate(pools)
    ]
    services = [
        world.service(
            PROVIDER,
            f"svc-{name}",
            (lb.child_id("frontendIPConfigurations", f"fe-{name}"),),
            vnet.subnet_id("nat"),
            nat_ips=1,
        )
        for name in ("a", "b")
    ]
    for i, nic in enumerate(backends):
        world.serve_whoami(nic, f"pool{i}")
    cvnet, client = consumer(world)
    for i, pls in enumerate(services):
        pe = world.endpoint(CONSUMER, f"pe-{i}", cvnet.subnet_id("pe"), pls.alias)
        world.set_connection(pls.id, pe, "Approved")
        world.settle()
        ip = world.endpoint_ip(pe)
        body = wait_for(lambda ip=ip: try_get(world.netns(client), ip, 80), 5, f"service {i}")
        nat_ip = world.get(pls.id).ip_configurations[0].private_ip
        assert body.strip() == f"pool{i} saw {nat_ip}"


def test_source_ip_distribution_pins_a_client_to_one_backend(world: World) -> None:
    vnet = world.vnet(PROVIDER, "prov", "10.0.0.0/16", {"fe": "10.0.1.0/24", "be": "10.0.2.0/24"})
    lb = world.load_balancer(
        PROVIDER,
        "lb",
        {"fe": vnet.subnet_id("fe")},
        [("http", "fe", 80, 8080, "be")],
        probe=None,
        distribution="SourceIP",
    )
    pool = lb.child_id("backendAddressPools", "be")
    for i in range(3):
        world.serve_whoami(
            world.nic(PROVIDER, f"b{i}", vnet.subnet_id("be"), pools=(pool,)), f"b{i}"
        )
    client = world.nic(PROVIDER, "client", vnet.subnet_id("fe"))
    world.settle()
    ip = lb.frontends[0].private_ip
    wait_for(lambda: try_get(world.netns(client), ip, 80), 5, "LB reply")
    answers = {http_get(world.netns(client), ip, 80).split(" ")[0] for _ in range(15)}
    assert len(answers) == 1, f"SourceIP spread one client over {answers}"


def test_an_http_probe_takes_out_a_backend_that_answers_500(world: World) -> None:
    vnet = world.vnet(PROVIDER, "prov", "10.0.0.0/16", {"fe": "10.0.1.0/24", "be": "10.0.2.0/24"})
    lb = world.load_balancer(
        PROVIDER,
        "lb",
        {"fe": vnet.subnet_id("fe")},
        [("http", "fe", 80, 8080, "be")],
        probe=("Http", 8081, "/health", 5),
    )
    pool = lb.child_id("backendAddressPools", "be")
    good = world.nic(PROVIDER, "good", vnet.subnet_id("be"), pools=(pool,))
    bad = world.nic(PROVIDER, "bad", vnet.subnet_id("be"), pools=(pool,))
    client = world.nic(PROVIDER, "client", vnet.subnet_id("fe"))
    for nic, name in ((good, "good"), (bad, "bad")):
        world.serve_whoami(nic, name)  # traffic on 8080
    health = (
        "import http.server, sys\n"
        "code = int(sys.argv[1])\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(code if self.path == '/health' else 404); self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        "http.server.HTTPServer(('0.0.0.0', 8081), H).serve_forever()\n"
    )
    world.run(good, health, "200")
    world.run(bad, health, "500")
    ip = lb.frontends[0].private_ip

    def only_good() -> bool:
        answers = [try_get(world.netns(client), ip, 80, 0.5) for _ in range(8)]
        return all(a is not None and a.startswith("good") for a in answers)

    wait_for(only_good, 15, "the 500-answering backend to leave the rotation", every=0.5)


def test_nics_of_a_network_reach_each_other_and_nothing_else(world: World) -> None:
    vnet = world.vnet(PROVIDER, "a", "10.0.0.0/16", {"s1": "10.0.1.0/24", "s2": "10.0.2.0/24"})
    other = world.vnet(CONSUMER, "b", "10.0.0.0/16", {"s1": "10.0.1.0/24", "s2": "10.0.2.0/24"})
    server = world.nic(PROVIDER, "server", vnet.subnet_id("s2"))
    neighbour = world.nic(PROVIDER, "neighbour", vnet.subnet_id("s1"))
    stranger = world.nic(CONSUMER, "stranger", other.subnet_id("s1"))
    world.serve_whoami(server, "server")
    ip = server.ip_configurations[0].private_ip
    body = wait_for(lambda: try_get(world.netns(neighbour), ip, 8080), 5, "same-network reply")
    assert body.strip() == f"server saw {neighbour.ip_configurations[0].private_ip}"
    # The other network has the same addresses: its 10.0.2.4 is nobody, not our server.
    assert try_get(world.netns(stranger), ip, 8080) is None


def test_a_backend_with_the_endpoints_own_address_and_port_is_reached(world: World) -> None:
    """Overlapping spaces: the PE (10.0.2.4 in the consumer) and the backend (10.0.2.4 in
    the provider) share address and port, so the provider's DNAT changes nothing, and
    the kernel does not flag the flow as DNATed. It must still get through."""
    _vnet, _lb, (backend,), pls = provider(world, backends=1, backend_port=80)
    world.serve_whoami(backend, "b0", port=80)
    cvnet, client = consumer(world)
    pe = world.endpoint(CONSUMER, "pe", cvnet.subnet_id("pe"), pls.alias)
    world.set_connection(pls.id, pe, "Approved")
    world.settle()
    pe_ip = world.endpoint_ip(pe)
    assert pe_ip == world.get(backend.id).ip_configurations[0].private_ip  # the same address
    body = wait_for(lambda: try_get(world.netns(client), pe_ip, 80), 5, "a reply through the PE")
    assert body.startswith("b0 saw ")
