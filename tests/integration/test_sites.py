"""On-premises sites end to end: the admin API (`/privatelink/admin/sites`) of a real
server with the default admin's token, public IPs made with azure-mgmt-network after a
site, and `privatelink site ...` run as a subprocess, the way a user types it.

One server for the module, in its own data directory: its public range is fresh, so the
addresses below are known (a site at the range's first host, public IPs after it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.network.models import PublicIPAddress, PublicIPAddressSku

pytestmark = pytest.mark.integration

LOCAL = "127.0.0.1,localhost"
CLI_TIMEOUT_S = 60.0
SITES = "/privatelink/admin/sites"
KEY = "s3cret!Key"
FIRST_HOST = "198.18.0.1"


def body(gateway: str, *space: str, key: str = KEY) -> dict[str, Any]:
    return {
        "addressSpace": list(space or ("192.168.0.0/16",)),
        "gatewayIp": gateway,
        "sharedKey": key,
    }


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m privatelink.cli.main site ARGS --data-dir DIR` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "privatelink.cli.main", "site", *args, "--data-dir", str(data_dir)],
        env=dict(os.environ, NO_PROXY=LOCAL, no_proxy=LOCAL),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def cli_json(data_dir: Path, *args: str, stdin: str | None = None) -> Any:
    proc = cli(data_dir, *args, stdin=stdin)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def own_server(helpers: Any) -> Iterator[Any]:
    """A server of its own (sites and the public range are server-wide)."""
    d = Path(tempfile.mkdtemp(prefix="privatelink-it-sites-"))
    try:
        with helpers.run_server(d / "data") as server:
            yield server
    finally:
        shutil.rmtree(d, ignore_errors=True)


def error_code(reply: httpx.Response) -> str:
    return str(reply.json()["error"]["code"])


def test_create_show_list_delete(own_server: Any) -> None:
    http = own_server.http
    reply = http.put(f"{SITES}/Branch1", json=body(FIRST_HOST, "192.168.0.0/16", "10.50.0.0/16"))
    assert reply.status_code == 201, reply.text
    site = reply.json()
    assert site["name"] == "Branch1"
    assert site["addressSpace"] == ["192.168.0.0/16", "10.50.0.0/16"]
    assert site["gatewayIp"] == FIRST_HOST
    assert "sharedKey" not in site and KEY not in reply.text
    assert http.get(f"{SITES}/branch1").json() == site
    listed = http.get(SITES)
    assert listed.status_code == 200 and site in listed.json()["value"]
    assert KEY not in listed.text

    again = http.put(f"{SITES}/BRANCH1", json=body("198.18.0.77"))
    assert (again.status_code, error_code(again)) == (409, "SiteAlreadyExists")
    taken = http.put(f"{SITES}/other", json=body(FIRST_HOST))
    assert (taken.status_code, error_code(taken)) == (409, "SiteGatewayIpInUse")

    gone = http.delete(f"{SITES}/branch1")
    assert (gone.status_code, gone.content) == (204, b"")
    for reply in (http.get(f"{SITES}/branch1"), http.delete(f"{SITES}/branch1")):
        assert (reply.status_code, error_code(reply)) == (404, "SiteNotFound")
    assert site not in http.get(SITES).json()["value"]


@pytest.mark.parametrize(
    ("name", "payload", "code"),
    [
        ("-x", body("198.18.0.90"), "InvalidSiteName"),
        ("x" * 41, body("198.18.0.90"), "InvalidSiteName"),
        ("s", {"gatewayIp": "198.18.0.90", "sharedKey": KEY}, "InvalidRequestContent"),
        ("s", dict(body("198.18.0.90"), bgp={"asn": 65000}), "InvalidRequestContent"),
        ("s", body("198.18.0.90", "198.19.0.0/16"), "InvalidSiteAddressSpace"),
        ("s", body("198.18.0.90", "10.0.0.0/8", "10.1.0.0/16"), "InvalidSiteAddressSpace"),
        ("s", body("198.18.0.90", "10.0.0.1/8"), "InvalidSiteAddressSpace"),
        ("s", body("192.0.2.1"), "SiteGatewayIpOutsidePublicRange"),
        ("s", body("198.19.255.254"), "SiteGatewayIpOutsidePublicRange"),
        ("s", body("not-an-ip"), "InvalidSiteGatewayIp"),
        ("s", body("198.18.0.90", key="has-hyphen"), "InvalidSharedKey"),
        ("s", body("198.18.0.90", key="x" * 129), "InvalidSharedKey"),
    ],
)
def test_bad_sites_are_400s(own_server: Any, name: str, payload: Any, code: str) -> None:
    reply = own_server.http.put(f"{SITES}/{name}", json=payload)
    assert reply.status_code == 400, reply.text
    assert error_code(reply) == code
    assert own_server.http.get(f"{SITES}/{name}").status_code == 404


def test_invalid_json_is_a_400(own_server: Any) -> None:
    reply = own_server.http.put(
        f"{SITES}/s", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert (reply.status_code, error_code(reply)) == (400, "InvalidRequestContent")


def test_only_with_a_token(own_server: Any) -> None:
    with own_server.anonymous() as http:
        for method in ("GET", "PUT", "DELETE"):
            reply = http.request(method, f"{SITES}/s", json=body("198.18.0.90"))
            assert reply.status_code == 401, method


def test_public_ips_never_get_a_site_address(own_server: Any, helpers: Any) -> None:
    http = own_server.http
    sub, rg = helpers.new_sub(), helpers.unique("rg-sites")
    client = own_server.client(sub)

    def public_ip(name: str) -> str:
        made = client.public_ip_addresses.begin_create_or_update(
            rg,
            name,
            PublicIPAddress(
                location="eastus",
                sku=PublicIPAddressSku(name="Standard", tier="Regional"),
                public_ip_allocation_method="Static",
            ),
        ).result()
        return str(made.ip_address)

    first = public_ip("pip-a")  # the lowest free address of the range
    following = str(IPv4Address(first) + 1)
    assert http.put(f"{SITES}/onprem", json=body(following)).status_code == 201
    try:
        second = public_ip("pip-b")
        assert second != following
        assert IPv4Address(second) > IPv4Address(following)
        # A public IP's address cannot become a site's gateway IP either.
        clash = http.put(f"{SITES}/onprem2", json=body(second))
        assert (clash.status_code, error_code(clash)) == (409, "SiteGatewayIpInUse")
        assert "publicIPAddresses/pip-b" in clash.json()["error"]["message"]
    finally:
        assert http.delete(f"{SITES}/onprem").status_code == 204
    # Freed: the next public IP may have it.
    assert public_ip("pip-c") == following


def test_cli(own_server: Any) -> None:
    data_dir = own_server.data_dir
    made = cli_json(
        data_dir,
        "create",
        "clisite",
        "--address-space",
        "172.20.0.0/16",
        "--address-space",
        "172.21.0.0/16",
        "--gateway-ip",
        "198.18.1.10",
        "--shared-key-stdin",
        stdin=f"{KEY}\n",
    )
    assert made["name"] == "clisite" and made["gatewayIp"] == "198.18.1.10"
    assert made["addressSpace"] == ["172.20.0.0/16", "172.21.0.0/16"]
    assert "sharedKey" not in made
    assert cli_json(data_dir, "show", "CLISITE") == made
    assert made in cli_json(data_dir, "list")

    dup = cli(
        data_dir,
        "create",
        "clisite",
        "--address-space",
        "10.0.0.0/8",
        "--gateway-ip",
        "198.18.1.11",
        "--shared-key",
        KEY,
    )
    assert dup.returncode == 1
    assert dup.stderr.strip().startswith("Error: SiteAlreadyExists: ")
    assert len(dup.stderr.strip().splitlines()) == 1

    bad = cli(
        data_dir,
        "create",
        "k",
        "--address-space",
        "10.0.0.0/8",
        "--gateway-ip",
        "198.18.1.12",
        "--shared-key",
        "a b",
    )
    assert bad.returncode == 1 and "Error: InvalidSharedKey: " in bad.stderr

    assert cli_json(data_dir, "delete", "clisite") == {"name": "clisite", "deleted": True}
    missing = cli(data_dir, "show", "clisite")
    assert missing.returncode == 1 and "Error: SiteNotFound: " in missing.stderr
