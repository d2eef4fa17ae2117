"""The shop's tables. Amounts are integer fen; times are naive UTC."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, bindparam, or_, text
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from .clock import utcnow
from .extensions import db
from .i18n import N_
from .i18n import lazy as _l
from .services import flowcodec


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CLOSED = "closed"
    REFUNDED = "refunded"


class PaymentStatus(enum.StrEnum):
    # Written before WeChat Pay is asked by earlier versions. A new attempt is written ``notpay``
    # with nothing issued (``Payment.is_issued``): the answer's UPDATE then changes no column an
    # index reads, a HOT update on PostgreSQL (bench/README.md, "Database bytes").
    CREATED = "created"
    NOTPAY = "notpay"  # open: WeChat Pay issued a code (or is being asked for one); the payer may pay
    PAID = "paid"
    CLOSED = "closed"
    FAILED = "failed"  # WeChat Pay refused to create it


OPEN_PAYMENT_STATUSES = (PaymentStatus.CREATED, PaymentStatus.NOTPAY)

# The partial indexes' conditions (bench/README.md, "Database bytes"): only the rows the jobs look for
# get an entry, so a paid order or attempt adds none. A query uses such an index only if its WHERE repeats
# the condition with the same constants, in the same order: SQLite's planner matches the terms as written
# (SQLite's "Partial Indexes", section 2), and PostgreSQL's cannot prove it from a bound parameter.
_PENDING_ORDER = text("status = 'pending'")
_OPEN_PAYMENT = text("status IN ('created', 'notpay')")
_HAS_KEY = text("idempotency_key IS NOT NULL")

# The note of an order's creation in its history (source text, translated when shown).
CREATED_NOTE = N_("下单")

ORDER_LABELS = {
    OrderStatus.PENDING: _l("待支付"),
    OrderStatus.PAID: _l("已支付"),
    OrderStatus.CLOSED: _l("已关闭"),
    OrderStatus.REFUNDED: _l("已退款"),
}
PAYMENT_LABELS = {
    PaymentStatus.CREATED: _l("创建中"),
    PaymentStatus.NOTPAY: _l("待支付"),
    PaymentStatus.PAID: _l("已支付"),
    PaymentStatus.CLOSED: _l("已关闭"),
    PaymentStatus.FAILED: _l("创建失败"),
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
    __table_args__ = (
        # The only lookup by owner names a key too; an order made without one (the JSON API's
        # default) is never looked up by it, and NULL keys never collide: no entry for it.
        Index("ix_orders_owner_idempotency_key", "owner", "idempotency_key", unique=True,
              postgresql_where=_HAS_KEY, sqlite_where=_HAS_KEY),
        # Pending orders by age, for the close-expired job: paid and closed orders have no entry.
        Index("ix_orders_pending_created", "created_at", postgresql_where=_PENDING_ORDER, sqlite_where=_PENDING_ORDER),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str] = mapped_column(String(64))  # the browser session's shopper id
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    product_name: Mapped[str] = mapped_column(String(80))  # as sold, even if the catalog changes
    quantity: Mapped[int]
    unit_price: Mapped[int]  # fen
    amount_total: Mapped[int]  # fen
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PENDING)
    needs_review: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # fen refunded to the payer so far (SUCCESS refunds of the order's payment); status stays
    # "paid" while 0 < amount_refunded < amount_total, and becomes "refunded" at the total.
    amount_refunded: Mapped[int] = mapped_column(default=0)
    # The buy form's one-time key: a second submit of the same form finds this order (docs/lifecycle.md).
    idempotency_key: Mapped[str | None] = mapped_column(String(64))

    payments: Mapped[list[Payment]] = relationship(
        back_populates="order", order_by="Payment.id.desc()", lazy="selectin"
    )
    # The history as stored; read ``events``, which begins with the order's creation.
    stored_events: Mapped[list[OrderEvent]] = relationship(order_by="OrderEvent.id", lazy="selectin")
    refunds: Mapped[list[Refund]] = relationship(order_by="Refund.id.desc()", lazy="selectin",
                                                 viewonly=True)

    @property
    def status_label(self) -> str:
        return ORDER_LABELS.get(OrderStatus(self.status), self.status)

    @property
    def events(self) -> list[OrderEvent]:
        """The order's history, oldest first: its creation, then each stored state change.

        The creation is not a stored row: everything it says is the order row's (``created_at``,
        by the shopper). Orders created before that have it stored, and show it once."""
        stored = self.stored_events
        if any(event.from_status == "" for event in stored):
            return stored
        return [self.created_event(), *stored]

    def created_event(self) -> OrderEvent:
        """The order's creation as a history line (transient: never added to a session)."""
        return OrderEvent(id=0, order_id=self.id, payment_id=None, at=self.created_at, from_status="",
                          to_status=OrderStatus.PENDING.value, cause="shopper", note=CREATED_NOTE, wechat_ref=None)

    @classmethod
    def is_pending_clause(cls):
        """``status = 'pending'`` with the constant in the SQL: the WHERE term that lets a query use
        ``ix_orders_pending_created``."""
        return cls.status == bindparam("pending_status", OrderStatus.PENDING.value, literal_execute=True)


