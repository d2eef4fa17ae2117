"""The checkout's URLs other blueprints need (the JSON API hands them out too)."""

from __future__ import annotations

from flask import url_for

from .. import gateway
from ..models import Order


def return_url(order: Order) -> str:
    """Where WeChat's H5 cashier sends the browser back (absolute: it travels as ``redirect_url``)."""
    return gateway.shop_base_url() + url_for("checkout.pay_result", order_no=order.order_no)


def order_urls(order: Order) -> dict[str, str]:
    """The order's status poll (JSON) and its page."""
    no = order.order_no
    return {"status_url": url_for("api.order", order_no=no), "order_url": url_for("checkout.order", order_no=no)}
