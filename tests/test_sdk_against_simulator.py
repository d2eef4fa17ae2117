"""The independent ``wechatpayv3`` SDK (2.0.4) against the live simulator.

The SDK signs with ``json.dumps`` defaults (ASCII escapes, ``", "`` separators) and verifies every
2xx answer itself, so a simulator that re-serialised bodies or signed sloppily would fail here.
The SDK checks no timestamp window (WeChat Pay "签名验证" asks for one): that part is ours, tested elsewhere.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import requests
from wechatpayv3 import WeChatPay, WeChatPayType

from storefront.extensions import db

DESCRIPTION = "景德镇青花瓷茶杯"  # non-ASCII: the SDK sends it as \\uXXXX escapes


@pytest.fixture
def server(module_live_server):
    return module_live_server


@pytest.fixture
def wxpay(server) -> WeChatPay:
    """The SDK in public-key mode with the app's merchant credentials, its gateway moved to /sandbox."""
    folder = Path(server.app.instance_path) / "wechatpay"
    credentials = json.loads((folder / "credentials.json").read_text())
    sdk = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=credentials["mchid"],
        private_key=(folder / "apiclient_key.pem").read_text(),
        cert_serial_no=credentials["merchant_serial"],
        appid=credentials["appid"],
        apiv3_key=credentials["apiv3_key"],
        notify_url=server.url + "/notify/wechatpay",
        cert_dir=None,
        timeout=(5, 10),
        public_key=(folder / "pub_key.pem").read_text(),
        public_key_id=credentials["public_key_id"],
    )
    sdk._core._gate_way = server.url + "/sandbox"  # private, pinned by the SDK version in requirements
    return sdk


def new_out_trade_no() -> str:
    return "SDK" + secrets.token_hex(8).upper()


def pay_in_simulator(server, out_trade_no: str) -> dict:
    answer = requests.post(f"{server.url}/sandbox/control/pay",
                           json={"out_trade_no": out_trade_no, "result": "SUCCESS", "notify": "drop"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_sdk_orders_queries_and_closes(server, wxpay):
    """Create, query, close, query: the simulator accepts every SDK signature, the SDK every answer."""
    out_trade_no = new_out_trade_no()

    code, message = wxpay.pay(description=DESCRIPTION, out_trade_no=out_trade_no, amount={"total": 12900})
    assert code == 200, message
    assert json.loads(message)["code_url"].startswith(server.url + "/sandbox/wxpay/bizpayurl?pr=")

    code, message = wxpay.query(out_trade_no=out_trade_no)
    assert code == 200, message
    unpaid = json.loads(message)
    assert unpaid["trade_state"] == "NOTPAY" and unpaid["amount"]["total"] == 12900

    code, message = wxpay.close(out_trade_no=out_trade_no)
    assert code == 204, message

    code, message = wxpay.query(out_trade_no=out_trade_no)
    assert code == 200 and json.loads(message)["trade_state"] == "CLOSED"


def test_sdk_sees_a_payment_and_cannot_close_it(server, wxpay):
    out_trade_no = new_out_trade_no()
    assert wxpay.pay(description=DESCRIPTION, out_trade_no=out_trade_no, amount={"total": 3900})[0] == 200
    paid = pay_in_simulator(server, out_trade_no)

    code, message = wxpay.query(out_trade_no=out_trade_no)
    assert code == 200
    transaction = json.loads(message)
    assert transaction["trade_state"] == "SUCCESS" and transaction["transaction_id"] == paid["transaction_id"]
    assert transaction["amount"]["payer_total"] == 3900

    code, message = wxpay.close(out_trade_no=out_trade_no)
    assert code == 400 and json.loads(message)["code"] == "ORDER_PAID"  # the v3 handbook's spelling


def test_sdk_errors_come_back_as_wechat_codes(wxpay):
    code, message = wxpay.query(out_trade_no=new_out_trade_no())
    assert code == 404 and json.loads(message)["code"] == "ORDER_NOT_EXIST"

    code, message = wxpay.pay(description="咖啡豆 🫘", out_trade_no=new_out_trade_no(), amount={"total": 100})
    assert code == 400, message  # the emoji arrives as an escaped surrogate pair
    assert json.loads(message)["detail"]["field"] == "/description"


def test_sdk_callback_accepts_the_simulators_notification(server, wxpay):
    """What the simulator's notifier would POST: the SDK verifies and decrypts it."""
    out_trade_no = new_out_trade_no()
    assert wxpay.pay(description=DESCRIPTION, out_trade_no=out_trade_no, amount={"total": 8800})[0] == 200
    paid = pay_in_simulator(server, out_trade_no)
    platform = server.app.extensions["sandbox"].platform
    with server.app.app_context():
        event_id, body = platform.payment_notification_body(platform.find(platform.merchant.mchid, out_trade_no))
        headers = platform.notification_headers(body)
        db.session.rollback()

    result = wxpay.callback(headers, body.encode("utf-8"))

    assert result is not None
    assert result["id"] == event_id and result["event_type"] == "TRANSACTION.SUCCESS"
    resource = result["resource"]
    assert resource["out_trade_no"] == out_trade_no and resource["trade_state"] == "SUCCESS"
    assert resource["transaction_id"] == paid["transaction_id"]
    assert resource["amount"]["total"] == 8800 and resource["mchid"] == platform.merchant.mchid

    tampered = body.replace('"summary":"支付成功"', '"summary":"支付失败"')
    assert tampered != body and wxpay.callback(headers, tampered.encode("utf-8")) is None
