"""`az login -u NAME -p PASSWORD` as a user of the server, with the real azure-cli.

MSAL (inside az) asks `https://<authority host>/common/userrealm/<name>` before a
username/password sign-in, always on port 443 (it drops the authority's port), so this
server listens on 127.0.0.1:443 (root; skipped when the port is taken). The user gets
Reader on the default subscription: az lists it, reads work, a write is refused with
ARM's AuthorizationFailed, as for any principal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from serverproc import serve_process

pytestmark = pytest.mark.az

LOCAL = "127.0.0.1,localhost"
PORT = 443


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_az_login_with_a_users_password(az_exe: str, az_helpers: Any, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not _port_free(PORT):
        pytest.skip(f"needs root and a free 127.0.0.1:{PORT}")
    data_dir = tmp_path / "data"
    with serve_process(data_dir, "--dataplane", "off", port=PORT) as started:
        creds = started.credentials
        user = az_helpers.privatelink_json(data_dir, "user", "create", "--name", "alice")
        sub = creds["subscription_id"]
        # The server's admin gives alice Reader, by object id (az as the admin).
        az_helpers.privatelink_json(
            data_dir,
            "az",
            "--",
            "role",
            "assignment",
            "create",
            "--assignee-object-id",
            user["object_id"],
            "--assignee-principal-type",
            "User",
            "--role",
            "Reader",
            "--scope",
            f"/subscriptions/{sub}",
            "--output",
            "json",
        )
        env = dict(
            os.environ,
            AZURE_CONFIG_DIR=str(tmp_path / "az-alice"),
            REQUESTS_CA_BUNDLE=creds["ca_file"],
            AZURE_CORE_COLLECT_TELEMETRY="false",
            NO_PROXY=LOCAL,
            no_proxy=LOCAL,
        )

        def az(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [az_exe, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )

        for step in (
            ["cloud", "register", "-n", "plu", "--endpoint-resource-manager", creds["url"]],
            ["cloud", "set", "-n", "plu"],
            ["config", "set", "core.instance_discovery=false", "core.survey_message=false"],
        ):
            done = az(*step, "--output", "none")
            assert done.returncode == 0, done.stderr
        login = az(
            "login",
            "-u",
            user["user_principal_name"],
            f"--password={user['password']}",
            "--tenant",
            creds["tenant_id"],
            "--output",
            "json",
        )
        assert login.returncode == 0, login.stderr
        accounts = json.loads(login.stdout)
        assert [a["id"] for a in accounts] == [sub]
        assert accounts[0]["user"] == {"name": user["user_principal_name"], "type": "user"}
        groups = az("group", "list", "--output", "json")
        assert groups.returncode == 0, groups.stderr
        write = az("group", "create", "-n", "rg-alice", "-l", "eastus", "--output", "json")
        assert write.returncode != 0 and "AuthorizationFailed" in write.stderr, write.stderr
        wrong = az(
            "login",
            "-u",
            user["user_principal_name"],
            "--password=not-her-password",
            "--tenant",
            creds["tenant_id"],
        )
        assert wrong.returncode != 0 and "AADSTS50126" in wrong.stderr, wrong.stderr
