"""Tests of the identity edge: local PKI, client credentials, tokens, HTTP endpoints."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import socket
import ssl
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine

from privatelink.core.principal import Principal
from privatelink.identity.auth import AuthenticationFailed, bearer_principal
from privatelink.identity.credentials import (
    ClientCredentials,
    IdentityFileError,
    ensure_client,
    ensure_signing_key,
    write_credentials_file,
)
from privatelink.identity.pki import Pki, ensure_pki
from privatelink.identity.router import build_identity_router
from privatelink.identity.tokens import (
    InvalidClient,
    InvalidScope,
    InvalidToken,
    StaticDirectory,
    TokenIssuer,
    server_audiences,
)
from privatelink.store.directory import SqlDirectory

with warnings.catch_warnings():
    # Starlette >= 1.x warns at import that it prefers httpx2 over httpx; httpx is what this
    # project depends on, and the warning would otherwise fail collection (warnings = errors).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ARM_SCOPE = "https://management.azure.com/.default"
LEGACY_ARM_SCOPE = "https://management.core.windows.net//.default"
TIMEOUT = 10.0


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def creds(data_dir: Path) -> ClientCredentials:
    return ensure_client(data_dir)


@pytest.fixture
def issuer(data_dir: Path, creds: ClientCredentials) -> TokenIssuer:
    return TokenIssuer(ensure_signing_key(data_dir), StaticDirectory([creds]))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _strict_client_context(ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


@contextlib.contextmanager
def _tls_server(pki: Pki) -> Iterator[tuple[int, list[BaseException]]]:
    """A one-connection TLS server on 127.0.0.1 that sends b"hello" after the handshake."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(pki.cert_file), str(pki.key_file))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(TIMEOUT)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")
        except (OSError, ssl.SSLError) as exc:  # recorded; a client-side failure may cause it
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], errors
    finally:
        thread.join(TIMEOUT)
        listener.close()


def _tls_fetch(port: int, ctx: ssl.SSLContext, hostname: str) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        return tls.recv(16)


# --- PKI ---------------------------------------------------------------------------


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_pki_chain_verifies_strictly_over_real_tls(data_dir: Path, hostname: str) -> None:
    pki = ensure_pki(data_dir)
    with _tls_server(pki) as (port, errors):
        assert _tls_fetch(port, _strict_client_context(pki.ca_file), hostname) == b"hello"
    assert errors == []


