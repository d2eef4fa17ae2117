"""Payments at WeChat Pay: builds requests from orders and applies the answers via ``orders``.

Rule: never close anything locally before WeChat Pay has closed it; a close that answers
``ORDERPAID`` means the payer was faster, and the payment is applied instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from .. import gateway
from ..extensions import db
from ..i18n import _
from ..models import NotificationRecord, Order, OrderStatus, Payment, PaymentStatus, utcnow
from ..wechatpay import APIError, Transaction, WeChatPayError
from ..wechatpay.times import parse_time
from . import flowlog, orders
from .orders import OrderError, PaymentOutcome

log = logging.getLogger(__name__)

PAID_TRADE_STATES = {"SUCCESS", "REFUND"}  # REFUND: paid, then a refund was requested


class PaymentError(OrderError):
    """WeChat Pay refused or could not be reached; ``code`` keeps WeChat's own code."""

    status = 502


def _end_transaction() -> None:
    """Commit before an HTTP round trip: no database lock may be held while WeChat Pay answers
    (the simulator, or a notification racing this request, may need the same rows)."""
    db.session.commit()


def describe(order: Order) -> str:
    """The line on the payer's bill (max 127 characters)."""
    text = order.product_name if order.quantity == 1 else f"{order.product_name} ×{order.quantity}"
    return text[:127]


def pay_native(order: Order) -> Payment:
    """The order's payable Native attempt: the still-valid one, else a new one.

    :raise OrderError: the order is paid or closed (``ORDERPAID`` if the payer was faster).
    :raise PaymentError: WeChat Pay refused or is unreachable.
    """
    reusable = orders.reusable_payment(order, "native")
    if reusable is not None:
        return reusable
    close_open_attempts(order, "shopper", renewal=True)  # an expired QR code is being replaced
    config = current_app.config
    payment = orders.start_payment(order, "native", config["PAYMENT_TTL_SECONDS"], config["MAX_ATTEMPTS_PER_ORDER"])
    description = describe(order)
    _end_transaction()
    try:
        response = gateway.client().prepay_native(
            description=description,
            out_trade_no=payment.out_trade_no,
            amount_total=payment.amount_total,
            notify_url=gateway.notify_url(),
            time_expire=payment.expires_at,
        )
    except APIError as exc:
        orders.payment_failed(payment.id)
        raise PaymentError(exc.code, _("微信支付下单失败：%(m)s", m=exc.message)) from exc
    except WeChatPayError as exc:
        # The attempt may exist at WeChat Pay: leave it open for close-expired to close there.
        log.warning("native prepay for %s failed: %s", payment.out_trade_no, exc)
        raise PaymentError("WECHATPAY_UNAVAILABLE", _("暂时无法连接微信支付，请稍后再试"), 503) from exc
    orders.payment_issued(payment.id, response.data.get("code_url"))
    db.session.refresh(payment)
    return payment


def renew_native(order: Order) -> Payment:
    """A fresh QR code: close the current attempt at WeChat Pay first, then start a new one."""
    close_open_attempts(order, "shopper", renewal=True)
    return pay_native(order)


def close_at_wechat(payment: Payment, cause: str, note: str = "") -> bool:
    """Close one attempt at WeChat Pay, then locally. False if it turned out to be paid."""
    out_trade_no = payment.out_trade_no
    _end_transaction()
    try:
        gateway.client().close_order(out_trade_no)
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


def close_open_attempts(order: Order, cause: str, renewal: bool = False) -> None:
    """Close every open attempt of the order. :raise OrderError: ``ORDERPAID`` if one was paid.

    ``renewal``: a new QR code replaces a Native one; the order's record says so (二维码更新).
    """
    for payment in orders.open_payments(order.id):
        note = ""
        if renewal and payment.method == "native":
            note = _("二维码更新：关闭旧的支付尝试 %(no)s，再用新的商户单号下单", no=payment.out_trade_no)
        try:
            closed = close_at_wechat(payment, cause, note)
        except WeChatPayError as exc:
            raise PaymentError("WECHATPAY_UNAVAILABLE", _("暂时无法连接微信支付，请稍后再试"), 503) from exc
        if not closed:
            raise OrderError("ORDERPAID", _("订单已支付"), 409)


def query_and_apply(payment: Payment, cause: str = "query") -> Transaction:
    """Ask WeChat Pay about one attempt and apply a payment it reports."""
    out_trade_no = payment.out_trade_no
    _end_transaction()
    transaction, _response = gateway.client().query_by_out_trade_no(out_trade_no)
    if transaction.trade_state in PAID_TRADE_STATES and transaction.transaction_id:
        outcome = orders.apply_payment(
            out_trade_no,
            transaction_id=transaction.transaction_id,
            amount_total=transaction.amount_total,
            paid_at=_paid_at(transaction),
            cause=cause,
        )
        if outcome == PaymentOutcome.DOUBLE:
            refund_double_payment(out_trade_no)
    elif transaction.trade_state == "CLOSED":
        orders.close_payment(payment.id, cause)
    return transaction


