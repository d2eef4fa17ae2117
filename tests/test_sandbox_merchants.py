"""Two merchants at once: each verified with its own key, notified with its own APIv3 key at its own
notify_url, and neither sees the other's transactions. Both backends use the ``wechatpayv3`` SDK."""

from __future__ import annotations

import json
import secrets

import pytest
import requests
from sqlalchemy import select

from conftest import module_server, wait_for
from merchant_backends import Backend
from storefront.extensions import db
from storefront.sandbox.models import SandboxNotification
from storefront.wechatpay import aead
from storefront.wechatpay.errors import DecryptError


@pytest.fixture(scope="module")
def shop(tmp_path_factory, instance_template):
    yield from module_server(tmp_path_factory, instance_template, SANDBOX_NOTIFIER=True)


def register(shop, name: str) -> dict:
    answer = requests.post(shop.url + "/sandbox/control/merchants", json={"name": name}, timeout=30)
    assert answer.status_code == 201, answer.text
    data = answer.json()
    return {**data, "private_key": data["apiclient_key_pem"], "public_key": data["pub_key_pem"]}


@pytest.fixture
def two(shop):
    kits = [register(shop, "甲商户"), register(shop, "乙商户")]
    backends = [Backend(kit, kit["api_base_mounted"]) for kit in kits]
    yield list(zip(kits, backends))
    for backend in backends:
        backend.stop()


def pay(shop, out_trade_no: str, mchid: str | None = None) -> requests.Response:
    return requests.post(shop.url + "/sandbox/control/pay",
                         json={"out_trade_no": out_trade_no, **({"mchid": mchid} if mchid else {})}, timeout=10)


def test_each_merchant_is_notified_with_its_own_key_at_its_own_backend(shop, two):
    (kit_a, backend_a), (kit_b, backend_b) = two
    assert kit_a["mchid"] != kit_b["mchid"] and kit_a["apiv3_key"] != kit_b["apiv3_key"]
    same = "SAME" + secrets.token_hex(6).upper()
    backend_a.order(total=100, out_trade_no=same)
    backend_b.order(total=200, out_trade_no=same)  # the same number at two merchants: two transactions

    ambiguous = pay(shop, same)
    assert ambiguous.status_code == 409 and ambiguous.json()["code"] == "AMBIGUOUS_OUT_TRADE_NO"
    assert pay(shop, same, kit_a["mchid"]).status_code == 200
    assert pay(shop, same, kit_b["mchid"]).status_code == 200

    paid_a, paid_b = backend_a.wait_paid(same), backend_b.wait_paid(same)
    assert paid_a["transaction_id"] != paid_b["transaction_id"]
    (resource_a,), (resource_b,) = backend_a.notifications, backend_b.notifications
    assert (resource_a["mchid"], resource_a["amount"]["total"]) == (kit_a["mchid"], 100)
    assert (resource_b["mchid"], resource_b["amount"]["total"]) == (kit_b["mchid"], 200)

    with shop.app.app_context():
        rows = {row.mchid: row for row in db.session.scalars(
            select(SandboxNotification).where(SandboxNotification.out_trade_no == same))}
    for mine, other in ((kit_a, kit_b), (kit_b, kit_a)):
        resource = json.loads(rows[mine["mchid"]].body)["resource"]
        decrypted = aead.decrypt(aead.cipher(mine["apiv3_key"]), resource["nonce"], resource["ciphertext"],
                                 resource["associated_data"])
        assert json.loads(decrypted)["mchid"] == mine["mchid"]
        with pytest.raises(DecryptError):  # the other merchant's APIv3 key cannot open it
            aead.decrypt(aead.cipher(other["apiv3_key"]), resource["nonce"], resource["ciphertext"],
                         resource["associated_data"])
        assert rows[mine["mchid"]].notify_url.startswith(
            (backend_a if mine is kit_a else backend_b).url)


def test_neither_sees_the_others_transactions(shop, two):
    (kit_a, backend_a), (kit_b, backend_b) = two
    only_b = backend_b.order(total=300)
    console_a = requests.get(shop.url + "/sandbox/", params={"mchid": kit_a["mchid"]}, timeout=10).text
    console_b = requests.get(shop.url + "/sandbox/", params={"mchid": kit_b["mchid"]}, timeout=10).text
    assert only_b not in console_a and only_b in console_b
    code, message = backend_a.sdk.query(out_trade_no=only_b)
    assert code == 404 and json.loads(message)["code"] == "ORDER_NOT_EXIST"
    code, message = backend_a.sdk.close(out_trade_no=only_b)
    assert code == 404
    code, message = backend_b.sdk.query(out_trade_no=only_b)
    assert code == 200 and json.loads(message)["trade_state"] == "NOTPAY"

    assert kit_a["mchid"] in console_a and "乙商户" in console_a  # the filter lists every merchant
    listed = requests.get(shop.url + "/sandbox/control/merchants", timeout=10).json()["merchants"]
    assert {kit_a["mchid"], kit_b["mchid"]} <= {m["mchid"] for m in listed}
    assert all("apiv3_key" not in m for m in listed)


