"""The order state machine: the one place that changes an order's or an attempt's status.

Every transition is a single conditional UPDATE whose row count says who won, so duplicate
notifications, active queries, jobs and several workers can race and still leave one state.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import current_app
from sqlalchemy import Integer, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import lazyload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from .. import rows
from ..errors import ShopError
from ..extensions import db
from ..i18n import N_, _, to_source
from ..models import (
    OPEN_PAYMENT_STATUSES,
    Order,
    OrderEvent,
    OrderStatus,
    Payment,
    PaymentStatus,
    Product,
    Refund,
    utcnow,
)
from ..wechatpay.times import BEIJING
from . import rawsql

events_log = logging.getLogger("storefront.payments")  # one line per payment event (docs/going-live.md)

MAX_QUANTITY = 10

# Every legal move of the order state machine, and nothing else.
TRANSITIONS = {
    (OrderStatus.PENDING, OrderStatus.PAID),
    (OrderStatus.PENDING, OrderStatus.CLOSED),
    (OrderStatus.PAID, OrderStatus.REFUNDED),
    (OrderStatus.CLOSED, OrderStatus.PAID),  # paid at WeChat after we gave up: the money is real
}


class OrderError(ShopError):
    pass


class PaymentOutcome(enum.StrEnum):
    APPLIED = "applied"  # this call marked the order paid
    DUPLICATE = "duplicate"  # already applied before: nothing changed
    LATE = "late"  # paid at WeChat after the shop closed the attempt or order: applied, flagged
    DOUBLE = "double"  # the order was already paid through another attempt: flagged for refund


ORDER_NO_DRAWS = 5  # a number is taken again only by an order made in the same second: one in a million


def new_order_no() -> str:
    """``SF`` + Beijing time + 6 random digits: sortable, readable on a phone call."""
    local = datetime.now(BEIJING).strftime("%Y%m%d%H%M%S")
    return f"SF{local}{secrets.randbelow(10**6):06d}"


def create_order(owner: str, product_id: object, quantity: object, idempotency_key: object = None) -> Order:
    """A pending order at the database's price. :raise OrderError: bad product or quantity.

    ``idempotency_key`` (the buy form's one-time key, or the API's ``Idempotency-Key``): a second
    request with the same key from the same shopper gets the first order, never a second one.
    """
    key = _idempotency_key(idempotency_key)
    if key:
        earlier = _order_by_key(owner, key)
        if earlier is not None:
            return earlier
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
        raise OrderError("INVALID_QUANTITY", _("购买数量须为 1 到 %(n)s 之间的整数", n=MAX_QUANTITY))
    if not isinstance(product_id, int) or isinstance(product_id, bool):
        raise OrderError("PRODUCT_NOT_FOUND", _("商品不存在"), 404)
    product = db.session.get(Product, product_id)
    if product is None or not product.active:
        raise OrderError("PRODUCT_NOT_FOUND", _("商品不存在"), 404)
    values = {"owner": owner, "product_id": product.id, "product_name": product.name, "quantity": quantity,
              "unit_price": product.price_total, "amount_total": product.price_total * quantity,
              "status": OrderStatus.PENDING, "idempotency_key": key}
    for draw in range(ORDER_NO_DRAWS):
        order = Order(order_no=new_order_no(), **values)
        db.session.add(order)
        try:
            db.session.flush()
            break
        except IntegrityError:
            db.session.rollback()
            # The same key racing in on another thread or worker: the unique index let one through.
            earlier = _order_by_key(owner, key) if key else None
            if earlier is not None:
                return earlier
            # Else two orders drew the same number in the same second: draw another.
            if draw == ORDER_NO_DRAWS - 1:
                raise
    # No event row: the order row says it all (``Order.events`` begins with its creation).
    events_log.info("order %s: -> %s cause=shopper", order.order_no, OrderStatus.PENDING)
    db.session.commit()
    return order


def _idempotency_key(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not 8 <= len(value) <= 64 or not value.isascii() or not value.isprintable():
        raise OrderError("INVALID_IDEMPOTENCY_KEY", _("幂等键须为 8 到 64 个可打印 ASCII 字符"))
    return value


def _order_by_key(owner: str, key: str) -> Order | None:
    return db.session.scalar(select(Order).where(Order.owner == owner, Order.idempotency_key == key))


# Built once: statements run on every checkout (building one costs more than running it).
_OWNED_ORDER = select(Order).where(Order.order_no == bindparam("order_no")).options(lazyload("*"))
_ATTEMPTS = select(Payment).where(Payment.order_id == bindparam("order_id")).order_by(Payment.id.desc())


def owned_order(order_no: str, owner: str | None) -> Order:
    """The order if this shopper owns it. :raise OrderError: 404 otherwise, never 403.

    Its attempts, events and refunds load when first read (most callers read none, or one),
    not three ``selectin`` queries up front.
    """
    order = db.session.scalar(_OWNED_ORDER, {"order_no": order_no})
    if order is None or owner is None or not secrets.compare_digest(order.owner, owner):
        raise OrderError("ORDER_NOT_FOUND", _("订单不存在"), 404)
    return order


def record_event(
    order_id: int, payment_id: int | None, source: str, target: str, cause: str, note: str = "",
    wechat_ref: str | None = None,
) -> None:
    """Add one line to the order's history (``OrderEvent``), in the open transaction."""
    db.session.add(
        OrderEvent(order_id=order_id, payment_id=payment_id, from_status=source, to_status=target,
                   cause=cause, note=to_source(note)[:200], wechat_ref=wechat_ref)
    )
    # Numbers and causes only, never a secret. The order number if the order is loaded already
    # (no query for a log line), else its id.
    order = db.session.identity_map.get(identity_key(Order, order_id))
    events_log.info("order %s: %s -> %s cause=%s ref=%s %s", order.order_no if order is not None else f"#{order_id}",
                    source, target, cause, wechat_ref or "-", note[:120])


