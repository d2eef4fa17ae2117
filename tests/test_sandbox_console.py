"""Payer outcomes, probes, the clock and the console's records, over real HTTP.

The simulator never marks a closed or expired attempt paid; a mis-signed probe is refused by
the shop and the console says so; fast-forwarding runs a whole day of retries in seconds.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from conftest import LiveServer, wait_for
from storefront.extensions import db
from storefront.models import utcnow
from storefront.sandbox.models import SandboxDelivery, SandboxNotification
from storefront.sandbox.simulator import RETRY_INTERVALS_SECONDS
from storefront.wechatpay.times import format_time, parse_time
from wechat_http import RawMerchant

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def m(live_server):
    return RawMerchant(live_server)


def query_state(m: RawMerchant, out_trade_no: str) -> str:
    answer = m.send("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1230000109")
    return answer.json()["trade_state"]


@pytest.mark.parametrize("result", ["NOTENOUGH", "PAYERROR", "CANCEL"])
def test_failed_payer_choices_leave_the_order_payable(m, result):
    out_trade_no, _ = m.create()
    answer = m.pay(out_trade_no, result)
    assert answer.status_code == 200 and answer.json() == {"out_trade_no": out_trade_no, "trade_state": "NOTPAY",
                                                           "result": result}
    assert query_state(m, out_trade_no) == "NOTPAY"
    assert m.pay(out_trade_no).status_code == 200 and query_state(m, out_trade_no) == "SUCCESS"


def test_a_payer_typing_the_password_is_notpay_until_they_finish(m):
    """USERPAYING is a payment-code (MICROPAY) state: a Native order's query says NOTPAY meanwhile."""
    out_trade_no, _ = m.create()
    assert m.pay(out_trade_no, "USERPAYING").json()["result"] == "USERPAYING"
    answer = m.send("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1230000109").json()
    assert answer["trade_state"] == "NOTPAY" and answer["trade_state_desc"] == "订单未支付"
    assert "transaction_id" not in answer
    assert m.pay(out_trade_no, "CANCEL").status_code == 200 and query_state(m, out_trade_no) == "NOTPAY"
    assert m.pay(out_trade_no, "USERPAYING").status_code == 200
    assert m.pay(out_trade_no).status_code == 200 and query_state(m, out_trade_no) == "SUCCESS"


def test_closed_and_expired_attempts_are_never_paid(m):
    closed, _ = m.create()
    m.send("POST", f"/v3/pay/transactions/out-trade-no/{closed}/close", {"mchid": "1230000109"})
    assert m.pay(closed).json() == {"code": "ORDER_CLOSED", "message": "订单已关闭"}
    expiring, _ = m.create(time_expire=format_time(utcnow() + timedelta(minutes=5)))
    long_lived, _ = m.create(time_expire=format_time(utcnow() + timedelta(hours=5)))
    assert m.control("clock", {"advance_seconds": 301}).status_code == 200
    assert m.pay(expiring).json() == {"code": "ORDER_EXPIRED", "message": "二维码已过期，请让商家重新生成"}
    assert query_state(m, expiring) == "NOTPAY"  # WeChat keeps NOTPAY after time_expire: the merchant closes
    assert m.control("clock", {"advance_seconds": 2 * 3600}).status_code == 200
    assert m.pay(long_lived).status_code == 409  # the code_url's 2 hours are over, time_expire or not
    for number in (closed, expiring, long_lived):
        assert query_state(m, number) in ("NOTPAY", "CLOSED")


def test_the_scan_page_offers_the_failures(live_server, m):
    out_trade_no, answer = m.create()
    page_url = answer.json()["code_url"]
    browser = requests.Session()
    page = browser.get(page_url, timeout=10)
    assert page.status_code == 200 and "零钱余额不足" in page.text and "停在输入密码" in page.text
    token = CSRF.search(page.text).group(1)
    fail = page_url.replace("/wxpay/bizpayurl?", "/wxpay/bizpayurl/fail?")
    after = browser.post(fail, data={"csrf_token": token, "result": "NOTENOUGH"}, timeout=10)
    assert after.status_code == 200 and "零钱余额不足，请更换支付方式" in after.text
    assert query_state(m, out_trade_no) == "NOTPAY"
    after = browser.post(fail, data={"csrf_token": token, "result": "USERPAYING"}, timeout=10)
    assert "付款人正在输入密码" in after.text and query_state(m, out_trade_no) == "NOTPAY"
    assert browser.post(fail, data={"result": "PAYERROR"}, timeout=10).status_code == 400  # no CSRF token


