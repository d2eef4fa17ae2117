"""The flow record's compact storage: one ``payload`` value per message.

A recorded message keeps what cannot be recomputed (the bodies as they crossed the wire, the
headers that matter, the checks the shop ran) in one small JSON object, compressed once it is
larger than a few lines. What can be recomputed is not stored: the canonical strings that were
signed and verified are rebuilt from the method, URL, timestamp, nonce and body for display
(``signed_message``, ``verify_message``), as WeChat Pay's "签名生成" and "签名验证" documents
define them.

Encoding: one leading byte, then the JSON object's UTF-8 bytes, either as is (``j``) or as a
raw DEFLATE stream primed with ``DICTIONARY_V1`` (``z``). The dictionary is part of the stored
format: never edit it; a new one needs a new leading byte. Knows nothing of Flask.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..wechatpay import aead
from ..wechatpay.keys import PrivateKey
from ..wechatpay.signing import AUTH_SCHEME, request_message, sign, signing_string

PLAIN = b"j"
DEFLATED_V1 = b"z"
COMPRESS_ABOVE = 160  # bytes of JSON: below this, DEFLATE's framing costs more than it saves

# What every record repeats (header names, the Authorization scheme, the JSON fields of the
# API's bodies and notifications, check names), laid out exactly as ``encode`` writes a payload,
# with the values that differ from message to message left blank: primes DEFLATE so that one
# small message compresses as well as a long log would. Most frequent last.
_T = "2026-01-01T12:00:00+08:00"
_CHECKS = [{"name": n, "ok": True, "detail": d} for n, d in (
    ("headers", ""), ("serial", "PUB_KEY_ID_0"), ("timestamp", ""), ("signature", ""), ("decrypt", "transaction"),
    ("mchid", "1230000109"), ("appid", "wx"), ("trade_state", "SUCCESS 4200002"), ("amount", "8800 / 8800"),
    ("outcome", "HTTP 204 applied"))]
_WECHAT_HEADERS = {"Wechatpay-Timestamp": "17", "Wechatpay-Nonce": "", "Wechatpay-Signature": "",
                   "Wechatpay-Serial": "PUB_KEY_ID_0", "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}
_AUTHORIZATION = ('WECHATPAY2-SHA256-RSA2048 mchid="1230000109",nonce_str="",timestamp="17",serial_no="",'
                  'signature=""')
_TRANSACTION = ('{"mchid":"1230000109","appid":"wx","out_trade_no":"SF2026P01","transaction_id":"4200002",'
                '"trade_type":"NATIVE","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"OTHERS",'
                '"attach":"","success_time":"' + _T + '","payer":{"openid":"o"},'
                '"amount":{"total":8800,"payer_total":8800,"currency":"CNY","payer_currency":"CNY"}}')
_SAMPLES: list[dict[str, Any]] = [
    {"request_headers": {"Authorization": _AUTHORIZATION, "Wechatpay-Serial": "PUB_KEY_ID_0",
                         "Content-Type": "application/json"},
     "request_body": '{"out_trade_no":"SF2026P01","out_refund_no":"","reason":"","notify_url":"http://127.0.0.1'
                     '/notify/wechatpay/refund","amount":{"refund":0,"total":8800,"currency":"CNY"}}',
     "response_headers": {**_WECHAT_HEADERS, "Request-ID": "", "Content-Type": "application/json; charset=utf-8"},
     "response_body": '{"refund_id":"","out_refund_no":"","transaction_id":"4200002","out_trade_no":"SF2026P01",'
                      '"channel":"ORIGINAL","user_received_account":"支付用户零钱","create_time":"' + _T + '",'
                      '"status":"PROCESSING","funds_account":"AVAILABLE","amount":{"total":8800,"refund":0,'
                      '"payer_total":8800,"payer_refund":0,"settlement_refund":0,"settlement_total":8800,'
                      '"discount_refund":0,"currency":"CNY","from":[]}}',
     "url": "http://127.0.0.1/sandbox/v3/refund/domestic/refunds", "origin": "POST /merchant/orders/SF2026/refund"},
    {"request_headers": {"Authorization": _AUTHORIZATION, "Wechatpay-Serial": "PUB_KEY_ID_0"},
     "response_headers": {"Request-ID": "", "Content-Type": "application/json; charset=utf-8"},
     "response_body": '{"code":"ORDER_NOT_EXIST","message":""}',
     "url": "http://127.0.0.1/sandbox/v3/pay/transactions/out-trade-no/SF2026P01/close", "origin": "job"},
    {"request_headers": {"Authorization": _AUTHORIZATION, "Wechatpay-Serial": "PUB_KEY_ID_0"},
     "response_headers": {**_WECHAT_HEADERS, "Request-ID": "", "Content-Type": "application/json; charset=utf-8"},
     "response_body": _TRANSACTION,
     "url": "http://127.0.0.1/sandbox/v3/pay/transactions/out-trade-no/SF2026P01?mchid=1230000109",
     "origin": "poll", "signature_head": ""},
    {"request_headers": {**_WECHAT_HEADERS, "Content-Type": "application/json", "Request-Id": ""},
     "request_body": '{"id":"","create_time":"' + _T + '","resource_type":"encrypt-resource",'
                     '"event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{"original_type":'
                     '"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"","associated_data":"transaction",'
                     '"nonce":""}}',
     "checks": _CHECKS, "url": "http://127.0.0.1/notify/wechatpay", "origin": "wechatpay",
     "resource_plain": _TRANSACTION, "cipher_at": 261, "cipher_head": ""},
    {"request_headers": {"Authorization": _AUTHORIZATION, "Wechatpay-Serial": "PUB_KEY_ID_0",
                         "Content-Type": "application/json"},
     "request_body": '{"appid":"wx","mchid":"1230000109","description":"","out_trade_no":"SF2026P01",'
                     '"time_expire":"' + _T + '","notify_url":"http://127.0.0.1/notify/wechatpay",'
                     '"amount":{"total":8800,"currency":"CNY"}}',
     "response_headers": {**_WECHAT_HEADERS, "Request-ID": "", "Content-Type": "application/json; charset=utf-8"},
     "response_body": '{"code_url":"weixin://wxpay/bizpayurl?pr="}',
     "url": "http://127.0.0.1/sandbox/v3/pay/transactions/native", "origin": "POST /api/orders/SF2026/payments",
     "signature_head": ""},
]

# Headers worth keeping: what the protocol defines (signatures, serials, request ids) and the
# content type. Transport headers (Host, Content-Length, Connection, Date, ...) are not.
KEPT_HEADERS = {"authorization", "content-type", "request-id", "wechatpay-serial", "wechatpay-signature",
                "wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature-type"}

# The fields a payload may hold: short keys, each present only when it has a value.
FIELDS = {
    "request_headers": "qh", "request_body": "qb", "response_headers": "sh", "response_body": "sb",
    "checks": "ck", "canonical_url": "cu", "url": "u", "origin": "o",
    # A notification's resource, decrypted: its ciphertext is cut from the body (``fold_ciphertext``).
    "resource_plain": "rp", "cipher_at": "ca", "cipher_head": "ch",
    # The first characters of the shop's own request signature, cut from Authorization (``fold_signature``).
    "signature_head": "sg",
    # A string the shop signed that is no API call (paySign's four lines): a "shop" step's own.
    "signed_note": "sn",
}
HEAD_CHARS = 8  # of a removed signature or ciphertext: proves a rebuilt one is the same

_SIGNATURE = re.compile(r'(signature=")([^"]*)(")')
_AUTH_PARAM = re.compile(r'([a-z_]+)="([^"]*)"')


class KeptHeaders(dict):
    """Headers ``kept_headers`` already filtered: a record takes them as they are."""


def kept_headers(headers: Mapping[str, str]) -> KeptHeaders:
    """The headers a record keeps (names as sent)."""
    if type(headers) is KeptHeaders:
        return headers
    return KeptHeaders({str(name): str(value) for name, value in headers.items()
                        if str(name).lower() in KEPT_HEADERS})


def _layout(fields: Mapping[str, Any]) -> bytes:
    """The JSON a payload holds: short keys in ``FIELDS`` order, empty values left out."""
    data: dict[str, Any] = {}
    for name, key in FIELDS.items():
        value = fields.get(name)
        if value is None or value == "" or value == {} or value == []:
            continue
        if name == "checks":
            value = [c if type(c) is list else [c.get("name"), c.get("ok"), c.get("detail") or ""] for c in value]
        data[key] = value
    return _JSON.encode(data).encode("utf-8") if data else b""


# json.dumps with these options would build a new encoder at every message.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# Part of the stored format (tests/test_flowcodec.py pins its digest): never edit the samples.
DICTIONARY_V1 = b"".join(_layout(sample) for sample in _SAMPLES)


# An 8 KB window (wbits 13) holds the whole dictionary and any one message; memLevel 6 sizes the
# hash tables for messages of a few KB. Every message copies this primed state: zlib's default
# (32 KB window, memLevel 8) is about 256 KB to copy, these 64 KB, for the same output size
# (DEFLATE's window is a compressor's choice: any decoder with a 32 KB window reads the stream).
_PRIMED = zlib.compressobj(6, zlib.DEFLATED, -13, 6, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_V1)


def encode(fields: Mapping[str, Any]) -> bytes:
    """One payload from ``FIELDS``-named values (headers as dicts; checks as a list of dicts, or
    of the [name, ok, detail] lists a payload stores, the detail a str)."""
    raw = _layout(fields)
    if not raw:
        return b""
    if len(raw) <= COMPRESS_ABOVE:
        return PLAIN + raw
    packer = _PRIMED.copy()  # the dictionary already loaded: a copy skips hashing it again
    packed = packer.compress(raw) + packer.flush()
    return DEFLATED_V1 + packed if len(packed) < len(raw) else PLAIN + raw


def decode(payload: bytes | None) -> dict[str, Any]:
    """The fields of a payload, by their ``FIELDS`` names; an empty or unknown payload is empty."""
    if not payload:
        return {}
    payload = bytes(payload)
    tag, body = payload[:1], payload[1:]
    if tag == DEFLATED_V1:
        unpacker = zlib.decompressobj(-15, zdict=DICTIONARY_V1)
        body = unpacker.decompress(body) + unpacker.flush()
    elif tag != PLAIN:
        return {}
    data = json.loads(body.decode("utf-8"))
    out = {name: data[key] for name, key in FIELDS.items() if key in data}
    if "checks" in out:
        out["checks"] = [{"name": n, "ok": ok, "detail": detail} for n, ok, detail in out["checks"]]
    return out


def find_header(headers: Mapping[str, str], name: str) -> str | None:
    """The first header named ``name`` (lower case), whatever case it was sent in; None if absent."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _header(headers: Mapping[str, str], name: str) -> str:
    return find_header(headers, name) or ""


