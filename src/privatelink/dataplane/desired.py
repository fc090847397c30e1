"""Desired kernel state as a pure function of the stored resources.

`plan(snapshot)` turns networks, NICs, load balancers, private link services and
private endpoints into a `Plan`: which namespaces, veths, addresses and routes exist,
and what each hub's nft table holds. Nothing here touches the kernel.

Topology (see docs/dataplane.md): every virtual network has a hub namespace that
routes for it; every user NIC is a namespace with its IP on eth0 and a default route
to the hub; every approved private endpoint connection is a "link" between the
consumer's hub and the provider's hub: its own conntrack mark and map elements, over
one veth pair that all connections between those two hubs share (docs/dataplane.md §8).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol

from privatelink.core.ids import ResourceId, key
from privatelink.core.load_balancer import LoadBalancer, Probe, Rule
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.private_endpoint import PrivateEndpoint
from privatelink.core.private_link_service import (
    APPROVED,
    PrivateEndpointConnection,
    PrivateLinkService,
)
from privatelink.core.resource import Resource
from privatelink.core.virtual_network import VirtualNetwork
from privatelink.dataplane import fabric as fabric_plan
from privatelink.dataplane import names


@dataclass(frozen=True)
class ProbeSpec:
    """A health probe as the prober runs it."""

    protocol: str
    port: int
    path: str | None
    interval: float
    threshold: int
    proxy: bool = False  # a PROXY v2 LOCAL header first (its service has enableProxyProtocol)


@dataclass(frozen=True)
class HealthKey:
    """One (hub, probe, backend) the prober tracks."""

    netns: str
    backend_ip: str
    probe: ProbeSpec


@dataclass(frozen=True)
class NicPlan:
    """A user NIC: a namespace with its addresses, wired to its VNet's hub."""

    nic_id: str
    netns: str
    hub_ifname: str
    ips: tuple[str, ...]


@dataclass(frozen=True)
class RulePlan:
    """A load-balancing rule as nft sees it."""

    rule_id: str
    chain: str
    protocol: str  # "tcp" or "udp"
    frontend_ip: str
    frontend_port: int
    backend_port: int
    backends: tuple[str, ...]  # healthy members, sorted
    distribution: str
    # The probe of every member, healthy or not (none without a probe): the metrics'
    # health probe status (dataplane/metrics.py); nft does not read it.
    probed: tuple[HealthKey, ...] = ()


@dataclass(frozen=True)
class ServicePlan:
    """A private link service in its provider hub."""

    pls_id: str
    chain: str
    snat_chain: str
    nat_ips: tuple[str, ...]
    ports: tuple[tuple[str, int, str], ...]  # (protocol, frontend port, rule chain)
    proxy: bool = False  # enableProxyProtocol: new flows go to the relay (dataplane/proxy)
    # Direct Connect (destinationIPAddress): every TCP port goes to this address, the same
    # port (no rules: `ports` is empty); None for a load-balanced service.
    destination: str | None = None


@dataclass(frozen=True)
class LinkPlan:
    """An approved connection: its mark and NAT entries, and the veth of its pair of
    hubs (`pair`: the pair's slot, which names the veth and gives its /30)."""

    link_key: str
    slot: int
    pair: int
    mark: int
    pe_ip: str
    consumer_netns: str
    provider_netns: str
    consumer_ifname: str
    provider_ifname: str
    consumer_addr: str
    provider_addr: str
    service_chain: str
    ports: tuple[int, ...]
    local: bool = False  # endpoint and service in the same network: no veth, NAT in the hub
    # A Direct Connect service's link: every TCP port of its PE is the service's, so the
    # consumer marks by PE ip alone (`pe_mark_any`), not by PE ip and port (`pe_mark`).
    all_ports: bool = False

    @classmethod
    def on_slot(
        cls,
        slot: int,
        link_key: str,
        pe_ip: str,
        consumer_netns: str,
        provider_netns: str,
        service_chain: str,
        ports: tuple[int, ...],
        local: bool = False,
        pair: int | None = None,
        all_ports: bool = False,
    ) -> LinkPlan:
        """A link whose mark comes from its slot, and whose veth names and addresses
        from its pair's slot (`pair`, the link's own slot when not given; a `local` link
        has no veth); `all_ports` for a Direct Connect service's link."""
        pair = slot if pair is None else pair
        consumer_addr, provider_addr = ("", "") if local else names.link_addresses(pair)
        return cls(
            link_key=link_key,
            slot=slot,
            pair=-1 if local else pair,
            mark=names.link_mark(slot),
            pe_ip=pe_ip,
            consumer_netns=consumer_netns,
            provider_netns=provider_netns,
            consumer_ifname="" if local else names.link_ifname(pair, "c"),
            provider_ifname="" if local else names.link_ifname(pair, "p"),
            consumer_addr=consumer_addr,
            provider_addr=provider_addr,
            service_chain=service_chain,
            ports=ports,
            local=local,
            all_ports=all_ports,
        )


