"""Real-browser tests of every scene: desktop Native, phone H5, WeChat's in-app browser (JSAPI),
and one order switched from Native to H5 and paid once. Playwright drives Debian's Chromium.

Screenshots of the key pages land in ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import wait_for

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
STEP_TIMEOUT_MS = 10_000
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.50(0x18003237) NetType/WIFI Language/zh_CN")
COMMON = {"locale": "zh-CN", "timezone_id": "Asia/Shanghai"}
DESKTOP = {"viewport": {"width": 1280, "height": 800}, **COMMON}
PHONE = {"viewport": {"width": 390, "height": 844}, "user_agent": PHONE_UA, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2, **COMMON}
WECHAT = {**PHONE, "user_agent": WECHAT_UA}


@pytest.fixture
def live_server(make_app):
    """Shop and simulator on a real loopback server; result pages ask again quickly."""
    from conftest import LiveServer

    server = LiveServer(make_app(SANDBOX_NOTIFIER=True, RETURN_PAGE_QUERY_GAP_MS=150))
    yield server
    server.stop()


@pytest.fixture
def open_context(browser, live_server):
    """Fresh contexts on the live server; a JavaScript error on any page fails the test."""
    opened, errors = [], []

    def factory(**options):
        context = browser.new_context(base_url=live_server.url, **options)
        context.set_default_timeout(STEP_TIMEOUT_MS)
        context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}")))
        opened.append(context)
        return context

    yield factory
    for context in opened:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


def snap(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def buy(page, via_catalog: bool = False) -> str:
    """An order, then its checkout page (scene from the browser's UA); returns the order number.

    ``via_catalog`` walks catalog → product → 立即购买 as a shopper does; otherwise the order is
    made through the JSON API in the same browser session, which is quicker.
    """
    if via_catalog:
        page.goto("/")
        page.locator("a.product-card").first.click()
        page.get_by_role("button", name="立即购买").click()
    else:
        order_no = page.request.post("/api/orders", data={"product_id": 1, "quantity": 1}).json()["order_no"]
        page.goto(f"/orders/{order_no}/pay")
    page.wait_for_url(re.compile(r"/orders/[^/]+/pay"))
    return re.search(r"/orders/([^/?]+)/pay", page.url).group(1)


def order_status(page, order_no: str) -> str:
    return page.request.get(f"/api/orders/{order_no}").json()["status"]


def pay_in_h5_cashier(page, live_server, order_no: str, shot: str) -> None:
    """From the H5 checkout page: to WeChat's cashier, pay, and back to the result page."""
    from playwright.sync_api import expect

    page.locator("#h5-pay").click()
    page.wait_for_url(re.compile(r"/sandbox/cgi-bin/mmpayweb-bin/checkmweb\?"))
    expect(page.locator(".sheet__amount")).to_be_visible()
    snap(page, f"{shot}-cashier")
    page.locator("#pay").click()
    page.wait_for_url(f"{live_server.url}/orders/{order_no}/pay/result")
    expect(page.locator("#paid")).to_be_visible()
    expect(page.locator("#paid .result__title")).to_have_text("支付成功")
    snap(page, f"{shot}-returned-paid")


def test_desktop_native(open_context, live_server):
    from playwright.sync_api import expect

    page = open_context(**DESKTOP).new_page()
    order_no = buy(page)
    expect(page.locator("#qr")).to_be_visible()
    expect(page.locator(".scene-switch__item--current")).to_have_text("扫码支付")
    code_url = page.locator("#open-scan").get_attribute("href")
    phone = open_context(**WECHAT).new_page()
    phone.goto(code_url)
    phone.locator("#pay").click()
    expect(page.locator("#paid")).to_be_visible()
    snap(page, "S1-desktop-native-paid")
    assert order_status(page, order_no) == "paid"


def test_phone_h5_through_the_cashier(open_context, live_server):
    from playwright.sync_api import expect

    page = open_context(**PHONE).new_page()
    order_no = buy(page, via_catalog=True)
    expect(page.locator(".scene-switch__item--current")).to_have_text("手机浏览器支付")
    expect(page.locator("#h5-pay")).to_be_visible()
    snap(page, "S2-phone-h5-checkout")
    pay_in_h5_cashier(page, live_server, order_no, "S2-phone-h5")
    assert order_status(page, order_no) == "paid"


def test_wechat_in_app_jsapi_with_oauth_and_the_pay_sheet(open_context, live_server):
    from playwright.sync_api import expect

    page = open_context(**WECHAT).new_page()
    visited = []
    page.on("request", lambda request: visited.append(request.url) if request.is_navigation_request() else None)
    order_no = buy(page)
    # snsapi_base: through the authorize page and the callback, silently, back to checkout.
    expect(page.locator("#jsapi-pay")).to_be_visible()
    assert any("/sandbox/connect/oauth2/authorize?" in url for url in visited), visited
    assert any("/oauth/wechat/callback?code=" in url for url in visited), visited
    expect(page.locator(".scene-switch__item--current")).to_have_text("微信内支付")
    assert page.evaluate("() => window.WeixinJSBridge && window.WeixinJSBridge._simulated") is True

    # Cancel in the sheet: the order stays pending and payable.
    page.locator("#jsapi-pay").click()
    expect(page.locator("#wxsim-sheet")).to_be_visible()
    snap(page, "S3-wechat-pay-sheet")
    page.locator("#wxsim-cancel").click()
    expect(page.locator("#wxsim-sheet")).to_have_count(0)
    expect(page.locator("#bridge-message")).to_contain_text("您已取消支付")
    assert order_status(page, order_no) == "pending"

    # The sheet as WeChat's: 支付 first, the simulator's other outcomes in a secondary menu.
    page.locator("#jsapi-pay").click()
    expect(page.locator("#wxsim-pay")).to_be_visible()
    expect(page.locator("#wxsim-fail")).to_be_hidden()
    # A failure in the sheet (balance): clear words, said once, still payable.
    page.locator("#wxsim-other summary").click()
    expect(page.locator("#wxsim-bank-error")).to_have_text("银行系统异常")  # the scan page's words
    page.locator("#wxsim-fail").click()
    expect(page.locator("#bridge-message")).to_contain_text("支付未完成")
    message = page.locator("#bridge-message").inner_text()
    assert message.count("支付方式") <= 1, message  # not "请更换支付方式…请换用其他支付方式"
    assert order_status(page, order_no) == "pending"

    # A bank error: the same, with the same clear words.
    page.locator("#jsapi-pay").click()
    page.locator("#wxsim-other summary").click()
    page.locator("#wxsim-bank-error").click()
    expect(page.locator("#bridge-message")).to_contain_text("支付未完成")
    assert order_status(page, order_no) == "pending"

    # Still typing the password: no callback yet, and WeChat Pay's query says NOTPAY meanwhile
    # (USERPAYING is for payment-code orders); the sheet goes through after a moment by itself.
    page.locator("#jsapi-pay").click()
    page.locator("#wxsim-other summary").click()
    page.locator("#wxsim-userpaying").click()
    expect(page.locator("#wxsim-note")).to_contain_text("支付处理中")
    assert order_status(page, order_no) == "pending"

    # Pay: 支付, then the 6-digit password (finishing from the password screen). :ok is only a
    # hint, the page shows paid once the server confirms.
    page.locator("#wxsim-pay").click()
    expect(page.locator("#wxsim-title")).to_have_text("请输入支付密码")
    page.locator("#wxsim-password").fill("123456")
    expect(page.locator("#paid")).to_be_visible()
    snap(page, "S3-wechat-jsapi-paid")
    assert order_status(page, order_no) == "paid"


def test_one_order_switched_from_native_to_h5_is_paid_once(open_context, live_server, shopper):
    from playwright.sync_api import expect

    page = open_context(**PHONE).new_page()
    order_no = page.request.post("/api/orders", data={"product_id": 1, "quantity": 1}).json()["order_no"]
    page.goto(f"/orders/{order_no}/pay?method=native")
    expect(page.locator("#qr")).to_be_visible()
    native_code_url = page.locator("#open-scan").get_attribute("href")
    page.locator("#switch-h5").click()
    expect(page.locator("#h5-pay")).to_be_visible()
    pay_in_h5_cashier(page, live_server, order_no, "S4-switched")

    # The Native attempt was closed at WeChat Pay before the H5 one started: it can no longer be paid.
    phone = open_context(**WECHAT).new_page()
    phone.goto(native_code_url)
    expect(phone.locator(".state__title")).to_have_text("订单已关闭")
    from storefront.extensions import db
    from storefront.models import Order

    with live_server.app.app_context():
        order = db.session.scalar(db.select(Order).where(Order.order_no == order_no))
        attempts = sorted((p.out_trade_no[-3:], p.method, p.status) for p in order.payments)
        assert attempts == [("P01", "native", "closed"), ("P02", "h5", "paid")]
        assert order.status == "paid" and not order.needs_review
    paid_notes = [n for p in ("P01", "P02") for n in shopper.notifications(f"{order_no}{p}")]
    assert len(paid_notes) == 1 and paid_notes[0]["out_trade_no"].endswith("P02")
    assert wait_for(lambda: shopper.notifications(f"{order_no}P02")[0]["state"] == "delivered")


def test_h5_cancelled_in_the_cashier_then_i_have_paid(open_context, live_server, shopper):
    """Back from WeChat without paying: bounded checks, then 已完成支付 / 重新支付; a later payment shows."""
    from playwright.sync_api import expect

    page = open_context(**PHONE).new_page()
    order_no = buy(page)
    page.locator("#h5-pay").click()
    page.locator("#cancel").click()
    page.wait_for_url(f"{live_server.url}/orders/{order_no}/pay/result")
    expect(page.locator("#unconfirmed")).to_be_visible()
    expect(page.locator("#pay-again")).to_be_visible()
    page.locator("#i-have-paid").click()
    expect(page.locator("#still-pending")).to_be_visible()
    snap(page, "S5-h5-return-unconfirmed")
    out_trade_no = page.request.get(f"/api/orders/{order_no}").json()["order_no"] + "P01"
    assert shopper.pay_in_simulator(out_trade_no).status_code == 200
    wait_for(lambda: order_status(page, order_no) == "paid")
    page.locator("#i-have-paid").click()
    expect(page.locator("#paid")).to_be_visible()
