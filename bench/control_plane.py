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

Usage:
    python bench/control_plane.py [--quick] [--db-url URL] [--dataplane off|auto|on] [--write]

`--write` stores the results as JSON in docs/benchmarks-control-plane.json. With
`--db-url` (e.g. PostgreSQL) the database should be empty; subscription ids are random
per run, so leftovers of earlier runs do not collide but do make tables bigger.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
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
    network_base,
    process_cpu,
    stop_process,
    vnet_body,
    wait_ready,
)

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


def summary(durations: list[float]) -> dict[str, Any]:
    """Count, p50, p99, mean, min, max in milliseconds."""
    if not durations:
        return {"n": 0}
    ms = [d * 1000 for d in durations]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
    }


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
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))

    # A SIGTERM (e.g. a timeout) unwinds like Ctrl-C, so the server is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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
