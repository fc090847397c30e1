"""A fake of `privatelink.dataplane.privileged` for unit tests: in-memory namespaces.

Same functions and classes as the real module (namespaces, links, addresses, routes, nft,
conntrack, the kernel watcher's event source and gauges); every change is recorded in
`calls`, so tests see exactly which kernel work a sync does.
"""

from __future__ import annotations

import queue
import re
from dataclasses import dataclass, field

from privatelink.dataplane import privileged
from privatelink.dataplane.names import TABLE
from privatelink.dataplane.privileged import Link, NftApplyFailed


class FakeNftTable:
    """Our nft table in one namespace, as the kernel would hold it: applies the whole-table
    transactions of `nft.serialize` and the element/chain commands of `nft.delta`, and
    fails like the kernel does (a missing element or chain, a chain still jumped to, an
    existing map key), the whole transaction or nothing."""

    def __init__(self) -> None:
        self.sets: dict[str, set[str]] | None = None  # None: no table
        self.maps: dict[str, dict[str, str]] = {}
        self.chains: dict[str, list[str]] = {}

    def apply(self, text: str) -> None:
        saved = (
            None if self.sets is None else {k: set(v) for k, v in self.sets.items()},
            {k: dict(v) for k, v in self.maps.items()},
            {k: list(v) for k, v in self.chains.items()},
        )
        try:
            if text.startswith(f"table ip {TABLE} {{}}"):
                self._replace(text)
            else:
                for line in text.splitlines():
                    if line.strip():
                        self._command(line.strip())
        except (KeyError, ValueError) as exc:
            self.sets, self.maps, self.chains = saved
            raise NftApplyFailed(f"nft transaction failed: Error: {exc}") from exc

    def _replace(self, text: str) -> None:
        self.sets, self.maps, self.chains = {}, {}, {}
        chain: str | None = None
        for raw in text.splitlines()[3:]:
            line = raw.strip()
            if chain is not None:
                if line == "}":
                    chain = None
                elif not line.startswith("type "):  # a base chain's hook
                    self.chains[chain].append(line)
                continue
            kind, _, rest = line.partition(" ")
            name = rest.split(" ", 1)[0]
            items = _elements(line)
            if kind == "set":
                self.sets[name] = set(items)
            elif kind == "map":
                self.maps[name] = dict(i.split(" : ", 1) for i in items)  # type: ignore[misc]
            elif kind == "chain":
                chain = name
                self.chains[name] = []

    def _command(self, line: str) -> None:
        if self.sets is None:
            raise KeyError("no such table")
        verb, obj, _family, _table, name, *rest = line.split(" ", 5)
        tail = rest[0] if rest else ""
        if (verb, obj) == ("add", "chain"):
            if name in self.chains:
                raise ValueError(f"chain {name} exists")
            self.chains[name] = []
        elif (verb, obj) == ("flush", "chain"):
            self.chains[name].clear() if name in self.chains else _missing(name)
        elif (verb, obj) == ("add", "rule"):
            self.chains[name].append(tail) if name in self.chains else _missing(name)
        elif (verb, obj) == ("delete", "chain"):
            if name not in self.chains:
                _missing(name)
            jump = re.compile(rf"jump {re.escape(name)}(?![\w])")
            users = [r for rules in self.chains.values() for r in rules if jump.search(r)]
            users += [v for m in self.maps.values() for v in m.values() if jump.search(v)]
            if users:
                raise ValueError(f"chain {name} is in use")
            del self.chains[name]
        elif obj == "element":
            items = _elements(tail)
            if name in self.sets:
                target = self.sets[name]
                for item in items:
                    if verb == "delete":
                        target.remove(item)
                    else:
                        target.add(item)
            else:
                mapping = self.maps[name]
                for item in items:
                    if verb == "delete":
                        del mapping[item]
                    else:
                        k, v = item.split(" : ", 1)
                        if k in mapping:
                            raise ValueError(f"{k} exists in {name}")
                        mapping[k] = v
        else:
            raise ValueError(f"unknown command {line}")

    def text(self) -> str:
        """The table in `nft.serialize`'s shape, elements sorted ('' without a table)."""
        if self.sets is None:
            return ""
        lines = [f"table ip {TABLE} {{"]
        for name, items in self.sets.items():
            elements = f" elements = {{ {', '.join(sorted(items))} }};" if items else ""
            lines.append(f"  set {name} {{{elements} }}")
        for name, mapping in self.maps.items():
            pairs = ", ".join(f"{k} : {v}" for k, v in sorted(mapping.items()))
            lines.append(f"  map {name} {{{f' elements = {{ {pairs} }};' if pairs else ''} }}")
        for name, rules in self.chains.items():
            lines += [f"  chain {name} {{", *(f"    {r}" for r in rules), "  }"]
        return "\n".join([*lines, "}"]) + "\n"

    def state(self) -> tuple[object, ...]:
        """What the table holds, order-free where the kernel's is."""
        return (
            self.sets,
            self.maps,
            {k: tuple(v) for k, v in self.chains.items()},
        )


