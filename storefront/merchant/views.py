"""The merchant area at ``/merchant/``: orders with their payments, refunds and history, and refunds.

Behind one password from configuration (``MERCHANT_PASSWORD``); in simulator mode ``init``
generates a demo one into ``instance/merchant_password``, shown on the simulator console.
"""

from __future__ import annotations

import hmac
import re
from decimal import Decimal, InvalidOperation
from functools import wraps
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from ..errors import ShopError
from ..extensions import db
from ..i18n import _
from ..models import Order, OrderStatus, Refund
from ..services import refund_states, refunds
from ..web import check_csrf
from ..wechatpay import WeChatPayError
from . import auth

bp = Blueprint("merchant", __name__)

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


def login_required(view):
    @wraps(view)
    def wrapper(**kwargs):
        if merchant_password() is None:
            return render_template("merchant/closed.html"), 503
        if not auth.signed_in():
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
        verdict = auth.check(address)
        if not verdict.allowed:
            message = _("尝试次数过多，请 %(s)s 秒后再试", s=verdict.retry_after)
            return render_template("merchant/login.html", error=message), 429, {"Retry-After": str(verdict.retry_after)}
        sent = request.form.get("password", "")
        if hmac.compare_digest(sent.encode(), password.encode()):
            auth.succeeded(address)
            auth.sign_in()  # a fresh server-side session: no fixation, revocable
            target = request.args.get("next", "")
            if not target.startswith("/merchant/") or target.startswith("//"):
                target = url_for("merchant.index")
            return redirect(target, code=303)
        error = _("密码不正确")
        auth.failed(address)
        current_app.logger.warning("merchant login refused from %s", request.remote_addr)
    return render_template("merchant/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    check_csrf()
    auth.sign_out()
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
