"""What the simulator's routes share: the signed-API wrapper, request parsing, the payer's acts."""

from __future__ import annotations

from functools import wraps
from urllib.parse import quote, urlsplit

from flask import Response, redirect, render_template, request, url_for
from sqlalchemy import select

from ..extensions import db
from ..i18n import lazy as _l
from ..web import check_csrf
from . import calllog
from .diagnosis import diagnose
from .models import SandboxTransaction
from .simulator import ApiFailure, Merchant, Platform
from .state import MOUNT, sandbox


def sent_url() -> str:
    """Path and query exactly as the client sent them, mount included (``/sandbox/v3/…``)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        parts = urlsplit(raw)
        path = parts.path
    else:
        path = quote(request.script_root + request.path, safe="/-_.~!*'()|,;:@&=+$")
    query = request.query_string.decode("latin-1")
    return path + ("?" + query if query else "")


def canonical_url() -> str:
    """Path and query exactly as sent, without the mount prefix: what most SDKs sign (``/v3/…``)."""
    url = sent_url()
    url = url[len(request.script_root):] if request.script_root and url.startswith(request.script_root) else url
    return url[len(MOUNT):] if url.startswith(MOUNT + "/") else url


def authenticate_call(platform: Platform, call: calllog.CallRecord, body: bytes) -> Merchant:
    """Authenticate the merchant behind an API call as WeChat Pay does, noting the outcome in the
    call log, then apply the rate limit. :raise ApiFailure: (a ``SIGN_ERROR`` with its diagnosis logged)
    """
    try:
        # SDKs sign the path they send: with <shop>/sandbox/ as their base, /sandbox/v3/…; either is accepted.
        merchant = platform.authenticate(request.method, call.path, request.headers, body, sent_url())
    except ApiFailure as exc:
        call.auth_result = f"{exc.code}: {exc.message}"
        if exc.code == "SIGN_ERROR":  # the answer stays WeChat's; the call log names the mistake
            call.diagnosis = diagnose(platform, request.method, call.path, sent_url(), request.headers, body)
        raise
    call.auth_ok, call.auth_result = True, "验签通过"
    calllog.check_rate(platform, merchant)
    return merchant


def signed_answer(platform: Platform, call: calllog.CallRecord, status: int, data, *,
                  with_view: bool = False) -> Response:
    """The answer signed as WeChat Pay signs it, recorded in the call log.

    ``with_view``: the view succeeded; its writes commit with the call's record (one commit).
    """
    # The answer's key follows the request's Wechatpay-Serial (the switch-over rule).
    payload, status, headers = platform.signed(status, data, request.headers.get("Wechatpay-Serial"))
    calllog.record(call, status, payload, headers, with_view=with_view)
    return Response(payload, status, headers)


def start_call() -> tuple[Platform, calllog.CallRecord, bytes]:
    """The platform, a call-log record of this request, and its raw body."""
    body = request.get_data(cache=True)
    return sandbox().platform, calllog.CallRecord.start(request.method, canonical_url(), request.headers, body), body


def signed_api(view):
    """Authenticate the merchant, run the view, answer signed as WeChat Pay does."""

    @wraps(view)
    def wrapper(**kwargs):
        platform, call, body = start_call()
        try:
            merchant = authenticate_call(platform, call, body)
            status, data = view(platform, merchant, **kwargs)
        except ApiFailure as exc:
            return signed_answer(platform, call, exc.status, exc.body())
        return signed_answer(platform, call, status, data, with_view=True)

    return wrapper


def json_body():
    data = request.get_json(silent=True)
    if data is None:
        raise ApiFailure(400, "PARAM_ERROR", "请求体不是合法的JSON")
    return data


RESULT_MESSAGES = {
    "SUCCESS": _l("支付成功"),
    "CANCEL": _l("已取消支付"),
    "NOTENOUGH": _l("零钱余额不足，请更换支付方式"),
    "PAYERROR": _l("银行系统异常，支付失败，请稍后再试"),
    "USERPAYING": _l("支付处理中：付款人正在输入密码"),
    "ORDERPAID": _l("该订单已支付，请勿重复支付"),
    "ORDER_CLOSED": _l("订单已关闭"),
    "ORDER_EXPIRED": _l("二维码已过期，请让商家重新生成"),
}


def transaction_by_token(token: str | None) -> SandboxTransaction:
    txn = db.session.scalar(select(SandboxTransaction).where(SandboxTransaction.pay_token == (token or "")))
    if txn is None:
        raise ApiFailure(404, "ORDER_NOT_EXIST", "二维码无效或订单不存在")
    return txn


def payer_acts(result: str):
    check_csrf()
    token = request.args.get("pr")
    try:
        txn = transaction_by_token(token)
    except ApiFailure as exc:
        return render_template("errors/error.html", status=404, code=exc.code, message=exc.message), 404
    shape = request.form.get("notify", "normal")
    state = sandbox()
    paid, reason = state.platform.pay(txn, result)
    if paid:
        state.platform.enqueue_payment_notification(txn, shape if valid_shape(shape) else "normal")
        state.notify_soon()
    return redirect(url_for("sandbox.payer.scan", pr=token, result=reason), code=303)


def control_error(status: int, code: str, message: str):
    return {"code": code, "message": message}, status


def valid_shape(shape: object) -> bool:
    if not isinstance(shape, str):
        return False
    kind, _, argument = shape.partition(":")
    if kind in ("normal", "drop"):
        return argument == ""
    try:
        if kind == "delay":
            return 0 <= float(argument) <= 86400
        if kind == "duplicate":
            return 1 <= int(argument) <= 50
    except ValueError:
        return False
    return False