def _elements(text: str) -> list[str]:
    """The elements of a set/map block (`elements = { ... }`) or of a command (`{ ... }`)."""
    if "elements = {" in text:
        inner = text.split("elements = {", 1)[1].split("}", 1)[0]
    elif text.startswith("{"):
        inner = text[1:].rsplit("}", 1)[0]
    else:
        return []
    return [i.strip() for i in inner.split(", ") if i.strip()]


def _missing(name: str) -> None:
    raise KeyError(f"no such chain {name}")


@dataclass
class FakeNs:
    links: dict[str, Link] = field(default_factory=dict)
    # table -> dst -> (out interface index, gateway); main is 254
    tables: dict[int, dict[str, tuple[int, str | None]]] = field(default_factory=dict)
    rules: set[tuple[int, int]] = field(default_factory=lambda: {(0, 255)})  # (pref, table)
    table: FakeNftTable = field(default_factory=FakeNftTable)

    @property
    def routes(self) -> dict[str, tuple[int, str | None]]:
        return self.tables.setdefault(254, {})

    @property
    def nft(self) -> str:
        """Our table's text ('' when there is none)."""
        return self.table.text()

    @nft.setter
    def nft(self, text: str) -> None:
        if text:
            self.table.apply(text)
        else:
            self.table = FakeNftTable()  # `nft delete table`, or flushed: gone


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

    def forget_nft(self, name: str) -> None:
        pass  # no sockets here

    def apply_nft(self, name: str, text: str) -> None:
        self.calls.append(f"nft {name}")
        if self.fail_nft:
            self.fail_nft -= 1
            raise NftApplyFailed(f"nft transaction in {name} failed: Error: simulated")
        self.ns[name].table.apply(text)

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
        self.kernel.calls.append(f"links {self.netns}")  # a dump: what a sync should avoid
        return dict(self.ns.links)

    def link(self, name: str) -> Link | None:
        return self.ns.links.get(name)

    def operational(self, name: str) -> bool:
        link = self.ns.links.get(name)
        return link is not None and link.up

    def add_address(self, name: str, address: str, index: int | None = None) -> None:
        link = self.ns.links[name]
        assert index in (None, link.index), f"{name} has index {link.index}, not {index}"
        if address not in link.addresses:
            self.kernel.calls.append(f"addr {self.netns}/{name} {address}")
            self.ns.links[name] = Link(
                link.name, link.index, link.up, tuple(sorted((*link.addresses, address)))
            )

    def delete_address(self, name: str, address: str) -> None:
        link = self.ns.links[name]
        if address in link.addresses:
            self.kernel.calls.append(f"deladdr {self.netns}/{name} {address}")
            kept = tuple(a for a in link.addresses if a != address)
            self.ns.links[name] = Link(link.name, link.index, link.up, kept)

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

    def set_up(self, name: str, index: int | None = None) -> None:
        link = self.ns.links[name]
        assert index in (None, link.index), f"{name} has index {link.index}, not {index}"
        self.ns.links[name] = Link(link.name, link.index, True, link.addresses)

    def set_addresses(self, name: str, wanted: list[str], current: tuple[str, ...]) -> None:
        if sorted(wanted) != sorted(current):
            self.kernel.calls.append(f"addr {self.netns}/{name} {sorted(wanted)}")
        link = self.ns.links[name]
        self.ns.links[name] = Link(link.name, link.index, link.up, tuple(sorted(wanted)))

    def routes(self, table: int = 254) -> dict[str, tuple[int, str | None]]:
        return dict(self.ns.tables.get(table, {}))

    def replace_route(
        self,
        dst: str,
        ifname: str,
        gateway: str | None = None,
        table: int = 254,
        index: int | None = None,
        src: str | None = None,
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
