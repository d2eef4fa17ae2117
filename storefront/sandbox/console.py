"""The simulator's console at ``/sandbox/``: every call, payment, refund and delivery, and the
buttons a learner needs (resend now, fast-forward, rotate the certificate, send a probe).

Secrets are never shown: not the APIv3 key, not a private key. Signatures are.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from ..extensions import db
from ..i18n import _
from ..i18n import lazy as _l
from ..web import check_csrf
from . import refunds
from .blueprints import console
from .control import advance_to_next_retry, enqueue_probe, resend, reset_clock
from .merchants import registered
from .models import SandboxApiCall, SandboxDelivery, SandboxNotification, SandboxRefund, SandboxTransaction
from .settings import ANSWER_SIGNING, NOTIFY_SIGNING
from .simulator import ApiFailure
from .state import sandbox

FAST_FORWARD_CHOICES = ((60, _l("+1 分钟")), (600, _l("+10 分钟")), (3600, _l("+1 小时")),
                        (3 * 3600, _l("+3 小时")), (86400, _l("+1 天")))
PAGE = 50


def demo_merchant_password() -> str | None:
    """The shop's demo merchant password, shown here as the demo credential (simulator mode only)."""
    if current_app.config.get("MERCHANT_PASSWORD"):
        return None  # configured by the operator: not the simulator's to show
    path = Path(current_app.instance_path) / "merchant_password"
    return path.read_text().strip() if path.exists() else None


def _deliveries(notification_ids: list[int]) -> dict[int, list[SandboxDelivery]]:
    found: dict[int, list[SandboxDelivery]] = {i: [] for i in notification_ids}
    if notification_ids:
        for delivery in db.session.scalars(select(SandboxDelivery)
                                           .where(SandboxDelivery.notification_id.in_(notification_ids))
                                           .order_by(SandboxDelivery.id)):
            found[delivery.notification_id].append(delivery)
    return found


@console.get("/")
def index():
    state = sandbox()
    platform = state.platform
    refunds.settle_due(platform)
    now = platform.now()
    # ?mchid= shows one merchant's transactions, refunds, notifications and calls (several merchants)
    mchid = request.args.get("mchid") or None
    transactions = list(db.session.scalars(_for_merchant(
        select(SandboxTransaction), SandboxTransaction.mchid, mchid).order_by(SandboxTransaction.id.desc()).limit(PAGE)))
    refund_rows = list(db.session.scalars(_for_merchant(select(SandboxRefund), SandboxRefund.mchid, mchid)
                                          .order_by(SandboxRefund.id.desc()).limit(PAGE)))
    notifications = list(db.session.scalars(_for_merchant(
        select(SandboxNotification), SandboxNotification.mchid, mchid, platform.merchant.mchid)
        .order_by(SandboxNotification.id.desc()).limit(PAGE)))
    calls = list(db.session.scalars(_for_merchant(select(SandboxApiCall), SandboxApiCall.mchid, mchid)
                                    .order_by(SandboxApiCall.id.desc()).limit(PAGE)))
    call_count = db.session.scalar(_for_merchant(select(func.count()).select_from(SandboxApiCall),
                                                 SandboxApiCall.mchid, mchid))
    next_retry = db.session.scalar(select(func.min(SandboxNotification.next_attempt_at))
                                   .where(SandboxNotification.state == "pending"))
    return render_template(
        "sandbox/index.html",
        transactions=transactions, refunds=refund_rows, notifications=notifications,
        deliveries=_deliveries([n.id for n in notifications]), calls=calls, call_count=call_count,
        now=now, settings=platform.settings.all(), next_retry=next_retry,
        certificates=platform.certificates.all(), listed=[c.serial for c in platform.certificates.listed(now)],
        signing_serial=platform.certificates.newest(now).serial, merchant=platform.merchant,
        merchant_password=demo_merchant_password(), fast_forward=FAST_FORWARD_CHOICES,
        notify_modes=NOTIFY_SIGNING, answer_modes=ANSWER_SIGNING,
        merchant_filter=mchid, registered_merchants=registered(),
    )


