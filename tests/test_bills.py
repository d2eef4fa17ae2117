"""Daily bills and reconciliation (对账), end to end over real HTTP.

The simulator serves WeChat Pay's trade and fund flow bills (a day's bill from 10:00 the next
day, on its clock); the shop's client downloads them raw and checks their hash; the
``wechatpayv3`` SDK downloads them too; ``flask reconcile-bill`` applies a payment whose
notification was lost and reports what needs a person.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from sqlalchemy import select, update
from test_refunds import MerchantArea, paid_order
from wechatpayv3 import WeChatPay, WeChatPayType

from conftest import LiveServer
from storefront.extensions import db
from storefront.models import Order, Payment, ReconciliationRun
from storefront.services import reconciliation
from storefront.wechatpay import APIError, bills
from storefront.wechatpay.times import BEIJING


def beijing_today(server: LiveServer) -> date:
    clock = requests.get(f"{server.url}/sandbox/control/clock", timeout=10).json()
    return datetime.fromisoformat(clock["now"]).astimezone(BEIJING).date()


def next_morning(server: LiveServer, day: date, hour: int = 10, minute: int = 1) -> None:
    """Fast-forward the simulator's clock to ``hour:minute`` (Beijing) of the day after ``day``."""
    clock = requests.get(f"{server.url}/sandbox/control/clock", timeout=10).json()
    now = datetime.fromisoformat(clock["now"])
    target = datetime(day.year, day.month, day.day, hour, minute, tzinfo=BEIJING) + timedelta(days=1)
    seconds = (target - now).total_seconds()
    assert seconds > 0
    answer = requests.post(f"{server.url}/sandbox/control/clock", json={"advance_seconds": seconds}, timeout=10)
    assert answer.status_code == 200, answer.text


def shop_client(server: LiveServer):
    with server.app.test_request_context(base_url=server.url):
        from storefront import gateway

        return gateway.client()


def test_a_days_trade_bill_is_wechats_csv_with_its_hash(live_server, shopper):
    first = paid_order(shopper)
    second = paid_order(shopper, quantity=2)
    day = beijing_today(live_server)
    client = shop_client(live_server)

    with pytest.raises(APIError) as creating:  # the bill of today is made tomorrow at 10:00
        bills.apply_trade_bill(client, day)
    assert (creating.value.status, creating.value.code, creating.value.message) == (400, "STATEMENT_CREATING", "账单生成中")

    next_morning(live_server, day, hour=9, minute=59)
    with pytest.raises(APIError) as still:
        bills.apply_trade_bill(client, day)
    assert still.value.code == "STATEMENT_CREATING"
    next_morning(live_server, day)

    link = bills.apply_trade_bill(client, day, "ALL", gzip_file=False)
    assert link.hash_type == "SHA1" and len(link.hash_value) == 40
    assert link.download_url.startswith(live_server.url + "/sandbox/v3/billdownload/file?token=")
    content = bills.download(client, link)
    assert hashlib.sha1(content).hexdigest() == link.hash_value
    lines = content.decode("utf-8").splitlines()
    assert lines[0] == bills_header("ALL")
    assert lines[-2] == "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
    detail = lines[1:-2]
    assert len(detail) == 2 and all(field.startswith("`") for line in detail for field in line.split(","))
    parsed = bills.parse_trade_bill(content)
    by_no = {row.out_trade_no: row for row in parsed.rows}
    assert set(by_no) == {first["out_trade_no"], second["out_trade_no"]}
    row = by_no[second["out_trade_no"]]
    assert row.trade_state == "SUCCESS" and row.order_total == second["amount_total"]
    assert row.settlement_total == second["amount_total"] and row.coupon_amount == 0
    # 手续费 at the merchant's rate (0.60% by default), rounded to the fen.
    assert row.rate == "0.60%" and row.fee == round(second["amount_total"] * 0.006)
    total = first["amount_total"] + second["amount_total"]
    assert lines[-1].split(",")[0] == "`2" and lines[-1].split(",")[5] == f"`{total / 100:.2f}"
    assert parsed.fees_total == sum(r.fee for r in parsed.rows)

    # gzip when asked: the hash is of the original file, after un-gzipping.
    zipped_link = bills.apply_trade_bill(client, day, "ALL", gzip_file=True)
    raw = client.download(zipped_link.download_url)
    assert raw[:2] == b"\x1f\x8b" and gzip.decompress(raw) == content
    assert bills.download(client, zipped_link) == content

    success_only = bills.download(client, bills.apply_trade_bill(client, day, "SUCCESS"))
    assert success_only.decode().splitlines()[0] == bills_header("SUCCESS")
    with pytest.raises(APIError) as none:  # no refunds that day
        bills.apply_trade_bill(client, day, "REFUND")
    assert (none.value.code, none.value.message) == ("NO_STATEMENT_EXIST", "请求的账单文件不存在")
    with pytest.raises(APIError) as empty:  # a day without transactions
        bills.apply_trade_bill(client, day - timedelta(days=3))
    assert empty.value.code == "NO_STATEMENT_EXIST"
    with pytest.raises(APIError) as bad:
        client.request("GET", "/v3/bill/tradebill", query={"bill_date": "2026/11/30"})
    assert bad.value.code == "PARAM_ERROR"

    fund = bills.download(client, bills.apply_fundflow_bill(client, day))
    fund_lines = fund.decode().splitlines()
    assert fund_lines[0].startswith("记账时间,微信支付业务单号,资金流水单号")
    assert fund_lines[-2] == "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额"


