"""Secrets stay secret: never in a page, a JSON answer or a log line; owner-only files; init is idempotent."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from conftest import LiveServer, Shopper, wait_for
from storefront import bootstrap, create_app
from storefront.extensions import db
from storefront.models import Product

MIN_PEM_LINE = 16  # shorter tail lines of a PEM body could match by chance


def private_key_files(instance: Path) -> list[Path]:
    """The merchant's key, the simulator's public-key-mode key and its platform certificates' keys."""
    return [instance / "wechatpay" / "apiclient_key.pem", instance / "sandbox" / "wechatpay_private_key.pem",
            *sorted((instance / "sandbox").glob("**/*_key.pem"))]


def secrets_of(app) -> dict[str, str]:
    """Every secret the instance holds, by a name for the failure message."""
    instance = Path(app.instance_path)
    credentials = json.loads((instance / "wechatpay" / "credentials.json").read_text())
    found = {"apiv3_key": credentials["apiv3_key"], "SECRET_KEY": app.config["SECRET_KEY"]}
    found.update({name: value for name, value in credentials.items() if name.endswith("secret") and value})
    password = instance / "merchant_password"
    if password.exists():  # the demo one: by design the simulator's console shows it, nothing else may
        found["merchant_password"] = password.read_text().strip()
    for pem in private_key_files(instance):
        for number, line in enumerate(pem.read_text().splitlines()):
            if not line.startswith("-----") and len(line) >= MIN_PEM_LINE:
                found[f"{pem.name} line {number}"] = line
    return found


@pytest.fixture
def server(make_app):
    """A live shop whose SECRET_KEY is generated into its instance folder, as in production."""
    live = LiveServer(make_app(SANDBOX_NOTIFIER=True, SECRET_KEY=None))
    yield live
    live.stop()


def test_no_page_answer_or_log_line_shows_a_secret(server, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = secrets_of(server.app)
    assert len(secrets["SECRET_KEY"]) >= 32 and len([n for n in secrets if "line" in n]) >= 30
    shopper = Shopper(server.url)
    answers: list[requests.Response] = []

    def get(url: str, session=None) -> requests.Response:
        answer = (session or shopper.http).get(url if url.startswith("http") else server.url + url, timeout=10)
        answers.append(answer)
        return answer

    # A full paid flow, through the JSON API and the simulator's test control.
    paid_order = shopper.buy(product_id=1, quantity=2)
    paid_payment = shopper.start_native(paid_order["order_no"])
    answers.append(shopper.pay_in_simulator(paid_payment["out_trade_no"]))
    assert answers[0].status_code == 200, answers[0].text
    assert wait_for(lambda: shopper.order(paid_order["order_no"])["status"] == "paid")
    # And a pending order whose checkout and payer pages are still live.
    pending_order = shopper.buy(product_id=3)
    pending_payment = shopper.start_native(pending_order["order_no"])

    for path in ("/", "/products/1", f"/orders/{paid_order['order_no']}", f"/orders/{pending_order['order_no']}",
                 f"/orders/{pending_order['order_no']}/pay", f"/api/orders/{paid_order['order_no']}",
                 f"/api/orders/{pending_order['order_no']}", "/api/products", "/sandbox/",
                 "/sandbox/control/notifications", "/no-such-page", "/api/orders/SF0"):
        get(path)
    # Every other page, present or future: each GET route whose arguments this flow can fill.
    notification_id = shopper.notifications(paid_payment["out_trade_no"])[0]["id"]
    values = {"order_no": paid_order["order_no"], "product_id": 1, "out_trade_no": paid_payment["out_trade_no"],
              "transaction_id": answers[0].json()["transaction_id"], "notification_id": notification_id,
              "call_id": 1}
    for rule in server.app.url_map.iter_rules():
        if "GET" in rule.methods and rule.endpoint != "static" and rule.arguments <= values.keys():
            get(rule.build({name: values[name] for name in rule.arguments}, append_unknown=False)[1])
    scan = get(pending_payment["code_url"], session=requests.Session())
    assert scan.status_code == 200 and pending_payment["out_trade_no"] in scan.text
    shown = [paid_order, paid_payment, pending_order, pending_payment]

    for answer in answers:
        text = answer.text + json.dumps(dict(answer.headers))
        leaked = [name for name, value in secrets.items() if value in text
                  and not (name == "merchant_password" and urlsplit(answer.url).path.startswith("/sandbox/"))]
        assert not leaked, (answer.url, leaked)
    for data in shown:
        text = json.dumps(data, ensure_ascii=False)
        assert not [name for name, value in secrets.items() if value in text]
    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    assert "/notify/wechatpay" in logged  # the notification's delivery was logged, and so inspected
    assert not [name for name, value in secrets.items() if value in logged]


# -- the instance folder ------------------------------------------------------------------------------


def _fresh_app(instance: Path):
    return create_app(
        {"TESTING": True, "WECHATPAY_SANDBOX": True, "AUTO_INIT": False, "SANDBOX_NOTIFIER": False},
        instance_path=str(instance),
    )


def _secret_files(instance: Path) -> list[Path]:
    optional = [path for path in (instance / "merchant_password",) if path.exists()]
    return sorted(
        {*(instance / "wechatpay").iterdir(), *(instance / "sandbox").glob("*.pem"), *private_key_files(instance),
         instance / "sandbox" / "merchant.json", instance / "secret_key", *optional}
    )


def _snapshot(app) -> tuple[dict[str, bytes], list[tuple]]:
    instance = Path(app.instance_path)
    files = {str(path.relative_to(instance)): path.read_bytes() for path in _secret_files(instance)}
    with app.app_context():
        products = [(p.id, p.sku, p.name, p.price_total, p.active)
                    for p in db.session.scalars(select(Product).order_by(Product.id))]
        db.session.remove()
    return files, products


def _dispose(app) -> None:
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_initialise_writes_owner_only_files_and_twice_changes_nothing(tmp_path):
    instance = tmp_path / "instance"
    app = _fresh_app(instance)
    bootstrap.initialise(app)

    files = _secret_files(instance)
    names = {str(path.relative_to(instance)) for path in files}
    assert {"wechatpay/apiclient_key.pem", "wechatpay/apiclient_cert.pem", "wechatpay/pub_key.pem",
            "wechatpay/credentials.json", "sandbox/wechatpay_private_key.pem", "sandbox/merchant.json",
            "secret_key"} <= names
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (instance, instance / "wechatpay", instance / "sandbox"):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, folder
    first = _snapshot(app)
    assert len(first[1]) == len(bootstrap.DEMO_CATALOG)

    bootstrap.initialise(app)
    assert _snapshot(app) == first

    restarted = _fresh_app(instance)  # a new process over the same folder
    bootstrap.initialise(restarted)
    assert _snapshot(restarted) == first
    assert restarted.config["SECRET_KEY"] == app.config["SECRET_KEY"]
    _dispose(app)
    _dispose(restarted)
