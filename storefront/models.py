"""The shop's tables. Amounts are integer fen; times are naive UTC."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db
from .i18n import _


def utcnow() -> datetime:
    """Naive UTC: portable across SQLite and PostgreSQL ``timestamp`` columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CLOSED = "closed"
    REFUNDED = "refunded"


class PaymentStatus(enum.StrEnum):
    CREATED = "created"  # row written, WeChat Pay not yet asked
    NOTPAY = "notpay"  # WeChat Pay issued a code_url; the payer may pay
    PAID = "paid"
    CLOSED = "closed"
    FAILED = "failed"  # WeChat Pay refused to create it


OPEN_PAYMENT_STATUSES = (PaymentStatus.CREATED, PaymentStatus.NOTPAY)

ORDER_LABELS = {
    OrderStatus.PENDING: _("待支付"),
    OrderStatus.PAID: _("已支付"),
    OrderStatus.CLOSED: _("已关闭"),
    OrderStatus.REFUNDED: _("已退款"),
}
PAYMENT_LABELS = {
    PaymentStatus.CREATED: _("创建中"),
    PaymentStatus.NOTPAY: _("待支付"),
    PaymentStatus.PAID: _("已支付"),
    PaymentStatus.CLOSED: _("已关闭"),
    PaymentStatus.FAILED: _("创建失败"),
}


class Product(db.Model):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str] = mapped_column(Text, default="")
    price_total: Mapped[int]  # fen
    image: Mapped[str] = mapped_column(String(200))  # path under static/
    active: Mapped[bool] = mapped_column(default=True)

    @property
    def image_url(self) -> str:
        return f"/static/{self.image}"


class Order(db.Model):
    __tablename__ = "orders"  # ORDER is an SQL keyword
    id: Mapped[int] = mapped_column(primary_key=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)  # the browser session's shopper id
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    product_name: Mapped[str] = mapped_column(String(80))  # as sold, even if the catalog changes
    quantity: Mapped[int]
    unit_price: Mapped[int]  # fen
    amount_total: Mapped[int]  # fen
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PENDING, index=True)
    needs_review: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    payments: Mapped[list[Payment]] = relationship(
        back_populates="order", order_by="Payment.id.desc()", lazy="selectin"
    )
    events: Mapped[list[OrderEvent]] = relationship(order_by="OrderEvent.id", lazy="selectin")

    @property
    def status_label(self) -> str:
        return ORDER_LABELS.get(OrderStatus(self.status), self.status)


class Payment(db.Model):
    """One payment attempt at WeChat Pay, with its own ``out_trade_no``."""

    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    method: Mapped[str] = mapped_column(String(16))  # native, h5, jsapi, miniprogram
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.CREATED)
    amount_total: Mapped[int]  # fen, copied from the order when the attempt starts
    code_url: Mapped[str | None] = mapped_column(String(256))
    expires_at: Mapped[datetime]
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    paid_at: Mapped[datetime | None]
    last_queried_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    order: Mapped[Order] = relationship(back_populates="payments")

    __table_args__ = (Index("ix_payments_status_expires", "status", "expires_at"),)

    @property
    def status_label(self) -> str:
        return PAYMENT_LABELS.get(PaymentStatus(self.status), self.status)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_PAYMENT_STATUSES

    @property
    def expires_at_iso(self) -> str:
        return self.expires_at.replace(tzinfo=timezone.utc).isoformat()


class OrderEvent(db.Model):
    """One state transition, with who caused it: the order's history and audit trail."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    cause: Mapped[str] = mapped_column(String(16))  # shopper, notify, query, job
    note: Mapped[str] = mapped_column(String(200), default="")
    wechat_ref: Mapped[str | None] = mapped_column(String(64))  # notification id or transaction_id


class NotificationRecord(db.Model):
    """Every notification the shop received, accepted or not, with the reason."""

    __tablename__ = "notification_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    notification_id: Mapped[str | None] = mapped_column(String(64))
    event_type: Mapped[str | None] = mapped_column(String(32))
    out_trade_no: Mapped[str | None] = mapped_column(String(32), index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # applied, duplicate, ignored, rejected
    reason: Mapped[str] = mapped_column(String(200), default="")
    http_status: Mapped[int]
