"""A newcomer in a real browser: the JSAPI tour with the inspector open, twenty times without a
failure; every scene from a desktop browser (模拟微信内打开, the simulated mini program); a
double click that makes one order; axe-core finding no serious or critical violation on any
page; the sequence diagram readable on a phone.

Playwright drives Debian's Chromium. axe-core comes from the npm registry (pinned, cached in
``~/.cache/storefront-test/``; ``AXE_CORE_JS`` names an axe.min.js to use instead).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
AXE_VERSION = "4.10.3"
AXE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "storefront-test" / f"axe-{AXE_VERSION}"
TIMEOUT_MS = 15_000
COMMON = {"locale": "zh-CN", "timezone_id": "Asia/Shanghai"}
DESKTOP = {"viewport": {"width": 1280, "height": 800}, **COMMON}
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
PHONE = {"viewport": {"width": 390, "height": 844}, "user_agent": PHONE_UA, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2, **COMMON}


@pytest.fixture(scope="module")
def server(tmp_path_factory, instance_template):
    from conftest import module_server

    yield from module_server(tmp_path_factory, instance_template, SANDBOX_NOTIFIER=True,
                             ACTIVE_QUERY_INTERVAL_SECONDS=1, RETURN_PAGE_QUERY_GAP_MS=200)


@pytest.fixture
def open_context(browser, server):
    opened, errors = [], []

    def factory(**options):
        context = browser.new_context(base_url=server.url, **(options or DESKTOP))
        context.set_default_timeout(TIMEOUT_MS)
        context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}")))
        opened.append(context)
        return context

    yield factory
    for context in opened:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


def snap(page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def kinds(frame) -> list[str]:
    return frame.locator("#flow-steps > li").evaluate_all("items => items.map(i => i.dataset.kind)")


def start_tour(page, scene: str) -> str:
    page.goto("/tour")
    page.locator(f"#scene-{scene} button[type=submit]").click()
    page.wait_for_url(re.compile(rf"/tour/{scene}/"))
    return page.url.rsplit("/", 1)[-1]


# -- item: sessions that cannot race --------------------------------------------------------------


def test_jsapi_tour_with_the_inspector_open_twenty_times(open_context, server):
    """Each run: a fresh browser, the tour's JSAPI step, 模拟微信内打开 (the page reloads, so both
    frames load at once: the inspector polls while the shop frame goes through OAuth)."""
    failures = []
    for run in range(20):
        context = open_context()
        page = context.new_page()
        order_no = start_tour(page, "jsapi")
        page.locator(".tour__actions .wechat-switch__button").click()
        page.wait_for_url(re.compile(rf"/tour/jsapi/{order_no}"))
        shop = page.frame_locator("#shop-frame")
        shop.locator("#jsapi-pay, #wechat-notice, .error-page").first.wait_for()
        if shop.locator("#jsapi-pay").count() != 1:
            failures.append((run, shop.locator("body").inner_text()[:200]))
        elif run == 19:
            flow = page.frame_locator("#flow-frame")
            flow.locator("#flow-steps > li[data-kind=pay_sign]").wait_for()
            page.locator("[data-action=click][data-target='#jsapi-pay']").click()
            shop.locator("#wxsim-pay").click()
            shop.locator("#wxsim-password").fill("123456")
            shop.locator("#paid").wait_for(state="visible")
            flow.locator("#flow-status", has_text="已支付").wait_for()
            found = kinds(flow)
            for kind in ("oauth_authorize", "oauth_callback", "oauth_token", "prepay_jsapi", "pay_sign",
                         "bridge_invoke", "notify_payment"):
                assert kind in found, (kind, found)
            snap(page, "N1-jsapi-tour-paid", full_page=False)
        context.close()
    assert not failures, failures


# -- item: the tour works in any browser ------------------------------------------------------


def test_mini_program_tour_in_a_desktop_browser(open_context):
    page = open_context().new_page()
    start_tour(page, "miniprogram")
    shop = page.frame_locator("#shop-frame")
    shop.locator("#mp-pay").wait_for()
    page.locator("[data-action=click][data-target='#mp-pay']").click()
    shop.locator("#wxsim-pay").click()
    shop.locator("#wxsim-password").fill("654321")
    shop.locator("#paid").wait_for(state="visible")
    flow = page.frame_locator("#flow-frame")
    flow.locator("#flow-steps > li[data-kind=requestpayment_result]").wait_for()
    found = kinds(flow)
    assert [k for k in found if k in ("jscode2session", "prepay_jsapi", "pay_sign", "requestpayment_invoke")] == [
        "jscode2session", "prepay_jsapi", "pay_sign", "requestpayment_invoke"], found
    snap(page, "N2-miniprogram-tour-paid", full_page=False)


def test_native_tour_guide_opens_the_scan_page_and_the_inspector_follows(open_context):
    context = open_context()
    page = context.new_page()
    start_tour(page, "native")
    page.frame_locator("#shop-frame").locator("#qr").wait_for()
    # One header: the frames do not repeat the shop's banner and header.
    assert page.frame_locator("#shop-frame").locator(".site-header").is_hidden()
    with context.expect_page() as opened:
        page.locator("[data-action=open-scan]").click()
    scan = opened.value
    scan.wait_for_load_state()
    assert "/sandbox/" in scan.url and scan.locator("h1").count() >= 1
    scan.locator("#pay").click()
    flow = page.frame_locator("#flow-frame")
    flow.locator("#flow-status", has_text="已支付").wait_for()
    flow.locator("#flow-steps > li.flow-step--new").first.wait_for()  # highlighted as it arrived
    from playwright.sync_api import expect

    shop = page.frame_locator("#shop-frame")
    expect(shop.locator("#paid")).to_be_visible()
    expect(shop.locator("#summary-title")).to_have_text("订单已支付")  # no longer 确认订单
    expect(shop.locator("#summary-total-label")).to_have_text("实付金额")
    expect(shop.locator("#paid-what")).to_contain_text("支付 ¥")
    snap(page, "N3-native-tour-paid", full_page=False)


# -- item: a shop a shopper trusts ----------------------------------------------------------


def _order_count(server) -> int:
    from sqlalchemy import func, select

    from storefront.extensions import db
    from storefront.models import Order

    with server.app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Order))
        db.session.remove()
        return count


def test_a_double_click_on_buy_makes_one_order(open_context, server):
    before = _order_count(server)
    page = open_context().new_page()
    page.goto("/products/1")
    # A slow network: hold the buy request a moment, so the second click lands while it is out.
    page.route("**/products/1/buy", lambda route: (page.wait_for_timeout(400), route.continue_()))
    button = page.get_by_role("button", name="立即购买")
    button.dblclick()
    page.wait_for_url(re.compile(r"/orders/[^/]+/pay"))
    page.locator("#qr").wait_for()
    assert _order_count(server) == before + 1


def test_phone_sees_a_readable_diagram_that_scrolls_sideways(open_context, server):
    page = open_context(**PHONE).new_page()
    order_no = page.request.post("/api/orders", data={"product_id": 1, "quantity": 1}).json()["order_no"]
    page.goto(f"/orders/{order_no}/pay?method=native")
    assert page.get_by_text("电脑没有摄像头").count() == 0
    page.goto(f"/orders/{order_no}/flow")
    box = page.locator("#seq").bounding_box()
    assert box["width"] >= 600  # not shrunk to the phone's width: 12 px labels stay 12 px
    scroller = page.locator(".seq-scroll")
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth")
    # ...while the page itself does not scroll sideways.
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    snap(page, "N4-phone-flow")


# -- item: accessibility ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def axe_source() -> str:
    configured = os.environ.get("AXE_CORE_JS")
    path = Path(configured) if configured else AXE_CACHE / "node_modules" / "axe-core" / "axe.min.js"
    if not path.is_file() and not configured:
        npm = shutil.which("npm")
        if npm is None:
            _unavailable("npm is not installed (apt-get install npm), and AXE_CORE_JS is not set")
        AXE_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(AXE_CACHE),
                               f"axe-core@{AXE_VERSION}"], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            _unavailable(f"npm install axe-core@{AXE_VERSION} failed: {done.stderr[-300:]}")
    if not path.is_file():
        _unavailable(f"no axe.min.js at {path}")
    return path.read_text(encoding="utf-8")


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"axe-core unavailable: {reason}", pytrace=False)
    pytest.skip(f"axe-core unavailable: {reason}")


def serious_violations(page, axe_source: str) -> list[str]:
    page.evaluate(axe_source)  # through DevTools: no Content-Security-Policy stands in the way
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))""")
    return found


