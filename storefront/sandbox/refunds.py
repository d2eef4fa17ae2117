"""Refunds on the WeChat Pay side: ``/v3/refund/domestic/refunds`` and REFUND.* notifications.

WeChat Pay "申请退款", "查询单笔退款" and "退款结果通知". A refund is accepted as ``PROCESSING`` and finishes by itself after a
short delay (scaled by ``SANDBOX_TIME_SCALE``, on the simulator clock) as ``SUCCESS``; test
control can end it ``ABNORMAL`` or ``CLOSED`` instead. On SUCCESS the transaction's
``trade_state`` becomes ``REFUND``. Error choices, where WeChat's "申请退款" error codes are unsure:

- refunds beyond what is left to refund: ``400 INVALID_REQUEST`` ("申请退款" names INVALID_REQUEST for
  "amount exceeds refundable"; ``NOT_ENOUGH`` is the merchant's own balance, which the simulator
  does not model);
- unknown or unpaid order: ``404 RESOURCE_NOT_EXISTS``; unknown refund: the same;
- the same ``out_refund_no`` with another body: ``400 INVALID_REQUEST``;
- with rate limits on, a second refund of one order within a minute: ``429 FREQUENCY_LIMITED``.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..wechatpay.notify import build_notification
from ..wechatpay.times import format_time
from .models import SandboxNotification, SandboxRefund, SandboxTransaction
from .simulator import ApiFailure, Merchant, Platform, param_error

OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_|*@-]{1,64}$")
PROCESSING_SECONDS = 60  # balance refunds arrive within minutes; scaled by SANDBOX_TIME_SCALE
REFUND_SPACING = timedelta(minutes=1)  # "same order's refunds ≥ 1 minute apart" (rate limits on)
MAX_REFUNDS_PER_ORDER = 50
OUTCOMES = ("SUCCESS", "ABNORMAL", "CLOSED")
SUMMARIES = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}
# Refunds that hold money: a CLOSED one gave it back to what may still be refunded.
HOLDING = ("PROCESSING", "SUCCESS", "ABNORMAL")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiFailure(400, "PARAM_ERROR", "请求体不是合法的JSON对象")
    out_refund_no = data.get("out_refund_no")
    if not isinstance(out_refund_no, str) or not out_refund_no:
        raise param_error("/out_refund_no", "缺少必填参数或类型错误")
    if not OUT_REFUND_NO.match(out_refund_no):
        raise param_error("/out_refund_no", "须为1-64位数字、大小写字母、_-|*@", out_refund_no)
    transaction_id, out_trade_no = data.get("transaction_id"), data.get("out_trade_no")
    if not transaction_id and not out_trade_no:
        raise param_error("/out_trade_no", "transaction_id和out_trade_no必须填写其中一个")
    for name, value in (("transaction_id", transaction_id), ("out_trade_no", out_trade_no)):
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 32):
            raise param_error(f"/{name}", "须为不超过32个字符的字符串", value)
    reason = data.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 80):
        raise param_error("/reason", "须为不超过80个字符的字符串")
    notify_url = data.get("notify_url")
    if notify_url is not None and (
        not isinstance(notify_url, str) or len(notify_url) > 256 or "?" in notify_url
        or not notify_url.startswith(("https://", "http://"))
    ):
        raise param_error("/notify_url", "须为不带参数的https地址（模拟器允许http）", notify_url)
    amount = data.get("amount")
    if not isinstance(amount, dict):
        raise param_error("/amount", "缺少必填参数或类型错误")
    refund, total = amount.get("refund"), amount.get("total")
    if not _int(refund) or refund <= 0:
        raise param_error("/amount/refund", "须为大于0的整数（单位：分）", refund)
    if not _int(total) or total <= 0:
        raise param_error("/amount/total", "须为大于0的整数（单位：分）", total)
    currency = amount.get("currency")
    if currency != "CNY":
        raise param_error("/amount/currency", "Currency code is invalid", currency)
    fingerprint = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return {"out_refund_no": out_refund_no, "transaction_id": transaction_id, "out_trade_no": out_trade_no,
            "reason": reason, "notify_url": notify_url, "refund": refund, "total": total,
            "fingerprint": fingerprint}


def _find_transaction(merchant: Merchant, fields: dict[str, Any]) -> SandboxTransaction | None:
    query = select(SandboxTransaction).where(SandboxTransaction.mchid == merchant.mchid)
    if fields["transaction_id"]:
        query = query.where(SandboxTransaction.transaction_id == fields["transaction_id"])
    if fields["out_trade_no"]:
        query = query.where(SandboxTransaction.out_trade_no == fields["out_trade_no"])
    return db.session.scalar(query)


def find(merchant: Merchant, out_refund_no: str) -> SandboxRefund | None:
    return db.session.scalar(select(SandboxRefund).where(
        SandboxRefund.mchid == merchant.mchid, SandboxRefund.out_refund_no == out_refund_no))


def create(platform: Platform, merchant: Merchant, data: Any) -> dict[str, Any]:
    """``POST /v3/refund/domestic/refunds``: the refund object, ``PROCESSING`` at first."""
    fields = _validate(data)
    existing = find(merchant, fields["out_refund_no"])
    if existing is not None:
        return _resubmit(platform, existing, fields)
    txn = _find_transaction(merchant, fields)
    if txn is None or txn.trade_state not in ("SUCCESS", "REFUND"):
        raise ApiFailure(404, "RESOURCE_NOT_EXISTS", "订单不存在或未支付")
    if fields["total"] != txn.amount_total:
        raise ApiFailure(400, "INVALID_REQUEST", "订单金额与原订单不一致",
                         {"field": "/amount/total", "value": fields["total"], "issue": "订单金额与原订单不一致",
                          "location": "body"})
    now = platform.now()
    if platform.settings.get("rate_limit_per_second"):
        latest = db.session.scalar(select(func.max(SandboxRefund.created_at)).where(SandboxRefund.out_trade_no == txn.out_trade_no,
                                                                                  SandboxRefund.mchid == merchant.mchid))
        if latest is not None and now - latest < REFUND_SPACING:
            raise ApiFailure(429, "FREQUENCY_LIMITED", "同一笔订单的退款申请须间隔1分钟")
    count, held = db.session.execute(
        select(func.count(), func.coalesce(func.sum(SandboxRefund.amount_refund), 0))
        .where(SandboxRefund.mchid == merchant.mchid, SandboxRefund.out_trade_no == txn.out_trade_no,
               SandboxRefund.status.in_(HOLDING))
    ).one()
    if count >= MAX_REFUNDS_PER_ORDER:
        raise ApiFailure(403, "FREQUENCY_LIMITED", "部分退款次数已达上限（50次）")
    if held + fields["refund"] > txn.amount_total:
        raise ApiFailure(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额",
                         {"field": "/amount/refund", "value": fields["refund"],
                          "issue": f"可退金额为{txn.amount_total - held}分", "location": "body"})
    refund = SandboxRefund(
        mchid=merchant.mchid, out_refund_no=fields["out_refund_no"],
        refund_id="50" + now.strftime("%Y%m%d") + "".join(secrets.choice(string.digits) for _ in range(19)),
        transaction_id=txn.transaction_id, out_trade_no=txn.out_trade_no, amount_refund=fields["refund"],
        amount_total=txn.amount_total, reason=fields["reason"], notify_url=fields["notify_url"],
        status="PROCESSING", fingerprint=fields["fingerprint"], created_at=now.replace(microsecond=0),
        settle_at=now + timedelta(seconds=PROCESSING_SECONDS * platform.time_scale),
    )
    db.session.add(refund)
    # trade_state becomes REFUND ("转入退款") as soon as a refund is accepted, not when it succeeds.
    db.session.execute(update(SandboxTransaction).where(SandboxTransaction.id == txn.id,
                                                        SandboxTransaction.trade_state == "SUCCESS")
                       .values(trade_state="REFUND"))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # the same out_refund_no raced in: answer as a re-submission
        existing = find(merchant, fields["out_refund_no"])
        if existing is None:
            raise
        return _resubmit(platform, existing, fields)
    return describe(refund)


def _resubmit(platform: Platform, refund: SandboxRefund, fields: dict[str, Any]) -> dict[str, Any]:
    # The same out_refund_no refunds once: same body, same refund; another body is refused.
    if refund.fingerprint != fields["fingerprint"]:
        raise ApiFailure(400, "INVALID_REQUEST", "请求内容和上次请求不一致，请使用原参数重试或更换out_refund_no")
    return describe(refund)


def query(platform: Platform, merchant: Merchant, out_refund_no: str) -> dict[str, Any]:
    """``GET /v3/refund/domestic/refunds/{out_refund_no}``. :raise ApiFailure: 404."""
    settle_due(platform)
    refund = find(merchant, out_refund_no)
    if refund is None:
        raise ApiFailure(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return describe(refund)


def split(refund: SandboxRefund) -> dict[str, int]:
    """A refund's parts in fen: the coupon's share (``discount_refund``, pro rata, rounded down) goes
    back to the coupon, the rest to the payer; a 免充值 coupon lowers the settlement too."""
    coupon = db.session.scalar(select(SandboxTransaction.coupon_amount).where(
        SandboxTransaction.mchid == refund.mchid, SandboxTransaction.out_trade_no == refund.out_trade_no)) or 0
    discount = refund.amount_refund * coupon // refund.amount_total if refund.amount_total else 0
    return {"payer_total": refund.amount_total - coupon, "payer_refund": refund.amount_refund - discount,
            "settlement_total": refund.amount_total - coupon, "settlement_refund": refund.amount_refund - discount,
            "discount_refund": discount, "coupon": coupon}


def describe(refund: SandboxRefund) -> dict[str, Any]:
    """The refund object of "申请退款" / "查询单笔退款" (``status``, not ``refund_status``: that is the notification's name)."""
    parts = split(refund)
    data: dict[str, Any] = {
        "refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
        "transaction_id": refund.transaction_id, "out_trade_no": refund.out_trade_no,
        "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
        "create_time": format_time(refund.created_at), "status": refund.status, "funds_account": "AVAILABLE",
        "amount": {
            "total": refund.amount_total, "refund": refund.amount_refund, "from": [],
            "payer_total": parts["payer_total"], "payer_refund": parts["payer_refund"],
            "settlement_refund": parts["settlement_refund"], "settlement_total": parts["settlement_total"],
            "discount_refund": parts["discount_refund"], "currency": "CNY", "refund_fee": 0,
        },
        "promotion_detail": [],
    }
    if parts["coupon"]:
        data["promotion_detail"] = [{
            "promotion_id": "8000000001", "scope": "GLOBAL", "type": "DISCOUNT", "amount": parts["coupon"],
            "refund_amount": parts["discount_refund"], "goods_detail": [],
        }]
    if refund.status == "SUCCESS" and refund.success_time is not None:
        data["success_time"] = format_time(refund.success_time)
    return data


def finish(platform: Platform, refund_id: int, outcome: str, notify_shape: str = "normal") -> bool:
    """End a PROCESSING refund as ``outcome``; notify the merchant. False if it had already ended."""
    if outcome not in OUTCOMES:
        raise ValueError(outcome)
    now = platform.now().replace(microsecond=0)
    values: dict[str, Any] = {"status": outcome}
    if outcome == "SUCCESS":
        values["success_time"] = now
    won = db.session.execute(
        update(SandboxRefund).where(SandboxRefund.id == refund_id, SandboxRefund.status == "PROCESSING")
        .values(**values)
    ).rowcount == 1
    if not won:
        db.session.rollback()
        return False
    refund = db.session.get(SandboxRefund, refund_id)
    if outcome == "SUCCESS":
        db.session.execute(
            update(SandboxTransaction)
            .where(SandboxTransaction.mchid == refund.mchid, SandboxTransaction.out_trade_no == refund.out_trade_no,
                   SandboxTransaction.trade_state == "SUCCESS")
            .values(trade_state="REFUND")
        )
    db.session.commit()
    db.session.refresh(refund)
    if refund.notify_url:
        enqueue_notification(platform, refund, notify_shape)
    return True


def settle_due(platform: Platform) -> int:
    """Finish every refund whose processing time is over (simulator clock) as SUCCESS."""
    now = platform.now()
    due = list(db.session.scalars(
        select(SandboxRefund.id).where(SandboxRefund.status == "PROCESSING", SandboxRefund.settle_at <= now)))
    db.session.commit()
    return sum(finish(platform, refund_id, "SUCCESS") for refund_id in due)


def notification_body(platform: Platform, refund: SandboxRefund) -> tuple[str, str, str]:
    """(event id, event type, outer JSON) of a REFUND.* notification, resource encrypted (AAD refund)."""
    event_type = f"REFUND.{refund.status}"
    resource: dict[str, Any] = {
        "mchid": refund.mchid, "out_trade_no": refund.out_trade_no, "transaction_id": refund.transaction_id,
        "out_refund_no": refund.out_refund_no, "refund_id": refund.refund_id, "refund_status": refund.status,
        "user_received_account": "支付用户零钱",
        "amount": {"total": refund.amount_total, "refund": refund.amount_refund,
                   "payer_total": split(refund)["payer_total"], "payer_refund": split(refund)["payer_refund"]},
    }
    if refund.status == "SUCCESS" and refund.success_time is not None:
        resource["success_time"] = format_time(refund.success_time)
    event_id = str(uuid.uuid4())
    body = build_notification(platform.merchant_aes(refund.mchid), resource, event_type=event_type, summary=SUMMARIES[refund.status],
                              create_time=format_time(platform.now()), original_type="refund", event_id=event_id)
    return event_id, event_type, body.decode("utf-8")


def enqueue_notification(platform: Platform, refund: SandboxRefund, shape: str = "normal") -> list[int]:
    """Store the REFUND.* notification, delivered by the notifier on the usual retry schedule."""
    kind, _, argument = shape.partition(":")
    copies, delay, state = 1, 0.0, "pending"
    if kind == "drop":
        state = "dropped"
    elif kind == "delay":
        delay = float(argument)
    elif kind == "duplicate":
        copies = int(argument)
    event_id, event_type, body = notification_body(platform, refund)
    due = platform.now() + timedelta(seconds=delay)
    rows = [
        SandboxNotification(
            event_id=event_id, out_trade_no=refund.out_trade_no, out_refund_no=refund.out_refund_no,
            event_type=event_type, notify_url=refund.notify_url or "", body=body, state=state, kind="refund",
            mchid=refund.mchid,
            next_attempt_at=due if state == "pending" else None,
        )
        for _ in range(copies)
    ]
    db.session.add_all(rows)
    db.session.commit()
    return [row.id for row in rows]
