"""The transport's floor for issue 12's API target: what a response costs by its size alone.

`bench/scale.py` compares a GET of a service with 1000 connections (about 760 KB of
JSON) with a GET of an empty one (about 2 KB), and wants at most 2x. This measures the
same two bodies with no application work at all: pre-encoded bytes served by uvicorn
with the server's own HTTP protocol (`serving.ArmH11Protocol`) and TLS (a PKI made by
`identity.pki.ensure_pki`), read by a keep-alive httpx client as `bench/scale.py`'s is.
The bodies are the real renderer's output (`api.private_link_service.render`) for a
service with 1000 connections and for one with none.

Two figures per body, p50 of alternating blocks: to the last byte (`response.content`)
and with the client's `response.json()` as `bench/scale.py` times it. Their ratios,
large over small, are the lowest any implementation on this stack can reach.

Safety: one server process on 127.0.0.1 (a free port), ended by its id; every loop is
bounded in count. No root needed.

    .venv/bin/python bench/payload_floor.py [--rounds 10] [--per-block 30] [--write]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from common import free_port, log, machine, median, source_version, summary

from privatelink import serving
from privatelink.api import private_link_service as api
from privatelink.core import private_link_service as core
from privatelink.identity.pki import ensure_pki

ROOT = Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "docs" / "benchmarks-payload-floor.json"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"


def bodies(connections: int) -> dict[str, bytes]:
    """The rendered service with `connections` connections, and with none."""

    class View:
        def __init__(self, found: list[core.PrivateEndpointConnection]) -> None:
            self.found = found

        def referrers(self, *_args: Any) -> list[core.PrivateEndpointConnection]:
            return self.found

    def service(name: str) -> core.PrivateLinkService:
        return core.PrivateLinkService(
            id=f"{SUB}/Microsoft.Network/privateLinkServices/{name}",
            name=name,
            location="eastus",
            etag='W/"5c1e8f0e-2b1e-4c57-9d0e-0d6a3e0b8f11"',
            frontend_ids=(f"{SUB}/Microsoft.Network/loadBalancers/lb/frontendIPConfigurations/fe",),
            ip_configurations=(
                core.NatIpConfiguration(
                    "nat", f"{SUB}/Microsoft.Network/virtualNetworks/vp/subnets/nat", "10.0.3.4"
                ),
            ),
            visibility=("*",),
            alias=f"{name}.7d3c2a4e-9f41-4b8e-8d2c-1f0e5a6b7c8d.eastus.azure.privatelinkservice",
            nic_id=f"{SUB}/Microsoft.Network/networkInterfaces/{name}.nic.x",
        )

    many = service("pls0")
    found = [
        core.PrivateEndpointConnection(
            id=many.connection_id(f"e{i}.0b7f3c1e-4d2a-4e6b-9a8c-{i:012d}"),
            name=f"e{i}.0b7f3c1e-4d2a-4e6b-9a8c-{i:012d}",
            location="eastus",
            etag=f'W/"a1b2c3d4-e5f6-4a7b-8c9d-{i:012d}"',
            private_endpoint_id=(
                "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg"
                f"/providers/Microsoft.Network/privateEndpoints/e{i}"
            ),
            private_endpoint_location="eastus",
            link_identifier=str(536870912 + i),
            status="Approved",
            description="Auto-Approved",
        )
        for i in range(connections)
    ]
    return {
        "large": json.dumps(api.render(View(found), many)).encode(),  # type: ignore[arg-type]
        "small": json.dumps(api.render(View([]), service("plsempty"))).encode(),  # type: ignore[arg-type]
    }


def serve(port: int, cert: str, key: str, connections: int) -> None:
    """The server process: two routes answering their pre-encoded body."""

    payloads = bodies(connections)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = payloads.get(scope["path"].strip("/"), b"{}")
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_level="warning",
        http=serving.ArmH11Protocol,
    )
    uvicorn.Server(config).run()


def measure(url: str, ca: str, rounds: int, per_block: int) -> dict[str, Any]:
    """Alternating blocks of GETs of both bodies: to the last byte, and parsed."""
    times: dict[str, list[float]] = {
        f"{side}_{how}": [] for side in ("large", "small") for how in ("bytes", "json")
    }
    sizes: dict[str, int] = {}
    with httpx.Client(verify=ca, timeout=30, trust_env=False) as client:
        for side in ("large", "small"):  # warm the connection and the paths
            sizes[side] = len(client.get(f"{url}/{side}").content)
        for r in range(rounds):
            order = ("large", "small") if r % 2 == 0 else ("small", "large")
            for side in order:
                for _ in range(per_block):
                    t0 = time.perf_counter()
                    response = client.get(f"{url}/{side}")
                    _ = response.content
                    t1 = time.perf_counter()
                    response.json()
                    t2 = time.perf_counter()
                    times[f"{side}_bytes"].append(t1 - t0)
                    times[f"{side}_json"].append(t2 - t0)
    out: dict[str, Any] = {"bytes": sizes}
    out.update({k: summary(v) for k, v in times.items()})
    for how in ("bytes", "json"):
        large, small = median(times[f"large_{how}"]), median(times[f"small_{how}"])
        out[f"ratio_{how}"] = round(large / small, 2) if large and small else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=30)
    parser.add_argument("--write", action="store_true", help=f"write {JSON_OUT.name}")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2], args.connections)
        return

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="plfloor") as tmp:
        pki = ensure_pki(Path(tmp))
        port = free_port()
        argv = [sys.executable, __file__, "--connections", str(args.connections)]
        argv += ["--serve", str(port), str(pki.cert_file), str(pki.key_file)]
        proc = subprocess.Popen(argv)
        try:
            url = f"https://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{url}/small", verify=str(pki.ca_file), timeout=2)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.2)
            result = measure(url, str(pki.ca_file), args.rounds, args.per_block)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    log(json.dumps(result))
    print(
        f"large {result['bytes']['large']} B / small {result['bytes']['small']} B: "
        f"to the last byte {result['large_bytes']['p50_ms']} / {result['small_bytes']['p50_ms']}"
        f" ms = {result['ratio_bytes']}x; parsed {result['large_json']['p50_ms']} / "
        f"{result['small_json']['p50_ms']} ms = {result['ratio_json']}x"
    )
    if args.write:
        doc = {
            "benchmark": "payload_floor",
            "started": started,
            "command": " ".join(sys.argv),
            "machine": machine(),
            "source": source_version(),
            "connections": args.connections,
            "results": result,
        }
        JSON_OUT.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {JSON_OUT}")


if __name__ == "__main__":
    main()
