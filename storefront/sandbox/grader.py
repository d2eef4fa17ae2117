"""The grader: a battery of notifications and call-log checks against a merchant's own backend.

What WeChat Pay's integration-quality checklist (接入质量检查) asks of a backend, tested for
real over HTTP: forged notifications refused, the genuine one acknowledged within 5 seconds,
duplicates acknowledged (idempotency), and the backend's own API calls well formed. Order of
sending: nothing until the backend's order exists; forgeries first; the genuine notification
last but one; the duplicates last. docs/en/test-your-backend.md explains every case.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import requests
from flask import render_template
from sqlalchemy import select

from ..clock import utcnow
from ..extensions import db
from ..wechatpay import keys
from ..wechatpay.client import json_body
from ..wechatpay.signing import sign_response
from ..wechatpay.times import format_time
from .merchant_models import SandboxGraderRun
from .models import SandboxApiCall, SandboxDelivery, SandboxNotification, SandboxTransaction
from .simulator import Platform

ACK_TIMEOUT_SECONDS = 5  # WeChat Pay waits this long for an answer, then counts a failure
STALE_SECONDS = 6 * 60  # older than the 5-minute window every verifier must enforce
CONCURRENT_COPIES = 10
MIN_QUERY_GAP_SECONDS = 3
ACK_GRACE = timedelta(milliseconds=100)
CREATE_PATHS = ("/v3/pay/transactions/native", "/v3/pay/transactions/jsapi", "/v3/pay/transactions/h5",
                "/v3/pay/transactions/app")
TIME_EXPIRE_FORMAT = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$"  # yyyy-MM-DDTHH:mm:ss+08:00
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

# name -> (title, why it matters, how to fix)
CASES: dict[str, tuple[str, str, str]] = {
    "forged_signature": (
        "拒绝用另一把私钥签名的通知 · refuses a notification signed with another key",
        "Anyone can POST to your notify_url. Without verifying Wechatpay-Signature with WeChat Pay's public key, "
        "a forger marks unpaid orders paid.",
        "Verify the signature over timestamp\\nnonce\\nbody\\n with pub_key.pem (or the platform certificate "
        "named by Wechatpay-Serial) before anything else; answer 401 when it fails."),
    "tampered_ciphertext": (
        "拒绝密文被篡改的通知 · refuses a notification whose ciphertext was altered",
        "AES-256-GCM authenticates the resource: a decryption failure means the content is not WeChat Pay's.",
        "Decrypt resource.ciphertext with your APIv3 key, nonce and associated_data; treat an authentication "
        "failure as a refusal (4xx/5xx), never as success."),
    "stale_timestamp": (
        "拒绝时间戳超过 5 分钟的通知 · refuses a notification with a timestamp over 5 minutes old",
        "A captured genuine notification can be replayed later; the timestamp window is what stops it.",
        "Compare Wechatpay-Timestamp with your clock and refuse anything more than 5 minutes away."),
    "unknown_serial": (
        "拒绝未知 Wechatpay-Serial 的通知 · refuses a notification naming an unknown key",
        "The serial says which key signed; a verifier that ignores it can be fooled into using the wrong key.",
        "Look the serial up among the keys you trust (your PUB_KEY_ID, the platform certificates); "
        "refuse when none matches."),
    "signature_probe": (
        "拒绝签名探测 · refuses a signature probe (WECHATPAY/SIGNTEST/…)",
        "WeChat Pay sends deliberately wrong signatures to check that merchants verify; accepting one is flagged.",
        "Verify every notification; a probe fails verification by design and must get a non-2xx answer."),
    "refusal_format": (
        "拒绝时返回 {\"code\", \"message\"} · refusals answer {\"code\", \"message\"}",
        "WeChat Pay's notification guide recommends this JSON for a failure; it shows up in the merchant "
        "platform's delivery log.",
        "Answer a refusal with e.g. 401 and {\"code\": \"FAIL\", \"message\": \"签名错误\"}."),
    "genuine_notification": (
        "5 秒内确认真实的 TRANSACTION.SUCCESS · acknowledges the genuine TRANSACTION.SUCCESS within 5 s",
        "Anything but 200/204 within 5 seconds counts as a failure: WeChat Pay retries for 24 hours and your "
        "customer waits.",
        "Verify, decrypt, check mchid/appid/amount against your order, update it, answer 200 or 204 at once; "
        "do slow work afterwards."),
    "duplicate_notification": (
        "重复通知同样确认 · acknowledges the same notification again",
        "WeChat Pay may deliver one event several times; refusing a duplicate makes it retry for a day.",
        "Make the state change conditional (UPDATE … WHERE status='pending') and answer 200/204 when the order "
        "is already paid."),
    "concurrent_duplicates": (
        "十条并发重复通知全部确认、无 5xx · ten identical notifications at once: all acknowledged, none 5xx",
        "Retries and duplicates can arrive together; a race (double fulfilment, a unique-key crash) shows up here.",
        "Use a conditional update or a unique constraint on transaction_id and treat 'already paid' as success."),
    "requests_signed": (
        "请求签名全部正确 · every request to the API was signed correctly",
        "A request refused with 401 SIGN_ERROR never reaches the order; in production it is a failed payment.",
        "Sign method\\nurl\\ntimestamp\\nnonce\\nbody\\n over exactly what you send; the diagnosis names the "
        "mistake."),
    "request_headers": (
        "请求带 Accept 与 User-Agent · requests carry Accept and User-Agent",
        "WeChat Pay refuses API v3 requests without them (400 INVALID_REQUEST).",
        "Send Accept: application/json and a User-Agent naming your client."),
    "time_expire_format": (
        "time_expire 符合微信格式 · time_expire in WeChat's format",
        "WeChat Pay accepts yyyy-MM-DDTHH:mm:ss+08:00 only: no fraction, no Z, no space.",
        "Format the expiry in Asia/Shanghai without microseconds, e.g. 2026-11-30T20:05:00+08:00."),
    "notify_url_https": (
        "notify_url 为 https · notify_url is https",
        "WeChat Pay calls only https notify_url addresses, without a query string.",
        "Serve the notification endpoint over https on a public host."),
    "no_query_after_ack": (
        "确认通知后不再查询 · no query after a notification was acknowledged",
        "Once the notification is acknowledged the order's state is known; more queries waste your rate limit.",
        "Stop polling an order once its notification (or a query) said it was paid."),
    "close_before_reissue": (
        "重新下单前先关单 · closes the old order before issuing a new one",
        "An open order with the same goods can still be paid: the customer pays twice.",
        "Before a new out_trade_no for the same purchase, POST …/out-trade-no/{old}/close and wait for its 204."),
    "query_interval": (
        "查单间隔不少于几秒 · at most one query per few seconds per order",
        "Tight query loops hit 429 FREQUENCY_LIMITED and slow every other order.",
        f"Query one order at most once every {MIN_QUERY_GAP_SECONDS} s; rely on the notification first."),
}
WARNINGS = {"refusal_format", "no_query_after_ack", "close_before_reissue", "query_interval"}
# What each notification case sends, as its detail says it.
SENT = {
    "forged_signature": "TRANSACTION.SUCCESS signed with another RSA key",
    "tampered_ciphertext": "TRANSACTION.SUCCESS, ciphertext altered, correctly signed",
    "stale_timestamp": f"TRANSACTION.SUCCESS signed at a timestamp {STALE_SECONDS // 60} min old",
    "unknown_serial": "TRANSACTION.SUCCESS naming an unknown Wechatpay-Serial",
    "signature_probe": "a WECHATPAY/SIGNTEST/ signature probe",
    "genuine_notification": "the genuine TRANSACTION.SUCCESS",
    "duplicate_notification": "the same notification again",
}


@dataclass
class Case:
    """One graded check: the --json fields, plus what the HTML report shows of a failure."""

    name: str
    passed: bool
    detail: str
    severity: str = "error"
    sent: dict[str, Any] | None = None  # {"method", "url", "headers", "body"}
    answer: dict[str, Any] | None = None  # {"status", "body", "elapsed_ms"} or {"error"}
    diagnosis: dict[str, str] | None = None  # expected and signed strings (requests_signed)
    note: str = ""

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "severity": self.severity, "detail": self.detail}


@dataclass
class GradeResult:
    merchant: str
    out_trade_no: str
    notify_url: str
    cases: list[Case] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error-level case failed: the exit status is 0."""
        return all(case.passed or case.severity != "error" for case in self.cases)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"merchant": self.merchant, "out_trade_no": self.out_trade_no,
                "cases": [case.summary() for case in self.cases],
                "passed": sum(case.passed for case in self.cases), "total": len(self.cases)}


