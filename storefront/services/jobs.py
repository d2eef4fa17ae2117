"""Jobs for cron (and the dev scheduler): close expired attempts, reconcile pending ones."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import OPEN_PAYMENT_STATUSES, Order, OrderStatus, Payment, utcnow
from ..wechatpay import WeChatPayError
from . import orders, payments

log = logging.getLogger(__name__)
BATCH = 500


def close_expired() -> tuple[int, int]:
    """Close attempts past ``time_expire`` + grace at WeChat Pay, then locally; close their orders."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["CLOSE_GRACE_SECONDS"])
    due = list(db.session.scalars(
        select(Payment).where(Payment.status.in_(OPEN_PAYMENT_STATUSES), Payment.expires_at < cutoff)
        .order_by(Payment.id).limit(BATCH)
    ))
    closed = paid = 0
    for payment in due:
        order_id = payment.order_id
        try:
            if payments.close_at_wechat(payment, "job"):
                closed += 1
                orders.close_order_if_unpaid(order_id, "job")
            else:
                paid += 1
        except WeChatPayError as exc:
            db.session.rollback()
            log.warning("close-expired: %s not closed: %s", payment.out_trade_no, exc)
    # Pending orders whose attempts all ended (failed ones included), or that never started
    # one within a payment lifetime, close too.
    abandoned = cutoff - timedelta(seconds=current_app.config["PAYMENT_TTL_SECONDS"])
    stale = db.session.scalars(
        select(Order.id).where(Order.status == OrderStatus.PENDING, Order.created_at < abandoned).limit(BATCH)
    )
    for order_id in list(stale):
        if not orders.open_payments(order_id):
            latest = db.session.scalar(select(Payment.expires_at).where(Payment.order_id == order_id)
                                       .order_by(Payment.id.desc()).limit(1))
            if latest is None or latest < cutoff:
                orders.close_order_if_unpaid(order_id, "job")
    return closed, paid


def reconcile() -> tuple[int, int]:
    """Query attempts still open after a while; a payment whose notification was lost is applied."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["RECONCILE_AFTER_SECONDS"])
    due = list(db.session.scalars(
        select(Payment).where(Payment.status.in_(OPEN_PAYMENT_STATUSES), Payment.created_at < cutoff)
        .order_by(Payment.id).limit(BATCH)
    ))
    paid = 0
    for payment in due:
        try:
            transaction = payments.query_and_apply(payment, cause="job")
        except (WeChatPayError, orders.OrderError) as exc:
            db.session.rollback()
            log.warning("reconcile: %s not queried: %s", payment.out_trade_no, exc)
            continue
        if transaction.trade_state in payments.PAID_TRADE_STATES:
            paid += 1
    return len(due), paid
