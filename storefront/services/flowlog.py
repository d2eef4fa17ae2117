"""The flow record: every protocol message of an order's payment, with secrets redacted.

Three sources feed it: the WeChat Pay client's observer (every signed request and the
verified answer), the notification handlers (headers, outer JSON, decrypted resource and each
check in the order the shop ran them, committed with the handler's own work: see
``NotificationTrace``) and the shopper's pages (QR shown, expired, bridge result).
The flow inspector (``storefront/flow``) reads it back next to the order's state changes.

Recording never breaks a payment: a failure to record is logged and swallowed.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import Connection, bindparam, delete, event, insert, select
from sqlalchemy.orm import Session

from .. import gateway
from ..extensions import db
from ..i18n import lazy as _l
from ..models import Payment, ProtocolMessage, utcnow
from ..wechatpay import DecryptError, Notification, WeChatPayError, aead
from ..wechatpay.client import Exchange
from . import flowcodec, rawsql

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
DEFAULT_MAX_FIELD_CHARS = 16_000  # per text field of one message; bodies here are < 2 kB
PURGE_EVERY_SECONDS = 3600
# FLOW_RECORD: what is recorded. "failures" keeps every failed message and a FLOW_SAMPLE_RATE
# share of the successful ones, chosen by attempt (a sampled attempt is recorded whole).
LEVELS = ("all", "failures", "off")
REDACTED = "[REDACTED]"

# A PEM private key, whole or cut short (a truncated field must not leak its first lines).
_PEM_PRIVATE = re.compile(
    r"-{5}BEGIN [A-Z0-9 ]*PRIVATE KEY-{5}.*?(?:-{5}END [A-Z0-9 ]*PRIVATE KEY-{5}|\Z)", re.S
)
_SECRET_NAMES = (
    "apiv3_key", "api_v3_key", "appsecret", "app_secret", "secret", "access_token", "refresh_token",
    "session_key", "private_key", "miniprogram_appsecret",
)
_NAMES = "|".join(_SECRET_NAMES)
# Every secret's name, and a PEM private key's header ("private key"), holds one of these: text
# whose lower case holds none of them holds neither (five searches instead of eleven, over every
# notification's texts; not "_key": public-key serials are "PUB_KEY_ID_…"). Substring searches,
# not one alternation regex: CPython's ``in`` skips through a long Base64 run (signatures,
# ciphertexts) where the regex tries every alternative at every position, 3× slower here.
_SECRET_HINTS = ("secret", "_token", "v3_key", "session_key", "private")
# "secret":"…" in JSON, and secret=… in a query string or form body.
_JSON_SECRET = re.compile(r'("[A-Za-z0-9_]*(?:%s)"\s*:\s*)"(?:[^"\\]|\\.)*"' % _NAMES, re.I)
# (?<!…): start only where a word starts. Unanchored, every position inside a long Base64 run
# (signatures, ciphertexts) rescanned the rest of the run: milliseconds per field. Same matches.
_QUERY_SECRET = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z0-9_]*(?:%s)=)[^&\s\"'#]*" % _NAMES, re.I)
_SECRET_HEADERS = {"cookie", "set-cookie", "x-csrf-token"}

BROWSER_EVENTS = {
    "qr_shown": _l("二维码已展示"),
    "qr_expired": _l("二维码已过期"),
    "qr_renew": _l("顾客刷新二维码"),
    "paid_shown": _l("页面显示支付成功"),
    "h5_redirect": _l("跳转到微信支付 H5 收银台"),
    "h5_returned": _l("从 H5 收银台返回"),
    "bridge_result": _l("微信客户端返回支付结果"),
    "requestpayment_result": _l("小程序返回支付结果"),
    "bridge_invoke": _l("页面调起 getBrandWCPayRequest"),
    "requestpayment_invoke": _l("小程序调用 wx.requestPayment"),
}
# Steps the shop notes itself, that are not a call to WeChat Pay (direction "shop").
SHOP_NOTES = {
    "oauth_authorize": _l("跳转微信网页授权（snsapi_base）"),
    "oauth_callback": _l("微信带 code 回到商户，商户核对 state"),
    "pay_sign": _l("商户后台计算 paySign"),
}
MAX_BROWSER_EVENTS_PER_ORDER = 200
MAX_DETAIL_CHARS = 300

_OUT_TRADE_NO_IN_PATH = re.compile(r"/out-trade-no/([^/?]+)")
_OUT_REFUND_NO_IN_PATH = re.compile(r"^/v3/refund/domestic/refunds/([^/?]+)")


def redact(text: str | None, known: Iterable[str] = ()) -> str:
    """``text`` with private keys, known secret values and secret-named fields replaced."""
    if not text:
        return ""
    # Each pattern matches only where "PRIVATE KEY" or a secret's name is written: without one,
    # its scan is skipped (most fields of a record, at every notification).
    lowered = text.lower()
    if "private key" in lowered:
        text = _PEM_PRIVATE.sub("[REDACTED PRIVATE KEY]", text)
    for value in known:
        if value and len(value) >= 8:  # a short value would blank unrelated text
            text = text.replace(value, REDACTED)
    if not any(name in lowered for name in _SECRET_NAMES):
        return text
    text = _JSON_SECRET.sub(lambda m: m.group(1) + '"' + REDACTED + '"', text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)


def _may_hold_secrets(values: Mapping[str, Any], known: Iterable[str], also: str = "") -> bool:
    """Whether any text of a message could need ``redact``: a private key, a secret's name or a
    known secret value appears somewhere in it (a superset of what ``redact`` replaces).
    ``also``: one more text the record will hold (a notification's decrypted resource)."""
    parts: list[str] = [also]
    for value in values.values():
        # dict before the Mapping ABC: an ABC check costs a notification's record microseconds each.
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict | Mapping):
            for name, text in value.items():
                parts.append(name)
                parts.append(text)
        elif isinstance(value, list):
            parts.extend([str(item.get("detail") or "") for item in value if isinstance(item, dict | Mapping)])
    return _may_hold_secret_text("\n".join(parts), known)


