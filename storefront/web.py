"""Page plumbing shared by the blueprints: shopper identity, CSRF, template filters."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timezone

from flask import Flask, abort, has_request_context, request, session

from . import i18n
from .i18n import _
from .services import scenes
from .wechatpay.times import BEIJING


def shopper_id(create: bool = False) -> str | None:
    """The browser session's anonymous shopper id; orders belong to it."""
    current = session.get("shopper")
    if current is None and create:
        current = session["shopper"] = secrets.token_urlsafe(24)
        session.permanent = True
    return current


def request_origin() -> str:
    """What made the shop call WeChat Pay, for the flow record: a page's poll, a page or form, else a job."""
    if not has_request_context():
        return "job"
    if request.method == "GET" and request.path.startswith("/api/orders/"):
        return "poll"
    return f"{request.method} {request.path}"[:120]


def csrf_token() -> str:
    token = session.get("csrf")
    if token is None:
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf() -> None:
    """Refuse a form POST that does not carry this session's token (before_request hook)."""
    if request.method != "POST":
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400)


def yuan(fen: int | None) -> str:
    """Integer fen as ``¥12.34``: integer arithmetic only, never floats."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}¥{fen // 100}.{fen % 100:02d}"


def beijing(moment: datetime | None) -> str:
    """A stored naive-UTC time shown in Beijing time."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def wechat_emulation() -> str | None:
    """In simulator mode: ``"wechat"``/``"miniprogram"`` while this browser plays WeChat's (模拟微信内打开)."""
    return request.environ.get("storefront.sandbox_wechat")


def register(app: Flask) -> None:
    i18n.register(app)  # Flask-Babel: the reader's language, catalogues, {{ _() }} in templates
    app.jinja_env.filters["yuan"] = yuan
    app.jinja_env.filters["beijing"] = beijing
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["sandbox_mode"] = bool(app.config["WECHATPAY_SANDBOX"])
    app.jinja_env.globals["_"] = _
    app.jinja_env.globals["wechat_emulation"] = wechat_emulation
    app.jinja_env.globals["idempotency_key"] = lambda: secrets.token_urlsafe(18)  # one per rendered form
    # The scene registry: pages name and offer the payment methods by lookup, not by a list of their own.
    app.jinja_env.globals["SCENES"] = scenes.SCENES
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")

