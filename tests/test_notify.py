"""POST /notify/wechatpay over real HTTP: refusals, idempotency, races, retries, late and double payments.

Every refusal starts from one valid TRANSACTION.SUCCESS notification for a real pending attempt,
signed with the app's own simulator key, and alters exactly one thing (stripe ``test_webhook.py``).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from flask import request
from helpers import order_row, payment_row
from sqlalchemy import func, select

from conftest import LiveServer, Shopper, wait_for
from storefront.extensions import db
from storefront.models import NotificationRecord, Order, OrderEvent, Payment, ProtocolMessage, utcnow
from storefront.services import orders
from storefront.wechatpay import aead, keys, signing
from storefront.wechatpay.notify import build_notification
from storefront.wechatpay.times import format_time

OTHER_MCHID = "1900000109"
OTHER_APPID = "wx0000000000000000"
STALE_SECONDS = 301  # one second past the 5-minute window


class WeChatPaySide:
    """Builds notifications as WeChat Pay would, with the keys of the app's simulator."""

    def __init__(self, app) -> None:
        folder = Path(app.instance_path) / "sandbox"
        config = json.loads((folder / "merchant.json").read_text())
        self.private_key = keys.load_private_key((folder / "wechatpay_private_key.pem").read_bytes())
        self.merchant_private_key = keys.load_private_key(
            (Path(app.instance_path) / "wechatpay" / "apiclient_key.pem").read_bytes())
        self.public_key_id = config["public_key_id"]
        self.mchid = config["mchid"]
        self.appid = config["appids"][0]
        self.aes = aead.cipher(config["apiv3_key"])

    def resource(self, out_trade_no: str, amount_total: int, **changes) -> dict:
        """The decrypted transaction of a successful payment (WeChat Pay "支付通知")."""
        data = {
            "mchid": self.mchid, "appid": self.appid, "out_trade_no": out_trade_no,
            "transaction_id": "4200" + "".join(secrets.choice("0123456789") for _ in range(24)),
            "trade_type": "NATIVE", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
            "bank_type": "OTHERS", "attach": "", "success_time": format_time(utcnow()),
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": amount_total, "payer_total": amount_total, "currency": "CNY",
                       "payer_currency": "CNY"},
        }
        data.update(changes)
        return data

    def body(self, resource: dict, *, aes=None, event_id: str | None = None) -> bytes:
        """The outer JSON, resource encrypted with a fresh 12-character nonce."""
        return build_notification(aes or self.aes, resource, event_type="TRANSACTION.SUCCESS", summary="支付成功",
                                  create_time=format_time(utcnow()), event_id=event_id,
                                  nonce=secrets.token_hex(6))

    def headers(self, body: bytes, *, timestamp: int | None = None, serial: str | None = None,
                private_key=None) -> dict[str, str]:
        headers = signing.sign_response(
            private_key or self.private_key, serial or self.public_key_id, body,
            timestamp=str(timestamp) if timestamp is not None else None,
        )
        headers["Content-Type"] = "application/json"
        return headers


