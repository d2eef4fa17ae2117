"""Why a merchant's request signature did not verify: the classic integration mistakes, named.

When the five-line string the simulator rebuilt does not verify, it rebuilds the strings a
client would have signed had it made one of the usual mistakes (WeChat Pay's "签名生成" and
its troubleshooting guide list them) and checks the signature against each. The API answer
stays WeChat's ``401 SIGN_ERROR``; the name of the mistake that verifies goes to the call log,
with the expected string beside the signed one (docs/en/test-your-backend.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from markupsafe import Markup, escape

from ..wechatpay import keys
from ..wechatpay.errors import SignatureError
from ..wechatpay.signing import parse_authorization, request_message
from ..wechatpay.verify import MAX_SKEW_SECONDS, verify_signature
from .merchants import all_mchids

DIAGNOSES = ("body_reserialized", "missing_trailing_newline", "path_without_query", "query_reencoded",
             "timestamp_ms", "key_not_serial", "unknown")

EXPLANATIONS = {
    "body_reserialized": "签名用的请求体与发送的请求体不是同一串字节（键的顺序、空格或 ensure_ascii 不同）。"
                         "Sign the exact bytes you send: serialize the body once and use that string for both.",
    "missing_trailing_newline": "待签名串的最后一行（请求体）后缺少 \\n；每一行都以 \\n 结尾，空请求体也是。"
                                "Every line of the string to sign ends with \\n, the body line too.",
    "path_without_query": "签名的 URL 缺少查询串；GET 请求须对 path?query 整体签名。"
                          "Sign the path with its query string (?mchid=…), as sent.",
    "query_reencoded": "签名的查询串与发送的编码不同（被解码或重新编码）。"
                       "Sign the query string exactly as it goes on the wire, percent-encoding included.",
    "timestamp_ms": "时间戳用了毫秒；微信支付要求 Unix 秒（10 位）。Use seconds, not milliseconds, in the "
                    "Authorization timestamp and in the string to sign.",
    "key_not_serial": "签名私钥与 serial_no 指向的商户证书不匹配。The private key that signed is not the key of "
                      "the certificate serial_no names: use apiclient_key.pem with apiclient_cert.pem's serial.",
    "unknown": "不是常见错误之一：逐行比对待签名串（方法、URL、时间戳、随机串、请求体，各以 \\n 结尾）。"
               "None of the usual mistakes: compare your string to sign with the expected one line by line.",
}


def _bodies(text: str) -> Iterator[str]:
    """The same JSON serialized the ways clients commonly do it, other than as sent."""
    try:
        data = json.loads(text)
    except ValueError:
        return
    seen = {text}
    for sort_keys in (False, True):
        for separators in ((",", ":"), (", ", ": "), (",", ": ")):
            for ensure_ascii in (False, True):
                candidate = json.dumps(data, sort_keys=sort_keys, separators=separators, ensure_ascii=ensure_ascii)
                if candidate not in seen:
                    seen.add(candidate)
                    yield candidate
    for indent in (2, 4):
        candidate = json.dumps(data, ensure_ascii=False, indent=indent)
        if candidate not in seen:
            seen.add(candidate)
            yield candidate


def _queries(query: str) -> Iterator[str]:
    """The query string decoded, or encoded again another way."""
    pairs = parse_qsl(query, keep_blank_values=True)
    seen = {query}
    for candidate in (unquote(query), unquote(query.replace("+", " ")), urlencode(pairs),
                      urlencode(pairs, quote_via=quote), quote(unquote(query), safe="=&"),
                      "&".join(f"{k}={v}" for k, v in pairs)):
        if candidate not in seen:
            seen.add(candidate)
            yield candidate


def _verifies(public_key: keys.PublicKey, message: str, signature: str) -> bool:
    try:
        verify_signature(public_key, message, signature)
    except SignatureError:
        return False
    return True


def diagnose(platform: Any, method: str, canonical_url: str, sent_url: str | None, headers: Mapping[str, str],
             body: bytes) -> dict[str, str] | None:
    """``{"diagnosis", "expected", "signed", "explanation"}`` for a request whose signature failed.

    None when the Authorization header cannot be parsed, the merchant is unknown, or the signature
    is in fact good over the expected string (the refusal had another cause, e.g. a stale timestamp).
    """
    try:
        auth = parse_authorization(headers.get("Authorization"))
    except SignatureError:
        return None
    merchant = platform.merchant_for(auth["mchid"])
    if merchant is None:
        return None
    public_key = platform.merchant_key(merchant)
    text = body.decode("utf-8", "replace")
    timestamp, nonce, signature = auth["timestamp"], auth["nonce_str"], auth["signature"]
    urls = [canonical_url] + ([sent_url] if sent_url and sent_url != canonical_url else [])
    expected = request_message(method, canonical_url, timestamp, nonce, text)

    def found(name: str, signed: str) -> dict[str, str]:
        return {"diagnosis": name, "expected": expected, "signed": signed, "explanation": EXPLANATIONS[name]}

    if timestamp.isdigit() and len(timestamp) >= 13 and abs(time.time() - int(timestamp) / 1000) <= MAX_SKEW_SECONDS:
        return found("timestamp_ms", expected)  # milliseconds, signed consistently: refused for the window
    for url in urls:
        if _verifies(public_key, request_message(method, url, timestamp, nonce, text), signature):
            if not keys.same_serial(auth["serial_no"], merchant.merchant_serial):
                return found("key_not_serial", request_message(method, url, timestamp, nonce, text))
            return None  # the signature is right; something else was refused
    for url in urls:
        message = request_message(method, url, timestamp, nonce, text)
        if _verifies(public_key, message[:-1], signature):
            return found("missing_trailing_newline", message[:-1])
    for url in urls:
        for candidate in _bodies(text):
            message = request_message(method, url, timestamp, nonce, candidate)
            if _verifies(public_key, message, signature) or _verifies(public_key, message[:-1], signature):
                return found("body_reserialized", message)
    for url in urls:
        path, _, query = url.partition("?")
        if not query:
            continue
        message = request_message(method, path, timestamp, nonce, text)
        if _verifies(public_key, message, signature):
            return found("path_without_query", message)
        for candidate in _queries(query):
            message = request_message(method, f"{path}?{candidate}", timestamp, nonce, text)
            if _verifies(public_key, message, signature):
                return found("query_reencoded", message)
    if timestamp.isdigit():
        other = str(int(timestamp) // 1000) if len(timestamp) >= 13 else str(int(timestamp) * 1000)
        for url in urls:
            message = request_message(method, url, other, nonce, text)
            if _verifies(public_key, message, signature):
                return found("timestamp_ms", message)
    for other_key in _other_merchant_keys(platform, merchant.mchid):
        if _verifies(other_key, expected, signature):
            return found("key_not_serial", expected)
    return found("unknown", "")


def _other_merchant_keys(platform: Any, mchid: str) -> Iterator[keys.PublicKey]:
    """Every other merchant certificate's key the simulator knows: a key mixed up between merchants."""
    for other in [platform.merchant.mchid, *all_mchids()]:
        if other != mchid:
            merchant = platform.merchant_for(other)
            if merchant is not None:
                yield platform.merchant_key(merchant)


def mark_difference(text: str, other: str):
    """``text`` as HTML with each line's ``\\n`` drawn and the part that differs from ``other`` marked."""
    start = 0
    while start < min(len(text), len(other)) and text[start] == other[start]:
        start += 1
    end_text, end_other = len(text), len(other)
    while end_text > start and end_other > start and text[end_text - 1] == other[end_other - 1]:
        end_text -= 1
        end_other -= 1

    def draw(part: str) -> str:
        return str(escape(part)).replace("\n", "\\n\n")

    if text == other:
        return Markup(draw(text))
    middle = draw(text[start:end_text]) or "∅"
    return Markup(draw(text[:start]) + f'<mark class="diff">{middle}</mark>' + draw(text[end_text:]))
