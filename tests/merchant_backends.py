"""Small merchant backends written with the independent ``wechatpayv3`` SDK and a simulator kit.

Each is a real Flask server on loopback with its own orders (in memory): it creates Native
orders through the SDK against an API base from the kit, and handles WeChat Pay notifications
in one of three ways (``correct``, ``ack_anything``, ``fail_duplicates``) for the grader to find.
Nothing here imports the shop: a backend knows only its kit, as a merchant's would.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from flask import Flask, jsonify, request
from wechatpayv3 import WeChatPay, WeChatPayType
from werkzeug.serving import make_server

SHANGHAI = timezone(timedelta(hours=8))
BEHAVIOURS = ("correct", "ack_anything", "fail_duplicates")


def read_kit(folder: Path) -> dict:
    info = json.loads((folder / "merchant.json").read_text())
    info["private_key"] = (folder / "apiclient_key.pem").read_text()
    info["public_key"] = (folder / "pub_key.pem").read_text()
    return info


def sdk_for(kit: dict, api_base: str, notify_url: str | None = None) -> WeChatPay:
    """The SDK in public-key mode with the kit's credentials, its gateway moved to ``api_base``."""
    sdk = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE, mchid=kit["mchid"], private_key=kit["private_key"],
        cert_serial_no=kit["merchant_serial"], appid=kit["appid"], apiv3_key=kit["apiv3_key"],
        notify_url=notify_url, cert_dir=None, timeout=(5, 10), public_key=kit["public_key"],
        public_key_id=kit["public_key_id"],
    )
    # The SDK has no public setting for its gateway (pinned version, private attribute); it signs
    # the path after it, and the simulator accepts a signature over that or over the path as sent.
    sdk._core._gate_way = api_base.rstrip("/")
    return sdk


def wechat_time(moment: datetime) -> str:
    """yyyy-MM-DDTHH:mm:ss+08:00, WeChat's time_expire format."""
    return moment.astimezone(SHANGHAI).replace(microsecond=0).isoformat()


class Backend:
    """One merchant backend served on 127.0.0.1; ``url + "/notify"`` is its notify_url."""

    def __init__(self, kit: dict, api_base: str, behaviour: str = "correct") -> None:
        assert behaviour in BEHAVIOURS
        self.kit, self.behaviour = kit, behaviour
        self.orders: dict[str, dict] = {}  # out_trade_no -> {"total", "status", "transaction_id"}
        self.notifications: list[dict] = []  # every decrypted resource accepted
        self.lock = threading.Lock()
        app = Flask(f"backend-{behaviour}")
        app.add_url_rule("/orders", view_func=self.create_order, methods=["POST"])
        app.add_url_rule("/notify", view_func=self.notify, methods=["POST"])
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.sdk = sdk_for(kit, api_base, self.url + "/notify")
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    # -- the merchant's API use ---------------------------------------------------------------------

    def create_order(self):
        data = request.get_json()
        out_trade_no = data.get("out_trade_no") or "B" + secrets.token_hex(8).upper()
        total = int(data["total"])
        code, message = self.sdk.pay(
            description=data.get("description", "测试商品"), out_trade_no=out_trade_no, amount={"total": total},
            time_expire=wechat_time(datetime.now(SHANGHAI) + timedelta(minutes=15)),
        )
        if code != 200:
            return jsonify({"error": message}), 502
        with self.lock:
            self.orders[out_trade_no] = {"total": total, "status": "pending", "transaction_id": None}
        return jsonify({"out_trade_no": out_trade_no, "code_url": json.loads(message)["code_url"]}), 201

    def order(self, total: int = 8800, description: str = "测试商品", out_trade_no: str | None = None) -> str:
        """Create an order through this backend's own HTTP endpoint; returns its out_trade_no."""
        answer = requests.post(self.url + "/orders", json={"total": total, "description": description,
                                                          "out_trade_no": out_trade_no}, timeout=15)
        assert answer.status_code == 201, answer.text
        return answer.json()["out_trade_no"]

    # -- notifications ------------------------------------------------------------------------------

    def notify(self):
        if self.behaviour == "ack_anything":
            self.notifications.append({"unverified": request.get_data(as_text=True)})
            return "", 204
        refusal = self._verify()
        if isinstance(refusal, tuple):
            return refusal
        resource = refusal
        with self.lock:
            order = self.orders.get(resource.get("out_trade_no"))
            if order is None or resource.get("mchid") != self.kit["mchid"] or resource.get("appid") != self.kit["appid"]:
                return jsonify({"code": "FAIL", "message": "订单不存在或商户不符"}), 400
            if resource["amount"]["total"] != order["total"]:
                return jsonify({"code": "FAIL", "message": "金额不符"}), 400
            if order["status"] == "paid":
                if self.behaviour == "fail_duplicates":
                    return jsonify({"code": "FAIL", "message": "duplicate key value violates unique constraint"}), 500
                return "", 204  # already applied: acknowledge again
            order.update(status="paid", transaction_id=resource["transaction_id"])
            self.notifications.append(resource)
        return "", 204

    def _verify(self):
        """The decrypted resource, or a refusal (status, body) as WeChat's guide recommends."""
        try:
            timestamp = int(request.headers.get("Wechatpay-Timestamp", "0"))
        except ValueError:
            timestamp = 0
        if abs(time.time() - timestamp) > 300:
            return jsonify({"code": "FAIL", "message": "时间戳超出 5 分钟"}), 401
        try:
            data = self.sdk.callback(dict(request.headers), request.get_data(as_text=True))
        except Exception:  # an unknown serial, a malformed signature, a failed decryption
            data = None
        if not data or data.get("event_type") != "TRANSACTION.SUCCESS":
            return jsonify({"code": "FAIL", "message": "签名或解密失败"}), 401
        return data["resource"]

    def wait_paid(self, out_trade_no: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.orders.get(out_trade_no, {}).get("status") == "paid":
                    return self.orders[out_trade_no]
            time.sleep(0.05)
        raise AssertionError(f"{out_trade_no} not paid at the backend within {timeout} s")
