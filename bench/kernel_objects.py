"""Kernel objects at scale: a veth pair per link, or one shared veth per pair of hubs.

Issue 12 asks whether the data plane can hold 10,000 private endpoint links on one host,
and whether a shared link per pair of hubs with per-connection marks would serve better
than today's veth pair per link. This measures both shapes side by side, in one run, for
each N (1000, 5000, 10000; `--quick`: 200, 1000; `--sizes` overrides):

    veth-per-link  two hub namespaces C and P and N veth pairs `k<s>c`/`k<s>p` between
                   them, each end with its /30 (`names.link_ifname`, `link_addresses`),
                   up, and the endpoint route of each PE IP in C's table 100: the netlink
                   calls `Reconciler._link` makes, one request each, over pyroute2 (the
                   reconciler does not batch). Then each hub's table as `nft.render` writes
                   it for N links, one libnftables transaction per hub (`apply_nft`).
    shared-link    the same two hubs with ONE veth pair (slot 0's names and /30) and the
                   same N endpoint routes, all via it. The tables are `nft.render`'s with
                   the per-interface sets reduced to the shared ends, and the provider's
                   `links` map keyed by `iifname . ip daddr` (the PE IP, which the consumer
                   does not translate) instead of `iifname`: N connections are N map
                   elements, marks and chains stay per connection.

Measured per shape: creation time, /proc/meminfo deltas (MemAvailable, Slab, SUnreclaim,
Percpu; sampled, not after dropping caches: the host is shared, so they are noisy), link,
address and route dumps in hub C (pyroute2 and `ip`), `nft list table`, adding and
removing one link (one connection's elements for the shared link) with N present, the
full-table replace that `nft.render` does on every change, real TCP (one client and one
backend namespace behind the hubs, through the real tables: connect + 16-byte echo
through link N/2, and once through each of up to 200 distinct links, with the host-wide
ARP table's entries before and after), and the teardown: `ip netns del` of C until every
veth is gone from P, and `conntrack -D --mark` of link N/2 in both hubs (marks stay per
connection in both shapes). Each shape's namespaces are removed before the next starts.

IPv6 is turned off in the hubs before any veth is made: the reconciler leaves it on, and
then every veth end adds entries to the host-wide NDISC table (thousands of links would
overflow it on this shared host). First, `--ipv6-probe` links (default 100) are made with
it on and off, to show what it costs.

Safety: namespaces are named `ko<4 hex>-...`, swept by that prefix at start and end and
removed in `finally`; nothing goes into the root namespace; every loop is bounded in count
and time (`--budget`, default 840 s for the whole run). Needs root, ip and nft.

    sudo .venv/bin/python bench/kernel_objects.py [--quick] [--sizes 1000,5000] [--write]

`--write` stores the results in docs/benchmarks-kernel-objects.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from common import link_sizes, log, machine, source_version, sweep_on_signals

from privatelink.dataplane import names, nft, privileged
from privatelink.dataplane.desired import HubPlan, LinkPlan, RulePlan, ServicePlan
from privatelink.dataplane.privileged import KernelError, Netlink
from privatelink.dataplane.reconciler import HUB_SYSCTLS

ROOT = Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "docs" / "benchmarks-kernel-objects.json"
FULL_SIZES = (1000, 5000, 10000)
QUICK_SIZES = (200, 1000)
SHAPES = ("veth-per-link", "shared-link")
REPEAT = 20  # add/remove one link, connects through one link
DUMPS = 5  # repetitions of each dump (fewer when one takes long)
SPREAD_MAX = 200  # distinct links used once each (2 ARP entries per link in veth-per-link)
PE_BASE = int(IPv4Address("10.1.0.0"))
CLIENT_IP, BACKEND_IP, NAT_IP, FRONTEND_IP = "10.0.1.4", "10.0.2.4", "10.0.3.4", "10.0.2.100"
PORT, BACKEND_PORT = 80, 8080
# Shared link: slot 0's veth pair; every endpoint route goes into it, via its provider end.
SHARED_VIA = (names.link_ifname(0, "c"), names.link_addresses(0)[1])
NO_IPV6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
IPV6_PROBE = 100  # links made with IPv6 on and off (small: each end adds NDISC entries)
MEMINFO = ("MemAvailable", "Slab", "SUnreclaim", "Percpu")
SERVICE = ServicePlan(
    pls_id="bench-pls",
    chain="pls_bench",
    snat_chain="snat_bench",
    nat_ips=(NAT_IP,),
    ports=(("tcp", PORT, "rule_bench"),),
)
RULE = RulePlan(
    rule_id="bench-rule",
    chain="rule_bench",
    protocol="tcp",
    frontend_ip=FRONTEND_IP,
    frontend_port=PORT,
    backend_port=BACKEND_PORT,
    backends=(BACKEND_IP,),
    distribution="Default",
)


class OutOfTime(Exception):
    """The run's budget is spent."""


