"""The refund of a double payment cannot be lost: an outbox row, sent until WeChat Pay confirms.

The row is the ``Refund`` itself (kind ``duplicate``, status pending, no ``refund_id`` yet),
written in the same transaction that records the double payment (``orders.apply_payment``).
After the commit the handler sends it at once; if that call fails or the process dies, the
``reconcile`` job (and the dev scheduler) sends it again, always with the same
``out_refund_no``, which WeChat Pay refunds once however often it is asked. Once WeChat Pay has
answered (``refund_id`` known) the usual pending-refund queries follow it to the end.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select, update

from ..extensions import db
from ..i18n import _
from ..models import Order, Payment, PaymentStatus, Refund, RefundStatus
from ..wechatpay import WeChatPayError

log = logging.getLogger(__name__)


def enqueue_double_payment(payment_id: int) -> Refund | None:
    """Write the pending refund of a whole double payment, in the caller's open transaction (no commit).

    The payment has just been marked paid in this transaction. None if a refund for it exists already.
    """
    existing = db.session.scalar(select(Refund).where(Refund.payment_id == payment_id, Refund.kind == "duplicate"))
    if existing is not None:
        return None
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.status != PaymentStatus.PAID:
        return None
    amount = payment.amount_total
    reserved = db.session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.refund_reserved + amount <= Payment.amount_total)
        .values(refund_reserved=Payment.refund_reserved + amount)).rowcount == 1
    if not reserved:
        return None
    count = db.session.scalar(select(func.count()).where(Refund.payment_id == payment_id)) or 0
    refund = Refund(order_id=payment.order_id, payment_id=payment_id,
                    out_refund_no=f"{payment.out_trade_no}R{count + 1:02d}", kind="duplicate", amount=amount,
                    reason=_("重复支付退款"), requested_by="system")
    db.session.add(refund)
    from .orders import _record, _yuan

    status = db.session.scalar(select(Order.status).where(Order.id == payment.order_id)) or ""
    _record(payment.order_id, payment_id, status, status, "system",
            _("重复支付自动退款 %(amount)s（%(no)s）", amount=_yuan(amount), no=refund.out_refund_no),
            refund.out_refund_no)
    log.info("double payment %s: refund %s queued", payment.out_trade_no, refund.out_refund_no)
    return refund


def due() -> list[Refund]:
    """Outbox rows WeChat Pay has not confirmed yet: pending duplicate refunds without a refund_id."""
    rows = list(db.session.scalars(select(Refund).where(
        Refund.kind == "duplicate", Refund.status == RefundStatus.PENDING, Refund.refund_id.is_(None))
        .order_by(Refund.id).limit(500)))
    db.session.commit()
    return rows


def send_due() -> tuple[int, int]:
    """Send every unconfirmed double-payment refund (same out_refund_no). Returns (tried, confirmed)."""
    from . import refunds
    from .orders import OrderError

    tried = confirmed = 0
    for refund in due():
        tried += 1
        try:
            sent = refunds.send(refund)
        except (WeChatPayError, OrderError) as exc:
            db.session.rollback()
            log.warning("refund outbox: %s not confirmed yet: %s", refund.out_refund_no, exc)
            continue
        if sent.refund_id or sent.status != RefundStatus.PENDING:
            confirmed += 1
            log.info("refund outbox: %s confirmed by WeChat Pay (%s)", sent.out_refund_no, sent.status)
    return tried, confirmed
