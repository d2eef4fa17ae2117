"""The order state machine: the one place that changes an order's or an attempt's status.

Every transition is a single conditional UPDATE whose row count says who won, so duplicate
notifications, active queries, jobs and several workers can race and still leave one state.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ShopError
from ..extensions import db
from ..i18n import _, to_source
from ..models import (
    OPEN_PAYMENT_STATUSES,
    Order,
    OrderEvent,
    OrderStatus,
    Payment,
    PaymentStatus,
    Product,
    Refund,
    RefundStatus,
    utcnow,
)
from ..wechatpay.times import BEIJING

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


def new_order_no() -> str:
    """``SF`` + Beijing time + 6 random digits: sortable, readable on a phone call."""
    local = datetime.now(BEIJING).strftime("%Y%m%d%H%M%S")
    return f"SF{local}{secrets.randbelow(10**6):06d}"


def create_order(owner: str, product_id: object, quantity: object) -> Order:
    """A pending order at the database's price. :raise OrderError: bad product or quantity."""
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
        raise OrderError("INVALID_QUANTITY", _("购买数量须为 1 到 %(n)s 之间的整数", n=MAX_QUANTITY))
    if not isinstance(product_id, int) or isinstance(product_id, bool):
        raise OrderError("PRODUCT_NOT_FOUND", _("商品不存在"), 404)
    product = db.session.get(Product, product_id)
    if product is None or not product.active:
        raise OrderError("PRODUCT_NOT_FOUND", _("商品不存在"), 404)
    order = Order(
        order_no=new_order_no(),
        owner=owner,
        product_id=product.id,
        product_name=product.name,
        quantity=quantity,
        unit_price=product.price_total,
        amount_total=product.price_total * quantity,
        status=OrderStatus.PENDING,
    )
    db.session.add(order)
    db.session.flush()
    _record(order.id, None, "", OrderStatus.PENDING, "shopper", _("下单"))
    db.session.commit()
    return order


def owned_order(order_no: str, owner: str | None) -> Order:
    """The order if this shopper owns it. :raise OrderError: 404 otherwise, never 403."""
    order = db.session.scalar(select(Order).where(Order.order_no == order_no))
    if order is None or owner is None or not secrets.compare_digest(order.owner, owner):
        raise OrderError("ORDER_NOT_FOUND", _("订单不存在"), 404)
    return order


def _record(
    order_id: int, payment_id: int | None, source: str, target: str, cause: str, note: str = "",
    wechat_ref: str | None = None,
) -> None:
    db.session.add(
        OrderEvent(order_id=order_id, payment_id=payment_id, from_status=source, to_status=target,
                   cause=cause, note=to_source(note)[:200], wechat_ref=wechat_ref)
    )


def _transition(order_id: int, source: OrderStatus, target: OrderStatus, **values: object) -> bool:
    """Move one order from ``source`` to ``target``; False if another caller got there first."""
    if (source, target) not in TRANSITIONS:
        raise ValueError(f"illegal transition {source} -> {target}")
    result = db.session.execute(
        update(Order).where(Order.id == order_id, Order.status == source).values(status=target, **values)
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
            Payment.expires_at > now + timedelta(seconds=min_remaining_seconds),
        )
        .order_by(Payment.id.desc())
        .limit(1)
    )


def open_payments(order_id: int) -> list[Payment]:
    return list(
        db.session.scalars(
            select(Payment).where(Payment.order_id == order_id, Payment.status.in_(OPEN_PAYMENT_STATUSES))
        )
    )


def start_payment(order: Order, method: str, ttl_seconds: int, max_attempts: int) -> Payment:
    """Write a new attempt (status ``created``). The caller closes older ones at WeChat first.

    :raise OrderError: order not payable, or too many attempts.
    """
    if order.status == OrderStatus.PAID:
        raise OrderError("ORDERPAID", _("订单已支付"), 409)
    if order.status != OrderStatus.PENDING:
        raise OrderError("ORDER_CLOSED", _("订单已关闭，请重新下单"), 409)
    count = db.session.scalar(select(func.count()).where(Payment.order_id == order.id)) or 0
    if count >= max_attempts:
        raise OrderError("TOO_MANY_ATTEMPTS", _("支付尝试次数过多，请重新下单"), 409)
    payment = Payment(
        order_id=order.id,
        out_trade_no=f"{order.order_no}P{count + 1:02d}",
        method=method,
        status=PaymentStatus.CREATED,
        amount_total=order.amount_total,
        expires_at=utcnow().replace(microsecond=0) + timedelta(seconds=ttl_seconds),
    )
    db.session.add(payment)
    try:
        db.session.commit()
    except IntegrityError:
        # Another request started an attempt with the same number at the same moment.
        db.session.rollback()
        raise OrderError("PAYMENT_IN_PROGRESS", _("正在创建支付，请稍候刷新"), 409) from None
    return payment


