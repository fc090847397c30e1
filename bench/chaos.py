"""Chaos benchmark: traffic through private endpoints while the server and the kernel
state are broken at random moments; the invariants are checked after every round.

Not a test: it runs for minutes and reports figures (rounds, faults, violations, time to
converge). It starts its own `privatelink serve --dataplane on` with a unique namespace
prefix (`bch` + 3 random characters) and builds, with the Azure SDK:

    provider  VNet vp 10.0.0.0/16: a Standard LB (frontend in fe, rule 80 -> 8080, TCP
              probe on 8080), a backend NIC `be` in its pool running a tiny HTTP
              "whoami" server (answers `whoami be`) in its namespace, and a private link
              service `pls` (visible to the consumer, auto-approved for nobody);
    consumer  VNet vc 10.1.0.0/16: a client NIC `client` and K private endpoints
              pe0..pe{K-1} to the service (manual connections), initially Approved,
              Pending and Rejected in turn.

Traffic: a background thread in the client NIC's namespace sends, every 0.25 s, one
short HTTP GET (1 s timeout) to every endpoint IP and records each sweep (per endpoint:
answered by the backend or not, and how it failed).

Each round: 1-2 distinct random faults, at random moments within ~2 s, while 1-2 writes
go on concurrently:

    kill9          kill -9 the server, restart it after 0.5-2.5 s (same data dir, port);
    sigterm        SIGTERM (graceful), wait for it to exit, restart it;
    netns-del-hub  `ip netns del` of the consumer or the provider hub;
    netns-del-vm   `ip netns del` of the client or the backend NIC's namespace (a VM
                   "crash": the bench restarts its own whoami server in the new
                   namespace once the server has made it again, like a VM's service);
    nft-flush      `nft flush table ip privatelink` in a hub;
    nft-delete     `nft delete table ip privatelink` in a hub;
    veth-del       `ip link del` of one of our veths in a hub (a link end or a NIC's
                   hub end).

Writes are raw HTTPS requests (exact status codes): approve or reject a connection
(Pending -> Approved | Rejected, Approved -> Rejected), or delete a private endpoint and
create it again (a Rejected connection can only be asked for again that way). A write
answered 2xx is *acknowledged* and goes into the ledger; one whose request was never
sent (connection refused: the server is down) did not happen; one that got no answer
(server killed while it ran) may or may not have happened.

Then, from the end of fault injection, the bench waits (deadline, default 60 s) until
all of these hold together, and records the time (time to converge):

    1. approved-carries   every endpoint whose connection is Approved answers with the
                          backend's whoami through its IP;
    2. nothing-else       no Pending or Rejected endpoint answers (checked at
                          convergence and in 3 more sweeps after it: a failure there is
                          a violation even though the round had converged);
    3. no-lost-write      the API returns, for each endpoint, the state of the last
                          acknowledged write (or of a later unanswered one), and each
                          acknowledged endpoint exists / acknowledged deletion is gone;
                          the endpoint's copy of the status equals the service's;
    4. no-duplicate-ip    no two NICs (PE NICs, the service's NAT NIC, the LB frontend
                          included) of a VNet share an IP, and no leftovers in the
                          kernel: our namespaces are exactly the desired ones (two hubs,
                          two NIC namespaces) and the consumer hub's `lo` holds exactly
                          the existing endpoints' IPs.

A round that does not converge within the deadline counts one violation per invariant
still failing; 3 is checked once per round as soon as the API answers. The report also
gives the time from the last fault to convergence: an upper bound of the repair alone,
since checking starts at the end of injection (writes may run on after the last fault).

Every loop is bounded in count and time; everything runs in namespaces the server
created with the bench's prefix, which is always swept (`privatelink cleanup
--netns-prefix`), also on Ctrl-C or failure. Only processes this bench started are
signalled, by pid. Needs root, ip, nft.

Usage:
    python bench/chaos.py [--quick] [--rounds N] [--endpoints K] [--minutes M]
                          [--deadline S] [--faults kill9,sigterm,...] [--seed N] [--write]
                          [--json PATH]

`--quick`: 3 rounds, K=3 (well under 2 minutes). `--write` stores the results as JSON in
docs/benchmarks-chaos.json; `--json PATH` (also) writes them to PATH. The exit status is
1 when an invariant was violated. The default run (20 rounds, K=6) takes about 2
minutes on a 2-core VM; the rounds are short because repairs are.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from azure.mgmt.network import NetworkManagementClient
from common import (
    LOCATION,
    RG,
    ROOT,
    credential,
    free_port,
    log,
    machine,
    network_base,
    percentile,
    server_command,
    source_version,
    stop_process,
    sweep,
    sweep_on_signals,
    unique_prefix,
    vnet_body,
    wait_ready,
)

from privatelink.dataplane import names, privileged

JSON_OUT = ROOT / "docs" / "benchmarks-chaos.json"
SCOPE = "https://management.azure.com/.default"
API_VERSION = "2024-05-01"
HTTP_PORT = 80  # the LB rule's frontend port, hence the endpoints' port
BACKEND_PORT = 8080
BACKEND_NAME = "be"
WHOAMI = f"whoami {BACKEND_NAME}"
CONSUMER_SPACE = "10.1.0.0/16"

FAULTS = (
    "kill9",
    "sigterm",
    "netns-del-hub",
    "netns-del-vm",
    "nft-flush",
    "nft-delete",
    "veth-del",
)
INVARIANTS = ("approved-carries", "nothing-else", "no-lost-write", "no-duplicate-ip")

SWEEP_EVERY = 0.25  # s between the starts of two traffic sweeps
GET_TIMEOUT = 1.0  # s, each GET of a sweep
INJECT_WINDOW = 2.0  # s: faults and writes start at random moments within it
DOWN_TIME = (0.5, 2.5)  # s a killed server stays down
AFTER_SWEEPS = 3  # sweeps checked after convergence (invariant 2)
STOP_TIMEOUT = 30.0  # s a SIGTERMed server gets to exit (its drain is 10 s)
HTTP_TIMEOUT = 15.0  # s, each API request
DELETE_WAIT = 30.0  # s an acknowledged endpoint DELETE gets to finish before the re-create
MAX_SWEEPS = 20_000  # bound on the traffic loop (~80 min at SWEEP_EVERY)

# The backend's HTTP server: answers every request with "whoami <name>" and closes.
WHOAMI_SERVER = r"""
import socketserver, sys
body = ("whoami " + sys.argv[2] + "\n").encode()
class H(socketserver.StreamRequestHandler):
    timeout = 5
    def handle(self):
        while self.rfile.readline().strip():
            pass
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""


