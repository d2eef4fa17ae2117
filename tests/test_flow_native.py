"""The Native walking skeleton over real HTTP: order, QR attempt, pay in the simulator, paid."""

from conftest import wait_for


def test_native_payment_end_to_end(shopper):
    """A paid attempt's notification reaches the shop and the order turns paid exactly once."""
    order = shopper.buy(product_id=1, quantity=2)
    assert order["status"] == "pending" and order["amount_total"] == 2 * 8800
    payment = shopper.start_native(order["order_no"])
    assert payment["code_url"].startswith("http://127.0.0.1:")
    paid = shopper.pay_in_simulator(payment["out_trade_no"])
    assert paid.status_code == 200, paid.text
    assert wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    # The page's active query may see the payment before the notification lands: wait for it.
    deliveries = wait_for(lambda: [n for n in shopper.notifications(payment["out_trade_no"])
                                   if n["state"] == "delivered"])
    assert len(deliveries) == 1
    assert deliveries[0]["attempts"][0]["http_status"] == 204
