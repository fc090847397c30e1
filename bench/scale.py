"""Scale benchmark (issue 12): does a change cost the same with thousands of links?

Starts its own `privatelink serve --dataplane on` (root) with a unique namespace prefix
(`bsc` + 3 random characters, swept at the start, at the end and on SIGTERM/SIGHUP),
builds a world through the API (raw httpx with a bearer token; one spot check with
azure-mgmt-network) and measures, with real TCP from VM namespaces:

0. A small world first: provider VNet `vp` (subscription P0) with a Standard LB `lbx`
   (2 frontends), a backend NIC `be` in its first pool running a tiny HTTP/1.1
   keep-alive server on 8080 (rule 80 -> 8080), a manually approved service `plsm` and
   an empty service `plsempty`; a consumer VNet `vcl` (subscription Cs) with a client NIC.
   Steps 2 and 3 run here first, each sample with its own new endpoint, so every
   approval is the only link of the host: the single-link figures.
1. The big world: S services (`pls<j>`, 8 per Standard LB `lb<k>`, spread over the
   provider subscriptions so none passes Azure's 800 per subscription), auto-approved for
   every consumer subscription, and N private endpoints (`e<i>`) from V consumer VNets
   (`vc<v>`, /22 endpoint subnets) in C subscriptions, `--workers` PUTs in flight, each
   followed (GET) until provisioningState Succeeded (with the data plane on that means
   the kernel has its link). Service `pls0` gets `big` of them (step 5), the rest are
   spread over the others, in a shuffled order. Reported per tenth of the endpoints (by
   completion): endpoints/s, the server's CPU ms per endpoint, its RSS; the ratio of the
   last tenth's rate to the first's (target >= 0.8) and the peak RSS (target <= 300 MB
   at 10,000).
2. Approval -> first byte with N links: a pending endpoint on `plsm` from `vc0`, then
   approve (PUT of the connection) while a client in `vc0` polls the endpoint's IP
   (connect + GET every ~3 ms, `dataplane.poll_first_byte`); p50 vs the small world's
   (targets: <= 100 ms and <= 1.2x the single-link p50).
3. Reject -> flow cut: after each approval, a keep-alive HTTP flow through the new link
   sends a request every 5 ms; the connection is rejected and the time until a request
   fails (reset, close or timeout: the send time of the first failing request) is taken;
   p50 in both worlds (target <= 100 ms).
4. Full resync: an approved endpoint `keep` carries a keep-alive flow (a request every
   50 ms); the server gets SIGTERM and is started again on the same data directory,
   port and prefix; the time from the new process's start to its first completed sync
   (`dataplane.json` is rewritten after every successful sync: its mtime) and whether
   the flow went on (no failed request, same TCP connection) (target <= 30 s at 10,000).
5. API with many connections: GET of `pls0` (the `big` connections) vs GET of
   `plsempty`, alternated in blocks; the paged list of `pls0`'s connections and of a
   consumer subscription's endpoints vs the same lists where they are short (ms per
   page; target: within 2x).
6. Data path: the small world's backend `be` and one big-world backend `bb` (in
   pls0's pool, on lb0 with the same rules) also run an iperf3 server (rule 5201 ->
   5201) and the HAProxy HTTP responder of bench/dataplane.py (rule 81 -> 8081, pinned
   like there). Through an approved endpoint, from the world's client namespace:
   iperf3 with 1 stream and wrk's new connections per second (`Connection: close`),
   DP_ROUNDS rounds of DP_SECONDS s each, with 1 link (a new endpoint on `plsm` after
   step 3's samples, rejected after) and with all N links (an auto-approved endpoint
   of step 1 on pls0 from `vc0`, after the big world's samples). Targets: the medians'
   ratios big/small >= 0.95. The two worlds are measured minutes apart, so a neighbour's
   load on a shared machine moves the ratio (each round records the load average).

`--quick`: 100 services on 13 LBs, 1000 endpoints from 4 VNets in 2 subscriptions,
5 samples for steps 2-3 (about 2 minutes on a 2-core machine). The full run is the
issue's world: 1000 services on 125 LBs, 10,000 endpoints from 20 VNets in 10
subscriptions, 20 samples (25 minutes there, at commit f56e0c0). Private DNS for
2000 endpoints and the kernel work per change are not measured here (bench/dns.py,
bench/link_change.py); the output says so.

Every loop is bounded in count and time. The server's CPU is its own process's (user +
system; children such as `conntrack` not counted). The machine may be shared: figures
are wall times next to each other in one run, and the server's CPU, which other load
moves less.

Usage:
    python bench/scale.py [--quick] [--workers N] [--endpoints N] [--write]

Needs root, ip, iperf3, wrk, haproxy and taskset (`make deps-bench` installs them).

`--write` stores the results as JSON in docs/benchmarks-scale.json, under the run's
mode (`quick`, `full`, or `...-custom` with --workers/--endpoints; the other modes' last
runs are kept), after every step, so a long run that is cut keeps what it measured.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import itertools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from azure.mgmt.network import NetworkManagementClient
from common import (
    RG,
    ROOT,
    Bearer,
    RunningServer,
    log,
    machine,
    median,
    must,
    netns_run,
    network_base,
    process_cpu,
    require_root_and_tools,
    serve,
    server_command,
    source_version,
    stop_process,
    summary,
    sweep,
    sweep_on_signals,
    unique_prefix,
    vnet_body,
    wait_process_idle,
    wait_ready,
)
from control_plane import FRONTENDS_PER_LB, Meter, Phase, bounded, lb_body, pls_body
from control_plane import pe_body as manual_pe_body
from dataplane import (
    CLIENT_SYSCTLS,
    HTTP_RESPONDER,
    IPERF_PORT,
    PIN_CPUS,
    Target,
    http_get,
    iperf,
    nic_body,
    pe_body,
    poll_first_byte,
    wrk,
)

from privatelink.dataplane import names, privileged

JSON_OUT = ROOT / "docs" / "benchmarks-scale.json"
API_VERSION = "2024-05-01"
HTTP_PORT = 80  # the LB rules' frontend port, hence the endpoints' port
BACKEND_PORT = 8080  # lb_body's rules and probe
REQUEST = b"GET / HTTP/1.1\r\nHost: scale\r\n\r\n"
CUT_INTERVAL = 0.005  # s between requests of the flow that a reject must cut
KEEP_INTERVAL = 0.05  # s between requests of the flow that must survive the restart
STOP_TIMEOUT = 60.0  # s a SIGTERMed server gets to exit
# Step 6: the backends' data-path servers, on ports of their own (8080 is the Python
# server's: steps 2-4 and the probe). HTTP_RESPONDER binds four ports; three stay
# unused here.
DP_HTTP_PORT, DP_BACKEND_PORT = 81, 8081
DP_ROUNDS, DP_SECONDS, DP_CONNECTIONS = 3, 3, 32
DP_BUDGET = 300.0  # s for one world's rounds
TOOLS = ("ip", "iperf3", "wrk", "haproxy", "taskset")

# The backend: HTTP/1.1 with keep-alive (a flow can carry many requests), threads.
BACKEND_SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall
    def do_GET(self):
        body = b"scale backend\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""


@dataclass(frozen=True)
class Sizes:
    """The world and each step's counts and time budgets (seconds)."""

    services: int
    endpoints: int
    consumer_vnets: int
    consumer_subs: int
    provider_subs: int
    big: int  # endpoints of pls0 (step 5's service with many connections)
    workers: int
    samples: int  # approvals (step 2) and rejects (step 3) in each world
    gets: int  # GETs of each service in step 5
    build_budget: float
    create_budget: float
    resync_budget: float


