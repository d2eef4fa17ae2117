"""The simulator's own tables, in their own database (the ``sandbox`` bind).

The shop never reads these: it learns about payments only over the wire, as with WeChat Pay.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models import utcnow


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
