"""The payer "still typing the password" in a real browser: the order stays NOTPAY at WeChat Pay
(USERPAYING is for payment-code orders only), then the payment goes through by itself."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect
from test_browser_flow import new_context
from test_sandbox_api import Merchant, new_out_trade_no

from conftest import LiveServer

pytestmark = pytest.mark.browser


def test_a_payer_typing_the_password_pays_a_moment_later(browser, make_app):
    server = LiveServer(make_app())
    try:
        merchant = Merchant(server)
        out_trade_no = new_out_trade_no()
        code_url = merchant.prepay(out_trade_no).data["code_url"]
        context = new_context(browser, server)
        page = context.new_page()
        page.goto(code_url)
        page.locator(".payer-choices summary").click()
        page.locator("#fail-userpaying").click()
        expect(page.locator("#message")).to_contain_text("付款人正在输入密码")
        assert merchant.client.query_by_out_trade_no(out_trade_no)[0].trade_state == "NOTPAY"
        expect(page.locator(".state--success")).to_be_visible(timeout=10_000)
        assert merchant.client.query_by_out_trade_no(out_trade_no)[0].trade_state == "SUCCESS"
        assert requests.get(f"{server.url}/sandbox/control/notifications", params={"out_trade_no": out_trade_no},
                            timeout=10).json()["notifications"]
        context.close()
    finally:
        server.stop()