def _may_hold_secret_text(text: str, known: Iterable[str]) -> bool:
    """Whether ``text`` may hold a secret's name or "private key" (it holds a word of
    ``_SECRET_HINTS``), or holds a known secret value (of 8 characters or more, as ``redact``
    replaces them). False: ``redact`` would change nothing in it."""
    lowered = text.lower()
    if any(hint in lowered for hint in _SECRET_HINTS):
        return True
    return any(value and len(value) >= 8 and value in text for value in known)


def redact_headers(headers: Mapping[str, str], known: Iterable[str] = ()) -> dict[str, str]:
    """Headers as a plain dict, redacted. ``Authorization`` is a signature, not a secret: kept."""
    known = list(known)
    return {
        str(name): REDACTED if str(name).lower() in _SECRET_HEADERS else redact(str(value), known)
        for name, value in headers.items()
    }


def _settings(app: Flask) -> tuple[int, int]:
    return (int(app.config.get("FLOW_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)),
            int(app.config.get("FLOW_MAX_FIELD_CHARS", DEFAULT_MAX_FIELD_CHARS)))


_SECRET_SETTINGS = ("WECHATPAY_APIV3_KEY", "WECHATPAY_APPSECRET", "WECHATPAY_MINIPROGRAM_APPSECRET", "SECRET_KEY")
_SECRET_CREDENTIALS = ("apiv3_key", "appsecret", "miniprogram_appsecret")


def known_secrets(app: Flask) -> list[str]:
    """The secret values configured for this app: they are replaced wherever they appear."""
    config = app.config
    gateway = app.extensions.get("wechatpay")
    creds = gateway.loaded_credentials if gateway is not None else None  # recording never loads keys
    # Every message asks: the answer is kept for as long as the settings and the loaded
    # credentials are the same objects (a test or a key rotation replaces them).
    key = (creds, *(config.get(name) for name in _SECRET_SETTINGS))
    cached = app.extensions.get("flowlog.known_secrets")
    if cached is not None and len(cached[0]) == len(key) and all(a is b for a, b in zip(cached[0], key)):
        return cached[1]
    values = list(key[1:])
    if creds is not None:
        values += [getattr(creds, name, None) for name in _SECRET_CREDENTIALS]
    known = list(dict.fromkeys(str(v) for v in values if v))  # each once: every message is scanned for them
    app.extensions["flowlog.known_secrets"] = (key, known)
    return known


def _failed(values: Mapping[str, Any]) -> bool:
    """A message that shows something went wrong: no answer, an error answer, a refused
    signature, a page reporting a failed payment."""
    if values.get("direction") == "browser":
        return values.get("kind") in ("bridge_result", "requestpayment_result") \
            and ":ok" not in (values.get("request_body") or "")
    if values.get("direction") == "shop":  # a step the shop noted itself (OAuth, paySign): no HTTP status
        return values.get("verification") == "failed"
    status = values.get("status")
    return status is None or status >= 300 or values.get("verification") == "failed" or bool(values.get("error"))


_ADD_MESSAGE = insert(ProtocolMessage.__table__)
_ADD_MESSAGE_RAW = rawsql.Prepared(_ADD_MESSAGE, [c.key for c in ProtocolMessage.__table__.c if c.key != "id"])


@dataclass(frozen=True)
class Link:
    order_id: int | None
    payment_id: int | None


class Recorder:
    """Writes protocol messages for one app; kept in ``app.extensions["flowlog"]``."""

    def __init__(self, app: Flask, origin: Callable[[], str] | None = None) -> None:
        self.app = app
        # What made the shop call WeChat Pay ("POST /orders/…/pay", "poll"); "job" outside a request.
        self.origin = origin or (lambda: "job")
        self._purged_at = 0.0
        self._lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------

    def keeps(self, failed: bool, key: str | None = None) -> bool:
        """Whether ``FLOW_RECORD`` (and ``FLOW_SAMPLE_RATE``) keep a message; ``key``: its attempt."""
        level = self.app.config.get("FLOW_RECORD", "all")
        if level == "all" or (failed and level == "failures"):
            return True
        if level == "off":
            return False
        rate = float(self.app.config.get("FLOW_SAMPLE_RATE") or 0.0)
        if rate <= 0 or rate >= 1:
            return rate >= 1
        if key:
            # The same attempt is in or out for each of its messages: a sampled flow is whole.
            return zlib.crc32(key.encode("utf-8")) % 10_000 < rate * 10_000
        return random.random() < rate

    def record(self, values: dict[str, Any]) -> None:
        """Store one message (redacted, size-bounded), if ``FLOW_RECORD`` keeps it. Never raises."""
        if not self.keeps(_failed(values), values.get("out_trade_no") or str(values.get("order_id") or "")):
            return
        try:
            with nullcontext() if has_app_context() else self.app.app_context():
                self._write(self._bounded(values))
                self._maybe_purge()
        except Exception:  # the record is a teaching aid: it must never fail a payment
            log.warning("flow record not written (%s)", values.get("kind"), exc_info=True)

    def add(self, values: dict[str, Any], connection: rawsql.CursorSource | None = None, *,
            opened: flowcodec.Opened | None = None) -> None:
        """Add one message to the session's transaction (begun here if need be): it commits, or
        rolls back, with the caller's own work. One lock and one commit for both. Never raises.

        ``connection``: the session's connection (or a ``rawsql.DriverTransaction``), already in
        that transaction; the message is then inserted on its driver cursor (``rawsql``), the
        notification path's own way. On a driver transaction the message must name its order
        (``order_id``): no query links it there."""
        if not self.keeps(_failed(values), values.get("out_trade_no") or str(values.get("order_id") or "")):
            return
        try:
            values = self._bounded(values, opened)
            # Begin now (if need be): the link's read and the insert run in this transaction.
            if connection is not None:
                self._write(values, connection, raw=True)
            else:
                self._write(values, db.session.connection())
        except Exception:  # the record is a teaching aid: it must never fail a payment
            log.warning("flow record not added (%s)", values.get("kind"), exc_info=True)

    def add_bounded(self, row: dict[str, Any], connection: rawsql.CursorSource) -> None:
        """``add`` for a row ``bounded`` already built, on the open transaction's ``connection``."""
        try:
            self._write(row, connection, raw=True)
        except Exception:  # the record is a teaching aid: it must never fail a payment
            log.warning("flow record not added (%s)", row.get("kind"), exc_info=True)

    def bounded(self, values: dict[str, Any], opened: flowcodec.Opened | None = None) -> dict[str, Any]:
        """The row ``add`` would insert for ``values`` (redacted, bounded, packed). ``opened``: a
        notification's JSON and plaintext, as its handler decrypted them (``fold_ciphertext``)."""
        return self._bounded(values, opened)

    def _bounded(self, values: dict[str, Any], opened: flowcodec.Opened | None = None) -> dict[str, Any]:
        """The row to insert: columns redacted and bounded; headers that matter, bodies and
        checks redacted, bounded and packed into one ``payload`` (``flowcodec``)."""
        known = known_secrets(self.app)
        _retention, limit = _settings(self.app)
        out: dict[str, Any] = {}
        packed: dict[str, Any] = {}
        truncated = False
        # One look over every text first: a message with no secret-like text (most of them) skips
        # the field-by-field redaction. ``redact`` decides on the same words.
        scrub = _may_hold_secrets(values, known, opened[1].decode("utf-8", "replace") if opened else "")
        for key, value in values.items():
            if key in ("request_headers", "response_headers"):
                value = flowcodec.kept_headers(value or {})
                value = redact_headers(value, known) if scrub else {
                    name: REDACTED if name.lower() in _SECRET_HEADERS else text for name, text in value.items()}
            elif key == "checks":
                value = [{**check, "detail": redact(str(check.get("detail") or ""), known) if scrub
                          else str(check.get("detail") or "")} for check in value or []]
            elif scrub and isinstance(value, str) and key not in ("direction", "kind", "verification"):
                value = redact(value, known)
            if key in flowcodec.FIELDS:
                bound = 120 if key == "origin" else 512 if key == "url" else limit
                if isinstance(value, str) and len(value) > bound:
                    value, truncated = value[: bound - 1] + "…", True
                packed[key] = value
                continue
            if isinstance(value, str) and key in _COLUMN_LENGTHS:
                bound = _COLUMN_LENGTHS[key] or limit
                if len(value) > bound:
                    value, truncated = value[: bound - 1] + "…", True
            out[key] = value
        # An HTTP message's title is its method and path: not stored when the model rebuilds it exactly
        # (``ProtocolMessage.http_title``, from the canonical URL or URL the payload keeps).
        if out.get("title") is not None and out["title"] == ProtocolMessage.http_title(out.get("method"), packed):
            out["title"] = None
        self._fold(out, packed, known, opened, scrub or not opened)
        out["payload"] = flowcodec.encode(packed)
        out["truncated"] = truncated
        return out

    def _fold(self, out: dict[str, Any], packed: dict[str, Any], known: list[str],
              opened: flowcodec.Opened | None = None, scrub: bool = True) -> None:
        """Cut from the record what the inspector rebuilds (``flowcodec``): the shop's own request
        signature, a notification's ciphertext (its plaintext kept instead), and the serial when
        it is the Wechatpay-Serial header. ``scrub``: False when the scan found nothing that
        ``redact`` would replace, ``opened``'s plaintext included."""
        direction = out.get("direction")
        if direction == "out" and packed.get("request_headers"):
            folded = flowcodec.fold_signature(packed["request_headers"])
            if folded is not None:
                packed["request_headers"], packed["signature_head"] = folded
        if direction == "in" and packed.get("request_body") and any(
                c.get("name") == "decrypt" and c.get("ok") for c in packed.get("checks") or []):
            gw = self.app.extensions.get("wechatpay")  # it decrypted this body: its keys are loaded
            folded = flowcodec.fold_ciphertext(packed["request_body"], gw.aes, opened) if gw is not None else None
            # Only a plaintext with nothing to redact: the rebuilt ciphertext must be the one received.
            if folded is not None and (not scrub or redact(folded[1]["resource_plain"], known)
                                       == folded[1]["resource_plain"]):
                packed["request_body"] = folded[0]
                packed.update(folded[1])
        headers = packed.get("response_headers" if direction == "out" else "request_headers") or {}
        serial = flowcodec.find_header(headers, "wechatpay-serial")
        if serial is not None and out.get("verify_serial") == serial:
            out["verify_serial"] = None  # ProtocolMessage.verified_serial reads the header

    def _write(self, values: dict[str, Any], connection: Any = None, raw: bool = False) -> None:
        """Insert one bounded message: on ``connection`` if given, else as ``_link`` decides."""
        out_refund_no = values.pop("out_refund_no", None)
        # Linked to its attempt by its own out_trade_no: a payment notification by the attempt
        # ``apply_payment`` found by it; an API call's record here.
        by_number = values.get("kind") == "notify_payment"
        if values.get("order_id") is None and values.get("out_trade_no"):
            link = self.link(values["out_trade_no"], connection)
            values.update(order_id=link.order_id, payment_id=link.payment_id)
            by_number = True
        elif values.get("order_id") is None and out_refund_no:
            link = self.link_refund(out_refund_no)
            values.update(order_id=link.order_id, payment_id=link.payment_id)
        if by_number and values.get("payment_id") is not None:
            values["out_trade_no"] = None  # the attempt's own column says it (``ProtocolMessage.out_trade_no``)
        # One constant statement, the values as parameters: compiled once, not at every message.
        if connection is not None and raw:
            _ADD_MESSAGE_RAW.execute(connection, values).close()
            return
        statement = _ADD_MESSAGE
        if connection is not None:
            connection.execute(statement, values)
        elif db.session().in_transaction():
            # The caller holds a transaction (and on SQLite the write lock): a second
            # connection would wait for it, so the message rides along with it instead.
            db.session.execute(statement, values)
        else:
            with db.engine.begin() as own:
                own.execute(statement, values)

    @staticmethod
    def link(out_trade_no: str, connection: Connection | None = None) -> Link:
        """The order and attempt an ``out_trade_no`` belongs to (unknown: both None)."""
        return _known_link(out_trade_no) or _link(_LINK_PAYMENT, {"out_trade_no": out_trade_no}, connection)

    @staticmethod
    def link_refund(out_refund_no: str) -> Link:
        """The order and attempt a refund belongs to (a refund query names only its own number)."""
        from .. import models

        refund = getattr(models, "Refund", None)
        if refund is None:
            return Link(None, None)
        return _link(select(refund.order_id, refund.payment_id).where(refund.out_refund_no == out_refund_no), {})

    def _maybe_purge(self) -> None:
        if db.session().in_transaction():
            return  # a second connection would wait for this thread's own lock: next time
        now = time.monotonic()
        with self._lock:
            if self._purged_at and now - self._purged_at < PURGE_EVERY_SECONDS:
                return
            self._purged_at = now
        purge(self.app)

    # -- the WeChat Pay client's observer ---------------------------------------------------

    def observe(self, exchange: Exchange) -> None:
        """Record one API exchange; ``Client(observer=...)`` calls this for every request.

        In an app context the message rides on the context's next commit (the one that stores
        WeChat Pay's answer, right after the call): no commit of its own. If none comes, it is
        written when the context ends (``_write_pending``), so nothing is lost.
        """
        try:
            values = exchange_values(exchange, origin=self.origin())
            if has_app_context() and current_app.extensions.get("flowlog") is self:
                g.setdefault(_PENDING, []).append(values)
                return
            self.record(values)
        except Exception:
            log.warning("flow record of %s %s failed", exchange.method, exchange.canonical_url, exc_info=True)


# Each text column's length bound (None: the FLOW_MAX_FIELD_CHARS limit), read once.
_COLUMN_LENGTHS = {column.name: getattr(column.type, "length", None) for column in ProtocolMessage.__table__.c
                   if hasattr(column.type, "length")}
_PENDING = "flowlog_pending"  # flask.g: API exchanges waiting for the context's next commit


@event.listens_for(Session, "before_commit")
def _ride_along(session: Session) -> None:
    """Add the API exchanges observed in this app context to the commit about to happen."""
    if not has_app_context() or _PENDING not in g or session is not db.session():
        return
    recorder = current_app.extensions.get("flowlog")
    for values in g.pop(_PENDING):
        # On the driver's cursor of the connection about to commit (``rawsql``): same transaction.
        recorder.add(values, session.connection())


def _write_pending(_exc: BaseException | None = None) -> None:
    """At the app context's end: write the exchanges no commit took along (teardown hook)."""
    pending = g.pop(_PENDING, None)
    if not pending:
        return
    try:
        # What the context left uncommitted is rolled back anyway (Flask-SQLAlchemy's teardown,
        # just after this one); ending it first frees SQLite's lock for the record's own write.
        db.session.rollback()
    except Exception:
        log.warning("session not rolled back before writing the flow record", exc_info=True)
    recorder = current_app.extensions.get("flowlog")
    for values in pending:
        recorder.record(values)


_LINKS = "flowlog_links"  # flask.g: out_trade_no -> Link, for attempts the request holds loaded


def known_attempt(out_trade_no: str, order_id: int, payment_id: int) -> None:
    """Say which order and attempt ``out_trade_no`` is, for the records of this app context's
    calls about it: the caller holds them loaded, so no query links the record."""
    if has_app_context():
        g.setdefault(_LINKS, {})[out_trade_no] = Link(order_id, payment_id)


def _known_link(out_trade_no: str) -> Link | None:
    links = g.get(_LINKS) if has_app_context() else None
    return links.get(out_trade_no) if links else None


# Built once: a notification's record links by it on every call.
_LINK_PAYMENT = select(Payment.order_id, Payment.id).where(Payment.out_trade_no == bindparam("out_trade_no"))


def _link(query: Any, params: dict[str, Any], connection: Connection | None = None) -> Link:
    # On SQLite a second connection would wait for a lock this thread's session may hold.
    if connection is not None:
        row = connection.execute(query, params).first()
    elif db.session().in_transaction():
        row = db.session.execute(query, params).first()
    else:
        with db.engine.connect() as connection:
            row = connection.execute(query, params).first()
    return Link(row[0], row[1]) if row else Link(None, None)


def purge(app: Flask, now: datetime | None = None) -> int:
    """Delete messages older than ``FLOW_RETENTION_DAYS`` (and notification records older than
    ``NOTIFY_RETENTION_DAYS``); returns how many messages went."""
    retention, _limit = _settings(app)
    cutoff = (now or utcnow()) - timedelta(days=retention)
    notify_days = app.config.get("NOTIFY_RETENTION_DAYS") or retention
    notify_cutoff = (now or utcnow()) - timedelta(days=int(notify_days))
    from ..models import NotificationRecord

    with db.engine.begin() as connection:
        # Notification records follow the same rule (NOTIFY_RETENTION_DAYS, default the same days).
        connection.execute(delete(NotificationRecord).where(NotificationRecord.received_at < notify_cutoff))
        return connection.execute(delete(ProtocolMessage).where(ProtocolMessage.at < cutoff)).rowcount or 0


def recorder(app: Flask | None = None) -> Recorder:
    return (app or current_app).extensions["flowlog"]


def register(app: Flask, origin: Callable[[], str] | None = None) -> None:
    """Make the recorder available and hand its observer to the gateway's clients.

    ``origin`` says what made the shop call WeChat Pay (the web layer reads its request).
    """
    app.config.setdefault("FLOW_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    app.config.setdefault("FLOW_MAX_FIELD_CHARS", DEFAULT_MAX_FIELD_CHARS)
    # A demo records everything (it is there to be looked at); production, the failures.
    app.config.setdefault("FLOW_RECORD", "all" if app.config.get("WECHATPAY_SANDBOX") else "failures")
    app.config.setdefault("FLOW_SAMPLE_RATE", 0.0)
    if app.config["FLOW_RECORD"] not in LEVELS:
        raise ValueError(f"FLOW_RECORD must be one of {', '.join(LEVELS)}, not {app.config['FLOW_RECORD']!r}")
    if not 0.0 <= float(app.config["FLOW_SAMPLE_RATE"]) <= 1.0:
        raise ValueError(f"FLOW_SAMPLE_RATE must be between 0 and 1, not {app.config['FLOW_SAMPLE_RATE']!r}")
    app.extensions["flowlog"] = Recorder(app, origin)
    app.teardown_appcontext(_write_pending)


# -- API exchanges ------------------------------------------------------------------------


def api_kind(method: str, canonical_url: str, body: str) -> str:
    """The step an API call is, from its method and path."""
    path = canonical_url.split("?", 1)[0]
    if method == "POST" and path.startswith("/v3/pay/transactions/"):
        scene = path.rsplit("/", 1)[-1]
        if scene in ("native", "h5", "app"):
            return f"prepay_{scene}"
        if scene == "jsapi":
            return "prepay_jsapi"
        if path.endswith("/close"):
            return "close"
    if method == "GET" and path.startswith("/v3/pay/transactions/"):
        return "query"
    if path.startswith("/v3/refund/domestic/refunds"):
        return "refund" if method == "POST" else "refund_query"
    if path.startswith("/v3/certificates"):
        return "certificates"
    return "api"


def _out_trade_no(canonical_url: str, body: str) -> str | None:
    found = _OUT_TRADE_NO_IN_PATH.search(canonical_url)
    if found:
        return unquote(found.group(1))
    if body:
        try:
            value = json.loads(body).get("out_trade_no")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    return None


def _out_refund_no(canonical_url: str, body: str) -> str | None:
    # A refund request may name the payment by transaction_id only: its out_refund_no links it.
    found = _OUT_REFUND_NO_IN_PATH.search(canonical_url)
    if found:
        return unquote(found.group(1))
    if body and canonical_url.startswith("/v3/refund/"):
        try:
            value = json.loads(body).get("out_refund_no")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    return None


def exchange_values(exchange: Exchange, origin: str = "") -> dict[str, Any]:
    """The columns of one API exchange: what was signed, sent, answered and verified."""
    kind = api_kind(exchange.method, exchange.canonical_url, exchange.request_body)
    # The signed strings are not stored: the inspector rebuilds them from the method, the URL,
    # the Authorization / Wechatpay-* headers and the bodies (``ProtocolMessage.signed_message``).
    verification, serial = "none", None
    if exchange.verification is not None:
        verification, serial = "passed", exchange.verification.serial
    elif exchange.status is not None and exchange.status < 300:
        # A 2xx answer without a Verification was refused: show what would have been checked.
        verification = "failed"
        serial = {k.lower(): v for k, v in exchange.response_headers.items()}.get("wechatpay-serial")
    started = utcnow() - timedelta(milliseconds=exchange.elapsed_ms)
    return {
        "out_trade_no": _out_trade_no(exchange.canonical_url, exchange.request_body),
        "out_refund_no": _out_refund_no(exchange.canonical_url, exchange.request_body),
        "at": started,
        "direction": "out",
        "kind": kind,
        "title": f"{exchange.method} {exchange.canonical_url}",
        "origin": origin,
        "method": exchange.method,
        "url": exchange.url,
        "status": exchange.status,
        "request_headers": exchange.request_headers,
        "request_body": exchange.request_body,
        "response_headers": exchange.response_headers,
        "response_body": exchange.response_body,
        "canonical_url": exchange.canonical_url,
        "verification": verification,
        "verify_serial": serial,
        "error": exchange.error or "",
        "elapsed_ms": round(exchange.elapsed_ms),
    }


# -- notifications ------------------------------------------------------------------------

CHECK_ORDER = ("headers", "serial", "timestamp", "signature", "decrypt", "mchid", "appid", "trade_state",
               "amount", "outcome")
REFUND_CHECK_ORDER = ("headers", "serial", "timestamp", "signature", "decrypt", "mchid", "outcome")


_RANKS = {order: {name: i for i, name in enumerate(order)} for order in (CHECK_ORDER, REFUND_CHECK_ORDER)}

# The inspector shows the probe and an undecodable body under "signature": neither could verify.
_CHECK_SHOWN_AS = {"probe": "signature", "encoding": "signature"}


def _failed_check(exc: WeChatPayError) -> str:
    """Which check a parse failure was, from the error's machine-readable ``check``."""
    check = getattr(exc, "check", "decrypt")  # DecryptError, NotificationError: "decrypt"
    return _CHECK_SHOWN_AS.get(check, check)


class Checks:
    """The checks of one notification, in the order the shop runs them; the rest 'not run'."""

    def __init__(self, order: tuple[str, ...] = CHECK_ORDER) -> None:
        self.order = order
        self.rank = _RANKS[order] if order in _RANKS else {name: i for i, name in enumerate(order)}
        self.items: list[dict[str, Any]] = []
        self.failed = False

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append({"name": name, "ok": ok, "detail": detail})
        self.failed = self.failed or not ok
        return ok

    def finish(self) -> list[dict[str, Any]]:
        names = [item["name"] for item in self.items]
        if len(names) == len(self.order) and all(a == b for a, b in zip(names, self.order)):
            return list(self.items)  # every check ran, in order: a notification that was applied
        done = set(names)
        items = self.items + [{"name": n, "ok": None, "detail": ""} for n in self.order if n not in done]
        return sorted(items, key=lambda item: self.rank[item["name"]])


@dataclass(frozen=True)
class _Answer:
    """An answer as ``NotifyResult`` has it (flowlog does not import the pipeline)."""

    status: int
    outcome: str
    reason: str


class NotificationTrace:
    """What handling one notification established, check by check: its flow record's source.

    The notification pipeline (``notifications.receive``) fills it as the event kind runs its
    checks, and ``notifications.record`` adds the record to the same
    transaction as the notification's effect. So the record shows the checks the shop actually
    ran, and costs no second verification, decryption, lock or commit.
    """

    def __init__(self, headers: Mapping[str, str], body: bytes, received_at: datetime | None = None,
                 kind: str = "notify_payment", *, path: str = "/notify/wechatpay", url: str = "") -> None:
        self.headers = _kept_request_headers(headers)  # all the record keeps of them
        self.path = path
        self.url = url
        self.body = body
        self.received_at = received_at or utcnow()
        self.kind = kind
        self.checks = Checks(CHECK_ORDER if kind == "notify_payment" else REFUND_CHECK_ORDER)
        self.verification = "failed"
        self.out_trade_no: str | None = None
        self.link: Link | None = None  # the order and attempt, when the handler already knows them
        # The body's JSON and plaintext as verified and decrypted: the record folds the ciphertext
        # out without opening it again (``flowcodec.fold_ciphertext``).
        self.opened: flowcodec.Opened | None = None
        # The record built ahead for the answer the handler expects (``prepare``): (status,
        # outcome, reason, checks it assumed, the row). Used only if the handler answers exactly that.
        self.prepared: tuple[int, str, str, list[dict[str, Any]], dict[str, Any]] | None = None

    def prepare(self, status: int, outcome: str, checks: list[tuple[str, bool, str]]) -> None:
        """Build the record now, for the answer the handler expects (``checks``: those it will
        add on the way), before the transaction takes the database's write lock (SQLite: the
        lock every other writer waits for). ``add_notification`` uses it only if the handler's
        answer and checks come out exactly as assumed; otherwise it builds the record anew."""
        rec = current_app.extensions.get("flowlog")
        if rec is None or not rec.keeps(status >= 300, self.out_trade_no):
            return
        before = list(self.checks.items)
        try:
            for name, ok, detail in checks:
                self.checks.add(name, ok, detail)
            assumed = list(self.checks.items)
            row = self._plain_row(rec, status, outcome)
            if row is None:
                row = rec.bounded(self.values(_Answer(status, outcome, "")), self.opened)
            self.prepared = (status, outcome, "", assumed, row)
        except Exception:  # the record never fails a notification: built later, the usual way
            log.warning("flow record not prepared", exc_info=True)
        finally:
            self.checks.items, self.checks.failed = before, any(not c["ok"] for c in before)

    def _plain_row(self, rec: Recorder, status: int, outcome: str) -> dict[str, Any] | None:
        """The row ``rec.bounded(self.values(...), self.opened)`` builds for an accepted, verified
        and decrypted notification whose texts hold nothing to redact and nothing to cut: the same
        columns and payload, built directly (the common case, at every payment), but for
        ``elapsed_ms`` (``take_prepared`` adds it). None otherwise: the general way then decides."""
        if status >= 300 or self.opened is None or self.verification != "passed":
            return None
        gw = rec.app.extensions.get("wechatpay")
        if gw is None:
            return None
        headers = self.headers
        body = self.body.decode("utf-8", "replace")
        plain = self.opened[1].decode("utf-8", "replace")
        items = self.checks.items
        if [c["name"] for c in items] != list(self.checks.order[:-1]) or not all(c["ok"] for c in items):
            return None  # a check failed, missing or out of order: the general way says what
        # As ``flowcodec.encode`` lays checks out: [name, ok, detail] rows.
        checks = [[c["name"], c["ok"], str(c["detail"] or "")] for c in items]
        checks.append(["outcome", True, f"HTTP {status} {outcome} ".strip()])
        title = f"POST {self.path}"
        known = known_secrets(rec.app)
        # Every text the general way would redact (``_bounded``), and its constants.
        texts = [body, plain, self.url, title, self.out_trade_no or "", "in", self.kind, "wechatpay", "POST",
                 "passed", *headers.keys(), *headers.values(), *(c[2] for c in checks)]
        if _may_hold_secret_text("\n".join(texts), known):
            return None
        _retention, limit = _settings(rec.app)
        # (No header to redact by its name: ``self.headers`` holds only ``flowcodec.KEPT_HEADERS``.)
        if (len(self.url) > 512 or max(map(len, texts)) > limit or len(title) > _COLUMN_LENGTHS["title"]
                or len(self.out_trade_no or "") > _COLUMN_LENGTHS["out_trade_no"]):
            return None
        folded = flowcodec.fold_ciphertext(body, gw.aes, self.opened)
        if folded is None:
            return None
        serial = flowcodec.find_header(headers, "wechatpay-serial")
        if serial is None or len(serial) > _COLUMN_LENGTHS["verify_serial"]:
            return None
        packed = {"request_headers": headers, "request_body": folded[0], "checks": checks, "url": self.url,
                  "origin": "wechatpay", **folded[1]}
        return {"out_trade_no": self.out_trade_no, "at": self.received_at, "direction": "in", "kind": self.kind,
                # As ``_bounded``: no title stored when the model rebuilds it from the URL.
                "title": None if title == ProtocolMessage.http_title("POST", packed) else title,
                "method": "POST", "status": status, "verification": "passed",
                "verify_serial": None,  # it is the Wechatpay-Serial header (``ProtocolMessage.verified_serial``)
                "error": "", "payload": flowcodec.encode(packed), "truncated": False}  # elapsed_ms: when taken

    def take_prepared(self, result: Any) -> dict[str, Any] | None:
        """The prepared row if ``result`` and the checks are what ``prepare`` assumed, linked."""
        prepared, self.prepared = self.prepared, None
        if prepared is None or self.link is None:
            return None
        status, outcome, reason, assumed, row = prepared
        if (result.status, result.outcome, result.reason) != (status, outcome, reason) or self.checks.items != assumed:
            return None
        row.update(order_id=self.link.order_id, payment_id=self.link.payment_id,
                   elapsed_ms=round((utcnow() - self.received_at).total_seconds() * 1000))
        return row

    def linked(self, order_id: int, payment_id: int) -> None:
        """The order and attempt the notification is about, as the handler found them."""
        self.link = Link(order_id, payment_id)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record one check's outcome and return it: ``if not trace.check(...): refuse``."""
        return self.checks.add(name, ok, detail)

    def parsed(self, event: Notification) -> None:
        """The signature verified and the resource opened with the APIv3 key."""
        self.verification = "passed"
        self.opened = (event.outer, event.plaintext) if event.plaintext else None
        for name in ("headers", "serial", "timestamp", "signature"):
            self.checks.add(name, True, event.verification.serial if name == "serial" else "")
        self.checks.add("decrypt", True, event.original_type)
        value = event.resource.get("out_trade_no")
        self.out_trade_no = value if isinstance(value, str) else None

    def refused(self, exc: WeChatPayError) -> None:
        """Verifying or decrypting failed: the checks before the failed one passed, the rest never ran."""
        failed = _failed_check(exc)
        for name in CHECK_ORDER[: CHECK_ORDER.index(failed)]:
            self.checks.add(name, True)
        self.checks.add(failed, False, str(exc))
        if failed == "decrypt":
            self.verification = "passed"
        try:
            self.out_trade_no = _claimed_out_trade_no(self.body)
        except Exception:  # the record never fails a notification
            log.warning("claimed out_trade_no not read", exc_info=True)

    def values(self, result: Any) -> dict[str, Any]:
        """The record's columns, with what the shop answered (``result``: a ``NotifyResult``)."""
        self.checks.add("outcome", result.status < 300, f"HTTP {result.status} {result.outcome} {result.reason}".strip())
        text = self.body.decode("utf-8", "replace")
        kept = self.headers  # only the kept ones (``_kept_request_headers``)
        values = {
            "out_trade_no": self.out_trade_no,
            "at": self.received_at,
            "direction": "in",
            "kind": self.kind,
            "title": f"POST {self.path}",
            "origin": "wechatpay",
            "method": "POST",
            "url": self.url,
            "status": result.status,
            "request_headers": kept,
            "request_body": text,
            "response_headers": {},
            "response_body": "" if result.status < 300 else json.dumps(
                {"code": "FAIL", "message": (result.reason or "FAIL")[:64]}, ensure_ascii=False),
            "verification": self.verification,
            "verify_serial": flowcodec.find_header(kept, "wechatpay-serial"),
            "checks": self.checks.finish(),
            "error": "" if result.status < 300 else (result.reason or "")[:300],
            "elapsed_ms": round((utcnow() - self.received_at).total_seconds() * 1000),
        }
        if self.link is not None:
            values.update(order_id=self.link.order_id, payment_id=self.link.payment_id)
        elif self.verification == "failed":
            compact(values)
        return values


# The WSGI environ key of each header a record keeps, and the name werkzeug's Headers gives it.
_ENVIRON_KEPT = {("CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_")): name.title()
                 for name in flowcodec.KEPT_HEADERS}


def _kept_request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``flowcodec.kept_headers`` of a request's headers, read straight from its WSGI environ
    when it has one (werkzeug's ``EnvironHeaders``): iterating those builds every header's name."""
    environ = getattr(headers, "environ", None)
    if not isinstance(environ, dict):
        return flowcodec.kept_headers(headers)
    return flowcodec.KeptHeaders({_ENVIRON_KEPT[key]: value for key, value in environ.items()
                                  if key in _ENVIRON_KEPT and (value or key != "CONTENT_TYPE")})


REFUSED_BODY_CHARS = 512  # what a refused, unsigned notification keeps of its body
_HEADERS_THAT_MATTER = ("content-type", "content-length", "user-agent", "wechatpay-serial", "wechatpay-timestamp",
                        "wechatpay-nonce", "wechatpay-signature", "wechatpay-signature-type", "request-id")


def _prefix(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def compact(values: dict[str, Any]) -> None:
    """A refusal nobody signed: keep what was wrong, the headers that matter and a bounded prefix of
    the body, so junk posted at /notify/* cannot grow the database by megabytes."""
    headers = values.get("request_headers") or {}
    values["request_headers"] = {k: _prefix(str(v), 400) for k, v in headers.items()
                                 if k.lower() in _HEADERS_THAT_MATTER}
    values["request_body"] = _prefix(values.get("request_body") or "", REFUSED_BODY_CHARS)
    values["url"] = _prefix(values.get("url") or "", 200)


def _claimed_out_trade_no(body: bytes) -> str | None:
    """The attempt a refused notification is about, only if its resource opens with the APIv3 key.

    The outer JSON was not trusted; but a resource that decrypts (AEAD authenticates it) was
    written by someone holding the key, so it may link the refusal to the order it names.
    """

    try:
        resource = json.loads(body)["resource"]
        plain = aead.decrypt(gateway.gateway().aes, resource["nonce"], resource["ciphertext"],
                             resource.get("associated_data") or "")
        value = json.loads(plain).get("out_trade_no")
        return value if isinstance(value, str) else None
    except (ValueError, KeyError, TypeError, AttributeError, DecryptError):
        return None


def _display_keys() -> tuple[Any, Any]:
    """The merchant key and the APIv3 cipher, to rebuild what a record does not store."""
    try:
        gw = gateway.gateway()
        return gw.credentials.private_key, gw.aes
    except Exception:  # no keys here (yet): the inspector shows what is stored, with a note
        log.info("keys not available to rebuild flow messages", exc_info=True)
        return None, None


def signed_message(message: ProtocolMessage) -> str:
    """The canonical string the shop signed for an API call, rebuilt from what it sent."""
    if message.direction != "out":
        return ""
    return flowcodec.signed_message(message.method, message.canonical_url, message.request_headers,
                                    message.request_body)


def verify_message(message: ProtocolMessage) -> str:
    """The canonical string WeChat Pay signed (an answer or a notification), rebuilt."""
    if message.direction == "in":
        return flowcodec.verify_message(message.request_headers, shown_request_body(message))
    if message.direction == "out" and message.verification != "none":
        return flowcodec.verify_message(message.response_headers, message.response_body)
    return ""


def shown_request_headers(message: ProtocolMessage) -> dict[str, str]:
    """The request headers as sent: an API call's signature rebuilt (it is not stored)."""
    head = message.fields.get("signature_head")
    if message.direction != "out" or not head:
        return message.request_headers
    private_key, _aes = _display_keys()
    return flowcodec.unfold_signature(message.request_headers, head, signed_message(message), private_key)


def shown_request_body(message: ProtocolMessage) -> str:
    """The request body as received: a notification's ciphertext rebuilt (it is not stored)."""
    if message.fields.get("cipher_at") is None:
        return message.request_body
    _private_key, aes = _display_keys()
    return flowcodec.unfold_ciphertext(message.fields, aes)


def decrypted_resource(message: ProtocolMessage) -> str:
    """A notification's resource, decrypted (stored as its plaintext, or decrypted again).

    Only when the shop's own decrypt check passed: an untrusted resource is never opened for
    the page. Empty if it no longer opens (the APIv3 key changed since).
    """
    if "_decrypted" in message.__dict__:
        return message.__dict__["_decrypted"]
    shown = ""
    if message.direction == "in" and any(c.get("name") == "decrypt" and c.get("ok") for c in message.checks):
        plain = message.fields.get("resource_plain")
        try:
            if not plain:
                _private_key, aes = _display_keys()
                resource = json.loads(message.request_body)["resource"]
                plain = aead.decrypt(aes, resource["nonce"], resource["ciphertext"],
                                     resource.get("associated_data") or "")
            shown = redact(json.dumps(json.loads(plain), ensure_ascii=False, indent=2), known_secrets(current_app))
        except (ValueError, KeyError, TypeError, AttributeError, DecryptError):
            log.info("resource of flow message %s not decrypted for display", message.id)
    message.__dict__["_decrypted"] = shown
    return shown


def add_notification(trace: NotificationTrace, result: Any, connection: rawsql.CursorSource | None = None) -> None:
    """Add a notification's record to the open transaction: it commits with the handler's work.

    Never raises: the record is a teaching aid, the payment comes first.
    """
    try:
        rec = current_app.extensions.get("flowlog")
        # Decided before the record is built: with FLOW_RECORD=off it costs nothing.
        if rec is not None and rec.keeps(result.status >= 300, trace.out_trade_no):
            row = trace.take_prepared(result) if connection is not None else None
            if row is not None:
                rec.add_bounded(row, connection)  # built before the lock (``NotificationTrace.prepare``)
            else:
                rec.add(trace.values(result), connection, opened=trace.opened)
    except Exception:
        log.warning("flow record of a notification failed", exc_info=True)


# -- the shopper's pages ------------------------------------------------------------------


def record_browser_event(order_id: int, event: str, out_trade_no: str | None, detail: str) -> None:
    """Record what a page reported (QR shown, expired, bridge result)."""
    payment_id = None
    if out_trade_no:
        link = Recorder.link(out_trade_no)
        if link.order_id != order_id:
            out_trade_no = None  # not this order's attempt: keep the event, drop the claim
        else:
            payment_id = link.payment_id
    recorder().record({
        "order_id": order_id,
        "payment_id": payment_id,
        "out_trade_no": out_trade_no,
        "at": utcnow(),
        "direction": "browser",
        "kind": event,
        "title": str(BROWSER_EVENTS[event]),
        "origin": "browser",
        "request_body": detail[:MAX_DETAIL_CHARS],
    })


def record_note(kind: str, order_id: int | None, detail: str, *, signed_message: str = "",
                out_trade_no: str | None = None, ok: bool = True) -> None:
    """Record a step the shop took that is not an API call (the OAuth redirect, paySign)."""
    if order_id is None:
        return
    recorder().record({
        "order_id": order_id,
        "out_trade_no": out_trade_no,
        "at": utcnow(),
        "direction": "shop",
        "kind": kind,
        "title": str(SHOP_NOTES[kind]),
        "origin": recorder().origin(),
        "request_body": detail,
        "signed_note": signed_message,
        "verification": "passed" if ok else "failed",
    })


def record_login_exchange(kind: str, exchange: Any, order_id: int | None = None, owner: str | None = None) -> None:
    """Record one ``sns`` call (``oauth_token`` or ``jscode2session``), appsecret and tokens redacted.

    A mini program logs in before it has an order: then the message waits, under the shopper
    (``owner``), for the first order that pays with it (``adopt_logins``).
    """
    path = exchange.url.split("?", 1)[0]
    path = path[path.find("/sns/"):] if "/sns/" in path else path
    recorder().record({
        "order_id": order_id,
        "owner": None if order_id is not None else owner,
        "at": utcnow() - timedelta(milliseconds=exchange.elapsed_ms),
        "direction": "out",
        "kind": kind,
        "title": f"GET {path}",
        "origin": recorder().origin(),
        "method": "GET",
        "url": exchange.url,
        "status": exchange.status,
        "request_headers": {},
        "request_body": "",
        "response_headers": exchange.response_headers,
        "response_body": exchange.response_body,
        "error": exchange.error,
        "elapsed_ms": round(exchange.elapsed_ms),
    })


def adopt_logins(order_id: int, owner: str, within: timedelta = timedelta(hours=2)) -> None:
    """Link the shopper's waiting login messages (jscode2session) to the order that uses them."""
    try:
        with db.engine.begin() as connection:
            connection.execute(
                ProtocolMessage.__table__.update()
                .where(ProtocolMessage.owner == owner, ProtocolMessage.order_id.is_(None),
                       ProtocolMessage.at > utcnow() - within)
                .values(order_id=order_id, owner=None)
            )
    except Exception:  # the record never fails a payment
        log.warning("login messages not linked to order %s", order_id, exc_info=True)


def browser_event_count(order_id: int) -> int:
    from sqlalchemy import func

    count = db.session.scalar(select(func.count()).where(ProtocolMessage.order_id == order_id,
                                                          ProtocolMessage.direction == "browser")) or 0
    db.session.commit()  # a read only: end it, keep the loaded rows (rollback would expire them)
    return count


def messages_for(order_id: int) -> list[ProtocolMessage]:
    """An order's messages, oldest first."""
    return list(db.session.scalars(
        select(ProtocolMessage).where(ProtocolMessage.order_id == order_id)
        .order_by(ProtocolMessage.at, ProtocolMessage.id)
    ))