class PairSlots(Protocol):
    """Where the planner gets the slots of pairs of hubs (`names.pair_key`)."""

    def get(self, pair: str) -> int | None:
        """The pair's slot (given now if it had none); None when none is free."""

    def release(self, pairs: Iterable[str]) -> None:
        """These pairs have no link any more."""

    def keep(self, pairs: set[str]) -> None:
        """Only these pairs have links: release every other."""


class MemoryPairSlots:
    """Pair slots kept in memory, lowest free first (what a plan without a store uses)."""

    def __init__(self, limit: int = names.MAX_PAIRS) -> None:
        self.limit = limit
        self.slots: dict[str, int] = {}

    def get(self, pair: str) -> int | None:
        """The pair's slot, the lowest free one if it had none."""
        slot = self.slots.get(pair)
        if slot is None:
            taken = set(self.slots.values())
            slot = next((s for s in range(self.limit) if s not in taken), None)
            if slot is not None:
                self.slots[pair] = slot
        return slot

    def release(self, pairs: Iterable[str]) -> None:
        """Free these pairs' slots."""
        for pair in pairs:
            self.slots.pop(pair, None)

    def keep(self, pairs: set[str]) -> None:
        """Free every slot but these pairs'."""
        self.release([p for p in self.slots if p not in pairs])


@dataclass(frozen=True)
class HubPlan:
    """One virtual network's hub namespace and its nft table."""

    vnet_id: str
    netns: str
    nics: tuple[NicPlan, ...] = ()
    rules: tuple[RulePlan, ...] = ()
    services: tuple[ServicePlan, ...] = ()
    links_out: tuple[LinkPlan, ...] = ()  # this hub is the consumer side
    links_in: tuple[LinkPlan, ...] = ()  # this hub is the provider side
    pe_ips: tuple[str, ...] = ()
    fabric: fabric_plan.HubFabric = fabric_plan.NO_FABRIC  # peerings (dataplane/fabric.py)


@dataclass(frozen=True)
class Plan:
    """The whole desired state."""

    hubs: tuple[HubPlan, ...]
    links: tuple[LinkPlan, ...]
    health_checks: tuple[HealthKey, ...]
    problems: Mapping[str, str] = field(default_factory=dict)  # resource key -> message
    fabric: fabric_plan.Fabric = fabric_plan.EMPTY

    def hub(self, netns: str) -> HubPlan | None:
        """The hub with this namespace name."""
        return next((h for h in self.hubs if h.netns == netns), None)


@dataclass(frozen=True)
class Snapshot:
    """The stored resources the plan is computed from."""

    vnets: tuple[VirtualNetwork, ...]
    nics: tuple[NetworkInterface, ...]
    load_balancers: tuple[LoadBalancer, ...]
    services: tuple[PrivateLinkService, ...]
    endpoints: tuple[PrivateEndpoint, ...]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Snapshot:
        """Sort resources by type."""
        items = list(resources)
        return cls(
            vnets=tuple(r for r in items if isinstance(r, VirtualNetwork)),
            nics=tuple(r for r in items if isinstance(r, NetworkInterface)),
            load_balancers=tuple(r for r in items if isinstance(r, LoadBalancer)),
            services=tuple(r for r in items if isinstance(r, PrivateLinkService)),
            endpoints=tuple(r for r in items if isinstance(r, PrivateEndpoint)),
        )


def connection_key(service_id: str, connection_name: str) -> str:
    """Stable identity of a private endpoint connection (what a link slot is keyed by)."""
    return f"{key(service_id)}/privateendpointconnections/{connection_name.lower()}"


@lru_cache(maxsize=65536)  # asked for every NIC and endpoint of every plan
def vnet_of_subnet(subnet_id: str) -> str:
    """Key of the network a subnet belongs to."""
    return ResourceId.parse(subnet_id).parent().key


