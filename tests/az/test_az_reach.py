"""The real azure-cli on reach's resources: VNet peerings, public IPs, a public load balancer
with a private link service, a VPN gateway, a local network gateway and their connection.

Peerings: across two resource groups (`--remote-vnet` by full id), across two subscriptions
(the second made with `privatelink subscription create`), `az network vnet peering sync`
after the remote network grows, `update --set`, and an overlapping pair refused with
Azure's `VnetAddressSpacesOverlap`. Gateways: `az network vnet-gateway create` waits for
its long-running operation, which here finishes at once; `az network vpn-connection
create` is an ARM template deployment with the shared key as a secure parameter.

One server per module. The `nets` fixture builds every network once (peering tests and
hub tests use different ones). Each `az` run costs a second or two of CPU, so independent
runs go at once (`_together`; az runs sharing one config directory are fine, as in
test_az_rbac.py): about 40 az runs, about a minute on two cores.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

pytestmark = pytest.mark.az

LOCATION = "eastus"
PUBLIC_RANGE = IPv4Network("198.18.0.0/15")


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent az calls at once; their results in order (a failure re-raises)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


@dataclass
class Net:
    """A VNet made with az: its subscription, group and name, and its full id."""

    sub: str
    rg: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.sub}/resourceGroups/{self.rg}"
            f"/providers/Microsoft.Network/virtualNetworks/{self.name}"
        )

    @property
    def where(self) -> tuple[str, ...]:
        """`-g RG --vnet-name NAME --subscription SUB` for `az network vnet peering ...`."""
        return ("-g", self.rg, "--vnet-name", self.name, "--subscription", self.sub)


def _group(az: Any, sub: str, rg: str) -> None:
    az.run("group", "create", "-n", rg, "-l", LOCATION, "--subscription", sub, "-o", "none")


def _vnet(az: Any, sub: str, rg: str, name: str, prefix: str, subnet: str = "") -> Net:
    """A VNet with one subnet: `default` on the whole prefix, or `subnet` as NAME=PREFIX."""
    subnet_name, _, subnet_prefix = (subnet or f"default={prefix}").partition("=")
    az.run(
        *("network", "vnet", "create", "-g", rg, "-n", name, "--subscription", sub),
        *("--address-prefixes", prefix, "--subnet-name", subnet_name),
        *("--subnet-prefixes", subnet_prefix, "-o", "none"),
    )
    return Net(sub, rg, name)


def _group_and_vnet(az: Any, sub: str, rg: str, name: str, prefix: str) -> Net:
    _group(az, sub, rg)
    return _vnet(az, sub, rg, name, prefix)


def _peer_args(local: Net, name: str, remote: Net, *flags: str) -> tuple[str, ...]:
    return (
        *("network", "vnet", "peering", "create", *local.where, "-n", name),
        *("--remote-vnet", remote.id, *flags),
    )


def _peer(az: Any, local: Net, name: str, remote: Net, *flags: str) -> dict[str, Any]:
    peering: dict[str, Any] = az.json(*_peer_args(local, name, remote, *flags))
    return peering


def _peering(az: Any, local: Net, name: str, query: str) -> str:
    """One field of a peering, through `show --query ... -o tsv`."""
    return str(
        az.tsv("network", "vnet", "peering", "show", *local.where, "-n", name, "--query", query)
    )


# --------------------------------------------------------------------------------------
# The networks, built at once: va and vb (two groups), vc (a second subscription) and hub
# --------------------------------------------------------------------------------------


@dataclass
class Nets:
    """va 10.1/16 (rg1) and vb 10.2/16 (rg2) in the default subscription; vc 10.20/16 in a
    second subscription; `hub` 10.20/16 (overlapping vc) with subnets GatewaySubnet (/27)
    and nat (private link service network policies off), and Standard public IPs `lbpip`
    and `gwpip`, in its own group."""

    a: Net
    b: Net
    c: Net
    hub: Net
    pips: dict[str, dict[str, Any]]


def _public_ip(az: Any, rg: str, name: str) -> dict[str, Any]:
    created = az.json("network", "public-ip", "create", "-g", rg, "-n", name, "--sku", "Standard")
    pip: dict[str, Any] = created["publicIp"]
    return pip


@pytest.fixture(scope="module")
def nets(az_exe: str, az: Any, az_server: Any, az_helpers: Any) -> Nets:
    sub, unique = az_server.subscription, az_helpers.unique

    def other_subscription() -> Net:
        tenant = str(az_server.credentials["tenant_id"])
        other = str(az_helpers.subscription_create(az_server.data_dir, tenant)["subscription_id"])
        # az refuses a `--subscription` that is not in its account list.
        assert other in az.tsv("account", "list", "--refresh", "--query", "[].id").split()
        return _group_and_vnet(az, other, unique("rg-pc"), "vc", "10.20.0.0/16")

    def hub() -> tuple[Net, dict[str, Any], dict[str, Any]]:
        rg = unique("rg-hub")
        _group(az, sub, rg)
        hub = _vnet(az, sub, rg, "hub", "10.20.0.0/16", "GatewaySubnet=10.20.255.0/27")
        _, lbpip, gwpip = _together(
            lambda: az.run(
                *("network", "vnet", "subnet", "create", "-g", rg, "--vnet-name", "hub"),
                *("-n", "nat", "--address-prefixes", "10.20.3.0/24"),
                *("--private-link-service-network-policies", "Disabled", "-o", "none"),
            ),
            lambda: _public_ip(az, rg, "lbpip"),
            lambda: _public_ip(az, rg, "gwpip"),
        )
        return hub, lbpip, gwpip

    a, b, c, (h, lbpip, gwpip) = _together(
        lambda: _group_and_vnet(az, sub, unique("rg-pa"), "va", "10.1.0.0/16"),
        lambda: _group_and_vnet(az, sub, unique("rg-pb"), "vb", "10.2.0.0/16"),
        other_subscription,
        hub,
    )
    return Nets(a, b, c, h, {"lbpip": lbpip, "gwpip": gwpip})


# --------------------------------------------------------------------------------------
# Peerings
# --------------------------------------------------------------------------------------


def test_peering_across_resource_groups(az: Any, nets: Nets) -> None:
    """Both directions Connected; flags; list; sync after growth; update --set; delete."""
    a, b = nets.a, nets.b
    ab = _peer(az, a, "ab", b, "--allow-vnet-access", "--allow-forwarded-traffic")
    assert ab["peeringState"] == "Initiated"
    assert ab["allowVirtualNetworkAccess"] is True and ab["allowForwardedTraffic"] is True
    assert ab["allowGatewayTransit"] is False
    assert ab["remoteAddressSpace"]["addressPrefixes"] == ["10.2.0.0/16"]
    ba = _peer(az, b, "ba", a, "--allow-gateway-transit")
    assert ba["peeringState"] == "Connected" and ba["allowGatewayTransit"] is True

    # b grows: a's side is out of sync until `peering sync` takes the new space.
    az.run(
        *("network", "vnet", "update", "-g", b.rg, "-n", b.name),
        *("--address-prefixes", "10.2.0.0/16", "10.3.0.0/16", "-o", "none"),
    )
    listed = az.json("network", "vnet", "peering", "list", *a.where)
    assert [(p["name"], p["peeringState"], p["peeringSyncLevel"]) for p in listed] == [
        ("ab", "Connected", "LocalNotInSync")
    ]
    assert listed[0]["remoteVirtualNetwork"]["id"].lower() == b.id.lower()
    synced = az.json("network", "vnet", "peering", "sync", *a.where, "-n", "ab")
    assert synced["peeringSyncLevel"] == "FullyInSync"
    assert synced["remoteAddressSpace"]["addressPrefixes"] == ["10.2.0.0/16", "10.3.0.0/16"]
    assert synced["allowForwardedTraffic"] is True  # sync keeps the flags it read

    updated = az.json(
        *("network", "vnet", "peering", "update", *a.where, "-n", "ab"),
        *("--set", "allowVirtualNetworkAccess=false"),
    )
    assert updated["allowVirtualNetworkAccess"] is False
    assert updated["peeringState"] == "Connected"

    # Deleting one side disconnects the other.
    az.run("network", "vnet", "peering", "delete", *a.where, "-n", "ab")
    shown = az.json("network", "vnet", "peering", "show", *b.where, "-n", "ba")
    assert shown["peeringState"] == "Disconnected"
    assert shown["remoteVirtualNetwork"]["id"].lower() == a.id.lower()


def test_peering_across_subscriptions_and_overlap(az: Any, nets: Nets) -> None:
    """A peering each way between two subscriptions; an overlapping pair is refused."""
    a, c = nets.a, nets.c
    assert c.sub != a.sub
    assert _peer(az, a, "to-c", c)["peeringState"] == "Initiated"
    back = _peer(az, c, "to-a", a)
    assert back["peeringState"] == "Connected"
    assert back["id"].startswith(f"/subscriptions/{c.sub}/resourceGroups/{c.rg}/")
    assert back["remoteVirtualNetwork"]["id"].lower() == a.id.lower()

    # hub and vc share 10.20.0.0/16: they cannot be peered, and az shows Azure's code.
    state, failed = _together(
        lambda: _peering(az, a, "to-c", "peeringState"),
        lambda: az.fails(*_peer_args(nets.hub, "to-c", c), code="VnetAddressSpacesOverlap"),
    )
    assert state == "Connected"
    assert failed.returncode == 1 and "Overlapping address prefixes" in failed.stderr


# --------------------------------------------------------------------------------------
# Public IPs, a public load balancer and its private link service, a VPN gateway, a
# local network gateway and their connection: in the hub network
# --------------------------------------------------------------------------------------


def test_standard_public_ips(nets: Nets) -> None:
    """What `az network public-ip create --sku Standard` gave the hub fixture."""
    lbpip, gwpip = nets.pips["lbpip"], nets.pips["gwpip"]
    for pip in (lbpip, gwpip):
        assert pip["sku"]["name"] == "Standard"
        assert pip["publicIPAllocationMethod"] == "Static"
        assert pip["provisioningState"] == "Succeeded"
        assert IPv4Address(pip["ipAddress"]) in PUBLIC_RANGE
    assert lbpip["ipAddress"] != gwpip["ipAddress"]


def test_public_load_balancer_with_a_private_link_service(az: Any, nets: Nets) -> None:
    rg = nets.hub.rg
    # A template deployment under the hood, with a public frontend.
    created = az.json(
        *("network", "lb", "create", "-g", rg, "-n", "plb", "--sku", "Standard"),
        *("--public-ip-address", "lbpip", "--frontend-ip-name", "fe", "--backend-pool-name", "be"),
    )
    (fe,) = created["loadBalancer"]["frontendIPConfigurations"]
    assert fe["properties"]["publicIPAddress"]["id"].lower() == nets.pips["lbpip"]["id"].lower()
    assert "subnet" not in fe["properties"] and "privateIPAddress" not in fe["properties"]
    rule = az.json(
        *("network", "lb", "rule", "create", "-g", rg, "--lb-name", "plb", "-n", "http"),
        *("--protocol", "Tcp", "--frontend-port", "80", "--backend-port", "8080"),
        *("--frontend-ip-name", "fe", "--backend-pool-name", "be"),
    )
    assert rule["frontendIPConfiguration"]["id"].lower() == fe["id"].lower()

    pls = az.json(
        *("network", "private-link-service", "create", "-g", rg, "-n", "pls"),
        *("--vnet-name", "hub", "--subnet", "nat"),
        *("--lb-name", "plb", "--lb-frontend-ip-configs", "fe"),
    )
    assert pls["provisioningState"] == "Succeeded"
    assert pls["ipConfigurations"][0]["privateIPAddress"].startswith("10.20.3.")
    assert pls["loadBalancerFrontendIpConfigurations"][0]["id"].lower() == fe["id"].lower()
    assert pls["alias"].startswith("pls.")


def test_vpn_gateway_site_connection_and_shared_key(az: Any, nets: Nets) -> None:
    rg = nets.hub.rg
    gw, site = _together(
        lambda: az.json(
            *("network", "vnet-gateway", "create", "-g", rg, "-n", "gw", "--vnet", "hub"),
            *("--public-ip-addresses", "gwpip", "--gateway-type", "Vpn"),
            *("--vpn-type", "RouteBased", "--sku", "VpnGw1"),
        ),
        lambda: az.json(
            *("network", "local-gateway", "create", "-g", rg, "-n", "site"),
            *("--gateway-ip-address", "198.18.200.1"),
            *("--local-address-prefixes", "192.168.0.0/16"),
        ),
    )
    gw = gw["vnetGateway"]
    assert gw["provisioningState"] == "Succeeded"
    assert (gw["gatewayType"], gw["vpnType"], gw["sku"]["name"]) == ("Vpn", "RouteBased", "VpnGw1")
    (config,) = gw["ipConfigurations"]
    assert config["subnet"]["id"].endswith("/subnets/GatewaySubnet")
    assert config["publicIPAddress"]["id"].lower() == nets.pips["gwpip"]["id"].lower()
    assert config["privateIPAddress"].startswith("10.20.255.")
    assert site["gatewayIpAddress"] == "198.18.200.1"
    assert site["localNetworkAddressSpace"]["addressPrefixes"] == ["192.168.0.0/16"]

    # A template deployment; the shared key travels as a secure parameter.
    az.run(
        *("network", "vpn-connection", "create", "-g", rg, "-n", "c1"),
        *("--vnet-gateway1", "gw", "--local-gateway2", "site", "--shared-key", "Abc123"),
        *("-o", "none"),
    )
    key = ("network", "vpn-connection", "shared-key")
    conn, shown = _together(
        lambda: az.json("network", "vpn-connection", "show", "-g", rg, "-n", "c1"),
        lambda: az.tsv(*key, "show", "-g", rg, "--connection-name", "c1", "--query", "value"),
    )
    assert conn["connectionType"] == "IPsec" and "connectionStatus" in conn
    assert "sharedKey" not in conn  # read through its own route only
    assert conn["virtualNetworkGateway1"]["id"].lower() == gw["id"].lower()
    assert conn["localNetworkGateway2"]["id"].lower() == site["id"].lower()
    assert shown == "Abc123"

    # The gateway is in use by the connection; deleting in order works.
    updated, _ = _together(
        lambda: az.json(*key, "update", "-g", rg, "--connection-name", "c1", "--value", "N3wKey"),
        lambda: az.fails(
            "network", "vnet-gateway", "delete", "-g", rg, "-n", "gw",
            code="VirtualNetworkGatewayCannotBeDeleted",
        ),
    )  # fmt: skip
    assert updated["value"] == "N3wKey"
    az.run("network", "vpn-connection", "delete", "-g", rg, "-n", "c1")
    _together(
        lambda: az.run("network", "vnet-gateway", "delete", "-g", rg, "-n", "gw"),
        lambda: az.run("network", "local-gateway", "delete", "-g", rg, "-n", "site"),
    )
    left = set(az.tsv("resource", "list", "-g", rg, "--query", "[].type").split())
    net = "Microsoft.Network"
    assert left.isdisjoint({f"{net}/connections", f"{net}/localNetworkGateways"})
    assert f"{net}/virtualNetworkGateways" not in left and f"{net}/publicIPAddresses" in left
