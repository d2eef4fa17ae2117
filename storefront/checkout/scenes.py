"""Checkout pages for the scenes beyond Native: H5 in a phone browser, JSAPI inside WeChat,
and the mini program web-view (which must pay in the mini program itself)."""

from __future__ import annotations

import json

from flask import current_app, redirect, render_template, request, url_for

from .. import gateway
from ..errors import ShopError
from ..models import Order, OrderStatus
from ..services import identity, orders, scenes
from ..web import shopper_id
from .views import bp

def chosen_method() -> str:
    """``?method=`` when it names a page scene, else what the User-Agent says (reference §12.3)."""
    override = request.args.get("method", "")
    # miniprogram: the page a mini program's web-view shows (the tour opens it in a desktop browser).
    if override in scenes.PAGE_METHODS or override == "miniprogram":
        return override
    return scenes.detect_method(request.user_agent.string)


def _urls(order: Order) -> dict[str, object]:
    no = order.order_no
    return {
        "status_url": url_for("api.order", order_no=no),
        "order_url": url_for("checkout.order", order_no=no),
    }


def _paid_or_raise(exc: ShopError, order: Order):
    # A close that answered ORDERPAID: the payer was faster. Show the paid order, never charge twice.
    if exc.code in ("ORDERPAID", "ORDER_CLOSED"):
        return redirect(url_for("checkout.order", order_no=order.order_no))
    raise exc


def pay(order: Order, method: str):
    """The checkout page of one scene (``checkout.pay`` dispatches here for everything but Native)."""
    if method == "miniprogram":
        return render_template("checkout/pay_miniprogram.html", order=order, method=method, **_urls(order))
    try:
        if method == "h5":
            payment = scenes.pay_h5(order, request.remote_addr or "")
            return render_template(
                "checkout/pay_h5.html", order=order, payment=payment, method=method,
                go_url=url_for("checkout.h5_go", order_no=order.order_no),
                link_expires_at=scenes.h5_url_expires_at(payment), **_urls(order),
            )
        appid = gateway.gateway().credentials.appid
        openid = identity.session_openid(appid)
        if not openid:
            # snsapi_base: WeChat answers with a code at once, the payer sees nothing.
            callback = gateway.shop_base_url() + url_for("oauth.callback")
            here = url_for("checkout.pay", order_no=order.order_no, method="jsapi")
            return redirect(identity.start_authorization(callback, here, shopper_id(create=True), order.id), code=302)
        payment = scenes.pay_jsapi(order, "jsapi", openid)
        params = scenes.pay_params(payment)
    except ShopError as exc:
        return _paid_or_raise(exc, order)
    return render_template(
        "checkout/pay_jsapi.html", order=order, payment=payment, method=method,
        confirm_tries=current_app.config.get("RETURN_PAGE_QUERIES", 6),
        confirm_gap_ms=current_app.config.get("RETURN_PAGE_QUERY_GAP_MS", 1500),
        pay_params=json.dumps(params), pay_again_url=url_for("checkout.pay", order_no=order.order_no, method="jsapi"),
        bridge_url=url_for("sandbox_scenes.bridge_js") if _sandbox() else "",
        **_urls(order),
    )


def _sandbox() -> bool:
    return bool(current_app.config["WECHATPAY_SANDBOX"])


def return_url(order: Order) -> str:
    """Where WeChat's H5 cashier sends the browser back (absolute: it travels as ``redirect_url``)."""
    return gateway.shop_base_url() + url_for("checkout.pay_result", order_no=order.order_no)


@bp.get("/orders/<order_no>/pay/h5")
def h5_go(order_no: str):
    """Leave for WeChat's H5 cashier with a live h5_url (each lives 5 minutes: renewed if stale)."""
    found = orders.owned_order(order_no, shopper_id())
    if found.status != OrderStatus.PENDING:
        return redirect(url_for("checkout.order", order_no=order_no))
    try:
        payment = scenes.pay_h5(found, request.remote_addr or "")
    except ShopError as exc:
        return _paid_or_raise(exc, found)
    # A plain redirect keeps the Referer of the shop page the shopper tapped on, as WeChat requires.
    return redirect(scenes.h5_link(payment, return_url(found)), code=302)


@bp.get("/orders/<order_no>/pay/result")
def pay_result(order_no: str):
    """Where WeChat sends the browser back: never assumes success, confirms with the server."""
    found = orders.owned_order(order_no, shopper_id())
    config = current_app.config
    return render_template(
        "checkout/pay_result.html", order=found, method="h5",
        confirm_tries=config.get("RETURN_PAGE_QUERIES", 6), confirm_gap_ms=config.get("RETURN_PAGE_QUERY_GAP_MS", 1500),
        pay_again_url=url_for("checkout.pay", order_no=order_no, method="h5"), **_urls(found),
    )