def test_pki_rejects_other_hostname(data_dir: Path) -> None:
    pki = ensure_pki(data_dir)
    with (
        _tls_server(pki) as (port, _errors),
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        _tls_fetch(port, _strict_client_context(pki.ca_file), "example.com")


def test_pki_is_not_trusted_without_its_ca(data_dir: Path, tmp_path: Path) -> None:
    pki = ensure_pki(data_dir)
    other = ensure_pki(tmp_path / "other")
    with (
        _tls_server(pki) as (port, _errors),
        pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
    ):
        _tls_fetch(port, _strict_client_context(other.ca_file), "127.0.0.1")


def test_pki_certificate_profile(data_dir: Path) -> None:
    pki = ensure_pki(data_dir)
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    chain = x509.load_pem_x509_certificates(pki.cert_file.read_bytes())
    leaf = chain[0]
    assert chain[1] == ca
    now = dt.datetime.now(dt.UTC)

    ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_bc.critical and ca_bc.value.ca
    ca_ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ca_ku.key_cert_sign and ca_ku.crl_sign
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    leaf_bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert leaf_bc.critical and not leaf_bc.value.ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    leaf.verify_directly_issued_by(ca)

    assert now - dt.timedelta(days=1) < leaf.not_valid_before_utc < now
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert dt.timedelta(days=700) < lifetime < dt.timedelta(days=800)
    assert ca.not_valid_after_utc >= leaf.not_valid_after_utc


def test_pki_files_are_reused(data_dir: Path) -> None:
    first = ensure_pki(data_dir)
    contents = {p: p.read_bytes() for p in (first.ca_file, first.cert_file, first.key_file)}
    second = ensure_pki(data_dir)
    assert second == first
    assert {p: p.read_bytes() for p in contents} == contents
    assert [p.name for p in (first.ca_file, first.cert_file, first.key_file)] == [
        "ca.pem",
        "server.pem",
        "server-key.pem",
    ]


def test_pki_regenerated_when_incomplete(data_dir: Path) -> None:
    first = ensure_pki(data_dir)
    old_ca = first.ca_file.read_bytes()
    first.key_file.unlink()
    second = ensure_pki(data_dir)
    assert second.key_file.exists()
    assert second.ca_file.read_bytes() != old_ca
    with _tls_server(second) as (port, errors):
        assert _tls_fetch(port, _strict_client_context(second.ca_file), "127.0.0.1") == b"hello"
    assert errors == []


def test_pki_regenerated_when_ca_does_not_match(data_dir: Path, tmp_path: Path) -> None:
    first = ensure_pki(data_dir)
    first.ca_file.write_bytes(ensure_pki(tmp_path / "other").ca_file.read_bytes())
    second = ensure_pki(data_dir)
    ca = x509.load_pem_x509_certificate(second.ca_file.read_bytes())
    x509.load_pem_x509_certificates(second.cert_file.read_bytes())[0].verify_directly_issued_by(ca)


def test_secret_files_have_mode_600(data_dir: Path, creds: ClientCredentials) -> None:
    pki = ensure_pki(data_dir)
    ensure_signing_key(data_dir)
    cred_file = write_credentials_file(data_dir, "https://127.0.0.1:1", pki.ca_file, creds)
    for name in ("server-key.pem", "identity.json", "token-signing-key.pem"):
        assert _mode(data_dir / name) == 0o600, name
    assert cred_file == data_dir / "credentials.json"
    assert _mode(cred_file) == 0o600


# --- credentials --------------------------------------------------------------------


def test_client_is_persisted_and_reused(data_dir: Path) -> None:
    first = ensure_client(data_dir)
    assert ensure_client(data_dir) == first
    stored = json.loads((data_dir / "identity.json").read_text())
    assert stored == {
        "tenant_id": first.tenant_id,
        "client_id": first.client_id,
        "client_secret": first.client_secret,
        "object_id": first.object_id,
    }
    ids = {first.tenant_id, first.client_id, first.object_id}
    assert len(ids) == 3
    for value in ids:
        assert len(value) == 36 and value.count("-") == 4
    assert len(first.client_secret) >= 32


def test_clients_are_random(tmp_path: Path) -> None:
    a, b = ensure_client(tmp_path / "a"), ensure_client(tmp_path / "b")
    assert a.tenant_id != b.tenant_id and a.client_secret != b.client_secret


def test_corrupt_identity_file_is_reported(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "identity.json").write_text('{"tenant_id": "x"}')
    with pytest.raises(IdentityFileError, match="client_id"):
        ensure_client(data_dir)


def test_credentials_file_content(data_dir: Path, creds: ClientCredentials) -> None:
    pki = ensure_pki(data_dir)
    path = write_credentials_file(data_dir, "https://127.0.0.1:8443", pki.ca_file, creds)
    assert json.loads(path.read_text()) == {
        "url": "https://127.0.0.1:8443",
        "ca_file": str(pki.ca_file.resolve()),
        "tenant_id": creds.tenant_id,
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
    }


def test_signing_key_is_reused(data_dir: Path) -> None:
    key = ensure_signing_key(data_dir)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert ensure_signing_key(data_dir).private_numbers() == key.private_numbers()


# --- tokens -------------------------------------------------------------------------


def test_token_round_trip(issuer: TokenIssuer, creds: ClientCredentials) -> None:
    response = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, ARM_SCOPE)
    assert response["token_type"] == "Bearer"
    assert response["expires_in"] == 3600 and isinstance(response["expires_in"], int)
    assert response["ext_expires_in"] == 3600
    token = response["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == issuer.kid
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "https://management.azure.com"
    assert claims["iss"] == f"https://sts.privatelink.local/{creds.tenant_id}/"
    assert claims["tid"] == creds.tenant_id
    assert claims["oid"] == claims["sub"] == creds.object_id
    assert claims["appid"] == claims["azp"] == creds.client_id
    assert claims["nbf"] == claims["iat"] and claims["exp"] == claims["iat"] + 3600
    assert issuer.verify(token) == Principal(
        tenant_id=creds.tenant_id, object_id=creds.object_id, client_id=creds.client_id
    )


def test_legacy_double_slash_scope(issuer: TokenIssuer, creds: ClientCredentials) -> None:
    token = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, LEGACY_ARM_SCOPE)[
        "access_token"
    ]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == (
        "https://management.core.windows.net/"
    )
    assert issuer.verify(token).client_id == creds.client_id


