"""The simulator over real HTTP, as a merchant's API v3 client sees it at ``/sandbox/v3``.

One loopback server serves the whole module (``module_live_server``; each test uses its own
``out_trade_no``): the simulator's rules are checked call by call, and every answer, refusals
included, must carry a Request-ID and Wechatpay-* headers that verify with the app's WeChat Pay key.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select, update
from urllib3.util import SKIP_HEADER

from conftest import LiveServer
from storefront.extensions import db
from storefront.models import utcnow
from storefront.sandbox.models import SandboxApiCall, SandboxTransaction
from storefront.wechatpay import APIError, Client, Verifier, keys, signing
from storefront.wechatpay.client import json_body
from storefront.wechatpay.times import format_time

NATIVE = "/v3/pay/transactions/native"
OTHER_APPID = "wx0000000000000000"
SIX_MINUTES = 360


@pytest.fixture
def server(module_live_server):
    return module_live_server


class Merchant:
    """The app's merchant credentials, a verifier for WeChat Pay's answers, and raw signed calls."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.base = server.url + "/sandbox"
        self.credentials = server.app.extensions["wechatpay"].credentials
        self.verifier = Verifier({self.credentials.public_key_id: self.credentials.public_key})
        self.exchanges = []  # every answer the Client received, checked at teardown
        self.client = Client(
            mchid=self.credentials.mchid, appid=self.credentials.appid,
            merchant_serial=self.credentials.merchant_serial, private_key=self.credentials.private_key,
            apiv3_key=self.credentials.apiv3_key, verifier=self.verifier,
            public_key_id=self.credentials.public_key_id, api_base=self.base, observer=self.exchanges.append,
        )
        platform_pem = (Path(server.app.instance_path) / "sandbox" / "wechatpay_private_key.pem").read_bytes()
        self.foreign_key = keys.load_private_key(platform_pem)  # a valid key, but not the merchant's

    def order_body(self, **changes) -> dict:
        body = {
            "appid": self.credentials.appid, "mchid": self.credentials.mchid, "description": "云南小粒咖啡豆 500g",
            "out_trade_no": new_out_trade_no(), "notify_url": self.server.url + "/notify/wechatpay",
            "time_expire": format_time(utcnow() + timedelta(minutes=15)),
            "amount": {"total": 8800, "currency": "CNY"},
        }
        body.update(changes)
        return body

    def send(self, method: str, path: str, body: str | None = None, *, sign_path: str | None = None,
             sign_body: str | None = None, timestamp: int | None = None, serial_no: str | None = None,
             private_key=None, headers: dict | None = None) -> requests.Response:
        """One raw signed request; each keyword alters one thing of an otherwise valid call."""
        signed = signing.sign_request(
            private_key or self.credentials.private_key, mchid=self.credentials.mchid,
            serial_no=serial_no or self.credentials.merchant_serial, method=method,
            canonical_url=sign_path or path, body=(body or "") if sign_body is None else sign_body,
            timestamp=str(timestamp) if timestamp is not None else None,
        )
        sent = {"Authorization": signed.authorization, "Accept": "application/json",
                "User-Agent": "storefront-tests/1.0", "Wechatpay-Serial": self.credentials.public_key_id}
        if body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        answer = requests.request(method, self.base + path, data=body.encode("utf-8") if body is not None else None,
                                  headers=sent, timeout=10)
        self.assert_signed(answer.status_code, answer.headers, answer.content)
        return answer

    def assert_signed(self, status: int, headers, body: bytes) -> None:
        assert headers.get("Request-ID"), (status, dict(headers))
        self.verifier.verify(headers, body)  # raises SignatureError

    def pay(self, out_trade_no: str) -> requests.Response:
        return requests.post(f"{self.server.url}/sandbox/control/pay",
                             json={"out_trade_no": out_trade_no, "result": "SUCCESS"}, timeout=10)

    def prepay(self, out_trade_no: str | None = None, amount_total: int = 8800, time_expire=None):
        return self.client.prepay_native(
            description="云南小粒咖啡豆 500g", out_trade_no=out_trade_no or new_out_trade_no(),
            amount_total=amount_total, notify_url=self.server.url + "/notify/wechatpay",
            time_expire=time_expire or utcnow() + timedelta(minutes=15),
        )