def post_notification(base_url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{base_url}/notify/wechatpay", data=body, headers=headers, timeout=20)




def events(app, order_no: str) -> list[tuple[str, str, str]]:
    """(from_status, to_status, cause) of every line of the order's history, oldest first."""
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        return [(row.from_status, row.to_status, row.cause) for row in order.events]


def records(app, after: int = 0) -> list[NotificationRecord]:
    """The NotificationRecords written after id ``after`` (the shared server keeps earlier tests' rows)."""
    with app.app_context():
        return list(db.session.scalars(
            select(NotificationRecord).where(NotificationRecord.id > after).order_by(NotificationRecord.id)))


@pytest.fixture
def server(module_live_server) -> LiveServer:
    """The module's shared server: these tests send their notifications themselves (notifier off)."""
    return module_live_server


@pytest.fixture
def wechatpay(server) -> WeChatPaySide:
    return WeChatPaySide(server.app)


def start_pending(server: LiveServer, shopper: Shopper | None = None) -> dict:
    """A pending order with an issued Native attempt, and the last NotificationRecord id before it."""
    with server.app.app_context():
        last_record = db.session.scalar(select(func.max(NotificationRecord.id))) or 0
    shopper = shopper or Shopper(server.url)
    order = shopper.buy(product_id=1, quantity=2)
    payment = shopper.start_native(order["order_no"])
    return {"order_no": order["order_no"], "out_trade_no": payment["out_trade_no"],
            "amount_total": order["amount_total"], "last_record": last_record}


@pytest.fixture
def pending(server) -> dict:
    return start_pending(server)


# -- refusals: one alteration each ----------------------------------------------------------------------


def _tampered_body(side, resource):
    event_id = str(uuid.uuid4())
    body = side.body(resource, event_id=event_id)
    headers = side.headers(body)
    altered = body.replace(event_id.encode(), event_id[:-1].encode() + (b"0" if event_id[-1] != "0" else b"1"))
    assert len(altered) == len(body) and sum(a != b for a, b in zip(altered, body)) == 1
    return altered, headers


def _wrong_signature(side, resource):
    # Signed with the merchant's own key: the classic mistake of verifying with apiclient_cert.pem.
    body = side.body(resource)
    return body, side.headers(body, private_key=side.merchant_private_key)


def _stale_timestamp(side, resource):
    body = side.body(resource)
    return body, side.headers(body, timestamp=int(time.time()) - STALE_SECONDS)


def _unknown_serial(side, resource):
    body = side.body(resource)
    return body, side.headers(body, serial="PUB_KEY_ID_0000000000000000000000000000000001")


def _wrong_amount(side, resource):
    total = resource["amount"]["total"] + 1
    body = side.body({**resource, "amount": {**resource["amount"], "total": total, "payer_total": total}})
    return body, side.headers(body)


def _wrong_mchid(side, resource):
    body = side.body({**resource, "mchid": OTHER_MCHID})
    return body, side.headers(body)


def _wrong_appid(side, resource):
    body = side.body({**resource, "appid": OTHER_APPID})
    return body, side.headers(body)


def _probe_signature(side, resource):
    body = side.body(resource)
    headers = side.headers(body)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    return body, headers


def _malformed_json(side, resource):
    body = side.body(resource)[:-20]  # cut off mid-object, then signed as it is
    return body, side.headers(body)


def _resource_not_decrypting(side, resource):
    body = side.body(resource, aes=aead.cipher("0" * 32))  # not the merchant's APIv3 key
    return body, side.headers(body)


REFUSALS = {
    "tampered-body": _tampered_body,
    "wrong-signature": _wrong_signature,
    "stale-timestamp": _stale_timestamp,
    "unknown-serial": _unknown_serial,
    "wrong-amount": _wrong_amount,
    "wrong-mchid": _wrong_mchid,
    "wrong-appid": _wrong_appid,
    "probe-signature": _probe_signature,
    "malformed-json": _malformed_json,
    "resource-not-decrypting": _resource_not_decrypting,
}


def test_baseline_notification_is_accepted(server, wechatpay, pending):
    """The notification every refusal below departs from is itself valid."""
    body = wechatpay.body(wechatpay.resource(pending["out_trade_no"], pending["amount_total"]))
    answer = post_notification(server.url, body, wechatpay.headers(body))
    assert answer.status_code == 204, answer.text
    assert order_row(server.app, pending["order_no"]).status == "paid"


def test_notification_opens_no_session_and_sets_no_cookie(server, wechatpay, pending):
    """WeChat Pay is no browser: a notification (even one carrying a shop cookie) gets no session
    cookie and no browser headers back, and is applied; the pages keep theirs."""
    page = requests.get(f"{server.url}/", timeout=20)
    cookie = page.cookies.get(server.app.config.get("SESSION_COOKIE_NAME", "session"))
    body = wechatpay.body(wechatpay.resource(pending["out_trade_no"], pending["amount_total"]))
    headers = {**wechatpay.headers(body), **({"Cookie": f"session={cookie}"} if cookie else {}),
               "Accept-Language": "en"}
    answer = post_notification(server.url, body, headers)
    assert answer.status_code == 204, answer.text
    assert "Set-Cookie" not in answer.headers
    # The browser protections are for pages: a page has them, WeChat Pay's answer does not need them.
    assert "Content-Security-Policy" in page.headers and "Content-Security-Policy" not in answer.headers
    assert order_row(server.app, pending["order_no"]).status == "paid"
    with server.app.app_context():  # written in the shop's default language, whatever WeChat Pay's headers say
        notes = db.session.scalars(select(OrderEvent.note).join(Order, Order.id == OrderEvent.order_id)
                                   .where(Order.order_no == pending["order_no"], OrderEvent.to_status == "paid")).all()
        db.session.rollback()
    assert notes == ["微信支付确认收款"]
    with server.app.test_request_context("/notify/wechatpay", method="POST"):
        from storefront.web import is_machine_endpoint

        assert is_machine_endpoint()
    with server.app.test_request_context("/orders/X"):
        from storefront.web import is_machine_endpoint

        assert not is_machine_endpoint()


def test_flow_record_of_an_applied_notification_rebuilds_the_body_as_received(server, wechatpay, pending):
    """The record keeps the decrypted resource instead of the ciphertext (the handler's own
    plaintext, not a second decryption) and shows the inspector the very bytes WeChat Pay sent."""
    body = wechatpay.body(wechatpay.resource(pending["out_trade_no"], pending["amount_total"]))
    assert post_notification(server.url, body, wechatpay.headers(body)).status_code == 204
    with server.app.app_context():
        from storefront.models import ProtocolMessage
        from storefront.services import flowlog

        row = db.session.scalars(select(ProtocolMessage).join(Payment, Payment.id == ProtocolMessage.payment_id).where(
            Payment.out_trade_no == pending["out_trade_no"], ProtocolMessage.direction == "in")).one()
        # Linked to the attempt by its number: not stored twice, read through the attempt.
        assert row.stored_out_trade_no is None and row.out_trade_no == pending["out_trade_no"]
        assert row.stored_title is None and row.title == "POST /notify/wechatpay"
        ciphertext = json.loads(body)["resource"]["ciphertext"]
        assert ciphertext not in row.request_body and "cipher_at" in row.fields
        assert json.loads(row.fields["resource_plain"])["out_trade_no"] == pending["out_trade_no"]
        assert flowlog.shown_request_body(row) == body.decode("utf-8")
        db.session.rollback()


def test_flow_record_of_a_repeat_says_duplicate_not_what_was_expected(server, wechatpay, pending):
    """The record built ahead of the write lock (for "applied") is used only when the answer is
    that: a repeat's record says "duplicate", each linked to its order, each with every check."""
    body = wechatpay.body(wechatpay.resource(pending["out_trade_no"], pending["amount_total"]))
    for _ in range(2):
        assert post_notification(server.url, body, wechatpay.headers(body)).status_code == 204
    order_id = order_row(server.app, pending["order_no"]).id
    with server.app.app_context():
        from storefront.models import ProtocolMessage

        rows = db.session.scalars(select(ProtocolMessage).join(Payment, Payment.id == ProtocolMessage.payment_id).where(
            Payment.out_trade_no == pending["out_trade_no"], ProtocolMessage.direction == "in")
            .order_by(ProtocolMessage.id)).all()
        outcomes = [next(c["detail"] for c in row.checks if c["name"] == "outcome") for row in rows]
        assert outcomes == ["HTTP 204 applied", "HTTP 204 duplicate"]
        assert [row.order_id for row in rows] == [order_id, order_id]
        for row in rows:
            assert all(c["ok"] for c in row.checks), row.checks
            amount = next(c for c in row.checks if c["name"] == "amount")
            assert amount["detail"] == f"{pending['amount_total']} / {pending['amount_total']}"


@pytest.mark.parametrize("alteration", list(REFUSALS))
def test_refused_notification_changes_nothing(server, wechatpay, pending, caplog, alteration):
    """One thing altered: a 4xx FAIL answer, the order still pending, a rejected record, a warning."""
    caplog.set_level(logging.WARNING)
    resource = wechatpay.resource(pending["out_trade_no"], pending["amount_total"])
    body, headers = REFUSALS[alteration](wechatpay, resource)

    answer = post_notification(server.url, body, headers)

    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    data = answer.json()
    assert data["code"] == "FAIL" and isinstance(data["message"], str) and data["message"]
    app = server.app
    assert order_row(app, pending["order_no"]).status == "pending"
    assert payment_row(app, pending["out_trade_no"]).status == "notpay"
    assert [(e[0], e[1]) for e in events(app, pending["order_no"])] == [("", "pending")]
    rejected = [r for r in records(app, pending["last_record"]) if r.outcome == "rejected"]
    assert len(rejected) == 1 and rejected[0].reason and rejected[0].http_status == answer.status_code
    assert any(r.levelno == logging.WARNING and "rejected" in r.getMessage() for r in caplog.records)


# -- accepted: once, again, and twenty at once ----------------------------------------------------------


def test_valid_notification_pays_once_and_a_repeat_changes_nothing(server, wechatpay, pending):
    """A repeat of the same notification answers 204 again and records a duplicate, nothing more."""
    resource = wechatpay.resource(pending["out_trade_no"], pending["amount_total"])
    body = wechatpay.body(resource)
    headers = wechatpay.headers(body)
    app = server.app

    first = post_notification(server.url, body, headers)
    assert first.status_code == 204 and first.content == b""
    paid = order_row(app, pending["order_no"])
    assert paid.status == "paid" and paid.paid_at is not None and not paid.needs_review
    payment = payment_row(app, pending["out_trade_no"])
    assert payment.status == "paid" and payment.transaction_id == resource["transaction_id"]

    again = post_notification(server.url, body, wechatpay.headers(body))
    assert again.status_code == 204
    assert order_row(app, pending["order_no"]).paid_at == paid.paid_at
    assert [e for e in events(app, pending["order_no"]) if e[1] == "paid"] == [("pending", "paid", "notify")]
    assert [r.outcome for r in records(app, pending["last_record"])] == ["applied", "duplicate"]


def test_twenty_concurrent_duplicates_apply_exactly_once(server, wechatpay, pending):
    """Duplicates racing on several server threads: no refusal, one pending→paid transition."""
    body = wechatpay.body(wechatpay.resource(pending["out_trade_no"], pending["amount_total"]))
    headers = wechatpay.headers(body)
    start = threading.Barrier(20)

    def send(_):
        start.wait(timeout=10)
        return post_notification(server.url, body, headers).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(send, range(20)))

    assert not [s for s in statuses if 400 <= s < 500], statuses
    assert statuses.count(204) >= 1, statuses
    app = server.app
    assert order_row(app, pending["order_no"]).status == "paid"
    assert [e for e in events(app, pending["order_no"]) if e[1] == "paid"] == [("pending", "paid", "notify")]
    outcomes = [r.outcome for r in records(app, pending["last_record"])]
    assert outcomes.count("applied") == 1 and outcomes.count("rejected") == 0


