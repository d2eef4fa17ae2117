"""Parsing WeChat Pay notifications: verify the raw bytes, then decrypt the resource.

WeChat Pay API v3 "支付通知" / "退款结果通知": the outer JSON carries an
``encrypt-resource`` that only the APIv3 key opens.
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import aead
from .errors import NotificationError
from .verify import Verification, Verifier

NONCE_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Transaction:
    """A payment as WeChat Pay describes it, in a query answer or a decrypted notification."""

    appid: str
    mchid: str
    out_trade_no: str
    trade_state: str
    trade_state_desc: str = ""
    transaction_id: str | None = None
    trade_type: str | None = None
    success_time: str | None = None
    amount_total: int | None = None
    payer_total: int | None = None
    currency: str | None = None
    payer_openid: str | None = None
    attach: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transaction:
        """:raise NotificationError: if a required field is missing or of the wrong type."""
        try:
            amount = data.get("amount") or {}
            payer = data.get("payer") or {}
            total = amount.get("total")
            if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
                raise TypeError("amount.total must be an integer")
            return cls(
                appid=str(data["appid"]),
                mchid=str(data["mchid"]),
                out_trade_no=str(data["out_trade_no"]),
                trade_state=str(data["trade_state"]),
                trade_state_desc=str(data.get("trade_state_desc", "")),
                transaction_id=data.get("transaction_id"),
                trade_type=data.get("trade_type"),
                success_time=data.get("success_time"),
                amount_total=total,
                payer_total=amount.get("payer_total"),
                currency=amount.get("currency"),
                payer_openid=payer.get("openid"),
                attach=data.get("attach"),
                raw=dict(data),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise NotificationError(f"transaction lacks a field: {exc}") from exc


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted notification."""

    id: str
    create_time: str
    event_type: str
    summary: str
    original_type: str
    resource: dict[str, Any]
    verification: Verification
    outer: dict[str, Any] = field(repr=False, compare=False)
    plaintext: bytes = field(default=b"", repr=False, compare=False)  # the resource as decrypted

    def transaction(self) -> Transaction:
        """The payment inside a ``TRANSACTION.*`` notification."""
        return Transaction.from_dict(self.resource)


def parse_notification(
    headers: Mapping[str, str],
    body: bytes,
    verifier: Verifier,
    aes: AESGCM,
    *,
    now: float | None = None,
) -> Notification:
    """Verify and decrypt one notification.

    :raise SignatureError: headers, timestamp or signature refused (checked first, on raw bytes).
    :raise DecryptError: the resource does not open with the APIv3 key.
    :raise NotificationError: the JSON is not a WeChat Pay notification.
    """
    verification = verifier.verify(headers, body, now=now)
    try:
        outer = json.loads(body)
        if outer.get("resource_type") != "encrypt-resource":
            raise NotificationError(f"unsupported resource_type {outer.get('resource_type')!r}")
        resource = outer["resource"]
        if resource.get("algorithm") != aead.ALGORITHM:
            raise NotificationError(f"unsupported algorithm {resource.get('algorithm')!r}")
        plaintext = aead.decrypt(
            aes, resource["nonce"], resource["ciphertext"], resource.get("associated_data") or ""
        )
        decrypted = json.loads(plaintext)
        if not isinstance(decrypted, dict):
            raise NotificationError("resource is not a JSON object")
        return Notification(
            id=str(outer["id"]),
            create_time=str(outer.get("create_time", "")),
            event_type=str(outer["event_type"]),
            summary=str(outer.get("summary", "")),
            original_type=str(resource.get("original_type", "")),
            resource=decrypted,
            verification=verification,
            outer=outer,
            plaintext=plaintext,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NotificationError(f"not a WeChat Pay notification: {exc}") from exc


def build_notification(
    aes: AESGCM,
    resource: Mapping[str, Any] | bytes,
    *,
    event_type: str,
    summary: str,
    create_time: str,
    original_type: str = "transaction",
    associated_data: str | None = None,
    event_id: str | None = None,
    nonce: str | None = None,
) -> bytes:
    """The outer JSON of a notification as WeChat Pay sends it, resource encrypted with the APIv3 key.

    The counterpart of ``parse_notification`` (WeChat Pay API v3 "支付通知" / "退款结果通知"):
    ``resource`` (a dict, or its exact JSON bytes) is sealed with AEAD_AES_256_GCM under a fresh
    12-character nonce, ``associated_data`` defaulting to ``original_type``. The answer is the exact
    bytes to sign and send.
    """
    if associated_data is None:
        associated_data = original_type
    if nonce is None:
        nonce = "".join(secrets.choice(NONCE_ALPHABET) for _ in range(aead.NONCE_BYTES))
    plaintext = resource if isinstance(resource, bytes) else _compact(resource).encode("utf-8")
    outer = {
        "id": event_id or str(uuid.uuid4()),
        "create_time": create_time,
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {
            "original_type": original_type,
            "algorithm": aead.ALGORITHM,
            "ciphertext": aead.encrypt(aes, nonce, plaintext, associated_data),
            "associated_data": associated_data,
            "nonce": nonce,
        },
    }
    return _compact(outer).encode("utf-8")


def _compact(data: Mapping[str, Any]) -> str:
    # As json_body in client.py: compact, Chinese kept as UTF-8.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
