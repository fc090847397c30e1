"""The real azure-cli through `privatelink az`, against a real `privatelink serve`.

The provider builds, with az only: a resource group, a VNet with frontend/backend/nat
subnets (network policies disabled on nat), a Standard load balancer (`az network lb
create` is an ARM template deployment), a probe, a rule and a backend NIC. A consumer
in a second subscription creates private endpoints by alias with `--manual-request`;
the provider lists, approves, rejects, updates and deletes the connections. Outputs are
checked through `--query` with `-o tsv`, `-o json` and `-o table`.

Both sides are the server's one client: it made the second subscription with
`privatelink subscription create` in its own tenant and is Owner of both, so RBAC lets
it do everything here (and it sees every service, whatever the visibility).
test_az_rbac.py puts the consumer in another tenant.

One server per module; every test uses fresh names. Each `az` run costs about a
second and a half, so the module takes about a minute and a half.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.az

LOCATION = "eastus"
NETWORK = "Microsoft.Network"


@dataclass
class Provider:
    """The provider side, built with az in the server's default subscription."""

    sub: str
    rg: str
    vnet: str
    lb: str
    nic: str

    def pls_id(self, name: str) -> str:
        group = f"/subscriptions/{self.sub}/resourceGroups/{self.rg}"
        return f"{group}/providers/{NETWORK}/privateLinkServices/{name}"


@dataclass
class Consumer:
    """The consumer side: a second subscription with a VNet and subnet `pe`."""

    sub: str
    rg: str
    vnet: str


# --------------------------------------------------------------------------------------
# Fixtures: the two sides, built (and checked) with az
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider(az_exe: str, az: Any, az_server: Any, az_helpers: Any) -> Provider:
    """Group, VNet + subnets, Standard LB (deployment) with probe and rule, backend NIC."""
    unique = az_helpers.unique
    p = Provider(az_server.subscription, unique("rg-prov"), "vnet-prov", "lb-prov", "nic-be")
    group = az.json("group", "create", "-n", p.rg, "-l", LOCATION)
    assert group["name"] == p.rg
    assert group["properties"]["provisioningState"] == "Succeeded"

    az.run(
        *("network", "vnet", "create", "-g", p.rg, "-n", p.vnet),
        *("--address-prefixes", "10.0.0.0/16"),
        *("--subnet-name", "frontend", "--subnet-prefixes", "10.0.1.0/24"),
        *("-o", "none"),
    )
    for name, prefix in (("backend", "10.0.2.0/24"), ("nat", "10.0.3.0/24")):
        az.run(
            *("network", "vnet", "subnet", "create", "-g", p.rg, "--vnet-name", p.vnet),
            *("-n", name, "--address-prefixes", prefix, "-o", "none"),
        )
    policies = az.tsv(
        *("network", "vnet", "subnet", "update", "-g", p.rg, "--vnet-name", p.vnet, "-n", "nat"),
        *("--disable-private-link-service-network-policies", "true"),
        *("--query", "privateLinkServiceNetworkPolicies"),
    )
    assert policies == "Disabled"

    # A template deployment (Microsoft.Resources/deployments) under the hood.
    az.run(
        *("network", "lb", "create", "-g", p.rg, "-n", p.lb, "--sku", "Standard"),
        *("--vnet-name", p.vnet, "--subnet", "frontend"),
        *("--frontend-ip-name", "fe", "--backend-pool-name", "be", "-o", "none"),
    )
    az.run(
        *("network", "lb", "probe", "create", "-g", p.rg, "--lb-name", p.lb, "-n", "tcp-8080"),
        *("--protocol", "Tcp", "--port", "8080", "--interval", "5", "--probe-threshold", "2"),
        *("-o", "none"),
    )
    az.run(
        *("network", "lb", "rule", "create", "-g", p.rg, "--lb-name", p.lb, "-n", "http"),
        *("--protocol", "Tcp", "--frontend-port", "80", "--backend-port", "8080"),
        *("--frontend-ip-name", "fe", "--backend-pool-name", "be", "--probe-name", "tcp-8080"),
        *("-o", "none"),
    )
    az.run(
        *("network", "nic", "create", "-g", p.rg, "-n", p.nic),
        *("--vnet-name", p.vnet, "--subnet", "backend"),
        *("--lb-name", p.lb, "--lb-address-pools", "be", "-o", "none"),
    )
    return p


