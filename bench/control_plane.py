"""Control-plane benchmark: drive a real `privatelink serve` with the real Azure SDK.

Starts its own server (`python -m privatelink.cli.main serve`) on a free 127.0.0.1 port
with a temporary data directory, talks to it with `azure-mgmt-network` through
`ClientSecretCredential` (as a user of the service would), and measures:

1. PUT-to-Succeeded latency of private link services: `begin_create_or_update().result()`
   wall time (initial PUT + Azure-AsyncOperation poll + final GET), N distinct services
   on distinct frontends of realistic load balancers (8 frontends, 8 pools, 8 rules each,
   so each load balancer is at Azure's 8-services-per-load-balancer limit).
2. Approval latency: `update_private_endpoint_connection` round trips over pending
   connections (one private endpoint on each service of step 1).
3. GET throughput of one service (sequential), and `list_by_subscription` throughput
   (pages/s and items/s).
4. One service with many private endpoints (1000; 100 with --quick, Azure's limit per
   service and per virtual network is 1000): time to create them all, to list all
   connections (paged), to approve them all; per-operation means, and whether the cost
   per endpoint grows with the number already present (first 10% vs last 10%).
5. The same GET through raw httpx (same bearer token, keep-alive) to separate SDK
   overhead from server cost.

The server runs with `--dataplane off` unless asked otherwise: this measures the control
plane. With the data plane on, every PUT waits for the kernel state to be applied.

For each measured phase it also records the server process's CPU time (from
/proc/<pid>/stat) and this process's CPU time, to show where the wall time goes.

Every loop is bounded both in count and in time; a phase that hits its time budget is
reported as truncated with the number of operations it did.

`--authorization` measures something else instead: the cost of RBAC enforcement per
request. Two servers built by the same API calls (SQLite, data plane off), one with
`{"authorization": false}` in config.json, get GETs, lists and a PUT as the tenant admin
and as a member principal whose rights come from a role assignment; their requests
alternate one by one, and the servers swap settings halfway through each level. Levels:
1 (really 2: the two callers' own), 100 and 1000 role assignments in the subscription,
most of them other principals' (made through Graph and the roleAssignments API). It
also runs an A/A control (both on), the same comparison in process (two apps, httpx's
ASGITransport) and times `access_for`/`check` directly. See docs/benchmarks.md.

`--api-speed` measures the served API's own speed against a baseline instead: the real
`privatelink serve` (SQLite, data plane off) with a private link service with four
connections, and, in another process, the minimal FastAPI app of `bench/api_minimal.py`
(same uvicorn version, loop, HTTP implementation, certificate), whose one route answers
the very bytes the real server answered for the GET of that service. wrk (C, keep-alive,
a bearer token on each request) drives them in turn, 16 clients then 1, for a fixed time
per run, rounds alternating the order; wrk runs on CPU 0 and the server under load on CPU
1 (`--no-pin`: left to the scheduler), so that the client never takes the server's CPU
and its own CPU is reported. `--profile FILE` adds one run of the real server under
py-spy. `bench/api_instructions.py` counts the app's machine instructions per GET
instead, a measure other load does not move.

Usage:
    python bench/control_plane.py [--quick] [--db-url URL] [--dataplane off|auto|on] [--write]
    python bench/control_plane.py --authorization [--quick] [--write]
    python bench/control_plane.py --api-speed [--quick] [--profile FILE] [--write --label L]

`--write` stores the results as JSON in docs/benchmarks-control-plane.json
(docs/benchmarks-authorization.json with `--authorization`, docs/benchmarks-api-speed.json
under the run's `--label` with `--api-speed`). With
`--db-url` (e.g. PostgreSQL) the database should be empty; subscription ids are random
per run, so leftovers of earlier runs do not collide but do make tables bigger.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
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
    credential,
    free_port,
    log,
    network_base,
    process_cpu,
    stop_process,
    summary,
    vnet_body,
    wait_ready,
)
from fastapi import Request

JSON_OUT = ROOT / "docs" / "benchmarks-control-plane.json"
SCOPE = "https://management.azure.com/.default"
API_VERSION = "2026-03-01"
GET_ROUNDS = 5  # SDK and httpx GETs alternate in this many blocks
FRONTENDS_PER_LB = 8  # Azure's default limit of private link services per load balancer


@dataclass(frozen=True)
class Sizes:
    """How much work each phase does, and its time budget (seconds)."""

    pls: int
    pls_budget: float
    approvals: int
    approvals_budget: float
    get_requests: int
    get_seconds: float
    list_rounds: int
    list_seconds: float
    big_pes: int
    big_create_budget: float
    big_approve_budget: float
    big_list_rounds: int


FULL = Sizes(
    pls=200,
    pls_budget=240.0,
    approvals=200,
    approvals_budget=120.0,
    get_requests=1000,
    get_seconds=10.0,
    list_rounds=20,
    list_seconds=10.0,
    big_pes=1000,
    big_create_budget=420.0,
    big_approve_budget=300.0,
    big_list_rounds=3,
)
QUICK = Sizes(
    pls=30,
    pls_budget=60.0,
    approvals=30,
    approvals_budget=30.0,
    get_requests=300,
    get_seconds=3.0,
    list_rounds=5,
    list_seconds=3.0,
    big_pes=100,
    big_create_budget=60.0,
    big_approve_budget=60.0,
    big_list_rounds=2,
)


# --- measurement helpers ------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def tenths(durations: list[float]) -> dict[str, Any]:
    """Mean of the first and last 10% of a series, and their ratio (growth check)."""
    n = max(1, len(durations) // 10)
    if len(durations) < 2 * n or not durations:
        return {}
    first = sum(durations[:n]) / n * 1000
    last = sum(durations[-n:]) / n * 1000
    size = len(durations) / 10
    deciles = [durations[round(k * size) : round((k + 1) * size)] for k in range(10)]
    return {
        "first10_mean_ms": round(first, 2),
        "last10_mean_ms": round(last, 2),
        "last_over_first": round(last / first, 2) if first else None,
        "decile_means_ms": [round(sum(d) / len(d) * 1000, 2) for d in deciles if d],
    }


@dataclass
class Phase:
    """Wall, server-CPU and client-CPU time of one phase."""

    name: str
    ops: int = 0
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    server_cpu_series: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        per = self.ops or 1
        return {
            "ops": self.ops,
            "wall_s": round(self.wall, 3),
            "truncated": self.truncated,
            "server_cpu_ms_per_op": round(self.server_cpu / per * 1000, 2),
            "client_cpu_ms_per_op": round(self.client_cpu / per * 1000, 2),
            "wall_ms_per_op": round(self.wall / per * 1000, 2),
            **self.extra,
        }


class Meter:
    """Records phases against a server pid."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.phases: dict[str, Phase] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """Measure a new phase."""
        ph = self.phases[name] = Phase(name)
        with self.more(ph):
            yield ph

    @contextmanager
    def more(self, ph: Phase) -> Iterator[Phase]:
        """Add another stretch of work to an existing phase's totals."""
        s0, c0, w0 = process_cpu(self.server_pid), time.process_time(), time.perf_counter()
        try:
            yield ph
        finally:
            ph.wall += time.perf_counter() - w0
            ph.client_cpu += time.process_time() - c0
            ph.server_cpu += process_cpu(self.server_pid) - s0


def bounded(
    ph: Phase,
    count: int,
    seconds: float,
    op: Callable[[int], object],
    server_pid: int | None = None,
) -> list[float]:
    """Run op(0..count-1) sequentially until done or `seconds` elapsed; per-op durations.

    With `server_pid`, the server's CPU time of each op goes to `ph.server_cpu_series`
    (10 ms ticks: only averages over many ops mean something). Server CPU is far less
    sensitive than wall time to other load on a shared machine.
    """
    deadline = time.perf_counter() + seconds
    durations: list[float] = []
    for i in range(count):
        if time.perf_counter() >= deadline:
            ph.truncated = True
            break
        c0 = process_cpu(server_pid) if server_pid else 0.0
        t0 = time.perf_counter()
        op(i)
        durations.append(time.perf_counter() - t0)
        if server_pid:
            ph.server_cpu_series.append(process_cpu(server_pid) - c0)
    ph.ops += len(durations)
    return durations


# --- the server -----------------------------------------------------------------------------


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    creds: dict[str, str]


@contextmanager
def serve(
    db_url: str | None, dataplane: str, limits: dict[str, int] | None = None
) -> Iterator[RunningServer]:
    """Start `privatelink serve` in a temp dir; always stop it and remove the dir.

    With the data plane on, the namespaces it created are swept (`privatelink cleanup`)
    before the directory goes.
    """
    tmp = Path(tempfile.mkdtemp(prefix="pl-bench-"))
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    if limits:
        (data_dir / "config.json").write_text(json.dumps({"limits": limits}))
    port = free_port()
    cmd = [sys.executable, "-m", "privatelink.cli.main", "serve"]
    cmd += ["--data-dir", str(data_dir), "--port", str(port)]
    cmd += ["--dataplane", dataplane]
    if db_url:
        cmd += ["--db-url", db_url]
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        creds = wait_ready(proc, data_dir, port)
        yield RunningServer(proc, data_dir, creds)
    except Exception:
        log.flush()
        tail = (tmp / "server.log").read_text(errors="replace")[-4000:]
        print(f"--- server log (tail) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        stop_process(proc, timeout=15)
        log.close()
        if dataplane != "off":
            sweep = [sys.executable, "-m", "privatelink.cli.main", "cleanup"]
            subprocess.run([*sweep, "--data-dir", str(data_dir)], check=False, timeout=300)
        shutil.rmtree(tmp, ignore_errors=True)


# --- resource bodies ------------------------------------------------------------------------


def lb_body(base: str, lb: str, frontends: int) -> dict[str, Any]:
    """A Standard LB: `frontends` frontends, each with its own pool and TCP rule."""
    lb_id = f"{base}/loadBalancers/{lb}"
    return {
        "location": LOCATION,
        "sku": {"name": "Standard"},
        "properties": {
            "frontendIPConfigurations": [
                {
                    "name": f"fe{i}",
                    "properties": {"subnet": {"id": f"{base}/virtualNetworks/vp/subnets/fe"}},
                }
                for i in range(frontends)
            ],
            "backendAddressPools": [{"name": f"be{i}"} for i in range(frontends)],
            "probes": [
                {
                    "name": "p",
                    "properties": {
                        "protocol": "Tcp",
                        "port": 8080,
                        "intervalInSeconds": 5,
                        "numberOfProbes": 2,
                    },
                }
            ],
            "loadBalancingRules": [
                {
                    "name": f"r{i}",
                    "properties": {
                        "protocol": "Tcp",
                        "frontendPort": 80,
                        "backendPort": 8080,
                        "frontendIPConfiguration": {
                            "id": f"{lb_id}/frontendIPConfigurations/fe{i}"
                        },
                        "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/be{i}"},
                        "probe": {"id": f"{lb_id}/probes/p"},
                    },
                }
                for i in range(frontends)
            ],
        },
    }


