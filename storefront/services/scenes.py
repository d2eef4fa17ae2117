"""The other WeChat Pay scenes: H5 (phone browsers), JSAPI (inside WeChat) and the mini program.

Same rules as Native (``payments``): one open attempt per order, the previous one closed at
WeChat Pay before a new one starts, a still-valid attempt of the same kind reused.
Protocol reference §7.3 (H5), §8 (paySign), §12.3 (which scene for which browser).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from urllib.parse import quote

from flask import current_app

from .. import gateway
from ..extensions import db
from ..i18n import _
from ..models import Order, Payment, utcnow
from ..wechatpay import APIError, WeChatPayError
from . import flowlog, orders, payments
from .orders import OrderError
from .payments import PaymentError

log = logging.getLogger(__name__)

METHODS = ("native", "h5", "jsapi", "miniprogram")
PAGE_METHODS = ("native", "h5", "jsapi")  # the mini program pays in its own code, not on a page
H5_URL_LIFETIME_SECONDS = 300  # WeChat: an h5_url lives 5 minutes
H5_URL_RENEW_AFTER_SECONDS = 240  # renew a little early: the shopper still has to tap through
_MOBILE = re.compile(r"Mobile|Android|iPhone|iPad|iPod|HarmonyOS|Windows Phone", re.IGNORECASE)


def detect_method(user_agent: str) -> str:
    """The scene for a browser: WeChat → jsapi, a mini program web-view → miniprogram,
    another phone browser → h5, a desktop → native (reference §12.3)."""
    if "micromessenger" in user_agent.lower():
        return "miniprogram" if "miniprogram" in user_agent.lower() else "jsapi"
    return "h5" if _MOBILE.search(user_agent) else "native"


def _start(order: Order, method: str) -> Payment:
    payments.close_open_attempts(order, "shopper")
    config = current_app.config
    return orders.start_payment(order, method, config["PAYMENT_TTL_SECONDS"], config["MAX_ATTEMPTS_PER_ORDER"])


def _refused(payment: Payment, exc: APIError) -> PaymentError:
    orders.payment_failed(payment.id)
    return PaymentError(exc.code, _("微信支付下单失败：%(m)s", m=exc.message))


def _unreachable(payment: Payment, exc: WeChatPayError) -> PaymentError:
    # The attempt may exist at WeChat Pay: leave it open for close-expired to close there.
    log.warning("%s prepay for %s failed: %s", payment.method, payment.out_trade_no, exc)
    return PaymentError("WECHATPAY_UNAVAILABLE", _("暂时无法连接微信支付，请稍后再试"), 503)


def _h5_request(payment: Payment, description: str, payer_client_ip: str) -> str:
    response = gateway.client().prepay_h5(
        description=description,
        out_trade_no=payment.out_trade_no,
        amount_total=payment.amount_total,
        notify_url=gateway.notify_url(),
        time_expire=payment.expires_at,
        payer_client_ip=payer_client_ip,
    )
    return str(response.data.get("h5_url", ""))


def pay_h5(order: Order, payer_client_ip: str) -> Payment:
    """The order's H5 attempt, with an ``h5_url`` that has some minutes left.

    :raise OrderError: not payable (``ORDERPAID`` when the payer was faster). :raise PaymentError:
    """
    if not payer_client_ip:
        raise OrderError("PAYER_IP_UNKNOWN", _("无法确定您的网络地址，请稍后再试"))
    reusable = orders.reusable_payment(order, "h5")
    if reusable is not None and reusable.payer_client_ip == payer_client_ip:
        return renew_h5_url(reusable, order)
    # Another network: WeChat would refuse the old link ("网络环境未能通过安全验证"), so start anew.
    payment = _start(order, "h5")
    description = payments.describe(order)
    payments._end_transaction()
    try:
        h5_url = _h5_request(payment, description, payer_client_ip)
    except APIError as exc:
        raise _refused(payment, exc) from exc
    except WeChatPayError as exc:
        raise _unreachable(payment, exc) from exc
    orders.payment_issued(payment.id, None, h5_url=h5_url, h5_url_issued_at=utcnow(),
                          payer_client_ip=payer_client_ip)
    db.session.refresh(payment)
    return payment


def renew_h5_url(payment: Payment, order: Order) -> Payment:
    """Keep an H5 attempt's link fresh: call the H5 endpoint again with identical parameters."""
    issued = payment.h5_url_issued_at
    if payment.h5_url and issued and utcnow() - issued < timedelta(seconds=H5_URL_RENEW_AFTER_SECONDS):
        return payment
    description, payer_client_ip = payments.describe(order), payment.payer_client_ip or ""
    payments._end_transaction()
    try:
        h5_url = _h5_request(payment, description, payer_client_ip)
    except APIError as exc:
        if exc.code == "ORDERPAID":
            payments.query_and_apply(payment)
            raise OrderError("ORDERPAID", _("订单已支付"), 409) from exc
        raise PaymentError(exc.code, _("微信支付下单失败：%(m)s", m=exc.message)) from exc
    except WeChatPayError as exc:
        raise PaymentError("WECHATPAY_UNAVAILABLE", _("暂时无法连接微信支付，请稍后再试"), 503) from exc
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
    return creds.miniprogram_appid if method == "miniprogram" else creds.appid


def pay_jsapi(order: Order, method: str, openid: str) -> Payment:
    """The order's JSAPI (or mini program) attempt for this payer, with a prepay_id.

    :raise OrderError: not payable, or no openid. :raise PaymentError: e.g. ``OPENID_MISMATCH``.
    """
    if not openid:
        raise OrderError("OPENID_REQUIRED", _("需要先通过微信授权获取 openid"), 401)
    appid = jsapi_appid(method)
    reusable = orders.reusable_payment(order, method)
    if reusable is not None and reusable.openid == openid and reusable.appid == appid and reusable.prepay_id:
        return reusable
    payment = _start(order, method)
    description = payments.describe(order)
    order_id, owner = order.id, order.owner
    payments._end_transaction()
    if method == "miniprogram":
        flowlog.adopt_logins(order_id, owner)  # the wx.login exchange that gave this openid
    try:
        response = gateway.client().prepay_jsapi(
            description=description,
            out_trade_no=payment.out_trade_no,
            amount_total=payment.amount_total,
            notify_url=gateway.notify_url(),
            time_expire=payment.expires_at,
            openid=openid,
            appid=appid,
        )
    except APIError as exc:
        raise _refused(payment, exc) from exc
    except WeChatPayError as exc:
        raise _unreachable(payment, exc) from exc
    orders.payment_issued(payment.id, None, prepay_id=str(response.data.get("prepay_id", "")),
                          appid=appid, openid=openid)
    db.session.refresh(payment)
    return payment


def pay_params(payment: Payment) -> dict[str, str]:
    """``appId/timeStamp/nonceStr/package/signType/paySign`` for the bridge or wx.requestPayment."""
    if not payment.prepay_id:
        raise OrderError("NO_PREPAY_ID", _("该支付尝试不是 JSAPI 支付"), 409)
    params = gateway.client().pay_params(payment.prepay_id, payment.appid)
    signed = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    order_id, out_trade_no = payment.order_id, payment.out_trade_no
    payments._end_transaction()  # the record writes on its own connection (SQLite: one writer)
    flowlog.record_note("pay_sign", order_id, json.dumps(params, ensure_ascii=False, indent=2),
                        signed_message=signed, out_trade_no=out_trade_no)
    return params
