"""Going live: production refuses what is unsafe, the browser protections, bounded input, merchant
sessions and throttle, rate limits, the refund outbox, file modes, doctor, /healthz and /metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from helpers import second_issued_attempt
from sqlalchemy import func, select

from conftest import CSRF_FIELD, LiveServer, Shopper, wait_for
from storefront import bootstrap, create_app, gateway, settings_check
from storefront.extensions import db
from storefront.models import NotificationRecord, Order, Payment, ProtocolMessage, Refund, utcnow
from storefront.services import orders as order_service
from storefront.wechatpay import keys

ROOT = Path(__file__).resolve().parent.parent
STRONG_SECRET = "9f2c6b1e8d7a4c3b5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d"


@pytest.fixture
def own_apps():
    """Apps a test builds itself (a second 'worker', a production app): their connections closed after."""
    apps = []
    yield apps
    for app in apps:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


# -- 1. production refuses unsafe settings -------------------------------------------------------


@pytest.fixture
def production(tmp_path, instance_template):
    """A production configuration that passes (the demo merchant against a loopback simulator address)."""
    instance = tmp_path / "prod-instance"
    shutil.copytree(instance_template, instance)
    config = {
        "WECHATPAY_SANDBOX": False, "SECRET_KEY": STRONG_SECRET, "SHOP_BASE_URL": "https://shop.example.com",
        "WECHATPAY_API_BASE": "http://127.0.0.1:9/sandbox", "MERCHANT_PASSWORD": "a-long-merchant-passphrase",
    }
    return config, instance


def test_a_good_production_configuration_has_no_problems(production):
    config, instance = production
    assert settings_check.problems(config, str(instance)) == []


@pytest.mark.parametrize("change, setting", [
    ({"SHOP_BASE_URL": None}, "SHOP_BASE_URL"),
    ({"SHOP_BASE_URL": "http://shop.example.com"}, "SHOP_BASE_URL"),
    ({"WECHATPAY_NOTIFY_URL": "http://shop.example.com/notify/wechatpay"}, "WECHATPAY_NOTIFY_URL"),
    ({"WECHATPAY_REFUND_NOTIFY_URL": "http://shop.example.com/notify/r"}, "WECHATPAY_REFUND_NOTIFY_URL"),
    ({"WECHATPAY_OAUTH_BASE": "http://open.weixin.qq.com"}, "WECHATPAY_OAUTH_BASE"),
    ({"WECHATPAY_OAUTH_API_BASE": "http://api.weixin.qq.com"}, "WECHATPAY_OAUTH_API_BASE"),
    ({"WECHATPAY_API_BASE": "http://api.mch.weixin.qq.com"}, "WECHATPAY_API_BASE"),
    ({"SECRET_KEY": "dev"}, "SECRET_KEY"),
    ({"SECRET_KEY": "short-but-random-9f2c"}, "SECRET_KEY"),
    ({"MERCHANT_PASSWORD": "1"}, "MERCHANT_PASSWORD"),
    ({"WECHATPAY_APIV3_KEY": "only-16-bytes-ok"}, "WECHATPAY_APIV3_KEY"),
    ({"WECHATPAY_MERCHANT_KEY_FILE": "/nonexistent/apiclient_key.pem"}, "WECHATPAY_MERCHANT_KEY_FILE"),
    ({"WECHATPAY_PUBLIC_KEY_FILE": "/nonexistent/pub_key.pem"}, "WECHATPAY_PUBLIC_KEY_FILE"),
    ({"WECHATPAY_API_BASE": None}, "WECHATPAY_MCHID"),  # the demo merchant, now against real WeChat Pay
])
def test_each_unsafe_setting_is_refused_by_name(production, change, setting):
    config, instance = production
    config = {**config, **change}
    settings_check.apply_production_defaults(config)
    found = settings_check.problems(config, str(instance))
    assert any(line.startswith(setting) for line in found), found


def test_unparseable_key_files_are_refused_by_name(production, tmp_path):
    config, instance = production
    for name, setting in (("apiclient_key.pem", "WECHATPAY_MERCHANT_KEY_FILE"),
                          ("apiclient_cert.pem", "WECHATPAY_MERCHANT_CERT_FILE"),
                          ("pub_key.pem", "WECHATPAY_PUBLIC_KEY_FILE")):
        broken = tmp_path / f"broken-{name}"
        broken.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        found = settings_check.problems({**config, setting: str(broken)}, str(instance))
        assert any(line.startswith(setting) and "cannot be read" in line for line in found), found


def test_the_demo_merchant_is_refused_against_real_wechat_pay(production):
    config, instance = production
    config = {**config, "WECHATPAY_API_BASE": "https://api.mch.weixin.qq.com"}
    found = settings_check.problems(config, str(instance))
    assert any(line.startswith("WECHATPAY_MCHID") and "demo" in line for line in found)
    assert any(line.startswith("WECHATPAY_APPID") and "demo" in line for line in found)
    assert any(line.startswith("WECHATPAY_MERCHANT_CERT_FILE") and "demo" in line for line in found)


def test_create_app_refuses_to_start_and_names_the_setting(production):
    config, instance = production
    with pytest.raises(settings_check.UnsafeSettings) as refused:
        create_app({**config, "TESTING": True, "AUTO_INIT": False, "SECRET_KEY": "dev"}, instance_path=str(instance))
    assert "SECRET_KEY" in str(refused.value.code) and "doctor" in str(refused.value.code)


def test_flask_init_with_only_sandbox_off_refuses_with_one_line_per_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHATPAY_", "SHOP_", "SECRET", "MERCHANT"))}
    env |= {"WECHATPAY_SANDBOX": "0", "STOREFRONT_INSTANCE_PATH": str(tmp_path / "instance")}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "SHOP_BASE_URL is not set" in done.stderr and "WECHATPAY_MCHID" in done.stderr
    assert "Traceback" not in done.stderr


def test_production_never_takes_urls_from_the_request(production, own_apps):
    config, instance = production
    defaults = {"WECHATPAY_SANDBOX": False}
    settings_check.apply_production_defaults(defaults)
    assert defaults["WECHATPAY_API_BASE"] == "https://api.mch.weixin.qq.com"
    app = create_app({**config, "TESTING": True, "AUTO_INIT": False}, instance_path=str(instance))
    own_apps.append(app)
    with app.test_request_context("/", base_url="http://127.0.0.1:6666", headers={"X-Forwarded-Host": "evil.example"}):
        assert gateway.notify_url() == "https://shop.example.com/notify/wechatpay"
        assert gateway.api_base() == config["WECHATPAY_API_BASE"]
        app.config["SHOP_BASE_URL"] = None  # (refused at start; never a fallback to the request either)
        with pytest.raises(RuntimeError, match="SHOP_BASE_URL"):
            gateway.notify_url()
        app.config["SHOP_BASE_URL"] = config["SHOP_BASE_URL"]
        from storefront.services import refunds

        assert refunds.refund_notify_url() == "https://shop.example.com/notify/wechatpay/refund"


# -- 2. browser protections ---------------------------------------------------------------------


def _assert_protected(answer, frameable: bool) -> None:
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert f"frame-ancestors {'self' if frameable else 'none'}".replace("self", "'self'").replace(
        "none", "'none'") in csp
    assert answer.headers["X-Frame-Options"] == ("SAMEORIGIN" if frameable else "DENY")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_headers_and_cookie_flags_in_simulator_mode(client):
    shop = client.get("/products/1")
    _assert_protected(shop, frameable=True)  # the tour frames the shop
    assert "Strict-Transport-Security" not in shop.headers
    login = client.application.test_client().get("/merchant/login")  # a fresh browser: its first cookie
    _assert_protected(login, frameable=False)  # the merchant area is never framed
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    _assert_protected(client.get("/tour"), frameable=False)
    _assert_protected(client.get("/api/products"), frameable=False)


def test_the_tours_simulator_pages_may_be_framed_by_the_shop(client):
    """The tour's shop frame follows a desktop JSAPI checkout to the simulator's OAuth page (请在微信
    客户端打开链接): framed by the same origin, it shows; denied, the frame would be a broken page."""
    from storefront.security import FRAMEABLE_BLUEPRINTS, FRAMEABLE_ENDPOINTS

    known = {rule.endpoint for rule in client.application.url_map.iter_rules()}
    blueprints = {endpoint.rsplit(".", 1)[0] for endpoint in known if "." in endpoint}
    assert FRAMEABLE_BLUEPRINTS <= blueprints and FRAMEABLE_ENDPOINTS <= known  # no stale names
    page = client.get("/sandbox/connect/oauth2/authorize?appid=x&redirect_uri=http%3A%2F%2Flocalhost%2F"
                      "&response_type=code&scope=snsapi_base&state=s")
    _assert_protected(page, frameable=True)
    _assert_protected(client.get("/sandbox/"), frameable=False)  # the console is not


def test_https_base_gets_secure_cookies_and_hsts(make_app):
    app = make_app(SHOP_BASE_URL="https://shop.example.com")
    client = app.test_client()
    login = client.get("/merchant/login", base_url="https://shop.example.com")
    assert login.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "Secure" in login.headers["Set-Cookie"] and "SameSite=Lax" in login.headers["Set-Cookie"]


def test_headers_in_production(production, own_apps):
    config, instance = production
    app = create_app({**config, "TESTING": True, "AUTO_INIT": False}, instance_path=str(instance))
    own_apps.append(app)
    bootstrap.initialise(app)
    client = app.test_client()
    page = client.get("/merchant/login", base_url="https://shop.example.com")
    _assert_protected(page, frameable=False)
    assert "Strict-Transport-Security" in page.headers and "Secure" in page.headers["Set-Cookie"]


def test_templates_have_no_inline_scripts():
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, (template, tag)
        assert not re.search(r"\son[a-z]+=\"", text), template


# -- 3. bounded input ------------------------------------------------------------------------------


DEEP = "[" * 10_000 + "]" * 10_000


def test_a_body_over_the_bound_is_413(client):
    answer = client.post("/notify/wechatpay", data=b"x" * (65 * 1024), content_type="application/json")
    assert answer.status_code == 413
    answer = client.post("/api/orders", data=b"{" + b" " * (65 * 1024) + b"}", content_type="application/json")
    assert answer.status_code == 413 and answer.get_json()["error"]["code"]


def test_deeply_nested_json_is_400_everywhere(client):
    client.post("/api/orders", json={"product_id": 1})
    with client.application.app_context():
        order_no = db.session.scalar(select(Order.order_no))
    for path in ("/api/orders", "/api/miniprogram/login", f"/orders/{order_no}/flow/events",
                 "/sandbox/control/pay", "/sandbox/control/refund"):
        answer = client.post(path, data=DEEP, content_type="application/json",
                             headers={"X-CSRF-Token": "x"})
        assert answer.status_code == 400, (path, answer.status_code, answer.get_data(as_text=True)[:200])
        assert answer.is_json, path


def test_json_endpoints_answer_errors_as_json(client):
    assert client.get("/orders/SF-NONE/flow.json").is_json
    answer = client.post("/orders/SF-NONE/flow/events", json={"event": "qr_shown"})
    assert answer.status_code in (400, 404) and answer.is_json
    answer = client.post("/sandbox/control/pay", data="not json", content_type="text/plain")
    assert answer.status_code == 400 and answer.is_json


def test_junk_notifications_stay_small(app):
    client = app.test_client()
    import secrets

    # Random text: compression cannot hide what is kept.
    junk = json.dumps({"id": "x", "resource": {"ciphertext": secrets.token_urlsafe(45_000)}})
    for _ in range(200):
        answer = client.post("/notify/wechatpay", data=junk, content_type="application/json",
                             headers={"Wechatpay-Serial": "PUB_KEY_ID_X", "Wechatpay-Signature": "junk",
                                      "Wechatpay-Timestamp": "1", "Wechatpay-Nonce": "n", "X-Padding": "p" * 2000})
        assert answer.status_code == 401
    with app.app_context():
        columns = [ProtocolMessage.payload, ProtocolMessage.error, ProtocolMessage.stored_title]
        stored = sum(db.session.scalar(select(func.sum(func.length(c)))) or 0 for c in columns)
        records = db.session.scalar(select(func.count()).select_from(NotificationRecord))
    assert records == 200
    assert stored < 200 * 3000, stored  # 12 MB posted, well under 1 MB kept
    # Notification records have a retention like the flow record's.
    from storefront.services import flowlog

    with app.app_context():
        flowlog.purge(app, now=utcnow() + timedelta(days=31))
        assert db.session.scalar(select(func.count()).select_from(NotificationRecord)) == 0


# -- 4. merchant sessions and the login throttle ---------------------------------------------------


def _login(client, password: str, address: str = "127.0.0.1"):
    page = client.get("/merchant/login", environ_base={"REMOTE_ADDR": address})
    token = CSRF_FIELD.search(page.get_data(as_text=True)).group(1)
    return client.post("/merchant/login", data={"csrf_token": token, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_logout_revokes_every_copy_of_the_cookie(make_app):
    app = make_app(MERCHANT_PASSWORD="right-password-long")
    browser = app.test_client()
    assert _login(browser, "right-password-long").status_code == 303
    saved = browser.get_cookie("session").value  # an attacker's copy
    assert browser.get("/merchant/").status_code == 200
    page = browser.get("/merchant/").get_data(as_text=True)
    token = CSRF_FIELD.search(page).group(1)
    assert browser.post("/merchant/logout", data={"csrf_token": token}).status_code == 303
    thief = app.test_client()
    thief.set_cookie("session", saved)
    answer = thief.get("/merchant/")
    assert answer.status_code == 302 and "/merchant/login" in answer.headers["Location"]


def test_a_session_ends_after_its_absolute_lifetime(make_app):
    app = make_app(MERCHANT_PASSWORD="right-password-long", MERCHANT_SESSION_HOURS=0.0001)  # 0.36 s
    browser = app.test_client()
    assert _login(browser, "right-password-long").status_code == 303
    wait_for(lambda: browser.get("/merchant/").status_code == 302, timeout=5)


def test_a_forged_merchant_flag_opens_nothing(make_app):
    app = make_app(MERCHANT_PASSWORD="right-password-long")
    client = app.test_client()
    with client.session_transaction() as session:
        session["merchant"] = True
        session["merchant_sid"] = "guessed"
    assert client.get("/merchant/").status_code == 302


def test_the_throttle_never_locks_out_the_right_password_from_another_address(make_app):
    app = make_app(MERCHANT_PASSWORD="right-password-long")
    attacker = app.test_client()
    statuses = [_login(attacker, "wrong", "203.0.113.7").status_code for _ in range(12)]
    assert statuses[:10] == [401] * 10 and 429 in statuses[10:]
    assert _login(attacker, "right-password-long", "203.0.113.7").status_code == 429  # that address waits
    merchant = app.test_client()
    assert _login(merchant, "right-password-long", "198.51.100.20").status_code == 303
    assert merchant.get("/merchant/").status_code == 200


def test_the_throttle_is_shared_by_workers(make_app, own_apps):
    """Two app objects over one database stand for two gunicorn workers."""
    first = make_app(MERCHANT_PASSWORD="right-password-long")
    second = create_app({**first.config, "AUTO_INIT": False}, instance_path=first.instance_path)
    own_apps.append(second)
    one, two = first.test_client(), second.test_client()
    for index in range(10):
        assert _login(one if index % 2 else two, "wrong", "203.0.113.9").status_code == 401
    assert _login(two, "wrong", "203.0.113.9").status_code == 429
    assert _login(one, "wrong", "203.0.113.9").status_code == 429


# -- 4. no state change on GET ----------------------------------------------------------------------


def test_get_of_the_checkout_starts_nothing(live_server, shopper):
    order = shopper.buy()
    for method in ("native", "h5", ""):
        page = shopper.http.get(f"{live_server.url}/orders/{order['order_no']}/pay?method={method}", timeout=10)
        assert page.status_code == 200 and 'id="pay-start"' in page.text
    assert shopper.http.get(f"{live_server.url}/orders/{order['order_no']}/pay/h5", timeout=10).status_code == 405
    with live_server.app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Payment).join(Order)
                                  .where(Order.order_no == order["order_no"]))
    assert count == 0
    calls = requests.get(f"{live_server.url}/sandbox/control/calls", timeout=10).json()
    assert not any(order["order_no"] in json.dumps(call) for call in calls.get("calls", []))
    # The start form is a POST with the session's CSRF token.
    refused = shopper.http.post(f"{live_server.url}/orders/{order['order_no']}/pay?method=native", timeout=10)
    assert refused.status_code == 400
    started = shopper.open_checkout(order["order_no"], method="native")
    assert started.status_code == 200 and 'id="out-trade-no"' in started.text


# -- 5. rate limits ----------------------------------------------------------------------------------


def test_order_and_prepay_bursts_get_429_but_notifications_never(make_app):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_ORDERS="3 per minute", RATELIMIT_PAYMENTS="2 per minute")
    client = app.test_client()
    statuses = [client.post("/api/orders", json={"product_id": 1}).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    refused = client.post("/api/orders", json={"product_id": 1})
    assert refused.get_json()["error"]["code"] == "TOO_MANY_REQUESTS" and refused.headers.get("Retry-After")
    with app.app_context():
        order_no = db.session.scalar(select(Order.order_no))
    # The order page form shares the order limit; the page answers with the shop's error page.
    page = client.get("/products/1").get_data(as_text=True)
    token = CSRF_FIELD.search(page).group(1)
    form = client.post("/products/1/buy", data={"csrf_token": token, "quantity": "1"})
    assert form.status_code == 429 and "请求过于频繁" in form.get_data(as_text=True)
    # Another client has its own budget.
    other = client.post("/api/orders", json={"product_id": 1}, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert other.status_code == 201
    # Prepay creation is limited too (a rejected payment still counts: the limit is on asking).
    payments = [client.post(f"/api/orders/{order_no}/payments", json={"method": "alipay"}).status_code
                for _ in range(3)]
    assert payments[-1] == 429
    # WeChat Pay's deliveries and the simulator are never limited.
    for _ in range(10):
        assert client.post("/notify/wechatpay", data="{}", content_type="application/json").status_code != 429
        assert client.get("/sandbox/control/clock").status_code != 429


def test_rate_limits_off_switch(make_app):
    app = make_app(RATELIMIT_ENABLED=False, RATELIMIT_ORDERS="1 per minute")
    client = app.test_client()
    assert [client.post("/api/orders", json={"product_id": 1}).status_code for _ in range(3)] == [201] * 3


@pytest.fixture
def redis_db14():
    redis = pytest.importorskip("redis")
    connection = redis.Redis.from_url("redis://127.0.0.1:6379/14")
    try:
        connection.flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield "redis://127.0.0.1:6379/14"
    connection.flushdb()


def test_redis_storage_shares_the_limit_between_workers(make_app, redis_db14, own_apps):
    first = make_app(RATELIMIT_ENABLED=True, RATELIMIT_ORDERS="2 per minute", RATELIMIT_STORAGE_URI=redis_db14)
    second = create_app({**first.config, "AUTO_INIT": False}, instance_path=first.instance_path)
    own_apps.append(second)
    one, two = first.test_client(), second.test_client()
    assert one.post("/api/orders", json={"product_id": 1}).status_code == 201
    assert two.post("/api/orders", json={"product_id": 1}).status_code == 201
    assert one.post("/api/orders", json={"product_id": 1}).status_code == 429
    assert two.post("/api/orders", json={"product_id": 1}).status_code == 429


# -- 6. the refund outbox ------------------------------------------------------------------------------


def test_a_double_payment_refund_survives_a_failed_first_call(live_server, shopper):
    """WeChat Pay unreachable when the double payment arrives: the refund waits in the outbox, and
    reconcile sends it later with the same out_refund_no, refunded once."""
    app = live_server.app
    order = shopper.buy(product_id=2)
    first = shopper.start_native(order["order_no"])
    second_no, _amount = second_issued_attempt(live_server, order["order_no"])
    assert shopper.pay_in_simulator(first["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")

    import dataclasses

    reachable = app.extensions["wechat_endpoints"]
    # Nothing listens there: the refund call fails as a network failure would.
    app.extensions["wechat_endpoints"] = dataclasses.replace(reachable, api_base="http://127.0.0.1:9/sandbox")
    try:
        assert shopper.pay_in_simulator(second_no).status_code == 200

        def queued():
            with app.app_context():
                return db.session.scalar(select(Refund).where(Refund.kind == "duplicate",
                                                              Refund.out_refund_no.like(f"{second_no}%")))
        refund = wait_for(queued)
        assert refund.status == "pending" and refund.refund_id is None
    finally:
        app.extensions["wechat_endpoints"] = reachable
    simulator = requests.get(f"{live_server.url}/sandbox/control/refunds", params={"out_trade_no": second_no},
                             timeout=10).json()["refunds"]
    assert simulator == []  # WeChat Pay never heard of it

    with app.test_request_context(base_url=live_server.url):  # reconcile (the scheduler runs the same job)
        from storefront.services import jobs

        jobs.reconcile()
    with app.app_context():
        sent = db.session.get(Refund, refund.id)
        assert sent.out_refund_no == refund.out_refund_no and sent.refund_id
    with app.test_request_context(base_url=live_server.url):
        jobs.reconcile()  # again: nothing is sent twice
    simulator = requests.get(f"{live_server.url}/sandbox/control/refunds", params={"out_trade_no": second_no},
                             timeout=10).json()["refunds"]
    assert len(simulator) == 1 and simulator[0]["out_refund_no"] == refund.out_refund_no
    assert shopper.order(order["order_no"])["status"] == "paid"


def test_the_outbox_row_commits_with_the_double_payment(live_server, shopper):
    """A crash right after the commit loses nothing: the refund is already a row, sent by reconcile."""
    app = live_server.app
    order = shopper.buy(product_id=3)
    first = shopper.start_native(order["order_no"])
    second_no, amount = second_issued_attempt(live_server, order["order_no"])
    assert shopper.pay_in_simulator(first["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    paid = requests.post(f"{live_server.url}/sandbox/control/pay",
                         json={"out_trade_no": second_no, "result": "SUCCESS", "notify": "drop"}, timeout=10).json()
    with app.app_context():
        # What the notification handler commits, then the process "dies" before sending anything.
        outcome = order_service.apply_payment(second_no, transaction_id=paid["transaction_id"], amount_total=amount,
                                              paid_at=utcnow(), cause="notify")
        assert outcome == order_service.PaymentOutcome.DOUBLE
        db.session.commit()  # the caller's one commit, as the notification pipeline makes it
        db.session.remove()
        refund = db.session.scalar(select(Refund).where(Refund.out_refund_no.like(f"{second_no}%")))
        assert refund is not None and refund.kind == "duplicate" and refund.status == "pending"
        assert refund.amount == amount and refund.refund_id is None
    with app.test_request_context(base_url=live_server.url):
        from storefront.services import jobs

        jobs.reconcile()
    simulator = requests.get(f"{live_server.url}/sandbox/control/refunds", params={"out_trade_no": second_no},
                             timeout=10).json()["refunds"]
    assert [r["out_refund_no"] for r in simulator] == [refund.out_refund_no]


# -- 7. file modes -----------------------------------------------------------------------------------


def test_init_tightens_file_modes(app):
    instance = Path(app.instance_path)
    os.chmod(instance, 0o755)
    os.chmod(instance / "wechatpay" / "apiclient_key.pem", 0o644)
    database = instance / "storefront.sqlite"  # absent when the shop's tables are on PostgreSQL
    if database.exists():
        os.chmod(database, 0o644)
    bootstrap.initialise(app)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(instance) == 0o700 and mode(instance / "wechatpay") == 0o700
    for path in (instance / "wechatpay" / "apiclient_key.pem", instance / "wechatpay" / "credentials.json",
                 instance / "secret_key", database, instance / "sandbox" / "merchant.json"):
        if path.exists():
            assert mode(path) == 0o600, path


# -- 8. doctor -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator(tmp_path_factory, instance_template):
    """The simulator on loopback, standing for WeChat Pay; its merchant is the template's demo merchant."""
    from conftest import module_server

    yield from module_server(tmp_path_factory, instance_template)


