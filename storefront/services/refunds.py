"""Refunds at WeChat Pay: request, query and REFUND.* notifications, applied through ``orders``.

As with payments, no database transaction is held across an HTTP round trip, and a refund is
retried with its own ``out_refund_no`` (WeChat Pay refunds one number once).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from .. import gateway
from ..extensions import db
from ..i18n import _
from ..models import Order, OrderStatus, Payment, PaymentStatus, Refund, RefundStatus, utcnow
from ..wechatpay import APIError, WeChatPayError
from ..wechatpay.refunds import RefundResult
from ..wechatpay.times import parse_time
from . import flowlog, notifications, orders, refund_states, wechat
from .orders import OrderError
from .wechat import PaymentError

log = logging.getLogger(__name__)

REFUND_EVENTS = {"REFUND.SUCCESS": "SUCCESS", "REFUND.ABNORMAL": "ABNORMAL", "REFUND.CLOSED": "CLOSED"}
QUERY_INTERVAL_SECONDS = 5


class RefundError(OrderError):
    """WeChat Pay refused the refund; ``code`` keeps WeChat's own (``INVALID_REQUEST``, ...)."""


def refund_notify_url() -> str:
    """Where WeChat Pay reports refunds: ``WECHATPAY_REFUND_NOTIFY_URL`` or the shop's own route."""
    return gateway.refund_notify_url()


def order_payment(order: Order) -> Payment | None:
    """The payment that paid the order: the first to succeed (any later one is a double payment)."""
    paid = [p for p in order.payments if p.status == PaymentStatus.PAID]
    return min(paid, key=lambda p: (p.paid_at or utcnow(), p.id), default=None)


def request_refund(order: Order, amount: int, reason: str = "") -> Refund:
    """Refund ``amount`` fen of a paid order (full or partial).

    :raise OrderError: not refundable, or more than is left; :raise RefundError: WeChat Pay refused;
    :raise PaymentError: WeChat Pay unreachable (the refund stays pending and can be retried).
    """
    if order.status != OrderStatus.PAID:
        raise OrderError("NOT_REFUNDABLE", _("只有已支付的订单可以退款"), 409)
    payment = order_payment(order)
    if payment is None:
        raise OrderError("NOT_REFUNDABLE", _("找不到该订单的成功支付"), 409)
    refund = refund_states.create_refund(payment, amount, reason=reason, kind="order", requested_by="merchant")
    return send(refund)


def send(refund: Refund) -> Refund:
    """Ask WeChat Pay for a pending refund (again: the same out_refund_no is refunded once)."""
    payment = db.session.get(Payment, refund.payment_id)
    assert payment is not None
    out_refund_no, refund_id = refund.out_refund_no, refund.id
    arguments = dict(
        out_refund_no=out_refund_no, amount_refund=refund.amount, amount_total=payment.amount_total,
        out_trade_no=payment.out_trade_no, transaction_id=payment.transaction_id, reason=refund.reason or None,
        notify_url=refund_notify_url(),
    )
    try:
        result, _response = wechat.client().refund(**arguments)
    except APIError as exc:
        if exc.status < 500:
            refund_states.refund_failed(refund_id, f"{exc.code}: {exc.message}")
            raise RefundError(exc.code, _("微信支付拒绝退款：%(m)s", m=exc.message), 409) from exc
        raise PaymentError("WECHATPAY_UNAVAILABLE", _("微信支付暂时无法受理退款，请稍后重试"), 503) from exc
    except WeChatPayError as exc:
        log.warning("refund %s: %s (kept pending, retry with the same number)", out_refund_no, exc)
        raise wechat.unavailable(_("暂时无法连接微信支付，退款将保留为处理中")) from exc
    apply(result, cause="merchant")
    db.session.commit()
    refreshed = db.session.get(Refund, refund_id)
    db.session.refresh(refreshed)
    return refreshed


def apply(result: RefundResult, cause: str, wechat_ref: str | None = None) -> refund_states.RefundOutcome:
    """Apply a refund WeChat Pay described (answer, query or notification); the caller commits."""
    succeeded_at = None
    if result.success_time:
        try:
            succeeded_at = orders.to_utc_naive(parse_time(result.success_time))
        except ValueError:
            succeeded_at = None
    return refund_states.apply_refund(
        result.out_refund_no, wechat_status=result.status, refund_id=result.refund_id, amount=result.amount_refund,
        succeeded_at=succeeded_at, cause=cause, wechat_ref=wechat_ref,
        payer_refund=result.payer_refund,
    )


