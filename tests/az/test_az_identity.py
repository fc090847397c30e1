"""`privatelink az --identity`: the real azure-cli as another tenant's principal.

A tenant made with `privatelink tenant create` is used by name, and the same principal
from a file shaped like `az ad sp create-for-rbac`'s output; each gets its own
AZURE_CONFIG_DIR under `<data-dir>/az-identities`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.az


def test_identity_by_tenant_name_and_by_file(
    az_exe: str, az_server: Any, az_helpers: Any, tmp_path: Path
) -> None:
    data_dir = az_server.data_dir
    fab = az_helpers.tenant_create(data_dir, "fabrikam")
    az = az_helpers.AzRunner(data_dir)

    def as_(identity: str, *args: str) -> Any:
        return az.run("--identity", identity, "--", *args, separator=False)

    account = json.loads(as_("fabrikam", "account", "show", "-o", "json").stdout)
    assert account["id"] == fab["subscription_id"]
    assert account["tenantId"] == fab["tenant_id"]
    assert account["user"] == {"name": fab["client_id"], "type": "servicePrincipal"}
    assert (data_dir / "az-identities" / "fabrikam" / "privatelink-setup.json").exists()
    rg = az_helpers.unique("rg-fab")
    as_("fabrikam", "group", "create", "-n", rg, "-l", "eastus", "-o", "none")
    assert as_("fabrikam", "group", "show", "-n", rg, "--query", "name", "-o", "tsv").text == rg

    # The same principal as `az ad sp create-for-rbac` prints it (no url, CA or subscription).
    sp_file = tmp_path / "sp.json"
    sp = {"appId": fab["client_id"], "password": fab["client_secret"], "tenant": fab["tenant_id"]}
    sp_file.write_text(json.dumps(sp | {"displayName": "fabrikam admin"}))
    from_file = json.loads(as_(str(sp_file), "account", "show", "-o", "json").stdout)
    assert from_file["tenantId"] == fab["tenant_id"]
    assert from_file["user"]["name"] == fab["client_id"]
    dirs = sorted(p.name for p in (data_dir / "az-identities").iterdir())
    assert dirs[0] == "fabrikam" and dirs[1].startswith("sp.") and len(dirs) == 2

    missing = az.run("--identity", "nobody", "--", "account", "show", separator=False, check=False)
    assert missing.returncode == 1
    assert "privatelink tenant create nobody" in missing.stderr
