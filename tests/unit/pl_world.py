"""Builders and a SQLite-backed "world" for the core's unit tests (see conftest.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from privatelink.core import errors
from privatelink.core import load_balancer as lbm
from privatelink.core import private_endpoint as pem
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm
from privatelink.core.limits import Limits
from privatelink.core.network_interface import NetworkInterface
from privatelink.core.resource import Changes, Context, Resource
from privatelink.store.sql import SqlRepository, counters, ips, refs, resources

S1 = "11111111-1111-4111-8111-111111111111"  # provider
S2 = "22222222-2222-4222-8222-222222222222"  # consumer
S3 = "33333333-3333-4333-8333-333333333333"  # a stranger
S4 = "44444444-4444-4444-8444-444444444444"

REGION = "eastus"
OTHER_REGION = "westus"

T = TypeVar("T", bound=Resource)


# --- ids -----------------------------------------------------------------------------------


def arm_id(sub: str, kind: str, name: str, rg: str = "rg") -> str:
    """Id of a top-level Microsoft.Network resource."""
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/{kind}/{name}"


def vnet_id(name: str = "vp", sub: str = S1) -> str:
    return arm_id(sub, "virtualNetworks", name)


def subnet_id(vnet: str = "vp", subnet: str = "nat", sub: str = S1) -> str:
    return f"{vnet_id(vnet, sub)}/subnets/{subnet}"


def lb_id(name: str = "lb", sub: str = S1) -> str:
    return arm_id(sub, "loadBalancers", name)


def fe_id(fe: str = "fe1", lb: str = "lb", sub: str = S1) -> str:
    return f"{lb_id(lb, sub)}/frontendIPConfigurations/{fe}"


def pool_id(pool: str = "be1", lb: str = "lb", sub: str = S1) -> str:
    return f"{lb_id(lb, sub)}/backendAddressPools/{pool}"


def probe_id(probe: str = "p", lb: str = "lb", sub: str = S1) -> str:
    return f"{lb_id(lb, sub)}/probes/{probe}"


def pls_id(name: str = "pls1", sub: str = S1) -> str:
    return arm_id(sub, "privateLinkServices", name)


def pe_id(name: str = "pe1", sub: str = S2) -> str:
    return arm_id(sub, "privateEndpoints", name)


def nic_id(name: str, sub: str = S1) -> str:
    return arm_id(sub, "networkInterfaces", name)


# --- resource builders ------------------------------------------------------------------------

PROVIDER_SUBNETS = (
    vnm.Subnet("fe", "10.0.1.0/24"),
    vnm.Subnet("be", "10.0.2.0/24"),
    vnm.Subnet("nat", "10.0.3.0/24", private_link_service_network_policies=vnm.DISABLED),
    vnm.Subnet("nat2", "10.0.4.0/24", private_link_service_network_policies=vnm.DISABLED),
)


def make_vnet(
    name: str = "vp",
    sub: str = S1,
    location: str = REGION,
    prefixes: tuple[str, ...] = ("10.0.0.0/16",),
    subnets: tuple[vnm.Subnet, ...] = PROVIDER_SUBNETS,
) -> vnm.VirtualNetwork:
    return vnm.VirtualNetwork(
        id=vnet_id(name, sub),
        name=name,
        location=location,
        address_prefixes=prefixes,
        subnets=subnets,
    )


def make_rule(
    name: str,
    fe: str,
    pool: str,
    lb: str = "lb",
    sub: str = S1,
    protocol: str = "Tcp",
    port: int = 80,
    backend_port: int = 8080,
) -> lbm.Rule:
    return lbm.Rule(
        name,
        protocol,
        port,
        backend_port,
        fe_id(fe, lb, sub),
        (pool_id(pool, lb, sub),),
        probe_id("p", lb, sub),
    )


def make_lb(
    name: str = "lb",
    sub: str = S1,
    location: str = REGION,
    vnet: str = "vp",
    subnet: str = "fe",
    n: int = 3,
    sku: str = lbm.STANDARD,
    rules: tuple[lbm.Rule, ...] | None = None,
) -> lbm.LoadBalancer:
    """A load balancer with frontends fe1..feN, pools be1..beN and a TCP rule each."""
    frontends = tuple(lbm.Frontend(f"fe{i}", subnet_id(vnet, subnet, sub)) for i in range(1, n + 1))
    pools = tuple(lbm.BackendPool(f"be{i}") for i in range(1, n + 1))
    if rules is None:
        rules = tuple(make_rule(f"r{i}", f"fe{i}", f"be{i}", name, sub) for i in range(1, n + 1))
    return lbm.LoadBalancer(
        id=lb_id(name, sub),
        name=name,
        location=location,
        sku=sku,
        frontends=frontends,
        pools=pools,
        probes=(lbm.Probe("p", "Tcp", 8080),),
        rules=rules,
    )


def nat(
    name: str = "nat1",
    subnet: str = "nat",
    vnet: str = "vp",
    sub: str = S1,
    ip: str | None = None,
    primary: bool | None = None,
    ip_version: str = "IPv4",
) -> plsm.NatIpConfiguration:
    return plsm.NatIpConfiguration(
        name,
        subnet_id(vnet, subnet, sub),
        private_ip=ip,
        allocation="Static" if ip else "Dynamic",
        ip_version=ip_version,
        primary=primary,
    )


def make_pls(
    name: str = "pls1",
    sub: str = S1,
    location: str = REGION,
    frontends: tuple[str, ...] = ("fe1",),
    lb: str = "lb",
    nats: tuple[plsm.NatIpConfiguration, ...] | None = None,
    visibility: tuple[str, ...] = ("*",),
    auto_approval: tuple[str, ...] = (),
    fqdns: tuple[str, ...] = (),
) -> plsm.PrivateLinkService:
    return plsm.PrivateLinkService(
        id=pls_id(name, sub),
        name=name,
        location=location,
        frontend_ids=tuple(fe_id(f, lb, sub) for f in frontends),
        ip_configurations=nats if nats is not None else (nat(),),
        visibility=visibility,
        auto_approval=auto_approval,
        fqdns=fqdns,
    )


def make_pe(
    target: str,
    name: str = "pe1",
    sub: str = S2,
    location: str = REGION,
    vnet: str = "vc",
    subnet: str = "pe",
    message: str | None = None,
    manual: bool = False,
    static_ip: str | None = None,
    connections: tuple[pem.PrivateLinkServiceConnection, ...] | None = None,
) -> pem.PrivateEndpoint:
    if connections is None:
        connections = (pem.PrivateLinkServiceConnection("c1", target, request_message=message),)
    return pem.PrivateEndpoint(
        id=pe_id(name, sub),
        name=name,
        location=location,
        subnet_id=subnet_id(vnet, subnet, sub),
        connections=connections,
        manual=manual,
        static_ip=static_ip,
    )


# --- the world --------------------------------------------------------------------------------


def guid_source() -> Callable[[], str]:
    """Deterministic, distinct, lower-case version-4-shaped GUIDs."""
    counter = itertools.count(1)

    def new_guid() -> str:
        n = next(counter)
        return f"{n:08x}-abcd-4abc-8abc-{n * 7919:012x}"

    return new_guid


class World:
    """A fresh SQLite store plus the context the workflows run with."""

    def __init__(self, data_dir: Path, limits: Limits) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.repo = SqlRepository.sqlite_in(data_dir)
        self.ctx = Context(None, limits, guid_source())

    # running workflows

    def run(self, workflow: Callable[..., Changes], *args: Any) -> dict[str, Resource]:
        """Run a workflow and apply its changes in one write transaction."""
        with self.repo.write() as uow:
            return uow.apply(workflow(uow, self.ctx, *args))

    def refuse(
        self,
        error: type[errors.ArmError],
        code: str,
        status: int,
        workflow: Callable[..., Changes],
        *args: Any,
    ) -> errors.ArmError:
        """Assert the workflow raises exactly `error` (code, status) and writes nothing."""
        before = self.snapshot()
        with pytest.raises(errors.ArmError) as info:
            self.run(workflow, *args)
        exc = info.value
        assert type(exc) is error, f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
        assert exc.code == code
        assert exc.status == status
        assert self.snapshot() == before, "a refused request changed the store"
        return exc

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every resource table, in a stable order."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.repo.engine.connect() as conn:
            for table in (resources, refs, ips, counters):
                rows = conn.execute(select(table)).all()
                out[table.name] = sorted(tuple(r) for r in rows)
        return out

    # reading

    def get(self, resource_id: str) -> Resource | None:
        with self.repo.read() as view:
            return view.get(resource_id)

    def typed(self, resource_id: str, cls: type[T]) -> T:
        found = self.get(resource_id)
        assert isinstance(found, cls), f"{resource_id} is {found!r}, not a {cls.__name__}"
        return found

    def used_ips(self, subnet: str) -> dict[str, str]:
        with self.repo.read() as view:
            return view.used_ips(subnet)

    def pls(self, name: str = "pls1", sub: str = S1) -> plsm.PrivateLinkService:
        return self.typed(pls_id(name, sub), plsm.PrivateLinkService)

    def connections(
        self, name: str = "pls1", sub: str = S1
    ) -> tuple[plsm.PrivateEndpointConnection, ...]:
        """A service's connections, oldest first (rows of their own, not in its document)."""
        with self.repo.read() as view:
            return tuple(plsm.connections_of(view, pls_id(name, sub)))

    def pe(self, name: str = "pe1", sub: str = S2) -> pem.PrivateEndpoint:
        return self.typed(pe_id(name, sub), pem.PrivateEndpoint)

    def lb(self, name: str = "lb", sub: str = S1) -> lbm.LoadBalancer:
        return self.typed(lb_id(name, sub), lbm.LoadBalancer)

    def vnet(self, name: str = "vp", sub: str = S1) -> vnm.VirtualNetwork:
        return self.typed(vnet_id(name, sub), vnm.VirtualNetwork)

    def nic(self, resource_id: str) -> NetworkInterface:
        return self.typed(resource_id, NetworkInterface)

    # building topologies

    def provider(self, n: int = 3, **lb_kwargs: Any) -> lbm.LoadBalancer:
        """Provider VNet `vp` and load balancer `lb` with n frontends."""
        self.run(vnm.create_or_update, make_vnet())
        self.run(pl.create_or_update_load_balancer, make_lb(n=n, **lb_kwargs))
        return self.lb()

    def consumer(
        self,
        sub: str = S2,
        name: str = "vc",
        location: str = REGION,
        prefix: str = "10.1.0.0/16",
        subnet_prefix: str = "10.1.1.0/24",
    ) -> vnm.VirtualNetwork:
        self.run(
            vnm.create_or_update,
            make_vnet(name, sub, location, (prefix,), (vnm.Subnet("pe", subnet_prefix),)),
        )
        return self.vnet(name, sub)

    def create_pls(self, **kwargs: Any) -> plsm.PrivateLinkService:
        desired = make_pls(**kwargs)
        self.run(pl.create_or_update_service, desired)
        return self.typed(desired.id, plsm.PrivateLinkService)

    def create_pe(self, target: str, **kwargs: Any) -> pem.PrivateEndpoint:
        desired = make_pe(target, **kwargs)
        self.run(pl.create_or_update_endpoint, desired)
        return self.typed(desired.id, pem.PrivateEndpoint)

    def two_services(self, auto_approval: tuple[str, ...] = (S2,)) -> None:
        """Provider and consumer networks, `pls1` (manual approval) on fe1 and `pls2` on
        fe2 approving `auto_approval` at once."""
        self.provider()
        self.consumer()
        self.create_pls(name="pls1", frontends=("fe1",))
        self.create_pls(name="pls2", frontends=("fe2",), auto_approval=auto_approval)

    def decide(self, endpoint: pem.PrivateEndpoint, status: str) -> None:
        """As the provider, approve or reject an endpoint's connection ("Approved" or
        "Rejected") when it has one that is still Pending or Approved."""
        conn = endpoint.connection
        if conn.remote_name and conn.status in ("Pending", "Approved"):
            self.run(
                pl.update_connection,
                conn.private_link_service_id,
                conn.remote_name,
                status,
                None,
                None,
            )

    def update_pls(self, **changes: Any) -> plsm.PrivateLinkService:
        """PUT the service again with some fields replaced."""
        current = self.pls()
        self.run(pl.create_or_update_service, replace(current, **changes))
        return self.pls()

    def dispose(self) -> None:
        self.repo.dispose()
