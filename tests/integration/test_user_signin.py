"""Users sign in against a real server: MSAL's username/password flow (ROPC, what `az
login -u -p` uses) and refresh tokens, and the authorization code flow with PKCE through
the sign-in page (what the portal uses), driven over HTTPS with httpx. The tokens then
work on ARM with the user's own role assignments.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msal
import pytest
import requests
from identities import ROLES, Identity, create_subscription, create_tenant

from privatelink.identity.signin import WRONG_CREDENTIALS, challenge_of
from privatelink.identity.tokens import AZURE_CLI_CLIENT_ID, PORTAL_CLIENT_ID

pytestmark = [
    pytest.mark.integration,
    # MSAL deprecates username/password for public clients; `az login -u -p` still uses it.
    pytest.mark.filterwarnings("ignore:This API has been deprecated:DeprecationWarning"),
]

ARM = "https://management.azure.com/.default"


def fresh(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tenant(server: Any) -> Iterator[Identity]:
    """A new tenant's admin, with a subscription of its own."""
    admin = Identity.from_json(dict(server.credentials, url=server.url, ca_file=server.ca_file))
    made = create_tenant(admin, fresh("si"))
    if not made.subscription_id:
        made.subscription_id = create_subscription(admin, made.name)
    yield made
    made.close()
    admin.close()


def new_user(tenant: Identity, role: str | None = None) -> dict[str, Any]:
    """A user of `tenant` (with `role` on its subscription when given)."""
    user = (
        tenant.http()
        .post(f"/privatelink/admin/tenants/{tenant.name}/users", json={"name": fresh("u")})
        .json()
    )
    if role is not None:
        scope = f"/subscriptions/{tenant.subscription_id}"
        tenant.authorization(tenant.subscription_id).role_assignments.create(
            scope,
            str(uuid.uuid4()),
            {
                "properties": {
                    "roleDefinitionId": f"{scope}/providers/Microsoft.Authorization/"
                    f"roleDefinitions/{ROLES[role]}",
                    "principalId": user["object_id"],
                    "principalType": "User",
                }
            },
        )
    return dict(user)


def cli_app(server: Any) -> msal.PublicClientApplication:
    """MSAL as the Azure CLI configures it, pointed at the server.

    MSAL asks `https://<authority host>/common/userrealm/...` before a username/password
    sign-in, on port 443 whatever the authority's port: a server on another port cannot
    answer it, and MSAL's own record of hosts without realm discovery (which a 404 there
    fills) is filled here instead. The endpoint itself is tested over HTTP below."""
    host = urlsplit(server.url).hostname
    msal.authority.Authority._domains_without_user_realm_discovery.add(host)
    session = requests.Session()
    session.verify = server.ca_file
    session.trust_env = False
    return msal.PublicClientApplication(
        AZURE_CLI_CLIENT_ID,
        authority=f"{server.url}/organizations",
        http_client=session,
        instance_discovery=False,
    )