def new_out_trade_no() -> str:
    return "T" + secrets.token_hex(8).upper()


@pytest.fixture
def merchant(server):
    merchant = Merchant(server)
    yield merchant
    for exchange in merchant.exchanges:
        if exchange.status is not None and exchange.status < 500:
            merchant.assert_signed(exchange.status, requests.structures.CaseInsensitiveDict(exchange.response_headers),
                                   exchange.response_body.encode("utf-8"))


def transaction_row(server, out_trade_no: str) -> SandboxTransaction:
    with server.app.app_context():
        return db.session.scalar(select(SandboxTransaction).where(SandboxTransaction.out_trade_no == out_trade_no))


# -- the happy path -------------------------------------------------------------------------------------


def test_native_order_answers_a_verified_code_url(server, merchant):
    """200 {"code_url"}, pointing at the simulator's payer page, with a verified signature."""
    response = merchant.prepay()
    assert response.status == 200 and response.request_id
    assert response.exchange.verification is not None
    assert response.data["code_url"].startswith(server.url + "/sandbox/wxpay/bizpayurl?pr=")


def test_a_native_order_is_one_commit_with_its_call_record(server, merchant):
    """The new transaction and the call log's record of the call commit together, before the
    answer leaves: one commit of the simulator's database per prepay."""
    from sqlalchemy import event

    with server.app.app_context():
        engine = db.engines["sandbox"]
    commits = []
    listener = lambda connection: commits.append(connection)  # noqa: E731
    out_trade_no = new_out_trade_no()
    event.listen(engine, "commit", listener)
    try:
        response = merchant.prepay(out_trade_no)
    finally:
        event.remove(engine, "commit", listener)
    assert len(commits) == 1
    txn = transaction_row(server, out_trade_no)
    assert response.data["code_url"].endswith(f"pr={txn.pay_token}") and txn.currency == "CNY"
    with server.app.app_context():
        call = db.session.scalars(select(SandboxApiCall).order_by(SandboxApiCall.id.desc())).first()
    assert call.path == NATIVE and call.status == 200 and out_trade_no in call.request_body
    assert json.loads(call.response_body) == response.data and call.request_id == response.request_id


def test_answers_are_a_machine_s_no_cookie_no_page_headers(merchant):
    """WeChat Pay's API answers carry its own headers only: no session cookie, no page headers."""
    answer = merchant.send("POST", NATIVE, json_body(merchant.order_body()),
                           headers={"Cookie": "session=not-a-session"})
    assert answer.status_code == 200
    assert "Set-Cookie" not in answer.headers and "Content-Security-Policy" not in answer.headers
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"


def test_query_notpay_then_success_after_payment(merchant):
    """NOTPAY omits the payment fields; SUCCESS carries transaction_id, success_time, payer and payer_total."""
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no, amount_total=12900)

    unpaid, _response = merchant.client.query_by_out_trade_no(out_trade_no)
    assert unpaid.trade_state == "NOTPAY" and unpaid.amount_total == 12900
    assert "transaction_id" not in unpaid.raw and "payer" not in unpaid.raw and "success_time" not in unpaid.raw

    paid = merchant.pay(out_trade_no)
    assert paid.status_code == 200, paid.text

    transaction, _response = merchant.client.query_by_out_trade_no(out_trade_no)
    assert transaction.trade_state == "SUCCESS"
    assert transaction.transaction_id == paid.json()["transaction_id"]
    assert transaction.transaction_id.startswith("42") and len(transaction.transaction_id) == 28
    assert transaction.success_time and transaction.success_time.endswith("+08:00")
    assert transaction.payer_openid and transaction.payer_total == 12900 and transaction.amount_total == 12900
    assert transaction.trade_type == "NATIVE" and transaction.mchid == merchant.credentials.mchid


def test_close_answers_204_then_query_says_closed(merchant):
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)

    closed = merchant.client.close_order(out_trade_no)
    assert closed.status == 204 and closed.exchange.response_body == ""

    transaction, _response = merchant.client.query_by_out_trade_no(out_trade_no)
    assert transaction.trade_state == "CLOSED"
    assert merchant.client.close_order(out_trade_no).status == 204  # closing again is harmless


def test_close_of_a_paid_order_answers_orderpaid(merchant):
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)
    assert merchant.pay(out_trade_no).status_code == 200

    with pytest.raises(APIError) as refused:
        merchant.client.close_order(out_trade_no)
    assert (refused.value.status, refused.value.code) == (400, "ORDERPAID")


