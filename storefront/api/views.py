"""The JSON API of interface.md, over the same services as the pages."""

from flask import request, url_for
from sqlalchemy import select

from ..errors import ShopError
from ..extensions import db
from ..i18n import _
from ..models import Order, Payment, Product
from ..services import orders, payments
from ..web import shopper_id
from ..wechatpay.times import format_time
from . import bp
from .scenes import create_payment as create_scene_payment


@bp.before_request
def require_json_body():
    # A cross-site form cannot send application/json without a CORS preflight: this is
    # what keeps the cookie-authenticated POSTs safe from CSRF.
    if request.method == "POST" and not request.is_json:
        raise ShopError("UNSUPPORTED_MEDIA_TYPE", _("请求须为 application/json"), 415)


def _body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ShopError("INVALID_JSON", _("请求体须为 JSON 对象"))
    return data


def _time(moment):
    return format_time(moment) if moment is not None else None


def _order_json(order: Order) -> dict:
    return {
        "order_no": order.order_no,
        "status": order.status,
        "amount_total": order.amount_total,
        "currency": "CNY",
        "product_id": order.product_id,
        "product_name": order.product_name,
        "quantity": order.quantity,
        "unit_price": order.unit_price,
        "created_at": _time(order.created_at),
        "paid_at": _time(order.paid_at),
        "amount_refunded": order.amount_refunded,  # fen; status stays "paid" until it reaches the total
        # fen the payer paid (amount.payer_total of the paid attempt): less than amount_total with a coupon.
        "payer_total": next((p.payer_total for p in order.payments if p.status == "paid" and p.payer_total is not None),
                            None),
    }


def _payment_json(order: Order, payment: Payment) -> dict:
    return {
        "out_trade_no": payment.out_trade_no,
        "method": payment.method,
        "status": payment.status,
        "amount_total": payment.amount_total,
        "code_url": payment.code_url,
        "qr_image_url": url_for(
            "checkout.qr_image", order_no=order.order_no, out_trade_no=payment.out_trade_no, _external=True
        ),
        "expires_at": format_time(payment.expires_at),
    }


@bp.get("/products")
def products():
    rows = db.session.scalars(select(Product).where(Product.active).order_by(Product.id))
    return {
        "products": [
            {"id": p.id, "sku": p.sku, "name": p.name, "description": p.description,
             "price_total": p.price_total, "currency": "CNY", "image_url": p.image_url}
            for p in rows
        ]
    }


@bp.post("/orders")
def create_order():
    data = _body()
    order = orders.create_order(shopper_id(create=True), data.get("product_id"), data.get("quantity", 1),
                                request.headers.get("Idempotency-Key"))
    return _order_json(order), 201


@bp.get("/orders/<order_no>")
def order(order_no: str):
    found = orders.owned_order(order_no, shopper_id())
    payments.refresh_pending(found)  # a poll may discover a payment whose notification was lost
    return _order_json(found)


@bp.post("/orders/<order_no>/payments")
def create_payment(order_no: str):
    data = _body()
    found = orders.owned_order(order_no, shopper_id())
    return create_scene_payment(found, data.get("method", "native"), data, _payment_json), 201
