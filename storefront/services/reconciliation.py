"""Daily reconciliation (对账): WeChat Pay's trade bill of a day against the shop's ledger.

Downloads the day's ``ALL`` trade bill (hash checked), then compares line by line
(docs/en/reconciliation.md explains each difference):

- paid at WeChat Pay, still pending or closed in the shop: applied through the state machine,
  exactly as an active query's answer would be (a lost notification, never polled) — ``applied``;
- paid in the shop on that day, absent from the bill — ``missing_at_wechat``;
- the bill's 订单金额 is not the attempt's amount — ``amount_mismatch``;
- a refund on one side only, or of another amount — ``refund_mismatch``;
- paid at WeChat Pay for an ``out_trade_no`` the shop does not know — ``unknown_at_shop``.

Each day's result is stored (``ReconciliationRun``); the merchant page shows it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from ..extensions import db
from ..models import (
    Order,
    Payment,
    PaymentStatus,
    ReconciliationRun,
    Refund,
    RefundStatus,
    utcnow,
)
from ..wechatpay import APIError, WeChatPayError
from ..wechatpay import bills as wxbills
from ..wechatpay.times import BEIJING
from . import orders, wechat
from .orders import OrderError, PaymentOutcome

log = logging.getLogger(__name__)
CAUSE = "bill"  # OrderEvent.cause of a payment applied from the bill
DIFFERENCE_KINDS = ("missing_at_wechat", "amount_mismatch", "refund_mismatch", "unknown_at_shop")
# Refunds the shop asked for and WeChat Pay accepted: these appear in the bill of their day.
ACCEPTED_REFUNDS = (RefundStatus.PENDING, RefundStatus.SUCCESS, RefundStatus.ABNORMAL, RefundStatus.CLOSED)
EXIT_MATCHED, EXIT_FAILED, EXIT_DIFFERENCES = 0, 1, 3
RETRY_FAILED_AFTER = timedelta(minutes=10)


class ReconciliationError(Exception):
    """The bill could not be had (not generated yet, WeChat Pay unreachable, a tampered file)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass
class Difference:
    kind: str
    out_trade_no: str = ""
    order_no: str = ""
    out_refund_no: str = ""
    shop: str = ""  # what the shop's ledger says
    wechat: str = ""  # what the bill says


