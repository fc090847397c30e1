"""loadBalancers on the wire (frontends, pools, probes, rules as inline children).

A frontend is private (`subnet`, and an address there) or public (`publicIPAddress`);
public IP prefixes, inbound NAT rules and pools and outbound rules are refused.

A rule's backend health (`LoadBalancerLoadBalancingRules_Health`, POST
`.../loadBalancingRules/{rule}/health`) comes from the data plane's probes through
`app.state.rule_health` (a `core.load_balancer.RuleHealth`; None when no data plane runs).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from privatelink.api import arm, crud
from privatelink.api.arm import (
    ChildWire,
    IpConfigurationProperties,
    SubResource,
    TrackedWire,
    Wire,
)
from privatelink.api.deps import control_plane, page_size
from privatelink.api.lean_route import LeanRoute
from privatelink.core import errors, registry
from privatelink.core import load_balancer as core
from privatelink.core.ids import key
from privatelink.core.resource import StateView, require
from privatelink.service import ControlPlane

TYPE = "Microsoft.Network/loadBalancers"
BASE = "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network"
PATH = BASE + "/loadBalancers"


class Sku(Wire):
    name: str | None = None
    tier: str | None = None


class FrontendProperties(IpConfigurationProperties):
    public_ip_address: SubResource | None = Field(default=None, alias="publicIPAddress")
    public_ip_prefix: SubResource | None = Field(default=None, alias="publicIPPrefix")
    load_balancing_rules: list[SubResource] | None = None


class FrontendWire(ChildWire):
    properties: FrontendProperties | None = None
    zones: list[str] | None = None


class BackendAddressProperties(Wire):
    ip_address: str | None = Field(default=None, alias="ipAddress")
    virtual_network: SubResource | None = None


class BackendAddressWire(Wire):
    name: str | None = None
    properties: BackendAddressProperties | None = None


class PoolProperties(Wire):
    load_balancer_backend_addresses: list[BackendAddressWire] | None = None
    backend_ip_configurations: list[SubResource] | None = Field(
        default=None, alias="backendIPConfigurations"
    )
    load_balancing_rules: list[SubResource] | None = None
    provisioning_state: str | None = None


class PoolWire(ChildWire):
    properties: PoolProperties | None = None


class ProbeProperties(Wire):
    protocol: str | None = None
    port: int | None = None
    request_path: str | None = None
    interval_in_seconds: int | None = None
    number_of_probes: int | None = None
    probe_threshold: int | None = None
    load_balancing_rules: list[SubResource] | None = None
    provisioning_state: str | None = None


class ProbeWire(ChildWire):
    properties: ProbeProperties | None = None


class RuleProperties(Wire):
    protocol: str | None = None
    frontend_port: int | None = None
    backend_port: int | None = None
    frontend_ip_configuration: SubResource | None = Field(
        default=None, alias="frontendIPConfiguration"
    )
    backend_address_pool: SubResource | None = None
    backend_address_pools: list[SubResource] | None = None
    probe: SubResource | None = None
    idle_timeout_in_minutes: int | None = None
    load_distribution: str | None = None
    enable_floating_ip: bool | None = Field(default=None, alias="enableFloatingIP")
    enable_tcp_reset: bool | None = None
    disable_outbound_snat: bool | None = None
    provisioning_state: str | None = None


class RuleWire(ChildWire):
    properties: RuleProperties | None = None


class LoadBalancerProperties(Wire):
    frontend_ip_configurations: list[FrontendWire] | None = Field(
        default=None, alias="frontendIPConfigurations"
    )
    backend_address_pools: list[PoolWire] | None = None
    probes: list[ProbeWire] | None = None
    load_balancing_rules: list[RuleWire] | None = None
    inbound_nat_rules: list[dict[str, Any]] | None = None
    inbound_nat_pools: list[dict[str, Any]] | None = None
    outbound_rules: list[dict[str, Any]] | None = None
    provisioning_state: str | None = None
    resource_guid: str | None = None


class LoadBalancerWire(TrackedWire):
    sku: Sku | None = None
    properties: LoadBalancerProperties | None = None


def _named(items: list[Any] | None, what: str) -> list[Any]:
    for item in items or []:
        if not item.name:
            raise errors.InvalidRequestContent(f"Every {what} needs a name.")
    return items or []


def _ref(sub: SubResource | None, what: str, where: str) -> str:
    if sub is None or not sub.id:
        raise errors.InvalidRequestContent(f"{where}: {what}.id is required.")
    return sub.id


def to_domain(rid: str, name: str, wire: LoadBalancerWire) -> core.LoadBalancer:
    """The desired load balancer from a PUT body."""
    props = wire.properties or LoadBalancerProperties()
    arm.reject_unsupported(
        {
            "inboundNatRules": props.inbound_nat_rules,
            "inboundNatPools": props.inbound_nat_pools,
            "outboundRules": props.outbound_rules,
        }
    )
    frontends = []
    for fe in _named(props.frontend_ip_configurations, "frontendIPConfiguration"):
        p = fe.properties or FrontendProperties()
        where = f"{rid}/frontendIPConfigurations/{fe.name}"
        if p.public_ip_prefix:
            raise errors.UnsupportedProperty(
                name="publicIPPrefix",
                why="public frontends take one public IP (publicIPAddress), not a prefix.",
            )
        has_subnet = p.subnet is not None and bool(p.subnet.id)
        public_ip = p.public_ip_address.id if p.public_ip_address else None
        if public_ip and has_subnet:
            raise errors.FrontendIPConfigHasBothSubnetAndPublicIP(id=where)
        if not public_ip and not has_subnet:
            raise errors.FrontendIPConfigHasNoSubnetOrPublicIP(id=where)
        if public_ip:
            frontends.append(core.Frontend(fe.name, "", public_ip_id=public_ip))
            continue
        fields = arm.ip_configuration_fields(fe.name, p, where)
        fields.pop("primary")  # frontends have none
        frontends.append(core.Frontend(**fields))
    pools = []
    for pool in _named(props.backend_address_pools, "backendAddressPool"):
        p = pool.properties or PoolProperties()
        addresses = []
        for a in p.load_balancer_backend_addresses or []:
            ap = a.properties or BackendAddressProperties()
            if not a.name or not ap.ip_address:
                raise errors.InvalidRequestContent(
                    f"Backend addresses of pool '{pool.name}' need a name and properties.ipAddress."
                )
            addresses.append(
                core.BackendAddress(
                    a.name, ap.ip_address, ap.virtual_network.id if ap.virtual_network else None
                )
            )
        pools.append(core.BackendPool(name=pool.name, addresses=tuple(addresses)))
    probes = []
    for probe in _named(props.probes, "probe"):
        p = probe.properties or ProbeProperties()
        if not p.protocol or p.port is None:
            raise errors.InvalidProbe(f"Probe '{probe.name}' needs protocol and port.")
        probes.append(
            core.Probe(
                name=probe.name,
                protocol=p.protocol,
                port=p.port,
                request_path=p.request_path,
                interval_in_seconds=p.interval_in_seconds or 15,
                number_of_probes=p.number_of_probes or 2,
                # Without probeThreshold, Azure counts numberOfProbes failures (the legacy field).
                probe_threshold=p.probe_threshold or p.number_of_probes or 1,
            )
        )
    rules = []
    for rule in _named(props.load_balancing_rules, "loadBalancingRule"):
        p = rule.properties or RuleProperties()
        where = f"{rid}/loadBalancingRules/{rule.name}"
        if not p.protocol or p.frontend_port is None or p.backend_port is None:
            raise errors.InvalidLoadBalancerRule(
                f"{where}: protocol, frontendPort and backendPort are required."
            )
        pool_ids = [x.id for x in p.backend_address_pools or [] if x.id]
        if p.backend_address_pool and p.backend_address_pool.id:
            pool_ids.insert(0, p.backend_address_pool.id)
        rules.append(
            core.Rule(
                name=rule.name,
                protocol=p.protocol,
                frontend_port=p.frontend_port,
                backend_port=p.backend_port,
                frontend_id=_ref(p.frontend_ip_configuration, "frontendIPConfiguration", where),
                pool_ids=tuple(dict.fromkeys(pool_ids)),
                probe_id=p.probe.id if p.probe else None,
                idle_timeout_in_minutes=p.idle_timeout_in_minutes or 4,
                load_distribution=p.load_distribution or "Default",
                enable_floating_ip=bool(p.enable_floating_ip),
                enable_tcp_reset=bool(p.enable_tcp_reset),
                disable_outbound_snat=bool(p.disable_outbound_snat),
            )
        )
    sku = wire.sku or Sku()
    return core.LoadBalancer(
        id=rid,
        name=name,
        location=wire.location or "",
        tags=wire.tags or {},
        sku=sku.name or core.STANDARD,
        sku_tier=sku.tier or "Regional",
        frontends=tuple(frontends),
        pools=tuple(pools),
        probes=tuple(probes),
        rules=tuple(rules),
    )


def render(view: StateView, lb: core.LoadBalancer) -> dict[str, Any]:
    """A load balancer as ARM JSON (pools list the NIC configurations in them)."""
    state = lb.provisioning_state

    def rules_using(attr: str, child_id: str) -> list[SubResource] | None:
        found = []
        for r in lb.rules:
            value = getattr(r, attr)
            values = value if isinstance(value, tuple) else (value,)
            if any(v and key(v) == key(child_id) for v in values):
                found.append(SubResource(id=lb.child_id("loadBalancingRules", r.name)))
        return found or None

    def frontend_properties(f: core.Frontend) -> FrontendProperties:
        rules = rules_using("frontend_id", lb.child_id("frontendIPConfigurations", f.name))
        if f.public_ip_id:
            return FrontendProperties(
                private_ip_allocation_method="Dynamic",
                public_ip_address=SubResource(id=f.public_ip_id),
                provisioning_state=state,
                load_balancing_rules=rules,
            )
        return FrontendProperties(**arm.ip_configuration_wire(f, state), load_balancing_rules=rules)

    frontends = [
        FrontendWire(
            id=lb.child_id("frontendIPConfigurations", f.name),
            name=f.name,
            type=f"{TYPE}/frontendIPConfigurations",
            etag=lb.etag,
            properties=frontend_properties(f),
        )
        for f in lb.frontends
    ]
    pools = []
    for pool in lb.pools:
        pool_id = lb.child_id("backendAddressPools", pool.name)
        members = []
        for nic in view.referrers(key(pool_id), "pool"):
            for config in getattr(nic, "ip_configurations", ()):
                if any(key(p) == key(pool_id) for p in config.pool_ids):
                    members.append(SubResource(id=f"{nic.id}/ipConfigurations/{config.name}"))
        pools.append(
            PoolWire(
                id=pool_id,
                name=pool.name,
                type=f"{TYPE}/backendAddressPools",
                etag=lb.etag,
                properties=PoolProperties(
                    load_balancer_backend_addresses=[
                        BackendAddressWire(
                            name=a.name,
                            properties=BackendAddressProperties(
                                ip_address=a.ip_address,
                                virtual_network=SubResource(id=a.virtual_network_id)
                                if a.virtual_network_id
                                else None,
                            ),
                        )
                        for a in pool.addresses
                    ]
                    or None,
                    backend_ip_configurations=members or None,
                    load_balancing_rules=rules_using("pool_ids", pool_id),
                    provisioning_state=state,
                ),
            )
        )
    probes = [
        ProbeWire(
            id=lb.child_id("probes", p.name),
            name=p.name,
            type=f"{TYPE}/probes",
            etag=lb.etag,
            properties=ProbeProperties(
                protocol=p.protocol,
                port=p.port,
                request_path=p.request_path,
                interval_in_seconds=p.interval_in_seconds,
                number_of_probes=p.number_of_probes,
                probe_threshold=p.probe_threshold,
                load_balancing_rules=rules_using("probe_id", lb.child_id("probes", p.name)),
                provisioning_state=state,
            ),
        )
        for p in lb.probes
    ]
    rules = [
        RuleWire(
            id=lb.child_id("loadBalancingRules", r.name),
            name=r.name,
            type=f"{TYPE}/loadBalancingRules",
            etag=lb.etag,
            properties=RuleProperties(
                protocol=r.protocol,
                frontend_port=r.frontend_port,
                backend_port=r.backend_port,
                frontend_ip_configuration=SubResource(id=r.frontend_id),
                backend_address_pool=SubResource(id=r.pool_ids[0]) if r.pool_ids else None,
                backend_address_pools=[SubResource(id=p) for p in r.pool_ids],
                probe=SubResource(id=r.probe_id) if r.probe_id else None,
                idle_timeout_in_minutes=r.idle_timeout_in_minutes,
                load_distribution=r.load_distribution,
                enable_floating_ip=r.enable_floating_ip,
                enable_tcp_reset=r.enable_tcp_reset,
                disable_outbound_snat=r.disable_outbound_snat,
                provisioning_state=state,
            ),
        )
        for r in lb.rules
    ]
    body = LoadBalancerWire(
        id=lb.id,
        name=lb.name,
        type=TYPE,
        location=lb.location,
        tags=lb.tags,
        etag=lb.etag,
        sku=Sku(name=lb.sku, tier=lb.sku_tier),
        properties=LoadBalancerProperties(
            frontend_ip_configurations=frontends,
            backend_address_pools=pools,
            probes=probes,
            load_balancing_rules=rules,
            provisioning_state=state,
        ),
    )
    out = arm.dump(body)
    for field in (
        "backendAddressPools",
        "probes",
        "loadBalancingRules",
        "frontendIPConfigurations",
    ):
        out["properties"].setdefault(field, [])
    return out


router = APIRouter(route_class=LeanRoute)


KIND = crud.ResourceKind(
    entry=registry.require(TYPE),
    wire=LoadBalancerWire,
    to_domain=to_domain,
    render=render,
)
KINDS = (KIND,)
crud.register(router, KIND)


_CHILDREN = {
    "frontendIPConfigurations": "frontendIPConfigurations",
    "backendAddressPools": "backendAddressPools",
    "probes": "probes",
    "loadBalancingRules": "loadBalancingRules",
}


def _child_routes(kind: str) -> None:
    @router.get(PATH + "/{name}/" + kind, name=f"list_{kind}")
    def list_children(
        request: Request,
        subscription: str,
        group: str,
        name: str,
        plane: ControlPlane = Depends(control_plane),
        size: int = Depends(page_size),
    ) -> Response:
        rid = str(arm.resource_id(subscription, group, "loadBalancers", name))
        with plane.read() as view:
            body = render(view, require(view, rid, core.LoadBalancer))
        return arm.page_slice(request, body["properties"][kind], size)

    @router.get(PATH + "/{name}/" + kind + "/{child}", name=f"get_{kind}")
    def get_child(
        subscription: str,
        group: str,
        name: str,
        child: str,
        plane: ControlPlane = Depends(control_plane),
    ) -> Response:
        rid = str(arm.resource_id(subscription, group, "loadBalancers", name))
        with plane.read() as view:
            body = render(view, require(view, rid, core.LoadBalancer))
        for item in body["properties"][kind]:
            if item["name"].lower() == child.lower():
                return arm.ok(item)
        raise errors.ResourceNotFound(id=f"{rid}/{kind}/{child}")


for _kind in _CHILDREN:
    _child_routes(_kind)


@router.post(PATH + "/{name}/loadBalancingRules/{rule}/health", name="load_balancing_rule_health")
def load_balancing_rule_health(
    request: Request,
    subscription: str,
    group: str,
    name: str,
    rule: str,
    plane: ControlPlane = Depends(control_plane),
) -> Response:
    """Azure's `LoadBalancerLoadBalancingRules_Health`: each backend of the rule's pools
    with its live probe state (Up or Down and Azure's reason code) and the counts.

    Long-running in Azure (202, then the result at the Location); here the answer is at
    hand, so it is the 200 with the body the spec also allows, and that the SDK's poller
    takes as final. A backend no probe has judged (not probed yet, the rule has no probe,
    or no data plane runs) has no state, and reason "NA", as Azure shows it; it counts
    neither up nor down. Authorized as Azure's
    `Microsoft.Network/loadBalancers/loadBalancingRules/health/action` (core/actions.py).
    """
    rid = str(arm.resource_id(subscription, group, "loadBalancers", name))
    with plane.read() as view:
        lb = require(view, rid, core.LoadBalancer)
        found = next((r for r in lb.rules if r.name.lower() == rule.lower()), None)
        if found is None:
            raise errors.ResourceNotFound(id=f"{rid}/loadBalancingRules/{rule}")
        members = core.rule_members(view, lb, found)
    source: core.RuleHealth | None = getattr(request.app.state, "rule_health", None)
    states = source(lb.child_id("loadBalancingRules", found.name)) if source is not None else {}
    addresses: list[dict[str, Any]] = []
    up = down = 0
    for member in members:
        entry: dict[str, Any] = {"ipAddress": member.ip_address}
        if member.ip_configuration_id:
            entry["networkInterfaceIPConfigurationId"] = member.ip_configuration_id
        state = states.get(member.ip_address)
        if state is None:
            entry["reason"] = core.NOT_PROBED
        else:
            entry["state"] = state.state
            entry["reason"] = state.reason
            up, down = (up + 1, down) if state.up else (up, down + 1)
        addresses.append(entry)
    return arm.ok({"up": up, "down": down, "loadBalancerBackendAddresses": addresses})
