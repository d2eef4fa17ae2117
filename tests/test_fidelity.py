"""Protocol fidelity against WeChat Pay's own documents: what passes here must not break live.

- a paid order's refusal, ``ORDER_PAID`` (v3 troubleshooting handbook) or the older ``ORDERPAID``,
  is one event to the shop everywhere: scene switch, QR renewal, close-expired;
- ``time_expire`` in exactly the documented form;
- a code_url/prepay_id lives 2 hours, an identical re-order before time_expire gets a fresh one;
  an order left unpaid 7 days is closed by WeChat Pay;
- ``trade_state`` is ``REFUND`` as soon as a refund is accepted.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from test_lifecycle import (  # noqa: F401
    checkout,
    expire_locally,
    order_row,
    payment_row,
    run_job,
    serve,
)
from test_sandbox_api import Merchant, new_out_trade_no, transaction_row
from test_scenes import PHONE_UA, _h5, _shopper

from conftest import LiveServer, Shopper
from storefront.models import utcnow
from storefront.wechatpay import APIError
from storefront.wechatpay.times import format_time

SPELLINGS = ["ORDER_PAID", "ORDERPAID"]


@pytest.mark.parametrize("wire, canonical", [
    ("ORDER_PAID", "ORDERPAID"), ("ORDERPAID", "ORDERPAID"), ("USER_PAYING", "USERPAYING"),
    ("USERPAYING", "USERPAYING"), ("ORDERNOTEXIST", "ORDER_NOT_EXIST"), ("ORDER_NOT_EXIST", "ORDER_NOT_EXIST"),
    ("SIGN_ERROR", "SIGN_ERROR"),
])
def test_both_spellings_of_one_refusal_are_one_code(wire, canonical):
    error = APIError(400, wire, "订单已支付")
    assert (error.code, error.wire_code) == (canonical, wire)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_scene_switch_after_the_payer_paid_shows_paid_with_either_spelling(make_app, spelling):
    server = LiveServer(make_app(SANDBOX_NOTIFIER=True, SANDBOX_PAID_CODE=spelling))
    try:
        shopper = _shopper(server, PHONE_UA)
        order, payment = _h5(shopper)
        assert shopper.pay_in_simulator(payment["out_trade_no"], notify="drop").status_code == 200
        # The switch is the checkout's POST form (a GET starts nothing).
        switched = shopper.open_checkout(order["order_no"], method="native", allow_redirects=False)
        # Not "暂时无法连接微信支付": the close answered a paid order, and the page shows it paid.
        assert switched.status_code == 303 and switched.headers["Location"].endswith(f"/orders/{order['order_no']}")
        assert order_row(server.app, order["order_no"]).status == "paid"
    finally:
        server.stop()


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_close_expired_and_renewal_meeting_a_paid_order_with_either_spelling(serve, spelling):  # noqa: F811
    server, shopper = serve(CLOSE_GRACE_SECONDS=0, SANDBOX_PAID_CODE=spelling)
    app = server.app
    order_no, out_trade_no = checkout(shopper)
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200
    expire_locally(app, out_trade_no)
    assert "closed 0 attempt(s); 1 turned out paid" in run_job(app, "close-expired")
    assert order_row(app, order_no).status == "paid"

    order_no, out_trade_no = checkout(shopper)  # the QR countdown ran out, but the payer was faster
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200
    expire_locally(app, out_trade_no)
    answer = shopper.http.post(f"{server.url}/api/orders/{order_no}/payments", json={"method": "native"}, timeout=10)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "ORDERPAID"
    assert payment_row(app, out_trade_no).status == "paid"


@pytest.mark.parametrize("text", [
    "2026-12-01T10:34:56.123+08:00",  # a fraction
    "2026-12-01T02:34:56Z",  # Z
    "2026-12-01 10:34:56+08:00",  # a space
    "20261201T103456+0800",  # the compact form
    "2026-12-01T10:34:56",  # no offset
    "2026-12-01T10:34+08:00",  # no seconds
])
def test_time_expire_in_any_other_form_is_param_error(live_server, text):
    merchant = Merchant(live_server)
    body = merchant.order_body(time_expire=text)
    with pytest.raises(APIError) as refused:
        merchant.client.request("POST", "/v3/pay/transactions/native", body)
    assert refused.value.status == 400 and refused.value.code == "PARAM_ERROR"
    assert refused.value.detail["field"] == "/time_expire"
    # The documented form is accepted.
    assert merchant.client.request("POST", "/v3/pay/transactions/native",
                                   merchant.order_body(time_expire=format_time(utcnow() + timedelta(hours=3)))).status == 200


def _advance(server: LiveServer, seconds: float) -> None:
    answer = requests.post(f"{server.url}/sandbox/control/clock", json={"advance_seconds": seconds}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_an_identical_reorder_after_two_hours_gets_a_fresh_code_url(live_server):
    merchant = Merchant(live_server)
    out_trade_no = new_out_trade_no()
    time_expire = utcnow() + timedelta(hours=5)
    first = merchant.prepay(out_trade_no, time_expire=time_expire)
    _advance(live_server, 2 * 3600 + 60)  # the code_url's 2 hours are over, time_expire is not
    pay_old = requests.post(f"{live_server.url}/sandbox/control/pay", json={"out_trade_no": out_trade_no}, timeout=10)
    assert pay_old.status_code == 409 and pay_old.json()["code"] == "ORDER_EXPIRED"
    again = merchant.prepay(out_trade_no, time_expire=time_expire)
    assert again.status == 200 and again.data["code_url"] != first.data["code_url"]
    assert requests.post(f"{live_server.url}/sandbox/control/pay", json={"out_trade_no": out_trade_no},
                         timeout=10).status_code == 200
    # After time_expire, the same re-order is ORDER_CLOSED.
    other = new_out_trade_no()
    first_expire = format_time(utcnow() + timedelta(hours=2, minutes=30))  # 30 min on the advanced clock
    merchant.client.request("POST", "/v3/pay/transactions/native",
                            merchant.order_body(out_trade_no=other, time_expire=first_expire))
    _advance(live_server, 3600)
    body = merchant.order_body(out_trade_no=other, time_expire=first_expire)
    with pytest.raises(APIError) as closed:
        merchant.client.request("POST", "/v3/pay/transactions/native", body)
    assert closed.value.code == "ORDER_CLOSED"


def test_an_order_left_unpaid_for_seven_days_is_closed_by_wechat(live_server):
    merchant = Merchant(live_server)
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no, time_expire=utcnow() + timedelta(days=30))
    _advance(live_server, 6 * 86400)
    assert merchant.client.query_by_out_trade_no(out_trade_no)[0].trade_state == "NOTPAY"
    _advance(live_server, 86400 + 60)
    assert merchant.client.query_by_out_trade_no(out_trade_no)[0].trade_state == "CLOSED"
    assert transaction_row(live_server, out_trade_no).trade_state == "CLOSED"


def test_trade_state_is_refund_as_soon_as_a_refund_is_requested(live_server):
    merchant = Merchant(live_server)
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no, amount_total=500)
    assert merchant.pay(out_trade_no).status_code == 200
    result, _response = merchant.client.refund(out_refund_no="R" + out_trade_no, amount_refund=100, amount_total=500,
                                               out_trade_no=out_trade_no)
    assert result.status == "PROCESSING"
    transaction, _response = merchant.client.query_by_out_trade_no(out_trade_no)
    assert transaction.trade_state == "REFUND"


def test_a_shop_with_the_old_spelling_configured_still_closes_normally(serve):  # noqa: F811
    """Only the paid case differs: an ordinary close is 204 with either setting."""
    server, _shopper_session = serve(SANDBOX_PAID_CODE="ORDERPAID")
    merchant = Merchant(server)
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)
    assert merchant.client.close_order(out_trade_no).status == 204


def test_answers_look_like_wechats_request_id_204_serials_transaction_id_and_query_fields(live_server):
    import re

    merchant = Merchant(live_server)
    out_trade_no = new_out_trade_no()
    created = merchant.prepay(out_trade_no)
    assert re.fullmatch(r"[0-9A-F]{44}-[0-9]+", created.request_id)
    _unpaid, response = merchant.client.query_by_out_trade_no(out_trade_no)
    # Exactly what WeChat Pay answers for an unpaid order.
    assert set(response.data) == {"appid", "mchid", "out_trade_no", "trade_state", "trade_state_desc", "amount",
                                  "promotion_detail", "scene_info"}
    assert response.data["amount"] == {"total": 8800, "payer_currency": "CNY"}
    assert response.data["scene_info"] == {"device_id": ""} and response.data["promotion_detail"] == []
    closed = merchant.client.close_order(out_trade_no)
    assert closed.status == 204 and closed.exchange.response_headers["Content-Type"].startswith("application/json")

    paid_no = new_out_trade_no()
    merchant.prepay(paid_no)
    assert merchant.pay(paid_no).status_code == 200
    paid, response = merchant.client.query_by_out_trade_no(paid_no)
    assert re.fullmatch(r"42000\d{5}\d{8}\d{10}", paid.transaction_id)
    assert paid.transaction_id[10:18] == datetime_beijing_today()
    assert {"transaction_id", "trade_type", "bank_type", "success_time", "payer", "promotion_detail"} <= set(response.data)
    assert response.data["amount"] == {"total": 8800, "payer_total": 8800, "currency": "CNY", "payer_currency": "CNY"}


def datetime_beijing_today() -> str:
    from datetime import datetime

    from storefront.wechatpay.times import BEIJING

    return datetime.now(BEIJING).strftime("%Y%m%d")


def test_certificate_serials_keep_their_leading_zeros():
    from datetime import datetime, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from storefront.wechatpay import keys

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "serial")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x0ABC).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    serial = keys.certificate_serial(cert.public_bytes(Encoding.PEM))
    assert serial == "0" * 36 + "0ABC" and len(serial) == 40


# -- signature probes on API answers ----------------------------------------------------------------------


def _settings(server: LiveServer, **values) -> dict:
    answer = requests.post(f"{server.url}/sandbox/control/settings", json=values, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_probed_answer_is_refused_and_the_call_sent_once_more(live_server, monkeypatch):
    from storefront.sandbox import simulator

    rolls = iter([0.0, 0.99, 0.99, 0.99])  # the first answer is a probe, the next ones are not
    monkeypatch.setattr(simulator, "probe_roll", lambda: next(rolls, 0.99))
    _settings(live_server, answer_probe_rate=0.5)
    merchant = Merchant(live_server)
    out_trade_no = new_out_trade_no()
    created = merchant.prepay(out_trade_no)
    assert created.status == 200 and created.exchange.verification is not None
    refused, accepted = merchant.exchanges[-2:]
    assert refused.response_headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    assert "probe" in refused.error and refused.verification is None
    assert accepted.verification is not None and accepted.request_body == refused.request_body
    # The re-sent order is the same order at WeChat Pay: one transaction, one code_url.
    assert transaction_row(live_server, out_trade_no).trade_state == "NOTPAY"


def test_when_every_answer_is_a_probe_the_shopper_gets_a_clear_answer_and_the_attempt_stays_consistent(live_server):
    from sqlalchemy import select

    from storefront.extensions import db
    from storefront.models import Payment

    shopper = Shopper(live_server.url)
    order = shopper.buy()
    _settings(live_server, answer_probe_rate=1.0)
    refused = shopper.http.post(f"{live_server.url}/api/orders/{order['order_no']}/payments",
                                json={"method": "native"}, timeout=10)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "WECHATPAY_UNAVAILABLE"
    with live_server.app.app_context():
        [attempt] = db.session.scalars(select(Payment)).all()
        # Left open, nothing issued: close-expired closes it; no page reuses it.
        assert attempt.status == "notpay" and attempt.code_url is None and not attempt.is_issued
    calls = requests.get(f"{live_server.url}/sandbox/control/calls", params={"path": "/v3/pay/transactions/native"},
                         timeout=10).json()["calls"]
    assert len(calls) == 2  # refused, sent once more, refused again: then the shop gives up
    _settings(live_server, answer_probe_rate=0)
    started = shopper.start_native(order["order_no"])
    assert shopper.pay_in_simulator(started["out_trade_no"]).status_code == 200
    from conftest import wait_for

    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")


def test_the_probe_rate_is_between_0_and_1(live_server):
    answer = requests.post(f"{live_server.url}/sandbox/control/settings", json={"answer_probe_rate": 2}, timeout=10)
    assert answer.status_code == 400


# -- H5: the payer's real IP -------------------------------------------------------------------------------


def _h5_cashier(server: LiveServer, shopper: Shopper, headers: dict | None = None) -> requests.Response:
    order = shopper.buy()
    payment = shopper.http.post(f"{server.url}/api/orders/{order['order_no']}/payments", json={"method": "h5"},
                                headers=headers or {}, timeout=10)
    assert payment.status_code == 201, payment.text
    return shopper.http.get(payment.json()["h5_url"], timeout=10,
                            headers={"Referer": f"{server.url}/orders/x/pay", **(headers or {})})


def test_the_h5_cashier_accepts_loopback_in_demo_mode_with_a_note(live_server):
    cashier = _h5_cashier(live_server, _shopper(live_server, PHONE_UA))
    assert cashier.status_code == 200 and 'id="loopback-note"' in cashier.text
    assert "真实的微信支付会拒绝它" in cashier.text


def test_the_h5_cashier_refuses_loopback_like_wechat_when_told_to(make_app):
    server = LiveServer(make_app(SANDBOX_H5_LOOPBACK="refuse"))
    try:
        cashier = _h5_cashier(server, _shopper(server, PHONE_UA))
        assert cashier.status_code == 403 and "网络环境未能通过安全验证，请稍后再试" in cashier.text
    finally:
        server.stop()


def test_a_shop_behind_a_proxy_without_proxy_fix_is_refused_by_the_cashier(live_server):
    """The proxy adds X-Forwarded-For; the shop, not told to trust it, sends the proxy's address as
    payer_client_ip; the cashier sees the payer's own address, and refuses, as WeChat's would."""
    behind_proxy = {"X-Forwarded-For": "203.0.113.7"}
    cashier = _h5_cashier(live_server, _shopper(live_server, PHONE_UA), behind_proxy)
    assert cashier.status_code == 403 and "网络环境未能通过安全验证，请稍后再试" in cashier.text


def test_with_proxy_fix_the_payers_address_matches(make_app):
    server = LiveServer(make_app(PROXY_FIX_X_FOR=1))
    try:
        cashier = _h5_cashier(server, _shopper(server, PHONE_UA), {"X-Forwarded-For": "203.0.113.7"})
        assert cashier.status_code == 200 and 'id="loopback-note"' not in cashier.text
    finally:
        server.stop()


# -- USERPAYING belongs to payment-code orders -------------------------------------------------------------


def test_no_native_query_answers_userpaying(live_server):
    merchant = Merchant(live_server)
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)
    refused = requests.post(f"{live_server.url}/sandbox/control/query-fault",
                            json={"out_trade_no": out_trade_no, "fault": "USERPAYING"}, timeout=10)
    assert refused.status_code == 400 and "MICROPAY" in refused.json()["message"]
    typing = requests.post(f"{live_server.url}/sandbox/control/pay",
                           json={"out_trade_no": out_trade_no, "result": "USERPAYING"}, timeout=10)
    assert typing.json()["result"] == "USERPAYING"
    assert merchant.client.query_by_out_trade_no(out_trade_no)[0].trade_state == "NOTPAY"
    assert merchant.pay(out_trade_no).status_code == 200
    assert merchant.client.query_by_out_trade_no(out_trade_no)[0].trade_state == "SUCCESS"