def test_a_merchants_request_signed_with_the_others_key_is_refused(shop, two):
    (kit_a, backend_a), (kit_b, _) = two
    assert backend_a.sdk.query(out_trade_no="NOSUCHORDER1")[0] == 404
    from wechatpayv3.utils import load_private_key

    backend_a.sdk._core._private_key = load_private_key(kit_b["private_key"])
    code, message = backend_a.sdk.query(out_trade_no="NOSUCHORDER1")
    assert code == 401 and json.loads(message)["code"] == "SIGN_ERROR"
    calls = requests.get(shop.url + "/sandbox/control/calls", params={"mchid": kit_a["mchid"]}, timeout=10).json()
    assert calls["calls"][0]["diagnosis"] == "key_not_serial"


def test_a_registered_merchants_jsapi_and_h5_orders_are_paid_and_notified(shop, two):
    """JSAPI (openid from control/openid; paySign checked with this merchant's key) and H5, via the SDK."""
    import time

    from wechatpayv3 import WeChatPayType

    (kit, backend), _ = two
    openid = requests.get(shop.url + "/sandbox/control/openid", params={"appid": kit["appid"]}, timeout=10).json()
    jsapi_no, h5_no = "JS" + secrets.token_hex(6).upper(), "H5" + secrets.token_hex(6).upper()
    code, message = backend.sdk.pay(description="公众号支付", out_trade_no=jsapi_no, amount={"total": 500},
                                    payer={"openid": openid["openid"]}, pay_type=WeChatPayType.JSAPI)
    assert code == 200, message
    with backend.lock:  # the SDK called directly, so the backend learns of its orders here
        backend.orders[jsapi_no] = {"total": 500, "status": "pending", "transaction_id": None}
        backend.orders[h5_no] = {"total": 700, "status": "pending", "transaction_id": None}
    prepay_id = json.loads(message)["prepay_id"]
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    pay_sign = backend.sdk.sign([kit["appid"], timestamp, nonce, f"prepay_id={prepay_id}"])
    params = {"appId": kit["appid"], "timeStamp": timestamp, "nonceStr": nonce, "package": f"prepay_id={prepay_id}",
              "signType": "RSA", "paySign": pay_sign}
    sheet = requests.post(shop.url + "/sandbox/jsapi/verify", json={"params": params}, timeout=10)
    assert sheet.status_code == 200 and sheet.json()["merchant_name"] == "甲商户", sheet.text
    paid = requests.post(shop.url + "/sandbox/jsapi/pay", json={"params": params, "result": "SUCCESS"}, timeout=10)
    assert paid.status_code == 200, paid.text

    code, message = backend.sdk.pay(description="H5 支付", out_trade_no=h5_no, amount={"total": 700},
                                    scene_info={"payer_client_ip": "203.0.113.7", "h5_info": {"type": "Wap"}},
                                    pay_type=WeChatPayType.H5)
    assert code == 200 and "h5_url" in json.loads(message), message
    assert pay(shop, h5_no, kit["mchid"]).status_code == 200

    def notifications_of(out_trade_no: str) -> list[dict]:
        return requests.get(shop.url + "/sandbox/control/notifications",
                            params={"out_trade_no": out_trade_no, "mchid": kit["mchid"]}, timeout=10).json()["notifications"]

    for out_trade_no in (jsapi_no, h5_no):
        assert backend.wait_paid(out_trade_no)["transaction_id"]
        # The backend marks the order paid before its 204 reaches the simulator, which records the
        # delivery only then: wait for that record, not just for the backend.
        wait_for(lambda no=out_trade_no: [n for n in notifications_of(no) if n["state"] != "pending"])
        (notification,) = notifications_of(out_trade_no)
        assert notification["state"] == "delivered" and notification["notify_url"] == backend.url + "/notify"
    trade_types = {n["out_trade_no"]: n["trade_type"] for n in backend.notifications}  # decrypted resources
    assert trade_types[jsapi_no] == "JSAPI" and trade_types[h5_no] == "MWEB"
