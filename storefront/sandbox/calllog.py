"""The simulator's record of every API call, and its rate limit.

What is kept is what crossed the wire plus the canonical string the signature was checked
over: the Authorization header (a signature is not a secret), bodies, the answer and which key
signed it. Nothing here ever holds the APIv3 key or a private key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, insert, select

from .. import rows
from ..clock import utcnow
from ..extensions import db
from ..wechatpay.errors import SignatureError
from ..wechatpay.signing import parse_authorization, request_message
from .models import SandboxApiCall
from .simulator import ApiFailure, Merchant, Platform

MAX_TEXT = 20000  # characters kept of a body; the console says when one was cut
SHOWN_HEADERS = ("Authorization", "Accept", "Content-Type", "User-Agent", "Wechatpay-Serial")


@dataclass
class CallRecord:
    """What the signed_api wrapper learns about one call while answering it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    mchid: str | None = None
    signed_message: str = ""
    auth_ok: bool = False
    auth_result: str = ""
    diagnosis: dict | None = None  # diagnosis.diagnose(): why the signature failed

    @classmethod
    def start(cls, method: str, path: str, headers: Mapping[str, str], body: bytes) -> CallRecord:
        record = cls(method, path, headers, body)
        try:
            auth = parse_authorization(headers.get("Authorization"))
        except SignatureError as exc:
            record.auth_result = str(exc)
            return record
        record.mchid = auth["mchid"][:32]
        text = body.decode("utf-8", "replace")
        # The same five lines authenticate() rebuilds and verifies.
        record.signed_message = request_message(method, path, auth["timestamp"], auth["nonce_str"], text)
        return record


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n…(truncated)"


# One Core INSERT: the call log is written on every API call, and the ORM's unit of work
# (an object, its flush) cost the simulator more than the row itself.
_INSERT_CALL = insert(SandboxApiCall.__table__)


def record(call: CallRecord, status: int, payload: bytes, headers: Mapping[str, str], *,
           with_view: bool = False) -> None:
    """Store one call and its answer, and commit.

    ``with_view``: the view succeeded, and what it wrote (a new transaction, ...) commits with
    this record: one commit, before the answer leaves, as before. Otherwise anything the view
    left half-done is rolled back first, and the record is committed alone.
    """
    if not with_view:
        db.session.rollback()  # nothing half-done by a failed view may ride along
    shown = {name: call.headers.get(name) for name in SHOWN_HEADERS if call.headers.get(name)}
    rows.connection(SandboxApiCall).execute(_INSERT_CALL, {
        "at": utcnow(), "method": call.method, "path": call.path[:512], "mchid": call.mchid,
        "wechatpay_serial": call.headers.get("Wechatpay-Serial") or None,
        "auth_ok": call.auth_ok, "auth_result": call.auth_result[:300], "signed_message": _cut(call.signed_message),
        "request_headers": json.dumps(shown, ensure_ascii=False),
        "request_body": _cut(call.body.decode("utf-8", "replace")),
        "status": status, "response_body": _cut(payload.decode("utf-8", "replace")),
        "response_serial": headers.get("Wechatpay-Serial"), "request_id": headers.get("Request-ID"),
        "diagnosis": call.diagnosis["diagnosis"] if call.diagnosis else None,
        "diagnosis_detail": json.dumps(call.diagnosis, ensure_ascii=False) if call.diagnosis else None,
    })
    db.session.commit()


def check_rate(platform: Platform, merchant: Merchant) -> None:
    """429 FREQUENCY_LIMITED past the configured calls per second (when rate limits are on)."""
    limit = int(platform.settings.get("rate_limit_per_second") or 0)
    if limit <= 0:
        return
    recent = db.session.scalar(
        select(func.count()).where(SandboxApiCall.mchid == merchant.mchid, SandboxApiCall.auth_ok.is_(True),
                                   SandboxApiCall.status != 429,
                                   SandboxApiCall.at > utcnow() - timedelta(seconds=1))
    ) or 0
    if recent >= limit:
        raise ApiFailure(429, "FREQUENCY_LIMITED", "请求频率超过限制，请降低频率后重试")
