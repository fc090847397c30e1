"""Data-plane benchmark: real TCP through the kernel state `privatelink serve` builds.

Starts its own `privatelink serve --dataplane on` with a unique namespace prefix
(`bdp` + 3 random characters), builds a topology with the Azure SDK, and measures, side
by side and interleaved (the path order rotates each round), every path from a client
NIC namespace to the same backend NIC namespace:

    direct-vnet    client NIC in the provider VNet -> backend IP:port.
                   client ns -veth-> provider hub (forward; conntrack + the hub's nft
                   chains, nothing matches) -veth-> backend ns. 2 veth hops, no NAT.
    direct-peered  client NIC in the consumer VNet -> backend IP:port over a plain veth
                   the benchmark adds between the two hubs (routes, no NAT): the same
                   hops as the private link path. client ns -veth-> consumer hub
                   (forward, conntrack, nft) -veth-> provider hub (forward, conntrack,
                   nft) -veth-> backend ns. 3 veth hops, no NAT.
    lb-vnet        client NIC in the provider VNet -> load balancer frontend IP:port:
                   direct-vnet plus the provider hub's frontend DNAT (jhash). 2 hops.
    privatelink    consumer client -> private endpoint IP:port: consumer hub marks the
                   flow, routes the PE IP into its link and SNATs to the link address ->
                   link veth -> provider hub: link chain, service chain, rule chain DNAT
                   (jhash) to the backend, SNAT to a NAT IP of the service -> backend ns.
                   3 veth hops, 3 address translations each way (1 + 2 per hub).
    haproxy        client NIC in the provider VNet -> HAProxy (TCP mode, splice) in
                   another provider-VNet NIC namespace -> backend: client ns -> hub ->
                   haproxy ns (user space, two sockets) -> hub -> backend ns. 4 veth
                   hops (the hub is crossed twice), no NAT.

Reach paths (opt-in: `--paths` or `--reach`), each judged against a twin, not the baseline:

    peered-vnet    client NIC in VNet `vq`, peered with the provider VNet through the API
                   (both sides, Connected) -> backend IP:port. client ns -veth-> vq hub
                   (forward, nft peering rules) -peering wire-> provider hub (forward,
                   nft peering rules) -veth-> backend ns. 3 veth hops, no NAT: the hops
                   of direct-peered, whose veth the benchmark adds without any rules.
                   Twin: direct-vnet (the same VNet; the issue's goal is >= 0.95).
    peered-pe      client NIC in VNet `vr`, peered with the consumer VNet -> the private
                   endpoint: privatelink's path behind one peering wire. Twin: privatelink.
    vpn            a host of an on-premises site (`privatelink site create`; the host made
                   by `privatelink exec --site`) -> backend IP:port through the IPsec
                   tunnel between the site's router and a VPN gateway in the provider
                   VNet: host ns -> site router (strongSwan; ESP in user space with
                   kernel-libipsec when the kernel has no ESP) -> internet ns -> gateway
                   ns (decrypts) -> provider hub -> backend ns. No NAT.
    vpn-plain      the same namespaces and veths without the tunnel: a second host of the
                   same site, for whose address the benchmark adds plain routes (policy
                   rules to a table of its own, TWIN_TABLE, which the data plane's sweeps
                   do not touch) in the site router, the internet and the gateway
                   namespaces. Twin of vpn ("the same path unencrypted").

PROXY paths (opt-in: `--proxy`), three ways from the consumer client to the same backends:

    privatelink        the kernel path above (a service without enableProxyProtocol); in
                       --proxy mode its iperf3 goes through the backend's TCP HAProxy
                       (plain bind, no header) like the PROXY paths' (below).
    privatelink-proxy  a second service (`plsp`, frontend fe2 of the same load balancer)
                       with enableProxyProtocol and its own endpoint in the client's
                       subnet: consumer hub as for privatelink -> link veth -> provider
                       hub, whose service chain redirects to the relay (the server's
                       dataplane/proxy: a thread of the server and a worker process
                       per further core, SO_REUSEPORT) -> a NAT IP of plsp ->
                       backend ns, PROXY v2 header with the LinkID TLV first.
    haproxy-hub        Debian's HAProxy (TCP mode, send-proxy-v2, splice-auto, nbthread
                       = cores) in the provider hub namespace itself, doing the relay's
                       job: the client connects to the provider end of the bench's plain
                       veth between the hubs (PEER_NET); the consumer hub SNATs the flow
                       to its end (a bench nft table, as the link's SNAT), the provider
                       hub redirects it to HAProxy's port (a bench nft table, as the
                       service chain's redirect), and HAProxy connects from the NAT IP
                       of a third service (`plsh`, frontend fe3, no endpoint: an address
                       on the hub's `lo` whose replies the hub's input chain accepts as
                       it does the relay's). Client ns, both hubs and the backend ns are
                       the relay's; the veth between the hubs is a plain one (the relay's
                       is the link's pair veth), and HAProxy cannot listen on the relay's
                       port in the same hub, hence its own.
    Backends for both PROXY paths require the header: HTTP, the responder's bind with
    `accept-proxy` (its answer names the client address it read from the header:
    checked before measuring); iperf3, a TCP HAProxy with `accept-proxy` in front of
    iperf3 in the backend's namespace (a connection without a valid header is closed).

Load: iperf3 (single stream and -P 4) for throughput, wrk with `Connection: close` (one
TCP connection per request) against a tiny HTTP server (a single-threaded HAProxy that
answers requests itself) for connections per second. Backends run in backend NIC
namespaces; load generators in client NIC namespaces with net.ipv4.tcp_tw_reuse=1 and
ip_local_port_range 1024-65535. With 2 or more CPUs, wrk runs on CPU 0 and the backends'
HTTP servers on CPU 1 (taskset; see PIN_CPUS), for every path alike.

With 1 link it also runs short connections again 40 s after a burst, on the same-hops
direct path and on the private link path (SNAT port reuse against the backend's
TIME_WAIT sockets; see `Bench.port_reuse`).

Then the service gets (links - 1) more approved connections (default 1000 in total):
six manually approved private endpoints from a third VNet (approval-to-first-byte is
measured on each: a client polls the PE every ~3 ms while the approval is sent, and the
times at which the link's pieces appear in the kernel are recorded; three at the start,
three at the end) and the rest auto-approved from a second consumer VNet with a /20
subnet, created by raw httpx PUTs with a bearer token (8 in flight); how long installing
them took (API and kernel, and the rate along the way) is recorded, and all paths are
measured again. Last, a new NIC forces a full resync (what a restart or the periodic
resync does), timed at 1 link and at the end (skip with --no-full-sync).

Every loop is bounded in count and time. Needs root, iperf3, wrk, haproxy, nft, ip and
conntrack (apt-get install -y iperf3 wrk haproxy; haproxy runs as our own process).

Usage:
    python bench/dataplane.py [--quick] [--rounds N] [--links N] [--write]
    python bench/dataplane.py --reach [--rounds N] [--write]

    python bench/dataplane.py --proxy [--rounds N] [--write]

`--write` stores the results as JSON in docs/benchmarks-dataplane.json. `--reach` measures
only what the reach ratios need (direct-vnet, peered-vnet, direct-peered, privatelink,
peered-pe, vpn-plain, vpn) with 1 link, each twin next to its path in every round (a few
minutes; needs strongSwan and /dev/net/tun), and `--write` stores it in
docs/benchmarks-reach.json. `--proxy` measures privatelink, privatelink-proxy and
haproxy-hub with 1 link, the path order rotating each round, with the relay's and the
in-hub HAProxy's CPU per test (the relay: its thread in the server and its worker
processes; the server's busy check leaves the relay thread out), and
`--write` stores it in docs/benchmarks-proxy.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import itertools
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import (
    PrivateEndpointConnection,
    PrivateLinkServiceConnectionState,
)
from common import (
    LOCATION,
    RG,
    ROOT,
    RunningServer,
    credential,
    ip,
    log,
    machine,
    median,
    must,
    netns_run,
    network_base,
    percentile,
    process_cpu,
    require_root_and_tools,
    serve,
    source_version,
    stop_process,
    sweep_on_signals,
    unique_prefix,
    vnet_body,
)

from privatelink.dataplane import names, privileged

JSON_OUT = ROOT / "docs" / "benchmarks-dataplane.json"
REACH_JSON_OUT = ROOT / "docs" / "benchmarks-reach.json"
PROXY_JSON_OUT = ROOT / "docs" / "benchmarks-proxy.json"
SCOPE = "https://management.azure.com/.default"
API_VERSION = "2024-05-01"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HTTP_PORT = 80  # load balancer / PE / HAProxy port for HTTP
BACKEND_HTTP_PORT = 8080  # behind the private endpoint (LB rule 80 -> 8080); also probed
# Each path reaches the backend's HTTP server on its own port, so that no path meets
# TIME_WAIT sockets another path left with the same 4-tuple: lb-vnet and direct-vnet
# share a client address, and a DNATed 4-tuple carries sequence numbers and timestamps
# of a different connection (the backend's TIME_WAIT would refuse such a SYN).
LB_HTTP_PORT, LB_BACKEND_PORT = 81, 8081  # lb-vnet: its own LB rule
DIRECT_BACKEND_PORT = 8082  # direct-vnet, direct-peered
HAPROXY_BACKEND_PORT = 8083  # HAProxy -> backend
IPERF_PORT = 5201
PEER_NET = ("169.254.63.1", "169.254.63.2")  # the direct-peered veth (outside link space)
CLIENT_SYSCTLS = {
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.ip_local_port_range": "1024 65535",
}
PATHS = ("direct-vnet", "direct-peered", "lb-vnet", "privatelink", "haproxy")
REACH_PATHS = ("peered-vnet", "peered-pe", "vpn-plain", "vpn")  # opt-in (--paths, --reach)
PROXY_PATHS = ("privatelink-proxy", "haproxy-hub")  # only with --proxy (and privatelink)
ALL_PATHS = PATHS + REACH_PATHS + PROXY_PATHS
# --proxy: the ratios (path / other path, per round, and their median).
PROXY_PAIRS = (
    ("privatelink-proxy", "haproxy-hub"),
    ("privatelink-proxy", "privatelink"),
    ("haproxy-hub", "privatelink"),
)
# --proxy's backend ports: the HTTP responder's bind with accept-proxy; in front of
# iperf3, a TCP HAProxy with accept-proxy (PROXY paths) and one without (kernel path).
PROXY_HTTP_BACKEND_PORT = 8090
PROXY_IPERF_BACKEND_PORT, PLAIN_IPERF_BACKEND_PORT = 5202, 5203
KERNEL_IPERF_PORT = 5202  # the kernel path's LB port to PLAIN_IPERF_BACKEND_PORT
HUB_HAPROXY_PORTS = (15002, 15003)  # haproxy-hub's HTTP and iperf3 listeners in the hub
# Each reach path's twin: the ratio path / twin is its figure.
TWINS = {"peered-vnet": "direct-vnet", "peered-pe": "privatelink", "vpn": "vpn-plain"}
# --reach: each group's paths run back to back in a round (order alternating), so that a
# ratio compares runs seconds apart; direct-peered tells the hop from the peering's rules.
REACH_GROUPS = (
    ("direct-vnet", "peered-vnet", "direct-peered"),
    ("privatelink", "peered-pe"),
    ("vpn-plain", "vpn"),
)
# The on-premises site of the vpn paths: its VPN device's address in the public range,
# its space, the host behind the tunnel (vpn) and the host of the plain twin (vpn-plain).
SITE_NAME, SITE_IP, SITE_SPACE = "branch", "198.18.200.1", "192.168.0.0/16"
SITE_HOST, PLAIN_HOST = "192.168.1.10", "192.168.2.10"
SITE_KEY = "bench" + uuid.uuid4().hex[:16]  # no hyphen or tilde (InvalidSharedKey)
TWIN_TABLE, TWIN_RULE_PREF = 231, 100  # vpn-plain's routes (before the main table)
TUNNEL_BUDGET = 60.0  # connection Connected after the site is created
BASELINE = "direct-peered"  # same hops as the private link path, no NAT
TOOLS = ("ip", "nft", "conntrack", "iperf3", "wrk", "haproxy", "taskset")
# Short connections are bound by one core: wrk is single-threaded and veth runs the
# request path's kernel work on the sender's CPU. Left to the scheduler, wrk and the
# backend's HTTP server sometimes share a core (idle time, and a spread of about +-8 %
# between runs); pinned, the spread is about +-2 %. The same for every path.
PIN_CPUS = (0, 1) if (os.cpu_count() or 1) >= 2 else None  # (wrk, backend HTTP server)
AFB_SAMPLES = 3  # approvals timed to first byte, at the start and again at the end

# The backends' HTTP server: a single-threaded HAProxy that answers every request itself
# (no proxying) with "<backend name> <client address it saw>" and closes. It is much
# cheaper per connection than a Python server, so the path's cost is a larger share.
# `_RESPONDER_HEAD` is what it shares with PROXY_RESPONDER below.
_RESPONDER_HEAD = """\
global
    maxconn 4000
    nbthread 1

defaults
    mode http
    timeout client 10s
    timeout server 10s
    timeout connect 5s
    timeout http-request 5s

"""
HTTP_RESPONDER = (
    _RESPONDER_HEAD
    + """\
frontend http
    bind 0.0.0.0:{port}
    bind 0.0.0.0:{lb_port}
    bind 0.0.0.0:{direct_port}
    bind 0.0.0.0:{haproxy_port}
    http-request return status 200 content-type text/plain lf-string "{name} %ci\\n"
"""
)

NETLINK_TIMER = r"""
import json, sys, time
from privatelink.dataplane import privileged

