"""Service limits, with small configured values (and Azure's defaults where cheap)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

import pytest
from pl_world import (
    S1,
    S2,
    S3,
    S4,
    World,
    arm_id,
    make_lb,
    make_pe,
    make_pls,
    make_vnet,
    nat,
    pls_id,
    subnet_id,
)

from privatelink.core import errors
from privatelink.core import private_endpoint as pem
from privatelink.core import private_link as pl
from privatelink.core import private_link_service as plsm
from privatelink.core import virtual_network as vnm
from privatelink.core.limits import Limits
from privatelink.core.resource import Changes, Resource

MakeWorld = Callable[..., World]


def guid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-000000000000"


def test_defaults_are_azures_published_limits() -> None:
    limits = Limits()
    assert limits.pls_per_subscription == 800
    assert limits.pls_per_load_balancer == 8
    assert limits.nat_ip_configurations == 8
    assert limits.pe_per_pls == 1000
    assert limits.pe_per_vnet == 1000
    assert limits.visibility_subscriptions == 100
    assert limits.auto_approval_subscriptions == 100
    assert limits.request_message_length == 140


def test_from_mapping() -> None:
    limits = Limits.from_mapping({"pls_per_load_balancer": "3", "pe_per_pls": 5})
    assert limits == Limits(pls_per_load_balancer=3, pe_per_pls=5)
    with pytest.raises(ValueError, match="bogus"):
        Limits.from_mapping({"bogus": 1})


# --- private link services per subscription -----------------------------------------------------


def test_pls_per_subscription(make_world: MakeWorld) -> None:
    w = make_world(pls_per_subscription=2)
    w.provider(n=3)
    w.create_pls(name="a", frontends=("fe1",))
    w.create_pls(name="b", frontends=("fe2",), nats=(nat(subnet="nat2"),))
    exc = w.refuse(
        errors.PrivateLinkServicesPerSubscriptionLimitReached,
        "PrivateLinkServicesPerSubscriptionLimitReached",
        400,
        pl.create_or_update_service,
        make_pls(name="c", frontends=("fe3",)),
    )
    assert isinstance(exc, errors.LimitExceeded)
    # an update of an existing service is not a new one
    w.run(pl.create_or_update_service, replace(w.pls("a"), tags={"x": "y"}))
    assert w.pls("a").tags == {"x": "y"}
    # and deleting one makes room again
    w.run(plsm.delete, pls_id("a"))
    w.create_pls(name="c", frontends=("fe3",))


class _PaddedView:
    """A real view whose counts and referrer lists pretend to hold `extra` more items."""

    def __init__(self, inner: Any, extra: int, kinds: tuple[str, ...] = ()) -> None:
        self._inner = inner
        self._extra = extra
        self._kinds = kinds

    def get(self, resource_id: str) -> Resource | None:
        return self._inner.get(resource_id)

    def count_referrers(self, target: str, kind: str) -> int:
        count = int(self._inner.count_referrers(target, kind))
        return count + (self._extra if kind in self._kinds else 0)

    def referrers(
        self, target: str, kind: str, offset: int = 0, limit: int | None = None
    ) -> list[Resource]:
        found = self._inner.referrers(target, kind, offset, limit)
        if kind in self._kinds:
            filler = found[0] if found else Resource(id="/x", name="x", location="x")
            found = found + [filler] * self._extra
        return found

    def used_ips(self, subnet_id: str) -> dict[str, str]:
        return self._inner.used_ips(subnet_id)

    def ip_holders(self, subnet_id: str, addresses: Collection[str]) -> dict[str, str]:
        return self._inner.ip_holders(subnet_id, addresses)

    def lowest_free_ip(self, subnet_id: str, first: int, last: int) -> int | None:
        return self._inner.lowest_free_ip(subnet_id, first, last)

    def count(self, resource_type: str, subscription: str) -> int:
        return self._inner.count(resource_type, subscription) + self._extra


@pytest.mark.parametrize(("existing", "refused"), [(799, False), (800, True)])
def test_default_pls_per_subscription_is_800(world: World, existing: int, refused: bool) -> None:
    world.provider(n=1)
    with world.repo.read() as view:
        padded = _PaddedView(view, existing)
        if refused:
            with pytest.raises(errors.PrivateLinkServicesPerSubscriptionLimitReached):
                pl.create_or_update_service(padded, world.ctx, make_pls())
        else:
            changes = pl.create_or_update_service(padded, world.ctx, make_pls())
            assert [type(r).__name__ for r in changes.puts] == [
                "NetworkInterface",
                "PrivateLinkService",
            ]


# --- private link services per load balancer ----------------------------------------------------


def test_pls_per_load_balancer(make_world: MakeWorld) -> None:
    w = make_world(pls_per_load_balancer=2)
    w.provider(n=3)
    w.run(pl.create_or_update_load_balancer, make_lb("lb2", n=1, subnet="be"))
    w.create_pls(name="a", frontends=("fe1",))
    w.create_pls(name="b", frontends=("fe2",))
    w.refuse(
        errors.PrivateLinkServicesPerLoadBalancerLimitReached,
        "PrivateLinkServicesPerLoadBalancerLimitReached",
        400,
        pl.create_or_update_service,
        make_pls(name="c", frontends=("fe3",)),
    )
    # updating a service already on the load balancer is fine
    w.run(pl.create_or_update_service, replace(w.pls("b"), visibility=(S2,)))
    assert w.pls("b").visibility == (S2,)
    # another load balancer has its own budget
    w.create_pls(name="c", lb="lb2", frontends=("fe1",))


def test_default_pls_per_load_balancer_is_8(world: World) -> None:
    world.provider(n=9)
    for i in range(1, 9):
        world.create_pls(name=f"s{i}", frontends=(f"fe{i}",))
    world.refuse(
        errors.PrivateLinkServicesPerLoadBalancerLimitReached,
        "PrivateLinkServicesPerLoadBalancerLimitReached",
        400,
        pl.create_or_update_service,
        make_pls(name="s9", frontends=("fe9",)),
    )


# --- NAT ip configurations ----------------------------------------------------------------------


def test_nat_ip_configurations(make_world: MakeWorld) -> None:
    w = make_world(nat_ip_configurations=2)
    w.provider(n=1)
    three = (nat("a", primary=True), nat("b"), nat("c"))
    w.refuse(
        errors.NatIpConfigurationCount,
        "PrivateLinkServiceNatIpConfigurationCountInvalid",
        400,
        pl.create_or_update_service,
        make_pls(nats=three),
    )
    pls = w.create_pls(nats=three[:2])
    w.refuse(
        errors.NatIpConfigurationCount,
        "PrivateLinkServiceNatIpConfigurationCountInvalid",
        400,
        pl.create_or_update_service,
        replace(pls, ip_configurations=(*pls.ip_configurations, nat("c"))),
    )


# --- private endpoints per service and per VNet ---------------------------------------------------


def _consumers(w: World) -> plsm.PrivateLinkService:
    w.provider(n=2)
    w.consumer(S2)
    w.consumer(S3)
    w.create_pls(name="pls2", frontends=("fe2",), nats=(nat(subnet="nat2"),))
    return w.create_pls()


def test_pe_per_pls(make_world: MakeWorld) -> None:
    w = make_world(pe_per_pls=2)
    pls = _consumers(w)
    w.create_pe(pls.alias, name="a")
    w.create_pe(pls.alias, name="b", sub=S3)
    w.run(pl.update_connection, pls.id, w.connections()[0].name, "Rejected", None, None)
    exc = w.refuse(
        errors.PrivateEndpointsPerPrivateLinkServiceLimitReached,
        "PrivateEndpointsPerPrivateLinkServiceLimitReached",
        400,
        pl.create_or_update_endpoint,
        make_pe(pls.alias, name="c"),
    )
    assert isinstance(exc, errors.LimitExceeded)
    # another service has its own budget
    w.create_pe(w.pls("pls2").alias, name="other")
    # a deleted endpoint frees its slot
    w.run(pl.delete_endpoint, w.pe("a").id)
    w.create_pe(pls.alias, name="c")
    assert len(w.connections()) == 2


def test_pe_per_vnet(make_world: MakeWorld) -> None:
    w = make_world(pe_per_vnet=2)
    pls = _consumers(w)
    w.create_pe(pls.alias, name="a")
    w.create_pe(w.pls("pls2").alias, name="b")
    w.refuse(
        errors.PrivateEndpointsPerVirtualNetworkLimitReached,
        "PrivateEndpointsPerVirtualNetworkLimitReached",
        400,
        pl.create_or_update_endpoint,
        make_pe(pls.alias, name="c"),
    )
    # another VNet has its own budget
    w.create_pe(pls.alias, name="c", sub=S3)
    # a provider-deleted (Disconnected) endpoint still sits in the VNet
    name = next(c.name for c in w.connections() if c.private_endpoint_id == w.pe("a").id)
    w.run(pl.delete_connection, pls.id, name)
    w.refuse(
        errors.PrivateEndpointsPerVirtualNetworkLimitReached,
        "PrivateEndpointsPerVirtualNetworkLimitReached",
        400,
        pl.create_or_update_endpoint,
        make_pe(pls.alias, name="d"),
    )
    w.run(pl.delete_endpoint, w.pe("a").id)
    w.create_pe(pls.alias, name="d")


def _seeded(world: World) -> plsm.PrivateLinkService:
    """pls1 with one connection, from endpoint `seed` in the consumer VNet."""
    world.provider(n=1)
    world.consumer()
    pls = world.create_pls()
    world.create_pe(pls.alias, name="seed")
    return world.pls()


@pytest.mark.parametrize(("total", "refused"), [(999, False), (1000, True)])
def test_default_pe_per_pls_is_1000(world: World, total: int, refused: bool) -> None:
    seed = _seeded(world)
    (first,) = world.connections()
    padded = Changes()
    for i in range(1, total):  # the seed's own connection is the first
        name = f"{first.name}.{i}"
        padded.put(replace(first, id=seed.connection_id(name), name=name))
    with world.repo.write() as uow:
        uow.apply(padded)
    desired = make_pe(seed.alias, name="new")
    if refused:
        world.refuse(
            errors.PrivateEndpointsPerPrivateLinkServiceLimitReached,
            "PrivateEndpointsPerPrivateLinkServiceLimitReached",
            400,
            pl.create_or_update_endpoint,
            desired,
        )
    else:
        world.run(pl.create_or_update_endpoint, desired)
        assert len(world.connections()) == 1000


@pytest.mark.parametrize(("total", "refused"), [(999, False), (1000, True)])
def test_default_pe_per_vnet_is_1000(world: World, total: int, refused: bool) -> None:
    seed = _seeded(world)
    with world.repo.read() as view:
        padded = _PaddedView(view, total - 1, ("pe-vnet",))
        desired = make_pe(seed.alias, name="new")
        if refused:
            with pytest.raises(errors.PrivateEndpointsPerVirtualNetworkLimitReached):
                pl.create_or_update_endpoint(padded, world.ctx, desired)
        else:
            changes = pl.create_or_update_endpoint(padded, world.ctx, desired)
            assert any(isinstance(r, pem.PrivateEndpoint) for r in changes.puts)


# --- subscription lists ---------------------------------------------------------------------------


def test_visibility_subscription_limit(make_world: MakeWorld) -> None:
    w = make_world(visibility_subscriptions=2)
    w.provider(n=1)
    w.refuse(
        errors.SubscriptionListLimitExceeded,
        "SubscriptionListLimitExceeded",
        400,
        pl.create_or_update_service,
        make_pls(visibility=(S2, S3, S4)),
    )
    # a repeated entry is refused (not silently dropped): see test_private_link_service
    w.refuse(
        errors.DuplicateSubscriptionInList,
        "DuplicateSubscriptionInPrivateLinkServiceList",
        400,
        pl.create_or_update_service,
        make_pls(visibility=(S2, S2)),
    )


def test_auto_approval_subscription_limit(make_world: MakeWorld) -> None:
    w = make_world(auto_approval_subscriptions=2)
    w.provider(n=1)
    w.refuse(
        errors.SubscriptionListLimitExceeded,
        "SubscriptionListLimitExceeded",
        400,
        pl.create_or_update_service,
        make_pls(visibility=("*",), auto_approval=(S2, S3, S4)),
    )
    assert w.create_pls(visibility=("*",), auto_approval=(S2, S3)).auto_approval == (S2, S3)


@pytest.mark.parametrize("field", ["visibility", "auto_approval"])
def test_default_subscription_list_limit_is_100(world: World, field: str) -> None:
    world.provider(n=1)
    many = tuple(guid(i) for i in range(101))
    kwargs: dict[str, Any] = {field: many}
    if field == "auto_approval":
        kwargs["visibility"] = ("*",)
    world.refuse(
        errors.SubscriptionListLimitExceeded,
        "SubscriptionListLimitExceeded",
        400,
        pl.create_or_update_service,
        make_pls(**kwargs),
    )
    kwargs[field] = many[:100]
    pls = world.create_pls(**kwargs)
    assert len(getattr(pls, field)) == 100


# --- request message ------------------------------------------------------------------------------


def test_request_message_length(make_world: MakeWorld) -> None:
    w = make_world(request_message_length=10)
    w.provider(n=1)
    w.consumer()
    pls = w.create_pls()
    w.refuse(
        errors.RequestMessageTooLong,
        "RequestMessageTooLong",
        400,
        pl.create_or_update_endpoint,
        make_pe(pls.alias, message="x" * 11),
    )
    assert w.create_pe(pls.alias, message="x" * 10).connection.request_message == "x" * 10


def test_pe_per_vnet_counts_every_subnet_of_the_vnet(make_world: MakeWorld) -> None:
    w = make_world(pe_per_vnet=2)
    pls = _consumers(w)
    w.run(vnm.create_or_update_subnet, subnet_id("vc", "pe2", S2), vnm.Subnet("pe2", "10.1.2.0/24"))
    w.create_pe(pls.alias, name="a", subnet="pe")
    w.create_pe(pls.alias, name="b", subnet="pe2")
    w.refuse(
        errors.PrivateEndpointsPerVirtualNetworkLimitReached,
        "PrivateEndpointsPerVirtualNetworkLimitReached",
        400,
        pl.create_or_update_endpoint,
        make_pe(pls.alias, name="c", subnet="pe2"),
    )


def test_pls_per_subscription_spans_resource_groups_not_subscriptions(
    make_world: MakeWorld,
) -> None:
    w = make_world(pls_per_subscription=1)
    w.provider(n=2)
    other_rg = replace(make_pls(name="a"), id=arm_id(S1, "privateLinkServices", "a", rg="rg2"))
    w.run(pl.create_or_update_service, other_rg)
    w.refuse(
        errors.PrivateLinkServicesPerSubscriptionLimitReached,
        "PrivateLinkServicesPerSubscriptionLimitReached",
        400,
        pl.create_or_update_service,
        make_pls(name="b", frontends=("fe2",), nats=(nat(subnet="nat2"),)),
    )
    # a second provider subscription has its own budget
    w.run(vnm.create_or_update, make_vnet(sub=S2))
    w.run(pl.create_or_update_load_balancer, make_lb(sub=S2, n=1))
    theirs = w.create_pls(name="b", sub=S2, nats=(nat(sub=S2),))
    assert theirs.subscription == S2