class GradeError(Exception):
    """The grader could not run (no such order, not payable): nothing was graded."""


_FORGER_KEY: list[keys.PrivateKey] = []


def _forger_key() -> keys.PrivateKey:
    if not _FORGER_KEY:
        _FORGER_KEY.append(keys.generate_private_key())
    return _FORGER_KEY[0]


def wait_for_order(platform: Platform, out_trade_no: str, mchid: str | None, wait_seconds: float
                   ) -> SandboxTransaction:
    """The backend's order, once it exists (the grader sends nothing before)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        txn = platform.find_any(out_trade_no, mchid)
        db.session.commit()
        if txn is not None:
            return txn
        if time.monotonic() >= deadline:
            raise GradeError(f"订单 {out_trade_no} 在模拟器中不存在（等待了 {wait_seconds:g} 秒）: "
                             "the backend has not created it")
        time.sleep(0.25)


class _Sender:
    def __init__(self, platform: Platform, mchid: str, url: str) -> None:
        self.platform, self.mchid, self.url = platform, mchid, url
        self.http = requests.Session()

    def headers(self, body: str, **overrides: Any) -> dict[str, str]:
        headers = self.platform.notification_headers(body, mchid=self.mchid)
        headers["User-Agent"] = "Mozilla/4.0 (WeChatPay-Grader; storefront simulator)"
        headers.update(overrides)
        return headers

    def post(self, body: str, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        # No open database transaction while the backend answers: it may call the simulator, which
        # writes its call log (on SQLite a reader left open would hold that write up).
        db.session.commit()
        return self.post_unbound(body, headers)

    def post_unbound(self, body: str, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """POST without touching the database (safe from any thread)."""
        sent = {"method": "POST", "url": self.url, "headers": headers, "body": body}
        started = time.monotonic()
        try:
            response = self.http.post(self.url, data=body.encode("utf-8"), headers=headers,
                                      timeout=ACK_TIMEOUT_SECONDS)
        except requests.Timeout:
            return sent, {"error": f"no answer within {ACK_TIMEOUT_SECONDS} s"}
        except requests.RequestException as exc:
            return sent, {"error": f"{exc.__class__.__name__}: could not reach {self.url}"}
        elapsed = int((time.monotonic() - started) * 1000)
        return sent, {"status": response.status_code, "body": response.text[:2000], "elapsed_ms": elapsed}


def _describe_answer(answer: dict[str, Any]) -> str:
    if "error" in answer:
        return answer["error"]
    body = answer["body"].strip().replace("\n", " ")
    return f"HTTP {answer['status']} in {answer['elapsed_ms']} ms" + (f": {body[:120]}" if body else "")


def _refused(answer: dict[str, Any]) -> bool:
    return "status" in answer and not 200 <= answer["status"] < 300


def _acknowledged(answer: dict[str, Any]) -> bool:
    return answer.get("status") in (200, 204) and answer.get("elapsed_ms", 0) <= ACK_TIMEOUT_SECONDS * 1000


def _success_body(platform: Platform, txn: Any) -> str:
    return platform.payment_notification_body(txn)[1]


def _would_be_paid(platform: Platform, txn: SandboxTransaction) -> Any:
    """The transaction as a success notification would describe it, for forgeries of an unpaid order."""
    if txn.trade_state in ("SUCCESS", "REFUND"):
        return txn
    return SimpleNamespace(
        mchid=txn.mchid, appid=txn.appid, out_trade_no=txn.out_trade_no, trade_type=txn.trade_type,
        amount_total=txn.amount_total, attach=txn.attach,
        transaction_id="4200" + "".join(secrets.choice("0123456789") for _ in range(24)),
        success_time=platform.now().replace(microsecond=0), bank_type="OTHERS", payer_openid=platform.openid(txn.appid),
    )


def _tamper(body: str) -> str:
    outer = json.loads(body)
    raw = bytearray(base64.b64decode(outer["resource"]["ciphertext"]))
    raw[len(raw) // 2] ^= 0x01
    outer["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    return json_body(outer)


def _forgeries(platform: Platform, sender: _Sender, txn: Any) -> list[tuple[str, str, dict[str, str]]]:
    """(case, body, headers) of each forgery, in the order sent."""
    body = _success_body(platform, txn)
    forged = sign_response(_forger_key(), platform.merchant.public_key_id, body.encode("utf-8"))
    tampered = _tamper(_success_body(platform, txn))
    stale_body = _success_body(platform, txn)
    private_key, serial = platform.notification_key(sender.mchid)
    stale = sign_response(private_key, serial, stale_body.encode("utf-8"),
                          timestamp=str(int(time.time()) - STALE_SECONDS))
    unknown_body = _success_body(platform, txn)
    unknown_serial = "PUB_KEY_ID_" + "".join(secrets.choice("0123456789") for _ in range(34))
    unknown = sign_response(private_key, unknown_serial, unknown_body.encode("utf-8"))
    probe_body = _success_body(platform, txn)
    probe = sender.headers(probe_body)
    probe["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + probe["Wechatpay-Signature"][19:]
    extra = {"Content-Type": "application/json", "Request-ID": str(uuid.uuid4()),
             "User-Agent": "Mozilla/4.0 (WeChatPay-Grader; storefront simulator)"}
    return [
        ("forged_signature", body, {**forged, **extra}),
        ("tampered_ciphertext", tampered, sender.headers(tampered)),
        ("stale_timestamp", stale_body, {**stale, **extra}),
        ("unknown_serial", unknown_body, {**unknown, **extra}),
        ("signature_probe", probe_body, probe),
    ]


def grade(platform: Platform, out_trade_no: str, notify_url: str | None = None, mchid: str | None = None,
          wait_seconds: float = 30.0) -> GradeResult:
    """Run the whole battery against the backend behind ``notify_url`` (default: the order's). :raise GradeError:"""
    txn = wait_for_order(platform, out_trade_no, mchid, wait_seconds)
    merchant = platform.merchant_for(txn.mchid)
    url = notify_url or txn.notify_url
    result = GradeResult(merchant=txn.mchid, out_trade_no=out_trade_no, notify_url=url)
    sender = _Sender(platform, txn.mchid, url)

    refusals = []
    for name, body, headers in _forgeries(platform, sender, _would_be_paid(platform, txn)):
        sent, answer = sender.post(body, headers)
        refused = _refused(answer)
        detail = f"sent {SENT[name]} → " + ("refused: " if refused else "NOT refused: ") + _describe_answer(answer)
        result.cases.append(Case(name, refused, detail, sent=sent, answer=answer))
        if refused:
            refusals.append(answer)
    result.cases.append(_refusal_format(refusals))

    if txn.trade_state == "NOTPAY":
        paid, reason = platform.pay(txn, "SUCCESS")
        if not paid:
            raise GradeError(f"订单 {out_trade_no} 无法支付：{reason}")
    db.session.refresh(txn)
    if txn.trade_state not in ("SUCCESS", "REFUND"):
        raise GradeError(f"订单 {out_trade_no} 无法支付：{txn.trade_state}")
    body = _success_body(platform, txn)
    sent, answer = sender.post(body, sender.headers(body))
    acked_at = utcnow()
    ok = _acknowledged(answer)
    result.cases.append(Case("genuine_notification", ok, f"sent {SENT['genuine_notification']} → "
                             + ("acknowledged: " if ok else "not acknowledged: ") + _describe_answer(answer),
                             sent=sent, answer=answer))

    sent, answer = sender.post(body, sender.headers(body))
    ok = _acknowledged(answer)
    result.cases.append(Case("duplicate_notification", ok, f"sent {SENT['duplicate_notification']} → "
                             + ("acknowledged: " if ok else "not acknowledged: ") + _describe_answer(answer),
                             sent=sent, answer=answer))
    signed = [sender.headers(body) for _ in range(CONCURRENT_COPIES)]  # signed here: the session is this thread's
    db.session.commit()
    with ThreadPoolExecutor(max_workers=CONCURRENT_COPIES) as pool:
        answers = list(pool.map(lambda headers: sender.post_unbound(body, headers), signed))
    failed = [(s, a) for s, a in answers if not _acknowledged(a)]
    server_errors = [a for _, a in answers if a.get("status", 0) >= 500]
    statuses = ", ".join(str(a.get("status", a.get("error"))) for _, a in answers)
    first_bad = failed[0] if failed else (None, None)
    result.cases.append(Case(
        "concurrent_duplicates", not failed,
        f"sent {CONCURRENT_COPIES} copies at once → "
        f"{CONCURRENT_COPIES - len(failed)}/{CONCURRENT_COPIES} acknowledged, {len(server_errors)} answered 5xx "
        f"({statuses})", sent=first_bad[0], answer=first_bad[1]))

    result.cases.extend(call_log_cases(platform, txn, merchant.mchid if merchant else txn.mchid, acked_at))
    return result


def _refusal_format(refusals: list[dict[str, Any]]) -> Case:
    bad = []
    for answer in refusals:
        try:
            data = json.loads(answer.get("body") or "")
        except ValueError:
            data = None
        if not (isinstance(data, dict) and isinstance(data.get("code"), str) and isinstance(data.get("message"), str)):
            bad.append(answer)
    if not refusals:
        return Case("refusal_format", False, "no forgery was refused, so no refusal to check", severity="warning")
    if bad:
        return Case("refusal_format", False, f"{len(bad)}/{len(refusals)} refusals are not {{\"code\",\"message\"}}: "
                    + _describe_answer(bad[0]), severity="warning", answer=bad[0])
    return Case("refusal_format", True, f"{len(refusals)} refusals answer {{\"code\",\"message\"}}",
                severity="warning")


# -- the backend's own calls, from the simulator's call log -------------------------------------


def _headers_of(call: SandboxApiCall) -> dict[str, str]:
    try:
        return json.loads(call.request_headers or "{}")
    except ValueError:
        return {}


def _call_summary(call: SandboxApiCall) -> str:
    return f"#{call.id} {call.method} {call.path} → {call.status}"


def _sent_of(call: SandboxApiCall) -> dict[str, Any]:
    return {"method": call.method, "url": call.path, "headers": _headers_of(call), "body": call.request_body}


def call_log_cases(platform: Platform, txn: SandboxTransaction, mchid: str, acked_at) -> list[Case]:
    """The checks over the backend's own requests, for its merchant (signatures, headers, formats, rhythm)."""
    import re

    calls = list(db.session.scalars(
        select(SandboxApiCall).where(SandboxApiCall.mchid == mchid).order_by(SandboxApiCall.id).limit(1000)))
    cases: list[Case] = []

    sign_failures = [c for c in calls if c.auth_result.startswith("SIGN_ERROR")]
    if sign_failures:
        first = sign_failures[0]
        detail = json.loads(first.diagnosis_detail) if first.diagnosis_detail else None
        names = sorted({c.diagnosis or "unknown" for c in sign_failures})
        cases.append(Case("requests_signed", False,
                          f"{len(sign_failures)}/{len(calls)} requests failed the signature check "
                          f"(diagnosis: {', '.join(names)}); first: {_call_summary(first)}",
                          sent=_sent_of(first), answer={"status": first.status, "body": first.response_body},
                          diagnosis=detail))
    else:
        cases.append(Case("requests_signed", True, f"{len(calls)} requests, every signature verified"
                          if calls else "no request from this merchant in the call log"))

    missing = [c for c in calls if not _headers_of(c).get("Accept") or not _headers_of(c).get("User-Agent")]
    cases.append(Case("request_headers", not missing,
                      f"{len(missing)} requests lack Accept or User-Agent; first: {_call_summary(missing[0])}"
                      if missing else f"{len(calls)} requests carry Accept and User-Agent",
                      sent=_sent_of(missing[0]) if missing else None))

    creates = []
    for call in calls:
        if call.method == "POST" and call.path.split("?")[0] in CREATE_PATHS:
            try:
                data = json.loads(call.request_body)
            except ValueError:
                continue
            if isinstance(data, dict):
                creates.append((call, data))
    bad_expire = [(c, d) for c, d in creates if "time_expire" in d
                  and not (isinstance(d["time_expire"], str) and re.match(TIME_EXPIRE_FORMAT, d["time_expire"]))]
    with_expire = [c for c, d in creates if "time_expire" in d]
    if bad_expire:
        call, data = bad_expire[0]
        cases.append(Case("time_expire_format", False, f"time_expire {data['time_expire']!r} is not "
                          "yyyy-MM-DDTHH:mm:ss+08:00", sent=_sent_of(call)))
    else:
        cases.append(Case("time_expire_format", True, f"{len(with_expire)} orders set time_expire in WeChat's format"
                          if with_expire else "no order set time_expire (WeChat's default applies)"))

    urls = sorted({d.get("notify_url") for _, d in creates if isinstance(d.get("notify_url"), str)})
    plain = [u for u in urls if not u.startswith("https://")]
    remote_plain = [u for u in plain if (urlsplit(u).hostname or "") not in LOOPBACK_HOSTS]
    if remote_plain:
        cases.append(Case("notify_url_https", False, f"notify_url {remote_plain[0]} is not https"))
    elif plain:
        cases.append(Case("notify_url_https", True, f"notify_url {plain[0]} is http on loopback: accepted by the "
                          "simulator; live WeChat Pay requires https", severity="warning",
                          note="http on loopback"))
    else:
        cases.append(Case("notify_url_https", True, "every notify_url is https" if urls else "no order in the log"))

    query_prefixes = (f"/v3/pay/transactions/out-trade-no/{txn.out_trade_no}?",
                      f"/v3/pay/transactions/id/{txn.transaction_id}?" if txn.transaction_id else "\0")
    queries = [c for c in calls if c.method == "GET" and c.path.startswith(query_prefixes)]
    first_ack = _first_ack(platform, txn, acked_at)
    late = [c for c in queries if c.at > first_ack and c.status == 200]
    cases.append(Case("no_query_after_ack", not late, f"{len(late)} queries after the notification was "
                      f"acknowledged ({format_time(first_ack)}); first: {_call_summary(late[0])}" if late
                      else f"{len(queries)} queries, none after the acknowledgement", severity="warning",
                      sent=_sent_of(late[0]) if late else None))

    others = list(db.session.scalars(select(SandboxTransaction).where(
        SandboxTransaction.mchid == mchid, SandboxTransaction.id != txn.id,
        SandboxTransaction.created_at <= txn.created_at, SandboxTransaction.trade_state == "NOTPAY",
        SandboxTransaction.description == txn.description, SandboxTransaction.amount_total == txn.amount_total)))
    open_others = [o for o in others if not platform.expired(o)]
    cases.append(Case("close_before_reissue", not open_others,
                      f"{len(open_others)} earlier orders for the same goods are still open: "
                      + ", ".join(o.out_trade_no for o in open_others[:5]) if open_others
                      else "no earlier order for the same goods left open", severity="warning"))

    gaps = [(b.at - a.at).total_seconds() for a, b in zip(queries, queries[1:])]
    tight = [g for g in gaps if g < MIN_QUERY_GAP_SECONDS]
    cases.append(Case("query_interval", not tight,
                      f"{len(tight)} queries of this order within {MIN_QUERY_GAP_SECONDS} s of the previous one "
                      f"(shortest gap {min(tight):.2f} s)" if tight else
                      f"{len(queries)} queries of this order, none closer than {MIN_QUERY_GAP_SECONDS} s",
                      severity="warning"))
    return cases


def _first_ack(platform: Platform, txn: SandboxTransaction, acked_at):
    """Real time of the first acknowledged TRANSACTION.SUCCESS of this order (the simulator's or the grader's)."""
    offset = platform.now() - utcnow()  # deliveries are stamped in simulator time
    earliest = db.session.scalar(
        select(SandboxDelivery.at).join(SandboxNotification, SandboxNotification.id == SandboxDelivery.notification_id)
        .where(SandboxNotification.out_trade_no == txn.out_trade_no,
               (SandboxNotification.mchid == txn.mchid)
               | (SandboxNotification.mchid.is_(None) & (txn.mchid == platform.merchant.mchid)),
               SandboxNotification.kind == "payment", SandboxDelivery.http_status.in_((200, 204)))
        .order_by(SandboxDelivery.at).limit(1))
    if earliest is not None and earliest - offset < acked_at:
        return earliest - offset + ACK_GRACE  # a query already under way when the answer came is fine
    return acked_at + ACK_GRACE


# -- reports ------------------------------------------------------------------------------------


def case_view(case: Case) -> dict[str, Any]:
    """What the report shows of a case: its title, why it matters and how to fix it."""
    title, why, fix = CASES[case.name]
    return {"case": case, "title": title, "why": why, "fix": fix,
            "sent_json": _http_text(case.sent) if case.sent else None,
            "answer_json": _answer_text(case.answer) if case.answer else None}


def _http_text(sent: dict[str, Any]) -> str:
    """The request as it crossed the wire: request line, headers, blank line, body."""
    headers = "".join(f"{name}: {value}\n" for name, value in (sent.get("headers") or {}).items())
    return f"{sent['method']} {sent['url']}\n{headers}\n{sent.get('body') or ''}"


def _answer_text(answer: dict[str, Any]) -> str:
    if "error" in answer:
        return answer["error"]
    timing = f"  ({answer['elapsed_ms']} ms)" if "elapsed_ms" in answer else ""
    return f"HTTP {answer['status']}{timing}\n\n{answer.get('body') or ''}"


def render_html(result: GradeResult) -> str:
    """The report a developer would share: passed, failed, the exact request of each failure, the fix."""
    return render_template("sandbox/grader_report.html", result=result, summary=result.summary(),
                           views=[case_view(c) for c in result.cases], generated=format_time(utcnow()))


def junit_xml(result: GradeResult) -> bytes:
    """JUnit XML: a failed error-level case is a <failure>; a failed warning is <skipped> (CI stays green)."""
    failures = sum(not c.passed and c.severity == "error" for c in result.cases)
    skipped = sum(not c.passed and c.severity != "error" for c in result.cases)
    suite = ElementTree.Element("testsuite", name="wechatpay-sandbox-grader", tests=str(len(result.cases)),
                                failures=str(failures), errors="0", skipped=str(skipped))
    props = ElementTree.SubElement(suite, "properties")
    for name, value in (("merchant", result.merchant), ("out_trade_no", result.out_trade_no),
                        ("notify_url", result.notify_url)):
        ElementTree.SubElement(props, "property", name=name, value=value)
    for case in result.cases:
        element = ElementTree.SubElement(suite, "testcase", classname=f"wechatpay.grader.{result.merchant}",
                                         name=case.name)
        if not case.passed:
            title, why, fix = CASES[case.name]
            tag = "failure" if case.severity == "error" else "skipped"
            child = ElementTree.SubElement(element, tag, message=case.detail)
            if tag == "failure":
                child.set("type", case.severity)
                child.text = f"{title}\n{case.detail}\nWhy: {why}\nFix: {fix}"
        system_out = ElementTree.SubElement(element, "system-out")
        system_out.text = case.detail
    return ElementTree.tostring(suite, encoding="utf-8", xml_declaration=True)


def store(result: GradeResult, html: str) -> int:
    """Keep the run for the console ("测试你自己的后端"); returns its id."""
    run = SandboxGraderRun(mchid=result.merchant, out_trade_no=result.out_trade_no, ok=result.ok,
                           summary=json.dumps(result.summary(), ensure_ascii=False), report_html=html)
    db.session.add(run)
    db.session.commit()
    return run.id


def line(case: Case) -> str:
    """One line per case for the terminal: mark, name, what was sent and came back; why, when it failed."""
    mark = "✓" if case.passed else "✗"
    level = "" if case.severity == "error" else " (warning)"
    why = "" if case.passed else f" — why it matters: {CASES[case.name][1]}"
    return f"{mark} {case.name}{level} — {case.detail}{why}"

