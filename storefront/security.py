"""Browser protections on every response, in both modes: CSP, framing, sniffing, referrer, HSTS,
and the session cookie's flags. Why each one: docs/going-live.md, "What each protection is for".
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider

from .machine import is_machine_endpoint

# Pages the guided tour shows in its frames (the shop's checkout, the flow inspector, and the
# simulator's payer pages a checkout leads to, e.g. its OAuth page telling a desktop browser to
# open the link in WeChat): frameable by the same origin only. Nested blueprints are named
# "parent.child". Everything else, the merchant area above all (its refund form), may not be
# framed at all.
FRAMEABLE_BLUEPRINTS = frozenset({"catalog", "checkout", "flow", "oauth", "sandbox.payer"})
FRAMEABLE_ENDPOINTS: frozenset[str] = frozenset()

# No inline scripts anywhere (templates load /static/js/*.js): script-src 'self' blocks an injected one.
# Styles may be inline (two style attributes): a style cannot run code.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'self'; frame-ancestors {ancestors}")
HSTS_SECONDS = 31536000


def _frameable() -> bool:
    endpoint = request.endpoint or ""
    return request.blueprint in FRAMEABLE_BLUEPRINTS or endpoint in FRAMEABLE_ENDPOINTS


def is_https(app: Flask) -> bool:
    base = app.config.get("SHOP_BASE_URL") or ""
    return base.startswith("https://")


class BoundedJSONProvider(DefaultJSONProvider):
    """``request.get_json``: deeply nested JSON is malformed JSON (a 400), not a RecursionError (a 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def register(app: Flask) -> None:
    """Cookie flags now; the headers on every response (``after_request``)."""
    provider = BoundedJSONProvider(app)
    provider.ensure_ascii = app.json.ensure_ascii  # type: ignore[attr-defined]
    app.json = provider
    # Flask defines these keys (SAMESITE as None), so they are set, not defaulted.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = app.config.get("SESSION_COOKIE_SAMESITE") or "Lax"
    https = is_https(app)
    if https:
        app.config["SESSION_COOKIE_SECURE"] = True

    @app.after_request
    def protect(response: Response) -> Response:
        if is_machine_endpoint():
            # WeChat Pay's notifications: no browser renders the answer (web.MACHINE_PATH_PREFIXES).
            return response
        headers = response.headers
        frameable = _frameable()
        headers.setdefault("Content-Security-Policy", CSP.format(ancestors="'self'" if frameable else "'none'"))
        headers.setdefault("X-Frame-Options", "SAMEORIGIN" if frameable else "DENY")  # browsers without CSP 2
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # Never no-referrer / same-origin: WeChat's H5 cashier checks the Referer's domain.
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if https:
            headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}; includeSubDomains")
        return response
