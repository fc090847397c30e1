"""A private endpoint with a static IP (`ipConfigurations`), on real namespaces: the
consumer reaches the service at exactly that address, and at no other."""

from __future__ import annotations

import pytest
from world import CONSUMER, PROVIDER, REGION, World, rid, try_get, wait_for

from privatelink.core import private_endpoint as pem
from privatelink.core import private_link as pl

pytestmark = pytest.mark.netns

STATIC_IP = "10.0.2.77"


def test_consumer_reaches_the_service_at_the_static_ip_only(world: World) -> None:
    vnet = world.vnet(
        PROVIDER,
        "prov",
        "10.0.0.0/16",
        {"fe": "10.0.1.0/24", "be": "10.0.2.0/24", "nat": "10.0.3.0/24"},
    )
    lb = world.load_balancer(
        PROVIDER, "lb", {"fe": vnet.subnet_id("fe")}, [("http", "fe", 80, 8080, "be")], probe=None
    )
    backend = world.nic(
        PROVIDER, "backend", vnet.subnet_id("be"), pools=(lb.child_id("backendAddressPools", "be"),)
    )
    pls = world.service(
        PROVIDER, "svc", (lb.child_id("frontendIPConfigurations", "fe"),), vnet.subnet_id("nat")
    )
    world.serve_whoami(backend, "b0")
    # The consumer's address space is the provider's; its endpoint subnet is 10.0.2.0/24.
    cvnet = world.vnet(CONSUMER, "cons", "10.0.0.0/16", {"vms": "10.0.1.0/24", "pe": "10.0.2.0/24"})
    client = world.nic(CONSUMER, "client", cvnet.subnet_id("vms"))

    pe = world.put(
        pl.create_or_update_endpoint,
        pem.PrivateEndpoint(
            id=rid(CONSUMER, "privateEndpoints", "pe"),
            name="pe",
            location=REGION,
            subnet_id=cvnet.subnet_id("pe"),
            connections=(pem.PrivateLinkServiceConnection("conn", pls.alias),),
            manual=True,
            ip_configurations=(pem.EndpointIpConfiguration("ipc", STATIC_IP),),
        ),
    )
    assert isinstance(pe, pem.PrivateEndpoint)
    assert pe.ip_configurations[0].private_ip == STATIC_IP
    assert world.endpoint_ip(pe) == STATIC_IP
    world.set_connection(pls.id, pe, "Approved")
    world.settle()

    netns = world.netns(client)
    body = wait_for(lambda: try_get(netns, STATIC_IP, 80), 5, "a reply at the static IP")
    assert body.startswith("b0 saw ")
    nat_ips = {c.private_ip for c in world.get(pls.id).ip_configurations}
    assert body.split(" saw ")[1].strip() in nat_ips
    # What a dynamic endpoint would have had (the subnet's first address), the neighbours,
    # and the provider's own backend address (same numbers, other network): nothing.
    for other in ("10.0.2.4", "10.0.2.76", "10.0.2.78", backend.ip_configurations[0].private_ip):
        assert other is not None and other != STATIC_IP
        assert try_get(netns, other, 80, 0.5) is None, f"{other} answered"
