"""Acceptance: the ``wechatpayv3`` SDK pointed at the simulator, in both verification-key modes.

In platform-certificate mode the SDK downloads and decrypts ``/v3/certificates`` itself and
verifies every answer with the certificate ``Wechatpay-Serial`` names (it raises otherwise);
in public-key mode it names the PUB_KEY_ID and verifies with the public key. Each mode
creates, queries and closes orders, refunds and queries refunds, and opens a notification.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3 import core as sdk_core

from storefront.extensions import db
from storefront.models import utcnow
from storefront.sandbox.models import SandboxApiCall
from storefront.wechatpay.times import format_time


def _sdk(server, monkeypatch, cert_dir: Path | None, public_key_mode: bool) -> WeChatPay:
    instance = Path(server.app.instance_path)
    credentials = json.loads((instance / "wechatpay" / "credentials.json").read_text())
    options = {}
    if public_key_mode:
        options = {"public_key": (instance / "wechatpay" / "pub_key.pem").read_text(),
                   "public_key_id": credentials["public_key_id"]}
    with monkeypatch.context() as patch:
        # The constructor downloads certificates from the hard-coded production host; the SDK has
        # no base-URL option. Defer that one call until _gate_way points at the simulator.
        patch.setattr(sdk_core.Core, "_init_certificates", lambda self: None)
        wxpay = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE, mchid=credentials["mchid"],
            private_key=(instance / "wechatpay" / "apiclient_key.pem").read_text(),
            cert_serial_no=credentials["merchant_serial"], appid=credentials["appid"],
            apiv3_key=credentials["apiv3_key"], notify_url=server.url + "/notify/wechatpay",
            cert_dir=str(cert_dir) if cert_dir else None, timeout=(5, 10), **options,
        )
    wxpay._core._gate_way = server.url + "/sandbox"  # the SDK's API base, pointed at the simulator
    if not public_key_mode:
        wxpay._core._init_certificates()  # now from the simulator: GET /v3/certificates, decrypt, cache
    return wxpay


def _calls(server) -> list[SandboxApiCall]:
    """The SDK's calls (the shop on the same server may call too, e.g. to verify a notification)."""
    with server.app.app_context():
        calls = db.session.scalars(select(SandboxApiCall).order_by(SandboxApiCall.id))
        return [c for c in calls if "wechatpay python sdk" in c.request_headers]


def _journey(server, wxpay: WeChatPay) -> None:
    """Create, query, close; pay, refund, query the refund: every answer verified by the SDK."""
    def order() -> str:
        number = "SDK" + secrets.token_hex(6).upper()
        code, message = wxpay.pay(description="宜兴紫砂壶", out_trade_no=number, amount={"total": 39900},
                                  time_expire=format_time(utcnow() + timedelta(minutes=15)))
        assert code == 200 and json.loads(message)["code_url"], message
        return number

    closing = order()
    code, message = wxpay.query(out_trade_no=closing)
    assert code == 200 and json.loads(message)["trade_state"] == "NOTPAY"
    code, message = wxpay.close(out_trade_no=closing)
    assert code == 204
    code, message = wxpay.query(out_trade_no=closing)
    assert json.loads(message)["trade_state"] == "CLOSED"

    paying = order()
    paid = requests.post(f"{server.url}/sandbox/control/pay", json={"out_trade_no": paying}, timeout=10).json()
    code, message = wxpay.query(transaction_id=paid["transaction_id"])
    assert code == 200 and json.loads(message)["trade_state"] == "SUCCESS"
    code, message = wxpay.refund(out_refund_no=paying + "R1", amount={"refund": 10000, "total": 39900, "currency": "CNY"},
                                 out_trade_no=paying, reason="SDK 验收")
    assert code == 200 and json.loads(message)["status"] == "PROCESSING", message
    code, message = wxpay.refund(out_refund_no=paying + "R2", amount={"refund": 29900, "total": 39900, "currency": "CNY"},
                                 transaction_id=paid["transaction_id"])
    assert code == 200, message
    finished = requests.post(f"{server.url}/sandbox/control/refund",
                             json={"out_refund_no": paying + "R1", "result": "SUCCESS"}, timeout=10)
    assert finished.status_code == 200
    code, message = wxpay.query_refund(out_refund_no=paying + "R1")
    assert code == 200 and json.loads(message)["status"] == "SUCCESS" and json.loads(message)["success_time"]
    code, message = wxpay.refund(out_refund_no=paying + "R3", amount={"refund": 1, "total": 39900, "currency": "CNY"},
                                 out_trade_no=paying)
    assert code == 400 and json.loads(message)["code"] == "INVALID_REQUEST"  # beyond the paid amount