def pls_body(base: str, frontend_id: str, consumer: str, fqdn: str) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "properties": {
            "loadBalancerFrontendIpConfigurations": [{"id": frontend_id}],
            "ipConfigurations": [
                {
                    "name": "nat",
                    "properties": {
                        "primary": True,
                        "subnet": {"id": f"{base}/virtualNetworks/vp/subnets/nat"},
                    },
                }
            ],
            "visibility": {"subscriptions": [consumer]},
            "fqdns": [fqdn],
        },
    }


def pe_body(subnet_id: str, alias: str) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "properties": {
            "subnet": {"id": subnet_id},
            "manualPrivateLinkServiceConnections": [
                {"name": "c", "properties": {"privateLinkServiceId": alias, "requestMessage": "hi"}}
            ],
        },
    }


APPROVE = PrivateEndpointConnection(
    private_link_service_connection_state=PrivateLinkServiceConnectionState(
        status="Approved", description="approved by bench"
    )
)


# --- the benchmark --------------------------------------------------------------------------


class Bench:
    """Holds clients and ids for one run."""

    def __init__(self, server: RunningServer, sizes: Sizes) -> None:
        self.sizes = sizes
        c = server.creds
        self.url = c["url"]
        self.ca = c["ca_file"]
        self.credential = credential(c)
        self.provider_sub = str(uuid.uuid4())
        self.consumer_sub = str(uuid.uuid4())
        self.prov = self._client(self.provider_sub)
        self.cons = self._client(self.consumer_sub)
        self.pbase = network_base(self.provider_sub)
        self.cbase = network_base(self.consumer_sub)
        self.pid = server.proc.pid
        self.meter = Meter(self.pid)
        self.results: dict[str, Any] = {}
        self.services: list[Any] = []  # PLS models of phase 1, in creation order

    def close(self) -> None:
        """Close the SDK clients' sessions and the credential."""
        self.prov.close()
        self.cons.close()
        self.credential.close()

    def _client(self, subscription: str) -> NetworkManagementClient:
        return NetworkManagementClient(
            self.credential,
            subscription,
            base_url=self.url,
            connection_verify=self.ca,
            polling_interval=0,
            retry_total=0,
        )

    # setup -------------------------------------------------------------------------------

    def setup_networks(self) -> None:
        """Provider VNet (frontends + NAT subnets) and two consumer VNets with /20 subnets."""
        n_lbs = math.ceil(self.sizes.pls / FRONTENDS_PER_LB)
        with self.meter.phase("setup") as ph:
            self.prov.virtual_networks.begin_create_or_update(
                RG,
                "vp",
                vnet_body(
                    "10.0.0.0/16",
                    {"fe": ("10.0.0.0/20", False), "nat": ("10.0.16.0/20", True)},
                ),
            ).result()
            for name, prefix in (("vc2", "10.2.0.0/16"), ("vc4", "10.4.0.0/16")):
                sub = prefix.replace(".0.0/16", ".0.0/20")
                self.cons.virtual_networks.begin_create_or_update(
                    RG, name, vnet_body(prefix, {"pe": (sub, False)})
                ).result()
            for i in range(n_lbs):
                self.prov.load_balancers.begin_create_or_update(
                    RG, f"lb{i}", lb_body(self.pbase, f"lb{i}", FRONTENDS_PER_LB)
                ).result()
            # The big service of phase 4 gets a load balancer of its own.
            self.prov.load_balancers.begin_create_or_update(
                RG, "lbbig", lb_body(self.pbase, "lbbig", 1)
            ).result()
            ph.ops = 4 + n_lbs
        self.results["setup"] = {"load_balancers": n_lbs + 1, **ph.as_dict()}

    def frontend_id(self, i: int) -> str:
        lb, fe = divmod(i, FRONTENDS_PER_LB)
        return f"{self.pbase}/loadBalancers/lb{lb}/frontendIPConfigurations/fe{fe}"

    # phase 1 -----------------------------------------------------------------------------

    def pls_put_latency(self) -> None:
        s = self.sizes

        def create(i: int) -> None:
            body = pls_body(self.pbase, self.frontend_id(i), self.consumer_sub, f"s{i}.example")
            pls = self.prov.private_link_services.begin_create_or_update(RG, f"pls{i}", body)
            result = pls.result()
            assert result.provisioning_state == "Succeeded", result.provisioning_state
            self.services.append(result)

        with self.meter.phase("pls_put") as ph:
            durations = bounded(ph, s.pls, s.pls_budget, create, self.pid)
        self.results["1_pls_put_to_succeeded"] = {
            **summary(durations),
            **tenths(durations),
            **ph.as_dict(),
            "server_cpu_growth": tenths(ph.server_cpu_series),
        }

    # phase 2 -----------------------------------------------------------------------------

    def approval_latency(self) -> None:
        s = self.sizes
        subnet = f"{self.cbase}/virtualNetworks/vc2/subnets/pe"
        targets = self.services[: s.approvals]
        with self.meter.phase("approval_setup") as ph:
            pe_durations = bounded(
                ph,
                len(targets),
                s.approvals_budget,
                lambda i: self.cons.private_endpoints.begin_create_or_update(
                    RG, f"pe2-{i}", pe_body(subnet, targets[i].alias)
                ).result(),
            )
        pending: list[tuple[str, str]] = []
        for svc in targets[: ph.ops]:
            conns = list(
                self.prov.private_link_services.list_private_endpoint_connections(RG, svc.name)
            )
            pending += [
                (svc.name, c.name or "")
                for c in conns
                if c.private_link_service_connection_state.status == "Pending"
            ]

        def approve(i: int) -> None:
            svc, conn = pending[i]
            r = self.prov.private_link_services.update_private_endpoint_connection(
                RG, svc, conn, APPROVE
            )
            assert r.private_link_service_connection_state.status == "Approved"

        with self.meter.phase("approval") as ph2:
            durations = bounded(ph2, len(pending), s.approvals_budget, approve)
        self.results["2_approval"] = {
            "pending_connections": len(pending),
            "pe_create": {**summary(pe_durations), **ph.as_dict()},
            **summary(durations),
            **ph2.as_dict(),
        }

    # phase 3 + 5 -------------------------------------------------------------------------

    def get_and_list_throughput(self) -> None:
        s = self.sizes
        name = self.services[0].name
        url = f"{self.url}{self.pbase}/privateLinkServices/{name}?api-version={API_VERSION}"
        token = self.credential.get_token(SCOPE).token
        ph = Phase("get_sdk")
        ph5 = Phase("get_httpx")
        ratios: list[float] = []
        with httpx.Client(verify=self.ca, headers={"Authorization": f"Bearer {token}"}) as http:
            http.get(url).raise_for_status()  # connect outside the measurement
            size = len(http.get(url).content)
            self.prov.private_link_services.get(RG, name)

            def raw_get(i: int) -> None:
                http.get(url).raise_for_status()

            def sdk_get(i: int) -> None:
                self.prov.private_link_services.get(RG, name)

            # Interleave SDK and httpx blocks so machine noise hits both alike.
            per_round = max(1, s.get_requests // GET_ROUNDS)
            for _ in range(GET_ROUNDS):
                with self.meter.more(ph):
                    a = bounded(ph, per_round, s.get_seconds / GET_ROUNDS, sdk_get)
                with self.meter.more(ph5):
                    b = bounded(ph5, per_round, s.get_seconds / GET_ROUNDS, raw_get)
                if a and b:
                    ratios.append((sum(a) / len(a)) / (sum(b) / len(b)))
        sdk = ph.as_dict()
        sdk["requests_per_s"] = round(ph.ops / ph.wall, 1)
        raw = ph5.as_dict()
        raw["requests_per_s"] = round(ph5.ops / ph5.wall, 1)
        raw["response_bytes"] = size
        self.results["3_get_throughput_sdk"] = sdk
        self.results["5_get_throughput_httpx"] = raw
        self.results["5_sdk_over_httpx_time_per_get"] = round(sorted(ratios)[len(ratios) // 2], 2)
        self.results["5_sdk_over_httpx_per_round"] = [round(r, 2) for r in ratios]

        counts: list[tuple[int, int]] = []

        def list_all(i: int) -> None:
            pages = items = 0
            for page in self.prov.private_link_services.list_by_subscription().by_page():
                pages += 1
                items += sum(1 for _ in page)
            counts.append((pages, items))

        with self.meter.phase("list") as ph3:
            bounded(ph3, s.list_rounds, s.list_seconds, list_all)
        pages = sum(p for p, _ in counts)
        items = sum(n for _, n in counts)
        self.results["3_list_by_subscription"] = {
            "rounds": ph3.ops,
            "pages_per_round": counts[0][0] if counts else 0,
            "items_per_round": counts[0][1] if counts else 0,
            "pages_per_s": round(pages / ph3.wall, 1),
            "items_per_s": round(items / ph3.wall, 1),
            "wall_s": round(ph3.wall, 3),
            "server_cpu_ms_per_page": round(ph3.server_cpu / max(pages, 1) * 1000, 2),
            "client_cpu_ms_per_page": round(ph3.client_cpu / max(pages, 1) * 1000, 2),
            "truncated": ph3.truncated,
        }

    # phase 4 -----------------------------------------------------------------------------

    def big_service(self) -> None:
        s = self.sizes
        frontend = f"{self.pbase}/loadBalancers/lbbig/frontendIPConfigurations/fe0"
        big = self.prov.private_link_services.begin_create_or_update(
            RG, "plsbig", pls_body(self.pbase, frontend, self.consumer_sub, "big.example")
        ).result()
        subnet = f"{self.cbase}/virtualNetworks/vc4/subnets/pe"

        def create(i: int) -> None:
            self.cons.private_endpoints.begin_create_or_update(
                RG, f"pe4-{i}", pe_body(subnet, big.alias)
            ).result()

        with self.meter.phase("big_create") as ph:
            created = bounded(ph, s.big_pes, s.big_create_budget, create, self.pid)
        out: dict[str, Any] = {
            "target_pes": s.big_pes,
            "create": {
                **summary(created),
                **tenths(created),
                **ph.as_dict(),
                "server_cpu_growth": tenths(ph.server_cpu_series),
            },
        }

        listed: list[list[str]] = []
        page_counts: list[int] = []

        def list_conns(i: int) -> None:
            names = []
            pager = self.prov.private_link_services.list_private_endpoint_connections(RG, "plsbig")
            pages = 0
            for page in pager.by_page():
                pages += 1
                names += [c.name or "" for c in page]
            listed.append(names)
            page_counts.append(pages)

        with self.meter.phase("big_list") as phl:
            list_durations = bounded(phl, s.big_list_rounds, 120.0, list_conns)
        names = listed[0] if listed else []
        pages = page_counts[0] if page_counts else 0
        out["list_connections"] = {
            "connections": len(names),
            "pages": pages,
            **summary(list_durations),
            **phl.as_dict(),
        }

        with self.meter.phase("big_get") as phg:
            bounded(phg, 50, 20.0, lambda i: self.prov.private_link_services.get(RG, "plsbig"))
        big_url = f"{self.url}{self.pbase}/privateLinkServices/plsbig?api-version={API_VERSION}"
        token = self.credential.get_token(SCOPE).token
        with httpx.Client(verify=self.ca, headers={"Authorization": f"Bearer {token}"}) as http:
            http.get(big_url).raise_for_status()
            with self.meter.phase("big_get_httpx") as phh:
                bounded(phh, 50, 20.0, lambda i: http.get(big_url).raise_for_status())
            big_size = len(http.get(big_url).content)
        out["get_big_pls"] = {**phg.as_dict(), "response_bytes": big_size}
        out["get_big_pls_httpx"] = phh.as_dict()

        def approve(i: int) -> None:
            r = self.prov.private_link_services.update_private_endpoint_connection(
                RG, "plsbig", names[i], APPROVE
            )
            assert r.private_link_service_connection_state.status == "Approved"

        with self.meter.phase("big_approve") as pha:
            approved = bounded(pha, len(names), s.big_approve_budget, approve, self.pid)
        out["approve"] = {
            **summary(approved),
            **tenths(approved),
            **pha.as_dict(),
            "server_cpu_growth": tenths(pha.server_cpu_series),
        }
        self.results["4_pls_with_many_pes"] = out


# --- authorization cost (--authorization) -----------------------------------------------

AUTHZ_API = "2022-04-01"
AUTH_JSON_OUT = ROOT / "docs" / "benchmarks-authorization.json"
#: Role assignments in the subscription at each level (the smallest level holds the two
#: measuring callers' own assignments only: the admin's Owner and the non-admin's role).
AUTH_LEVELS = (1, 100, 1000)
ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Network Contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7",
    "Private DNS Zone Contributor": "b12aa53e-6015-4669-85d0-8515ebb3ae7f",
}
OTHER_ROLES = ("Reader", "Contributor", "Network Contributor", "Private DNS Zone Contributor")
OTHER_GROUPS = 60  # resource groups the other principals' assignments are spread over
AUTH_KINDS = ("get", "list_rg", "list_sub", "put")
CALLERS = ("admin", "member")
BENCH_NS = uuid.UUID("5b1c0e57-6d8a-4c39-9a0e-2f4d6c1b7a10")  # names of assignments


@dataclass(frozen=True)
class AuthSizes:
    """Rounds per level (settings swap halfway) and the bounds of each timed block."""

    rounds: int
    block_requests: int
    block_seconds: float
    services: int  # PLSs in the resource group, listed by `list_rg` and `list_sub`
    per_principal: int  # assignments per other principal
    setup_budget: float  # seconds for populating one level on both servers


AUTH_FULL = AuthSizes(
    rounds=16,
    block_requests=60,
    block_seconds=1.5,
    services=8,
    per_principal=5,
    setup_budget=600.0,
)
AUTH_QUICK = AuthSizes(
    rounds=4,
    block_requests=40,
    block_seconds=0.5,
    services=8,
    per_principal=5,
    setup_budget=300.0,
)


def _token(http: httpx.Client, tenant: str, client_id: str, secret: str, scope: str) -> str:
    """A client-credentials token from the server's own token endpoint."""
    reply = http.post(
        f"/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
    )
    reply.raise_for_status()
    return str(reply.json()["access_token"])


def _expect(reply: httpx.Response, *codes: int) -> dict[str, Any]:
    if reply.status_code not in codes:
        raise RuntimeError(
            f"{reply.request.method} {reply.request.url.path} -> {reply.status_code}: "
            f"{reply.text[:500]}"
        )
    body: dict[str, Any] = reply.json() if reply.content else {}
    return body


class AuthServer:
    """One `privatelink serve` (SQLite, data plane off) on its own data directory.

    Restartable with authorization on or off (`config.json`), on a fresh port each time;
    the directory, its database and the principals in it survive restarts. Holds httpx
    clients (keep-alive, bearer tokens) for the tenant admin and for one member principal.
    """

    def __init__(self, root: Path, label: str) -> None:
        self.label = label
        self.tmp = root / label
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir(parents=True, mode=0o700)
        self.proc: subprocess.Popen[bytes] | None = None
        self.authorization = True
        self.creds: dict[str, str] = {}
        self.member: dict[str, str] = {}  # client_id, secret, object_id
        self.http: dict[str, httpx.Client] = {}
        self.graph: httpx.Client | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def subscription(self) -> str:
        return self.creds["subscription_id"]

    def start(self, authorization: bool) -> None:
        self.authorization = authorization
        (self.data_dir / "config.json").write_text(json.dumps({"authorization": authorization}))
        (self.data_dir / "credentials.json").unlink(missing_ok=True)
        port = free_port()
        cmd = [sys.executable, "-m", "privatelink.cli.main", "serve", "--dataplane", "off"]
        cmd += ["--data-dir", str(self.data_dir), "--port", str(port)]
        with (self.tmp / "server.log").open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            self.creds = wait_ready(self.proc, self.data_dir, port)
        except Exception:
            tail = (self.tmp / "server.log").read_text(errors="replace")[-4000:]
            print(f"--- server log ({self.label}, tail) ---\n{tail}", file=sys.stderr)
            raise
        self._connect()

    def _client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.creds["url"],
            verify=self.creds["ca_file"],
            headers=headers,
            timeout=60,
            trust_env=False,
        )

    def _connect(self) -> None:
        self.close_clients()
        c = self.creds
        with self._client() as anon:
            admin = _token(anon, c["tenant_id"], c["client_id"], c["client_secret"], SCOPE)
            graph = _token(
                anon,
                c["tenant_id"],
                c["client_id"],
                c["client_secret"],
                f"{c['url']}/graph/.default",
            )
            member = (
                _token(anon, c["tenant_id"], self.member["client_id"], self.member["secret"], SCOPE)
                if self.member
                else None
            )
        self.http["admin"] = self._client(admin)
        if member:
            self.http["member"] = self._client(member)
        self.graph = self._client(graph)

    def close_clients(self) -> None:
        for client in [*self.http.values(), *([self.graph] if self.graph else [])]:
            client.close()
        self.http = {}
        self.graph = None

    def stop(self) -> None:
        self.close_clients()
        stop_process(self.proc, timeout=15)
        self.proc = None

    # setup through the real API ------------------------------------------------------------

    def new_principal(self, name: str, secret: bool = False) -> dict[str, str]:
        """An application and its service principal through Graph (and a password)."""
        assert self.graph is not None
        app = _expect(self.graph.post("/graph/v1.0/applications", json={"displayName": name}), 201)
        sp = _expect(
            self.graph.post("/graph/v1.0/servicePrincipals", json={"appId": app["appId"]}), 201
        )
        out = {"client_id": app["appId"], "object_id": sp["id"]}
        if secret:
            pw = _expect(
                self.graph.post(
                    f"/graph/v1.0/applications/{app['id']}/addPassword",
                    json={"passwordCredential": {"displayName": "bench"}},
                ),
                200,
            )
            out["secret"] = pw["secretText"]
        return out

    def assign(self, name: str, scope: str, role: str, principal_id: str) -> None:
        sub = self.subscription
        body = {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
                f"roleDefinitions/{ROLES[role]}",
                "principalId": principal_id,
                "principalType": "ServicePrincipal",
            }
        }
        url = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
        _expect(self.http["admin"].put(url, params={"api-version": AUTHZ_API}, json=body), 201)

    def count_assignments(self) -> int:
        """Role assignments at or below the subscription, as the API lists them (paged)."""
        url: str | None = (
            f"/subscriptions/{self.subscription}/providers/Microsoft.Authorization/"
            f"roleAssignments?api-version={AUTHZ_API}"
        )
        n = 0
        while url:
            body = _expect(self.http["admin"].get(url), 200)
            n += len(body.get("value", []))
            url = body.get("nextLink")
        return n

    def put_network(self, path: str, body: dict[str, Any]) -> None:
        reply = self.http["admin"].put(path, params={"api-version": API_VERSION}, json=body)
        got = _expect(reply, 200, 201)
        state = got.get("properties", {}).get("provisioningState")
        if state != "Succeeded":
            raise RuntimeError(f"PUT {path}: provisioningState {state}")


