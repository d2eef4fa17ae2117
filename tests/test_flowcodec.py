"""The compact flow record: what is stored, what is rebuilt for the inspector, and FLOW_RECORD.

A record keeps the headers that matter, the bodies and the checks in one payload; the signed
strings, the shop's own request signature and a notification's ciphertext are rebuilt for
display, byte for byte what crossed the wire.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import select

from conftest import LiveServer, Shopper, wait_for
from storefront.extensions import db
from storefront.models import ProtocolMessage
from storefront.services import flowcodec, flowlog


def test_the_dictionary_is_frozen():
    """Stored payloads need this exact dictionary to open: a change needs a new format byte."""
    assert hashlib.sha256(flowcodec.DICTIONARY_V1).hexdigest() == (
        "47e32021d6edd7a41be89ee523f98bce04bc772c76975605e592b3829a0b8ff5")


def test_encode_decode_round_trip_and_compression():
    fields = {
        "request_headers": {"Wechatpay-Nonce": "n" * 32, "Content-Type": "application/json"},
        "request_body": json.dumps({"id": "x", "summary": "支付成功", "pad": "a" * 400}, ensure_ascii=False),
        "checks": [{"name": "headers", "ok": True, "detail": ""}, {"name": "serial", "ok": False, "detail": "bad"},
                   {"name": "amount", "ok": None, "detail": ""}],
        "url": "http://127.0.0.1:5000/notify/wechatpay", "origin": "wechatpay",
    }
    payload = flowcodec.encode(fields)
    assert payload[:1] == flowcodec.DEFLATED_V1 and len(payload) < len(fields["request_body"]) / 2
    assert flowcodec.decode(payload) == fields
    small = flowcodec.encode({"origin": "browser", "request_body": "weixin://ok"})
    assert small[:1] == flowcodec.PLAIN and flowcodec.decode(small) == {"origin": "browser",
                                                                         "request_body": "weixin://ok"}
    assert flowcodec.encode({}) == b"" and flowcodec.decode(b"") == {} and flowcodec.decode(b"?junk") == {}


def test_only_the_headers_that_matter_are_kept():
    kept = flowcodec.kept_headers({"Host": "x", "Content-Length": "9", "Connection": "close", "Cookie": "s=1",
                                   "Wechatpay-Signature": "sig", "Authorization": "WECHATPAY2-SHA256-RSA2048 a",
                                   "Content-Type": "application/json", "Request-ID": "r"})
    assert kept == {"Wechatpay-Signature": "sig", "Authorization": "WECHATPAY2-SHA256-RSA2048 a",
                    "Content-Type": "application/json", "Request-ID": "r"}


@pytest.fixture
def server(make_app):
    live = LiveServer(make_app(SANDBOX_NOTIFIER=True))
    yield live
    live.stop()


def _paid(server) -> tuple[Shopper, dict, dict]:
    shopper = Shopper(server.url)
    order = shopper.buy(product_id=1)
    payment = shopper.start_native(order["order_no"])
    assert shopper.pay_in_simulator(payment["out_trade_no"]).status_code == 200
    wait_for(lambda: "notify_payment" in [s["kind"] for s in _flow(shopper, order["order_no"])["steps"]])
    return shopper, order, payment


def _flow(shopper: Shopper, order_no: str) -> dict:
    answer = shopper.http.get(f"{shopper.base_url}/orders/{order_no}/flow.json", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _section(step: dict, label: str) -> str:
    return next(s["text"] for s in step["sections"] if label in s["label"])


def test_what_is_not_stored_is_rebuilt_exactly(server):
    """The shop's request signature verifies over the rebuilt signed string; the notification
    body shown is the one received (its ciphertext decrypts); none of them is in the row."""
    shopper, order, payment = _paid(server)
    steps = _flow(shopper, order["order_no"])["steps"]
    prepay = next(s for s in steps if s["kind"] == "prepay_native")
    request = _section(prepay, "请求")
    signature = request.split('signature="', 1)[1].split('"', 1)[0]
    creds = server.app.extensions["wechatpay"].credentials
    creds.private_key.public_key().verify(base64.b64decode(signature), prepay["signed_message"].encode("utf-8"),
                                          padding.PKCS1v15(), hashes.SHA256())
    notify = next(s for s in steps if s["kind"] == "notify_payment")
    body = json.loads(_section(notify, "通知请求").split("\n\n", 1)[1])
    resource = body["resource"]
    from storefront.wechatpay import aead

    plain = json.loads(aead.decrypt(server.app.extensions["wechatpay"].aes, resource["nonce"],
                                    resource["ciphertext"], resource["associated_data"]))
    assert plain["out_trade_no"] == payment["out_trade_no"]
    assert json.loads(_section(notify, "resource")) == plain
    assert notify["verify_message"].count("\n") == 3 and resource["ciphertext"] in notify["verify_message"]
    assert notify["verify_serial"].startswith("PUB_KEY_ID_") and prepay["verify_serial"].startswith("PUB_KEY_ID_")
    with server.app.app_context():
        rows = {m.kind: m for m in db.session.scalars(select(ProtocolMessage))}
        stored = {kind: json.dumps(m.fields, ensure_ascii=False) for kind, m in rows.items()}
        assert signature not in stored["prepay_native"] and resource["ciphertext"] not in stored["notify_payment"]
        assert all(len(m.payload) < 1200 for m in rows.values()), {k: len(m.payload) for k, m in rows.items()}


def test_a_changed_key_shows_a_note_not_a_wrong_value(server):
    shopper, order, _payment = _paid(server)
    gateway = server.app.extensions["wechatpay"]
    from cryptography.hazmat.primitives.asymmetric import rsa

    from storefront.wechatpay import aead

    creds = gateway.credentials
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    original = (gateway._aes, creds.private_key)
    try:
        gateway._aes = aead.cipher("0" * 32)
        object.__setattr__(creds, "private_key", other)
        steps = _flow(shopper, order["order_no"])["steps"]
    finally:
        gateway._aes = original[0]
        object.__setattr__(creds, "private_key", original[1])
    prepay = next(s for s in steps if s["kind"] == "prepay_native")
    assert "the merchant key has changed since" in _section(prepay, "请求")
    notify = next(s for s in steps if s["kind"] == "notify_payment")
    assert "the APIv3 key has changed since" in _section(notify, "通知请求")
    assert '"out_trade_no"' in _section(notify, "resource")  # the plaintext itself is stored


@pytest.mark.parametrize("level, rate, expected", [
    ("off", 0.0, set()),
    ("failures", 0.0, {"notify_payment"}),  # only the refused (tampered) notification
    ("failures", 1.0, {"prepay_native", "notify_payment"}),  # every attempt sampled
    ("all", 0.0, {"prepay_native", "notify_payment"}),
])
def test_flow_record_levels(make_app, level, rate, expected):
    live = LiveServer(make_app(SANDBOX_NOTIFIER=True, FLOW_RECORD=level, FLOW_SAMPLE_RATE=rate))
    try:
        shopper = Shopper(live.url)
        order = shopper.buy(product_id=1)
        payment = shopper.start_native(order["order_no"])
        answer = requests.post(f"{live.url}/sandbox/control/tamper",
                               json={"out_trade_no": payment["out_trade_no"], "tamper": "body"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["http_status"] == 401
        with live.app.app_context():
            rows = list(db.session.scalars(select(ProtocolMessage)))
            kinds = {m.kind for m in rows}
            statuses = {m.kind: m.status for m in rows}
    finally:
        live.stop()
    assert kinds == expected
    if level == "failures" and rate == 0.0:
        assert statuses["notify_payment"] == 401


def test_an_unknown_level_is_refused_at_start(make_app):
    with pytest.raises(ValueError, match="FLOW_RECORD"):
        make_app(FLOW_RECORD="some")


def test_production_records_failures_by_default(app):
    from flask import Flask

    assert app.config["FLOW_RECORD"] == "all"  # demo mode
    production = Flask("production")
    production.config["WECHATPAY_SANDBOX"] = False
    flowlog.register(production)
    assert production.config["FLOW_RECORD"] == "failures" and production.config["FLOW_SAMPLE_RATE"] == 0.0
    recorder = flowlog.Recorder(app)
    app.config["FLOW_RECORD"], app.config["FLOW_SAMPLE_RATE"] = "failures", 0.5
    chosen = [recorder.keeps(False, f"SF{i:04d}P01") for i in range(400)]
    assert 120 < sum(chosen) < 280  # about half the attempts
    assert chosen == [recorder.keeps(False, f"SF{i:04d}P01") for i in range(400)]  # the same ones, every time
    assert recorder.keeps(True, "SF0000P01")


def test_the_migration_converts_existing_records_both_ways(app):
    """Rows written before the compact record keep their content, and come back on downgrade."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    headers = {"Authorization": 'WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N1",signature="S1",timestamp="7",'
                                'serial_no="A"', "Host": "api.mch.weixin.qq.com", "Content-Type": "application/json"}
    body = '{"out_trade_no":"SF1P01"}'
    with app.app_context():
        downgrade(revision="a12_sandbox_merchants")
        with db.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO protocol_messages (at, direction, kind, title, origin, method, url, status, "
                "request_headers, request_body, response_headers, response_body, signed_message, verify_message, "
                "verification, checks, decrypted, error, truncated) VALUES (CURRENT_TIMESTAMP, 'out', 'query', "
                "'POST /v3/pay/transactions/native', 'poll', 'POST', 'http://x/v3/pay/transactions/native', 200, "
                ":qh, :qb, :sh, '{}', :signed, '', 'none', '[]', '', '', false)"),
                {"qh": json.dumps(headers), "qb": body, "sh": json.dumps({"Request-ID": "R1", "Date": "today"}),
                 "signed": f"POST\n/v3/pay/transactions/native\n7\nN1\n{body}\n"})
        upgrade()
        message = db.session.scalars(select(ProtocolMessage)).one()
        assert message.origin == "poll" and message.url == "http://x/v3/pay/transactions/native"
        assert message.request_headers == {k: v for k, v in headers.items() if k != "Host"}
        assert message.response_headers == {"Request-ID": "R1"} and message.request_body == body
        assert flowlog.signed_message(message) == f"POST\n/v3/pay/transactions/native\n7\nN1\n{body}\n"
        assert flowlog.shown_request_headers(message)["Authorization"].endswith('signature="S1",timestamp="7",'
                                                                                'serial_no="A"')
        db.session.rollback()
        downgrade(revision="a12_sandbox_merchants")
        with db.engine.connect() as connection:
            row = connection.execute(text("SELECT request_body, signed_message, origin, url, request_headers "
                                          "FROM protocol_messages")).one()
        assert row[:4] == (body, f"POST\n/v3/pay/transactions/native\n7\nN1\n{body}\n", "poll",
                           "http://x/v3/pay/transactions/native")
        assert json.loads(row[4])["Authorization"].endswith('signature="S1",timestamp="7",serial_no="A"')
        upgrade()