def test_a_probe_is_refused_by_the_shop_and_the_console_says_so(live_server, shopper):
    order = shopper.buy()
    payment = shopper.start_native(order["order_no"])
    probe = requests.post(f"{live_server.url}/sandbox/control/probe", json={"out_trade_no": payment["out_trade_no"]},
                          timeout=10).json()
    wait_for(lambda: notification(live_server, probe["id"]).state != "pending")
    row = notification(live_server, probe["id"])
    assert row.state == "probe_refused" and row.kind == "probe" and row.next_attempt_at is None
    assert shopper.order(order["order_no"])["status"] == "pending"  # the shop did not believe it
    console = requests.get(f"{live_server.url}/sandbox/", timeout=10).text
    assert "商户已拒绝 ✓" in console
    listed = shopper.notifications(payment["out_trade_no"])
    assert listed[0]["attempts"][0]["http_status"] == 401


def notification(server: LiveServer, notification_id: int) -> SandboxNotification:
    with server.app.app_context():
        row = db.session.get(SandboxNotification, notification_id)
        db.session.expunge(row)
        return row


@pytest.fixture
def real_time_server(make_app):
    """The real retry schedule (15 s, 15 s, 30 s, …): only the clock control makes it quick."""
    server = LiveServer(make_app(SANDBOX_NOTIFIER=True, SANDBOX_TIME_SCALE=1.0))
    yield server
    server.stop()


def test_fast_forward_runs_a_whole_day_of_retries(real_time_server):
    m = RawMerchant(real_time_server)
    out_trade_no, _ = m.create(notify_url=real_time_server.url + "/nowhere")  # the shop answers 404 there
    assert m.pay(out_trade_no).status_code == 200
    rows = lambda: deliveries(real_time_server, out_trade_no)  # noqa: E731
    wait_for(lambda: len(rows()) == 1)
    for attempt in range(2, len(RETRY_INTERVALS_SECONDS) + 2):
        assert m.control("clock", {"to": "next_retry"}).status_code == 200
        wait_for(lambda: len(rows()) == attempt)  # noqa: B023  waited for within this iteration
    done = rows()
    assert [d.http_status for d in done] == [404] * 16
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(done, done[1:])]
    # 24 h 4 min on the simulator clock (plus the real moments each delivery itself took)
    assert all(0 <= gap - interval < 5 for gap, interval in zip(gaps, RETRY_INTERVALS_SECONDS)), gaps
    assert [(d.next_attempt_at - d.at).total_seconds() for d in done[:-1]] == pytest.approx(
        RETRY_INTERVALS_SECONDS, abs=0.5)
    assert done[-1].next_attempt_at is None
    listed = requests.get(f"{real_time_server.url}/sandbox/control/notifications",
                          params={"out_trade_no": out_trade_no}, timeout=10).json()["notifications"]
    assert listed[0]["state"] == "failed"
    # Resend now: one more attempt, at once.
    resent = requests.post(f"{real_time_server.url}/sandbox/control/notifications/{listed[0]['id']}/resend", timeout=10)
    assert resent.status_code == 200
    wait_for(lambda: len(rows()) == 17)
    clock = requests.get(f"{real_time_server.url}/sandbox/control/clock", timeout=10).json()
    assert clock["offset_seconds"] > 24 * 3600
    assert parse_time(clock["now"]) > parse_time(format_time(utcnow() + timedelta(hours=24)))


