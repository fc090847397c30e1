"""`privatelink user ...`: a tenant's users (people who sign in), from a shell.

`user create --tenant T --name alice [--password-stdin] [--display-name ...]`, `user list
--tenant T`, `user show --tenant T USER` and `user delete --tenant T USER` call the admin
API of the running server (`identity/user_admin.py`) the way `privatelink tenant ...`
does (the same client, `cli/tenant.AdminClient`). `--tenant` is a tenant name or id and
defaults to `default`, the server's own tenant; USER is an object id, a sign-in name
(`alice@contoso`) or the bare name (`alice`).

By default the commands act as the default tenant's admin (`<data-dir>/credentials.json`);
`--identity NAME|FILE` acts as another principal, as `privatelink az --identity` does:
a tenant's own admin (`tenants/NAME.json`, written by `privatelink tenant create`) may
manage its own tenant's users.

They print JSON: a user's `object_id`, `tenant_id`, `user_principal_name` (`<name>@<tenant
name>`), `display_name` and `created`; `create` adds the `password` (generated unless
`--password-stdin` gives one), the only time it is shown. Errors exit 1 with one clear
line: no server answering, refused credentials, or the API's own error
(`UserAlreadyExists`, `InvalidUserName`, `UserNotFound`, `TenantNotFound`, ...).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from privatelink.cli.az import resolve_identity
from privatelink.cli.site import read_key
from privatelink.cli.tenant import AdminClient, data_dir_option, resolve_data_dir

#: The tenant `--tenant` names when not given: the server's own.
DEFAULT_TENANT = "default"


def _client(data_dir: Path | None, identity: str | None) -> AdminClient:
    """The admin API client of the server in `--data-dir`, as `--identity`."""
    resolved = resolve_data_dir(data_dir)
    creds, _config_dir = resolve_identity(resolved, identity)
    return AdminClient(resolved, creds)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _users(tenant: str, user: str | None = None) -> str:
    path = f"/tenants/{quote(tenant, safe='')}/users"
    return path if user is None else f"{path}/{quote(user, safe='')}"


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--tenant`, `--identity` and `--data-dir`, which every user command takes."""
    func = data_dir_option(func)
    func = click.option(
        "--identity",
        default=None,
        metavar="NAME|FILE",
        help="Act as this principal: a tenant's admin (a tenant made with `privatelink "
        "tenant create NAME`) or a credentials file. Default: the server's admin.",
    )(func)
    return click.option(
        "--tenant",
        default=DEFAULT_TENANT,
        show_default=True,
        metavar="NAME_OR_ID",
        help="The tenant (name or id).",
    )(func)


@click.group(name="user")
def user_group() -> None:
    """Create and inspect a tenant's users (people who sign in), on the running server."""


@user_group.command(name="create")
@click.option(
    "--name", "name", required=True, help="The user name: alice signs in as alice@TENANT."
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (else one is made).",
)
@click.option("--display-name", default=None, help="The display name (default: the name).")
@_common
def user_create(
    name: str,
    password_stdin: bool,
    display_name: str | None,
    tenant: str,
    identity: str | None,
    data_dir: Path | None,
) -> None:
    """Create a user in a tenant; prints it with its password (JSON)."""
    body: dict[str, Any] = {"name": name}
    if password_stdin:
        password = read_key(sys.stdin.read())
        if not password:
            raise click.UsageError("--password-stdin: standard input holds no password")
        body["password"] = password
    if display_name is not None:
        body["displayName"] = display_name
    with _client(data_dir, identity) as client:
        _echo_json(client.call("POST", _users(tenant), body))


@user_group.command(name="list")
@_common
def user_list(tenant: str, identity: str | None, data_dir: Path | None) -> None:
    """List a tenant's users, oldest first (JSON; no passwords)."""
    with _client(data_dir, identity) as client:
        _echo_json(client.call("GET", _users(tenant)).get("value", []))


@user_group.command(name="show")
@click.argument("user")
@_common
def user_show(user: str, tenant: str, identity: str | None, data_dir: Path | None) -> None:
    """Show USER (object id, sign-in name or name; JSON, no password)."""
    with _client(data_dir, identity) as client:
        _echo_json(client.call("GET", _users(tenant, user)))


@user_group.command(name="delete")
@click.argument("user")
@_common
def user_delete(user: str, tenant: str, identity: str | None, data_dir: Path | None) -> None:
    """Delete USER (object id, sign-in name or name)."""
    with _client(data_dir, identity) as client:
        client.call("DELETE", _users(tenant, user))
    _echo_json({"user": user, "tenant": tenant, "deleted": True})