def test_a_native_payment_commits_once_before_the_call_and_once_after(server):
    """The attempt, then WeChat Pay's answer with the call's flow record: two commits of the
    shop's database (the simulator's own are its business), and the prepay is recorded."""
    from sqlalchemy import event

    shopper = Shopper(server.url)
    order = shopper.buy(product_id=1)
    with server.app.app_context():
        shop_engine = db.engines[None]
    commits = []
    listener = lambda connection: commits.append(connection.engine is shop_engine)  # noqa: E731
    event.listen(shop_engine, "commit", listener)
    try:
        payment = shopper.start_native(order["order_no"])
    finally:
        event.remove(shop_engine, "commit", listener)
    assert commits.count(True) == 2, commits
    steps = _flow(shopper, order["order_no"])["steps"]
    prepay = next(s for s in steps if s["kind"] == "prepay_native")
    assert prepay["out_trade_no"] == payment["out_trade_no"] and prepay["verification"] == "passed"


def test_an_api_call_no_commit_follows_is_still_recorded(server):
    """A call whose answer changes nothing (a query of an unpaid attempt, outside a request):
    its record is written when the app context ends."""
    from storefront import gateway

    shopper = Shopper(server.url)
    order = shopper.buy(product_id=1)
    payment = shopper.start_native(order["order_no"])
    with server.app.app_context():
        transaction, _response = gateway.client().query_by_out_trade_no(payment["out_trade_no"])
        assert transaction.trade_state == "NOTPAY"
    kinds = [s["kind"] for s in _flow(shopper, order["order_no"])["steps"]]
    assert "query" in kinds, kinds