@dataclass(frozen=True)
class Settings:
    rounds: int
    endpoints: int
    minutes: float
    deadline: float
    faults: tuple[str, ...]
    seed: int


# --- the server process (killed and restarted on the same state) ------------------------------


class Server:
    """`privatelink serve` on one data dir and port, started again after each kill."""

    def __init__(self, tmp: Path, prefix: str) -> None:
        self.data_dir = tmp / "data"
        self.data_dir.mkdir(mode=0o700)
        self.port = free_port()
        self.prefix = prefix
        self.log_path = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.unexpected_exits: list[int | None] = []
        self.creds: dict[str, str] = {}

    def start(self) -> None:
        """Launch the process (returns at once; `ready()` waits for it). Never while the
        previous one runs: two servers on one data dir is not what is being tested."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"server {self.proc.pid} still runs; not starting another")
        with self.log_path.open("ab") as out:
            out.write(f"\n=== start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                server_command(self.data_dir, self.port, self.prefix),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def ready(self) -> dict[str, str]:
        assert self.proc is not None
        self.creds = wait_ready(self.proc, self.data_dir, self.port)
        return self.creds

    def kill(self, sig: int) -> int | None:
        """Send `sig` to our server process and wait for it to exit; its exit code."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"server did not exit {STOP_TIMEOUT:.0f} s after signal {sig}: SIGKILL")
            proc.kill()
            proc.wait(timeout=10)
            return None

    def ensure_running(self) -> None:
        """Start the server again if it exited by itself (recorded: that is a finding)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits.append(self.proc.returncode)
            log(f"server exited by itself with {self.proc.returncode}; starting it again")
            self.start()

    def stop(self) -> None:
        stop_process(self.proc, timeout=STOP_TIMEOUT)


# --- traffic ------------------------------------------------------------------------------------


@dataclass
class Sweep:
    """One GET to every endpoint IP, started at `start` (monotonic)."""

    start: float
    end: float = 0.0
    wall: float = field(default_factory=time.time)  # to match server and kernel logs
    # endpoint name -> (ip, outcome); outcome "ok" = the backend's whoami answered
    results: dict[str, tuple[str, str]] = field(default_factory=dict)


def get_once(sock: socket.socket, ip_addr: str) -> str:
    """One GET on a socket made in the client's namespace: "ok" or how it failed."""
    stage = "connect"  # a timeout while connecting is the path; while reading, the backend
    data = b""
    deadline = time.monotonic() + GET_TIMEOUT
    try:
        sock.settimeout(GET_TIMEOUT)
        sock.connect((ip_addr, HTTP_PORT))
        stage = "reply"
        sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        while len(data) < 4096:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return f"reset ({stage})"
    except TimeoutError:
        return f"timeout ({stage})"
    except OSError as exc:
        return f"errno {exc.errno} ({stage})"
    finally:
        sock.close()
    body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
    if body == WHOAMI:
        return "ok"
    return f"answered {body[:40]!r}" if data else "closed"