def test_tenant_and_client_ids_are_case_insensitive(
    issuer: TokenIssuer, creds: ClientCredentials
) -> None:
    token = issuer.issue(
        creds.tenant_id.upper(), creds.client_id.upper(), creds.client_secret, ARM_SCOPE
    )["access_token"]
    assert issuer.verify(token).tenant_id == creds.tenant_id


def test_token_survives_issuer_restart(data_dir: Path, creds: ClientCredentials) -> None:
    first = TokenIssuer(ensure_signing_key(data_dir), StaticDirectory([creds]))
    token = first.issue(creds.tenant_id, creds.client_id, creds.client_secret, ARM_SCOPE)
    second = TokenIssuer(ensure_signing_key(data_dir), StaticDirectory([ensure_client(data_dir)]))
    assert second.kid == first.kid
    assert second.verify(token["access_token"]).object_id == creds.object_id


@pytest.mark.parametrize(
    ("field", "value", "error", "status"),
    [
        ("client_secret", "wrong", "invalid_client", 401),
        ("client_secret", "", "invalid_client", 401),
        ("client_id", "00000000-0000-4000-8000-000000000000", "unauthorized_client", 400),
        ("tenant_id", "00000000-0000-4000-8000-000000000000", "invalid_request", 400),
    ],
)
def test_bad_client_credentials_rejected(
    issuer: TokenIssuer, creds: ClientCredentials, field: str, value: str, error: str, status: int
) -> None:
    args = {
        "tenant_id": creds.tenant_id,
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
    } | {field: value}
    with pytest.raises(InvalidClient) as info:
        issuer.issue(scope=ARM_SCOPE, **args)
    assert (info.value.error, info.value.status) == (error, status)
    assert creds.client_secret not in info.value.description


@pytest.mark.parametrize(
    ("scope", "error"),
    [
        ("", "invalid_request"),
        ("https://management.azure.com", "invalid_scope"),
        ("https://vault.azure.net/.default", "invalid_resource"),
        (f"{ARM_SCOPE} https://graph.microsoft.com/.default", "invalid_scope"),
    ],
)
def test_bad_scope_rejected(
    issuer: TokenIssuer, creds: ClientCredentials, scope: str, error: str
) -> None:
    with pytest.raises(InvalidScope) as info:
        issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, scope)
    assert info.value.error == error and info.value.status == 400


def test_reserved_oidc_scopes_are_ignored(issuer: TokenIssuer, creds: ClientCredentials) -> None:
    scope = f"{ARM_SCOPE} offline_access openid profile"
    token = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, scope)
    assert issuer.verify(token["access_token"]).client_id == creds.client_id


def test_expired_token_rejected(data_dir: Path, creds: ClientCredentials) -> None:
    key = ensure_signing_key(data_dir)
    two_hours_ago = time.time() - 7200
    old = TokenIssuer(key, StaticDirectory([creds]), clock=lambda: two_hours_ago)
    token = old.issue(creds.tenant_id, creds.client_id, creds.client_secret, ARM_SCOPE)
    with pytest.raises(InvalidToken, match="expiry UTC time") as info:
        TokenIssuer(key, StaticDirectory([creds])).verify(token["access_token"])
    assert info.value.reason == "expired"


def test_not_yet_valid_token_rejected(data_dir: Path, creds: ClientCredentials) -> None:
    key = ensure_signing_key(data_dir)
    future = time.time() + 3600
    token = TokenIssuer(key, StaticDirectory([creds]), clock=lambda: future).issue(
        creds.tenant_id, creds.client_id, creds.client_secret, ARM_SCOPE
    )
    with pytest.raises(InvalidToken) as info:
        TokenIssuer(key, StaticDirectory([creds])).verify(token["access_token"])
    assert info.value.reason == "not_yet_valid"


def _forge(issuer: TokenIssuer, key: rsa.RSAPrivateKey, creds: ClientCredentials, **claims) -> str:
    """A token like the issuer's, with some claims replaced, signed by ``key``."""
    real = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, ARM_SCOPE)
    payload = jwt.decode(real["access_token"], options={"verify_signature": False}) | claims
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": issuer.kid})


