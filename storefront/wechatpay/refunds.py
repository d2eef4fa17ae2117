"""Refunds as WeChat Pay describes them: the refund API's answer and the REFUND.* resource.

WeChat Pay "申请退款" and "退款结果通知". The API says ``status``; the notification says ``refund_status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NotificationError

REFUND_STATUSES = ("PROCESSING", "SUCCESS", "ABNORMAL", "CLOSED")


def _amount(data: Mapping[str, Any], name: str) -> int | None:
    value = (data.get("amount") or {}).get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"amount.{name} must be an integer")
    return value


@dataclass(frozen=True)
class RefundResult:
    """One refund: from ``POST``/``GET /v3/refund/domestic/refunds`` or a decrypted notification."""

    out_refund_no: str
    refund_id: str
    status: str  # PROCESSING, SUCCESS, ABNORMAL, CLOSED
    out_trade_no: str | None = None
    transaction_id: str | None = None
    amount_refund: int | None = None
    amount_total: int | None = None
    payer_refund: int | None = None  # to the payer; the rest of the refund goes back to a coupon
    success_time: str | None = None
    mchid: str | None = None
    user_received_account: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RefundResult:
        """Either shape. :raise NotificationError: a required field is missing or mistyped."""
        try:
            status = data.get("status", data.get("refund_status"))
            if status not in REFUND_STATUSES:
                raise ValueError(f"unknown refund status {status!r}")
            return cls(
                out_refund_no=str(data["out_refund_no"]),
                refund_id=str(data["refund_id"]),
                status=str(status),
                out_trade_no=data.get("out_trade_no"),
                transaction_id=data.get("transaction_id"),
                amount_refund=_amount(data, "refund"),
                amount_total=_amount(data, "total"),
                payer_refund=_amount(data, "payer_refund"),
                success_time=data.get("success_time"),
                mchid=data.get("mchid"),
                user_received_account=data.get("user_received_account"),
                raw=dict(data),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NotificationError(f"not a refund: {exc}") from exc