def test_paying_a_closed_order_is_refused(merchant):
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)
    merchant.client.close_order(out_trade_no)

    answer = merchant.pay(out_trade_no)
    assert answer.status_code == 409 and answer.json()["code"] == "ORDER_CLOSED"


def test_paying_twice_is_refused(merchant):
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)
    assert merchant.pay(out_trade_no).status_code == 200

    answer = merchant.pay(out_trade_no)
    assert answer.status_code == 409 and answer.json()["code"] == "ORDERPAID"


def test_query_of_an_unknown_order_answers_404(merchant):
    with pytest.raises(APIError) as refused:
        merchant.client.query_by_out_trade_no(new_out_trade_no())
    assert (refused.value.status, refused.value.code) == (404, "ORDER_NOT_EXIST")


def test_out_trade_no_with_every_allowed_symbol_round_trips(merchant):
    """``|`` and ``*`` travel percent-encoded: the simulator verifies the path exactly as sent."""
    out_trade_no = "SF_2026-11|27*" + secrets.token_hex(4)
    merchant.prepay(out_trade_no)
    transaction, _response = merchant.client.query_by_out_trade_no(out_trade_no)
    assert transaction.out_trade_no == out_trade_no
    assert merchant.client.close_order(out_trade_no).status == 204


# -- time_expire -----------------------------------------------------------------------------------------


def test_time_expire_in_the_past_is_clamped_to_one_minute(server, merchant):
    """WeChat Pay clamps time_expire to [now + 1 min, now + 90 d] instead of refusing it."""
    out_trade_no = new_out_trade_no()
    before = utcnow()
    merchant.prepay(out_trade_no, time_expire=before - timedelta(hours=1))
    after = utcnow()

    row = transaction_row(server, out_trade_no)
    assert before + timedelta(minutes=1) - timedelta(seconds=1) <= row.time_expire <= after + timedelta(minutes=1)


def test_time_expire_is_kept_when_within_range(server, merchant):
    out_trade_no = new_out_trade_no()
    wanted = utcnow().replace(microsecond=0) + timedelta(minutes=10)
    merchant.prepay(out_trade_no, time_expire=wanted)
    assert transaction_row(server, out_trade_no).time_expire == wanted


@pytest.mark.parametrize("deadline", ["time_expire", "code_expires_at"])
def test_paying_after_expiry_is_refused(server, merchant, deadline):
    """Past time_expire, or past the code_url's 2 hours: no longer payable, though still NOTPAY.

    Waiting a minute is not an option, so the test moves the simulator's clock for this one
    transaction by rewriting its deadline in the simulator's table (reading it is all else we do).
    """
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)
    with server.app.app_context():
        db.session.execute(update(SandboxTransaction).where(SandboxTransaction.out_trade_no == out_trade_no)
                           .values({deadline: utcnow() - timedelta(seconds=1)}))
        db.session.commit()

    answer = merchant.pay(out_trade_no)
    assert answer.status_code == 409 and answer.json()["code"] == "ORDER_EXPIRED"
    transaction, _response = merchant.client.query_by_out_trade_no(out_trade_no)
    assert transaction.trade_state == "NOTPAY"
    assert merchant.client.close_order(out_trade_no).status == 204


# -- re-submitting one out_trade_no ----------------------------------------------------------------------


def test_resubmission_with_identical_body_returns_the_code_url(merchant):
    out_trade_no = new_out_trade_no()
    time_expire = utcnow() + timedelta(minutes=15)
    first = merchant.prepay(out_trade_no, time_expire=time_expire)
    again = merchant.prepay(out_trade_no, time_expire=time_expire)
    assert again.status == 200 and again.data["code_url"] == first.data["code_url"]


def test_resubmission_with_another_amount_is_refused(merchant):
    out_trade_no = new_out_trade_no()
    time_expire = utcnow() + timedelta(minutes=15)
    merchant.prepay(out_trade_no, amount_total=8800, time_expire=time_expire)
    with pytest.raises(APIError) as refused:
        merchant.prepay(out_trade_no, amount_total=8801, time_expire=time_expire)
    assert (refused.value.status, refused.value.code) == (400, "INVALID_REQUEST")
    assert refused.value.message == "201 商户订单号重复"


