"""Checkout: the order page, the payment page of every scene, and the Native QR image."""

from __future__ import annotations

import json

from flask import Response, current_app, redirect, render_template, request, url_for

from .. import endpoints, gateway
from ..errors import ShopError
from ..i18n import _
from ..models import Order, OrderStatus, Payment
from ..services import identity, orders, qr, scenes
from ..web import shopper_id
from . import bp
from .urls import order_urls


def chosen_method() -> str:
    """``?method=`` (or the start form's ``method``) when it names a page scene, else what the
    User-Agent says (WeChat Pay's "H5支付" and "JSAPI支付" product pages: which scene for which browser)."""
    override = request.args.get("method", "") or request.form.get("method", "")
    # miniprogram: the page a mini program's web-view shows (the tour opens it in a desktop browser).
    if override in scenes.PAGE_METHODS or override == scenes.PaymentMethod.MINIPROGRAM:
        return override
    return scenes.detect_method(request.user_agent.string)


@bp.get("/orders/<order_no>")
def order(order_no: str):
    found = orders.owned_order(order_no, shopper_id())
    pay_url = url_for("checkout.pay", order_no=order_no) if found.status == OrderStatus.PENDING else None
    return render_template("checkout/order.html", order=found, pay_url=pay_url)


def _scene_for(found: Order):
    """(scene, payer context) of this request, or the page to answer instead (the mini program's
    notice, or the OAuth redirect that gets the payer's openid: neither changes anything at WeChat Pay)."""
    scene = scenes.scene(chosen_method())
    assert scene is not None and scene.template is not None
    if scene.payer == "miniprogram":
        # A mini program web-view cannot pay: the mini program itself must (its template says so).
        # In simulator mode the page also plays the mini program (wx.login, requestPayment) for a desktop.
        mounted = endpoints.current()
        return None, render_template(
            scene.template, order=found, method=scene.method, **order_urls(found),
            bridge_url=url_for(mounted.bridge_script) if mounted.bridge_script else "",
            wx_login_url=mounted.mount + "/control/wx-login" if mounted.mount else "")
    context = scenes.Context(payer_client_ip=request.remote_addr or "")
    if scene.payer == "oauth":
        openid = identity.session_openid(scenes.jsapi_appid(scene.method))
        if not openid:
            # snsapi_base: WeChat answers with a code at once, the payer sees nothing.
            callback = gateway.shop_base_url() + url_for("oauth.callback")
            here = url_for("checkout.pay", order_no=found.order_no, method=scene.method)
            return None, redirect(
                identity.start_authorization(callback, here, shopper_id(create=True), found.id), code=302)
        context = scenes.Context(openid=openid)
    return (scene, context), None


@bp.get("/orders/<order_no>/pay")
def pay(order_no: str):
    """The checkout page of the chosen scene: a pure read (a GET changes nothing at WeChat Pay).

    The scene's still-payable attempt is shown; otherwise a start form (a POST, sent at once by
    static/js/autosubmit.js) that ``pay_start`` answers. docs/going-live.md, "No state change on GET".
    """
    found = orders.owned_order(order_no, shopper_id())
    if found.status != OrderStatus.PENDING:
        return redirect(url_for("checkout.order", order_no=order_no))
    chosen, answer = _scene_for(found)
    if chosen is None:
        return answer
    scene, context = chosen
    payment = orders.reusable_payment(found, scene.method)
    if payment is None or not scene.reusable(payment, context):
        return render_template(
            "checkout/pay_start.html", order=found, method=scene.method,
            payment={"amount_total": found.amount_total},  # the pay card shows the amount
            # The same URL as this page (query and all): the POST lands where the GET was.
            start_url=url_for("checkout.pay_start", order_no=order_no,
                              **({"method": request.args["method"]} if request.args.get("method") else {})),
            **order_urls(found))
    return render_template(scene.template, order=found, payment=payment, method=scene.method,
                           **page_context(found, payment, scene))


@bp.post("/orders/<order_no>/pay")
def pay_start(order_no: str):
    """Start (or switch to) the chosen scene's attempt: its open one is closed at WeChat Pay first."""
    found = orders.owned_order(order_no, shopper_id())
    if found.status != OrderStatus.PENDING:
        return redirect(url_for("checkout.order", order_no=order_no), code=303)
    chosen, answer = _scene_for(found)
    if chosen is None:
        return answer
    scene, context = chosen
    try:
        payment = scenes.start_attempt(found, scene, context)
    except ShopError as exc:
        # A close that answered ORDERPAID: the payer was faster. Show the paid order, never charge twice.
        if exc.code in ("ORDERPAID", "ORDER_CLOSED"):
            return redirect(url_for("checkout.order", order_no=order_no), code=303)
        raise
    return render_template(scene.template, order=found, payment=payment, method=scene.method,
                           **page_context(found, payment, scene))


def page_context(found: Order, payment: Payment, scene: scenes.Scene) -> dict[str, object]:
    """What a scene's page shows beyond the order and the attempt: the URLs its script needs."""
    config = current_app.config
    no = found.order_no
    values: dict[str, object] = {
        **order_urls(found),
        "confirm_tries": config.get("RETURN_PAGE_QUERIES", 6),
        "confirm_gap_ms": config.get("RETURN_PAGE_QUERY_GAP_MS", 1500),
        "pay_again_url": url_for("checkout.pay", order_no=no, method=scene.method),
        "renew_url": url_for("checkout.renew", order_no=no),
        "payments_url": url_for("api.create_payment", order_no=no),
        # A phone has a camera: the Native page's help must not ask about a computer's.
        "on_phone": scenes.detect_method(request.user_agent.string) != "native",
    }
    if payment.code_url:
        values["qr_image_url"] = url_for("checkout.qr_image", order_no=no, out_trade_no=payment.out_trade_no)
    if payment.h5_url:
        values["go_url"] = url_for("checkout.h5_go", order_no=no)
        values["link_expires_at"] = scenes.h5_url_expires_at(payment)
    if payment.prepay_id:
        values["pay_params"] = json.dumps(scenes.pay_params(payment))
        bridge = endpoints.current().bridge_script  # the simulator's WeixinJSBridge, when mounted
        values["bridge_url"] = url_for(bridge) if bridge else ""
    return values


@bp.post("/orders/<order_no>/pay/renew")
def renew(order_no: str):
    found = orders.owned_order(order_no, shopper_id())
    if found.status == OrderStatus.PENDING:
        try:
            scenes.renew_native(found)
        except ShopError as exc:
            if exc.code != "ORDERPAID":
                raise
    return redirect(url_for("checkout.pay", order_no=order_no), code=303)


@bp.get("/orders/<order_no>/payments/<out_trade_no>/qr.png")
def qr_image(order_no: str, out_trade_no: str):
    found = orders.owned_order(order_no, shopper_id())
    payment = next((p for p in found.payments if p.out_trade_no == out_trade_no and p.code_url), None)
    if payment is None:
        raise ShopError("NOT_FOUND", _("二维码不存在"), 404)
    response = Response(qr.png(payment.code_url), mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=7200"
    return response