@pytest.mark.parametrize(
    "audience",
    ["https://graph.microsoft.com", "https://management.azure.com.evil", "api://other"],
)
def test_wrong_audience_rejected(
    data_dir: Path, issuer: TokenIssuer, creds: ClientCredentials, audience: str
) -> None:
    token = _forge(issuer, ensure_signing_key(data_dir), creds, aud=audience)
    with pytest.raises(InvalidToken, match="wrong audience") as info:
        issuer.verify(token)
    assert info.value.reason == "wrong_audience"


@pytest.mark.parametrize(
    "audience",
    [
        "https://management.azure.com",
        "https://management.azure.com/",
        "https://management.core.windows.net",
        "https://management.core.windows.net/",
    ],
)
def test_arm_audiences_accepted(
    data_dir: Path, issuer: TokenIssuer, creds: ClientCredentials, audience: str
) -> None:
    token = _forge(issuer, ensure_signing_key(data_dir), creds, aud=audience)
    assert issuer.verify(token).tenant_id == creds.tenant_id


def test_extra_audience(data_dir: Path, creds: ClientCredentials) -> None:
    issuer = TokenIssuer(
        ensure_signing_key(data_dir),
        StaticDirectory([creds]),
        arm_audiences=["https://127.0.0.1:8443/"],
    )
    scope = "https://127.0.0.1:8443/.default"
    token = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, scope)
    assert issuer.verify(token["access_token"]).client_id == creds.client_id


def test_bad_signature_rejected(issuer: TokenIssuer, creds: ClientCredentials) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken, match="signature") as info:
        issuer.verify(_forge(issuer, other_key, creds))
    assert info.value.reason == "bad_signature"


def test_tampered_claims_rejected(issuer: TokenIssuer, creds: ClientCredentials) -> None:
    token = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, ARM_SCOPE)
    header, payload, signature = token["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["oid"] = "00000000-0000-4000-8000-000000000000"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken) as info:
        issuer.verify(f"{header}.{forged}.{signature}")
    assert info.value.reason == "bad_signature"


def test_wrong_issuer_rejected(
    data_dir: Path, issuer: TokenIssuer, creds: ClientCredentials
) -> None:
    token = _forge(issuer, ensure_signing_key(data_dir), creds, iss="https://sts.windows.net/x/")
    with pytest.raises(InvalidToken) as info:
        issuer.verify(token)
    assert info.value.reason == "wrong_issuer"


def test_foreign_key_and_garbage_rejected(issuer: TokenIssuer, tmp_path: Path) -> None:
    other_creds = ensure_client(tmp_path / "other")
    other = TokenIssuer(ensure_signing_key(tmp_path / "other"), StaticDirectory([other_creds]))
    token = other.issue(
        other_creds.tenant_id, other_creds.client_id, other_creds.client_secret, ARM_SCOPE
    )
    with pytest.raises(InvalidToken, match="unknown key") as info:
        issuer.verify(token["access_token"])
    assert info.value.reason == "unknown_key"
    for garbage in ("", "abc", "a.b.c"):
        with pytest.raises(InvalidToken) as info:
            issuer.verify(garbage)
        assert info.value.reason == "malformed"


def test_hs256_token_rejected(issuer: TokenIssuer, creds: ClientCredentials) -> None:
    real = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, ARM_SCOPE)
    payload = jwt.decode(real["access_token"], options={"verify_signature": False})
    token = jwt.encode(payload, "x" * 32, algorithm="HS256", headers={"kid": issuer.kid})
    with pytest.raises(InvalidToken, match="RS256"):
        issuer.verify(token)


# --- tokens per tenant (the directory) ----------------------------------------------


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[SqlDirectory]:
    engine = create_engine(f"sqlite:///{tmp_path / 'directory.db'}")
    yield SqlDirectory(engine)
    engine.dispose()


@pytest.fixture
def tenant_issuer(data_dir: Path, directory: SqlDirectory) -> TokenIssuer:
    arm, graph = server_audiences("127.0.0.1", 9443)
    return TokenIssuer(
        ensure_signing_key(data_dir), directory, arm_audiences=arm, graph_audiences=graph
    )


