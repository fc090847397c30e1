"""Fixtures for the az suite: a real `privatelink serve` and the real azure-cli.

`az` must be on PATH (`make az` installs the pinned version in .venv-az, and `make test`
puts it first on PATH). Without it the tests that run `az` are skipped, unless CI is set:
then they fail, so CI can't pass by silently skipping them.

`az_server` starts one server per test module (control plane only) in a temporary data
directory; `server_factory` starts more, e.g. on the same data directory and another
port. `AzRunner.run(...)` is `python -m privatelink.cli.main az --data-dir DIR -- ...`
as a subprocess, the way a user types `privatelink az ...`; `AzRunner.as_(NAME|FILE)` is
the same with `--identity`, `tenant_create(data_dir, NAME)` runs `privatelink tenant
create NAME` and `subscription_create(data_dir, TENANT)` runs `privatelink subscription
create --tenant TENANT` (both through `az_helpers`).

Tests can't import this module (pytest runs with --import-mode=importlib): what they
need is reached through fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from arm_bodies import Rule, lb_body, provider_vnet_body
from azure.identity import ClientSecretCredential
from azure.mgmt.network import NetworkManagementClient
from serverproc import serve_process, tail_of

AZ_TIMEOUT_S = 180.0
LOCAL = "127.0.0.1,localhost"

_RUNNING: list[AzServer] = []


def unique(prefix: str) -> str:
    """A fresh resource (group) name."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class AzServer:
    """A started `privatelink serve`: its data directory and credentials.json."""

    url: str
    data_dir: Path
    credentials: dict[str, Any]
    proc: subprocess.Popen[bytes]
    stderr_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def subscription(self) -> str:
        """The server's default subscription (the one `privatelink az` selects)."""
        return str(self.credentials["subscription_id"])

    def stderr(self, tail: int = 60) -> str:
        return tail_of(self.stderr_path, tail)


@contextlib.contextmanager
def run_server(data_dir: Path) -> Iterator[AzServer]:
    """`privatelink serve --dataplane off` on a free port; yield when it answers."""
    with serve_process(data_dir, "--dataplane", "off") as started:
        server = AzServer(
            started.url, data_dir, started.credentials, started.proc, started.stderr_path
        )
        _RUNNING.append(server)
        try:
            yield server
        finally:
            _RUNNING.remove(server)


