"""Machine instructions per GET of a private link service, in process: a load-proof measure.

`control_plane.py --api-speed` measures the served API with wrk, in requests/s and CPU
time; on a shared machine both move with other load. This counts user-space machine
instructions instead (valgrind's cachegrind), which other load does not change: the app
(the FastAPI application `privatelink serve` runs, without TLS or HTTP parsing) is called
directly as an ASGI app, K times, and the count of a run with K GETs minus that of a run
with none, divided by K, is its cost per GET. The minimal app of `api_minimal.py` is
counted the same way. Runs agree to 1 % (hash seed fixed); use it to compare changes.

It builds the world of `--api-speed` (a PLS with four connections) in a temporary data
directory through the same app, then runs cachegrind four times (real and minimal, 0 and
K GETs). Needs valgrind (apt-get install -y valgrind). Takes a few minutes.

    python bench/api_instructions.py [--gets 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API_VERSION = "2026-03-01"
WARM_UP = 30
SCOPE = "https://management.azure.com/.default"


def _scope(method: str, path: str, token: str, body: bytes = b"") -> dict[str, Any]:
    # What wrk sends on a GET (control_plane.py --api-speed); a body adds its two headers.
    headers = [(b"host", b"127.0.0.1:8443"), (b"authorization", f"Bearer {token}".encode())]
    if body:
        headers += [(b"content-type", b"application/json")]
        headers += [(b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": f"api-version={API_VERSION}".encode(),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8443),
    }


async def _call(
    app: Any, method: str, path: str, token: str, body: bytes = b""
) -> tuple[int, bytes]:
    status = 0
    out = bytearray()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # the app asks again only to watch for a disconnect
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            out.extend(message.get("body", b""))

    await app(_scope(method, path, token, body), receive, send)
    return status, bytes(out)


async def _drive(data_dir: Path, gets: int, which: str) -> None:
    """Build (or reuse) the world in `data_dir`, warm up, then do `gets` GETs."""
    from common import network_base, vnet_body  # bench/ is on sys.path
    from control_plane import lb_body, pe_body, pls_body

    from privatelink.server import build

    server = build(data_dir, "127.0.0.1", 8443)
    token_file = data_dir / "bench-token"
    if not token_file.exists():
        c = server.client
        assert server.issuer is not None
        issued = server.issuer.issue(c.tenant_id, c.client_id, c.client_secret, SCOPE)
        token_file.write_text(issued["access_token"])
    token = token_file.read_text()
    provider = json.loads(server.credentials_file.read_text())["subscription_id"]
    pbase = network_base(provider)
    path = f"{pbase}/privateLinkServices/pls"
    app: Any = server.app
    status, body = await _call(app, "GET", path, token)
    if status == 404:

        async def put(where: str, doc: dict[str, Any]) -> dict[str, Any]:
            got, raw = await _call(app, "PUT", where, token, json.dumps(doc).encode())
            if got not in (200, 201):
                raise RuntimeError(f"PUT {where}: {got} {raw[:300]!r}")
            answer: dict[str, Any] = json.loads(raw)
            return answer

        cbase = network_base(str(uuid.uuid4()))
        consumer = cbase.split("/")[2]
        await put(
            f"{pbase}/virtualNetworks/vp",
            vnet_body("10.0.0.0/16", {"fe": ("10.0.0.0/24", False), "nat": ("10.0.1.0/24", True)}),
        )
        await put(f"{pbase}/loadBalancers/lb", lb_body(pbase, "lb", 1))
        frontend = f"{pbase}/loadBalancers/lb/frontendIPConfigurations/fe0"
        pls = await put(path, pls_body(pbase, frontend, consumer, "api.example"))
        await put(
            f"{cbase}/virtualNetworks/vc", vnet_body("10.2.0.0/16", {"pe": ("10.2.0.0/24", False)})
        )
        for i in range(4):
            subnet = f"{cbase}/virtualNetworks/vc/subnets/pe"
            await put(
                f"{cbase}/privateEndpoints/pe{i}", pe_body(subnet, pls["properties"]["alias"])
            )
        status, body = await _call(app, "GET", path, token)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status}")
    if which == "minimal":
        from api_minimal import build_app

        app = build_app(path, json.loads(body))
    for _ in range(WARM_UP):
        got = await _call(app, "GET", path, token)
        if got != (200, body):
            raise RuntimeError(f"the {which} app answered {got[0]} or other bytes")
    for _ in range(gets):
        await _call(app, "GET", path, token)


def _instructions(data_dir: Path, gets: int, which: str) -> int:
    """Instructions of one driver process (cachegrind's `I refs`)."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    cmd += [sys.executable, __file__, "--drive", str(data_dir), str(gets), which]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same hashing, run after run
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{which} with {gets} GETs failed: {done.stderr[-2000:]}")
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gets", type=int, default=200, help="GETs of the counted run")
    parser.add_argument(
        "--apps", default="real,minimal", help="which apps to count (default: real,minimal)"
    )
    parser.add_argument(
        "--drive", nargs=3, metavar=("DATA_DIR", "GETS", "APP"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    # bench/ holds a dns.py; dnspython (which the server imports) must win: import the
    # server first, with bench/ off the path, then put bench/ back at the end.
    bench = (ROOT / "bench").resolve()
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != bench]
    import privatelink.server  # noqa: F401

    sys.path.append(str(bench))
    if args.drive:
        data_dir, gets, which = args.drive
        asyncio.run(_drive(Path(data_dir), int(gets), which))
        return 0
    if shutil.which("valgrind") is None:
        print("needs valgrind: apt-get install -y valgrind. Skipped.", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="pl-bench-instr-"))
    try:
        data_dir = tmp / "data"
        # Build the world and the keys outside valgrind (key generation is random work).
        subprocess.run(
            [sys.executable, __file__, "--drive", str(data_dir), "0", "real"], check=True
        )
        result = {}
        for which in args.apps.split(","):
            base = _instructions(data_dir, 0, which)
            loaded = _instructions(data_dir, args.gets, which)
            result[which] = round((loaded - base) / args.gets / 1000)
            print(f"{which:8} {result[which]:6} k instructions per GET", file=sys.stderr)
        print(json.dumps({"gets": args.gets, "k_instructions_per_get": result}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
