"""The refund of a double payment cannot be lost: an outbox row, sent until WeChat Pay confirms.

The row is the ``Refund`` itself (kind ``duplicate``, status pending, no ``refund_id`` yet),
written by ``orders.apply_payment`` in the same transaction that records the double payment.
After the commit the handler sends it at once; if that call fails or the process dies, the
``reconcile`` job (and the dev scheduler) sends it again, always with the same
``out_refund_no``, which WeChat Pay refunds once however often it is asked. Once WeChat Pay has
answered (``refund_id`` known) the usual pending-refund queries follow it to the end.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from ..extensions import db
from ..models import Refund, RefundStatus
from ..wechatpay import WeChatPayError
from . import refunds
from .orders import OrderError

log = logging.getLogger(__name__)


def due() -> list[Refund]:
    """Outbox rows WeChat Pay has not confirmed yet: pending duplicate refunds without a refund_id."""
    rows = list(db.session.scalars(select(Refund).where(
        Refund.kind == "duplicate", Refund.status == RefundStatus.PENDING, Refund.refund_id.is_(None))
        .order_by(Refund.id).limit(500)))
    db.session.commit()
    return rows


def send_due() -> tuple[int, int]:
    """Send every unconfirmed double-payment refund (same out_refund_no). Returns (tried, confirmed)."""
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
