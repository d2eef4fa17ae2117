"""``POST /api/orders/<order_no>/payments``: one attempt in any scene (docs/interface.md)."""

from __future__ import annotations

from collections.abc import Callable

from flask import request

from ..checkout.urls import return_url
from ..errors import ShopError
from ..i18n import _
from ..models import Order, Payment
from ..services import identity, scenes
from ..wechatpay.times import format_time


def create_payment(order: Order, method: object, data: dict,
                   native_json: Callable[[Order, Payment], dict]) -> dict:
    """``{"method": "native"}`` → code_url; ``"h5"`` → h5_url; ``"jsapi"``/``"miniprogram"`` → pay_params.

    The openid is never taken on trust: it must be the one WeChat gave this session (web OAuth
    for ``jsapi``, ``POST /api/miniprogram/login`` for ``miniprogram``); a body ``openid`` that
    differs is refused with 403 ``OPENID_MISMATCH``.
    """
    scene = scenes.scene(method)
    if scene is None:
        raise ShopError("METHOD_NOT_SUPPORTED", _("暂不支持该支付方式：%(m)s", m=str(method)))
    if scene.method == scenes.PaymentMethod.NATIVE:
        return native_json(order, scenes.start_attempt(order, scene, scenes.Context()))
    context = scenes.Context(payer_client_ip=request.remote_addr or "")
    if scene.payer in ("oauth", "miniprogram"):
        appid = scenes.jsapi_appid(scene.method)
        context = scenes.Context(openid=identity.payer_openid(appid, data.get("openid")))
    payment = scenes.start_attempt(order, scene, context)
    return {
        "out_trade_no": payment.out_trade_no,
        "method": str(scene.method),
        "status": payment.status,
        "amount_total": payment.amount_total,
        **scene.answer(payment, {"return_url": return_url(order)}),
        "expires_at": format_time(payment.expires_at),
    }