def payment_issued(payment_id: int, code_url: str | None, **issued: object) -> bool:
    """WeChat Pay accepted the attempt: it is now payable. ``issued``: h5_url, prepay_id, ..."""
    changed = _move_payment(payment_id, (PaymentStatus.CREATED,), PaymentStatus.NOTPAY, code_url=code_url, **issued)
    db.session.commit()
    return changed


def payment_failed(payment_id: int) -> bool:
    """WeChat Pay refused to create the attempt."""
    changed = _move_payment(payment_id, (PaymentStatus.CREATED,), PaymentStatus.FAILED)
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
    commit: bool = True,
) -> PaymentOutcome:
    """Apply a payment WeChat Pay reported (notification or query). Race-safe and idempotent.

    ``commit=False`` leaves the changes in the open transaction for the caller to commit with its
    own record (one durable commit per notification instead of two).

    :raise OrderError: unknown ``out_trade_no`` (404) or an amount that is not the attempt's (400);
        in both cases nothing changes.
    """
    payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
    if payment is None:
        raise OrderError("ORDER_NOT_EXIST", f"unknown out_trade_no {out_trade_no}", 404)
    if amount_total != payment.amount_total:
        raise OrderError(
            "AMOUNT_MISMATCH", f"amount {amount_total} is not the order's {payment.amount_total}", 400
        )
    values = {"transaction_id": transaction_id, "paid_at": paid_at}
    late = False
    if not _move_payment(payment.id, OPEN_PAYMENT_STATUSES, PaymentStatus.PAID, **values):
        # Paid at WeChat after the shop closed (or failed) this attempt: the money is real.
        if not _move_payment(payment.id, (PaymentStatus.CLOSED, PaymentStatus.FAILED), PaymentStatus.PAID, **values):
            db.session.rollback()
            return PaymentOutcome.DUPLICATE
        late = True
    order_id = payment.order_id
    ref = wechat_ref or transaction_id
    if _transition(order_id, OrderStatus.PENDING, OrderStatus.PAID, paid_at=paid_at, needs_review=late):
        note = _("微信支付确认收款") if not late else _("已关闭的支付尝试被支付，已标记复核")
        _record(order_id, payment.id, OrderStatus.PENDING, OrderStatus.PAID, cause, note, ref)
        outcome = PaymentOutcome.LATE if late else PaymentOutcome.APPLIED
    elif _transition(order_id, OrderStatus.CLOSED, OrderStatus.PAID, paid_at=paid_at, needs_review=True):
        _record(order_id, payment.id, OrderStatus.CLOSED, OrderStatus.PAID, cause,
                _("订单关闭后收到付款，已标记复核"), ref)
        outcome = PaymentOutcome.LATE
    else:
        # Already paid through another attempt: a double payment, to be refunded.
        db.session.execute(update(Order).where(Order.id == order_id).values(needs_review=True))
        status = db.session.scalar(select(Order.status).where(Order.id == order_id))
        _record(order_id, payment.id, status, status, cause,
                _("重复支付：该订单已通过另一笔支付完成，需退款"), ref)
        outcome = PaymentOutcome.DOUBLE
    if commit:
        db.session.commit()
    return outcome


def close_payment(payment_id: int, cause: str, note: str = "") -> bool:
    """Mark an attempt closed, after WeChat Pay closed it. True the first time only."""
    payment = db.session.get(Payment, payment_id)
    changed = _move_payment(payment_id, OPEN_PAYMENT_STATUSES, PaymentStatus.CLOSED)
    if changed and payment is not None:
        # The order itself does not move: the event says which attempt ended.
        status = db.session.scalar(select(Order.status).where(Order.id == payment.order_id)) or ""
        _record(payment.order_id, payment_id, status, status, cause,
                note or _("支付尝试已关闭：%(no)s", no=payment.out_trade_no))
    db.session.commit()
    return changed


