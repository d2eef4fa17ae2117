"""Domain errors, and one place that answers them in the caller's format."""

from __future__ import annotations

from flask import Flask, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from .i18n import _
from .i18n import lazy as _l


class ShopError(Exception):
    """A refusal a user or caller should see: ``code`` for machines, ``message`` for people."""

    status = 400

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status


def wants_json() -> bool:
    """JSON endpoints answer errors as JSON: the API, the flow record's JSON, the simulator's API."""
    path = request.path
    return (path.endswith(".json") or path.endswith("/flow/events") or path in ("/healthz",)
            or (request.method == "POST" and request.is_json))


def wechatpay_failure(status: int, message: str) -> Response:
    """The answer WeChat Pay expects when a notification is not accepted (it retries on anything
    but 2xx): ``{"code": "FAIL", "message": …}``, the message at most 64 characters."""
    response = current_app.json.response({"code": "FAIL", "message": str(message)[:64]})
    response.status_code = status
    return response


def _answer(status: int, code: str, message: str):
    if request.path.startswith("/api/"):
        return {"error": {"code": code, "message": message}}, status
    if request.path.startswith("/notify/"):
        return wechatpay_failure(status, message)
    mount = current_app.extensions["wechat_endpoints"].mount if "wechat_endpoints" in current_app.extensions else ""
    # The simulator's API and control endpoints are JSON: their errors are too (whatever Accept says).
    if mount and request.path.startswith(mount + "/") and (
            request.accept_mimetypes.best == "application/json" or wants_json()
            or request.path.startswith(tuple(f"{mount}/{part}/" for part in ("control", "v3", "sns")))):
        return {"code": code, "message": message}, status
    if wants_json():
        return {"error": {"code": code, "message": message}}, status
    return render_template("errors/error.html", status=status, code=code, message=message), status


HTTP_MESSAGES = {
    400: _l("请求有误"),
    403: _l("没有权限"),
    404: _l("页面不存在"),
    405: _l("不支持该请求方法"),
    413: _l("请求内容过大"),
    429: _l("请求过于频繁，请稍后再试"),
}


def _explain(exc: Exception, req: Request) -> tuple[int, str, str]:
    """The status, code and message ``exc`` is answered with; bad input and crashes are logged."""
    if isinstance(exc, ShopError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return status, (exc.name or "error").upper().replace(" ", "_"), HTTP_MESSAGES.get(status, exc.name or "")
    if isinstance(exc, RecursionError):
        # Deeply nested JSON (or another input built to exhaust the stack): bad input, not a crash.
        current_app.logger.warning("input too deeply nested on %s %s", req.method, req.path)
        return 400, "INVALID_JSON", _("请求体的 JSON 嵌套过深")
    # Logged with its traceback for the operator; the caller sees no internals.
    current_app.logger.exception("unhandled error on %s %s", req.method, req.path)
    return 500, "SYSTEM_ERROR", _("系统繁忙，请稍后再试")


def machine_answer(exc: Exception, req: Request) -> Response:
    """What the handlers below answer ``exc`` on a notification path, for a request served
    without Flask's dispatch (``notify.views.NotificationLane``): the same status and JSON, the
    same log line."""
    status, _code, message = _explain(exc, req)
    return wechatpay_failure(status, message)


def register(app: Flask) -> None:
    def answer(exc: Exception):
        return _answer(*_explain(exc, request))

    for kind in (ShopError, HTTPException, RecursionError, Exception):
        app.register_error_handler(kind, answer)
