"""`privatelink site ...`: on-premises sites, from a shell.

`site create NAME --address-space P [--address-space P2 ...] --gateway-ip IP
--shared-key KEY` (or `--shared-key-stdin`), `site list`, `site show NAME` and
`site delete NAME` call the admin API of the running server (`api/site.py`) as the
default tenant's admin, the way `privatelink tenant ...` does (the same client,
`cli/tenant.AdminClient`: the url, CA and credentials of `<data-dir>/credentials.json`).
They print JSON; a site's shared key is never shown (the API does not return it).

Errors exit 1 with one clear line: no server answering, refused credentials, or the API's
own error (`SiteAlreadyExists`, `SiteGatewayIpInUse`, `InvalidSharedKey`, ...).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from privatelink.cli.az import ServerCredentials
from privatelink.cli.tenant import AdminClient, data_dir_option, resolve_data_dir


def _client(data_dir: Path | None) -> AdminClient:
    """The admin API client of the server in `--data-dir` (tests replace it)."""
    resolved = resolve_data_dir(data_dir)
    return AdminClient(resolved, ServerCredentials.load(resolved))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _path(name: str) -> str:
    return f"/sites/{quote(name, safe='')}"


def read_key(stdin_text: str) -> str:
    """The key from `--shared-key-stdin`: the input without its final line break."""
    if stdin_text.endswith("\r\n"):
        return stdin_text[:-2]
    return stdin_text[:-1] if stdin_text.endswith("\n") else stdin_text


@click.group(name="site")
def site_group() -> None:
    """Create and inspect on-premises sites (as the default tenant's admin)."""


@site_group.command(name="create")
@click.argument("name")
@click.option(
    "--address-space",
    "address_space",
    multiple=True,
    required=True,
    help="An IPv4 prefix of the site's network (repeat for more, at most 16).",
)
@click.option(
    "--gateway-ip",
    required=True,
    help="The site's VPN device address: a free address of the server's public range.",
)
@click.option(
    "--shared-key", default=None, help="The pre-shared key (visible in `ps`: see the next)."
)
@click.option(
    "--shared-key-stdin", is_flag=True, help="Read the pre-shared key from standard input."
)
@data_dir_option
def site_create(
    name: str,
    address_space: tuple[str, ...],
    gateway_ip: str,
    shared_key: str | None,
    shared_key_stdin: bool,
    data_dir: Path | None,
) -> None:
    """Create site NAME: a network behind a VPN device, configured as one configures an
    on-premises device. The data plane peers it with the VPN gateway of every connection
    whose local network gateway names its gateway IP.
    """
    if (shared_key is None) == (not shared_key_stdin):
        raise click.UsageError("give exactly one of --shared-key and --shared-key-stdin")
    key = read_key(sys.stdin.read()) if shared_key_stdin else shared_key
    body = {"addressSpace": list(address_space), "gatewayIp": gateway_ip, "sharedKey": key}
    with _client(data_dir) as client:
        _echo_json(client.call("PUT", _path(name), body))


@site_group.command(name="list")
@data_dir_option
def site_list(data_dir: Path | None) -> None:
    """List the sites, oldest first (JSON; no shared keys)."""
    with _client(data_dir) as client:
        _echo_json(client.call("GET", "/sites").get("value", []))


@site_group.command(name="show")
@click.argument("name")
@data_dir_option
def site_show(name: str, data_dir: Path | None) -> None:
    """Show site NAME (JSON; no shared key)."""
    with _client(data_dir) as client:
        _echo_json(client.call("GET", _path(name)))


@site_group.command(name="delete")
@click.argument("name")
@data_dir_option
def site_delete(name: str, data_dir: Path | None) -> None:
    """Delete site NAME (its gateway IP becomes free)."""
    with _client(data_dir) as client:
        client.call("DELETE", _path(name))
    _echo_json({"name": name, "deleted": True})
