"""Signing: the merchant's request signature, the Authorization header and the JSAPI paySign.

WeChat Pay API v3 "签名生成": every line of the string to sign ends with ``\\n``, the last one too.
The simulator uses :func:`sign_response` for the reverse direction.
"""

from __future__ import annotations

import base64
import re
import secrets
import string
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from .errors import SignatureError
from .keys import PrivateKey

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_TYPE = AUTH_SCHEME
NONCE_ALPHABET = string.ascii_uppercase + string.digits
AUTH_FIELDS = ("mchid", "nonce_str", "timestamp", "serial_no", "signature")
_AUTH_PARAM = re.compile(r'\s*(\w+)="([^"]*)"\s*(?:,|$)')


def new_nonce(length: int = 32) -> str:
    """A random nonce of ``[0-9A-Z]``, 32 characters as WeChat's examples use.

    One uniform draw below 36**length, written in base 36: every string equally likely, at a
    fraction of the cost of one ``secrets.choice`` per character (signing runs it every call).
    """
    value = secrets.randbelow(len(NONCE_ALPHABET) ** length)
    characters = []
    for _ in range(length):
        value, digit = divmod(value, len(NONCE_ALPHABET))
        characters.append(NONCE_ALPHABET[digit])
    return "".join(characters)


def signing_string(*lines: str) -> str:
    """Join lines, each terminated by ``\\n``: the shape of every WeChat Pay signed message."""
    return "".join(line + "\n" for line in lines)


def request_message(method: str, canonical_url: str, timestamp: str, nonce: str, body: str) -> str:
    """The five-line string a merchant signs: method, path?query, timestamp, nonce, body."""
    return signing_string(method.upper(), canonical_url, timestamp, nonce, body)


def sign(private_key: PrivateKey, message: str) -> str:
    """Base64 RSASSA-PKCS1-v1_5 SHA-256 signature over the UTF-8 bytes of ``message``."""
    raw = private_key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class SignedRequest:
    """An Authorization header and what it signed, for sending and for the flow record."""

    authorization: str
    message: str
    timestamp: str
    nonce: str


def sign_request(
    private_key: PrivateKey,
    *,
    mchid: str,
    serial_no: str,
    method: str,
    canonical_url: str,
    body: str,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> SignedRequest:
    """Sign one API request and build its ``Authorization`` header."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or new_nonce()
    message = request_message(method, canonical_url, timestamp, nonce, body)
    signature = sign(private_key, message)
    header = (
        f'{AUTH_SCHEME} mchid="{mchid}",nonce_str="{nonce}",timestamp="{timestamp}",'
        f'serial_no="{serial_no}",signature="{signature}"'
    )
    return SignedRequest(header, message, timestamp, nonce)


def parse_authorization(header: str | None) -> dict[str, str]:
    """The five parameters of an Authorization header. :raise SignatureError: if malformed."""
    if not header:
        raise SignatureError("missing Authorization header", "headers")
    scheme, _, params = header.strip().partition(" ")
    if scheme != AUTH_SCHEME:
        raise SignatureError(f"Authorization scheme must be {AUTH_SCHEME}", "headers")
    fields: dict[str, str] = {}
    position = 0
    params = params.strip()
    while position < len(params):
        match = _AUTH_PARAM.match(params, position)
        if match is None:
            raise SignatureError("Authorization parameters are not key=\"value\" pairs", "headers")
        fields[match.group(1)] = match.group(2)
        position = match.end()
    missing = [name for name in AUTH_FIELDS if not fields.get(name)]
    if missing:
        raise SignatureError(f"Authorization lacks {', '.join(missing)}", "headers")
    return fields


def sign_response(
    private_key: PrivateKey,
    serial: str,
    body: bytes,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The ``Wechatpay-*`` headers WeChat Pay puts on an answer or a notification."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or secrets.token_hex(16)
    message = signing_string(timestamp, nonce, body.decode("utf-8"))
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": sign(private_key, message),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }


def pay_sign_message(appid: str, timestamp: str, nonce: str, package: str) -> str:
    """The four lines behind ``paySign``; ``signType`` is not part of it."""
    return signing_string(appid, timestamp, nonce, package)


def pay_params(
    private_key: PrivateKey,
    appid: str,
    prepay_id: str,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Parameters for ``WeixinJSBridge`` getBrandWCPayRequest / ``wx.requestPayment``."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or new_nonce()
    package = f"prepay_id={prepay_id}"
    return {
        "appId": appid,
        "timeStamp": timestamp,
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": sign(private_key, pay_sign_message(appid, timestamp, nonce, package)),
    }
