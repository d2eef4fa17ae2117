"""Cross-check both ways against the independent ``wechatpayv3`` SDK (2.0.4, minibear2021/wechatpayv3).

What we sign, the SDK accepts; what the SDK signs or encrypts, we accept. The SDK is built in
public-key mode so its constructor never fetches /v3/certificates, and its ``requests`` is replaced
by a tripwire so no test can reach the network.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3 import core as sdk_core
from wechatpayv3 import utils as sdk_utils

from protocol_fixtures import (  # noqa: F401 - keys is a fixture
    APIV3_KEY,
    APPID,
    MCHID,
    MERCHANT_SERIAL,
    MINIPROGRAM_APPID,
    PUB_KEY_ID,
    VECTORS,
    keys,
    notification_body,
    pem,
    signed_by_wechatpay,
)
from storefront.wechatpay import aead, signing
from storefront.wechatpay.errors import DecryptError, SignatureError
from storefront.wechatpay.notify import parse_notification
from storefront.wechatpay.verify import Verifier, verify_signature

NOW = 1_800_000_000
ORDER_BODY = {
    "appid": APPID,
    "mchid": MCHID,
    "description": "测试商品-T恤",
    "out_trade_no": "ORDER20261127000001",
    "notify_url": "https://shop.example.com/notify/wechatpay",
    "amount": {"total": 100, "currency": "CNY"},
}


class _NoNetwork:
    """Stands in for the SDK's ``requests`` module: any HTTP call fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the SDK tried requests.{name}: these tests are offline")


@pytest.fixture
def wxpay(monkeypatch) -> WeChatPay:
    """The SDK in public-key mode with the vector keys, as a merchant would configure it."""
    monkeypatch.setattr(sdk_core, "requests", _NoNetwork())
    return WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=MCHID,
        private_key=pem("merchant_apiclient_key.pem").decode(),
        cert_serial_no=MERCHANT_SERIAL,
        appid=APPID,
        apiv3_key=APIV3_KEY,
        notify_url="https://shop.example.com/notify/wechatpay",
        public_key=pem("wechatpay_pub_key.pem").decode(),
        public_key_id=PUB_KEY_ID,
    )


def _freeze_sdk_clock(monkeypatch, timestamp: str) -> None:
    """build_authorization reads time.time() itself; give its module a fixed clock."""
    monkeypatch.setattr(sdk_utils, "time", SimpleNamespace(time=lambda: float(timestamp)))


# -- request signatures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["request_signature_get", "request_signature_post"])
def test_authorization_equals_sdk_build_authorization(keys, monkeypatch, name):
    """Same timestamp and nonce: the SDK's header has our five parameters (its order differs)."""
    vector = VECTORS[name]
    _freeze_sdk_clock(monkeypatch, vector["timestamp"])
    theirs = sdk_utils.build_authorization(
        vector["canonical_url"],
        vector["method"],
        MCHID,
        MERCHANT_SERIAL,
        keys.merchant,
        data=vector["body"] or None,
        nonce_str=vector["nonce_str"],
    )
    ours = signing.sign_request(
        keys.merchant,
        mchid=MCHID,
        serial_no=MERCHANT_SERIAL,
        method=vector["method"],
        canonical_url=vector["canonical_url"],
        body=vector["body"],
        timestamp=vector["timestamp"],
        nonce=vector["nonce_str"],
    ).authorization
    assert theirs != ours  # the SDK orders mchid,nonce_str,signature,timestamp,serial_no
    assert signing.parse_authorization(theirs) == signing.parse_authorization(ours)


