"""Fixed, hand-checked vectors (tests/vectors/vectors.json): byte-exact signatures, decryptions, times.

RSA PKCS#1 v1.5 and AES-GCM are deterministic for fixed inputs, so every output is compared whole.
The vectors were cross-checked against the wechatpayv3 SDK and openssl, not against this code.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from protocol_fixtures import (  # noqa: F401 - keys is a fixture
    APIV3_KEY,
    APPID,
    MCHID,
    MERCHANT_SERIAL,
    MINIPROGRAM_APPID,
    PLATFORM_SERIAL,
    PUB_KEY_ID,
    VECTORS,
    keys,
    pem,
)
from storefront.wechatpay import aead, signing
from storefront.wechatpay.errors import SignatureError
from storefront.wechatpay.keys import certificate_serial, same_serial
from storefront.wechatpay.notify import parse_notification
from storefront.wechatpay.times import format_time, parse_time
from storefront.wechatpay.verify import Verifier, verify_signature

# -- request signature and the Authorization header -------------------------------------------


@pytest.mark.parametrize("name", ["request_signature_get", "request_signature_post"])
def test_request_signature_matches_vector(keys, name):
    """GET (empty body: ends in \\n\\n) and POST (UTF-8 Chinese body) sign to the vector, byte for byte."""
    vector = VECTORS[name]
    signed = signing.sign_request(
        keys.merchant,
        mchid=MCHID,
        serial_no=MERCHANT_SERIAL,
        method=vector["method"],
        canonical_url=vector["canonical_url"],
        body=vector["body"],
        timestamp=vector["timestamp"],
        nonce=vector["nonce_str"],
    )
    assert signed.message == vector["message"]
    assert signed.authorization == vector["authorization"]
    assert (signed.timestamp, signed.nonce) == (vector["timestamp"], vector["nonce_str"])
    assert signing.sign(keys.merchant, vector["message"]) == vector["signature"]


def test_get_message_ends_with_empty_body_line():
    """Five lines, each terminated, so an empty body leaves the message ending in \\n\\n."""
    vector = VECTORS["request_signature_get"]
    assert vector["message"].endswith("\n\n")
    assert vector["message"].count("\n") == 5


def test_post_message_signs_raw_utf8_body():
    """The body is signed as sent: compact JSON, Chinese kept as UTF-8, not \\u-escaped."""
    vector = VECTORS["request_signature_post"]
    assert "测试商品-T恤" in vector["body"]
    assert vector["message"].endswith(vector["body"] + "\n")


@pytest.mark.parametrize("name", ["request_signature_get", "request_signature_post"])
def test_parse_authorization_round_trip(keys, name):
    """The vector header parses to its five fields, and they verify against the rebuilt message."""
    vector = VECTORS[name]
    fields = signing.parse_authorization(vector["authorization"])
    assert fields == {
        "mchid": MCHID,
        "nonce_str": vector["nonce_str"],
        "timestamp": vector["timestamp"],
        "serial_no": MERCHANT_SERIAL,
        "signature": vector["signature"],
    }
    message = signing.request_message(
        vector["method"], vector["canonical_url"], fields["timestamp"], fields["nonce_str"], vector["body"]
    )
    verify_signature(keys.merchant_public, message, fields["signature"])


def test_parse_authorization_ignores_order_and_spaces_after_commas():
    """Parameter order is not significant; the SDK's order and ", " separators parse the same."""
    vector = VECTORS["request_signature_get"]
    reordered = (
        f'{signing.AUTH_SCHEME} mchid="{MCHID}", nonce_str="{vector["nonce_str"]}", '
        f'signature="{vector["signature"]}", timestamp="{vector["timestamp"]}", serial_no="{MERCHANT_SERIAL}"'
    )
    assert signing.parse_authorization(reordered) == signing.parse_authorization(vector["authorization"])


def _without(field: str) -> str:
    header = VECTORS["request_signature_get"]["authorization"]
    scheme, _, params = header.partition(" ")
    kept = [part for part in params.split(",") if not part.startswith(f"{field}=")]
    return f"{scheme} {','.join(kept)}"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param(
            VECTORS["request_signature_get"]["authorization"].replace("WECHATPAY2-SHA256-RSA2048", "Bearer", 1),
            id="wrong-scheme",
        ),
        pytest.param(
            VECTORS["request_signature_get"]["authorization"].replace(
                "WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SM2-WITH-SM3", 1
            ),
            id="sm2-scheme",
        ),
        pytest.param("WECHATPAY2-SHA256-RSA2048", id="scheme-only"),
        pytest.param("WECHATPAY2-SHA256-RSA2048 garbage", id="garbage"),
        pytest.param("WECHATPAY2-SHA256-RSA2048 mchid=1230000109,nonce_str=abc", id="unquoted"),
        pytest.param('WECHATPAY2-SHA256-RSA2048 mchid="1" junk nonce_str="2"', id="junk-between"),
        pytest.param('WECHATPAY2-SHA256-RSA2048 mchid="1230000109",nonce_str="",timestamp="1",'
                     'serial_no="1",signature="x"', id="empty-value"),
        *[pytest.param(_without(field), id=f"missing-{field}") for field in signing.AUTH_FIELDS],
    ],
)
def test_parse_authorization_refuses(header):
    """Anything but the scheme plus all five quoted, non-empty fields raises SignatureError."""
    with pytest.raises(SignatureError):
        signing.parse_authorization(header)