def bills_header(bill_type: str) -> str:
    from storefront.sandbox.bills import TRADE_HEADERS

    return TRADE_HEADERS[bill_type]


def test_a_tampered_download_is_refused_and_the_url_expires(live_server, shopper):
    paid_order(shopper)
    day = beijing_today(live_server)
    next_morning(live_server, day)
    client = shop_client(live_server)
    link = bills.apply_trade_bill(client, day, gzip_file=True)
    original = gzip.decompress(client.download(link.download_url))
    tampered = original.replace(b"`SUCCESS", b"`REFUND", 1)
    with pytest.raises(bills.BillError, match="SHA1"):
        bills.check_file(tampered, link)
    with pytest.raises(bills.BillError, match="SHA1"):
        bills.check_file(gzip.compress(tampered), link)
    with pytest.raises(bills.BillError, match="gzip"):
        bills.check_file(b"\x1f\x8b" + b"not gzip", link)
    # A signed request is never sent to another host.
    from storefront.wechatpay import TransportError

    with pytest.raises(TransportError):
        client.download("http://127.0.0.2:1/sandbox/v3/billdownload/file?token=x")
    # The download is itself a signed call: without the merchant's signature, 401.
    assert requests.get(link.download_url, headers={"Accept": "*/*"}, timeout=10).status_code in (400, 401)
    # The URL lives 5 minutes on the simulator's clock.
    requests.post(f"{live_server.url}/sandbox/control/clock", json={"advance_seconds": 301}, timeout=10)
    with pytest.raises(APIError) as expired:
        client.download(link.download_url)
    assert expired.value.code == "INVALID_REQUEST"


def test_the_wechatpayv3_sdk_downloads_a_bill_and_its_hash_passes(live_server, shopper):
    paid_order(shopper)
    day = beijing_today(live_server)
    next_morning(live_server, day)
    folder = Path(live_server.app.instance_path) / "wechatpay"
    credentials = json.loads((folder / "credentials.json").read_text())
    sdk = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE, mchid=credentials["mchid"],
        private_key=(folder / "apiclient_key.pem").read_text(), cert_serial_no=credentials["merchant_serial"],
        appid=credentials["appid"], apiv3_key=credentials["apiv3_key"], notify_url=live_server.url + "/notify/wechatpay",
        cert_dir=None, timeout=(5, 10), public_key=(folder / "pub_key.pem").read_text(),
        public_key_id=credentials["public_key_id"],
    )
    sdk._core._gate_way = live_server.url + "/sandbox"  # private, pinned by the SDK version in requirements
    code, message = sdk.trade_bill(bill_date=day.isoformat())  # the SDK asks for GZIP and verifies the answer
    assert code == 200, message
    link = json.loads(message)
    code, content = sdk.download_bill(link["download_url"])
    assert code == 200 and isinstance(content, bytes)
    original = gzip.decompress(content)
    assert hashlib.sha1(original).hexdigest() == link["hash_value"]
    assert original.decode("utf-8").startswith("交易时间,公众账号ID,商户号")


