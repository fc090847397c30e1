"""axe-core (vendored from its npm package: tests/browser/vendor/axe-core) on every page
of the portal and the sign-in page, at 1280x800 and at a phone's width: no serious or
critical violation. The pages' CSP forbids injected scripts, so this context bypasses it
(only here)."""

from __future__ import annotations

from typing import Any

import pytest
from axe_check import violations
from portal_scene import Scene, sign_in

pytestmark = pytest.mark.browser


def test_the_check_finds_a_violation(browser: Any) -> None:
    """The check itself: an unlabelled field in an untitled page is caught."""
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.set_content("<html><body><input type=text></body></html>")
        assert "label" in {v["id"] for v in violations(page)}
    finally:
        context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_violations_on_any_page(scene: Scene, browser: Any, width: int) -> None:
    context = browser.new_context(
        viewport={"width": width, "height": 800}, ignore_https_errors=True, bypass_csp=True
    )
    try:
        page = context.new_page()
        page.goto(f"{scene.url}/portal/")
        seen = {"sign-in": violations(page)}
        page.get_by_label("Sign-in name").fill(scene.user["user_principal_name"])
        page.get_by_label("Password").fill("wrong-password-1")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("alert").wait_for()
        seen["sign-in error"] = violations(page)
        sign_in(page, scene.url, scene.user["user_principal_name"], scene.user["password"])
        page.wait_for_url(f"{scene.url}/portal/")
        seen["overview"] = violations(page)
        page.goto(f"{scene.url}/portal/service?id={scene.service_id}")
        seen["service"] = violations(page)
        page.goto(f"{scene.url}/portal/metrics?id={scene.service_id}")
        seen["metrics"] = violations(page)
        page.goto(f"{scene.url}/portal/topology?id={scene.service_id}")
        seen["topology"] = violations(page)
        page.goto(f"{scene.url}/portal/services")
        seen["services"] = violations(page)
        page.goto(f"{scene.url}/portal/pending")
        seen["pending"] = violations(page)
        page.goto(f"{scene.url}/portal/services/new")
        page.get_by_role("button", name="Choose").click()
        seen["new service"] = violations(page)
        page.goto(f"{scene.url}/portal/service/edit?id={scene.service_id}")
        seen["edit service"] = violations(page)
        page.goto(f"{scene.url}/portal/service?id=/subscriptions/nope")
        seen["error"] = violations(page)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{scene.url}/portal/signed-out")
        seen["signed out"] = violations(page)
        # The charts, as a Reader (metrics need `*/read`).
        sign_in(page, scene.url, scene.reader["user_principal_name"], scene.reader["password"])
        page.wait_for_url(f"{scene.url}/portal/")
        page.goto(f"{scene.url}/portal/metrics?id={scene.service_id}")
        page.locator("figure").first.wait_for()
        seen["metrics charts"] = violations(page)
    finally:
        context.close()
    assert {k: v for k, v in seen.items() if v} == {}
