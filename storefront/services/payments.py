"""Payments at WeChat Pay: builds requests from orders and applies the answers via ``orders``.

Rule: never close anything locally before WeChat Pay has closed it; a close that answers
``ORDERPAID`` means the payer was faster, and the payment is applied instead.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from .. import gateway
from ..extensions import db
from ..i18n import _
from ..models import Order, OrderStatus, Payment, PaymentStatus, utcnow
from ..wechatpay import APIError, Transaction, WeChatPayError
from ..wechatpay.times import parse_time
from . import notifications, orders, rawsql, refunds, wechat
from .orders import OrderError, PaymentOutcome

log = logging.getLogger(__name__)

PAID_TRADE_STATES = {"SUCCESS", "REFUND"}  # REFUND: paid, then a refund was requested


def describe(order: Order) -> str:
    """The line on the payer's bill (max 127 characters)."""
    text = order.product_name if order.quantity == 1 else f"{order.product_name} ×{order.quantity}"
    return text[:127]


def close_at_wechat(payment: Payment, cause: str, note: str = "") -> bool:
    """Close one attempt at WeChat Pay, then locally. False if it turned out to be paid."""
    out_trade_no = payment.out_trade_no
    try:
        wechat.client().close_order(out_trade_no)
    except APIError as exc:
        if exc.code == "ORDERPAID":
            query_and_apply(payment, cause="query")
            return False
        # ORDER_NOT_EXIST: never reached WeChat Pay, nothing to close there. ORDER_CLOSED: already
        # closed there (another job run, or a crash before the local close): finish locally.
        if exc.code not in ("ORDER_NOT_EXIST", "ORDER_CLOSED"):
            raise
    orders.close_payment(payment.id, cause, note)
    return True


def close_open_attempts(order: Order, cause: str, open_attempts: list[Payment] | None = None,
                        renewal: bool = False) -> None:
    """Close every open attempt of the order (``open_attempts``, if the caller has just loaded
    them). :raise OrderError: ``ORDERPAID`` if one was paid.

    ``renewal``: a new QR code replaces a Native one; the order's record says so (二维码更新).
    """
    for payment in orders.open_payments(order.id) if open_attempts is None else open_attempts:
        note = ""
        if renewal and payment.method == "native":
            note = _("二维码更新：关闭旧的支付尝试 %(no)s，再用新的商户单号下单", no=payment.out_trade_no)
        try:
            closed = close_at_wechat(payment, cause, note)
        except WeChatPayError as exc:
            raise wechat.unavailable() from exc
        if not closed:
            raise OrderError("ORDERPAID", _("订单已支付"), 409)


def query_and_apply(payment: Payment, cause: str = "query") -> Transaction:
    """Ask WeChat Pay about one attempt and apply a payment it reports."""
    out_trade_no = payment.out_trade_no
    transaction, _response = wechat.client().query_by_out_trade_no(out_trade_no)
    if transaction.trade_state in PAID_TRADE_STATES and transaction.transaction_id:
        outcome = orders.apply_payment(
            out_trade_no,
            transaction_id=transaction.transaction_id,
            amount_total=transaction.amount_total,
            paid_at=_paid_at(transaction),
            cause=cause,
            payer_total=transaction.payer_total,
        )
        db.session.commit()
        if outcome == PaymentOutcome.DOUBLE:
            refunds.refund_double_payment(out_trade_no)
    elif transaction.trade_state == "CLOSED":
        orders.close_payment(payment.id, cause)
    return transaction


def refresh_pending(order: Order) -> None:
    """While a page polls a pending order, query its open attempts at a bounded rate."""
    if order.status != OrderStatus.PENDING:
        return
    interval = current_app.config["ACTIVE_QUERY_INTERVAL_SECONDS"]
    for payment in orders.open_payments(order.id):
        # Not one WeChat Pay has not answered for yet (no code to pay): reconcile queries those.
        if payment.status != PaymentStatus.NOTPAY or not payment.is_issued \
                or not orders.claim_query(payment.id, interval):
            continue
        try:
            query_and_apply(payment, cause="query")
        except (WeChatPayError, OrderError) as exc:
            log.warning("active query of %s failed: %s", payment.out_trade_no, exc)
    db.session.refresh(order)


def _paid_at(transaction: Transaction):
    if transaction.success_time:
        try:
            return orders.to_utc_naive(parse_time(transaction.success_time))
        except ValueError:
            pass
    return utcnow()


