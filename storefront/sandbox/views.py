"""Routes of the simulator: the API v3 paths, the payer's pages, test control and the console."""

from __future__ import annotations

from functools import wraps
from types import SimpleNamespace
from urllib.parse import quote, urlsplit

from flask import Blueprint, Response, redirect, render_template, request, url_for
from sqlalchemy import select

from ..extensions import db
from ..i18n import lazy as _l
from ..web import check_csrf
from . import sandbox
from .models import SandboxDelivery, SandboxNotification, SandboxTransaction
from .simulator import FAILURE_RESULTS, ApiFailure

bp = Blueprint("sandbox", __name__)
MOUNT = "/sandbox"


def canonical_url() -> str:
    """Path and query exactly as sent, without the mount prefix: what the merchant signed."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        parts = urlsplit(raw)
        path = parts.path
    else:
        path = quote(request.script_root + request.path, safe="/-_.~!*'()|,;:@&=+$")
    path = path[len(request.script_root):]
    path = path[len(MOUNT):] if path.startswith(MOUNT) else path
    query = request.query_string.decode("latin-1")
    return path + ("?" + query if query else "")


def signed_api(view):
    """Authenticate the merchant, run the view, answer signed as WeChat Pay does."""

    @wraps(view)
    def wrapper(**kwargs):
        from . import calllog

        platform = sandbox().platform
        body = request.get_data(cache=True)
        call = calllog.CallRecord.start(request.method, canonical_url(), request.headers, body)
        try:
            merchant = platform.authenticate(request.method, call.path, request.headers, body)
            call.auth_ok, call.auth_result = True, "验签通过"
            calllog.check_rate(platform, merchant)
            status, data = view(platform, merchant, **kwargs)
        except ApiFailure as exc:
            status, data = exc.status, exc.body()
            if not call.auth_ok:
                call.auth_result = f"{exc.code}: {exc.message}"
        # The answer's key follows the request's Wechatpay-Serial (the switch-over rule).
        payload, status, headers = platform.signed(status, data, request.headers.get("Wechatpay-Serial"))
        calllog.record(call, status, payload, headers)
        return Response(payload, status, headers)

    return wrapper


def _json_body():
    data = request.get_json(silent=True)
    if data is None:
        raise ApiFailure(400, "PARAM_ERROR", "请求体不是合法的JSON")
    return data


@bp.post("/v3/pay/transactions/native")
@signed_api
def native(platform, merchant):
    base = request.host_url.rstrip("/")
    return 200, platform.create_native(merchant, _json_body(), base)


@bp.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
@signed_api
def query(platform, merchant, out_trade_no: str):
    mchid = request.args.get("mchid")
    if mchid != merchant.mchid:
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "mchid", "location": "query",
                                                          "issue": "缺少mchid或与Authorization中的商户号不一致"})
    return 200, platform.query(merchant, out_trade_no)


@bp.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
@signed_api
def close(platform, merchant, out_trade_no: str):
    platform.close(merchant, out_trade_no, _json_body())
    return 204, None


# -- the payer's side: what the WeChat app would show after a scan ------------------------

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


def _transaction_by_token(token: str | None) -> SandboxTransaction:
    txn = db.session.scalar(select(SandboxTransaction).where(SandboxTransaction.pay_token == (token or "")))
    if txn is None:
        raise ApiFailure(404, "ORDER_NOT_EXIST", "二维码无效或订单不存在")
    return txn


@bp.get("/wxpay/bizpayurl")
def scan():
    platform = sandbox().platform
    try:
        txn = _transaction_by_token(request.args.get("pr"))
    except ApiFailure as exc:
        return render_template("errors/error.html", status=404, code=exc.code, message=exc.message), 404
    view = SimpleNamespace(
        out_trade_no=txn.out_trade_no, description=txn.description, amount_total=txn.amount_total,
        trade_state=txn.trade_state, expired=platform.expired(txn), merchant_name=platform.merchant.name,
        time_expire=txn.time_expire,
    )
    return render_template(
        "sandbox/scan.html", txn=view, message=RESULT_MESSAGES.get(request.args.get("result", "")),
        pay_url=url_for("sandbox.scan_pay", pr=txn.pay_token),
        cancel_url=url_for("sandbox.scan_cancel", pr=txn.pay_token),
        fail_url=url_for("sandbox.scan_fail", pr=txn.pay_token),
    )


def _payer_acts(result: str):
    check_csrf()
    token = request.args.get("pr")
    try:
        txn = _transaction_by_token(token)
    except ApiFailure as exc:
        return render_template("errors/error.html", status=404, code=exc.code, message=exc.message), 404
    shape = request.form.get("notify", "normal")
    state = sandbox()
    paid, reason = state.platform.pay(txn, result)
    if paid:
        state.platform.enqueue_payment_notification(txn, shape if _valid_shape(shape) else "normal")
        state.notify_soon()
    return redirect(url_for("sandbox.scan", pr=token, result=reason), code=303)


@bp.post("/wxpay/bizpayurl/pay")
def scan_pay():
    return _payer_acts("SUCCESS")


@bp.post("/wxpay/bizpayurl/cancel")
def scan_cancel():
    return _payer_acts("CANCEL")


# -- test control (no signature; only exists in simulator mode) ---------------------------


def _control_error(status: int, code: str, message: str):
    return {"code": code, "message": message}, status


@bp.post("/control/pay")
def control_pay():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("out_trade_no"), str):
        return _control_error(400, "PARAM_ERROR", "需要 JSON 对象 {\"out_trade_no\", \"result\"}")
    result = data.get("result", "SUCCESS")
    shape = data.get("notify", "normal")
    if result != "SUCCESS" and result not in FAILURE_RESULTS:
        return _control_error(400, "PARAM_ERROR", "result 须为 SUCCESS、PAYERROR、NOTENOUGH、CANCEL 或 USERPAYING")
    if not _valid_shape(shape):
        return _control_error(400, "PARAM_ERROR", "notify 须为 normal、drop、delay:SECONDS 或 duplicate:N")
    state = sandbox()
    platform = state.platform
    txn = platform.find(platform.merchant.mchid, data["out_trade_no"])
    if txn is None:
        return _control_error(404, "ORDER_NOT_EXIST", "订单不存在")
    paid, reason = platform.pay(txn, result)
    if not paid and reason not in FAILURE_RESULTS:
        return _control_error(409, reason, RESULT_MESSAGES.get(reason, reason))
    if not paid:
        return {"out_trade_no": txn.out_trade_no, "trade_state": txn.trade_state, "result": reason}
    ids = platform.enqueue_payment_notification(txn, shape)
    state.notify_soon()
    return {"out_trade_no": txn.out_trade_no, "transaction_id": txn.transaction_id, "trade_state": "SUCCESS",
            "notification_ids": ids}


def _valid_shape(shape: object) -> bool:
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


@bp.post("/control/query-fault")
def control_query_fault():
    """The next query of an attempt answers USERPAYING or SYSTEM_ERROR, once."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or data.get("fault") not in ("USERPAYING", "SYSTEM_ERROR"):
        return _control_error(400, "PARAM_ERROR", "需要 {\"out_trade_no\", \"fault\": \"USERPAYING\" 或 \"SYSTEM_ERROR\"}")
    platform = sandbox().platform
    txn = platform.find(platform.merchant.mchid, str(data.get("out_trade_no")))
    if txn is None:
        return _control_error(404, "ORDER_NOT_EXIST", "订单不存在")
    platform.set_query_fault(txn, data["fault"])
    return {"out_trade_no": txn.out_trade_no, "next_query_fault": data["fault"]}


