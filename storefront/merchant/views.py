"""The merchant area at ``/merchant/``: orders with their payments, refunds and history, and refunds.

Behind one password from configuration (``MERCHANT_PASSWORD``); in simulator mode ``init``
generates a demo one into ``instance/merchant_password``, shown on the simulator console.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from decimal import Decimal, InvalidOperation
from functools import wraps
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from sqlalchemy import func, select

from ..errors import ShopError
from ..extensions import db
from ..i18n import _
from ..models import Order, OrderStatus, Refund
from ..services import refund_states, refunds
from ..web import check_csrf
from ..wechatpay import WeChatPayError

bp = Blueprint("merchant", __name__)

LOGIN_FAILURES_ALLOWED = 10  # per client address and window, then 429 until the window passes
LOGIN_WINDOW_SECONDS = 600
YUAN = re.compile(r"^[0-9]{1,8}(\.[0-9]{1,2})?$")  # ASCII digits only: \d takes "１２" too
PAGE = 50


def merchant_password() -> str | None:
    """``MERCHANT_PASSWORD``, else (simulator mode) the demo password ``init`` wrote; None: area closed."""
    configured = current_app.config.get("MERCHANT_PASSWORD")
    if configured:
        return str(configured)
    if current_app.config["WECHATPAY_SANDBOX"]:
        path = Path(current_app.instance_path) / "merchant_password"
        if path.exists():
            return path.read_text().strip() or None
    return None


def yuan_to_fen(text: str) -> int:
    """``"12.3"`` → 1230: exact decimal arithmetic, never floats. :raise ShopError: not an amount."""
    cleaned = text.strip().removeprefix("¥").strip()
    if not YUAN.match(cleaned):
        raise ShopError("INVALID_AMOUNT", _("金额须为元，最多两位小数，如 12.30"))
    try:
        fen = Decimal(cleaned) * 100
    except InvalidOperation:
        raise ShopError("INVALID_AMOUNT", _("金额须为元，最多两位小数，如 12.30")) from None
    if fen != fen.to_integral_value() or fen <= 0:
        raise ShopError("INVALID_AMOUNT", _("退款金额须大于 0"))
    return int(fen)


class LoginThrottle:
    """Failed merchant logins per client address, kept per app (``app.extensions``), in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def _recent(self, address: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(address, []) if now - t < LOGIN_WINDOW_SECONDS]
        self._failures[address] = kept
        return kept

    def blocked(self, address: str) -> bool:
        with self._lock:
            return len(self._recent(address, time.monotonic())) >= LOGIN_FAILURES_ALLOWED

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address, time.monotonic()).append(time.monotonic())
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures.clear()


def _throttle() -> LoginThrottle:
    return current_app.extensions.setdefault("merchant_login_throttle", LoginThrottle())


def login_required(view):
    @wraps(view)
    def wrapper(**kwargs):
        if merchant_password() is None:
            return render_template("merchant/closed.html"), 503
        if not session.get("merchant"):
            return redirect(url_for("merchant.login", next=request.path))
        return view(**kwargs)

    return wrapper


@bp.route("/login", methods=["GET", "POST"])
def login():
    password = merchant_password()
    if password is None:
        return render_template("merchant/closed.html"), 503
    error = None
    if request.method == "POST":
        check_csrf()
        address = request.remote_addr or "-"
        if _throttle().blocked(address):
            return render_template("merchant/login.html", error=_("尝试次数过多，请 10 分钟后再试")), 429
        sent = request.form.get("password", "")
        if hmac.compare_digest(sent.encode(), password.encode()):
            session.clear()  # a fresh session on login: no fixation
            session["merchant"] = True
            target = request.args.get("next", "")
            if not target.startswith("/merchant/") or target.startswith("//"):
                target = url_for("merchant.index")
            return redirect(target, code=303)
        error = _("密码不正确")
        _throttle().failed(address)
        current_app.logger.warning("merchant login refused from %s", request.remote_addr)
    return render_template("merchant/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    check_csrf()
    session.pop("merchant", None)
    return redirect(url_for("merchant.login"), code=303)


@bp.get("/")
@login_required
def index():
    status = request.args.get("status") or None
    query = select(Order).order_by(Order.id.desc()).limit(PAGE)
    if status in {s.value for s in OrderStatus}:
        query = query.where(Order.status == status)
    counts = dict(db.session.execute(select(Order.status, func.count()).group_by(Order.status)).all())
    return render_template("merchant/index.html", orders=list(db.session.scalars(query)), status=status,
                           counts=counts)


def _order(order_no: str) -> Order:
    order = db.session.scalar(select(Order).where(Order.order_no == order_no))
    if order is None:
        abort(404)
    return order


@bp.get("/orders/<order_no>")
@login_required
def order(order_no: str):
    found = _order(order_no)
    refunds.refresh_pending(found)
    payment = refunds.order_payment(found)
    refundable = refund_states.refundable(payment) if payment is not None and found.status == OrderStatus.PAID else 0
    return render_template("merchant/order.html", order=found, payment=payment, refundable=refundable)


@bp.post("/orders/<order_no>/refund")
@login_required
def refund(order_no: str):
    check_csrf()
    found = _order(order_no)
    try:
        amount = yuan_to_fen(request.form.get("amount", ""))
        made = refunds.request_refund(found, amount, request.form.get("reason", "").strip()[:80])
    except ShopError as exc:
        flash(exc.message, "error")
    else:
        flash(_("已提交退款 %(no)s：%(s)s", no=made.out_refund_no, s=made.status_label), "success")
    return redirect(url_for("merchant.order", order_no=order_no), code=303)


@bp.post("/refunds/<out_refund_no>/query")
@login_required
def query_refund(out_refund_no: str):
    check_csrf()

    found = db.session.scalar(select(Refund).where(Refund.out_refund_no == out_refund_no)) or abort(404)
    order_no = db.session.scalar(select(Order.order_no).where(Order.id == found.order_id))
    try:
        updated = refunds.query(found)
        flash(_("退款 %(no)s：%(s)s", no=updated.out_refund_no, s=updated.status_label), "success")
    except ShopError as exc:
        flash(exc.message, "error")
    except WeChatPayError as exc:
        current_app.logger.warning("refund query %s failed: %s", out_refund_no, exc)
        flash(_("查询失败，请稍后再试"), "error")
    return redirect(url_for("merchant.order", order_no=order_no), code=303)