class AuthBench:
    """Authorization on vs off, side by side: two servers with the same data, alternated."""

    def __init__(self, root: Path, sizes: AuthSizes) -> None:
        self.sizes = sizes
        # Which server has authorization on swaps halfway through each level.
        self.servers = [AuthServer(root, "a"), AuthServer(root, "b")]
        self.assignments = 0  # in the subscription, the same on both servers
        self.others = 0  # other principals created (per server)
        self.plan: Iterator[tuple[int, str, str]] = self._other_assignments()
        self.principals: dict[int, list[str]] = {}  # other principal -> object id per server
        self.levels: list[dict[str, Any]] = []
        self.aa: dict[str, Any] = {}
        self.inproc: dict[str, Any] = {}
        self.root = root
        self.setup: dict[str, Any] = {}

    def close(self) -> None:
        for server in self.servers:
            server.stop()

    # setup -------------------------------------------------------------------------------

    def start(self) -> None:
        t0 = time.perf_counter()
        self.servers[0].start(authorization=True)
        self.servers[1].start(authorization=False)
        for server in self.servers:
            self._network(server)
            server.member = server.new_principal("bench-member", secret=True)
            server.assign(
                self._name("member-nc"),
                self._rg(server, RG),
                "Network Contributor",
                server.member["object_id"],
            )
            server._connect()  # now with the member's token too
        # The admin's Owner at the subscription (made at first start) and the member's
        # Network Contributor at the resource group.
        self.assignments = 2
        for server in self.servers:
            got = server.count_assignments()
            if got != self.assignments:
                raise RuntimeError(f"{server.label}: {got} assignments, expected 2")
        self.setup = {"wall_s": round(time.perf_counter() - t0, 1)}

    def _name(self, label: str) -> str:
        return str(uuid.uuid5(BENCH_NS, label))

    @staticmethod
    def _rg(server: AuthServer, group: str) -> str:
        return f"/subscriptions/{server.subscription}/resourceGroups/{group}"

    def _network(self, server: AuthServer) -> None:
        """A VNet, two load balancers and `services` + 1 private link services in RG."""
        base = network_base(server.subscription)
        n = self.sizes.services
        server.put_network(
            f"{base}/virtualNetworks/vp",
            vnet_body("10.0.0.0/16", {"fe": ("10.0.0.0/20", False), "nat": ("10.0.16.0/20", True)}),
        )
        server.put_network(f"{base}/loadBalancers/lb0", lb_body(base, "lb0", n))
        server.put_network(f"{base}/loadBalancers/lb1", lb_body(base, "lb1", 1))
        for i in range(n):
            fe = f"{base}/loadBalancers/lb0/frontendIPConfigurations/fe{i}"
            body = pls_body(base, fe, server.subscription, f"s{i}.example")
            server.put_network(f"{base}/privateLinkServices/pls{i}", body)
        server.put_network(f"{base}/privateLinkServices/plsput", self._put_body(server))

    @staticmethod
    def _put_body(server: AuthServer) -> dict[str, Any]:
        base = network_base(server.subscription)
        fe = f"{base}/loadBalancers/lb1/frontendIPConfigurations/fe0"
        return pls_body(base, fe, server.subscription, "put.example")

    def _other_assignments(self) -> Iterator[tuple[int, str, str]]:
        """(principal index, role, scope): several roles per principal at distinct scopes.

        Scopes are relative: "" is the subscription, else a resource group name.
        """
        per = self.sizes.per_principal
        p = 0
        while True:
            for j in range(per):
                scope = "" if j == 0 and p % 10 == 0 else f"rg-{(p * per + j) % OTHER_GROUPS:02d}"
                yield p, OTHER_ROLES[(p + j) % len(OTHER_ROLES)], scope
            p += 1

    def populate(self, requested: int) -> dict[str, Any]:
        """Add role assignments on both servers until the subscription holds `requested`.

        Level 1 holds 2: the member needs its own role to be measured at all. From level
        100 on, the admin has 5 (Owner on the subscription, 4 at resource groups) and the
        member 3 (all at resource groups); the rest belong to other principals made
        through Graph, 5 each at the subscription or resource groups.
        """
        level = max(requested, self.assignments)
        t0 = time.perf_counter()
        deadline = t0 + self.sizes.setup_budget
        if self.assignments < level and self.assignments == 2:
            # A realistic handful of each caller's own (beyond the two of the first level).
            own = [
                ("admin", "Network Contributor", RG),
                ("admin", "Reader", "rg-00"),
                ("admin", "Contributor", "rg-01"),
                ("admin", "Private DNS Zone Contributor", "rg-02"),
                ("member", "Reader", "rg-03"),
                ("member", "Private DNS Zone Contributor", "rg-04"),
            ]
            for who, role, group in own:
                for server in self.servers:
                    oid = self._admin_oid(server) if who == "admin" else server.member["object_id"]
                    server.assign(
                        self._name(f"{who}-{role}-{group}"), self._rg(server, group), role, oid
                    )
                self.assignments += 1
        principals = self.principals
        while self.assignments < level:
            if time.perf_counter() >= deadline:
                raise RuntimeError(f"populating {level} assignments exceeded its budget")
            p, role, group = next(self.plan)
            if p >= self.others:
                principals[p] = [
                    s.new_principal(f"bench-other-{p}")["object_id"] for s in self.servers
                ]
                self.others = p + 1
            for k, server in enumerate(self.servers):
                scope = (
                    self._rg(server, group) if group else f"/subscriptions/{server.subscription}"
                )
                server.assign(
                    self._name(f"other-{p}-{role}-{group}"), scope, role, principals[p][k]
                )
            self.assignments += 1
        counts = [s.count_assignments() for s in self.servers]
        if any(c != level for c in counts):
            raise RuntimeError(f"assignments in the subscription {counts}, expected {level}")
        return {
            "level": requested,
            "assignments": level,
            "other_principals": self.others,
            "populate_wall_s": round(time.perf_counter() - t0, 1),
        }

    @staticmethod
    def _admin_oid(server: AuthServer) -> str:
        """The admin's object id (from its token: credentials.json does not name it)."""
        if "object_id" in server.creds:
            return server.creds["object_id"]
        token = server.http["admin"].headers["Authorization"].split()[1]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        server.creds["object_id"] = str(claims["oid"])
        return server.creds["object_id"]

    # measurement -------------------------------------------------------------------------

    def _request(self, server: AuthServer, kind: str) -> tuple[str, str, dict[str, Any] | None]:
        return self._request_of(server.subscription, kind, self._put_body(server))

    @staticmethod
    def _request_of(
        subscription: str, kind: str, put_body: dict[str, Any] | None
    ) -> tuple[str, str, dict[str, Any] | None]:
        """Method, URL (path and query) and body of one request kind."""
        base = network_base(subscription)
        q = f"?api-version={API_VERSION}"
        if kind == "get":
            return "GET", f"{base}/privateLinkServices/pls0{q}", None
        if kind == "list_rg":
            return "GET", f"{base}/privateLinkServices{q}", None
        if kind == "list_sub":
            sub = f"/subscriptions/{subscription}"
            return "GET", f"{sub}/providers/Microsoft.Network/privateLinkServices{q}", None
        return "PUT", f"{base}/privateLinkServices/plsput{q}", put_body

    def _op(self, server: AuthServer, caller: str, kind: str) -> Callable[[], None]:
        """One request of `kind` as `caller` on `server`, checked (status, list length)."""
        method, url, body = self._request(server, kind)
        http = server.http[caller]
        expected = (200, 201) if method == "PUT" else (200,)
        items = self.sizes.services + 1 if kind.startswith("list") else None  # + plsput

        def op() -> None:
            reply = http.request(method, url, json=body)
            if reply.status_code not in expected:
                raise RuntimeError(f"{caller} {kind} -> {reply.status_code}: {reply.text[:300]}")
            if items is not None and len(reply.json()["value"]) != items:
                raise RuntimeError(f"{caller} {kind}: {len(reply.json()['value'])} items")

        return op

    def block(
        self,
        caller: str,
        kind: str,
        count: int,
        on_first: bool,
        pair: tuple[AuthServer, AuthServer] | None = None,
    ) -> dict[str, Any]:
        """`count` request pairs, one on each server in turn (bounded in time).

        The two servers' requests alternate one by one (which goes first alternates too), so
        load from elsewhere on the machine hits both alike. Each server's CPU over the
        block is its own: it only works while serving its requests. `pair` overrides which
        server counts as "on" and which as "off" (the A/A control).
        """
        if pair is None:
            on = next(x for x in self.servers if x.authorization)
            off = next(x for x in self.servers if not x.authorization)
        else:
            on, off = pair
        ops = {"on": self._op(on, caller, kind), "off": self._op(off, caller, kind)}
        durations: dict[str, list[float]] = {"on": [], "off": []}
        cpu0 = {"on": process_cpu(on.pid), "off": process_cpu(off.pid)}
        deadline = time.perf_counter() + self.sizes.block_seconds
        truncated = False
        for i in range(count):
            if time.perf_counter() >= deadline:
                truncated = True
                break
            for side in ("on", "off") if (i % 2 == 0) == on_first else ("off", "on"):
                t0 = time.perf_counter()
                ops[side]()
                durations[side].append(time.perf_counter() - t0)
        return {
            side: {
                "durations": durations[side],
                "server_cpu": process_cpu(server.pid) - cpu0[side],
                "truncated": truncated,
            }
            for side, server in (("on", on), ("off", off))
        } | {"on_server": on.label}

    def check_enforcement(self) -> None:
        """The member is refused outside its resource group exactly where authorization is on."""
        for server in self.servers:
            url = (
                f"{self._rg(server, 'elsewhere')}/providers/Microsoft.Network/virtualNetworks/"
                f"nope?api-version={API_VERSION}"
            )
            status = server.http["member"].get(url).status_code
            want = 403 if server.authorization else 404
            if status != want:
                raise RuntimeError(
                    f"{server.label} (authorization {server.authorization}): member got {status}, "
                    f"expected {want}"
                )

    def swap(self) -> None:
        """Restart both servers with the authorization setting exchanged."""
        for server in self.servers:
            server.stop()
        for server in self.servers:
            server.start(authorization=not server.authorization)
        self.check_enforcement()

    def measure_level(self, level: int) -> dict[str, Any]:
        """Populate to `level`, then alternate on/off; both servers swap settings halfway."""
        s = self.sizes
        info = self.populate(level)
        log(f"level {level}: populated in {info['populate_wall_s']} s ({self.others} others)")
        self.check_enforcement()
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        swapped_at = s.rounds // 2
        for r in range(s.rounds):
            if r == swapped_at:
                self.swap()
            if r in (0, swapped_at):
                for caller in CALLERS:  # warm: caches, connections, Access objects
                    for kind in AUTH_KINDS:
                        self.block(caller, kind, 5, True)
            for caller in CALLERS:
                for kind in AUTH_KINDS:
                    pair = self.block(caller, kind, s.block_requests, r % 2 == 0)
                    samples.setdefault((caller, kind), []).append(pair)
        by_kind = {f"{c}/{k}": auth_ratios(v) for (c, k), v in samples.items()}
        work = authorization_work(self.servers[0], self.sizes.services + 1)
        ratios = [x["ratio_p50_median"] for x in by_kind.values()]
        return {
            **info,
            "rounds": s.rounds,
            "median_over_kinds": round(statistics.median(ratios), 3),
            "max_over_kinds": round(max(ratios), 3),
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "by_kind": by_kind,
            "in_process_us": work,
        }

    def control(self) -> dict[str, Any]:
        """A/A: both servers with authorization on, measured like the levels (a over b).

        Shows the resolution of the method: the ratios two identical servers give.
        """
        t0 = time.perf_counter()
        for server in self.servers:
            if not server.authorization:
                server.stop()
                server.start(authorization=True)
        a, b = self.servers
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for caller in CALLERS:
            for kind in AUTH_KINDS:
                self.block(caller, kind, 5, True, (a, b))
        for r in range(self.sizes.rounds):
            for caller in CALLERS:
                for kind in AUTH_KINDS:
                    got = self.block(caller, kind, self.sizes.block_requests, r % 2 == 0, (a, b))
                    samples.setdefault((caller, kind), []).append(got)
        by_kind = {f"{c}/{k}": auth_ratios(v) for (c, k), v in samples.items()}
        ratios = [x["ratio_p50_median"] for x in by_kind.values()]
        return {
            "what": "both servers with authorization on; ratios are server a / server b",
            "assignments": self.assignments,
            "rounds": self.sizes.rounds,
            "median_over_kinds": round(statistics.median(ratios), 3),
            "max_over_kinds": round(max(ratios), 3),
            "min_over_kinds": round(min(ratios), 3),
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "wall_s": round(time.perf_counter() - t0, 1),
            "by_kind": by_kind,
        }

    def run(self) -> None:
        """Every level, then the A/A control, then the in-process comparison."""
        self.start()
        log(f"servers up, networks built, member assigned ({self.setup['wall_s']} s)")
        for level in AUTH_LEVELS:
            t0 = time.perf_counter()
            result = self.measure_level(level)
            result["level_wall_s"] = round(time.perf_counter() - t0, 1)
            self.levels.append(result)
            log(
                f"level {level}: on/off p50 median over kinds {result['median_over_kinds']}, "
                f"max {result['max_over_kinds']} ({result['level_wall_s']} s)"
            )
        self.aa = self.control()
        log(
            f"A/A control: a/b p50 median over kinds {self.aa['median_over_kinds']}, "
            f"range {self.aa['min_over_kinds']}-{self.aa['max_over_kinds']}"
        )
        for server in self.servers:
            server.stop()
        self.inproc = asyncio.run(in_process_ab(self.servers[0], self.root, self.sizes))
        log(
            f"in process: on/off p50 median over kinds {self.inproc['median_over_kinds']}, "
            f"max {self.inproc['max_over_kinds']}"
        )