def transition(order_id: int, source: OrderStatus, target: OrderStatus, *conditions: Any,
                **values: object) -> bool:
    """Move one order from ``source`` to ``target`` (if ``conditions`` hold too); False if another
    caller got there first or a condition does not hold."""
    if (source, target) not in TRANSITIONS:
        raise ValueError(f"illegal transition {source} -> {target}")
    result = db.session.execute(
        update(Order).where(Order.id == order_id, Order.status == source, *conditions)
        .values(status=target, **values)
    )
    return result.rowcount == 1


def _move_payment(payment_id: int, sources: tuple[str, ...], target: PaymentStatus, **values: object) -> bool:
    result = db.session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status.in_(sources)).values(status=target, **values)
    )
    return result.rowcount == 1


# -- payment attempts ----------------------------------------------------------------------


# A code about to expire is not worth showing again: the payer needs time to scan and pay.
REUSE_MARGIN_SECONDS = 30


def reuse_margin(ttl_seconds: float) -> float:
    """Remaining life an attempt needs to be reused: 30 s, or a quarter of a short lifetime."""
    return min(REUSE_MARGIN_SECONDS, ttl_seconds / 4)


def reusable_payment(order: Order, method: str, min_remaining_seconds: float | None = None) -> Payment | None:
    """The order's open attempt of this method that is still comfortably payable, if any."""
    if min_remaining_seconds is None:
        # A fixed 30 s would make every attempt of a TTL under 30 s unreusable at birth.
        min_remaining_seconds = reuse_margin(current_app.config["PAYMENT_TTL_SECONDS"])
    now = utcnow()
    return db.session.scalar(
        select(Payment)
        .where(
            Payment.order_id == order.id,
            Payment.method == method,
            Payment.status == PaymentStatus.NOTPAY,
            Payment.is_issued_clause(),
            Payment.expires_at > now + timedelta(seconds=min_remaining_seconds),
        )
        .order_by(Payment.id.desc())
        .limit(1)
    )


def attempts(order_id: int) -> list[Payment]:
    """Every attempt of the order, newest first: one query serves reuse, closing and numbering."""
    return list(db.session.scalars(_ATTEMPTS, {"order_id": order_id}))


def reusable_among(known: list[Payment], method: str, min_remaining_seconds: float | None = None) -> Payment | None:
    """``reusable_payment`` over attempts already loaded (``attempts``), newest first."""
    if min_remaining_seconds is None:
        min_remaining_seconds = reuse_margin(current_app.config["PAYMENT_TTL_SECONDS"])
    limit = utcnow() + timedelta(seconds=min_remaining_seconds)
    return next((p for p in known if p.method == method and p.status == PaymentStatus.NOTPAY
                 and p.is_issued and p.expires_at > limit), None)


