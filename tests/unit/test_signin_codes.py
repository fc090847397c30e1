"""The sign-in page's pure parts: PKCE challenges (checked against MSAL's own), which
redirect URIs may receive a code, and authorization codes (single use, short-lived,
bound to their client, redirect URI and verifier)."""

from __future__ import annotations

import pytest
from msal.oauth2cli.oauth2 import _generate_pkce_code_verifier

from privatelink.identity.signin import (
    CODE_LIFETIME,
    AuthorizationCodes,
    challenge_of,
    redirect_allowed,
)
from privatelink.identity.tokens import PORTAL_CLIENT_ID, TokenRequestError


def test_the_challenge_is_msals_s256() -> None:
    for _ in range(20):
        pkce = _generate_pkce_code_verifier()
        assert pkce["transformation"] == "S256"
        assert challenge_of(pkce["code_verifier"]) == pkce["code_challenge"].decode()


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("https://127.0.0.1:8443/portal/signin", True),  # the server's own origin
        ("https://127.0.0.1:8443/", True),
        ("http://localhost:8400", True),  # a native client's loopback listener (az)
        ("http://localhost", True),
        ("http://127.0.0.1:9/cb", True),
        ("https://evil.example/cb", False),
        ("https://127.0.0.1:8444/portal", False),  # another port is another origin
        ("http://127.0.0.1:8443/portal", True),  # plain http to loopback: a native client
        ("http://10.0.0.1:8443/portal", False),  # plain http elsewhere: never
        ("https://localhost.evil.example/", False),
        ("https://127.0.0.1:8443/portal#frag", False),
        ("javascript:alert(1)", False),
        ("", False),
        ("http://[::1", False),  # unparsable
    ],
)
def test_codes_go_only_to_this_origin_or_loopback(uri: str, allowed: bool) -> None:
    assert redirect_allowed(uri, "https://127.0.0.1:8443") is allowed


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _issue(codes: AuthorizationCodes, verifier: str = "v" * 43) -> str:
    return codes.issue(
        tenant_id="t",
        object_id="o",
        client_id=PORTAL_CLIENT_ID,
        redirect_uri="https://h/portal",
        code_challenge=challenge_of(verifier),
        scope="https://management.azure.com/.default",
        nonce="n",
    )


def test_a_code_redeems_once_for_its_client_uri_and_verifier() -> None:
    codes = AuthorizationCodes(_Clock())
    code = _issue(codes)
    grant = codes.redeem(code, PORTAL_CLIENT_ID, "https://h/portal", "v" * 43)
    assert (grant.tenant_id, grant.object_id, grant.nonce) == ("t", "o", "n")
    with pytest.raises(TokenRequestError) as again:
        codes.redeem(code, PORTAL_CLIENT_ID, "https://h/portal", "v" * 43)
    assert again.value.error == "invalid_grant" and again.value.aadsts_code == 70008


@pytest.mark.parametrize(
    ("client", "uri", "verifier", "aadsts"),
    [
        ("04b07795-8ddb-461a-bbee-02f9e1bf7b46", "https://h/portal", "v" * 43, 50148),
        (PORTAL_CLIENT_ID, "https://h/other", "v" * 43, 50148),
        (PORTAL_CLIENT_ID, "https://h/portal", "w" * 43, 501481),
    ],
)
def test_a_code_asked_for_otherwise_is_refused_and_used_up(
    client: str, uri: str, verifier: str, aadsts: int
) -> None:
    codes = AuthorizationCodes(_Clock())
    code = _issue(codes)
    with pytest.raises(TokenRequestError) as refused:
        codes.redeem(code, client, uri, verifier)
    assert refused.value.aadsts_code == aadsts
    # A stolen code tried with a wrong verifier cannot then be redeemed by anyone.
    with pytest.raises(TokenRequestError):
        codes.redeem(code, PORTAL_CLIENT_ID, "https://h/portal", "v" * 43)
    assert len(codes) == 0


def test_a_code_expires() -> None:
    clock = _Clock()
    codes = AuthorizationCodes(clock)
    code = _issue(codes)
    clock.now += CODE_LIFETIME + 1
    with pytest.raises(TokenRequestError) as late:
        codes.redeem(code, PORTAL_CLIENT_ID, "https://h/portal", "v" * 43)
    assert late.value.aadsts_code == 70008
    # Expired codes are dropped when the next one is issued.
    _issue(codes)
    assert len(codes) == 1