class Payment(db.Model):
    """One payment attempt at WeChat Pay, with its own ``out_trade_no``."""

    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    method: Mapped[str] = mapped_column(String(16))  # native, h5, jsapi, miniprogram
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.NOTPAY)
    amount_total: Mapped[int]  # fen, copied from the order when the attempt starts
    code_url: Mapped[str | None] = mapped_column(String(256))
    h5_url: Mapped[str | None] = mapped_column(String(512))  # H5: lives 5 minutes, renewed on demand
    h5_url_issued_at: Mapped[datetime | None]
    payer_client_ip: Mapped[str | None] = mapped_column(String(45))  # H5: resent identically on renewal
    prepay_id: Mapped[str | None] = mapped_column(String(64))  # JSAPI and mini program
    appid: Mapped[str | None] = mapped_column(String(32))  # JSAPI/mini program: whose openid pays
    openid: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime]
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    paid_at: Mapped[datetime | None]
    last_queried_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # fen held by refunds not CLOSED/failed: reserved with a conditional UPDATE before asking
    # WeChat Pay, so two refunds racing can never exceed what was paid.
    refund_reserved: Mapped[int] = mapped_column(default=0)
    # fen the payer paid (amount.payer_total): less than amount_total when a coupon paid part of it.
    payer_total: Mapped[int | None]

    order: Mapped[Order] = relationship(back_populates="payments")

    # Open attempts by deadline, for the close-expired and reconcile jobs: a paid or closed attempt has no entry.
    __table_args__ = (Index("ix_payments_open_expires", "expires_at", postgresql_where=_OPEN_PAYMENT,
                            sqlite_where=_OPEN_PAYMENT),)

    @property
    def status_label(self) -> str:
        if self.status == PaymentStatus.NOTPAY and not self.is_issued:
            return PAYMENT_LABELS[PaymentStatus.CREATED]  # WeChat Pay not asked yet, or no answer
        return PAYMENT_LABELS.get(PaymentStatus(self.status), self.status)

    @property
    def is_issued(self) -> bool:
        """WeChat Pay answered the prepay: the scene's code, URL or prepay_id is stored."""
        return bool(self.code_url or self.h5_url or self.prepay_id)

    @classmethod
    def is_issued_clause(cls):
        """``is_issued`` in SQL."""
        return or_(cls.code_url.is_not(None), cls.h5_url.is_not(None), cls.prepay_id.is_not(None))

    @classmethod
    def is_open_clause(cls):
        """``status IN ('created', 'notpay')`` with the constants in the SQL: the WHERE term that lets a
        query use ``ix_payments_open_expires``."""
        return cls.status.in_(bindparam("open_statuses", [status.value for status in OPEN_PAYMENT_STATUSES],
                                        expanding=True, literal_execute=True))

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
    out_trade_no: Mapped[str | None] = mapped_column(String(32))  # shown, never looked up: no index
    outcome: Mapped[str] = mapped_column(String(16))  # applied, duplicate, ignored, rejected
    reason: Mapped[str] = mapped_column(String(200), default="")
    http_status: Mapped[int]