# -- the simulator's retries ----------------------------------------------------------------------------


@pytest.fixture
def failing_once_server(make_app):
    """A live shop whose first POST /notify/wechatpay answers 500, as a crashed worker would."""
    app = make_app(SANDBOX_NOTIFIER=True)
    lock = threading.Lock()
    failed: list[str] = []
    inner = app.wsgi_app

    def fail_first_notification(environ, start_response):
        # In front of the whole app (notifications are not dispatched by Flask: NotificationLane).
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/notify/wechatpay":
            with lock:
                if not failed:
                    failed.append(environ["PATH_INFO"])
                    start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "application/json")])
                    return [b'{"code":"FAIL","message":"injected failure"}']
        return inner(environ, start_response)

    app.wsgi_app = fail_first_notification
    server = LiveServer(app)  # in place before the first request is served
    yield server
    server.stop()


def test_notification_answered_500_is_retried_and_lands(failing_once_server):
    """The simulator retries on its (scaled) schedule: attempts [500, 204], the order paid once."""
    shopper = Shopper(failing_once_server.url)
    order = shopper.buy()
    payment = shopper.start_native(order["order_no"])

    paid = shopper.pay_in_simulator(payment["out_trade_no"])
    assert paid.status_code == 200, paid.text

    app = failing_once_server.app
    assert wait_for(lambda: order_row(app, order["order_no"]).status == "paid")
    delivered = wait_for(lambda: [n for n in shopper.notifications(payment["out_trade_no"])
                                  if n["state"] == "delivered"])
    assert len(delivered) == 1
    assert [a["http_status"] for a in delivered[0]["attempts"]] == [500, 204]
    assert [e for e in events(app, order["order_no"]) if e[1] == "paid"] == [("pending", "paid", "notify")]


