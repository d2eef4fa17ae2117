"""The flow inspector: every message of one order's payment, as a timeline and a sequence diagram."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, render_template, request, url_for
from sqlalchemy import select

from ..errors import ShopError
from ..extensions import db
from ..i18n import _
from ..models import Order
from ..services import flowlog, orders
from ..web import shopper_id
from . import steps as flow_steps
from .diagram import diagram
from .explain import LANES, lane_names

bp = Blueprint("flow", __name__)


def merchant_signed_in() -> bool:
    from ..merchant import auth  # the merchant area's server-side session

    return auth.signed_in()


def viewable_order(order_no: str) -> Order:
    """The order if this session owns it or is a merchant's. :raise OrderError: 404 otherwise."""
    if merchant_signed_in():
        found = db.session.scalar(select(Order).where(Order.order_no == order_no))
        if found is not None:
            return found
    return orders.owned_order(order_no, shopper_id())


def _flow(order: Order) -> tuple[list[flow_steps.Step], str]:
    messages = flowlog.messages_for(order.id)
    db.session.commit()  # reads only: hold no (SQLite) lock while the page renders
    return flow_steps.build(order, messages), flow_steps.version(order, messages)


def _order_url(order_no: str) -> str:
    # A merchant is not the order's shopper: its own order page is in the merchant area.
    if merchant_signed_in() and "merchant.order" in current_app.view_functions:
        return url_for("merchant.order", order_no=order_no)
    return url_for("checkout.order", order_no=order_no)


@bp.get("/orders/<order_no>/flow")
def inspector(order_no: str):
    order = viewable_order(order_no)
    steps, version = _flow(order)
    template = "flow/_body.html" if request.args.get("fragment") else "flow/inspector.html"
    return render_template(
        template, order=order, steps=steps, version=version, diagram=diagram(steps),
        lanes=[(lane, lane_names()[lane]) for lane in LANES], embed=bool(request.args.get("embed")),
        ORIGINS=flow_steps.ORIGIN_LABELS,
        json_url=url_for("flow.flow_json", order_no=order_no), order_url=_order_url(order_no),
        fragment_url=url_for("flow.inspector", order_no=order_no, fragment=1),
    )


@bp.get("/orders/<order_no>/flow.json")
def flow_json(order_no: str):
    order = viewable_order(order_no)
    steps, version = _flow(order)
    return {
        "order_no": order.order_no, "status": order.status, "version": version,
        "attempts": [{"out_trade_no": p.out_trade_no, "method": p.method, "status": p.status}
                     for p in order.payments],
        "steps": [step.as_json() for step in steps],
    }


@bp.post("/orders/<order_no>/flow/events")
def browser_event(order_no: str):
    # JSON only: a cross-site form cannot send application/json without a CORS preflight,
    # so this cookie-authenticated POST is safe from CSRF (as /api is).
    if not request.is_json:
        raise ShopError("UNSUPPORTED_MEDIA_TYPE", _("请求须为 application/json"), 415)
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or data.get("event") not in flowlog.BROWSER_EVENTS:
        raise ShopError("INVALID_EVENT", _("未知的页面事件"))
    order = orders.owned_order(order_no, shopper_id())  # only the shopper's own pages report
    out_trade_no = data.get("out_trade_no")
    if out_trade_no is not None and not isinstance(out_trade_no, str):
        raise ShopError("INVALID_EVENT", _("out_trade_no 须为字符串"))
    detail = data.get("detail", "")
    if not isinstance(detail, str):
        detail = json.dumps(detail, ensure_ascii=False)[: flowlog.MAX_DETAIL_CHARS]
    if flowlog.browser_event_count(order.id) >= flowlog.MAX_BROWSER_EVENTS_PER_ORDER:
        raise ShopError("TOO_MANY_EVENTS", _("页面事件过多"), 429)
    flowlog.record_browser_event(order.id, data["event"], out_trade_no[:64] if out_trade_no else None, detail)
    return "", 204