def close_order_if_unpaid(order_id: int, cause: str, note: str = "") -> bool:
    """Close a pending order that has no open attempt left. True the first time only."""
    open_attempt = exists().where(Payment.order_id == order_id, Payment.status.in_(OPEN_PAYMENT_STATUSES))
    result = db.session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == OrderStatus.PENDING, ~open_attempt)
        .values(status=OrderStatus.CLOSED, closed_at=utcnow())
    )
    changed = result.rowcount == 1
    if changed:
        _record(order_id, None, OrderStatus.PENDING, OrderStatus.CLOSED, cause, note or _("订单已关闭"))
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


# -- refunds ------------------------------------------------------------------------------------
# A refund moves through pending -> success | abnormal | closed (abnormal -> success | closed),
# or pending -> failed when WeChat Pay refuses it. Money is reserved on the payment first, with a
# conditional UPDATE, so racing refunds can never exceed what was paid; CLOSED and failed give it
# back. The order's status stays "paid" through partial refunds and becomes "refunded" once
# amount_refunded reaches amount_total.

REFUND_TRANSITIONS = {
    RefundStatus.SUCCESS: (RefundStatus.PENDING, RefundStatus.ABNORMAL),
    RefundStatus.ABNORMAL: (RefundStatus.PENDING,),
    RefundStatus.CLOSED: (RefundStatus.PENDING, RefundStatus.ABNORMAL),
    RefundStatus.FAILED: (RefundStatus.PENDING,),
}
WECHAT_REFUND_STATUS = {"SUCCESS": RefundStatus.SUCCESS, "ABNORMAL": RefundStatus.ABNORMAL,
                        "CLOSED": RefundStatus.CLOSED}


def _yuan(fen: int) -> str:
    """Fen as ¥12.34 for event notes: integer arithmetic only."""
    return f"¥{fen // 100}.{fen % 100:02d}"


def refundable(payment: Payment) -> int:
    """Fen of this payment not yet held by a refund."""
    return payment.amount_total - payment.refund_reserved


def create_refund(
    payment: Payment, amount: int, *, reason: str = "", kind: str = "order", requested_by: str = "merchant",
) -> Refund:
    """Reserve ``amount`` on a paid payment and write the refund (status pending).

    :raise OrderError: not paid, bad amount, more than is left, or another refund racing.
    """
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise OrderError("INVALID_AMOUNT", _("退款金额须为大于 0 的整数（分）"))
    if payment.status != PaymentStatus.PAID:
        raise OrderError("NOT_PAID", _("该支付尚未成功，不能退款"), 409)
    reserved = db.session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status == PaymentStatus.PAID,
               Payment.refund_reserved + amount <= Payment.amount_total)
        .values(refund_reserved=Payment.refund_reserved + amount)
    ).rowcount == 1
    if not reserved:
        db.session.rollback()
        raise OrderError("REFUND_EXCEEDS_PAID", _("退款金额超过可退金额"), 409)
    count = db.session.scalar(select(func.count()).where(Refund.payment_id == payment.id)) or 0
    refund = Refund(order_id=payment.order_id, payment_id=payment.id, out_refund_no=f"{payment.out_trade_no}R{count + 1:02d}",
                    kind=kind, amount=amount, reason=reason[:80], requested_by=requested_by)
    db.session.add(refund)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()  # the reservation goes with it
        raise OrderError("REFUND_IN_PROGRESS", _("另一笔退款正在创建，请稍后再试"), 409) from None
    status = db.session.scalar(select(Order.status).where(Order.id == payment.order_id)) or ""
    note = _("申请退款 %(amount)s（%(no)s）", amount=_yuan(amount), no=refund.out_refund_no)
    if kind == "duplicate":
        note = _("重复支付自动退款 %(amount)s（%(no)s）", amount=_yuan(amount), no=refund.out_refund_no)
    _record(payment.order_id, payment.id, status, status, requested_by, note, refund.out_refund_no)
    db.session.commit()
    return refund


def _move_refund(refund_id: int, target: RefundStatus, **values: object) -> bool:
    sources = REFUND_TRANSITIONS[target]
    result = db.session.execute(
        update(Refund).where(Refund.id == refund_id, Refund.status.in_(sources)).values(status=target, **values)
    )
    return result.rowcount == 1


def refund_failed(refund_id: int, error: str) -> bool:
    """WeChat Pay refused to create the refund: give the amount back. True the first time only."""
    refund = db.session.get(Refund, refund_id)
    if refund is None or not _move_refund(refund_id, RefundStatus.FAILED, error=error[:200]):
        db.session.rollback()
        return False
    _release(refund)
    status = db.session.scalar(select(Order.status).where(Order.id == refund.order_id)) or ""
    _record(refund.order_id, refund.payment_id, status, status, "merchant",
            _("退款申请被拒绝：%(e)s", e=error), refund.out_refund_no)
    db.session.commit()
    return True


