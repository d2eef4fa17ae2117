"""A QR code that expires mid-checkout renews in place, and the shopper pays the new one.

Playwright (sync API) drives Debian's Chromium against a live shop + simulator whose payment
attempts live 4 seconds. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urljoin

import pytest
from sqlalchemy import select

from conftest import LiveServer
from storefront import gateway
from storefront.extensions import db
from storefront.models import Order, Payment

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DESKTOP = {"viewport": {"width": 1280, "height": 800}, "locale": "zh-CN", "timezone_id": "Asia/Shanghai"}
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.50(0x1800323c) NetType/WIFI Language/zh_CN")
TTL_SECONDS = 4


@pytest.fixture
def short_lived_server(make_app):
    server = LiveServer(make_app(SANDBOX_NOTIFIER=True, PAYMENT_TTL_SECONDS=TTL_SECONDS))
    yield server
    server.stop()


def snap(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def decode_qr(page) -> str:
    """The text of the QR image ``#qr`` currently shows, fetched with the page's cookies."""
    import zxingcpp
    from PIL import Image

    page.wait_for_function(
        "() => { const img = document.getElementById('qr'); return img && img.complete && img.naturalWidth > 0; }")
    answer = page.request.get(urljoin(page.url, page.locator("#qr").get_attribute("src")))
    assert answer.ok and answer.headers["content-type"].startswith("image/png")
    codes = zxingcpp.read_barcodes(Image.open(io.BytesIO(answer.body())))
    assert len(codes) == 1
    return codes[0].text


def test_expired_qr_renews_in_place_and_the_new_one_is_paid(browser, short_lived_server):
    from playwright.sync_api import expect

    server = short_lived_server
    app = server.app
    errors: list[str] = []
    context = browser.new_context(base_url=server.url, **DESKTOP)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        created = page.request.post("/api/orders", data={"product_id": 1, "quantity": 1})
        assert created.status == 201, created.text()
        order_no = created.json()["order_no"]
        page.goto(f"/orders/{order_no}/pay")

        first = page.locator("#out-trade-no").inner_text().strip()
        first_src = page.locator("#qr").get_attribute("src")
        first_code = decode_qr(page)
        expect(page.locator("#open-scan")).to_have_attribute("href", first_code)
        # Every value the countdown shows, and a marker that a reload or navigation would erase.
        page.evaluate("""() => {
            window.__sameDocument = true;
            window.__countdown = [];
            const countdown = document.getElementById('countdown');
            window.__countdown.push(countdown.textContent);
            new MutationObserver(() => window.__countdown.push(countdown.textContent))
                .observe(countdown, {childList: true, characterData: true, subtree: true});
        }""")
        snap(page, "R1-checkout-short-lived-qr")
        # The renewed code lives long enough for a person (and a slow CI machine) to pay it.
        app.config["PAYMENT_TTL_SECONDS"] = 300

        page.wait_for_function("first => document.getElementById('out-trade-no').textContent.trim() !== first",
                               arg=first, timeout=(TTL_SECONDS + 6) * 1000)
        second = page.locator("#out-trade-no").inner_text().strip()
        assert second != first and second.startswith(order_no)
        assert "00:00" in page.evaluate("() => window.__countdown"), "the countdown never reached zero"
        second_src = page.locator("#qr").get_attribute("src")
        assert second_src != first_src and second in second_src
        second_code = decode_qr(page)
        assert second_code != first_code
        expect(page.locator("#open-scan")).to_have_attribute("href", second_code)
        expect(page.locator("#qr-block")).to_be_visible()
        expect(page.locator("#expired")).to_be_hidden()
        expect(page.locator("#countdown")).not_to_have_text("00:00")
        assert page.evaluate("() => window.__sameDocument === true"), "the checkout page reloaded"
        assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1
        snap(page, "R2-checkout-renewed-qr")

        # The old attempt was closed at WeChat Pay before the new one was made.
        with app.app_context():
            old, _response = gateway.client().query_by_out_trade_no(first)
        assert old.trade_state == "CLOSED"

        phone = context.browser.new_context(base_url=server.url, user_agent=WECHAT_UA, locale="zh-CN",
                                            viewport={"width": 390, "height": 844}, is_mobile=True)
        try:
            sheet = phone.new_page()
            sheet.goto(page.locator("#open-scan").get_attribute("href"))
            sheet.locator("#pay").click()
            expect(sheet.locator(".state--success .state__title")).to_have_text("支付成功")
            snap(sheet, "R3-scan-paid-renewed")
        finally:
            phone.close()

        expect(page.locator("#paid")).to_be_visible(timeout=5_000)
        assert page.evaluate("() => window.__sameDocument === true"), "the checkout page reloaded"
        snap(page, "R4-checkout-paid-after-renewal")
    finally:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"

    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        attempts = {p.out_trade_no: p.status for p in db.session.scalars(
            select(Payment).where(Payment.order_id == order.id))}
        # The history as shown: its creation (read from the order row), then each stored change.
        causes = [(e.from_status, e.to_status, e.cause) for e in order.events]
    assert order.status == "paid" and not order.needs_review
    assert attempts == {first: "closed", second: "paid"}
    assert causes == [("", "pending", "shopper"), ("pending", "pending", "shopper"), ("pending", "paid", "notify")]
