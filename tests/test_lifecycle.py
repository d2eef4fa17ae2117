"""The order lifecycle against the real simulator: lost notifications, active queries, the jobs.

Shop and simulator run as one live server on loopback; notifications, queries and closes cross
real HTTP. Clocks are not faked: an attempt is made "expired" by moving its ``expires_at`` into
the past in the shop's table (the simulator's transaction stays payable, as WeChat's does until
the merchant closes it). A late payment for an attempt closed locally is covered in test_notify.py.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import requests
from helpers import order_row, payment_row, unreachable_wechatpay
from sqlalchemy import select, update

from conftest import LiveServer, Shopper, wait_for
from storefront.extensions import db
from storefront.models import Order, OrderEvent, Payment, utcnow
from storefront.sandbox.models import SandboxApiCall, SandboxTransaction


@pytest.fixture
def serve(make_app):
    """Start a live shop + simulator with extra config; stopped after the test."""
    servers = []

    def start(**config) -> tuple[LiveServer, Shopper]:
        server = LiveServer(make_app(SANDBOX_NOTIFIER=True, **config))
        servers.append(server)
        return server, Shopper(server.url)

    yield start
    for server in servers:
        server.stop()




def history(app, order_no: str) -> list[OrderEvent]:
    with app.app_context():
        return db.session.scalar(select(Order).where(Order.order_no == order_no)).events


def moves(app, order_no: str) -> list[tuple[str, str, str]]:
    """(from, to, cause) of the order's status changes after its creation (attempt events left out)."""
    return [(e.from_status, e.to_status, e.cause) for e in history(app, order_no)
            if e.from_status and e.from_status != e.to_status]


def sim_state(app, out_trade_no: str) -> str:
    """The simulator's own trade_state (the test may look at both sides; the shop never does)."""
    with app.app_context():
        return db.session.scalar(select(SandboxTransaction.trade_state)
                                 .where(SandboxTransaction.out_trade_no == out_trade_no))


def queries_at_wechat(app, out_trade_no: str) -> int:
    with app.app_context():
        calls = db.session.scalars(select(SandboxApiCall.path).where(SandboxApiCall.method == "GET"))
        return sum(1 for path in calls if f"/out-trade-no/{out_trade_no}?" in path)


def expire_locally(app, out_trade_no: str, seconds_ago: int = 300) -> None:
    """Move the attempt's expiry into the past in the shop's table only."""
    with app.app_context():
        db.session.execute(update(Payment).where(Payment.out_trade_no == out_trade_no)
                           .values(expires_at=utcnow().replace(microsecond=0) - timedelta(seconds=seconds_ago)))
        db.session.commit()


def run_job(app, name: str) -> str:
    result = app.test_cli_runner().invoke(args=[name])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def checkout(shopper: Shopper) -> tuple[str, str]:
    """A pending order with an issued Native attempt: (order_no, out_trade_no)."""
    order_no = shopper.buy()["order_no"]
    return order_no, shopper.start_native(order_no)["out_trade_no"]


# -- lost notifications ----------------------------------------------------------------------------



def test_a_payment_applied_by_an_english_page_keeps_its_note_in_the_source_language(serve):
    """Pages translate stored notes on display (``|tr``): a note stored in the reader's language
    would show English to every Chinese reader of the order's history."""
    server, shopper = serve()
    order_no, out_trade_no = checkout(shopper)
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200

    # The English checkout page's poll applies the payment (an active query).
    poll = f"{server.url}/api/orders/{order_no}?lang=en"
    assert wait_for(lambda: shopper.http.get(poll, timeout=10).json()["status"] == "paid")
    paid = [e for e in history(server.app, order_no) if e.to_status == "paid" and e.from_status == "pending"]
    assert [(e.cause, e.note) for e in paid] == [("query", "微信支付确认收款")]
    page = shopper.http.get(f"{server.url}/orders/{order_no}?lang=en", timeout=10).text
    assert "WeChat Pay" in html.unescape(page) and "微信支付确认收款" not in page