def open_payments(order_id: int) -> list[Payment]:
    return list(
        db.session.scalars(
            select(Payment).where(Payment.order_id == order_id, Payment.status.in_(OPEN_PAYMENT_STATUSES))
        )
    )


def start_payment(order: Order, method: str, ttl_seconds: int, max_attempts: int, count: int | None = None) -> Payment:
    """Write a new attempt: ``notpay``, nothing issued yet. The caller closes older ones at WeChat first.

    Open from the start: if the prepay call never returns, close-expired and reconcile find it
    (``Payment.is_open_clause``) and settle it at WeChat Pay. Its status is already the one the
    issued attempt has, so ``payment_issued`` changes no indexed column (PostgreSQL's HOT update:
    no new index entries, the old version pruned in its page).

    ``count``: the order's attempts so far, if the caller has just loaded them (``attempts``);
    a concurrent start of the same number is refused by the unique ``out_trade_no`` either way.

    :raise OrderError: order not payable, or too many attempts.
    """
    if order.status == OrderStatus.PAID:
        raise OrderError("ORDERPAID", _("订单已支付"), 409)
    if order.status != OrderStatus.PENDING:
        raise OrderError("ORDER_CLOSED", _("订单已关闭，请重新下单"), 409)
    if count is None:
        count = db.session.scalar(select(func.count()).where(Payment.order_id == order.id)) or 0
    if count >= max_attempts:
        raise OrderError("TOO_MANY_ATTEMPTS", _("支付尝试次数过多，请重新下单"), 409)
    try:
        # Written with Core and kept as loaded (``rows``): the ORM's flush would cost more than the row.
        payment = rows.insert_loaded(Payment, {
            "order_id": order.id,
            "out_trade_no": f"{order.order_no}P{count + 1:02d}",
            "method": str(method),
            "status": str(PaymentStatus.NOTPAY),
            "amount_total": order.amount_total,
            "expires_at": utcnow().replace(microsecond=0) + timedelta(seconds=ttl_seconds),
        })
        db.session.commit()
    except IntegrityError:
        # Another request started an attempt with the same number at the same moment.
        db.session.rollback()
        raise OrderError("PAYMENT_IN_PROGRESS", _("正在创建支付，请稍候刷新"), 409) from None
    return payment


def payment_issued(payment_id: int, code_url: str | None, **issued: object) -> bool:
    """WeChat Pay accepted the attempt: it is now payable. ``issued``: h5_url, prepay_id, ...

    A Core UPDATE on the table (the caller holds the row: ``issued_locally`` tells it what was
    written, without reading it back). Only an open attempt (a job or a notification may have
    closed or paid it meanwhile); an attempt written ``created`` by an earlier version becomes ``notpay``.
    """
    columns = ("code_url", *sorted(issued))
    statement = _ISSUED.get(columns)
    if statement is None:  # one per scene's set of columns, built once
        table = Payment.__table__
        statement = _ISSUED[columns] = (
            update(table).where(table.c.id == bindparam("payment_id"), Payment.is_open_clause())
            .values(status=str(PaymentStatus.NOTPAY), **{name: bindparam(name) for name in columns}))
    changed = rows.connection(Payment).execute(
        statement, {"payment_id": payment_id, "code_url": code_url, **issued}).rowcount == 1
    db.session.commit()
    return changed


_ISSUED: dict[tuple[str, ...], Any] = {}


def issued_locally(payment: Payment, code_url: str | None, **issued: object) -> None:
    """Set on a loaded attempt what ``payment_issued`` wrote, as loaded state (no re-read, no flush)."""
    for name, value in {"status": str(PaymentStatus.NOTPAY), "code_url": code_url, **issued}.items():
        set_committed_value(payment, name, value)


def payment_failed(payment_id: int) -> bool:
    """WeChat Pay refused to create the attempt."""
    changed = _move_payment(payment_id, OPEN_PAYMENT_STATUSES, PaymentStatus.FAILED)
    db.session.commit()
    return changed


