"""The simulator's merchant registry: the demo merchant plus every merchant a kit registered.

Each registered merchant has its own mchid, appid, certificate (its requests are verified with
that certificate's key) and APIv3 key (its notifications are encrypted with it). The simulator's
own key and ``PUB_KEY_ID`` sign answers and notifications for all of them.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from sqlalchemy import select

from ..extensions import db
from ..wechatpay import keys
from ..wechatpay.times import format_time
from .merchant_models import SandboxMerchant
from .simulator import Merchant


def all_mchids() -> list[str]:
    return list(db.session.scalars(select(SandboxMerchant.mchid).order_by(SandboxMerchant.created_at)))


def registered() -> list[SandboxMerchant]:
    """Every registered merchant, oldest first."""
    return list(db.session.scalars(select(SandboxMerchant).order_by(SandboxMerchant.created_at)))


def appid_registered(appid: str) -> bool:
    return db.session.scalar(select(SandboxMerchant.mchid).where(SandboxMerchant.appid == appid)) is not None


@dataclass(frozen=True)
class NewMerchant:
    """What registration hands the merchant once: the private key is not kept by the simulator."""

    mchid: str
    appid: str
    name: str
    merchant_serial: str
    apiv3_key: str
    private_key_pem: bytes
    certificate_pem: bytes
    notify_url: str | None


def _digits(length: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(length))


def register(name: str | None = None, notify_url: str | None = None) -> NewMerchant:
    """Create a merchant: a fresh mchid, appid, RSA key and certificate, and APIv3 key."""
    existing = set(all_mchids())
    mchid = "19" + _digits(8)
    while mchid in existing:
        mchid = "19" + _digits(8)
    appid = "wx" + secrets.token_hex(8)
    private_key = keys.generate_private_key()
    certificate = keys.self_signed_certificate(private_key, f"{mchid} sandbox merchant")
    apiv3_key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    merchant = NewMerchant(
        mchid=mchid, appid=appid, name=(name or f"测试商户 {mchid}")[:80],
        merchant_serial=keys.certificate_serial(certificate), apiv3_key=apiv3_key,
        private_key_pem=keys.private_key_pem(private_key), certificate_pem=certificate, notify_url=notify_url,
    )
    db.session.add(SandboxMerchant(
        mchid=mchid, name=merchant.name, appid=appid, merchant_serial=merchant.merchant_serial,
        merchant_cert=certificate.decode(), apiv3_key=apiv3_key, notify_url=notify_url,
    ))
    db.session.commit()
    return merchant


def describe(row: SandboxMerchant) -> dict:
    """A registered merchant as the control API lists it (no APIv3 key: it was handed out once)."""
    return {"mchid": row.mchid, "name": row.name, "appid": row.appid, "merchant_serial": row.merchant_serial,
            "notify_url": row.notify_url, "created_at": format_time(row.created_at)}


def merchant_for_appid(platform, appid: str) -> Merchant | None:
    """The merchant an appid belongs to (the demo merchant's or a registered one), or None."""
    if appid in platform.merchant.appids:
        return platform.merchant
    mchid = db.session.scalar(select(SandboxMerchant.mchid).where(SandboxMerchant.appid == appid))
    return platform.merchant_for(mchid) if mchid else None
