"""The merchant's reconciliation pages: one line per reconciled day, each day's differences, CSV export.

Thin over ``services/reconciliation.py``; the same result ``flask reconcile-bill`` stores.
"""

from __future__ import annotations

import csv
import io
from datetime import date

from flask import Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ..extensions import db
from ..i18n import _
from ..i18n import lazy as _l
from ..models import Order
from ..services import reconciliation
from ..web import check_csrf
from .views import bp, login_required

KIND_LABELS = {
    "missing_at_wechat": _l("商户已收款，微信账单中没有"),
    "amount_mismatch": _l("金额不一致"),
    "refund_mismatch": _l("退款只在一方，或金额不一致"),
    "unknown_at_shop": _l("微信已收款，商户没有这笔支付"),
}


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        abort(404)


def _order_numbers(details: list[dict]) -> set[str]:
    found = {item.get("order_no") for item in details if item.get("order_no")}
    return set(db.session.scalars(select(Order.order_no).where(Order.order_no.in_(found)))) if found else set()


@bp.get("/reconciliation")
@login_required
def reconciliation_index():
    return render_template("merchant/reconciliation.html", runs=reconciliation.runs(),
                           default_date=reconciliation.yesterday().isoformat())


@bp.post("/reconciliation")
@login_required
def reconciliation_run():
    """Reconcile one day now (what the daily job does after 10:00)."""
    check_csrf()
    day = _day(request.form.get("date", ""))
    result, status = reconciliation.reconcile_day(date.fromisoformat(day))
    if status == reconciliation.EXIT_FAILED:
        run = reconciliation.run_for(day)
        flash(_("%(d)s 的账单暂时无法对账：%(e)s", d=day, e=run.error if run else ""), "error")
    else:
        flash(_("%(d)s 对账完成：%(n)s 处差异", d=day, n=result.differences), "success")
    return redirect(url_for("merchant.reconciliation_day", bill_date=day), code=303)


@bp.get("/reconciliation/<bill_date>")
@login_required
def reconciliation_day(bill_date: str):
    run = reconciliation.run_for(_day(bill_date)) or abort(404)
    details = reconciliation.details(run)
    summary = reconciliation.summary(run)
    return render_template("merchant/reconciliation_day.html", run=run, details=details, summary=summary,
                           labels=KIND_LABELS, known_orders=_order_numbers(details),
                           bill_file=reconciliation.bill_file(run))


@bp.get("/reconciliation/<bill_date>.csv")
@login_required
def reconciliation_csv(bill_date: str):
    run = reconciliation.run_for(_day(bill_date)) or abort(404)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["bill_date", "kind", "out_trade_no", "order_no", "out_refund_no", "shop", "wechat"])
    for item in reconciliation.details(run):
        writer.writerow([run.bill_date, item.get("kind", ""), item.get("out_trade_no", ""), item.get("order_no", ""),
                         item.get("out_refund_no", ""), item.get("shop", ""), item.get("wechat", "")])
    for out_trade_no in reconciliation.summary(run).get("applied", []):
        writer.writerow([run.bill_date, "applied", out_trade_no, "", "", "", "SUCCESS"])
    # A BOM so that Excel opens the UTF-8 file with the Chinese intact.
    return Response("\ufeff" + out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=reconciliation-{run.bill_date}.csv"})
