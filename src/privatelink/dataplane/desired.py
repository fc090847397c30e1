"""Desired kernel state as a pure function of the stored resources.

`plan(snapshot)` turns networks, NICs, load balancers, private link services and
private endpoints into a `Plan`: which namespaces, veths, addresses and routes exist,
and what each hub's nft table holds. Nothing here touches the kernel.

Topology (see docs/dataplane.md): every virtual network has a hub namespace that
routes for it; every user NIC is a namespace with its IP on eth0 and a default route
to the hub; every approved private endpoint connection is a veth pair ("link")
between the consumer's hub and the provider's hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from privatelink.core.ids import ResourceId, key
from privatelink.core.load_balancer import LoadBalancer, Probe, Rule
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.private_endpoint import PrivateEndpoint
from privatelink.core.private_link_service import APPROVED, PrivateLinkService
from privatelink.core.resource import Resource
from privatelink.core.virtual_network import VirtualNetwork
from privatelink.dataplane import names


@dataclass(frozen=True)
class ProbeSpec:
    """A health probe as the prober runs it."""

    protocol: str
    port: int
    path: str | None
    interval: float
    threshold: int


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


@dataclass(frozen=True)
class ServicePlan:
    """A private link service in its provider hub."""

    pls_id: str
    chain: str
    snat_chain: str
    nat_ips: tuple[str, ...]
    ports: tuple[tuple[str, int, str], ...]  # (protocol, frontend port, rule chain)


@dataclass(frozen=True)
class LinkPlan:
    """An approved connection: a veth between two hubs and its NAT entries."""

    link_key: str
    slot: int
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


@dataclass(frozen=True)
class Plan:
    """The whole desired state."""

    hubs: tuple[HubPlan, ...]
    links: tuple[LinkPlan, ...]
    health_checks: tuple[HealthKey, ...]
    problems: Mapping[str, str] = field(default_factory=dict)  # resource key -> message

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


def probe_spec(probe: Probe) -> ProbeSpec:
    """What the prober needs from a stored probe."""
    return ProbeSpec(
        protocol=probe.protocol,
        port=probe.port,
        path=probe.request_path,
        interval=float(probe.interval_in_seconds),
        # Azure now counts probeThreshold consecutive failures (numberOfProbes is legacy).
        threshold=max(probe.probe_threshold, 1),
    )


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
) -> Plan:
    """Compute the desired kernel state.

    `slots` maps connection keys to link slots (links without a slot are not realized
    yet); `health` maps probe targets to their last verdict (absent = healthy, so a
    new backend takes traffic until its probe says otherwise).
    """
    return Planner().plan(snapshot, slots, health, prefix)


class Planner:
    """`plan`, remembering the parts of the last plan that depend on one resource each.

    A NIC's `NicPlan` and an endpoint's `LinkPlan` are reused when the objects they came
    from are the very same (stored resources are immutable: a change is a new object)
    and their other inputs are equal. With ten thousand endpoints most of a plan is
    reused, and a reused part compares equal to the last plan's by identity, so the
    reconciler's comparisons of hub plans stay cheap. The result is always what `plan`
    computes (tests/unit/test_planner.py).
    """

    def __init__(self) -> None:
        self._nics: dict[str, tuple[NetworkInterface, str, str, NicPlan]] = {}
        self._links: dict[str, tuple[tuple[object, ...], LinkPlan]] = {}
        self._facts: dict[str, tuple[Any, ...]] = {}

    def plan(
        self,
        snapshot: Snapshot,
        slots: Mapping[str, int],
        health: Mapping[HealthKey, bool],
        prefix: str = names.DEFAULT_PREFIX,
    ) -> Plan:
        """The desired kernel state (as `plan`)."""
        nics: dict[str, tuple[NetworkInterface, str, str, NicPlan]] = {}
        links: dict[str, tuple[tuple[object, ...], LinkPlan]] = {}
        facts: dict[str, tuple[Any, ...]] = {}
        result = _plan(
            snapshot,
            slots,
            health,
            prefix,
            (self._nics, nics),
            (self._links, links),
            (self._facts, facts),
        )
        # Only what this plan used: the memory stays the size of the world.
        self._nics, self._links, self._facts = nics, links, facts
        return result


_NicMemo = tuple[
    dict[str, tuple[NetworkInterface, str, str, NicPlan]],
    dict[str, tuple[NetworkInterface, str, str, NicPlan]],
]
_LinkMemo = tuple[
    dict[str, tuple[tuple[object, ...], LinkPlan]],
    dict[str, tuple[tuple[object, ...], LinkPlan]],
]


def _plan(
    snapshot: Snapshot,
    slots: Mapping[str, int],
    health: Mapping[HealthKey, bool],
    prefix: str,
    nic_memo: _NicMemo,
    link_memo: _LinkMemo,
    fact_memo: tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]],
) -> Plan:
    problems: dict[str, str] = {}
    hubs: dict[str, dict[str, list]] = {}
    hub_names = {v.key: names.hub_netns(prefix, v.id) for v in snapshot.vnets}
    vnet_ids = {v.key: v.id for v in snapshot.vnets}

    def hub(vnet_key: str) -> dict[str, list]:
        return hubs.setdefault(
            vnet_key,
            {"nics": [], "rules": [], "services": [], "out": [], "in": [], "pe": []},
        )

    for v in snapshot.vnets:
        hub(v.key)

    last_nics, used_nics = nic_memo
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
        used_nics[nic.key] = (nic, prefix, vnet, nic_plan)
        hub(vnet)["nics"].append(nic_plan)

    user_nics = [n for n in snapshot.nics if not n.managed_by]
    checks: list[HealthKey] = []
    rule_chains: dict[str, RulePlan] = {}
    for lb in snapshot.load_balancers:
        if not lb.frontends:
            continue
        vnet = vnet_of_subnet(lb.frontends[0].subnet_id)
        netns = hub_names.get(vnet, "")
        probes = {key(lb.child_id("probes", p.name)): p for p in lb.probes}
        frontend_ips = {
            key(lb.child_id("frontendIPConfigurations", f.name)): f.private_ip for f in lb.frontends
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
            for ip in members:
                if spec is not None:
                    check = HealthKey(netns, ip, probe_spec(spec))
                    checks.append(check)
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
            )
            rule_chains[key(rule_id)] = plan_rule
            hub(vnet)["rules"].append(plan_rule)

    services: dict[str, tuple[str, ServicePlan]] = {}
    lbs = {lb.key: lb for lb in snapshot.load_balancers}
    for pls in snapshot.services:
        found_lb = lbs.get(pls.load_balancer_key) if pls.frontend_ids else None
        if found_lb is None:
            continue
        lb = found_lb
        vnet = vnet_of_subnet(lb.frontends[0].subnet_id)
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
        )
        services[pls.key] = (vnet, sp)
        hub(vnet)["services"].append(sp)

    links: list[LinkPlan] = []
    last_links, used_links = link_memo
    nics_by_key = {n.key: n for n in snapshot.nics}
    last_facts, used_facts = fact_memo
    for pe in snapshot.endpoints:
        # What follows from the endpoint and its NIC alone, kept while both are the same
        # objects (a NIC's primary IP costs more to find than this whole check).
        pe_nic = nics_by_key.get(key(pe.nic_id))
        facts = last_facts.get(pe.key)
        if facts is None or facts[0] is not pe or facts[1] is not pe_nic:
            conn = pe.connection
            facts = (
                pe,
                pe_nic,
                vnet_of_subnet(pe.subnet_id),
                pe_nic.primary_ip if pe_nic else None,
                key(conn.private_link_service_id),
                conn.status == APPROVED,
                connection_key(conn.private_link_service_id, conn.remote_name),
            )
        used_facts[pe.key] = facts
        _, _, consumer_vnet, pe_ip, service_key, approved, link_key = facts
        if not pe_ip:
            continue
        hub(consumer_vnet)["pe"].append(pe_ip)
        found = services.get(service_key)
        if not approved or found is None:
            continue
        provider_vnet, sp = found
        slot = slots.get(link_key)
        if consumer_vnet not in hub_names or provider_vnet not in hub_names:
            continue
        if slot is None:
            problems[pe.key] = (
                f"no free link slot (at most {names.MAX_SLOTS} approved connections per host)"
            )
            continue
        inputs = (
            link_key,
            slot,
            pe_ip,
            hub_names[consumer_vnet],
            hub_names[provider_vnet],
            sp.chain,
            sp.ports,
            consumer_vnet == provider_vnet,
        )
        kept_link = last_links.get(pe.key)
        if kept_link is not None and kept_link[0] == inputs:
            link = kept_link[1]
        else:
            consumer_addr, provider_addr = names.link_addresses(slot)
            link = LinkPlan(
                link_key=link_key,
                slot=slot,
                mark=names.link_mark(slot),
                pe_ip=pe_ip,
                consumer_netns=hub_names[consumer_vnet],
                provider_netns=hub_names[provider_vnet],
                consumer_ifname=names.link_ifname(slot, "c"),
                provider_ifname=names.link_ifname(slot, "p"),
                consumer_addr=consumer_addr,
                provider_addr=provider_addr,
                service_chain=sp.chain,
                ports=tuple(port for _, port, _ in sp.ports),
                local=consumer_vnet == provider_vnet,
            )
        used_links[pe.key] = (inputs, link)
        links.append(link)
        if not link.local:
            hub(consumer_vnet)["out"].append(link)
        hub(provider_vnet)["in"].append(link)

    plans = []
    for vnet_key, parts in sorted(hubs.items()):
        if vnet_key not in hub_names:
            continue
        plans.append(
            HubPlan(
                vnet_id=vnet_ids[vnet_key],
                netns=hub_names[vnet_key],
                nics=tuple(sorted(parts["nics"], key=lambda n: n.netns)),
                rules=tuple(sorted(parts["rules"], key=lambda r: r.chain)),
                services=tuple(sorted(parts["services"], key=lambda s: s.chain)),
                links_out=tuple(sorted(parts["out"], key=lambda x: x.slot)),
                links_in=tuple(sorted(parts["in"], key=lambda x: x.slot)),
                pe_ips=tuple(sorted(set(parts["pe"]))),
            )
        )
    return Plan(
        hubs=tuple(plans),
        links=tuple(sorted(links, key=lambda x: x.slot)),
        health_checks=tuple(dict.fromkeys(checks)),
        problems=problems,
    )