def test_tokens_carry_the_tenant_and_principal(
    tenant_issuer: TokenIssuer, directory: SqlDirectory
) -> None:
    contoso, contoso_admin, contoso_secret = directory.create_tenant("contoso")
    fabrikam, fabrikam_admin, fabrikam_secret = directory.create_tenant("fabrikam")
    for tenant, admin, secret in (
        (contoso, contoso_admin, contoso_secret),
        (fabrikam, fabrikam_admin, fabrikam_secret),
    ):
        token = tenant_issuer.issue(tenant.tenant_id, admin.app_id, secret, ARM_SCOPE)
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert claims["tid"] == tenant.tenant_id
        assert claims["iss"] == f"https://sts.privatelink.local/{tenant.tenant_id}/"
        assert claims["oid"] == admin.object_id and claims["appid"] == admin.app_id
        assert tenant_issuer.verify(token["access_token"]) == Principal(
            tenant.tenant_id, admin.object_id, admin.app_id
        )


def test_principal_created_later_signs_in_at_once(
    tenant_issuer: TokenIssuer, directory: SqlDirectory
) -> None:
    # The issuer exists before the tenant, the application and its secret.
    tenant, _admin, _secret = directory.create_tenant("late")
    app = directory.create_application(tenant.tenant_id, "worker")
    sp = directory.create_service_principal(tenant.tenant_id, app.app_id)
    _cred, secret = directory.add_password(tenant.tenant_id, app.object_id, "ci")
    token = tenant_issuer.issue(tenant.tenant_id, app.app_id, secret, ARM_SCOPE)
    assert tenant_issuer.verify(token["access_token"]).object_id == sp.object_id
    # A removed secret stops working at once too.
    directory.remove_all_passwords(tenant.tenant_id, app.object_id)
    with pytest.raises(InvalidClient) as info:
        tenant_issuer.issue(tenant.tenant_id, app.app_id, secret, ARM_SCOPE)
    assert info.value.aadsts_code == 7000215


def test_client_of_another_tenant_is_unknown(
    tenant_issuer: TokenIssuer, directory: SqlDirectory
) -> None:
    contoso, _admin, _secret = directory.create_tenant("contoso")
    _fabrikam, fabrikam_admin, fabrikam_secret = directory.create_tenant("fabrikam")
    with pytest.raises(InvalidClient) as info:
        tenant_issuer.issue(contoso.tenant_id, fabrikam_admin.app_id, fabrikam_secret, ARM_SCOPE)
    assert (info.value.error, info.value.status, info.value.aadsts_code) == (
        "unauthorized_client",
        400,
        700016,
    )
    assert info.value.to_oauth()["error_description"].startswith("AADSTS700016: ")
    assert fabrikam_secret not in info.value.description


@pytest.mark.parametrize(
    ("tenant", "client", "secret", "code"),
    [
        ("00000000-0000-4000-8000-000000000000", "admin", "secret", 90002),
        ("tenant", "00000000-0000-4000-8000-000000000000", "secret", 700016),
        ("tenant", "admin", "wrong", 7000215),
        ("tenant", "admin", "", 7000218),
    ],
)
def test_directory_sign_in_errors(
    tenant_issuer: TokenIssuer,
    directory: SqlDirectory,
    tenant: str,
    client: str,
    secret: str,
    code: int,
) -> None:
    t, admin, real = directory.create_tenant("contoso")
    with pytest.raises(InvalidClient) as info:
        tenant_issuer.issue(
            t.tenant_id if tenant == "tenant" else tenant,
            admin.app_id if client == "admin" else client,
            real if secret == "secret" else secret,
            ARM_SCOPE,
        )
    assert info.value.aadsts_code == code


@pytest.mark.parametrize(
    ("scope", "resource"),
    [
        (ARM_SCOPE, "arm"),
        (LEGACY_ARM_SCOPE, "arm"),
        ("https://127.0.0.1:9443/.default", "arm"),
        ("https://127.0.0.1:9443//.default", "arm"),
        ("https://localhost:9443/.default", "arm"),
        ("https://graph.microsoft.com/.default", "graph"),
        ("https://127.0.0.1:9443/graph/.default", "graph"),
        ("https://127.0.0.1:9443/graph//.default", "graph"),
        ("https://localhost:9443/graph/.default", "graph"),
    ],
)
def test_audience_classes(
    tenant_issuer: TokenIssuer, directory: SqlDirectory, scope: str, resource: str
) -> None:
    tenant, admin, secret = directory.create_tenant("contoso")
    token = tenant_issuer.issue(tenant.tenant_id, admin.app_id, secret, scope)["access_token"]
    assert tenant_issuer.verify(token, resource).object_id == admin.object_id  # type: ignore[arg-type]
    other = "graph" if resource == "arm" else "arm"
    with pytest.raises(InvalidToken, match="wrong audience") as info:
        tenant_issuer.verify(token, other)  # type: ignore[arg-type]
    assert info.value.reason == "wrong_audience"


