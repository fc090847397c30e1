"""The real azure-cli on reach's resources: VNet peerings, public IPs, a public load balancer
with a private link service, a VPN gateway, a local network gateway and their connection.

Peerings: across two resource groups (`--remote-vnet` by full id), across two subscriptions
(the second made with `privatelink subscription create`), `az network vnet peering sync`
after the remote network grows, `update --set`, and an overlapping pair refused with
Azure's `VnetAddressSpacesOverlap`. Gateways: `az network vnet-gateway create` waits for
its long-running operation, which here finishes at once; `az network vpn-connection
create` is an ARM template deployment with the shared key as a secure parameter.

One server per module; every test uses fresh groups. Each `az` run costs a second or two;
the module takes about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

pytestmark = pytest.mark.az

LOCATION = "eastus"
PUBLIC_RANGE = IPv4Network("198.18.0.0/15")


@dataclass
class Net:
    """A VNet made with az: its group, name and (for `--remote-vnet`) its full id."""

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


def _vnet(
    az: Any, sub: str, rg: str, name: str, *prefixes: str, group: bool = True, subnet: str = ""
) -> Net:
    """A group (unless it exists) and a VNet with subnet `default` (the first prefix)."""
    if group:
        az.run("group", "create", "-n", rg, "-l", LOCATION, "--subscription", sub, "-o", "none")
    az.run(
        *("network", "vnet", "create", "-g", rg, "-n", name, "--subscription", sub),
        *("--address-prefixes", *prefixes),
        *("--subnet-name", "default", "--subnet-prefixes", subnet or prefixes[0], "-o", "none"),
    )
    return Net(sub, rg, name)


def _peer(az: Any, local: Net, name: str, remote: Net, *flags: str) -> dict[str, Any]:
    peering: dict[str, Any] = az.json(
        *("network", "vnet", "peering", "create", *local.where, "-n", name),
        *("--remote-vnet", remote.id, *flags),
    )
    return peering


def _peering(az: Any, local: Net, name: str, query: str) -> str:
    """One field of a peering, through `show --query ... -o tsv`."""
    return str(
        az.tsv("network", "vnet", "peering", "show", *local.where, "-n", name, "--query", query)
    )


# --------------------------------------------------------------------------------------
# Peerings
# --------------------------------------------------------------------------------------


def test_peering_across_resource_groups(
    az_exe: str, az: Any, az_server: Any, az_helpers: Any
) -> None:
    """Both directions Connected; flags; list; sync after growth; update --set; delete."""
    sub = az_server.subscription
    a = _vnet(az, sub, az_helpers.unique("rg-pa"), "va", "10.1.0.0/16")
    b = _vnet(az, sub, az_helpers.unique("rg-pb"), "vb", "10.2.0.0/16")

    ab = _peer(az, a, "ab", b, "--allow-vnet-access", "--allow-forwarded-traffic")
    assert ab["peeringState"] == "Initiated"
    assert ab["allowVirtualNetworkAccess"] is True and ab["allowForwardedTraffic"] is True
    assert ab["allowGatewayTransit"] is False
    assert ab["remoteAddressSpace"]["addressPrefixes"] == ["10.2.0.0/16"]
    ba = _peer(az, b, "ba", a, "--allow-gateway-transit")
    assert ba["peeringState"] == "Connected" and ba["allowGatewayTransit"] is True
    listed = az.json("network", "vnet", "peering", "list", *a.where)
    assert [(p["name"], p["peeringState"]) for p in listed] == [("ab", "Connected")]
    assert listed[0]["remoteVirtualNetwork"]["id"].lower() == b.id.lower()

    # b grows: a's side is out of sync until `peering sync` takes the new space.
    az.run(
        *("network", "vnet", "update", "-g", b.rg, "-n", b.name),
        *("--address-prefixes", "10.2.0.0/16", "10.3.0.0/16", "-o", "none"),
    )
    assert _peering(az, a, "ab", "peeringSyncLevel") == "LocalNotInSync"
    synced = az.json("network", "vnet", "peering", "sync", *a.where, "-n", "ab")
    assert synced["peeringSyncLevel"] == "FullyInSync"
    assert synced["remoteAddressSpace"]["addressPrefixes"] == ["10.2.0.0/16", "10.3.0.0/16"]
    # sync keeps the flags it read.
    assert synced["allowForwardedTraffic"] is True

    updated = az.json(
        *("network", "vnet", "peering", "update", *a.where, "-n", "ab"),
        *("--set", "allowVirtualNetworkAccess=false"),
    )
    assert updated["allowVirtualNetworkAccess"] is False
    assert updated["peeringState"] == "Connected"

    # Deleting one side disconnects the other.
    az.run("network", "vnet", "peering", "delete", *a.where, "-n", "ab")
    assert az.json("network", "vnet", "peering", "list", *a.where) == []
    assert _peering(az, b, "ba", "peeringState") == "Disconnected"
    az.fails("network", "vnet", "peering", "show", *a.where, "-n", "ab", code="ResourceNotFound")


def test_peering_across_subscriptions_and_overlap(
    az_exe: str, az: Any, az_server: Any, az_helpers: Any
) -> None:
    """A peering each way between two subscriptions; an overlapping pair is refused."""
    tenant = str(az_server.credentials["tenant_id"])
    other = str(az_helpers.subscription_create(az_server.data_dir, tenant)["subscription_id"])
    assert other in az.tsv("account", "list", "--refresh", "--query", "[].id").split()

    a = _vnet(az, az_server.subscription, az_helpers.unique("rg-sa"), "va", "10.11.0.0/16")
    b = _vnet(az, other, az_helpers.unique("rg-sb"), "vb", "10.12.0.0/16")
    assert _peer(az, a, "to-b", b)["peeringState"] == "Initiated"
    back = _peer(az, b, "to-a", a)
    assert back["peeringState"] == "Connected"
    assert back["remoteVirtualNetwork"]["id"].lower() == a.id.lower()
    assert back["id"].startswith(f"/subscriptions/{other}/")
    assert _peering(az, a, "to-b", "peeringState") == "Connected"

    # A network overlapping a's space cannot be peered with it: az shows Azure's code.
    x = _vnet(az, a.sub, a.rg, "vx", "10.11.128.0/17", group=False)
    failed = az.fails(*_peer_args(a, "to-x", x), code="VnetAddressSpacesOverlap")
    assert failed.returncode == 1
    assert az.tsv("network", "vnet", "peering", "list", *a.where, "--query", "[].name") == "to-b"


def _peer_args(local: Net, name: str, remote: Net) -> tuple[str, ...]:
    return (
        "network",
        "vnet",
        "peering",
        "create",
        *local.where,
        "-n",
        name,
        "--remote-vnet",
        remote.id,
    )


# --------------------------------------------------------------------------------------
# Public IPs, a public load balancer and its private link service
# --------------------------------------------------------------------------------------


def _hub(az: Any, sub: str, rg: str) -> Net:
    """VNet `hub`: default, nat (private link service policies off) and GatewaySubnet /27."""
    hub = _vnet(az, sub, rg, "hub", "10.20.0.0/16", subnet="10.20.1.0/24")
    az.run(
        *("network", "vnet", "subnet", "create", "-g", rg, "--vnet-name", "hub", "-n", "nat"),
        *("--address-prefixes", "10.20.3.0/24"),
        *("--private-link-service-network-policies", "Disabled", "-o", "none"),
    )
    az.run(
        *("network", "vnet", "subnet", "create", "-g", rg, "--vnet-name", "hub"),
        *("-n", "GatewaySubnet", "--address-prefixes", "10.20.255.0/27", "-o", "none"),
    )
    return hub


def _public_ip(az: Any, rg: str, name: str) -> dict[str, Any]:
    created = az.json("network", "public-ip", "create", "-g", rg, "-n", name, "--sku", "Standard")
    pip: dict[str, Any] = created["publicIp"]
    assert pip["sku"]["name"] == "Standard"
    assert pip["publicIPAllocationMethod"] == "Static"
    assert IPv4Address(pip["ipAddress"]) in PUBLIC_RANGE
    return pip


def test_public_load_balancer_with_a_private_link_service(
    az_exe: str, az: Any, az_server: Any, az_helpers: Any
) -> None:
    rg = az_helpers.unique("rg-plb")
    _hub(az, az_server.subscription, rg)
    pip = _public_ip(az, rg, "lbpip")

    # A template deployment under the hood, with a public frontend.
    az.run(
        *("network", "lb", "create", "-g", rg, "-n", "plb", "--sku", "Standard"),
        *("--public-ip-address", "lbpip", "--frontend-ip-name", "fe"),
        *("--backend-pool-name", "be", "-o", "none"),
    )
    rule = az.json(
        *("network", "lb", "rule", "create", "-g", rg, "--lb-name", "plb", "-n", "http"),
        *("--protocol", "Tcp", "--frontend-port", "80", "--backend-port", "8080"),
        *("--frontend-ip-name", "fe", "--backend-pool-name", "be"),
    )
    assert rule["frontendIPConfiguration"]["id"].endswith("/frontendIPConfigurations/fe")
    lb = az.json("network", "lb", "show", "-g", rg, "-n", "plb")
    (fe,) = lb["frontendIPConfigurations"]
    assert fe["publicIPAddress"]["id"].lower() == pip["id"].lower()
    assert "subnet" not in fe and "privateIPAddress" not in fe

    pls = az.json(
        *("network", "private-link-service", "create", "-g", rg, "-n", "pls"),
        *("--vnet-name", "hub", "--subnet", "nat"),
        *("--lb-name", "plb", "--lb-frontend-ip-configs", "fe"),
    )
    assert pls["provisioningState"] == "Succeeded"
    assert pls["ipConfigurations"][0]["privateIPAddress"].startswith("10.20.3.")
    assert pls["loadBalancerFrontendIpConfigurations"][0]["id"].lower() == fe["id"].lower()

    # The address is in use by the frontend: Azure's code, and nothing deleted.
    az.fails(
        "network", "public-ip", "delete", "-g", rg, "-n", "lbpip",
        code="PublicIPAddressCannotBeDeleted",
    )  # fmt: skip
    az.run("network", "private-link-service", "delete", "-g", rg, "-n", "pls")


# --------------------------------------------------------------------------------------
# A VPN gateway, a local network gateway and their connection
# --------------------------------------------------------------------------------------


def test_vpn_gateway_site_connection_and_shared_key(
    az_exe: str, az: Any, az_server: Any, az_helpers: Any
) -> None:
    rg = az_helpers.unique("rg-vpn")
    _hub(az, az_server.subscription, rg)
    pip = _public_ip(az, rg, "gwpip")

    gw = az.json(
        *("network", "vnet-gateway", "create", "-g", rg, "-n", "gw", "--vnet", "hub"),
        *("--public-ip-addresses", "gwpip", "--gateway-type", "Vpn"),
        *("--vpn-type", "RouteBased", "--sku", "VpnGw1"),
    )
    gw = gw.get("vnetGateway", gw)
    assert gw["provisioningState"] == "Succeeded"
    assert (gw["gatewayType"], gw["vpnType"], gw["sku"]["name"]) == ("Vpn", "RouteBased", "VpnGw1")
    (config,) = gw["ipConfigurations"]
    assert config["subnet"]["id"].endswith("/subnets/GatewaySubnet")
    assert config["publicIPAddress"]["id"].lower() == pip["id"].lower()

    site = az.json(
        *("network", "local-gateway", "create", "-g", rg, "-n", "site"),
        *("--gateway-ip-address", "198.18.200.1"),
        *("--local-address-prefixes", "192.168.0.0/16"),
    )
    assert site["gatewayIpAddress"] == "198.18.200.1"
    assert site["localNetworkAddressSpace"]["addressPrefixes"] == ["192.168.0.0/16"]

    # A template deployment; the shared key travels as a secure parameter.
    az.run(
        *("network", "vpn-connection", "create", "-g", rg, "-n", "c1"),
        *("--vnet-gateway1", "gw", "--local-gateway2", "site", "--shared-key", "Abc123"),
        *("-o", "none"),
    )
    conn = az.json("network", "vpn-connection", "show", "-g", rg, "-n", "c1")
    assert conn["connectionType"] == "IPsec" and "connectionStatus" in conn
    assert "sharedKey" not in conn  # read through its own route only
    assert conn["virtualNetworkGateway1"]["id"].lower().endswith("/virtualnetworkgateways/gw")
    assert conn["localNetworkGateway2"]["id"].lower().endswith("/localnetworkgateways/site")

    key = ("network", "vpn-connection", "shared-key")
    assert az.tsv(*key, "show", "-g", rg, "--connection-name", "c1", "--query", "value") == (
        "Abc123"
    )
    updated = az.json(*key, "update", "-g", rg, "--connection-name", "c1", "--value", "N3wKey")
    assert updated["value"] == "N3wKey"

    # The gateway is in use by the connection; deleting in order works.
    az.fails(
        "network", "vnet-gateway", "delete", "-g", rg, "-n", "gw",
        code="VirtualNetworkGatewayCannotBeDeleted",
    )  # fmt: skip
    az.run("network", "vpn-connection", "delete", "-g", rg, "-n", "c1")
    az.run("network", "vnet-gateway", "delete", "-g", rg, "-n", "gw")
    az.run("network", "local-gateway", "delete", "-g", rg, "-n", "site")
    left = az.json(
        *("resource", "list", "-g", rg, "--query", "[].type"),
    )
    assert sorted(left) == [
        "Microsoft.Network/publicIPAddresses",
        "Microsoft.Network/virtualNetworks",
    ]
