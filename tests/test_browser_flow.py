"""The flow inspector in a real browser: pay an order and watch every step appear, in order.

Playwright drives Debian's Chromium against a live shop + simulator. Screenshots go to
``test-artifacts/``; with ``DOCS_SCREENSHOTS=1`` (``make docs-screenshots``) the ones the docs
show are also written to ``docs/img/``, so the docs never show a stale page. ``DOCS_LANG=en`` runs
the same tests with an English browser (screenshots to ``docs/img/en/``, for docs/en/).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from babel.support import NullTranslations, Translations

from conftest import LiveServer, wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# The browser's language (Accept-Language): zh-CN, or en for the English docs' screenshots.
LANG = os.environ.get("DOCS_LANG", "zh-CN")
DOCS_IMG = ROOT / "docs" / "img" / ("en" if LANG == "en" else "")
DESKTOP = {"viewport": {"width": 1280, "height": 900}, "locale": LANG, "timezone_id": "Asia/Shanghai"}
_CATALOGUE = (Translations.load(str(ROOT / "storefront" / "translations"), ["en"]) if LANG == "en"
              else NullTranslations())


def tr(text: str) -> str:
    """A page text the test expects, in the language of this run (the shop's own catalogue)."""
    return _CATALOGUE.gettext(text)


def require_cjk_fonts() -> None:
    """Docs screenshots without a CJK font would show every Chinese glyph as a box."""
    listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,
                            check=False).stdout if shutil.which("fc-list") else ""
    if not listed.strip():
        pytest.fail("no CJK font (fc-list :lang=zh is empty): install fonts-noto-cjk before taking docs screenshots")
TIMEOUT_MS = 10_000
# Every step of a Native payment, in the order they happen (active queries may come between).
NATIVE_STEPS = ["order_created", "prepay_native", "qr_shown", "payer_paid", "notify_payment", "state"]


@pytest.fixture
def server(make_app):
    live = LiveServer(make_app(SANDBOX_NOTIFIER=True))
    yield live
    live.stop()


def shoot(target, name: str, *, docs: bool = False) -> None:
    """Screenshot a page or one element for humans; with DOCS_SCREENSHOTS=1 also the docs' copy."""
    ARTIFACTS.mkdir(exist_ok=True)
    target.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if docs and os.environ.get("DOCS_SCREENSHOTS") == "1":
        require_cjk_fonts()
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        target.screenshot(path=str(DOCS_IMG / f"{name}.png"))


def new_context(browser, server):
    context = browser.new_context(base_url=server.url, **DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    return context


def step_kinds(page) -> list[str]:
    return page.locator("#flow-steps > li").evaluate_all("items => items.map(i => i.dataset.kind)")


def canonical(shown: str) -> str:
    """A signed string as the page shows it (each line end marked with a visible \\n) back to its bytes."""
    return shown.replace("\\n\n", "\n")


def is_subsequence(wanted: list[str], actual: list[str]) -> bool:
    remaining = iter(actual)
    return all(kind in remaining for kind in wanted)


def buy_first_product(page) -> str:
    """From the home page to the checkout: returns the order number."""
    page.goto("/")
    page.locator(".product-card").first.click()
    page.locator("form[action$='/buy'] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/orders/[^/]+/pay"))
    page.locator("#qr").wait_for()
    return re.search(r"/orders/([^/]+)/pay", page.url).group(1)