def signed_message(method: str | None, canonical_url: str, request_headers: Mapping[str, str], body: str) -> str:
    """The string the shop signed for an API request, rebuilt from its Authorization header.

    Empty when the request carried no (parseable) WECHATPAY2-SHA256-RSA2048 Authorization.
    """
    header = _header(request_headers, "authorization")
    if not header.startswith(AUTH_SCHEME + " "):
        return ""
    # Read leniently: the stored header has its signature cut (``fold_signature``).
    params = dict(_AUTH_PARAM.findall(header))
    if not params.get("timestamp") or not params.get("nonce_str"):
        return ""
    return request_message(method or "", canonical_url, params["timestamp"], params["nonce_str"], body)


def verify_message(headers: Mapping[str, str], body: str) -> str:
    """The string WeChat Pay signed for an answer or a notification: timestamp, nonce, body."""
    return signing_string(_header(headers, "wechatpay-timestamp"), _header(headers, "wechatpay-nonce"), body)


# -- what is cut from a record and rebuilt for display -------------------------------------------
#
# AES-256-GCM with a given key, nonce and associated data is deterministic, and so is an
# RSA PKCS#1 v1.5 signature: a notification's ciphertext is rebuilt from its plaintext, and the
# shop's own request signature from the string it signed. The first characters of each are
# kept, so a rebuilt value is shown only if it is the one that crossed the wire (not after the
# APIv3 key or the merchant key changed).