@pytest.fixture(scope="module")
def consumer(az_exe: str, az: Any, az_server: Any, az_helpers: Any) -> Consumer:
    """A second subscription, made known to az, with a VNet for private endpoints."""
    # az refuses `--subscription` ids that are not in its account list. The explicit way
    # to make a subscription is the admin API (a read of an unknown id never creates one):
    # `privatelink subscription create`, in the default tenant, then refresh the list.
    tenant = str(az_server.credentials["tenant_id"])
    made = az_helpers.subscription_create(az_server.data_dir, tenant, "consumer")
    sub = str(made["subscription_id"])
    assert made["tenant_id"] == tenant
    ids = az.tsv("account", "list", "--refresh", "--query", "[].id").split()
    assert sub in ids and az_server.subscription in ids
    # The default subscription did not change.
    assert az.tsv("account", "show", "--query", "id") == az_server.subscription

    c = Consumer(sub, az_helpers.unique("rg-cons"), "vnet-cons")
    az.run("group", "create", "-n", c.rg, "-l", LOCATION, "--subscription", sub, "-o", "none")
    az.run(
        *("network", "vnet", "create", "-g", c.rg, "-n", c.vnet, "--subscription", sub),
        *("--address-prefixes", "10.0.0.0/16"),
        *("--subnet-name", "pe", "--subnet-prefixes", "10.0.1.0/24", "-o", "none"),
    )
    return c


def _new_frontend(az: Any, p: Provider, name: str) -> None:
    """Another frontend on the provider's load balancer (a frontend serves one service)."""
    az.run(
        *("network", "lb", "frontend-ip", "create", "-g", p.rg, "--lb-name", p.lb, "-n", name),
        *("--vnet-name", p.vnet, "--subnet", "frontend", "-o", "none", "--only-show-errors"),
    )


def _create_pls(az: Any, p: Provider, name: str, frontend: str, *extra: str) -> dict[str, Any]:
    pls: dict[str, Any] = az.json(
        *("network", "private-link-service", "create", "-g", p.rg, "-n", name),
        *("--vnet-name", p.vnet, "--subnet", "nat"),
        *("--lb-name", p.lb, "--lb-frontend-ip-configs", frontend),
        *extra,
    )
    return pls


def _create_pe(
    az: Any, c: Consumer, name: str, target: str, *extra: str, manual: bool = True
) -> dict[str, Any]:
    pe: dict[str, Any] = az.json(
        *("network", "private-endpoint", "create", "-g", c.rg, "-n", name),
        *("--vnet-name", c.vnet, "--subnet", "pe", "--subscription", c.sub),
        *("--private-connection-resource-id", target, "--connection-name", f"{name}-conn"),
        *(("--manual-request", "true") if manual else ()),
        *extra,
    )
    return pe


def _pe_status(az: Any, c: Consumer, name: str) -> str:
    return str(
        az.tsv(
            *("network", "private-endpoint", "show", "-g", c.rg, "-n", name),
            *("--subscription", c.sub),
            *(
                "--query",
                "manualPrivateLinkServiceConnections[0].privateLinkServiceConnectionState.status",
            ),
        )
    )


# --------------------------------------------------------------------------------------
# privatelink az itself
# --------------------------------------------------------------------------------------