def test_pay_and_find_every_step_in_the_inspector(browser, server):
    context = new_context(browser, server)
    shop = context.new_page()
    order_no = buy_first_product(shop)
    shoot(shop, "native-checkout", docs=True)

    # The inspector, open in a second tab before paying: it must update by itself.
    inspector = context.new_page()
    inspector.goto(f"/orders/{order_no}/flow")
    inspector.locator("#flow-steps > li[data-kind=qr_shown]").wait_for()

    with context.expect_page() as scan_tab:
        shop.locator("#open-scan").click()
    scan = scan_tab.value
    scan.locator("#pay").click()
    shop.locator("#paid").wait_for(state="visible")

    inspector.locator("#flow-steps > li[data-kind=notify_payment]").wait_for()
    inspector.locator("#flow-status", has_text=tr("已支付")).wait_for()
    inspector.locator("#flow-steps > li[data-kind=paid_shown]").wait_for()  # the page's last report
    kinds = step_kinds(inspector)
    assert is_subsequence(NATIVE_STEPS[:4], kinds), kinds
    # The notification, or the page's active query if it was faster, marks the order paid;
    # either way both come after the payer paid, and the order changes state exactly once.
    after = kinds[kinds.index("payer_paid"):]
    assert "notify_payment" in after and after.count("state") == 1, kinds
    assert set(kinds) <= set(NATIVE_STEPS) | {"query", "paid_shown"}, kinds

    # Every protocol step: its canonical string(s) and its verification result (in the DOM,
    # folded: text_content reads a closed <details> too).
    for item in inspector.locator("#flow-steps > li").all():
        kind = item.get_attribute("data-kind")
        if kind not in ("prepay_native", "query", "notify_payment"):
            continue
        signed = [canonical(text) for text in item.locator("pre[data-section=signed]").all_text_contents()]
        assert tr("验签通过") in item.text_content() and "PUB_KEY_ID_" in item.text_content()
        if kind == "prepay_native":
            assert signed[0].startswith("POST\n/v3/pay/transactions/native\n"), signed
            assert '"code_url"' in signed[1]
        elif kind == "query":
            assert signed[0].startswith("GET\n/v3/pay/transactions/out-trade-no/"), signed
        else:
            assert re.match(r"\d{10}\n\w+\n\{", signed[0]), signed
            checks = item.locator("li.check").evaluate_all("cs => cs.map(c => [c.dataset.check, c.className])")
            assert [name for name, _ in checks] == ["headers", "serial", "timestamp", "signature", "decrypt",
                                                  "mchid", "appid", "trade_state", "amount", "outcome"]
            assert all("check--ok" in css for _, css in checks), checks
    # The diagram is drawn from the same record: one arrow group per step at least.
    drawn = set(inspector.locator("svg#seq a[data-step]").evaluate_all("xs => xs.map(x => x.dataset.step)"))
    listed = set(inspector.locator("#flow-steps > li").evaluate_all("xs => xs.map(x => x.id.slice(5))"))
    assert drawn == listed
    notify = inspector.locator("#flow-steps > li[data-kind=notify_payment]")
    # Opened and scrolled to by script: an element screenshot of the whole raw message is slow.
    notify.evaluate("li => { li.querySelector('details').open = true; li.scrollIntoView(); window.scrollBy(0, -70); }")
    notify.locator("li.check").first.wait_for()
    shoot(inspector, "flow-notification", docs=True)
    inspector.evaluate("window.scrollTo(0, 0)")
    shoot(inspector, "flow-inspector", docs=True)

    # Another shopper's session cannot open it.
    stranger = new_context(browser, server)
    answer = stranger.new_page().goto(f"{server.url}/orders/{order_no}/flow")
    assert answer.status == 404
    stranger.close()
    context.close()


def test_tour_failure_paths_show_in_the_inspector(browser, make_app):
    # Active queries every second (not 5): the lost callback is found sooner.
    server = LiveServer(make_app(SANDBOX_NOTIFIER=True, ACTIVE_QUERY_INTERVAL_SECONDS=1))
    try:
        tour_failure_paths(browser, server)
    finally:
        server.stop()