def refresh_pending(order: Order) -> None:
    """While a page polls a pending order, query its open attempts at a bounded rate."""
    if order.status != OrderStatus.PENDING:
        return
    interval = current_app.config["ACTIVE_QUERY_INTERVAL_SECONDS"]
    for payment in orders.open_payments(order.id):
        if payment.status != PaymentStatus.NOTPAY or not orders.claim_query(payment.id, interval):
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


@dataclass(frozen=True)
class NotifyResult:
    status: int  # HTTP status to answer WeChat Pay with
    outcome: str
    reason: str = ""


def handle_payment_notification(headers, body: bytes, received_at: datetime | None = None) -> NotifyResult:
    """Verify, decrypt, check and apply one payment notification; record what happened.

    Each check is noted in a ``flowlog.NotificationTrace`` as it runs, and the flow inspector's
    record is committed with the payment: one verification, one decryption, one commit.
    """
    gw = gateway.gateway()
    trace = flowlog.NotificationTrace(headers, body, received_at)
    event = transaction = None
    event_id = event_type = out_trade_no = None
    try:
        event = gw.parse_notification(headers, body)
        trace.parsed(event)
        event_id, event_type = event.id, event.event_type
        if event_type != "TRANSACTION.SUCCESS":
            # Basic payments notify only successes; acknowledge anything else so it stops.
            return _finish(NotifyResult(204, "ignored", f"event {event_type}"), event_id, event_type, None,
                           trace=trace)
        transaction = event.transaction()
        out_trade_no = transaction.out_trade_no
        creds = gw.credentials
        if not trace.check("mchid", transaction.mchid == creds.mchid, transaction.mchid):
            return _finish(NotifyResult(400, "rejected", "mchid is not ours"), event_id, event_type, out_trade_no,
                           trace=trace)
        if not trace.check("appid", transaction.appid in (creds.appid, creds.miniprogram_appid), transaction.appid):
            return _finish(NotifyResult(400, "rejected", "appid is not ours"), event_id, event_type, out_trade_no,
                           trace=trace)
        if not trace.check("trade_state", transaction.trade_state == "SUCCESS" and bool(transaction.transaction_id),
                           f"{transaction.trade_state} {transaction.transaction_id or ''}".strip()):
            return _finish(NotifyResult(400, "rejected", f"trade_state {transaction.trade_state}"),
                           event_id, event_type, out_trade_no, trace=trace)
        outcome = orders.apply_payment(
            out_trade_no,
            transaction_id=transaction.transaction_id,
            amount_total=transaction.amount_total,
            paid_at=_paid_at(transaction),
            cause="notify",
            wechat_ref=event_id,
            commit=False,  # committed by _finish together with the records: one commit, atomic
        )
    except WeChatPayError as exc:
        if event is None:
            trace.refused(exc)  # the signature or the decryption failed
        else:
            trace.check("decrypt", False, str(exc))  # it opened, but is not a transaction
        return _finish(NotifyResult(401, "rejected", str(exc)), event_id, event_type, out_trade_no, trace=trace)
    except OrderError as exc:
        if transaction is not None:
            # apply_payment found no such attempt, or another amount: show what it compared.
            expected = db.session.scalar(select(Payment.amount_total).where(Payment.out_trade_no == out_trade_no))
            trace.check("amount", expected is not None and transaction.amount_total == expected,
                        f"{transaction.amount_total} / {expected if expected is not None else '?'}")
        return _finish(NotifyResult(exc.status, "rejected", exc.message), event_id, event_type, out_trade_no,
                       trace=trace)
    # apply_payment accepted the amount: it equals the attempt's.
    trace.check("amount", True, f"{transaction.amount_total} / {transaction.amount_total}")
    status_by_outcome = {PaymentOutcome.DUPLICATE: "duplicate"}
    result = _finish(NotifyResult(204, status_by_outcome.get(outcome, str(outcome))), event_id, event_type,
                     out_trade_no, keep=True, trace=trace)
    if outcome == PaymentOutcome.DOUBLE:
        refund_double_payment(out_trade_no)
    return result


def refund_double_payment(out_trade_no: str) -> None:
    """The order was already paid through another attempt: give this payment back, once."""
    from . import refunds  # refunds builds on this module

    refunds.refund_double_payment(out_trade_no)


def _finish(result: NotifyResult, event_id: str | None, event_type: str | None, out_trade_no: str | None,
            keep: bool = False, trace: flowlog.NotificationTrace | None = None) -> NotifyResult:
    """Record the notification (and its flow ``trace``) and commit; ``keep``: commit the applied payment with it."""
    if result.outcome == "rejected":
        log.warning("notification %s rejected (%s): %s", event_id or "-", result.status, result.reason)
    if not keep:
        db.session.rollback()  # nothing half-done from a refused notification may be committed
    db.session.add(
        NotificationRecord(
            notification_id=event_id, event_type=event_type, out_trade_no=out_trade_no,
            outcome=result.outcome, reason=result.reason[:200], http_status=result.status,
        )
    )
    if trace is not None:
        # Same transaction, same commit: no second lock or fsync, and no record of a payment
        # that did not commit (nor a payment without its record).
        flowlog.add_notification(trace, result)
    db.session.commit()
    return result
