"""Write-stall benchmark: does one big virtual network PUT hold up everybody else's writes?

Starts its own `privatelink serve` (SQLite unless `--db-url`, data plane off) on a free
127.0.0.1 port in a temporary directory, gets a token from the server's own token
endpoint and drives it with two httpx clients (two keep-alive connections, two threads):

1. idle: the small client alone does tiny PUTs, alternating a resource group PUT (the
   store's write lock, no workflow) and a tag update of a one-subnet virtual network
   (the whole `ControlPlane.change` path);
2. big valid: the big client PUTs a virtual network with `--subnets` subnets (3000 =
   Azure's limit), alternating between two layouts so every PUT after the first re-prefixes
   every subnet; meanwhile the small client keeps doing tiny PUTs;
3. big refused: the same, but each big body ends in two overlapping subnets (a 400 after
   all the body's checks) — what a careless or hostile client costs the others;
4. big GET (control): the big client GETs that network (same size of answer, no write
   lock at all) — what sharing the server's CPU and GIL alone costs the tiny PUTs.

Per phase it reports the tiny PUTs' p50/p99/max latency and their ratio to the idle
phase, the big PUTs' own durations, and the server's CPU time. Every loop is bounded in
count and in time. Prints JSON on stdout (`--out FILE` also writes it to a file).

Usage:
    python bench/write_stall.py [--subnets 3000] [--rounds 4] [--db-url URL] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
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
from common import (
    LOCATION,
    free_port,
    log,
    machine,
    process_cpu,
    source_version,
    stop_process,
    summary,
    wait_ready,
)

SCOPE = "https://management.azure.com/.default"
API = "api-version=2026-03-01"
IDLE_OPS = 200  # tiny PUTs in the idle phase
IDLE_SECONDS = 60.0
BIG_SECONDS = 600.0  # budget of each loaded phase
TINY_CAP = 20_000  # tiny PUTs per loaded phase, at most


# --- statistics -----------------------------------------------------------------------------


def ratios(loaded: dict[str, Any], idle: dict[str, Any]) -> dict[str, float | None]:
    """loaded / idle for p50, p99 and max."""
    out: dict[str, float | None] = {}
    for k in ("p50_ms", "p99_ms", "max_ms"):
        a, b = loaded.get(k), idle.get(k)
        out[k.removesuffix("_ms")] = round(a / b, 2) if a is not None and b else None
    return out


# --- the server -----------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    creds: dict[str, str]
    base: str  # network path prefix of the bench resource group
    group: str  # resource group path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str) -> httpx.Client:
        http = httpx.Client(
            base_url=self.creds["url"],
            verify=self.creds["ca_file"],
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
            trust_env=False,
        )
        self.clients.append(http)
        return http


@contextmanager
def serve(db_url: str | None) -> Iterator[Server]:
    """`privatelink serve` (data plane off) in a temp dir; always stopped and removed."""
    tmp = Path(tempfile.mkdtemp(prefix="pl-stall-"))
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    port = free_port()
    cmd = [sys.executable, "-m", "privatelink.cli.main", "serve", "--dataplane", "off"]
    cmd += ["--data-dir", str(data_dir), "--port", str(port)]
    if db_url:
        cmd += ["--db-url", db_url]
    out = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server: Server | None = None
    try:
        creds = wait_ready(proc, data_dir, port)
        sub = creds["subscription_id"]
        group = f"/subscriptions/{sub}/resourceGroups/stall-{uuid.uuid4().hex[:6]}"
        server = Server(proc, creds, f"{group}/providers/Microsoft.Network", group)
        yield server
    except Exception:
        out.flush()
        print((tmp / "server.log").read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        for http in server.clients if server else []:
            http.close()
        stop_process(proc, timeout=15)
        out.close()
        shutil.rmtree(tmp, ignore_errors=True)


def token(creds: dict[str, str]) -> str:
    """A client-credentials token from the server's own token endpoint."""
    with httpx.Client(base_url=creds["url"], verify=creds["ca_file"], trust_env=False) as anon:
        reply = anon.post(
            f"/{creds['tenant_id']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
                "scope": SCOPE,
            },
        )
        reply.raise_for_status()
        return str(reply.json()["access_token"])


def expect(reply: httpx.Response, *codes: int) -> httpx.Response:
    if reply.status_code not in codes:
        raise RuntimeError(
            f"{reply.request.method} {reply.request.url.path[:120]} -> {reply.status_code}: "
            f"{reply.text[:300]}"
        )
    return reply


# --- bodies ---------------------------------------------------------------------------------


def big_body(subnets: int, layout: int, overlap: bool = False) -> dict[str, Any]:
    """`subnets` /24 subnets in 10.0.0.0/8; layout 0 or 1 puts each at a different prefix.

    With `overlap`, the last subnet repeats the first one's prefix (refused with 400).
    """
    shift = 128 * layout  # layout 1 moves subnet i from 10.a.b.0 to 10.(a+128).b.0
    prefixes = [f"10.{i // 256 + shift}.{i % 256}.0/24" for i in range(subnets)]
    if overlap:
        prefixes[-1] = prefixes[0]
    items = [{"name": f"s{i}", "properties": {"addressPrefix": p}} for i, p in enumerate(prefixes)]
    return {
        "location": LOCATION,
        "tags": {"layout": str(layout)},
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/8"]}, "subnets": items},
    }