# A notification's body as its handler verified and decrypted it: the outer JSON and the plaintext.
Opened = tuple[Mapping[str, Any], bytes]


def fold_ciphertext(body: str, aes: AESGCM, opened: Opened | None = None) -> tuple[str, dict[str, Any]] | None:
    """A notification body without its resource's ciphertext, and the fields that rebuild it.

    ``opened``: the body's JSON and its resource's plaintext, when the caller has just verified
    and decrypted this very body (``Notification.outer``, ``.plaintext``): not done again.
    None if the resource does not open with ``aes``, or its Base64 is not written canonically.
    """
    try:
        resource = (opened[0] if opened is not None else json.loads(body))["resource"]
        nonce, ciphertext = resource["nonce"], resource["ciphertext"]
        associated = resource.get("associated_data") or ""
        plain = opened[1] if opened is not None else aead.decrypt(aes, nonce, ciphertext, associated)
        # Re-encrypting gives the same bytes back; only their Base64 text must be the canonical one.
        if base64.b64encode(base64.b64decode(ciphertext)).decode("ascii") != ciphertext:
            return None
        at = body.index(ciphertext)
        text = plain.decode("utf-8")
    except (ValueError, KeyError, TypeError, AttributeError, aead.DecryptError):
        return None
    if body.find(ciphertext, at + 1) >= 0:
        return None
    return body[:at] + body[at + len(ciphertext):], {
        "resource_plain": text, "cipher_at": at, "cipher_head": ciphertext[:HEAD_CHARS]}


