"""Verifying what WeChat Pay signed: API answers and notifications.

WeChat Pay API v3 "签名验证": ``Wechatpay-Timestamp\\nWechatpay-Nonce\\nbody\\n`` signed with
the WeChat Pay public key (``PUB_KEY_ID_…``) or a platform certificate, chosen by
``Wechatpay-Serial``. Cheap checks come first; the RSA verify comes last.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from .errors import SignatureError
from .keys import PublicKey, same_serial
from .signing import SIGNATURE_TYPE, signing_string

MAX_SKEW_SECONDS = 300
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"
SIGNED_HEADERS = ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial")


def verify_signature(public_key: PublicKey, message: str, signature: str) -> None:
    """Check one Base64 RSA-SHA256 signature. :raise SignatureError: if it does not verify."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SignatureError("signature does not verify") from exc


@dataclass(frozen=True)
class Verification:
    """What a successful check established, kept for the flow record."""

    serial: str
    timestamp: str
    nonce: str
    message: str


def _header(headers: Mapping[str, str], name: str) -> str:
    # requests and werkzeug headers are case-insensitive; a plain dict may not be.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value or ""


class Verifier:
    """Holds WeChat Pay's verification keys by serial and checks signed messages."""

    def __init__(
        self,
        keys: Mapping[str, PublicKey] | None = None,
        *,
        fallback: Callable[[str], PublicKey | None] | None = None,
    ) -> None:
        self._keys: dict[str, PublicKey] = dict(keys or {})
        # Asked for a serial none of ``keys`` matches: platform certificates, downloaded on demand.
        self.fallback = fallback

    def add_key(self, serial: str, public_key: PublicKey) -> None:
        """Trust one more key: the public key id, or a platform certificate's serial."""
        self._keys[serial] = public_key

    def knows(self, serial: str) -> bool:
        return self._key_for(serial) is not None

    def _key_for(self, serial: str) -> PublicKey | None:
        key = self._keys.get(serial)
        if key is None:
            # Certificate serials are hex numbers: WeChat may write leading zeros or another case
            # than certificate_serial() does, so compare them as numbers (PUB_KEY_ID_… stays exact).
            key = next((k for known, k in self._keys.items() if same_serial(known, serial)), None)
        if key is None and self.fallback is not None:
            key = self.fallback(serial)
        return key

    @property
    def serials(self) -> list[str]:
        return list(self._keys)

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> Verification:
        """Verify headers and the raw body bytes. :raise SignatureError: saying which check failed."""
        values = {name: _header(headers, name) for name in SIGNED_HEADERS}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise SignatureError(f"missing header {', '.join(missing)}", "headers")
        signature_type = _header(headers, "Wechatpay-Signature-Type") or SIGNATURE_TYPE
        if signature_type != SIGNATURE_TYPE:
            raise SignatureError(f"unsupported Wechatpay-Signature-Type {signature_type}", "headers")
        serial = values["Wechatpay-Serial"]
        public_key = self._key_for(serial)
        if public_key is None:
            raise SignatureError(f"unknown Wechatpay-Serial {serial}", "serial")
        timestamp = values["Wechatpay-Timestamp"]
        if not timestamp.isascii() or not timestamp.isdigit():
            raise SignatureError("Wechatpay-Timestamp is not a number", "timestamp")
        try:
            skew = abs((time.time() if now is None else now) - int(timestamp))
        except ValueError:
            raise SignatureError("Wechatpay-Timestamp is not a number", "timestamp") from None
        if skew >= MAX_SKEW_SECONDS:
            raise SignatureError("Wechatpay-Timestamp is more than 5 minutes off", "timestamp")
        signature = values["Wechatpay-Signature"]
        if signature.startswith(PROBE_PREFIX):
            # WeChat Pay's deliberate probes: a shop that accepts them does not verify at all.
            raise SignatureError("signature probe (WECHATPAY/SIGNTEST/) refused", "probe")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8", "encoding") from None
        message = signing_string(timestamp, values["Wechatpay-Nonce"], text)
        verify_signature(public_key, message, signature)
        return Verification(serial, timestamp, values["Wechatpay-Nonce"], message)