class ProtocolMessage(db.Model):
    """One message of an order's payment flow, as it crossed the wire (secrets redacted).

    API calls the shop made, notifications it received, and events the shopper's pages
    reported: the flow inspector at ``/orders/<order_no>/flow`` draws them.
    """

    __tablename__ = "protocol_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    # Read ``out_trade_no``: not stored (NULL) when the row is linked to the attempt by that very
    # number (``payment_id``), whose own column says it. Read by order_id: no index to keep.
    stored_out_trade_no: Mapped[str | None] = mapped_column("out_trade_no", String(64), key="out_trade_no")
    at: Mapped[datetime] = mapped_column(default=utcnow)  # when it started (retention: ix_protocol_messages_at)
    direction: Mapped[str] = mapped_column(String(8))  # out (shop asks), in (shop is told), browser
    kind: Mapped[str] = mapped_column(String(32))  # prepay_native, query, close, notify_payment, qr_shown, ...
    # Read ``title``: not stored (NULL) when it is the HTTP message's "METHOD path" (``http_title``).
    stored_title: Mapped[str | None] = mapped_column("title", String(120), key="title")
    method: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[int | None]  # the HTTP status of the answer
    verification: Mapped[str] = mapped_column(String(16), default="none")  # passed, failed, none
    verify_serial: Mapped[str | None] = mapped_column(String(64))
    # Headers that matter, bodies and checks, compact (``services/flowcodec.py``); read them
    # through the properties below. What is rebuilt, not stored (the signed strings, the shop's
    # own signature, a notification's ciphertext): ``services/flowlog.py``'s ``shown_*``.
    payload: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    error: Mapped[str] = mapped_column(String(300), default="")
    elapsed_ms: Mapped[int | None]
    truncated: Mapped[bool] = mapped_column(default=False)  # a field was cut to the size bound
    # A WeChat login (jscode2session) made before any order: the shopper whose next order adopts it.
    owner: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # Only the few messages waiting for an order have an owner: the others get no index entry.
        Index("ix_protocol_messages_owner", "owner", postgresql_where=text("owner IS NOT NULL"),
              sqlite_where=text("owner IS NOT NULL")),
        # Retention deletes by age, at most hourly: on PostgreSQL a BRIN index (the least and
        # greatest ``at`` of each range of pages, PostgreSQL's "BRIN Indexes") is enough, a few
        # pages for the whole table, where a B-tree gains an entry per message. SQLite has no
        # BRIN: a B-tree there.
        Index("ix_protocol_messages_at", "at", postgresql_using="brin"),
    )

    @staticmethod
    def http_title(method: str | None, fields: Mapping[str, Any]) -> str | None:
        """"METHOD path" of an HTTP message: its signed URL (an API call's ``canonical_url``), else its
        URL's path and query (a notification). None without a method or a URL."""
        target = fields.get("canonical_url")
        if not target and fields.get("url"):
            parts = urlsplit(fields["url"])
            target = parts.path + ("?" + parts.query if parts.query else "")
        return f"{method} {target}" if method and target else None

    @property
    def title(self) -> str:
        """What the message was: "POST /v3/pay/transactions/native", "二维码已展示", ..."""
        if self.stored_title is not None:
            return self.stored_title
        return self.http_title(self.method, self.fields) or ""

    @title.setter
    def title(self, value: str | None) -> None:
        self.stored_title = value

    @property
    def out_trade_no(self) -> str | None:
        """The attempt the message is about: stored, else the linked attempt's own number."""
        if self.stored_out_trade_no is not None or self.payment_id is None:
            return self.stored_out_trade_no
        session = object_session(self)
        payment = session.get(Payment, self.payment_id) if session is not None else None  # loaded: no query
        return payment.out_trade_no if payment is not None else None

    @out_trade_no.setter
    def out_trade_no(self, value: str | None) -> None:
        self.stored_out_trade_no = value

    @property
    def fields(self) -> dict:
        """The payload, decoded once per loaded row."""
        cached = self.__dict__.get("_fields")
        if cached is None or cached[0] is not self.payload:
            cached = (self.payload, flowcodec.decode(self.payload))
            self.__dict__["_fields"] = cached
        return cached[1]

    @property
    def origin(self) -> str:
        """What made the shop send it: "poll", "job", "POST /orders/…/pay", "wechatpay", "browser"."""
        return self.fields.get("origin") or ""

    @property
    def url(self) -> str:
        return self.fields.get("url") or ""

    @property
    def request_headers(self) -> dict[str, str]:
        return self.fields.get("request_headers") or {}

    @property
    def request_body(self) -> str:
        return self.fields.get("request_body") or ""

    @property
    def response_headers(self) -> dict[str, str]:
        return self.fields.get("response_headers") or {}

    @property
    def response_body(self) -> str:
        return self.fields.get("response_body") or ""

    @property
    def checks(self) -> list[dict]:
        return [dict(check) for check in self.fields.get("checks") or []]

    @property
    def canonical_url(self) -> str:
        """The URL as signed (path and query), for an API call: in the payload, or (rows stored with
        their title) the title's second half."""
        if self.fields.get("canonical_url"):
            return self.fields["canonical_url"]
        title = self.stored_title or ""
        return title.split(" ", 1)[1] if " " in title else ""

    @property
    def verified_serial(self) -> str | None:
        """The key serial the answer or notification was verified with (stored only when it is
        not the message's own Wechatpay-Serial header)."""
        if self.verify_serial or self.verification == "none":
            return self.verify_serial
        headers = self.request_headers if self.direction == "in" else self.response_headers
        return next((v for k, v in headers.items() if k.lower() == "wechatpay-serial"), None)