def _doctor(make_app, simulator, *args, **config):
    app = make_app(WECHATPAY_API_BASE=f"{simulator.url}/sandbox", **config)
    result = app.test_cli_runner().invoke(args=["doctor", *args])
    return result.exit_code, result.output


def _failures(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("✗")]


def test_doctor_passes_a_good_configuration(make_app, simulator):
    code, output = _doctor(make_app, simulator)
    assert code == 0, output
    assert "404 ORDER_NOT_EXIST" in output and "signature verifies" in output and not _failures(output)


def test_doctor_passes_a_good_production_configuration(production, simulator, own_apps):
    config, instance = production
    app = create_app({**config, "TESTING": True, "AUTO_INIT": False, "WECHATPAY_API_BASE": f"{simulator.url}/sandbox"},
                     instance_path=str(instance))
    own_apps.append(app)
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 0, result.output
    assert "✓ WECHATPAY_NOTIFY_URL: https://shop.example.com/notify/wechatpay" in result.output


def test_doctor_names_a_wrong_merchant_serial(make_app, simulator):
    code, output = _doctor(make_app, simulator, WECHATPAY_MERCHANT_SERIAL="5157F09EFDC096DE15EBE81A47057A7232F1B8E1")
    assert code == 1
    assert any("WECHATPAY_MERCHANT_SERIAL" in line for line in _failures(output)), output
    assert "401 SIGN_ERROR" in output