def unfold_ciphertext(fields: Mapping[str, Any], aes: AESGCM | None) -> str:
    """The notification body as received: its ciphertext put back, or a note if it cannot be."""
    body = fields.get("request_body") or ""
    at = fields.get("cipher_at")
    if at is None:
        return body
    rebuilt = ""
    try:
        resource = json.loads(body)["resource"]
        if aes is not None:
            rebuilt = aead.encrypt(aes, resource["nonce"], fields["resource_plain"].encode("utf-8"),
                                   resource.get("associated_data") or "")
    except (ValueError, KeyError, TypeError, AttributeError, aead.DecryptError):
        rebuilt = ""
    if not rebuilt.startswith(fields.get("cipher_head") or "\0"):
        rebuilt = (fields.get("cipher_head") or "") + "…(not kept; the APIv3 key has changed since)"
    return body[:at] + rebuilt + body[at:]


def fold_signature(headers: Mapping[str, str]) -> tuple[dict[str, str], str] | None:
    """Request headers with the signature cut from Authorization, and the signature's head."""
    for name, value in headers.items():
        if name.lower() == "authorization":
            found = _SIGNATURE.search(value)
            if found is None or not found.group(2):
                return None
            folded = dict(headers)
            folded[name] = value[:found.start(2)] + value[found.end(2):]
            return folded, found.group(2)[:HEAD_CHARS]
    return None


def unfold_signature(headers: Mapping[str, str], head: str | None, message: str,
                     private_key: PrivateKey | None) -> dict[str, str]:
    """Request headers with the signature rebuilt (signing ``message`` again), or a note."""
    if not head:
        return dict(headers)
    rebuilt = ""
    if private_key is not None and message:
        try:
            rebuilt = sign(private_key, message)
        except Exception:  # a key that cannot sign: show the note
            rebuilt = ""
    if not rebuilt.startswith(head):
        rebuilt = head + "…(not kept; the merchant key has changed since)"
    out = {}
    for name, value in headers.items():
        if name.lower() == "authorization":
            found = _SIGNATURE.search(value)
            if found is not None:
                value = value[:found.start(2)] + rebuilt + value[found.end(2):]
        out[name] = value
    return out
