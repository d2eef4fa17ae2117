"""Domain errors, and one place that answers them in the caller's format."""

from __future__ import annotations

from flask import Flask, current_app, render_template, request
from werkzeug.exceptions import HTTPException

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


def _answer(status: int, code: str, message: str):
    if request.path.startswith("/api/"):
        return {"error": {"code": code, "message": message}}, status
    if request.path.startswith("/notify/"):
        return {"code": "FAIL", "message": message[:64]}, status
    mount = current_app.extensions["wechat_endpoints"].mount if "wechat_endpoints" in current_app.extensions else ""
    if mount and request.path.startswith(mount + "/") and request.accept_mimetypes.best == "application/json":
        return {"code": code, "message": message}, status
    return render_template("errors/error.html", status=status, code=code, message=message), status


HTTP_MESSAGES = {
    400: _l("请求有误"),
    403: _l("没有权限"),
    404: _l("页面不存在"),
    405: _l("不支持该请求方法"),
    413: _l("请求内容过大"),
}


def register(app: Flask) -> None:
    @app.errorhandler(ShopError)
    def shop_error(exc: ShopError):
        return _answer(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        code = (exc.name or "error").upper().replace(" ", "_")
        return _answer(status, code, HTTP_MESSAGES.get(status, exc.name or ""))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Logged with its traceback for the operator; the caller sees no internals.
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _answer(500, "SYSTEM_ERROR", _("系统繁忙，请稍后再试"))
