"""The simulator's first routes: Native API v3 paths, the QR scan page and its test control."""

from __future__ import annotations

from types import SimpleNamespace

from flask import render_template, request, url_for
from sqlalchemy import select

from ..extensions import db
from ..wechatpay.times import format_time
from .blueprints import api, control, payer
from .http import (
    RESULT_MESSAGES,
    control_error,
    json_body,
    payer_acts,
    signed_api,
    transaction_by_token,
    valid_shape,
)
from .merchants import appid_registered
from .models import SandboxDelivery, SandboxNotification
from .simulator import FAILURE_RESULTS, ApiFailure
from .state import sandbox


@api.post("/v3/pay/transactions/native")
@signed_api
def native(platform, merchant):
    base = request.host_url.rstrip("/")
    return 200, platform.create_native(merchant, json_body(), base)


@api.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
@signed_api
def query(platform, merchant, out_trade_no: str):
    mchid = request.args.get("mchid")
    if mchid != merchant.mchid:
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "mchid", "location": "query",
                                                          "issue": "缺少mchid或与Authorization中的商户号不一致"})
    return 200, platform.query(merchant, out_trade_no)


@api.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
@signed_api
def close(platform, merchant, out_trade_no: str):
    platform.close(merchant, out_trade_no, json_body())
    return 204, None


# -- the payer's side: what the WeChat app would show after a scan ------------------------

@payer.get("/wxpay/bizpayurl")
def scan():
    platform = sandbox().platform
    try:
        txn = transaction_by_token(request.args.get("pr"))
    except ApiFailure as exc:
        return render_template("errors/error.html", status=404, code=exc.code, message=exc.message), 404
    view = SimpleNamespace(
        out_trade_no=txn.out_trade_no, description=txn.description, amount_total=txn.amount_total,
        trade_state=txn.trade_state, expired=platform.expired(txn),
        merchant_name=(platform.merchant_for(txn.mchid) or platform.merchant).name,
        time_expire=txn.time_expire,
    )
    return render_template(
        "sandbox/scan.html", txn=view, message=RESULT_MESSAGES.get(request.args.get("result", "")),
        pay_url=url_for("sandbox.payer.scan_pay", pr=txn.pay_token),
        cancel_url=url_for("sandbox.payer.scan_cancel", pr=txn.pay_token),
        fail_url=url_for("sandbox.payer.scan_fail", pr=txn.pay_token),
    )


@payer.post("/wxpay/bizpayurl/pay")
def scan_pay():
    return payer_acts("SUCCESS")


@payer.post("/wxpay/bizpayurl/cancel")
def scan_cancel():
    return payer_acts("CANCEL")


# -- test control (no signature; only exists in simulator mode) ---------------------------


@control.post("/control/pay")
def control_pay():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("out_trade_no"), str):
        return control_error(400, "PARAM_ERROR", "需要 JSON 对象 {\"out_trade_no\", \"result\"}")
    result = data.get("result", "SUCCESS")
    shape = data.get("notify", "normal")
    if result != "SUCCESS" and result not in FAILURE_RESULTS:
        return control_error(400, "PARAM_ERROR", "result 须为 SUCCESS、PAYERROR、NOTENOUGH、CANCEL 或 USERPAYING")
    if not valid_shape(shape):
        return control_error(400, "PARAM_ERROR", "notify 须为 normal、drop、delay:SECONDS 或 duplicate:N")
    state = sandbox()
    platform = state.platform
    try:  # any registered merchant's order (docs/en/test-your-backend.md); "mchid" picks one
        mchid = data.get("mchid") if isinstance(data.get("mchid"), str) else None
        txn = platform.find_any(data["out_trade_no"], mchid)
    except ApiFailure as exc:
        return control_error(exc.status, exc.code, exc.message)
    if txn is None:
        return control_error(404, "ORDER_NOT_EXIST", "订单不存在")
    paid, reason = platform.pay(txn, result)
    if not paid and reason not in FAILURE_RESULTS:
        return control_error(409, reason, RESULT_MESSAGES.get(reason, reason))
    if not paid:
        return {"out_trade_no": txn.out_trade_no, "trade_state": txn.trade_state, "result": reason}
    ids = platform.enqueue_payment_notification(txn, shape)
    state.notify_soon()
    return {"out_trade_no": txn.out_trade_no, "transaction_id": txn.transaction_id, "trade_state": "SUCCESS",
            "notification_ids": ids}


@control.post("/control/query-fault")
def control_query_fault():
    """The next query of an attempt answers USERPAYING or SYSTEM_ERROR, once."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or data.get("fault") not in ("USERPAYING", "SYSTEM_ERROR"):
        return control_error(400, "PARAM_ERROR", "需要 {\"out_trade_no\", \"fault\": \"USERPAYING\" 或 \"SYSTEM_ERROR\"}")
    platform = sandbox().platform
    try:
        mchid = data.get("mchid") if isinstance(data.get("mchid"), str) else None
        txn = platform.find_any(str(data.get("out_trade_no")), mchid)
    except ApiFailure as exc:
        return control_error(exc.status, exc.code, exc.message)
    if txn is None:
        return control_error(404, "ORDER_NOT_EXIST", "订单不存在")
    try:
        platform.set_query_fault(txn, data["fault"])
    except ValueError as exc:
        return control_error(400, "PARAM_ERROR", str(exc))
    return {"out_trade_no": txn.out_trade_no, "next_query_fault": data["fault"]}


@control.get("/control/notifications")
def control_notifications():
    query = select(SandboxNotification).order_by(SandboxNotification.id)
    if request.args.get("out_trade_no"):
        query = query.where(SandboxNotification.out_trade_no == request.args["out_trade_no"])
    if request.args.get("mchid"):
        query = query.where(SandboxNotification.mchid == request.args["mchid"])
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
             "kind": row.kind, "out_refund_no": row.out_refund_no, "mchid": row.mchid,
             "next_attempt_at": _iso(row.next_attempt_at), "attempts": deliveries[row.id]}
            for row in rows
        ]
    }


@control.get("/control/openid")
def control_openid():
    appid = request.args.get("appid", "")
    platform = sandbox().platform
    if appid not in platform.merchant.appids and not appid_registered(appid):
        return control_error(404, "APPID_NOT_EXIST", "模拟器中没有该 appid")
    return {"openid": platform.openid(appid)}


def _iso(moment):

    return format_time(moment) if moment is not None else None


# -- the console ----------------------------------------------------------------------------


# The console's pages (``sandbox.index`` and the rest) live in console.py.
