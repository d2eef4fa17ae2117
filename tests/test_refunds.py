"""Refunds end to end over real HTTP: the merchant area asks, the simulator refunds and notifies.

Full, partial, twice, beyond the paid amount; ABNORMAL and CLOSED through test control; the
REFUND.* notification handled as rigorously as a payment's; a double payment refunded once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from helpers import second_issued_attempt
from sqlalchemy import select

from conftest import LiveServer, Shopper, wait_for
from storefront.extensions import db
from storefront.models import NotificationRecord, Order, Refund
from storefront.sandbox import refunds as sandbox_refunds
from storefront.sandbox.models import SandboxRefund

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class MerchantArea:
    """A logged-in browser session of the merchant area, through plain HTTP."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = requests.Session()
        password = (Path(server.app.instance_path) / "merchant_password").read_text().strip()
        page = self.http.get(f"{server.url}/merchant/login", timeout=10)
        answer = self.http.post(f"{server.url}/merchant/login",
                                data={"csrf_token": self._token(page.text), "password": password}, timeout=10)
        assert answer.status_code == 200 and "订单管理" in answer.text, answer.text[:500]

    @staticmethod
    def _token(html: str) -> str:
        return CSRF.search(html).group(1)

    def order_page(self, order_no: str) -> str:
        answer = self.http.get(f"{self.server.url}/merchant/orders/{order_no}", timeout=10)
        assert answer.status_code == 200
        return answer.text

    def refund(self, order_no: str, amount_yuan: str, reason: str = "") -> str:
        token = self._token(self.order_page(order_no))
        answer = self.http.post(f"{self.server.url}/merchant/orders/{order_no}/refund",
                                data={"csrf_token": token, "amount": amount_yuan, "reason": reason}, timeout=15)
        assert answer.status_code == 200, answer.text[:300]
        return answer.text