def arm(server: Any, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        verify=server.ssl_context(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )


def subscriptions(server: Any, token: str) -> list[str]:
    with arm(server, token) as http:
        got = http.get("/subscriptions", params={"api-version": "2022-12-01"})
    assert got.status_code == 200, got.text
    return [s["subscriptionId"] for s in got.json()["value"]]


def test_msal_username_password_and_refresh(server: Any, tenant: Identity) -> None:
    user = new_user(tenant, role="Reader")
    app = cli_app(server)
    got = app.acquire_token_by_username_password(
        user["user_principal_name"], user["password"], scopes=[ARM]
    )
    assert "access_token" in got, got
    claims = got["id_token_claims"]
    assert claims["oid"] == user["object_id"] and claims["tid"] == user["tenant_id"]
    assert claims["preferred_username"] == user["user_principal_name"]
    assert subscriptions(server, got["access_token"]) == [tenant.subscription_id]
    # A Reader: reads pass, writes get ARM's 403.
    with arm(server, got["access_token"]) as http:
        write = http.put(
            f"/subscriptions/{tenant.subscription_id}/resourcegroups/rg1",
            params={"api-version": "2022-09-01"},
            json={"location": "westeurope"},
        )
    assert write.status_code == 403 and write.json()["error"]["code"] == "AuthorizationFailed"
    # Another resource's token comes from the refresh token (what az does between commands).
    (account,) = app.get_accounts()
    other = app.acquire_token_silent(
        ["https://management.core.windows.net//.default"], account=account
    )
    assert other is not None and "access_token" in other, other
    assert other["token_source"] == "identity_provider"
    assert subscriptions(server, other["access_token"]) == [tenant.subscription_id]


def test_user_realm_discovery_says_managed(server: Any) -> None:
    with server.anonymous() as web:
        got = web.get("/common/userrealm/alice@contoso", params={"api-version": "1.0"})
    assert got.status_code == 200
    assert got.json()["account_type"] == "Managed" and got.json()["domain_name"] == "contoso"


def test_wrong_password_and_unknown_user_get_the_same_answer(server: Any, tenant: Identity) -> None:
    user = new_user(tenant)
    app = cli_app(server)
    wrong = app.acquire_token_by_username_password(
        user["user_principal_name"], "not-the-password", scopes=[ARM]
    )
    unknown = app.acquire_token_by_username_password(
        f"nobody{uuid.uuid4().hex[:6]}@{tenant.name}", "not-the-password", scopes=[ARM]
    )
    for answer in (wrong, unknown):
        assert answer["error"] == "invalid_grant" and 50126 in answer["error_codes"], answer
    assert (
        wrong["error_description"].split(" Trace ID")[0]
        == (unknown["error_description"].split(" Trace ID")[0])
    )
    # A deleted user's refresh token redeems nothing.
    fine = app.acquire_token_by_username_password(
        user["user_principal_name"], user["password"], scopes=[ARM]
    )
    assert "refresh_token" in fine
    tenant.http().delete(f"/privatelink/admin/tenants/{tenant.name}/users/{user['object_id']}")
    refreshed = app.acquire_token_by_refresh_token(fine["refresh_token"], scopes=[ARM])
    assert refreshed.get("error") == "invalid_grant" and 50034 in refreshed["error_codes"]


def _page_form(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def test_authorization_code_with_pkce_through_the_sign_in_page(
    server: Any, tenant: Identity
) -> None:
    user = new_user(tenant, role="Reader")
    verifier = secrets.token_urlsafe(48)
    redirect = f"{server.url}/portal/"
    request = {
        "client_id": PORTAL_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect,
        "scope": f"{ARM} openid profile offline_access",
        "state": "s-123",
        "nonce": "n-456",
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
    }
    with server.anonymous() as web:
        page = web.get("/organizations/oauth2/v2.0/authorize", params=request)
        assert page.status_code == 200 and 'name="password"' in page.text
        assert page.headers["x-frame-options"] == "DENY"
        form = _page_form(page.text)
        assert form["code_challenge"] == request["code_challenge"]
        # A wrong password and an unknown name: the same page, the same words.
        wrong = web.post(
            "/organizations/oauth2/v2.0/authorize",
            data=form | {"username": user["user_principal_name"], "password": "nope-nope"},
        )
        nobody = web.post(
            "/organizations/oauth2/v2.0/authorize",
            data=form | {"username": f"nobody@{tenant.name}", "password": "nope-nope"},
        )
        for answer in (wrong, nobody):
            assert answer.status_code == 401 and WRONG_CREDENTIALS in answer.text
        signed = web.post(
            "/organizations/oauth2/v2.0/authorize",
            data=form | {"username": user["user_principal_name"], "password": user["password"]},
        )
        assert signed.status_code == 302, signed.text
        location = urlsplit(signed.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
        query = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert query["state"] == "s-123"
        redeem = {
            "grant_type": "authorization_code",
            "client_id": PORTAL_CLIENT_ID,
            "code": query["code"],
            "redirect_uri": redirect,
            "code_verifier": verifier,
        }
        token = web.post("/organizations/oauth2/v2.0/token", data=redeem)
        assert token.status_code == 200, token.text
        body = token.json()
        assert {"access_token", "id_token", "refresh_token", "client_info"} <= set(body)
        assert subscriptions(server, body["access_token"]) == [tenant.subscription_id]
        # Codes are single use.
        again = web.post("/organizations/oauth2/v2.0/token", data=redeem)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        # A redirect URI elsewhere, or a request without PKCE, never gets a code.
        elsewhere = web.get(
            "/organizations/oauth2/v2.0/authorize",
            params=request | {"redirect_uri": "https://evil.example/cb"},
        )
        assert elsewhere.status_code == 400 and "AADSTS50011" in elsewhere.text
        no_pkce = {k: v for k, v in request.items() if not k.startswith("code_")}
        plain = web.get("/organizations/oauth2/v2.0/authorize", params=no_pkce)
        assert plain.status_code == 400 and "AADSTS9002325" in plain.text
        # Sign-out returns to the portal.
        out = web.get(
            f"/{tenant.tenant_id}/oauth2/v2.0/logout",
            params={"post_logout_redirect_uri": redirect},
        )
        assert out.status_code == 302 and out.headers["location"] == redirect


def test_failed_sign_ins_lock_the_name(server: Any, tenant: Identity) -> None:
    """Entra ID's smart lockout (10 failures) on the sign-in page; then even the right
    password waits, with Retry-After."""
    user = new_user(tenant)
    request = {
        "client_id": PORTAL_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": f"{server.url}/portal/",
        "code_challenge": challenge_of("v" * 43),
        "code_challenge_method": "S256",
    }
    name = user["user_principal_name"]
    with server.anonymous() as web:
        for _ in range(10):
            failed = web.post(
                "/organizations/oauth2/v2.0/authorize",
                data=request | {"username": name, "password": "wrong-password"},
            )
            assert failed.status_code == 401
        locked = web.post(
            "/organizations/oauth2/v2.0/authorize",
            data=request | {"username": name, "password": user["password"]},
        )
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        # The lock is the name's, whichever way it signs in (username/password too).
        ropc = web.post(
            "/organizations/oauth2/v2.0/token",
            data={
                "grant_type": "password",
                "client_id": AZURE_CLI_CLIENT_ID,
                "username": name,
                "password": user["password"],
                "scope": ARM,
            },
        )
        assert ropc.status_code == 429 and int(ropc.headers["retry-after"]) > 0
        assert ropc.json()["error"] == "invalid_grant" and ropc.json()["error_codes"] == [50053]