@dataclass
class AzResult:
    """A finished `privatelink az` run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def text(self) -> str:
        return self.stdout.strip()

    def __str__(self) -> str:
        return (
            f"$ {shlex.join(self.argv)}\nexit {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.stdout}"
            f"--- stderr ---\n{self.stderr}"
        )


class AzRunner:
    """Runs `privatelink az --data-dir DIR [--identity ID] -- ARGS` as a subprocess."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, identity: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.identity = identity
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("NO_PROXY", LOCAL)
        self.env.setdefault("no_proxy", LOCAL)
        # No colours or interactive prompts in captured output.
        self.env["AZURE_CORE_NO_COLOR"] = "true"

    def as_(self, identity: str | Path) -> AzRunner:
        """The same runner as another principal (`--identity NAME|FILE`)."""
        return AzRunner(self.data_dir, self.env, str(identity))

    def argv(self, *args: str, separator: bool = True) -> list[str]:
        head = [
            sys.executable,
            "-m",
            "privatelink.cli.main",
            "az",
            "--data-dir",
            str(self.data_dir),
        ]
        if self.identity is not None:
            head += ["--identity", self.identity]
        return [*head, *(["--"] if separator else []), *args]

    def run(
        self, *args: str, check: bool = True, separator: bool = True, timeout: float = AZ_TIMEOUT_S
    ) -> AzResult:
        """Run az; with `check`, fail the test (showing the output) on a non-zero exit."""
        argv = self.argv(*args, separator=separator)
        started = time.monotonic()
        proc = subprocess.run(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result = AzResult(
            argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started
        )
        if os.environ.get("PRIVATELINK_AZ_TIMES"):
            print(f"{result.seconds:5.1f}s  az {shlex.join(args)}", file=sys.stderr)
        if check and result.returncode != 0:
            pytest.fail(f"privatelink az failed:\n{result}", pytrace=False)
        return result

    def json(self, *args: str) -> Any:
        """`az ARGS -o json`, parsed."""
        return self.run(*args, "-o", "json").json()

    def tsv(self, *args: str) -> str:
        """`az ARGS -o tsv`, stripped."""
        return self.run(*args, "-o", "tsv").text

    def fails(self, *args: str, code: str) -> AzResult:
        """Run az; it must exit non-zero with the ARM error `code` in its message."""
        result = self.run(*args, check=False)
        assert result.returncode != 0, f"expected a failure:\n{result}"
        assert code in result.stderr, f"expected {code} in stderr:\n{result}"
        return result


def _privatelink_json(data_dir: Path, *args: str) -> Any:
    """`privatelink ARGS --data-dir DIR` (before a `--`: what follows is az's), which must
    succeed: its JSON output (None when it prints nothing)."""
    cut = args.index("--") if "--" in args else len(args)
    cmd = [sys.executable, "-m", "privatelink.cli.main", *args[:cut]]
    proc = subprocess.run(
        [*cmd, "--data-dir", str(data_dir), *args[cut:]],
        env=dict(os.environ, NO_PROXY=LOCAL, no_proxy=LOCAL),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"privatelink {' '.join(args)}: {proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def tenant_create(data_dir: Path, name: str) -> dict[str, Any]:
    """`privatelink tenant create NAME`: the new tenant admin's credentials (its JSON)."""
    return _privatelink_json(data_dir, "tenant", "create", name)


def subscription_create(data_dir: Path, tenant: str, name: str | None = None) -> dict[str, Any]:
    """`privatelink subscription create --tenant TENANT`: the new subscription (its JSON)."""
    named = ["--name", name] if name else []
    return _privatelink_json(data_dir, "subscription", "create", "--tenant", tenant, *named)


@pytest.fixture(scope="session")
def az_exe() -> str:
    """`az` on PATH; skip (fail under CI) when it is not installed."""
    found = shutil.which("az")
    if found is None:
        reason = (
            "`az` (azure-cli) is not on PATH: `make az` installs the pinned version in "
            ".venv-az, and `make test` puts it on PATH"
        )
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def az_server() -> Iterator[AzServer]:
    """One server for the module, in a fresh temporary data directory."""
    d = Path(tempfile.mkdtemp(prefix="privatelink-az-"))
    try:
        with run_server(d / "data") as s:
            yield s
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def az(az_server: AzServer) -> AzRunner:
    """`privatelink az` against the module's server (az itself: see `az_exe`)."""
    return AzRunner(az_server.data_dir)


LOCATION = "eastus"  # where the helpers below build


@pytest.fixture(scope="module")
def network(az_server: AzServer) -> Iterator[NetworkManagementClient]:
    """azure-mgmt-network as the module server's admin, in its default subscription (to
    build what a test needs without az runs)."""
    c = az_server.credentials
    credential = ClientSecretCredential(
        c["tenant_id"],
        c["client_id"],
        c["client_secret"],
        authority=c["url"],
        disable_instance_discovery=True,
        connection_verify=c["ca_file"],
    )
    client = NetworkManagementClient(
        credential,
        az_server.subscription,
        base_url=c["url"],
        connection_verify=c["ca_file"],
        polling_interval=0,
        retry_total=0,
    )
    with credential, client:
        yield client


@pytest.fixture(scope="module")
def provider_lb(az_server: AzServer, network: NetworkManagementClient) -> Callable[[str], str]:
    """`provider_lb(rg)`: the provider network `vnet` (tests/support/arm_bodies) and a
    Standard load balancer `lb` with frontend `fe` and one rule, built in `rg` through
    azure-mgmt-network; returns the group's Microsoft.Network id prefix."""

    def build(rg: str) -> str:
        sub = az_server.subscription
        base = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"
        network.virtual_networks.begin_create_or_update(
            rg, "vnet", provider_vnet_body(LOCATION)
        ).result()
        network.load_balancers.begin_create_or_update(
            rg,
            "lb",
            lb_body(
                f"{base}/loadBalancers/lb",
                f"{base}/virtualNetworks/vnet/subnets/frontend",
                LOCATION,
                rules=[Rule("http", "fe", "be")],
            ),
        ).result()
        return base

    return build


@pytest.fixture(scope="session")
def server_factory() -> Callable[[Path], contextlib.AbstractContextManager[AzServer]]:
    """Start more servers: `with server_factory(data_dir) as s: ...`."""
    return run_server


@pytest.fixture(scope="session")
def az_helpers() -> Any:
    """Module-level helpers of this conftest (tests cannot import it)."""

    class _H:
        unique = staticmethod(unique)
        tenant_create = staticmethod(tenant_create)
        subscription_create = staticmethod(subscription_create)
        privatelink_json = staticmethod(_privatelink_json)
        AzRunner = AzRunner

    return _H


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for s in list(_RUNNING):
            text = s.stderr()
            if text.strip():
                report.sections.append((f"privatelink serve stderr ({s.url})", text))