@bp.get("/control/notifications")
def control_notifications():
    query = select(SandboxNotification).order_by(SandboxNotification.id)
    if request.args.get("out_trade_no"):
        query = query.where(SandboxNotification.out_trade_no == request.args["out_trade_no"])
    rows = list(db.session.scalars(query))
    deliveries: dict[int, list] = {row.id: [] for row in rows}
    if rows:
        for delivery in db.session.scalars(
            select(SandboxDelivery).where(SandboxDelivery.notification_id.in_(deliveries)).order_by(SandboxDelivery.id)
        ):
            deliveries[delivery.notification_id].append(
                {"at": _iso(delivery.at), "http_status": delivery.http_status, "error": delivery.error or None,
                 "response_body": delivery.response_body, "serial": delivery.signed_serial,
                 "next_attempt_at": _iso(delivery.next_attempt_at)}
            )
    return {
        "notifications": [
            {"id": row.id, "event_id": row.event_id, "out_trade_no": row.out_trade_no,
             "event_type": row.event_type, "notify_url": row.notify_url, "state": row.state,
             "kind": row.kind, "out_refund_no": row.out_refund_no,
             "next_attempt_at": _iso(row.next_attempt_at), "attempts": deliveries[row.id]}
            for row in rows
        ]
    }


@bp.get("/control/openid")
def control_openid():
    appid = request.args.get("appid", "")
    platform = sandbox().platform
    if appid not in platform.merchant.appids:
        return _control_error(404, "APPID_NOT_EXIST", "模拟器中没有该 appid")
    return {"openid": platform.openid(appid)}


def _iso(moment):
    from ..wechatpay.times import format_time

    return format_time(moment) if moment is not None else None


# -- the console ----------------------------------------------------------------------------


# The console's pages (``sandbox.index`` and the rest) live in console.py.