class Traffic:
    """A bounded background loop of sweeps from the client NIC's namespace."""

    def __init__(self, client_ns: str) -> None:
        self.client_ns = client_ns
        self.targets: dict[str, str] = {}  # endpoint name -> IP
        self.sweeps: list[Sweep] = []
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="get")
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def set_targets(self, targets: dict[str, str]) -> None:
        with self.cond:
            self.targets = dict(targets)

    def _run(self) -> None:
        t_end = time.monotonic() + MAX_SWEEPS * SWEEP_EVERY * 2
        for _ in range(MAX_SWEEPS):
            if self._stop.is_set() or time.monotonic() > t_end:
                return
            began = time.monotonic()
            with self.cond:
                targets = dict(self.targets)
            sweep_ = Sweep(began)
            try:
                self._sweep(sweep_, targets)
            except Exception as exc:  # recorded as a failed sweep; the loop goes on
                sweep_.results = {n: (ip_, f"sweep error {exc!r}") for n, ip_ in targets.items()}
            sweep_.end = time.monotonic()
            with self.cond:
                self.sweeps.append(sweep_)
                self.cond.notify_all()
            self._stop.wait(max(0.0, began + SWEEP_EVERY - time.monotonic()))

    def _sweep(self, sweep_: Sweep, targets: dict[str, str]) -> None:
        """One GET to each target, concurrently."""
        try:
            # Sockets keep the namespace they were made in: make them all there, then use
            # them from the pool's threads.
            socks = privileged.in_netns(
                self.client_ns,
                lambda n=len(targets): [
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)
                ],
            )
        except (OSError, privileged.KernelError):  # the VM's namespace is gone for now
            sweep_.results = {name: (ip_, "no namespace") for name, ip_ in targets.items()}
            return
        futures = {
            name: self._pool.submit(get_once, sock, ip_)
            for (name, ip_), sock in zip(targets.items(), socks, strict=True)
        }
        sweep_.results = {
            name: (targets[name], f.result(timeout=GET_TIMEOUT * 5)) for name, f in futures.items()
        }

    def next_sweep(self, after: float, timeout: float) -> Sweep | None:
        """The first sweep that started at or after `after`, once done (bounded wait)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                later = [s for s in self.sweeps[-50:] if s.start >= after]
                if later:
                    return later[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def since(self, t0: float) -> list[Sweep]:
        with self.cond:
            return [s for s in self.sweeps if s.start >= t0]


# --- the ledger of writes ------------------------------------------------------------------------

# An endpoint's state as the API shows it: (exists, connection status or None).
State = tuple[bool, str | None]
ABSENT: State = (False, None)


def apply_op(state: State, op: tuple[str, str | None]) -> State:
    """What a write does to an endpoint's state if it took effect (the server's rules)."""
    kind, status = op
    exists, current = state
    if kind == "delete":
        return ABSENT
    if kind == "create":
        return state if exists else (True, "Pending")
    if not exists:
        return state  # a status change on a missing endpoint is a 404
    allowed = {"Pending": ("Approved", "Rejected"), "Approved": ("Rejected",)}
    if status == current or status in allowed.get(current or "", ()):
        return (True, status)
    return state


@dataclass
class Endpoint:
    """One private endpoint of the consumer, as the ledger knows it."""

    name: str
    known: State  # after the last acknowledged write (or resolution)
    unanswered: list[tuple[str, str | None]] = field(default_factory=list)
    conn: str | None = None  # the service's connection name
    ip: str | None = None

    def candidates(self) -> set[State]:
        """States the API may show: the known one, with any subset of the unanswered
        writes applied in order."""
        out = {self.known}
        for op in self.unanswered:
            out |= {apply_op(s, op) for s in out}
        return out


# --- the benchmark -------------------------------------------------------------------------------


def nic_body(subnet_id: str, pool_id: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"subnet": {"id": subnet_id}}
    if pool_id:
        props["loadBalancerBackendAddressPools"] = [{"id": pool_id}]
    return {
        "location": LOCATION,
        "properties": {"ipConfigurations": [{"name": "ip", "properties": props}]},
    }


class Unreachable(Exception):
    """The API did not answer (the server is down or starting)."""


class Chaos:
    """The world, the faults, the writes and the invariant checks."""

    def __init__(self, server: Server, settings: Settings, tmp: Path) -> None:
        self.server = server
        self.s = settings
        self.tmp = tmp
        self.rng = random.Random(settings.seed)
        self.prov_sub, self.cons_sub = str(uuid.uuid4()), str(uuid.uuid4())
        self.pb, self.cb = network_base(self.prov_sub), network_base(self.cons_sub)
        self.pls_id = f"{self.pb}/privateLinkServices/pls"
        self.vnet_ids = {
            "vp": f"{self.pb}/virtualNetworks/vp",
            "vc": f"{self.cb}/virtualNetworks/vc",
        }
        self.nic_ids = {
            BACKEND_NAME: f"{self.pb}/networkInterfaces/{BACKEND_NAME}",
            "client": f"{self.cb}/networkInterfaces/client",
        }
        prefix = server.prefix
        self.hubs = {v: names.hub_netns(prefix, i) for v, i in self.vnet_ids.items()}
        self.vms = {n: names.nic_netns(prefix, i) for n, i in self.nic_ids.items()}
        self.endpoints: dict[str, Endpoint] = {}
        self.backend: subprocess.Popen[bytes] | None = None
        self.backend_restarts = 0
        self.traffic = Traffic(self.vms["client"])
        self.writes: Counter[str] = Counter()  # "<kind> <outcome>"
        self.faults: Counter[str] = Counter()
        self._token: tuple[str, float] | None = None
        self._http = httpx.Client(verify=str(server.creds["ca_file"]), timeout=HTTP_TIMEOUT)
        self._cred = credential(server.creds)
        self._lock = threading.Lock()  # ledger
        self.server_faults = threading.Lock()  # kill/restart of the server, one at a time
        self.busy: set[str] = set()  # endpoints a write of this round is working on

    # --- API plumbing ----------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.server.creds['url']}{path}?api-version={API_VERSION}"

    def bearer(self) -> dict[str, str]:
        # azure-identity caches the token; the server keeps its signing key across restarts.
        if self._token is None or self._token[1] - time.time() < 300:
            tok = self._cred.get_token(SCOPE)
            self._token = (tok.token, float(tok.expires_on))
        return {"Authorization": f"Bearer {self._token[0]}"}

    def get(self, path: str) -> Any:
        """GET (a list is followed through nextLink); Unreachable if the server is not up."""
        try:
            headers = self.bearer()
        except Exception as exc:  # azure-identity's errors while the token endpoint is down
            raise Unreachable(f"token: {type(exc).__name__}") from exc
        try:
            r = self._http.get(self.url(path), headers=headers)
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                raise Unreachable(f"GET {path}: {r.status_code} {r.text[:200]}")
            body = r.json()
            if "value" in body:
                items = list(body["value"])
                for _ in range(100):
                    if not body.get("nextLink"):
                        break
                    r = self._http.get(body["nextLink"], headers=headers)
                    if r.status_code != 200:
                        raise Unreachable(f"GET nextLink: {r.status_code}")
                    body = r.json()
                    items += body["value"]
                return items
            return body
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise Unreachable(f"GET {path}: {type(exc).__name__}") from exc

    def write(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[str, Any]:
        """One write: ("acked", response json), ("refused", status) for a 4xx/5xx answer,
        ("not-sent", error) when the connection was never made, ("unanswered", error)."""
        try:
            headers = self.bearer()
        except Exception as exc:  # the token endpoint is down: nothing was sent
            return "not-sent", type(exc).__name__
        try:
            r = self._http.request(method, self.url(path), json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return "not-sent", type(exc).__name__
        except (httpx.HTTPError, OSError) as exc:
            return "unanswered", type(exc).__name__
        if 200 <= r.status_code < 300:
            try:
                return "acked", r.json() if r.content else None
            except ValueError:
                return "acked", None
        return "refused", f"{r.status_code} {r.text[:200]}"

    # --- the world ---------------------------------------------------------------------------

    def sdk(self, subscription: str) -> NetworkManagementClient:
        c = self.server.creds
        return NetworkManagementClient(
            self._cred,
            subscription,
            base_url=c["url"],
            connection_verify=c["ca_file"],
            polling_interval=0.05,
            retry_total=0,
        )

    def build(self) -> None:
        """Provider (LB, backend NIC, PLS) and consumer (client NIC, K endpoints)."""
        prov, cons = self.sdk(self.prov_sub), self.sdk(self.cons_sub)
        pb, cb = self.pb, self.cb
        prov.virtual_networks.begin_create_or_update(
            RG,
            "vp",
            vnet_body(
                "10.0.0.0/16",
                {
                    "fe": ("10.0.1.0/24", False),
                    "be": ("10.0.2.0/24", False),
                    "nat": ("10.0.3.0/24", True),
                },
            ),
        ).result()
        lb_id = f"{pb}/loadBalancers/lb"
        fe_id = f"{lb_id}/frontendIPConfigurations/fe"
        pool_id = f"{lb_id}/backendAddressPools/be"
        prov.load_balancers.begin_create_or_update(
            RG,
            "lb",
            {
                "location": LOCATION,
                "sku": {"name": "Standard"},
                "properties": {
                    "frontendIPConfigurations": [
                        {
                            "name": "fe",
                            "properties": {"subnet": {"id": f"{pb}/virtualNetworks/vp/subnets/fe"}},
                        }
                    ],
                    "backendAddressPools": [{"name": "be"}],
                    "probes": [
                        {
                            "name": "p",
                            "properties": {
                                "protocol": "Tcp",
                                "port": BACKEND_PORT,
                                "intervalInSeconds": 5,
                                "numberOfProbes": 2,
                            },
                        }
                    ],
                    "loadBalancingRules": [
                        {
                            "name": "http",
                            "properties": {
                                "protocol": "Tcp",
                                "frontendPort": HTTP_PORT,
                                "backendPort": BACKEND_PORT,
                                "frontendIPConfiguration": {"id": fe_id},
                                "backendAddressPool": {"id": pool_id},
                                "probe": {"id": f"{lb_id}/probes/p"},
                            },
                        }
                    ],
                },
            },
        ).result()
        prov.network_interfaces.begin_create_or_update(
            RG, BACKEND_NAME, nic_body(f"{pb}/virtualNetworks/vp/subnets/be", pool_id)
        ).result()
        prov.private_link_services.begin_create_or_update(
            RG,
            "pls",
            {
                "location": LOCATION,
                "properties": {
                    "loadBalancerFrontendIpConfigurations": [{"id": fe_id}],
                    "ipConfigurations": [
                        {
                            "name": "nat1",
                            "properties": {
                                "primary": True,
                                "subnet": {"id": f"{pb}/virtualNetworks/vp/subnets/nat"},
                            },
                        }
                    ],
                    "visibility": {"subscriptions": [self.cons_sub]},
                    "autoApproval": {"subscriptions": []},
                },
            },
        ).result()
        cons.virtual_networks.begin_create_or_update(
            RG,
            "vc",
            vnet_body(CONSUMER_SPACE, {"vm": ("10.1.1.0/24", False), "pe": ("10.1.2.0/24", False)}),
        ).result()
        cons.network_interfaces.begin_create_or_update(
            RG, "client", nic_body(f"{cb}/virtualNetworks/vc/subnets/vm")
        ).result()
        initial = ("Approved", "Pending", "Rejected")
        for i in range(self.s.endpoints):
            name = f"pe{i}"
            outcome, body = self.write("PUT", f"{cb}/privateEndpoints/{name}", self.pe_body())
            if outcome != "acked":
                raise RuntimeError(f"PUT {name}: {outcome} {body}")
            self.endpoints[name] = Endpoint(name, (True, "Pending"))
        api = self.wait_api(60)
        for i, ep in enumerate(self.endpoints.values()):
            want = initial[i % 3]
            if want != "Pending":
                conn = api["pes"][ep.name]["conn"]
                outcome, body = self.write(
                    "PUT", f"{self.pls_id}/privateEndpointConnections/{conn}", conn_body(conn, want)
                )
                if outcome != "acked":
                    raise RuntimeError(f"{want} {ep.name}: {outcome} {body}")
                ep.known = (True, want)
        api = self.wait_api(60)
        self.adopt(api)
        self.start_backend()
        self.traffic.start()

    def pe_body(self) -> dict[str, Any]:
        return {
            "location": LOCATION,
            "properties": {
                "subnet": {"id": f"{self.cb}/virtualNetworks/vc/subnets/pe"},
                "manualPrivateLinkServiceConnections": [
                    {
                        "name": "c",
                        "properties": {
                            "privateLinkServiceId": self.pls_id,
                            "requestMessage": "chaos",
                        },
                    }
                ],
            },
        }

    def wait_api(self, budget: float) -> dict[str, Any]:
        deadline = time.monotonic() + budget
        last = ""
        while time.monotonic() < deadline:
            try:
                return self.read_api()
            except Unreachable as exc:
                last = str(exc)
                time.sleep(0.2)
        raise TimeoutError(f"the API did not answer within {budget:.0f} s: {last}")

    def read_api(self) -> dict[str, Any]:
        """What the API shows: endpoints (state, connection, IP), connections, NICs."""
        pes = self.get(f"{self.cb}/privateEndpoints") or []
        conns = self.get(f"{self.pls_id}/privateEndpointConnections") or []
        nics = (self.get(f"{self.cb}/networkInterfaces") or []) + (
            self.get(f"{self.pb}/networkInterfaces") or []
        )
        lb = self.get(f"{self.pb}/loadBalancers/lb") or {}
        by_pe = {
            c["properties"]["privateEndpoint"]["id"].lower(): c
            for c in conns
            if c.get("properties", {}).get("privateEndpoint")
        }
        nic_ip = {
            n["id"].lower(): n["properties"]["ipConfigurations"][0]["properties"].get(
                "privateIPAddress"
            )
            for n in nics
        }
        out: dict[str, Any] = {}
        for pe in pes:
            props = pe["properties"]
            links = props.get("manualPrivateLinkServiceConnections") or props.get(
                "privateLinkServiceConnections", []
            )
            copy = (
                links[0]["properties"]["privateLinkServiceConnectionState"]["status"]
                if links
                else None
            )
            conn = by_pe.get(pe["id"].lower())
            nic = (props.get("networkInterfaces") or [{}])[0].get("id", "")
            out[pe["name"]] = {
                "copy": copy,
                "status": conn["properties"]["privateLinkServiceConnectionState"]["status"]
                if conn
                else None,
                "conn": conn["name"] if conn else None,
                "ip": nic_ip.get(nic.lower()),
                "state": props.get("provisioningState"),
            }
        return {"pes": out, "nics": nics, "lb": lb, "conns": conns}

    def adopt(self, api: dict[str, Any]) -> None:
        """Take connection names and IPs from the API; aim the traffic at existing PEs."""
        with self._lock:
            for ep in self.endpoints.values():
                seen = api["pes"].get(ep.name)
                ep.conn = seen["conn"] if seen else None
                ep.ip = seen["ip"] if seen else None
            self.traffic.set_targets({e.name: e.ip for e in self.endpoints.values() if e.ip})

    # --- the backend (a VM's service) -----------------------------------------------------

    def start_backend(self) -> None:
        ns = self.vms[BACKEND_NAME]
        out = (self.tmp / "whoami.log").open("ab")
        self.backend = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-c",
                WHOAMI_SERVER,
                str(BACKEND_PORT),
                BACKEND_NAME,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

    def tend_backend(self) -> None:
        """If the backend's namespace was deleted (and made again by the server), its
        process still runs in the old one: stop it (by pid) and start it in the new one."""
        ns = self.vms[BACKEND_NAME]
        now = privileged.netns_inode(ns)
        proc = self.backend
        if proc is None or now is None:
            return
        try:
            mine = os.stat(f"/proc/{proc.pid}/ns/net").st_ino if proc.poll() is None else None
        except OSError:
            mine = None
        if mine == now:
            return
        # `ip netns exec` execs python in place: the pid is the server's; wait until it has
        # entered the namespace before judging (a just-started process is still in ours).
        if proc.poll() is None and mine == os.stat("/proc/self/ns/net").st_ino:
            return
        stop_process(proc, timeout=5)
        self.start_backend()
        self.backend_restarts += 1

    # --- faults --------------------------------------------------------------------------

    def inject(self, kind: str) -> str:
        """Apply one fault; a note saying what exactly was done."""
        rng = self.rng
        if kind in ("kill9", "sigterm"):
            sig = signal.SIGKILL if kind == "kill9" else signal.SIGTERM
            down = rng.uniform(*DOWN_TIME) if kind == "kill9" else 0.0
            # One server fault at a time: the next one may hit the restarted server (even
            # while it starts), never the same process twice.
            with self.server_faults:
                t0 = time.monotonic()
                code = self.server.kill(sig)
                exited = time.monotonic() - t0
                time.sleep(down)
                self.server.start()
            return f"{kind}: exit {code} after {exited:.1f} s, down {down:.1f} s, restarted"
        if kind == "netns-del-hub":
            ns = self.hubs[rng.choice(sorted(self.hubs))]
            return f"ip netns del {ns}: {sh('ip', 'netns', 'del', ns)}"
        if kind == "netns-del-vm":
            which = rng.choice(sorted(self.vms))
            ns = self.vms[which]
            return f"ip netns del {which} {ns}: {sh('ip', 'netns', 'del', ns)}"
        if kind in ("nft-flush", "nft-delete"):
            ns = self.hubs[rng.choice(sorted(self.hubs))]
            verb = kind.split("-")[1]
            done = sh("ip", "netns", "exec", ns, "nft", verb, "table", "ip", names.TABLE)
            return f"nft {verb} table in {ns}: {done}"
        if kind == "veth-del":
            ns = self.hubs[rng.choice(sorted(self.hubs))]
            proc = subprocess.run(
                ["ip", "-n", ns, "-o", "link", "show"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            ours = re.findall(r"^\d+: (k\d+[cp]|n[0-9a-f]{12})[@:]", proc.stdout, re.M)
            if not ours:
                return f"veth-del: no veth of ours in {ns} ({proc.stderr.strip()[:80]})"
            ifname = rng.choice(sorted(ours))
            return f"ip link del {ifname} in {ns}: {sh('ip', '-n', ns, 'link', 'del', ifname)}"
        raise ValueError(kind)

    # --- writes --------------------------------------------------------------------------

    def one_write(self) -> str:
        """A random approve / reject / delete+recreate on an endpoint that no other write of
        the round touches and that has no unanswered write."""
        with self._lock:
            quiet = [
                e for e in self.endpoints.values() if not e.unanswered and e.name not in self.busy
            ]
            if not quiet:
                return "no endpoint free for a write"
            ep = self.rng.choice(quiet)
            self.busy.add(ep.name)
            approved = sum(1 for e in self.endpoints.values() if e.known[1] == "Approved")
        try:
            exists, status = ep.known
            r = self.rng.random()
            # Keep about a third Approved (so that invariant 1 always has work): approve
            # more often when fewer are, reject more often when more are.
            approve = 0.8 if approved < len(self.endpoints) / 3 else 0.4
            if not exists:
                return self.recreate(ep, "create")
            if status == "Pending" and r < approve:
                return self.set_status(ep, "Approved")
            if status == "Pending" and r < approve + (1 - approve) / 2:
                return self.set_status(ep, "Rejected")
            if status == "Approved" and r < 1 - approve / 2:
                return self.set_status(ep, "Rejected")
            return self.recreate(ep, "delete")
        finally:
            with self._lock:
                self.busy.discard(ep.name)

    def record(self, ep: Endpoint, op: tuple[str, str | None], outcome: str, result: State) -> None:
        with self._lock:
            self.writes[f"{op[0] if op[0] != 'status' else op[1]} {outcome}"] += 1
            if outcome == "acked":
                ep.known = result
                ep.unanswered = []
            elif outcome == "unanswered":
                ep.unanswered.append(op)
            if op[0] in ("create", "delete") and outcome in ("acked", "unanswered"):
                ep.conn = None  # a new connection (or none): its name is asked for again

    def set_status(self, ep: Endpoint, status: str) -> str:
        if ep.conn is None:  # re-created in this round: its connection has a new name
            try:
                conns = self.get(f"{self.pls_id}/privateEndpointConnections") or []
            except Unreachable as exc:
                return f"{status} {ep.name}: connection name unknown ({exc})"
            pe_id = f"{self.cb}/privateEndpoints/{ep.name}".lower()
            ep.conn = next(
                (
                    c["name"]
                    for c in conns
                    if c["properties"].get("privateEndpoint", {}).get("id", "").lower() == pe_id
                ),
                None,
            )
            if ep.conn is None:
                return f"{status} {ep.name}: no connection found"
        path = f"{self.pls_id}/privateEndpointConnections/{ep.conn}"
        outcome, body = self.write("PUT", path, conn_body(ep.conn, status))
        got = None
        if outcome == "acked" and isinstance(body, dict):
            got = body["properties"]["privateLinkServiceConnectionState"]["status"]
        self.record(ep, ("status", status), outcome, (True, got or status))
        return f"{status} {ep.name}: {outcome}{'' if outcome == 'acked' else f' ({body})'}"

    def recreate(self, ep: Endpoint, start: str) -> str:
        """DELETE the endpoint (waiting until it is gone), then PUT it again (Pending)."""
        notes = []
        path = f"{self.cb}/privateEndpoints/{ep.name}"
        if start == "delete":
            outcome, body = self.write("DELETE", path, None)
            self.record(ep, ("delete", None), outcome, ABSENT)
            notes.append(f"delete {ep.name}: {outcome}")
            if outcome != "acked":
                return "; ".join(notes)
            deadline = time.monotonic() + DELETE_WAIT
            gone = False
            while time.monotonic() < deadline:
                try:
                    gone = self.get(path) is None
                except Unreachable:
                    break
                if gone:
                    break
                time.sleep(0.1)
            if not gone:
                return "; ".join([*notes, "not gone yet: no re-create"])
        outcome, body = self.write("PUT", path, self.pe_body())
        self.record(ep, ("create", None), outcome, (True, "Pending"))
        notes.append(f"create {ep.name}: {outcome}{'' if outcome == 'acked' else f' ({body})'}")
        return "; ".join(notes)

    # --- checks --------------------------------------------------------------------------

    def states_line(self) -> str:
        with self._lock:
            return " ".join(
                f"{e.name}={e.known[1] if e.known[0] else 'absent'}"
                for e in self.endpoints.values()
            )

    def check_ledger(self, api: dict[str, Any]) -> list[str]:
        """Invariant 3; then the observed states become the known ones."""
        problems = []
        with self._lock:
            for ep in self.endpoints.values():
                seen = api["pes"].get(ep.name)
                state: State = (True, seen["status"]) if seen else ABSENT
                if seen and seen["copy"] != seen["status"]:
                    problems.append(
                        f"{ep.name}: endpoint's copy {seen['copy']} != service's {seen['status']}"
                    )
                allowed = ep.candidates()
                if state not in allowed:
                    problems.append(
                        f"{ep.name}: API shows {state}, acknowledged {ep.known}, "
                        f"unanswered {ep.unanswered}"
                    )
                ep.known, ep.unanswered = state, []
        return problems

    def check_ips_and_namespaces(self, api: dict[str, Any]) -> list[str]:
        """Invariant 4."""
        problems = []
        by_vnet: dict[str, list[tuple[str, str]]] = {}
        for nic in api["nics"]:
            for cfg in nic["properties"]["ipConfigurations"]:
                subnet = cfg["properties"]["subnet"]["id"].lower()
                ip_ = cfg["properties"].get("privateIPAddress")
                by_vnet.setdefault(subnet.split("/subnets/")[0], []).append((nic["name"], ip_))
        for fe in api["lb"].get("properties", {}).get("frontendIPConfigurations", []):
            subnet = fe["properties"]["subnet"]["id"].lower()
            by_vnet.setdefault(subnet.split("/subnets/")[0], []).append(
                (f"lb/{fe['name']}", fe["properties"].get("privateIPAddress"))
            )
        for vnet, entries in by_vnet.items():
            seen: dict[str, str] = {}
            for owner, ip_ in entries:
                if ip_ is None:
                    problems.append(f"{owner} has no IP")
                elif ip_ in seen:
                    problems.append(
                        f"{ip_} held by {seen[ip_]} and {owner} in {vnet.rsplit('/', 1)[-1]}"
                    )
                else:
                    seen[ip_] = owner
        # Kernel leftovers: the consumer hub's `lo` holds exactly the endpoints' IPs (a
        # deleted endpoint's IP left there would still answer with resets).
        pe_ips = {v["ip"] for v in api["pes"].values() if v["ip"]}
        on_lo = hub_lo_addresses(self.hubs["vc"], CONSUMER_SPACE)
        if on_lo is not None and on_lo != pe_ips:
            problems.append(
                f"consumer hub lo: extra {sorted(on_lo - pe_ips)}, missing {sorted(pe_ips - on_lo)}"
            )
        ours = {n for n in privileged.list_netns() if names.is_ours(self.server.prefix, n)}
        wanted = set(self.hubs.values()) | set(self.vms.values())
        if ours != wanted:
            problems.append(
                f"namespaces: missing {sorted(wanted - ours)}, extra {sorted(ours - wanted)}"
            )
        return problems

    def check_traffic(self, sweep_: Sweep) -> dict[str, list[str]]:
        """Invariants 1 and 2 on one sweep; "unprobed": endpoints the sweep did not try at
        their current IP (e.g. just re-created): not converged yet, but no violation."""
        out: dict[str, list[str]] = {"approved-carries": [], "nothing-else": [], "unprobed": []}
        with self._lock:
            expected = {e.name: e for e in self.endpoints.values() if e.ip}
        for name, ep in expected.items():
            got = sweep_.results.get(name)
            if got is None or got[0] != ep.ip:
                out["unprobed"].append(f"{name} ({ep.ip}) not probed yet")
                continue
            outcome = got[1]
            if ep.known[1] == "Approved" and outcome != "ok":
                out["approved-carries"].append(f"{name} ({ep.ip}, Approved): {outcome}")
            elif ep.known[1] != "Approved" and outcome.startswith(("ok", "answered")):
                out["nothing-else"].append(f"{name} ({ep.ip}, {ep.known[1]}): {outcome}")
        return out

    # --- a round ---------------------------------------------------------------------------

    def round(self, n: int, deadline_at: float) -> dict[str, Any]:
        rng = self.rng
        kinds = rng.sample(self.s.faults, k=min(len(self.s.faults), rng.choice((1, 2))))
        n_writes = rng.choice((1, 2, 3))
        plan = sorted(
            [(rng.uniform(0, INJECT_WINDOW), "fault", k) for k in kinds]
            + [(rng.uniform(0, INJECT_WINDOW), "write", None) for _ in range(n_writes)]
        )
        notes: list[str] = []
        t0 = time.monotonic()
        log(f"round {n}: faults {kinds}, {n_writes} write(s)")

        fault_done: list[float] = []

        def run(at: float, what: str, kind: str | None) -> str:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            if what == "fault":
                assert kind is not None
                self.faults[kind] += 1
                try:
                    return self.inject(kind)
                finally:
                    fault_done.append(time.monotonic())
            return self.one_write()

        # Faults and writes run concurrently (each in its own thread, at its own moment).
        with concurrent.futures.ThreadPoolExecutor(len(plan)) as pool:
            futures = [pool.submit(run, *item) for item in plan]
            for (at, what, kind), f in zip(plan, futures, strict=True):
                try:
                    notes.append(
                        f"+{at:.2f}s {what} {kind or ''}: {f.result(timeout=180)}".replace(
                            "  ", " "
                        )
                    )
                except Exception as exc:  # a fault that could not be applied is reported
                    notes.append(f"+{at:.2f}s {what} {kind or ''}: failed {exc!r}")
        t_end = time.monotonic()
        for line in notes:
            log(f"  {line}")
        result: dict[str, Any] = {
            "round": n,
            "faults": kinds,
            "writes": n_writes,
            "injected": notes,
            "inject_s": round(t_end - t0, 2),
            "end_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "violations": {},
        }
        self.converge(t_end, min(t_end, deadline_at) + self.s.deadline, result)
        if result.get("converged") and fault_done:
            # The repair itself: from the last fault (writes may end later or earlier).
            result["converge_from_last_fault_s"] = round(
                result["converge_s"] + t_end - max(fault_done), 3
            )
        for inv, why in result["violations"].items():
            log(f"  VIOLATION {inv}: {why[:5]}")
        return result

    def converge(self, t_end: float, deadline: float, result: dict[str, Any]) -> None:
        """Wait until the invariants hold (or the deadline); fill `result` with whether and
        when (from `t_end`), the violations, and what the API showed."""
        violations: dict[str, list[str]] = result.setdefault("violations", {})
        ledger_checked = False
        failing: dict[str, list[str]] = {}
        converged_at: float | None = None
        api: dict[str, Any] | None = None
        for _ in range(10_000):
            if time.monotonic() > deadline:
                break
            self.server.ensure_running()
            self.tend_backend()
            check_from = time.monotonic()
            try:
                api = self.read_api()
            except Unreachable as exc:
                failing = {"api": [str(exc)]}
                time.sleep(0.2)
                continue
            if not ledger_checked:
                lost = self.check_ledger(api)
                if lost:
                    violations["no-lost-write"] = lost
                ledger_checked = True
            self.adopt(api)
            sweep_ = self.traffic.next_sweep(time.monotonic(), timeout=5)
            if sweep_ is None:
                failing = {"traffic": ["no sweep within 5 s"]}
                continue
            failing = {k: v for k, v in self.check_traffic(sweep_).items() if v}
            ips = self.check_ips_and_namespaces(api)
            if ips:
                failing["no-duplicate-ip"] = ips
            if not failing:
                converged_at = max(check_from, sweep_.start)
                break
        result["failing_at_deadline"] = failing if converged_at is None else {}
        if converged_at is None:
            result["converged"] = False
            log(f"  did NOT converge within {deadline - t_end:.0f} s: {failing}")
            for inv, why in failing.items():
                # "api", "traffic", "unprobed" (server, sweeps or probes never back): against 1
                target = inv if inv in INVARIANTS else "approved-carries"
                violations.setdefault(target, []).extend(f"not converged: {w}" for w in why)
        else:
            result["converged"] = True
            result["converge_s"] = round(converged_at - t_end, 3)
            for i in range(AFTER_SWEEPS):
                s = self.traffic.next_sweep(converged_at + 0.001 + i * SWEEP_EVERY, timeout=10)
                if s is None:
                    continue
                bad = {
                    inv: why
                    for inv, why in self.check_traffic(s).items()
                    if why and inv in INVARIANTS
                }
                for inv, why in bad.items():
                    violations.setdefault(inv, []).extend(f"after convergence: {w}" for w in why)
                if bad:  # the evidence: the whole sweep, when it ran
                    result.setdefault("failed_sweeps_after_convergence", []).append(
                        {
                            "started_after_end_s": round(s.start - t_end, 3),
                            "took_s": round(s.end - s.start, 3),
                            "utc": datetime.datetime.fromtimestamp(s.wall, datetime.UTC).isoformat(
                                timespec="milliseconds"
                            ),
                            "results": s.results,
                        }
                    )
            log(f"  converged in {result['converge_s']} s; {self.states_line()}")
        # Informational: sweeps between `t_end` and convergence in which an endpoint that
        # is not Approved (by the final, acknowledged state) still answered.
        until = converged_at if converged_at is not None else time.monotonic()
        leaks = [
            s
            for s in self.traffic.since(t_end)
            if s.start < until and self.check_traffic(s)["nothing-else"]
        ]
        result["sweeps_with_non_approved_traffic_before_convergence"] = len(leaks)
        if leaks:
            result["non_approved_traffic_before_convergence"] = [
                {
                    "started_after_end_s": round(s.start - t_end, 3),
                    "answered": self.check_traffic(s)["nothing-else"],
                }
                for s in leaks[:10]
            ]
        if api is not None:
            result["states"] = {k: v["status"] for k, v in api["pes"].items()}
            result["not_succeeded"] = {
                k: v["state"] for k, v in api["pes"].items() if v["state"] != "Succeeded"
            }


def conn_body(name: str, status: str) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {
            "privateLinkServiceConnectionState": {
                "status": status,
                "description": "chaos",
                "actionsRequired": "None",
            }
        },
    }


def hub_lo_addresses(ns: str, space: str) -> set[str] | None:
    """IPv4 addresses on a hub's `lo` within an address space (None: no namespace)."""
    proc = subprocess.run(
        ["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "lo"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        return None
    net = ipaddress.ip_network(space)
    found = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", proc.stdout)
    return {a for a in found if ipaddress.ip_address(a) in net}


def sh(*argv: str) -> str:
    """Run a command that breaks something; "ok" or its error (a fault may miss, e.g. a
    namespace already deleted by another fault of the round)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return "ok" if proc.returncode == 0 else f"failed: {proc.stderr.strip()[:120]}"


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }


def summarize(results: dict[str, Any], chaos: Chaos) -> None:
    rounds = results["rounds"]
    conv = [r["converge_s"] for r in rounds if r.get("converged")]
    from_fault = [r["converge_from_last_fault_s"] for r in rounds if r.get("converged")]
    by_fault: dict[str, list[float]] = {}
    by_fault_repair: dict[str, list[float]] = {}
    for r in rounds:
        if r.get("converged"):
            for k in r["faults"]:
                by_fault.setdefault(k, []).append(r["converge_s"])
                by_fault_repair.setdefault(k, []).append(r["converge_from_last_fault_s"])
    violations: Counter[str] = Counter()
    for r in rounds:
        for inv, why in r["violations"].items():
            violations[inv] += 1 if why else 0
    results["summary"] = {
        "rounds": len(rounds),
        "rounds_converged": len(conv),
        "faults_injected": dict(sorted(chaos.faults.items())),
        "violations": {inv: violations.get(inv, 0) for inv in INVARIANTS},
        "violations_total": sum(violations.values()),
        "converge_s": stats(conv),
        "converge_s_by_fault": {k: stats(v) for k, v in sorted(by_fault.items())},
        "converge_from_last_fault_s": stats(from_fault),
        "converge_from_last_fault_s_by_fault": {
            k: stats(v) for k, v in sorted(by_fault_repair.items())
        },
        "server_starts": chaos.server.starts,
        "server_restarts": chaos.server.starts - 1,
        "server_unexpected_exits": chaos.server.unexpected_exits,
        "writes": dict(sorted(chaos.writes.items())),
        "acknowledged_writes": sum(v for k, v in chaos.writes.items() if k.endswith(" acked")),
        "backend_restarts": chaos.backend_restarts,
        "sweeps": len(chaos.traffic.sweeps),
        "rounds_with_endpoints_not_succeeded_at_convergence": sum(
            1 for r in rounds if r.get("converged") and r.get("not_succeeded")
        ),
        "rounds_with_non_approved_traffic_before_convergence": sum(
            1 for r in rounds if r.get("sweeps_with_non_approved_traffic_before_convergence")
        ),
    }


def report(results: dict[str, Any]) -> str:
    s = results.get("summary", {})
    lines = [
        f"rounds {s.get('rounds')} (converged {s.get('rounds_converged')}), endpoints "
        f"{results['settings']['endpoints']}, deadline {results['settings']['deadline']} s",
        f"faults injected: {s.get('faults_injected')}",
        f"violations: {s.get('violations')} (total {s.get('violations_total')}; goal 0)",
        f"time to converge: {s.get('converge_s')}",
    ]
    for k, v in (s.get("converge_s_by_fault") or {}).items():
        lines.append(f"  {k}: {v}")
    lines.append(f"time to converge from the last fault: {s.get('converge_from_last_fault_s')}")
    for k, v in (s.get("converge_from_last_fault_s_by_fault") or {}).items():
        lines.append(f"  {k}: {v}")
    lines += [
        f"server restarts {s.get('server_restarts')}, unexpected exits "
        f"{s.get('server_unexpected_exits')}, backend restarts {s.get('backend_restarts')}",
        f"writes: {s.get('writes')} (acknowledged {s.get('acknowledged_writes')})",
        f"rounds where a non-approved endpoint answered before convergence: "
        f"{s.get('rounds_with_non_approved_traffic_before_convergence')}",
        f"server log: {results.get('server_log')}",
    ]
    for r in results.get("rounds", []):
        for inv, why in r["violations"].items():
            lines.append(
                f"round {r['round']} {inv}: {why[:3]}  [faults {r['faults']}; {r['injected']}]"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 3 endpoints")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 20)")
    parser.add_argument("--endpoints", type=int, default=None, help="private endpoints (6)")
    parser.add_argument("--minutes", type=float, default=None, help="time bound (15; quick 5)")
    parser.add_argument("--deadline", type=float, default=60.0, help="s to converge per round")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated fault kinds")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--write", action="store_true", help=f"write {JSON_OUT.name}")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or not faults:
        parser.error(f"unknown fault kinds {unknown}; known: {', '.join(FAULTS)}")
    settings = Settings(
        rounds=max(1, min(args.rounds or (3 if args.quick else 20), 500)),
        endpoints=max(1, min(args.endpoints or (3 if args.quick else 6), 60)),
        minutes=max(0.5, min(args.minutes or (5.0 if args.quick else 15.0), 120.0)),
        deadline=max(5.0, min(args.deadline, 600.0)),
        faults=faults,
        seed=args.seed if args.seed is not None else random.randrange(2**31),
    )
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    missing = [t for t in ("ip", "nft") if shutil.which(t) is None]
    if missing:
        parser.error(f"missing tools: {', '.join(missing)}")

    sweep_on_signals()
    prefix = unique_prefix("bch")
    tmp = Path(tempfile.mkdtemp(prefix="pl-chaos-"))
    results: dict[str, Any] = {
        "benchmark": "chaos",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python bench/chaos.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "source": source_version(),
        "settings": settings.__dict__,
        "netns_prefix": prefix,
        "invariants": {
            "approved-carries": "every Approved connection answers the backend's whoami",
            "nothing-else": "no Pending/Rejected endpoint answers, at convergence and in "
            f"{AFTER_SWEEPS} sweeps after it",
            "no-lost-write": "the API shows the last acknowledged state (or that of a later "
            "unanswered write); acknowledged endpoints exist; the endpoint's copy matches",
            "no-duplicate-ip": "no IP twice in a VNet (NICs, PE NICs, NAT NIC, LB frontend); "
            "our namespaces are exactly the desired ones",
        },
        "rounds": [],
    }
    log(f"netns prefix {prefix}, temp dir {tmp}, seed {settings.seed}")
    server = Server(tmp, prefix)
    chaos: Chaos | None = None
    code = 0
    t_start = time.monotonic()
    try:
        server.start()
        server.ready()
        chaos = Chaos(server, settings, tmp)
        chaos.build()
        # Before any fault, the world must satisfy the invariants (else it is the bench's
        # or the server's plain failure, not chaos).
        settle: dict[str, Any] = {}
        chaos.converge(time.monotonic(), time.monotonic() + 60, settle)
        results["settle"] = settle
        if not settle["converged"] or settle["violations"]:
            raise RuntimeError(f"the world did not settle before any fault: {settle}")
        deadline_at = t_start + settings.minutes * 60
        for n in range(1, settings.rounds + 1):
            if time.monotonic() > deadline_at:
                log(f"time bound of {settings.minutes} min reached after {n - 1} rounds")
                break
            results["rounds"].append(chaos.round(n, deadline_at))
    except KeyboardInterrupt:
        log("interrupted")
        results["interrupted"] = True
        code = 130
    except Exception as exc:
        log(f"failed: {exc!r}")
        results["error"] = repr(exc)
        code = 1
    finally:
        if chaos is not None:
            chaos.traffic.stop()
            stop_process(chaos.backend, timeout=5)
        server.stop()
        sweep(prefix)
        text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
        lines = text.splitlines()
        bad = [ln for ln in lines if "Traceback" in ln or "sync failed" in ln or " ERROR" in ln]
        results["server_log"] = {"lines": len(lines), "errors": len(bad), "first": bad[:8]}
        if code or any(r["violations"] for r in results["rounds"]):
            kept = Path(f"/tmp/pl-chaos-{prefix}-server.log")
            kept.write_text(text)
            results["server_log"]["kept"] = str(kept)
        shutil.rmtree(tmp, ignore_errors=True)
    if chaos is not None:
        summarize(results, chaos)
    results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results["wall_s"] = round(time.monotonic() - t_start, 1)
    results["complete"] = code == 0
    for path in [JSON_OUT] * args.write + [args.json] * (args.json is not None):
        path.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {path}")
    print(report(results))
    if code:
        return code
    return 1 if results.get("summary", {}).get("violations_total") else 0


if __name__ == "__main__":
    sys.exit(main())