def _server_build() -> Callable[..., Any]:
    """`privatelink.server.build`, imported without bench/ on the path.

    Run as a script, bench/ comes first on `sys.path`, and its dns.py would shadow
    dnspython, which `privatelink.server` imports.
    """
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    shadow = sys.modules.get("dns")
    if shadow is not None and Path(getattr(shadow, "__file__", "") or "").parent == here:
        del sys.modules["dns"]
    from privatelink.server import build

    return build


def _timed(dependency: Callable[[Request], Any], spent: list[Any]) -> Callable[..., Any]:
    """A FastAPI dependency that runs `dependency` and adds its wall time to `spent`."""

    async def timed(request: Request) -> None:
        t0 = time.perf_counter()
        try:
            await dependency(request)
        finally:
            spent[0] += time.perf_counter() - t0
            spent[1] += 1

    return timed


async def in_process_ab(server: AuthServer, root: Path, sizes: AuthSizes) -> dict[str, Any]:
    """The same request pairs on two apps in this process (httpx's ASGITransport).

    Both apps are built by `privatelink.server.build` on copies of one stopped server's
    data directory (the last level's assignments), one with authorization on and one off.
    No TLS, sockets or scheduling between processes: far less noise than over HTTPS, but
    this process's CPU time includes the client's (httpx) share, which dilutes the ratio.
    """
    build = _server_build()
    from privatelink.api.authorize import authorize

    c = server.creds
    apps: dict[str, Any] = {}
    # Time spent in the `authorize` dependency itself: [seconds, calls] per side.
    in_authorize = {"on": [0.0, 0], "off": [0.0, 0]}
    for side in ("on", "off"):
        copy = root / f"inproc-{side}"
        shutil.copytree(server.data_dir, copy)
        (copy / "config.json").write_text(json.dumps({"authorization": side == "on"}))
        apps[side] = build(copy, "127.0.0.1", 1)  # the port only names token audiences
        apps[side].app.dependency_overrides[authorize] = _timed(authorize, in_authorize[side])
    base = "https://127.0.0.1:1"
    clients: dict[tuple[str, str], httpx.AsyncClient] = {}
    secrets = {
        "admin": (c["client_id"], c["client_secret"]),
        "member": (server.member["client_id"], server.member["secret"]),
    }
    put_body = AuthBench._put_body(server)
    try:
        for side, built in apps.items():
            transport = httpx.ASGITransport(app=built.app)
            async with httpx.AsyncClient(transport=transport, base_url=base) as anon:
                for caller, (client_id, secret) in secrets.items():
                    reply = await anon.post(
                        f"/{c['tenant_id']}/oauth2/v2.0/token",
                        data={
                            "grant_type": "client_credentials",
                            "client_id": client_id,
                            "client_secret": secret,
                            "scope": SCOPE,
                        },
                    )
                    reply.raise_for_status()
                    clients[(side, caller)] = httpx.AsyncClient(
                        transport=transport,
                        base_url=base,
                        headers={"Authorization": f"Bearer {reply.json()['access_token']}"},
                    )

        async def one(side: str, caller: str, kind: str) -> tuple[float, float]:
            method, url, body = AuthBench._request_of(server.subscription, kind, put_body)
            t0, c0 = time.perf_counter(), time.process_time()
            reply = await clients[(side, caller)].request(method, url, json=body)
            took = time.perf_counter() - t0, time.process_time() - c0
            if reply.status_code not in (200, 201):
                raise RuntimeError(
                    f"in process {side} {caller} {kind}: {reply.status_code} {reply.text[:300]}"
                )
            return took

        for caller in CALLERS:  # warm
            for kind in AUTH_KINDS:
                for side in ("on", "off"):
                    for _ in range(10):
                        await one(side, caller, kind)
        for spent in in_authorize.values():
            spent[0], spent[1] = 0.0, 0
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        rounds = max(3, sizes.rounds // 3)
        for r in range(rounds):
            for caller in CALLERS:
                for kind in AUTH_KINDS:
                    got: dict[str, Any] = {
                        side: {"durations": [], "server_cpu": 0.0, "truncated": False}
                        for side in ("on", "off")
                    }
                    deadline = time.perf_counter() + sizes.block_seconds * 2
                    for i in range(sizes.block_requests * 2):
                        if time.perf_counter() >= deadline:
                            got["on"]["truncated"] = got["off"]["truncated"] = True
                            break
                        for side in ("on", "off") if (i + r) % 2 == 0 else ("off", "on"):
                            wall, cpu = await one(side, caller, kind)
                            got[side]["durations"].append(wall)
                            got[side]["server_cpu"] += cpu
                    got["on_server"] = "in-process"
                    samples.setdefault((caller, kind), []).append(got)
                    for side, spent in in_authorize.items():
                        got[side]["authorize_s"] = spent[0]
                        got[side]["authorize_calls"] = spent[1]
                        spent[0], spent[1] = 0.0, 0
    finally:
        for client in clients.values():
            await client.aclose()
        for built in apps.values():
            built.repo.engine.dispose()
    by_kind = {f"{c}/{k}": auth_ratios(v) for (c, k), v in samples.items()}
    for (c, k), pairs in samples.items():
        for side in ("on", "off"):
            spent = sum(p[side]["authorize_s"] for p in pairs)
            calls = sum(p[side]["authorize_calls"] for p in pairs)
            by_kind[f"{c}/{k}"][f"{side}_authorize_us_per_req"] = round(spent / calls * 1e6, 1)
    ratios = [x["ratio_p50_median"] for x in by_kind.values()]
    return {
        "what": "two apps in this process (ASGITransport) on copies of the last level's data; "
        "'server_cpu' here is this process's CPU time (server and httpx client); "
        "'authorize_us_per_req': wall time inside the `authorize` dependency",
        "rounds": rounds,
        "median_over_kinds": round(statistics.median(ratios), 3),
        "max_over_kinds": round(max(ratios), 3),
        "by_kind": by_kind,
    }


def _per_call_us(fn: Callable[[], object], n: int, repeat: int = 5) -> float:
    """Median over `repeat` runs of the mean time of `fn()` over `n` calls, in µs."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return round(statistics.median(runs), 2)


def authorization_work(server: AuthServer, items: int) -> dict[str, Any]:
    """The authorization work of each request, timed in this process on the server's data.

    Opens the server's SQLite database (WAL: concurrent reads are safe) with the server's
    own `SqlRbacStore` and times what `api/authorize.py` adds when authorization is on:
    `access_for` (cached, and rebuilt as after an RBAC write) and `check` of each request
    kind (`describe` runs with authorization off too); for a list the caller may not read
    as a whole, also the per-item `allows` the route's `readable` makes (`items` items).
    """
    from sqlalchemy import create_engine

    from privatelink.core.principal import Principal
    from privatelink.store.rbac import SqlRbacStore

    c = server.creds
    who = {
        "admin": Principal(c["tenant_id"], AuthBench._admin_oid(server), c["client_id"]),
        "member": Principal(c["tenant_id"], server.member["object_id"], server.member["client_id"]),
    }
    engine = create_engine(f"sqlite:///{server.data_dir / 'privatelink.db'}")
    try:
        store = SqlRbacStore(engine)
        return {
            caller: _caller_work(store, principal, server.subscription, items)
            for caller, principal in who.items()
        }
    finally:
        engine.dispose()


def _caller_work(store: Any, principal: Any, subscription: str, items: int) -> dict[str, Any]:
    from privatelink.api.authorize import check
    from privatelink.core.actions import describe

    access = store.access_for(principal)

    def rebuilt() -> None:
        store.invalidate()
        store.access_for(principal)

    row: dict[str, Any] = {
        "own_assignments": len(access.assignments),
        "access_for_cached_us": _per_call_us(lambda: store.access_for(principal), 5000),
        "access_for_rebuilt_us": _per_call_us(rebuilt, 200),
    }
    access = store.access_for(principal)
    base = network_base(subscription)
    for kind in AUTH_KINDS:
        method, url, _ = AuthBench._request_of(subscription, kind, None)
        path = url.split("?", 1)[0]
        described = describe(method, path)
        assert described is not None, path
        check(access, described)
        row[f"check_{kind}_us"] = _per_call_us(lambda d=described: check(access, d), 5000)
        row[f"describe_{kind}_us"] = _per_call_us(lambda m=method, p=path: describe(m, p), 5000)
        if kind == "get":
            # The first request after an RBAC write: a new Access, nothing memoized.
            def first(d: Any = described) -> None:
                store.invalidate()
                check(store.access_for(principal), d)

            row["rebuilt_and_first_check_get_us"] = _per_call_us(first, 200)
        if described.collection and not access.allows(described.action, described.scope):
            ids = [f"{base}/privateLinkServices/pls{i}" for i in range(items)]
            action = described.item_action

            def each(ids: list[str] = ids, action: str = action) -> None:
                for item in ids:
                    access.allows(action, item)

            row[f"{kind}_item_checks_us"] = _per_call_us(each, 2000)
    return row


def auth_ratios(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """On/off ratios per round (p50 latency, mean latency) and pooled server CPU."""
    p50 = []
    mean = []
    for pair in pairs:
        on, off = pair["on"]["durations"], pair["off"]["durations"]
        p50.append(statistics.median(on) / statistics.median(off))
        mean.append((sum(on) / len(on)) / (sum(off) / len(off)))

    def pooled(side: str) -> tuple[float, int]:
        cpu = sum(p[side]["server_cpu"] for p in pairs)
        ops = sum(len(p[side]["durations"]) for p in pairs)
        return cpu, ops

    (con, non), (coff, noff) = pooled("on"), pooled("off")

    def ms(side: str) -> float:
        return round(
            statistics.median(statistics.median(p[side]["durations"]) for p in pairs) * 1e3, 3
        )

    return {
        "ratio_p50_median": round(statistics.median(p50), 3),
        "ratio_p50_min": round(min(p50), 3),
        "ratio_p50_max": round(max(p50), 3),
        "ratio_p50_per_round": [round(x, 3) for x in p50],
        "ratio_mean_median": round(statistics.median(mean), 3),
        "server_cpu_ratio_pooled": round((con / non) / (coff / noff), 3) if coff else None,
        "on_p50_ms": ms("on"),
        "off_p50_ms": ms("off"),
        "on_server_cpu_ms_per_req": round(con / non * 1e3, 3),
        "off_server_cpu_ms_per_req": round(coff / noff * 1e3, 3),
        "requests_per_block": [len(p["on"]["durations"]) for p in pairs],
        "truncated_blocks": sum(p["on"]["truncated"] + p["off"]["truncated"] for p in pairs),
        "on_server_per_round": [p["on_server"] for p in pairs],
    }


def print_auth_table(results: dict[str, Any]) -> None:
    """Print the on/off ratios per level and kind, and the in-process timings."""
    rows = []
    aa = results["results"].get("aa_control") or {}
    inproc = results["results"].get("in_process") or {}
    levels = [
        *results["results"]["levels"],
        *([{**aa, "label": "A/A (a/b)"}] if aa else []),
        *([{**inproc, "label": "in process"}] if inproc else []),
    ]
    for level in levels:
        for name, r in level["by_kind"].items():
            rows.append(
                (
                    level.get("label") or str(level["assignments"]),
                    name,
                    f"{r['ratio_p50_median']:.3f}",
                    f"{r['ratio_p50_min']:.3f}-{r['ratio_p50_max']:.3f}",
                    f"{r['server_cpu_ratio_pooled']:.3f}" if r["server_cpu_ratio_pooled"] else "-",
                    f"{r['on_p50_ms']:.2f} / {r['off_p50_ms']:.2f}",
                    f"{r['on_authorize_us_per_req']:.0f} / {r['off_authorize_us_per_req']:.0f}"
                    if "on_authorize_us_per_req" in r
                    else "",
                )
            )
    head = (
        "assignments",
        "caller/request",
        "on/off p50",
        "per-round range",
        "CPU on/off",
        "p50 ms on / off",
        "in authorize µs",
    )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        for row in (head, *rows):
            print("  ".join(f"{c:>16}" for c in row))
        return
    table = Table(title="privatelink: authorization on / off, per request (median of rounds)")
    for h in head:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    console = Console(width=160)
    console.print(table)
    work = Table(title="authorization work per request, in process (µs)")
    for h in (
        "assignments",
        "caller",
        "access_for cached",
        "rebuilt",
        "check get/list_rg/list_sub/put",
        "per-item checks",
    ):
        work.add_column(h)
    for level in results["results"]["levels"]:
        for caller, w in level["in_process_us"].items():
            checks = "/".join(f"{w[f'check_{k}_us']:.1f}" for k in AUTH_KINDS)
            work.add_row(
                str(level["assignments"]),
                caller,
                f"{w['access_for_cached_us']:.1f}",
                f"{w['access_for_rebuilt_us']:.0f}",
                checks,
                f"{w.get('list_sub_item_checks_us', 0):.1f}",
            )
    console.print(work)


def run_authorization(args: argparse.Namespace, argv: list[str] | None) -> int:
    """`--authorization`: the cost of RBAC enforcement per request, on vs off."""
    sizes = AUTH_QUICK if args.quick else AUTH_FULL
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="pl-bench-authz-"))
    bench = AuthBench(root, sizes)
    try:
        bench.run()
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/control_plane.py", *(argv or sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "store": "sqlite",
        "dataplane": "off",
        "machine": machine(),
        "versions": versions(),
        "source": source_revision(),
        "sizes": vars(sizes),
        "total_wall_s": round(time.perf_counter() - started, 1),
        "results": {
            "setup": bench.setup,
            "levels": bench.levels,
            "aa_control": bench.aa,
            "in_process": bench.inproc,
        },
    }
    print_auth_table(results)
    print(f"total wall time {results['total_wall_s']} s", file=sys.stderr)
    if args.write:
        AUTH_JSON_OUT.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {AUTH_JSON_OUT}", file=sys.stderr)
    return 0


# --- API speed: the real server next to a minimal FastAPI app (--api-speed) ----------------

API_JSON_OUT = ROOT / "docs" / "benchmarks-api-speed.json"
MINIMAL_APP = ROOT / "bench" / "api_minimal.py"
READY_SECONDS = 30.0
#: uvicorn's loop and HTTP implementation as `privatelink serve` sets them (cli/main.py);
#: the baseline gets the same. Checked at run time against the libraries each process
#: has loaded (`_event_loop_of`).
SERVE_LOOP = "auto"
SERVE_HTTP = "h11"
#: wrk's Lua hooks: a bearer token on every request, and the summary as one JSON line.
WRK_SCRIPT = """
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PL_BENCH_TOKEN")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'PLBENCH {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class SpeedSizes:
    """Seconds per wrk run, rounds (each runs both servers, order swapped every round)."""

    seconds: int
    rounds: int
    latency_seconds: int
    latency_rounds: int
    connections: int = 16
    connections_pending: int = 4  # private endpoints on the PLS (half of them approved)


SPEED_FULL = SpeedSizes(seconds=8, rounds=5, latency_seconds=5, latency_rounds=3)
SPEED_QUICK = SpeedSizes(seconds=4, rounds=2, latency_seconds=3, latency_rounds=1)


def _pin(pid: int, cpus: set[int] | None) -> None:
    """Restrict every thread of a process we started to `cpus` (threads it makes later
    inherit the creating thread's mask). None: leave it alone."""
    if cpus is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def _event_loop_of(pid: int) -> dict[str, bool]:
    """Whether a process has uvloop / httptools loaded (what uvicorn's "auto" picked)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return {}
    return {"uvloop": "uvloop" in maps, "httptools": "httptools" in maps}


class ApiSpeed:
    """The real server and the minimal app, driven alternately by wrk."""

    def __init__(self, server: RunningServer, root: Path, sizes: SpeedSizes, pin: bool) -> None:
        self.server = server
        self.root = root
        self.sizes = sizes
        c = server.creds
        self.creds = c
        self.http = httpx.Client(
            base_url=c["url"], verify=c["ca_file"], timeout=60, trust_env=False
        )
        self.token = _token(self.http, c["tenant_id"], c["client_id"], c["client_secret"], SCOPE)
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        two = (os.cpu_count() or 1) >= 2
        # wrk on CPU 0, each server on CPU 1: a server gets one core to itself (it is one
        # Python process; the GIL keeps it near one core anyway) and the client's CPU is
        # not taken from it.
        self.client_cpus: set[int] | None = {0} if pin and two else None
        self.server_cpus: set[int] | None = {1} if pin and two else None
        self.minimal: subprocess.Popen[bytes] | None = None
        self.minimal_url = ""
        self.path = ""
        self.body = b""

    def close(self) -> None:
        self.http.close()
        stop_process(self.minimal, timeout=15)

    # the provider world ------------------------------------------------------------------

    def _put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        got = _expect(self.http.put(path, params={"api-version": API_VERSION}, json=body), 200, 201)
        state = got.get("properties", {}).get("provisioningState")
        if state != "Succeeded":
            raise RuntimeError(f"PUT {path}: provisioningState {state}")
        return got

    def build_world(self) -> None:
        """A PLS on a Standard LB with `connections_pending` private endpoints (half approved)."""
        provider = self.creds["subscription_id"]
        consumer = str(uuid.uuid4())  # created on first use by the tenant admin
        pbase, cbase = network_base(provider), network_base(consumer)
        self._put(
            f"{pbase}/virtualNetworks/vp",
            vnet_body("10.0.0.0/16", {"fe": ("10.0.0.0/24", False), "nat": ("10.0.1.0/24", True)}),
        )
        self._put(f"{pbase}/loadBalancers/lb", lb_body(pbase, "lb", 1))
        frontend = f"{pbase}/loadBalancers/lb/frontendIPConfigurations/fe0"
        self.path = f"{pbase}/privateLinkServices/pls"
        pls = self._put(self.path, pls_body(pbase, frontend, consumer, "api.example"))
        alias = pls["properties"]["alias"]
        self._put(
            f"{cbase}/virtualNetworks/vc", vnet_body("10.2.0.0/16", {"pe": ("10.2.0.0/24", False)})
        )
        for i in range(self.sizes.connections_pending):
            self._put(
                f"{cbase}/privateEndpoints/pe{i}",
                pe_body(f"{cbase}/virtualNetworks/vc/subnets/pe", alias),
            )
        conns = _expect(
            self.http.get(
                f"{self.path}/privateEndpointConnections", params={"api-version": API_VERSION}
            ),
            200,
        )["value"]
        for conn in conns[: len(conns) // 2]:
            body = {
                "properties": {
                    "privateLinkServiceConnectionState": {
                        "status": "Approved",
                        "description": "approved by bench",
                    }
                }
            }
            reply = self.http.put(
                f"{self.path}/privateEndpointConnections/{conn['name']}",
                params={"api-version": API_VERSION},
                json=body,
            )
            _expect(reply, 200)
        reply = self.http.get(self.path, params={"api-version": API_VERSION})
        _expect(reply, 200)
        self.body = reply.content
        got = json.loads(self.body)
        if len(got["properties"]["privateEndpointConnections"]) != len(conns):
            raise RuntimeError("the PLS does not list its connections")

    # the baseline ------------------------------------------------------------------------

    def start_minimal(self, loop: str, http: str) -> None:
        """The minimal app in its own process, same cert and key, answering `self.body`."""
        body_file = self.root / "body.json"
        body_file.write_bytes(self.body)
        pki = self.server.data_dir
        port = free_port()
        cmd = [sys.executable, str(MINIMAL_APP), "--port", str(port), "--path", self.path]
        cmd += ["--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server-key.pem")]
        cmd += ["--body", str(body_file), "--loop", loop, "--http", http]
        with (self.root / "minimal.log").open("ab") as out:
            self.minimal = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.minimal_url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_SECONDS
        with httpx.Client(verify=self.creds["ca_file"], trust_env=False, timeout=5) as probe:
            while time.monotonic() < deadline:
                if self.minimal.poll() is not None:
                    raise RuntimeError(f"the minimal app exited ({self.minimal.returncode})")
                try:
                    reply = probe.get(f"{self.minimal_url}{self.path}")
                    if reply.status_code == 200:
                        if reply.content != self.body:
                            raise RuntimeError("the minimal app answers other bytes")
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise TimeoutError("the minimal app did not start")

    # load --------------------------------------------------------------------------------

    def wrk(self, base: str, pid: int, connections: int, seconds: int) -> dict[str, Any]:
        """One wrk run against `base` (keep-alive, `connections` clients, a bearer token)."""
        script = self.root / "wrk.lua"
        script.write_text(WRK_SCRIPT)
        url = f"{base}{self.path}?api-version={API_VERSION}"
        threads = min(2, connections)
        argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s"]
        argv += ["--timeout", "10s", "-s", str(script), url]
        if self.client_cpus is not None:
            argv = ["taskset", "-c", ",".join(map(str, sorted(self.client_cpus))), *argv]
        _pin(pid, self.server_cpus)
        env = {**os.environ, "PL_BENCH_TOKEN": self.token}
        cpu0, w0 = process_cpu(pid), time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            out, err = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        wall = time.perf_counter() - w0
        server_cpu = process_cpu(pid) - cpu0
        # The child's CPU (wrk, via taskset's exec): rusage of our reaped children.
        line = next((x for x in out.decode().splitlines() if x.startswith("PLBENCH ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()[-500:]}")
        r = json.loads(line.removeprefix("PLBENCH "))
        n = max(1, r["requests"])
        errors = sum(
            r[k]
            for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
        )
        return {
            "connections": connections,
            "requests": r["requests"],
            "errors": errors,
            "req_per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
            "p50_ms": round(r["p50_us"] / 1000, 2),
            "p90_ms": round(r["p90_us"] / 1000, 2),
            "p99_ms": round(r["p99_us"] / 1000, 2),
            "max_ms": round(r["max_us"] / 1000, 2),
            "mean_ms": round(r["mean_us"] / 1000, 2),
            "bytes_per_response": round(r["bytes"] / n),
            "server_cpu_ms_per_req": round(server_cpu / n * 1000, 3),
            "server_cpu_share": round(server_cpu / wall, 2),
            "wall_s": round(wall, 2),
        }

    def run_pair(self, connections: int, seconds: int, order: int) -> dict[str, Any]:
        """Both servers, one after the other (`order` 0: real first)."""
        who = [("real", self.creds["url"], self.server.proc.pid)]
        assert self.minimal is not None
        who.append(("minimal", self.minimal_url, self.minimal.pid))
        if order % 2:
            who.reverse()
        out: dict[str, Any] = {}
        for label, base, pid in who:
            c0 = _children_cpu()
            out[label] = self.wrk(base, pid, connections, seconds)
            spent = _children_cpu() - c0
            out[label]["client_cpu_ms_per_req"] = round(
                spent / max(1, out[label]["requests"]) * 1000, 3
            )
            out[label]["client_cpu_share"] = round(spent / out[label]["wall_s"], 2)
            if out[label]["errors"]:
                raise RuntimeError(f"{label}: {out[label]['errors']} failed requests: {out[label]}")
            log(
                f"  {label:7} c={connections:2}: {out[label]['req_per_s']:7.1f} req/s  "
                f"p50 {out[label]['p50_ms']:6.2f} ms  p99 {out[label]['p99_ms']:6.2f} ms  "
                f"server CPU {out[label]['server_cpu_share']:.2f}, "
                f"client CPU {out[label]['client_cpu_share']:.2f}"
            )
        out["ratio_req_per_s"] = round(out["real"]["req_per_s"] / out["minimal"]["req_per_s"], 3)
        return out

    def profile(self, seconds: int, out_file: Path) -> dict[str, Any]:
        """py-spy on the real server during one extra 16-client run (not a measured one)."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            return {"skipped": "py-spy is not installed (pip install py-spy; profiling only)"}
        pid = self.server.proc.pid
        argv = [spy, "record", "--pid", str(pid), "--duration", str(seconds + 1)]
        argv += ["--rate", "500", "--format", "raw", "--gil", "--nonblocking", "-o", str(out_file)]
        if self.client_cpus is not None:
            argv = ["taskset", "-c", ",".join(map(str, sorted(self.client_cpus))), *argv]
        spy_proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self.wrk(self.creds["url"], pid, self.sizes.connections, seconds)
            _, err = spy_proc.communicate(timeout=seconds + 60)
        finally:
            stop_process(spy_proc)
        if not out_file.exists():
            return {"skipped": f"py-spy wrote nothing: {err.decode()[-300:]}"}
        return {"file": str(out_file), **collapsed_top(out_file.read_text())}


def _children_cpu() -> float:
    """User+system CPU seconds of this process's reaped children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: Parts of a request, each the samples with any of these frames on the stack (py-spy's
#: names, `function (dir/file.py)`); they overlap where one part calls another.
COMPONENTS = {
    "bearer token (TokenIssuer.verify)": ("TokenIssuer.verify (identity/tokens.py)",),
    "route matching (FastAPI)": (
        "APIRouter.matches (fastapi/routing.py)",
        "_IncludedRouter._match (fastapi/routing.py)",
    ),
    "dependencies and parameters (FastAPI)": ("solve_dependencies (dependencies/utils.py)",),
    "thread-pool hop": ("run_in_threadpool (starlette/concurrency.py)",),
    "store read (SQLAlchemy, decode)": (
        "SqlView.get (store/sql.py)",
        "ControlPlane.read (privatelink/service.py)",
    ),
    "render (resource to JSON-ready dict)": ("render (api/private_link_service.py)",),
    "JSON response": ("ok (api/arm.py)",),
    "throttle (ArmThrottle)": ("Throttle.charge (core/throttle.py)",),
    "TLS (ssl.SSLObject)": ("SSLObject.read (ssl.py)", "SSLObject.write (ssl.py)"),
    "HTTP/1.1 (h11)": (
        "H11Protocol.handle_events (http/h11_impl.py)",
        "RequestResponseCycle.send (http/h11_impl.py)",
    ),
}


def collapsed_top(text: str, n: int = 40) -> dict[str, Any]:
    """Self and inclusive shares of functions in py-spy's collapsed stacks ("a;b;c count"),
    and of the `COMPONENTS` of a request."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    parts = dict.fromkeys(COMPONENTS, 0)
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + k
        seen = set(frames)
        for frame in seen:
            inclusive[frame] = inclusive.get(frame, 0) + k
        for part, names in COMPONENTS.items():
            if not seen.isdisjoint(names):
                parts[part] += k

    def top(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
        return [(name, round(100 * k / max(total, 1), 1)) for name, k in ranked]

    return {
        "samples": total,
        "components_pct": {p: round(100 * k / max(total, 1), 1) for p, k in parts.items()},
        "self_pct": top(own),
        "inclusive_pct": top(inclusive),
    }


def _frame_name(frame: str) -> str:
    """`func (path/to/mod.py:123)` -> `func (mod.py)`: lines apart, the same function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def run_api_speed(args: argparse.Namespace, argv: list[str] | None) -> int:
    """`--api-speed`: the real server's GET next to a minimal FastAPI app, side by side."""
    if shutil.which("wrk") is None:
        print(
            "--api-speed needs wrk (a C load generator, so that the client is not the "
            "bottleneck on 2 cores): apt-get install -y wrk. Skipped.",
            file=sys.stderr,
        )
        return 2
    sizes = SPEED_QUICK if args.quick else SPEED_FULL
    pin = not args.no_pin
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="pl-bench-api-"))
    results: dict[str, Any] = {}
    try:
        with serve(None, "off") as server:
            speed = ApiSpeed(server, root, sizes, pin)
            try:
                log("building the provider world ...")
                speed.build_world()
                speed.start_minimal(args.loop or SERVE_LOOP, SERVE_HTTP)
                loops = {
                    "real": _event_loop_of(server.proc.pid),
                    "minimal": _event_loop_of(speed.minimal.pid if speed.minimal else 0),
                }
                if loops["real"] != loops["minimal"]:
                    raise RuntimeError(f"the two servers run different loops: {loops}")
                log(f"warm-up; loop/http libraries loaded: {loops['real']}")
                speed.run_pair(sizes.connections, 1, 0)
                speed.run_pair(1, 1, 1)
                rounds = []
                for i in range(sizes.rounds):
                    log(f"round {i + 1}/{sizes.rounds}, {sizes.connections} clients")
                    rounds.append(speed.run_pair(sizes.connections, sizes.seconds, i))
                single = []
                for i in range(sizes.latency_rounds):
                    log(f"latency round {i + 1}/{sizes.latency_rounds}, 1 client")
                    single.append(speed.run_pair(1, sizes.latency_seconds, i))
                profile = {}
                if args.profile:
                    log("profiling the real server (py-spy, one extra run) ...")
                    profile = speed.profile(sizes.seconds, Path(args.profile))
                results = {
                    "world": {
                        "path": speed.path,
                        "response_bytes": len(speed.body),
                        "connections_on_pls": sizes.connections_pending,
                    },
                    "libraries_loaded": loops,
                    "pinned": {
                        "client_cpus": sorted(speed.client_cpus or []),
                        "server_cpus": sorted(speed.server_cpus or []),
                    },
                    "concurrent": _speed_summary(rounds),
                    "single_client": _speed_summary(single),
                    "profile": profile,
                }
            finally:
                speed.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/control_plane.py", *(argv or sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "store": "sqlite",
        "dataplane": "off",
        "machine": machine(),
        "versions": {**versions(), **_server_versions()},
        "source": {**source_revision(), "pythonpath": os.environ.get("PYTHONPATH", "")},
        "label": args.label,
        "sizes": vars(sizes),
        "total_wall_s": round(time.perf_counter() - started, 1),
        "results": results,
    }
    print_speed_table(out)
    if args.write:
        # One file, one entry per label: "before" and "after" runs sit side by side.
        kept = json.loads(API_JSON_OUT.read_text()) if API_JSON_OUT.exists() else {}
        kept = kept if isinstance(kept, dict) else {}
        runs = kept.setdefault("runs", {})
        runs[args.label] = out
        API_JSON_OUT.write_text(json.dumps(kept, indent=2) + "\n")
        print(f"wrote {API_JSON_OUT} (runs: {', '.join(runs)})", file=sys.stderr)
    return 0


