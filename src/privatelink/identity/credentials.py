"""The default tenant's admin identity, the key that signs tokens, and credential files.

Owns three files in the data directory, all mode 600:

* ``identity.json``: the default tenant's admin service principal (tenant id, client
  id, client secret, object id), created on first use and then reused so that tokens
  and ``credentials.json`` stay valid across restarts. The server imports it into the
  directory (``store/directory.py``) as the tenant named ``default``; the directory is
  where every tenant's principals are checked;
* ``credentials.json``: what a client needs to connect (url, CA bundle, tenant, client
  id and secret), rewritten whenever the server starts on a new url;
* ``token-signing-key.pem``: the RSA key used for RS256 access tokens.

Other tenants' credential files (``tenants/<name>.json``, written by ``privatelink
tenant create``) have the fields of ``credentials.json`` plus ``object_id`` and ``name``
and are written with :func:`write_secret_json`.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from privatelink.core.ids import new_guid
from privatelink.identity.pki import data_dir_lock, restrict, write_file_atomic

IDENTITY_FILE = "identity.json"
CREDENTIALS_FILE = "credentials.json"
SIGNING_KEY_FILE = "token-signing-key.pem"

_FIELDS = ("tenant_id", "client_id", "client_secret", "object_id")


class IdentityFileError(ValueError):
    """A persisted identity file exists but cannot be used."""


@dataclass(frozen=True)
class ClientCredentials:
    """A service principal: its tenant, application (client) id, secret and object id."""

    tenant_id: str
    client_id: str
    client_secret: str
    object_id: str


def new_client() -> ClientCredentials:
    """Return a fresh client in a fresh tenant (not persisted)."""
    return ClientCredentials(
        tenant_id=new_guid(),
        client_id=new_guid(),
        # 30 bytes -> 40 url-safe characters, about the length of an Entra ID secret.
        client_secret=secrets.token_urlsafe(30),
        object_id=new_guid(),
    )


def ensure_client(data_dir: Path) -> ClientCredentials:
    """Load the client from ``<data_dir>/identity.json``, creating it on first use.

    Raises :class:`IdentityFileError` when the file exists but is invalid: silently
    replacing it would invalidate every credential handed out so far.
    """
    data_dir = Path(data_dir)
    path = data_dir / IDENTITY_FILE
    with data_dir_lock(data_dir):
        if path.exists():
            restrict(path, 0o600)
            return _load_client(path)
        creds = new_client()
        write_file_atomic(path, _dump_json(asdict(creds)), 0o600)
        return creds


def _load_client(path: Path) -> ClientCredentials:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IdentityFileError(f"{path}: cannot read identity file: {exc}") from exc
    if not isinstance(raw, dict):
        raise IdentityFileError(f"{path}: expected a JSON object")
    values: dict[str, str] = {}
    for field in _FIELDS:
        value = raw.get(field)
        if not isinstance(value, str) or not value:
            raise IdentityFileError(f"{path}: missing or empty string field {field!r}")
        values[field] = value
    for field in ("tenant_id", "client_id", "object_id"):
        try:
            # Canonical lower-case form: tenants and clients are compared case-insensitively.
            values[field] = str(uuid.UUID(values[field]))
        except ValueError as exc:
            raise IdentityFileError(f"{path}: {field} is not a GUID") from exc
    return ClientCredentials(**values)


def write_credentials_file(
    data_dir: Path,
    url: str,
    ca_file: Path,
    creds: ClientCredentials,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write ``<data_dir>/credentials.json`` (mode 600) for clients and return its path."""
    data_dir = Path(data_dir)
    path = data_dir / CREDENTIALS_FILE
    payload = {
        "url": url,
        # Absolute, so the file stays usable when read from another working directory.
        "ca_file": str(Path(ca_file).resolve()),
        "tenant_id": creds.tenant_id,
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        **(extra or {}),
    }
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_file_atomic(path, _dump_json(payload), 0o600)
    return path


def write_secret_json(path: Path, payload: dict[str, str]) -> Path:
    """Write a JSON file holding a secret: mode 600, in a directory of mode 700."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is subject to umask, and the directory may be older: make it exact.
    path.parent.chmod(0o700)
    write_file_atomic(path, _dump_json(payload), 0o600)
    return path


def ensure_signing_key(data_dir: Path) -> rsa.RSAPrivateKey:
    """Load the RS256 token-signing key from the data dir, creating it on first use."""
    data_dir = Path(data_dir)
    path = data_dir / SIGNING_KEY_FILE
    with data_dir_lock(data_dir):
        if path.exists():
            restrict(path, 0o600)
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (OSError, ValueError, TypeError) as exc:
                raise IdentityFileError(f"{path}: cannot load signing key: {exc}") from exc
            if not isinstance(key, rsa.RSAPrivateKey):
                raise IdentityFileError(f"{path}: signing key is not an RSA key")
            return key
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_file_atomic(path, pem, 0o600)
        return key


def _dump_json(payload: dict[str, str]) -> bytes:
    return (json.dumps(payload, indent=2) + "\n").encode("utf-8")