def test_doctor_names_a_key_that_is_not_the_certificates(make_app, simulator, tmp_path):
    other = tmp_path / "other_key.pem"
    other.write_bytes(keys.private_key_pem(keys.generate_private_key()))
    code, output = _doctor(make_app, simulator, WECHATPAY_MERCHANT_KEY_FILE=str(other))
    assert code == 1
    failures = _failures(output)
    assert any(line.startswith("✗ WECHATPAY_MERCHANT_KEY_FILE") for line in failures), output
    assert any("401 SIGN_ERROR" in line and "WECHATPAY_MERCHANT_KEY_FILE" in line for line in failures), output


def test_doctor_names_a_wrong_wechatpay_public_key_file(make_app, simulator, tmp_path):
    other = tmp_path / "pub_key.pem"
    other.write_bytes(keys.public_key_pem(keys.generate_private_key().public_key()))
    code, output = _doctor(make_app, simulator, WECHATPAY_PUBLIC_KEY_FILE=str(other))
    assert code == 1
    assert any(line.startswith("✗ WECHATPAY_PUBLIC_KEY_FILE is wrong") for line in _failures(output)), output


def test_doctor_names_a_wrong_public_key_id_and_the_one_wechat_pay_used(make_app, simulator):
    code, output = _doctor(make_app, simulator, WECHATPAY_PUBLIC_KEY_ID="PUB_KEY_ID_0000000000000000000000000000000000")
    assert code == 1
    failures = _failures(output)
    [line] = [line for line in failures if line.startswith("✗ WECHATPAY_PUBLIC_KEY_ID is wrong")]
    real = json.loads((Path(simulator.app.instance_path) / "wechatpay" / "credentials.json").read_text())
    assert real["public_key_id"] in line


