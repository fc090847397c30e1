"""The portal's private endpoints in a real Chromium: the consumer's user lists its
endpoint (Pending) and opens it (connection, NIC address, DNS configuration); a Reader
trying to create one gets ARM's 403 on the form; a Network Contributor of the consumer
subscription creates one by the service's alias with a manual request, sees it Pending,
and the provider's overview counts it. Screenshots: `20-*`.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from axe_check import violations
from portal_scene import Scene, _user, sign_in

pytestmark = pytest.mark.browser


NEW_MESSAGE = "Fabrikam reporting, by alias"
ENDPOINT_PAGE = re.compile(r"/portal/endpoint\?id=")


def signed_in(page: Any, scene: Scene, user: dict[str, Any]) -> None:
    sign_in(page, scene.url, user["user_principal_name"], user["password"])
    page.wait_for_url(f"{scene.url}/portal/")


def fill_form(page: Any, target: str, group: str, name: str, message: str = "") -> None:
    page.get_by_label("Private link service alias or resource id").fill(target)
    page.get_by_label("Manual request").check()
    page.get_by_label("Request message").fill(message)
    page.get_by_label("Resource group").fill(group)
    page.get_by_label("Name", exact=True).fill(name)


def submit(page: Any) -> int:
    """Send the form; the status of the POST's answer (a redirect's final page aside)."""
    with page.expect_response(
        lambda r: r.request.method == "POST" and "/portal/endpoints/new" in r.url
    ) as answer:
        page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    status: int = answer.value.status
    return status


def test_the_consumer_lists_its_endpoint_and_opens_it(scene: Scene, page: Any, shot: Any) -> None:
    signed_in(page, scene, scene.consumer_user)
    page.goto(f"{scene.url}/portal/endpoints")
    table = page.get_by_role("table", name="Private endpoints")
    row = table.get_by_role("row").filter(has_text="pe-web")
    assert "Pending" in row.inner_text()
    assert "cvnet/pe" in row.inner_text()
    shot(page, "20-endpoints")
    row.get_by_role("link", name="pe-web").click()
    page.wait_for_url(ENDPOINT_PAGE)
    assert page.get_by_role("heading", name="pe-web").is_visible()
    connections = page.get_by_role("table", name="Connections")
    assert "Pending" in connections.inner_text()
    assert scene.message in connections.inner_text()
    assert scene.service_id in connections.inner_text()
    assert "10.8.1." in page.get_by_role("table", name="Network interface").inner_text()
    assert page.get_by_role("heading", name="DNS configuration").is_visible()
    assert page.get_by_role("heading", name="Private DNS zone groups").is_visible()
    shot(page, "21-endpoint")
    # Not an endpoint's id: ARM is not even asked.
    page.goto(f"{scene.url}/portal/endpoint?id=/subscriptions/x")
    assert "InvalidResourceId" in page.get_by_role("alert").inner_text()


def test_a_reader_creating_an_endpoint_gets_arms_403(scene: Scene, page: Any, shot: Any) -> None:
    signed_in(page, scene, scene.consumer_user)
    page.goto(f"{scene.url}/portal/endpoints")
    page.get_by_role("link", name="Create a private endpoint").click()
    page.wait_for_url("**/portal/endpoints/new")
    fill_form(page, scene.alias, "consumer", "pe-reader", "from a reader")
    assert submit(page) == 403
    assert "AuthorizationFailed" in page.get_by_role("alert").inner_text()
    # The form again, with the user's values.
    assert page.get_by_label("Name", exact=True).input_value() == "pe-reader"
    assert page.get_by_label("Request message").input_value() == "from a reader"
    assert page.get_by_label("Manual request").is_checked()
    shot(page, "22-create-forbidden")
    # Forced posts: a stale CSRF token, and a name that would change the ARM path.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    form = {
        "csrf": csrf,
        "target": scene.alias,
        "subscription": scene.endpoint_id.split("/")[2],
        "group": "consumer",
        "name": "a/b",
        "subnet": "x",
    }
    forced = page.request.post(f"{scene.url}/portal/endpoints/new", form=form)
    assert forced.status == 400 and "InvalidResourceName" in forced.text()
    forced = page.request.post(f"{scene.url}/portal/endpoints/new", form=form | {"csrf": "x"})
    assert forced.status == 403 and "InvalidCsrfToken" in forced.text()


def test_a_network_contributor_creates_an_endpoint_by_alias(
    scene: Scene, browser: Any, page: Any, shot: Any
) -> None:
    consumer = scene.consumer
    assert consumer is not None
    sub = consumer.subscription_id
    maker = _user(consumer, "Network Contributor", f"/subscriptions/{sub}", tenant=consumer.name)
    signed_in(page, scene, maker)
    page.goto(f"{scene.url}/portal/endpoints/new")
    # A resource group that does not exist: ARM's error, never a group made silently.
    fill_form(page, scene.alias, "no-such-group", "pe-alias", NEW_MESSAGE)
    assert submit(page) == 404
    assert "ResourceGroupNotFound" in page.get_by_role("alert").inner_text()
    shot(page, "23-create-no-group")
    # By resource id and automatic: the maker holds no approval right on the provider's
    # service, so ARM refuses (a request without it must be manual).
    page.get_by_label("Private link service alias or resource id").fill(scene.service_id)
    page.get_by_label("Resource group").fill("consumer")
    page.get_by_label("Manual request").uncheck()
    assert submit(page) == 403
    assert "LinkedAuthorizationFailed" in page.get_by_role("alert").inner_text()
    assert not page.get_by_label("Manual request").is_checked()
    fill_form(page, scene.alias, "consumer", "pe-alias", NEW_MESSAGE)
    assert submit(page) == 303
    page.wait_for_url(ENDPOINT_PAGE)
    assert page.get_by_role("heading", name="pe-alias").is_visible()
    connections = page.get_by_role("table", name="Connections")
    assert "Pending" in connections.inner_text()
    assert NEW_MESSAGE in connections.inner_text()
    assert "Manual request" in connections.inner_text()
    shot(page, "24-created-by-alias")
    page.goto(f"{scene.url}/portal/endpoints")
    row = page.get_by_role("row").filter(has_text="pe-alias")
    assert "Pending" in row.inner_text()
    shot(page, "25-endpoints-with-new")
    # The same name again: the form creates, it does not overwrite (ARM's 412).
    page.goto(f"{scene.url}/portal/endpoints/new")
    fill_form(page, scene.alias, "consumer", "pe-alias", "again")
    assert submit(page) == 412
    assert "PreconditionFailed" in page.get_by_role("alert").inner_text()
    # The provider's overview counts the new request with the scene's own.
    provider = browser.new_context(
        viewport={"width": 1280, "height": 800}, ignore_https_errors=True
    )
    try:
        theirs = provider.new_page()
        signed_in(theirs, scene, scene.user)
        assert theirs.locator("#count-pending").inner_text() == "2"
        assert NEW_MESSAGE in theirs.get_by_role("table", name="Pending connections").inner_text()
        shot(theirs, "26-provider-overview-pending")
    finally:
        provider.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_violations_on_the_endpoint_pages(
    scene: Scene, browser: Any, shot: Any, width: int
) -> None:
    context = browser.new_context(
        viewport={"width": width, "height": 800}, ignore_https_errors=True, bypass_csp=True
    )
    try:
        page = context.new_page()
        signed_in(page, scene, scene.consumer_user)
        seen = {}
        page.goto(f"{scene.url}/portal/endpoints")
        seen["endpoints"] = violations(page)
        page.goto(f"{scene.url}/portal/endpoint?id={scene.endpoint_id}")
        seen["endpoint"] = violations(page)
        page.goto(f"{scene.url}/portal/endpoints/new")
        seen["new"] = violations(page)
        fill_form(page, scene.alias, "consumer", "pe-axe")
        submit(page)
        page.get_by_role("alert").first.wait_for()
        seen["new with error"] = violations(page)
        if width < 400:
            shot(page, "27-create-error-phone")
    finally:
        context.close()
    assert {k: v for k, v in seen.items() if v} == {}
