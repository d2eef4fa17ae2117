"""JSON answers for the H5, JSAPI and mini program scenes (interface.md's payments call)."""

from __future__ import annotations

from flask import request

from .. import gateway
from ..checkout.scenes import return_url
from ..errors import ShopError
from ..i18n import _
from ..models import Order
from ..services import identity, scenes
from ..wechatpay.times import format_time


def create_payment(order: Order, method: object, data: dict) -> dict:
    """``{"method": "h5"}`` → h5_url; ``"jsapi"``/``"miniprogram"`` → pay_params for the session's payer.

    The openid is never taken on trust: it must be the one WeChat gave this session (web OAuth
    for ``jsapi``, ``POST /api/miniprogram/login`` for ``miniprogram``); a body ``openid`` that
    differs is refused with 403 ``OPENID_MISMATCH``.
    """
    if method == "h5":
        payment = scenes.pay_h5(order, request.remote_addr or "")
        return {
            "out_trade_no": payment.out_trade_no,
            "method": "h5",
            "status": payment.status,
            "amount_total": payment.amount_total,
            "h5_url": scenes.h5_link(payment, return_url(order)),
            "h5_url_expires_at": format_time(scenes.h5_url_expires_at(payment)),
            "expires_at": format_time(payment.expires_at),
        }
    if method in ("jsapi", "miniprogram"):
        creds = gateway.gateway().credentials
        appid = creds.miniprogram_appid if method == "miniprogram" else creds.appid
        openid = identity.payer_openid(appid, data.get("openid"))
        payment = scenes.pay_jsapi(order, method, openid)
        return {
            "out_trade_no": payment.out_trade_no,
            "method": method,
            "status": payment.status,
            "amount_total": payment.amount_total,
            "expires_at": format_time(payment.expires_at),
            "pay_params": scenes.pay_params(payment),
        }
    raise ShopError("METHOD_NOT_SUPPORTED", _("暂不支持该支付方式：%(m)s", m=str(method)))
