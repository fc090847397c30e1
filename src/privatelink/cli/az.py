"""`privatelink az`: the real azure-cli, pointed at this server.

`az` keeps its state (clouds, accounts, token cache, config) in `AZURE_CONFIG_DIR`.
`privatelink az` gives it a private one, `<data-dir>/az`, so the user's own `az` login
is never touched, and prepares it once:

* a cloud named ``privatelink`` registered from the server's `/metadata/endpoints` and
  made active;
* instance discovery off (the server is its own authority, unknown to Microsoft), and
  no survey prompts;
* a service-principal login with the server's client (from `credentials.json`), with the
  server's default subscription selected.

A stamp file in that directory records which server (url, tenant, client, default
subscription) it was prepared for; when `credentials.json` changes, e.g. the server now
listens on another port, the directory is re-created. Every `az` run then gets the
server's CA (`REQUESTS_CA_BUNDLE`), telemetry off and `NO_PROXY` covering the server.

`privatelink az --print-env` prints the same as plain shell lines, for users who want to
run `az` itself in their shell.

`--identity NAME|FILE` runs az as another principal: NAME is a tenant made with
`privatelink tenant create NAME` (`<data-dir>/tenants/NAME.json`), FILE a JSON file with
the fields of `credentials.json` (`url` and `ca_file` default to the server's) or the
JSON `az ad sp create-for-rbac` prints (`appId`, `password`, `tenant`). Each identity
has its own `AZURE_CONFIG_DIR`: `<data-dir>/az-identities/<name>` for a tenant,
`<data-dir>/az-identities/sp.<hash of tenant and client>` for a file. The login passes
`--allow-no-subscriptions`, so a principal with no role on any subscription still gets
a (tenant-level) account; the identity's own subscription, when it names one, is
selected.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

CLOUD_NAME = "privatelink"
CONFIG_SUBDIR = "az"
IDENTITIES_SUBDIR = "az-identities"
TENANTS_SUBDIR = "tenants"
#: `--identity default` is the server's own client (credentials.json).
DEFAULT_IDENTITY = "default"
STAMP_FILE = "privatelink-setup.json"
LOCK_FILE = "az.lock"
SETUP_TIMEOUT_S = 120.0
INSTALL_HINT = (
    "`az` (azure-cli) was not found on PATH. Install it, preferably apart from privatelink "
    "(azure-cli pins its own azure-mgmt-* packages), with one of:\n"
    "  pipx install azure-cli\n"
    "  python3 -m venv ~/.venv-az && ~/.venv-az/bin/pip install azure-cli "
    "&& export PATH=$PATH:~/.venv-az/bin\n"
    "  make az        (in a clone of privatelink: the tested version, in .venv-az;\n"
    "                  then: export PATH=$PWD/.venv-az/shim:$PATH)\n"
    "or see https://learn.microsoft.com/cli/azure/install-azure-cli"
)
_REQUIRED = ("url", "ca_file", "tenant_id", "client_id", "client_secret")


#: Alternative field names, as `az ad sp create-for-rbac` prints them.
_ALIASES = {"tenant_id": "tenant", "client_id": "appId", "client_secret": "password"}


@dataclass(frozen=True)
class ServerCredentials:
    """A principal's credentials for the server: `credentials.json`'s fields."""

    url: str
    ca_file: str
    tenant_id: str
    client_id: str
    client_secret: str
    subscription_id: str | None

    @classmethod
    def load(cls, data_dir: Path) -> ServerCredentials:
        """Read `credentials.json`; a clear error when it is missing or incomplete."""
        path = data_dir / "credentials.json"
        if not path.exists():
            raise click.ClickException(
                f"{path} not found: start the server first "
                f"(privatelink serve --data-dir {shlex.quote(str(data_dir))})."
            )
        return cls.from_mapping(_read_json(path), str(path))

    @classmethod
    def from_mapping(
        cls,
        raw: Mapping[str, Any],
        source: str,
        server: ServerCredentials | None = None,
    ) -> ServerCredentials:
        """Credentials from a JSON object; `source` names it in errors.

        Takes `credentials.json`'s fields, or `tenant`/`appId`/`password` as `az ad sp
        create-for-rbac` prints them; `url` and `ca_file` default to `server`'s.
        """
        values: dict[str, str] = {}
        for key in _REQUIRED:
            value = raw.get(key)
            if (not isinstance(value, str) or not value) and key in _ALIASES:
                value = raw.get(_ALIASES[key])
            if (not isinstance(value, str) or not value) and server is not None:
                value = {"url": server.url, "ca_file": server.ca_file}.get(key)
            if isinstance(value, str) and value:
                values[key] = value
        missing = [k for k in _REQUIRED if k not in values]
        if missing:
            raise click.ClickException(f"{source} lacks {', '.join(missing)}")
        sub = raw.get("subscription_id")
        return cls(
            url=values["url"].rstrip("/"),
            ca_file=values["ca_file"],
            tenant_id=values["tenant_id"],
            client_id=values["client_id"],
            client_secret=values["client_secret"],
            subscription_id=sub if isinstance(sub, str) and sub else None,
        )

    def stamp(self) -> dict[str, str | None]:
        """What the prepared config directory depends on (not the secret itself).

        A new secret (e.g. after `az ad sp credential reset`) changes the stamp through a
        short digest, which tells nothing about a random 40-character secret.
        """
        return {
            "cloud": CLOUD_NAME,
            "url": self.url,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "subscription_id": self.subscription_id,
            "secret_sha256": hashlib.sha256(self.client_secret.encode()).hexdigest()[:12],
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise click.ClickException(f"{path} is not a JSON object")
    return raw


def config_dir(data_dir: Path) -> Path:
    """The private `AZURE_CONFIG_DIR` of a data directory (the server's own client)."""
    return data_dir / CONFIG_SUBDIR


def identity_config_dir(data_dir: Path, name: str | None, creds: ServerCredentials) -> Path:
    """The private `AZURE_CONFIG_DIR` of an identity: by tenant name, else by principal.

    A principal's directory is named `sp.<hash>` (a dot: never a tenant name).
    """
    if name is not None:
        return data_dir / IDENTITIES_SUBDIR / name.lower()
    key = f"{creds.tenant_id}/{creds.client_id}".lower().encode()
    return data_dir / IDENTITIES_SUBDIR / f"sp.{hashlib.sha256(key).hexdigest()[:16]}"


def _is_file_identity(value: str) -> bool:
    return "/" in value or value.endswith(".json") or value in (".", "..")


def resolve_identity(data_dir: Path, identity: str | None) -> tuple[ServerCredentials, Path]:
    """The credentials and `AZURE_CONFIG_DIR` of `--identity` (None: the server's client).

    A value with a `/` or ending in `.json` is a file; anything else a tenant name,
    `<data-dir>/tenants/NAME.json` (`default` is the server's own client).
    """
    if identity is None or identity.lower() == DEFAULT_IDENTITY:
        return ServerCredentials.load(data_dir), config_dir(data_dir)
    if _is_file_identity(identity):
        path = Path(identity).expanduser()
        if not path.is_file():
            raise click.ClickException(f"--identity {identity}: no such file")
        creds = ServerCredentials.from_mapping(_read_json(path), str(path), _server(data_dir))
        return creds, identity_config_dir(data_dir, None, creds)
    tenants = data_dir / TENANTS_SUBDIR
    path = tenants / f"{identity}.json"
    if not path.is_file():
        # Tenant names are case-insensitive.
        found = [p for p in tenants.glob("*.json") if p.stem.lower() == identity.lower()]
        if not found:
            known = sorted(p.stem for p in tenants.glob("*.json")) if tenants.is_dir() else []
            raise click.ClickException(
                f"--identity {identity}: {path} not found; create the tenant with "
                f"`privatelink tenant create {identity}`, or give a credentials file path"
                + (f" (known: {', '.join(known)})" if known else "")
            )
        path = found[0]
    creds = ServerCredentials.from_mapping(_read_json(path), str(path), _server(data_dir))
    return creds, identity_config_dir(data_dir, path.stem, creds)


def _server(data_dir: Path) -> ServerCredentials | None:
    """The server's own credentials, when the data directory has them (url, CA defaults)."""
    if not (data_dir / "credentials.json").exists():
        return None
    return ServerCredentials.load(data_dir)


def find_az(path: str | None = None) -> str:
    """The `az` executable on PATH (or `path`), else a ClickException saying how to get it."""
    found = shutil.which("az", path=path)
    if found is None:
        raise click.ClickException(INSTALL_HINT)
    return found


def _no_proxy(current: str, host: str) -> str:
    """`current` (a NO_PROXY value) plus 127.0.0.1, localhost and `host`."""
    items = [h.strip() for h in current.split(",") if h.strip()]
    for extra in ("127.0.0.1", "localhost", host):
        if extra and extra not in items:
            items.append(extra)
    return ",".join(items)


def az_env(
    creds: ServerCredentials, cfg_dir: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment `az` runs with: `base` (default os.environ) plus our settings."""
    env = dict(os.environ if base is None else base)
    host = urlsplit(creds.url).hostname or ""
    no_proxy = _no_proxy(env.get("NO_PROXY") or env.get("no_proxy") or "", host)
    env.update(
        {
            "AZURE_CONFIG_DIR": str(cfg_dir),
            "REQUESTS_CA_BUNDLE": creds.ca_file,
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }
    )
    return env


@dataclass(frozen=True)
class SetupStep:
    """One `az` invocation of the setup; `shown` is the argv with the secret masked."""

    argv: list[str]
    shown: list[str]
    # Shell alternative for --print-env when the step may already have been done.
    shell_fallback: list[str] | None = None
    # What to tell the user when the step fails (default: is the server running?).
    hint: str | None = None
    # What to tell instead when the server answered and refused the sign-in (AADSTS...).
    refused_hint: str | None = None


def setup_steps(creds: ServerCredentials) -> list[SetupStep]:
    """The `az` commands (without `az`) that prepare a config directory for the server."""
    cloud = ["-n", CLOUD_NAME, "--endpoint-resource-manager", creds.url, "--output", "none"]
    login = [
        "login",
        "--service-principal",
        "--username",
        creds.client_id,
        "--tenant",
        creds.tenant_id,
        # A principal with no role on any subscription still gets a tenant-level account.
        "--allow-no-subscriptions",
        "--output",
        "none",
    ]
    # `--password=...` rather than `--password ...`: a secret may start with "-".
    steps = [
        SetupStep(
            ["cloud", "register", *cloud],
            ["cloud", "register", *cloud],
            shell_fallback=["cloud", "update", *cloud],
        ),
        SetupStep(["cloud", "set", "-n", CLOUD_NAME], ["cloud", "set", "-n", CLOUD_NAME]),
        # No instance discovery (the server is its own authority); no survey prompts.
        SetupStep(
            ["config", "set", "core.instance_discovery=false", "core.survey_message=false"],
            ["config", "set", "core.instance_discovery=false", "core.survey_message=false"],
        ),
        SetupStep(
            [*login, f"--password={creds.client_secret}"],
            [*login, "--password=***"],
            refused_hint=(
                f"The server refused the sign-in of {creds.client_id} in tenant "
                f"{creds.tenant_id}: is the secret current (`az ad sp credential reset` "
                "replaces it) and does the service principal still exist?"
            ),
        ),
    ]
    if creds.subscription_id:
        account = ["account", "set", "--subscription", creds.subscription_id]
        hint = (
            f"Does the principal {creds.client_id} have a role on subscription "
            f"{creds.subscription_id} (az lists only those)?"
        )
        steps.append(SetupStep(account, account, hint=hint))
    return steps


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialize setups of one data directory (two `privatelink az` started at once)."""
    with (data_dir / LOCK_FILE).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_set_up(cfg_dir: Path, creds: ServerCredentials) -> bool:
    """True when `cfg_dir` was prepared for exactly this server and client."""
    try:
        return bool(json.loads((cfg_dir / STAMP_FILE).read_text()) == creds.stamp())
    except (OSError, ValueError):
        return False


def _run_step(az: str, step: SetupStep, env: Mapping[str, str], timeout: float, url: str) -> None:
    shown = shlex.join(["az", *step.shown])
    try:
        proc = subprocess.run(
            [az, *step.argv],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise click.ClickException(
            f"setting up az: `{shown}` did not finish within {timeout:.0f}s; "
            f"is `privatelink serve` running at {url}?"
        ) from exc
    except OSError as exc:
        raise click.ClickException(f"setting up az: cannot run {az}: {exc}") from exc
    if proc.returncode != 0:
        output = "\n".join(s for s in (proc.stdout.strip(), proc.stderr.strip()) if s)
        if step.refused_hint is not None and "AADSTS" in output:
            hint = step.refused_hint
        else:
            hint = step.hint or f"Is `privatelink serve` running at {url}?"
        raise click.ClickException(
            f"setting up az: `{shown}` failed (exit {proc.returncode}):\n{output}\n{hint}"
        )


def ensure_setup(
    az: str,
    data_dir: Path,
    creds: ServerCredentials,
    env: Mapping[str, str],
    timeout: float = SETUP_TIMEOUT_S,
    cfg_dir: Path | None = None,
) -> bool:
    """Prepare `cfg_dir` for these credentials unless already done; True when it ran.

    `cfg_dir` defaults to `<data-dir>/az`, the server's own client's directory.
    """
    cfg_dir = cfg_dir or config_dir(data_dir)
    with _locked(data_dir):
        if is_set_up(cfg_dir, creds):
            return False
        # Another server, client or an interrupted setup: start from an empty directory so
        # no account, token or cloud of the previous server lingers.
        if cfg_dir.exists():
            shutil.rmtree(cfg_dir)
        cfg_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        cfg_dir.mkdir(mode=0o700)
        for step in setup_steps(creds):
            _run_step(az, step, env, timeout, creds.url)
        stamp = cfg_dir / STAMP_FILE
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(json.dumps(creds.stamp(), indent=2) + "\n")
        tmp.replace(stamp)
        return True


def shell_lines(creds: ServerCredentials, cfg_dir: Path, base: Mapping[str, str]) -> list[str]:
    """Plain shell lines that set up the current shell's `az` as `privatelink az` does."""
    env = az_env(creds, cfg_dir, base)
    lines = [f"# az against privatelink at {creds.url}"]
    for key in ("AZURE_CONFIG_DIR", "REQUESTS_CA_BUNDLE", "AZURE_CORE_COLLECT_TELEMETRY"):
        lines.append(f"export {key}={shlex.quote(env[key])}")
    lines.append(f'export NO_PROXY={shlex.quote(env["NO_PROXY"])} no_proxy="$NO_PROXY"')
    for step in setup_steps(creds):
        line = shlex.join(["az", *step.argv])
        if step.shell_fallback is not None:
            line += " 2>/dev/null || " + shlex.join(["az", *step.shell_fallback])
        lines.append(line)
    return lines


@click.command(
    name="az",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data directory (default $PRIVATELINK_DATA_DIR or ~/.privatelink).",
)
@click.option(
    "--identity",
    default=None,
    metavar="NAME|FILE",
    help="Run az as this principal: a tenant made with `privatelink tenant create NAME`, "
    "or a JSON credentials file (credentials.json's fields, or what `az ad sp "
    "create-for-rbac` prints). Default: the server's client (credentials.json).",
)
@click.option(
    "--print-env",
    is_flag=True,
    help="Print shell lines that set up `az` in your shell the same way, and exit.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def az_command(
    data_dir: Path | None, identity: str | None, print_env: bool, args: tuple[str, ...]
) -> None:
    """Run az (azure-cli, from PATH) against the server: privatelink az -- ARGS.

    The first run registers a cloud for the server and logs in with its service
    principal, in a private AZURE_CONFIG_DIR (<data-dir>/az; with --identity,
    <data-dir>/az-identities/...); later runs reuse it.
    """
    from privatelink.server import default_data_dir

    data_dir = (data_dir or default_data_dir()).resolve()
    creds, cfg_dir = resolve_identity(data_dir, identity)
    if print_env:
        if args:
            raise click.UsageError("--print-env takes no az arguments")
        click.echo("\n".join(shell_lines(creds, cfg_dir, os.environ)))
        return
    az = find_az()
    env = az_env(creds, cfg_dir)
    if not data_dir.is_dir():
        raise click.ClickException(f"{data_dir} is not a directory")
    ensure_setup(az, data_dir, creds, env, cfg_dir=cfg_dir)
    exec_az(az, args, env)


def exec_az(az: str, args: Sequence[str], env: Mapping[str, str]) -> None:
    """Replace this process with `az ARGS` (its exit code becomes ours)."""
    try:
        os.execve(az, [az, *args], dict(env))
    except OSError as exc:
        raise click.ClickException(f"cannot run {az}: {exc}") from exc
