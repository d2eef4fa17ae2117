"""Leaving for WeChat's H5 cashier and coming back from it."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for

from ..errors import ShopError
from ..models import OrderStatus
from ..services import orders, scenes
from ..web import shopper_id
from . import bp
from .urls import order_urls, return_url


@bp.post("/orders/<order_no>/pay/h5")
def h5_go(order_no: str):
    """Leave for WeChat's H5 cashier with a live h5_url (each lives 5 minutes: renewed if stale)."""
    found = orders.owned_order(order_no, shopper_id())
    if found.status != OrderStatus.PENDING:
        return redirect(url_for("checkout.order", order_no=order_no), code=303)
    try:
        payment = scenes.pay_h5(found, request.remote_addr or "")
    except ShopError as exc:
        # A close that answered ORDERPAID: the payer was faster. Show the paid order, never charge twice.
        if exc.code in ("ORDERPAID", "ORDER_CLOSED"):
            return redirect(url_for("checkout.order", order_no=order_no), code=303)
        raise
    # A form POST then a redirect keeps the Referer of the shop page the shopper tapped on, as WeChat
    # requires (Referrer-Policy strict-origin-when-cross-origin: its origin crosses over). A POST:
    # renewing the h5_url calls WeChat Pay, which a GET never does.
    return redirect(scenes.h5_link(payment, return_url(found)), code=303)


@bp.get("/orders/<order_no>/pay/result")
def pay_result(order_no: str):
    """Where WeChat sends the browser back: never assumes success, confirms with the server."""
    found = orders.owned_order(order_no, shopper_id())
    config = current_app.config
    return render_template(
        "checkout/pay_result.html", order=found, method="h5",
        confirm_tries=config.get("RETURN_PAGE_QUERIES", 6), confirm_gap_ms=config.get("RETURN_PAGE_QUERY_GAP_MS", 1500),
        pay_again_url=url_for("checkout.pay", order_no=order_no, method="h5"), **order_urls(found),
    )
