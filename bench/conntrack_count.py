"""What a hub-wide `ct count over N` rule would cost: new connections per second through a
hub holding K long-lived flows, with and without the rule (docs/dataplane.md, section 9).

Why: the data plane refuses new flows when a hub's conntrack table is at its limit. An
nftables `ct count` rule would do it exactly, per packet; the data plane samples each
hub's count instead (one pread per hub per second). This measures the price of the exact
way. Topology, all in namespaces with a unique prefix (removed at the end, also on
failure): client ns --veth-- hub ns --veth-- server ns, the hub forwarding with
conntrack. Rounds alternate the two rulesets in the hub:

    ct-only    `ct state new accept` in a forward chain (conntrack on, no counting)
    ct-count   `ct state new ct count over LIMIT ... reject` (the limit is never reached)

In each round the K long-lived flows are opened anew (a `ct count` list only knows the
flows it saw), then short connections (connect, RST-close) run for `--seconds`.

    sudo .venv/bin/python bench/conntrack_count.py --flows 8000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import socket
import struct
import subprocess
import sys
import time

from privatelink.dataplane import privileged

SERVER = "10.9.2.2"
CT_ONLY = """table ip bench {
 chain forward { type filter hook forward priority -10; policy accept;
  ct state new accept
 }
}
"""
CT_COUNT = """table ip bench {
 counter refused { }
 chain admit {
  ct count over %d counter name "refused" jump refuse
 }
 chain refuse {
  meta l4proto tcp reject with tcp reset
  reject with icmp type admin-prohibited
 }
 chain forward { type filter hook forward priority -10; policy accept;
  ct state new jump admit
 }
}
"""
# Holds the first N connections open, closes the rest at once (the short ones).
HOLDER = """
import resource, socket
resource.setrlimit(resource.RLIMIT_NOFILE, (%d, %d))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(4096)
held = []
while True:
    c, _ = s.accept()
    held.append(c) if len(held) < %d else c.close()
"""


def sh(*argv: str, stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def topology(prefix: str) -> tuple[str, str, str]:
    hub, client, server = f"{prefix}-hub", f"{prefix}-cli", f"{prefix}-srv"
    for ns in (hub, client, server):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    for end, peer, net, ns in (("c0", client, "1", client), ("s0", server, "2", server)):
        sh("ip", "-n", hub, "link", "add", end, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", hub, "addr", "add", f"10.9.{net}.1/24", "dev", end)
        sh("ip", "-n", hub, "link", "set", end, "up")
        sh("ip", "-n", peer, "addr", "add", f"10.9.{net}.2/24", "dev", "eth0")
        sh("ip", "-n", peer, "link", "set", "eth0", "up")
        sh("ip", "-n", peer, "route", "add", "default", "via", f"10.9.{net}.1")
    sh("ip", "netns", "exec", hub, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "netns", "exec", client, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
    return hub, client, server


def short_connections(client: str, seconds: float) -> float:
    """Connections per second: connect, then close with a reset (no TIME_WAIT)."""

    def burst() -> int:
        done = 0
        for _ in range(200):
            with socket.socket() as sock:
                sock.settimeout(2)
                sock.connect((SERVER, 80))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            done += 1
        return done

    count, began = 0, time.monotonic()
    while time.monotonic() - began < seconds:
        count += privileged.in_netns(client, burst)
    return count / (time.monotonic() - began)


def start_holder(server: str, client: str, fds: int, flows: int) -> subprocess.Popen[bytes]:
    """The server process; returns once it accepts (its first connection is one of N)."""
    code = HOLDER % (fds, fds, flows + 1)
    proc = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            privileged.in_netns(client, lambda: socket.create_connection((SERVER, 80)).close())
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the holder did not listen within 10 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=8000, help="long-lived flows held")
    parser.add_argument("--limit", type=int, default=200000, help="the ct count limit")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    fds = args.flows + 1000
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (fds, max(fds, hard)))
    prefix = "bct" + secrets.token_hex(2)
    holder: subprocess.Popen[bytes] | None = None
    held: list[socket.socket] = []
    try:
        hub, client, server = topology(prefix)
        rates: dict[str, list[float]] = {"ct-only": [], "ct-count": []}
        for _round in range(args.rounds):
            for name, ruleset in (("ct-only", CT_ONLY), ("ct-count", CT_COUNT % args.limit)):
                subprocess.run(
                    ["ip", "netns", "exec", hub, "nft", "delete", "table", "ip", "bench"],
                    capture_output=True,
                    check=False,
                )
                sh("ip", "netns", "exec", hub, "nft", "-f", "-", stdin=ruleset)
                for sock in held:
                    sock.close()
                held.clear()
                if holder is not None:  # a fresh holder: it keeps the next N flows
                    holder.kill()
                    holder.wait(10)
                holder = start_holder(server, client, fds, args.flows)

                def hold() -> None:
                    for _ in range(args.flows):
                        held.append(socket.create_connection((SERVER, 80), timeout=5))

                privileged.in_netns(client, hold)
                rate = short_connections(client, args.seconds)
                rates[name].append(rate)
                print(
                    f"{name:9} {args.flows} flows held: {rate:8.0f} new connections/s", flush=True
                )
        best = {name: max(values) for name, values in rates.items()}
        print(
            f"ct-count / ct-only: {best['ct-count'] / best['ct-only']:.2f} (best of {args.rounds})"
        )
    finally:
        for sock in held:
            sock.close()
        if holder is not None:
            holder.kill()
            holder.wait(10)
        for ns in privileged.list_netns():
            if ns.startswith(prefix + "-"):
                privileged.delete_netns(ns)


if __name__ == "__main__":
    main()
