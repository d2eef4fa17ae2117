"""The peer a merchant's engineer would write instead of the shop: the ``wechatpayv3`` SDK's
README handler, about 30 lines, on the same kind of table and database.

``callback()`` verifies the signature and decrypts the resource; one conditional
``UPDATE … WHERE status = 'pending'`` applies it; the answer is 204. Nothing else: no record of
the notification, no flow record, no order state machine, no timestamp window. The benchmark
serves it exactly as it serves the shop (a threaded werkzeug server on loopback), posts it the
same signed notifications, and gives it a fresh pending row for each.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request
from sqlalchemy import text
from sqlalchemy.engine import Engine

SDK_TABLE = "bench_sdk_payments"
# Same shape as ``payments`` (``bench.env.bare_table``); the amount is part of the condition,
# as any careful hand-written handler has it (money is exact), at no extra cost.
SDK_UPDATE = text(
    f"UPDATE {SDK_TABLE} SET status = 'paid', transaction_id = :transaction_id, paid_at = CURRENT_TIMESTAMP "
    "WHERE out_trade_no = :out_trade_no AND amount_total = :amount AND status = 'pending'"
)


def build_sdk_app(engine: Engine, instance: Path, credentials) -> Flask:
    """The SDK README's Flask handler, configured with the shop's demo merchant (public-key mode)."""
    from wechatpayv3 import WeChatPay, WeChatPayType

    keys = instance / "wechatpay"
    wxpay = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=credentials.mchid,
        private_key=(keys / "apiclient_key.pem").read_text(),
        cert_serial_no=credentials.merchant_serial,
        apiv3_key=credentials.apiv3_key,
        appid=credentials.appid,
        notify_url="http://127.0.0.1/notify",
        public_key=(keys / "pub_key.pem").read_text(),  # public-key mode: no certificate download
        public_key_id=credentials.public_key_id,
    )
    app = Flask("bench_sdk_handler")

    @app.post("/notify")
    def notify():
        result = wxpay.callback(request.headers, request.get_data())
        if result and result.get("event_type") == "TRANSACTION.SUCCESS":
            resource = result["resource"]
            with engine.begin() as connection:
                connection.execute(SDK_UPDATE, {
                    "transaction_id": resource["transaction_id"], "out_trade_no": resource["out_trade_no"],
                    "amount": resource["amount"]["total"],
                })
            return "", 204
        return {"code": "FAILED", "message": "失败"}, 500

    @app.get("/ping")
    def ping():
        return "", 204

    return app
