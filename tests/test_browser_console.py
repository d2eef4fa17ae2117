"""The simulator's console and the merchant area in a real browser (Playwright driving Chromium).

A learner's tour: a payment and a refund happen; the console lists the calls (with the canonical
string verified), the transaction, the refund and every delivery; its buttons rotate the
certificate, send a probe (refused), fast-forward and resend. The merchant logs in with the
demo password the console shows and refunds part of an order in yuan.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import wait_for

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DESKTOP = {"viewport": {"width": 1280, "height": 900}, "locale": "zh-CN", "timezone_id": "Asia/Shanghai"}
TIMEOUT_MS = 10_000


@pytest.fixture
def page(browser):
    context = browser.new_context(**DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == []


def reloaded(tab, selector: str) -> str:
    """The text of ``selector`` after reloading the page (the console does not poll by itself)."""
    tab.reload()
    return tab.locator(selector).inner_text()


def shot(tab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_console_tour(live_server, shopper, page):
    order = shopper.buy(product_id=1)
    payment = shopper.start_native(order["order_no"])
    assert shopper.pay_in_simulator(payment["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    wait_for(lambda: shopper.notifications(payment["out_trade_no"])[0]["state"] == "delivered")

    page.goto(f"{live_server.url}/sandbox/")
    assert page.locator("h1").inner_text() == "微信支付模拟器"
    calls = page.locator("tr.call-row")
    assert calls.count() >= 1
    assert "/v3/pay/transactions/native" in page.locator("#calls + .scroll").inner_text()
    assert payment["out_trade_no"] in page.locator("#transactions + .scroll").inner_text()
    assert "SUCCESS" in page.locator("#transactions + .scroll").inner_text()
    assert "delivered" in page.locator("#notifications + .scroll").inner_text()
    password = page.locator("#merchant-password").inner_text()
    assert len(password) == 16
    shot(page, "index")

    # One call in detail: the canonical string the signature was verified over, line by line.
    page.locator("tr.call-row a").filter(has_text="/v3/pay/transactions/native").first.click()
    assert "验签通过" in page.locator("#auth-result").inner_text()
    assert page.locator("#signed-message").inner_text().startswith("POST↵")
    shot(page, "call")
    page.go_back()

    # Rotate the platform certificate: the new one signs, the old one is listed in the overlap.
    page.locator("#rotate-cert").click()
    page.wait_for_selector("text=已签发新的平台证书")
    assert page.locator("tr.cert-row").count() == 2
    assert "过渡期列出" in page.locator("#keys").inner_text()

    # A probe notification: the shop must refuse it, and the console says it did.
    page.locator("#send-probe").click()
    page.wait_for_selector("text=已发送探测通知")
    wait_for(lambda: "商户已拒绝" in reloaded(page, "#notifications + .scroll"))
    shot(page, "probe")

    # Fast-forward: the simulator clock moves, the console says by how much.
    page.locator("form.inline button", has_text="+1 小时").click()
    page.wait_for_selector("text=时钟已快进 3600 秒")
    assert "已快进" in page.locator("#clock").inner_text()

    # Resend a delivered notification now: one more delivery row on its page.
    page.locator("tr.notification-row--delivered a").first.click()
    before = page.locator("tr.delivery-row").count()
    page.locator("#resend").click()
    page.wait_for_selector("text=将立即重新投递")
    wait_for(lambda: (page.reload(), page.locator("tr.delivery-row").count())[1] == before + 1)
    shot(page, "notification")

    # The merchant area, with the demo password the console showed: refund 12.34 of the order.
    page.goto(f"{live_server.url}/merchant/")
    page.fill("#password", password)
    page.locator("#login").click()
    page.wait_for_selector("text=订单管理")
    page.locator("tr.merchant-order a", has_text=order["order_no"]).click()
    page.fill("#refund-amount", "12.34")
    page.fill("#refund-reason", "包装破损")
    page.locator("#refund-submit").click()
    page.wait_for_selector("text=已提交退款")
    wait_for(lambda: "¥12.34" in reloaded(page, "#amount-refunded"))
    assert "¥75.66" in page.locator("#refundable").inner_text()
    assert "部分退款" in page.locator("#order-status").inner_text()
    assert "退款成功" in page.locator("#refunds").inner_text()
    shot(page, "merchant-order")

    page.goto(f"{live_server.url}/sandbox/")
    assert "12.34" in page.locator("#refunds + .scroll").inner_text()
    assert "REFUND.SUCCESS" in page.locator("#notifications + .scroll").inner_text()
