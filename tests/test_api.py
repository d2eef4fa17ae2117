"""The JSON API of interface.md: prices from the database, refusals in one shape, sessions, polling."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from flask import request
from sqlalchemy import select, update

from conftest import LiveServer, Shopper
from storefront.extensions import db
from storefront.models import Payment, Product
from storefront.services import orders

QUERY_PATH = "/sandbox/v3/pay/transactions/out-trade-no/"


@pytest.fixture
def answers():
    """Every answer a test received, checked at teardown: none may show a traceback."""
    seen = []
    yield seen
    for answer in seen:
        text = answer.get_data(as_text=True) if hasattr(answer, "get_data") else answer.text
        assert "Traceback" not in text and 'File "' not in text, text


@pytest.fixture
def app(module_live_server):
    """One app for the module: every test works in sessions (and so orders) of its own."""
    return module_live_server.app


@pytest.fixture
def api(app, answers):
    """A fresh session's test client whose answers are all kept for the traceback check."""
    client = app.test_client()

    class Recording:
        def __getattr__(self, name):
            call = getattr(client, name)

            def recorded(*args, **kwargs):
                answer = call(*args, **kwargs)
                answers.append(answer)
                return answer

            return recorded

    return Recording()


def assert_error(answer, status: int | tuple[int, ...], code: str | None = None) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert answer.status_code in statuses, (answer.status_code, answer.get_data(as_text=True))
    error = answer.get_json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_products_list_integer_prices(app, api):
    answer = api.get("/api/products")
    assert answer.status_code == 200
    products = answer.get_json()["products"]
    assert len(products) >= 1
    with app.app_context():
        prices = dict(db.session.execute(select(Product.id, Product.price_total)).all())
    for product in products:
        assert {"id", "name", "price_total"} <= product.keys()
        assert type(product["price_total"]) is int and product["price_total"] == prices[product["id"]]


def test_create_order_takes_the_price_from_the_database(app, api):
    """A price or total sent by the client is ignored: amount = price × quantity from the catalog."""
    answer = api.post("/api/orders", json={"product_id": 2, "quantity": 3, "price_total": 1, "amount_total": 1,
                                           "unit_price": 1, "status": "paid"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    order = answer.get_json()
    with app.app_context():
        price = db.session.get(Product, 2).price_total
    assert order["amount_total"] == 3 * price and type(order["amount_total"]) is int
    assert order["currency"] == "CNY" and order["status"] == "pending" and order["order_no"]
    assert api.get(f"/api/orders/{order['order_no']}").get_json()["amount_total"] == 3 * price


def test_quantity_defaults_to_one(api):
    answer = api.post("/api/orders", json={"product_id": 1})
    assert answer.status_code == 201 and answer.get_json()["quantity"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"product_id": 1, "quantity": 0},
        {"product_id": 1, "quantity": 11},
        {"product_id": 1, "quantity": -1},
        {"product_id": 1, "quantity": "2"},
        {"product_id": 1, "quantity": 1.5},
        {"product_id": 1, "quantity": 2.0},
        {"product_id": 1, "quantity": True},
        {"product_id": 1, "quantity": None},
        {"product_id": 9999, "quantity": 1},
        {"product_id": "1", "quantity": 1},
        {"quantity": 1},
    ],
    ids=["zero", "eleven", "negative", "string", "fraction", "float", "boolean", "null", "unknown-product",
         "string-product", "no-product"],
)
def test_bad_order_requests_are_refused(api, body):
    assert_error(api.post("/api/orders", json=body), (400, 404, 422))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "product_id=1&quantity=1", "content_type": "application/x-www-form-urlencoded"},
        {"data": '{"product_id": 1, "quantity": 1}', "content_type": "text/plain"},
        {"data": '{"product_id": 1, "quantity": 1}'},
    ],
    ids=["form", "text-plain", "no-content-type"],
)
def test_non_json_post_is_415(api, kwargs):
    assert_error(api.post("/api/orders", **kwargs), 415)


@pytest.mark.parametrize("data", ['{"product_id": 1,', "[1, 2]", '"order"', "null"], ids=["truncated", "array",
                                                                                        "string", "null"])
def test_json_that_is_not_an_object_is_400(api, data):
    assert_error(api.post("/api/orders", data=data, content_type="application/json"), 400)