def test_reconcile_bill_applies_a_lost_payment_and_reports_a_shop_side_difference(live_server, shopper):
    app = live_server.app
    matched = paid_order(shopper)
    # A payment whose notification is dropped, and whose order page nobody polls.
    lost = shopper.buy(product_id=2)
    lost_payment = shopper.start_native(lost["order_no"])
    assert shopper.pay_in_simulator(lost_payment["out_trade_no"], notify="drop").status_code == 200
    # A shop-side difference: an order the shop holds as paid that WeChat Pay never saw.
    phantom = shopper.buy(product_id=1)
    phantom_payment = shopper.start_native(phantom["order_no"])
    with app.app_context():
        db.session.execute(update(Payment).where(Payment.out_trade_no == phantom_payment["out_trade_no"])
                           .values(status="paid", transaction_id="4200000000000000000000000000", paid_at=datetime
                                   .now(timezone.utc).replace(tzinfo=None)))
        db.session.execute(update(Order).where(Order.order_no == phantom["order_no"]).values(status="paid"))
        db.session.commit()
        assert db.session.scalar(select(Order.status).where(Order.order_no == lost["order_no"])) == "pending"
    day = beijing_today(live_server)
    next_morning(live_server, day)  # the next simulated day, after 10:00

    runner = app.test_cli_runner()
    with app.test_request_context(base_url=live_server.url):
        outcome = runner.invoke(args=["reconcile-bill", "--date", day.isoformat(), "--json"])
    assert outcome.exit_code == 3, outcome.output
    result = json.loads(outcome.output)
    assert result["date"] == day.isoformat() and result["bill_rows"] == 2
    assert result["applied"] == [lost_payment["out_trade_no"]]
    assert result["missing_at_wechat"] == [phantom_payment["out_trade_no"]]
    assert result["amount_mismatch"] == [] and result["refund_mismatch"] == []
    assert result["matched"] == 2 and result["fees_total"] > 0
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == lost["order_no"]))
        assert order.status == "paid" and order.events[-1].cause == "bill"
        run = db.session.scalar(select(ReconciliationRun).where(ReconciliationRun.bill_date == day.isoformat()))
        assert run.status == "differences" and run.applied == 1 and run.differences == 1
    assert matched["out_trade_no"] not in result["missing_at_wechat"]

    # Again: nothing left to apply; the shop-side difference is still there for a person.
    with app.test_request_context(base_url=live_server.url):
        again = runner.invoke(args=["reconcile-bill", "--date", day.isoformat(), "--json"])
    assert again.exit_code == 3 and json.loads(again.output)["applied"] == []

    merchant = MerchantArea(live_server)
    index = merchant.http.get(f"{live_server.url}/merchant/reconciliation", timeout=10).text
    assert day.isoformat() in index
    page = merchant.http.get(f"{live_server.url}/merchant/reconciliation/{day.isoformat()}", timeout=10).text
    assert phantom_payment["out_trade_no"] in page and phantom["order_no"] in page
    assert "商户已收款，微信账单中没有" in page
    # How the bill was had, for a learner: the apply call, the SHA1, the unsigned download, the check.
    assert "/v3/bill/tradebill?bill_date=" in page and 'id="bill-hash"' in page and "一致" in page
    assert "token=…" in page
    csv_text = merchant.http.get(f"{live_server.url}/merchant/reconciliation/{day.isoformat()}.csv", timeout=10).text
    assert f"missing_at_wechat,{phantom_payment['out_trade_no']},{phantom['order_no']}" in csv_text


def test_a_day_the_bill_is_not_ready_is_stored_as_failed_and_exits_1(live_server, shopper):
    paid_order(shopper)
    day = beijing_today(live_server)
    app = live_server.app
    with app.test_request_context(base_url=live_server.url):
        outcome = app.test_cli_runner().invoke(args=["reconcile-bill", "--date", day.isoformat()])
        as_json = app.test_cli_runner().invoke(args=["reconcile-bill", "--date", day.isoformat(), "--json"])
    assert outcome.exit_code == 1 and as_json.exit_code == 1
    assert json.loads(as_json.output)["error"] == "STATEMENT_CREATING: 账单生成中"
    with app.app_context():
        run = reconciliation.run_for(day.isoformat())
        assert run.status == "failed" and "STATEMENT_CREATING" in run.error
        # The scheduler tries a failed day again, but not on every tick.
        morning = (datetime(day.year, day.month, day.day, 10, 30, tzinfo=BEIJING) + timedelta(days=1)
                   ).astimezone(timezone.utc).replace(tzinfo=None)
        run.ran_at = morning
        db.session.commit()
        assert reconciliation.due_today(morning + timedelta(minutes=5)) is None
        assert reconciliation.due_today(morning + timedelta(minutes=11)) == day


