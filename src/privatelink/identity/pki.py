"""Local TLS PKI: a private CA and the server certificate it signs.

Owns ``ca.pem``, ``server.pem`` and ``server-key.pem`` in the data directory. The Azure
SDKs refuse bearer tokens over plain HTTP, so the server must speak TLS with a
certificate the client can verify against ``ca.pem`` (``connection_verify=``). The chain
is built to pass OpenSSL's ``X509_V_FLAG_X509_STRICT`` checks, which urllib3 enables on
Python >= 3.13.

The CA private key is deliberately never written to disk: users are invited to trust
``ca.pem``, and a CA whose key no longer exists cannot be abused to mint certificates
for other hosts. When the server certificate has to be replaced (expired, or files
missing/corrupt), the whole PKI is regenerated and clients must pick up the new
``ca.pem``.

Also hosts :func:`write_file_atomic`, :func:`restrict` and :func:`data_dir_lock`, shared
by the identity modules that persist files. The data directory is kept at mode 700 and
every secret in it at 600, also when it comes from an older, laxer start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:  # POSIX only; on other platforms concurrent first runs are simply not serialized.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"
LOCK_FILE = ".identity.lock"

#: Leaf lifetime. Kept under the 825-day ceiling some TLS clients enforce.
LEAF_VALIDITY = dt.timedelta(days=730)
#: The CA outlives the leaf it signs.
CA_VALIDITY = dt.timedelta(days=3650)
#: Back-date notBefore so a client whose clock is slightly behind still accepts the cert.
BACKDATE = dt.timedelta(hours=1)
#: Regenerate when the leaf is this close to expiry, rather than serve a dying cert.
RENEW_BEFORE = dt.timedelta(days=1)

SERVER_IPS = ("127.0.0.1", "::1")
SERVER_DNS = ("localhost",)


@dataclass(frozen=True)
class Pki:
    """Paths of the CA bundle, the server certificate chain and the server key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def write_file_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with exactly ``mode``, replacing it atomically.

    The temporary file is created with ``mode`` from the start, so secrets are never
    readable by others, even briefly; a crash leaves either the old or the new file.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp already uses 0600; fchmod sets the exact requested mode despite umask.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def restrict(path: Path, mode: int) -> None:
    """Set ``path``'s mode to exactly ``mode`` if it exists.

    Creating files with the right mode is not enough: a file or directory left by an
    older version, a restore or a careless ``chmod`` keeps its mode until we fix it.
    """
    with contextlib.suppress(FileNotFoundError):
        path.chmod(mode)


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Serialize first-run file creation between processes sharing ``data_dir``.

    Without it, two processes starting together could each write half of a PKI (a
    ``ca.pem`` from one, ``server.pem`` from the other) that never verifies.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is subject to umask, and the directory may be older: make it exact.
    data_dir.chmod(0o700)
    if fcntl is None:  # pragma: no cover - non-POSIX
        yield
        return
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def ensure_pki(data_dir: Path) -> Pki:
    """Return the PKI in ``data_dir``, creating (or renewing) it when needed.

    Existing files are reused as long as they parse, the key matches the server
    certificate and the certificate is not about to expire.
    """
    data_dir = Path(data_dir)
    pki = Pki(
        ca_file=data_dir / CA_FILE,
        cert_file=data_dir / CERT_FILE,
        key_file=data_dir / KEY_FILE,
    )
    with data_dir_lock(data_dir):
        if not _is_usable(pki):
            _generate(pki)
        restrict(pki.key_file, 0o600)
    return pki


def _is_usable(pki: Pki) -> bool:
    """True when all files exist, parse, match each other and are not near expiry."""
    try:
        ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
        leaf = x509.load_pem_x509_certificates(pki.cert_file.read_bytes())[0]
        key = serialization.load_pem_private_key(pki.key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, IndexError):
        return False
    if key.public_key() != leaf.public_key():
        return False
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return leaf.not_valid_after_utc - RENEW_BEFORE > dt.datetime.now(dt.UTC)


def _generate(pki: Pki) -> None:
    """Create a fresh CA and server leaf and write all three files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "privatelink"),
            x509.NameAttribute(NameOID.COMMON_NAME, "privatelink local CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        # pathlen 0: this CA may only sign end-entity certificates.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    san += [x509.DNSName(name) for name in SERVER_DNS]
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "privatelink"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Python matches IP hosts only against SAN iPAddress entries, never the CN.
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem)
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_file_atomic(pki.key_file, key_pem, 0o600)
    write_file_atomic(pki.cert_file, leaf_cert.public_bytes(pem) + ca_pem, 0o644)
    write_file_atomic(pki.ca_file, ca_pem, 0o644)