FULL = Sizes(
    services=1000,
    endpoints=10_000,
    consumer_vnets=20,
    consumer_subs=10,
    provider_subs=2,
    big=1000,
    workers=8,
    samples=20,
    gets=500,
    build_budget=3600.0,
    create_budget=6 * 3600.0,
    resync_budget=1800.0,
)
QUICK = Sizes(
    services=100,
    endpoints=1000,
    consumer_vnets=4,
    consumer_subs=2,
    provider_subs=1,
    big=250,
    workers=8,
    samples=5,
    gets=200,
    build_budget=900.0,
    create_budget=1800.0,
    resync_budget=600.0,
)

NOT_MEASURED = {
    "private_dns_2000_records": "not measured here: bench/dns.py",
    "kernel_work_per_link_change": "not measured here: bench/link_change.py",
}


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB (VmRSS), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# --- a keep-alive flow through an endpoint ----------------------------------------------------


class Flow:
    """One HTTP/1.1 keep-alive TCP connection from a namespace; GETs on it.

    The socket is made in the namespace (`privileged.socket_in_netns`) and keeps it, so
    it is used from any thread of this process."""

    def __init__(self, netns: str, ip_addr: str, port: int, timeout: float = 0.5) -> None:
        self.sock = privileged.socket_in_netns(netns)
        self.sock.settimeout(timeout)
        self.sock.connect((ip_addr, port))
        self.buf = b""
        self.local = self.sock.getsockname()

    def get(self) -> None:
        """One request and its whole response; OSError when the flow fails."""
        self.sock.sendall(REQUEST)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"answer {head[:40]!r}")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            self._more()
        self.buf = self.buf[length:]

    def _more(self) -> None:
        chunk = self.sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the peer")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


@dataclass
class FlowRun:
    """What a flow saw while it ran: requests, failures and gaps (monotonic times)."""

    ok: int = 0
    failed_at: float | None = None  # send time of the first failing request
    failure: str = ""
    last_ok: float | None = None
    max_gap: float = 0.0


def run_flow(
    flow: Flow, interval: float, stop: threading.Event, budget: float, out: FlowRun
) -> None:
    """Requests every `interval` s until the first failure, `stop`, or `budget` s."""
    deadline = time.monotonic() + budget
    for _ in range(int(budget / interval) + 10):
        if stop.is_set() or time.monotonic() >= deadline:
            return
        sent = time.monotonic()
        try:
            flow.get()
        except OSError as exc:
            out.failed_at, out.failure = sent, type(exc).__name__ + f": {exc}"[:120]
            return
        now = time.monotonic()
        if out.last_ok is not None:
            out.max_gap = max(out.max_gap, now - out.last_ok)
        out.ok, out.last_ok = out.ok + 1, now
        time.sleep(max(0.0, interval - (now - sent)))


# --- the API ----------------------------------------------------------------------------------


class Api:
    """Raw HTTPS to the server: one keep-alive client per thread, a shared bearer token."""

    def __init__(self, creds: dict[str, str]) -> None:
        self.url = creds["url"]
        self.ca = creds["ca_file"]
        self.bearer = Bearer(creds)
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        got: httpx.Client | None = getattr(self._local, "client", None)
        if got is None:
            got = self._local.client = httpx.Client(verify=self.ca, timeout=120, trust_env=False)
            with self._lock:
                self._clients.append(got)
        return got

    def close(self) -> None:
        for c in self._clients:
            c.close()
        self.bearer.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        url = path if path.startswith("https://") else f"{self.url}{path}"
        params = None if "api-version=" in url else {"api-version": API_VERSION}
        return self.client().request(method, url, params=params, json=body, headers=self.bearer())

    def get(self, path: str) -> dict[str, Any]:
        r = self.request("GET", path)
        if r.status_code != 200:
            raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
        got: dict[str, Any] = r.json()
        return got

    def pages(self, path: str, limit: int = 200) -> list[list[dict[str, Any]]]:
        """Every page of a list (bounded), following nextLink."""
        out: list[list[dict[str, Any]]] = []
        url: str | None = path
        while url and len(out) < limit:
            body = self.get(url)
            out.append(list(body.get("value", [])))
            url = body.get("nextLink")
        return out

    def put_wait(self, path: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """PUT, then GET until Succeeded or Failed (20 ms growing to 0.5 s); the resource,
        with `_put_s` and `_s` (wall time of the PUT and of the whole)."""
        t0 = time.monotonic()
        r = self.request("PUT", path, body)
        t_put = time.monotonic() - t0
        if r.status_code not in (200, 201):
            raise RuntimeError(f"PUT {path}: {r.status_code} {r.text[:300]}")
        got: dict[str, Any] = r.json()
        pause = 0.02
        while got.get("properties", {}).get("provisioningState") not in ("Succeeded", "Failed"):
            if time.monotonic() >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 1.5, 0.5)
            got = self.get(path)
        got["_put_s"], got["_s"] = t_put, time.monotonic() - t0
        state = got.get("properties", {}).get("provisioningState")
        if state != "Succeeded":
            raise RuntimeError(f"PUT {path}: provisioningState {state}")
        return got

    def set_connection(self, pls_id: str, conn: str, status: str) -> float:
        """Approve or reject a connection (synchronous 200); the call's wall time."""
        body = {
            "properties": {
                "privateLinkServiceConnectionState": {"status": status, "description": "scale"}
            }
        }
        t0 = time.monotonic()
        r = self.request("PUT", f"{pls_id}/privateEndpointConnections/{conn}", body)
        if r.status_code != 200:
            raise RuntimeError(f"{status} {conn}: {r.status_code} {r.text[:300]}")
        return time.monotonic() - t0


def run_parallel(
    workers: int, items: list[Any], fn: Callable[[Any], object], deadline: float
) -> list[str]:
    """fn(item) with `workers` threads until done or `deadline`; the failures."""
    failures: list[str] = []

    def one(item: Any) -> None:
        if time.monotonic() >= deadline:
            failures.append(f"{item}: out of time")
            return
        try:
            fn(item)
        except (RuntimeError, httpx.HTTPError) as exc:
            failures.append(f"{item}: {exc}"[:300])

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, items))
    return failures


# --- the benchmark ----------------------------------------------------------------------------


@dataclass
class Sample:
    """One approval -> first byte, then reject -> flow cut, on a new endpoint."""

    links_before: int
    approve_call_ms: float | None = None
    first_byte_ms: float | None = None
    reject_call_ms: float | None = None
    cut_ms: float | None = None
    cut_by: str = ""
    flow_requests_before_cut: int = 0
    error: str | None = None


