"""Jobs for cron (and the dev scheduler): close expired attempts, reconcile pending ones."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from flask import current_app
from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute

from ..extensions import db
from ..models import Order, Payment, utcnow
from ..wechatpay import WeChatPayError
from . import orders, payments, refunds

log = logging.getLogger(__name__)
BATCH = 500


def _by_id(statement: Select, id_column: InstrumentedAttribute[int]) -> Iterator:
    """The statement's rows in id order, BATCH at a time, each once.

    One run drains a backlog larger than a batch, and a row left as it was (WeChat Pay
    unreachable) is not fetched again in the same run, so it cannot starve the rows behind it.
    """
    after = 0
    while True:
        rows = list(db.session.scalars(statement.where(id_column > after).order_by(id_column).limit(BATCH)))
        if not rows:
            return
        last = rows[-1]
        after = last if isinstance(last, int) else last.id
        yield from rows


def close_expired() -> tuple[int, int]:
    """Close attempts past ``time_expire`` + grace at WeChat Pay, then locally; close their orders."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["CLOSE_GRACE_SECONDS"])
    due = select(Payment).where(Payment.is_open_clause(), Payment.expires_at < cutoff)
    closed = paid = 0
    for payment in _by_id(due, Payment.id):
        order_id, out_trade_no = payment.order_id, payment.out_trade_no
        try:
            if payments.close_at_wechat(payment, "job"):
                closed += 1
                orders.close_order_if_unpaid(order_id, "job")
            else:
                paid += 1
        except (WeChatPayError, orders.OrderError) as exc:  # one bad attempt must not stop the run
            db.session.rollback()
            log.warning("close-expired: %s not closed: %s", out_trade_no, exc)
    # Pending orders whose attempts all ended (failed ones included), or that never started
    # one within a payment lifetime, close too.
    abandoned = cutoff - timedelta(seconds=current_app.config["PAYMENT_TTL_SECONDS"])
    stale = select(Order.id).where(Order.is_pending_clause(), Order.created_at < abandoned)
    for order_id in _by_id(stale, Order.id):
        if not orders.open_payments(order_id):
            latest = db.session.scalar(select(Payment.expires_at).where(Payment.order_id == order_id)
                                       .order_by(Payment.id.desc()).limit(1))
            if latest is None or latest < cutoff:
                orders.close_order_if_unpaid(order_id, "job")
    return closed, paid


def reconcile() -> tuple[int, int]:
    """Query attempts still open after a while; a payment whose notification was lost is applied."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["RECONCILE_AFTER_SECONDS"])
    due = select(Payment).where(Payment.is_open_clause(), Payment.created_at < cutoff)
    checked = paid = 0
    for payment in _by_id(due, Payment.id):
        checked += 1
        out_trade_no = payment.out_trade_no
        try:
            transaction = payments.query_and_apply(payment, cause="job")
        except (WeChatPayError, orders.OrderError) as exc:
            db.session.rollback()
            log.warning("reconcile: %s not queried: %s", out_trade_no, exc)
            continue
        if transaction.trade_state in payments.PAID_TRADE_STATES:
            paid += 1

    refunds.reconcile_pending(cutoff)
    from . import refund_outbox  # double payments' refunds not yet confirmed: send again, same number

    refund_outbox.send_due()
    from ..merchant import auth

    auth.purge_expired()
    return checked, paid