def test_yesterday_and_due_today_follow_beijing_time(app):
    with app.app_context():
        assert reconciliation.yesterday(datetime(2026, 11, 30, 17, 0)) == date(2026, 11, 30)  # 01:00 Dec 1 in Beijing
        assert reconciliation.due_today(datetime(2026, 11, 30, 1, 0)) is None  # 09:00 Beijing: too early
        assert reconciliation.due_today(datetime(2026, 11, 30, 2, 30)) == date(2026, 11, 29)


def test_a_wechat_funded_coupon_is_shown_refunded_pro_rata_and_billed(live_server, shopper):
    """Console coupon on: promotion_detail, payer_total < total; the shop shows what the payer paid,
    a refund is split between payer and coupon, and the bill shows 代金券金额."""
    settings = f"{live_server.url}/sandbox/control/settings"
    assert requests.post(settings, json={"coupon_amount": 100}, timeout=10).json()["coupon_amount"] == 100
    order = paid_order(shopper)  # the notification carries payer_total and promotion_detail
    total = order["amount_total"]
    assert shopper.order(order["order_no"])["payer_total"] == total - 100
    client = shop_client(live_server)
    transaction, response = client.query_by_out_trade_no(order["out_trade_no"])
    assert transaction.payer_total == total - 100
    [coupon] = response.data["promotion_detail"]
    assert coupon["amount"] == 100 and coupon["type"] == "NOCASH" and coupon["wechatpay_contribute"] == 100
    assert response.data["amount"] == {"total": total, "payer_total": total - 100, "currency": "CNY",
                                       "payer_currency": "CNY"}

    merchant = MerchantArea(live_server)
    page = merchant.order_page(order["order_no"])
    assert "用户实付" in page
    half = total // 2
    merchant.refund(order["order_no"], f"{half // 100}.{half % 100:02d}")
    with live_server.app.app_context():
        from storefront.models import Refund

        refund = db.session.scalar(select(Refund))
        assert refund.payer_refund == half - half * 100 // total  # the coupon's share goes back to the coupon
    assert "退回用户" in merchant.order_page(order["order_no"])

    day = beijing_today(live_server)
    next_morning(live_server, day)
    parsed = bills.parse_trade_bill(bills.download(client, bills.apply_trade_bill(client, day)))
    payment_row = next(row for row in parsed.rows if not row.is_refund)
    assert (payment_row.order_total, payment_row.coupon_amount, payment_row.settlement_total) == (total, 100, total - 100)
    refund_row = next(row for row in parsed.rows if row.is_refund)
    assert refund_row.refund_requested == half and refund_row.settlement_refund == half - half * 100 // total
    assert refund_row.fee < 0  # the fee on the refunded part comes back
    refunds_only = bills.download(client, bills.apply_trade_bill(client, day, "REFUND"))
    refund_lines = refunds_only.decode().splitlines()
    assert refund_lines[0] == bills_header("REFUND") and len(refund_lines) == 4
    assert bills.parse_trade_bill(refunds_only).rows[0].out_refund_no == refund_row.out_refund_no
    with live_server.app.test_request_context(base_url=live_server.url):
        outcome = live_server.app.test_cli_runner().invoke(args=["reconcile-bill", "--date", day.isoformat(), "--json"])
    assert outcome.exit_code == 0, outcome.output
    assert json.loads(outcome.output)["matched"] == 2


def test_the_console_coupon_toggle_sets_and_clears_the_coupon(live_server):
    import re

    http = requests.Session()
    page = http.get(f"{live_server.url}/sandbox/", timeout=10)
    assert page.status_code == 200 and 'id="coupon-on"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    http.post(f"{live_server.url}/sandbox/console/settings",
              data={"csrf_token": token, "coupon_on": "on", "coupon_amount": "50"}, timeout=10)
    settings = f"{live_server.url}/sandbox/control/settings"
    assert requests.get(settings, timeout=10).json()["coupon_amount"] == 50
    http.post(f"{live_server.url}/sandbox/console/settings",
              data={"csrf_token": token, "coupon_amount": "50"}, timeout=10)  # the box unticked
    assert requests.get(settings, timeout=10).json()["coupon_amount"] == 0