def test_another_servers_port_is_not_an_audience(
    tenant_issuer: TokenIssuer, directory: SqlDirectory
) -> None:
    tenant, admin, secret = directory.create_tenant("contoso")
    with pytest.raises(InvalidScope) as info:
        tenant_issuer.issue(
            tenant.tenant_id, admin.app_id, secret, "https://127.0.0.1:9444/.default"
        )
    assert info.value.error == "invalid_resource"


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("127.0.0.1", []),
        ("0.0.0.0", []),
        ("localhost", []),
        ("pl.example.com", ["https://pl.example.com:8443"]),
        ("10.1.2.3", ["https://10.1.2.3:8443"]),
        ("::1", ["https://[::1]:8443"]),
    ],
)
def test_server_audiences(host: str, extra: list[str]) -> None:
    arm, graph = server_audiences(host, 8443)
    assert list(arm) == ["https://127.0.0.1:8443", "https://localhost:8443", *extra]
    assert list(graph) == [f"{a}/graph" for a in arm]


def test_static_directory_matches_the_protocol(creds: ClientCredentials) -> None:
    static = StaticDirectory([creds])
    assert static.check_client(creds.tenant_id, creds.client_id, creds.client_secret)[0] == "ok"
    assert static.check_client(creds.tenant_id, creds.client_id, "")[0] == "bad_secret"
    assert static.check_client(creds.tenant_id, "x", "y") == ("no_client", None)
    assert static.check_client("x", creds.client_id, "y") == ("no_tenant", None)
    tenant = static.get_tenant(creds.tenant_id.upper())
    assert tenant is not None and tenant.tenant_id == creds.tenant_id


def test_openid_configuration_per_tenant(
    tenant_issuer: TokenIssuer, directory: SqlDirectory
) -> None:
    app = FastAPI()
    app.include_router(build_identity_router(tenant_issuer))
    with TestClient(app, base_url="https://127.0.0.1:9443") as http:
        assert http.get("/nobody/v2.0/.well-known/openid-configuration").status_code == 400
        tenant, admin, secret = directory.create_tenant("contoso")
        config = http.get(f"/{tenant.tenant_id.upper()}/v2.0/.well-known/openid-configuration")
        assert config.status_code == 200
        assert config.json()["issuer"] == f"https://sts.privatelink.local/{tenant.tenant_id}/"
        assert "https://127.0.0.1:9443/graph/.default" in config.json()["scopes_supported"]
        form = {
            "grant_type": "client_credentials",
            "client_id": admin.app_id,
            "client_secret": secret,
            "scope": "https://127.0.0.1:9443/graph/.default",
        }
        reply = http.post(f"/{tenant.tenant_id}/oauth2/v2.0/token", data=form)
        assert reply.status_code == 200, reply.text
        assert tenant_issuer.verify(reply.json()["access_token"], "graph").tenant_id == (
            tenant.tenant_id
        )
        unknown = http.post("/00000000-0000-4000-8000-000000000000/oauth2/v2.0/token", data=form)
        assert unknown.status_code == 400
        assert unknown.json()["error_description"].startswith("AADSTS90002: ")


# --- HTTP endpoints (in-process) ----------------------------------------------------


@pytest.fixture
def client(issuer: TokenIssuer) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(build_identity_router(issuer))
    with TestClient(app, base_url="https://127.0.0.1:9443") as test_client:
        yield test_client


def _form(creds: ClientCredentials, **overrides: str) -> dict[str, str]:
    return {
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "grant_type": "client_credentials",
        "client_info": "1",
        "scope": ARM_SCOPE,
    } | overrides