class Budget:
    """The run's deadline; `reserve` seconds stay for teardown."""

    def __init__(self, seconds: float, reserve: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.reserve = reserve

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() < self.reserve:
            raise OutOfTime(f"budget spent before {what}")


# --- measuring ------------------------------------------------------------------------------


def meminfo() -> dict[str, int]:
    """The MEMINFO fields of /proc/meminfo, in kB."""
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        if key in MEMINFO:
            out[key] = int(value.split()[0])
    return out


def mem_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Growth in MiB (MemAvailable as used: before - after)."""
    out = {}
    for key in MEMINFO:
        if key in before and key in after:
            grew = before[key] - after[key] if key == "MemAvailable" else after[key] - before[key]
            out[f"{key}_mib"] = round(grew / 1024, 1)
    return out


def neigh_stats() -> dict[str, int]:
    """Host-wide ARP and NDISC tables: entries now, forced GC runs and table-full events
    (the tables are global; only the root namespace can set their gc_thresh)."""
    out: dict[str, int] = {}
    for table in ("arp_cache", "ndisc_cache"):
        rows = Path(f"/proc/net/stat/{table}").read_text().split("\n")
        head, cpus = rows[0].split(), [r.split() for r in rows[1:] if r.strip()]
        column = {name: i for i, name in enumerate(head)}
        out[f"{table}_entries"] = int(cpus[0][column["entries"]], 16)
        for name in ("allocs", "forced_gc_runs", "table_fulls"):
            out[f"{table}_{name}"] = sum(int(c[column[name]], 16) for c in cpus)
    return out


def neigh_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sample(fn: Callable[[], object], reps: int, budget: float) -> list[float]:
    """Up to `reps` timings of `fn`, fewer when they exceed `budget` seconds (at least 1)."""
    out: list[float] = []
    start = time.monotonic()
    while len(out) < reps and (not out or time.monotonic() - start < budget):
        out.append(timed(fn))
    return out


def ms(values: list[float]) -> float | None:
    """Median in milliseconds."""
    return round(statistics.median(values) * 1000, 3) if values else None


def run(*argv: str, stdin: str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()[:500]}")
    return proc.stdout


# --- the state of one shape ------------------------------------------------------------------


def pe_ip(slot: int) -> str:
    return str(IPv4Address(PE_BASE + slot + 1))


def link_plan(slot: int, consumer: str, provider: str) -> LinkPlan:
    return LinkPlan.on_slot(
        slot, f"bench/{slot}", pe_ip(slot), consumer, provider, SERVICE.chain, (PORT,)
    )


def hub_plans(links: list[LinkPlan], consumer: str, provider: str) -> tuple[HubPlan, HubPlan]:
    pe_ips = tuple(x.pe_ip for x in links)
    c = HubPlan(vnet_id="bench-c", netns=consumer, links_out=tuple(links), pe_ips=pe_ips)
    p = HubPlan(
        vnet_id="bench-p", netns=provider, services=(SERVICE,), rules=(RULE,), links_in=tuple(links)
    )
    return c, p


def shared_render(hub: HubPlan) -> str:
    """`nft.render` for a hub whose links to one other hub share a veth pair (slot 0's).

    The interface sets and `link_src` hold the shared ends; the provider tells connections
    apart by the PE IP (`iifname . ip daddr`), which the consumer routes untranslated."""
    shared_c, shared_p = names.link_ifname(0, "c"), names.link_ifname(0, "p")
    addr_c = names.link_addresses(0)[0]
    # Declarations that start with these words are replaced whole (one line each).
    by_start = {}
    if hub.links_out:
        by_start["set link_out_ifs "] = (
            f'set link_out_ifs {{ type ifname; elements = {{ "{shared_c}" }}; }}'
        )
        by_start["map link_src "] = (
            f'map link_src {{ type ifname : ipv4_addr; elements = {{ "{shared_c}" : {addr_c} }}; }}'
        )
    if hub.links_in:
        by_start["set link_in_ifs "] = (
            f'set link_in_ifs {{ type ifname; elements = {{ "{shared_p}" }}; }}'
        )
    # Every hub's `links` map has the concatenated key, so that its rule matches the type.
    elements = ", ".join(f'"{shared_p}" . {x.pe_ip} : jump link_{x.slot}' for x in hub.links_in)
    by_start["map links "] = "map links { type ifname . ipv4_addr : verdict; " + (
        f"elements = {{ {elements} }}; }}" if elements else "}"
    )
    lines = []
    for line in nft.render(hub).splitlines():
        stripped = line.strip()
        start = next((k for k in by_start if stripped.startswith(k)), None)
        if start is not None:
            line = "  " + by_start[start]
        elif stripped == "iifname vmap @links":
            line = "    iifname . ip daddr vmap @links"
        lines.append(line)
    return "\n".join(lines) + "\n"


def add_link(nc: Netlink, np_: Netlink, link: LinkPlan, route: bool = True) -> None:
    """The netlink calls `Reconciler._link` makes for a new link, in its order."""
    here = nc.link(link.consumer_ifname)
    there = np_.link(link.provider_ifname)
    if here is None or there is None:
        nc.add_veth(link.consumer_ifname, link.provider_ifname, link.provider_netns)
    for nl, ifname, addr in (
        (nc, link.consumer_ifname, link.consumer_addr),
        (np_, link.provider_ifname, link.provider_addr),
    ):
        got = nl.link(ifname)
        if got is None:
            raise privileged.InterfaceNotFound(f"{ifname} missing in {nl.netns}")
        nl.add_address(ifname, f"{addr}/30")
        if not got.up:
            nl.set_up(ifname)
    if route:
        endpoint_route(nc, link, link.consumer_ifname, link.provider_addr)


def endpoint_route(nc: Netlink, link: LinkPlan, ifname: str, gateway: str) -> None:
    """The PE IP's route in table 100 into a link, via the link's provider end."""
    nc.replace_route(f"{link.pe_ip}/32", ifname, gateway=gateway, table=names.ENDPOINT_TABLE)


def link_delta(link: LinkPlan, add: bool, shared: bool) -> tuple[str, str]:
    """One link's (or shared-link connection's) elements and chain in C and P, as two nft
    transactions: what an incremental update would apply instead of a whole table."""
    t = f"ip {names.TABLE}"
    if shared:
        key_p = f'"{names.link_ifname(0, "p")}" . {link.pe_ip}'
        if_c: list[str] = []
        if_p: list[str] = []
    else:
        key_p = f'"{link.provider_ifname}"'
        if_c = [
            f'link_out_ifs {{ "{link.consumer_ifname}" }}',
            f'link_src {{ "{link.consumer_ifname}" : {link.consumer_addr} }}',
        ]
        if_p = [f'link_in_ifs {{ "{link.provider_ifname}" }}']
    c = [
        f"pe_mark {{ {link.pe_ip} . {PORT} : {link.mark} }}",
        f"live_links {{ {link.mark} }}",
        f"pe_ips {{ {link.pe_ip} }}",
        *if_c,
    ]
    p = [
        f"links {{ {key_p} : jump link_{link.slot} }}",
        f"live_links {{ {link.mark} }}",
        f"snat_by_mark {{ {link.mark} : jump {SERVICE.snat_chain} }}",
        *if_p,
    ]
    chain = f"link_{link.slot}"
    if add:
        rules = [f"ct mark set {link.mark}", f"jump {SERVICE.chain}", "drop"]
        add_c = "".join(f"add element {t} {x}\n" for x in c)
        add_p = f"add chain {t} {chain}\n" + "".join(f"add rule {t} {chain} {r}\n" for r in rules)
        return add_c, add_p + "".join(f"add element {t} {x}\n" for x in p)
    # A map element is deleted by its key: drop the " : value" part.
    del_c = "".join(f"delete element {t} {_key_only(x)}\n" for x in c)
    del_p = "".join(f"delete element {t} {_key_only(x)}\n" for x in p)
    return del_c, del_p + f"delete chain {t} {chain}\n"


def _key_only(element: str) -> str:
    name, body = element.split(" ", 1)
    return f"{name} {body.split(' : ')[0]} }}" if " : " in body else element


# --- namespaces --------------------------------------------------------------------------------


def report_header(bench: str, prefix: str) -> dict[str, Any]:
    """What every kernel bench's JSON starts with: which bench, when, how it was run,
    on what machine, tools and source, and its namespace prefix."""
    return {
        "benchmark": bench,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": f"python bench/{bench}.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "tools": {"ip": run("ip", "-V").strip(), "nft": run("nft", "--version").strip()},
        "source": source_version(),
        "netns_prefix": prefix,
    }


def finish(doc: dict[str, Any], prefix: str) -> None:
    """End of a run: sweep our namespaces, record any left, stamp the time."""
    sweep(prefix)
    left = ours(prefix)
    doc["namespaces_left"] = left
    if left:
        log(f"namespaces left: {left}")
    doc["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def ours(prefix: str) -> list[str]:
    return [n for n in privileged.list_netns() if n.startswith(f"{prefix}-")]


def sweep(prefix: str) -> None:
    """Remove every namespace of this run's prefix (and only those)."""
    for netns in ours(prefix):
        privileged.delete_netns(netns)


def make_netns(name: str) -> None:
    privileged.create_netns(name)
    with Netlink(name) as nl:
        nl.set_up("lo")


def nic(hub: Netlink, vm: str, ip: str) -> None:
    """A VM namespace behind a hub, as `Reconciler._hub` and `_nic` wire it."""
    ifname = names.nic_hub_ifname(vm)
    hub.add_veth(ifname, names.NIC_IFNAME, vm)
    hub.add_address(ifname, f"{names.GATEWAY}/32")
    hub.set_up(ifname)
    hub.replace_route(f"{ip}/32", ifname)
    with Netlink(vm) as nl:
        nl.add_address(names.NIC_IFNAME, f"{ip}/32")
        nl.set_up(names.NIC_IFNAME)
        nl.replace_route(f"{names.GATEWAY}/32", names.NIC_IFNAME)
        nl.replace_route("0.0.0.0/0", names.NIC_IFNAME, gateway=names.GATEWAY)


class Echo:
    """A TCP echo server on the backend's address, in the backend namespace."""

    def __init__(self, netns: str) -> None:
        self.sock = privileged.socket_in_netns(netns)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((BACKEND_IP, BACKEND_PORT))
        self.sock.listen(512)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(64)
                    if data:
                        conn.sendall(data)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def echo_once(client: str, ip: str, timeout: float = 2.0) -> float | None:
    """Seconds for connect + 16-byte echo from the client namespace, None on failure."""
    sock = privileged.socket_in_netns(client)
    sock.settimeout(timeout)
    payload = b"kernel-objects16"
    try:
        start = time.perf_counter()
        sock.connect((ip, PORT))
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(64)
            if not chunk:
                break
            got += chunk
        return time.perf_counter() - start if got == payload else None
    except OSError:
        return None
    finally:
        sock.close()


def ct_count(netns: str, mark: int) -> int:
    """Conntrack entries with a mark in a namespace."""
    proc = privileged.run_in_netns(netns, ["conntrack", "-L", "--mark", str(mark)])
    return sum(1 for line in proc.stdout.splitlines() if line.strip())


def neigh_count(netns: str) -> int:
    return len(run("ip", "-n", netns, "-4", "neigh", "show").splitlines())


# --- one shape at one N --------------------------------------------------------------------------


def measure(shape: str, n: int, prefix: str, budget: Budget, ipv6: bool = False) -> dict[str, Any]:
    """Build one shape with n links, measure it, tear it down (always).

    `ipv6`: leave IPv6 on in the hubs, as the reconciler does; each veth end then gets a
    link-local address, DAD and MLD, and with them entries in the host-wide NDISC table
    (measured at small n only: thousands would overflow the host's table)."""
    tag = f"{prefix}-{'a' if shape == SHAPES[0] else 'b'}{'6' if ipv6 else ''}{n}"
    c, p, vm, backend = f"{tag}-c", f"{tag}-p", f"{tag}-v", f"{tag}-s"
    out: dict[str, Any] = {"shape": shape, "n": n, "ipv6_on_links": ipv6}
    handles: list[Netlink] = []
    echo: Echo | None = None
    try:
        for netns in (c, p, vm, backend):
            make_netns(netns)
        for netns in (c, p):
            privileged.write_sysctls(netns, HUB_SYSCTLS if ipv6 else {**HUB_SYSCTLS, **NO_IPV6})
        nc, np_ = Netlink(c), Netlink(p)
        handles += [nc, np_]
        nc.ensure_table_before_local(
            names.ENDPOINT_TABLE, names.ENDPOINT_RULE_PREF, names.LOCAL_RULE_PREF
        )
        links = [link_plan(s, c, p) for s in range(n)]
        time.sleep(1)  # let the namespaces' own setup settle before the baseline
        mem0, neigh0 = meminfo(), neigh_stats()
        out["create"] = create(shape, nc, np_, links, budget)
        made = out["create"]["links"]
        links = links[:made]
        hub_c, hub_p = hub_plans(links, c, p)
        render = nft.render if shape == SHAPES[0] else shared_render
        text_c, text_p = render(hub_c), render(hub_p)
        out["nft_text_kib"] = round((len(text_c) + len(text_p)) / 1024, 1)
        first = timed(partial(apply_both, c, p, text_c, text_p))
        out["nft_load_s"] = round(first, 3)
        for netns in (c, p):
            privileged.write_sysctls(netns, HUB_SYSCTLS)  # conntrack's exist now
        time.sleep(3 if ipv6 else 1)  # with IPv6: DAD and MLD reports have run
        out["memory"] = mem_delta(mem0, meminfo())
        out["neigh_create"] = neigh_delta(neigh0, neigh_stats())
        budget.check("dumps")
        out["dump_ms"] = dumps(nc, c)
        out["nft_replace_ms"] = ms(sample(partial(apply_both, c, p, text_c, text_p), 3, 60))
        out["nft_list_ms"] = ms(
            sample(
                lambda: (privileged.list_nft(c, names.TABLE), privileged.list_nft(p, names.TABLE)),
                3,
                60,
            )
        )
        budget.check("add/remove one")
        out["one_ms"] = add_remove_one(shape, nc, np_, n, c, p)
        budget.check("tcp")
        nic(nc, vm, CLIENT_IP)
        nic(np_, backend, BACKEND_IP)
        np_.add_address("lo", f"{NAT_IP}/32")
        echo = Echo(backend)
        out["tcp"] = tcp(vm, c, p, links)
        echo.close()
        echo = None
    except (KernelError, RuntimeError, OSError, OutOfTime) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(f"{shape} n={n}: {out['error']}")
    finally:
        if echo is not None:
            echo.close()
        for handle in handles:
            handle.close()  # an open netlink socket would keep its namespace alive
        out["teardown"] = teardown(c, p, (vm, backend), n if shape == SHAPES[0] else 1)
    return out


def create(
    shape: str, nc: Netlink, np_: Netlink, links: list[LinkPlan], budget: Budget
) -> dict[str, Any]:
    """Veths, addresses and endpoint routes of all links; stops when the budget runs out."""
    made, error = 0, None
    start = time.perf_counter()
    try:
        if shape == SHAPES[0]:
            for link in links:
                if made % 100 == 0:
                    budget.check(f"link {made}")
                add_link(nc, np_, link)
                made += 1
        else:
            add_link(nc, np_, links[0], route=False)
            veth_s = time.perf_counter() - start
            for link in links:
                if made % 100 == 0:
                    budget.check(f"route {made}")
                endpoint_route(nc, link, *SHARED_VIA)
                made += 1
    except (KernelError, OutOfTime) as exc:
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "links": made,
        "seconds": round(seconds, 2),
        "per_link_ms": round(seconds / made * 1000, 3) if made else None,
    }
    if shape == SHAPES[1] and made:
        result["veth_s"] = round(veth_s, 4)
    if error:
        result["error"] = error
        log(f"{shape}: creation stopped after {made} of {len(links)}: {error}")
    return result