# -- response signatures ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["response_signature_200", "response_signature_204"])
def test_response_signature_verifies(keys, name):
    """The 200 and the empty-body 204 vectors pass the Verifier in public-key mode."""
    vector = VECTORS[name]
    timestamp = int(vector["headers"]["Wechatpay-Timestamp"])
    verifier = Verifier({PUB_KEY_ID: keys.wechatpay_public})
    verification = verifier.verify(vector["headers"], vector["body"].encode("utf-8"), now=timestamp)
    assert verification.message == vector["message"]
    assert verification.serial == PUB_KEY_ID
    assert verification.timestamp == vector["headers"]["Wechatpay-Timestamp"]
    assert verification.nonce == vector["headers"]["Wechatpay-Nonce"]


@pytest.mark.parametrize("name", ["response_signature_200", "response_signature_204"])
def test_response_signature_verifies_in_certificate_mode(keys, name):
    """The same signature verifies with the platform certificate when Wechatpay-Serial names it."""
    vector = VECTORS[name]
    headers = {**vector["headers"], "Wechatpay-Serial": PLATFORM_SERIAL}
    verifier = Verifier({PLATFORM_SERIAL: keys.platform_cert_public})
    verifier.verify(headers, vector["body"].encode("utf-8"), now=int(headers["Wechatpay-Timestamp"]))


@pytest.mark.parametrize("name", ["response_signature_200", "response_signature_204"])
def test_sign_response_reproduces_vector(keys, name):
    """The simulator's side: sign_response with the vector's timestamp and nonce gives its headers."""
    vector = VECTORS[name]
    headers = signing.sign_response(
        keys.platform,
        PUB_KEY_ID,
        vector["body"].encode("utf-8"),
        timestamp=vector["headers"]["Wechatpay-Timestamp"],
        nonce=vector["headers"]["Wechatpay-Nonce"],
    )
    assert headers == vector["headers"]


# -- notification and AEAD_AES_256_GCM ------------------------------------------------------------


def test_notification_vector_parses(keys):
    """The full notification verifies on its raw bytes and decrypts to the vector's plaintext."""
    vector = VECTORS["notification_transaction_success"]
    verifier = Verifier({PUB_KEY_ID: keys.wechatpay_public})
    event = parse_notification(
        vector["headers"],
        vector["body"].encode("utf-8"),
        verifier,
        aead.cipher(APIV3_KEY),
        now=int(vector["headers"]["Wechatpay-Timestamp"]),
    )
    assert event.resource == json.loads(vector["resource_plaintext"])
    assert event.verification.message == vector["signed_message"]
    assert (event.event_type, event.original_type, event.summary) == ("TRANSACTION.SUCCESS", "transaction", "支付成功")
    assert event.id == "2f0a3c5e-7b1d-5e2f-9a4b-0c1d2e3f4a5b"
    transaction = event.transaction()
    assert transaction.out_trade_no == "ORDER20231114000001"
    assert transaction.transaction_id == "4200001234202311140000000001"
    assert transaction.trade_state == "SUCCESS"
    assert transaction.amount_total == 100
    assert transaction.payer_openid == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def test_notification_resource_decrypts_byte_exact():
    """The resource's ciphertext opens to exactly the vector plaintext bytes, and encrypts back."""
    vector = VECTORS["notification_transaction_success"]
    aes = aead.cipher(APIV3_KEY)
    plaintext = aead.decrypt(
        aes, vector["resource_nonce"], vector["resource_ciphertext"], vector["resource_associated_data"]
    )
    assert plaintext == vector["resource_plaintext"].encode("utf-8")
    assert (
        aead.encrypt(aes, vector["resource_nonce"], plaintext, vector["resource_associated_data"])
        == vector["resource_ciphertext"]
    )


def test_refund_resource_decrypts():
    """REFUND.SUCCESS resource (AAD "refund"): note refund_status, not status."""
    vector = VECTORS["notification_refund_resource"]
    aes = aead.cipher(APIV3_KEY)
    plaintext = aead.decrypt(aes, vector["nonce"], vector["ciphertext"], vector["associated_data"])
    assert plaintext == vector["plaintext"].encode("utf-8")
    assert json.loads(plaintext)["refund_status"] == "SUCCESS"
    assert aead.encrypt(aes, vector["nonce"], plaintext, vector["associated_data"]) == vector["ciphertext"]


