"""Helpers the benchmarks share: the server process, namespaces, ports, CPU, ARM bodies."""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from azure.identity import ClientSecretCredential

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0

LOCATION = "eastus"
RG = "bench"


def credential(creds: dict[str, str]) -> ClientSecretCredential:
    """The server's client (credentials.json) as an azure-identity credential."""
    return ClientSecretCredential(
        creds["tenant_id"],
        creds["client_id"],
        creds["client_secret"],
        authority=creds["url"],
        disable_instance_discovery=True,
        connection_verify=creds["ca_file"],
    )


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc); NaN when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # utime, stime are fields 14 and 15 of stat(5).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def network_base(subscription: str) -> str:
    """ARM path prefix of the benchmarks' network resources in a subscription."""
    return f"/subscriptions/{subscription}/resourceGroups/{RG}/providers/Microsoft.Network"


def vnet_body(space: str, subnets: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    """A virtual network; subnets: name -> (prefix, PLS network policies disabled)."""
    return {
        "location": LOCATION,
        "properties": {
            "addressSpace": {"addressPrefixes": [space]},
            "subnets": [
                {
                    "name": name,
                    "properties": {
                        "addressPrefix": p,
                        **({"privateLinkServiceNetworkPolicies": "Disabled"} if off else {}),
                    },
                }
                for name, (p, off) in subnets.items()
            ],
        },
    }


class Bearer:
    """`Authorization` headers for the server's client, the token cached and renewed
    5 minutes before it expires (thread-safe: benches send from worker threads)."""

    SCOPE = "https://management.azure.com/.default"

    def __init__(self, creds: dict[str, str]) -> None:
        self.credential = credential(creds)
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None

    def __call__(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._token[1] - time.time() < 300:
                got = self.credential.get_token(self.SCOPE)
                self._token = (got.token, float(got.expires_on))
            return {"Authorization": f"Bearer {self._token[0]}"}

    def close(self) -> None:
        self.credential.close()


# --- processes, namespaces, statistics ----------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


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


def netns_run(ns: str, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def must(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return proc.stdout


def ip(*args: str) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    return must(proc, "ip " + " ".join(args))


def wait_process_idle(
    pid: int, budget: float, window: float = 1.0, below: float = 0.05
) -> dict[str, Any]:
    """Wait (at most `budget` s) until a process used < `below` of a core in two windows
    in a row (e.g. the server after a burst of writes); how long that took."""
    t0 = time.monotonic()
    quiet = 0
    while quiet < 2 and time.monotonic() - t0 < budget:
        c0, w0 = process_cpu(pid), time.monotonic()
        time.sleep(window)
        quiet = quiet + 1 if (process_cpu(pid) - c0) / (time.monotonic() - w0) < below else 0
    return {"waited_s": round(time.monotonic() - t0, 1), "idle": quiet >= 2}


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """Terminate one process we started (by its handle), then kill it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --- the server -----------------------------------------------------------------------------


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    creds: dict[str, str]
    prefix: str


@contextmanager
def serve(
    tmp: Path, prefix: str, on_start: Callable[[int], None] | None = None
) -> Iterator[RunningServer]:
    """Start `privatelink serve` with the data plane; always stop it and sweep the prefix.

    `on_start` gets the server's pid (e.g. to count its CPU)."""
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    port = free_port()
    log_file = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        server_command(data_dir, port, prefix), stdout=log_file, stderr=subprocess.STDOUT
    )
    if on_start is not None:
        on_start(proc.pid)
    try:
        creds = wait_ready(proc, data_dir, port)
        yield RunningServer(proc, data_dir, creds, prefix)
    except BaseException:
        log_file.flush()
        tail = (tmp / "server.log").read_text(errors="replace")[-4000:]
        print(f"--- server log (tail) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        stop_process(proc)
        log_file.close()
        sweep(prefix)


def server_command(data_dir: Path, port: int, prefix: str) -> list[str]:
    """argv of `privatelink serve --dataplane on` on a data dir, port and namespace prefix
    (the same argv restarts a server on the same state)."""
    cmd = [sys.executable, "-m", "privatelink.cli.main", "serve", "--dataplane", "on"]
    return [*cmd, "--data-dir", str(data_dir), "--port", str(port), "--netns-prefix", prefix]


def sweep(prefix: str) -> None:
    """`privatelink cleanup --netns-prefix`, then remove whatever namespace of the prefix
    is left (e.g. when the CLI cannot run because src/ is being edited)."""
    cmd = [sys.executable, "-m", "privatelink.cli.main", "cleanup", "--netns-prefix", prefix]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    log(f"cleanup --netns-prefix {prefix}: {done.stdout.splitlines()[:1]}")
    left = [n for n in os.listdir("/run/netns") if n.startswith((f"{prefix}-v-", f"{prefix}-n-"))]
    for netns in left:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
    if left:
        log(f"removed {len(left)} namespaces the cleanup command left")


def wait_ready(proc: subprocess.Popen[bytes], data_dir: Path, port: int) -> dict[str, str]:
    deadline = time.monotonic() + READY_TIMEOUT
    creds_file = data_dir / "credentials.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        if creds_file.exists():
            try:
                creds = json.loads(creds_file.read_text())
                probe = f"{creds['url']}/{creds['tenant_id']}/v2.0/.well-known/openid-configuration"
                if httpx.get(probe, verify=creds["ca_file"], timeout=2).status_code == 200:
                    if not creds["url"].endswith(f":{port}"):
                        raise RuntimeError(f"credentials.json names {creds['url']}, not {port}")
                    return creds
            except (httpx.HTTPError, ValueError, KeyError):
                pass
        time.sleep(0.1)
    raise TimeoutError(f"server not ready within {READY_TIMEOUT:.0f} s")


# --- provenance -----------------------------------------------------------------------------


def require_root_and_tools(parser: Any, tools: tuple[str, ...]) -> None:
    """Stop with a usage error unless run as root with every tool of `tools` on PATH."""
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        parser.error(f"missing tools: {', '.join(missing)} (make deps-bench installs them)")


def link_sizes(
    sizes: str | None,
    quick: bool,
    quick_sizes: tuple[int, ...],
    full_sizes: tuple[int, ...],
    extra: int,
) -> tuple[int, ...]:
    """The link counts a kernel benchmark builds (`--sizes` "1,1000", else `--quick`'s or
    the full ones); exits unless run as root and within the host's link slots (`extra`:
    slots used on top of the largest size)."""
    from privatelink.dataplane import names

    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    chosen = (
        tuple(int(x) for x in sizes.split(",")) if sizes else (quick_sizes if quick else full_sizes)
    )
    if max(chosen) + extra > names.MAX_SLOTS:
        sys.exit(f"at most {names.MAX_SLOTS - extra} links")
    return chosen


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def source_version() -> dict[str, Any]:
    """The commit the server ran from, and whether src/ differed from it (read-only git)."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "src_changes": git("status", "--porcelain", "src")}


# --- namespaces and interruption ------------------------------------------------------------


def unique_prefix(stem: str) -> str:
    """A namespace prefix for one run: `stem` plus 3 random characters."""
    return stem + "".join(random.choices(string.ascii_lowercase + string.digits, k=3))


def sweep_on_signals() -> None:
    """Make SIGTERM and SIGHUP raise KeyboardInterrupt in this process, so that the
    benchmark's `finally` blocks sweep its namespaces; a forked helper (e.g. pyroute2's)
    just exits."""
    main_pid = os.getpid()

    def interrupted(signum: int, _frame: object) -> None:
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