def test_dropped_notification_is_recovered_by_the_pages_active_query(serve):
    server, shopper = serve()
    order_no, out_trade_no = checkout(shopper)
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200

    # The checkout page polls this endpoint; the shop queries WeChat Pay on its behalf.
    assert wait_for(lambda: shopper.order(order_no)["status"] == "paid")
    assert moves(server.app, order_no) == [("pending", "paid", "query")]
    paid = payment_row(server.app, out_trade_no)
    assert paid.status == "paid" and paid.transaction_id
    assert [n["state"] for n in shopper.notifications(out_trade_no)] == ["dropped"]


def test_active_query_is_rate_bounded_per_attempt(serve):
    server, shopper = serve(ACTIVE_QUERY_INTERVAL_SECONDS=60)
    order_no, out_trade_no = checkout(shopper)
    for _ in range(8):
        assert shopper.order(order_no)["status"] == "pending"
    assert queries_at_wechat(server.app, out_trade_no) == 1


def test_dropped_notification_is_recovered_by_reconcile(serve):
    server, shopper = serve(RECONCILE_AFTER_SECONDS=0, ACTIVE_QUERY_INTERVAL_SECONDS=3600)
    order_no, out_trade_no = checkout(shopper)
    shopper.order(order_no)  # a poll before the payment uses up the page's query allowance
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200
    assert shopper.order(order_no)["status"] == "pending"  # the page may not query again yet

    assert "1 found paid" in run_job(server.app, "reconcile")
    assert order_row(server.app, order_no).status == "paid"
    assert moves(server.app, order_no) == [("pending", "paid", "job")]
    assert "0 found paid" in run_job(server.app, "reconcile")  # nothing left open: changes nothing
    assert moves(server.app, order_no) == [("pending", "paid", "job")]


# USERPAYING is no query fault of a Native order: WeChat Pay answers it for payment-code orders
# only (tests/test_fidelity.py covers the payer typing the password instead).
@pytest.mark.parametrize("fault", ["SYSTEM_ERROR"])
def test_query_faults_leave_the_order_pending_until_a_later_query(serve, fault):
    server, shopper = serve(ACTIVE_QUERY_INTERVAL_SECONDS=0)
    order_no, out_trade_no = checkout(shopper)
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200
    answer = requests.post(f"{server.url}/sandbox/control/query-fault",
                           json={"out_trade_no": out_trade_no, "fault": fault}, timeout=10)
    assert answer.status_code == 200, answer.text

    assert shopper.order(order_no)["status"] == "pending"  # the faulty answer changed nothing
    assert payment_row(server.app, out_trade_no).status == "notpay"
    assert shopper.order(order_no)["status"] == "paid"
    assert moves(server.app, order_no) == [("pending", "paid", "query")]
    assert queries_at_wechat(server.app, out_trade_no) == 2


def test_reconcile_survives_a_system_error_and_applies_on_the_next_run(serve):
    server, shopper = serve(RECONCILE_AFTER_SECONDS=0, ACTIVE_QUERY_INTERVAL_SECONDS=3600)
    order_no, out_trade_no = checkout(shopper)
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200
    requests.post(f"{server.url}/sandbox/control/query-fault",
                  json={"out_trade_no": out_trade_no, "fault": "SYSTEM_ERROR"}, timeout=10).raise_for_status()

    assert "0 found paid" in run_job(server.app, "reconcile")
    assert order_row(server.app, order_no).status == "pending"
    assert "1 found paid" in run_job(server.app, "reconcile")
    assert moves(server.app, order_no) == [("pending", "paid", "job")]


# -- close-expired ---------------------------------------------------------------------------------


def test_close_expired_closes_at_wechat_first_then_locally_and_closes_the_order(serve):
    server, shopper = serve(CLOSE_GRACE_SECONDS=0)
    app = server.app
    order_no, out_trade_no = checkout(shopper)
    expire_locally(app, out_trade_no)

    # WeChat Pay unreachable: nothing may close locally, or a payer could pay a "closed" order.
    with unreachable_wechatpay(app):
        assert "closed 0 attempt(s)" in run_job(app, "close-expired")
    assert payment_row(app, out_trade_no).status == "notpay"
    assert order_row(app, order_no).status == "pending"
    assert sim_state(app, out_trade_no) == "NOTPAY"

    assert "closed 1 attempt(s)" in run_job(app, "close-expired")
    assert sim_state(app, out_trade_no) == "CLOSED"
    assert payment_row(app, out_trade_no).status == "closed"
    closed = order_row(app, order_no)
    assert closed.status == "closed" and closed.closed_at is not None
    assert moves(app, order_no) == [("pending", "closed", "job")]
    # The payer can no longer pay the old code.
    assert shopper.pay_in_simulator(out_trade_no).status_code == 409
    # A second run (or a second host) finds nothing left to do.
    assert "closed 0 attempt(s)" in run_job(app, "close-expired")


