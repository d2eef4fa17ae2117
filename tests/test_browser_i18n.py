"""The language switch in a real browser: an English browser gets English, a click on 中文 switches
and the choice is remembered from page to page; the JSAPI page's script speaks the page's language."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

TIMEOUT_MS = 10_000


def test_the_switch_is_remembered_across_pages(browser, live_server):
    context = browser.new_context(base_url=live_server.url, locale="en-US", timezone_id="Asia/Shanghai",
                                  viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "en"  # Accept-Language: en-US
    assert page.locator(".brand").inner_text().strip() == "Hillside Shop"

    page.locator(".lang-switch a[lang=zh-CN]").click()
    page.wait_for_url(re.compile(r"lang=zh-CN"))
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    page.locator(".product-card").first.click()  # a plain link: no ?lang= any more
    assert "lang=" not in page.url
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("form[action$='/buy'] button[type=submit]").inner_text().strip() == "立即购买"

    page.locator(".lang-switch a[lang=en]").click()
    page.wait_for_url(re.compile(r"lang=en"))
    page.locator("form[action$='/buy'] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/orders/[^/]+/pay"))
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Scan with WeChat to pay" in page.content()
    context.close()
    assert errors == []


def test_the_jsapi_page_reports_a_cancel_in_english(browser, live_server):
    """scenes.js takes its words from the page's JSON block: a cancelled payment, said in English."""
    wechat = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Mobile/15E148 MicroMessenger/8.0.50(0x1800323b) NetType/WIFI Language/en")
    context = browser.new_context(base_url=live_server.url, locale="en-US", user_agent=wechat,
                                  viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/products/1")
    page.locator("form[action$='/buy'] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/orders/[^/]+/pay"))
    page.locator("#jsapi-pay").wait_for()  # back from the silent OAuth
    page.locator("#jsapi-pay").click()
    page.locator("#wxsim-cancel").click()  # the simulator's pay sheet: the payer closes it
    page.locator("#bridge-message", has_text="You cancelled the payment").wait_for()
    assert page.locator("html").get_attribute("lang") == "en"
    context.close()