# -- late and double payments ---------------------------------------------------------------------------


def _close_locally(app, out_trade_no: str, close_order: bool) -> None:
    """What the shop does when it gives up on an attempt it believes closed at WeChat Pay."""
    with app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
        assert orders.close_payment(payment.id, "job")
        if close_order:
            assert orders.close_order_if_unpaid(payment.order_id, "job")


@pytest.mark.parametrize("close_order", [False, True], ids=["attempt-closed", "order-closed"])
def test_payment_of_a_locally_closed_attempt_is_applied_and_flagged(live_server, shopper, close_order):
    """The money is real: the order turns paid, flagged for review, with an event saying why."""
    app = live_server.app
    pending = start_pending(live_server, shopper)
    _close_locally(app, pending["out_trade_no"], close_order)

    paid = shopper.pay_in_simulator(pending["out_trade_no"])
    assert paid.status_code == 200, paid.text

    assert wait_for(lambda: order_row(app, pending["order_no"]).status == "paid")
    order = order_row(app, pending["order_no"])
    assert order.needs_review is True
    assert payment_row(app, pending["out_trade_no"]).status == "paid"
    source = "closed" if close_order else "pending"
    assert [e for e in events(app, pending["order_no"]) if e[1] == "paid"] == [(source, "paid", "notify")]
    assert wait_for(lambda: [r.outcome for r in records(app)] == ["late"])


