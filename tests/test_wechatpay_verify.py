"""Refusals: start from one validly signed message and alter exactly one thing per case.

stripe-python's webhook tests are the pattern: a real signature, then one change, then a named error.
Every failure is a WeChatPayError subclass; nothing returns None or a falsy "not verified".
"""

from __future__ import annotations

import base64
import json

import pytest
from requests.structures import CaseInsensitiveDict

from protocol_fixtures import (  # noqa: F401 - keys is a fixture
    APIV3_KEY,
    PLATFORM_SERIAL,
    PUB_KEY_ID,
    keys,
    load_keys,
    notification_body,
    signed_by_wechatpay,
)
from storefront.wechatpay import aead, signing
from storefront.wechatpay.errors import (
    APIError,
    DecryptError,
    NotificationError,
    SignatureError,
    TransportError,
    WeChatPayError,
)
from storefront.wechatpay.notify import Transaction, parse_notification
from storefront.wechatpay.verify import Verifier

NOW = 1_800_000_000  # the verifier's clock in every case: passed as now=, never slept for
BODY = '{"prepay_id":"wx27103456000000000000000000000001","note":"支付"}'.encode()
HEADERS = signed_by_wechatpay(BODY, timestamp=NOW)


@pytest.fixture
def verifier(keys) -> Verifier:
    """Public-key mode: trusts only PUB_KEY_ID."""
    return Verifier({PUB_KEY_ID: keys.wechatpay_public})


def test_errors_form_one_tree():
    """Callers that only care that the protocol failed catch WeChatPayError."""
    for error in (SignatureError, DecryptError, NotificationError, TransportError, APIError):
        assert issubclass(error, WeChatPayError)


def test_valid_message_verifies(verifier):
    """The baseline every refusal below departs from."""
    verification = verifier.verify(HEADERS, BODY, now=NOW)
    assert verification.message == f"{NOW}\n{HEADERS['Wechatpay-Nonce']}\n{BODY.decode()}\n"


# -- signatures: one alteration each ----------------------------------------------------------------


def _with(**changes: str) -> dict[str, str]:
    """HEADERS with some values replaced (keyword names use _ for -)."""
    return {**HEADERS, **{name.replace("_", "-"): value for name, value in changes.items()}}


def _without(name: str) -> dict[str, str]:
    return {key: value for key, value in HEADERS.items() if key != name}


def _signature_over(message: str, *, merchant: bool = False) -> str:
    key = load_keys().merchant if merchant else load_keys().platform
    return signing.sign(key, message)


NONCE_LINE = f"{NOW}\n{HEADERS['Wechatpay-Nonce']}\n"
SIGNATURE = HEADERS["Wechatpay-Signature"]
BAD = "does not verify"  # the reasons, as the SignatureError names them
SKEW = "more than 5 minutes"
UNKNOWN = "unknown Wechatpay-Serial"

# id -> (headers, body, the verifier's now, reason)
REFUSALS = {
    "body-one-byte": (HEADERS, BODY.replace(b"0001", b"0002"), NOW, BAD),
    "body-trailing-newline": (HEADERS, BODY + b"\n", NOW, BAD),
    "body-reserialised": (HEADERS, json.dumps(json.loads(BODY)).encode(), NOW, BAD),
    "body-not-utf8": (HEADERS, BODY + b"\xff", NOW, "not UTF-8"),
    "signature-of-other-body": (_with(Wechatpay_Signature=_signature_over(NONCE_LINE + "{}\n")), BODY, NOW, BAD),
    "signed-by-merchant-key": (
        _with(Wechatpay_Signature=_signature_over(NONCE_LINE + BODY.decode() + "\n", merchant=True)),
        BODY,
        NOW,
        BAD,
    ),
    "nonce-changed": (_with(Wechatpay_Nonce="0" * 32), BODY, NOW, BAD),
    "timestamp-header-changed": (_with(Wechatpay_Timestamp=str(NOW + 1)), BODY, NOW + 1, BAD),
    "timestamp-301s-old": (HEADERS, BODY, NOW + 301, SKEW),
    "timestamp-301s-ahead": (HEADERS, BODY, NOW - 301, SKEW),
    "timestamp-in-milliseconds": (signed_by_wechatpay(BODY, timestamp=NOW * 1000), BODY, NOW, SKEW),
    "timestamp-not-a-number": (_with(Wechatpay_Timestamp="soon"), BODY, NOW, "not a number"),
    "unknown-serial": (_with(Wechatpay_Serial="PUB_KEY_ID_0000000000000000000000000000000001"), BODY, NOW, UNKNOWN),
    "serial-case-changed": (_with(Wechatpay_Serial=PUB_KEY_ID.lower()), BODY, NOW, UNKNOWN),
    "platform-serial-not-trusted": (_with(Wechatpay_Serial=PLATFORM_SERIAL), BODY, NOW, UNKNOWN),
    **{
        f"missing-{name}": (_without(name), BODY, NOW, f"missing header {name}")
        for name in ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial")
    },
    "empty-signature": (_with(Wechatpay_Signature=""), BODY, NOW, "missing header Wechatpay-Signature"),
    "signature-type-sm2": (_with(Wechatpay_Signature_Type="WECHATPAY2-SM2-WITH-SM3"), BODY, NOW, "Signature-Type"),
    "signtest-probe": (_with(Wechatpay_Signature="WECHATPAY/SIGNTEST/" + SIGNATURE), BODY, NOW, "probe"),
    "signature-not-base64": (_with(Wechatpay_Signature="not base64 at all!"), BODY, NOW, BAD),
    "signature-non-ascii": (_with(Wechatpay_Signature="签名"), BODY, NOW, BAD),
    "signature-truncated": (_with(Wechatpay_Signature=SIGNATURE[:-4]), BODY, NOW, BAD),
}