def deliveries(server: LiveServer, out_trade_no: str) -> list[SandboxDelivery]:
    with server.app.app_context():
        rows = list(db.session.scalars(
            select(SandboxDelivery).join(SandboxNotification, SandboxNotification.id == SandboxDelivery.notification_id)
            .where(SandboxNotification.out_trade_no == out_trade_no).order_by(SandboxDelivery.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def test_console_pages_show_calls_but_never_secrets(live_server, m):
    out_trade_no, _ = m.paid_order()
    m.refund(out_trade_no, 100)
    bad = m.send("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1230000109", signature="A" * 344)
    assert bad.status_code == 401
    calls = requests.get(f"{live_server.url}/sandbox/control/calls", timeout=10).json()["calls"]
    refused = calls[0]
    assert not refused["auth_ok"] and refused["auth_result"] == "SIGN_ERROR: 错误的签名，验签失败"
    assert refused["signed_message"].startswith(f"GET\n/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=")
    pages = [requests.get(f"{live_server.url}/sandbox/{path}", timeout=10) for path in
             ("", f"calls/{refused['id']}", f"calls/{calls[-1]['id']}", "notifications/1")]
    assert all(p.status_code == 200 for p in pages)
    assert "/v3/refund/domestic/refunds" in pages[0].text and "签名中" in pages[0].text
    assert "GET↵" in pages[1].text
    instance = Path(live_server.app.instance_path)
    apiv3_key = json.loads((instance / "wechatpay" / "credentials.json").read_text())["apiv3_key"]
    private = [p.read_text().splitlines()[1] for p in instance.rglob("*key*.pem")]
    for page in pages:
        assert apiv3_key not in page.text
        assert not any(line in page.text for line in private)


def test_back_to_real_time_moves_the_schedule_back_too(real_time_server):
    m = RawMerchant(real_time_server)
    out_trade_no, _ = m.create(notify_url=real_time_server.url + "/nowhere")
    assert m.pay(out_trade_no).status_code == 200
    wait_for(lambda: len(deliveries(real_time_server, out_trade_no)) == 1)
    assert m.control("clock", {"advance_seconds": 3600}).status_code == 200  # past the 15 s retry: due at once
    wait_for(lambda: len(deliveries(real_time_server, out_trade_no)) == 2)
    due = deliveries(real_time_server, out_trade_no)[-1].next_attempt_at  # 15 s after, on the moved clock
    assert m.control("clock", {"reset": True}).json()["offset_seconds"] == 0
    listed = requests.get(f"{real_time_server.url}/sandbox/control/notifications",
                          params={"out_trade_no": out_trade_no}, timeout=10).json()["notifications"][0]
    moved = parse_time(listed["next_attempt_at"])
    assert abs((moved - parse_time(format_time(due - timedelta(seconds=3600)))).total_seconds()) <= 1


PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")


@pytest.mark.parametrize("action, state", [("NOTENOUGH", "NOTPAY"), ("PAYERROR", "NOTPAY"), ("USERPAYING", "NOTPAY")])
def test_the_h5_cashier_offers_the_failures(live_server, action, state):
    import html

    from conftest import Shopper

    shopper = Shopper(live_server.url)
    shopper.http.headers["User-Agent"] = PHONE_UA
    order = shopper.buy()
    payment = shopper.http.post(f"{live_server.url}/api/orders/{order['order_no']}/payments", json={"method": "h5"},
                                timeout=10).json()
    cashier = shopper.http.get(payment["h5_url"], headers={"Referer": f"{live_server.url}/orders/x/pay"}, timeout=10)
    assert cashier.status_code == 200 and f'value="{action}"' in cashier.text
    form = {k: html.unescape(v) for k, v in re.findall(r'name="(\w+)" value="([^"]*)"', cashier.text)}
    back = shopper.http.post(f"{live_server.url}/sandbox/cgi-bin/mmpayweb-bin/pay", data={**form, "action": action},
                             allow_redirects=False, timeout=10)
    assert back.status_code == 303  # back to the shop's result page, unpaid
    assert query_state(RawMerchant(live_server), payment["out_trade_no"]) == state
    assert shopper.order(order["order_no"])["status"] == "pending"


def test_fast_forward_ages_the_h5_url(live_server):
    from conftest import Shopper

    shopper = Shopper(live_server.url)
    shopper.http.headers["User-Agent"] = PHONE_UA
    order = shopper.buy()
    payment = shopper.http.post(f"{live_server.url}/api/orders/{order['order_no']}/payments", json={"method": "h5"},
                                timeout=10).json()
    referer = {"Referer": f"{live_server.url}/orders/x/pay"}
    assert shopper.http.get(payment["h5_url"], headers=referer, timeout=10).status_code == 200
    assert requests.post(f"{live_server.url}/sandbox/control/clock", json={"advance_seconds": 301},
                         timeout=10).status_code == 200
    stale = shopper.http.get(payment["h5_url"], headers=referer, timeout=10)
    assert stale.status_code == 403 and "支付请求已失效，请重新发起支付" in stale.text
