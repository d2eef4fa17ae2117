"""The refund state machine: the one place that changes a refund's status.

A refund moves through pending -> success | abnormal | closed (abnormal -> success | closed),
or pending -> failed when WeChat Pay refuses it. Money is reserved on the payment first, with a
conditional UPDATE, so racing refunds can never exceed what was paid; CLOSED and failed give it
back. The order's status stays "paid" through partial refunds and becomes "refunded" once
amount_refunded reaches amount_total.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..i18n import _
from ..models import Order, OrderStatus, Payment, PaymentStatus, Refund, RefundStatus, utcnow
from . import orders
from .orders import OrderError

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
    orders.record_event(payment.order_id, payment.id, status, status, requested_by, note, refund.out_refund_no)
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
    orders.record_event(refund.order_id, refund.payment_id, status, status, "merchant",
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
    payer_refund: int | None = None,
) -> RefundOutcome:
    """Apply a refund state WeChat Pay reported (notification, answer or query). Idempotent.

    The changes (a ``refund_id`` learned included) stay in the open transaction for the caller to
    commit: a notification with its NotificationRecord, in one atomic commit.

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
    if payer_refund is not None and refund.payer_refund != payer_refund:
        # What goes back to the payer; the rest of the refund goes back to a coupon.
        db.session.execute(update(Refund).where(Refund.id == refund.id).values(payer_refund=payer_refund))
    target = WECHAT_REFUND_STATUS.get(wechat_status)
    if target is None:
        return RefundOutcome.PROCESSING
    values: dict[str, object] = {}
    if target == RefundStatus.SUCCESS:
        values["succeeded_at"] = succeeded_at or utcnow()
    if not _move_refund(refund.id, target, **values):
        return RefundOutcome.DUPLICATE  # the caller's commit keeps a refund_id learned above
    ref = wechat_ref or refund_id or refund.out_refund_no
    order_id = refund.order_id
    status = db.session.scalar(select(Order.status).where(Order.id == order_id)) or ""
    if target == RefundStatus.CLOSED:
        _release(refund)
        orders.record_event(order_id, refund.payment_id, status, status, cause,
                _("退款关闭：%(no)s，金额可再次退款", no=out_refund_no), ref)
    elif target == RefundStatus.ABNORMAL:
        orders.record_event(order_id, refund.payment_id, status, status, cause,
                _("退款异常：%(no)s，需人工处理", no=out_refund_no), ref)
    elif refund.kind != "order":
        orders.record_event(order_id, refund.payment_id, status, status, cause,
                _("重复支付已退回：%(amount)s", amount=_yuan(refund.amount)), ref)
    else:
        db.session.execute(update(Order).where(Order.id == order_id)
                           .values(amount_refunded=Order.amount_refunded + refund.amount))
        full = orders.transition(order_id, OrderStatus.PAID, OrderStatus.REFUNDED,
                           Order.amount_refunded >= Order.amount_total)
        refunded = db.session.scalar(select(Order.amount_refunded).where(Order.id == order_id))
        if full:
            orders.record_event(order_id, refund.payment_id, OrderStatus.PAID, OrderStatus.REFUNDED, cause,
                    _("已全额退款（%(no)s）", no=out_refund_no), ref)
        else:
            orders.record_event(order_id, refund.payment_id, status, status, cause,
                    _("部分退款成功 %(amount)s，累计已退 %(total)s", amount=_yuan(refund.amount),
                      total=_yuan(refunded or 0)), ref)
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
