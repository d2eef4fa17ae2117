"""WeChat Pay's notifications: verify the raw bytes, apply once, answer 204."""

import re

from flask import Blueprint, current_app, request

from ..health import count_notification
from ..models import utcnow
from ..services import payments, refunds

bp = Blueprint("notify", __name__)

_PLAIN = re.compile(r"[A-Za-z0-9._~/-]*")
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?")


def _request_url() -> str:
    """``request.url``, for the flow record. A plain ASCII host and path (what WeChat Pay calls)
    are joined as werkzeug's ``get_host`` and ``get_current_url`` join them: ``request.url``
    also makes every URL an IRI (unquoting, IDNA-decoding the host), a dozen calls for text that
    cannot change here. Anything else is left to ``request.url``."""
    environ = request.environ
    scheme, host = environ.get("wsgi.url_scheme"), environ.get("HTTP_HOST", "")
    root, path = environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", "")
    if (scheme not in ("http", "https") or environ.get("QUERY_STRING") or current_app.config.get("TRUSTED_HOSTS")
            or not _PLAIN_HOST.fullmatch(host) or "xn--" in host.lower()
            or not _PLAIN.fullmatch(root) or not _PLAIN.fullmatch(path)):
        return request.url
    host = host.removesuffix(":80" if scheme == "http" else ":443")
    return f"{scheme}://{host}{root.rstrip('/')}/{path.lstrip('/')}"


@bp.post("/wechatpay")
def payment():
    """WeChat Pay reports a payment. Answer 204, a repeat included."""
    received_at = utcnow()
    # The raw bytes: the signature covers them, not a re-serialised dict.
    body = request.get_data(cache=False)
    # The handler also writes the flow inspector's record, committed with the payment itself.
    result = payments.handle_payment_notification(request.headers, body, received_at,
                                                  path=request.path, url=_request_url())
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
                                                path=request.path, url=_request_url())
    count_notification("refund", result)
    if result.status < 300:
        return "", 204
    return {"code": "FAIL", "message": result.reason[:64] or "FAIL"}, result.status