@pytest.mark.parametrize("attach", ["", "礼物 for 小明", "note appsecret=abc", "x" * 20_000])
def test_an_applied_notification_is_recorded_the_quick_way_exactly_as_the_general_way(make_app, attach):
    """The common case's record (``NotificationTrace._plain_row``) is the general way's row, byte for
    byte; a resource with anything to redact or cut is left to the general way."""
    from storefront import gateway
    from storefront.models import utcnow
    from storefront.sandbox.models import SandboxTransaction

    app = make_app(FLOW_MAX_FIELD_CHARS=16_000)
    with app.app_context():
        platform = app.extensions["sandbox"].platform
        creds = gateway.gateway().credentials
        txn = SandboxTransaction(
            mchid=creds.mchid, appid=creds.appid, out_trade_no="SF20261201P01", trade_type="NATIVE",
            transaction_id="4200002026120100000000000001", bank_type="OTHERS", attach=attach or None,
            success_time=utcnow().replace(microsecond=0), payer_openid=platform.openid(creds.appid), amount_total=8800)
        _event_id, body = platform.payment_notification_body(txn)
        headers = platform.notification_headers(body)
        trace = flowlog.NotificationTrace(headers, body.encode("utf-8"), url="http://shop.example/notify/wechatpay")
        trace.parsed(gateway.gateway().parse_notification(headers, body.encode("utf-8")))
        for name, detail in (("mchid", creds.mchid), ("appid", creds.appid),
                             ("trade_state", f"SUCCESS {txn.transaction_id}"), ("amount", "8800 / 8800")):
            trace.check(name, True, detail)
        recorder = app.extensions["flowlog"]
        quick = trace._plain_row(recorder, 204, "applied")
        general = recorder.bounded(trace.values(flowlog._Answer(204, "applied", "")), trace.opened)
    if attach and attach[0] != "礼":
        assert quick is None  # a secret's name, or a body over the bound: redacted or cut the general way
        return
    assert quick is not None
    general.pop("elapsed_ms")  # the quick row gets it when taken (``take_prepared``)
    assert quick == general
    assert flowcodec.decode(quick["payload"])["resource_plain"].count("SF20261201P01") == 1