def dumps(nc: Netlink, c: str) -> dict[str, float | None]:
    """Median times of full dumps in hub C."""
    ns = nc._ns  # the same pyroute2 handle the reconciler's Netlink uses
    return {
        "pyroute2_get_links": ms(sample(lambda: list(ns.get_links()), DUMPS, 20)),
        "pyroute2_get_addr": ms(
            sample(lambda: list(ns.get_addr(family=socket.AF_INET)), DUMPS, 20)
        ),
        "netlink_links": ms(sample(nc.links, DUMPS, 20)),  # links + addresses, as _hub uses
        "netlink_routes_table100": ms(
            sample(lambda: nc.routes(table=names.ENDPOINT_TABLE), DUMPS, 20)
        ),
        "ip_br_link": ms(sample(lambda: run("ip", "-n", c, "-br", "link"), DUMPS, 20)),
        "ip_br_addr": ms(sample(lambda: run("ip", "-n", c, "-4", "-br", "addr"), DUMPS, 20)),
    }


def apply_both(c: str, p: str, text_c: str, text_p: str) -> None:
    """One nft transaction in each hub."""
    privileged.apply_nft(c, text_c)
    privileged.apply_nft(p, text_p)


def add_remove_one(
    shape: str, nc: Netlink, np_: Netlink, n: int, c: str, p: str
) -> dict[str, float | None]:
    """Adding and removing one link with n present, REPEAT times (median ms), in two
    parts: the netlink calls (veth-per-link: veth, addresses, up, endpoint route, then
    deleting the veth; shared-link: the endpoint route) and the link's nft elements in
    both hubs as two small transactions (the reconciler today replaces whole tables)."""
    shared = shape == SHAPES[1]
    times: dict[str, list[float]] = {k: [] for k in ("netlink_add", "netlink_remove")}
    times.update({"nft_add": [], "nft_remove": []})
    for i in range(REPEAT):
        link = link_plan(n + i, c, p)
        add_c, add_p = link_delta(link, add=True, shared=shared)
        del_c, del_p = link_delta(link, add=False, shared=shared)
        times["nft_add"].append(timed(partial(apply_both, c, p, add_c, add_p)))
        if shared:
            times["netlink_add"].append(timed(partial(endpoint_route, nc, link, *SHARED_VIA)))
            route = partial(nc.delete_route, f"{link.pe_ip}/32", table=names.ENDPOINT_TABLE)
            times["netlink_remove"].append(timed(route))
        else:
            times["netlink_add"].append(timed(partial(add_link, nc, np_, link)))
            times["netlink_remove"].append(timed(partial(nc.delete_link, link.consumer_ifname)))
        times["nft_remove"].append(timed(partial(apply_both, c, p, del_c, del_p)))
    return {k: ms(v) for k, v in times.items()}