def test_setup_once_then_reused(az_exe: str, az: Any, az_server: Any) -> None:
    """First run prepares <data-dir>/az (cloud, login, subscription); later runs reuse it."""
    account = az.json("account", "show")
    assert account["id"] == az_server.subscription
    assert account["environmentName"] == "privatelink"
    assert account["tenantId"] == az_server.credentials["tenant_id"]
    assert account["user"] == {
        "name": az_server.credentials["client_id"],
        "type": "servicePrincipal",
    }
    cfg = az_server.data_dir / "az"
    stamp = cfg / "privatelink-setup.json"
    assert json.loads(stamp.read_text())["url"] == az_server.url
    before = stamp.stat().st_mtime_ns

    # Without `--`, and az's own options pass through untouched.
    cloud = az.run(
        "cloud", "show", "--query", "endpoints.resourceManager", "-o", "tsv", separator=False
    )
    assert cloud.text.rstrip("/") == az_server.url
    assert az.tsv("config", "get", "core.instance_discovery", "--query", "value") == "false"
    assert az.run("group", "list", "-o", "table", separator=False).returncode == 0
    assert stamp.stat().st_mtime_ns == before, "setup ran again"
    # The user's own az config (~/.azure) is untouched: everything is in <data-dir>/az.
    assert (cfg / "azureProfile.json").exists()