def small_body(i: int) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "tags": {"i": str(i)},
        "properties": {
            "addressSpace": {"addressPrefixes": ["192.168.0.0/16"]},
            "subnets": [{"name": "only", "properties": {"addressPrefix": "192.168.1.0/24"}}],
        },
    }


# --- phases ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, server: Server, subnets: int, rounds: int) -> None:
        self.server = server
        self.subnets = subnets
        self.rounds = rounds
        tok = token(server.creds)
        self.small = server.client(tok)
        self.big = server.client(tok)
        self.results: dict[str, Any] = {}

    def tiny_put(self, i: int) -> tuple[str, float]:
        """One tiny PUT (resource group on even i, small VNet tag update on odd i)."""
        t0 = time.perf_counter()
        if i % 2 == 0:
            reply = self.small.put(
                f"{self.server.group}?api-version=2021-04-01",
                json={"location": LOCATION, "tags": {"i": str(i)}},
            )
            kind = "resource_group"
        else:
            reply = self.small.put(
                f"{self.server.base}/virtualNetworks/small?{API}", json=small_body(i)
            )
            kind = "vnet_tags"
        expect(reply, 200, 201)
        return kind, time.perf_counter() - t0

    def idle(self) -> dict[str, list[float]]:
        deadline = time.perf_counter() + IDLE_SECONDS
        out: dict[str, list[float]] = {"resource_group": [], "vnet_tags": []}
        for i in range(IDLE_OPS):
            if time.perf_counter() > deadline:
                break
            kind, d = self.tiny_put(i)
            out[kind].append(d)
        return out

    def loaded(self, kind: str) -> dict[str, Any]:
        """Tiny PUTs while the big client does `rounds` big requests (bounded in time).

        kind: "valid" (PUTs, 201/200), "refused" (PUTs with an overlap, 400) or "get".
        """
        overlap = kind == "refused"
        stop = threading.Event()
        tiny: dict[str, list[float]] = {"resource_group": [], "vnet_tags": []}
        errors: list[BaseException] = []

        def small_loop() -> None:
            i = 0
            try:
                while not stop.is_set() and i < TINY_CAP:
                    kind, d = self.tiny_put(i)
                    tiny[kind].append(d)
                    i += 1
            except BaseException as exc:  # reported after the phase
                errors.append(exc)

        bodies = [
            json.dumps(big_body(self.subnets, layout % 2, overlap)).encode() for layout in range(2)
        ]
        path = f"{self.server.base}/virtualNetworks/big?{API}"
        big: list[float] = []
        statuses: list[int] = []
        cpu0 = process_cpu(self.server.proc.pid)
        worker = threading.Thread(target=small_loop, daemon=True)
        worker.start()
        time.sleep(0.2)  # the small loop is running before the first big PUT goes out
        deadline = time.perf_counter() + BIG_SECONDS
        try:
            for r in range(self.rounds):
                if time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                if kind == "get":
                    reply = self.big.get(path)
                else:
                    reply = self.big.put(
                        path, content=bodies[r % 2], headers={"Content-Type": "application/json"}
                    )
                big.append(time.perf_counter() - t0)
                statuses.append(reply.status_code)
                if overlap:
                    expect(reply, 400)
                    assert reply.json()["error"]["code"] == "NetcfgSubnetRangesOverlap", reply.text
                else:
                    expect(reply, 200, 201)
        finally:
            stop.set()
            worker.join(timeout=120)
        if errors:
            raise RuntimeError(f"tiny PUT failed: {errors[0]}")
        return {
            "big": {**summary(big), "statuses": statuses},
            "tiny": tiny,
            "server_cpu_s": round(process_cpu(self.server.proc.pid) - cpu0, 2),
        }

    def run(self) -> dict[str, Any]:
        log("warm-up")
        self.idle()
        log("idle tiny PUTs")
        idle = self.idle()
        idle_all = summary(idle["resource_group"] + idle["vnet_tags"])
        out: dict[str, Any] = {
            "idle": {
                "all": idle_all,
                **{k: summary(v) for k, v in idle.items()},
            }
        }
        for name, kind in (("big_valid", "valid"), ("big_refused", "refused"), ("big_get", "get")):
            log(f"{name}: {self.rounds} big requests ({self.subnets} subnets), tiny PUTs beside")
            phase = self.loaded(kind)
            tiny_all = summary(phase["tiny"]["resource_group"] + phase["tiny"]["vnet_tags"])
            out[name] = {
                "big": phase["big"],
                "server_cpu_s": phase["server_cpu_s"],
                "tiny_all": tiny_all,
                "tiny_all_over_idle": ratios(tiny_all, idle_all),
                **{f"tiny_{k}": summary(v) for k, v in phase["tiny"].items()},
            }
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnets", type=int, default=3000, help="subnets in the big VNet")
    parser.add_argument("--rounds", type=int, default=4, help="big PUTs per loaded phase")
    parser.add_argument("--db-url", default=None, help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if not 1 <= args.subnets <= 65_000 or not 1 <= args.rounds <= 50:
        parser.error("--subnets must be 1..65000 and --rounds 1..50")
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))
    # A SIGTERM (e.g. a timeout) unwinds like Ctrl-C, so the server is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    with serve(args.db_url) as server:
        results = Bench(server, args.subnets, args.rounds).run()
    report = {
        "benchmark": "write_stall",
        "subnets": args.subnets,
        "rounds": args.rounds,
        "store": "postgresql" if args.db_url else "sqlite",
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "source": source_version(),
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