def tcp(vm: str, c: str, p: str, links: list[LinkPlan]) -> dict[str, Any]:
    """Connect + echo through link n/2 REPEAT times, then once through each of up to
    SPREAD_MAX distinct links (kept under the host's ARP gc_thresh2 with what is there)."""
    middle = links[len(links) // 2]
    times = [echo_once(vm, middle.pe_ip) for _ in range(REPEAT)]
    ok = [t for t in times if t is not None]
    result: dict[str, Any] = {"link": middle.slot, "ok": len(ok), "connect_echo_ms": ms(ok)}
    # The link's flows are found and cut by its mark in both hubs, whatever the shape.
    result["ct_entries_with_mark"] = {x: ct_count(x, middle.mark) for x in (c, p)}
    result["conntrack_delete_mark_ms"] = ms(
        [timed(partial(privileged.conntrack_delete_mark, x, middle.mark)) for x in (c, p)]
    )
    result["ct_entries_after_delete"] = {x: ct_count(x, middle.mark) for x in (c, p)}
    before = neigh_stats()
    thresh2 = int(Path("/proc/sys/net/ipv4/neigh/default/gc_thresh2").read_text())
    spread = max(0, min(SPREAD_MAX, len(links), (thresh2 - before["arp_cache_entries"] - 64) // 2))
    step = max(1, len(links) // max(1, spread))
    chosen = links[::step][:spread]
    start = time.perf_counter()
    spread_ok = sum(echo_once(vm, x.pe_ip) is not None for x in chosen)
    result["spread"] = {
        "links": len(chosen),
        "ok": spread_ok,
        "seconds": round(time.perf_counter() - start, 2),
        "neigh_in_c": neigh_count(c),
        "neigh_in_p": neigh_count(p),
        "host_arp": neigh_delta(before, neigh_stats()),
    }
    return result


def teardown(c: str, p: str, others: tuple[str, ...], veths: int) -> dict[str, Any]:
    """Delete hub C; time until P holds no veth of it any more; then the rest."""
    mem0 = meminfo()
    out: dict[str, Any] = {}
    start = time.perf_counter()
    privileged.delete_netns(c)
    out["netns_del_returns_s"] = round(time.perf_counter() - start, 3)
    deadline = time.monotonic() + 600
    last = names.link_ifname(max(0, veths - 1), "p")
    try:
        with Netlink(p) as np_:
            # Cheap single-interface probes first; one full dump confirms.
            while time.monotonic() < deadline:
                probes_gone = np_.link(names.link_ifname(0, "p")) is None and np_.link(last) is None
                if probes_gone and not any(k.startswith("k") for k in np_.links()):
                    break
                time.sleep(0.02)
            else:
                out["error"] = "veths still in P after 600 s"
    except KernelError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["veths_gone_s"] = round(time.perf_counter() - start, 3)
    for netns in (p, *others):
        privileged.delete_netns(netns)
    time.sleep(2)
    out["memory_returned"] = mem_delta(meminfo(), mem0)  # negative growth: freed
    return out


# --- report ----------------------------------------------------------------------------------


ROWS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("links made", lambda r: r.get("create", {}).get("links")),
    ("create s (veths, addrs, routes)", lambda r: r.get("create", {}).get("seconds")),
    ("nft first load s (C+P)", lambda r: r.get("nft_load_s")),
    ("nft text KiB (C+P)", lambda r: r.get("nft_text_kib")),
    ("MemAvailable used MiB", lambda r: r.get("memory", {}).get("MemAvailable_mib")),
    ("Slab MiB", lambda r: r.get("memory", {}).get("Slab_mib")),
    ("SUnreclaim MiB", lambda r: r.get("memory", {}).get("SUnreclaim_mib")),
    ("Percpu MiB", lambda r: r.get("memory", {}).get("Percpu_mib")),
    ("pyroute2 get_links ms", lambda r: r.get("dump_ms", {}).get("pyroute2_get_links")),
    ("pyroute2 get_addr ms", lambda r: r.get("dump_ms", {}).get("pyroute2_get_addr")),
    ("Netlink.links() ms", lambda r: r.get("dump_ms", {}).get("netlink_links")),
    ("routes table 100 ms", lambda r: r.get("dump_ms", {}).get("netlink_routes_table100")),
    ("ip -br link ms", lambda r: r.get("dump_ms", {}).get("ip_br_link")),
    ("ip -4 -br addr ms", lambda r: r.get("dump_ms", {}).get("ip_br_addr")),
    ("nft replace C+P ms", lambda r: r.get("nft_replace_ms")),
    ("nft list C+P ms", lambda r: r.get("nft_list_ms")),
    ("add one: netlink ms", lambda r: r.get("one_ms", {}).get("netlink_add")),
    ("remove one: netlink ms", lambda r: r.get("one_ms", {}).get("netlink_remove")),
    ("add one: nft elements ms", lambda r: r.get("one_ms", {}).get("nft_add")),
    ("remove one: nft elements ms", lambda r: r.get("one_ms", {}).get("nft_remove")),
    ("tcp connect+echo ms", lambda r: r.get("tcp", {}).get("connect_echo_ms")),
    ("ct entries of link N/2, C/P", lambda r: _ct(r, "ct_entries_with_mark")),
    ("... after conntrack -D --mark", lambda r: _ct(r, "ct_entries_after_delete")),
    ("conntrack -D --mark ms", lambda r: r.get("tcp", {}).get("conntrack_delete_mark_ms")),
    ("tcp spread ok/links", lambda r: _spread(r)),
    ("ARP entries added (spread)", lambda r: _arp(r)),
    ("NDISC allocs (create)", lambda r: r.get("neigh_create", {}).get("ndisc_cache_allocs")),
    ("NDISC forced GC (create)", lambda r: _neigh(r, "ndisc_cache_forced_gc_runs")),
    ("NDISC table full (create)", lambda r: _neigh(r, "ndisc_cache_table_fulls")),
    ("netns del until veths gone s", lambda r: r.get("teardown", {}).get("veths_gone_s")),
)


def _neigh(r: dict[str, Any], key: str) -> int | None:
    value = r.get("neigh_create", {}).get(key)
    return int(value) if value is not None else None


def _ct(r: dict[str, Any], key: str) -> str | None:
    counts = r.get("tcp", {}).get(key)
    return "/".join(str(v) for v in counts.values()) if counts else None


def _spread(r: dict[str, Any]) -> str | None:
    s = r.get("tcp", {}).get("spread")
    return f"{s['ok']}/{s['links']}" if s else None


def _arp(r: dict[str, Any]) -> int | None:
    s = r.get("tcp", {}).get("spread")
    return s["host_arp"]["arp_cache_entries"] if s else None


def table(columns: dict[str, dict[str, Any]]) -> str:
    """One row per metric, one column per result, and the ratio of the first two."""
    names_ = list(columns)
    lines = [f"{'':34}" + "".join(f"{x:>15}" for x in names_) + f"{'ratio':>8}"]
    for label, get in ROWS:
        values = [get(columns[x]) for x in names_]
        a, b = values[0], values[1] if len(values) > 1 else None
        numbers = isinstance(a, int | float) and isinstance(b, int | float) and b
        ratio = f"{a / b:.1f}" if numbers else ""
        lines.append(f"{label:34}" + "".join(f"{_cell(v):>15}" for v in values) + f"{ratio:>8}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"N in {QUICK_SIZES}")
    parser.add_argument("--sizes", help="comma-separated N (overrides --quick)")
    parser.add_argument("--budget", type=float, default=840.0, help="seconds for the whole run")
    parser.add_argument(
        "--ipv6-probe",
        type=int,
        default=IPV6_PROBE,
        help="links made with IPv6 on and off first (0: skip)",
    )
    parser.add_argument("--write", action="store_true", help=f"write {JSON_OUT.name}")
    args = parser.parse_args()
    sizes = link_sizes(args.sizes, args.quick, QUICK_SIZES, FULL_SIZES, REPEAT)
    sweep_on_signals()
    prefix = "ko" + secrets.token_hex(2)
    budget = Budget(args.budget, reserve=60.0)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    doc: dict[str, Any] = {
        **report_header("kernel_objects", prefix),
        "loadavg_at_start": os.getloadavg()[0],
        "host_neigh_gc_thresh": {
            k: int(Path(f"/proc/sys/net/ipv4/neigh/default/{k}").read_text())
            for k in ("gc_thresh1", "gc_thresh2", "gc_thresh3")
        },
        "sizes": list(sizes),
        "creation": "pyroute2, one netlink request per call, the calls and order of "
        "Reconciler._link (veth, both addresses, both up, endpoint route in table 100)",
        "results": results,
    }
    log(f"prefix {prefix}, sizes {sizes}, budget {args.budget:.0f} s")
    sweep(prefix)
    probe: dict[str, dict[str, Any]] = {}
    try:
        if args.ipv6_probe:
            # The reconciler leaves IPv6 on (links keep fe80:: addresses); what that costs,
            # at a size that stays within the host's NDISC table. Later runs turn it off.
            for ipv6 in (True, False):
                label = "ipv6 on" if ipv6 else "ipv6 off"
                log(f"{SHAPES[0]} n={args.ipv6_probe} {label}")
                probe[label] = measure(SHAPES[0], args.ipv6_probe, prefix, budget, ipv6=ipv6)
                log(json.dumps(probe[label]))
            doc["ipv6_probe"] = probe
        for n in sizes:
            results[str(n)] = {}
            for shape in SHAPES:
                if budget.left() < budget.reserve:
                    results[str(n)][shape] = {"error": "budget spent before start"}
                    continue
                log(f"{shape} n={n} ({budget.left():.0f} s left)")
                results[str(n)][shape] = measure(shape, n, prefix, budget)
                log(json.dumps(results[str(n)][shape]))
                if args.write:
                    JSON_OUT.write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        finish(doc, prefix)
    for size, shapes in results.items():
        print(f"\nN = {size}")
        print(table(shapes))
    if probe:
        print(f"\n{SHAPES[0]}, N = {args.ipv6_probe}, IPv6 on the links or not")
        print(table(probe))
    if args.write:
        JSON_OUT.write_text(json.dumps(doc, indent=1) + "\n")
        log(f"wrote {JSON_OUT}")


if __name__ == "__main__":
    main()