def test_print_env_lines_and_new_port(
    az_exe: str, server_factory: Any, az_helpers: Any, tmp_path: Path
) -> None:
    """--print-env lines set up a plain `az`; a restart on a new port re-does the setup."""
    data_dir = tmp_path / "data"
    with server_factory(data_dir) as first:
        az = az_helpers.AzRunner(data_dir)
        printed = az.run("--print-env", separator=False).stdout
        assert f"export AZURE_CONFIG_DIR={data_dir / 'az'}" in printed
        assert "az login --service-principal" in printed
        script = f"set -e\n{printed}\naz account show --query id -o tsv\n"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
        shell = subprocess.run(
            ["bash", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert shell.returncode == 0, shell.stderr
        assert shell.stdout.split()[-1] == first.subscription
        # The lines stay usable when the directory is already set up (register || update).
        again = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stderr

        assert az.tsv("group", "list", "--query", "length(@)") == "0"
        old_url = first.url
    with server_factory(data_dir) as second:
        assert second.url != old_url
        account = az.json("account", "show")
        assert account["id"] == second.subscription == first.subscription
        stamp = json.loads((data_dir / "az" / "privatelink-setup.json").read_text())
        assert stamp["url"] == second.url
    # Server gone and setup needed: which step failed, az's message, and a hint.
    (data_dir / "az" / "privatelink-setup.json").unlink()
    failed = az.run("group", "list", check=False)
    assert failed.returncode == 1
    assert "setting up az: `az cloud register" in failed.stderr
    assert f"Is `privatelink serve` running at {second.url}?" in failed.stderr


def test_without_az_says_how_to_install(az_server: Any, az_helpers: Any, tmp_path: Path) -> None:
    """No `az` on PATH: a non-zero exit and how to install it."""
    empty = tmp_path / "bin"
    empty.mkdir()
    runner = az_helpers.AzRunner(az_server.data_dir, env=dict(os.environ, PATH=str(empty)))
    result = runner.run("group", "list", check=False)
    assert result.returncode == 1
    assert "pipx install azure-cli" in result.stderr
    assert "make az" in result.stderr


def test_without_server_data_says_start_it(az_helpers: Any, tmp_path: Path) -> None:
    result = az_helpers.AzRunner(tmp_path / "nothing").run("group", "list", check=False)
    assert result.returncode == 1
    assert "credentials.json not found" in result.stderr
    assert "privatelink serve" in result.stderr


def test_print_env_takes_no_az_arguments(az_server: Any, az_helpers: Any) -> None:
    cmd = [sys.executable, "-m", "privatelink.cli.main", "az", "--print-env"]
    cmd += ["--data-dir", str(az_server.data_dir), "group", "list"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "--print-env takes no az arguments" in proc.stderr


# --------------------------------------------------------------------------------------
# The workflow
# --------------------------------------------------------------------------------------


def test_provider_network(az_exe: str, az: Any, provider: Provider) -> None:
    """What the provider fixture built, read back with --query, tsv and table output."""
    p = provider
    subnets = az.json(
        *("network", "vnet", "subnet", "list", "-g", p.rg, "--vnet-name", p.vnet),
        *("--query", "[].{name:name, prefix:addressPrefix, pls:privateLinkServiceNetworkPolicies}"),
    )
    by_name = {s["name"]: s for s in subnets}
    assert {n: s["prefix"] for n, s in by_name.items()} == {
        "frontend": "10.0.1.0/24",
        "backend": "10.0.2.0/24",
        "nat": "10.0.3.0/24",
    }
    assert by_name["nat"]["pls"] == "Disabled"

    lb = az.json("network", "lb", "show", "-g", p.rg, "-n", p.lb)
    assert lb["sku"]["name"] == "Standard"
    assert lb["frontendIPConfigurations"][0]["privateIPAddress"].startswith("10.0.1.")
    assert [x["name"] for x in lb["probes"]] == ["tcp-8080"]
    rule = lb["loadBalancingRules"][0]
    assert (rule["name"], rule["frontendPort"], rule["backendPort"]) == ("http", 80, 8080)
    assert rule["probe"]["id"].endswith("/probes/tcp-8080")

    table = az.run("network", "lb", "rule", "list", "-g", p.rg, "--lb-name", p.lb, "-o", "table")
    header, _, row = table.stdout.splitlines()[:3]
    assert "FrontendPort" in header and "BackendPort" in header
    columns = dict(zip(header.split(), row.split(), strict=True))
    assert columns["Name"] == "http", table.stdout
    assert (columns["FrontendPort"], columns["BackendPort"]) == ("80", "8080")
    assert columns["Protocol"] == "Tcp"

    ip, pool = az.tsv(
        *("network", "nic", "show", "-g", p.rg, "-n", p.nic),
        *(
            "--query",
            "ipConfigurations[0].[privateIPAddress, loadBalancerBackendAddressPools[0].id]",
        ),
    ).split()
    assert ip.startswith("10.0.2.")
    assert pool.lower().endswith(f"/loadbalancers/{p.lb}/backendaddresspools/be".lower())


def test_workflow(
    az_exe: str, az: Any, provider: Provider, consumer: Consumer, az_helpers: Any
) -> None:
    """README's "The workflow with az", in its order: create, share, request, manage, delete."""
    p, c = provider, consumer
    name = az_helpers.unique("pls")
    pls = _create_pls(
        az,
        p,
        name,
        "fe",
        *("--visibility", p.sub, c.sub, "--auto-approval", p.sub),
        *("--fqdns", "app.contoso.com"),
    )
    assert pls["provisioningState"] == "Succeeded"
    assert pls["alias"].startswith(f"{name}.") and pls["alias"].endswith(
        ".azure.privatelinkservice"
    )
    assert sorted(pls["visibility"]["subscriptions"]) == sorted([p.sub, c.sub])
    assert pls["autoApproval"]["subscriptions"] == [p.sub]
    assert pls["fqdns"] == ["app.contoso.com"]
    nat = pls["ipConfigurations"][0]
    assert nat["primary"] is True and nat["privateIPAddress"].startswith("10.0.3.")

    table = az.run("network", "private-link-service", "list", "-g", p.rg, "-o", "table").stdout
    assert "Alias" in table.splitlines()[0]
    assert any(pls["alias"] in line and name in line for line in table.splitlines()[2:])
    show = ("network", "private-link-service", "show", "-g", p.rg, "-n", name)
    alias = az.tsv(*show, "--query", "alias")
    assert alias == pls["alias"]
    pls_id = az.tsv(*show, "--query", "id")
    assert pls_id == p.pls_id(name)

    # The consumer asks by alias, manually (auto-approval lists only the provider).
    pe_name = az_helpers.unique("pe")
    pe = _create_pe(az, c, pe_name, alias, "--request-message", "from the consumer")
    conn = pe["manualPrivateLinkServiceConnections"][0]
    assert conn["privateLinkServiceConnectionState"]["status"] == "Pending"
    assert conn["requestMessage"] == "from the consumer"
    assert pe["privateLinkServiceConnections"] == []
    assert pe["customDnsConfigs"][0]["fqdn"] == "app.contoso.com"

    # The provider lists the requests ...
    listed = az.json("network", "private-endpoint-connection", "list", "--id", pls_id)
    assert len(listed) == 1
    pec = listed[0]
    assert pec["properties"]["privateEndpoint"]["id"].lower() == pe["id"].lower()
    assert pec["properties"]["privateLinkServiceConnectionState"]["status"] == "Pending"
    table = az.run(
        "network", "private-endpoint-connection", "list", "--id", pls_id, "-o", "table"
    ).stdout
    assert pec["name"] in table
    conn_id = az.tsv(
        "network", "private-endpoint-connection", "list", "--id", pls_id, "--query", "[0].id"
    )
    assert conn_id == pec["id"]

    # ... approves (az sleeps 10 s before reading the result back) ...
    approved = az.json(
        *("network", "private-endpoint-connection", "approve", "--id", conn_id),
        *("--description", "welcome", "--query", "properties.privateLinkServiceConnectionState"),
    )
    assert approved["status"] == "Approved" and approved["description"] == "welcome"
    assert _pe_status(az, c, pe_name) == "Approved"

    # ... and rejects.
    status = az.tsv(
        *("network", "private-endpoint-connection", "reject", "--id", conn_id),
        *("--description", "go away"),
        *("--query", "properties.privateLinkServiceConnectionState.status"),
    )
    assert status == "Rejected"
    assert _pe_status(az, c, pe_name) == "Rejected"
    shown = az.tsv(
        *("network", "private-endpoint-connection", "show", "--id", conn_id),
        *("--query", "properties.privateLinkServiceConnectionState.description"),
    )
    assert shown == "go away"

    # Errors: the ARM code in the message, a non-zero exit, nothing changed.
    conn_name = az.tsv(*show, "--query", "privateEndpointConnections[0].name")
    assert conn_name == pec["name"]
    az.fails(
        *("network", "private-link-service", "connection", "update", "-g", p.rg),
        *("--service-name", name, "-n", conn_name, "--connection-status", "Approved"),
        code="PrivateEndpointConnectionStatusTransitionNotAllowed",
    )
    az.fails(
        *("network", "private-link-service", "delete", "-g", p.rg, "-n", name),
        code="PrivateLinkServiceHasPrivateEndpointConnections",
    )
    assert _pe_status(az, c, pe_name) == "Rejected"

    updated = az.json(
        *("network", "private-link-service", "update", "-g", p.rg, "-n", name),
        *("--visibility", p.sub, c.sub, "--auto-approval", p.sub, c.sub),
        *("--fqdns", "a.contoso.com", "b.contoso.com"),
        *("--query", "{v: visibility.subscriptions, a: autoApproval.subscriptions, f: fqdns}"),
    )
    assert sorted(updated["v"]) == sorted([p.sub, c.sub])
    assert sorted(updated["a"]) == sorted([p.sub, c.sub])
    assert updated["f"] == ["a.contoso.com", "b.contoso.com"]

    # Clean up: the connection, the endpoint, then the service.
    az.run("network", "private-endpoint-connection", "delete", "--id", conn_id, "--yes")
    assert az.json("network", "private-endpoint-connection", "list", "--id", pls_id) == []
    az.run(
        *("network", "private-endpoint", "delete", "-g", c.rg, "-n", pe_name),
        *("--subscription", c.sub),
    )
    az.run("network", "private-link-service", "delete", "-g", p.rg, "-n", name)
    gone = az.fails(*show, code="ResourceNotFound")
    assert gone.returncode == 3  # az's exit code for "not found"
    names = az.tsv("network", "private-link-service", "list", "-g", p.rg, "--query", "[].name")
    assert name not in names.split()


def test_service_connection_update_and_delete(
    az_exe: str, az: Any, provider: Provider, consumer: Consumer, az_helpers: Any
) -> None:
    """`az network private-link-service connection update/delete` (by connection name)."""
    p, c = provider, consumer
    name = az_helpers.unique("pls")
    _new_frontend(az, p, "fe-conn")
    pls = _create_pls(az, p, name, "fe-conn", "--visibility", c.sub)
    pe_name = az_helpers.unique("pe")
    _create_pe(az, c, pe_name, pls["alias"])
    assert _pe_status(az, c, pe_name) == "Pending"

    conn_name = az.tsv(
        *("network", "private-link-service", "show", "-g", p.rg, "-n", name),
        *("--query", "privateEndpointConnections[0].name"),
    )
    assert conn_name.startswith(f"{pe_name}.")
    state = az.json(
        *("network", "private-link-service", "connection", "update", "-g", p.rg),
        *("--service-name", name, "-n", conn_name),
        *("--connection-status", "Approved", "--description", "approved by name"),
        *("--query", "privateLinkServiceConnectionState"),
    )
    assert state["status"] == "Approved" and state["description"] == "approved by name"
    assert _pe_status(az, c, pe_name) == "Approved"

    az.run(
        *("network", "private-link-service", "connection", "delete", "-g", p.rg),
        *("--service-name", name, "-n", conn_name),
    )
    assert _pe_status(az, c, pe_name) == "Disconnected"
    left = az.tsv(
        *("network", "private-link-service", "show", "-g", p.rg, "-n", name),
        *("--query", "length(privateEndpointConnections)"),
    )
    assert left == "0"
    az.run(
        "network", "private-endpoint", "delete", "-g", c.rg, "-n", pe_name, "--subscription", c.sub
    )
    az.run("network", "private-link-service", "delete", "-g", p.rg, "-n", name)


def test_auto_approval_without_manual_request(
    az_exe: str, az: Any, provider: Provider, consumer: Consumer, az_helpers: Any
) -> None:
    """An endpoint from an auto-approved subscription is Approved at once."""
    p, c = provider, consumer
    name = az_helpers.unique("pls")
    _new_frontend(az, p, "fe-auto")
    pls = _create_pls(az, p, name, "fe-auto", "--visibility", c.sub, "--auto-approval", c.sub)
    pe_name = az_helpers.unique("pe")
    pe = _create_pe(az, c, pe_name, pls["id"], manual=False)
    assert pe["manualPrivateLinkServiceConnections"] == []
    conn = pe["privateLinkServiceConnections"][0]
    assert conn["privateLinkServiceConnectionState"]["status"] == "Approved"
    az.run(
        "network", "private-endpoint", "delete", "-g", c.rg, "-n", pe_name, "--subscription", c.sub
    )
    az.run("network", "private-link-service", "delete", "-g", p.rg, "-n", name)


def test_errors_carry_the_arm_code(
    az_exe: str, az: Any, provider: Provider, consumer: Consumer, az_helpers: Any
) -> None:
    p, c = provider, consumer
    _new_frontend(az, p, "fe-err")
    # NAT IPs in a subnet whose private link service network policies are enabled.
    result = az.fails(
        *("network", "private-link-service", "create", "-g", p.rg, "-n", az_helpers.unique("pls")),
        *("--vnet-name", p.vnet, "--subnet", "backend"),
        *("--lb-name", p.lb, "--lb-frontend-ip-configs", "fe-err"),
        code="PrivateLinkServiceNetworkPoliciesEnabledOnSubnet",
    )
    assert result.returncode == 1
    # An alias that names no service. (A service outside the consumer's visibility looks
    # the same, but only to a principal without RBAC read on it: here one client is
    # Owner on both sides and sees everything; test_az_rbac.py shows it with a consumer
    # in another tenant.)
    missing = f"nope.{uuid.uuid4()}.{LOCATION}.azure.privatelinkservice"
    az.fails(
        *("network", "private-endpoint", "create", "-g", c.rg, "-n", az_helpers.unique("pe")),
        *("--vnet-name", c.vnet, "--subnet", "pe", "--subscription", c.sub),
        *("--private-connection-resource-id", missing, "--connection-name", "x"),
        *("--manual-request", "true"),
        code="PrivateLinkServiceNotFound",
    )


def test_private_dns_zone_link_records_and_zone_group(
    az_exe: str, az: Any, provider: Provider, consumer: Consumer, az_helpers: Any
) -> None:
    """`az network private-dns ...` and `az network private-endpoint dns-zone-group ...`:
    the endpoint's FQDN appears in the zone once its connection is approved."""
    p, c = provider, consumer
    zone = "contoso.example"
    in_c = ("-g", c.rg, "--subscription", c.sub)
    created = az.json("network", "private-dns", "zone", "create", *in_c, "-n", zone)
    assert created["name"] == zone and created["location"] == "global"
    link = az.json(
        *("network", "private-dns", "link", "vnet", "create", *in_c, "-z", zone),
        *("-n", "to-cons", "-v", c.vnet, "-e", "false"),
    )
    assert link["virtualNetworkLinkState"] == "Completed"
    az.fails(
        *("network", "private-dns", "link", "vnet", "create", *in_c, "-z", zone),
        *("-n", "again", "-v", c.vnet, "-e", "false"),
        code="VirtualNetworkLinkAlreadyExists",
    )
    www = az.json(
        *("network", "private-dns", "record-set", "a", "add-record", *in_c, "-z", zone),
        *("-n", "www", "-a", "10.0.1.50"),
    )
    assert [r["ipv4Address"] for r in www["aRecords"]] == ["10.0.1.50"]
    az.fails(
        *("network", "private-dns", "zone", "create", *in_c, "-n", "nodots"),
        code="InvalidPrivateDnsZoneName",
    )

    # An auto-approved endpoint with a zone group: its FQDN is in the zone at once.
    name = az_helpers.unique("pls")
    _new_frontend(az, p, "fe-dns")
    pls = _create_pls(
        az, p, name, "fe-dns", "--visibility", c.sub, "--auto-approval", c.sub,
        "--fqdns", f"app.{zone}",
    )  # fmt: skip
    pe_name = az_helpers.unique("pe")
    pe = _create_pe(az, c, pe_name, pls["id"], manual=False)
    pe_ip = pe["customDnsConfigs"][0]["ipAddresses"][0]
    group = az.json(
        *("network", "private-endpoint", "dns-zone-group", "create", *in_c),
        *("--endpoint-name", pe_name, "-n", "default"),
        *("--private-dns-zone", zone, "--zone-name", "contoso"),
    )
    configs = group["privateDnsZoneConfigs"]
    assert configs[0]["recordSets"][0]["fqdn"] == f"app.{zone}"
    assert configs[0]["recordSets"][0]["ipAddresses"] == [pe_ip]
    names = az.tsv(
        *("network", "private-dns", "record-set", "a", "list", *in_c, "-z", zone),
        *("--query", "[].name"),
    ).split()
    assert names == ["app", "www"]
    shown = az.json(
        "network", "private-dns", "record-set", "a", "show", *in_c, "-z", zone, "-n", "app"
    )
    assert shown["fqdn"] == f"app.{zone}." and shown["ttl"] == 10
    az.fails(
        *("network", "private-dns", "zone", "delete", *in_c, "-n", zone, "--yes"),
        code="PrivateDnsZoneHasVirtualNetworkLinks",
    )

    # Clean up: the endpoint takes its zone group and the record with it.
    az.run("network", "private-endpoint", "delete", *in_c, "-n", pe_name)
    names = az.tsv(
        *("network", "private-dns", "record-set", "a", "list", *in_c, "-z", zone),
        *("--query", "[].name"),
    ).split()
    assert names == ["www"]
    az.run(
        "network",
        "private-dns",
        "link",
        "vnet",
        "delete",
        *in_c,
        "-z",
        zone,
        "-n",
        "to-cons",
        "--yes",
    )
    az.run("network", "private-dns", "zone", "delete", *in_c, "-n", zone, "--yes")
    az.run("network", "private-link-service", "delete", "-g", p.rg, "-n", name)
