"""The merchant's reconciliation page in a real browser: a lost payment applied from the bill and a
shop-side difference, as a merchant sees them the next (simulated) day. Retakes the docs' screenshot
``docs/img/reconciliation.png`` with ``DOCS_SCREENSHOTS=1`` (``make docs-screenshots``)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import update
from test_bills import beijing_today, next_morning
from test_browser_flow import new_context, shoot
from test_refunds import paid_order

from conftest import LiveServer, Shopper
from storefront.extensions import db
from storefront.models import Order, Payment

pytestmark = pytest.mark.browser


def test_the_merchant_reconciles_a_day_and_sees_what_was_applied_and_what_differs(browser, make_app):
    server = LiveServer(make_app(SANDBOX_NOTIFIER=True))
    try:
        shopper = Shopper(server.url)
        paid_order(shopper)
        lost = shopper.buy(product_id=2)
        lost_payment = shopper.start_native(lost["order_no"])
        assert shopper.pay_in_simulator(lost_payment["out_trade_no"], notify="drop").status_code == 200
        phantom = shopper.buy(product_id=1)
        phantom_payment = shopper.start_native(phantom["order_no"])
        with server.app.app_context():
            db.session.execute(update(Payment).where(Payment.out_trade_no == phantom_payment["out_trade_no"]).values(
                status="paid", transaction_id="4200000000000000000000000000",
                paid_at=datetime.now(timezone.utc).replace(tzinfo=None)))
            db.session.execute(update(Order).where(Order.order_no == phantom["order_no"]).values(status="paid"))
            db.session.commit()
        day = beijing_today(server)
        next_morning(server, day)

        context = new_context(browser, server)
        page = context.new_page()
        page.goto("/merchant/reconciliation")
        page.fill("input[name=password]", (Path(server.app.instance_path) / "merchant_password").read_text().strip())
        page.locator("#login").click()  # the login form's button (the banner has a form too)
        page.wait_for_url("**/merchant/reconciliation")
        page.fill("#reconcile-date", day.isoformat())
        page.click("#reconcile-submit")
        page.wait_for_url(f"**/merchant/reconciliation/{day.isoformat()}")
        assert page.locator("#count-applied").inner_text() == "1"
        assert page.locator("#count-differences").inner_text() == "1"
        assert lost_payment["out_trade_no"] in page.locator("#reconciliation-applied").inner_text()
        row = page.locator(".reconciliation-difference[data-kind=missing_at_wechat]")
        assert phantom_payment["out_trade_no"] in row.inner_text()
        row.locator("a").click()  # to the order the difference is about
        page.wait_for_url(f"**/merchant/orders/{phantom['order_no']}")
        page.go_back()
        page.set_viewport_size({"width": 1280, "height": 1500})  # the whole day's page in one picture
        page.evaluate("window.scrollTo(0, 0)")
        shoot(page, "reconciliation", docs=True)
        context.close()
    finally:
        server.stop()