def test_platform_certificate_decrypts_to_its_pem():
    """/v3/certificates encrypt_certificate (AAD "certificate") opens to the platform cert PEM."""
    vector = VECTORS["platform_certificate_encrypted"]
    plaintext = aead.decrypt(
        aead.cipher(APIV3_KEY), vector["nonce"], vector["ciphertext"], vector["associated_data"]
    )
    assert plaintext == pem(vector["plaintext_file"])
    assert certificate_serial(plaintext) == vector["serial_no"] == PLATFORM_SERIAL


# -- paySign ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "appid"), [("pay_sign_jsapi", APPID), ("pay_sign_miniprogram", MINIPROGRAM_APPID)]
)
def test_pay_params_match_vector(keys, name, appid):
    """JSAPI and mini-program paySign: four signed lines, signType not among them."""
    vector = VECTORS[name]
    prepay_id = vector["package"].removeprefix("prepay_id=")
    params = signing.pay_params(
        keys.merchant, appid, prepay_id, timestamp=vector["timeStamp"], nonce=vector["nonceStr"]
    )
    assert params == {
        "appId": appid,
        "timeStamp": vector["timeStamp"],
        "nonceStr": vector["nonceStr"],
        "package": vector["package"],
        "signType": "RSA",
        "paySign": vector["paySign"],
    }
    assert signing.pay_sign_message(appid, vector["timeStamp"], vector["nonceStr"], vector["package"]) == (
        vector["message"]
    )


# -- serials ------------------------------------------------------------------------------------------


def test_merchant_serial_from_certificate():
    """Upper-case hex as `openssl x509 -serial` prints it."""
    assert certificate_serial(pem("merchant_apiclient_cert.pem")) == MERCHANT_SERIAL
    assert int(MERCHANT_SERIAL, 16) == int(VECTORS["identities"]["merchant_serial_int"])


def test_same_serial_compares_numbers():
    """Case and dropped leading zeros do not matter; a public key id is never a hex serial."""
    assert same_serial(PLATFORM_SERIAL, PLATFORM_SERIAL.lower())
    assert same_serial(PLATFORM_SERIAL, "00" + PLATFORM_SERIAL)
    assert not same_serial(PLATFORM_SERIAL, MERCHANT_SERIAL)
    assert not same_serial(PUB_KEY_ID, PUB_KEY_ID)


# -- times ----------------------------------------------------------------------------------------------

UTC = timezone.utc
BEIJING = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(datetime(2026, 11, 27, 2, 34, 56, tzinfo=UTC), id="utc"),
        pytest.param(datetime(2026, 11, 27, 2, 34, 56), id="naive-is-utc"),
        pytest.param(datetime(2026, 11, 27, 2, 34, 56, 999_999, tzinfo=UTC), id="fraction-dropped"),
        pytest.param(datetime(2026, 11, 27, 10, 34, 56, tzinfo=BEIJING), id="beijing"),
        pytest.param(datetime(2026, 11, 26, 21, 34, 56, tzinfo=timezone(timedelta(hours=-5))), id="new-york"),
    ],
)
def test_format_time_is_beijing_without_fraction(moment):
    """time_expire as WeChat Pay writes times: +08:00, whole seconds."""
    assert format_time(moment) == "2026-11-27T10:34:56+08:00"


def test_format_time_crosses_midnight_into_beijing_day():
    """16:00 UTC is already the next day in Beijing."""
    assert format_time(datetime(2026, 12, 31, 16, 0, 0, tzinfo=UTC)) == "2027-01-01T00:00:00+08:00"


@pytest.mark.parametrize(
    "text",
    ["2026-11-27T10:34:56+08:00", "2026-11-27T02:34:56Z", "2026-11-27T02:34:56+00:00", "2026-11-27T10:34:56.000+08:00"],
)
def test_parse_time_accepts_rfc3339_forms(text):
    """Offsets, Z and fractional seconds all give the same aware instant."""
    parsed = parse_time(text)
    assert parsed.tzinfo is not None
    assert parsed == datetime(2026, 11, 27, 2, 34, 56, tzinfo=UTC)


def test_parse_time_round_trips_format_time():
    moment = datetime(2023, 11, 15, 6, 15, 1, tzinfo=BEIJING)
    assert parse_time(format_time(moment)) == moment
    assert format_time(parse_time("2023-11-15T06:15:00+08:00")) == "2023-11-15T06:15:00+08:00"


@pytest.mark.parametrize("text", ["2026-11-27T10:34:56", "yesterday", ""])
def test_parse_time_refuses_naive_or_garbage(text):
    """A time without an offset is ambiguous: refused rather than guessed."""
    with pytest.raises(ValueError):
        parse_time(text)