def query(refund: Refund) -> Refund:
    """Ask WeChat Pay about one refund and apply the answer; resend one WeChat Pay never got."""
    out_refund_no, refund_id = refund.out_refund_no, refund.id
    try:
        result, _response = wechat.client().query_refund(out_refund_no)
    except APIError as exc:
        if exc.code == "RESOURCE_NOT_EXISTS" and refund.status == RefundStatus.PENDING:
            return send(refund)  # the request never arrived: send it now, same number
        raise
    apply(result, cause="query")
    db.session.commit()
    refreshed = db.session.get(Refund, refund_id)
    db.session.refresh(refreshed)
    return refreshed


def refresh_pending(order: Order) -> None:
    """While the merchant looks at an order, query its pending refunds at a bounded rate."""
    for refund in list(order.refunds):
        if refund.status not in (RefundStatus.PENDING, RefundStatus.ABNORMAL):
            continue
        if not refund_states.claim_refund_query(refund.id, QUERY_INTERVAL_SECONDS):
            continue
        try:
            query(refund)
        except (WeChatPayError, OrderError) as exc:
            log.warning("refund query %s failed: %s", refund.out_refund_no, exc)
    db.session.refresh(order)


def reconcile_pending(created_before: datetime) -> int:
    """Query refunds still pending since before ``created_before`` (their notification was lost
    or the request never arrived: a query resends it, same out_refund_no). Returns how many."""
    due = list(db.session.scalars(select(Refund).where(Refund.status == RefundStatus.PENDING,
                                                       Refund.created_at < created_before).limit(500)))
    for refund in due:
        try:
            query(refund)
        except (WeChatPayError, OrderError) as exc:
            db.session.rollback()
            log.warning("reconcile: refund %s not queried: %s", refund.out_refund_no, exc)
    return len(due)


def refund_double_payment(out_trade_no: str) -> Refund | None:
    """A payment that arrived after the order was already paid: give all of it back, once."""
    payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
    if payment is None:
        return None
    existing = db.session.scalar(select(Refund).where(Refund.payment_id == payment.id, Refund.kind == "duplicate"))
    if existing is not None:
        if existing.status != RefundStatus.PENDING or existing.refund_id:
            return existing  # WeChat Pay has it: the pending-refund queries take over
        try:
            return send(existing)  # the outbox row apply_payment wrote: send it now (reconcile retries)
        except OrderError as exc:
            log.warning("double payment refund %s: %s (the outbox keeps it)", existing.out_refund_no, exc.message)
            return existing
    try:
        refund = refund_states.create_refund(payment, payment.amount_total, reason=_("重复支付退款"),
                                      kind="duplicate", requested_by="system")
    except OrderError as exc:
        log.warning("double payment %s not refunded: %s", out_trade_no, exc.message)
        return None
    try:
        return send(refund)
    except OrderError as exc:
        log.warning("double payment refund %s: %s", refund.out_refund_no, exc.message)
        return refund


class RefundNotifications:
    """``REFUND.*`` notifications for ``notifications.receive``: WeChat Pay "退款结果通知"."""

    trace_kind = "notify_refund"

    def accepts(self, event_type: str) -> bool:
        return event_type in REFUND_EVENTS

    def check(self, received: notifications.Received) -> None:
        event, trace = received.event, received.trace
        if event.original_type != "refund":
            raise notifications.reject(400, f"original_type {event.original_type}")
        result = RefundResult.from_dict(event.resource)
        received.state["result"] = result
        received.out_trade_no = (result.out_trade_no or "")[:32] or None
        if not trace.check("mchid", result.mchid == gateway.gateway().credentials.mchid, str(result.mchid)):
            raise notifications.reject(400, "mchid is not ours")
        if result.status != REFUND_EVENTS[event.event_type]:
            raise notifications.reject(400, f"refund_status {result.status} in {event.event_type}")
        refund = db.session.scalar(select(Refund).where(Refund.out_refund_no == result.out_refund_no))
        if refund is None:
            raise notifications.reject(404, f"unknown out_refund_no {result.out_refund_no}")
        payment = db.session.get(Payment, refund.payment_id)
        if payment is None or result.out_trade_no != payment.out_trade_no or (
                result.transaction_id and payment.transaction_id and result.transaction_id != payment.transaction_id):
            raise notifications.reject(400, "refund is not for this payment")
        trace.link = flowlog.Link(refund.order_id, refund.payment_id)  # known: the record needs no lookup

    def apply(self, received: notifications.Received) -> str:
        result = received.state["result"]
        assert isinstance(result, RefundResult)
        # Committed by notifications.record with the records: one commit, atomic.
        return str(apply(result, cause="notify", wechat_ref=received.event.id))

    def after(self, received: notifications.Received, outcome: str) -> None:
        pass


REFUND_NOTIFICATIONS = RefundNotifications()


def handle_refund_notification(headers, body: bytes, received_at: datetime | None = None,
                               **where: str) -> notifications.NotifyResult:
    """Verify, decrypt, check and apply one REFUND.* notification; record what happened (flow record included)."""
    return notifications.receive(REFUND_NOTIFICATIONS, headers, body, received_at, **where)