class OAuthState(db.Model):
    """One pending web-OAuth authorization: its CSRF ``state``, used once, kept server-side.

    Not in the session cookie: a page polling beside the checkout would answer with an older
    cookie and overwrite it (docs/jsapi.md).
    """

    __tablename__ = "oauth_states"
    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))  # the shopper id of the session that asked
    next_url: Mapped[str] = mapped_column(String(512), default="/")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    used_at: Mapped[datetime | None]


class RefundStatus(enum.StrEnum):
    PENDING = "pending"  # asked (or about to ask) WeChat Pay; PROCESSING there, or the answer was lost
    SUCCESS = "success"
    ABNORMAL = "abnormal"  # needs a person (the payer's card frozen, ...): money still held
    CLOSED = "closed"  # WeChat Pay closed it: the reserved amount is refundable again
    FAILED = "failed"  # WeChat Pay refused to create it (4xx)


REFUND_LABELS = {
    RefundStatus.PENDING: _l("退款处理中"),
    RefundStatus.SUCCESS: _l("退款成功"),
    RefundStatus.ABNORMAL: _l("退款异常"),
    RefundStatus.CLOSED: _l("退款关闭"),
    RefundStatus.FAILED: _l("退款申请失败"),
}


class Refund(db.Model):
    """One refund of one payment, with its own ``out_refund_no`` (WeChat Pay's idempotency key)."""

    __tablename__ = "refunds"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="order")  # order, or duplicate (a double payment)
    amount: Mapped[int]  # fen
    reason: Mapped[str] = mapped_column(String(80), default="")
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PENDING, index=True)
    refund_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(String(200), default="")
    requested_by: Mapped[str] = mapped_column(String(16), default="merchant")  # merchant, system
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    succeeded_at: Mapped[datetime | None]
    last_queried_at: Mapped[datetime | None]
    # fen back to the payer (amount.payer_refund); the rest of ``amount`` goes back to the coupon.
    payer_refund: Mapped[int | None]

    payment: Mapped[Payment] = relationship()

    @property
    def status_label(self) -> str:
        return REFUND_LABELS.get(RefundStatus(self.status), self.status)


class ReconciliationRun(db.Model):
    """One day's reconciliation against WeChat Pay's trade bill (``flask reconcile-bill``), the latest run kept.

    ``result`` is the JSON the command prints with ``--json`` plus each difference's details.
    """

    __tablename__ = "reconciliation_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    bill_date: Mapped[str] = mapped_column(String(10), unique=True)  # YYYY-MM-DD, Asia/Shanghai
    ran_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))  # matched, differences, failed
    bill_rows: Mapped[int] = mapped_column(default=0)
    matched: Mapped[int] = mapped_column(default=0)
    applied: Mapped[int] = mapped_column(default=0)
    differences: Mapped[int] = mapped_column(default=0)
    fees_total: Mapped[int] = mapped_column(default=0)  # fen, the bill's 手续费总金额
    error: Mapped[str] = mapped_column(String(300), default="")
    result: Mapped[str] = mapped_column(Text, default="{}")  # JSON
