"""The portal in a real Chromium: a provider's user signs in through the server's sign-in
page (authorization code with PKCE) and sees, on the Private Link Center overview, the
pending connection a consumer in another tenant asked for. A wrong password gets the
generic error page; sign-out ends the session. Screenshots of each page: tests/browser/
conftest.py `SHOTS`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from arm_bodies import Rule, lb_body, provider_vnet_body
from identities import ROLES, Identity, create_tenant

from privatelink.identity.signin import WRONG_CREDENTIALS

pytestmark = pytest.mark.browser

LOCATION = "eastus"


@dataclass
class Scene:
    """What the tests look at: the provider's user and the pending connection."""

    url: str
    user: dict[str, Any]
    service: str
    endpoint_id: str
    message: str


def _user(admin: Identity, role: str, scope: str) -> dict[str, Any]:
    user = (
        admin.http()
        .post("/privatelink/admin/tenants/default/users", json={"name": f"u{uuid.uuid4().hex[:6]}"})
        .json()
    )
    sub = scope.split("/")[2]
    admin.authorization(sub).role_assignments.create(
        scope,
        str(uuid.uuid4()),
        {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/"
                f"roleDefinitions/{ROLES[role]}",
                "principalId": user["object_id"],
                "principalType": "User",
            }
        },
    )
    return dict(user)


@pytest.fixture(scope="module")
def scene(portal_server: Any) -> Iterator[Scene]:
    """A provider service (default tenant) with a manual connection from a consumer
    endpoint in a tenant of its own, and a provider user with Reader on the provider's
    subscription."""
    creds = portal_server.credentials
    admin = Identity.from_json(dict(creds, url=portal_server.url, ca_file=portal_server.ca_file))
    sub = creds["subscription_id"]
    net = admin.network(sub)
    rg = "provider"
    base = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"
    admin.http().put(
        f"/subscriptions/{sub}/resourcegroups/{rg}",
        params={"api-version": "2022-09-01"},
        json={"location": LOCATION},
    ).raise_for_status()
    net.virtual_networks.begin_create_or_update(rg, "vnet", provider_vnet_body(LOCATION)).result()
    net.load_balancers.begin_create_or_update(
        rg,
        "lb",
        lb_body(
            f"{base}/loadBalancers/lb",
            f"{base}/virtualNetworks/vnet/subnets/frontend",
            LOCATION,
            rules=[Rule("http", "fe", "be")],
        ),
    ).result()
    service = net.private_link_services.begin_create_or_update(
        rg,
        "pls-web",
        {
            "location": LOCATION,
            "properties": {
                "loadBalancerFrontendIpConfigurations": [
                    {"id": f"{base}/loadBalancers/lb/frontendIPConfigurations/fe"}
                ],
                "ipConfigurations": [
                    {
                        "name": "nat",
                        "properties": {
                            "subnet": {"id": f"{base}/virtualNetworks/vnet/subnets/nat"},
                            "primary": True,
                        },
                    }
                ],
                "visibility": {"subscriptions": ["*"]},
            },
        },
    ).result()
    consumer = create_tenant(admin, f"cons{uuid.uuid4().hex[:6]}")
    csub = consumer.subscription_id
    cnet = consumer.network(csub)
    consumer.http().put(
        f"/subscriptions/{csub}/resourcegroups/consumer",
        params={"api-version": "2022-09-01"},
        json={"location": LOCATION},
    ).raise_for_status()
    cnet.virtual_networks.begin_create_or_update(
        "consumer",
        "cvnet",
        {
            "location": LOCATION,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.8.0.0/16"]},
                "subnets": [{"name": "pe", "properties": {"addressPrefix": "10.8.1.0/24"}}],
            },
        },
    ).result()
    message = "Contoso web tier, please approve"
    endpoint = cnet.private_endpoints.begin_create_or_update(
        "consumer",
        "pe-web",
        {
            "location": LOCATION,
            "properties": {
                "subnet": {
                    "id": f"/subscriptions/{csub}/resourceGroups/consumer/providers/"
                    "Microsoft.Network/virtualNetworks/cvnet/subnets/pe"
                },
                "manualPrivateLinkServiceConnections": [
                    {
                        "name": "conn",
                        "properties": {
                            "privateLinkServiceId": service.id,
                            "requestMessage": message,
                        },
                    }
                ],
            },
        },
    ).result()
    user = _user(admin, "Reader", f"/subscriptions/{sub}")
    yield Scene(portal_server.url, user, "pls-web", endpoint.id, message)
    consumer.close()
    admin.close()


def sign_in(page: Any, url: str, name: str, password: str) -> None:
    page.goto(f"{url}/portal/")
    page.get_by_label("Sign-in name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


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
