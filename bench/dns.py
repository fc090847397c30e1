"""Private DNS benchmark: queries per second and answer latency from inside a VNet.

One run, side by side, from a VM (NIC namespace) of a VNet whose private DNS zone holds
1 record, then `--records` (default 1000) A records:

- privatelink: the VNet's resolver at 168.63.129.16:53 (`privatelink serve`'s DNS
  server, dnspython), reached through the VNet's hub like any VM would;
- dnsmasq: the same names from a hosts file, on 168.63.129.16:5353 in the same hub
  namespace (a C resolver as the yardstick: same path, same records).

For each: the highest rate dnsperf sustains (`-c 4 -q 64`, UDP) with p50/p99 answer
latency under that load, and latency with one query outstanding (unloaded). Rounds are
interleaved and the median is kept; ratios privatelink / dnsmasq and 1000 / 1 records
are reported. Also: from the start of a record PUT to the first answer a VM gets for it.

Needs root, dnsperf and dnsmasq (`apt-get install -y dnsperf dnsmasq-base`). Every loop
is bounded in count and time; the namespaces go with the server (`cleanup`).

`--rebuild-only` (no root, no tools): in one process, a `DnsServer` on 127.0.0.1 over a
store whose linked zone holds `--rebuild-records` (2000) A records, next to other VNets
with zones of their own; from a connection approval, a rejection and a record change to
the first reply that reflects it (and from the server's `mark_dirty()` to that reply).
The full run measures this too.

Usage:
    python bench/dns.py [--records N] [--seconds S] [--rounds R] [--write]
    python bench/dns.py --rebuild-only [--rebuild-records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import (
    LOCATION,
    ROOT,
    credential,
    log,
    machine,
    netns_run,
    network_base,
    percentile,
    process_cpu,
    serve,
    source_version,
    stop_process,
    vnet_body,
)

from privatelink.dataplane import names

JSON_OUT = ROOT / "docs" / "benchmarks-dns.json"
SCOPE = "https://management.azure.com/.default"
NET_API = "2024-05-01"
DNS_API = "2024-06-01"
ZONE = "bench.example"
RESOLVER = names.AZURE_PLATFORM_IP
DNSMASQ_PORT = 5353
SUBSCRIPTION = "5eb0a1b2-0000-4000-8000-00000000d05e"
CLIENTS, OUTSTANDING = 4, 64  # dnsperf load shape
UNLOADED_QUERIES = 3000
MIXED_QUERIES = 400_000  # more than any server answers in one run: each name asked once
READY_BUDGET = 30.0


def record_ip(i: int) -> str:
    return f"10.1.{2 + i // 250}.{1 + i % 250}"


class Api:
    """Raw ARM calls with the server's client credentials (bounded retries: none)."""

    def __init__(self, creds: dict[str, str]) -> None:
        token = credential(creds).get_token(SCOPE).token
        self.http = httpx.Client(
            base_url=creds["url"],
            verify=creds["ca_file"],
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            trust_env=False,
        )

    def put(self, path: str, body: dict[str, Any], version: str = NET_API) -> dict[str, Any]:
        resp = self.http.put(path, params={"api-version": version}, json=body)
        if resp.status_code >= 400:
            raise RuntimeError(f"PUT {path}: {resp.status_code} {resp.text[:300]}")
        out: dict[str, Any] = resp.json()
        return out

    def get(self, path: str, version: str = NET_API) -> dict[str, Any]:
        resp = self.http.get(path, params={"api-version": version})
        resp.raise_for_status()
        out: dict[str, Any] = resp.json()
        return out