def test_axe_finds_no_serious_violation_on_any_page(open_context, server, axe_source):
    context = open_context()
    page = context.new_page()
    found: dict[str, list[str]] = {}

    def check(name: str, target=None) -> None:
        target = target or page
        target.wait_for_load_state()
        found[name] = serious_violations(target, axe_source)

    page.goto("/")
    check("home")
    page.goto("/products/1")
    check("product")
    page.get_by_role("button", name="立即购买").click()
    page.locator("#qr").wait_for()
    check("checkout-native")
    order_no = re.search(r"/orders/([^/]+)/pay", page.url).group(1)
    page.goto(f"/orders/{order_no}/pay?method=h5")
    check("checkout-h5")
    page.goto(f"/orders/{order_no}/pay?method=miniprogram")
    check("checkout-miniprogram")
    page.goto(f"/orders/{order_no}/pay?method=jsapi")  # the simulator's WeChat-only notice
    check("wechat-notice")
    page.locator("#emulate-wechat").click()
    page.locator("#jsapi-pay").wait_for()
    check("checkout-jsapi")
    page.locator("#jsapi-pay").click()
    page.locator("#wxsim-pay").click()
    check("jsapi-pay-sheet")
    page.locator("#wxsim-password").fill("123456")
    page.locator("#paid").wait_for(state="visible")
    check("checkout-paid")
    page.goto(f"/orders/{order_no}")
    check("order-paid")
    page.goto(f"/orders/{order_no}/flow")
    page.locator("#flow-steps > li").first.wait_for()
    page.locator("#flow-steps details").first.evaluate("d => d.open = true")
    check("flow")
    page.goto("/tour")
    check("tour")
    start_tour(page, "native")
    check("tour-native")
    page.goto("/sandbox/")
    check("console")
    page.goto("/docs/")
    check("docs")
    page.goto("/docs/jsapi")
    check("docs-jsapi")
    password = (Path(server.app.instance_path) / "merchant_password").read_text().strip()
    page.goto("/merchant/login")
    check("merchant-login")
    page.locator("input[name=password]").fill(password)
    page.locator("#login").click()
    page.wait_for_url(re.compile(r"/merchant/?$"))
    check("merchant")
    page.goto(f"/merchant/orders/{order_no}")
    check("merchant-order")
    phone = open_context(**PHONE).new_page()
    other = phone.request.post("/api/orders", data={"product_id": 1, "quantity": 1}).json()["order_no"]
    phone.goto(f"/orders/{other}/pay")
    check("phone-checkout-h5", phone)
    phone.goto(f"/orders/{other}/flow")
    check("phone-flow", phone)
    phone.goto("/sandbox/")
    check("phone-console", phone)
    phone.goto(f"/tour/native/{other}")
    check("phone-tour", phone)
    bad = {name: issues for name, issues in found.items() if issues}
    assert not bad, bad