def apply_payment(
    out_trade_no: str,
    *,
    transaction_id: str,
    amount_total: int | None,
    paid_at: datetime,
    cause: str,
    wechat_ref: str | None = None,
    payer_total: int | None = None,
    on_applied: Callable[[int, int], None] | None = None,
) -> PaymentOutcome:
    """Apply a payment WeChat Pay reported (notification or query). Race-safe and idempotent.

    The changes stay in the open transaction: the caller commits them, a notification together
    with its record (one durable commit), a query before its next WeChat Pay call.
    ``on_applied(order_id, payment_id)``: told which order and attempt this changed (the flow
    record links to them).

    :raise OrderError: unknown ``out_trade_no`` (404) or an amount that is not the attempt's (400);
        in both cases nothing changes.
    """
    # The common case is one statement: the open attempt, with this very amount, becomes paid.
    # Core statements run on the session's connection (same transaction), past the ORM layer.
    connection = db.session.connection()
    row = _pay_open_attempt(connection, out_trade_no, transaction_id=transaction_id, amount_total=amount_total,
                            paid_at=paid_at, payer_total=payer_total)
    late = False
    if row is not None:
        payment_id, order_id = row
    else:
        # Unknown, another amount, already paid, or closed: find out which, as the rules say.
        payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
        if payment is None:
            raise OrderError("ORDER_NOT_EXIST", f"unknown out_trade_no {out_trade_no}", 404)
        if amount_total != payment.amount_total:
            raise OrderError(
                "AMOUNT_MISMATCH", f"amount {amount_total} is not the order's {payment.amount_total}", 400
            )
        values = {"transaction_id": transaction_id, "paid_at": paid_at}
        if payer_total is not None:  # a coupon may have paid part: what the payer paid, for the pages
            values["payer_total"] = payer_total
        if not _move_payment(payment.id, OPEN_PAYMENT_STATUSES, PaymentStatus.PAID, **values):
            # Paid at WeChat after the shop closed (or failed) this attempt: the money is real.
            if not _move_payment(payment.id, (PaymentStatus.CLOSED, PaymentStatus.FAILED), PaymentStatus.PAID,
                                 **values):
                db.session.rollback()
                return PaymentOutcome.DUPLICATE
            late = True
        payment_id, order_id = payment.id, payment.order_id
    if on_applied is not None:
        on_applied(order_id, payment_id)
    ref = wechat_ref or transaction_id
    if _pay_pending_order(connection, order_id, payment_id, out_trade_no, paid_at=paid_at, cause=cause, ref=ref,
                          late=late):
        outcome = PaymentOutcome.LATE if late else PaymentOutcome.APPLIED
    elif transition(order_id, OrderStatus.CLOSED, OrderStatus.PAID, paid_at=paid_at, needs_review=True):
        record_event(order_id, payment_id, OrderStatus.CLOSED, OrderStatus.PAID, cause,
                N_("订单关闭后收到付款，已标记复核"), ref)
        outcome = PaymentOutcome.LATE
    else:
        # Already paid through another attempt: a double payment, to be refunded.
        db.session.execute(update(Order).where(Order.id == order_id).values(needs_review=True))
        status = db.session.scalar(select(Order.status).where(Order.id == order_id))
        record_event(order_id, payment_id, status, status, cause,
                N_("重复支付：该订单已通过另一笔支付完成，需退款"), ref)
        # The refund is written with the payment, in this transaction: it cannot be lost (an
        # outbox row; services/refund_outbox.py sends it until WeChat Pay confirms).
        _enqueue_double_payment_refund(payment_id)
        outcome = PaymentOutcome.DOUBLE
    return outcome


