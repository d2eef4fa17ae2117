"""Receiving any WeChat Pay notification: verify, decrypt, check, apply, record, answer.

WeChat Pay API v3 "支付通知" and "退款结果通知" share one envelope and one answer (204, or an
error JSON so WeChat Pay retries). What differs is the event: each ``EventKind`` (payments,
refunds) supplies its checks and its ``apply``; a refusal is ``reject(status, reason)``. The
record of what happened (``NotificationRecord`` and the flow inspector's trace) commits in the
same transaction as the effect: one verification, one decryption, one commit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert

from .. import gateway
from ..extensions import db
from ..models import NotificationRecord, utcnow
from ..wechatpay import Notification, WeChatPayError
from . import flowlog, rawsql
from .orders import OrderError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotifyResult:
    """What the shop answered: ``status`` is the HTTP status WeChat Pay gets."""

    status: int
    outcome: str
    reason: str = ""


class Rejected(Exception):
    """A notification refused by a check; raised by ``reject``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def reject(status: int, reason: str) -> Rejected:
    """Refuse the notification: ``raise reject(400, "mchid is not ours")``. Nothing it did is kept."""
    return Rejected(status, reason)


@dataclass
class Received:
    """One notification being handled: what is known so far, and its flow trace."""

    event: Notification
    trace: flowlog.NotificationTrace
    out_trade_no: str | None = None
    state: dict[str, object] = field(default_factory=dict)  # what check() found, for apply()


class EventKind(Protocol):
    """One family of notifications (payments, refunds)."""

    trace_kind: str  # the flow record's kind: "notify_payment", "notify_refund"

    def accepts(self, event_type: str) -> bool:
        """False: acknowledge the event (204 "ignored") so WeChat Pay stops sending it."""

    def check(self, received: Received) -> None:
        """Run the checks, noting each in ``received.trace``. :raise Rejected: via ``reject``."""

    def apply(self, received: Received) -> str:
        """Apply the event in the open transaction (not committed); returns the outcome."""

    # Optional: ``apply_common(received, target) -> str | None``, the event's common case on a
    # driver-level transaction (``rawsql.DriverTransaction``: no ORM session), None for any other
    # case, which ``apply`` then handles after a rollback. See ``_commit_common_case``.

    def after(self, received: Received, outcome: str) -> None:
        """Work after the commit (a WeChat Pay call may follow), e.g. refunding a double payment."""


def receive(kind: EventKind, headers: Mapping[str, str], body: bytes, received_at: datetime | None = None,
            *, path: str = "/notify/wechatpay", url: str = "") -> NotifyResult:
    """Verify, decrypt, check and apply one notification of ``kind``; record what happened."""
    trace = flowlog.NotificationTrace(headers, body, received_at, kind=kind.trace_kind, path=path, url=url)
    received: Received | None = None
    try:
        event = gateway.gateway().parse_notification(headers, body)
        trace.parsed(event)
        received = Received(event, trace)
        if not kind.accepts(event.event_type):
            return record(received, NotifyResult(204, "ignored", f"event {event.event_type}"))
        kind.check(received)
        expected = getattr(kind, "expected", None)
        if expected is not None:
            # The flow record of the answer this will most likely get, built before ``apply``
            # takes the write lock: the lock is then held for the statements and the commit only.
            outcome_expected, checks = expected(received)
            trace.prepare(204, outcome_expected, checks)
        apply_common = getattr(kind, "apply_common", None)
        if apply_common is not None:
            result = _commit_common_case(apply_common, received)
            if result is not None:
                kind.after(received, result.outcome)
                return result
        outcome = kind.apply(received)
    except Rejected as exc:
        return record(received, NotifyResult(exc.status, "rejected", exc.reason), trace=trace)
    except WeChatPayError as exc:
        if received is None:
            trace.refused(exc)  # the signature or the decryption failed
        else:
            trace.check("decrypt", False, str(exc))  # it opened, but is not this kind's resource
        return record(received, NotifyResult(401, "rejected", str(exc)), trace=trace)
    except OrderError as exc:
        return record(received, NotifyResult(exc.status, "rejected", exc.message), trace=trace)
    result = record(received, NotifyResult(204, str(outcome)), keep=True)
    kind.after(received, outcome)
    return result


_ADD_RECORD = insert(NotificationRecord.__table__)
# On the driver's cursor, compiled once (``rawsql``): a notification runs it every time.
_ADD_RECORD_RAW = rawsql.Prepared(_ADD_RECORD, ("received_at", "notification_id", "event_type", "out_trade_no",
                                                "outcome", "reason", "http_status"))


def _commit_common_case(apply_common, received: Received) -> NotifyResult | None:
    """The event's common case, applied and recorded in one transaction on a pooled driver
    connection, committed once; None (nothing kept) when it is not that case.

    The same statements and records as ``record`` commits for it, without the ORM session around
    them: on the path every payment takes, the session's begin, commit and teardown cost as much
    as the statements themselves (bench/README.md).
    """
    with rawsql.DriverTransaction(db.engine) as transaction:
        outcome = apply_common(received, transaction)
        if outcome is None:
            return None  # rolled back on leaving the block
        result = NotifyResult(204, str(outcome))
        _insert_records(transaction, received, result, received.trace)
        transaction.commit()
    return result


def record(received: Received | None, result: NotifyResult, *, keep: bool = False,
           trace: flowlog.NotificationTrace | None = None) -> NotifyResult:
    """Record the notification and its flow trace, and commit; ``keep``: commit the applied effect with them.

    A refused notification's half-done work is rolled back first: nothing of it may be committed.
    """
    event = received.event if received is not None else None
    event_id = event.id if event is not None else None
    if result.outcome == "rejected":
        log.warning("notification %s rejected (%s): %s", event_id or "-", result.status, result.reason)
    if not keep:
        db.session.rollback()
    _insert_records(db.session.connection(), received, result,
                    trace or (received.trace if received is not None else None))
    db.session.commit()
    return result


def _insert_records(target: rawsql.CursorSource, received: Received | None, result: NotifyResult,
                    trace: flowlog.NotificationTrace | None) -> None:
    """The notification's record and its flow record, in ``target``'s open transaction."""
    event = received.event if received is not None else None
    # A Core INSERT on the table, built once, run raw: the record needs no ORM object (a
    # unit-of-work flush cost a quarter of a notification's CPU).
    _ADD_RECORD_RAW.execute(target, {
        "received_at": utcnow(), "notification_id": event.id if event is not None else None,
        "event_type": event.event_type if event is not None else None,
        "out_trade_no": received.out_trade_no if received is not None else None,
        "outcome": result.outcome, "reason": result.reason[:200], "http_status": result.status,
    }).close()
    if trace is not None:
        # Same transaction, same commit: no second lock or fsync, and no record of a payment
        # that did not commit (nor a payment without its record).
        flowlog.add_notification(trace, result, target)
