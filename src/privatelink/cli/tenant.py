"""`privatelink tenant ...` and `privatelink subscription create`: the admin API, from a shell.

The commands talk to the running server at the url of `<data-dir>/credentials.json`, as
the default tenant's admin (that file's client): a client-credentials token from the
server's token endpoint, then the admin endpoints under `/privatelink/admin`
(`identity/admin.py`). They print JSON. `tenant create` also writes the new tenant's
credentials to `<data-dir>/tenants/<name>.json` (mode 600, directory 700): the fields of
`credentials.json` plus `object_id` and `name`, which `privatelink az --identity NAME`
reads.

Errors exit 1 with one clear line: no server answering, refused credentials, or the
admin API's own error (`TenantAlreadyExists`, `TenantNotFound`, ...).
"""

from __future__ import annotations

import json
import shlex
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from privatelink.cli.az import ServerCredentials
from privatelink.identity.credentials import write_secret_json

TENANTS_DIR = "tenants"
ADMIN_PREFIX = "/privatelink/admin"
#: The ARM resource the admin token is asked for.
ADMIN_SCOPE = "https://management.azure.com/.default"
TIMEOUT_S = 30.0
DATA_DIR_HELP = "The server's data directory (default $PRIVATELINK_DATA_DIR, else ~/.privatelink)."
#: The fields of a tenant's credentials file, in order.
TENANT_FILE_FIELDS = (
    "url",
    "ca_file",
    "tenant_id",
    "client_id",
    "client_secret",
    "subscription_id",
    "object_id",
    "name",
)


def data_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """The `--data-dir` option every command takes."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=DATA_DIR_HELP,
    )(func)


def resolve_data_dir(value: Path | None) -> Path:
    """`--data-dir`, else $PRIVATELINK_DATA_DIR, else ~/.privatelink (absolute)."""
    from privatelink.server import default_data_dir

    return (value or default_data_dir()).resolve()


def tenant_file(data_dir: Path, name: str) -> Path:
    """Where a tenant's credentials are kept."""
    return data_dir / TENANTS_DIR / f"{name}.json"


def tenant_file_payload(reply: dict[str, Any], creds: ServerCredentials) -> dict[str, str]:
    """A tenant's credentials file from the admin API's reply (url and CA as the client's)."""
    payload = {"url": creds.url, "ca_file": creds.ca_file}
    for field in TENANT_FILE_FIELDS[2:]:
        value = reply.get(field)
        if not isinstance(value, str) or not value:
            raise click.ClickException(f"the server's reply lacks {field!r}: {reply}")
        payload[field] = value
    return payload


def _error_text(response: httpx.Response) -> str:
    """`Code: message` from an ARM or OAuth error body, else the status and body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("code"):
            return f"{error['code']}: {error.get('message', '')}"
        if isinstance(error, str):
            return f"{error}: {body.get('error_description', '')}"
    return f"HTTP {response.status_code}: {response.text[:500]}"


class AdminClient:
    """The admin API of the server named by `<data-dir>/credentials.json`.

    `transport` replaces the network (tests pass an `httpx.MockTransport`).
    """

    def __init__(
        self,
        data_dir: Path,
        creds: ServerCredentials,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.creds = creds
        verify: ssl.SSLContext | bool = True
        if transport is None:
            try:
                verify = ssl.create_default_context(cafile=creds.ca_file)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot read the server's CA file {creds.ca_file} "
                    f"(from {data_dir / 'credentials.json'}): {exc}"
                ) from exc
        # The server is this host's or the configured one: proxies from the environment
        # would only get in the way.
        self._http = httpx.Client(
            base_url=creds.url,
            verify=verify,
            timeout=TIMEOUT_S,
            trust_env=False,
            transport=transport,
        )
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: Exception) -> click.ClickException:
        data_dir = shlex.quote(str(self.data_dir))
        return click.ClickException(
            f"no privatelink server answers at {self.creds.url} "
            f"(from {self.data_dir / 'credentials.json'}): start it with "
            f"`privatelink serve --data-dir {data_dir}` ({type(exc).__name__}: {exc})"
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def token(self) -> str:
        """A token of the default tenant's admin (from the server's token endpoint)."""
        if self._token is None:
            response = self._send(
                "POST",
                f"/{self.creds.tenant_id}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.creds.client_id,
                    "client_secret": self.creds.client_secret,
                    "scope": ADMIN_SCOPE,
                },
            )
            if response.status_code != 200:
                raise click.ClickException(
                    f"the server at {self.creds.url} refused the admin credentials of "
                    f"{self.data_dir / 'credentials.json'}: {_error_text(response)}"
                )
            self._token = str(response.json()["access_token"])
        return self._token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """An admin API call; its JSON reply (None for 204), or a ClickException with the
        API's error."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        response = self._send(method, ADMIN_PREFIX + path, json=body, headers=headers)
        if response.status_code >= 400:
            raise click.ClickException(_error_text(response))
        if response.status_code == 204:
            return None  # No Content (a delete)
        try:
            return response.json()
        except ValueError as exc:
            raise click.ClickException(
                f"the server's reply to {method} {path} is not JSON: {response.text[:200]}"
            ) from exc


def _client(data_dir: Path) -> AdminClient:
    return AdminClient(data_dir, ServerCredentials.load(data_dir))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@click.group(name="tenant")
def tenant_group() -> None:
    """Create and inspect tenants (as the default tenant's admin, on the running server)."""


@tenant_group.command(name="create")
@click.argument("name")
@data_dir_option
def tenant_create(name: str, data_dir: Path | None) -> None:
    """Create tenant NAME with its admin and one subscription.

    Prints the admin's credentials as JSON and writes them to
    <data-dir>/tenants/NAME.json (mode 600); `privatelink az --identity NAME` uses them.
    """
    data_dir = resolve_data_dir(data_dir)
    with _client(data_dir) as client:
        reply = client.call("POST", "/tenants", {"name": name})
        payload = tenant_file_payload(reply, client.creds)
    write_secret_json(tenant_file(data_dir, payload["name"]), payload)
    _echo_json(payload)


@tenant_group.command(name="list")
@data_dir_option
def tenant_list(data_dir: Path | None) -> None:
    """List the tenants (JSON; no secrets)."""
    with _client(resolve_data_dir(data_dir)) as client:
        _echo_json(client.call("GET", "/tenants").get("value", []))


@tenant_group.command(name="show")
@click.argument("name")
@data_dir_option
def tenant_show(name: str, data_dir: Path | None) -> None:
    """Show tenant NAME (a name or tenant id; JSON, no secrets)."""
    with _client(resolve_data_dir(data_dir)) as client:
        _echo_json(client.call("GET", f"/tenants/{quote(name, safe='')}"))


@click.group(name="subscription")
def subscription_group() -> None:
    """Create subscriptions (as the default tenant's admin, on the running server)."""


@subscription_group.command(name="create")
@click.option("--tenant", "tenant", required=True, help="The tenant (name or id).")
@click.option("--name", "display_name", default=None, help="The subscription's display name.")
@data_dir_option
def subscription_create(tenant: str, display_name: str | None, data_dir: Path | None) -> None:
    """Create a subscription in a tenant, with the tenant's admin as Owner (JSON)."""
    body: dict[str, Any] = {"tenant": tenant}
    if display_name:
        body["display_name"] = display_name
    with _client(resolve_data_dir(data_dir)) as client:
        _echo_json(client.call("POST", "/subscriptions", body))