def test_merchant_refund_page_refreshes_itself_until_the_refund_settles(open_context, server):
    from playwright.sync_api import expect

    page = open_context().new_page()
    order_no = page.request.post("/api/orders", data={"product_id": 1, "quantity": 1}).json()["order_no"]
    out_trade_no = page.request.post(f"/api/orders/{order_no}/payments", data={"method": "native"}).json()[
        "out_trade_no"]
    assert page.request.post("/sandbox/control/pay", data={"out_trade_no": out_trade_no, "result": "SUCCESS"}).ok
    wait_for(lambda: page.request.get(f"/api/orders/{order_no}").json()["status"] == "paid")
    password = (Path(server.app.instance_path) / "merchant_password").read_text().strip()
    page.goto("/merchant/login")
    page.locator("input[name=password]").fill(password)
    page.locator("#login").click()
    page.goto(f"/merchant/orders/{order_no}")
    page.locator("#refund-amount").fill("1.00")
    page.locator("#refund-submit").click()
    # Nobody reloads: the page does, while the refund is 退款处理中, and stops once it settled.
    expect(page.locator(".badge--refund-success")).to_be_visible(timeout=30_000)
    expect(page.locator("#auto-refresh")).to_have_count(0)


def test_h5_tour_from_a_desktop_browser(open_context):
    context = open_context()
    page = context.new_page()
    start_tour(page, "h5")
    shop = page.frame_locator("#shop-frame")
    shop.locator("#h5-pay").wait_for()
    # WeChat's cashier refuses to be framed: the guide's button opens it in a tab of its own.
    with context.expect_page() as opened:
        page.locator("[data-action=click][data-target='#h5-pay']").click()
    cashier = opened.value
    cashier.locator("#pay").click()
    cashier.locator("#paid").wait_for(state="visible")  # back on the shop's result page
    flow = page.frame_locator("#flow-frame")
    flow.locator("#flow-status", has_text="已支付").wait_for()
    found = kinds(flow)
    assert "h5_redirect" in found and "prepay_h5" in found, found
