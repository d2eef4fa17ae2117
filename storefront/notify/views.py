"""WeChat Pay's notifications: verify the raw bytes, apply once, answer 204."""

from flask import Blueprint, request

from ..services import payments

bp = Blueprint("notify", __name__)


@bp.post("/wechatpay")
def payment():
    """WeChat Pay reports a payment. Answer 204, a repeat included."""
    # The raw bytes: the signature covers them, not a re-serialised dict.
    result = payments.handle_payment_notification(request.headers, request.get_data(cache=False))
    if result.status < 300:
        return "", 204
    return {"code": "FAIL", "message": result.reason[:64] or "FAIL"}, result.status
