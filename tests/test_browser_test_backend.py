""""测试你自己的后端" in a real browser: a merchant's backend, its order on the page, the grader run
from the console, and the report with a failed signature's two strings side by side.

With ``DOCS_SCREENSHOTS=1`` (``make docs-screenshots``) the page and the report are written to
``docs/img/`` for docs/zh/test-your-backend.md (``DOCS_LANG=en``: ``docs/img/en/``, for docs/en/).
"""

from __future__ import annotations

import time

import pytest
import requests
from test_browser_flow import new_context, shoot, tr

from conftest import module_server
from merchant_backends import Backend
from storefront.wechatpay import keys, signing

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def shop(tmp_path_factory, instance_template):
    yield from module_server(tmp_path_factory, instance_template, SANDBOX_NOTIFIER=True)


def test_console_runs_the_grader_and_shows_the_report(browser, shop):
    answer = requests.post(shop.url + "/sandbox/control/merchants", json={"name": "示例商户后端"}, timeout=30)
    kit = answer.json() | {}
    kit.update(private_key=kit["apiclient_key_pem"], public_key=kit["pub_key_pem"])
    backend = Backend(kit, kit["api_base_mounted"])
    context = new_context(browser, shop)
    try:
        page = context.new_page()
        page.goto(f"/sandbox/backends?mchid={kit['mchid']}")
        assert page.locator("tr.order-row").count() == 0
        out_trade_no = backend.order(total=8800, description="云南小粒咖啡豆 500g")
        # The order arrives on the open page by itself (no reload).
        page.locator("tr.order-row", has_text=out_trade_no).wait_for()
        # One query signed without the final \n: the report shows its diagnosis.
        url = f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={kit['mchid']}"
        timestamp, nonce = str(int(time.time())), signing.new_nonce()
        message = signing.request_message("GET", url, timestamp, nonce, "")[:-1]
        signature = signing.sign(keys.load_private_key(kit["private_key"].encode()), message)
        refused = requests.get(shop.url + "/sandbox" + url, timeout=10, headers={
            "Accept": "application/json", "User-Agent": "my-backend/0.1",
            "Authorization": f'{signing.AUTH_SCHEME} mchid="{kit["mchid"]}",nonce_str="{nonce}",'
                             f'timestamp="{timestamp}",serial_no="{kit["merchant_serial"]}",signature="{signature}"'})
        assert refused.status_code == 401

        page.reload()
        row = page.locator("tr.order-row", has_text=out_trade_no)
        assert row.count() == 1
        assert page.locator("tr.call-row", has_text="missing_trailing_newline").count() == 1
        shoot(page, "test-backend", docs=True)

        row.get_by_role("button", name=tr("运行检查")).click()
        page.wait_for_url("**/backends/reports/*")
        assert tr("未通过") in page.locator(".verdict").inner_text()
        failure = page.locator("section.failure#requests_signed")
        assert "missing_trailing_newline" in failure.inner_text()
        assert failure.locator("mark.diff").count() == 2  # the difference, marked on each side
        page.set_viewport_size({"width": 1100, "height": 900})
        shoot(page, "grader-report", docs=True)
        failure.scroll_into_view_if_needed()
        shoot(failure, "grader-report-failure", docs=True)
    finally:
        context.close()
        backend.stop()