def test_the_dev_scheduler_runs_reconcile_bill_once_a_day_when_due(app, monkeypatch):
    """make run's scheduler: after close-expired and reconcile, the day's bill when it is due."""
    import threading

    from storefront import scheduler
    from storefront.services import jobs

    ran = threading.Event()
    days = []
    monkeypatch.setattr(jobs, "close_expired", lambda: (0, 0))
    monkeypatch.setattr(jobs, "reconcile", lambda: (0, 0))
    monkeypatch.setattr(reconciliation, "due_today", lambda: date(2026, 11, 29))

    def reconcile_day(day):
        days.append(day)
        ran.set()
        return reconciliation.Result(date=day.isoformat()), 0

    monkeypatch.setattr(reconciliation, "reconcile_day", reconcile_day)
    stop = scheduler.start(app, 0.05)
    try:
        assert ran.wait(5)
    finally:
        stop.set()
    assert days[0] == date(2026, 11, 29)


def test_reconcile_bill_refuses_a_tampered_file_and_applies_nothing(live_server, shopper, monkeypatch):
    from storefront.wechatpay.client import Client

    lost = shopper.buy()
    lost_payment = shopper.start_native(lost["order_no"])
    assert shopper.pay_in_simulator(lost_payment["out_trade_no"], notify="drop").status_code == 200
    day = beijing_today(live_server)
    next_morning(live_server, day)
    original = Client.download

    def tampered(self, url):  # a file changed on the way: one amount edited, gzip rebuilt
        return gzip.compress(gzip.decompress(original(self, url)).replace(b"`SUCCESS", b"`REFUND", 1))

    monkeypatch.setattr(Client, "download", tampered)
    app = live_server.app
    with app.test_request_context(base_url=live_server.url):
        outcome = app.test_cli_runner().invoke(args=["reconcile-bill", "--date", day.isoformat(), "--json"])
    assert outcome.exit_code == 1
    assert json.loads(outcome.output)["error"].startswith("BILL_REFUSED: SHA1 of the downloaded bill is")
    with app.app_context():
        assert db.session.scalar(select(Order.status).where(Order.order_no == lost["order_no"])) == "pending"
        assert reconciliation.bill_file(reconciliation.run_for(day.isoformat()))["hash_ok"] is False


def test_a_refund_settling_after_the_bill_was_made_does_not_change_the_bill(live_server, shopper):
    """A day's bill is made once (10:00 the next day): a refund of that day that settles after
    the apply call still downloads as the very file whose hash the apply call gave."""
    order = paid_order(shopper)
    MerchantArea(live_server).refund(order["order_no"], "1.00")
    [refund] = requests.get(f"{live_server.url}/sandbox/control/refunds",
                            params={"out_trade_no": order["out_trade_no"]}, timeout=10).json()["refunds"]
    day = beijing_today(live_server)
    next_morning(live_server, day)
    client = shop_client(live_server)
    link = bills.apply_trade_bill(client, day, "ALL", gzip_file=False)
    settled = requests.post(f"{live_server.url}/sandbox/control/refund",
                            json={"out_refund_no": refund["out_refund_no"], "result": "SUCCESS"}, timeout=10)
    assert settled.status_code in (200, 409), settled.text  # 409: it had settled on its own meanwhile
    content = bills.download(client, link)  # raises BillError if the bytes changed since the hash
    assert hashlib.sha1(content).hexdigest() == link.hash_value
    assert any(row.is_refund for row in bills.parse_trade_bill(content).rows)
    assert bills.download(client, bills.apply_trade_bill(client, day, "ALL", gzip_file=False)) == content


def test_a_bill_download_signed_over_the_path_as_sent_is_accepted(live_server, shopper):
    """An SDK whose API base is the shop's host signs the download URL's whole path,
    ``/sandbox/v3/billdownload/file?token=…``: accepted like every other API call."""
    paid_order(shopper)
    day = beijing_today(live_server)
    next_morning(live_server, day)
    link = bills.apply_trade_bill(shop_client(live_server), day, "ALL", gzip_file=False)
    with live_server.app.test_request_context(base_url=live_server.url):
        from storefront import gateway

        whole_path_signer = gateway.gateway().client(live_server.url)  # signs /sandbox/v3/…
    content = bills.download(whole_path_signer, link)
    assert hashlib.sha1(content).hexdigest() == link.hash_value