def probe_spec(probe: Probe, proxy: bool = False) -> ProbeSpec:
    """What the prober needs from a stored probe (`proxy`: its load balancer has a
    private link service with enableProxyProtocol, whose probes carry a header too)."""
    return ProbeSpec(
        protocol=probe.protocol,
        port=probe.port,
        path=probe.request_path,
        interval=float(probe.interval_in_seconds),
        # Azure now counts probeThreshold consecutive failures (numberOfProbes is legacy).
        threshold=max(probe.probe_threshold, 1),
        proxy=proxy,
    )


def _lb_network(
    lb: LoadBalancer, nics: Iterable[NetworkInterface], services: Iterable[PrivateLinkService]
) -> str | None:
    """Key of the network a load balancer's hub is: an internal one's frontends', a
    public one's backends' (its pools' NICs, else its services' NAT IPs), as
    core.load_balancer.backend_network decides it; None while nothing decides it."""
    if not lb.is_public:
        return vnet_of_subnet(lb.frontends[0].subnet_id)
    pools = {key(lb.child_id("backendAddressPools", p.name)) for p in lb.pools}
    for nic in nics:
        for config in nic.ip_configurations:
            if any(key(p) in pools for p in config.pool_ids):
                return vnet_of_subnet(nic.ip_configurations[0].subnet_id)
    for pls in services:
        if pls.load_balancer_key == lb.key and pls.ip_configurations:
            return vnet_of_subnet(pls.ip_configurations[0].subnet_id)
    return None


def _pool_members(lb: LoadBalancer, rule: Rule, nics: Iterable[NetworkInterface]) -> set[str]:
    pools = {key(p) for p in rule.pool_ids}
    members: set[str] = set()
    for nic in nics:
        for config in nic.ip_configurations:
            if config.private_ip and pools & {key(p) for p in config.pool_ids}:
                members.add(config.private_ip)
    for pool in lb.pools:
        if key(lb.child_id("backendAddressPools", pool.name)) in pools:
            members.update(a.ip_address for a in pool.addresses)
    return members


def plan(
    snapshot: Snapshot,
    slots: Mapping[str, int],
    health: Mapping[HealthKey, bool],
    prefix: str = names.DEFAULT_PREFIX,
    pairs: PairSlots | None = None,
    fabric: fabric_plan.Fabric = fabric_plan.EMPTY,
) -> Plan:
    """Compute the desired kernel state.

    `slots` maps connection keys to link slots (links without a slot are not realized
    yet); `health` maps probe targets to their last verdict (absent = healthy, so a
    new backend takes traffic until its probe says otherwise); `pairs` gives pairs of
    hubs their slots (by default in memory, lowest free first).
    """
    return Planner().plan(snapshot, slots, health, prefix, pairs, fabric)


def service_facts(pls: PrivateLinkService) -> tuple[object, ...]:
    """What a plan takes from a service, apart from its connections (whose approvals
    reach a plan as link slots and through the endpoints' copies of their state): a
    service changed only in other ways is re-planned by its endpoints alone."""
    return (
        pls.load_balancer_key,
        pls.frontend_ids,
        tuple(c.private_ip for c in pls.ip_configurations),
        pls.enable_proxy_protocol,
        pls.destination_ip_address,
    )


def approved_keys(resources: Iterable[Resource]) -> set[str]:
    """Keys of the approved connections among `resources` (those that take a link slot;
    a connection's key is its `connection_key`)."""
    return {
        r.key
        for r in resources
        if isinstance(r, PrivateEndpointConnection) and r.status == APPROVED
    }


@dataclass(frozen=True, slots=True)
class _Part:
    """What one private endpoint adds to a plan, and what it was computed from."""

    pe: PrivateEndpoint
    nic: NetworkInterface | None
    nic_key: str
    consumer_vnet: str
    pe_ip: str | None
    service_key: str
    approved: bool
    link_key: str
    inputs: tuple[object, ...] | None
    link: LinkPlan | None
    problem: str | None
    pair_key: str | None  # the pair of hubs whose veth the link uses (None: no veth)


