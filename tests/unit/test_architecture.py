"""The layers' one direction of knowledge, checked by reading every module's imports.

core <- store <- service <- api; identity beside api; dataplane and dns read core and
store; cli/demo/server outermost.
The core imports no framework, no store engine, no HTTP, no subprocess.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "privatelink"

# What each layer must never import (prefix match on the imported module name).
FORBIDDEN = {
    "core": [
        "privatelink.store",
        "privatelink.api",
        "privatelink.service",
        "privatelink.identity",
        "privatelink.cli",
        "privatelink.server",
        "privatelink.dns",
        "privatelink.dataplane",
        "sqlalchemy",
        "fastapi",
        "starlette",
        "pydantic",
        "httpx",
        "subprocess",
        "socket",
        "uvicorn",
    ],
    "store": [
        "privatelink.api",
        "privatelink.service",
        "privatelink.identity",
        "privatelink.dns",
        "fastapi",
    ],
    # The DNS server is an outer layer beside the data plane: it reads the store and core.
    "dns": [
        "privatelink.api",
        "privatelink.cli",
        "privatelink.server",
        "privatelink.identity",
        "fastapi",
        "starlette",
    ],
    "identity": ["privatelink.api", "privatelink.store", "privatelink.service"],
    "api": ["privatelink.store.sql", "sqlalchemy", "privatelink.cli", "privatelink.server"],
}


def imports_of(path: Path) -> list[str]:
    """Absolute module names imported by a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def modules(layer: str) -> list[Path]:
    return sorted((SRC / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_inwards(layer: str) -> None:
    files = modules(layer)
    assert files, f"no modules found for layer {layer}"
    bad = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in files
        for name in imports_of(path)
        for banned in FORBIDDEN[layer]
        if name == banned or name.startswith(banned + ".")
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import sqlalchemy\nfrom privatelink.api import app\n")
    assert imports_of(sample) == ["sqlalchemy", "privatelink.api"]