def test_second_paid_attempt_is_recorded_as_double_payment(live_server, shopper):
    """Two attempts of one order both paid at WeChat Pay: still paid once, flagged for a refund."""
    app = live_server.app
    pending = start_pending(live_server, shopper)
    first_attempt = pending["out_trade_no"]
    _close_locally(app, first_attempt, close_order=False)  # the shop lost track; WeChat Pay did not close it
    second_attempt = shopper.start_native(pending["order_no"])["out_trade_no"]
    assert second_attempt != first_attempt

    assert shopper.pay_in_simulator(second_attempt).status_code == 200
    assert wait_for(lambda: order_row(app, pending["order_no"]).status == "paid")
    assert order_row(app, pending["order_no"]).needs_review is False

    assert shopper.pay_in_simulator(first_attempt).status_code == 200
    assert wait_for(lambda: [n["state"] for n in shopper.notifications(first_attempt)] == ["delivered"])
    # Answered at the first try, refund call included: the notifier holds no simulator lock meanwhile.
    assert [a["http_status"] for a in shopper.notifications(first_attempt)[0]["attempts"]] == [204]

    order = order_row(app, pending["order_no"])
    assert order.status == "paid" and order.needs_review is True
    history = events(app, pending["order_no"])
    assert [e for e in history if e[0] != "paid" and e[1] == "paid"] == [("pending", "paid", "notify")]
    with app.app_context():
        double = db.session.scalars(
            select(OrderEvent).where(OrderEvent.from_status == "paid", OrderEvent.to_status == "paid",
                                     OrderEvent.cause == "notify")).all()
        assert len(double) == 1 and "重复支付" in double[0].note
        assert db.session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "paid")) == 2
    outcomes = [r.outcome for r in records(app) if r.out_trade_no in (first_attempt, second_attempt)]
    assert outcomes[:2] == ["applied", "double"]
    # The refund call made while answering the notification says what made it (no request context:
    # the notification lane's origin), not "job".
    with app.app_context():
        calls = db.session.scalars(select(ProtocolMessage).where(
            ProtocolMessage.order_id == order.id, ProtocolMessage.direction == "out",
            ProtocolMessage.kind.like("refund%"))).all()
        assert calls and {call.origin for call in calls} == {"POST /notify/wechatpay"}