def _release(refund: Refund) -> None:
    db.session.execute(update(Payment).where(Payment.id == refund.payment_id)
                       .values(refund_reserved=Payment.refund_reserved - refund.amount))


class RefundOutcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already in that state, or later: nothing changed
    PROCESSING = "processing"  # WeChat Pay still processing: nothing to change


def apply_refund(
    out_refund_no: str,
    *,
    wechat_status: str,
    refund_id: str | None,
    amount: int | None,
    succeeded_at: datetime | None,
    cause: str,
    wechat_ref: str | None = None,
    commit: bool = True,
) -> RefundOutcome:
    """Apply a refund state WeChat Pay reported (notification, answer or query). Idempotent.

    ``commit=False`` leaves the changes in the open transaction for the caller to commit with its
    own record (a notification: one atomic commit with its NotificationRecord).

    :raise OrderError: unknown ``out_refund_no`` (404) or an amount that is not the refund's (400).
    """
    refund = db.session.scalar(select(Refund).where(Refund.out_refund_no == out_refund_no))
    if refund is None:
        raise OrderError("REFUND_NOT_EXIST", f"unknown out_refund_no {out_refund_no}", 404)
    if amount is not None and amount != refund.amount:
        raise OrderError("AMOUNT_MISMATCH", f"refund amount {amount} is not ours {refund.amount}", 400)
    if refund_id and not refund.refund_id:
        db.session.execute(update(Refund).where(Refund.id == refund.id, Refund.refund_id.is_(None))
                           .values(refund_id=refund_id))
    target = WECHAT_REFUND_STATUS.get(wechat_status)
    if target is None:
        if commit:
            db.session.commit()
        return RefundOutcome.PROCESSING
    values: dict[str, object] = {}
    if target == RefundStatus.SUCCESS:
        values["succeeded_at"] = succeeded_at or utcnow()
    if not _move_refund(refund.id, target, **values):
        if commit:
            db.session.commit()  # keeps a refund_id learned above
        return RefundOutcome.DUPLICATE
    ref = wechat_ref or refund_id or refund.out_refund_no
    order_id = refund.order_id
    status = db.session.scalar(select(Order.status).where(Order.id == order_id)) or ""
    if target == RefundStatus.CLOSED:
        _release(refund)
        _record(order_id, refund.payment_id, status, status, cause,
                _("退款关闭：%(no)s，金额可再次退款", no=out_refund_no), ref)
    elif target == RefundStatus.ABNORMAL:
        _record(order_id, refund.payment_id, status, status, cause,
                _("退款异常：%(no)s，需人工处理", no=out_refund_no), ref)
    elif refund.kind != "order":
        _record(order_id, refund.payment_id, status, status, cause,
                _("重复支付已退回：%(amount)s", amount=_yuan(refund.amount)), ref)
    else:
        db.session.execute(update(Order).where(Order.id == order_id)
                           .values(amount_refunded=Order.amount_refunded + refund.amount))
        full = db.session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == OrderStatus.PAID, Order.amount_refunded >= Order.amount_total)
            .values(status=OrderStatus.REFUNDED)
        ).rowcount == 1
        refunded = db.session.scalar(select(Order.amount_refunded).where(Order.id == order_id))
        if full:
            _record(order_id, refund.payment_id, OrderStatus.PAID, OrderStatus.REFUNDED, cause,
                    _("已全额退款（%(no)s）", no=out_refund_no), ref)
        else:
            _record(order_id, refund.payment_id, status, status, cause,
                    _("部分退款成功 %(amount)s，累计已退 %(total)s", amount=_yuan(refund.amount),
                      total=_yuan(refunded or 0)), ref)
    if commit:
        db.session.commit()
    return RefundOutcome.APPLIED


def claim_refund_query(refund_id: int, interval_seconds: int) -> bool:
    """Claim the right to query this refund now; at most once per interval across workers."""
    now = utcnow()
    result = db.session.execute(
        update(Refund)
        .where(Refund.id == refund_id,
               (Refund.last_queried_at.is_(None)) | (Refund.last_queried_at <= now - timedelta(seconds=interval_seconds)))
        .values(last_queried_at=now)
    )
    db.session.commit()
    return result.rowcount == 1