def _server_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("fastapi", "starlette", "uvicorn", "h11", "uvloop", "httptools", "pydantic"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
        out["wrk"] = (done.stdout + done.stderr).split()[1]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        out["wrk"] = "?"
    return out


def _speed_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds for each server, and the real/minimal ratios per round."""
    out: dict[str, Any] = {"rounds": rounds}
    for label in ("real", "minimal"):
        runs = [r[label] for r in rounds]
        out[label] = {
            key: round(statistics.median(run[key] for run in runs), 3)
            for key in (
                "req_per_s",
                "p50_ms",
                "p99_ms",
                "server_cpu_ms_per_req",
                "server_cpu_share",
                "client_cpu_ms_per_req",
                "client_cpu_share",
                "bytes_per_response",
            )
        }
    ratios = [r["ratio_req_per_s"] for r in rounds]
    out["ratio_req_per_s_median"] = round(statistics.median(ratios), 3)
    out["ratio_req_per_s_per_round"] = ratios
    out["ratio_server_cpu_per_req"] = round(
        out["minimal"]["server_cpu_ms_per_req"] / out["real"]["server_cpu_ms_per_req"], 3
    )
    return out


def print_speed_table(results: dict[str, Any]) -> None:
    """The headline figures of --api-speed."""
    r = results["results"]
    for key, title in (("concurrent", "16 clients"), ("single_client", "1 client")):
        s = r[key]
        print(f"{title}:")
        for label in ("real", "minimal"):
            d = s[label]
            print(
                f"  {label:8} {d['req_per_s']:8.1f} req/s  p50 {d['p50_ms']:7.2f} ms  "
                f"p99 {d['p99_ms']:7.2f} ms  server CPU {d['server_cpu_ms_per_req']:.3f} ms/req "
                f"({d['server_cpu_share']:.2f} cores)  client CPU "
                f"{d['client_cpu_ms_per_req']:.3f} ms/req ({d['client_cpu_share']:.2f} cores)"
            )
        print(
            f"  real/minimal req/s: x{s['ratio_req_per_s_median']} "
            f"(per round {s['ratio_req_per_s_per_round']})"
        )
    prof = r.get("profile") or {}
    if prof.get("components_pct"):
        print(f"profile of the real server ({prof['samples']} samples), parts of a request:")
        for name, pct in prof["components_pct"].items():
            print(f"  {pct:5.1f}%  {name}")
    if prof.get("self_pct"):
        print(f"profile of the real server ({prof['samples']} samples), top self time:")
        for name, pct in prof["self_pct"][:15]:
            print(f"  {pct:5.1f}%  {name}")
        print("top inclusive:")
        for name, pct in prof["inclusive_pct"][:40]:
            print(f"  {pct:5.1f}%  {name}")
    print(f"total wall time {results['total_wall_s']} s", file=sys.stderr)


# --- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def source_revision() -> dict[str, Any]:
    """The git commit of the checkout, and whether src/ differs from it (read-only git)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "src_modified": bool(git("status", "--porcelain", "--", "src")),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("privatelink", "azure-mgmt-network", "azure-core", "azure-identity", "httpx"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "?"
    return out


def print_table(results: dict[str, Any]) -> None:
    """Print the headline figures (rich if available, else plain text)."""
    r = results["results"]
    rows: list[tuple[str, str]] = []

    def lat(d: dict[str, Any]) -> str:
        if not d.get("n"):
            return "n=0"
        return (
            f"n={d['n']}  p50 {d['p50_ms']:.1f} ms  p99 {d['p99_ms']:.1f} ms  "
            f"mean {d['mean_ms']:.1f} ms"
        )

    def cpu(d: dict[str, Any]) -> str:
        trunc = "  TRUNCATED" if d.get("truncated") else ""
        return (
            f"server CPU {d['server_cpu_ms_per_op']:.1f} ms/op, "
            f"client CPU {d['client_cpu_ms_per_op']:.1f} ms/op{trunc}"
        )

    def growth(d: dict[str, Any]) -> str:
        if "first10_mean_ms" not in d:
            return ""
        text = (
            f"first 10% {d['first10_mean_ms']:.1f} ms, last 10% {d['last10_mean_ms']:.1f} ms "
            f"(x{d['last_over_first']})"
        )
        cpu = d.get("server_cpu_growth") or {}
        if "first10_mean_ms" in cpu:
            text += (
                f"; server CPU {cpu['first10_mean_ms']:.1f} -> {cpu['last10_mean_ms']:.1f} ms "
                f"(x{cpu['last_over_first']})"
            )
        return text

    p1 = r["1_pls_put_to_succeeded"]
    rows += [("1. PLS PUT->Succeeded", lat(p1)), ("", cpu(p1)), ("", growth(p1))]
    p2 = r["2_approval"]
    rows += [
        ("2. PE create (setup, small PLS)", f"mean {p2['pe_create']['wall_ms_per_op']:.1f} ms"),
        ("2. approve connection", lat(p2)),
        ("", cpu(p2)),
    ]
    g = r["3_get_throughput_sdk"]
    h = r["5_get_throughput_httpx"]
    ls = r["3_list_by_subscription"]
    rows += [
        ("3. GET PLS (SDK)", f"{g['requests_per_s']} req/s ({g['wall_ms_per_op']:.2f} ms/req)"),
        ("", cpu(g)),
        (
            "3. list_by_subscription",
            f"{ls['pages_per_s']} pages/s, {ls['items_per_s']} items/s "
            f"({ls['pages_per_round']} pages, {ls['items_per_round']} items per round)",
        ),
        (
            "5. GET PLS (raw httpx)",
            f"{h['requests_per_s']} req/s ({h['wall_ms_per_op']:.2f} ms/req, "
            f"{h['response_bytes']} bytes)",
        ),
        ("", cpu(h)),
        ("5. SDK/httpx time per GET", f"x{r['5_sdk_over_httpx_time_per_get']}"),
    ]
    b = r["4_pls_with_many_pes"]
    c, lc, a, gb = b["create"], b["list_connections"], b["approve"], b["get_big_pls"]
    rows += [
        (f"4. create {c['ops']}/{b['target_pes']} PEs", f"total {c['wall_s']:.1f} s; {lat(c)}"),
        ("", cpu(c)),
        ("", growth(c)),
        (
            "4. list all connections",
            f"{lc['connections']} in {lc['pages']} pages: {lat(lc)}",
        ),
        (
            "4. GET the big PLS (SDK)",
            f"{gb['wall_ms_per_op']:.1f} ms/req, {gb['response_bytes']} bytes; {cpu(gb)}",
        ),
        (
            "4. GET the big PLS (httpx)",
            f"{b['get_big_pls_httpx']['wall_ms_per_op']:.1f} ms/req; {cpu(b['get_big_pls_httpx'])}",
        ),
        (f"4. approve {a['ops']} connections", f"total {a['wall_s']:.1f} s; {lat(a)}"),
        ("", cpu(a)),
        ("", growth(a)),
    ]
    rows = [row for row in rows if row[1]]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        for k, v in rows:
            print(f"{k:36} {v}")
        return
    table = Table(title=f"privatelink control plane ({results['mode']}, {results['store']})")
    table.add_column("measurement")
    table.add_column("result")
    for k, v in rows:
        table.add_row(k, v)
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N (30 PLS, 100 PEs)")
    parser.add_argument("--db-url", default=None, help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument(
        "--dataplane",
        choices=["off", "auto", "on"],
        default="off",
        help="passed to `privatelink serve` (default off: this measures the control plane; "
        "with the data plane on, every PUT waits for kernel state and leaves namespaces "
        "that are swept at the end)",
    )
    parser.add_argument(
        "--write", action="store_true", help=f"write JSON results to {JSON_OUT.relative_to(ROOT)}"
    )
    parser.add_argument(
        "--authorization",
        action="store_true",
        help="instead of the phases above: the cost of RBAC enforcement per request, two "
        "servers (authorization on / off) side by side with 1, 100 and 1000 role assignments "
        f"(--write: {AUTH_JSON_OUT.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--api-speed",
        action="store_true",
        help="instead of the phases above: GET req/s and latency of the real server next to a "
        "minimal FastAPI+uvicorn TLS app answering the same JSON, driven by wrk, 16 and 1 "
        f"keep-alive clients (--write: {API_JSON_OUT.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="--api-speed: leave wrk and the servers to the scheduler (default: wrk on CPU 0, "
        "the server under load on CPU 1)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        default=None,
        help="--api-speed: also profile the real server with py-spy during one extra run "
        "(collapsed stacks to FILE; its top functions go into the results)",
    )
    parser.add_argument(
        "--loop",
        default=None,
        help=f"--api-speed: the baseline's uvicorn loop (default {SERVE_LOOP!r}, what serve "
        "uses); for a run of another source tree (PYTHONPATH) whose serve uses another loop",
    )
    parser.add_argument(
        "--label",
        default="current",
        help="--api-speed: the name of this run in the JSON file (e.g. before, after)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))

    # A SIGTERM (e.g. a timeout) unwinds like Ctrl-C, so the server is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.api_speed:
        if args.db_url or args.dataplane != "off" or args.authorization:
            parser.error("--api-speed runs its own SQLite server with the data plane off")
        return run_api_speed(args, argv)
    if args.authorization:
        if args.db_url or args.dataplane != "off":
            parser.error("--authorization runs its own SQLite servers with the data plane off")
        return run_authorization(args, argv)
    started = time.perf_counter()
    with serve(args.db_url, args.dataplane) as server:
        bench = Bench(server, sizes)
        steps = [
            ("setup", bench.setup_networks),
            ("1. PLS PUT latency", bench.pls_put_latency),
            ("2. approval latency", bench.approval_latency),
            ("3/5. GET and list throughput", bench.get_and_list_throughput),
            ("4. PLS with many PEs", bench.big_service),
        ]
        try:
            for label, step in steps:
                t0 = time.perf_counter()
                print(f"running {label} ...", file=sys.stderr, flush=True)
                step()
                print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        finally:
            bench.close()

    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/control_plane.py", *(argv or sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "store": "sqlite" if not args.db_url else args.db_url.split(":", 1)[0],
        "dataplane": args.dataplane,
        "machine": machine(),
        "versions": versions(),
        "source": source_revision(),
        "sizes": vars(sizes),
        "total_wall_s": round(time.perf_counter() - started, 1),
        "results": bench.results,
    }
    print_table(results)
    print(f"total wall time {results['total_wall_s']} s", file=sys.stderr)
    if args.write:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {JSON_OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
