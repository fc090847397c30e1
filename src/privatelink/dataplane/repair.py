"""What a kernel event means for the desired state: which hub, link or table it damaged.

Pure: `Owned.of(plan)` indexes what the data plane owns (namespaces, interfaces,
addresses, routes) by where the kernel reports it, and `Owned.damage(event, netns)`
names the objects that need re-verifying, or None when the event is ours or about
something we do not want (our own removals). The reconciler publishes an index before
it touches the kernel, so its own deletions never look like damage, and re-verifies
exactly what is named: the hub's addresses, NIC veths and routes (`Damage.hubs`), a
link's endpoint route (`Damage.links`), a pair of hubs' shared veth and its addresses,
with every link over it (`Damage.pairs`), a hub's nft table (`Damage.tables`).
Objects, not passes: an incremental reconciler can keep this as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from privatelink.dataplane import names
from privatelink.dataplane.desired import LinkPlan, Plan
from privatelink.dataplane.events import (
    OWN_NFT_THREAD,
    AddressGone,
    EventsLost,
    KernelEvent,
    LinkGone,
    NetnsGone,
    NftCommitted,
    RouteGone,
)

MAIN_TABLE = 254


@dataclass(frozen=True)
class Damage:
    """Objects to re-verify on the next sync, and why (for the log)."""

    hubs: frozenset[str] = frozenset()
    links: frozenset[int] = frozenset()  # slots
    tables: frozenset[str] = frozenset()  # hubs whose nft table to re-apply
    pairs: frozenset[int] = frozenset()  # pair slots: their veth and all their links
    everything: bool = False  # events were lost: only a full pass is sure to find it all
    why: tuple[str, ...] = ()

    def __or__(self, other: Damage) -> Damage:
        return Damage(
            hubs=self.hubs | other.hubs,
            links=self.links | other.links,
            tables=self.tables | other.tables,
            pairs=self.pairs | other.pairs,
            everything=self.everything or other.everything,
            why=self.why + other.why,
        )

    def __bool__(self) -> bool:
        return bool(self.hubs or self.links or self.tables or self.pairs or self.everything)


NONE = Damage()

# Owned.of's per-link entries of the last plan, by the id of the link object (the entry
# holds the object, so the id stays its own while the entry exists).
_LINK_ENTRIES: dict[int, tuple[Any, ...]] = {}


def _lo_addresses(local: Iterable[str]) -> frozenset[str]:
    return frozenset({"127.0.0.1/8", f"{names.AZURE_PLATFORM_IP}/32", *local})


def _link_entry(link: LinkPlan) -> tuple[Any, ...]:
    """A link's pair veth ends, their addresses and its endpoint route, keyed as `Owned`
    keys them."""
    return (
        link,
        (link.consumer_netns, link.consumer_ifname),
        (link.provider_netns, link.provider_ifname),
        frozenset({f"{link.consumer_addr}/30"}),
        frozenset({f"{link.provider_addr}/30"}),
        (link.consumer_netns, names.ENDPOINT_TABLE, f"{link.pe_ip}/32"),
    )


def _hub(netns: str, why: str) -> Damage:
    return Damage(hubs=frozenset({netns}), why=(why,))


def _link(slot: int, why: str) -> Damage:
    return Damage(links=frozenset({slot}), why=(why,))


@dataclass(frozen=True)
class PairEnd:
    """What a pair veth's end is owned for: the pair of hubs (by slot) it serves."""

    pair: int


