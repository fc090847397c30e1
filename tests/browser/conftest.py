"""Fixtures for the browser tier: a real `privatelink serve` and Debian's Chromium,
driven by Playwright for Python (headless; `/usr/bin/chromium`, since browsers cannot
be downloaded here: `make test` installs the `chromium` package and Playwright).

Screenshots go to `SHOTS` (`$PRIVATELINK_SCREENSHOTS`, default
`<repo>/test-artifacts/screenshots`), one PNG per page a test looked at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from portal_scene import Scene, build_scene
from serverproc import ServerProcess, serve_process

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("PRIVATELINK_SCREENSHOTS", REPO / "test-artifacts" / "screenshots"))
# Chromium on a machine without network: no background fetches, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def portal_server() -> Iterator[ServerProcess]:
    """One server per module (control plane only), in a fresh data directory."""
    d = Path(tempfile.mkdtemp(prefix="privatelink-browser-"))
    try:
        with serve_process(d / "data", "--dataplane", "off") as started:
            yield started
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium; skipped (failed under CI) when Playwright or Chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not Path(CHROMIUM).exists():
        reason = "Playwright or /usr/bin/chromium is missing: `make test` installs both"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) at 1280x800; the server's CA is private."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


@pytest.fixture
def shot() -> Any:
    """`shot(page, name)`: a full-page PNG in SHOTS."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(tab: Any, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(scope="module")
def scene(portal_server: ServerProcess) -> Iterator[Scene]:
    """The module's world (tests/support/portal_scene.py)."""
    with build_scene(portal_server) as built:
        yield built


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the screenshots are (CI keeps its log: the files are named there)."""
    shots = sorted(SHOTS.glob("*.png")) if SHOTS.exists() else []
    if shots:
        terminalreporter.write_line(
            f"portal screenshots in {SHOTS}: " + ", ".join(p.name for p in shots)
        )