nl = privileged.Netlink(sys.argv[1])
try:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        n = len(nl.links())
        times.append(time.perf_counter() - t0)
finally:
    nl.close()
times.sort()
print(json.dumps({"provider_hub_interfaces": n, "netlink_links_ms": round(times[2] * 1e3, 2)}))
"""

# The TCP HAProxies' common part (HAPROXY_CONFIG, BACKEND_TCP_PROXY).
_TCP_HEAD = """\
global
    maxconn 4000
    nbthread {threads}

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option splice-auto
"""
HAPROXY_CONFIG = (
    _TCP_HEAD
    + """\
    option splice-request
    option splice-response

frontend http
    bind {listen}:{http_port}
    default_backend http

backend http
    server b {backend}:{backend_http_port}

frontend iperf
    bind {listen}:{iperf_port}
    default_backend iperf

backend iperf
    server b {backend}:{iperf_port}
"""
)

# --proxy: the backends' HTTP responder (as HTTP_RESPONDER) with a second bind that
# requires a PROXY header (HAProxy closes a connection without a valid one) and answers
# with the client address the header carried (%ci is the header's source).
PROXY_RESPONDER = (
    _RESPONDER_HEAD
    + """\
frontend http
    bind 0.0.0.0:{plain_port}
    bind 0.0.0.0:{proxy_port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "{name} %ci\\n"
"""
)

# --proxy: in each backend namespace, in front of iperf3, a TCP HAProxy that requires the
# header (PROXY paths) and the same without (the kernel path), so that all three paths
# end in the same user-space hop.
BACKEND_TCP_PROXY = (
    _TCP_HEAD
    + """\

frontend with_header
    bind 0.0.0.0:{proxy_port} accept-proxy
    default_backend iperf

frontend plain
    bind 0.0.0.0:{plain_port}
    default_backend iperf

backend iperf
    server l 127.0.0.1:{iperf_port}
"""
)

# --proxy: HAProxy in the provider hub doing the relay's job (haproxy-hub).
HUB_HAPROXY = """\
global
    maxconn 4000
    nbthread {threads}

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option splice-auto

frontend http
    bind {listen}:{http_port}
    default_backend http

backend http
    server b {backend}:{http_backend_port} source {source} send-proxy-v2

frontend iperf
    bind {listen}:{iperf_port}
    default_backend iperf

backend iperf
    server b {backend}:{iperf_backend_port} source {source} send-proxy-v2
"""

# --proxy: haproxy-hub's translations (tables of the benchmark's own, beside the data
# plane's `privatelink` table): the consumer hub SNATs to its end of the veth (as a
# link's SNAT to the link address), the provider hub redirects to HAProxy (as a PROXY
# service's chain redirects to the relay).
CONSUMER_HUB_NFT = """\
table ip plbench {{
    chain post {{
        type nat hook postrouting priority srcnat - 5; policy accept;
        oifname "bpc" ip daddr {far} snat to {near}
    }}
}}
"""
PROVIDER_HUB_NFT = """\
table ip plbench {{
    chain pre {{
        type nat hook prerouting priority dstnat - 5; policy accept;
        iifname "bpp" ip daddr {far} tcp dport {http_port} redirect to :{http_to}
        iifname "bpp" ip daddr {far} tcp dport {iperf_port} redirect to :{iperf_to}
    }}
}}
"""


@dataclass(frozen=True)
class Sizes:
    """How much work each step does, and its time budget (seconds)."""

    rounds: int
    iperf_seconds: int
    wrk_seconds: int
    wrk_connections: int
    links: int
    install_budget: float
    install_workers: int
    afb_budget: float
    full_sync_budget: float
    idle_budget: float
    pairs: int  # back-to-back (direct-peered, privatelink) short-connection runs per phase


FULL = Sizes(
    rounds=3,
    iperf_seconds=3,
    wrk_seconds=3,
    wrk_connections=32,
    links=1000,
    install_budget=3600.0,
    install_workers=8,
    afb_budget=60.0,
    full_sync_budget=2400.0,
    idle_budget=2400.0,
    pairs=10,
)
QUICK = Sizes(
    rounds=1,
    iperf_seconds=2,
    wrk_seconds=2,
    wrk_connections=32,
    links=40,
    install_budget=120.0,
    install_workers=8,
    afb_budget=30.0,
    full_sync_budget=120.0,
    idle_budget=120.0,
    pairs=3,
)
# --reach: FULL's tests, 1 link, and short waits (no install, approvals or resync).
REACH = Sizes(
    rounds=3,
    iperf_seconds=3,
    wrk_seconds=3,
    wrk_connections=32,
    links=1,
    install_budget=0.0,
    install_workers=1,
    afb_budget=30.0,
    full_sync_budget=0.0,
    idle_budget=60.0,
    pairs=0,
)


# --proxy: 1 link, 6 rounds (each order of the three paths twice).
PROXY = Sizes(
    rounds=6,
    iperf_seconds=3,
    wrk_seconds=3,
    wrk_connections=32,
    links=1,
    install_budget=0.0,
    install_workers=1,
    afb_budget=30.0,
    full_sync_budget=0.0,
    idle_budget=60.0,
    pairs=0,
)


# --- small helpers ----------------------------------------------------------------------------


def cpu_jiffies() -> tuple[int, int, int]:
    """Machine-wide (total, busy, softirq) jiffies from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy + idle + iowait, busy, softirq


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def thread_cpus(pid: int) -> dict[int, float]:
    """User+system CPU seconds of each thread of a process (empty when it is gone)."""
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        cpu = process_cpu_path(f"/proc/{pid}/task/{tid}/stat")
        if cpu == cpu:  # not NaN: the thread is still there
            out[int(tid)] = cpu
    return out


def relay_workers(server_pid: int) -> list[int]:
    """The server's relay worker processes (dataplane/proxy/workers.py)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server_pid and b"privatelink.dataplane.proxy.workers" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def process_cpu_path(stat: str) -> float:
    """process_cpu for any stat(5) file (a thread's: /proc/PID/task/TID/stat)."""
    try:
        with open(stat) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --- the server -----------------------------------------------------------------------------


# --- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where one path's client connects."""

    client_ns: str
    http: tuple[str, int]
    iperf: tuple[str, int]


@contextmanager
def cpu_meter(out: dict[str, Any]) -> Iterator[None]:
    """CPU use during a block: machine-wide busy and softirq cores, and `others_cores`, an
    estimate of what processes other than this benchmark's used (busy - ours - softirq):
    the machine may be shared, and 2 cores leave no headroom."""
    _, b0, s0 = cpu_jiffies()
    o0 = own_cpu()
    w0 = time.perf_counter()
    try:
        yield
    finally:
        _, b1, s1 = cpu_jiffies()
        o1 = own_cpu()
        wall = time.perf_counter() - w0
        busy, soft = (b1 - b0) / CLK_TCK, (s1 - s0) / CLK_TCK
        out["busy_cores"] = round(busy / wall, 2)
        out["softirq_cores"] = round(soft / wall, 2)
        out["others_cores"] = round(max(0.0, busy - soft - (o1 - o0)) / wall, 2)
        out["busy_cpu_s"] = round(busy, 3)


OWN_PIDS: list[int] = []  # long-lived processes this benchmark started (server, backends)


def own_cpu() -> float:
    """CPU seconds of this process, its reaped children and OWN_PIDS."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    for pid in OWN_PIDS:
        cpu = process_cpu(pid)
        total += 0.0 if cpu != cpu else cpu  # NaN: the process is gone
    return total


def iperf(t: Target, streams: int, seconds: int) -> dict[str, Any]:
    """iperf3 client from the client namespace; received bits/s (one retry if busy)."""
    argv = ["iperf3", "-c", t.iperf[0], "-p", str(t.iperf[1]), "-t", str(seconds)]
    argv += ["-O", "1", "-P", str(streams), "-J", "--connect-timeout", "3000"]
    out: dict[str, Any] = {}
    for attempt in range(3):
        with cpu_meter(out):
            proc = netns_run(t.client_ns, argv, timeout=seconds + 30)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            data = {"error": proc.stderr.strip() or "no output"}
        if "error" not in data:
            end = data["end"]
            bps = end["sum_received"]["bits_per_second"]
            out.update(
                gbps=round(bps / 1e9, 3),
                retransmits=end["sum_sent"].get("retransmits"),
                cpu_us_per_gbit=round(out["busy_cpu_s"] / (bps / 1e9 * (seconds + 1)) * 1e6),
            )
            return out
        out["error"] = str(data["error"])[:300]
        time.sleep(1 + attempt)
    return out


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float | None:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def wrk(t: Target, seconds: int, connections: int) -> dict[str, Any]:
    """New TCP connections per second: wrk with `Connection: close` (1 request each)."""
    url = f"http://{t.http[0]}:{t.http[1]}/"
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    if PIN_CPUS:
        argv = ["taskset", "-c", str(PIN_CPUS[0]), *argv]
    argv += ["--timeout", "2s", "-H", "Connection: close", url]
    out: dict[str, Any] = {}
    with cpu_meter(out):
        proc = netns_run(t.client_ns, argv, timeout=seconds + 30)
    text = proc.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if proc.returncode != 0 or rps is None:
        out["error"] = (proc.stderr or text).strip()[:300]
        return out
    out["conn_per_s"] = round(float(rps.group(1)))
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", text, re.M)
        if m:
            out[f"p{q}_ms"] = _ms(m.group(1))
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["errors"] = sum(int(x) for x in errors.groups()) if errors else 0
    out["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    conns = out["conn_per_s"] * seconds
    out["cpu_us_per_conn"] = round(out["busy_cpu_s"] / conns * 1e6, 1) if conns else None
    return out


def http_get(ns: str, ip_addr: str, port: int) -> str:
    """One GET from a namespace (curl-free: a tiny Python client); the body or ''."""
    code = (
        "import socket,sys\n"
        "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2)\n"
        "s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "d=b''\n"
        "while True:\n"
        "    c=s.recv(4096)\n"
        "    if not c: break\n"
        "    d+=c\n"
        "print(d.split(b'\\r\\n\\r\\n',1)[-1].decode().strip())\n"
    )
    proc = netns_run(ns, [sys.executable, "-c", code, ip_addr, str(port)], timeout=10)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def poll_first_byte(ip_addr: str, port: int, stop: threading.Event, budget: float) -> dict:
    """In the calling thread's namespace: connect + GET every ~3 ms until a response.

    Each attempt waits at most 50 ms (a veth round trip is ~0.1 ms), so a dropped SYN
    costs the measurement <= 50 ms of resolution. `phases` lists runs of identical
    outcomes: [monotonic start of the run, outcome, attempts].
    """
    deadline = time.monotonic() + budget
    attempts = 0
    phases: list[list[Any]] = []
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline and attempts < 100_000 and not stop.is_set():
        attempts += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.05)
        began = time.monotonic()
        try:
            s.connect((ip_addr, port))
            s.sendall(request)
            outcome = "ok" if s.recv(16).startswith(b"HTTP/1.") else "no HTTP answer"
        except OSError as exc:
            outcome = type(exc).__name__ + (f" errno {exc.errno}" if exc.errno else "")
        finally:
            s.close()
        if phases and phases[-1][1] == outcome:
            phases[-1][2] += 1
        else:
            phases.append([began, outcome, 1])
        if outcome == "ok":
            return {"at": time.monotonic(), "attempts": attempts, "phases": phases}
        time.sleep(0.003)
    return {"at": None, "attempts": attempts, "phases": phases}


# --- the benchmark ---------------------------------------------------------------------------


def nic_body(subnet_id: str, pool_id: str | None = None, *more_pools: str) -> dict[str, Any]:
    props: dict[str, Any] = {"subnet": {"id": subnet_id}}
    if pool_id:
        props["loadBalancerBackendAddressPools"] = [{"id": p} for p in (pool_id, *more_pools)]
    return {
        "location": LOCATION,
        "properties": {"ipConfigurations": [{"name": "ip", "properties": props}]},
    }


def pe_body(subnet_id: str, pls_id: str) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "properties": {
            "subnet": {"id": subnet_id},
            "privateLinkServiceConnections": [
                {"name": "c", "properties": {"privateLinkServiceId": pls_id}}
            ],
        },
    }


@dataclass
class Bench:
    server: RunningServer
    sizes: Sizes
    tmp: Path
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.server.creds
        self.cred = credential(c)
        self.prov_sub, self.cons_sub, self.appr_sub = (str(uuid.uuid4()) for _ in range(3))
        self.prov = self._client(self.prov_sub)
        self.cons = self._client(self.cons_sub)
        self.appr = self._client(self.appr_sub)
        self.pb = network_base(self.prov_sub)
        self.cb = network_base(self.cons_sub)
        self.ab = network_base(self.appr_sub)
        self.pls_id = f"{self.pb}/privateLinkServices/pls"
        self.paths: tuple[str, ...] = PATHS  # which paths measure() runs

    def _client(self, subscription: str) -> NetworkManagementClient:
        c = self.server.creds
        return NetworkManagementClient(
            self.cred,
            subscription,
            base_url=c["url"],
            connection_verify=c["ca_file"],
            polling_interval=0.05,
            retry_total=0,
        )

    # --- topology -------------------------------------------------------------------------

    def build(self) -> None:
        """Provider VNet + LB + 2 backends + PLS; consumer VNet + client + PE; the rest."""
        t0 = time.perf_counter()
        pb, cb, ab = self.pb, self.cb, self.ab
        provider_subnets = {
            "fe": ("10.0.1.0/24", False),
            "be": ("10.0.2.0/24", False),
            "nat": ("10.0.3.0/24", True),
            "cl": ("10.0.4.0/24", False),
        }
        if self.vpn:  # the VPN gateway's subnet (only when a vpn path is measured)
            provider_subnets["GatewaySubnet"] = ("10.0.255.0/27", False)
        self.prov.virtual_networks.begin_create_or_update(
            RG, "vp", vnet_body("10.0.0.0/16", provider_subnets)
        ).result()
        lb_id = f"{pb}/loadBalancers/lb"
        fe_id = f"{lb_id}/frontendIPConfigurations/fe"
        pool_id = f"{lb_id}/backendAddressPools/be"

        # --proxy: the PROXY service's rules use a pool of their own (a pool may serve one
        # private link service only), with the same two NICs.
        proxy_pool_id = f"{lb_id}/backendAddressPools/bp"

        def rule(name: str, port: int, backend_port: int, fe: str = "fe") -> dict[str, Any]:
            # SourceIP: iperf3's control and data connections must reach the same backend.
            return {
                "name": name,
                "properties": {
                    "protocol": "Tcp",
                    "frontendPort": port,
                    "backendPort": backend_port,
                    "loadDistribution": "SourceIP",
                    "frontendIPConfiguration": {"id": f"{lb_id}/frontendIPConfigurations/{fe}"},
                    "backendAddressPool": {"id": pool_id if fe == "fe" else proxy_pool_id},
                    "probe": {"id": f"{lb_id}/probes/p"},
                },
            }

        self.prov.load_balancers.begin_create_or_update(
            RG,
            "lb",
            {
                "location": LOCATION,
                "sku": {"name": "Standard"},
                "properties": {
                    # --proxy: fe2 for the PROXY service, fe3 for plsh (haproxy-hub's NAT IP).
                    "frontendIPConfigurations": [
                        {
                            "name": fe,
                            "properties": {"subnet": {"id": f"{pb}/virtualNetworks/vp/subnets/fe"}},
                        }
                        for fe in (("fe", "fe2", "fe3") if self.proxy else ("fe",))
                    ],
                    "backendAddressPools": [
                        {"name": "be"},
                        *([{"name": "bp"}] if self.proxy else []),
                    ],
                    "probes": [
                        {
                            "name": "p",
                            "properties": {
                                "protocol": "Tcp",
                                "port": BACKEND_HTTP_PORT,
                                "intervalInSeconds": 5,
                                "numberOfProbes": 2,
                            },
                        }
                    ],
                    "loadBalancingRules": [
                        rule("http", HTTP_PORT, BACKEND_HTTP_PORT),
                        rule("http-lb", LB_HTTP_PORT, LB_BACKEND_PORT),
                        rule("iperf", IPERF_PORT, IPERF_PORT),
                        *(
                            [
                                rule("iperf-hp", KERNEL_IPERF_PORT, PLAIN_IPERF_BACKEND_PORT),
                                rule("http-pp", HTTP_PORT, PROXY_HTTP_BACKEND_PORT, "fe2"),
                                rule("iperf-pp", IPERF_PORT, PROXY_IPERF_BACKEND_PORT, "fe2"),
                            ]
                            if self.proxy
                            else []
                        ),
                    ],
                },
            },
        ).result()
        for name, subnet, pool in (("b1", "be", pool_id), ("b2", "be", pool_id)):
            self.prov.network_interfaces.begin_create_or_update(
                RG,
                name,
                nic_body(
                    f"{pb}/virtualNetworks/vp/subnets/{subnet}",
                    pool,
                    *([proxy_pool_id] if self.proxy else []),
                ),
            ).result()
        for name in ("pc", "hp"):
            self.prov.network_interfaces.begin_create_or_update(
                RG, name, nic_body(f"{pb}/virtualNetworks/vp/subnets/cl")
            ).result()
        nat_subnet = {"id": f"{pb}/virtualNetworks/vp/subnets/nat"}
        self.prov.private_link_services.begin_create_or_update(
            RG,
            "pls",
            {
                "location": LOCATION,
                "properties": {
                    "loadBalancerFrontendIpConfigurations": [{"id": fe_id}],
                    "ipConfigurations": [
                        {"name": "nat1", "properties": {"primary": True, "subnet": nat_subnet}},
                        {"name": "nat2", "properties": {"subnet": nat_subnet}},
                    ],
                    "visibility": {"subscriptions": [self.cons_sub, self.appr_sub]},
                    "autoApproval": {"subscriptions": [self.cons_sub]},
                },
            },
        ).result()
        # Consumer VNets do not overlap the provider's, so direct-peered can route.
        self.cons.virtual_networks.begin_create_or_update(
            RG, "vc", vnet_body("10.1.0.0/16", {"pe": ("10.1.1.0/24", False)})
        ).result()
        self.cons.virtual_networks.begin_create_or_update(
            RG, "vm", vnet_body("10.2.0.0/16", {"pe": ("10.2.0.0/20", False)})
        ).result()
        self.appr.virtual_networks.begin_create_or_update(
            RG, "va", vnet_body("10.3.0.0/16", {"pe": ("10.3.1.0/24", False)})
        ).result()
        self.cons.network_interfaces.begin_create_or_update(
            RG, "client", nic_body(f"{cb}/virtualNetworks/vc/subnets/pe")
        ).result()
        self.appr.network_interfaces.begin_create_or_update(
            RG, "ac", nic_body(f"{ab}/virtualNetworks/va/subnets/pe")
        ).result()
        pe = self.cons.private_endpoints.begin_create_or_update(
            RG, "pe0", pe_body(f"{cb}/virtualNetworks/vc/subnets/pe", self.pls_id)
        ).result()
        self.pe_ip = self._pe_ip(self.cons, pe)
        status = pe.private_link_service_connections[0].private_link_service_connection_state
        if status.status != "Approved":
            raise RuntimeError(f"pe0 is {status.status}, expected auto-approval")
        self.pending: list[tuple[str, str]] = []  # (PE ip, remote connection name)
        for name in [f"ap{i}" for i in range(2 * AFB_SAMPLES)]:
            pe = self.appr.private_endpoints.begin_create_or_update(
                RG, name, pe_body(f"{ab}/virtualNetworks/va/subnets/pe", self.pls_id)
            ).result()
            self.pending.append((self._pe_ip(self.appr, pe), pe.id))
        conns = self.prov.private_link_services.list_private_endpoint_connections(RG, "pls")
        by_pe = {c.private_endpoint.id.lower(): c.name for c in conns}
        self.pending = [(pe_ip, by_pe[pe_id.lower()]) for pe_ip, pe_id in self.pending]
        reach_nics = self.build_reach()
        if self.proxy:
            self.build_proxy()
        self.results["topology_build_s"] = round(time.perf_counter() - t0, 2)
        self.lb_ip = (
            self.prov.load_balancers.get(RG, "lb").frontend_ip_configurations[0].private_ip_address
        )
        self.wait_index(["b1", "b2", "pc", "hp", "client", "ac", *reach_nics])
        if self.vpn:
            self.wait_tunnel()

    @property
    def vpn(self) -> bool:
        return bool({"vpn", "vpn-plain"} & set(self.paths))

    @property
    def proxy(self) -> bool:
        return bool(set(PROXY_PATHS) & set(self.paths))

    def build_proxy(self) -> None:
        """--proxy: the PROXY service `plsp` on fe2 (rules to the accept-proxy backends)
        with an auto-approved endpoint `pe1` next to the client, and `plsh` on fe3, no
        endpoint: its NAT IP, on the provider hub's `lo`, is haproxy-hub's source."""
        pb, cb = self.pb, self.cb
        nat_subnet = {"id": f"{pb}/virtualNetworks/vp/subnets/nat"}
        for name, fe, proxy, nats in (("plsp", "fe2", True, 2), ("plsh", "fe3", False, 1)):
            self.prov.private_link_services.begin_create_or_update(
                RG,
                name,
                {
                    "location": LOCATION,
                    "properties": {
                        "loadBalancerFrontendIpConfigurations": [
                            {"id": f"{pb}/loadBalancers/lb/frontendIPConfigurations/{fe}"}
                        ],
                        "ipConfigurations": [
                            {
                                "name": f"nat{i + 1}",
                                "properties": {"primary": i == 0, "subnet": nat_subnet},
                            }
                            for i in range(nats)
                        ],
                        "enableProxyProtocol": proxy,
                        "visibility": {"subscriptions": [self.cons_sub]},
                        "autoApproval": {"subscriptions": [self.cons_sub]},
                    },
                },
            ).result()
        got = self.prov.private_link_services.get(RG, "plsp")
        if not got.enable_proxy_protocol:
            raise RuntimeError("plsp was stored without enableProxyProtocol")
        self.plsp_nat_ips = [c.private_ip_address for c in got.ip_configurations]
        plsh = self.prov.private_link_services.get(RG, "plsh")
        self.hub_haproxy_source = str(plsh.ip_configurations[0].private_ip_address)
        pe = self.cons.private_endpoints.begin_create_or_update(
            RG,
            "pe1",
            pe_body(f"{cb}/virtualNetworks/vc/subnets/pe", f"{pb}/privateLinkServices/plsp"),
        ).result()
        status = pe.private_link_service_connections[0].private_link_service_connection_state
        if status.status != "Approved":
            raise RuntimeError(f"pe1 is {status.status}, expected auto-approval")
        self.pe_proxy_ip = self._pe_ip(self.cons, pe)

    def peer(self, client: NetworkManagementClient, base: str, a: str, b: str) -> None:
        """Both sides of a real peering between two networks of one subscription."""
        for here, there in ((a, b), (b, a)):
            client.virtual_network_peerings.begin_create_or_update(
                RG,
                here,
                f"to-{there}",
                {
                    "properties": {
                        "remoteVirtualNetwork": {"id": f"{base}/virtualNetworks/{there}"},
                        "allowVirtualNetworkAccess": True,
                    }
                },
            ).result()
        for here, there in ((a, b), (b, a)):
            got = client.virtual_network_peerings.get(RG, here, f"to-{there}")
            if got.peering_state != "Connected":
                raise RuntimeError(f"peering {here} -> {there} is {got.peering_state}")

    def build_reach(self) -> list[str]:
        """What the reach paths need: peered VNets with a client each, and a VPN gateway
        in the provider VNet with a connection to an on-premises site; their NICs."""
        nics: list[str] = []
        pb, cb = self.pb, self.cb
        if "peered-vnet" in self.paths:
            self.prov.virtual_networks.begin_create_or_update(
                RG, "vq", vnet_body("10.4.0.0/16", {"cl": ("10.4.1.0/24", False)})
            ).result()
            self.prov.network_interfaces.begin_create_or_update(
                RG, "qc", nic_body(f"{pb}/virtualNetworks/vq/subnets/cl")
            ).result()
            self.peer(self.prov, pb, "vp", "vq")
            nics.append("qc")
        if "peered-pe" in self.paths:
            self.cons.virtual_networks.begin_create_or_update(
                RG, "vr", vnet_body("10.5.0.0/16", {"cl": ("10.5.1.0/24", False)})
            ).result()
            self.cons.network_interfaces.begin_create_or_update(
                RG, "rc", nic_body(f"{cb}/virtualNetworks/vr/subnets/cl")
            ).result()
            self.peer(self.cons, cb, "vc", "vr")
            nics.append("rc")
        if self.vpn:
            self.prov.public_ip_addresses.begin_create_or_update(
                RG,
                "gw-ip",
                {
                    "location": LOCATION,
                    "sku": {"name": "Standard"},
                    "properties": {"publicIPAllocationMethod": "Static"},
                },
            ).result()
            self.gateway_id = f"{pb}/virtualNetworkGateways/gw"
            gateway_subnet = f"{pb}/virtualNetworks/vp/subnets/GatewaySubnet"
            self.prov.virtual_network_gateways.begin_create_or_update(
                RG,
                "gw",
                {
                    "location": LOCATION,
                    "properties": {
                        "gatewayType": "Vpn",
                        "vpnType": "RouteBased",
                        "sku": {"name": "VpnGw1", "tier": "VpnGw1"},
                        "ipConfigurations": [
                            {
                                "name": "default",
                                "properties": {
                                    "subnet": {"id": gateway_subnet},
                                    "publicIPAddress": {"id": f"{pb}/publicIPAddresses/gw-ip"},
                                },
                            }
                        ],
                    },
                },
            ).result()
            self.prov.local_network_gateways.begin_create_or_update(
                RG,
                SITE_NAME,
                {
                    "location": LOCATION,
                    "properties": {
                        "gatewayIpAddress": SITE_IP,
                        "localNetworkAddressSpace": {"addressPrefixes": [SITE_SPACE]},
                    },
                },
            ).result()
            self.prov.virtual_network_gateway_connections.begin_create_or_update(
                RG,
                "to-branch",
                {
                    "location": LOCATION,
                    "properties": {
                        "connectionType": "IPsec",
                        "virtualNetworkGateway1": {"id": self.gateway_id},
                        "localNetworkGateway2": {"id": f"{pb}/localNetworkGateways/{SITE_NAME}"},
                        "sharedKey": SITE_KEY,
                    },
                },
            ).result()
            # The site itself is an admin object: the CLI, as an operator would (the key
            # on standard input, not in the process list).
            cli = [sys.executable, "-m", "privatelink.cli.main"]
            proc = subprocess.run(
                [
                    *cli,
                    "site",
                    "create",
                    SITE_NAME,
                    "--address-space",
                    SITE_SPACE,
                    "--gateway-ip",
                    SITE_IP,
                    "--shared-key-stdin",
                    "--data-dir",
                    str(self.server.data_dir),
                ],
                input=SITE_KEY,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            must(proc, "privatelink site create")
            self.site_created = time.monotonic()
        return nics

    def wait_tunnel(self) -> None:
        """Poll the connection (SDK) until Connected, at most TUNNEL_BUDGET s; record the
        time and the gateway's IPsec mode (kernel ESP or kernel-libipsec)."""
        deadline = self.site_created + TUNNEL_BUDGET
        status = None
        while time.monotonic() < deadline:
            status = self.prov.virtual_network_gateway_connections.get(
                RG, "to-branch"
            ).connection_status
            if status == "Connected":
                break
            time.sleep(0.25)
        if status != "Connected":
            raise RuntimeError(f"the VPN connection is {status} after {TUNNEL_BUDGET:.0f} s")
        url = f"{self.server.creds['url']}{self.gateway_id}?api-version={API_VERSION}"
        with self.http() as client:
            gw = client.get(url, headers=self.bearer()).json()
        self.results["vpn"] = {
            "site_to_connected_s": round(time.monotonic() - self.site_created, 2),
            "ipsec_mode": gw.get("properties", {}).get("privatelinkIpsecMode"),
        }
        log(f"VPN connection Connected: {self.results['vpn']}")

    @staticmethod
    def _pe_ip(client: NetworkManagementClient, pe: Any) -> str:
        nic = client.network_interfaces.get(RG, pe.network_interfaces[0].id.rsplit("/", 1)[-1])
        return str(nic.ip_configurations[0].private_ip_address)

    def wait_index(self, nics: list[str]) -> None:
        """Wait for dataplane.json to list the NICs and their namespaces to exist."""
        deadline = time.monotonic() + 60
        index_file = self.server.data_dir / "dataplane.json"
        while time.monotonic() < deadline:
            try:
                index = json.loads(index_file.read_text())
            except (OSError, ValueError):
                time.sleep(0.2)
                continue
            by_name = {v["id"].rsplit("/", 1)[-1]: v for v in index["nics"].values()}
            existing = set(os.listdir("/run/netns"))
            if all(n in by_name and by_name[n]["netns"] in existing for n in nics):
                self.ns = {n: by_name[n]["netns"] for n in nics}
                self.nic_ip = {n: by_name[n]["ips"][0] for n in nics}
                self.hub = {v["id"].rsplit("/", 1)[-1]: v["netns"] for v in index["vnets"].values()}
                return
            time.sleep(0.2)
        raise TimeoutError("the data plane did not realize the NICs within 60 s")

    def start(self, ns: str, argv: list[str], name: str) -> subprocess.Popen[Any]:
        out = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        OWN_PIDS.append(proc.pid)
        return proc

    def start_workloads(self) -> None:
        """Backends (HTTP + iperf3), client sysctls, the peered veth, HAProxy."""
        for b in ("b1", "b2"):
            cfg = self.tmp / f"http-{b}.cfg"
            cfg.write_text(
                HTTP_RESPONDER.format(
                    port=BACKEND_HTTP_PORT,
                    lb_port=LB_BACKEND_PORT,
                    direct_port=DIRECT_BACKEND_PORT,
                    haproxy_port=HAPROXY_BACKEND_PORT,
                    name=b,
                )
            )
            pin = ["taskset", "-c", str(PIN_CPUS[1])] if PIN_CPUS else []
            self.start(self.ns[b], [*pin, "haproxy", "-db", "-f", str(cfg)], f"http-{b}")
            self.start(self.ns[b], ["iperf3", "-s", "-p", str(IPERF_PORT)], f"iperf-{b}")
        for n in ("client", "pc", "hp", "ac", *(x for x in ("qc", "rc") if x in self.ns)):
            for k, v in CLIENT_SYSCTLS.items():
                must(netns_run(self.ns[n], ["sysctl", "-q", "-w", f"{k}={v}"]), f"sysctl {k}")
        # Which backend does the private link path reach (SourceIP: always the same one)?
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not body:
            body = http_get(self.ns["client"], self.pe_ip, HTTP_PORT)
            if not body:
                time.sleep(0.3)
        if not body:
            raise RuntimeError(f"no HTTP answer through the private endpoint {self.pe_ip}")
        self.backend = body.split()[0]
        backend_ip = self.nic_ip[self.backend]
        log(f"private link path reaches {self.backend} ({backend_ip}); PE {self.pe_ip}")
        # direct-peered: a plain veth between the consumer hub and the provider hub.
        hub_c, hub_p = self.hub["vc"], self.hub["vp"]
        ip("-n", hub_c, "link", "add", "bpc", "type", "veth", "peer", "name", "bpp", "netns", hub_p)
        ip("-n", hub_c, "addr", "add", f"{PEER_NET[0]}/30", "dev", "bpc")
        ip("-n", hub_p, "addr", "add", f"{PEER_NET[1]}/30", "dev", "bpp")
        ip("-n", hub_c, "link", "set", "bpc", "up")
        ip("-n", hub_p, "link", "set", "bpp", "up")
        ip("-n", hub_c, "route", "add", "10.0.2.0/24", "via", PEER_NET[1], "dev", "bpc")
        ip("-n", hub_p, "route", "add", "10.1.1.0/24", "via", PEER_NET[0], "dev", "bpp")
        # HAProxy in its own provider-VNet NIC namespace, forwarding to the same backend.
        cfg = self.tmp / "haproxy.cfg"
        cfg.write_text(
            HAPROXY_CONFIG.format(
                threads=os.cpu_count() or 1,
                listen=self.nic_ip["hp"],
                http_port=HTTP_PORT,
                backend=backend_ip,
                backend_http_port=HAPROXY_BACKEND_PORT,
                iperf_port=IPERF_PORT,
            )
        )
        self.start(self.ns["hp"], ["haproxy", "-db", "-f", str(cfg)], "haproxy")
        self.targets = {
            "direct-vnet": Target(
                self.ns["pc"], (backend_ip, DIRECT_BACKEND_PORT), (backend_ip, IPERF_PORT)
            ),
            "direct-peered": Target(
                self.ns["client"], (backend_ip, DIRECT_BACKEND_PORT), (backend_ip, IPERF_PORT)
            ),
            "lb-vnet": Target(self.ns["pc"], (self.lb_ip, LB_HTTP_PORT), (self.lb_ip, IPERF_PORT)),
            "privatelink": Target(
                self.ns["client"], (self.pe_ip, HTTP_PORT), (self.pe_ip, IPERF_PORT)
            ),
            "haproxy": Target(
                self.ns["pc"], (self.nic_ip["hp"], HTTP_PORT), (self.nic_ip["hp"], IPERF_PORT)
            ),
        }
        self.targets.update(self.reach_targets(backend_ip))
        self.reached: dict[str, str] = {}
        for name, t in self.targets.items():
            got = ""
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not got:
                got = http_get(t.client_ns, *t.http)
                if not got:
                    time.sleep(0.3)
            self.reached[name] = got  # "<backend> <source address the backend saw>"
            # lb-vnet hashes the client's own address, so it may pick the other backend
            # (b1 and b2 are identical); every other path must reach the same one.
            if not got or (name != "lb-vnet" and not got.startswith(self.backend)):
                logs = {
                    p.name: p.read_text(errors="replace")[-1500:] for p in self.tmp.glob("*.log")
                }
                raise RuntimeError(
                    f"path {name} answered {got!r}, expected {self.backend}; logs: {logs}"
                )
        log("all paths answer from the same backend")

    def wait_http(self, ns: str, ip_addr: str, port: int, budget: float = 30.0) -> str:
        """The body of the first GET that is answered within `budget` s ('' if none)."""
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            got = http_get(ns, ip_addr, port)
            if got:
                return got
            time.sleep(0.3)
        return ""

    def start_proxy_workloads(self) -> None:
        """--proxy: the backends (HTTP responder with a plain and an accept-proxy bind;
        iperf3 behind a TCP HAProxy with and without accept-proxy), haproxy-hub (the
        plain veth between the hubs, the bench's nft tables, HAProxy in the provider
        hub), and a check that each path answers and each header was read."""
        threads = os.cpu_count() or 1
        for b in ("b1", "b2"):
            cfg = self.tmp / f"http-{b}.cfg"
            cfg.write_text(
                PROXY_RESPONDER.format(
                    plain_port=BACKEND_HTTP_PORT, proxy_port=PROXY_HTTP_BACKEND_PORT, name=b
                )
            )
            pin = ["taskset", "-c", str(PIN_CPUS[1])] if PIN_CPUS else []
            self.start(self.ns[b], [*pin, "haproxy", "-db", "-f", str(cfg)], f"http-{b}")
            self.start(self.ns[b], ["iperf3", "-s", "-p", str(IPERF_PORT)], f"iperf-{b}")
            tcp = self.tmp / f"tcp-{b}.cfg"
            tcp.write_text(
                BACKEND_TCP_PROXY.format(
                    threads=threads,
                    proxy_port=PROXY_IPERF_BACKEND_PORT,
                    plain_port=PLAIN_IPERF_BACKEND_PORT,
                    iperf_port=IPERF_PORT,
                )
            )
            self.start(self.ns[b], ["haproxy", "-db", "-f", str(tcp)], f"tcp-{b}")
        client_ns, client_ip = self.ns["client"], self.nic_ip["client"]
        for k, v in CLIENT_SYSCTLS.items():
            must(netns_run(client_ns, ["sysctl", "-q", "-w", f"{k}={v}"]), f"sysctl {k}")
        # The relay's backend (SourceIP: always the same one for this client); its
        # answer names the source the header carried: the client's own address.
        relayed = self.wait_http(client_ns, self.pe_proxy_ip, HTTP_PORT)
        if relayed.split()[1:] != [client_ip]:
            raise RuntimeError(f"the PROXY path answered {relayed!r}, expected '... {client_ip}'")
        self.backend = relayed.split()[0]
        backend_ip = self.nic_ip[self.backend]
        log(f"the relay reaches {self.backend} ({backend_ip}); PE {self.pe_proxy_ip}")
        # haproxy-hub: a plain veth between the hubs, the bench's SNAT and redirect.
        hub_c, hub_p = self.hub["vc"], self.hub["vp"]
        near, far = PEER_NET
        ip("-n", hub_c, "link", "add", "bpc", "type", "veth", "peer", "name", "bpp", "netns", hub_p)
        ip("-n", hub_c, "addr", "add", f"{near}/30", "dev", "bpc")
        ip("-n", hub_p, "addr", "add", f"{far}/30", "dev", "bpp")
        ip("-n", hub_c, "link", "set", "bpc", "up")
        ip("-n", hub_p, "link", "set", "bpp", "up")
        for hub, text in (
            (hub_c, CONSUMER_HUB_NFT.format(far=far, near=near)),
            (
                hub_p,
                PROVIDER_HUB_NFT.format(
                    far=far,
                    http_port=HTTP_PORT,
                    http_to=HUB_HAPROXY_PORTS[0],
                    iperf_port=IPERF_PORT,
                    iperf_to=HUB_HAPROXY_PORTS[1],
                ),
            ),
        ):
            rules = self.tmp / f"plbench-{hub}.nft"
            rules.write_text(text)
            must(netns_run(hub, ["nft", "-f", str(rules)]), f"nft plbench in {hub}")
        lo = must(netns_run(hub_p, ["ip", "-o", "addr", "show", "dev", "lo"]), "ip addr")
        if f" {self.hub_haproxy_source}/32 " not in lo:
            raise RuntimeError(f"plsh's NAT IP {self.hub_haproxy_source} is not on {hub_p}'s lo")
        cfg = self.tmp / "hub-haproxy.cfg"
        cfg.write_text(
            HUB_HAPROXY.format(
                threads=threads,
                listen=far,
                http_port=HUB_HAPROXY_PORTS[0],
                iperf_port=HUB_HAPROXY_PORTS[1],
                backend=backend_ip,
                http_backend_port=PROXY_HTTP_BACKEND_PORT,
                iperf_backend_port=PROXY_IPERF_BACKEND_PORT,
                source=self.hub_haproxy_source,
            )
        )
        self.hub_haproxy = self.start(hub_p, ["haproxy", "-db", "-f", str(cfg)], "hub-haproxy")
        self.targets = {
            "privatelink": Target(
                client_ns, (self.pe_ip, HTTP_PORT), (self.pe_ip, KERNEL_IPERF_PORT)
            ),
            "privatelink-proxy": Target(
                client_ns, (self.pe_proxy_ip, HTTP_PORT), (self.pe_proxy_ip, IPERF_PORT)
            ),
            "haproxy-hub": Target(client_ns, (far, HTTP_PORT), (far, IPERF_PORT)),
        }
        # What each path's backend saw as the client: a NAT IP of pls (no header), the
        # client itself (the relay's header), the consumer hub's end of the veth
        # (HAProxy's header: it knows only the address it accepted from).
        self.reached = {n: self.wait_http(t.client_ns, *t.http) for n, t in self.targets.items()}
        expected = {"privatelink-proxy": client_ip, "haproxy-hub": near}
        for name, want in expected.items():
            if self.reached[name] != f"{self.backend} {want}":
                raise RuntimeError(
                    f"path {name} answered {self.reached[name]!r}, expected "
                    f"'{self.backend} {want}'; logs: {self.logs()}"
                )
        if not self.reached["privatelink"] or self.reached["privatelink"].endswith(client_ip):
            raise RuntimeError(f"the kernel path answered {self.reached['privatelink']!r}")
        # iperf3 through each path once (the backend's accept-proxy closes a flow
        # without a header: iperf3 fails).
        for name, t in self.targets.items():
            got = iperf(t, 1, 1)
            if "error" in got:
                raise RuntimeError(f"iperf3 through {name}: {got['error']}; logs: {self.logs()}")
        self.relay_tid = self.find_relay_thread()
        log("all three paths answer; headers read by the backends")

    def logs(self) -> dict[str, str]:
        """The tail of each process log of the benchmark (for errors)."""
        return {p.name: p.read_text(errors="replace")[-1500:] for p in self.tmp.glob("*.log")}

    def find_relay_thread(self) -> int:
        """The server's relay thread: the one that used most CPU while wrk ran through
        the PROXY path for 2 s (its other threads are idle meanwhile; recorded)."""
        pid = self.server.proc.pid
        before = thread_cpus(pid)
        wrk(self.targets["privatelink-proxy"], 2, self.sizes.wrk_connections)
        after = thread_cpus(pid)
        used = {t: after[t] - before.get(t, 0.0) for t in after}
        tid = max(used, key=lambda t: used[t])
        total = sum(used.values())
        self.results["relay_thread"] = {
            "tid": tid,
            "cpu_s_in_warmup": round(used[tid], 3),
            "share_of_server_cpu": round(used[tid] / total, 3) if total else None,
        }
        self.results["relay_thread"]["worker_processes"] = len(relay_workers(pid))
        log(f"relay thread: {self.results['relay_thread']}")
        return tid

    def proxy_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the relay (the server's relay thread and its worker
        processes) and of the in-hub HAProxy."""
        if not self.proxy:
            return {}
        thread = process_cpu_path(f"/proc/{self.server.proc.pid}/task/{self.relay_tid}/stat")
        workers = sum(process_cpu(pid) for pid in relay_workers(self.server.proc.pid))
        return {
            "relay": thread + workers,
            "relay_thread": thread,
            "haproxy-hub": process_cpu(self.hub_haproxy.pid),
        }

    def reach_targets(self, backend_ip: str) -> dict[str, Target]:
        """The reach paths' clients: the peered VNets' NICs, and two hosts of the site
        (made by `privatelink exec --site`), the second with vpn-plain's routes."""
        direct = (backend_ip, DIRECT_BACKEND_PORT)
        out: dict[str, Target] = {}
        if "qc" in self.ns:
            out["peered-vnet"] = Target(self.ns["qc"], direct, (backend_ip, IPERF_PORT))
        if "rc" in self.ns:
            out["peered-pe"] = Target(
                self.ns["rc"], (self.pe_ip, HTTP_PORT), (self.pe_ip, IPERF_PORT)
            )
        if not self.vpn:
            return out
        if "vpn-plain" in self.paths and self.results["vpn"]["ipsec_mode"] == "kernel":
            # With the kernel's ESP its policy (selector: the site's space) would encrypt
            # the twin's packets whatever the routes say.
            raise RuntimeError("vpn-plain needs user-space ESP (kernel-libipsec)")
        index = json.loads((self.server.data_dir / "dataplane.json").read_text())
        self.site_ns = index["sites"][SITE_NAME]["netns"]
        inet = index["internet"]
        gw_ns = names.gateway_netns(self.server.prefix, self.gateway_id)
        for name, host_ip in (("vpn", SITE_HOST), ("vpn-plain", PLAIN_HOST)):
            cmd = [sys.executable, "-m", "privatelink.cli.main", "exec", "--site", SITE_NAME]
            cmd += ["--ip", host_ip, "--data-dir", str(self.server.data_dir), "--", "true"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
            must(done, f"privatelink exec --site {SITE_NAME} --ip {host_ip}")
            host = names.host_netns(self.server.prefix, SITE_NAME, host_ip)
            for k, v in CLIENT_SYSCTLS.items():
                must(netns_run(host, ["sysctl", "-q", "-w", f"{k}={v}"]), f"sysctl {k}")
            out[name] = Target(host, direct, (backend_ip, IPERF_PORT))
        gw_public = str(self.prov.public_ip_addresses.get(RG, "gw-ip").ip_address)

        def hop(netns: str, dst: str) -> tuple[str, str]:
            """(next hop, device) a namespace routes `dst` by now: a fabric wire."""
            got = json.loads(must(netns_run(netns, ["ip", "-j", "route", "get", dst]), "route"))
            return got[0]["gateway"], got[0]["dev"]

        space = "10.0.0.0/16"  # the provider VNet: what the tunnel carries to Azure
        site_out = hop(self.site_ns, gw_public)
        inet_to_gw, inet_to_site = hop(inet, gw_public), hop(inet, SITE_IP)
        gw_out = hop(gw_ns, SITE_IP)
        # Plain routing for PLAIN_HOST only, in a table of its own behind policy rules:
        # the data plane sweeps unwanted wire routes from the main table, not from this.
        steps = [
            (self.site_ns, ["rule", "add", "from", PLAIN_HOST, "to", space], None),
            (self.site_ns, ["route", "add", space], site_out),
            (inet, ["rule", "add", "from", PLAIN_HOST, "to", space], None),
            (inet, ["rule", "add", "from", space, "to", PLAIN_HOST], None),
            (inet, ["route", "add", space], inet_to_gw),
            (inet, ["route", "add", f"{PLAIN_HOST}/32"], inet_to_site),
            (gw_ns, ["rule", "add", "from", space, "to", PLAIN_HOST], None),
            (gw_ns, ["route", "add", f"{PLAIN_HOST}/32"], gw_out),
        ]
        for netns, args, via in steps:
            if via is None:
                ip("-n", netns, *args, "lookup", str(TWIN_TABLE), "pref", str(TWIN_RULE_PREF))
            else:
                ip("-n", netns, *args, "via", via[0], "dev", via[1], "table", str(TWIN_TABLE))
        self.results.setdefault("vpn", {})["plain_twin"] = {
            "table": TWIN_TABLE,
            "namespaces": {"site_router": self.site_ns, "internet": inet, "gateway": gw_ns},
            "hops": {
                "site->inet": site_out,
                "inet->gw": inet_to_gw,
                "inet->site": inet_to_site,
                "gw->inet": gw_out,
            },
            "mtu": {
                "site_ipsec0": self.mtu(self.site_ns, privileged.LIBIPSEC_IFNAME),
                "site_wire": self.mtu(self.site_ns, site_out[1]),
            },
        }
        return out

    @staticmethod
    def mtu(netns: str, ifname: str) -> int | None:
        got = netns_run(netns, ["ip", "-j", "link", "show", ifname])
        return json.loads(got.stdout)[0].get("mtu") if got.returncode == 0 else None

    def hub_tables(self) -> dict[str, Any]:
        """The hubs' nft tables and routes on the reach paths (what a packet meets)."""
        out: dict[str, Any] = {}
        for vnet in ("vp", "vq", "vc", "vr"):
            if vnet in self.hub:
                ns = self.hub[vnet]
                table = netns_run(ns, ["nft", "list", "table", "ip", "privatelink"]).stdout
                routes = netns_run(ns, ["ip", "route", "show"]).stdout
                out[vnet] = {"netns": ns, "nft": table, "routes": routes}
        return out

    def tunnel_packets(self) -> int | None:
        """Packets the site router's user-space ESP device sent so far (None without it)."""
        if not self.vpn:
            return None
        argv = ["ip", "-j", "-s", "link", "show", privileged.LIBIPSEC_IFNAME]
        got = netns_run(self.site_ns, argv)
        try:
            return int(json.loads(got.stdout)[0]["stats64"]["tx"]["packets"])
        except (ValueError, LookupError, TypeError):
            return None  # no such device (kernel ESP), or an unexpected format

    # --- measurements -----------------------------------------------------------------------

    def paired(self, label: str) -> None:
        """The baseline and the private link path, back to back, `pairs` times.

        In a round of `measure` the two paths' runs are up to a minute apart (three other
        paths run in between), and this shared machine's speed drifts over that: a
        round's ratio spreads by about +-7 % (more when a neighbour is busy). Here each
        pair runs iperf3 -P1, iperf3 -P4 and wrk on one path and then the other (order
        alternating), so a pair's ratios see the same machine; the medians over the
        pairs are the figures the targets are judged by."""
        s = self.sizes
        names = (BASELINE, "privatelink")
        if s.pairs < 1 or not all(n in self.paths for n in names):
            return  # (--reach: no pairs; its groups pair each path with its twin)
        metrics = ("iperf_p1_gbps", "iperf_p4_gbps", "conn_per_s")
        pairs: list[dict[str, Any]] = []
        log(f"paired runs ({label}): {s.pairs} pairs")
        for i in range(s.pairs):
            order = names if i % 2 == 0 else names[::-1]
            self.wait_server_idle(60.0, window=0.5)
            c0 = process_cpu(self.server.proc.pid)
            got: dict[str, Any] = {}
            for name in order:
                run = self.run_path(name, i)
                got[name] = {
                    "iperf_p1_gbps": run["iperf_p1"].get("gbps"),
                    "iperf_p4_gbps": run["iperf_p4"].get("gbps"),
                    "conn_per_s": run["wrk"].get("conn_per_s"),
                    "syn_retransmits": run["wrk"]["syn_retransmits"],
                }
            got["server_cpu_s"] = round(process_cpu(self.server.proc.pid) - c0, 3)
            got["ratio"] = {
                m: round(got["privatelink"][m] / got[BASELINE][m], 3)
                for m in metrics
                if got["privatelink"][m] and got[BASELINE][m]
            }
            pairs.append(got)
            log(f"  {label} pair {i}: {got}")
        out: dict[str, Any] = {"approved_links": self.links_now(), "pairs": pairs}
        for m in metrics:
            ratios = sorted(p["ratio"][m] for p in pairs if m in p["ratio"])
            out[m] = {
                "ratio_median": round(median(ratios), 3) if ratios else None,
                "ratio_min_max": [ratios[0], ratios[-1]] if ratios else None,
                "baseline_median": median([p[BASELINE][m] for p in pairs if p[BASELINE][m]]),
                "privatelink_median": median(
                    [p["privatelink"][m] for p in pairs if p["privatelink"][m]]
                ),
            }
        self.results.setdefault("paired", {})[label] = out

    def measure(self, label: str, run_idle_budget: float | None = None) -> None:
        """All paths, `rounds` interleaved rounds (path order rotates each round)."""
        s = self.sizes
        runs: list[dict[str, Any]] = []
        paths = [p for p in ALL_PATHS if p in self.paths]
        log(f"measuring paths ({label}): {s.rounds} round(s)")
        for r in range(s.rounds):
            for name in self.round_order(paths, r):
                # The server must not compete for the CPU (a periodic full resync of a
                # large data plane can keep it busy for minutes): wait for it to be idle,
                # and run again once if it got busy during the run.
                for attempt in range(2):
                    waited = self.wait_server_idle(run_idle_budget or s.idle_budget, window=0.5)
                    run = self.run_path(name, r)
                    run["waited_for_idle_s"] = waited["waited_s"]
                    run["attempt"] = attempt
                    if not run["server_busy"]:
                        break
                runs.append(run)
                log(
                    f"  {label} r{r} {name:14} P1 {run['iperf_p1'].get('gbps')} Gbit/s  "
                    f"P4 {run['iperf_p4'].get('gbps')} Gbit/s  "
                    f"{run['wrk'].get('conn_per_s')} conn/s {run['wrk'].get('error', '')} "
                    f"({run['wrk'].get('syn_retransmits')} SYN retransmits) "
                    f"(others ~{run['wrk'].get('others_cores')} cores, server "
                    f"{run['server_cores']} cores)"
                )
        summary: dict[str, dict[str, Any]] = {}
        for name in paths:
            mine = [x for x in runs if x["path"] == name and not x["server_busy"]]
            mine = mine or [x for x in runs if x["path"] == name]

            def vals(test: str, metric: str, mine: list[dict[str, Any]] = mine) -> list[float]:
                return [x[test][metric] for x in mine if x[test].get(metric) is not None]

            summary[name] = {
                "iperf_p1_gbps": median(vals("iperf_p1", "gbps")),
                "iperf_p4_gbps": median(vals("iperf_p4", "gbps")),
                "conn_per_s": median(vals("wrk", "conn_per_s")),
                "conn_p50_ms": median(vals("wrk", "p50_ms")),
                "conn_p99_ms": median(vals("wrk", "p99_ms")),
                "cpu_us_per_conn": median(vals("wrk", "cpu_us_per_conn")),
                "syn_retransmits": vals("wrk", "syn_retransmits"),
                "cpu_us_per_gbit_p1": median(vals("iperf_p1", "cpu_us_per_gbit")),
                "spread": {
                    "iperf_p1_gbps": vals("iperf_p1", "gbps"),
                    "iperf_p4_gbps": vals("iperf_p4", "gbps"),
                    "conn_per_s": vals("wrk", "conn_per_s"),
                },
                "wrk_errors": sum(x["wrk"].get("errors", 0) for x in mine),
                "runs_with_busy_server": sum(
                    1 for x in runs if x["path"] == name and x["server_busy"]
                ),
                "failed_runs": sum(
                    1 for x in mine for k in ("iperf_p1", "iperf_p4", "wrk") if "error" in x[k]
                ),
            }
            if name in ("privatelink-proxy", "haproxy-hub"):
                summary[name]["proxy_cpu"] = proxy_cpu_summary(name, mine, s)
        # Ratios: the median over rounds of (path / baseline in the same round), which
        # cancels slow drifts of the machine's load; ratios of the medians are kept too.
        metrics = {"iperf_p1_gbps": ("iperf_p1", "gbps"), "iperf_p4_gbps": ("iperf_p4", "gbps")}
        metrics["conn_per_s"] = ("wrk", "conn_per_s")
        ratios: dict[str, Any] = {}
        ratio_of_medians: dict[str, Any] = {}
        for base in [b for b in ("direct-peered", "direct-vnet") if b in paths]:
            ratios[base], ratio_of_medians[base] = {}, {}
            for name in paths:
                ratios[base][name], ratio_of_medians[base][name] = {}, {}
                for m, (test, key) in metrics.items():
                    paired = []
                    clean = [y for y in runs if not y["server_busy"]]
                    for r in range(s.rounds):
                        x = [
                            y[test].get(key) for y in clean if (y["round"], y["path"]) == (r, name)
                        ]
                        b = [
                            y[test].get(key) for y in clean if (y["round"], y["path"]) == (r, base)
                        ]
                        if x and b and x[0] and b[0]:
                            paired.append(x[0] / b[0])
                    ratios[base][name][m] = round(median(paired), 3) if paired else None
                    ratio_of_medians[base][name][m] = (
                        round(summary[name][m] / summary[base][m], 3)
                        if summary[name][m] and summary[base][m]
                        else None
                    )
        self.results.setdefault("phases", {})[label] = {
            "approved_links": self.links_now(),
            "conntrack": self.conntrack_stats(),
            "summary": summary,
            "ratios": ratios,
            "ratio_of_medians": ratio_of_medians,
            "reach_ratios": reach_ratios(runs, paths, s.rounds),
            "proxy_ratios": reach_ratios(
                runs, paths, s.rounds, [p for p in PROXY_PAIRS if set(p) <= set(paths)]
            ),
            "runs": runs,
        }

    def round_order(self, paths: list[str], r: int) -> list[str]:
        """Round r's path order. Without reach paths: the paths rotated by r. With them:
        each group of REACH_GROUPS (and each other path alone) back to back, the groups
        rotated by r and each group's order rotated by r too, so that a reach path and
        its twin run seconds apart and each goes first in turn."""
        if not set(TWINS) & set(paths):
            return paths[r % len(paths) :] + paths[: r % len(paths)]
        grouped = {p for g in REACH_GROUPS for p in g}
        groups = [[p for p in g if p in paths] for g in REACH_GROUPS]
        groups = [g for g in groups if g] + [[p] for p in paths if p not in grouped]
        groups = groups[r % len(groups) :] + groups[: r % len(groups)]
        return [p for g in groups for p in g[r % len(g) :] + g[: r % len(g)]]

    def run_path(self, name: str, r: int) -> dict[str, Any]:
        """One path: iperf3 -P1, iperf3 -P4, wrk; and the server's CPU use meanwhile."""
        s, t = self.sizes, self.targets[name]
        run: dict[str, Any] = {"round": r, "path": name, "loadavg": loadavg()}
        esp0 = self.tunnel_packets() if name in ("vpn", "vpn-plain") else None
        c0, t0 = process_cpu(self.server.proc.pid), time.monotonic()
        p_start = p0 = self.proxy_cpu()
        run["iperf_p1"] = iperf(t, 1, s.iperf_seconds)
        p1 = self.proxy_cpu()
        run["iperf_p4"] = iperf(t, 4, s.iperf_seconds)
        p4 = self.proxy_cpu()
        before = self.tcp_counters(t.client_ns)
        run["wrk"] = wrk(t, s.wrk_seconds, s.wrk_connections)
        after = self.tcp_counters(t.client_ns)
        p_end = self.proxy_cpu()
        # --proxy: each test's CPU of the relay thread and of the in-hub HAProxy.
        for test, (a, b) in (("iperf_p1", (p0, p1)), ("iperf_p4", (p1, p4)), ("wrk", (p4, p_end))):
            if a:
                run[test]["proxy_cpu_s"] = {k: round(b[k] - a[k], 3) for k in a}
        # A SYN retransmission is a connect that stalled 1 s (a dropped or refused SYN).
        run["wrk"]["syn_retransmits"] = after.get("TcpExtTCPSynRetrans", 0) - before.get(
            "TcpExtTCPSynRetrans", 0
        )
        server_cpu = process_cpu(self.server.proc.pid) - c0
        if p_start:  # the relay (a thread of the server, and workers) is not "busy"
            run["relay_cores"] = round(
                (p_end["relay"] - p_start["relay"]) / (time.monotonic() - t0), 3
            )
            server_cpu -= p_end["relay_thread"] - p_start["relay_thread"]
        cores = server_cpu / (time.monotonic() - t0)
        run["server_cores"] = round(cores, 3)
        run["server_busy"] = cores > 0.15
        if esp0 is not None:
            # What went into the tunnel meanwhile: millions of packets for vpn, none for
            # vpn-plain (its twin routes bypass the ESP device).
            run["site_ipsec0_tx_packets"] = (self.tunnel_packets() or 0) - esp0
        return run

    def tcp_counters(self, ns: str) -> dict[str, int]:
        """A few TCP counters of a namespace (nstat, absolute values)."""
        keys = ("TcpActiveOpens", "TcpPassiveOpens", "TcpExtTCPSynRetrans", "TcpExtTW")
        out = {}
        for line in netns_run(ns, ["nstat", "-asz", *keys]).stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in keys:
                out[parts[0]] = int(parts[1])
        return out

    def port_reuse(self, pause: float = 40.0) -> dict[str, Any]:
        """Short connections again `pause` s after a burst, per path.

        The backend keeps its TIME_WAIT sockets 60 s. Were the provider hub to forget
        closed flows sooner (it keeps them 65 s, HUB_SYSCTLS), SNAT could hand out (NAT
        IP, port) pairs the backend still holds, with sequence numbers and timestamps of
        another connection: SYNs answered by stale ACKs, 1 s stalls. Direct paths reuse
        the client's own 4-tuples, which the backend's TIME_WAIT accepts. Counts SYN
        retransmissions and the backend's TIME_WAIT sockets; the two rates should match.
        """
        out: dict[str, Any] = {}
        backend_ns = self.ns[self.backend]
        for name in ("direct-peered", "privatelink"):
            t = self.targets[name]
            self.wait_server_idle(60.0, window=0.5)
            burst = wrk(t, self.sizes.wrk_seconds, self.sizes.wrk_connections)
            time.sleep(pause)
            tw = netns_run(backend_ns, ["ss", "-Htan", "state", "time-wait"]).stdout
            conntrack = netns_run(self.hub["vp"], ["conntrack", "-C"]).stdout.strip()
            c0 = self.tcp_counters(t.client_ns)
            again = wrk(t, self.sizes.wrk_seconds, self.sizes.wrk_connections)
            c1 = self.tcp_counters(t.client_ns)
            out[name] = {
                "burst_conn_per_s": burst.get("conn_per_s"),
                "after_pause_conn_per_s": again.get("conn_per_s"),
                "backend_time_wait_sockets": len(tw.splitlines()),
                "provider_hub_conntrack_entries": int(conntrack) if conntrack.isdigit() else None,
                "client_syn_retransmits": c1.get("TcpExtTCPSynRetrans", 0)
                - c0.get("TcpExtTCPSynRetrans", 0),
                "client_connects": c1.get("TcpActiveOpens", 0) - c0.get("TcpActiveOpens", 0),
            }
            log(f"port reuse {name} (pause {pause:.0f} s): {out[name]}")
            time.sleep(65)  # let the backend's TIME_WAIT sockets expire before what follows
        out["pause_s"] = pause
        return out

    def links_now(self) -> int:
        out = ip("-n", self.hub["vp"], "-o", "link", "show")
        return len(re.findall(r"^\d+: k\d+p@", out, re.M))

    def conntrack_stats(self) -> dict[str, Any]:
        """Per-hub conntrack counters (drops / insert failures mean a full or racing table)."""
        out = {}
        for vnet in ("vc", "vp"):
            proc = netns_run(self.hub[vnet], ["conntrack", "-S"])
            totals: dict[str, int] = {}
            for m in re.finditer(r"(\w+)=(\d+)", proc.stdout):
                if m.group(1) in ("drop", "early_drop", "insert_failed", "error", "clash_resolve"):
                    totals[m.group(1)] = totals.get(m.group(1), 0) + int(m.group(2))
            count = netns_run(self.hub[vnet], ["conntrack", "-C"]).stdout.strip()
            out[vnet] = {"count": int(count) if count.isdigit() else None, **totals}
        return out

    def approval_to_first_byte(self, label: str) -> dict[str, Any]:
        """Approve a pending connection while a client polls its PE every ~3 ms."""
        pe_ip, conn_name = self.pending.pop(0)
        stop = threading.Event()
        result: dict[str, Any] = {}

        def poller() -> None:
            try:
                result.update(
                    privileged.in_netns(
                        self.ns["ac"],
                        lambda: poll_first_byte(pe_ip, HTTP_PORT, stop, self.sizes.afb_budget),
                    )
                )
            except Exception as exc:  # reported, not raised: the main thread decides
                result["error"] = repr(exc)

        links_before = self.links_now()
        events: dict[str, float] = {}
        watcher = threading.Thread(target=self.watch_link, args=(pe_ip, stop, events), daemon=True)
        watcher.start()
        thread = threading.Thread(target=poller, daemon=True)
        thread.start()
        time.sleep(0.3)  # the poller is running (and being refused) before the approval
        t0 = time.monotonic()
        self.prov.private_link_services.update_private_endpoint_connection(
            RG,
            "pls",
            conn_name,
            PrivateEndpointConnection(
                private_link_service_connection_state=PrivateLinkServiceConnectionState(
                    status="Approved", description="bench", actions_required="None"
                )
            ),
        )
        t1 = time.monotonic()
        thread.join(timeout=self.sizes.afb_budget + 5)
        time.sleep(0.2)  # let the kernel watcher see the last steps
        stop.set()
        watcher.join(timeout=10)
        at = result.get("at")
        out = {
            "links_before": links_before,
            "approve_call_ms": round((t1 - t0) * 1000, 1),
            "first_byte_after_approve_ms": round((at - t0) * 1000, 1) if at else None,
            "first_byte_after_response_ms": round((at - t1) * 1000, 1) if at else None,
            "poll_attempts": result.get("attempts"),
            "poll_phases_ms": [
                (round((began - t0) * 1000, 1), outcome, n)
                for began, outcome, n in result.get("phases", [])
            ],
            "kernel_events_ms": {k: round((v - t0) * 1000, 1) for k, v in events.items()},
            "error": result.get("error"),
        }
        log(f"approval to first byte ({label}): {out}")
        return out

    def watch_link(self, pe_ip: str, stop: threading.Event, events: dict[str, float]) -> None:
        """When did the new link's pieces appear (consumer veth, its carrier, the consumer
        hub's DNAT entry, the provider hub's link chain)? Polled every few ms."""
        hub_c, hub_p = self.hub["va"], self.hub["vp"]
        before = set(re.findall(r"^\d+: (k\d+c)@", ip("-n", hub_c, "-o", "link", "show"), re.M))
        deadline = time.monotonic() + self.sizes.afb_budget + 5
        slot = None
        while not stop.is_set() and time.monotonic() < deadline and len(events) < 4:
            now = time.monotonic()
            links = ip("-n", hub_c, "-o", "link", "show")
            for m in re.finditer(r"^\d+: (k(\d+)c)@\S+ <([^>]*)>", links, re.M):
                if m.group(1) not in before:
                    slot = m.group(2)
                    events.setdefault("consumer_veth", now)
                    if "LOWER_UP" in m.group(3).split(","):
                        events.setdefault("consumer_veth_carrier", now)
            if "consumer_dnat" not in events:
                dnat = netns_run(hub_c, ["nft", "list", "map", "ip", "privatelink", "pe_dnat"])
                if pe_ip + " . " in dnat.stdout:
                    events["consumer_dnat"] = time.monotonic()
            if slot is not None and "provider_link_chain" not in events:
                vmap = netns_run(hub_p, ["nft", "list", "map", "ip", "privatelink", "links"])
                if f'"k{slot}p"' in vmap.stdout:
                    events["provider_link_chain"] = time.monotonic()
            time.sleep(0.002)

    def http(self) -> httpx.Client:
        """A raw HTTPS client to the server (bearer token added per request)."""
        return httpx.Client(verify=self.server.creds["ca_file"], timeout=120)

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cred.get_token(SCOPE).token}"}

    def put_and_wait(
        self, client: httpx.Client, path: str, body: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        """PUT a resource, then GET it until Succeeded/Failed (poll 50 ms growing to 0.5 s)."""
        url = f"{self.server.creds['url']}{path}?api-version={API_VERSION}"
        t0 = time.monotonic()
        r = client.put(url, json=body, headers=self.bearer())
        t_put = time.monotonic()
        if r.status_code not in (200, 201):
            return {"state": f"PUT {r.status_code}: {r.text[:200]}", "put_ms": 0, "ms": 0}
        state = r.json().get("properties", {}).get("provisioningState")
        pause = 0.05
        while state not in ("Succeeded", "Failed") and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 1.3, 0.5)
            got = client.get(url, headers=self.bearer())
            state = got.json().get("properties", {}).get("provisioningState")
        t_done = time.monotonic()
        return {
            "state": state,
            "put_ms": (t_put - t0) * 1000,
            "ms": (t_done - t0) * 1000,
            "done": t_done,
        }

    def server_cores(self, seconds: float = 1.0) -> float:
        """The server process's CPU use over a short window (cores)."""
        pid = self.server.proc.pid
        c0, t0 = process_cpu(pid), time.monotonic()
        time.sleep(seconds)
        return (process_cpu(pid) - c0) / (time.monotonic() - t0)

    def wait_server_idle(self, budget: float, window: float = 1.0) -> dict[str, Any]:
        """Wait until the server (API + reconciler) uses < 5% of a core for 2 windows."""
        t0 = time.monotonic()
        quiet = 0
        while time.monotonic() - t0 < budget:
            quiet = quiet + 1 if self.server_cores(window) < 0.05 else 0
            if quiet >= 2:
                break
        waited = round(time.monotonic() - t0, 1)
        if waited > 5:
            log(f"waited {waited} s for the server to become idle")
        return {"waited_s": waited, "idle": quiet >= 2}

    def full_sync_probe(self, label: str, n: int) -> dict[str, Any]:
        """PUT a new NIC: a new namespace makes the reconciler's next sync a full pass, which
        re-checks every namespace, veth, address and route; time PUT -> Succeeded."""
        links = self.links_now()
        nic = nic_body(f"{self.pb}/virtualNetworks/vp/subnets/cl")
        deadline = time.monotonic() + self.sizes.full_sync_budget
        s0 = process_cpu(self.server.proc.pid)
        with self.http() as client:
            got = self.put_and_wait(client, f"{self.pb}/networkInterfaces/fs{n}", nic, deadline)
        out = {
            "links": links,
            "state": got["state"],
            "nic_put_to_succeeded_s": round(got["ms"] / 1000, 2),
            "server_cpu_s": round(process_cpu(self.server.proc.pid) - s0, 1),
            "timed_out": got["state"] != "Succeeded",
        }
        log(f"full sync probe ({label}): {out}")
        return out

    def install(self, count: int) -> dict[str, Any]:
        """`count` auto-approved PEs from the /20 VNet: raw PUTs, `install_workers` in flight
        (not waiting for each to succeed, as a bulk deployment would), then wait until the
        kernel has all their links and list their provisioning states."""
        body = pe_body(f"{self.cb}/virtualNetworks/vm/subnets/pe", self.pls_id)
        deadline = time.monotonic() + self.sizes.install_budget
        lock = threading.Lock()
        put_ms: list[float] = []
        failures: list[str] = []
        local = threading.local()
        clients: list[httpx.Client] = []
        base_links = self.links_now()
        t_start = time.monotonic()
        s0 = process_cpu(self.server.proc.pid)
        timeline: list[tuple[float, int, float]] = []  # (s since start, kernel links, cores)
        stop = threading.Event()

        def watch() -> None:  # the kernel's link count and the server's CPU, every ~2 s
            while not stop.is_set() and time.monotonic() < deadline + 60:
                cores = self.server_cores(2.0)
                timeline.append((round(time.monotonic() - t_start, 1), self.links_now(), cores))

        def put(i: int) -> None:
            if time.monotonic() >= deadline:
                return
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = self.http()
                with lock:
                    clients.append(client)
            url = f"{self.server.creds['url']}{self.cb}/privateEndpoints/m{i}"
            t0 = time.monotonic()
            r = client.put(f"{url}?api-version={API_VERSION}", json=body, headers=self.bearer())
            with lock:
                put_ms.append((time.monotonic() - t0) * 1000)
                if r.status_code not in (200, 201):
                    failures.append(f"m{i}: PUT {r.status_code} {r.text[:200]}")

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(self.sizes.install_workers) as pool:
                list(pool.map(put, range(count)))
            t_puts = time.monotonic() - t_start
            log(f"  {len(put_ms)} PUTs in {t_puts:.1f} s; waiting for the kernel")
            expected = base_links + len(put_ms) - len(failures)
            links = self.links_now()
            next_log = time.monotonic() + 60
            while links < expected and time.monotonic() < deadline:
                time.sleep(1.0)
                links = self.links_now()
                if time.monotonic() >= next_log:
                    log(
                        f"  {links}/{expected} links in the kernel "
                        f"({time.monotonic() - t_start:.0f} s)"
                    )
                    next_log += 60
            t_kernel = time.monotonic() - t_start
            server_cpu = process_cpu(self.server.proc.pid) - s0
            states = self.endpoint_states(clients[0] if clients else None, deadline + 120)
            t_states = time.monotonic() - t_start
        finally:
            stop.set()
            watcher.join(timeout=10)
            for client in clients:
                client.close()
        # Install rate (links/s) in each tenth of the way, from the watcher's samples.
        rates = []
        for k in range(10):
            lo, hi = base_links + k * count / 10, base_links + (k + 1) * count / 10
            t_lo = next((t for t, n, _ in timeline if n >= lo), None)
            t_hi = next((t for t, n, _ in timeline if n >= hi), None)
            rates.append(
                round(count / 10 / (t_hi - t_lo), 2) if t_lo and t_hi and t_hi > t_lo else None
            )
        # Stalls: samples where the kernel gained no link while the server was busy.
        stalls, current, since = [], 0.0, 0
        for (_t_a, n_a, _), (t_b, n_b, cores) in itertools.pairwise(timeline):
            if n_b == n_a and cores > 0.5 and n_a < expected:
                current, since = current + 2.0, n_a
            else:
                if current >= 10:
                    stalls.append({"ended_at_s": t_b, "seconds": round(current), "links": since})
                current = 0.0
        if current >= 10:
            stalls.append(
                {"ended_at_s": timeline[-1][0], "seconds": round(current), "links": since}
            )
        out = {
            "requested": count,
            "put": len(put_ms),
            "put_failures": failures[:10],
            "truncated": len(put_ms) < count or links < expected,
            "puts_wall_s": round(t_puts, 1),
            "put_ms": {
                "p50": round(percentile(put_ms, 50)) if put_ms else None,
                "p99": round(percentile(put_ms, 99)) if put_ms else None,
                "max": round(max(put_ms)) if put_ms else None,
            },
            "kernel_wall_s": round(t_kernel, 1),
            "states_listed_at_s": round(t_states, 1),
            "links_in_kernel": links,
            "links_expected": expected,
            "endpoint_states": states,
            "server_cpu_s": round(server_cpu, 1),
            "links_per_s_by_tenth": rates,
            "stalls_over_10s": stalls,
            "timeline_s_links_cores": [
                (t, n, round(c, 2)) for t, n, c in timeline[:: max(1, len(timeline) // 80)]
            ],
        }
        log(f"install: {json.dumps({k: v for k, v in out.items() if 'timeline' not in k})}")
        return out

    def endpoint_states(self, client: httpx.Client | None, deadline: float) -> dict[str, int]:
        """provisioningState counts of the consumer subscription's PEs (paged list)."""
        counts: dict[str, int] = {}
        if client is None:
            return counts
        url: str | None = (
            f"{self.server.creds['url']}/subscriptions/{self.cons_sub}/providers/"
            f"Microsoft.Network/privateEndpoints?api-version={API_VERSION}"
        )
        pages = 0
        while url and pages < 200 and time.monotonic() < deadline:
            pages += 1
            page = client.get(url, headers=self.bearer()).json()
            for pe in page.get("value", []):
                state = pe.get("properties", {}).get("provisioningState", "?")
                counts[state] = counts.get(state, 0) + 1
            url = page.get("nextLink")
        return counts

    def safe_diagnostics(self, label: str) -> dict[str, Any]:
        """Diagnostics are extra: a failure is recorded, not raised."""
        try:
            return self.diagnostics(label)
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            log(f"diagnostics ({label}) failed: {exc}")
            return {"error": str(exc)[:500]}

    def diagnostics(self, label: str) -> dict[str, Any]:
        """What one sync pays per link: netlink dumps and the nft transaction, timed here."""
        out: dict[str, Any] = {"links": self.links_now()}
        # In a child process: pyroute2 may fork helpers, which must not inherit our state.
        proc = subprocess.run(
            [sys.executable, "-c", NETLINK_TIMER, self.hub["vp"]],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        out.update(json.loads(must(proc, "netlink timer")))
        for vnet in ("vp", "vm"):
            text = must(
                netns_run(self.hub[vnet], ["nft", "list", "table", "ip", "privatelink"]), "nft"
            )
            out[f"nft_{vnet}_ruleset_bytes"] = len(text)
            # Time the same transaction the reconciler sends (replace the whole table) in a
            # scratch namespace that no one else uses.
            scratch = f"{self.server.prefix}x-nft"
            subprocess.run(["ip", "netns", "add", scratch], capture_output=True, check=False)
            try:
                rules = self.tmp / f"nft-{vnet}.nft"
                rules.write_text(
                    "table ip privatelink {}\ndelete table ip privatelink\n" + text + "\n"
                )
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    must(netns_run(scratch, ["nft", "-f", str(rules)], timeout=120), "nft -f")
                    times.append(time.perf_counter() - t0)
                out[f"nft_{vnet}_apply_ms"] = round(median(times) * 1000, 1)
            finally:
                subprocess.run(["ip", "netns", "del", scratch], capture_output=True, check=False)
        log(f"diagnostics ({label}): {out}")
        return out


# --- report ---------------------------------------------------------------------------------

REACH_METRICS = {
    "iperf_p1_gbps": ("iperf_p1", "gbps"),
    "iperf_p4_gbps": ("iperf_p4", "gbps"),
    "conn_per_s": ("wrk", "conn_per_s"),
}


def reach_ratios(
    runs: list[dict[str, Any]],
    paths: list[str],
    rounds: int,
    pairs: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Each reach path over its twin (TWINS), per round (runs seconds apart) and their
    median; peered-vnet also over direct-peered (the same hops without the peering's
    rules), which splits its cost into the extra hop and the rules. With `pairs`: those
    (path, other path) instead (--proxy's PROXY_PAIRS)."""
    if pairs is None:
        pairs = [(p, t) for p, t in TWINS.items() if p in paths and t in paths]
        if "peered-vnet" in paths and "direct-peered" in paths:
            pairs.append(("peered-vnet", "direct-peered"))
    out: dict[str, Any] = {}
    clean = [y for y in runs if not y["server_busy"]]
    for name, twin in pairs:
        item: dict[str, Any] = {}
        for m, (test, k) in REACH_METRICS.items():
            per_round: list[float | None] = []
            for r in range(rounds):
                x = [y[test].get(k) for y in clean if (y["round"], y["path"]) == (r, name)]
                b = [y[test].get(k) for y in clean if (y["round"], y["path"]) == (r, twin)]
                per_round.append(round(x[0] / b[0], 3) if x and b and x[0] and b[0] else None)
            mid = median([v for v in per_round if v is not None])
            item[m] = {"median": None if mid is None else round(mid, 3), "rounds": per_round}
        out[f"{name} / {twin}"] = item
    return out


def proxy_cpu_summary(name: str, runs: list[dict[str, Any]], sizes: Sizes) -> dict[str, Any]:
    """The path's proxy (the relay's thread and workers, or the in-hub HAProxy): its CPU per
    connection (wrk) and per Gbit moved (iperf3), medians over the runs."""
    who = "relay" if name == "privatelink-proxy" else "haproxy-hub"
    per_conn: list[float] = []
    per_gbit_p1: list[float] = []
    per_gbit_p4: list[float] = []
    cores_wrk: list[float] = []
    for x in runs:
        w = x["wrk"]
        if w.get("conn_per_s") and "proxy_cpu_s" in w:
            cpu = w["proxy_cpu_s"][who]
            per_conn.append(cpu / (w["conn_per_s"] * sizes.wrk_seconds) * 1e6)
            cores_wrk.append(cpu / sizes.wrk_seconds)
        for test, out in (("iperf_p1", per_gbit_p1), ("iperf_p4", per_gbit_p4)):
            i = x[test]
            if i.get("gbps") and "proxy_cpu_s" in i:
                # iperf3 runs -O 1 plus the measured seconds.
                out.append(i["proxy_cpu_s"][who] / (i["gbps"] * (sizes.iperf_seconds + 1)) * 1e6)

    def mid(v: list[float], digits: int = 1) -> float | None:
        m = median(v)
        return None if m is None else round(m, digits)

    return {
        "process": who,
        "us_per_conn": mid(per_conn),
        "cores_during_wrk": mid(cores_wrk, 2),
        "us_per_gbit_p1": mid(per_gbit_p1, 0),
        "us_per_gbit_p4": mid(per_gbit_p4, 0),
    }


def tool_versions() -> dict[str, str]:
    out = {}
    for tool, argv in (
        ("iperf3", ["iperf3", "-v"]),
        ("wrk", ["wrk", "-v"]),
        ("haproxy", ["haproxy", "-v"]),
        ("nft", ["nft", "--version"]),
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        out[tool] = (proc.stdout or proc.stderr).strip().splitlines()[0][:80]
    return out


def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The results table as markdown (ratios against the same-hops direct path)."""
    lines = [
        "| links | path | iperf3 1 stream Gbit/s | ratio | iperf3 -P4 Gbit/s | ratio "
        "| conn/s | ratio | conn p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in results.get("phases", {}).values():
        # The same-hops baseline when it ran (else the same-VNet path, or no ratios).
        summary = phase["summary"]
        ratios = phase["ratios"].get(BASELINE) or phase["ratios"].get("direct-vnet") or {}
        for name in [p for p in ALL_PATHS if p in summary]:
            s, r = summary[name], ratios.get(name, {})
            lines.append(
                f"| {phase['approved_links']} | {name} | {fmt(s['iperf_p1_gbps'])} "
                f"| {fmt(r.get('iperf_p1_gbps'))} | {fmt(s['iperf_p4_gbps'])} "
                f"| {fmt(r.get('iperf_p4_gbps'))} | {fmt(s['conn_per_s'], 0)} "
                f"| {fmt(r.get('conn_per_s'))} | {fmt(s['conn_p99_ms'])} |"
            )
        for key, title in (("reach_ratios", "reach"), ("proxy_ratios", "PROXY")):
            reach = phase.get(key) or {}
            if not reach:
                continue
            lines.append("")
            lines.append(
                f"| {title} ratio (median of rounds; per round) | iperf3 1 stream | iperf3 -P4 "
                "| conn/s |"
            )
            lines.append("|---|---|---|---|")
            for label, item in reach.items():
                cells = [
                    f"{fmt(item[m]['median'], 3)} "
                    f"({', '.join(fmt(v, 3) for v in item[m]['rounds'])})"
                    for m in REACH_METRICS
                ]
                lines.append(f"| {label} | {' | '.join(cells)} |")
        for name in ("privatelink-proxy", "haproxy-hub"):
            cpu = summary.get(name, {}).get("proxy_cpu")
            if cpu:
                lines.append(
                    f"{name}: {cpu['process']} CPU {cpu['us_per_conn']} us/conn "
                    f"({cpu['cores_during_wrk']} cores during wrk), {cpu['us_per_gbit_p1']} "
                    f"us/Gbit (1 stream), {cpu['us_per_gbit_p4']} us/Gbit (4 streams)"
                )
    for label, pr in results.get("paired", {}).items():
        lines.append("")
        for m in ("iperf_p1_gbps", "iperf_p4_gbps", "conn_per_s"):
            x = pr[m]
            lines.append(
                f"paired ({label}, {pr['approved_links']} links) {m}: privatelink / "
                f"{BASELINE} median {x['ratio_median']} (min-max {x['ratio_min_max']}; "
                f"{x['privatelink_median']} vs {x['baseline_median']})"
            )
    phases = list(results.get("phases", {}).values())
    if len(phases) == 2:
        lines.append("")
        lines.append(
            "| path | P1 vs direct-vnet (1 / N links) | P4 vs direct-vnet | conn/s vs direct-vnet "
            "| N links / 1 link: P1 | P4 | conn/s |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for name in results["flatness"]:
            a, b = (p["ratios"]["direct-vnet"][name] for p in phases)
            flat = results["flatness"][name]
            lines.append(
                f"| {name} | {fmt(a['iperf_p1_gbps'])} / {fmt(b['iperf_p1_gbps'])} "
                f"| {fmt(a['iperf_p4_gbps'])} / {fmt(b['iperf_p4_gbps'])} "
                f"| {fmt(a['conn_per_s'])} / {fmt(b['conn_per_s'])} "
                f"| {fmt(flat['iperf_p1_gbps'])} | {fmt(flat['iperf_p4_gbps'])} "
                f"| {fmt(flat['conn_per_s'])} |"
            )
    return "\n".join(lines)


def flatness(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Each path's median at the end (N links) over its median at the start (1 link)."""
    first, last = (p["summary"] for p in results["phases"].values())
    return {
        name: {
            m: round(last[name][m] / first[name][m], 3)
            if last[name][m] and first[name][m]
            else None
            for m in ("iperf_p1_gbps", "iperf_p4_gbps", "conn_per_s")
        }
        for name in PATHS
        if name in first and name in last
    }


def sweep_fabric(prefix: str) -> list[str]:
    """Whatever namespace of the prefix outlived the server's stop and the cleanup command
    (common.sweep removes hubs and NICs only): the fabric's (internet, gateway, site and
    its hosts), their strongSwan daemons first. Returns what it removed."""
    left = sorted(n for n in os.listdir("/run/netns") if n.startswith(f"{prefix}-"))
    for netns in left:
        if netns.startswith(f"{prefix}-x-"):
            privileged.stop_charons_in(netns)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
    if left:
        log(f"removed {len(left)} namespaces left behind: {left}")
    return left


class StopAfterOneLink(Exception):
    """--one-link: the measurement with one link is all that was asked for."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, short tests, 40 links")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per phase")
    parser.add_argument("--links", type=int, default=None, help="approved links at the end")
    parser.add_argument("--write", action="store_true", help=f"write {JSON_OUT.name}")
    parser.add_argument(
        "--one-link",
        action="store_true",
        help="measure with one link only (no port reuse, approvals or install): an A/B probe",
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help=f"comma-separated paths to measure (default {','.join(PATHS)}; opt-in: "
        f"{','.join(REACH_PATHS)})",
    )
    parser.add_argument(
        "--reach",
        action="store_true",
        help="only the reach ratios (peering, VPN) with 1 link; --write stores "
        f"{REACH_JSON_OUT.name}",
    )
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="only the PROXY comparison (privatelink, privatelink-proxy, haproxy-hub) with "
        f"1 link; --write stores {PROXY_JSON_OUT.name}",
    )
    parser.add_argument(
        "--no-full-sync",
        action="store_true",
        help="skip the final forced full resync at the large size (bounded by its budget)",
    )
    args = parser.parse_args(argv)
    paths = tuple(args.paths.split(","))
    if args.reach:
        if args.quick or args.links is not None or args.paths != ",".join(PATHS):
            parser.error("--reach chooses its own paths and size (1 link)")
        paths = tuple(p for g in REACH_GROUPS for p in g)
        args.one_link = True
    if args.proxy:
        if args.reach or args.quick or args.links is not None or args.paths != ",".join(PATHS):
            parser.error("--proxy chooses its own paths and size (1 link)")
        paths = ("privatelink", *PROXY_PATHS)
        args.one_link = True
    elif set(paths) & set(PROXY_PATHS):
        parser.error(f"{', '.join(PROXY_PATHS)} are measured with --proxy only")
    unknown = [p for p in paths if p not in ALL_PATHS]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; known: {', '.join(ALL_PATHS)}")
    json_out = REACH_JSON_OUT if args.reach else PROXY_JSON_OUT if args.proxy else JSON_OUT
    sizes = REACH if args.reach else PROXY if args.proxy else QUICK if args.quick else FULL
    if args.rounds is not None:
        sizes = Sizes(**{**sizes.__dict__, "rounds": max(1, min(args.rounds, 20))})
    if args.links is not None:
        sizes = Sizes(**{**sizes.__dict__, "links": max(10, min(args.links, 1000))})
    require_root_and_tools(parser, TOOLS)

    sweep_on_signals()
    prefix = unique_prefix("bdp")
    tmp = Path(tempfile.mkdtemp(prefix="pl-dpbench-"))
    results: dict[str, Any] = {
        "benchmark": "dataplane-reach"
        if args.reach
        else "dataplane-proxy"
        if args.proxy
        else "dataplane",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python bench/dataplane.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "tools": tool_versions(),
        "sizes": sizes.__dict__,
        "pinned_cpus": {"wrk": PIN_CPUS[0], "backend_http": PIN_CPUS[1]} if PIN_CPUS else None,
        "netns_prefix": prefix,
        "source": source_version(),
        "loadavg_at_start": loadavg(),
        "paths": {
            "direct-vnet": "provider-VNet client ns -> provider hub -> backend ns (2 veths)",
            "direct-peered": "consumer client ns -> consumer hub -> bench veth -> provider hub "
            "-> backend ns (3 veths, routed, no NAT: the private link path's hops)",
            "lb-vnet": "provider-VNet client ns -> provider hub (frontend DNAT) -> backend ns",
            "privatelink": "consumer client ns -> consumer hub (PE routed into its link, "
            "SNAT to the link address) -> link veth -> provider hub (DNAT to backend, SNAT "
            "to NAT IP) -> backend ns",
            "haproxy": "provider-VNet client ns -> hub -> HAProxy ns (TCP mode, splice) -> hub "
            "-> backend ns (4 veths, user-space proxy)",
            "peered-vnet": "client ns of VNet vq -> vq hub -> peering wire (API peering, both "
            "sides Connected) -> provider hub -> backend ns (3 veths, no NAT)",
            "peered-pe": "client ns of VNet vr -> vr hub -> peering wire -> consumer hub -> "
            "privatelink's path",
            "vpn": f"site host {SITE_HOST} -> site router (IPsec) -> internet ns -> VPN "
            "gateway ns (provider VNet) -> provider hub -> backend ns (5 veths, ESP between "
            "site router and gateway, no NAT)",
            "vpn-plain": f"site host {PLAIN_HOST} -> the same namespaces and veths, plainly "
            f"routed (table {TWIN_TABLE} behind policy rules), no tunnel",
            "privatelink-proxy": "consumer client ns -> consumer hub (as privatelink) -> link "
            "veth -> provider hub (service chain redirects to the relay: user space, splice) "
            "-> from a NAT IP of plsp, PROXY v2 header + LinkID TLV -> backend ns "
            "(accept-proxy)",
            "haproxy-hub": "consumer client ns -> consumer hub (bench SNAT to its veth end) -> "
            "plain veth -> provider hub (bench redirect to HAProxy in the hub: TCP mode, "
            "send-proxy-v2, splice-auto) -> from plsh's NAT IP -> backend ns (accept-proxy)",
        },
        "proxy_pairs": PROXY_PAIRS if args.proxy else None,
        "reach_twins": TWINS if args.reach else None,
    }
    log(f"netns prefix {prefix}, temp dir {tmp}")

    def checkpoint(stage: str, complete: bool = False) -> None:
        """Record progress; with --write, store what there is (a long run may be cut)."""
        results["stage"], results["complete"] = stage, complete
        if args.write:
            json_out.write_text(json.dumps(results, indent=1) + "\n")

    bench: Bench | None = None
    code = 0
    try:
        with serve(tmp, prefix, OWN_PIDS.append) as server:
            bench = Bench(server, sizes, tmp, results=results)
            bench.paths = paths
            try:
                bench.build()
                if args.proxy:
                    bench.start_proxy_workloads()
                else:
                    bench.start_workloads()
                results["backend_reached"] = bench.reached
                results["diagnostics"] = {"links_1": bench.safe_diagnostics("1 link")}
                idle = results["server_idle_waits"] = [bench.wait_server_idle(sizes.idle_budget)]
                # --reach: a tunnel's poll keeps the server a little busy; wait less.
                bench.measure("links_1", run_idle_budget=20.0 if args.reach else None)
                bench.paired("links_1")
                if args.reach:
                    results["hub_tables"] = bench.hub_tables()
                checkpoint("measured with 1 link")
                if args.one_link:
                    raise StopAfterOneLink
                results["port_reuse"] = bench.port_reuse()
                checkpoint("port reuse")
                results["full_sync_probe"] = [bench.full_sync_probe("1 link", 0)]
                idle.append(bench.wait_server_idle(sizes.idle_budget))
                afb = [bench.approval_to_first_byte("first") for _ in range(AFB_SAMPLES)]
                results["approval_to_first_byte"] = afb
                checkpoint("first approvals")
                results["install"] = bench.install(sizes.links - 1 - 2 * AFB_SAMPLES)
                checkpoint("installed")
                # Measure at once: the reconciler's next sync after the install is a full
                # pass (at most FULL_RESYNC_SECONDS = 300 s later, or at the next change),
                # which at ~1000 links keeps a core busy for tens of minutes.
                idle.append(bench.wait_server_idle(min(sizes.idle_budget, 300)))
                bench.measure(f"links_{sizes.links}", run_idle_budget=60.0)
                bench.paired(f"links_{sizes.links}")
                results["flatness"] = flatness(results)
                checkpoint(f"measured with {sizes.links} links")
                afb += [bench.approval_to_first_byte("last") for _ in range(AFB_SAMPLES)]
                results["diagnostics"][f"links_{sizes.links}"] = bench.safe_diagnostics("many")
                checkpoint("last approvals")
                if not args.no_full_sync:
                    # A new NIC forces a full pass (what a restart or the periodic resync
                    # does): it re-checks every namespace, veth, address and route.
                    idle.append(bench.wait_server_idle(sizes.idle_budget))
                    results["full_sync_probe"].append(bench.full_sync_probe("many links", 1))
                    checkpoint("full sync")
            except StopAfterOneLink:
                pass
            finally:
                for proc in reversed(bench.procs):
                    stop_process(proc)
        server_log = (tmp / "server.log").read_text(errors="replace").splitlines()
        warnings = [line for line in server_log if "sync failed" in line or "Traceback" in line]
        results["server_log"] = {"sync_failures": len(warnings), "first": warnings[:5]}
    except KeyboardInterrupt:
        log("interrupted")
        results["interrupted"] = True
        code = 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        results["left_behind"] = sweep_fabric(prefix)
    results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    checkpoint(results.get("stage", "start"), complete=code == 0)
    if args.write:
        log(f"wrote {json_out}")
    if code:
        return code
    print(markdown(results))
    for item in results.get("approval_to_first_byte", []):
        print(
            f"approval -> first byte with {item['links_before']} links installed: "
            f"{item['first_byte_after_approve_ms']} ms (approve call {item['approve_call_ms']} ms)"
        )
    inst = results.get("install", {})
    if inst:
        print(
            f"install {inst.get('requested')} PEs: PUTs {inst.get('puts_wall_s')} s (p50 "
            f"{inst.get('put_ms', {}).get('p50')} ms), all links in the kernel after "
            f"{inst.get('kernel_wall_s')} s ({inst.get('links_in_kernel')}/"
            f"{inst.get('links_expected')}), states {inst.get('endpoint_states')}, links/s by "
            f"tenth {inst.get('links_per_s_by_tenth')}, stalls {inst.get('stalls_over_10s')}"
        )
    if results.get("vpn"):
        print(f"vpn: {results['vpn']}")
    print(f"server log: {results.get('server_log')}")
    for name, item in results.get("port_reuse", {}).items():
        if isinstance(item, dict):
            print(f"short connections 40 s after a burst, {name}: {item}")
    for item in results.get("full_sync_probe", []):
        print(
            f"full sync (new NIC PUT -> Succeeded) with {item['links']} links: "
            f"{item['nic_put_to_succeeded_s']} s{' (timed out)' if item['timed_out'] else ''}"
        )
    for label, diag in results.get("diagnostics", {}).items():
        print(f"diagnostics {label}: {diag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