@dataclass(frozen=True)
class Owned:
    """What the data plane owns, keyed as the kernel reports it."""

    hubs: frozenset[str] = frozenset()
    nic_hub: Mapping[str, str] = field(default_factory=dict)  # NIC namespace -> its hub
    # (hub, interface) -> (hub to re-verify, or pair): what depends on the interface
    interfaces: Mapping[tuple[str, str], str | PairEnd] = field(default_factory=dict)
    addresses: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    routes: Mapping[tuple[str, int, str], str | int] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: Plan) -> Owned:
        """Index a plan."""
        interfaces: dict[tuple[str, str], str | PairEnd] = {}
        addresses: dict[tuple[str, str], frozenset[str]] = {}
        routes: dict[tuple[str, int, str], str | int] = {}
        nic_hub: dict[str, str] = {}
        for hub in plan.hubs:
            local = {f"{ip}/32" for ip in hub.pe_ips}
            local |= {f"{ip}/32" for s in hub.services for ip in s.nat_ips}
            interfaces[(hub.netns, "lo")] = hub.netns
            addresses[(hub.netns, "lo")] = _lo_addresses(local)
            for nic in hub.nics:
                nic_hub[nic.netns] = hub.netns
                interfaces[(hub.netns, nic.hub_ifname)] = hub.netns
                addresses[(hub.netns, nic.hub_ifname)] = frozenset({f"{names.GATEWAY}/32"})
                for ip in nic.ips:
                    routes[(hub.netns, MAIN_TABLE, f"{ip}/32")] = hub.netns
        # A link's entries, kept per link object: the planner hands out the same object
        # while a link does not change, so a plan of 10,000 links re-indexes only new ones.
        global _LINK_ENTRIES
        kept, used = _LINK_ENTRIES, {}
        for link in plan.links:
            if link.local:
                continue
            entry = kept.get(id(link))
            if entry is None or entry[0] is not link:
                entry = _link_entry(link)
            used[id(link)] = entry
            _, consumer, provider, consumer_addr, provider_addr, route = entry
            interfaces[consumer] = interfaces[provider] = PairEnd(link.pair)
            addresses[consumer] = consumer_addr
            addresses[provider] = provider_addr
            routes[route] = link.slot
        _LINK_ENTRIES = used
        hubs = frozenset(h.netns for h in plan.hubs)
        # The fabric's wires and routes in hubs (peerings, uplinks, gateways): a hub that
        # lost one is re-verified, and with it the whole fabric (few wires: no index).
        for w in plan.fabric.wires:
            for netns, ifname, addr in (
                (w.a_netns, w.a_ifname, w.a_addr),
                (w.b_netns, w.b_ifname, w.b_addr),
            ):
                if netns in hubs:
                    interfaces[(netns, ifname)] = netns
                    addresses[(netns, ifname)] = frozenset({f"{addr}/30"})
        for r in plan.fabric.routes:
            if r.netns in hubs:
                routes[(r.netns, MAIN_TABLE, r.dst)] = r.netns
        return cls(hubs, nic_hub, interfaces, addresses, routes)

    def changed(
        self,
        added: Iterable[LinkPlan],
        removed: Iterable[LinkPlan],
        lo: Mapping[str, frozenset[str]],
        gone_pairs: frozenset[int] = frozenset(),
    ) -> Owned:
        """This index after links came and went (and with them the pair veths of
        `gone_pairs`) and hubs' local (PE and NAT) addresses changed (`lo`: hub -> its
        addresses now): the planner's incremental update, indexed by difference."""
        interfaces, addresses, routes = (
            dict(self.interfaces),
            dict(self.addresses),
            dict(self.routes),
        )
        for link in removed:
            if link.local:
                continue
            _, consumer, provider, _, _, route = _link_entry(link)
            for end in (consumer, provider):
                if link.pair in gone_pairs and interfaces.get(end) == PairEnd(link.pair):
                    del interfaces[end]
                    addresses.pop(end, None)
            if routes.get(route) == link.slot:
                del routes[route]
        for link in added:
            if link.local:
                continue
            _, consumer, provider, consumer_addr, provider_addr, route = _link_entry(link)
            interfaces[consumer] = interfaces[provider] = PairEnd(link.pair)
            addresses[consumer] = consumer_addr
            addresses[provider] = provider_addr
            routes[route] = link.slot
        for netns, local in lo.items():
            addresses[(netns, "lo")] = _lo_addresses(local)
        return Owned(self.hubs, self.nic_hub, interfaces, addresses, routes)

    def watched(self) -> frozenset[str]:
        """The namespaces whose events matter: the hubs (a NIC's veth is seen from its hub)."""
        return self.hubs

    def damage(self, event: KernelEvent, netns: str | None = None) -> Damage | None:
        """What `event` (from namespace `netns`, for netlink events) damaged, if anything."""
        if isinstance(event, EventsLost):
            return Damage(everything=True, why=(f"kernel events were lost ({event.source})",))
        if isinstance(event, NetnsGone):
            if event.name in self.hubs:
                return _hub(event.name, f"hub namespace {event.name} was deleted")
            if event.name in self.nic_hub:
                hub = self.nic_hub[event.name]
                return _hub(hub, f"NIC namespace {event.name} (hub {hub}) was deleted")
            return None
        if netns is None or netns not in self.hubs:
            return None
        if isinstance(event, NftCommitted):
            if event.thread in (OWN_NFT_THREAD, ""):
                # Ours; or a kernel that does not name the committer, where re-applying
                # on every commit would never end (our own would count): the full pass.
                return None
            who = event.thread
            why = f"{who} changed the nftables ruleset of {netns} (generation {event.generation})"
            return Damage(tables=frozenset({netns}), why=(why,))
        if isinstance(event, LinkGone):
            target = self.interfaces.get((netns, event.ifname))
            return _target(target, f"interface {event.ifname} was deleted in {netns}")
        if isinstance(event, AddressGone):
            if event.address not in self.addresses.get((netns, event.ifname), ()):
                return None
            target = self.interfaces.get((netns, event.ifname))
            why = f"address {event.address} was removed from {event.ifname} in {netns}"
            return _target(target, why)
        if isinstance(event, RouteGone):
            route = self.routes.get((netns, event.table, event.dst))
            return _target(route, f"route {event.dst} (table {event.table}) removed in {netns}")
        return None


def _target(target: str | int | PairEnd | None, why: str) -> Damage | None:
    if target is None:
        return None
    if isinstance(target, PairEnd):
        return Damage(pairs=frozenset({target.pair}), why=(why,))
    return _link(target, why) if isinstance(target, int) else _hub(target, why)


def links_touching(plan: Plan, hubs: Iterable[str], pairs: Iterable[int] = ()) -> frozenset[int]:
    """Slots of the links with an end in one of `hubs` (a re-made hub needs them again)
    or over the veth of one of `pairs`."""
    wanted, over = set(hubs), set(pairs)
    return frozenset(
        x.slot
        for x in plan.links
        if not x.local
        and (x.consumer_netns in wanted or x.provider_netns in wanted or x.pair in over)
    )
