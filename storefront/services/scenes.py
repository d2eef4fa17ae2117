"""The WeChat Pay scenes (Native, H5, JSAPI, mini program), one ``Scene`` per payment method.

Every scene follows the same rules, owned by ``start_attempt``: one open attempt per order, the
previous one closed at WeChat Pay before a new one starts, a still-valid attempt of the same
scene reused. A scene says only what differs: its label, when an attempt is reusable, how to
prepay, and what its checkout page and the JSON API show. ``docs/en/scenes.md`` shows how to add one.
WeChat Pay documents: "Native下单", "H5下单", "JSAPI下单", "JSAPI调起支付", "小程序调起支付".
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import current_app

from .. import gateway
from ..extensions import db
from ..i18n import N_, _
from ..models import Order, Payment, utcnow
from ..wechatpay import APIError, Client, WeChatPayError
from ..wechatpay.times import format_time
from . import flowlog, orders, payments, wechat
from .orders import OrderError
from .wechat import PaymentError

log = logging.getLogger(__name__)

H5_URL_LIFETIME_SECONDS = 300  # WeChat: an h5_url lives 5 minutes
H5_URL_RENEW_AFTER_SECONDS = 240  # renew a little early: the shopper still has to tap through
_MOBILE = re.compile(r"Mobile|Android|iPhone|iPad|iPod|HarmonyOS|Windows Phone", re.IGNORECASE)


class PaymentMethod(enum.StrEnum):
    """How the payer pays: the ``method`` of an attempt, of the JSON API and of ``?method=``."""

    NATIVE = "native"
    H5 = "h5"
    JSAPI = "jsapi"
    MINIPROGRAM = "miniprogram"


@dataclass(frozen=True)
class Context:
    """What the request knows about the payer: a scene uses what it needs."""

    payer_client_ip: str = ""
    openid: str = ""


@dataclass(frozen=True)
class Scene:
    """One payment method: everything that differs between scenes, and nothing else.

    ``reusable(payment, context)``: may this open attempt be shown again to this payer?
    ``prepay(client, payment, description, context)``: call WeChat Pay; returns the columns
    ``orders.payment_issued`` stores (``code_url``, ``h5_url``, ``prepay_id``, ...).
    ``refresh(payment, order)``: bring a reused attempt up to date (a fresh ``h5_url``).
    ``answer(payment, urls)``: the scene's fields in the JSON API's answer (``urls``: the
    views' absolute URLs, e.g. ``return_url``). ``template``: its checkout page, or None.
    ``payer``: what identifies the payer ("ip", "oauth" for the official account's openid,
    "miniprogram" for the mini program's), checked before ``start_attempt``.
    """

    method: PaymentMethod
    label: str  # untranslated: templates show _(scene.label)
    switch_label: str  # the checkout's "pay another way" link
    prepay: Callable[[Client, Payment, str, Context], dict[str, Any]]
    reusable: Callable[[Payment, Context], bool] = lambda payment, context: True
    refresh: Callable[[Payment, Order], Payment] = lambda payment, order: payment
    answer: Callable[[Payment, Mapping[str, str]], dict[str, Any]] = lambda payment, urls: {}
    validate: Callable[[Context], None] = lambda context: None
    template: str | None = None
    on_page: bool = True  # offered on the checkout page (the mini program pays in its own code)
    payer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def describe(order: Order) -> str:
    """The line on the payer's bill (max 127 characters)."""
    return payments.describe(order)


def start_attempt(order: Order, scene: Scene, context: Context) -> Payment:
    """The order's payable attempt in ``scene``: reuse → close → start → commit → prepay.

    :raise OrderError: the order is paid or closed (``ORDERPAID`` if the payer was faster).
    :raise PaymentError: WeChat Pay refused (its code) or is unreachable (``WECHATPAY_UNAVAILABLE``).
    """
    scene.validate(context)
    known = orders.attempts(order.id)  # one query: reuse, what to close, the next number
    reusable = orders.reusable_among(known, scene.method)
    if reusable is not None and scene.reusable(reusable, context):
        return scene.refresh(reusable, order)
    # A Native attempt closed here has expired: the new one is a renewal (二维码更新).
    payments.close_open_attempts(order, "shopper", [p for p in known if p.is_open],
                                 renewal=scene.method == PaymentMethod.NATIVE)
    config = current_app.config
    payment = orders.start_payment(order, scene.method, config["PAYMENT_TTL_SECONDS"],
                                   config["MAX_ATTEMPTS_PER_ORDER"], count=len(known))
    description = describe(order)
    flowlog.known_attempt(payment.out_trade_no, order.id, payment.id)  # the call's record: linked, no query
    if scene.method == PaymentMethod.MINIPROGRAM:
        flowlog.adopt_logins(order.id, order.owner)  # the wx.login exchange that gave this openid
    try:
        issued = scene.prepay(wechat.client(), payment, description, context)
    except APIError as exc:
        orders.payment_failed(payment.id)
        raise PaymentError(exc.code, _("微信支付下单失败：%(m)s", m=exc.message)) from exc
    except WeChatPayError as exc:
        # The attempt may exist at WeChat Pay: leave it open for close-expired to close there.
        log.warning("%s prepay for %s failed: %s", scene.method, payment.out_trade_no, exc)
        raise wechat.unavailable() from exc
    code_url = issued.pop("code_url", None)
    if orders.payment_issued(payment.id, code_url, **issued):
        orders.issued_locally(payment, code_url, **issued)  # what was just written: no re-read
    else:
        db.session.refresh(payment)  # a notification or a job moved it first: read what it is now
    return payment


# -- Native ----------------------------------------------------------------------------------


def _prepay_native(client: Client, payment: Payment, description: str, context: Context) -> dict[str, Any]:
    response = client.prepay_native(
        description=description, out_trade_no=payment.out_trade_no, amount_total=payment.amount_total,
        notify_url=gateway.notify_url(), time_expire=payment.expires_at,
    )
    return {"code_url": response.data.get("code_url")}


def pay_native(order: Order) -> Payment:
    """The order's payable Native attempt: the still-valid one, else a new one."""
    return start_attempt(order, SCENES[PaymentMethod.NATIVE], Context())


def renew_native(order: Order) -> Payment:
    """A fresh QR code: close the current attempt at WeChat Pay first, then start a new one."""
    payments.close_open_attempts(order, "shopper", renewal=True)
    return pay_native(order)


# -- H5 --------------------------------------------------------------------------------------


def _h5_request(client: Client, payment: Payment, description: str, payer_client_ip: str) -> str:
    response = client.prepay_h5(
        description=description,
        out_trade_no=payment.out_trade_no,
        amount_total=payment.amount_total,
        notify_url=gateway.notify_url(),
        time_expire=payment.expires_at,
        payer_client_ip=payer_client_ip,
    )
    return str(response.data.get("h5_url", ""))


def _prepay_h5(client: Client, payment: Payment, description: str, context: Context) -> dict[str, Any]:
    h5_url = _h5_request(client, payment, description, context.payer_client_ip)
    return {"h5_url": h5_url, "h5_url_issued_at": utcnow(), "payer_client_ip": context.payer_client_ip}


def _h5_validate(context: Context) -> None:
    if not context.payer_client_ip:
        raise OrderError("PAYER_IP_UNKNOWN", _("无法确定您的网络地址，请稍后再试"))


def _h5_reusable(payment: Payment, context: Context) -> bool:
    # Another network: WeChat would refuse the old link ("网络环境未能通过安全验证"), so start anew.
    return payment.payer_client_ip == context.payer_client_ip


def _h5_answer(payment: Payment, urls: Mapping[str, str]) -> dict[str, Any]:
    return {"h5_url": h5_link(payment, urls["return_url"]),
            "h5_url_expires_at": format_time(h5_url_expires_at(payment))}


def pay_h5(order: Order, payer_client_ip: str) -> Payment:
    """The order's H5 attempt, with an ``h5_url`` that has some minutes left.

    :raise OrderError: not payable (``ORDERPAID`` when the payer was faster). :raise PaymentError:
    """
    return start_attempt(order, SCENES[PaymentMethod.H5], Context(payer_client_ip=payer_client_ip))


def detect_method(user_agent: str) -> str:
    """The scene for a browser: WeChat → jsapi, a mini program web-view → miniprogram,
    another phone browser → h5, a desktop → native (WeChat Pay's "H5支付" and "JSAPI支付" pages)."""
    if "micromessenger" in user_agent.lower():
        return "miniprogram" if "miniprogram" in user_agent.lower() else "jsapi"
    return "h5" if _MOBILE.search(user_agent) else "native"


def renew_h5_url(payment: Payment, order: Order) -> Payment:
    """Keep an H5 attempt's link fresh: call the H5 endpoint again with identical parameters."""
    issued = payment.h5_url_issued_at
    if payment.h5_url and issued and utcnow() - issued < timedelta(seconds=H5_URL_RENEW_AFTER_SECONDS):
        return payment
    description, payer_client_ip = describe(order), payment.payer_client_ip or ""
    try:
        h5_url = _h5_request(wechat.client(), payment, description, payer_client_ip)
    except APIError as exc:
        if exc.code == "ORDERPAID":
            payments.query_and_apply(payment)
            raise OrderError("ORDERPAID", _("订单已支付"), 409) from exc
        raise PaymentError(exc.code, _("微信支付下单失败：%(m)s", m=exc.message)) from exc
    except WeChatPayError as exc:
        raise wechat.unavailable() from exc
    orders.h5_url_renewed(payment.id, h5_url, utcnow())
    db.session.refresh(payment)
    return payment


def h5_link(payment: Payment, return_url: str) -> str:
    """``h5_url`` with the URL-encoded ``redirect_url`` WeChat sends the browser back to."""
    return f"{payment.h5_url}&redirect_url={quote(return_url, safe='')}"


def h5_url_expires_at(payment: Payment) -> datetime:
    """When the current h5_url stops working (5 minutes, never past the attempt's own expiry)."""
    issued = payment.h5_url_issued_at or utcnow()
    return min(issued + timedelta(seconds=H5_URL_LIFETIME_SECONDS), payment.expires_at)


def jsapi_appid(method: str) -> str:
    """The appid a JSAPI-style attempt runs under: the official account's or the mini program's."""
    creds = gateway.gateway().credentials
    return creds.miniprogram_appid if method == PaymentMethod.MINIPROGRAM else creds.appid


def _jsapi_validate(context: Context) -> None:
    if not context.openid:
        raise OrderError("OPENID_REQUIRED", _("需要先通过微信授权获取 openid"), 401)


def _jsapi_scene_hooks(method: PaymentMethod) -> dict[str, Any]:
    def reusable(payment: Payment, context: Context) -> bool:
        return payment.openid == context.openid and payment.appid == jsapi_appid(method) and bool(payment.prepay_id)

    def prepay(client: Client, payment: Payment, description: str, context: Context) -> dict[str, Any]:
        appid = jsapi_appid(method)
        response = client.prepay_jsapi(
            description=description,
            out_trade_no=payment.out_trade_no,
            amount_total=payment.amount_total,
            notify_url=gateway.notify_url(),
            time_expire=payment.expires_at,
            openid=context.openid,
            appid=appid,
        )
        return {"prepay_id": str(response.data.get("prepay_id", "")), "appid": appid, "openid": context.openid}

    return {"reusable": reusable, "prepay": prepay, "validate": _jsapi_validate,
            "answer": lambda payment, urls: {"pay_params": pay_params(payment)}}


def pay_jsapi(order: Order, method: str, openid: str) -> Payment:
    """The order's JSAPI (or mini program) attempt for this payer, with a prepay_id.

    :raise OrderError: not payable, or no openid. :raise PaymentError: e.g. ``OPENID_MISMATCH``.
    """
    return start_attempt(order, SCENES[PaymentMethod(method)], Context(openid=openid))


def pay_params(payment: Payment) -> dict[str, str]:
    """``appId/timeStamp/nonceStr/package/signType/paySign`` for the bridge or wx.requestPayment."""
    if not payment.prepay_id:
        raise OrderError("NO_PREPAY_ID", _("该支付尝试不是 JSAPI 支付"), 409)
    params = gateway.client().pay_params(payment.prepay_id, payment.appid)
    signed = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    order_id, out_trade_no = payment.order_id, payment.out_trade_no
    db.session.commit()  # a read: end it, so the record writes on its own connection (SQLite: one writer)
    flowlog.record_note("pay_sign", order_id, json.dumps(params, ensure_ascii=False, indent=2),
                        signed_message=signed, out_trade_no=out_trade_no)
    return params


# -- the registry ---------------------------------------------------------------------------

SCENES: dict[PaymentMethod, Scene] = {
    scene.method: scene
    for scene in (
        Scene(PaymentMethod.NATIVE, N_("扫码支付"), N_("扫码支付"), _prepay_native, template="checkout/pay.html"),
        Scene(PaymentMethod.H5, N_("H5 支付"), N_("手机浏览器支付"), _prepay_h5, reusable=_h5_reusable,
              refresh=lambda payment, order: renew_h5_url(payment, order), answer=_h5_answer,
              validate=_h5_validate, template="checkout/pay_h5.html", payer="ip"),
        Scene(PaymentMethod.JSAPI, N_("公众号支付"), N_("微信内支付"), template="checkout/pay_jsapi.html", payer="oauth",
              **_jsapi_scene_hooks(PaymentMethod.JSAPI)),
        Scene(PaymentMethod.MINIPROGRAM, N_("小程序支付"), N_("小程序支付"), template="checkout/pay_miniprogram.html",
              on_page=False, payer="miniprogram", **_jsapi_scene_hooks(PaymentMethod.MINIPROGRAM)),
    )
}
METHODS = tuple(str(method) for method in SCENES)
PAGE_METHODS = tuple(str(method) for method, scene in SCENES.items() if scene.on_page)


def scene(method: object) -> Scene | None:
    """The scene of a ``method`` string, or None when there is no such scene."""
    try:
        return SCENES[PaymentMethod(str(method))]
    except ValueError:
        return None
