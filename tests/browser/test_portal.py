"""The portal in a real Chromium: a provider's user signs in through the server's sign-in
page (authorization code with PKCE) and sees, on the Private Link Center overview, the
pending connection a consumer in another tenant asked for. A wrong password gets the
generic error page; sign-out ends the session. Screenshots of each page: tests/browser/
conftest.py `SHOTS`.
"""

from __future__ import annotations

from typing import Any

import pytest
from portal_scene import Scene, sign_in

from privatelink.identity.signin import WRONG_CREDENTIALS

pytestmark = pytest.mark.browser


def test_a_provider_user_signs_in_and_sees_the_pending_connection(
    scene: Scene, page: Any, shot: Any
) -> None:
    page.goto(f"{scene.url}/portal/")
    # Not signed in: the server's sign-in page, reached through /portal/signin.
    assert "/oauth2/v2.0/authorize" in page.url
    shot(page, "01-sign-in")
    sign_in(page, scene.url, scene.user["user_principal_name"], scene.user["password"])
    page.wait_for_url(f"{scene.url}/portal/")
    assert page.locator("#count-services").inner_text() == "1"
    assert page.locator("#count-pending").inner_text() == "1"
    pending = page.get_by_role("table", name="Pending connections")
    assert scene.endpoint_id in pending.inner_text()
    assert scene.message in pending.inner_text()
    assert scene.user["user_principal_name"] in page.locator("header").inner_text()
    shot(page, "02-overview")
    # Sign-out ends the session: the overview asks for a sign-in again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{scene.url}/portal/signed-out")
    shot(page, "03-signed-out")
    page.goto(f"{scene.url}/portal/")
    assert "/oauth2/v2.0/authorize" in page.url


def test_a_wrong_password_gets_the_generic_error(scene: Scene, page: Any, shot: Any) -> None:
    sign_in(page, scene.url, scene.user["user_principal_name"], "not-the-password")
    alert = page.get_by_role("alert")
    assert alert.inner_text() == WRONG_CREDENTIALS
    shot(page, "04-wrong-password")
    # An unknown name reads the same.
    sign_in(page, scene.url, "nobody@default", "not-the-password")
    assert page.get_by_role("alert").inner_text() == WRONG_CREDENTIALS


def test_approve_then_reject_and_the_consumer_sees_each(
    scene: Scene, browser: Any, shot: Any
) -> None:
    provider = browser.new_context(
        viewport={"width": 1280, "height": 800},
        ignore_https_errors=True,
        permissions=["clipboard-read", "clipboard-write"],
    )
    consumer = browser.new_context(viewport={"width": 390, "height": 844}, ignore_https_errors=True)
    try:
        page = provider.new_page()
        sign_in(page, scene.url, scene.user["user_principal_name"], scene.user["password"])
        page.wait_for_url(f"{scene.url}/portal/")
        page.get_by_role("link", name=scene.service).first.click()
        page.wait_for_load_state()
        assert "/portal/service" in page.url, page.url
        # The copy button puts the alias on the clipboard.
        page.get_by_role("button", name="Copy alias").click()
        page.get_by_text("Copied").wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == scene.alias
        shot(page, "05-service")
        page.get_by_role("checkbox").first.check()
        page.get_by_label("Description").fill("Approved for the web tier")
        page.get_by_role("button", name="Approve").click()
        page.get_by_role("status").filter(has_text="Approved: 1").wait_for()
        assert "Approved" in page.locator("td.state").first.inner_text()
        shot(page, "06-approved")
        # The consumer's user (another tenant), on a phone-width screen, sees Approved.
        theirs = consumer.new_page()
        name, password = scene.consumer_user["user_principal_name"], scene.consumer_user["password"]
        sign_in(theirs, scene.url, name, password)
        theirs.wait_for_url(f"{scene.url}/portal/")
        endpoints = theirs.get_by_role("table", name="Private endpoints")
        assert "Approved" in endpoints.inner_text()
        shot(theirs, "07-consumer-approved-phone")
        # Rejected next, with a reason; the consumer's page follows.
        page.get_by_role("checkbox").first.check()
        page.get_by_label("Description").fill("Not this quarter")
        page.get_by_role("button", name="Reject").click()
        page.get_by_role("status").filter(has_text="Rejected: 1").wait_for()
        theirs.reload()
        assert "Rejected" in theirs.get_by_role("table", name="Private endpoints").inner_text()
    finally:
        provider.close()
        consumer.close()


def test_a_reader_sees_no_decision_buttons_and_a_forced_one_gets_403(
    scene: Scene, page: Any, shot: Any
) -> None:
    sign_in(page, scene.url, scene.reader["user_principal_name"], scene.reader["password"])
    page.wait_for_url(f"{scene.url}/portal/")
    page.goto(f"{scene.url}/portal/service?id={scene.service_id}")
    assert page.get_by_role("heading", name=scene.service).is_visible()
    for button in ("Approve", "Reject", "Remove"):
        assert page.get_by_role("button", name=button).count() == 0
    assert page.get_by_role("link", name="Edit settings").count() == 0
    shot(page, "08-reader-service")
    # The request the buttons would send, forced: ARM's 403, shown with its code.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    connection = scene.endpoint_id.rsplit("/", 1)[1]
    forced = page.request.post(
        f"{scene.url}/portal/service/connections",
        form={"csrf": csrf, "id": scene.service_id, "action": "Approved", "connection": connection},
    )
    assert forced.status == 403
    assert "AuthorizationFailed" in forced.text()


