"""WeChat Pay's notifications: verify the raw bytes, apply once, answer 204."""

from flask import Blueprint, request

from ..health import count_notification
from ..models import utcnow
from ..services import payments, refunds

bp = Blueprint("notify", __name__)


@bp.post("/wechatpay")
def payment():
    """WeChat Pay reports a payment. Answer 204, a repeat included."""
    received_at = utcnow()
    # The raw bytes: the signature covers them, not a re-serialised dict.
    body = request.get_data(cache=False)
    # The handler also writes the flow inspector's record, committed with the payment itself.
    result = payments.handle_payment_notification(request.headers, body, received_at,
                                                  path=request.path, url=request.url)
    count_notification("payment", result)
    if result.status < 300:
        return "", 204
    return {"code": "FAIL", "message": result.reason[:64] or "FAIL"}, result.status


@bp.post("/wechatpay/refund")
def refund():
    """WeChat Pay reports a refund's end (REFUND.SUCCESS/ABNORMAL/CLOSED). Answer 204, a repeat included."""
    received_at = utcnow()
    body = request.get_data(cache=False)
    result = refunds.handle_refund_notification(request.headers, body, received_at,
                                                path=request.path, url=request.url)
    count_notification("refund", result)
    if result.status < 300:
        return "", 204
    return {"code": "FAIL", "message": result.reason[:64] or "FAIL"}, result.status