def test_the_layout_is_the_json_encoders_own_output():
    """``_layout`` writes each payload exactly as ``json`` would (stored payloads and the dictionary
    depend on those bytes), whatever the texts hold."""
    texts = ["", "plain", 'quo"te and back\\slash', "支付成功 ✓", "tab\tnew\nline\r\x00\x1f", "\u2028\u2029",
             "emoji 😀", "[REDACTED]"]
    for i, text in enumerate(texts):
        fields = {
            "request_headers": {"Wechatpay-Nonce": text, f"X-{i}": "v", "Content-Type": "application/json"},
            "request_body": text + '{"a":1}', "response_body": text,
            "checks": [{"name": "headers", "ok": True, "detail": text}, {"name": "serial", "ok": False, "detail": ""},
                       {"name": "amount", "ok": None, "detail": text}],
            "url": "http://127.0.0.1/notify/" + text, "origin": "wechatpay", "cipher_at": 200 + i, "cipher_head": text,
            "resource_plain": text, "signed_note": text, "canonical_url": text,
        }
        data = {key: fields[name] for name, key in flowcodec.FIELDS.items() if fields.get(name) not in (None, "", {}, [])}
        data["ck"] = [[c["name"], c["ok"], c["detail"]] for c in fields["checks"]]
        expected = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        assert flowcodec._layout(fields) == expected
        assert flowcodec.decode(flowcodec.encode(fields))["request_body"] == fields["request_body"]