def test_another_session_gets_404(app, api, answers):
    order = api.post("/api/orders", json={"product_id": 1, "quantity": 1}).get_json()
    stranger = app.test_client()

    for answer in (stranger.get(f"/api/orders/{order['order_no']}"),
                   stranger.post(f"/api/orders/{order['order_no']}/payments", json={"method": "native"})):
        answers.append(answer)
        assert_error(answer, 404, "ORDER_NOT_FOUND")
    stranger.post("/api/orders", json={"product_id": 1, "quantity": 1})  # a session of its own changes nothing
    assert_error(stranger.get(f"/api/orders/{order['order_no']}"), 404)


def test_unknown_order_is_404(api):
    api.post("/api/orders", json={"product_id": 1})
    assert_error(api.get("/api/orders/SF20260101000000000000"), 404, "ORDER_NOT_FOUND")


@pytest.mark.parametrize("method", ["alipay", "", None, 1, ["native"]])
def test_unknown_payment_method_is_400(api, method):
    order = api.post("/api/orders", json={"product_id": 1}).get_json()
    assert_error(api.post(f"/api/orders/{order['order_no']}/payments", json={"method": method}), 400)


def test_unexpected_error_answers_json_without_internals(api, monkeypatch):
    """A bug answers 500 in the API's error shape: no traceback, no exception text."""

    def broken(*args, **kwargs):
        raise RuntimeError("internal detail: /srv/storefront/secret.py line 7")

    monkeypatch.setattr(orders, "create_order", broken)
    error = assert_error(api.post("/api/orders", json={"product_id": 1}), 500)
    assert "internal detail" not in error["message"] and "RuntimeError" not in error["message"]


def test_unknown_api_path_and_wrong_verb_answer_json(api):
    assert_error(api.get("/api/nothing-here"), 404)
    assert_error(api.delete("/api/products"), 405)


# -- polling a pending order queries WeChat Pay at a bounded rate ----------------------------------------


@pytest.fixture
def counted_server(make_app):
    """A live shop that counts the queries its simulator receives (the hook precedes the first request)."""
    app = make_app()
    lock = threading.Lock()
    queries: list[str] = []

    @app.before_request
    def count_queries():
        if request.method == "GET" and request.path.startswith(QUERY_PATH):
            with lock:
                queries.append(request.path)

    server = LiveServer(app)
    server.queries = queries
    yield server
    server.stop()


def test_polling_queries_wechat_at_most_once_per_interval(counted_server):
    """Twenty polls, ten of them at once, make one query; one more once the interval has passed."""
    shopper = Shopper(counted_server.url)
    order = shopper.buy()
    payment = shopper.start_native(order["order_no"])
    assert counted_server.queries == []

    for _ in range(10):
        assert shopper.order(order["order_no"])["status"] == "pending"
    with ThreadPoolExecutor(max_workers=10) as pool:
        polled = list(pool.map(lambda _: shopper.order(order["order_no"])["status"], range(10)))
    assert polled == ["pending"] * 10
    assert len(counted_server.queries) == 1

    app = counted_server.app
    interval = app.config["ACTIVE_QUERY_INTERVAL_SECONDS"]
    assert interval == 5
    with app.app_context():  # the interval passes without sleeping: the claim is moved back in time
        row = db.session.scalar(select(Payment).where(Payment.out_trade_no == payment["out_trade_no"]))
        db.session.execute(update(Payment).where(Payment.id == row.id)
                           .values(last_queried_at=row.last_queried_at - timedelta(seconds=interval + 1)))
        db.session.commit()
    shopper.order(order["order_no"])
    shopper.order(order["order_no"])
    assert len(counted_server.queries) == 2


def test_poll_discovers_a_payment_whose_notification_was_lost(counted_server):
    shopper = Shopper(counted_server.url)
    order = shopper.buy()
    payment = shopper.start_native(order["order_no"])
    assert shopper.pay_in_simulator(payment["out_trade_no"], notify="drop").status_code == 200

    polled = shopper.order(order["order_no"])
    assert polled["status"] == "paid" and polled["paid_at"]
    assert len(counted_server.queries) == 1
    shopper.order(order["order_no"])
    assert len(counted_server.queries) == 1  # paid: no more queries