# The statements of a payment's common case, built once (Core, on the tables: no ORM identity
# map to synchronise, no statement to build per call). Each is a conditional UPDATE as above.
_PAYMENTS, _ORDERS = Payment.__table__, Order.__table__
_PAY_OPEN_ATTEMPT = (
    update(_PAYMENTS)
    .where(_PAYMENTS.c.out_trade_no == bindparam("out_trade_no_"), _PAYMENTS.c.amount_total == bindparam("amount_"),
           # OR-ed, not IN: an IN list would be expanded at every execution (``rawsql``).
           or_(*(_PAYMENTS.c.status == str(s) for s in OPEN_PAYMENT_STATUSES)))
    .values(status=str(PaymentStatus.PAID), transaction_id=bindparam("transaction_id_"), paid_at=bindparam("paid_at_"),
            # What the payer paid (a coupon may have paid part); left as it is when not reported.
            payer_total=func.coalesce(bindparam("payer_total_", type_=Integer), _PAYMENTS.c.payer_total))
    .returning(_PAYMENTS.c.id, _PAYMENTS.c.order_id)
)
assert (OrderStatus.PENDING, OrderStatus.PAID) in TRANSITIONS
_PAY_PENDING_ORDER = (
    update(_ORDERS)
    .where(_ORDERS.c.id == bindparam("order_id_"), _ORDERS.c.status == str(OrderStatus.PENDING))
    .values(status=str(OrderStatus.PAID), paid_at=bindparam("paid_at_"), needs_review=bindparam("review_"))
)
_ADD_EVENT = insert(OrderEvent.__table__)
_PAY_OPEN_ATTEMPT_RAW = rawsql.Prepared(
    _PAY_OPEN_ATTEMPT, ("out_trade_no_", "amount_", "transaction_id_", "paid_at_", "payer_total_"))
_PAY_PENDING_ORDER_RAW = rawsql.Prepared(_PAY_PENDING_ORDER, ("order_id_", "paid_at_", "review_"))
_ADD_EVENT_RAW = rawsql.Prepared(_ADD_EVENT, ("order_id", "payment_id", "at", "from_status", "to_status", "cause",
                                              "note", "wechat_ref"))


def _pay_open_attempt(target: rawsql.CursorSource, out_trade_no: str, *, transaction_id: str,
                      amount_total: int | None, paid_at: datetime,
                      payer_total: int | None) -> tuple[int, int] | None:
    """The open attempt ``out_trade_no``, with this very amount, becomes paid: (its id, its
    order's id), or None if no such open attempt (unknown, another amount, paid, closed)."""
    # On the driver's cursor (``rawsql``): the statement compiled once, no result object.
    cursor = _PAY_OPEN_ATTEMPT_RAW.execute(target, {
        "out_trade_no_": out_trade_no, "amount_": amount_total, "transaction_id_": transaction_id,
        "paid_at_": paid_at, "payer_total_": payer_total})
    rows = cursor.fetchall()  # all: SQLite finishes an UPDATE … RETURNING only once it is read out
    cursor.close()
    return (rows[0][0], rows[0][1]) if rows else None


def _pay_pending_order(target: rawsql.CursorSource, order_id: int, payment_id: int, out_trade_no: str, *,
                       paid_at: datetime, cause: str, ref: str, late: bool) -> bool:
    """pending → paid (``TRANSITIONS``), as ``transition`` and ``record_event`` would, with statements
    built once; False (nothing written) if the order is not pending."""
    cursor = _PAY_PENDING_ORDER_RAW.execute(target, {"order_id_": order_id, "paid_at_": paid_at, "review_": late})
    moved = cursor.rowcount == 1
    cursor.close()
    if not moved:
        return False
    # Stored in the source language whoever's request applied it (pages translate it: ``|tr``).
    note = N_("已关闭的支付尝试被支付，已标记复核") if late else N_("微信支付确认收款")
    _ADD_EVENT_RAW.execute(target, {
        "order_id": order_id, "payment_id": payment_id, "at": utcnow(), "from_status": str(OrderStatus.PENDING),
        "to_status": str(OrderStatus.PAID), "cause": cause, "note": note, "wechat_ref": ref}).close()
    # The one line per payment event (record_event's, on this fast path): the attempt names the order.
    events_log.info("payment %s: pending -> paid cause=%s ref=%s", out_trade_no, cause, ref)
    return True


