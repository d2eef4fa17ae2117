"""The flow record and its inspector: what is recorded, who may see it, and that no secret leaks."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import insert, select

from conftest import LiveServer, Shopper, wait_for
from storefront.extensions import db
from storefront.models import ProtocolMessage, utcnow
from storefront.services import flowcodec, flowlog

APPSECRET = "demoAppSecret0123456789abcdefABCD"


@pytest.fixture
def server(make_app):
    """A live shop + simulator whose config names an appsecret, so the leak search can look for it."""
    live = LiveServer(make_app(SANDBOX_NOTIFIER=True, WECHATPAY_APPSECRET=APPSECRET,
                               ACTIVE_QUERY_INTERVAL_SECONDS=0, RECONCILE_AFTER_SECONDS=0))
    yield live
    live.stop()


def flow(shopper: Shopper, order_no: str) -> dict:
    answer = shopper.http.get(f"{shopper.base_url}/orders/{order_no}/flow.json", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def kinds(data: dict) -> list[str]:
    return [step["kind"] for step in data["steps"]]


def paid_order(shopper: Shopper, **pay_options) -> tuple[dict, dict]:
    order = shopper.buy(product_id=1)
    payment = shopper.start_native(order["order_no"])
    assert shopper.pay_in_simulator(payment["out_trade_no"], **pay_options).status_code == 200
    return order, payment


# -- redaction -----------------------------------------------------------------------------


def test_redact_scrubs_secrets_and_keeps_the_signature():
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    text = (
        f'key {pem} {{"access_token":"AT123","refresh_token":"RT456","session_key":"SK789","openid":"o1",'
        f'"appsecret":"{APPSECRET}"}} GET /sns/oauth2/access_token?appid=wx1&secret=S3cr3t&code=C1 '
        'jscode2session?js_code=J&secret=XYZ&grant_type=authorization_code apiv3 K' + "k" * 31
    )
    out = flowlog.redact(text, ["K" + "k" * 31])
    for secret in ("MIIEvQIBADANBgkq", "AT123", "RT456", "SK789", APPSECRET, "S3cr3t", "XYZ", "K" + "k" * 31):
        assert secret not in out
    assert '"openid":"o1"' in out and "code=C1" in out and "appid=wx1" in out
    cut = flowlog.redact("-----BEGIN RSA PRIVATE KEY-----\nMIIEvQ")  # cut short by a size bound
    assert "MIIEvQ" not in cut
    headers = flowlog.redact_headers({"Authorization": 'WECHATPAY2-SHA256-RSA2048 mchid="1",signature="abc"',
                                      "Cookie": "session=x"})
    assert headers["Authorization"].endswith('signature="abc"') and headers["Cookie"] == flowlog.REDACTED


def test_text_without_a_secret_hint_is_left_as_it_is():
    """The quick gate before redaction: every secret's name holds one of ``_SECRET_HINTS``, so a text
    the gate passes is one ``redact`` leaves unchanged, and every text ``redact`` changes is stopped."""
    for name in (*flowlog._SECRET_NAMES, "private key"):
        assert any(hint in name for hint in flowlog._SECRET_HINTS), name
    assert not flowcodec.KEPT_HEADERS & flowlog._SECRET_HEADERS  # a record never keeps one to redact by name
    known = ["K" + "k" * 31]
    texts = ['{"attach":"a gift","amount":{"total":8800}}', "GET /v3/pay?mchid=1&Secret=x", '{"Session_Key":"s"}',
             "-----BEGIN PRIVATE KEY-----\nMII", "apiv3 " + known[0], '{"idempotency_key":"k1"}',
             "Wechatpay-Serial PUB_KEY_ID_0114", "支付成功 ✓"]
    for text in texts:
        if not flowlog._may_hold_secret_text(text, known):
            assert flowlog.redact(text, known) == text, text
        if flowlog.redact(text, known) != text:
            assert flowlog._may_hold_secret_text(text, known), text
    for text in (texts[0], texts[-2], texts[-1]):
        assert not flowlog._may_hold_secret_text(text, known), text


def test_size_bound_and_retention(app):
    with app.app_context():
        limit = app.config["FLOW_MAX_FIELD_CHARS"]
        flowlog.recorder().record({"direction": "out", "kind": "api", "title": "big", "request_body": "x" * (limit + 50)})
        flowlog.recorder().record({"direction": "out", "kind": "api", "title": "x" * 500})
        rows = list(db.session.scalars(select(ProtocolMessage).order_by(ProtocolMessage.id)))
        assert len(rows[0].request_body) == limit and rows[0].truncated
        assert len(rows[1].title) == 120 and rows[1].truncated
        db.session.rollback()  # release SQLite's lock before writing on another connection
        with db.engine.begin() as connection:
            connection.execute(insert(ProtocolMessage).values(
                at=utcnow() - timedelta(days=app.config["FLOW_RETENTION_DAYS"] + 1), direction="out", kind="api",
                title="old"))
        db.session.rollback()
        assert flowlog.purge(app) == 1
        assert [r.title for r in db.session.scalars(select(ProtocolMessage))] == ["big", "x" * 119 + "…"]


# -- what a payment records ------------------------------------------------------------------


def test_native_payment_is_recorded_step_by_step(server):
    shopper = Shopper(server.url)
    order, payment = paid_order(shopper)
    # The notification is recorded once the shop has answered it: just after the order turns paid.
    data = wait_for(lambda: (d := flow(shopper, order["order_no"]))["status"] == "paid"
                    and "notify_payment" in kinds(d) and d)
    steps = data["steps"]
    order_of = kinds(data)
    expected = ["order_created", "prepay_native", "payer_paid", "notify_payment", "state"]
    assert all(kind in order_of for kind in expected), json.dumps(steps, ensure_ascii=False)[:3000]
    positions = [order_of.index(kind) for kind in expected]
    assert positions == sorted(positions), order_of
    prepay = steps[order_of.index("prepay_native")]
    assert prepay["signed_message"].startswith("POST\n/v3/pay/transactions/native\n")
    assert prepay["signed_message"].endswith("\n") and prepay["signed_message"].count("\n") == 5
    assert prepay["verification"] == "passed" and prepay["verify_serial"].startswith("PUB_KEY_ID_")
    assert prepay["verify_message"].count("\n") == 3 and '"code_url"' in prepay["verify_message"]
    assert prepay["out_trade_no"] == payment["out_trade_no"] and prepay["answer"].startswith("200")
    notify = steps[order_of.index("notify_payment")]
    assert notify["verification"] == "passed" and notify["ok"] is True
    assert [c["name"] for c in notify["checks"]] == list(flowlog.CHECK_ORDER)
    assert all(c["ok"] for c in notify["checks"]), notify["checks"]
    assert any('"out_trade_no"' in s["text"] for s in notify["sections"] if "resource" in s["label"])
    assert steps[-1]["kind"] == "state" and "支付通知" in steps[-1]["sections"][0]["text"]
    page = shopper.http.get(f"{server.url}/orders/{order['order_no']}/flow", timeout=10)
    assert page.status_code == 200 and "<svg" in page.text and "微信App" in page.text
    assert page.text.count('class="flow-step ') == len(steps)


def test_titles_and_numbers_rebuilt_show_as_stored_ones_did(server):
    """An HTTP message's title ("METHOD path") and a linked message's out_trade_no are not stored
    (NULL); the inspector shows the same as for a row written with both, the way rows were before."""
    from storefront.models import Payment
    from storefront.services import flowcodec

    shopper = Shopper(server.url)
    order, payment = paid_order(shopper)
    before = wait_for(lambda: (d := flow(shopper, order["order_no"]))["status"] == "paid"
                      and "notify_payment" in kinds(d) and d)
    with server.app.app_context():
        rows = db.session.scalars(select(ProtocolMessage).where(ProtocolMessage.kind.in_(
            ["prepay_native", "notify_payment"])).order_by(ProtocolMessage.id)).all()
        assert [(r.stored_title, r.stored_out_trade_no) for r in rows] == [(None, None), (None, None)]
        assert [r.title for r in rows] == ["POST /v3/pay/transactions/native", "POST /notify/wechatpay"]
        assert [r.out_trade_no for r in rows] == [payment["out_trade_no"]] * 2
        assert rows[0].canonical_url == "/v3/pay/transactions/native"
        # As stored before: both columns, and the canonical URL only in the title.
        attempt = db.session.scalar(select(Payment).where(Payment.out_trade_no == payment["out_trade_no"]))
        for row in rows:
            fields = {k: v for k, v in row.fields.items() if k != "canonical_url"}
            db.session.execute(ProtocolMessage.__table__.update().where(ProtocolMessage.id == row.id).values(
                title=row.title, out_trade_no=attempt.out_trade_no, payload=flowcodec.encode(fields)))
        db.session.commit()
    after = flow(shopper, order["order_no"])
    assert after == before


def test_lost_notification_recovered_by_active_query(server):
    shopper = Shopper(server.url)
    order, payment = paid_order(shopper, notify="drop")
    assert wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")  # the poll queries
    data = flow(shopper, order["order_no"])
    assert "notify_payment" not in kinds(data)
    query = next(s for s in data["steps"] if s["kind"] == "query" and "SUCCESS" in s["answer"])
    assert query["origin"] == "poll" and query["verification"] == "passed"
    assert query["signed_message"].startswith(f"GET\n/v3/pay/transactions/out-trade-no/{payment['out_trade_no']}?mchid=")
    assert query["signed_message"].endswith("\n\n")  # a GET signs an empty body line
    assert kinds(data).index("payer_paid") < kinds(data).index("state", kinds(data).index("payer_paid"))
    assert "主动查询" in data["steps"][-1]["sections"][0]["text"]


def test_a_job_run_is_recorded_as_the_job_s(server):
    from storefront.services import jobs

    shopper = Shopper(server.url)
    order, payment = paid_order(shopper, notify="drop")
    with server.app.app_context():
        assert jobs.reconcile()[1] == 1  # no request: the cron job's own call
    data = flow(shopper, order["order_no"])
    query = next(s for s in data["steps"] if s["kind"] == "query")
    assert query["origin"] == "job" and "SUCCESS" in query["answer"] and query["verification"] == "passed"
    assert "定时任务" in data["steps"][-1]["sections"][0]["text"]


@pytest.mark.parametrize("tamper, failed", [("body", "signature"), ("timestamp", "timestamp"), ("serial", "serial")])
def test_tampered_notification_is_refused_and_recorded(server, tamper, failed):
    shopper = Shopper(server.url)
    order = shopper.buy(product_id=1)
    payment = shopper.start_native(order["order_no"])
    answer = requests.post(f"{server.url}/sandbox/control/tamper",
                           json={"out_trade_no": payment["out_trade_no"], "tamper": tamper}, timeout=10)
    assert answer.status_code == 200 and answer.json()["http_status"] == 401, answer.text
    data = flow(shopper, order["order_no"])
    assert data["status"] == "pending"
    notify = next(s for s in data["steps"] if s["kind"] == "notify_payment")
    assert notify["ok"] is False and notify["verification"] == "failed"
    results = {c["name"]: c["ok"] for c in notify["checks"]}
    assert results[failed] is False
    names = [c["name"] for c in notify["checks"]]
    assert all(results[n] for n in names[: names.index(failed)])
    assert all(results[n] is None for n in names[names.index(failed) + 1: -1])  # never run after a failure
    assert not any("resource" in s["label"] for s in notify["sections"])  # nothing untrusted decrypted


def test_browser_events_are_json_only_and_bound_to_the_owner(server):
    shopper = Shopper(server.url)
    order = shopper.buy(product_id=1)
    payment = shopper.start_native(order["order_no"])
    url = f"{server.url}/orders/{order['order_no']}/flow/events"
    assert shopper.http.post(url, data={"event": "qr_shown"}, timeout=10).status_code == 415
    assert shopper.http.post(url, json={"event": "rm -rf"}, timeout=10).status_code == 400
    stranger = Shopper(server.url)
    stranger.buy(product_id=2)
    assert stranger.http.post(url, json={"event": "qr_shown"}, timeout=10).status_code == 404
    answer = shopper.http.post(url, json={"event": "qr_shown", "out_trade_no": payment["out_trade_no"],
                                          "detail": {"secret": "s3cret-value"}}, timeout=10)
    assert answer.status_code == 204
    step = next(s for s in flow(shopper, order["order_no"])["steps"] if s["kind"] == "qr_shown")
    assert step["out_trade_no"] == payment["out_trade_no"] and "s3cret-value" not in json.dumps(step)


def test_another_session_gets_404_and_a_merchant_gets_the_flow(server, make_app):
    shopper = Shopper(server.url)
    order = shopper.buy(product_id=1)
    stranger = Shopper(server.url)
    stranger.buy(product_id=1)
    for path in ("flow", "flow.json", "flow?fragment=1"):
        assert stranger.http.get(f"{server.url}/orders/{order['order_no']}/{path}", timeout=10).status_code == 404
        assert requests.get(f"{server.url}/orders/{order['order_no']}/{path}", timeout=10).status_code == 404
    client = server.app.test_client()
    with client.session_transaction() as session:
        session["merchant"] = {"name": "ops"}  # a forged flag is not a merchant session
    assert client.get(f"/orders/{order['order_no']}/flow.json").status_code == 404
    client.get("/merchant/login")
    with client.session_transaction() as session:
        csrf = session["csrf"]
    password = (Path(server.app.instance_path) / "merchant_password").read_text().strip()
    assert client.post("/merchant/login", data={"csrf_token": csrf, "password": password}).status_code == 303
    assert client.get(f"/orders/{order['order_no']}/flow.json").status_code == 200
    assert client.get("/orders/SF000/flow").status_code == 404


def test_refund_call_and_refund_notification_join_the_order_flow(server):
    import re

    shopper = Shopper(server.url)
    order, _payment = paid_order(shopper)
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    merchant = requests.Session()  # the merchant area (its own login), refunding 10.00
    token = re.compile(r'name="csrf_token" value="([^"]+)"')
    password = (Path(server.app.instance_path) / "merchant_password").read_text().strip()
    page = merchant.get(f"{server.url}/merchant/login", timeout=10)
    merchant.post(f"{server.url}/merchant/login", data={"csrf_token": token.search(page.text).group(1),
                                                        "password": password}, timeout=10)
    page = merchant.get(f"{server.url}/merchant/orders/{order['order_no']}", timeout=10)
    merchant.post(f"{server.url}/merchant/orders/{order['order_no']}/refund",
                  data={"csrf_token": token.search(page.text).group(1), "amount": "10.00"}, timeout=15)
    data = wait_for(lambda: "notify_refund" in kinds(d := flow(shopper, order["order_no"])) and d)
    refund = next(s for s in data["steps"] if s["kind"] == "refund")
    assert refund["signed_message"].startswith("POST\n/v3/refund/domestic/refunds\n")
    assert refund["verification"] == "passed"
    notify = next(s for s in data["steps"] if s["kind"] == "notify_refund")
    assert [c["name"] for c in notify["checks"]] == list(flowlog.REFUND_CHECK_ORDER)
    assert all(c["ok"] for c in notify["checks"]), notify["checks"]
    as_merchant = merchant.get(f"{server.url}/orders/{order['order_no']}/flow.json", timeout=10)
    assert as_merchant.status_code == 200 and as_merchant.json()["steps"] == data["steps"]
    page = merchant.get(f"{server.url}/orders/{order['order_no']}/flow", timeout=10)
    assert page.status_code == 200 and f'href="/merchant/orders/{order["order_no"]}"' in page.text


# -- no secret anywhere ----------------------------------------------------------------------


def _pem_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_no_secret_in_any_record_or_inspector_page(server):
    instance = Path(server.app.instance_path)
    credentials = json.loads((instance / "wechatpay" / "credentials.json").read_text())
    secrets = [credentials["apiv3_key"], APPSECRET]
    secrets += [v for k, v in credentials.items() if "secret" in k and v]
    key_lines = _pem_lines(instance / "wechatpay" / "apiclient_key.pem")
    key_lines += _pem_lines(instance / "sandbox" / "wechatpay_private_key.pem")
    needles = secrets + [line for line in key_lines if "-----" not in line] + ["PRIVATE KEY-----"]

    shopper = Shopper(server.url)
    orders = []
    order, _payment = paid_order(shopper)  # notified
    orders.append(order)
    order, _payment = paid_order(shopper, notify="drop")  # found by the active query
    orders.append(order)
    order = shopper.buy(product_id=3)
    payment = shopper.start_native(order["order_no"])
    requests.post(f"{server.url}/sandbox/control/tamper", json={"out_trade_no": payment["out_trade_no"]}, timeout=10)
    shopper.http.post(f"{server.url}/orders/{order['order_no']}/flow/events",
                      json={"event": "bridge_result", "detail": f"secret={APPSECRET}"}, timeout=10)
    orders.append(order)
    wait_for(lambda: all(shopper.order(o["order_no"])["status"] == "paid" for o in orders[:2]))
    wait_for(lambda: "notify_payment" in kinds(flow(shopper, orders[0]["order_no"])))

    pages = []
    for o in orders:
        for path in ("flow", "flow.json", "flow?fragment=1", "flow?embed=1"):
            answer = shopper.http.get(f"{server.url}/orders/{o['order_no']}/{path}", timeout=10)
            assert answer.status_code == 200
            pages.append(answer.text)
    for path in ("/tour", f"/tour/native/{orders[0]['order_no']}", "/docs/", "/docs/signatures",
                 "/docs/notifications"):
        pages.append(shopper.http.get(server.url + path, timeout=10).text)
    with server.app.app_context():
        rows = list(db.session.scalars(select(ProtocolMessage)))
        # Every column as stored, and the compact payload decoded (compression would hide a leak).
        stored = [json.dumps({**{c.name: str(getattr(r, c.name)) for c in ProtocolMessage.__table__.c},
                              "payload": r.fields, "signed_message": flowlog.signed_message(r),
                              "verify_message": flowlog.verify_message(r)}, ensure_ascii=False) for r in rows]
    assert len(rows) >= 7  # 3 prepays, a notification, a query, a refused notification, a page event
    assert any("Authorization" in text and "signature=" in text for text in stored)  # the signature is shown
    for needle in needles:
        assert len(needle) >= 8
        for text in stored + pages:
            assert needle not in text, f"secret fragment {needle[:6]}… leaked"


# -- docs ------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_images_exist_and_every_explanation_links_to_a_real_section(client):
    """In each language: screenshots referenced by the docs exist (``make docs-screenshots`` writes
    them) and are served; every step's explanation links to a page and section that exist."""
    import re

    from storefront.flow.explain import explanation

    kinds = ["order_created", "prepay_native", "prepay_h5", "prepay_jsapi", "query", "close", "refund",
             "notify_payment", "qr_shown", "qr_expired", "bridge_result", "requestpayment_result", "payer_paid",
             "state", "h5_redirect", "h5_returned", "paid_shown", "certificates", "api"]
    for language, tag in (("zh", "zh-CN"), ("en", "en")):
        pages = sorted((DOCS / language).glob("*.md"))
        assert {p.stem for p in pages} >= {"native", "h5", "jsapi", "miniprogram", "signatures", "notifications",
                                           "lifecycle", "index", "interface"}
        images = {m for p in pages for m in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", p.read_text())}
        assert images, "the docs show screenshots"
        for image in images:
            assert (DOCS / language / image).is_file(), f"{image} is missing: run make docs-screenshots"
            assert image.startswith("../img/en/" if language == "en" else "../img/") and (
                language == "en" or "/en/" not in image), f"{language} docs show {image}"
            answer = client.get(f"/docs/{image.removeprefix('../')}")
            answer.close()  # a file response: close it, or its file stays open
            assert answer.status_code == 200
        for kind in kinds:
            info = explanation(kind)
            page = client.get(f"/docs/{info.doc}?lang={tag}")
            assert page.status_code == 200, info.doc
            text = page.get_data(as_text=True)
            assert f'<article class="card doc" lang="{tag}">' in text, (info.doc, tag)
            if info.anchor:
                assert f'id="{info.anchor}"' in text, f"{language}/{info.doc}#{info.anchor}"
    assert client.get("/docs/..%2Fsecret").status_code == 404
    assert client.get("/docs/nope").status_code == 404


def test_a_notification_keeps_the_same_headers_read_from_the_wsgi_environ():
    """The record reads a request's kept headers straight from its WSGI environ: the same names,
    values and order as iterating werkzeug's headers would give."""
    from werkzeug.datastructures import EnvironHeaders
    from werkzeug.test import EnvironBuilder

    from storefront.services import flowcodec

    sent = {"Wechatpay-Signature": "c2ln", "Request-ID": "r-1", "User-Agent": "Mozilla/5.0",
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048", "Wechatpay-Serial": "PUB_KEY_ID_0",
            "Wechatpay-Timestamp": "1764536400", "Wechatpay-Nonce": "n0nce", "Authorization": "x", "X-Other": ""}
    environ = EnvironBuilder(path="/notify/wechatpay", method="POST", headers=sent, data=b"{}",
                             content_type="application/json").get_environ()
    headers = EnvironHeaders(environ)
    expected = flowcodec.kept_headers(headers)
    assert list(flowlog.NotificationTrace(headers, b"{}").headers.items()) == list(expected.items())
    assert "User-Agent" not in expected and expected["Request-Id"] == "r-1"