def test_the_pending_list_decides_across_services(scene: Scene, page: Any, shot: Any) -> None:
    """`/portal/pending`: every connection awaiting a decision, approved from the list;
    `/portal/services` counts them."""
    asked = scene.ask("pe-two", "second tier, please")
    sign_in(page, scene.url, scene.user["user_principal_name"], scene.user["password"])
    page.wait_for_url(f"{scene.url}/portal/")
    page.get_by_role("link", name="Pending connections").click()
    page.wait_for_url(f"{scene.url}/portal/pending")
    table = page.get_by_role("table", name="Pending connections")
    assert asked in table.inner_text() and "second tier, please" in table.inner_text()
    shot(page, "09-pending")
    row = page.get_by_role("row").filter(has_text=asked)
    row.get_by_role("checkbox").check()
    page.get_by_label("Description").fill("welcome")
    page.get_by_role("button", name="Approve").click()
    page.get_by_role("status").filter(has_text="Approved: 1").wait_for()
    assert asked not in page.locator("main").inner_text()
    page.get_by_role("link", name="Private link services").click()
    services = page.get_by_role("table", name="Private link services")
    assert scene.service in services.inner_text()
    shot(page, "10-services")


def test_create_and_edit_a_service(scene: Scene, page: Any, shot: Any) -> None:
    """The new-service form shows ARM's refusal with its code (the frontend serves a
    service already) and keeps the values; the edit form changes a setting."""
    sign_in(page, scene.url, scene.user["user_principal_name"], scene.user["password"])
    page.wait_for_url(f"{scene.url}/portal/")
    page.goto(f"{scene.url}/portal/services")
    page.get_by_role("link", name="New private link service").click()
    page.get_by_role("button", name="Choose").click()
    page.get_by_label("Resource group").fill("provider")
    page.get_by_label("Name", exact=True).fill("pls-two")
    page.get_by_label("Location").fill("eastus")
    page.get_by_label("Visibility").fill("*")
    page.get_by_role("button", name="Create").click()
    alert = page.get_by_role("alert")
    assert "FrontendIpConfigurationInUseByAnotherPrivateLinkService" in alert.inner_text()
    assert page.get_by_label("Name", exact=True).input_value() == "pls-two"
    shot(page, "11-new-service-refused")
    page.goto(f"{scene.url}/portal/service/edit?id={scene.service_id}")
    page.get_by_label("FQDNs").fill("web.contoso.example")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert "/portal/service?id=" in page.url
    assert "web.contoso.example" in page.locator("dl.facts").inner_text()
    shot(page, "12-service-edited")


def test_the_services_metrics_page_draws_its_charts(scene: Scene, page: Any, shot: Any) -> None:
    """Four charts from Azure Monitor's metrics API (no traffic here: the data plane is
    off in this tier, so the lines lie at zero or say there is no data yet). Reading
    metrics takes `Microsoft.Insights/metrics/read` (Reader's `*/read`; Network
    Contributor has no such right, and gets ARM's refusal)."""
    sign_in(page, scene.url, scene.user["user_principal_name"], scene.user["password"])
    page.wait_for_url(f"{scene.url}/portal/")
    page.goto(f"{scene.url}/portal/metrics?id={scene.service_id}")
    assert "Microsoft.Insights/metrics/read" in page.get_by_role("alert").inner_text()
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, scene.url, scene.reader["user_principal_name"], scene.reader["password"])
    page.wait_for_url(f"{scene.url}/portal/")
    page.goto(f"{scene.url}/portal/service?id={scene.service_id}")
    page.get_by_role("link", name="Metrics").click()
    page.wait_for_load_state()
    titles = [t.inner_text() for t in page.locator("figcaption strong").all()]
    assert titles == ["Bytes in", "Bytes out", "NAT port usage", "New connections"]
    assert page.get_by_role("img").count() == 4
    shot(page, "13-metrics-hour")
    page.get_by_role("link", name="Last day").click()
    page.wait_for_load_state()
    assert "span=P1D" in page.url and page.get_by_role("img").count() == 4


def test_the_topology_shows_the_links_and_refreshes(scene: Scene, page: Any, shot: Any) -> None:
    """Endpoints, their links by state, the service and its frontend, drawn as SVG; the
    page fetches a new drawing by itself (the live backends: test_portal_live.py)."""
    sign_in(page, scene.url, scene.user["user_principal_name"], scene.user["password"])
    page.wait_for_url(f"{scene.url}/portal/")
    page.goto(f"{scene.url}/portal/service?id={scene.service_id}")
    page.get_by_role("link", name="Topology").click()
    page.wait_for_load_state()
    drawing = page.locator("#topology svg")
    assert drawing.get_attribute("role") == "img"
    assert page.locator("#service").text_content().startswith(scene.service)
    assert page.locator("#fe-fe").count() == 1
    endpoint = scene.endpoint_id.rsplit("/", 1)[1]
    assert page.locator(f"[id='link-{endpoint}']").count() == 1
    shot(page, "14-topology")
    # The drawing is fetched again: a change made meanwhile shows without a reload.
    with page.expect_response(lambda r: "/portal/topology.svg" in r.url, timeout=10_000) as got:
        pass
    assert got.value.status == 200
