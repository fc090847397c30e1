"""A fake of `privatelink.dataplane.privileged` for unit tests: in-memory namespaces.

Same functions and classes as the real module (namespaces, links, addresses, routes, nft,
conntrack, the kernel watcher's event source and gauges); every change is recorded in
`calls`, so tests see exactly which kernel work a sync does.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

from privatelink.dataplane import privileged
from privatelink.dataplane.privileged import Link, NftApplyFailed


@dataclass
class FakeNs:
    links: dict[str, Link] = field(default_factory=dict)
    # table -> dst -> (out interface index, gateway); main is 254
    tables: dict[int, dict[str, tuple[int, str | None]]] = field(default_factory=dict)
    rules: set[tuple[int, int]] = field(default_factory=lambda: {(0, 255)})  # (pref, table)
    nft: str = ""

    @property
    def routes(self) -> dict[str, tuple[int, str | None]]:
        return self.tables.setdefault(254, {})


class FakeEvents:
    """Stands for `privileged.KernelEvents`: the test puts events, the watcher reads them."""

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue()
        self.closed = False

    def read(self, timeout: float) -> list[object]:
        try:
            found = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while not self.queue.empty():
            found.append(self.queue.get_nowait())
        return [e for e in found if e is not None]

    def wake(self) -> None:
        self.queue.put(None)

    def close(self) -> None:
        self.closed = True


class FakeGauge:
    """Stands for `privileged.ConntrackGauge`: counts set by the test."""

    def __init__(self, kernel: FakeKernel, netns: str) -> None:
        if netns not in kernel.ns:
            raise privileged.NetnsNotFound(netns)
        self.kernel, self.netns = kernel, netns

    def count(self) -> int:
        if self.netns not in self.kernel.ns:
            raise privileged.NetnsNotFound(self.netns)
        return self.kernel.conntrack.get(self.netns, 0)

    def drops(self) -> int:
        return self.kernel.drops.get(self.netns, 0)

    def close(self) -> None:
        pass


class FakeKernel:
    """Same functions as `privileged`, on in-memory namespaces."""

    KernelError = privileged.KernelError

    def __init__(self) -> None:
        self.ns: dict[str, FakeNs] = {}
        self.calls: list[str] = []
        self.fail_nft = 0
        self.etc: dict[str, dict[str, str]] = {}  # /etc/netns/<name>/<file> -> text
        self.broken: set[str] = set()  # /run/netns files that are no namespace
        self.inodes: dict[str, int] = {}
        self.nsids: dict[str, int] = {}
        self.conntrack: dict[str, int] = {}  # per namespace
        self.drops: dict[str, int] = {}
        self.expired: dict[str, int] = {}  # of `conntrack`: timed out, not yet freed
        self.refused: dict[str, int] = {}  # the `refused` counter of each hub's table
        self.events = FakeEvents()

    def list_netns(self) -> list[str]:
        return sorted(self.ns)

    def netns_ok(self, name: str) -> bool:
        return name not in self.broken

    def netns_inode(self, name: str) -> int | None:
        return self.inodes.get(name) if name in self.ns else None

    def netns_id(self, name: str) -> int:
        return self.nsids.setdefault(name, len(self.nsids))

    def create_netns(self, name: str) -> None:
        self.calls.append(f"create {name}")
        if name in self.broken:
            self.broken.discard(name)
            self.ns.pop(name, None)
        if name not in self.ns:
            self.inodes[name] = max(self.inodes.values(), default=0) + 1
        self.ns.setdefault(name, FakeNs(links={"lo": Link("lo", 1, False, ())}))

    def conntrack_max(self) -> int:
        return 1000

    def take_nft_counter(self, netns: str, table: str, name: str) -> int:
        self.calls.append(f"take {netns} {name}")
        return self.refused.pop(netns, 0)

    def conntrack_reap(self, netns: str) -> None:
        self.calls.append(f"reap {netns}")
        self.conntrack[netns] = self.conntrack.get(netns, 0) - self.expired.pop(netns, 0)

    def raise_open_files_limit(self) -> int:
        return 1024

    def KernelEvents(self) -> FakeEvents:
        return self.events

    def ConntrackGauge(self, netns: str) -> FakeGauge:
        return FakeGauge(self, netns)

    def delete_netns(self, name: str) -> None:
        self.calls.append(f"delete {name}")
        self.ns.pop(name, None)

    def write_sysctls(self, name: str, values: dict[str, str]) -> None:
        self.calls.append(f"sysctl {name}")

    def apply_nft(self, name: str, text: str) -> None:
        self.calls.append(f"nft {name}")
        if self.fail_nft:
            self.fail_nft -= 1
            raise NftApplyFailed(f"nft transaction in {name} failed: Error: simulated")
        self.ns[name].nft = text

    def conntrack_delete_mark(self, name: str, mark: int) -> None:
        self.calls.append(f"conntrack {name} {mark}")

    def list_netns_etc(self) -> list[str]:
        return sorted(self.etc)

    def write_netns_etc(self, name: str, filename: str, text: str) -> None:
        if self.etc.get(name, {}).get(filename) != text:  # like privileged: no rewrite
            self.calls.append(f"etc {name}/{filename}")
            self.etc.setdefault(name, {})[filename] = text

    def remove_netns_etc(self, name: str) -> None:
        if self.etc.pop(name, None) is not None:
            self.calls.append(f"rm etc {name}")

    def Netlink(self, netns: str) -> FakeNetlink:
        if netns not in self.ns:
            raise privileged.NetnsNotFound(netns)
        return FakeNetlink(self, netns)


class FakeNetlink:
    def __init__(self, kernel: FakeKernel, netns: str) -> None:
        self.kernel, self.netns = kernel, netns
        self.ns = kernel.ns[netns]

    def close(self) -> None:
        pass

    def links(self) -> dict[str, Link]:
        return dict(self.ns.links)

    def link(self, name: str) -> Link | None:
        return self.ns.links.get(name)

    def add_address(self, name: str, address: str) -> None:
        link = self.ns.links[name]
        if address not in link.addresses:
            self.kernel.calls.append(f"addr {self.netns}/{name} {address}")
            self.ns.links[name] = Link(
                link.name, link.index, link.up, tuple(sorted((*link.addresses, address)))
            )

    def add_veth(self, name: str, peer: str, peer_netns: str) -> None:
        self.kernel.calls.append(f"veth {self.netns}/{name} {peer_netns}/{peer}")
        other = self.kernel.ns[peer_netns]
        if name in self.ns.links or peer in other.links:
            return  # EEXIST, which privileged.Netlink.add_veth ignores too
        self.ns.links[name] = Link(name, len(self.ns.links) + 1, False, ())
        other.links[peer] = Link(peer, len(other.links) + 1, False, ())

    def delete_link(self, name: str) -> None:
        self.kernel.calls.append(f"dellink {self.netns}/{name}")
        link = self.ns.links.pop(name, None)
        for table in self.ns.tables.values():  # the kernel drops the device's routes
            for dst in [d for d, (oif, _gw) in table.items() if link and oif == link.index]:
                del table[dst]

    def set_up(self, name: str) -> None:
        link = self.ns.links[name]
        self.ns.links[name] = Link(link.name, link.index, True, link.addresses)

    def set_addresses(self, name: str, wanted: list[str], current: tuple[str, ...]) -> None:
        if sorted(wanted) != sorted(current):
            self.kernel.calls.append(f"addr {self.netns}/{name} {sorted(wanted)}")
        link = self.ns.links[name]
        self.ns.links[name] = Link(link.name, link.index, link.up, tuple(sorted(wanted)))

    def routes(self, table: int = 254) -> dict[str, tuple[int, str | None]]:
        return dict(self.ns.tables.get(table, {}))

    def replace_route(
        self, dst: str, ifname: str, gateway: str | None = None, table: int = 254
    ) -> None:
        self.kernel.calls.append(f"route {self.netns} {dst}" + (f" table {table}" * (table != 254)))
        self.ns.tables.setdefault(table, {})[dst] = (self.ns.links[ifname].index, gateway)

    def delete_route(self, dst: str, table: int = 254) -> None:
        self.kernel.calls.append(
            f"delroute {self.netns} {dst}" + (f" table {table}" * (table != 254))
        )
        self.ns.tables.get(table, {}).pop(dst, None)

    def ensure_table_before_local(self, table: int, pref: int, local_pref: int) -> None:
        wanted = {(pref, table), (local_pref, 255)}
        if not wanted <= self.ns.rules:
            self.kernel.calls.append(f"rules {self.netns}")
        self.ns.rules = {r for r in self.ns.rules if r[1] != 255} | wanted