def test_close_expired_finishes_an_attempt_already_closed_at_wechat(serve):
    """A crash between WeChat's close and the local one: the next run sees ORDER_CLOSED and finishes."""
    server, shopper = serve(CLOSE_GRACE_SECONDS=0)
    app = server.app
    order_no, out_trade_no = checkout(shopper)
    with app.app_context():
        from storefront import gateway

        gateway.client().close_order(out_trade_no)  # closed at WeChat, the shop never recorded it
    expire_locally(app, out_trade_no)

    assert "closed 1 attempt(s)" in run_job(app, "close-expired")
    assert payment_row(app, out_trade_no).status == "closed"
    assert order_row(app, order_no).status == "closed"


def test_close_expired_meeting_a_faster_payer_marks_the_order_paid(serve):
    server, shopper = serve(CLOSE_GRACE_SECONDS=0)
    app = server.app
    order_no, out_trade_no = checkout(shopper)
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200
    expire_locally(app, out_trade_no)

    output = run_job(app, "close-expired")
    assert "closed 0 attempt(s); 1 turned out paid" in output
    order = order_row(app, order_no)
    assert order.status == "paid" and not order.needs_review
    assert payment_row(app, out_trade_no).status == "paid"
    assert sim_state(app, out_trade_no) == "SUCCESS"
    assert [m for m in moves(app, order_no) if m[1] == "paid"] == [("pending", "paid", "query")]


def test_renewal_meeting_a_faster_payer_answers_orderpaid_and_shows_paid(serve):
    server, shopper = serve()
    app = server.app
    order_no, out_trade_no = checkout(shopper)
    assert shopper.pay_in_simulator(out_trade_no, notify="drop").status_code == 200
    expire_locally(app, out_trade_no)  # the countdown reached zero: the page asks for a new code

    answer = shopper.http.post(f"{server.url}/api/orders/{order_no}/payments", json={"method": "native"}, timeout=10)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "ORDERPAID"
    assert shopper.order(order_no)["status"] == "paid"
    with app.app_context():
        assert db.session.scalar(select(Payment.id).where(Payment.out_trade_no != out_trade_no,
                                                          Payment.out_trade_no.like(f"{order_no}%"))) is None


# -- attempts: reuse, renewal, bound ----------------------------------------------------------------


def _page_attempt(shopper: Shopper, order_no: str) -> str:
    page = shopper.open_checkout(order_no)
    assert page.status_code == 200, page.text[:500]
    return re.search(r'id="out-trade-no">([^<]+)<', page.text).group(1)


def test_shopper_who_leaves_and_comes_back_gets_the_still_valid_attempt(serve):
    server, shopper = serve()
    order_no = shopper.buy()["order_no"]
    first = _page_attempt(shopper, order_no)
    assert _page_attempt(shopper, order_no) == first  # reload
    assert shopper.start_native(order_no)["out_trade_no"] == first  # the API agrees
    with server.app.app_context():
        count = len(db.session.scalars(select(Payment.id).where(Payment.out_trade_no.like(f"{order_no}%"))).all())
    assert count == 1


def test_short_lifetimes_still_reuse_a_fresh_attempt(serve):
    """A 20 s code (tests, demos) is reused while it has more than a quarter of its life left."""
    server, shopper = serve(PAYMENT_TTL_SECONDS=20)
    order_no = shopper.buy()["order_no"]
    first = _page_attempt(shopper, order_no)
    assert _page_attempt(shopper, order_no) == first
    expire_locally(server.app, first, seconds_ago=-4)  # 4 s left: under the margin, renewed
    second = _page_attempt(shopper, order_no)
    assert second != first
    assert payment_row(server.app, first).status == "closed"
    assert sim_state(server.app, first) == "CLOSED"