@dataclass
class Result:
    date: str
    bill_rows: int = 0
    matched: int = 0
    applied: list[str] = field(default_factory=list)
    missing_at_wechat: list[str] = field(default_factory=list)
    amount_mismatch: list[str] = field(default_factory=list)
    refund_mismatch: list[str] = field(default_factory=list)
    unknown_at_shop: list[str] = field(default_factory=list)
    fees_total: int = 0  # fen
    details: list[Difference] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return sum(len(getattr(self, kind)) for kind in DIFFERENCE_KINDS)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` answer: counts, lists of out_trade_no (out_refund_no for refunds), fees in fen."""
        return {"date": self.date, "bill_rows": self.bill_rows, "matched": self.matched, "applied": self.applied,
                "missing_at_wechat": self.missing_at_wechat, "amount_mismatch": self.amount_mismatch,
                "refund_mismatch": self.refund_mismatch, "unknown_at_shop": self.unknown_at_shop,
                "fees_total": self.fees_total}

    def add(self, difference: Difference) -> None:
        getattr(self, difference.kind).append(difference.out_refund_no or difference.out_trade_no)
        self.details.append(difference)


def yesterday(now: datetime | None = None) -> date:
    """Yesterday in Asia/Shanghai (WeChat Pay's bills are per Beijing day)."""
    moment = (now or utcnow()).replace(tzinfo=timezone.utc).astimezone(BEIJING)
    return moment.date() - timedelta(days=1)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The Beijing day as naive UTC [start, end), the way the shop stores times."""
    start = datetime(day.year, day.month, day.day, tzinfo=BEIJING).astimezone(timezone.utc).replace(tzinfo=None)
    return start, start + timedelta(days=1)


def _yuan(fen: int) -> str:
    return f"{fen / 100:.2f}"


def fetch_bill(day: date, steps: dict[str, Any] | None = None) -> wxbills.TradeBill | None:
    """The day's ALL trade bill, hash checked and parsed; None when WeChat Pay has none (no transactions).

    ``steps`` is filled with how the bill was had (for the merchant page): the apply call's answer
    (the download path without its token), the file's size and whether its hash matched.

    :raise ReconciliationError: not generated yet, unreachable, or the file failed its hash check.
    """
    steps = {} if steps is None else steps
    client = wechat.client()  # commits first: no transaction held while WeChat Pay answers
    try:
        steps["apply"] = f"GET /v3/bill/tradebill?bill_date={day.isoformat()}&bill_type=ALL&tar_type=GZIP"
        link = wxbills.apply_trade_bill(client, day, "ALL", gzip_file=True)
        steps.update(hash_type=link.hash_type, hash_value=link.hash_value,
                     download=urlsplit(link.download_url).path + "?token=…")
        raw = client.download(link.download_url)
        steps.update(downloaded_bytes=len(raw), gzip=raw[:2] == b"\x1f\x8b", hash_ok=False)
        content = wxbills.check_file(raw, link)
        steps.update(hash_ok=True, bill_bytes=len(content))
        return wxbills.parse_trade_bill(content)
    except APIError as exc:
        steps["answer"] = f"{exc.status} {exc.code} {exc.message}"
        if exc.code == "NO_STATEMENT_EXIST":
            return None
        raise ReconciliationError(exc.code, exc.message) from exc
    except wxbills.BillError as exc:
        raise ReconciliationError("BILL_REFUSED", str(exc)) from exc
    except WeChatPayError as exc:
        raise ReconciliationError("WECHATPAY_UNAVAILABLE", str(exc)) from exc


def _order_no(order_id: int) -> str:
    return db.session.scalar(select(Order.order_no).where(Order.id == order_id)) or ""


def _paid_at(row: wxbills.TradeRow) -> datetime:
    try:
        moment = datetime.strptime(row.trade_time, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        return moment.astimezone(timezone.utc).replace(tzinfo=None)
    except ValueError:
        return utcnow()


def _payment_line(result: Result, row: wxbills.TradeRow) -> None:
    payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == row.out_trade_no))
    if payment is None:
        result.add(Difference("unknown_at_shop", row.out_trade_no, wechat=f"SUCCESS {_yuan(row.order_total)}"))
        return
    order_no = _order_no(payment.order_id)
    if payment.amount_total != row.order_total:
        result.add(Difference("amount_mismatch", row.out_trade_no, order_no, shop=_yuan(payment.amount_total),
                              wechat=_yuan(row.order_total)))
        return
    if payment.status == PaymentStatus.PAID:
        result.matched += 1
        return
    # Paid at WeChat Pay, not in the shop: the notification was lost and no query caught it.
    payment_id, out_trade_no = payment.id, payment.out_trade_no
    try:
        outcome = orders.apply_payment(out_trade_no, transaction_id=row.transaction_id,
                                       amount_total=row.order_total, paid_at=_paid_at(row), cause=CAUSE,
                                       wechat_ref=row.transaction_id,
                                       payer_total=row.order_total - row.coupon_amount)
    except OrderError as exc:
        db.session.rollback()
        result.add(Difference("amount_mismatch", out_trade_no, order_no, shop=str(exc), wechat=_yuan(row.order_total)))
        return
    db.session.commit()  # apply_payment leaves committing to its caller
    if outcome == PaymentOutcome.DOUBLE:
        from . import refunds

        refunds.refund_double_payment(out_trade_no)
    log.info("reconcile-bill: %s (payment %s) applied from the bill: %s", out_trade_no, payment_id, outcome)
    result.applied.append(out_trade_no)
    result.matched += 1


def _refund_line(result: Result, row: wxbills.TradeRow, seen: set[str]) -> None:
    seen.add(row.out_refund_no)
    refund = db.session.scalar(select(Refund).where(Refund.out_refund_no == row.out_refund_no))
    if refund is None:
        result.add(Difference("refund_mismatch", row.out_trade_no, out_refund_no=row.out_refund_no,
                              shop="—", wechat=f"REFUND {_yuan(row.refund_requested)}"))
        return
    order_no = _order_no(refund.order_id)
    if refund.amount != row.refund_requested or refund.status == RefundStatus.FAILED:
        result.add(Difference("refund_mismatch", row.out_trade_no, order_no, row.out_refund_no,
                              shop=f"{refund.status} {_yuan(refund.amount)}",
                              wechat=f"{row.refund_status} {_yuan(row.refund_requested)}"))
        return
    result.matched += 1


def compare(day: date, bill: wxbills.TradeBill | None) -> Result:
    """Compare one day's bill (None: WeChat Pay has no bill, so no transactions) with the ledger."""
    result = Result(date=day.isoformat())
    rows = bill.rows if bill is not None else []
    result.bill_rows = len(rows)
    result.fees_total = bill.fees_total if bill is not None else 0
    billed_payments: set[str] = set()
    billed_refunds: set[str] = set()
    for row in rows:
        if row.is_refund:
            _refund_line(result, row, billed_refunds)
        else:
            billed_payments.add(row.out_trade_no)
            _payment_line(result, row)
    start, end = day_bounds(day)
    # The shop's side: every payment it holds as paid that day must be in the bill.
    for payment in db.session.scalars(select(Payment).where(
            Payment.status == PaymentStatus.PAID, Payment.paid_at >= start, Payment.paid_at < end).order_by(Payment.id)):
        if payment.out_trade_no not in billed_payments:
            result.add(Difference("missing_at_wechat", payment.out_trade_no, _order_no(payment.order_id),
                                  shop=f"paid {_yuan(payment.amount_total)}", wechat="—"))
    for refund in db.session.scalars(select(Refund).where(
            Refund.status.in_(ACCEPTED_REFUNDS), Refund.refund_id.is_not(None), Refund.created_at >= start,
            Refund.created_at < end).order_by(Refund.id)):
        if refund.out_refund_no not in billed_refunds:
            out_trade_no = db.session.scalar(select(Payment.out_trade_no).where(Payment.id == refund.payment_id))
            result.add(Difference("refund_mismatch", out_trade_no or "", _order_no(refund.order_id),
                                  refund.out_refund_no, shop=f"{refund.status} {_yuan(refund.amount)}", wechat="—"))
    return result


def store(result: Result, status: str, error: str = "", steps: dict[str, Any] | None = None) -> ReconciliationRun:
    """Keep the day's latest result (one row per bill date), with how the bill was had (``steps``)."""
    run = db.session.scalar(select(ReconciliationRun).where(ReconciliationRun.bill_date == result.date))
    if run is None:
        run = ReconciliationRun(bill_date=result.date)
        db.session.add(run)
    payload = {**result.summary(), "details": [asdict(item) for item in result.details], "bill_file": steps or {}}
    run.ran_at, run.status, run.error = utcnow(), status, error[:300]
    run.bill_rows, run.matched, run.applied = result.bill_rows, result.matched, len(result.applied)
    run.differences, run.fees_total = result.differences, result.fees_total
    run.result = json.dumps(payload, ensure_ascii=False)
    db.session.commit()
    return run


def reconcile_day(day: date) -> tuple[Result, int]:
    """Download, check, compare and store one day. Returns the result and the exit status:
    0 all matched (after applying), 3 a difference needs a person, 1 no bill to compare yet."""
    result = Result(date=day.isoformat())
    steps: dict[str, Any] = {}
    try:
        bill = fetch_bill(day, steps)
    except ReconciliationError as exc:
        db.session.rollback()
        log.warning("reconcile-bill %s: %s", day, exc)
        store(result, "failed", f"{exc.code}: {exc.message}", steps)
        return result, EXIT_FAILED
    result = compare(day, bill)
    status = "differences" if result.differences else "matched"
    store(result, status, steps=steps)
    return result, EXIT_DIFFERENCES if result.differences else EXIT_MATCHED


def runs(limit: int = 60) -> list[ReconciliationRun]:
    return list(db.session.scalars(select(ReconciliationRun).order_by(ReconciliationRun.bill_date.desc()).limit(limit)))


def run_for(bill_date: str) -> ReconciliationRun | None:
    return db.session.scalar(select(ReconciliationRun).where(ReconciliationRun.bill_date == bill_date))


def details(run: ReconciliationRun) -> list[dict[str, str]]:
    try:
        return list(json.loads(run.result).get("details", []))
    except (ValueError, AttributeError):
        return []


def due_today(now: datetime | None = None, after_hour: int = 10) -> date | None:
    """For the scheduler: yesterday's date once it is past ``after_hour`` in Beijing and not yet
    reconciled successfully (a failed or missing run is tried again on the next tick)."""
    moment = (now or utcnow()).replace(tzinfo=timezone.utc).astimezone(BEIJING)
    if moment.hour < after_hour:
        return None
    day = moment.date() - timedelta(days=1)
    run = run_for(day.isoformat())
    if run is None:
        return day
    # A failed run (bill not generated yet, WeChat Pay unreachable) is tried again, not every tick.
    return day if run.status == "failed" and (now or utcnow()) - run.ran_at >= RETRY_FAILED_AFTER else None


def summary(run: ReconciliationRun) -> dict[str, Any]:
    try:
        data = json.loads(run.result)
    except ValueError:
        return {}
    return {key: value for key, value in data.items() if key not in ("details", "bill_file")} if isinstance(data, dict) else {}


def bill_file(run: ReconciliationRun) -> dict[str, Any]:
    """How the day's bill was had: the apply call, the hash, the download (for the merchant page)."""
    try:
        data = json.loads(run.result)
    except ValueError:
        return {}
    found = data.get("bill_file") if isinstance(data, dict) else None
    return found if isinstance(found, dict) else {}
