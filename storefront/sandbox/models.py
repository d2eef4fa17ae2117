"""The simulator's own tables, in their own database (the ``sandbox`` bind).

The shop never reads these: it learns about payments only over the wire, as with WeChat Pay.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..extensions import db


class SandboxTransaction(db.Model):
    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_transactions"
    id: Mapped[int] = mapped_column(primary_key=True)
    mchid: Mapped[str] = mapped_column(String(32))
    appid: Mapped[str] = mapped_column(String(32))
    out_trade_no: Mapped[str] = mapped_column(String(32))
    trade_type: Mapped[str] = mapped_column(String(16))  # NATIVE, MWEB, JSAPI
    description: Mapped[str] = mapped_column(String(127))
    amount_total: Mapped[int]  # fen
    currency: Mapped[str] = mapped_column(String(16), default="CNY")
    attach: Mapped[str | None] = mapped_column(String(128))
    notify_url: Mapped[str] = mapped_column(String(256))
    payer_openid: Mapped[str | None] = mapped_column(String(128))
    time_expire: Mapped[datetime]  # naive UTC; last moment the payer may pay
    code_expires_at: Mapped[datetime]  # code_url / prepay_id lifetime (2 hours)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    trade_state: Mapped[str] = mapped_column(String(32), default="NOTPAY")
    transaction_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    success_time: Mapped[datetime | None]
    bank_type: Mapped[str | None] = mapped_column(String(32))
    pay_token: Mapped[str] = mapped_column(String(16), unique=True)  # the code_url's ``pr``
    fingerprint: Mapped[str] = mapped_column(Text)  # creation parameters, for re-submissions
    last_payer_result: Mapped[str | None] = mapped_column(String(32))
    next_query_fault: Mapped[str | None] = mapped_column(String(16))  # test control: USERPAYING, SYSTEM_ERROR
    # fen of a WeChat-funded coupon applied when paid (console toggle): payer_total = total - coupon.
    coupon_amount: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (UniqueConstraint("mchid", "out_trade_no"),)


class SandboxNotification(db.Model):
    """One notification to deliver, with its retry state. Stored, so a restart loses nothing."""

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))  # the notification's ``id``, same on every retry
    out_trade_no: Mapped[str] = mapped_column(String(32), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    notify_url: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text)  # outer JSON with the encrypted resource
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed, dropped
    attempts_count: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    out_refund_no: Mapped[str | None] = mapped_column(String(64), index=True)  # REFUND.* events
    # "payment"/"refund"; "probe": a deliberately mis-signed WECHATPAY/SIGNTEST/ delivery, sent once.
    kind: Mapped[str] = mapped_column(String(16), default="payment")
    mchid: Mapped[str | None] = mapped_column(String(32))  # whose APIv3 key and key mode; None: the demo merchant

    __table_args__ = (Index("ix_sandbox_notifications_due", "state", "next_attempt_at"),)


class SandboxDelivery(db.Model):
    """One delivery attempt of a notification and what the shop answered."""

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("sandbox_notifications.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    http_status: Mapped[int | None]  # None: the shop could not be reached
    response_body: Mapped[str] = mapped_column(String(300), default="")
    error: Mapped[str] = mapped_column(String(200), default="")
    signed_serial: Mapped[str | None] = mapped_column(String(64))  # the Wechatpay-Serial it carried
    next_attempt_at: Mapped[datetime | None]  # simulator time of the retry this attempt scheduled


class SandboxRefund(db.Model):
    """A refund of a paid transaction (``POST /v3/refund/domestic/refunds``)."""

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_refunds"
    id: Mapped[int] = mapped_column(primary_key=True)
    mchid: Mapped[str] = mapped_column(String(32))
    out_refund_no: Mapped[str] = mapped_column(String(64))
    refund_id: Mapped[str] = mapped_column(String(32), unique=True)
    transaction_id: Mapped[str] = mapped_column(String(32), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), index=True)
    amount_refund: Mapped[int]  # fen
    amount_total: Mapped[int]  # fen, the transaction's total
    reason: Mapped[str | None] = mapped_column(String(80))
    notify_url: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="PROCESSING")  # SUCCESS, CLOSED, ABNORMAL
    fingerprint: Mapped[str] = mapped_column(Text)  # the request body, for out_refund_no re-submissions
    created_at: Mapped[datetime]  # simulator time
    settle_at: Mapped[datetime]  # simulator time when PROCESSING ends by itself
    success_time: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("mchid", "out_refund_no"),)


class SandboxApiCall(db.Model):
    """One API request the simulator received and what it answered: the console's call log.

    Holds what crossed the wire and the canonical string verified; never the APIv3 key or a private key.
    """

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_api_calls"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # real time (signatures use it)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))  # the canonical URL, without /sandbox
    mchid: Mapped[str | None] = mapped_column(String(32), index=True)
    wechatpay_serial: Mapped[str | None] = mapped_column(String(64))  # the request's Wechatpay-Serial
    auth_ok: Mapped[bool] = mapped_column(default=False)
    auth_result: Mapped[str] = mapped_column(String(300), default="")
    signed_message: Mapped[str] = mapped_column(Text, default="")  # what the signature was checked over
    request_headers: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    request_body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[int]
    response_body: Mapped[str] = mapped_column(Text, default="")
    response_serial: Mapped[str | None] = mapped_column(String(64))  # the key that signed the answer
    request_id: Mapped[str | None] = mapped_column(String(64))
    # When the signature did not verify: the mistake that explains it (docs/en/test-your-backend.md)
    # and, as JSON, the string expected beside the string the client signed.
    diagnosis: Mapped[str | None] = mapped_column(String(32))
    diagnosis_detail: Mapped[str | None] = mapped_column(Text)


class SandboxSetting(db.Model):
    """A simulator setting changed at run time (console, test control): clock offset, signing modes."""

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_settings"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # JSON
