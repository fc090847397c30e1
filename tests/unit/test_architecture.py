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
    # The portal reads and writes only through the ARM API (its own HTTP calls into the
    # app, with the user's token): no back door to the store, the services or the kernel.
    "portal": [
        "privatelink.api",
        "privatelink.store",
        "privatelink.service",
        "privatelink.dataplane",
        "privatelink.core",
        "sqlalchemy",
    ],
    "api": [
        "privatelink.store.sql",
        "sqlalchemy",
        "privatelink.cli",
        "privatelink.server",
        "privatelink.serving",
    ],
}

# The HTTP server itself (uvicorn, h11) is configured in one module, serving.py; the CLI
# only hands it the app.
HTTP_SERVER_MODULES = ("uvicorn", "h11")
MAY_IMPORT_HTTP_SERVER = {"serving.py", "cli/main.py"}


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


def test_only_the_serving_layer_imports_the_http_server() -> None:
    bad = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in sorted(SRC.rglob("*.py"))
        if str(path.relative_to(SRC)) not in MAY_IMPORT_HTTP_SERVER
        for name in imports_of(path)
        if name.split(".")[0] in HTTP_SERVER_MODULES
    ]
    assert not bad, "\n".join(bad)


# In the data plane only privileged.py touches the kernel: netlink, nftables, programs,
# raw syscalls. (Sockets stay allowed: the proxy path and probes use ordinary ones.)
KERNEL_MODULES = ("pyroute2", "nftables", "subprocess", "ctypes", "select", "resource", "fcntl")


def test_only_privileged_touches_the_kernel_in_the_data_plane() -> None:
    bad = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in modules("dataplane")
        if path.name != "privileged.py"
        for name in imports_of(path)
        if name.split(".")[0] in KERNEL_MODULES
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import sqlalchemy\nfrom privatelink.api import app\n")
    assert imports_of(sample) == ["sqlalchemy", "privatelink.api"]


# --- the core's own shape: no imports hidden in functions, no import cycles ------------------


def function_imports(path: Path) -> list[str]:
    """Imports inside a function body of a file, as "line: module"."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                found.extend(f"{node.lineno}: {a.name}" for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.append(f"{node.lineno}: {'.' * node.level}{node.module or ''}")
    return sorted(set(found))


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (anywhere in the file).

    `from package import x` counts as importing `package.x` when x is a module.
    """
    names = {p.stem for p in package_dir.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name in names:
        tree = ast.parse((package_dir / f"{name}.py").read_text())
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for target in targets:
                if target.startswith(package + "."):
                    head = target[len(package) + 1 :].split(".")[0]
                    if head in names and head != name:
                        graph[name].add(head)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path (first module repeated at the end), or [] when acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


def test_core_has_no_imports_inside_functions() -> None:
    # A lazy import hides a cycle; cross-resource rules belong in core/private_link.py.
    bad = [
        f"{path.relative_to(SRC)}:{hit}"
        for path in modules("core")
        for hit in function_imports(path)
    ]
    assert not bad, "imports inside functions:\n" + "\n".join(bad)


def test_core_import_graph_is_acyclic() -> None:
    cycle = find_cycle(import_graph(SRC / "core", "privatelink.core"))
    assert not cycle, "import cycle in core: " + " -> ".join(cycle)


def test_resource_modules_sit_below_private_link() -> None:
    # Cross-resource rules, the registry and templates are above every resource module.
    graph = import_graph(SRC / "core", "privatelink.core")
    resources = [
        "virtual_network",
        "load_balancer",
        "network_interface",
        "private_link_service",
        "private_endpoint",
        "private_dns",
    ]
    above = {"private_link", "registry", "template"}
    bad = {m: sorted(graph[m] & above) for m in resources if graph[m] & above}
    assert not bad, f"resource modules importing modules above them: {bad}"


def test_the_checkers_see_a_hidden_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.c import x\n    return x\n")
    (pkg / "c.py").write_text("from pkg import a\nx = 1\n")
    assert function_imports(pkg / "b.py") == ["2: pkg.c"]
    assert find_cycle(import_graph(pkg, "pkg")) == ["a", "b", "c", "a"]
    (pkg / "c.py").write_text("x = 1\n")
    assert find_cycle(import_graph(pkg, "pkg")) == []
