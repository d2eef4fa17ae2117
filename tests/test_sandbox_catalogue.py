"""The error catalogue over HTTP: each rule answered with WeChat Pay's status, code, message, detail.

Each test sends one bad request to ``/sandbox/v3`` on a real loopback server and compares the
whole answer (the body exactly, and its signature). The basic signature and field checks are
covered call by call in test_sandbox_api.py; this file pins the catalogue's exact answers,
refunds and rate limits included.
"""

from __future__ import annotations

import time

import pytest
import requests

from wechat_http import RawMerchant, error, new_no

NATIVE = "/v3/pay/transactions/native"
REFUNDS = "/v3/refund/domestic/refunds"


@pytest.fixture
def m(module_live_server):
    return RawMerchant(module_live_server)


def test_missing_authorization_is_sign_error(m):
    answer = m.send("POST", NATIVE, m.order_body(), headers={"Authorization": None})
    assert error(answer) == (401, {
        "code": "SIGN_ERROR", "message": "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》",
        "detail": {"field": "authorization", "location": "header", "issue": "missing Authorization header"}})


def test_bad_signature_is_sign_error_with_the_string_verified(m):
    path = f"/v3/pay/transactions/out-trade-no/{new_no()}?mchid=1230000109"
    answer = m.send("GET", path, signature="A" * 344, timestamp=int(time.time()))
    status, body = error(answer)
    assert status == 401 and body["code"] == "SIGN_ERROR" and body["message"] == "错误的签名，验签失败"
    info = body["detail"]["sign_information"]
    assert body["detail"]["field"] == "signature" and body["detail"]["detail"] == {"issue": "sign not match"}
    assert info["method"] == "GET" and info["url"] == path
    assert info["truncated_sign_message"].startswith(f"GET\n{path}\n")


def test_stale_timestamp_is_sign_error(m):
    answer = m.send("GET", f"/v3/pay/transactions/out-trade-no/{new_no()}?mchid=1230000109",
                    timestamp=int(time.time()) - 301)
    assert error(answer) == (401, {"code": "SIGN_ERROR",
                                   "message": "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟"})


def test_unknown_merchant(m):
    answer = m.send("POST", NATIVE, m.order_body(mchid="1900000001"), mchid="1900000001")
    assert error(answer) == (400, {"code": "MCH_NOT_EXISTS", "message": "商户号不存在"})


def test_appid_not_bound_to_mchid(m):
    answer = m.send("POST", NATIVE, m.order_body(appid="wx0000000000000000"))
    assert error(answer) == (400, {"code": "APPID_MCHID_NOT_MATCH", "message": "appid和mch_id不匹配"})


@pytest.mark.parametrize("changes, detail", [
    ({"amount": {"total": 0, "currency": "CNY"}},
     {"field": "/amount/total", "issue": "须为大于0的整数（单位：分）", "location": "body", "value": 0}),
    ({"amount": {"total": 100, "currency": "USD"}},
     {"field": "/amount/currency", "issue": "Currency code is invalid", "location": "body", "value": "USD"}),
    ({"out_trade_no": "abc"},
     {"field": "/out_trade_no", "issue": "须为6-32位数字、大小写字母、_-|*", "location": "body", "value": "abc"}),
    ({"notify_url": "https://shop.example.com/notify?x=1"},
     {"field": "/notify_url", "issue": "须为不带参数的https地址（模拟器允许http）", "location": "body",
      "value": "https://shop.example.com/notify?x=1"}),
])
def test_field_validation_is_param_error(m, changes, detail):
    answer = m.send("POST", NATIVE, m.order_body(**changes))
    assert error(answer) == (400, {"code": "PARAM_ERROR", "message": "参数错误", "detail": detail})


def test_same_out_trade_no_with_other_parameters(m):
    out_trade_no, first = m.create()
    assert first.status_code == 200
    again = m.send("POST", NATIVE, m.order_body(out_trade_no=out_trade_no, description="另一件商品"))
    assert error(again) == (400, {"code": "INVALID_REQUEST", "message": "201 商户订单号重复"})


def test_ordering_or_paying_a_closed_order_is_order_closed(m):
    body = m.order_body()
    assert m.send("POST", NATIVE, body).status_code == 200
    close = m.send("POST", f"/v3/pay/transactions/out-trade-no/{body['out_trade_no']}/close", {"mchid": "1230000109"})
    assert close.status_code == 204 and close.content == b""
    assert error(m.send("POST", NATIVE, body)) == (400, {"code": "ORDER_CLOSED", "message": "订单已关闭"})
    assert error(m.pay(body["out_trade_no"])) == (409, {"code": "ORDER_CLOSED", "message": "订单已关闭"})
    # Closing it again answers 204, as the real API does ("关闭订单"): ORDER_CLOSED is for
    # ordering or paying a closed order.
    again = m.send("POST", f"/v3/pay/transactions/out-trade-no/{body['out_trade_no']}/close", {"mchid": "1230000109"})
    assert again.status_code == 204


@pytest.mark.parametrize("spelling", ["ORDER_PAID", "ORDERPAID"])
def test_closing_a_paid_order_is_order_paid(m, spelling):
    """ORDER_PAID as the v3 troubleshooting handbook answers; the setting gives the older spelling."""
    settings = f"{m.server.url}/sandbox/control/settings"
    if spelling != "ORDER_PAID":
        assert requests.post(settings, json={"paid_code": spelling}, timeout=10).status_code == 200
    try:
        out_trade_no, _ = m.paid_order()
        answer = m.send("POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close", {"mchid": "1230000109"})
        assert error(answer) == (400, {"code": spelling, "message": "订单已支付"})
    finally:
        requests.post(settings, json={"paid_code": "ORDER_PAID"}, timeout=10)


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/v3/pay/transactions/out-trade-no/NOPE000001?mchid=1230000109", None),
    ("GET", "/v3/pay/transactions/id/4200000000000000000000000000?mchid=1230000109", None),
    ("POST", "/v3/pay/transactions/out-trade-no/NOPE000001/close", {"mchid": "1230000109"}),
])
def test_unknown_order_is_order_not_exist(m, method, path, body):
    assert error(m.send(method, path, body)) == (404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})


