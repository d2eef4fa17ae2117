"""WeChat Pay's notifications: verify the raw bytes, apply once, answer 204.

Two doors to the same answer (``answer``): the blueprint's views, and ``NotificationLane``, which
serves these two URLs straight from WSGI inside the app context, without Flask's request
dispatch (a notification is a machine's POST: no cookie, no page, no route to look up; see
``NotificationLane``). The views stay for ``url_for`` and for whatever the lane leaves to Flask.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.wrappers import Request

from .. import errors
from ..health import count_notification
from ..models import utcnow
from ..services import payments, refunds

bp = Blueprint("notify", __name__)

_PLAIN = re.compile(r"[A-Za-z0-9._~/-]*")
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?")

# kind (for the metrics) -> the service that handles it
HANDLERS: dict[str, Callable[..., Any]] = {
    "payment": payments.handle_payment_notification,
    "refund": refunds.handle_refund_notification,
}


def _request_url(req: Request) -> str:
    """``req.url``, for the flow record. A plain ASCII host and path (what WeChat Pay calls)
    are joined as werkzeug's ``get_host`` and ``get_current_url`` join them: ``req.url``
    also makes every URL an IRI (unquoting, IDNA-decoding the host), a dozen calls for text that
    cannot change here. Anything else is left to ``req.url``."""
    environ = req.environ
    scheme, host = environ.get("wsgi.url_scheme"), environ.get("HTTP_HOST", "")
    root, path = environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", "")
    if (scheme not in ("http", "https") or environ.get("QUERY_STRING") or current_app.config.get("TRUSTED_HOSTS")
            or not _PLAIN_HOST.fullmatch(host) or "xn--" in host.lower()
            or not _PLAIN.fullmatch(root) or not _PLAIN.fullmatch(path)):
        return req.url
    host = host.removesuffix(":80" if scheme == "http" else ":443")
    return f"{scheme}://{host}{root.rstrip('/')}/{path.lstrip('/')}"


def answer(kind: str, req: Request) -> Response:
    """Handle one notification of ``kind`` ("payment", "refund") and build the answer: 204, or
    WeChat Pay's error JSON (it retries on anything but 2xx). Raises what Flask's error
    handlers answer (a body over ``MAX_CONTENT_LENGTH``: 413)."""
    received_at = utcnow()
    # The raw bytes: the signature covers them, not a re-serialised dict.
    body = req.get_data(cache=False)
    # The handler also writes the flow inspector's record, committed with the payment itself.
    result = HANDLERS[kind](req.headers, body, received_at, path=req.path, url=_request_url(req))
    count_notification(kind, result)
    if result.status < 300:
        return current_app.response_class(status=204)
    return errors.wechatpay_failure(result.status, result.reason or "FAIL")


@bp.post("/wechatpay")
def payment():
    """WeChat Pay reports a payment. Answer 204, a repeat included."""
    return answer("payment", request)


@bp.post("/wechatpay/refund")
def refund():
    """WeChat Pay reports a refund's end (REFUND.SUCCESS/ABNORMAL/CLOSED). Answer 204, a repeat included."""
    return answer("refund", request)


class NotificationLane:
    """``POST /notify/wechatpay`` and ``POST /notify/wechatpay/refund``, served in the app context
    without Flask's request dispatch; every other request goes on to ``wsgi_app``.

    Flask's request context (a URL adapter and the route lookup, the cookie session opened and
    saved, request signals, the hooks meant for pages, which skip these paths anyway) cost a
    notification about as much as verifying it (bench/README.md). Here: one ``Request`` over the
    environ, the same ``answer`` as the views, the same error answers as ``errors`` gives these
    paths, and the app context's teardown (the database session, the flow record's pending
    writes). What needs a request in the services reads the app context instead: the flow
    record's origin (``g.flow_origin``, ``web.request_origin``) and, in simulator mode, the
    shop's base URL (``PORT``, as for the jobs).
    """

    PATHS = {"/notify/wechatpay": "payment", "/notify/wechatpay/refund": "refund"}

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        kind = self.PATHS.get(environ.get("PATH_INFO", "")) if environ.get("REQUEST_METHOD") == "POST" else None
        if kind is None:
            return self.wsgi_app(environ, start_response)
        with self.app.app_context():
            req = self.app.request_class(environ)
            g.flow_origin = f"POST {req.path}"
            try:
                response = answer(kind, req)
            except Exception as exc:  # what Flask's error handlers would answer on these paths
                response = errors.machine_answer(exc, req)
        return response(environ, start_response)
