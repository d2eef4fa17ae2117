"""Page plumbing shared by the blueprints: shopper identity, CSRF, template filters."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timezone

from flask import Flask, Request, Response, abort, g, has_app_context, has_request_context, request, session
from flask.sessions import NullSession, SessionInterface, SessionMixin

from . import i18n
from .i18n import _
from .machine import MACHINE_PATH_PREFIXES as MACHINE_PATH_PREFIXES  # re-exported: the page plumbing's helpers
from .machine import is_machine_endpoint as is_machine_endpoint
from .machine import is_machine_path
from .services import scenes
from .wechatpay.times import BEIJING


# Which requests come from machines (WeChat Pay's notifications): storefront/machine.py, the one
# place hooks meant for browsers consult. Re-exported here, where the page plumbing lives.
class MachineAwareSessions(SessionInterface):
    """The app's session interface, except that machine endpoints get a null session.

    Wraps whatever interface the app has (the cookie session, or a server-side one), so the
    pages keep theirs. A null session reads as empty, refuses writes, and is never saved: no
    signing serializer built, no cookie parsed or set, no session row touched.
    """

    def __init__(self, inner: SessionInterface) -> None:
        self.inner = inner

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:  # type: ignore[override]
        if is_machine_path(request.path):
            return self.make_null_session(app)
        return self.inner.open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:  # type: ignore[override]
        if isinstance(session, NullSession):
            return
        self.inner.save_session(app, session, response)

    def is_null_session(self, obj: object) -> bool:
        return isinstance(obj, NullSession) or self.inner.is_null_session(obj)

    def __getattr__(self, name: str):  # the wrapped interface's own settings and helpers
        return getattr(self.inner, name)


def install_machine_sessions(app: Flask) -> None:
    """Wrap the app's session interface (call last in the factory: after any other replaces it)."""
    if not isinstance(app.session_interface, MachineAwareSessions):
        app.session_interface = MachineAwareSessions(app.session_interface)


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
        # A notification served without a request context (``notify.views.NotificationLane``)
        # says which it was; anything else outside a request is a job.
        return g.get("flow_origin", "job") if has_app_context() else "job"
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