@pytest.mark.parametrize(("headers", "body", "now", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refused(verifier, headers, body, now, reason):
    """Each single alteration raises SignatureError, a WeChatPayError, naming the failed check."""
    with pytest.raises(SignatureError, match=reason) as refused:
        verifier.verify(headers, body, now=now)
    assert isinstance(refused.value, WeChatPayError)


@pytest.mark.parametrize("offset", [-299, 0, 299])
def test_timestamp_within_five_minutes_accepted(verifier, offset):
    """299 s either way is inside the window."""
    verifier.verify(HEADERS, BODY, now=NOW + offset)


def test_missing_signature_type_defaults_to_rsa(verifier):
    """wechatpay-go treats an absent Wechatpay-Signature-Type as RSA; only a wrong one is refused."""
    verifier.verify(_without("Wechatpay-Signature-Type"), BODY, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({name.lower(): value for name, value in HEADERS.items()}, id="plain-dict-lower-case"),
        pytest.param({name.upper(): value for name, value in HEADERS.items()}, id="plain-dict-upper-case"),
        pytest.param(CaseInsensitiveDict({name.lower(): value for name, value in HEADERS.items()}),
                     id="requests-headers"),
    ],
)
def test_header_names_are_case_insensitive(verifier, headers):
    """HTTP header names have no case: FastAPI-style lower-case dicts verify too."""
    verifier.verify(headers, BODY, now=NOW)


@pytest.mark.parametrize(
    "serial", [PLATFORM_SERIAL, PLATFORM_SERIAL.lower(), "0" + PLATFORM_SERIAL], ids=["exact", "lower", "zero-padded"]
)
def test_certificate_serial_compared_as_number(keys, serial):
    """Certificate mode: a platform serial matches as a hex number, as the SDK compares it."""
    verifier = Verifier({PLATFORM_SERIAL: keys.platform_cert_public})
    headers = signed_by_wechatpay(BODY, timestamp=NOW, serial=serial)
    assert verifier.knows(serial)
    assert verifier.verify(headers, BODY, now=NOW).serial == serial


# -- AEAD_AES_256_GCM: one alteration each ---------------------------------------------------------------

NONCE = "aBcDeF123456"
AAD = "transaction"
PLAINTEXT = '{"out_trade_no":"ORDER20261127000001","amount":{"total":100}}'.encode()
AES = aead.cipher(APIV3_KEY)
CIPHERTEXT = aead.encrypt(AES, NONCE, PLAINTEXT, AAD)
SEALED = base64.b64decode(CIPHERTEXT)


def test_decrypt_round_trip():
    """The baseline for the decryption refusals."""
    assert aead.decrypt(AES, NONCE, CIPHERTEXT, AAD) == PLAINTEXT


DECRYPT_REFUSALS = {
    "wrong-key": (aead.cipher("K" * 32), NONCE, CIPHERTEXT, AAD),
    "wrong-aad": (AES, NONCE, CIPHERTEXT, "refund"),
    "aad-missing": (AES, NONCE, CIPHERTEXT, ""),
    "wrong-nonce": (AES, "aBcDeF123457", CIPHERTEXT, AAD),
    "nonce-not-12-bytes": (AES, "aBcDeF", CIPHERTEXT, AAD),
    "truncated-one-byte": (AES, NONCE, base64.b64encode(SEALED[:-1]).decode(), AAD),
    "tag-removed": (AES, NONCE, base64.b64encode(SEALED[:-16]).decode(), AAD),
    "truncated-base64": (AES, NONCE, CIPHERTEXT[:-3], AAD),
    "one-bit-flipped": (AES, NONCE, base64.b64encode(bytes([SEALED[0] ^ 1]) + SEALED[1:]).decode(), AAD),
    "not-base64": (AES, NONCE, "***", AAD),
    "empty": (AES, NONCE, "", AAD),
}


@pytest.mark.parametrize(("aes", "nonce", "ciphertext", "aad"), DECRYPT_REFUSALS.values(), ids=DECRYPT_REFUSALS.keys())
def test_decrypt_refused(aes, nonce, ciphertext, aad):
    """Each raises DecryptError: never None, never garbage plaintext (minibear2021's aes_decrypt returns None)."""
    with pytest.raises(DecryptError) as refused:
        aead.decrypt(aes, nonce, ciphertext, aad)
    assert isinstance(refused.value, WeChatPayError)


@pytest.mark.parametrize("key", ["", "K" * 31, "K" * 33, "密" * 32], ids=["empty", "31", "33", "32-chars-96-bytes"])
def test_apiv3_key_must_be_32_bytes(key):
    """The key is the 32 UTF-8 bytes as-is; any other length is refused up front."""
    with pytest.raises(DecryptError):
        aead.cipher(key)


# -- notifications: valid signature, bad content ----------------------------------------------------------

RESOURCE = (
    b'{"appid":"wxd678efh567hg6787","mchid":"1230000109","out_trade_no":"ORDER20261127000001",'
    b'"transaction_id":"4200000000202611270000000001","trade_state":"SUCCESS","amount":{"total":100}}'
)
TRANSACTION = json.loads(RESOURCE)


def _parse(body: bytes, headers: dict[str, str] | None = None):
    """parse_notification at NOW, signed correctly unless other headers are given."""
    verifier = Verifier({PUB_KEY_ID: load_keys().wechatpay_public})
    return parse_notification(headers or signed_by_wechatpay(body, timestamp=NOW), body, verifier, AES, now=NOW)


def _outer(**changes) -> bytes:
    """A well-formed notification body with some top-level or resource fields changed (None drops)."""
    outer = json.loads(notification_body(RESOURCE))
    for name, value in changes.items():
        target = outer["resource"] if name in outer["resource"] else outer
        if value is None:
            del target[name]
        else:
            target[name] = value
    return json.dumps(outer, ensure_ascii=False).encode()


def test_notification_parses():
    """The baseline for the notification refusals."""
    event = _parse(notification_body(RESOURCE))
    assert event.transaction().out_trade_no == "ORDER20261127000001"
    assert event.resource == json.loads(RESOURCE)


def test_notification_with_lower_case_headers_parses():
    """A framework that lower-cases header names (FastAPI, ASGI) still gets through."""
    body = notification_body(RESOURCE)
    headers = {name.lower(): value for name, value in signed_by_wechatpay(body, timestamp=NOW).items()}
    assert _parse(body, headers).event_type == "TRANSACTION.SUCCESS"


NOTIFICATION_REFUSALS = {
    "malformed-json": b'{"id":"EV-1","resource":',
    "json-array": b"[]",
    "resource-missing": _outer(resource=None),
    "resource-not-object": _outer(resource="ciphertext"),
    "id-missing": _outer(id=None),
    "event_type-missing": _outer(event_type=None),
    "algorithm-unsupported": _outer(algorithm="AEAD_SM4_GCM"),
    "nonce-missing": _outer(nonce=None),
    "ciphertext-missing": _outer(ciphertext=None),
    "resource-plaintext-not-json": notification_body(b"not json"),
    "resource-plaintext-not-object": notification_body(b'["SUCCESS"]'),
    "resource-plaintext-not-utf8": notification_body(b'{"a":"\xff"}'),
}


@pytest.mark.parametrize("body", NOTIFICATION_REFUSALS.values(), ids=NOTIFICATION_REFUSALS.keys())
def test_notification_refused(body):
    """Correctly signed, wrongly shaped: NotificationError, not KeyError or JSONDecodeError."""
    with pytest.raises(NotificationError) as refused:
        _parse(body)
    assert isinstance(refused.value, WeChatPayError)


def test_notification_encrypted_with_other_key_raises_decrypt_error():
    """Signed fine, sealed with another APIv3 key: DecryptError, not None."""
    with pytest.raises(DecryptError):
        _parse(notification_body(RESOURCE, apiv3_key="K" * 32))


def test_notification_signature_checked_before_json():
    """A garbage body with a bad signature is a SignatureError: nothing is parsed before verifying."""
    signed_for_other = signed_by_wechatpay(notification_body(RESOURCE), timestamp=NOW)
    with pytest.raises(SignatureError):
        _parse(b'{"id":', signed_for_other)


def test_notification_tampered_after_signing_refused():
    """One changed byte in the outer JSON breaks the signature over the raw bytes."""
    body = notification_body(RESOURCE)
    headers = signed_by_wechatpay(body, timestamp=NOW)
    with pytest.raises(SignatureError):
        _parse(body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCES5"), headers)


# -- the decrypted transaction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({k: v for k, v in TRANSACTION.items() if k != "out_trade_no"}, id="no-out_trade_no"),
        pytest.param({k: v for k, v in TRANSACTION.items() if k != "trade_state"}, id="no-trade_state"),
        pytest.param({**TRANSACTION, "amount": {"total": "100"}}, id="total-as-string"),
        pytest.param({**TRANSACTION, "amount": {"total": 1.0}}, id="total-as-float"),
        pytest.param({**TRANSACTION, "amount": {"total": True}}, id="total-as-bool"),
        pytest.param({**TRANSACTION, "amount": "100"}, id="amount-not-object"),
        pytest.param([], id="not-an-object"),
        pytest.param(None, id="null"),
    ],
)
def test_transaction_refuses_wrong_shape(data):
    """Amounts are integer fen; a malformed transaction is a NotificationError, never AttributeError."""
    with pytest.raises(NotificationError):
        Transaction.from_dict(data)