def test_our_request_signature_passes_sdk_rsa_verify(keys):
    """A live (clock and random nonce) signature of ours passes the SDK's RSA check.

    rsa_verify joins three values with a trailing newline each, so passing method, URL and
    "timestamp\\nnonce\\nbody" rebuilds exactly the five-line request message.
    """
    text = json.dumps(ORDER_BODY, ensure_ascii=False, separators=(",", ":"))
    signed = signing.sign_request(
        keys.merchant, mchid=MCHID, serial_no=MERCHANT_SERIAL, method="POST",
        canonical_url="/v3/pay/transactions/native", body=text,
    )
    fields = signing.parse_authorization(signed.authorization)
    packed = f"{fields['timestamp']}\n{fields['nonce_str']}\n{text}"
    assert sdk_utils.rsa_verify("POST", "/v3/pay/transactions/native", packed, fields["signature"], keys.merchant_public)
    assert not sdk_utils.rsa_verify(
        "POST", "/v3/pay/transactions/native", packed + " ", fields["signature"], keys.merchant_public
    )


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("GET", "/v3/pay/transactions/out-trade-no/ORDER20261127000001?mchid=1230000109", None),
        ("POST", "/v3/pay/transactions/native", ORDER_BODY),
        ("POST", "/v3/pay/transactions/out-trade-no/ORDER20261127000001/close", {"mchid": MCHID}),
    ],
    ids=["query", "native", "close"],
)
def test_sdk_authorization_verifies_with_ours(keys, method, path, data):
    """What the SDK sends (its own nonce, clock and json.dumps body) parses and verifies with our code."""
    header = sdk_utils.build_authorization(path, method, MCHID, MERCHANT_SERIAL, keys.merchant, data=data)
    fields = signing.parse_authorization(header)
    assert (fields["mchid"], fields["serial_no"]) == (MCHID, MERCHANT_SERIAL)
    body = json.dumps(data) if data else ""  # the SDK's serialisation: ASCII-escaped, ", " separators
    message = signing.request_message(method, path, fields["timestamp"], fields["nonce_str"], body)
    verify_signature(keys.merchant_public, message, fields["signature"])
    other_body = signing.request_message(method, path, fields["timestamp"], fields["nonce_str"], body + " ")
    with pytest.raises(SignatureError):
        verify_signature(keys.merchant_public, other_body, fields["signature"])


# -- response signatures -------------------------------------------------------------------------------

ANSWERS = {
    "200": b'{"code_url":"weixin://wxpay/bizpayurl?pr=AbC123xYz","note":"\xe6\x94\xaf\xe4\xbb\x98"}',
    "204": b"",
}


@pytest.mark.parametrize("body", ANSWERS.values(), ids=ANSWERS.keys())
def test_sign_response_passes_sdk_rsa_verify(keys, body):
    """Our answer signature (simulator side) passes the SDK's bare RSA check; a changed body does not."""
    headers = signed_by_wechatpay(body, timestamp=NOW)
    args = (headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], body.decode())
    assert sdk_utils.rsa_verify(*args, headers["Wechatpay-Signature"], keys.wechatpay_public)
    tampered = (args[0], args[1], args[2] + " ")
    assert not sdk_utils.rsa_verify(*tampered, headers["Wechatpay-Signature"], keys.wechatpay_public)


@pytest.mark.parametrize("body", ANSWERS.values(), ids=ANSWERS.keys())
def test_sign_response_passes_sdk_core_verify_signature(wxpay, body):
    """The SDK's full answer check in public-key mode: type header, serial == PUB_KEY_ID, RSA."""
    headers = signed_by_wechatpay(body, timestamp=NOW)
    assert wxpay._core._verify_signature(headers, body.decode()) is True
    assert wxpay._core._verify_signature(headers, body.decode() + "x") is False


# -- AEAD_AES_256_GCM -------------------------------------------------------------------------------------

RESOURCE = {
    "appid": APPID,
    "mchid": MCHID,
    "out_trade_no": "ORDER20261127000001",
    "transaction_id": "4200000000202611270000000001",
    "trade_type": "NATIVE",
    "trade_state": "SUCCESS",
    "trade_state_desc": "支付成功",
    "success_time": "2026-11-27T10:40:00+08:00",
    "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
}
PLAINTEXT = json.dumps(RESOURCE, ensure_ascii=False, separators=(",", ":")).encode()