class Bench:
    def __init__(self, api: Api, prefix: str, tmp: Path, seconds: int, server_pid: int) -> None:
        self.api = api
        self.server_pid = server_pid
        self.prefix = prefix
        self.tmp = tmp
        self.seconds = seconds
        self.base = network_base(SUBSCRIPTION)
        self.zone = f"{self.base}/privateDnsZones/{ZONE}"
        self.vnet = f"{self.base}/virtualNetworks/vnet"
        self.records = 0
        self.dnsmasq: subprocess.Popen[bytes] | None = None

    # --- topology -------------------------------------------------------------------------

    def build(self) -> None:
        self.api.put(self.vnet, vnet_body("10.1.0.0/16", {"vms": ("10.1.1.0/24", False)}))
        nic = self.api.put(
            f"{self.base}/networkInterfaces/client",
            {
                "location": LOCATION,
                "properties": {
                    "ipConfigurations": [
                        {"name": "ip", "properties": {"subnet": {"id": f"{self.vnet}/subnets/vms"}}}
                    ]
                },
            },
        )
        self.client_ns = names.nic_netns(self.prefix, nic["id"])
        self.hub_ns = names.hub_netns(self.prefix, self.vnet)
        self.api.put(self.zone, {"location": "global"}, DNS_API)
        self.api.put(
            f"{self.zone}/virtualNetworkLinks/vnet",
            {"location": "global", "properties": {"virtualNetwork": {"id": self.vnet}}},
            DNS_API,
        )

    def add_records(self, total: int, workers: int = 8) -> float:
        """PUT A records r<i> until the zone holds `total`; seconds taken."""
        started = time.monotonic()

        def put(i: int) -> None:
            body = {"properties": {"ttl": 300, "aRecords": [{"ipv4Address": record_ip(i)}]}}
            self.api.put(f"{self.zone}/A/r{i:04d}", body, DNS_API)

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(put, range(self.records, total)))
        self.records = total
        return time.monotonic() - started

    def resolve(self, name: str, port: int = 53) -> str:
        """One A query from the client VM (dnspython inside the namespace)."""
        code = (
            "import sys, dns.message, dns.query\n"
            "q = dns.message.make_query(sys.argv[1], 'A')\n"
            "r = dns.query.udp(q, sys.argv[2], port=int(sys.argv[3]), timeout=1)\n"
            "print(dns.rcode.to_text(r.rcode()), *[i.address for a in r.answer for i in a])\n"
        )
        proc = netns_run(self.client_ns, [sys.executable, "-c", code, name, RESOLVER, str(port)])
        return (proc.stdout or proc.stderr).strip()

    def wait_served(self, name: str, wanted: str, port: int = 53) -> float:
        """Seconds until `name` resolves to `wanted` from the client VM (bounded)."""
        started = time.monotonic()
        while time.monotonic() - started < READY_BUDGET:
            if self.resolve(name, port) == f"NOERROR {wanted}":
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"{name} not served as {wanted} within {READY_BUDGET} s")

    def start_dnsmasq(self) -> None:
        """dnsmasq with the same records, on :5353 in the hub (restarted for a new size)."""
        stop_process(self.dnsmasq)
        hosts = self.tmp / "hosts"
        hosts.write_text("".join(f"{record_ip(i)} r{i:04d}.{ZONE}\n" for i in range(self.records)))
        argv = ["ip", "netns", "exec", self.hub_ns, "dnsmasq", "--keep-in-foreground"]
        argv += ["--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", f"--local=/{ZONE}/"]
        argv += [f"--listen-address={RESOLVER}", "--bind-interfaces", f"--port={DNSMASQ_PORT}"]
        argv += ["--cache-size=10000", "--user=root", "--pid-file", "--log-facility=-"]
        self.dnsmasq = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_served(
            f"r{self.records - 1:04d}.{ZONE}", record_ip(self.records - 1), DNSMASQ_PORT
        )

    # --- load -----------------------------------------------------------------------------

    def queries(self, kind: str) -> Path:
        path = self.tmp / f"queries-{kind}-{self.records}.txt"
        if kind == "hit":
            lines = [f"r{i:04d}.{ZONE} A" for i in range(self.records)]
        elif kind == "nxdomain-unique":
            # Every name asked once: no reply cache helps, this is the resolver's own work.
            lines = [f"gone{i}.{ZONE} A" for i in range(MIXED_QUERIES)]
        elif kind == "hit-mixed-case":
            # The same names in random letter case (as resolvers doing 0x20 send them): the
            # bytes differ, names compare case-insensitively.
            rng = random.Random(7)
            lines = [
                "".join(
                    c.upper() if rng.random() < 0.5 else c
                    for c in f"r{i % self.records:04d}.{ZONE}"
                )
                + " A"
                for i in range(MIXED_QUERIES)
            ]
        elif kind == "nxdomain":
            lines = [f"missing{i}.{ZONE} A" for i in range(1000)]
        else:
            lines = [f"host{i}.example.com A" for i in range(1000)]
        path.write_text("\n".join(lines) + "\n")
        return path

    def dnsperf(self, port: int, kind: str, seconds: int) -> dict[str, Any]:
        """One dnsperf run from the client VM; qps, rcodes and per-answer latency."""
        argv = ["dnsperf", "-s", RESOLVER, "-p", str(port), "-d", str(self.queries(kind))]
        argv += ["-c", str(CLIENTS), "-q", str(OUTSTANDING), "-t", "2", "-v", "-l", str(seconds)]
        owner = self.server_pid if port == 53 else (self.dnsmasq.pid if self.dnsmasq else 0)
        cpu0, t0 = process_cpu(owner), time.monotonic()
        proc = netns_run(self.client_ns, argv, timeout=seconds + 60)
        wall = time.monotonic() - t0
        latencies: list[float] = []
        rcodes: dict[str, int] = {}
        qps = lost = None
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[0] == ">":
                rcodes[parts[1]] = rcodes.get(parts[1], 0) + 1
                with contextlib.suppress(ValueError):
                    latencies.append(float(parts[-1]) * 1000)
            elif line.strip().startswith("Queries per second:"):
                qps = float(line.split(":")[1])
            elif line.strip().startswith("Queries lost:"):
                lost = int(line.split(":")[1].split()[0])
        out: dict[str, Any] = {
            "qps": round(qps) if qps is not None else None,
            "lost": lost,
            "rcodes": rcodes,
            "answers": len(latencies),
            "server_cores": round((process_cpu(owner) - cpu0) / wall, 2) if wall else None,
        }
        if latencies:
            out["p50_ms"] = round(statistics.median(latencies), 3)
            out["p99_ms"] = round(percentile(latencies, 99), 3)
        if proc.returncode != 0 or qps is None:
            out["error"] = (proc.stderr or proc.stdout).strip()[-300:]
        return out

    def unloaded(self, port: int) -> dict[str, Any]:
        """Latency with one query outstanding (one client), bounded in count and time."""
        argv = ["dnsperf", "-s", RESOLVER, "-p", str(port), "-d", str(self.queries("hit"))]
        argv += ["-c", "1", "-q", "1", "-t", "2", "-v", "-l", "3"]
        proc = netns_run(self.client_ns, argv, timeout=60)
        latencies = [
            float(line.split()[-1]) * 1000
            for line in proc.stdout.splitlines()[: UNLOADED_QUERIES * 2]
            if line.startswith("> ") and len(line.split()) >= 5
        ][:UNLOADED_QUERIES]
        if not latencies:
            return {"error": (proc.stderr or proc.stdout).strip()[-300:]}
        return {
            "answers": len(latencies),
            "p50_ms": round(statistics.median(latencies), 3),
            "p99_ms": round(percentile(latencies, 99), 3),
        }

    def measure(self, rounds: int) -> dict[str, Any]:
        """Both servers, interleaved rounds; medians."""
        runs: dict[str, list[dict[str, Any]]] = {"privatelink": [], "dnsmasq": []}
        for r in range(rounds):
            order = ["privatelink", "dnsmasq"] if r % 2 == 0 else ["dnsmasq", "privatelink"]
            for name in order:
                port = 53 if name == "privatelink" else DNSMASQ_PORT
                run = self.dnsperf(port, "hit", self.seconds)
                run["unloaded"] = self.unloaded(port)
                runs[name].append(run)
                log(
                    f"  {self.records} records r{r} {name:11} {run.get('qps')} q/s  "
                    f"p50 {run.get('p50_ms')} ms p99 {run.get('p99_ms')} ms  lost {run.get('lost')}"
                    f"  unloaded p50 {run['unloaded'].get('p50_ms')} ms  "
                    f"server {run.get('server_cores')} cores {run.get('error', '')}"
                )
        summary: dict[str, Any] = {}
        for name, items in runs.items():

            def med(key: str, items: list[dict[str, Any]] = items) -> float | None:
                vals = [x[key] for x in items if x.get(key) is not None]
                return statistics.median(vals) if vals else None

            def med_u(key: str, items: list[dict[str, Any]] = items) -> float | None:
                vals = [x["unloaded"][key] for x in items if x["unloaded"].get(key) is not None]
                return statistics.median(vals) if vals else None

            summary[name] = {
                "qps": med("qps"),
                "p50_ms": med("p50_ms"),
                "p99_ms": med("p99_ms"),
                "unloaded_p50_ms": med_u("p50_ms"),
                "unloaded_p99_ms": med_u("p99_ms"),
                "server_cores": med("server_cores"),
                "lost": [x.get("lost") for x in items],
                "spread_qps": [x.get("qps") for x in items],
            }
        return {"records": self.records, "runs": runs, "summary": summary}

    def other_answers(self, rounds: int) -> dict[str, Any]:
        """At full load, both servers, interleaved rounds (median kept): names in random
        case, names asked once each (NXDOMAIN, no reply cache helps), NXDOMAIN for 1000
        missing names, and REFUSED (outside any linked zone)."""
        runs: dict[str, list[dict[str, Any]]] = {}
        servers = [("privatelink", 53), ("dnsmasq", DNSMASQ_PORT)]
        for r in range(rounds):
            for kind in ("hit-mixed-case", "nxdomain-unique", "nxdomain", "refused"):
                for name, port in servers if r % 2 == 0 else servers[::-1]:
                    run = self.dnsperf(port, kind, max(2, self.seconds // 2))
                    runs.setdefault(f"{kind} {name}", []).append(run)
                    log(f"  r{r} {kind} {name}: {run.get('qps')} q/s {run.get('rcodes')}")
        out: dict[str, Any] = {}
        for label, items in runs.items():
            rates = [x["qps"] for x in items if x.get("qps") is not None]
            out[label] = {
                "qps": statistics.median(rates) if rates else None,
                "spread_qps": [x.get("qps") for x in items],
                "lost": [x.get("lost") for x in items],
                "rcodes": items[-1].get("rcodes"),
                "server_cores": statistics.median(
                    x["server_cores"] for x in items if x.get("server_cores") is not None
                )
                if any(x.get("server_cores") is not None for x in items)
                else None,
            }
        return out

    def record_change_to_answer(self) -> dict[str, Any]:
        """PUT a new record while a VM polls for it every ~2 ms: PUT start -> first answer."""
        name, addr = f"fresh{self.records}", "10.1.250.250"
        argv = ["ip", "netns", "exec", self.client_ns, sys.executable, "-c", POLLER]
        poller = subprocess.Popen(
            [*argv, f"{name}.{ZONE}", RESOLVER, addr, str(READY_BUDGET)],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # the poller is up and getting NXDOMAIN
        started = time.time()
        body = {"properties": {"ttl": 10, "aRecords": [{"ipv4Address": addr}]}}
        self.api.put(f"{self.zone}/A/{name}", body, DNS_API)
        put_ms = (time.time() - started) * 1000
        out, _ = poller.communicate(timeout=READY_BUDGET + 10)
        seen = float(out.strip() or "nan")
        return {
            "records": self.records,
            "put_ms": round(put_ms, 1),
            "served_ms": round((seen - started) * 1000, 1),
        }


# Polls one name every ~2 ms from inside a VM; prints the wall time of the first answer.
POLLER = """
import sys, time, dns.message, dns.query, dns.exception
name, server, wanted, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
end = time.monotonic() + budget
while time.monotonic() < end:
    try:
        r = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=0.5)
        if any(i.address == wanted for a in r.answer for i in a):
            print(time.time())
            break
    except dns.exception.DNSException:
        pass
    time.sleep(0.002)
"""


def import_dnspython() -> None:
    """Make `import dns` find dnspython: this file is named dns.py, and a script's own
    directory comes first on sys.path (so the server's modules are imported late)."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    shadow = sys.modules.get("dns")
    if shadow is not None and Path(getattr(shadow, "__file__", "") or ".").parent == here:
        del sys.modules["dns"]


class LoopbackKernel:
    """Every stored VNet's hub "exists"; its DNS sockets listen on 127.0.0.1 (a free port
    pair), so the rebuild measure needs no namespace and no root."""

    def __init__(self, kernel_error: type[Exception]) -> None:
        self.KernelError = kernel_error
        self.ports: dict[str, int] = {}

    def netns_inode(self, name: str) -> int:
        return 1

    def server_sockets_in_netns(
        self, name: str, address: str, port: int
    ) -> tuple[socket.socket, socket.socket, int]:
        for _ in range(20):  # a free UDP port whose TCP twin is free too
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            for sock in (udp, tcp):
                sock.setblocking(False)
            self.ports[name] = udp.getsockname()[1]
            return udp, tcp, 1
        raise self.KernelError(f"no free port pair for {name}")


def rebuild_latency(records: int, rounds: int, other_vnets: int = 4) -> dict[str, Any]:
    """From an approval, a rejection and a record change to the first reply that shows it,
    with `records` A records in the zone and `other_vnets` VNets linked to zones of 100
    records each (in-process; the reply is polled every ~0.5 ms over UDP).

    A connection goes Pending -> Approved -> Rejected, and Rejected is final: each round
    asks for a new endpoint (with its zone group) first."""
    import_dnspython()
    import dns.message as dnsmessage

    from privatelink.core import load_balancer as lbm
    from privatelink.core import private_dns as pdm
    from privatelink.core import private_endpoint as pem
    from privatelink.core import private_link as pl
    from privatelink.core import private_link_service as plsm
    from privatelink.core import virtual_network as vnm
    from privatelink.dataplane import privileged
    from privatelink.dns.server import DnsServer
    from privatelink.service import ControlPlane
    from privatelink.store.sql import SqlRepository

    rid = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Network"
    with tempfile.TemporaryDirectory(prefix="pl-dnsrebuild-") as tmp_name:
        repo = SqlRepository.sqlite_in(Path(tmp_name))
        kernel = LoopbackKernel(privileged.KernelError)
        server = DnsServer(repo, "br" + secrets.token_hex(2), recheck_seconds=60, kernel=kernel)
        plane = ControlPlane(repo, realizer=server)

        def put(workflow: Any, resource: Any) -> Any:
            plane.change(None, resource.id, "put", workflow, resource)
            with plane.read() as view:
                return view.get(resource.id)

        def network(name: str, prefix: str, subnets: dict[str, str]) -> Any:
            return put(
                vnm.create_or_update,
                vnm.VirtualNetwork(
                    id=f"{rid}/virtualNetworks/{name}",
                    name=name,
                    location=LOCATION,
                    address_prefixes=(prefix,),
                    subnets=tuple(
                        vnm.Subnet(
                            n,
                            p,
                            private_link_service_network_policies="Disabled"
                            if n == "nat"
                            else "Enabled",
                        )
                        for n, p in subnets.items()
                    ),
                ),
            )

        def zone(domain: str, vnet_id: str, count: int) -> str:
            zone_id = f"{rid}/privateDnsZones/{domain}"
            put(
                pdm.create_or_update_zone,
                pdm.PrivateDnsZone(id=zone_id, name=domain, location="global"),
            )
            link = pdm.VirtualNetworkLink(
                id=f"{zone_id}/virtualNetworkLinks/l",
                name="l",
                location="global",
                virtual_network_id=vnet_id,
            )
            put(pdm.create_or_update_link, link)
            for i in range(count):
                record = pdm.ARecordSet(
                    id=f"{zone_id}/A/r{i:04d}",
                    name=f"r{i:04d}",
                    location="",
                    ttl=300,
                    ipv4_addresses=(record_ip(i),),
                )
                put(pdm.create_or_update_record_set, record)
            return zone_id

        started = time.monotonic()
        prov = network("prov", "10.0.0.0/16", {"fe": "10.0.1.0/24", "nat": "10.0.3.0/24"})
        lb_id = f"{rid}/loadBalancers/lb"
        put(
            pl.create_or_update_load_balancer,
            lbm.LoadBalancer(
                id=lb_id,
                name="lb",
                location=LOCATION,
                frontends=(lbm.Frontend("fe", prov.subnet_id("fe")),),
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
        service = put(
            pl.create_or_update_service,
            plsm.PrivateLinkService(
                id=f"{rid}/privateLinkServices/svc",
                name="svc",
                location=LOCATION,
                frontend_ids=(f"{lb_id}/frontendIPConfigurations/fe",),
                ip_configurations=(
                    plsm.NatIpConfiguration("nat0", prov.subnet_id("nat"), primary=True),
                ),
                visibility=("*",),
                fqdns=(f"svc.{ZONE}",),
            ),
        )
        cons = network("cons", "10.1.0.0/16", {"vms": "10.1.1.0/24", "pe": "10.1.2.0/24"})
        zone_id = zone(ZONE, cons.id, records)
        for i in range(other_vnets):
            other = network(f"other{i}", f"10.{10 + i}.0.0/16", {"vms": f"10.{10 + i}.1.0/24"})
            zone(f"other{i}.example", other.id, 100)

        def new_endpoint(name: str) -> tuple[str, str]:
            """A pending endpoint whose zone group names the zone: (its IP, its connection
            name at the service)."""
            endpoint = put(
                pl.create_or_update_endpoint,
                pem.PrivateEndpoint(
                    id=f"{rid}/privateEndpoints/{name}",
                    name=name,
                    location=LOCATION,
                    subnet_id=cons.subnet_id("pe"),
                    connections=(pem.PrivateLinkServiceConnection("conn", service.alias),),
                    manual=True,
                ),
            )
            put(
                pdm.create_or_update_group,
                pdm.PrivateDnsZoneGroup(
                    id=f"{endpoint.id}/privateDnsZoneGroups/default",
                    name="default",
                    location="",
                    configs=(pdm.ZoneConfig("c1", zone_id),),
                ),
            )
            with plane.read() as view:
                pe_ip = str(view.get(endpoint.nic_id).primary_ip)
                return pe_ip, view.get(endpoint.id).connection.remote_name

        built_s = time.monotonic() - started
        marks: list[float] = []
        real_mark = server.mark_dirty

        def mark() -> None:
            marks.append(time.perf_counter())
            real_mark()

        server.mark_dirty = mark  # type: ignore[method-assign]
        server.start()
        try:
            hub = names.hub_netns(server.prefix, cons.id)
            deadline = time.monotonic() + READY_BUDGET
            while hub not in server.bound() and time.monotonic() < deadline:
                time.sleep(0.01)
            server.wait_idle(READY_BUDGET)
            port = kernel.ports[hub]
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.settimeout(0.5)

            def ask(name: str) -> tuple[int, list[str]]:
                query = dnsmessage.make_query(name, "A")
                client.sendto(query.to_wire(), ("127.0.0.1", port))
                while True:  # skip late replies to earlier polls
                    reply = dnsmessage.from_wire(client.recv(4096))
                    if reply.id == query.id:
                        return reply.rcode(), [rd.address for rr in reply.answer for rd in rr]

            def measure(change: Any, name: str, shown: Any) -> dict[str, Any]:
                marks.clear()
                t0 = time.perf_counter()
                change()
                end = time.monotonic() + READY_BUDGET
                while not shown(ask(name)):
                    if time.monotonic() > end:
                        raise TimeoutError(f"{name}: change not served in {READY_BUDGET} s")
                    time.sleep(0.0005)
                served = time.perf_counter()
                stats = getattr(server, "last_rebuild", None)  # absent before issue 12
                out: dict[str, Any] = {
                    "change_to_served_ms": round((served - t0) * 1000, 1),
                    "mark_to_served_ms": round((served - marks[0]) * 1000, 1),
                }
                if stats is not None:
                    out["read_ms"] = round(stats.read_seconds * 1000, 1)
                    out["compile_ms"] = round(stats.compile_seconds * 1000, 1)
                    out["rebuilt_vnets"] = stats.rebuilt_vnets
                    out["kept_vnets"] = stats.kept_vnets
                return out

            def connection(remote: str, status: str) -> Any:
                return lambda: plane.change(
                    None,
                    service.id,
                    "put",
                    pl.update_connection,
                    service.id,
                    remote,
                    status,
                    status,
                    None,
                )

            def record(address: str) -> Any:
                body = pdm.ARecordSet(
                    id=f"{zone_id}/A/r0000",
                    name="r0000",
                    location="",
                    ttl=300,
                    ipv4_addresses=(address,),
                )
                return lambda: plane.change(
                    None, body.id, "put", pdm.create_or_update_record_set, body
                )

            runs: dict[str, list[dict[str, Any]]] = {"approve": [], "reject": [], "record": []}
            svc = f"svc.{ZONE}"
            for r in range(rounds):
                pe_ip, remote = new_endpoint(f"pe{r}")
                server.wait_idle(READY_BUDGET)
                runs["approve"].append(
                    measure(connection(remote, "Approved"), svc, lambda a, x=pe_ip: a[1] == [x])
                )
                runs["reject"].append(
                    measure(connection(remote, "Rejected"), svc, lambda a: a[0] == 3)  # NXDOMAIN
                )
                address = f"10.1.250.{r + 1}"
                runs["record"].append(
                    measure(record(address), f"r0000.{ZONE}", lambda a, x=address: a[1] == [x])
                )
                log(f"  rebuild r{r}: " + ", ".join(f"{k} {v[-1]}" for k, v in runs.items()))
            client.close()
        finally:
            server.stop()
            repo.dispose()
    summary = {
        kind: {
            "change_to_served_ms_median": statistics.median(
                x["change_to_served_ms"] for x in items
            ),
            "mark_to_served_ms_median": statistics.median(x["mark_to_served_ms"] for x in items),
            "mark_to_served_ms_max": max(x["mark_to_served_ms"] for x in items),
        }
        for kind, items in runs.items()
    }
    return {
        "records": records,
        "other_vnets": other_vnets,
        "other_records": 100 * other_vnets,
        "store_built_s": round(built_s, 1),
        "runs": runs,
        "summary": summary,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1000, help="records at the large size")
    ap.add_argument("--seconds", type=int, default=5, help="seconds per dnsperf run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size")
    ap.add_argument("--write", action="store_true", help=f"write {JSON_OUT.relative_to(ROOT)}")
    ap.add_argument(
        "--rebuild-only",
        action="store_true",
        help="only the in-process change-to-answer measure (no root, no tools)",
    )
    ap.add_argument(
        "--rebuild-records", type=int, default=2000, help="records in the rebuild measure"
    )
    args = ap.parse_args(argv)
    if args.rebuild_only:
        rebuild = rebuild_latency(args.rebuild_records, args.rounds)
        print(json.dumps(rebuild["summary"], indent=2))
        return 0
    for tool in ("dnsperf", "dnsmasq", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y dnsperf dnsmasq-base iproute2")
    if not 1 <= args.records <= 9999:
        sys.exit("--records must be 1 to 9999")
    results: dict[str, Any] = {
        "benchmark": "private DNS: privatelink's resolver vs dnsmasq, from a VM of the VNet",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python bench/dns.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "source": source_version(),
        "load": {"clients": CLIENTS, "outstanding": OUTSTANDING, "seconds": args.seconds},
    }
    prefix = "bd" + secrets.token_hex(2)
    with tempfile.TemporaryDirectory(prefix="pl-dnsbench-") as tmp_name:
        tmp = Path(tmp_name)
        with serve(tmp, prefix) as server:
            bench = Bench(Api(server.creds), prefix, tmp, args.seconds, server.proc.pid)
            try:
                bench.build()
                bench.add_records(1)
                results["first_answer_s"] = round(
                    bench.wait_served(f"r0000.{ZONE}", record_ip(0)), 3
                )
                bench.start_dnsmasq()
                log("measuring with 1 record")
                small = bench.measure(args.rounds)
                results["change_to_answer"] = [bench.record_change_to_answer()]
                took = bench.add_records(args.records)
                results["records_put_s"] = round(took, 1)
                last = args.records - 1
                bench.wait_served(f"r{last:04d}.{ZONE}", record_ip(last))
                bench.start_dnsmasq()
                log(f"measuring with {args.records} records")
                large = bench.measure(args.rounds)
                results["other_answers"] = bench.other_answers(args.rounds)
                results["change_to_answer"].append(bench.record_change_to_answer())
            finally:
                stop_process(bench.dnsmasq)
    log(f"measuring change to answer in-process with {args.rebuild_records} records")
    results["rebuild"] = rebuild_latency(args.rebuild_records, args.rounds)
    results["sizes"] = {"small": small, "large": large}
    ours, ref = large["summary"]["privatelink"], large["summary"]["dnsmasq"]
    results["ratios"] = {
        "privatelink_vs_dnsmasq_qps": ratio(ours["qps"], ref["qps"]),
        "privatelink_vs_dnsmasq_p50": ratio(ours["p50_ms"], ref["p50_ms"]),
        "privatelink_vs_dnsmasq_unloaded_p50": ratio(
            ours["unloaded_p50_ms"], ref["unloaded_p50_ms"]
        ),
        "privatelink_large_vs_small_qps": ratio(
            ours["qps"], small["summary"]["privatelink"]["qps"]
        ),
    }
    other = results["other_answers"]
    for kind in ("hit-mixed-case", "nxdomain-unique", "nxdomain", "refused"):
        results["ratios"][f"{kind}_vs_dnsmasq_qps"] = ratio(
            other[f"{kind} privatelink"]["qps"], other[f"{kind} dnsmasq"]["qps"]
        )
    results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(json.dumps({k: results[k] for k in ("ratios", "change_to_answer")}, indent=2))
    print(json.dumps({"rebuild": results["rebuild"]["summary"]}, indent=2))
    for size in ("small", "large"):
        s = results["sizes"][size]
        for name, row in s["summary"].items():
            print(
                f"{s['records']:>5} records {name:11} {row['qps']} q/s  p50 {row['p50_ms']} ms  "
                f"p99 {row['p99_ms']} ms  unloaded p50 {row['unloaded_p50_ms']} ms "
                f"p99 {row['unloaded_p99_ms']} ms  {row['server_cores']} cores"
            )
    for kind, run in results["other_answers"].items():
        print(f"{kind}: {run.get('qps')} q/s, rcodes {run.get('rcodes')}")
    if args.write:
        JSON_OUT.write_text(json.dumps(results, indent=2) + "\n")
        log(f"wrote {JSON_OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