def tour_failure_paths(browser, server) -> None:
    context = new_context(browser, server)
    page = context.new_page()
    page.goto("/")
    page.locator("#tour-link").click()
    page.wait_for_url("**/tour")
    assert page.locator("[data-scene=native][data-ready=yes]").count() == 1
    shoot(page, "tour", docs=True)
    page.locator("#scene-native button[type=submit]").click()
    page.wait_for_url(re.compile(r"/tour/native/"))
    flow = page.frame_locator("#flow-frame")
    shop = page.frame_locator("#shop-frame")
    shop.locator("#qr").wait_for()
    flow.locator("#flow-steps > li[data-kind=prepay_native]").wait_for()

    # A tampered callback: refused, with the failed check named.
    page.locator("[data-fault=tamper][data-tamper=body]").click()
    refused = flow.locator("#flow-steps > li[data-kind=notify_payment].flow-step--fail")
    refused.wait_for()
    refused.locator("summary").click()
    assert refused.locator("li.check--fail[data-check=signature]").count() == 1
    page.evaluate("window.scrollTo(0, document.querySelector('.tour__split').offsetTop - 8)")
    shoot(page, "tour-tampered", docs=True)

    # A lost callback: the checkout page's poll makes the shop query, and the query finds it.
    page.locator("[data-fault=drop]").click()
    flow.locator("#flow-status", has_text=tr("已支付")).wait_for()
    kinds = flow.locator("#flow-steps > li").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert is_subsequence(["prepay_native", "notify_payment", "payer_paid", "query", "state"], kinds), kinds
    assert kinds.count("notify_payment") == 1  # only the refused one: the real one was dropped
    shop.locator("#paid").wait_for(state="visible")
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "tour-lost-callback", docs=True)
    context.close()


def test_expired_qr_is_renewed_and_recorded(browser, make_app):
    live = LiveServer(make_app(SANDBOX_NOTIFIER=True, PAYMENT_TTL_SECONDS=4))
    try:
        context = browser.new_context(base_url=live.url, **DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        order_no = buy_first_product(page)
        first = page.locator("#out-trade-no").inner_text()
        # The checkout page renews an expired code by itself (its 刷新二维码 button is the fallback).
        wait_for(lambda: page.locator("#out-trade-no").inner_text() != first, timeout=15)
        shoot(page, "native-renewed")
        flow = context.new_page()
        flow.goto(f"/orders/{order_no}/flow")
        kinds = step_kinds(flow)
        # The page reports the expiry while it asks for a new code: the two race, both are recorded.
        assert is_subsequence(["prepay_native", "qr_shown", "close", "prepay_native"], kinds), kinds
        assert "qr_expired" in kinds, kinds
        close = flow.locator("#flow-steps > li[data-kind=close]").first
        close.locator("summary").click()
        assert "/close" in close.inner_text() and "204" in close.inner_text()
        signed = canonical(close.locator("pre[data-section=signed]").first.inner_text())
        assert signed.startswith("POST\n/v3/pay/transactions/out-trade-no/") and "/close\n" in signed
        context.close()
    finally:
        live.stop()


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "locale": LANG,
         "timezone_id": "Asia/Shanghai",
         "user_agent": ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")}


def test_h5_payment_shows_the_redirect_and_the_return(browser, server):
    """The H5 scene's own steps: its prepay call, leaving for the cashier, coming back."""
    context = browser.new_context(base_url=server.url, **PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    order_no = buy_first_product_h5(page)
    page.locator("#h5-pay").click()
    page.locator("#pay").click()  # the simulator's H5 cashier
    page.wait_for_url(re.compile(r"/pay/result"))
    flow = context.new_page()
    flow.goto(f"/orders/{order_no}/flow")
    flow.locator("#flow-steps > li[data-kind=h5_returned]").wait_for()
    flow.locator("#flow-status", has_text=tr("已支付")).wait_for()
    kinds = step_kinds(flow)
    assert is_subsequence(["order_created", "prepay_h5", "h5_redirect", "payer_paid"], kinds), kinds
    assert "state" in kinds[kinds.index("payer_paid"):], kinds
    prepay = flow.locator("#flow-steps > li[data-kind=prepay_h5]")
    signed = canonical(prepay.locator("pre[data-section=signed]").first.text_content())
    assert signed.startswith("POST\n/v3/pay/transactions/h5\n") and '"payer_client_ip"' in signed
    assert tr("验签通过") in prepay.text_content()
    context.close()


def buy_first_product_h5(page) -> str:
    page.goto("/products/1")
    page.locator("form[action$='/buy'] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/orders/[^/]+/pay"))
    page.locator("#h5-pay").wait_for()
    return re.search(r"/orders/([^/]+)/pay", page.url).group(1)