def test_query_by_transaction_id_finds_the_payment(m):
    out_trade_no, transaction_id = m.paid_order()
    answer = m.send("GET", f"/v3/pay/transactions/id/{transaction_id}?mchid=1230000109")
    assert answer.status_code == 200
    assert answer.json()["out_trade_no"] == out_trade_no and answer.json()["trade_state"] == "SUCCESS"


# -- refunds ------------------------------------------------------------------------------------------


def test_refund_beyond_the_paid_amount(m):
    out_trade_no, _ = m.paid_order(total=1000)
    assert m.refund(out_trade_no, 600, total=1000).status_code == 200
    answer = m.refund(out_trade_no, 401, total=1000)
    assert error(answer) == (400, {"code": "INVALID_REQUEST", "message": "申请退款金额超过订单可退金额",
                                   "detail": {"field": "/amount/refund", "value": 401, "issue": "可退金额为400分",
                                              "location": "body"}})


def test_refund_of_an_unpaid_or_unknown_order(m):
    out_trade_no, created = m.create()
    assert created.status_code == 200
    for number in (out_trade_no, "NOPE000001"):
        assert error(m.refund(number, 100)) == (404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在或未支付"})


def test_refund_total_must_be_the_orders(m):
    out_trade_no, _ = m.paid_order()
    answer = m.refund(out_trade_no, 100, total=9999)
    assert error(answer) == (400, {"code": "INVALID_REQUEST", "message": "订单金额与原订单不一致",
                                   "detail": {"field": "/amount/total", "value": 9999, "issue": "订单金额与原订单不一致",
                                              "location": "body"}})


def test_same_out_refund_no_with_another_body(m):
    out_trade_no, _ = m.paid_order()
    number = new_no("R")
    first = m.refund(out_trade_no, 100, out_refund_no=number)
    same = m.refund(out_trade_no, 100, out_refund_no=number)
    assert first.status_code == same.status_code == 200 and first.json()["refund_id"] == same.json()["refund_id"]
    other = m.refund(out_trade_no, 200, out_refund_no=number)
    assert error(other) == (400, {"code": "INVALID_REQUEST",
                                  "message": "请求内容和上次请求不一致，请使用原参数重试或更换out_refund_no"})


def test_refund_needs_an_order_reference_and_valid_fields(m):
    body = {"out_refund_no": new_no("R"), "amount": {"refund": 1, "total": 1, "currency": "CNY"}}
    assert error(m.send("POST", REFUNDS, body)) == (400, {
        "code": "PARAM_ERROR", "message": "参数错误",
        "detail": {"field": "/out_trade_no", "issue": "transaction_id和out_trade_no必须填写其中一个", "location": "body"}})
    body = {"out_trade_no": "X00000001", "out_refund_no": "bad refund no", "amount": {"refund": 1, "total": 1, "currency": "CNY"}}
    assert error(m.send("POST", REFUNDS, body)) == (400, {
        "code": "PARAM_ERROR", "message": "参数错误",
        "detail": {"field": "/out_refund_no", "issue": "须为1-64位数字、大小写字母、_-|*@", "location": "body",
                   "value": "bad refund no"}})


def test_unknown_refund_is_resource_not_exists(m):
    answer = m.send("GET", f"{REFUNDS}/NOPE000001")
    assert error(answer) == (404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})


# -- rate limits (off unless the simulator setting turns them on) ------------------------------------


@pytest.fixture
def rate_limited(m):
    assert m.control("settings", {"rate_limit_per_second": 3}).status_code == 200
    yield
    assert m.control("settings", {"rate_limit_per_second": 0}).status_code == 200


def test_rate_limit_is_frequency_limited(m, rate_limited):
    path = f"/v3/pay/transactions/out-trade-no/{new_no()}?mchid=1230000109"
    statuses = [m.send("GET", path).status_code for _ in range(6)]
    assert 429 in statuses and set(statuses) <= {404, 429}  # 404: under the limit, the order is unknown
    limited = next(a for a in (m.send("GET", path) for _ in range(4)) if a.status_code == 429)
    assert error(limited) == (429, {"code": "FREQUENCY_LIMITED", "message": "请求频率超过限制，请降低频率后重试"})


def test_refunds_of_one_order_a_minute_apart_when_limited(m):
    out_trade_no, _ = m.paid_order()
    assert m.refund(out_trade_no, 100).status_code == 200
    assert m.control("settings", {"rate_limit_per_second": 100}).status_code == 200
    try:
        answer = m.refund(out_trade_no, 100)
        assert error(answer) == (429, {"code": "FREQUENCY_LIMITED", "message": "同一笔订单的退款申请须间隔1分钟"})
        assert m.control("clock", {"advance_seconds": 61}).status_code == 200  # the simulator's minute passes
        assert m.refund(out_trade_no, 100).status_code == 200
    finally:
        m.control("settings", {"rate_limit_per_second": 0})
        m.control("clock", {"reset": True})


def test_control_settings_refuses_bad_values(m):
    answer = requests.post(f"{m.server.url}/sandbox/control/settings", json={"notify_signing": "sometimes"}, timeout=10)
    assert answer.status_code == 400 and answer.json()["code"] == "PARAM_ERROR"