def test_openid_configuration(client: TestClient, creds: ClientCredentials) -> None:
    tenant = creds.tenant_id
    response = client.get(f"/{tenant}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    config = response.json()
    base = f"https://127.0.0.1:9443/{tenant}"
    assert config["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert config["device_authorization_endpoint"] == f"{base}/oauth2/v2.0/devicecode"
    assert config["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert config["issuer"] == f"https://sts.privatelink.local/{tenant}/"
    assert "response_types_supported" in config

    v1 = client.get(f"/{tenant}/.well-known/openid-configuration").json()
    assert v1["token_endpoint"] == f"{base}/oauth2/token"


def test_openid_configuration_unknown_tenant(client: TestClient) -> None:
    response = client.get("/no-such-tenant/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"


@pytest.mark.parametrize("tenant", ["organizations", "common"])
def test_openid_configuration_for_users_of_any_tenant(client: TestClient, tenant: str) -> None:
    """Where MSAL's user flows start: Entra ID's issuer names the `{tenantid}` template."""
    response = client.get(f"/{tenant}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    body = response.json()
    assert body["issuer"] == "https://sts.privatelink.local/{tenantid}/"
    assert body["token_endpoint"].endswith(f"/{tenant}/oauth2/v2.0/token")
    assert "authorization_code" in body["grant_types_supported"]
    assert body["code_challenge_methods_supported"] == ["S256"]


def test_token_endpoint_v2(
    client: TestClient, issuer: TokenIssuer, creds: ClientCredentials
) -> None:
    response = client.post(
        f"/{creds.tenant_id}/oauth2/v2.0/token",
        data=_form(creds),
        headers={"client-request-id": "abc"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["client-request-id"] == "abc"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert issuer.verify(body["access_token"]).object_id == creds.object_id

    # The advertised JWKS verifies the token on its own.
    jwks = client.get(f"/{creds.tenant_id}/discovery/v2.0/keys").json()
    (jwk,) = jwks["keys"]
    assert jwk["kid"] == issuer.kid and jwk["kty"] == "RSA" and jwk["use"] == "sig"
    claims = jwt.decode(
        body["access_token"],
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience="https://management.azure.com",
    )
    assert claims["tid"] == creds.tenant_id


def test_token_endpoint_v1_resource(
    client: TestClient, issuer: TokenIssuer, creds: ClientCredentials
) -> None:
    form = _form(creds, resource="https://management.core.windows.net/")
    del form["scope"]
    response = client.post(f"/{creds.tenant_id}/oauth2/token", data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resource"] == "https://management.core.windows.net/"
    assert int(body["expires_on"]) > time.time()
    assert issuer.verify(body["access_token"]).client_id == creds.client_id


def test_token_endpoint_basic_auth(client: TestClient, creds: ClientCredentials) -> None:
    form = _form(creds)
    del form["client_secret"]
    response = client.post(
        f"/{creds.tenant_id}/oauth2/v2.0/token",
        data=form,
        auth=(creds.client_id, creds.client_secret),
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_secret": "nope"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": ""}, 400, "invalid_request"),
        ({"client_id": ""}, 400, "invalid_request"),
        ({"scope": "https://vault.azure.net/.default"}, 400, "invalid_resource"),
    ],
)
def test_token_endpoint_errors(
    client: TestClient,
    creds: ClientCredentials,
    overrides: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = client.post(f"/{creds.tenant_id}/oauth2/v2.0/token", data=_form(creds, **overrides))
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_description"].startswith("AADSTS")
    assert response.headers["connection"] == "close"
    assert creds.client_secret not in response.text


def test_token_endpoint_requires_form_body(client: TestClient, creds: ClientCredentials) -> None:
    response = client.post(f"/{creds.tenant_id}/oauth2/v2.0/token", json=_form(creds))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"

    repeated = "grant_type=client_credentials&grant_type=password"
    response = client.post(
        f"/{creds.tenant_id}/oauth2/v2.0/token",
        content=repeated,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert "repeated" in response.json()["error_description"]


def test_token_endpoint_unknown_tenant(client: TestClient, creds: ClientCredentials) -> None:
    response = client.post("/someone-else/oauth2/v2.0/token", data=_form(creds))
    assert response.status_code == 400
    assert "AADSTS90002" in response.json()["error_description"]


def test_instance_discovery(client: TestClient, creds: ClientCredentials) -> None:
    response = client.get(
        "/common/discovery/instance",
        params={
            "api-version": "1.1",
            "authorization_endpoint": f"https://127.0.0.1:9443/{creds.tenant_id}/oauth2/v2.0/authorize",
        },
    )
    assert response.status_code == 200
    assert response.json()["tenant_discovery_endpoint"] == (
        f"https://127.0.0.1:9443/{creds.tenant_id}/v2.0/.well-known/openid-configuration"
    )


# --- bearer dependency --------------------------------------------------------------


@pytest.fixture
def protected(issuer: TokenIssuer) -> Iterator[TestClient]:
    app = FastAPI()

    @app.exception_handler(AuthenticationFailed)
    async def _render(request: Request, exc: AuthenticationFailed) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message}},
            status_code=exc.status,
            headers={"WWW-Authenticate": exc.www_authenticate("https://127.0.0.1:9443/t")},
        )

    @app.get("/whoami")
    async def whoami(principal: Principal = Depends(bearer_principal(issuer))) -> dict:
        return {"oid": principal.object_id}

    with TestClient(app, base_url="https://127.0.0.1:9443") as test_client:
        yield test_client


def test_bearer_dependency_accepts_valid_token(
    protected: TestClient, issuer: TokenIssuer, creds: ClientCredentials
) -> None:
    token = issuer.issue(creds.tenant_id, creds.client_id, creds.client_secret, ARM_SCOPE)
    response = protected.get(
        "/whoami", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert response.status_code == 200
    assert response.json() == {"oid": creds.object_id}


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "AuthenticationFailed"),
        ("Basic abc", "AuthenticationFailed"),
        ("Bearer", "AuthenticationFailed"),
        ("Bearer not-a-jwt", "InvalidAuthenticationToken"),
    ],
)
def test_bearer_dependency_rejects(protected: TestClient, header: str | None, code: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = protected.get("/whoami", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.headers["www-authenticate"].startswith(
        'Bearer authorization_uri="https://127.0.0.1:9443/t"'
    )


def test_authentication_failed_attributes() -> None:
    exc = AuthenticationFailed("nope", code="InvalidAuthenticationToken", reason="expired")
    assert (exc.status, exc.code, exc.message, exc.reason) == (
        401,
        "InvalidAuthenticationToken",
        "nope",
        "expired",
    )


# --- azure-identity against a real TLS server ---------------------------------------


@contextlib.contextmanager
def _uvicorn_tls(app: FastAPI, pki: Pki) -> Iterator[int]:
    """Serve ``app`` over TLS on a free 127.0.0.1 port in a thread; yield the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        ssl_certfile=str(pki.cert_file),
        ssl_keyfile=str(pki.key_file),
        log_level="warning",
        lifespan="off",
        # Bound the stop: idle TLS keep-alive connections can otherwise delay it by 30 s.
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours proxy variables; the local server must be reached directly.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.usefixtures("no_proxy")
def test_azure_identity_client_secret_credential(
    data_dir: Path, issuer: TokenIssuer, creds: ClientCredentials
) -> None:
    from azure.identity import ClientSecretCredential

    pki = ensure_pki(data_dir)
    app = FastAPI()
    app.include_router(build_identity_router(issuer))
    with _uvicorn_tls(app, pki) as port:
        authority = f"https://127.0.0.1:{port}"
        with ClientSecretCredential(
            creds.tenant_id,
            creds.client_id,
            creds.client_secret,
            authority=authority,
            disable_instance_discovery=True,
            connection_verify=str(pki.ca_file),
        ) as credential:
            token = credential.get_token(ARM_SCOPE)
        assert token.expires_on > time.time() + 3000
        assert issuer.verify(token.token) == Principal(
            tenant_id=creds.tenant_id, object_id=creds.object_id, client_id=creds.client_id
        )

        _assert_wrong_secret_reported(authority, creds, pki.ca_file)


def _assert_wrong_secret_reported(authority: str, creds: ClientCredentials, ca_file: Path) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    with (
        ClientSecretCredential(
            creds.tenant_id,
            creds.client_id,
            "wrong-secret",
            authority=authority,
            disable_instance_discovery=True,
            connection_verify=str(ca_file),
        ) as credential,
        pytest.raises(ClientAuthenticationError, match="AADSTS7000215"),
    ):
        credential.get_token(ARM_SCOPE)