def test_sdk_style_encryption_decrypts_with_ours():
    """AESGCM over the key/nonce/AAD strings' UTF-8 bytes, as the SDK's aes_decrypt expects, opens with ours."""
    sealed = AESGCM(APIV3_KEY.encode()).encrypt(b"Ab12Cd34Ef56", PLAINTEXT, b"transaction")
    ciphertext = base64.b64encode(sealed).decode()
    assert sdk_utils.aes_decrypt("Ab12Cd34Ef56", ciphertext, "transaction", APIV3_KEY) == PLAINTEXT.decode()
    assert aead.decrypt(aead.cipher(APIV3_KEY), "Ab12Cd34Ef56", ciphertext, "transaction") == PLAINTEXT


@pytest.mark.parametrize("aad", ["transaction", "refund", "certificate", ""])
def test_our_encryption_decrypts_with_sdk(aad):
    """aead.encrypt (the simulator's notifier) opens with the SDK's aes_decrypt, empty AAD included."""
    ciphertext = aead.encrypt(aead.cipher(APIV3_KEY), "Zz98Yy76Xx54", PLAINTEXT, aad)
    assert sdk_utils.aes_decrypt("Zz98Yy76Xx54", ciphertext, aad, APIV3_KEY) == PLAINTEXT.decode()


def test_wrong_aad_sdk_returns_none_ours_raises():
    """The difference we chose: the SDK answers None on a bad tag, we raise DecryptError."""
    ciphertext = aead.encrypt(aead.cipher(APIV3_KEY), "Zz98Yy76Xx54", PLAINTEXT, "transaction")
    assert sdk_utils.aes_decrypt("Zz98Yy76Xx54", ciphertext, "refund", APIV3_KEY) is None
    with pytest.raises(DecryptError):
        aead.decrypt(aead.cipher(APIV3_KEY), "Zz98Yy76Xx54", ciphertext, "refund")


# -- paySign ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("appid", [APPID, MINIPROGRAM_APPID], ids=["jsapi", "miniprogram"])
def test_pay_sign_equals_sdk_sign(keys, wxpay, appid):
    """Live timestamp and nonce: our paySign equals WeChatPay.sign / Core.sign over the four values."""
    params = signing.pay_params(keys.merchant, appid, "wx27103456000000000000000000000001")
    four = [params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]
    assert params["paySign"] == wxpay.sign(four) == wxpay._core.sign(four)


# -- a whole notification ---------------------------------------------------------------------------------------


def test_our_notification_accepted_by_sdk_callback(keys, wxpay):
    """Outer JSON + sign_response headers + aead.encrypt: WeChatPay.callback verifies and decrypts it."""
    body = notification_body(PLAINTEXT, nonce="Qw3Er5Ty7Ui9")
    headers = signed_by_wechatpay(body, timestamp=NOW)

    result = wxpay.callback(headers, body)

    assert result is not None
    assert result["resource"] == RESOURCE
    outer = json.loads(body)
    assert {k: v for k, v in result.items() if k != "resource"} == {k: v for k, v in outer.items() if k != "resource"}
    # And ours agrees on the very same bytes.
    event = parse_notification(headers, body, Verifier({PUB_KEY_ID: keys.wechatpay_public}),
                               aead.cipher(APIV3_KEY), now=NOW)
    assert event.resource == result["resource"]


def test_tampered_notification_refused_by_sdk_callback(wxpay):
    """Sanity for the test above: the SDK does check, so its acceptance means something."""
    body = notification_body(PLAINTEXT, nonce="Qw3Er5Ty7Ui9")
    headers = signed_by_wechatpay(body, timestamp=NOW)
    assert wxpay.callback(headers, body.replace(b"TRANSACTION", b"TRANSACTI0N")) is None
