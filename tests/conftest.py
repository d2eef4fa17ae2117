"""Shared fixtures: a fresh app per test, and the app as a real server on loopback."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from storefront import bootstrap, create_app
from storefront.extensions import db
from storefront.sandbox import demo

VECTORS = Path(__file__).parent / "vectors"
# A PostgreSQL URL here runs the shop's tables on PostgreSQL (the simulator keeps SQLite).
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def instance_template(tmp_path_factory) -> Path:
    """Demo credentials generated once per run (RSA key generation is slow), copied per test."""
    folder = tmp_path_factory.mktemp("instance-template")
    demo.ensure_demo_credentials(folder)
    return folder


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture
def make_app(tmp_path, instance_template):
    """Build an app over a copy of the template instance; extra config per call."""
    apps = []

    def factory(**config):
        instance = tmp_path / f"instance{len(apps)}"
        shutil.copytree(instance_template, instance)
        settings = {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SANDBOX_NOTIFIER": False,
            "SANDBOX_TIME_SCALE": 0.01,
            "WECHATPAY_SANDBOX": True,
            "AUTO_INIT": False,
            # Tests create orders far faster than a shopper: the limits have their own tests
            # (tests/test_go_live.py), as RATELIMIT_ENABLED=0 is what load tests and make bench use.
            "RATELIMIT_ENABLED": False,
        }
        if TEST_DATABASE_URL:
            _reset_postgres(TEST_DATABASE_URL)
            settings["SQLALCHEMY_DATABASE_URI"] = TEST_DATABASE_URL
        settings.update(config)
        app = create_app(settings, instance_path=str(instance))
        bootstrap.initialise(app)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        state = app.extensions.get("sandbox")
        if state is not None:
            state.stop()
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


class LiveServer:
    """The app served by a real threaded WSGI server on 127.0.0.1, in a background thread."""

    def __init__(self, app) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        app.config["PORT"] = self.port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture
def live_server(make_app):
    """Shop and simulator on one real loopback server, delivering notifications for real."""
    server = LiveServer(make_app(SANDBOX_NOTIFIER=True))
    yield server
    server.stop()


class Shopper:
    """A shopper's browser session against a live server, through the JSON API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()

    def buy(self, product_id: int = 1, quantity: int = 1) -> dict:
        answer = self.http.post(f"{self.base_url}/api/orders", json={"product_id": product_id, "quantity": quantity},
                                timeout=10)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def start_native(self, order_no: str) -> dict:
        answer = self.http.post(f"{self.base_url}/api/orders/{order_no}/payments", json={"method": "native"},
                                timeout=10)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def order(self, order_no: str) -> dict:
        answer = self.http.get(f"{self.base_url}/api/orders/{order_no}", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def open_checkout(self, order_no: str, method: str | None = None, **kwargs) -> requests.Response:
        """Open the checkout page as a browser does: a GET, then (no payable attempt yet) the start
        form's POST that static/js/autosubmit.js sends."""
        query = f"?method={method}" if method else ""
        page = self.http.get(f"{self.base_url}/orders/{order_no}/pay{query}", timeout=10, **kwargs)
        return submit_start_form(self.http, page, self.base_url, **kwargs)

    def pay_in_simulator(self, out_trade_no: str, **options) -> requests.Response:
        return requests.post(f"{self.base_url}/sandbox/control/pay",
                             json={"out_trade_no": out_trade_no, "result": "SUCCESS", **options}, timeout=10)

    def notifications(self, out_trade_no: str) -> list[dict]:
        answer = requests.get(f"{self.base_url}/sandbox/control/notifications",
                              params={"out_trade_no": out_trade_no}, timeout=10)
        return answer.json()["notifications"]


START_FORM = re.compile(r'<form id="pay-start"[^>]*action="([^"]+)"')
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def submit_start_form(http: requests.Session, page: requests.Response, base_url: str, **kwargs) -> requests.Response:
    """If ``page`` is the checkout's start form (GET never starts a payment), POST it; else return ``page``."""
    import html

    found = START_FORM.search(page.text) if page.status_code == 200 else None
    if found is None:
        return page
    method = re.search(r'name="method" value="([^"]*)"', page.text)
    data = {"csrf_token": CSRF_FIELD.search(page.text).group(1), "method": method.group(1) if method else ""}
    return http.post(base_url + html.unescape(found.group(1)), data=data, timeout=10, **kwargs)


@pytest.fixture
def shopper(live_server) -> Shopper:
    return Shopper(live_server.url)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def module_server(tmp_path_factory, instance_template, **config):
    """Yield one live shop + simulator over a fresh instance copy, for a whole module's tests."""
    instance = tmp_path_factory.mktemp("module-instance") / "instance"
    shutil.copytree(instance_template, instance)
    settings = {"TESTING": True, "SECRET_KEY": "test-secret", "SANDBOX_NOTIFIER": False,
                "SANDBOX_TIME_SCALE": 0.01, "WECHATPAY_SANDBOX": True, "AUTO_INIT": False,
                "RATELIMIT_ENABLED": False, **config}
    app = create_app(settings, instance_path=str(instance))
    bootstrap.initialise(app)
    server = LiveServer(app)
    yield server
    server.stop()
    app.extensions["sandbox"].stop()
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture(scope="module")
def module_live_server(tmp_path_factory, instance_template):
    """One live server for a whole module, for simulator tests that each use their own out_trade_no.

    The notifier is off (nothing is delivered) and the shop's tables stay on SQLite.
    """
    yield from module_server(tmp_path_factory, instance_template)


# -- the real browser, shared by every browser test ---------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")  # Debian's; never a downloaded build
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


def _browser_unavailable(reason: str):
    """No usable browser: a failure in CI (the check must not silently vanish), a skip locally."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"browser tests need Chromium and Playwright: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason} (set CI=1 to make this a failure)")


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, launched once per test run."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - depends on the machine
        _browser_unavailable(f"the playwright package is not installed ({exc})")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _browser_unavailable(f"no Chromium executable at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)")
    with sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:  # pragma: no cover - depends on the machine
            _browser_unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
        yield instance
        instance.close()