def _for_merchant(query, column, mchid: str | None, demo_mchid: str | None = None):
    """The query narrowed to one merchant (rows without a mchid belong to the demo merchant)."""
    if not mchid:
        return query
    if demo_mchid and mchid == demo_mchid:
        return query.where((column == mchid) | column.is_(None))
    return query.where(column == mchid)


@console.get("/calls/<int:call_id>")
def call_detail(call_id: int):
    call = db.session.get(SandboxApiCall, call_id) or abort(404)
    return render_template("sandbox/call.html", call=call, headers=json.loads(call.request_headers or "{}"),
                           now=sandbox().platform.now())


@console.get("/notifications/<int:notification_id>")
def notification_detail(notification_id: int):
    notification = db.session.get(SandboxNotification, notification_id) or abort(404)
    return render_template("sandbox/notification.html", n=notification,
                           deliveries=_deliveries([notification_id])[notification_id], now=sandbox().platform.now())


def _back():
    return redirect(request.form.get("next") or url_for("sandbox.console.index"), code=303)


@console.post("/console/clock")
def console_clock():
    check_csrf()
    platform = sandbox().platform
    action = request.form.get("action", "")
    try:
        if action == "next_retry":
            gap = advance_to_next_retry(platform)
            flash(_("时钟已快进 %(s)s 秒，到下一次通知重试", s=f"{gap:.1f}") if gap else _("没有等待中的通知重试"))
        elif action == "reset":
            reset_clock(platform)
            flash(_("模拟器时钟已恢复为真实时间"))
        else:
            seconds = float(request.form.get("seconds", "0"))
            platform.settings.fast_forward(seconds)
            flash(_("时钟已快进 %(s)s 秒", s=f"{seconds:g}"))
    except ValueError as exc:
        flash(str(exc))
    sandbox().notify_soon()
    return _back()


@console.post("/console/settings")
def console_settings():
    check_csrf()
    platform = sandbox().platform
    try:
        for name in ("notify_signing", "answer_signing", "paid_code"):
            if name in request.form:
                platform.settings.set(name, request.form[name])
        if "rate_limit_per_second" in request.form:
            platform.settings.set("rate_limit_per_second", int(request.form["rate_limit_per_second"] or 0))
        if "answer_probe_rate" in request.form:
            platform.settings.set("answer_probe_rate", float(request.form["answer_probe_rate"] or 0))
        if "coupon_amount" in request.form:  # the coupon toggle: a checkbox and its amount in fen
            amount = int(request.form.get("coupon_amount") or 0) if request.form.get("coupon_on") else 0
            platform.settings.set("coupon_amount", amount)
        flash(_("设置已保存"))
    except ValueError as exc:
        db.session.rollback()
        flash(str(exc))
    return _back()


@console.post("/console/rotate-cert")
def console_rotate_cert():
    check_csrf()
    platform = sandbox().platform
    cert = platform.certificates.rotate(platform.now())
    flash(_("已签发新的平台证书 %(serial)s；旧证书在过渡期内继续列出", serial=cert.serial))
    return _back()


@console.post("/console/probe")
def console_probe():
    check_csrf()
    state = sandbox()
    try:
        row = enqueue_probe(state.platform, request.form.get("out_trade_no") or None)
    except ApiFailure as exc:
        flash(exc.message)
        return _back()
    state.notify_soon()
    flash(_("已发送探测通知 #%(id)s（签名以 WECHATPAY/SIGNTEST/ 开头，商户应拒绝）", id=row.id))
    return _back()


@console.post("/console/notifications/<int:notification_id>/resend")
def console_resend(notification_id: int):
    check_csrf()
    state = sandbox()
    if not resend(state.platform, notification_id):
        abort(404)
    state.notify_soon()
    flash(_("通知 #%(id)s 将立即重新投递", id=notification_id))
    return _back()


@console.post("/console/refunds/<int:refund_id>/finish")
def console_refund_finish(refund_id: int):
    check_csrf()
    state = sandbox()
    result = request.form.get("result", "SUCCESS")
    if result not in refunds.OUTCOMES:
        abort(400)
    if refunds.finish(state.platform, refund_id, result):
        state.notify_soon()
        flash(_("退款已结束：%(result)s", result=result))
    else:
        flash(_("该退款已结束"))
    return _back()