def test_doctor_names_a_short_apiv3_key(make_app, simulator):
    code, output = _doctor(make_app, simulator, "--offline", WECHATPAY_APIV3_KEY="too-short")
    assert code == 1
    assert any(line.startswith("✗ WECHATPAY_APIV3_KEY is 9 bytes") for line in _failures(output)), output


def test_doctor_names_a_wrong_apiv3_key_in_certificate_mode(make_app, simulator):
    code, output = _doctor(make_app, simulator, WECHATPAY_KEY_MODE="certificate", WECHATPAY_APIV3_KEY="b" * 32)
    assert code == 1
    assert any(line.startswith("✗ WECHATPAY_APIV3_KEY is wrong") for line in _failures(output)), output
    code, output = _doctor(make_app, simulator, WECHATPAY_KEY_MODE="certificate")
    assert code == 0 and "decrypted" in output, output


def test_doctor_names_an_unknown_mchid(make_app, simulator):
    code, output = _doctor(make_app, simulator, WECHATPAY_MCHID="1900000109")
    assert code == 1
    assert any(line.startswith("✗ WECHATPAY_MCHID") for line in _failures(output)), output


def test_doctor_says_when_wechat_pay_cannot_be_reached(make_app):
    app = make_app(WECHATPAY_API_BASE="http://127.0.0.1:9/sandbox")
    result = app.test_cli_runner().invoke(args=["doctor", "--timeout", "3"])
    assert result.exit_code == 1
    assert any(line.startswith("✗ WECHATPAY_API_BASE") and "cannot be reached" in line
               for line in _failures(result.output)), result.output


