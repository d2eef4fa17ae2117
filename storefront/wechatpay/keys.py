"""PEM loading, merchant certificate serials and demo key generation.

Loading a PEM costs tens of milliseconds: callers load once and keep the objects.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .errors import WeChatPayError

PublicKey = rsa.RSAPublicKey
PrivateKey = rsa.RSAPrivateKey


def load_private_key(pem: bytes) -> PrivateKey:
    """The merchant's ``apiclient_key.pem`` (PKCS#8 or PKCS#1)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise WeChatPayError("WeChat Pay API v3 keys are RSA keys")
    return key


def load_public_key(pem: bytes) -> PublicKey:
    """``pub_key.pem`` (``BEGIN PUBLIC KEY``) or the public key inside a certificate."""
    if b"BEGIN CERTIFICATE" in pem:
        key = x509.load_pem_x509_certificate(pem).public_key()
    else:
        key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise WeChatPayError("WeChat Pay API v3 keys are RSA keys")
    return key


def certificate_serial(pem: bytes) -> str:
    """Serial of a certificate as WeChat writes it: 40 upper-case hex digits, leading zeros kept
    (``openssl x509 -serial`` keeps them too; ``hex()`` would drop them)."""
    return format(x509.load_pem_x509_certificate(pem).serial_number, "040X")


def same_serial(a: str, b: str) -> bool:
    """Compare hex serials as numbers: formatting may drop leading zeros or change case."""
    try:
        return int(a, 16) == int(b, 16)
    except ValueError:
        return False


def generate_private_key() -> PrivateKey:
    """A fresh RSA-2048 key, the size WeChat Pay uses."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_certificate(key: PrivateKey, common_name: str, days: int = 1825) -> bytes:
    """A self-signed certificate PEM, standing in for the one WeChat Pay's CA issues."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Storefront demo (not issued by WeChat Pay)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, the format of WeChat's ``apiclient_key.pem``."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, the format of WeChat Pay's ``pub_key.pem``."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
