"""Helpers the test modules share: reading the shop's rows, and driving the state machine in process."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from storefront.extensions import db
from storefront.models import Order, Payment, Refund
from storefront.services import orders


def order_row(app, order_no: str) -> Order:
    """The order as the database holds it now."""
    with app.app_context():
        return db.session.scalar(select(Order).where(Order.order_no == order_no))


def payment_row(app, out_trade_no: str) -> Payment:
    """The payment attempt as the database holds it now."""
    with app.app_context():
        return db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))


def second_issued_attempt(server, order_no: str) -> tuple[str, int]:
    """A second Native attempt of a pending order, issued at WeChat Pay beside the shop's own (as two
    tabs or a race could): paying both makes a double payment. Returns its out_trade_no and amount."""
    from datetime import timedelta

    from storefront import gateway
    from storefront.models import utcnow

    with server.app.test_request_context(base_url=server.url):
        row = db.session.scalar(select(Order).where(Order.order_no == order_no))
        second = orders.start_payment(row, "native", 900, 20)
        response = gateway.client().prepay_native(
            description="second", out_trade_no=second.out_trade_no, amount_total=second.amount_total,
            notify_url=gateway.notify_url(), time_expire=utcnow() + timedelta(minutes=10))
        orders.payment_issued(second.id, response.data["code_url"])
        return second.out_trade_no, second.amount_total


def new_order(owner: str = "shopper-1", product_id: int = 1, quantity: int = 1) -> Order:
    """A pending order (inside an app context)."""
    return orders.create_order(owner, product_id, quantity)


def open_attempt(order: Order, method: str = "native", ttl_seconds: int = 600) -> Payment:
    """A payable attempt, as if WeChat Pay had accepted its prepay (inside an app context)."""
    payment = orders.start_payment(order, method, ttl_seconds, 10)
    orders.payment_issued(payment.id, "weixin://wxpay/bizpayurl?pr=test")
    db.session.refresh(payment)
    return payment


def refund_of(refund_id: int) -> Refund:
    refund = db.session.get(Refund, refund_id)
    db.session.refresh(refund)
    return refund


@contextmanager
def unreachable_wechatpay(app) -> Iterator[None]:
    """While inside, the app's WeChat Pay API base is a closed loopback port."""
    saved = app.extensions["wechat_endpoints"]
    app.extensions["wechat_endpoints"] = dataclasses.replace(saved, api_base="http://127.0.0.1:9/sandbox")
    try:
        yield
    finally:
        app.extensions["wechat_endpoints"] = saved
