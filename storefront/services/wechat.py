"""The one place the shop's services call WeChat Pay: commit first, then the round trip.

No database transaction (and so no row lock, nor SQLite's write lock) may be held while WeChat
Pay answers: the simulator, or a notification racing this request, may need the same rows.
Callers read what the request needs from their rows first, then call ``client()``.
"""

from __future__ import annotations

from .. import gateway
from ..extensions import db
from ..i18n import _
from ..wechatpay import Client
from .orders import OrderError


class PaymentError(OrderError):
    """WeChat Pay refused or could not be reached; ``code`` keeps WeChat's own code."""

    status = 502


def unavailable(message: str | None = None) -> PaymentError:
    """WeChat Pay could not be reached (503), with a message for the shopper or merchant."""
    return PaymentError("WECHATPAY_UNAVAILABLE", message or _("暂时无法连接微信支付，请稍后再试"), 503)


def client() -> Client:
    """Commit the open transaction, then the WeChat Pay client to make one call with."""
    db.session.commit()
    return gateway.client()
