"""The simulator's own operations behind its API and test control: the clock, probes, resending,
the certificate list. Routes (``views_api``, ``console``) call these; they know no HTTP."""

from __future__ import annotations

import secrets
from types import SimpleNamespace

from sqlalchemy import func, select, update

from ..extensions import db
from ..wechatpay import aead
from ..wechatpay.times import format_time
from .models import SandboxNotification, SandboxRefund, SandboxTransaction
from .simulator import TOKEN_ALPHABET, ApiFailure, Merchant, Platform


def certificates_answer(platform: Platform, merchant: Merchant | None = None) -> dict:
    """``GET /v3/certificates`` (WeChat Pay "下载平台证书"): every listed certificate, encrypted with the
    APIv3 key of the merchant asking (the demo merchant's by default)."""
    data = []
    for cert in platform.certificates.listed(platform.now()):
        nonce = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(aead.NONCE_BYTES))
        data.append({
            "serial_no": cert.serial,
            "effective_time": format_time(cert.effective_time),
            "expire_time": format_time(cert.expire_time),
            "encrypt_certificate": {
                "algorithm": aead.ALGORITHM, "nonce": nonce, "associated_data": "certificate",
                "ciphertext": aead.encrypt(platform.merchant_aes(merchant.mchid if merchant else None), nonce,
                                           cert.certificate_pem, "certificate"),
            },
        })
    return {"data": data}


def advance_to_next_retry(platform: Platform) -> float:
    """Move the clock to the next pending delivery; 0 if nothing is waiting."""
    due = db.session.scalar(select(func.min(SandboxNotification.next_attempt_at))
                            .where(SandboxNotification.state == "pending"))
    db.session.commit()
    gap = (due - platform.now()).total_seconds() if due is not None else 0.0
    if gap > 0:
        platform.settings.fast_forward(gap + 0.001)
    return max(gap, 0.0)


def reset_clock(platform: Platform) -> None:
    """Back to real time: what was scheduled on the fast-forwarded clock moves back with it."""
    offset = platform.settings.offset()
    # Row by row in Python: date arithmetic in SQL differs between SQLite and PostgreSQL.
    for row in db.session.scalars(select(SandboxNotification).where(
            SandboxNotification.state == "pending", SandboxNotification.next_attempt_at.is_not(None))):
        row.next_attempt_at = row.next_attempt_at - offset
    for refund in db.session.scalars(select(SandboxRefund).where(SandboxRefund.status == "PROCESSING")):
        refund.settle_at = refund.settle_at - offset
    platform.settings.set("clock_offset_seconds", 0.0)  # commits all of it


def clock_json(platform: Platform) -> dict:
    return {"now": format_time(platform.now()),
            "offset_seconds": float(platform.settings.get("clock_offset_seconds"))}


def enqueue_probe(platform: Platform, out_trade_no: str | None) -> SandboxNotification:
    """A TRANSACTION.SUCCESS-looking notification signed ``WECHATPAY/SIGNTEST/…``: it must be refused.

    Built for a real unpaid transaction when there is one, so a shop that skips verification
    would visibly mark an unpaid order paid.
    """
    query = select(SandboxTransaction)
    if out_trade_no:  # any merchant's order (docs/en/test-your-backend.md); else the demo merchant's latest
        query = query.where(SandboxTransaction.out_trade_no == out_trade_no)
    else:
        query = query.where(SandboxTransaction.mchid == platform.merchant.mchid)
    txn = db.session.scalar(query.order_by(SandboxTransaction.id.desc()).limit(1))
    if txn is None:
        raise ApiFailure(404, "ORDER_NOT_EXIST", "没有可用于探测的交易")
    # Shaped like a real success; nothing in the simulator is actually paid.
    probe = SimpleNamespace(
        mchid=txn.mchid, appid=txn.appid, out_trade_no=txn.out_trade_no, trade_type=txn.trade_type,
        amount_total=txn.amount_total, attach=txn.attach,
        transaction_id=txn.transaction_id or "4200000000" + "".join(secrets.choice("0123456789") for _ in range(18)),
        success_time=platform.now().replace(microsecond=0), bank_type="OTHERS",
        payer_openid=platform.openid(txn.appid),
    )
    event_id, body = platform.payment_notification_body(probe)  # type: ignore[arg-type]
    row = SandboxNotification(event_id=event_id, out_trade_no=txn.out_trade_no, event_type="TRANSACTION.SUCCESS",
                              notify_url=txn.notify_url, body=body, state="pending", kind="probe", mchid=txn.mchid,
                              next_attempt_at=platform.now())
    db.session.add(row)
    db.session.commit()
    return row


def resend(platform: Platform, notification_id: int) -> bool:
    """Deliver a notification again now (pending, failed or delivered; a dropped one too)."""
    changed = db.session.execute(
        update(SandboxNotification).where(SandboxNotification.id == notification_id)
        .values(state="pending", next_attempt_at=platform.now(), locked_until=None)
    ).rowcount == 1
    db.session.commit()
    return changed
