"""Load balancers: frontends, backend pools, probes and load-balancing rules.

Private link services sit on Standard load balancers; a load balancer's PUT can break the
rules that tie a service to it, so the PUT workflow that re-checks them is
`private_link.create_or_update_load_balancer` (this module knows nothing of services).

A load balancer is internal (every frontend has a private IP in a subnet of one network)
or public (every frontend uses a Standard public IP, which no other resource uses); its
backend network is then the one its pool members and services' NAT IPs are in
(`backend_network`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from privatelink.core import errors
from privatelink.core.addressing import parse_address
from privatelink.core.ids import key, parse_ref
from privatelink.core.ip_configuration import IPV4, Allocator, IpConfiguration, is_ipv4
from privatelink.core.public_ip_address import USER_KIND, claim, resolve
from privatelink.core.resource import (
    Changes,
    Context,
    Resource,
    StateView,
    check_unique_names,
    get_typed,
    normalize_location,
    same_parent,
)
from privatelink.core.virtual_network import resolve_subnet
from privatelink.core.virtual_network_gateway import refuse_gateway_subnet

TYPE = "Microsoft.Network/loadBalancers"
STANDARD = "Standard"
BASIC = "Basic"
PROTOCOLS = ("Tcp", "Udp", "All")
PROBE_PROTOCOLS = ("Tcp", "Http", "Https")
DISTRIBUTIONS = ("Default", "SourceIP", "SourceIPProtocol")


@dataclass(frozen=True)
class Frontend(IpConfiguration):
    """A frontend IP configuration: private (a subnet and an address there) or public
    (`public_ip_id`, and no subnet: `subnet_id` is "" and `private_ip` None).

    `public_ip_address` is the public IP's address, copied when the frontend is written
    (a public IP's address never changes); `address` is the frontend's address either way.
    """

    public_ip_id: str | None = None
    public_ip_address: str | None = None

    @property
    def is_public(self) -> bool:
        """Whether the frontend uses a public IP."""
        return bool(self.public_ip_id)

    @property
    def address(self) -> str | None:
        """The address clients reach: the public IP's, or the private one."""
        return self.public_ip_address if self.is_public else self.private_ip


@dataclass(frozen=True)
class BackendAddress:
    """A pool member given by address rather than by NIC."""

    name: str
    ip_address: str
    virtual_network_id: str | None = None


@dataclass(frozen=True)
class BackendPool:
    """A backend address pool."""

    name: str
    addresses: tuple[BackendAddress, ...] = ()


@dataclass(frozen=True)
class Probe:
    """A health probe."""

    name: str
    protocol: str
    port: int
    request_path: str | None = None
    interval_in_seconds: int = 15
    number_of_probes: int = 2
    probe_threshold: int = 1


@dataclass(frozen=True)
class Rule:
    """A load-balancing rule; references are full ids of this load balancer's children."""

    name: str
    protocol: str
    frontend_port: int
    backend_port: int
    frontend_id: str
    pool_ids: tuple[str, ...] = ()
    probe_id: str | None = None
    idle_timeout_in_minutes: int = 4
    load_distribution: str = "Default"
    enable_floating_ip: bool = False
    enable_tcp_reset: bool = False
    disable_outbound_snat: bool = False


@dataclass(frozen=True, kw_only=True)
class LoadBalancer(Resource):
    """A load balancer (internal: every frontend has a private IP in a subnet)."""

    sku: str = STANDARD
    sku_tier: str = "Regional"
    frontends: tuple[Frontend, ...] = ()
    pools: tuple[BackendPool, ...] = ()
    probes: tuple[Probe, ...] = ()
    rules: tuple[Rule, ...] = ()

    def child_id(self, kind: str, name: str) -> str:
        """Id of a child of this load balancer."""
        return f"{self.id}/{kind}/{name}"

    def frontend(self, frontend_id: str) -> Frontend | None:
        """The frontend a reference points at, if it belongs to this load balancer."""
        if not same_parent(frontend_id, self.id):
            return None
        name = frontend_id.rstrip("/").rsplit("/", 1)[-1].lower()
        return next((f for f in self.frontends if f.name.lower() == name), None)

    def pool(self, pool_id: str) -> BackendPool | None:
        """The pool a reference points at, if it belongs to this load balancer."""
        if not same_parent(pool_id, self.id):
            return None
        name = pool_id.rstrip("/").rsplit("/", 1)[-1].lower()
        return next((p for p in self.pools if p.name.lower() == name), None)

    def rules_on(self, frontend_id: str) -> list[Rule]:
        """Rules whose frontend is `frontend_id`."""
        return [r for r in self.rules if key(r.frontend_id) == key(frontend_id)]

    @property
    def is_public(self) -> bool:
        """Whether the load balancer's frontends use public IPs."""
        return any(f.is_public for f in self.frontends)

    def public_ip_configs(self) -> dict[str, str]:
        """Public IP key -> the frontend using it."""
        return {
            key(f.public_ip_id): self.child_id("frontendIPConfigurations", f.name)
            for f in self.frontends
            if f.public_ip_id
        }


def _pick(value: str, allowed: tuple[str, ...], what: str, where: str) -> str:
    for known in allowed:
        if value.lower() == known.lower():
            return known
    raise errors.InvalidRequestContent(
        f"{where}: {what} must be one of {', '.join(allowed)}; got '{value}'."
    )


def _child_ref(lb_id: str, ref: str, kind: str, names: set[str], where: str) -> str:
    """Normalise a reference to a child of this load balancer."""
    rid = parse_ref(ref, "loadBalancers", kind)
    if not same_parent(ref, lb_id) or rid.name.lower() not in names:
        raise errors.InvalidResourceReference(ref=ref, id=where)
    return f"{lb_id}/{kind}/{rid.name}"


def _validate_probe(lb_id: str, probe: Probe) -> Probe:
    where = f"{lb_id}/probes/{probe.name}"
    protocol = _pick(probe.protocol, PROBE_PROTOCOLS, "protocol", where)
    if not 1 <= probe.port <= 65535:
        raise errors.InvalidProbe(f"{where}: port must be 1-65535; got {probe.port}.")
    if protocol == "Tcp" and probe.request_path:
        raise errors.InvalidProbe(f"{where}: requestPath is not allowed for a Tcp probe.")
    if protocol != "Tcp" and not (probe.request_path or "").startswith("/"):
        raise errors.InvalidProbe(f"{where}: an {protocol} probe needs a requestPath like '/'.")
    if probe.interval_in_seconds < 5 or probe.interval_in_seconds > 2147483646:
        raise errors.InvalidProbe(f"{where}: intervalInSeconds must be at least 5.")
    if probe.number_of_probes < 1 or probe.probe_threshold < 1:
        raise errors.InvalidProbe(f"{where}: numberOfProbes and probeThreshold must be >= 1.")
    return replace(probe, protocol=protocol)


def _validate_rule(lb: LoadBalancer, rule: Rule) -> Rule:
    where = lb.child_id("loadBalancingRules", rule.name)
    protocol = _pick(rule.protocol, PROTOCOLS, "protocol", where)
    low = 0 if protocol == "All" else 1
    for port, field in ((rule.frontend_port, "frontendPort"), (rule.backend_port, "backendPort")):
        if not low <= port <= 65535:
            raise errors.InvalidLoadBalancerRule(
                f"{where}: {field} must be {low}-65535; got {port}."
            )
    if (rule.frontend_port == 0) != (rule.backend_port == 0):
        raise errors.InvalidLoadBalancerRule(
            f"{where}: HA ports rules need frontendPort and backendPort both 0."
        )
    if not 4 <= rule.idle_timeout_in_minutes <= 100:
        raise errors.InvalidLoadBalancerRule(f"{where}: idleTimeoutInMinutes must be 4-100.")
    dist = _pick(rule.load_distribution, DISTRIBUTIONS, "loadDistribution", where)
    fe = _child_ref(
        lb.id,
        rule.frontend_id,
        "frontendIPConfigurations",
        {f.name.lower() for f in lb.frontends},
        where,
    )
    if not rule.pool_ids:
        raise errors.InvalidLoadBalancerRule(f"{where}: backendAddressPool is required.")
    pools = tuple(
        _child_ref(lb.id, p, "backendAddressPools", {p.name.lower() for p in lb.pools}, where)
        for p in rule.pool_ids
    )
    probe = (
        _child_ref(lb.id, rule.probe_id, "probes", {p.name.lower() for p in lb.probes}, where)
        if rule.probe_id
        else None
    )
    return replace(
        rule,
        protocol=protocol,
        load_distribution=dist,
        frontend_id=fe,
        pool_ids=pools,
        probe_id=probe,
    )


def validate(
    view: StateView, ctx: Context, desired: LoadBalancer, existing: LoadBalancer | None
) -> LoadBalancer:
    """Validate a load balancer and assign its frontend addresses."""
    lb = replace(desired, location=normalize_location(desired.location))
    if existing is not None:
        lb = replace(lb, id=existing.id, name=existing.name)
    sku = _pick(lb.sku or STANDARD, (BASIC, STANDARD, "Gateway"), "sku.name", lb.id)
    if sku == "Gateway":
        raise errors.InvalidLoadBalancerSku(sku=sku)
    lb = replace(lb, sku=sku)
    check_unique_names(lb.id, [f.name for f in lb.frontends])
    check_unique_names(lb.id, [p.name for p in lb.pools])
    check_unique_names(lb.id, [p.name for p in lb.probes])
    check_unique_names(lb.id, [r.name for r in lb.rules])
    if not lb.frontends:
        raise errors.InvalidRequestContent(
            f"Load balancer {lb.id} needs a frontendIPConfiguration."
        )

    allocator = Allocator(view, lb.id)
    allocator.keep(
        [
            (
                fe,
                existing.frontend(lb.child_id("frontendIPConfigurations", fe.name))
                if existing
                else None,
            )
            for fe in lb.frontends
            if not fe.public_ip_id
        ]
    )
    frontends: list[Frontend] = []
    vnet_key: str | None = None
    kinds: dict[bool, str] = {}  # is public -> the first frontend of that kind
    claimed: dict[str, str] = {}
    for fe in lb.frontends:
        where = lb.child_id("frontendIPConfigurations", fe.name)
        if fe.public_ip_id and fe.subnet_id:
            raise errors.FrontendIPConfigHasBothSubnetAndPublicIP(id=where)
        if not fe.public_ip_id and not fe.subnet_id:
            raise errors.FrontendIPConfigHasNoSubnetOrPublicIP(id=where)
        kinds.setdefault(bool(fe.public_ip_id), where)
        if len(kinds) > 1:
            raise errors.LoadBalancerMixesPublicAndPrivateFrontends(
                id=lb.id, public=kinds[True], private=kinds[False]
            )
        if fe.public_ip_id:
            frontends.append(_public_frontend(view, lb, fe, where, claimed))
            continue
        if not is_ipv4(fe.ip_version):
            raise errors.IPv6NotSupported(what=f"Frontend {where}")
        subnet = resolve_subnet(view, fe.subnet_id, where)
        refuse_gateway_subnet(subnet, where)
        if subnet.vnet.location != lb.location:
            raise errors.ResourceLocationMismatch(
                id=lb.id, location=lb.location, ref=subnet.vnet.id, other=subnet.vnet.location
            )
        if vnet_key is not None and vnet_key != subnet.vnet.key:
            raise errors.InvalidRequestContent(
                f"Frontends of internal load balancer {lb.id} must all be in one virtual network."
            )
        vnet_key = subnet.vnet.key
        old = existing.frontend(where) if existing else None
        previous = old.private_ip if old and key(old.subnet_id) == key(subnet.id) else None
        ip = allocator.assign(subnet, fe, previous)
        frontends.append(replace(fe, subnet_id=subnet.id, private_ip=ip, ip_version=IPV4))
    lb = replace(lb, frontends=tuple(frontends))

    for pool in lb.pools:
        check_unique_names(
            lb.child_id("backendAddressPools", pool.name), [a.name for a in pool.addresses]
        )
        for address in pool.addresses:
            parse_address(address.ip_address)
    lb = replace(lb, probes=tuple(_validate_probe(lb.id, p) for p in lb.probes))
    lb = replace(lb, rules=tuple(_validate_rule(lb, r) for r in lb.rules))

    seen: dict[tuple[str, str, int], str] = {}
    for rule in lb.rules:
        protocols = ("Tcp", "Udp") if rule.protocol == "All" else (rule.protocol,)
        for proto in protocols:
            slot = (key(rule.frontend_id), proto, rule.frontend_port)
            if slot in seen:
                raise errors.LoadBalancerRuleFrontendPortConflict(
                    rule=rule.name, other=seen[slot], port=rule.frontend_port
                )
            seen[slot] = rule.name
    return lb


def _public_frontend(
    view: StateView, lb: LoadBalancer, fe: Frontend, where: str, claimed: dict[str, str]
) -> Frontend:
    """A public frontend: its public IP exists, in the region and of the sku of the load
    balancer, and serves nothing else."""
    assert fe.public_ip_id
    pip = resolve(view, fe.public_ip_id, where)
    if pip.location != lb.location:
        raise errors.ResourceLocationMismatch(
            id=lb.id, location=lb.location, ref=pip.id, other=pip.location
        )
    if pip.sku != lb.sku:
        raise errors.PublicIPAndLBSkuDoNotMatch(sku=lb.sku, lb=lb.id, pip_sku=pip.sku, pip=pip.id)
    claim(view, pip, lb.id, where, claimed)
    return replace(
        fe,
        subnet_id="",
        private_ip=None,
        ip_version=IPV4,
        public_ip_id=pip.id,
        public_ip_address=pip.ip_address,
    )


def _check_removed_children(view: StateView, old: LoadBalancer, new: LoadBalancer) -> None:
    for fe in old.frontends:
        fe_id = old.child_id("frontendIPConfigurations", fe.name)
        if new.frontend(fe_id) is None:
            users = view.referrers(key(fe_id), "frontend")
            if users:
                raise errors.FrontendIPConfigurationInUse(id=fe_id, user=users[0].id)
    for pool in old.pools:
        pool_id = old.child_id("backendAddressPools", pool.name)
        if new.pool(pool_id) is None:
            users = view.referrers(key(pool_id), "pool")
            if users:
                raise errors.BackendAddressPoolInUse(id=pool_id, user=users[0].id)


def prepare(view: StateView, ctx: Context, desired: LoadBalancer) -> LoadBalancer:
    """The load balancer a PUT writes, checked against its own rules.

    The PUT workflow is `private_link.create_or_update_load_balancer`: it also re-checks
    the private link services on the load balancer.
    """
    existing = get_typed(view, desired.id, LoadBalancer)
    lb = validate(view, ctx, desired, existing)
    lb = replace(lb, provisioning_state=ctx.initial_state)
    if existing is not None:
        if existing.location != lb.location:
            raise errors.ResourceLocationMismatch(
                id=lb.id, location=lb.location, ref="its existing location", other=existing.location
            )
        _check_removed_children(view, existing, lb)
    return lb


def delete(view: StateView, ctx: Context, lb_id: str) -> Changes:
    """DELETE a load balancer (refused while a private link service or a NIC uses it)."""
    lb = get_typed(view, lb_id, LoadBalancer)
    changes = Changes()
    if lb is None:
        return changes
    services = view.referrers(lb.key, "lb")
    if services:
        raise errors.LoadBalancerInUseByPrivateLinkService(id=lb.id, pls=services[0].id)
    _check_removed_children(view, lb, replace(lb, frontends=(), pools=()))
    changes.delete(lb.id)
    return changes


def vnet_of(lb: LoadBalancer) -> str | None:
    """Key of the virtual network of an internal load balancer's frontends (None for a
    public one)."""
    private = next((f for f in lb.frontends if f.subnet_id), None)
    if private is None:
        return None
    return parse_ref(private.subnet_id, "virtualNetworks", "subnets").parent().key


def backend_network(view: StateView, lb: LoadBalancer, exclude: str = "") -> str | None:
    """Key of the virtual network behind a load balancer, or None while nothing decides it.

    An internal load balancer's is its frontends' network. A public one's is that of its
    backend members (NIC configurations in its pools, pool addresses naming a network)
    and of its private link services' NAT IPs; `exclude` (the id of the resource being
    written) is left out, so that it may decide anew.
    """
    internal = vnet_of(lb)
    if internal is not None:
        return internal
    for pool in lb.pools:
        for address in pool.addresses:
            if address.virtual_network_id:
                return key(address.virtual_network_id)
        for member in view.referrers(key(lb.child_id("backendAddressPools", pool.name)), "pool"):
            found = _subnet_network(member, exclude)
            if found is not None:
                return found
    for service in view.referrers(lb.key, "lb"):
        found = _subnet_network(service, exclude)
        if found is not None:
            return found
    return None


def _subnet_network(resource: Resource, exclude: str) -> str | None:
    """The network of the first ip configuration of a NIC or a service's NAT IPs."""
    if exclude and resource.key == key(exclude):
        return None
    for config in getattr(resource, "ip_configurations", ()):
        subnet_id = getattr(config, "subnet_id", "")
        if subnet_id:
            return parse_ref(subnet_id, "virtualNetworks", "subnets").parent().key
    return None


def resolve_child(view: StateView, ref: str, kind: str, referrer: str) -> tuple[LoadBalancer, str]:
    """Resolve a reference to a load balancer child (frontend, pool); 400 when missing."""
    rid = parse_ref(ref, "loadBalancers", kind)
    lb = get_typed(view, str(rid.parent()), LoadBalancer)
    if lb is None:
        raise errors.InvalidResourceReference(ref=ref, id=referrer)
    names = {
        "frontendIPConfigurations": [f.name for f in lb.frontends],
        "backendAddressPools": [p.name for p in lb.pools],
    }[kind]
    name = next((n for n in names if n.lower() == rid.name.lower()), None)
    if name is None:
        raise errors.InvalidResourceReference(ref=ref, id=referrer)
    return lb, lb.child_id(kind, name)


def references(lb: LoadBalancer) -> list[tuple[str, str]]:
    """Index entries: the subnets of its private frontends, the public IPs of its public
    ones."""
    return [
        (USER_KIND, key(fe.public_ip_id)) if fe.public_ip_id else ("subnet", key(fe.subnet_id))
        for fe in lb.frontends
    ]


def ip_usages(lb: LoadBalancer) -> list[tuple[str, str]]:
    """Addresses held: (subnet key, ip) of each private frontend (a public IP holds its
    own address)."""
    return [(key(f.subnet_id), f.private_ip) for f in lb.frontends if f.subnet_id and f.private_ip]


# --- health status of a rule's backends (LoadBalancerLoadBalancingRules_Health) ----------
# Azure's two states and its reason codes, from "Manage Azure Load Balancer health status"
# (learn.microsoft.com/azure/load-balancer/load-balancer-manage-health-status). A
# backend no probe has judged yet has reason "NA" (Azure's word for it) and no state.
STATE_UP = "Up"
STATE_DOWN = "Down"
UP_PROBE_SUCCESS = "Up_Probe_Success"
# The last probe failed, but fewer than probeThreshold in a row: still in rotation.
UP_PROBE_APPROACHING_UNHEALTHY = "Up_Probe_ApproachingUnhealthyThreshold"
DOWN_PROBE_TCP_TIMEOUT = "Down_Probe_TcpProbeTimeout"  # no TCP connection (refused or silent)
DOWN_PROBE_HTTP_UNREACHABLE = "Down_Probe_HttpEndpointUnreachable"  # TCP up, HTTP(S) refused
DOWN_PROBE_HTTP_NO_RESPONSE = "Down_Probe_HttpNoResponse"  # HTTP session, no answer
DOWN_PROBE_HTTP_STATUS = "Down_Probe_HttpStatusCodeError"  # an answer other than 200
DOWN_PLATFORM = "Down_Platform"  # the probe itself could not run (the hub namespace)
NOT_PROBED = "NA"


@dataclass(frozen=True)
class ProbeState:
    """A backend's health probe verdict: in rotation (`up`) or not, and Azure's reason."""

    up: bool
    reason: str

    @property
    def state(self) -> str:
        """Azure's state: Up or Down."""
        return STATE_UP if self.up else STATE_DOWN


#: The live probe states of a rule's backends: rule id -> {backend IP: state}. Backends no
#: probe has judged yet, and every backend of a rule without a probe, are absent. The data
#: plane provides it (`Reconciler.rule_health`); the API reads it without knowing the data
#: plane.
RuleHealth = Callable[[str], Mapping[str, ProbeState]]


@dataclass(frozen=True)
class RuleMember:
    """A backend of a rule: its address and, for a NIC, its IP configuration's id."""

    ip_address: str
    ip_configuration_id: str | None = None


def rule_members(view: StateView, lb: LoadBalancer, rule: Rule) -> list[RuleMember]:
    """The backends of a rule's pools, as the data plane balances over them: NIC IP
    configurations in a pool (with an address) and the pools' addresses, each address
    once, sorted by address."""
    members: dict[str, RuleMember] = {}
    pools = {key(p) for p in rule.pool_ids}
    for pool in lb.pools:
        pool_key = key(lb.child_id("backendAddressPools", pool.name))
        if pool_key not in pools:
            continue
        for nic in view.referrers(pool_key, "pool"):
            for config in getattr(nic, "ip_configurations", ()):
                ip = getattr(config, "private_ip", None)
                if ip and pool_key in {key(p) for p in getattr(config, "pool_ids", ())}:
                    config_id = f"{nic.id}/ipConfigurations/{config.name}"
                    members.setdefault(ip, RuleMember(ip, config_id))
        for address in pool.addresses:
            members.setdefault(address.ip_address, RuleMember(address.ip_address))
    return [members[ip] for ip in sorted(members, key=_address_order)]


def _address_order(ip: str) -> tuple[int, str]:
    # Numeric order (10.0.2.4 before 10.0.2.10); stored addresses are IPv4, checked on write.
    try:
        return int(ipaddress.IPv4Address(ip)), ip
    except ValueError:
        return 0, ip