def apply_payment_common(target: rawsql.CursorSource, out_trade_no: str, *, transaction_id: str,
                         amount_total: int | None, paid_at: datetime, cause: str, wechat_ref: str | None = None,
                         payer_total: int | None = None) -> tuple[int, int] | None:
    """``apply_payment``'s common case alone, on ``target``'s open transaction (a notification's
    ``rawsql.DriverTransaction``: no ORM session): the open attempt with this very amount and its
    pending order become paid. Returns (order id, attempt id).

    None when it is any other case: the attempt may then have been updated, so the caller rolls
    back and applies the payment with ``apply_payment``'s full rules instead.
    """
    ids = _pay_open_attempt(target, out_trade_no, transaction_id=transaction_id, amount_total=amount_total,
                            paid_at=paid_at, payer_total=payer_total)
    if ids is None:
        return None
    payment_id, order_id = ids
    if not _pay_pending_order(target, order_id, payment_id, out_trade_no, paid_at=paid_at, cause=cause,
                              ref=wechat_ref or transaction_id, late=False):
        return None
    return order_id, payment_id


def _enqueue_double_payment_refund(payment_id: int) -> Refund | None:
    """Write the pending refund of a whole double payment in the open transaction (no commit).

    The payment has just been marked paid in this transaction. None if a refund for it exists already.
    """
    existing = db.session.scalar(select(Refund).where(Refund.payment_id == payment_id, Refund.kind == "duplicate"))
    payment = db.session.get(Payment, payment_id)
    if existing is not None or payment is None:
        return None
    amount = payment.amount_total
    reserved = db.session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == PaymentStatus.PAID,
                              Payment.refund_reserved + amount <= Payment.amount_total)
        .values(refund_reserved=Payment.refund_reserved + amount)).rowcount == 1
    if not reserved:
        return None
    count = db.session.scalar(select(func.count()).where(Refund.payment_id == payment_id)) or 0
    refund = Refund(order_id=payment.order_id, payment_id=payment_id,
                    out_refund_no=f"{payment.out_trade_no}R{count + 1:02d}", kind="duplicate", amount=amount,
                    reason=_("重复支付退款"), requested_by="system")
    db.session.add(refund)
    status = db.session.scalar(select(Order.status).where(Order.id == payment.order_id)) or ""
    record_event(payment.order_id, payment_id, status, status, "system",
                 _("重复支付自动退款 %(amount)s（%(no)s）", amount=f"¥{amount // 100}.{amount % 100:02d}",
                   no=refund.out_refund_no), refund.out_refund_no)
    return refund


def close_payment(payment_id: int, cause: str, note: str = "") -> bool:
    """Mark an attempt closed, after WeChat Pay closed it. True the first time only."""
    payment = db.session.get(Payment, payment_id)
    changed = _move_payment(payment_id, OPEN_PAYMENT_STATUSES, PaymentStatus.CLOSED)
    if changed and payment is not None:
        # The order itself does not move: the event says which attempt ended.
        status = db.session.scalar(select(Order.status).where(Order.id == payment.order_id)) or ""
        record_event(payment.order_id, payment_id, status, status, cause,
                note or _("支付尝试已关闭：%(no)s", no=payment.out_trade_no))
    db.session.commit()
    return changed


def close_order_if_unpaid(order_id: int, cause: str, note: str = "") -> bool:
    """Close a pending order that has no open attempt left. True the first time only."""
    open_attempt = exists().where(Payment.order_id == order_id, Payment.status.in_(OPEN_PAYMENT_STATUSES))
    changed = transition(order_id, OrderStatus.PENDING, OrderStatus.CLOSED, ~open_attempt, closed_at=utcnow())
    if changed:
        record_event(order_id, None, OrderStatus.PENDING, OrderStatus.CLOSED, cause, note or _("订单已关闭"))
    db.session.commit()
    return changed


def claim_query(payment_id: int, interval_seconds: int) -> bool:
    """Claim the right to query this attempt now; at most once per interval across workers."""
    now = utcnow()
    result = db.session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            (Payment.last_queried_at.is_(None)) | (Payment.last_queried_at <= now - timedelta(seconds=interval_seconds)),
        )
        .values(last_queried_at=now)
    )
    db.session.commit()
    return result.rowcount == 1


def to_utc_naive(moment: datetime) -> datetime:
    """WeChat's aware times to the naive UTC the tables hold."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def h5_url_renewed(payment_id: int, h5_url: str, issued_at: datetime) -> bool:
    """A fresh ``h5_url`` for a still-payable H5 attempt (the old one lives only 5 minutes)."""
    result = db.session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.NOTPAY)
        .values(h5_url=h5_url, h5_url_issued_at=issued_at)
    )
    db.session.commit()
    return result.rowcount == 1
