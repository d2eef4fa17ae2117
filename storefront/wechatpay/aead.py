"""AEAD_AES_256_GCM, as used for notification resources and ``/v3/certificates``.

WeChat Pay API v3 "回调报文解密": the key is the APIv3 key's 32 UTF-8 bytes used as-is,
the nonce is the 12-character string's bytes, and the 16-byte tag ends the ciphertext.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptError

ALGORITHM = "AEAD_AES_256_GCM"
KEY_BYTES = 32
NONCE_BYTES = 12


def cipher(apiv3_key: str | bytes) -> AESGCM:
    """An AES-256-GCM cipher over the APIv3 key; build it once and reuse it."""
    key = apiv3_key.encode("utf-8") if isinstance(apiv3_key, str) else apiv3_key
    if len(key) != KEY_BYTES:
        raise DecryptError("the APIv3 key must be exactly 32 bytes")
    return AESGCM(key)


def decrypt(aes: AESGCM, nonce: str, ciphertext: str, associated_data: str = "") -> bytes:
    """Plaintext bytes of one resource. :raise DecryptError: on any mismatch."""
    nonce_bytes = nonce.encode("utf-8")
    if len(nonce_bytes) != NONCE_BYTES:
        raise DecryptError("nonce must be 12 bytes")
    try:
        sealed = base64.b64decode(ciphertext, validate=True)
        return aes.decrypt(nonce_bytes, sealed, associated_data.encode("utf-8"))
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise DecryptError("resource does not decrypt with this APIv3 key") from exc


def encrypt(aes: AESGCM, nonce: str, plaintext: bytes, associated_data: str = "") -> str:
    """Base64 of ciphertext plus tag, as WeChat Pay puts it in ``resource.ciphertext``."""
    nonce_bytes = nonce.encode("utf-8")
    if len(nonce_bytes) != NONCE_BYTES:
        raise DecryptError("nonce must be 12 bytes")
    return base64.b64encode(aes.encrypt(nonce_bytes, plaintext, associated_data.encode("utf-8"))).decode()
