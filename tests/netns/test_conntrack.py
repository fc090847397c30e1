"""Deleting a link's conntrack entries over ctnetlink (`privileged.conntrack_delete_mark`)
against the real kernel: exactly the entries of that mark, in that namespace only, on a
kept socket that follows a namespace made again under the same name."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest
from world import hub_pair

from privatelink.dataplane import privileged

pytestmark = pytest.mark.usefixtures("netns_required")

PORTS = {9000: 41, 9001: 42, 9002: 42}  # UDP port -> the mark its flow gets


def _ip_netns_exec(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _flows(netns: str) -> None:
    """Three UDP flows on lo, marked by port (an nft output rule)."""
    marks = ", ".join(f"{port} : {mark}" for port, mark in PORTS.items())
    ruleset = (
        "add table ip t\n"
        "add chain ip t out { type filter hook output priority 0; }\n"
        f"add rule ip t out ct mark set udp dport map {{ {marks} }}\n"
    )
    privileged.apply_nft(netns, ruleset)
    sends = "; ".join(f"s.sendto(b'x', ('127.0.0.1', {port}))" for port in PORTS)
    script = f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); {sends}"
    assert _ip_netns_exec(netns, "python3", "-c", script).returncode == 0


def _count(netns: str, mark: int) -> int:
    done = _ip_netns_exec(netns, "conntrack", "-L", "--mark", str(mark))
    found = re.search(r"(\d+) flow entries", done.stderr)
    assert found, done.stderr
    return int(found.group(1))


@pytest.fixture
def hubs() -> Iterator[tuple[str, str]]:
    with hub_pair("ct", lo_up=True) as made:
        yield made


def test_a_mark_is_deleted_in_its_namespace_only(hubs: tuple[str, str]) -> None:
    a, b = hubs
    for netns in hubs:
        _flows(netns)
        assert (_count(netns, 41), _count(netns, 42)) == (1, 2)
    privileged.conntrack_delete_mark(a, 42)
    assert (_count(a, 41), _count(a, 42)) == (1, 0)
    assert (_count(b, 41), _count(b, 42)) == (1, 2), "another namespace's entries went"
    privileged.conntrack_delete_mark(a, 42)  # nothing left with it: fine
    privileged.conntrack_delete_mark(a, 41)
    assert _count(a, 41) == 0
    # The kept socket sits above select()'s range, which libnftables needs for its own.
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > privileged.FD_SETSIZE + 64:
        assert privileged._CONNTRACK._made[a][1].fileno() >= privileged.FD_SETSIZE


def test_a_namespace_made_again_gets_a_new_socket(hubs: tuple[str, str]) -> None:
    a, _b = hubs
    privileged.conntrack_delete_mark(a, 7)  # the socket is made and kept
    privileged.delete_netns(a)  # closes it (else it would keep the namespace alive)
    with pytest.raises(privileged.NetnsNotFound):
        privileged.conntrack_delete_mark(a, 7)
    privileged.create_netns(a)
    subprocess.run(["ip", "-n", a, "link", "set", "lo", "up"], check=True, timeout=10)
    _flows(a)
    privileged.conntrack_delete_mark(a, 42)
    assert (_count(a, 41), _count(a, 42)) == (1, 0)


def test_nft_works_in_a_process_holding_more_than_1024_descriptors(
    hubs: tuple[str, str],
) -> None:
    """libnftables waits on its socket with select(): numbered 1024 or more, glibc aborts
    the process. The contexts live in a helper process, so a server holding thousands of
    descriptors (a couple of hundred hubs) goes on. Run in a child: an abort there fails
    this test instead of ending the test run."""
    a, _b = hubs
    script = (
        "import os, resource, sys\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))\n"
        "held = [os.open('/dev/null', os.O_RDONLY) for _ in range(1100)]\n"
        "from privatelink.dataplane import privileged\n"
        f"privileged.apply_nft({a!r}, 'add table ip t\\nadd chain ip t c\\n')\n"
        f"assert 'chain c' in privileged.list_nft({a!r}, 't')\n"
        "print(max(held))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) >= 1024  # the child did hold descriptors that high


def test_the_nft_helper_is_started_again_when_it_died(hubs: tuple[str, str]) -> None:
    a, _b = hubs
    privileged.apply_nft(a, "add table ip t\n")
    helper = privileged._nft()._proc
    assert helper is not None
    helper.kill()
    helper.wait(timeout=10)
    privileged.apply_nft(a, "add chain ip t c\n")  # a new helper, a new context
    assert "chain c" in privileged.list_nft(a, "t")