@pytest.mark.parametrize("base, path", [
    ("http://127.0.0.1:5000", "/notify/wechatpay"), ("http://shop.example:80", "/notify/wechatpay"),
    ("https://shop.example:443", "/notify/wechatpay"), ("https://shop.example:8443", "/notify/wechatpay/refund"),
    ("http://xn--fiqs8s.example", "/notify/wechatpay"), ("http://shop.example", "/notify/wechatpay?x=%E4%B8%AD"),
    ("http://shop.example", "/notify/%E4%B8%AD"),
])
def test_the_recorded_url_is_the_requests_own(app, base, path):
    """The flow record's URL of a notification is what ``request.url`` says, read the quick way."""
    from storefront.notify.views import _request_url

    with app.test_request_context(path, base_url=base, method="POST"):
        assert _request_url(request) == request.url


# -- the notification lane (served without Flask's request dispatch) ------------------------------------


def _through_flask(app, path: str, body: bytes, headers: dict[str, str]):
    """The answer Flask's own dispatch gives (the blueprint's view and the app's error handlers)."""
    with app.test_request_context(path, method="POST", data=body, headers=headers):
        try:
            response = app.full_dispatch_request()
        except Exception as exc:  # as wsgi_app does
            response = app.make_response(app.handle_exception(exc))
    return response.status_code, response.get_data(), response.headers.get("Content-Type")


@pytest.mark.parametrize("case", ["applied", "repeat", "wrong-signature", "malformed-json", "too-large", "crash"])
def test_the_lane_answers_as_flasks_dispatch_would(server, wechatpay, monkeypatch, caplog, case):
    """``NotificationLane`` and the blueprint's view give WeChat Pay the same status, body and type,
    and log an unexpected error the same way."""
    from storefront.notify import views

    app = server.app
    if case == "crash":
        def broken(*_args, **_kwargs):
            raise RuntimeError("the database went away")
        monkeypatch.setitem(views.HANDLERS, "payment", broken)
    answers = []
    for through in ("lane", "flask"):
        target = start_pending(server)
        resource = wechatpay.resource(target["out_trade_no"], target["amount_total"])
        if case == "repeat":  # paid by a first notification; the answer compared is the second's
            first = wechatpay.body(resource)
            assert app.test_client().post("/notify/wechatpay", data=first,
                                          headers=wechatpay.headers(first)).status_code == 204
        body = wechatpay.body(resource)
        headers = wechatpay.headers(body)
        if case == "wrong-signature":
            headers = wechatpay.headers(body, private_key=wechatpay.merchant_private_key)
        elif case == "malformed-json":
            body = body[:-20]
            headers = wechatpay.headers(body)
        elif case == "too-large":
            body = body + b" " * (app.config["MAX_CONTENT_LENGTH"] + 1)
        caplog.clear()
        if through == "lane":
            answer = app.test_client().post("/notify/wechatpay", data=body, headers=headers)
            got = (answer.status_code, answer.get_data(), answer.headers.get("Content-Type"))
        else:
            got = _through_flask(app, "/notify/wechatpay", body, headers)
        answers.append((*got, [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]))
    assert answers[0] == answers[1]
    status = answers[0][0]
    assert status == {"applied": 204, "repeat": 204, "wrong-signature": 401, "malformed-json": 401,
                      "too-large": 413, "crash": 500}[case]
    if status >= 300:
        assert json.loads(answers[0][1])["code"] == "FAIL"
    if case == "crash":
        assert answers[0][3] == ["unhandled error on POST /notify/wechatpay"]


def test_the_lane_pushes_no_request_context_and_leaves_other_requests_to_flask(server, wechatpay):
    """A notification is answered without Flask's request dispatch (no ``request_started``); any
    other method on the same URL is Flask's (405)."""
    from flask import request_started

    app = server.app
    target = start_pending(server)
    body = wechatpay.body(wechatpay.resource(target["out_trade_no"], target["amount_total"]))
    started: list[str] = []

    def seen(_sender, **_extra):
        started.append(request.method)

    client = app.test_client()
    with request_started.connected_to(seen, app):
        assert client.post("/notify/wechatpay", data=body, headers=wechatpay.headers(body)).status_code == 204
        assert client.get("/notify/wechatpay").status_code == 405
    assert started == ["GET"]
    assert order_row(app, target["order_no"]).status == "paid"