def _notification(server, out_trade_no: str) -> tuple[dict, str]:
    platform = server.app.extensions["sandbox"].platform
    with server.app.app_context():
        txn = platform.find(platform.merchant.mchid, out_trade_no)
        _event_id, body = platform.payment_notification_body(txn)
        return platform.notification_headers(body), body


def test_sdk_in_platform_certificate_mode(live_server, monkeypatch, tmp_path):
    cert_dir = tmp_path / "wechatpay_certs"
    wxpay = _sdk(live_server, monkeypatch, cert_dir, public_key_mode=False)
    serial = live_server.app.extensions["sandbox"].platform.certificates.all()[0].serial
    assert [c.serial_number for c in wxpay._core._certificates] == [int(serial, 16)]
    assert [p.name for p in cert_dir.iterdir()] == [f"{serial}.pem"]  # the SDK's own cache
    _journey(live_server, wxpay)
    calls = _calls(live_server)
    assert calls[0].path == "/v3/certificates"
    assert all(c.wechatpay_serial is None and c.auth_ok for c in calls)  # no key named: certificate mode
    assert {c.response_serial for c in calls} == {serial}

    # A rotation: the next answer names a serial the SDK does not know; it downloads and verifies.
    new = live_server.app.test_cli_runner().invoke(args=["sandbox-rotate-cert"])
    assert new.exit_code == 0
    new_serial = live_server.app.extensions["sandbox"].platform.certificates.all()[-1].serial
    code, message = wxpay.query(out_trade_no="NOPE00000001")
    assert code == 404
    code, message = wxpay.pay(description="轮换之后", out_trade_no="SDK" + secrets.token_hex(6).upper(),
                              amount={"total": 100})
    assert code == 200
    assert _calls(live_server)[-1].response_serial == new_serial
    assert int(new_serial, 16) in {c.serial_number for c in wxpay._core._certificates}

    # Notifications, signed by the newest certificate, open with the SDK's callback(). (Pinned:
    # "auto" follows the merchant's latest request, and the shop on this server calls too.)
    requests.post(f"{live_server.url}/sandbox/control/settings", json={"notify_signing": "certificate"}, timeout=10)
    headers, body = _notification(live_server, _paid_number(live_server))
    assert headers["Wechatpay-Serial"] == new_serial
    opened = wxpay.callback(headers, body)
    assert opened is not None and opened["resource"]["trade_state"] == "SUCCESS"
    tampered = dict(headers, **{"Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"][19:]})
    assert wxpay.callback(tampered, body) is None


def _paid_number(server) -> str:
    from storefront.sandbox.models import SandboxTransaction

    with server.app.app_context():
        return db.session.scalar(select(SandboxTransaction.out_trade_no)
                                 .where(SandboxTransaction.trade_state.in_(("SUCCESS", "REFUND"))).limit(1))


def test_sdk_in_public_key_mode(live_server, monkeypatch):
    wxpay = _sdk(live_server, monkeypatch, None, public_key_mode=True)
    _journey(live_server, wxpay)
    public_key_id = live_server.app.extensions["sandbox"].platform.merchant.public_key_id
    calls = _calls(live_server)
    assert calls and all(c.wechatpay_serial == public_key_id and c.auth_ok for c in calls)
    assert {c.response_serial for c in calls} == {public_key_id}
    requests.post(f"{live_server.url}/sandbox/control/settings", json={"notify_signing": "public_key"}, timeout=10)
    headers, body = _notification(live_server, _paid_number(live_server))
    assert headers["Wechatpay-Serial"] == public_key_id
    opened = wxpay.callback(headers, body)
    assert opened is not None and opened["resource"]["amount"]["total"] == 39900


def test_sdk_refuses_an_answer_signed_by_a_key_it_does_not_hold(live_server, monkeypatch, tmp_path):
    """The simulator's answers are only as good as the SDK's refusal of wrong ones: a certificate-mode
    client gets an answer pinned to the public key it was never given."""
    wxpay = _sdk(live_server, monkeypatch, tmp_path / "certs", public_key_mode=False)
    requests.post(f"{live_server.url}/sandbox/control/settings", json={"answer_signing": "public_key"}, timeout=10)
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises a bare Exception/ValueError here
        wxpay.pay(description="x", out_trade_no="SDK" + secrets.token_hex(6).upper(), amount={"total": 1})
