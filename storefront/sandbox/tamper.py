"""Test control for the guided tour: a forged or tampered payment notification, sent for real.

``POST /sandbox/control/tamper {"out_trade_no", "tamper": "body" | "timestamp" | "serial"}``
posts a TRANSACTION.SUCCESS notification for an attempt that was NOT paid, so a shop that
skips a check would mark it paid. Each variant breaks exactly one thing the shop must check:
``body`` changes one byte after signing, ``timestamp`` signs a 10-minute-old message (a
replay), ``serial`` names a key the shop does not know. The shop must answer 4xx.
"""

from __future__ import annotations

import json
import secrets
import string
import time

import requests
from flask import request

from ..clock import utcnow
from ..wechatpay.client import json_body
from ..wechatpay.notify import build_notification
from ..wechatpay.signing import sign_response
from ..wechatpay.times import format_time
from .blueprints import control
from .state import sandbox

TAMPERS = ("body", "timestamp", "serial")
NONCE_ALPHABET = string.ascii_letters + string.digits
DELIVERY_TIMEOUT_SECONDS = 5
STALE_SECONDS = 600  # twice WeChat Pay's 5-minute window


def forged_notification(platform, txn, tamper: str) -> tuple[bytes, dict[str, str]]:
    """A genuinely encrypted and signed notification, then broken in one way."""
    now = utcnow().replace(microsecond=0)
    resource = json_body({
        "mchid": txn.mchid, "appid": txn.appid, "out_trade_no": txn.out_trade_no,
        "transaction_id": "4200" + "".join(secrets.choice(string.digits) for _ in range(24)),
        "trade_type": txn.trade_type, "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
        "bank_type": "OTHERS", "attach": txn.attach or "", "success_time": format_time(now),
        "payer": {"openid": platform.openid(txn.appid)},
        "amount": {"total": txn.amount_total, "payer_total": txn.amount_total, "currency": "CNY",
                   "payer_currency": "CNY"},
    })
    body = build_notification(platform.aes, resource.encode("utf-8"), event_type="TRANSACTION.SUCCESS",
                              summary="支付成功", create_time=format_time(now))
    timestamp = None
    if tamper == "timestamp":
        timestamp = str(int(time.time()) - STALE_SECONDS)
    headers = sign_response(platform.private_key, platform.merchant.public_key_id, body, timestamp=timestamp)
    headers.setdefault("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
    if tamper == "body":
        body = body.replace("支付成功".encode(), "支付成功!".encode(), 1)  # after signing
    elif tamper == "serial":
        headers["Wechatpay-Serial"] = "PUB_KEY_ID_" + "0" * 34
    return body, headers


@control.post("/control/tamper")
def control_tamper():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("out_trade_no"), str):
        return {"code": "PARAM_ERROR", "message": "需要 JSON 对象 {\"out_trade_no\", \"tamper\"}"}, 400
    tamper = data.get("tamper", "body")
    if tamper not in TAMPERS:
        return {"code": "PARAM_ERROR", "message": "tamper 须为 body、timestamp 或 serial"}, 400
    platform = sandbox().platform
    txn = platform.find(platform.merchant.mchid, data["out_trade_no"])
    if txn is None:
        return {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}, 404
    body, headers = forged_notification(platform, txn, tamper)
    try:
        answer = requests.post(txn.notify_url, data=body, timeout=DELIVERY_TIMEOUT_SECONDS,
                               headers={**headers, "Content-Type": "application/json"})
    except requests.RequestException as exc:
        return {"code": "NOTIFY_UNREACHABLE", "message": exc.__class__.__name__}, 502
    answer_body = answer.text[:200]
    try:
        answer_body = json.loads(answer.text)
    except ValueError:
        pass
    return {"out_trade_no": txn.out_trade_no, "tamper": tamper, "http_status": answer.status_code,
            "answer": answer_body}