def paid_order(shopper: Shopper, quantity: int = 1) -> dict:
    order = shopper.buy(product_id=1, quantity=quantity)
    payment = shopper.start_native(order["order_no"])
    assert shopper.pay_in_simulator(payment["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    return {**order, "out_trade_no": payment["out_trade_no"]}


def order_row(server: LiveServer, order_no: str) -> Order:
    with server.app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        db.session.expunge(order)
        return order


def refund_rows(server: LiveServer, order_no: str) -> list[Refund]:
    with server.app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        rows = list(db.session.scalars(select(Refund).where(Refund.order_id == order.id).order_by(Refund.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def test_partial_twice_then_full_then_beyond(live_server, shopper):
    """8800 paid: refund 30.00, then 58.00 (the rest), then nothing more is refundable."""
    order = paid_order(shopper)
    area = MerchantArea(live_server)
    area.refund(order["order_no"], "30.00", "颜色不喜欢")
    wait_for(lambda: order_row(live_server, order["order_no"]).amount_refunded == 3000)
    seen = shopper.order(order["order_no"])
    assert seen["status"] == "paid" and seen["amount_refunded"] == 3000  # partial: still paid, amounts shown
    page = area.order_page(order["order_no"])
    assert "¥30.00" in page and "部分退款" in page and "¥58.00" in page  # refunded, and what is left

    area.refund(order["order_no"], "58")
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "refunded")
    assert order_row(live_server, order["order_no"]).amount_refunded == 8800
    rows = refund_rows(live_server, order["order_no"])
    assert [(r.amount, r.status) for r in rows] == [(3000, "success"), (5800, "success")]
    assert all(r.refund_id and r.refund_id.startswith("50") for r in rows)

    page = area.refund(order["order_no"], "0.01")
    assert "只有已支付的订单可以退款" in page
    assert len(refund_rows(live_server, order["order_no"])) == 2

    # The simulator: trade_state REFUND; each refund notified once, applied once.
    transaction = requests.get(f"{live_server.url}/sandbox/control/refunds",
                               params={"out_trade_no": order["out_trade_no"]}, timeout=10).json()["refunds"]
    assert [r["status"] for r in transaction] == ["SUCCESS", "SUCCESS"]
    with live_server.app.app_context():
        records = list(db.session.scalars(select(NotificationRecord).where(
            NotificationRecord.event_type == "REFUND.SUCCESS")))
        assert [r.outcome for r in records] == ["applied", "applied"]
        txn = live_server.app.extensions["sandbox"].platform.find("1230000109", order["out_trade_no"])
        assert txn.trade_state == "REFUND"


def test_refund_beyond_what_is_left_is_refused_and_changes_nothing(live_server, shopper):
    order = paid_order(shopper)
    area = MerchantArea(live_server)
    area.refund(order["order_no"], "80.00")
    page = area.refund(order["order_no"], "8.01")
    assert "退款金额超过可退金额" in page
    wait_for(lambda: order_row(live_server, order["order_no"]).amount_refunded == 8000)
    assert [r.amount for r in refund_rows(live_server, order["order_no"])] == [8000]


def test_an_amount_that_is_not_yuan_is_refused(live_server, shopper):
    order = paid_order(shopper)
    page = MerchantArea(live_server).refund(order["order_no"], "1.001")
    assert "金额须为元" in page
    assert refund_rows(live_server, order["order_no"]) == []


@pytest.mark.parametrize("text", ["1.001", "-1", "abc", "0", "0.00", "1e3", "", "１２", "NaN", "1,00"])
def test_yuan_to_fen_refuses(text):
    from storefront.errors import ShopError
    from storefront.merchant.views import yuan_to_fen

    with pytest.raises(ShopError):
        yuan_to_fen(text)


def test_yuan_to_fen_is_exact():
    from storefront.merchant.views import yuan_to_fen

    assert [yuan_to_fen(t) for t in ("0.01", "0.1", "12.3", "88", "19.99", "¥ 1.10", "99999999.99")] == [
        1, 10, 1230, 8800, 1999, 110, 9999999999]


@pytest.fixture
def slow_server(make_app):
    """Refunds stay PROCESSING (a real minute) so test control decides how they end."""
    server = LiveServer(make_app(SANDBOX_NOTIFIER=True, SANDBOX_TIME_SCALE=1.0))
    yield server
    server.stop()


@pytest.mark.parametrize("outcome, status", [("ABNORMAL", "abnormal"), ("CLOSED", "closed"), ("SUCCESS", "success")])
def test_refund_outcomes_from_test_control(slow_server, outcome, status):
    shopper = Shopper(slow_server.url)
    order = paid_order(shopper)
    area = MerchantArea(slow_server)
    area.refund(order["order_no"], "88.00")
    [refund] = refund_rows(slow_server, order["order_no"])
    assert refund.status == "pending"
    answer = requests.post(f"{slow_server.url}/sandbox/control/refund",
                           json={"out_refund_no": refund.out_refund_no, "result": outcome, "notify": "duplicate:2"},
                           timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == outcome
    wait_for(lambda: refund_rows(slow_server, order["order_no"])[0].status == status)

    def outcomes():
        with slow_server.app.app_context():
            return sorted(r.outcome for r in db.session.scalars(
                select(NotificationRecord).where(NotificationRecord.event_type == f"REFUND.{outcome}")))

    wait_for(lambda: outcomes() == ["applied", "duplicate"])  # sent twice at once, applied once
    expected_order = {"ABNORMAL": "paid", "CLOSED": "paid", "SUCCESS": "refunded"}[outcome]
    assert shopper.order(order["order_no"])["status"] == expected_order
    page = area.order_page(order["order_no"])
    if outcome == "CLOSED":
        assert 'id="refund-submit"' in page  # the amount is refundable again
    again = requests.post(f"{slow_server.url}/sandbox/control/refund",
                          json={"out_refund_no": refund.out_refund_no, "result": "SUCCESS"}, timeout=10)
    assert again.status_code == 409 and again.json()["code"] == "REFUND_FINISHED"


def _refund_notification(server: LiveServer, number: str, **resource_changes):
    """A REFUND.SUCCESS notification as the simulator would sign it, with resource changes."""
    import json

    from storefront.wechatpay import aead
    from storefront.wechatpay.client import json_body
    from storefront.wechatpay.notify import build_notification

    platform = server.app.extensions["sandbox"].platform
    with server.app.app_context():
        row = db.session.scalar(select(SandboxRefund).where(SandboxRefund.out_refund_no == number))
        event_id, event_type, body = sandbox_refunds.notification_body(platform, row)
    outer = json.loads(body)
    if resource_changes:
        resource = json.loads(aead.decrypt(platform.aes, outer["resource"]["nonce"], outer["resource"]["ciphertext"],
                                           "refund"))
        resource.update(resource_changes)
        # The same envelope around the changed resource, sealed as WeChat Pay seals it.
        body = build_notification(platform.aes, resource, event_type=outer["event_type"], summary=outer["summary"],
                                  create_time=outer["create_time"], original_type="refund", event_id=outer["id"],
                                  nonce=outer["resource"]["nonce"]).decode("utf-8")
    else:
        body = json_body(outer)
    with server.app.app_context():
        headers = platform.notification_headers(body)
    return headers, body


def test_refund_notification_is_checked_like_a_payment(live_server, shopper):
    order = paid_order(shopper)
    MerchantArea(live_server).refund(order["order_no"], "10.00")
    wait_for(lambda: refund_rows(live_server, order["order_no"])[0].status == "success")
    [refund] = refund_rows(live_server, order["order_no"])
    url = f"{live_server.url}/notify/wechatpay/refund"

    headers, body = _refund_notification(live_server, refund.out_refund_no)
    assert requests.post(url, data=body.encode(), headers=headers, timeout=10).status_code == 204  # a repeat

    tampered = dict(headers, **{"Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"][19:]})
    answer = requests.post(url, data=body.encode(), headers=tampered, timeout=10)
    assert answer.status_code == 401 and answer.json()["code"] == "FAIL"

    headers, body = _refund_notification(live_server, refund.out_refund_no, amount={
        "total": 8800, "refund": 9999, "payer_total": 8800, "payer_refund": 9999})
    assert requests.post(url, data=body.encode(), headers=headers, timeout=10).status_code == 400

    headers, body = _refund_notification(live_server, refund.out_refund_no, out_refund_no="NOT-OURS-01")
    assert requests.post(url, data=body.encode(), headers=headers, timeout=10).status_code == 404

    headers, body = _refund_notification(live_server, refund.out_refund_no, mchid="1900000001")
    assert requests.post(url, data=body.encode(), headers=headers, timeout=10).status_code == 400

    assert order_row(live_server, order["order_no"]).amount_refunded == 1000  # applied once, nothing else
    with live_server.app.app_context():
        records = [(r.event_type, r.outcome, r.http_status)
                   for r in db.session.scalars(select(NotificationRecord).order_by(NotificationRecord.id))
                   if r.event_type != "TRANSACTION.SUCCESS"]
    assert records == [
        ("REFUND.SUCCESS", "applied", 204),
        ("REFUND.SUCCESS", "duplicate", 204),
        (None, "rejected", 401),  # the signature is checked before anything is read
        ("REFUND.SUCCESS", "rejected", 400), ("REFUND.SUCCESS", "rejected", 404), ("REFUND.SUCCESS", "rejected", 400),
    ]


def test_a_double_payment_is_refunded_once(live_server, shopper):
    """Two attempts of one order both paid: the second is refunded in full, automatically, once."""
    order = shopper.buy(product_id=2)
    first = shopper.start_native(order["order_no"])
    second_no, _amount = second_issued_attempt(live_server, order["order_no"])
    assert shopper.pay_in_simulator(first["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    assert shopper.pay_in_simulator(second_no, notify="duplicate:2").status_code == 200
    wait_for(lambda: [r.status for r in refund_rows(live_server, order["order_no"])] == ["success"])
    [refund] = refund_rows(live_server, order["order_no"])
    assert refund.kind == "duplicate" and refund.amount == order["amount_total"]
    assert refund.out_refund_no.startswith(second_no)
    # The order itself was paid once and is not refunded.
    assert shopper.order(order["order_no"])["status"] == "paid"
    assert order_row(live_server, order["order_no"]).amount_refunded == 0
    simulator = requests.get(f"{live_server.url}/sandbox/control/refunds", params={"out_trade_no": second_no},
                             timeout=10).json()["refunds"]
    assert len(simulator) == 1 and simulator[0]["amount"]["refund"] == order["amount_total"]


def test_merchant_area_needs_the_password(live_server):
    http = requests.Session()
    assert http.get(f"{live_server.url}/merchant/", timeout=10, allow_redirects=False).status_code == 302
    page = http.get(f"{live_server.url}/merchant/login", timeout=10)
    token = CSRF.search(page.text).group(1)
    wrong = http.post(f"{live_server.url}/merchant/login", data={"csrf_token": token, "password": "nope"}, timeout=10)
    assert wrong.status_code == 401 and "密码不正确" in wrong.text
    no_csrf = http.post(f"{live_server.url}/merchant/login", data={"password": "nope"}, timeout=10)
    assert no_csrf.status_code == 400
    assert http.get(f"{live_server.url}/merchant/", timeout=10, allow_redirects=False).status_code == 302


def test_merchant_area_is_closed_without_a_password(tmp_path, instance_template):
    import shutil

    from storefront import create_app

    # A production configuration production accepts (the demo merchant, against a loopback API base).
    shutil.copytree(instance_template, tmp_path / "instance")
    app = create_app({"TESTING": True, "SECRET_KEY": "x" * 32 + "-a-long-random-enough-key", "WECHATPAY_SANDBOX": False,
                      "AUTO_INIT": False, "WECHATPAY_API_BASE": "http://127.0.0.1:9/",
                      "SHOP_BASE_URL": "https://shop.example.com"}, instance_path=str(tmp_path / "instance"))
    answer = app.test_client().get("/merchant/login")
    assert answer.status_code == 503 and "MERCHANT_PASSWORD" in answer.get_data(as_text=True)


def test_configured_password_wins(make_app):
    app = make_app(MERCHANT_PASSWORD="s3cret-from-config")
    client = app.test_client()
    page = client.get("/merchant/login")
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    answer = client.post("/merchant/login", data={"csrf_token": token, "password": "s3cret-from-config"})
    assert answer.status_code == 303


def test_reconcile_applies_a_refund_whose_notification_was_lost(slow_server):
    shopper = Shopper(slow_server.url)
    order = paid_order(shopper)
    MerchantArea(slow_server).refund(order["order_no"], "88.00")
    [refund] = refund_rows(slow_server, order["order_no"])
    answer = requests.post(f"{slow_server.url}/sandbox/control/refund",
                           json={"out_refund_no": refund.out_refund_no, "result": "SUCCESS", "notify": "drop"},
                           timeout=10)
    assert answer.status_code == 200
    assert refund_rows(slow_server, order["order_no"])[0].status == "pending"  # never told
    slow_server.app.config["RECONCILE_AFTER_SECONDS"] = -1
    result = slow_server.app.test_cli_runner().invoke(args=["reconcile"])
    assert result.exit_code == 0, result.output
    assert refund_rows(slow_server, order["order_no"])[0].status == "success"
    assert shopper.order(order["order_no"])["status"] == "refunded"


def test_merchant_login_is_throttled(make_app):
    client = make_app(MERCHANT_PASSWORD="right-password").test_client()
    token = CSRF.search(client.get("/merchant/login").get_data(as_text=True)).group(1)
    statuses = [client.post("/merchant/login", data={"csrf_token": token, "password": "wrong"}).status_code
                for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    right = client.post("/merchant/login", data={"csrf_token": token, "password": "right-password"})
    assert right.status_code == 429  # even the right password waits out the window