def _part(
    pe: PrivateEndpoint,
    nic: NetworkInterface | None,
    old: _Part | None,
    services: Mapping[str, tuple[str, ServicePlan]],
    hub_names: Mapping[str, str],
    slots: Mapping[str, int],
    pairs: PairSlots,
) -> _Part:
    """An endpoint's part of the plan; what depends on the endpoint and its NIC alone is
    kept from `old` while both are the same objects (stored resources are immutable)."""
    if old is not None and old.pe is pe and old.nic is nic:
        nic_key, consumer_vnet, pe_ip = old.nic_key, old.consumer_vnet, old.pe_ip
        service_key, approved, link_key = old.service_key, old.approved, old.link_key
    else:
        conn = pe.connection
        nic_key = key(pe.nic_id)
        consumer_vnet = vnet_of_subnet(pe.subnet_id)
        pe_ip = nic.primary_ip if nic else None
        service_key = key(conn.private_link_service_id)
        approved = conn.status == APPROVED
        link_key = connection_key(conn.private_link_service_id, conn.remote_name)
    inputs: tuple[object, ...] | None = None
    link: LinkPlan | None = None
    problem: str | None = None
    pair_key: str | None = None
    found = services.get(service_key) if pe_ip and approved else None
    if found is not None and consumer_vnet in hub_names and found[0] in hub_names:
        provider_vnet, sp = found
        local = consumer_vnet == provider_vnet
        slot = slots.get(link_key)
        pair: int | None = -1
        if not local and slot is not None:
            pair_key = names.pair_key(consumer_vnet, provider_vnet)
            pair = pairs.get(pair_key)
        if slot is None:
            problem = f"no free link slot (at most {names.MAX_SLOTS} approved connections per host)"
        elif pair is None:
            pair_key = None
            problem = f"no free link slot (at most {names.MAX_PAIRS} pairs of networks per host)"
        else:
            assert pe_ip is not None
            inputs = (
                link_key,
                slot,
                pair,
                pe_ip,
                hub_names[consumer_vnet],
                hub_names[provider_vnet],
                sp.chain,
                sp.ports,
                consumer_vnet == provider_vnet,
                sp.destination is not None,
            )
            if old is not None and old.inputs == inputs:
                link = old.link
            else:
                link = LinkPlan.on_slot(
                    slot,
                    link_key,
                    pe_ip,
                    hub_names[consumer_vnet],
                    hub_names[provider_vnet],
                    sp.chain,
                    tuple(port for _, port, _ in sp.ports),
                    local=local,
                    pair=pair,
                    all_ports=sp.destination is not None,
                )
    return _Part(
        pe,
        nic,
        nic_key,
        consumer_vnet,
        pe_ip,
        service_key,
        approved,
        link_key,
        inputs,
        link,
        problem,
        pair_key,
    )


def _slot(link: LinkPlan) -> int:
    return link.slot


@dataclass
class _Hub:
    """A hub's endpoint-made contents, kept sorted as its plan lists them."""

    out: list[LinkPlan] = field(default_factory=list)
    into: list[LinkPlan] = field(default_factory=list)
    pe_count: dict[str, int] = field(default_factory=dict)
    pe_ips: list[str] = field(default_factory=list)

    def add(self, part: _Part, provider: _Hub | None) -> None:
        if part.pe_ip:
            n = self.pe_count.get(part.pe_ip, 0)
            self.pe_count[part.pe_ip] = n + 1
            if not n:
                bisect.insort(self.pe_ips, part.pe_ip)
        link = part.link
        if link is not None:
            if not link.local:
                bisect.insort(self.out, link, key=_slot)
            if provider is not None:
                bisect.insort(provider.into, link, key=_slot)

    def remove(self, part: _Part, provider: _Hub | None) -> None:
        if part.pe_ip:
            n = self.pe_count[part.pe_ip] - 1
            if n:
                self.pe_count[part.pe_ip] = n
            else:
                del self.pe_count[part.pe_ip]
                self.pe_ips.pop(bisect.bisect_left(self.pe_ips, part.pe_ip))
        link = part.link
        if link is not None:
            if not link.local:
                _take(self.out, link)
            if provider is not None:
                _take(provider.into, link)


def _take(links: list[LinkPlan], link: LinkPlan) -> None:
    i = bisect.bisect_left(links, link.slot, key=_slot)
    while links[i] is not link:
        i += 1
    del links[i]