def test_doctor_runs_in_production_when_start_would_be_refused(tmp_path):
    """The refusal stops the app; doctor still starts, to explain everything at once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHATPAY_", "SHOP_", "SECRET", "MERCHANT"))}
    env |= {"WECHATPAY_SANDBOX": "0", "STOREFRONT_INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "dev"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "doctor", "--offline"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "✗ SECRET_KEY" in done.stdout and "✗ SHOP_BASE_URL" in done.stdout
    assert "✗ WECHATPAY_MERCHANT_KEY_FILE" in done.stdout


# -- 9. /healthz and /metrics ---------------------------------------------------------------------------


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_healthz_and_metrics_count_a_paid_order_and_a_refused_forgery(live_server, shopper):
    order = shopper.buy()
    payment = shopper.start_native(order["order_no"])
    assert shopper.pay_in_simulator(payment["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    forged = requests.post(f"{live_server.url}/notify/wechatpay", data=json.dumps({"id": "forged"}),
                           headers={"Content-Type": "application/json", "Wechatpay-Serial": "PUB_KEY_ID_1",
                                    "Wechatpay-Signature": "Zm9yZ2Vk", "Wechatpay-Timestamp": "1700000000",
                                    "Wechatpay-Nonce": "n"}, timeout=10)
    assert forged.status_code == 401
    health = requests.get(f"{live_server.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "up"}
    # The order may show paid through an active query first; its notification follows.
    text = wait_for(lambda: (lambda t: t if _metric(t, "storefront_notifications_total", kind="payment",
                                                    outcome="accepted") >= 1 else None)(
        requests.get(f"{live_server.url}/metrics", timeout=10).text))
    assert _metric(text, "storefront_notifications_total", kind="payment", outcome="refused") >= 1
    assert _metric(text, "storefront_orders", status="paid") >= 1
    assert _metric(text, "storefront_wechatpay_calls_total", result="ok") >= 1
    assert _metric(text, "storefront_wechatpay_call_seconds_count") >= 1
    assert "storefront_sandbox_oldest_pending_notification_seconds" in text
    for secret in (live_server.app.config["SECRET_KEY"],):
        assert secret not in text and secret not in health.text


def test_healthz_is_503_when_the_database_does_not_answer(tmp_path, instance_template, own_apps):
    shutil.copytree(instance_template, tmp_path / "instance")
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "WECHATPAY_SANDBOX": True, "AUTO_INIT": False,
                      "SANDBOX_NOTIFIER": False,
                      "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"},
                     instance_path=str(tmp_path / "instance"))
    own_apps.append(app)
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 503 and answer.get_json()["status"] == "unavailable"
    assert "nobody" not in answer.get_data(as_text=True)


def test_metrics_need_a_token_or_a_merchant_in_production(production, own_apps):
    config, instance = production
    app = create_app({**config, "TESTING": True, "AUTO_INIT": False, "METRICS_TOKEN": "scrape-token-123"},
                     instance_path=str(instance))
    own_apps.append(app)
    bootstrap.initialise(app)
    client = app.test_client()
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
    assert answer.status_code == 200 and "storefront_orders" in answer.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200
    assert _login(client, "a-long-merchant-passphrase").status_code == 303
    assert client.get("/metrics").status_code == 200


def test_make_bench_switches_rate_limits_off():
    makefile = (ROOT / "Makefile").read_text()
    bench = makefile[makefile.index("\nbench:"):]
    assert "RATELIMIT_ENABLED=0" in bench.split("\n\n")[0]


def test_live_server_shopper_helpers_still_work(live_server):
    """The helpers the suite uses go through the POST start form, as the page's script does."""
    shopper = Shopper(live_server.url)
    order = shopper.buy()
    page = shopper.open_checkout(order["order_no"])
    assert page.status_code == 200 and 'id="out-trade-no"' in page.text
    assert isinstance(live_server, LiveServer)