class PaymentNotifications:
    """``TRANSACTION.*`` notifications for ``notifications.receive``: WeChat Pay "支付通知"."""

    trace_kind = "notify_payment"

    def accepts(self, event_type: str) -> bool:
        # Basic payments notify only successes; anything else is acknowledged so it stops.
        return event_type == "TRANSACTION.SUCCESS"

    def check(self, received: notifications.Received) -> None:
        transaction = received.event.transaction()
        received.state["transaction"] = transaction
        received.out_trade_no = transaction.out_trade_no
        trace, creds = received.trace, gateway.gateway().credentials
        if not trace.check("mchid", transaction.mchid == creds.mchid, transaction.mchid):
            raise notifications.reject(400, "mchid is not ours")
        if not trace.check("appid", transaction.appid in (creds.appid, creds.miniprogram_appid), transaction.appid):
            raise notifications.reject(400, "appid is not ours")
        if not trace.check("trade_state", transaction.trade_state == "SUCCESS" and bool(transaction.transaction_id),
                           f"{transaction.trade_state} {transaction.transaction_id or ''}".strip()):
            raise notifications.reject(400, f"trade_state {transaction.trade_state}")

    def expected(self, received: notifications.Received) -> tuple[str, list[tuple[str, bool, str]]]:
        """What ``apply`` most often ends with: applied, the amount check passed (as it notes it)."""
        return str(PaymentOutcome.APPLIED), [("amount", True, _same_amount(_transaction(received)))]

    def apply_common(self, received: notifications.Received, target: rawsql.CursorSource) -> str | None:
        """The common case on the notification's own driver transaction: an open attempt with this
        very amount and its pending order become paid. None: any other case (``apply`` decides)."""
        transaction = _transaction(received)
        linked = orders.apply_payment_common(target, transaction.out_trade_no, **_applied(received, transaction))
        if linked is None:
            return None
        received.trace.linked(*linked)
        received.trace.check("amount", True, _same_amount(transaction))
        return str(PaymentOutcome.APPLIED)

    def apply(self, received: notifications.Received) -> str:
        transaction = _transaction(received)
        try:
            outcome = orders.apply_payment(
                transaction.out_trade_no, **_applied(received, transaction),
                # The flow record links to the attempt this updated: no query to find it again.
                on_applied=lambda order_id, payment_id: received.trace.linked(order_id, payment_id),
            )  # committed by notifications.record with the records: one commit, atomic
        except OrderError:
            # No such attempt, or another amount: show what was compared.
            expected = db.session.scalar(select(Payment.amount_total)
                                         .where(Payment.out_trade_no == transaction.out_trade_no))
            received.trace.check("amount", expected is not None and transaction.amount_total == expected,
                                 f"{transaction.amount_total} / {expected if expected is not None else '?'}")
            raise
        # apply_payment accepted the amount: it equals the attempt's.
        received.trace.check("amount", True, _same_amount(transaction))
        return str(outcome)

    def after(self, received: notifications.Received, outcome: str) -> None:
        if outcome == PaymentOutcome.DOUBLE and received.out_trade_no:
            refunds.refund_double_payment(received.out_trade_no)


def _transaction(received: notifications.Received) -> Transaction:
    transaction = received.state["transaction"]  # put there by ``check``
    assert isinstance(transaction, Transaction)
    return transaction


def _applied(received: notifications.Received, transaction: Transaction) -> dict[str, object]:
    """What a payment notification applies, for ``orders.apply_payment`` and its common case alike."""
    return {"transaction_id": transaction.transaction_id or "", "amount_total": transaction.amount_total,
            "paid_at": _paid_at(transaction), "cause": "notify", "wechat_ref": received.event.id,
            "payer_total": transaction.payer_total}


def _same_amount(transaction: Transaction) -> str:
    """The amount check's detail when the notified amount is the attempt's ("notified / attempt's")."""
    return f"{transaction.amount_total} / {transaction.amount_total}"


PAYMENT_NOTIFICATIONS = PaymentNotifications()


def handle_payment_notification(headers, body: bytes, received_at: datetime | None = None,
                                **where: str) -> notifications.NotifyResult:
    """Verify, decrypt, check and apply one payment notification; record what happened."""
    return notifications.receive(PAYMENT_NOTIFICATIONS, headers, body, received_at, **where)