def test_resubmission_of_a_paid_order_answers_orderpaid(merchant):
    out_trade_no = new_out_trade_no()
    time_expire = utcnow() + timedelta(minutes=15)
    merchant.prepay(out_trade_no, time_expire=time_expire)
    assert merchant.pay(out_trade_no).status_code == 200
    with pytest.raises(APIError) as refused:
        merchant.prepay(out_trade_no, time_expire=time_expire)
    assert refused.value.code == "ORDERPAID"


# -- the merchant's signature: one alteration each ------------------------------------------------------


def _valid(merchant, body):
    return {}


def _no_authorization(merchant, body):
    return {"headers": {"Authorization": None}}


def _tampered_body(merchant, body):
    return {"sign_body": body.replace("8800", "1")}


def _foreign_key(merchant, body):
    return {"private_key": merchant.foreign_key}


def _six_minutes_old(merchant, body):
    return {"timestamp": int(time.time()) - SIX_MINUTES}


def _six_minutes_ahead(merchant, body):
    return {"timestamp": int(time.time()) + SIX_MINUTES}


def _wrong_serial(merchant, body):
    return {"serial_no": "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C"}


def _signed_with_mount_prefix(merchant, body):
    return {"sign_path": "/sandbox" + NATIVE}


def _signed_with_another_prefix(merchant, body):
    return {"sign_path": "/gateway" + NATIVE}  # neither the path as sent nor the path without the mount


SIGNATURE_REFUSALS = {
    "no-authorization": (_no_authorization, None),
    "tampered-body": (_tampered_body, "错误的签名，验签失败"),
    "foreign-key": (_foreign_key, "错误的签名，验签失败"),
    "six-minutes-old": (_six_minutes_old, "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟"),
    "six-minutes-ahead": (_six_minutes_ahead, "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟"),
    "wrong-serial": (_wrong_serial, None),
    "signed-with-another-prefix": (_signed_with_another_prefix, "错误的签名，验签失败"),
}


def test_baseline_raw_request_is_accepted(merchant):
    """The raw call every refusal below departs from."""
    body = json_body(merchant.order_body())
    answer = merchant.send("POST", NATIVE, body, **_valid(merchant, body))
    assert answer.status_code == 200, answer.text
    assert "code_url" in answer.json()


def test_signature_over_the_path_as_sent_is_accepted(merchant):
    """An SDK configured with <shop>/sandbox/ as its API base signs /sandbox/v3/…: accepted, as is /v3/…."""
    body = json_body(merchant.order_body())
    answer = merchant.send("POST", NATIVE, body, **_signed_with_mount_prefix(merchant, body))
    assert answer.status_code == 200, answer.text
    assert "code_url" in answer.json()


@pytest.mark.parametrize("alteration", list(SIGNATURE_REFUSALS))
def test_signature_refusals(merchant, alteration):
    make, message = SIGNATURE_REFUSALS[alteration]
    order = merchant.order_body()
    body = json_body(order)

    answer = merchant.send("POST", NATIVE, body, **make(merchant, body))

    assert answer.status_code == 401, answer.text
    data = answer.json()
    assert data["code"] == "SIGN_ERROR"
    if message:
        assert data["message"] == message
    with pytest.raises(APIError):  # refused means not created either
        merchant.client.query_by_out_trade_no(order["out_trade_no"])


def test_signed_query_string_must_match(merchant):
    """The canonical URL includes ``?mchid=…`` exactly as sent."""
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)
    path = f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={merchant.credentials.mchid}"
    assert merchant.send("GET", path).status_code == 200
    answer = merchant.send("GET", path, sign_path=path.split("?")[0])
    assert answer.status_code == 401 and answer.json()["code"] == "SIGN_ERROR"


@pytest.mark.parametrize("header", ["Accept", "User-Agent"])
def test_missing_accept_or_user_agent_is_invalid_request(merchant, header):
    body = json_body(merchant.order_body())
    # None drops requests' default; SKIP_HEADER stops urllib3 from adding its own User-Agent.
    answer = merchant.send("POST", NATIVE, body, headers={header: SKIP_HEADER if header == "User-Agent" else None})
    assert answer.status_code == 400 and answer.json()["code"] == "INVALID_REQUEST"


