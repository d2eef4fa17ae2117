"""Shared material for the pure protocol tests (test_wechatpay_*.py): vectors, keys, builders.

Not a conftest: test modules import what they use, e.g. ``from protocol_fixtures import VECTORS, keys``.
Everything comes from tests/vectors/ (throwaway keys, see its README.txt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from storefront.wechatpay import aead, signing
from storefront.wechatpay import keys as wpkeys
from storefront.wechatpay.notify import build_notification

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
VECTORS: dict[str, Any] = json.loads((VECTORS_DIR / "vectors.json").read_text(encoding="utf-8"))
IDS: dict[str, str] = VECTORS["identities"]

MCHID = IDS["mchid"]
APPID = IDS["appid"]
MINIPROGRAM_APPID = IDS["mini_program_appid"]
MERCHANT_SERIAL = IDS["merchant_serial_no"]
PLATFORM_SERIAL = IDS["platform_cert_serial_no"]
PUB_KEY_ID = IDS["wechatpay_public_key_id"]
APIV3_KEY = (VECTORS_DIR / "apiv3_key.txt").read_text(encoding="ascii")


def pem(name: str) -> bytes:
    """Raw bytes of one PEM file in tests/vectors/."""
    return (VECTORS_DIR / name).read_bytes()


@dataclass(frozen=True)
class Keys:
    """Loaded vector keys. Loading PEMs is slow-ish, so this is built once per session."""

    merchant: wpkeys.PrivateKey  # apiclient_key.pem: signs requests and paySign
    merchant_public: wpkeys.PublicKey  # from apiclient_cert.pem: what WeChat Pay verifies with
    platform: wpkeys.PrivateKey  # WeChat Pay's signing key (the simulator's side only)
    wechatpay_public: wpkeys.PublicKey  # pub_key.pem, id PUB_KEY_ID
    platform_cert_public: wpkeys.PublicKey  # the same key, from the platform certificate


@cache
def load_keys() -> Keys:
    return Keys(
        merchant=wpkeys.load_private_key(pem("merchant_apiclient_key.pem")),
        merchant_public=wpkeys.load_public_key(pem("merchant_apiclient_cert.pem")),
        platform=wpkeys.load_private_key(pem("wechatpay_platform_private_key.pem")),
        wechatpay_public=wpkeys.load_public_key(pem("wechatpay_pub_key.pem")),
        platform_cert_public=wpkeys.load_public_key(pem("wechatpay_platform_cert.pem")),
    )


@pytest.fixture(scope="session")
def keys() -> Keys:
    """The vector keys, loaded once."""
    return load_keys()


def notification_body(
    resource_plaintext: bytes,
    *,
    nonce: str = "n0tIfY5eEd12",
    associated_data: str = "transaction",
    apiv3_key: str = APIV3_KEY,
    event_type: str = "TRANSACTION.SUCCESS",
) -> bytes:
    """The outer JSON of a notification, resource encrypted the way WeChat Pay does it."""
    return build_notification(aead.cipher(apiv3_key), resource_plaintext, event_type=event_type, summary="支付成功",
                              create_time="2026-11-27T10:34:56+08:00", associated_data=associated_data,
                              event_id="EV-2026112700000001", nonce=nonce)


def signed_by_wechatpay(
    body: bytes, *, timestamp: int, nonce: str = "5f4e3d2c1b0a99887766554433221100", serial: str = PUB_KEY_ID
) -> dict[str, str]:
    """``Wechatpay-*`` headers over ``body``, signed with the vector platform key."""
    return signing.sign_response(load_keys().platform, serial, body, timestamp=str(timestamp), nonce=nonce)
