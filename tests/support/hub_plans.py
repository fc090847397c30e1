"""Hub plans for the nft delta tests of both tiers: builders and a hypothesis strategy."""

from __future__ import annotations

from hypothesis import strategies as st

from privatelink.dataplane.desired import HubPlan, LinkPlan, RulePlan, ServicePlan

NS = "tst-v-hub"


def rule(i: int, backends: tuple[str, ...]) -> RulePlan:
    return RulePlan(
        f"rule{i}", f"rule_{i:012x}", "tcp", f"10.0.0.{i + 10}", 80 + i, 8080, backends, "Default"
    )


def service(
    i: int, rules: list[RulePlan], nat_ips: tuple[str, ...], destination: str | None = None
) -> ServicePlan:
    """A service over `rules`, or (`destination`) a Direct Connect one, which has none."""
    ports = () if destination else tuple(("tcp", r.frontend_port, r.chain) for r in rules)
    return ServicePlan(
        f"pls{i}", f"pls_{i:012x}", f"snat_{i:012x}", nat_ips, ports, destination=destination
    )


def link(slot: int, service: ServicePlan, inbound: bool, local: bool = False) -> LinkPlan:
    """A link on `slot`; links of neighbouring slots share a pair veth (four a pair)."""
    return LinkPlan.on_slot(
        slot,
        f"link{slot}",
        f"10.1.0.{slot + 4}",
        NS if not inbound else "other",
        NS if inbound else "other",
        service.chain,
        tuple(port for _, port, _ in service.ports),
        local=local,
        pair=slot // 4,
        all_ports=service.destination is not None,
    )


@st.composite
def hubs(draw: st.DrawFn) -> tuple[HubPlan, frozenset[int], bool]:
    rules = [
        rule(i, tuple(draw(st.sets(st.sampled_from(["10.0.1.4", "10.0.1.5", "10.0.1.6"])))))
        for i in sorted(draw(st.sets(st.integers(0, 3))))
    ]
    services = []
    for i in sorted(draw(st.sets(st.integers(0, 3)))):
        used = [r for r in rules if draw(st.booleans())]
        nat = tuple(sorted(draw(st.sets(st.sampled_from(["10.0.3.4", "10.0.3.5"]), max_size=2))))
        # Some are Direct Connect services: their links mark every port of their PE.
        destination = draw(st.sampled_from([None, None, "10.0.2.9", "10.0.2.10"]))
        services.append(service(i, used, nat, destination))
    links_in: list[LinkPlan] = []
    links_out: list[LinkPlan] = []
    if services:
        for slot in sorted(draw(st.sets(st.integers(0, 12), max_size=6))):
            target = draw(st.sampled_from(services))
            links_in.append(link(slot, target, True, local=draw(st.booleans()) and slot % 3 == 0))
        for slot in sorted(draw(st.sets(st.integers(20, 30), max_size=4))):
            links_out.append(link(slot, draw(st.sampled_from(services)), False))
    pe_ips = tuple(
        sorted(
            {x.pe_ip for x in links_out}
            | set(draw(st.sets(st.sampled_from(["10.1.9.1", "10.1.9.2"]))))
        )
    )
    hub = HubPlan(
        vnet_id="vnet",
        netns=NS,
        rules=tuple(rules),
        services=tuple(services),
        links_in=tuple(links_in),
        links_out=tuple(links_out),
        pe_ips=pe_ips,
    )
    marks = [x.mark for x in (*links_in, *links_out)]
    dying = frozenset(draw(st.sets(st.sampled_from(marks), max_size=2))) if marks else frozenset()
    return hub, dying, draw(st.booleans())