@dataclass(frozen=True)
class PlanChange:
    """An incremental plan: the new plan, the links that came and went, and per hub
    (namespace) the PE addresses that came and went."""

    plan: Plan
    added: tuple[LinkPlan, ...]
    removed: tuple[LinkPlan, ...]
    hubs: frozenset[str]  # hubs whose plan changed
    pe_ips: Mapping[str, tuple[frozenset[str], frozenset[str]]]  # netns -> (added, removed)
    # Slots of the pairs of hubs whose first link came and whose last link went: their
    # veth is made or deleted, their shared elements added or removed.
    new_pairs: frozenset[int] = frozenset()
    gone_pairs: frozenset[int] = frozenset()


class Planner:
    """`plan`, remembering what each endpoint contributed, so that a change of endpoints
    (or of their NICs or link slots) is planned by those endpoints alone (`update`).

    Stored resources are immutable (a change is a new object): an endpoint's part is
    kept while the endpoint, its NIC and the other inputs stay the same, and a kept link
    is the very same object, so comparisons of hub plans stay cheap. Whatever happened
    before, the result is what `plan` computes (tests/unit/test_planner.py).
    """

    def __init__(self) -> None:
        self._parts: dict[str, _Part] = {}
        self._nics: dict[str, tuple[NetworkInterface, str, str, NicPlan]] = {}
        self._ready = False
        self._prefix = ""
        self._health: Mapping[HealthKey, bool] = {}
        self._services: dict[str, tuple[str, ServicePlan]] = {}
        self._hub_names: dict[str, str] = {}
        self._hubs: dict[str, _Hub] = {}
        self._hub_plans: dict[str, HubPlan] = {}
        self._links: list[LinkPlan] = []
        self._problems: dict[str, str] = {}  # endpoints' problems
        self._static_problems: dict[str, str] = {}
        self._by_nic: dict[str, set[str]] = {}
        self._by_link_key: dict[str, set[str]] = {}
        self._plan: Plan | None = None
        self._pairs: PairSlots = MemoryPairSlots()
        self._pair_links: dict[str, int] = {}  # links per pair of hubs (with a veth)

    def plan(
        self,
        snapshot: Snapshot,
        slots: Mapping[str, int],
        health: Mapping[HealthKey, bool],
        prefix: str = names.DEFAULT_PREFIX,
        pairs: PairSlots | None = None,
        fabric: fabric_plan.Fabric = fabric_plan.EMPTY,
    ) -> Plan:
        """The desired kernel state (as `plan`), from every resource. `pairs` gives the
        slots of pairs of hubs (kept by the planner for later `update`s; by default
        in memory, lowest free first); `fabric` the peerings' wires (fabric.plan), whose
        hub parts go into the hubs' plans."""
        self._ready = False
        if pairs is not None:
            self._pairs = pairs
        problems: dict[str, str] = {}
        hub_names = {v.key: names.hub_netns(prefix, v.id) for v in snapshot.vnets}
        vnet_ids = {v.key: v.id for v in snapshot.vnets}
        static: dict[str, dict[str, list[Any]]] = {k: {} for k in hub_names}

        def hub_list(vnet_key: str, what: str) -> list[Any]:
            return static.setdefault(vnet_key, {}).setdefault(what, [])

        last_nics = self._nics
        nics: dict[str, tuple[NetworkInterface, str, str, NicPlan]] = {}
        for nic in snapshot.nics:
            if nic.managed_by or not nic.ip_configurations:
                continue  # service and endpoint NICs are realized by their hub's NAT rules
            kept = last_nics.get(nic.key)
            if kept is not None and kept[0] is nic and kept[1] == prefix:
                vnet, nic_plan = kept[2], kept[3]
            else:
                vnet = vnet_of_subnet(nic.ip_configurations[0].subnet_id)
                ips = tuple(c.private_ip for c in nic.ip_configurations if c.private_ip)
                nic_plan = NicPlan(
                    nic.id, names.nic_netns(prefix, nic.id), names.nic_hub_ifname(nic.id), ips
                )
            nics[nic.key] = (nic, prefix, vnet, nic_plan)
            hub_list(vnet, "nics").append(nic_plan)
        self._nics = nics

        user_nics = [n for n in snapshot.nics if not n.managed_by]
        checks: list[HealthKey] = []
        rule_chains: dict[str, RulePlan] = {}
        lb_vnets: dict[str, str] = {}
        proxied_lbs = {s.load_balancer_key for s in snapshot.services if s.enable_proxy_protocol}
        for lb in snapshot.load_balancers:
            if not lb.frontends:
                continue
            found_vnet = _lb_network(lb, user_nics, snapshot.services)
            if found_vnet is None:
                continue  # a public load balancer with nothing behind it yet
            vnet = lb_vnets[lb.key] = found_vnet
            netns = hub_names.get(vnet, "")
            probes = {key(lb.child_id("probes", p.name)): p for p in lb.probes}
            # A public frontend's address is its public IP's (fabric.py routes it here).
            frontend_ips = {
                key(lb.child_id("frontendIPConfigurations", f.name)): f.address
                for f in lb.frontends
            }
            for rule in lb.rules:
                rule_id = lb.child_id("loadBalancingRules", rule.name)
                if rule.protocol == "All" or rule.frontend_port == 0:
                    problems[lb.key] = (
                        "HA ports (protocol All, port 0) rules are not supported by the data plane."
                    )
                    continue
                members = sorted(_pool_members(lb, rule, user_nics))
                spec = probes.get(key(rule.probe_id)) if rule.probe_id else None
                healthy = []
                probed = []
                for ip in members:
                    if spec is not None:
                        check = HealthKey(netns, ip, probe_spec(spec, lb.key in proxied_lbs))
                        checks.append(check)
                        probed.append(check)
                        if not health.get(check, True):
                            continue
                    healthy.append(ip)
                plan_rule = RulePlan(
                    rule_id=rule_id,
                    chain=names.chain_name("rule", rule_id),
                    protocol=rule.protocol.lower(),
                    frontend_ip=frontend_ips[key(rule.frontend_id)] or "",
                    frontend_port=rule.frontend_port,
                    backend_port=rule.backend_port,
                    backends=tuple(healthy),
                    distribution=rule.load_distribution,
                    probed=tuple(probed),
                )
                rule_chains[key(rule_id)] = plan_rule
                hub_list(vnet, "rules").append(plan_rule)

        # Read with `service_facts`: whatever this loop takes from a service must be there.
        services: dict[str, tuple[str, ServicePlan]] = {}
        lbs = {lb.key: lb for lb in snapshot.load_balancers}
        for pls in snapshot.services:
            if pls.destination_ip_address and pls.ip_configurations:
                # Direct Connect: no load balancer, no rules. Its hub is its NAT IPs'
                # network, and its chain sends every TCP port to the destination, which
                # the hub routes as any of its NICs' addresses.
                vnet = vnet_of_subnet(pls.ip_configurations[0].subnet_id)
                sp = ServicePlan(
                    pls_id=pls.id,
                    chain=names.chain_name("pls", pls.id),
                    snat_chain=names.chain_name("snat", pls.id),
                    nat_ips=tuple(c.private_ip for c in pls.ip_configurations if c.private_ip),
                    ports=(),
                    destination=pls.destination_ip_address,
                )
                services[pls.key] = (vnet, sp)
                hub_list(vnet, "services").append(sp)
                continue
            found_lb = lbs.get(pls.load_balancer_key) if pls.frontend_ids else None
            if found_lb is None:
                continue
            lb = found_lb
            if lb.key not in lb_vnets:
                continue
            vnet = lb_vnets[lb.key]
            ports: dict[tuple[str, int], str] = {}
            for fe_id in pls.frontend_ids:  # the first frontend with a port wins
                for rule in lb.rules_on(fe_id):
                    rp = rule_chains.get(key(lb.child_id("loadBalancingRules", rule.name)))
                    if rp is not None and rp.protocol == "tcp":
                        ports.setdefault(("tcp", rp.frontend_port), rp.chain)
            sp = ServicePlan(
                pls_id=pls.id,
                chain=names.chain_name("pls", pls.id),
                snat_chain=names.chain_name("snat", pls.id),
                nat_ips=tuple(c.private_ip for c in pls.ip_configurations if c.private_ip),
                ports=tuple((p, port, chain) for (p, port), chain in sorted(ports.items())),
                proxy=pls.enable_proxy_protocol,
            )
            services[pls.key] = (vnet, sp)
            hub_list(vnet, "services").append(sp)

        self._prefix, self._health = prefix, health
        self._services, self._hub_names = services, hub_names
        self._static_problems = problems
        self._hubs = {}
        self._links = []
        self._problems = {}
        self._by_nic, self._by_link_key = {}, {}
        self._pair_links = {}
        nics_by_key = {n.key: n for n in snapshot.nics}
        last_parts, self._parts = self._parts, {}
        for pe in snapshot.endpoints:
            pe_nic = nics_by_key.get(key(pe.nic_id))
            old = last_parts.get(pe.key)
            self._add(_part(pe, pe_nic, old, services, hub_names, slots, self._pairs), False)
        self._pairs.keep(set(self._pair_links))
        for hub in self._hubs.values():
            # Endpoints come in creation order: sort once instead of inserting in order.
            hub.out.sort(key=_slot)
            hub.into.sort(key=_slot)
            hub.pe_ips.sort()
        self._links.sort(key=_slot)

        self._hub_plans = {}
        for vnet_key in sorted(set(static) | set(self._hubs)):
            if vnet_key not in hub_names:
                continue
            got = static.get(vnet_key, {})
            self._hub_plans[vnet_key] = HubPlan(
                vnet_id=vnet_ids[vnet_key],
                netns=hub_names[vnet_key],
                nics=tuple(sorted(got.get("nics", ()), key=lambda n: n.netns)),
                rules=tuple(sorted(got.get("rules", ()), key=lambda r: r.chain)),
                services=tuple(sorted(got.get("services", ()), key=lambda s: s.chain)),
                fabric=fabric.hubs.get(vnet_key, fabric_plan.NO_FABRIC),
            )
            self._hub_plans[vnet_key] = self._hub_plan(vnet_key)
        problems.update(fabric.problems)
        self._plan = Plan(
            hubs=tuple(self._hub_plans.values()),
            links=tuple(self._links),
            health_checks=tuple(dict.fromkeys(checks)),
            problems={**problems, **self._problems},
            fabric=fabric,
        )
        self._ready = True
        return self._plan

    def _hub_plan(self, vnet_key: str) -> HubPlan:
        base = self._hub_plans[vnet_key]
        hub = self._hubs.get(vnet_key)
        if hub is None:
            return replace(base, links_out=(), links_in=(), pe_ips=())
        return replace(
            base, links_out=tuple(hub.out), links_in=tuple(hub.into), pe_ips=tuple(hub.pe_ips)
        )

    def _add(self, part: _Part, in_order: bool = True) -> None:
        """Take in an endpoint's part: inserted in order, or (a whole plan) appended
        and sorted once at the end."""
        k = part.pe.key
        self._parts[k] = part
        self._by_nic.setdefault(part.nic_key, set()).add(k)
        self._by_link_key.setdefault(part.link_key, set()).add(k)
        if part.problem:
            self._problems[k] = part.problem
        if part.pair_key is not None:
            self._pair_links[part.pair_key] = self._pair_links.get(part.pair_key, 0) + 1
        if not part.pe_ip:
            return
        consumer = self._hubs.setdefault(part.consumer_vnet, _Hub())
        provider = None
        if part.link is not None:
            provider = self._hubs.setdefault(self._services[part.service_key][0], _Hub())
        if in_order:
            consumer.add(part, provider)
            if part.link is not None:
                bisect.insort(self._links, part.link, key=_slot)
            return
        if part.pe_ip not in consumer.pe_count:
            consumer.pe_ips.append(part.pe_ip)
        consumer.pe_count[part.pe_ip] = consumer.pe_count.get(part.pe_ip, 0) + 1
        if part.link is not None:
            self._links.append(part.link)
            if not part.link.local:
                consumer.out.append(part.link)
            assert provider is not None
            provider.into.append(part.link)

    def _remove(self, part: _Part) -> None:
        k = part.pe.key
        del self._parts[k]
        for index, at in ((self._by_nic, part.nic_key), (self._by_link_key, part.link_key)):
            keys = index[at]
            keys.discard(k)
            if not keys:
                del index[at]
        self._problems.pop(k, None)
        if part.pair_key is not None:
            n = self._pair_links[part.pair_key] - 1
            if n:
                self._pair_links[part.pair_key] = n
            else:
                del self._pair_links[part.pair_key]
        if part.pe_ip:
            provider = None
            if part.link is not None:
                provider = self._hubs[self._services[part.service_key][0]]
                _take(self._links, part.link)
            self._hubs[part.consumer_vnet].remove(part, provider)

    def can_update(self, prefix: str, health: Mapping[HealthKey, bool]) -> bool:
        """Whether `update` may follow the last plan (same prefix and probe verdicts)."""
        return self._ready and prefix == self._prefix and health == self._health

    def endpoints_of(self, nic_keys: Iterable[str] = (), link_keys: Iterable[str] = ()) -> set[str]:
        """Keys of the endpoints whose part depends on these NICs or connection keys."""
        found: set[str] = set()
        for k in nic_keys:
            found |= self._by_nic.get(k, set())
        for k in link_keys:
            found |= self._by_link_key.get(k, set())
        return found

    def update(
        self,
        get: Callable[[str], Resource | None],
        endpoints: Iterable[str],
        slots: Mapping[str, int],
    ) -> PlanChange:
        """The plan after a change of these endpoints only (by key; their NICs, link
        slots or the services' connection states may have changed too): what `plan`
        would compute from the resources `get` returns now, when nothing but endpoints,
        their NICs, link slots and the connections of services changed since the last
        plan (the caller checks; see `service_facts`)."""
        assert self._ready and self._plan is not None
        self._ready = False  # until done: a failure leaves the planner wanting a full plan
        added: list[LinkPlan] = []
        removed: list[LinkPlan] = []
        touched: set[str] = set()
        had: dict[tuple[str, str], bool] = {}  # (vnet, PE ip) -> present before
        pair_had: dict[str, tuple[int, bool]] = {}  # pair -> (its slot, linked before)

        def note(part: _Part, links: list[LinkPlan]) -> None:
            if part.pair_key is not None and part.link is not None:
                pair_had.setdefault(
                    part.pair_key, (part.link.pair, part.pair_key in self._pair_links)
                )
            if part.pe_ip:
                touched.add(part.consumer_vnet)
                hub = self._hubs.get(part.consumer_vnet)
                had.setdefault(
                    (part.consumer_vnet, part.pe_ip),
                    hub is not None and part.pe_ip in hub.pe_count,
                )
            if part.link is not None:
                links.append(part.link)
                touched.add(self._services[part.service_key][0])

        for k in sorted(endpoints):
            old = self._parts.get(k)
            pe = get(k)
            new = None
            if isinstance(pe, PrivateEndpoint):
                nic = get(key(pe.nic_id))
                nic = nic if isinstance(nic, NetworkInterface) else None
                new = _part(pe, nic, old, self._services, self._hub_names, slots, self._pairs)
            if old is not None:
                note(old, removed)
                self._remove(old)
            if new is not None:
                note(new, added)
                self._add(new)
        # A link both removed and added (its endpoint re-planned to the same link) stays.
        same = {id(x) for x in removed} & {id(x) for x in added}
        added = [x for x in added if id(x) not in same]
        removed = [x for x in removed if id(x) not in same]
        hubs = dict(self._hub_plans)
        changed: set[str] = set()
        for vnet_key in touched:
            if vnet_key in hubs:
                hub = self._hub_plan(vnet_key)
                if hub != hubs[vnet_key]:
                    hubs[vnet_key] = hub
                    changed.add(hub.netns)
        pe_ips: dict[str, tuple[set[str], set[str]]] = {}
        for (vnet_key, ip), before in had.items():
            hub_now = self._hubs.get(vnet_key)
            now = hub_now is not None and ip in hub_now.pe_count
            if now != before and vnet_key in self._hub_names:
                came, went = pe_ips.setdefault(self._hub_names[vnet_key], (set(), set()))
                (came if now else went).add(ip)
        new_pairs: set[int] = set()
        gone_pairs: set[int] = set()
        released: list[str] = []
        for pair, (pair_slot, before) in pair_had.items():
            now = pair in self._pair_links
            if now and not before:
                new_pairs.add(pair_slot)
            elif before and not now:
                gone_pairs.add(pair_slot)
                released.append(pair)
            elif not before and not now:
                released.append(pair)  # given a slot by this update, and no longer used
        self._pairs.release(released)
        self._hub_plans = hubs
        self._plan = Plan(
            hubs=tuple(hubs.values()),
            links=tuple(self._links),
            health_checks=self._plan.health_checks,
            problems={**self._static_problems, **self._problems},
            fabric=self._plan.fabric,
        )
        self._ready = True
        return PlanChange(
            self._plan,
            tuple(added),
            tuple(removed),
            frozenset(changed),
            {n: (frozenset(c), frozenset(w)) for n, (c, w) in pe_ips.items()},
            frozenset(new_pairs),
            frozenset(gone_pairs),
        )