def test_attempts_per_order_are_bounded(serve):
    server, shopper = serve(MAX_ATTEMPTS_PER_ORDER=3)
    order_no = shopper.buy()["order_no"]
    seen = []
    for _ in range(3):
        seen.append(shopper.start_native(order_no)["out_trade_no"])
        expire_locally(server.app, seen[-1])
    assert len(set(seen)) == 3

    answer = shopper.http.post(f"{server.url}/api/orders/{order_no}/payments", json={"method": "native"}, timeout=10)
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "TOO_MANY_ATTEMPTS"
    page = shopper.open_checkout(order_no)
    assert page.status_code == 409 and "Traceback" not in page.text
    assert [sim_state(server.app, no) for no in seen] == ["CLOSED", "CLOSED", "CLOSED"]


# -- the order page ---------------------------------------------------------------------------------


CAUSE_LABELS = {"shopper": "顾客", "notify": "支付通知", "query": "主动查询", "job": "定时任务"}


def test_order_page_shows_the_whole_history(serve):
    server, shopper = serve(CLOSE_GRACE_SECONDS=0)
    app = server.app
    order_no, first = checkout(shopper)
    expire_locally(app, first)
    second = shopper.start_native(order_no)["out_trade_no"]  # renewal: the shopper closes the first
    assert second != first
    assert shopper.pay_in_simulator(second, notify="drop").status_code == 200
    assert wait_for(lambda: shopper.order(order_no)["status"] == "paid")

    events = history(app, order_no)
    assert [e.cause for e in events] == ["shopper", "shopper", "query"]
    page = shopper.http.get(f"{server.url}/orders/{order_no}", timeout=10)
    assert page.status_code == 200
    text = html.unescape(page.text)
    timeline = text[text.index('class="timeline"'):]
    for event in events:
        assert event.note and event.note in timeline
        assert CAUSE_LABELS[event.cause] in timeline
        assert event.wechat_ref is None or event.wechat_ref in timeline
    assert events[-1].wechat_ref == payment_row(app, second).transaction_id  # the query's answer, for audits
    assert first in timeline  # the closed attempt is named in its event
    assert timeline.count('class="timeline__item') == len(events)


def test_one_job_run_drains_a_backlog_larger_than_a_batch(serve, monkeypatch):
    """Cron runs once a minute: a run must close everything due, not just its first batch."""
    from storefront.services import jobs

    monkeypatch.setattr(jobs, "BATCH", 2)
    server, shopper = serve(CLOSE_GRACE_SECONDS=0, RECONCILE_AFTER_SECONDS=0)
    attempts = [checkout(shopper) for _ in range(5)]
    assert "queried 5 attempt(s); 0 found paid" in run_job(server.app, "reconcile")
    for _order_no, out_trade_no in attempts:
        expire_locally(server.app, out_trade_no)
    assert "closed 5 attempt(s)" in run_job(server.app, "close-expired")
    assert {order_row(server.app, order_no).status for order_no, _ in attempts} == {"closed"}


def test_in_process_scheduler_runs_the_jobs(serve):
    """``make run`` sets SCHEDULER_INTERVAL_SECONDS: expired attempts close without cron."""
    server, shopper = serve(SCHEDULER_INTERVAL_SECONDS=0.2, CLOSE_GRACE_SECONDS=0, RECONCILE_AFTER_SECONDS=0)
    try:
        order_no, out_trade_no = checkout(shopper)
        expire_locally(server.app, out_trade_no)
        assert wait_for(lambda: order_row(server.app, order_no).status == "closed")
        assert sim_state(server.app, out_trade_no) == "CLOSED"
        paid_no, paid_trade = checkout(shopper)
        assert shopper.pay_in_simulator(paid_trade, notify="drop").status_code == 200
        assert wait_for(lambda: order_row(server.app, paid_no).status == "paid")  # reconcile found it
        assert moves(server.app, paid_no) == [("pending", "paid", "job")]
    finally:
        server.app.extensions["scheduler"].set()
