"""More of the simulator's API v3 paths (certificates, refunds, query by transaction_id) and
the test control for them: refund outcomes, the clock, settings, rotation, probes, resending.

Routes live on the simulator's nested blueprints (``blueprints.api``, ``payer``, ``control``).
"""

from __future__ import annotations

import json
from datetime import timedelta

from flask import request
from sqlalchemy import select

from ..extensions import db
from ..wechatpay.times import format_time
from . import refunds
from .blueprints import api, control, payer
from .control import advance_to_next_retry, certificates_answer, clock_json, enqueue_probe, resend, reset_clock
from .http import control_error, json_body, payer_acts, signed_api, valid_shape
from .models import SandboxApiCall, SandboxRefund, SandboxTransaction
from .simulator import ApiFailure
from .state import sandbox

CERTIFICATE_ALGORITHMS = ("RSA", "ALL")


# -- API v3 ---------------------------------------------------------------------------------


@api.get("/v3/certificates")
@signed_api
def certificates(platform, merchant):
    algorithm = request.args.get("algorithm_type")
    if algorithm is not None and algorithm not in (*CERTIFICATE_ALGORITHMS, "SM2"):
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "algorithm_type", "value": algorithm,
                                                          "issue": "须为RSA、SM2或ALL", "location": "query"})
    if algorithm == "SM2":
        return 200, {"data": []}  # the simulator has RSA certificates only
    return 200, certificates_answer(platform, merchant)


@api.get("/v3/pay/transactions/id/<transaction_id>")
@signed_api
def query_by_id(platform, merchant, transaction_id: str):
    if request.args.get("mchid") != merchant.mchid:
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "mchid", "location": "query",
                                                          "issue": "缺少mchid或与Authorization中的商户号不一致"})
    out_trade_no = db.session.scalar(select(SandboxTransaction.out_trade_no).where(
        SandboxTransaction.mchid == merchant.mchid, SandboxTransaction.transaction_id == transaction_id))
    if out_trade_no is None:
        raise ApiFailure(404, "ORDER_NOT_EXIST", "订单不存在")
    return 200, platform.query(merchant, out_trade_no)


@api.post("/v3/refund/domestic/refunds")
@signed_api
def refund_create(platform, merchant):
    return 200, refunds.create(platform, merchant, json_body())


@api.get("/v3/refund/domestic/refunds/<out_refund_no>")
@signed_api
def refund_query(platform, merchant, out_refund_no: str):
    return 200, refunds.query(platform, merchant, out_refund_no)


# -- the payer's failure choices on the scan page ------------------------------------------------


@payer.post("/wxpay/bizpayurl/fail")
def scan_fail():
    result = request.form.get("result", "")
    if result not in ("NOTENOUGH", "PAYERROR", "USERPAYING"):
        result = "CANCEL"
    return payer_acts(result)


# -- test control -------------------------------------------------------------------------------