@dataclass
class Scale:
    server: RunningServer
    sizes: Sizes
    tmp: Path
    results: dict[str, Any]
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = Api(self.server.creds)
        self.proc = self.server.proc  # replaced by the restart of step 4
        s = self.sizes
        self.psubs = [str(uuid.uuid4()) for _ in range(s.provider_subs)]
        self.csubs = [str(uuid.uuid4()) for _ in range(s.consumer_subs)]
        self.small_sub = str(uuid.uuid4())
        self.pb = [network_base(p) for p in self.psubs]
        self.cb = [network_base(c) for c in self.csubs]
        self.sb = network_base(self.small_sub)
        self.plsm = f"{self.pb[0]}/privateLinkServices/plsm"
        self.plsempty = f"{self.pb[0]}/privateLinkServices/plsempty"
        self.n_lbs = math.ceil(s.services / FRONTENDS_PER_LB)
        self.lbs_per_sub = math.ceil(self.n_lbs / s.provider_subs)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        if self.proc is not self.server.proc:  # a restarted server is ours to stop
            stop_process(self.proc, timeout=STOP_TIMEOUT)
        self.api.close()

    # --- names ------------------------------------------------------------------------------

    def service(self, j: int) -> tuple[int, str, str]:
        """(provider index, load balancer, frontend id) of service j."""
        lb = j // FRONTENDS_PER_LB
        p = lb // self.lbs_per_sub
        fe = f"{self.pb[p]}/loadBalancers/lb{lb}/frontendIPConfigurations/fe{j % FRONTENDS_PER_LB}"
        return p, f"lb{lb}", fe

    def service_id(self, j: int) -> str:
        return f"{self.pb[self.service(j)[0]]}/privateLinkServices/pls{j}"

    def vnet(self, v: int) -> tuple[str, str]:
        """(network base, VNet id) of consumer VNet v."""
        base = self.cb[v % len(self.cb)]
        return base, f"{base}/virtualNetworks/vc{v}"

    def netns_of_nic(self, nic_id: str, budget: float = 60.0) -> str:
        """The NIC's namespace, once the server made it."""
        netns = names.nic_netns(self.server.prefix, nic_id)
        deadline = time.monotonic() + budget
        while not os.path.exists(f"/run/netns/{netns}"):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"namespace of {nic_id} not made within {budget:.0f} s")
            time.sleep(0.1)
        return netns

    def links(self) -> int:
        """Approved links in the kernel: endpoint routes (one per live link, into its
        pair veth) in every hub of ours."""
        total = 0
        for netns in os.listdir("/run/netns"):
            if netns.startswith(f"{self.server.prefix}-v-"):
                out = subprocess.run(
                    ["ip", "-n", netns, "-o", "route", "show", "table", str(names.ENDPOINT_TABLE)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                ).stdout
                total += len(out.splitlines())
        return total

    def pair_veths(self) -> int:
        """Pair veths in the kernel: consumer-side ends in every hub of ours."""
        total = 0
        for netns in os.listdir("/run/netns"):
            if netns.startswith(f"{self.server.prefix}-v-"):
                out = subprocess.run(
                    ["ip", "-n", netns, "-o", "link", "show"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                ).stdout
                total += sum(1 for line in out.splitlines() if _is_link_end(line, "c"))
        return total

    # --- step 0: the small world ------------------------------------------------------------

    def build_small(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.sizes.build_budget
        api = self.api
        for base in self.pb:
            api.put_wait(
                f"{base}/virtualNetworks/vp",
                vnet_body(
                    "10.0.0.0/16",
                    {
                        "fe": ("10.0.0.0/20", False),
                        "nat": ("10.0.16.0/20", True),
                        "be": ("10.0.32.0/24", False),
                    },
                ),
                deadline,
            )
        pb = self.pb[0]
        api.put_wait(f"{pb}/loadBalancers/lbx", data_path_lb_body(pb, "lbx", 2), deadline)
        fe = f"{pb}/loadBalancers/lbx/frontendIPConfigurations/fe"
        pool = f"{pb}/loadBalancers/lbx/backendAddressPools/be0"
        be = api.put_wait(
            f"{pb}/networkInterfaces/be",
            nic_body(f"{pb}/virtualNetworks/vp/subnets/be", pool),
            deadline,
        )
        visible = [self.small_sub, *self.csubs]
        for name, i in (("plsm", 0), ("plsempty", 1)):
            body = pls_body(pb, f"{fe}{i}", self.small_sub, f"{name}.scale.example")
            body["properties"]["visibility"] = {"subscriptions": visible}
            api.put_wait(f"{pb}/privateLinkServices/{name}", body, deadline)
        sb = self.sb
        api.put_wait(
            f"{sb}/virtualNetworks/vcl",
            vnet_body("10.1.0.0/16", {"vm": ("10.1.1.0/24", False), "pe": ("10.1.2.0/24", False)}),
            deadline,
        )
        cl = api.put_wait(
            f"{sb}/networkInterfaces/cl", nic_body(f"{sb}/virtualNetworks/vcl/subnets/vm"), deadline
        )
        backend_ns = self.netns_of_nic(be["id"])
        self.client_ns = {"small": self.netns_of_nic(cl["id"])}
        self.start_backend(backend_ns, "be")
        self.results["small_world_build_s"] = round(time.monotonic() - t0, 1)

    def start_backend(self, netns: str, name: str) -> None:
        """In a backend NIC namespace of ours: the keep-alive HTTP server (BACKEND_PORT,
        steps 2-4 and the probe), the HAProxy HTTP responder (DP_BACKEND_PORT, pinned to
        PIN_CPUS[1] as in bench/dataplane.py) and an iperf3 server (step 6). Each is a
        child of ours (`ip netns exec` and taskset exec it), stopped by `close`."""
        cfg = self.tmp / f"responder-{name}.cfg"
        cfg.write_text(
            HTTP_RESPONDER.format(
                port=DP_BACKEND_PORT,
                lb_port=DP_BACKEND_PORT + 1,
                direct_port=DP_BACKEND_PORT + 2,
                haproxy_port=DP_BACKEND_PORT + 3,
                name=name,
            )
        )
        pin = ["taskset", "-c", str(PIN_CPUS[1])] if PIN_CPUS else []
        for what, argv in (
            ("http", [sys.executable, "-c", BACKEND_SERVER, str(BACKEND_PORT)]),
            ("responder", [*pin, "haproxy", "-db", "-f", str(cfg)]),
            ("iperf3", ["iperf3", "-s", "-p", str(IPERF_PORT)]),
        ):
            with (self.tmp / f"{name}-{what}.log").open("ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        ["ip", "netns", "exec", netns, *argv],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    # --- steps 2 and 3 ----------------------------------------------------------------------

    def new_pending(self, base: str, subnet: str, name: str) -> tuple[str, str]:
        """A pending endpoint on `plsm`: (its IP, the service's connection name)."""
        deadline = time.monotonic() + 120
        # A manual connection: an automatic one from a caller allowed to approve on the
        # service (the tenant admin here) would be approved at once, as in Azure.
        pe = self.api.put_wait(
            f"{base}/privateEndpoints/{name}", manual_pe_body(subnet, self.plsm), deadline
        )
        nic = self.api.get(pe["properties"]["networkInterfaces"][0]["id"])
        ip_addr = nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
        for page in self.api.pages(f"{self.plsm}/privateEndpointConnections"):
            for conn in page:
                if conn["properties"]["privateEndpoint"]["id"].lower() == pe["id"].lower():
                    status = conn["properties"]["privateLinkServiceConnectionState"]["status"]
                    if status != "Pending":
                        raise RuntimeError(f"{name}: connection {status}, expected Pending")
                    return ip_addr, conn["name"]
        raise RuntimeError(f"no connection of {name} on plsm")

    def sample(self, world: str, base: str, subnet: str, name: str, cut: bool) -> Sample:
        """Approve a new pending endpoint while a client polls it; then (with `cut`)
        reject it under a keep-alive flow. The world's link count is unchanged after."""
        ip_addr, conn = self.new_pending(base, subnet, name)
        netns = self.client_ns[world]
        out = Sample(links_before=self.links())
        stop, polled = threading.Event(), {}

        def poller() -> None:
            try:
                polled.update(
                    privileged.in_netns(
                        netns, lambda: poll_first_byte(ip_addr, HTTP_PORT, stop, 30.0)
                    )
                )
            except Exception as exc:  # reported, not raised: the sample records it
                polled["error"] = repr(exc)

        thread = threading.Thread(target=poller, daemon=True)
        thread.start()
        time.sleep(0.3)  # the poller is being refused before the approval goes out
        t0 = time.monotonic()
        try:
            out.approve_call_ms = ms(self.api.set_connection(self.plsm, conn, "Approved"))
        finally:
            thread.join(timeout=35)
            stop.set()
        if polled.get("at") is None:
            out.error = f"no first byte: {polled.get('error') or polled.get('phases', [])[-3:]}"
            return out
        out.first_byte_ms = ms(polled["at"] - t0)
        if cut:
            self.cut(out, netns, ip_addr, conn)
        return out

    def cut(self, out: Sample, netns: str, ip_addr: str, conn: str) -> None:
        """Reject the connection under a flow sending every CUT_INTERVAL; when it broke."""
        flow = Flow(netns, ip_addr, HTTP_PORT, timeout=0.5)
        run, stop = FlowRun(), threading.Event()
        try:
            flow.get()
            thread = threading.Thread(
                target=run_flow, args=(flow, CUT_INTERVAL, stop, 15.0, run), daemon=True
            )
            thread.start()
            time.sleep(0.2)
            t0 = time.monotonic()
            out.reject_call_ms = ms(self.api.set_connection(self.plsm, conn, "Rejected"))
            thread.join(timeout=16)
        finally:
            stop.set()
            flow.close()
        out.flow_requests_before_cut = run.ok
        if run.failed_at is None:
            out.error = "the flow was not cut within 15 s"
        else:
            out.cut_ms, out.cut_by = ms(run.failed_at - t0), run.failure

    def samples(self, world: str, base: str, subnet: str, prefix: str) -> dict[str, Any]:
        """`samples` approvals and rejects in one world (bounded: 5 min)."""
        deadline = time.monotonic() + 300
        got: list[Sample] = []
        for k in range(self.sizes.samples):
            if time.monotonic() >= deadline:
                break
            item = self.sample(world, base, subnet, f"{prefix}{k}", cut=True)
            log(f"{world} world sample {k}: {item}")
            got.append(item)
        afb = [x.first_byte_ms / 1000 for x in got if x.first_byte_ms is not None]
        cuts = [x.cut_ms / 1000 for x in got if x.cut_ms is not None]
        return {
            "approval_to_first_byte": summary(afb),
            "reject_to_cut": summary(cuts),
            "approve_call": summary([x.approve_call_ms / 1000 for x in got if x.approve_call_ms]),
            "reject_call": summary([x.reject_call_ms / 1000 for x in got if x.reject_call_ms]),
            "samples": [asdict(x) for x in got],
        }

    def small_samples(self) -> None:
        sb = self.sb
        subnet = f"{sb}/virtualNetworks/vcl/subnets/pe"
        # Warm-up (not counted): the backend's probe must see it up before anything answers.
        warm = self.sample("small", sb, subnet, "w0", cut=False)
        if warm.first_byte_ms is None:
            raise RuntimeError(f"the backend does not answer through plsm: {warm.error}")
        self.results["warmup_first_byte_ms"] = warm.first_byte_ms
        self.reject_approved()  # back to no link, without measuring
        self.results["small"] = self.samples("small", sb, subnet, "s")

    def reject_approved(self) -> None:
        """Reject every approved connection of `plsm`."""
        for page in self.api.pages(f"{self.plsm}/privateEndpointConnections"):
            for conn in page:
                state = conn["properties"]["privateLinkServiceConnectionState"]["status"]
                if state == "Approved":
                    self.api.set_connection(self.plsm, conn["name"], "Rejected")

    # --- step 1: the big world --------------------------------------------------------------

    def build_big(self) -> None:
        s, api = self.sizes, self.api
        t0 = time.monotonic()
        deadline = t0 + s.build_budget
        failures = run_parallel(
            s.workers,
            list(range(self.n_lbs)),
            lambda lb: api.put_wait(
                f"{self.pb[lb // self.lbs_per_sub]}/loadBalancers/lb{lb}",
                # lb0's fe0 is pls0's: step 6's rules there, the others as they were.
                (data_path_lb_body if lb == 0 else lb_body)(
                    self.pb[lb // self.lbs_per_sub], f"lb{lb}", FRONTENDS_PER_LB
                ),
                deadline,
            ),
            deadline,
        )

        def service(j: int) -> None:
            p, _, fe = self.service(j)
            body = pls_body(self.pb[p], fe, self.csubs[0], f"s{j}.scale.example")
            body["properties"]["visibility"] = {"subscriptions": self.csubs}
            body["properties"]["autoApproval"] = {"subscriptions": self.csubs}
            api.put_wait(self.service_id(j), body, deadline)

        failures += run_parallel(s.workers, list(range(s.services)), service, deadline)
        # Step 6's backend: pls0's only backend, a copy of the small world's `be`.
        p0, lb0, _ = self.service(0)
        pb0 = self.pb[p0]
        bb = api.put_wait(
            f"{pb0}/networkInterfaces/bb",
            nic_body(
                f"{pb0}/virtualNetworks/vp/subnets/be",
                f"{pb0}/loadBalancers/{lb0}/backendAddressPools/be0",
            ),
            deadline,
        )
        self.start_backend(self.netns_of_nic(bb["id"]), "bb")
        for v in range(s.consumer_vnets):
            base, vnet_id = self.vnet(v)
            space = f"10.{64 + v}.0.0"
            subnets = {"pe": (f"10.{64 + v}.0.0/22", False), "vm": (f"10.{64 + v}.8.0/24", False)}
            api.put_wait(vnet_id, vnet_body(f"{space}/16", subnets), deadline)
        base, vnet_id = self.vnet(0)
        cb = api.put_wait(
            f"{base}/networkInterfaces/cb", nic_body(f"{vnet_id}/subnets/vm"), deadline
        )
        self.client_ns["big"] = self.netns_of_nic(cb["id"])
        if failures:
            raise RuntimeError(f"building the big world: {failures[:5]}")
        self.results["big_world_build"] = {
            "backend_nics": 2,
            "load_balancers": self.n_lbs + 1,
            "services": s.services + 2,
            "consumer_vnets": s.consumer_vnets + 1,
            "consumer_subscriptions": s.consumer_subs + 1,
            "provider_subscriptions": s.provider_subs,
            "seconds": round(time.monotonic() - t0, 1),
        }

    def assignments(self) -> list[int]:
        """Service of each endpoint: `big` on pls0, the rest round-robin, shuffled (fixed
        seed) so that pls0's endpoints are spread over the whole creation."""
        s = self.sizes
        rest = s.endpoints - s.big
        out = [0] * s.big + [1 + k % (s.services - 1) for k in range(rest)]
        random.Random(12).shuffle(out)
        return out

    def create_endpoints(self) -> None:
        """Step 1: N endpoints, `workers` in flight, each followed until Succeeded."""
        s, api = self.sizes, self.api
        target = self.assignments()
        deadline = time.monotonic() + s.create_budget
        bounds = [math.ceil(k * s.endpoints / 10) for k in range(11)]
        lock = threading.Lock()
        done: list[tuple[float, float, float]] = []  # (monotonic done, total s, PUT s)
        marks: list[dict[str, Any]] = []  # server CPU and RSS as each tenth completes
        timeline: list[tuple[float, int, float | None]] = []
        stop = threading.Event()
        t_start = time.monotonic()

        def mark(t: float) -> None:
            marks.append(
                {"t": t, "n": len(done), "cpu": process_cpu(self.pid), "rss": rss_mb(self.pid)}
            )

        def create(i: int) -> None:
            v = i % s.consumer_vnets
            base, vnet_id = self.vnet(v)
            body = pe_body(f"{vnet_id}/subnets/pe", self.service_id(target[i]))
            got = api.put_wait(f"{base}/privateEndpoints/e{i}", body, deadline)
            conns = got["properties"].get("privateLinkServiceConnections") or [{}]
            status = conns[0].get("properties", {}).get("privateLinkServiceConnectionState", {})
            if status.get("status") != "Approved":
                raise RuntimeError(f"e{i}: connection {status.get('status')}, not auto-approved")
            with lock:
                done.append((time.monotonic(), got["_s"], got["_put_s"]))
                if len(done) in bounds:
                    mark(time.monotonic())

        def sampler() -> None:  # RSS and progress every second (the curve)
            while not stop.wait(1.0):
                timeline.append((round(time.monotonic() - t_start, 1), len(done), rss_mb(self.pid)))

        mark(t_start)
        watcher = threading.Thread(target=sampler, daemon=True)
        watcher.start()
        try:
            failures = run_parallel(s.workers, list(range(s.endpoints)), create, deadline)
        finally:
            stop.set()
            watcher.join(timeout=5)
        wall = time.monotonic() - t_start
        tenths: list[dict[str, Any]] = []
        for a, b in itertools.pairwise(marks):
            n = b["n"] - a["n"]
            if n <= 0 or b["t"] <= a["t"]:
                continue
            span = [d for d in done[a["n"] : b["n"]]]
            tenths.append(
                {
                    "endpoints": n,
                    "per_s": round(n / (b["t"] - a["t"]), 2),
                    "server_cpu_ms_per_endpoint": round((b["cpu"] - a["cpu"]) / n * 1000, 1),
                    "put_to_succeeded_ms_mean": round(sum(x[1] for x in span) / n * 1000, 1),
                    "rss_mb_at_end": b["rss"],
                }
            )
        rss = [r for _, _, r in timeline if r is not None] + [
            m["rss"] for m in marks if m["rss"] is not None
        ]
        first, last = (tenths[0], tenths[-1]) if len(tenths) == 10 else ({}, {})
        self.results["1_create"] = {
            "requested": s.endpoints,
            "succeeded": len(done),
            "failures": failures[:10],
            "failure_count": len(failures),
            "workers": s.workers,
            "wall_s": round(wall, 1),
            "per_s_overall": round(len(done) / wall, 2) if wall else None,
            "put_to_succeeded": summary([x[1] for x in done]),
            "put_call": summary([x[2] for x in done]),
            "tenths": tenths,
            "last_over_first_rate": round(last["per_s"] / first["per_s"], 2) if first else None,
            "last_over_first_cpu": round(
                last["server_cpu_ms_per_endpoint"] / first["server_cpu_ms_per_endpoint"], 2
            )
            if first and first["server_cpu_ms_per_endpoint"]
            else None,
            "rss_mb_start": marks[0]["rss"],
            "rss_mb_max": max(rss) if rss else None,
            "timeline_s_endpoints_rss_mb": timeline[:: max(1, len(timeline) // 100)],
            "links_in_kernel": self.links(),
            "pair_veths_in_kernel": self.pair_veths(),
        }
        log(f"created {len(done)}/{s.endpoints} endpoints in {wall:.0f} s: {tenths}")

    def big_samples(self) -> None:
        self.results["idle_before_big_samples"] = wait_process_idle(self.pid, 300)
        base, vnet_id = self.vnet(0)
        self.results["big"] = self.samples("big", base, f"{vnet_id}/subnets/pe", "b")

    # --- step 6: the data path ----------------------------------------------------------------

    def small_data_path(self) -> None:
        """Step 6 with 1 link: a new endpoint on `plsm` from `vcl`, rejected after."""
        sb = self.sb
        got = self.sample("small", sb, f"{sb}/virtualNetworks/vcl/subnets/pe", "d0", cut=False)
        if got.first_byte_ms is None:
            raise RuntimeError(f"d0 does not answer: {got.error}")
        ip_addr = self._endpoint_ip(f"{sb}/privateEndpoints/d0")
        target = Target(self.client_ns["small"], (ip_addr, DP_HTTP_PORT), (ip_addr, IPERF_PORT))
        try:
            small = self.data_path(target, "be", "d0 on plsm from vcl")
        finally:
            self.reject_approved()
        self.results["6_data_path"] = {
            "rounds": DP_ROUNDS,
            "seconds": DP_SECONDS,
            "wrk_connections": DP_CONNECTIONS,
            "pinned_cpus": {"wrk": PIN_CPUS[0], "responder": PIN_CPUS[1]} if PIN_CPUS else None,
            "small": small,
        }

    def big_data_path(self) -> None:
        """Step 6 with all links: an auto-approved endpoint of step 1 on pls0 from `vc0`."""
        base, _ = self.vnet(0)
        v = self.sizes.consumer_vnets
        chosen = None
        for i in [i for i, j in enumerate(self.assignments()) if j == 0 and i % v == 0][:20]:
            r = self.api.request("GET", f"{base}/privateEndpoints/e{i}")
            if r.status_code != 200:
                continue
            props = r.json()["properties"]
            conns = props.get("privateLinkServiceConnections") or [{}]
            state = conns[0].get("properties", {}).get("privateLinkServiceConnectionState", {})
            if props.get("provisioningState") == "Succeeded" and state.get("status") == "Approved":
                chosen = f"e{i}"
                break
        if chosen is None:
            raise RuntimeError("no approved endpoint of pls0 in vc0")
        ip_addr = self._endpoint_ip(f"{base}/privateEndpoints/{chosen}")
        target = Target(self.client_ns["big"], (ip_addr, DP_HTTP_PORT), (ip_addr, IPERF_PORT))
        out = self.results.setdefault("6_data_path", {})
        out["big"] = self.data_path(target, "bb", f"{chosen} on pls0 from vc0")
        out["big_over_small"] = data_path_ratios(self.results)

    def data_path(self, target: Target, backend: str, endpoint: str) -> dict[str, Any]:
        """DP_ROUNDS rounds of iperf3 (1 stream) and wrk through one approved link, once
        it answers from `backend`, with the server idle; per round and medians."""
        for key, value in CLIENT_SYSCTLS.items():  # as bench/dataplane.py's clients
            must(netns_run(target.client_ns, ["sysctl", "-q", "-w", f"{key}={value}"]), key)
        reached = ""
        deadline = time.monotonic() + 60  # the backend's probe must pass first
        for _ in range(200):
            reached = http_get(target.client_ns, *target.http)
            if reached.startswith(f"{backend} ") or time.monotonic() >= deadline:
                break
            time.sleep(0.3)
        if not reached.startswith(f"{backend} "):
            raise RuntimeError(f"{endpoint} port {DP_HTTP_PORT} answered {reached!r}")
        out: dict[str, Any] = {
            "endpoint": endpoint,
            "endpoint_ip": target.http[0],
            "reached": reached,  # "<backend> <source address it saw>"
            "links": self.links(),
            "idle_before": wait_process_idle(self.pid, 300),
        }
        rounds: list[dict[str, Any]] = []
        deadline = time.monotonic() + DP_BUDGET
        for r in range(DP_ROUNDS):
            if time.monotonic() >= deadline:
                break
            c0, t0 = process_cpu(self.pid), time.monotonic()
            run: dict[str, Any] = {"round": r, "loadavg": os.getloadavg()[0]}
            run["iperf_p1"] = iperf(target, 1, DP_SECONDS)
            run["wrk"] = wrk(target, DP_SECONDS, DP_CONNECTIONS)
            run["server_cores"] = round((process_cpu(self.pid) - c0) / (time.monotonic() - t0), 3)
            log(f"data path {endpoint} round {r}: {run}")
            rounds.append(run)
        gbps = [x["iperf_p1"]["gbps"] for x in rounds if "gbps" in x["iperf_p1"]]
        cps = [x["wrk"]["conn_per_s"] for x in rounds if "conn_per_s" in x["wrk"]]
        out.update(
            iperf_p1_gbps=gbps,
            conn_per_s=cps,
            iperf_p1_gbps_median=median(gbps),
            conn_per_s_median=median(cps),
            wrk_errors=sum(x["wrk"].get("errors", 0) for x in rounds),
            rounds=rounds,
        )
        return out

    # --- step 5 -----------------------------------------------------------------------------

    def api_with_many(self) -> None:
        """GET of pls0 vs plsempty, and paged lists long vs short, alternated in blocks."""
        meter = Meter(self.pid)
        many_id = self.service_id(0)
        consumer_list = (
            f"/subscriptions/{self.csubs[0]}/providers/Microsoft.Network/privateEndpoints"
        )
        small_list = f"/subscriptions/{self.small_sub}/providers/Microsoft.Network/privateEndpoints"
        pairs = {
            "get_service": (many_id, self.plsempty),
            "list_connections": (
                f"{many_id}/privateEndpointConnections",
                f"{self.plsempty}/privateEndpointConnections",
            ),
            "list_endpoints": (consumer_list, small_list),
            # Both full pages of the same list: does a page cost more deep in a long list?
            "list_endpoints_last_vs_first_page": (self.last_page(consumer_list), consumer_list),
        }
        out: dict[str, Any] = {}
        for kind, (many, few) in pairs.items():
            phases = {"many": Phase(f"{kind}_many"), "few": Phase(f"{kind}_few")}
            durations: dict[str, list[float]] = {"many": [], "few": []}
            shape = {}
            for side, path in (("many", many), ("few", few)):
                pages = self.api.pages(path)  # warm and count
                shape[side] = {
                    "pages": len(pages),
                    "items": sum(len(p) for p in pages),
                    "bytes": len(self.api.request("GET", path).content),
                }
                if kind == "get_service":
                    conns = self.api.get(path)["properties"].get("privateEndpointConnections", [])
                    shape[side] = {"connections": len(conns), "bytes": shape[side]["bytes"]}
            rounds = 10
            per_block = max(1, self.sizes.gets // rounds)
            for r in range(rounds):
                order = ("many", "few") if r % 2 == 0 else ("few", "many")
                for side in order:
                    path = many if side == "many" else few

                    def op(i: int, path: str = path) -> None:  # a list: its first page
                        self.api.get(path)

                    with meter.more(phases[side]):
                        durations[side] += bounded(phases[side], per_block, 30.0, op)
            m = {side: median(d) for side, d in durations.items()}
            out[kind] = {
                "paths": {"many": many, "few": few},
                "shape": shape,
                "many": {**summary(durations["many"]), **phases["many"].as_dict()},
                "few": {**summary(durations["few"]), **phases["few"].as_dict()},
                "p50_ratio": round(m["many"] / m["few"], 2) if m["many"] and m["few"] else None,
            }
        self.results["5_api"] = out

    def last_page(self, path: str, limit: int = 200) -> str:
        """The URL of a list's last page (its nextLink chain followed, bounded)."""
        url = path
        for _ in range(limit):
            following = self.api.get(url).get("nextLink")
            if not following:
                break
            url = following
        return url

    def sdk_spot_check(self) -> None:
        """The same service and endpoint through azure-mgmt-network as through httpx."""
        c = self.server.creds
        out: dict[str, Any] = {}
        p = self.service(0)[0]
        base, _ = self.vnet(0)  # e0 is in vc0
        clients = {
            "provider": NetworkManagementClient(
                self.api.bearer.credential,
                self.psubs[p],
                base_url=c["url"],
                connection_verify=c["ca_file"],
                retry_total=0,
            ),
            "consumer": NetworkManagementClient(
                self.api.bearer.credential,
                self.csubs[0],
                base_url=c["url"],
                connection_verify=c["ca_file"],
                retry_total=0,
            ),
        }
        try:
            t0 = time.monotonic()
            pls = clients["provider"].private_link_services.get(RG, "pls0")
            t1 = time.monotonic()
            pe = clients["consumer"].private_endpoints.get(RG, "e0")
            t2 = time.monotonic()
        finally:
            for client in clients.values():
                client.close()
        raw_pls = self.api.get(self.service_id(0))
        raw_pe = self.api.get(f"{base}/privateEndpoints/e0")
        conn = pe.private_link_service_connections[0].private_link_service_connection_state
        out = {
            "pls0_connections_sdk": len(pls.private_endpoint_connections or []),
            "pls0_connections_raw": len(
                raw_pls["properties"].get("privateEndpointConnections", [])
            ),
            "pls0_state": pls.provisioning_state,
            "pls0_get_ms": ms(t1 - t0),
            "endpoint": "e0",
            "endpoint_state": pe.provisioning_state,
            "endpoint_status": conn.status,
            "endpoint_etag_matches_raw": pe.etag == raw_pe.get("etag"),
            "endpoint_get_ms": ms(t2 - t1),
        }
        out["ok"] = (
            out["pls0_connections_sdk"] == out["pls0_connections_raw"]
            and out["pls0_state"] == "Succeeded"
            and out["endpoint_state"] == "Succeeded"
            and out["endpoint_status"] == "Approved"
        )
        self.results["sdk_spot_check"] = out

    # --- step 4 -----------------------------------------------------------------------------

    def restart(self) -> None:
        """SIGTERM the server with a flow through `keep`, start it again, time the resync."""
        base, vnet_id = self.vnet(0)
        sample = self.sample("big", base, f"{vnet_id}/subnets/pe", "keep", cut=False)
        if sample.first_byte_ms is None:
            raise RuntimeError(f"keep does not answer: {sample.error}")
        ip_addr = self._endpoint_ip(f"{base}/privateEndpoints/keep")
        out: dict[str, Any] = {"links_before": self.links()}
        out["idle_before"] = wait_process_idle(self.pid, 300)
        flow = Flow(self.client_ns["big"], ip_addr, HTTP_PORT, timeout=2.0)
        run, stop = FlowRun(), threading.Event()
        budget = self.sizes.resync_budget + STOP_TIMEOUT + 120
        thread = threading.Thread(
            target=run_flow, args=(flow, KEEP_INTERVAL, stop, budget, run), daemon=True
        )
        index = self.server.data_dir / "dataplane.json"
        port = int(self.server.creds["url"].rsplit(":", 1)[1])
        try:
            flow.get()
            thread.start()
            time.sleep(1.0)
            t_term = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                out["exit_code"] = self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out["exit_code"] = f"killed after {STOP_TIMEOUT:.0f} s"
                self.proc.wait(timeout=10)
            out["stop_s"] = round(time.monotonic() - t_term, 2)
            launched_wall, launched = time.time(), time.monotonic()
            with (self.tmp / "server.log").open("ab") as log_file:
                self.proc = subprocess.Popen(
                    server_command(self.server.data_dir, port, self.server.prefix),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            wait_ready(self.proc, self.server.data_dir, port)
            out["api_ready_s"] = round(time.monotonic() - launched, 2)
            deadline = launched + self.sizes.resync_budget
            synced_at = None
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if index.stat().st_mtime > launched_wall:
                        synced_at = index.stat().st_mtime
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            out["first_sync_s"] = round(synced_at - launched_wall, 2) if synced_at else None
            out["server_cpu_s_to_first_sync"] = round(process_cpu(self.pid), 1)
            time.sleep(2.0)  # the flow goes on after the sync
        finally:
            stop.set()
            thread.join(timeout=10)
        try:
            flow.get()
            out["flow_after"] = "ok"
        except OSError as exc:
            out["flow_after"] = f"{type(exc).__name__}: {exc}"[:120]
        finally:
            flow.close()
        out.update(
            flow_requests=run.ok,
            flow_failure=run.failure or None,
            flow_max_gap_ms=ms(run.max_gap),
            flow_survived=run.failed_at is None and out["flow_after"] == "ok",
            links_after=self.links(),
        )
        self.results["4_restart"] = out
        log(f"restart: {out}")

    def _endpoint_ip(self, pe_path: str) -> str:
        pe = self.api.get(pe_path)
        nic = self.api.get(pe["properties"]["networkInterfaces"][0]["id"])
        return str(nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"])


def data_path_lb_body(base: str, lb: str, frontends: int) -> dict[str, Any]:
    """`lb_body` plus step 6's TCP rules on fe0 (pool be0, the same probe): DP_HTTP_PORT
    -> DP_BACKEND_PORT and IPERF_PORT -> IPERF_PORT; a private link service forwards
    every TCP rule of its frontend."""
    body = lb_body(base, lb, frontends)
    lb_id = f"{base}/loadBalancers/{lb}"
    for name, port, backend_port in (
        ("dp-http", DP_HTTP_PORT, DP_BACKEND_PORT),
        ("dp-iperf", IPERF_PORT, IPERF_PORT),
    ):
        body["properties"]["loadBalancingRules"].append(
            {
                "name": name,
                "properties": {
                    "protocol": "Tcp",
                    "frontendPort": port,
                    "backendPort": backend_port,
                    "frontendIPConfiguration": {"id": f"{lb_id}/frontendIPConfigurations/fe0"},
                    "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/be0"},
                    "probe": {"id": f"{lb_id}/probes/p"},
                },
            }
        )
    return body


def _is_link_end(line: str, side: str) -> bool:
    """Whether an `ip -o link` line is a pair veth's end (`k<pair slot><side>@...`)."""
    name = line.split(": ", 2)[1].split("@", 1)[0] if line.count(": ") >= 2 else ""
    return len(name) > 2 and name[0] == "k" and name[-1] == side and name[1:-1].isdigit()


# --- report -----------------------------------------------------------------------------------


def data_path_ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """Step 6's medians, big world over small world."""
    dp = r.get("6_data_path", {})
    out: dict[str, float | None] = {}
    for key in ("iperf_p1_gbps_median", "conn_per_s_median"):
        a, b = dp.get("small", {}).get(key), dp.get("big", {}).get(key)
        out[key.removesuffix("_median")] = round(b / a, 3) if a and b else None
    return out


def targets(r: dict[str, Any], sizes: Sizes) -> dict[str, dict[str, Any]]:
    """Each issue target: the figure, the target and whether this run meets it."""

    def p50(world: str, what: str) -> float | None:
        got = r.get(world, {}).get(what, {})
        return got.get("p50_ms") if isinstance(got, dict) else None

    create = r.get("1_create", {})
    big_afb, small_afb = (
        p50("big", "approval_to_first_byte"),
        p50("small", "approval_to_first_byte"),
    )
    api = r.get("5_api", {})
    restart = r.get("4_restart", {})
    scale_note = f"at {sizes.endpoints} endpoints (target stated for 10,000)"
    dp = data_path_ratios(r)
    rows: dict[str, dict[str, Any]] = {
        "create_last_over_first_rate": {
            "value": create.get("last_over_first_rate"),
            "target": ">= 0.8",
            "met": _at_least(create.get("last_over_first_rate"), 0.8),
        },
        "server_rss_mb_max": {
            "value": create.get("rss_mb_max"),
            "target": "<= 300 " + scale_note,
            "met": _at_most(create.get("rss_mb_max"), 300),
        },
        "approval_first_byte_p50_ms": {
            "value": big_afb,
            "target": "<= 100",
            "met": _at_most(big_afb, 100),
        },
        "approval_first_byte_p50_vs_single_link": {
            "value": round(big_afb / small_afb, 2) if big_afb and small_afb else None,
            "target": "<= 1.2",
            "met": _at_most(big_afb / small_afb if big_afb and small_afb else None, 1.2),
        },
        "reject_cut_p50_ms": {
            "value": p50("big", "reject_to_cut"),
            "target": "<= 100",
            "met": _at_most(p50("big", "reject_to_cut"), 100),
        },
        "full_resync_s": {
            "value": restart.get("first_sync_s"),
            "target": "<= 30 " + scale_note,
            "met": _at_most(restart.get("first_sync_s"), 30),
        },
        "flow_survives_restart": {
            "value": restart.get("flow_survived"),
            "target": "true",
            "met": restart.get("flow_survived"),
        },
        "data_path_throughput_ratio": {
            "value": dp["iperf_p1_gbps"],
            "target": ">= 0.95 " + scale_note,
            "met": _at_least(dp["iperf_p1_gbps"], 0.95),
        },
        "data_path_conn_per_s_ratio": {
            "value": dp["conn_per_s"],
            "target": ">= 0.95 " + scale_note,
            "met": _at_least(dp["conn_per_s"], 0.95),
        },
    }
    for kind, got in api.items():
        ratio = got.get("p50_ratio")
        rows[f"api_{kind}_many_over_few"] = {
            "value": ratio,
            "target": "<= 2",
            "met": _at_most(ratio, 2),
        }
    return rows


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def markdown(r: dict[str, Any]) -> str:
    """The figures as Markdown tables (what docs/benchmarks.md shows)."""
    lines = ["| tenth | endpoints/s | server CPU ms / endpoint | PUT->Succeeded mean ms | RSS MB |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for k, t in enumerate(r.get("1_create", {}).get("tenths", [])):
        lines.append(
            f"| {k + 1} | {t['per_s']} | {t['server_cpu_ms_per_endpoint']} | "
            f"{t['put_to_succeeded_ms_mean']} | {t['rss_mb_at_end']} |"
        )
    lines += [
        "",
        "| measure | small world (1 link) | big world | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for what in ("approval_to_first_byte", "reject_to_cut", "approve_call", "reject_call"):
        a = r.get("small", {}).get(what, {}).get("p50_ms")
        b = r.get("big", {}).get(what, {}).get("p50_ms")
        ratio = round(b / a, 2) if a and b else None
        lines.append(f"| {what} p50 ms | {a} | {b} | {ratio} |")
    dp = r.get("6_data_path", {})
    small, big, ratios = dp.get("small", {}), dp.get("big", {}), data_path_ratios(r)
    lines += [
        "",
        f"| data path (median of {dp.get('rounds')} rounds) | small world "
        f"({small.get('links')} link) | big world ({big.get('links')} links) | big/small |",
        "| --- | --- | --- | --- |",
    ]
    for what, key in (
        ("iperf3 1 stream Gbit/s", "iperf_p1_gbps"),
        ("wrk new connections/s", "conn_per_s"),
    ):
        lines.append(
            f"| {what} | {small.get(key + '_median')} | {big.get(key + '_median')} | "
            f"{ratios[key]} |"
        )
    lines += ["", "| API (p50 ms) | many | few | ratio |", "| --- | --- | --- | --- |"]
    for kind, got in r.get("5_api", {}).items():
        lines.append(
            f"| {kind} ({got['shape']['many']} vs {got['shape']['few']}) | "
            f"{got['many'].get('p50_ms')} | {got['few'].get('p50_ms')} | {got['p50_ratio']} |"
        )
    lines += ["", "| target | value | target | met |", "| --- | --- | --- | --- |"]
    for name, t in r.get("targets", {}).items():
        lines.append(f"| {name} | {t['value']} | {t['target']} | {t['met']} |")
    return "\n".join(lines)


def store(results: dict[str, Any]) -> None:
    """Write the run into JSON_OUT under its mode ("quick", "full", "...-custom"),
    keeping the other modes' last runs."""
    try:
        runs = json.loads(JSON_OUT.read_text())
    except (OSError, ValueError):
        runs = {}
    if not isinstance(runs, dict) or "benchmark" in runs:
        runs = {}
    runs[results["mode"]] = results
    JSON_OUT.write_text(json.dumps(runs, indent=1, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000 endpoints, 100 services")
    parser.add_argument("--workers", type=int, default=None, help="PUTs in flight (8)")
    parser.add_argument("--endpoints", type=int, default=None, help="endpoints of step 1")
    parser.add_argument("--write", action="store_true", help=f"write {JSON_OUT.name}")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.workers is not None:
        sizes = Sizes(**{**asdict(sizes), "workers": max(1, min(args.workers, 32))})
    if args.endpoints is not None:
        n = max(sizes.consumer_vnets * 10, min(args.endpoints, sizes.consumer_vnets * 1000))
        sizes = Sizes(**{**asdict(sizes), "endpoints": n, "big": min(sizes.big, n // 4)})
    require_root_and_tools(parser, TOOLS)

    sweep_on_signals()
    prefix = unique_prefix("bsc")
    tmp = Path(tempfile.mkdtemp(prefix="pl-scale-"))
    results: dict[str, Any] = {
        "benchmark": "scale",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python bench/scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "mode": ("quick" if args.quick else "full")
        + ("-custom" if args.workers is not None or args.endpoints is not None else ""),
        "machine": machine(),
        "source": source_version(),
        "sizes": asdict(sizes),
        "netns_prefix": prefix,
        "loadavg_at_start": os.getloadavg()[0],
        "not_measured": NOT_MEASURED,
    }
    log(f"netns prefix {prefix}, temp dir {tmp}")

    def checkpoint(stage: str, complete: bool = False) -> None:
        results["stage"], results["complete"] = stage, complete
        results["targets"] = targets(results, sizes)
        if args.write:
            store(results)

    code = 0
    sweep(prefix)
    try:
        with serve(tmp, prefix) as server:
            bench = Scale(server, sizes, tmp, results)
            try:
                steps: list[tuple[str, Callable[[], None]]] = [
                    ("small world", bench.build_small),
                    ("small-world samples", bench.small_samples),
                    ("6 data path, small world", bench.small_data_path),
                    ("big world", bench.build_big),
                    ("1 create endpoints", bench.create_endpoints),
                    ("sdk spot check", bench.sdk_spot_check),
                    ("5 api", bench.api_with_many),
                    ("2+3 big-world samples", bench.big_samples),
                    ("6 data path, big world", bench.big_data_path),
                    ("4 restart", bench.restart),
                ]
                for stage, step in steps:
                    log(f"step: {stage}")
                    try:
                        step()
                    except Exception as exc:  # recorded; the rest depends on this step
                        log(f"step {stage} failed: {traceback.format_exc()}")
                        results["error"] = f"{stage}: {exc!r}"[:1000]
                        code = 1
                        break
                    results.setdefault("loadavg_after", {})[stage] = os.getloadavg()[0]
                    checkpoint(stage)
            finally:
                bench.close()
        text = (tmp / "server.log").read_text(errors="replace").splitlines()
        bad = [line for line in text if "sync failed" in line or "Traceback" in line]
        results["server_log"] = {"sync_failures": len(bad), "first": bad[:5]}
    except KeyboardInterrupt:
        log("interrupted")
        results["interrupted"] = True
        code = 130
    finally:
        sweep(prefix)
        left = [n for n in os.listdir("/run/netns") if n.startswith(f"{prefix}-")]
        results["namespaces_left"] = left
        shutil.rmtree(tmp, ignore_errors=True)
    results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    checkpoint(results.get("stage", "start"), complete=code == 0)
    if args.write:
        log(f"wrote {JSON_OUT}")
    print(markdown(results))
    for name, why in NOT_MEASURED.items():
        print(f"{name}: {why}")
    return code


if __name__ == "__main__":
    sys.exit(main())
