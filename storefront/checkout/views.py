"""Checkout: the order page, the Native QR checkout page and its QR image."""

from flask import Blueprint, Response, redirect, render_template, url_for

from ..errors import ShopError
from ..i18n import _
from ..models import OrderStatus
from ..services import orders, payments, qr
from ..web import check_csrf, shopper_id

bp = Blueprint("checkout", __name__)
bp.before_request(check_csrf)


@bp.get("/orders/<order_no>")
def order(order_no: str):
    found = orders.owned_order(order_no, shopper_id())
    pay_url = url_for("checkout.pay", order_no=order_no) if found.status == OrderStatus.PENDING else None
    return render_template("checkout/order.html", order=found, pay_url=pay_url)


@bp.get("/orders/<order_no>/pay")
def pay(order_no: str):
    found = orders.owned_order(order_no, shopper_id())
    if found.status != OrderStatus.PENDING:
        return redirect(url_for("checkout.order", order_no=order_no))
    from . import scenes as scene_pages  # its routes live on this blueprint too

    method = scene_pages.chosen_method()
    if method != "native":
        return scene_pages.pay(found, method)  # H5, JSAPI, mini program web-view: checkout/scenes.py
    try:
        payment = payments.pay_native(found)
    except ShopError as exc:
        if exc.code == "ORDERPAID":
            return redirect(url_for("checkout.order", order_no=order_no))
        raise
    return _render_pay(found, payment)


@bp.post("/orders/<order_no>/pay/renew")
def renew(order_no: str):
    found = orders.owned_order(order_no, shopper_id())
    if found.status == OrderStatus.PENDING:
        try:
            payments.renew_native(found)
        except ShopError as exc:
            if exc.code != "ORDERPAID":
                raise
    return redirect(url_for("checkout.pay", order_no=order_no), code=303)


def _render_pay(found, payment):
    return render_template(
        "checkout/pay.html",
        order=found,
        payment=payment,
        qr_image_url=url_for("checkout.qr_image", order_no=found.order_no, out_trade_no=payment.out_trade_no),
        status_url=url_for("api.order", order_no=found.order_no),
        renew_url=url_for("checkout.renew", order_no=found.order_no),
        payments_url=url_for("api.create_payment", order_no=found.order_no),
        order_url=url_for("checkout.order", order_no=found.order_no),
    )


@bp.get("/orders/<order_no>/payments/<out_trade_no>/qr.png")
def qr_image(order_no: str, out_trade_no: str):
    found = orders.owned_order(order_no, shopper_id())
    payment = next((p for p in found.payments if p.out_trade_no == out_trade_no and p.code_url), None)
    if payment is None:
        raise ShopError("NOT_FOUND", _("二维码不存在"), 404)
    response = Response(qr.png(payment.code_url), mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=7200"
    return response