@control.post("/control/refund")
def control_refund():
    """End a PROCESSING refund now: ``{"out_refund_no", "result": SUCCESS|ABNORMAL|CLOSED, "notify"}``."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("out_refund_no"), str):
        return control_error(400, "PARAM_ERROR", "需要 JSON 对象 {\"out_refund_no\", \"result\"}")
    result = data.get("result", "SUCCESS")
    shape = data.get("notify", "normal")
    if result not in refunds.OUTCOMES:
        return control_error(400, "PARAM_ERROR", "result 须为 SUCCESS、ABNORMAL 或 CLOSED")
    if not valid_shape(shape):
        return control_error(400, "PARAM_ERROR", "notify 须为 normal、drop、delay:SECONDS 或 duplicate:N")
    state = sandbox()
    platform = state.platform
    refund = refunds.find(platform.merchant_for(data.get("mchid")) or platform.merchant, data["out_refund_no"])
    if refund is None:
        return control_error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    if not refunds.finish(platform, refund.id, result, shape):
        db.session.refresh(refund)
        return control_error(409, "REFUND_FINISHED", f"退款已结束：{refund.status}")
    state.notify_soon()
    db.session.refresh(refund)
    return refunds.describe(refund)


@control.get("/control/refunds")
def control_refunds():
    query = select(SandboxRefund).order_by(SandboxRefund.id)
    if request.args.get("out_trade_no"):
        query = query.where(SandboxRefund.out_trade_no == request.args["out_trade_no"])
    platform = sandbox().platform
    refunds.settle_due(platform)
    return {"refunds": [refunds.describe(r) for r in db.session.scalars(query)]}


@control.post("/control/clock")
def control_clock():
    """Fast-forward the simulator clock: ``{"advance_seconds": N}``, ``{"to": "next_retry"}`` or ``{"reset": true}``."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return control_error(400, "PARAM_ERROR", "需要 JSON 对象")
    state = sandbox()
    try:
        if data.get("reset") is True:
            reset_clock(state.platform)
        elif data.get("to") == "next_retry":
            advance_to_next_retry(state.platform)
        else:
            seconds = data.get("advance_seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                return control_error(400, "PARAM_ERROR", "advance_seconds 须为数字")
            state.platform.settings.fast_forward(float(seconds))
    except ValueError as exc:
        return control_error(400, "PARAM_ERROR", str(exc))
    state.notify_soon()
    return clock_json(state.platform)


@control.get("/control/clock")
def control_clock_get():
    return clock_json(sandbox().platform)


@control.route("/control/settings", methods=["GET", "POST"])
def control_settings():
    """Read, or change (``{"name": value, ...}``), notify_signing, answer_signing, rate_limit_per_second."""
    platform = sandbox().platform
    if request.method == "POST":
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return control_error(400, "PARAM_ERROR", "需要 JSON 对象")
        try:
            for name, value in data.items():
                if name == "clock_offset_seconds":
                    raise ValueError("use /sandbox/control/clock to move the clock")
                platform.settings.set(name, value)
        except ValueError as exc:
            db.session.rollback()
            return control_error(400, "PARAM_ERROR", str(exc))
    return platform.settings.all()


@control.post("/control/rotate-cert")
def control_rotate_cert():
    """Issue a new platform certificate; the old one stays listed for ``overlap_seconds`` (default 7 days)."""
    data = request.get_json(silent=True) or {}
    overlap = data.get("overlap_seconds", 7 * 86400) if isinstance(data, dict) else 7 * 86400
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or overlap < 0:
        return control_error(400, "PARAM_ERROR", "overlap_seconds 须为非负数")
    platform = sandbox().platform
    cert = platform.certificates.rotate(platform.now(), timedelta(seconds=overlap))
    return {"serial_no": cert.serial, "listed": [c.serial for c in platform.certificates.listed(platform.now())]}


@control.get("/control/certificates")
def control_certificates():
    platform = sandbox().platform
    now = platform.now()
    return {"signing": platform.certificates.newest(now).serial,
            "public_key_id": platform.merchant.public_key_id,
            "certificates": [{"serial_no": c.serial, "issued_at": format_time(c.issued_at),
                              "retire_at": format_time(c.retire_at) if c.retire_at else None,
                              "listed": c in platform.certificates.listed(now)}
                             for c in platform.certificates.all()]}


@control.post("/control/probe")
def control_probe():
    """Send a mis-signed probe notification: ``{"out_trade_no"}`` (default: the latest transaction)."""
    data = request.get_json(silent=True) or {}
    state = sandbox()
    try:
        row = enqueue_probe(state.platform, data.get("out_trade_no") if isinstance(data, dict) else None)
    except ApiFailure as exc:
        return control_error(exc.status, exc.code, exc.message)
    state.notify_soon()
    return {"id": row.id, "out_trade_no": row.out_trade_no, "state": row.state}


@control.post("/control/notifications/<int:notification_id>/resend")
def control_resend(notification_id: int):
    state = sandbox()
    if not resend(state.platform, notification_id):
        return control_error(404, "NOT_FOUND", "通知不存在")
    state.notify_soon()
    return {"id": notification_id, "state": "pending"}


@control.get("/control/calls")
def control_calls():
    """The latest API calls the simulator received (``?path=`` filters by a path prefix)."""
    query = select(SandboxApiCall).order_by(SandboxApiCall.id.desc()).limit(200)
    if request.args.get("path"):
        query = query.where(SandboxApiCall.path.startswith(request.args["path"], autoescape=True))
    if request.args.get("mchid"):
        query = query.where(SandboxApiCall.mchid == request.args["mchid"])
    return {"calls": [
        {"id": c.id, "method": c.method, "path": c.path, "mchid": c.mchid, "status": c.status,
         "auth_ok": c.auth_ok, "auth_result": c.auth_result, "wechatpay_serial": c.wechatpay_serial,
         "response_serial": c.response_serial, "signed_message": c.signed_message,
         "diagnosis": c.diagnosis,
         "diagnosis_detail": json.loads(c.diagnosis_detail) if c.diagnosis_detail else None}
        for c in db.session.scalars(query)
    ]}