def test_unknown_wechatpay_serial_is_invalid_request(merchant):
    """A client naming a key WeChat Pay does not have for it (public-key mode)."""
    body = json_body(merchant.order_body())
    answer = merchant.send("POST", NATIVE, body, headers={"Wechatpay-Serial": "PUB_KEY_ID_0000000000000001"})
    assert answer.status_code == 400 and answer.json()["code"] == "INVALID_REQUEST"


# -- the order body ------------------------------------------------------------------------------------


def _without(field):
    def change(body):
        del body[field]
        return body
    return change


def _amount(total):
    def change(body):
        body["amount"]["total"] = total
        return body
    return change


def _set(field, value):
    def change(body):
        body[field] = value
        return body
    return change


FIELD_ERRORS = {
    "total-zero": (_amount(0), "/amount/total"),
    "total-negative": (_amount(-1), "/amount/total"),
    "total-float": (_amount(1.5), "/amount/total"),
    "total-integral-float": (_amount(100.0), "/amount/total"),
    "total-string": (_amount("100"), "/amount/total"),
    "total-boolean": (_amount(True), "/amount/total"),
    "no-amount": (_without("amount"), "/amount/total"),
    "currency-usd": (lambda b: {**b, "amount": {"total": 100, "currency": "USD"}}, "/amount/currency"),
    "no-description": (_without("description"), "/description"),
    "long-description": (_set("description", "长" * 128), "/description"),
    "out-trade-no-symbol": (_set("out_trade_no", "SF#000001"), "/out_trade_no"),
    "out-trade-no-short": (_set("out_trade_no", "SF001"), "/out_trade_no"),
    "out-trade-no-long": (_set("out_trade_no", "S" * 33), "/out_trade_no"),
    "notify-url-query": (lambda b: {**b, "notify_url": b["notify_url"] + "?order=1"}, "/notify_url"),
    "notify-url-ftp": (_set("notify_url", "ftp://shop.example.com/notify"), "/notify_url"),
    "emoji-description": (_set("description", "咖啡豆 ☕🫘"), "/description"),
    "emoji-attach": (_set("attach", "gift 🎁"), "/attach"),
    "time-expire-not-rfc3339": (_set("time_expire", "2026-11-27 10:34:56"), "/time_expire"),
}


@pytest.mark.parametrize("case", list(FIELD_ERRORS))
def test_field_errors_name_the_field(merchant, case):
    change, field = FIELD_ERRORS[case]
    body = json_body(change(merchant.order_body()))

    answer = merchant.send("POST", NATIVE, body)

    assert answer.status_code == 400, answer.text
    data = answer.json()
    assert data["code"] == "PARAM_ERROR" and data["message"]
    assert data["detail"]["field"] == field


def test_escaped_emoji_is_refused_too(merchant):
    """``ensure_ascii`` JSON (the wechatpayv3 SDK's) spells an emoji as a surrogate pair escape."""
    order = merchant.order_body(description="咖啡豆 🫘")
    body = json.dumps(order)  # ASCII only: "\\ud83e\\uded8"
    assert "🫘" not in body
    answer = merchant.send("POST", NATIVE, body)
    assert answer.status_code == 400 and answer.json()["detail"]["field"] == "/description"


def test_body_that_is_not_json_is_param_error(merchant):
    answer = merchant.send("POST", NATIVE, '{"appid": ')
    assert answer.status_code == 400 and answer.json()["code"] == "PARAM_ERROR"


def test_appid_not_bound_to_the_merchant(merchant):
    answer = merchant.send("POST", NATIVE, json_body(merchant.order_body(appid=OTHER_APPID)))
    assert answer.status_code == 400 and answer.json()["code"] == "APPID_MCHID_NOT_MATCH"


def test_mchid_in_body_must_be_the_signing_merchant(merchant):
    answer = merchant.send("POST", NATIVE, json_body(merchant.order_body(mchid="1900000109")))
    assert answer.status_code == 400
    data = answer.json()
    assert data["code"] == "PARAM_ERROR" and data["detail"]["field"] == "/mchid"


def test_query_needs_the_merchants_mchid(merchant):
    out_trade_no = new_out_trade_no()
    merchant.prepay(out_trade_no)
    answer = merchant.send("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1900000109")
    assert answer.status_code == 400 and answer.json()["code"] == "PARAM_ERROR"
