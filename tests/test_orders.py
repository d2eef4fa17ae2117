"""The order state machine in process: tables of (state, event) → outcome, no server, no HTTP.

``services/orders.py`` is the one place that changes an order's, an attempt's or a refund's
status; these tables pin every move it allows and every one it refuses.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import new_order, open_attempt, refund_of
from sqlalchemy import select
from sqlalchemy import text as sa_text

from storefront.extensions import db
from storefront.models import OrderEvent, OrderStatus, Payment, PaymentStatus, RefundStatus, utcnow
from storefront.services import orders, refund_states
from storefront.services.orders import OrderError, PaymentOutcome
from storefront.services.refund_states import RefundOutcome

P, C, D, R = OrderStatus.PENDING, OrderStatus.CLOSED, OrderStatus.PAID, OrderStatus.REFUNDED


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def pay(payment: Payment, amount: int | None = None, transaction_id: str = "4200000001") -> PaymentOutcome:
    """WeChat Pay reports the attempt paid; committed as its caller (a query, a notification) does."""
    outcome = orders.apply_payment(payment.out_trade_no, transaction_id=transaction_id,
                                   amount_total=payment.amount_total if amount is None else amount,
                                   paid_at=utcnow(), cause="notify")
    db.session.commit()
    return outcome


def reload(row):
    db.session.refresh(row)
    return row


# -- the transition table ----------------------------------------------------------------------

ALL = [P, C, D, R]


@pytest.mark.parametrize("source", ALL)
@pytest.mark.parametrize("target", ALL)
def test_only_the_table_s_moves_are_legal(source, target):
    legal = {(P, D), (P, C), (D, R), (C, D)}
    assert ((source, target) in orders.TRANSITIONS) == ((source, target) in legal)


# -- applying a payment WeChat Pay reported: (order state, attempt state) → outcome ---------------

def _setup(state: str):
    """An order and the attempt a notification is about, in the named starting state."""
    order = new_order()
    payment = open_attempt(order)
    if state == "pending/notpay":
        pass
    elif state == "pending/closed":
        orders.close_payment(payment.id, "job")
    elif state == "closed/closed":
        orders.close_payment(payment.id, "job")
        assert orders.close_order_if_unpaid(order.id, "job")
    elif state == "paid/paid":
        assert pay(payment) == PaymentOutcome.APPLIED
    elif state == "paid-by-another/closed":
        orders.close_payment(payment.id, "shopper")
        first = open_attempt(order)
        assert pay(first, transaction_id="4200000000") == PaymentOutcome.APPLIED
        # The closed attempt is the one now reported paid.
    return order, payment


PAYMENT_TABLE = [
    # starting state,          outcome,                 order after, attempt after, needs_review
    ("pending/notpay",         PaymentOutcome.APPLIED,   D, PaymentStatus.PAID, False),
    ("pending/closed",         PaymentOutcome.LATE,      D, PaymentStatus.PAID, True),
    ("closed/closed",          PaymentOutcome.LATE,      D, PaymentStatus.PAID, True),
    ("paid/paid",              PaymentOutcome.DUPLICATE, D, PaymentStatus.PAID, False),
    ("paid-by-another/closed", PaymentOutcome.DOUBLE, D, PaymentStatus.PAID, True),
]


@pytest.mark.parametrize("state,outcome,order_after,payment_after,review", PAYMENT_TABLE)
def test_apply_payment(ctx, state, outcome, order_after, payment_after, review):
    order, payment = _setup(state)
    assert pay(payment) == outcome
    assert reload(order).status == order_after
    assert reload(order).needs_review is review
    assert reload(payment).status == payment_after


@pytest.mark.parametrize("state", ["pending/notpay", "closed/closed"])
@pytest.mark.parametrize("amount,code,status", [(1, "AMOUNT_MISMATCH", 400), (None, "ORDER_NOT_EXIST", 404)])
def test_a_payment_that_is_not_ours_changes_nothing(ctx, state, amount, code, status):
    order, payment = _setup(state)
    before = (reload(order).status, reload(payment).status)
    with pytest.raises(OrderError) as refused:
        if amount is None:
            orders.apply_payment("NO-SUCH-ATTEMPT", transaction_id="42", amount_total=1, paid_at=utcnow(),
                                 cause="notify")
        else:
            pay(payment, amount=amount)
    assert (refused.value.code, refused.value.status) == (code, status)
    db.session.rollback()
    assert (reload(order).status, reload(payment).status) == before


# -- closing: (state, event) → changed? ----------------------------------------------------------

CLOSE_TABLE = [
    # state,            close the attempt, then close the order if unpaid → order after, first time?
    ("pending/notpay", True, C),
    ("pending/closed", False, C),  # the attempt was already closed: the order closes now
    ("paid/paid", False, D),  # never close a paid order
]


@pytest.mark.parametrize("state,attempt_closes,order_after", CLOSE_TABLE)
def test_close(ctx, state, attempt_closes, order_after):
    order, payment = _setup(state)
    assert orders.close_payment(payment.id, "job") is attempt_closes
    assert orders.close_order_if_unpaid(order.id, "job") is (order_after == C)
    assert reload(order).status == order_after
    assert orders.close_order_if_unpaid(order.id, "job") is False  # second time: nothing changes


def test_an_order_with_an_open_attempt_is_not_closed(ctx):
    order, _payment = _setup("pending/notpay")
    assert orders.close_order_if_unpaid(order.id, "job") is False
    assert reload(order).status == P


def test_every_status_change_is_recorded(ctx):
    order, payment = _setup("pending/notpay")
    pay(payment)
    moves = [(e.from_status, e.to_status) for e in reload(order).events]
    assert moves == [("", P), (P, D)]
    # The creation is the order row's own: only the payment is a stored row.
    assert [(e.from_status, e.to_status) for e in db.session.scalars(
        select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id))] == [(P, D)]


def test_an_order_s_creation_stored_by_an_earlier_version_shows_once(ctx):
    order = new_order()
    db.session.add(OrderEvent(order_id=order.id, from_status="", to_status=P, cause="shopper", note="下单"))
    db.session.commit()
    assert [(e.from_status, e.to_status, e.cause, e.note) for e in reload(order).events] == [("", P, "shopper", "下单")]
    assert reload(order).events[0].id != 0  # the stored one


def test_an_order_s_creation_is_read_from_the_order_row(ctx):
    order = new_order()
    [created] = reload(order).events
    assert (created.from_status, created.to_status, created.cause, created.note) == ("", P, "shopper", "下单")
    assert created.at == order.created_at and created.payment_id is None and created.wechat_ref is None
    assert created not in db.session and db.session.scalar(select(OrderEvent.id)) is None


# -- starting attempts ----------------------------------------------------------------------------

@pytest.mark.parametrize("state,code", [("paid/paid", "ORDERPAID"), ("closed/closed", "ORDER_CLOSED")])
def test_no_attempt_starts_on_a_finished_order(ctx, state, code):
    order, _payment = _setup(state)
    with pytest.raises(OrderError) as refused:
        orders.start_payment(reload(order), "native", 600, 10)
    assert refused.value.code == code


def test_a_started_attempt_is_what_was_written_and_nothing_is_read_back(ctx):
    """The new attempt comes back loaded (defaults included) as the row stored it: reading it,
    and the commit, send no statement (it is written with Core, not flushed)."""
    from sqlalchemy import event

    order = new_order()
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        payment = orders.start_payment(order, "native", 600, 10)
        written = len(statements)
        shown = {column.key: getattr(payment, column.key) for column in Payment.__table__.c}
        db.session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert written == len(statements), statements[written:]
    # Open before WeChat Pay is asked (the jobs find it if the call never returns), nothing issued yet.
    assert shown["status"] == PaymentStatus.NOTPAY and shown["code_url"] is None and not payment.is_issued
    assert shown["refund_reserved"] == 0 and shown["created_at"]
    assert shown["out_trade_no"] == f"{order.order_no}P01" and shown["amount_total"] == order.amount_total
    db.session.expunge_all()
    assert {column.key: getattr(db.session.get(Payment, payment.id), column.key)
            for column in Payment.__table__.c} == shown


def test_reuse_needs_time_left(ctx):
    order = new_order()
    short = open_attempt(order, ttl_seconds=5)
    assert orders.reusable_payment(order, "native", min_remaining_seconds=30) is None
    assert orders.reusable_payment(order, "native", min_remaining_seconds=1).id == short.id
    assert orders.reusable_payment(order, "h5", min_remaining_seconds=1) is None
    db.session.execute(Payment.__table__.update().where(Payment.id == short.id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert orders.reusable_payment(order, "native", min_remaining_seconds=0) is None


def test_an_attempt_wechat_pay_has_not_answered_for_is_open_but_never_reused(ctx):
    order = new_order()
    payment = orders.start_payment(order, "native", 600, 10)
    assert payment.is_open and not payment.is_issued and payment.status_label == "创建中"
    assert orders.reusable_payment(order, "native", min_remaining_seconds=1) is None
    assert orders.reusable_among(orders.attempts(order.id), "native", min_remaining_seconds=1) is None
    assert [p.id for p in orders.open_payments(order.id)] == [payment.id]  # what the jobs settle
    assert orders.payment_issued(payment.id, "weixin://wxpay/bizpayurl?pr=test")
    assert orders.reusable_payment(order, "native", min_remaining_seconds=1).id == payment.id


def test_an_attempt_written_created_by_an_earlier_version_is_issued_or_failed_as_before(ctx):
    order = new_order()
    first = orders.start_payment(order, "native", 600, 10)
    db.session.execute(Payment.__table__.update().where(Payment.id == first.id).values(status="created"))
    assert orders.payment_issued(first.id, "weixin://wxpay/bizpayurl?pr=test")
    assert reload(first).status == PaymentStatus.NOTPAY and first.code_url
    orders.close_payment(first.id, "shopper")
    second = orders.start_payment(order, "native", 600, 10)
    db.session.execute(Payment.__table__.update().where(Payment.id == second.id).values(status="created"))
    assert orders.payment_failed(second.id) and reload(second).status == PaymentStatus.FAILED
    assert not orders.payment_issued(second.id, "weixin://wxpay/bizpayurl?pr=late")  # a failed one stays failed


def test_issuing_an_attempt_changes_no_indexed_column(ctx):
    """PostgreSQL: the issued UPDATE is a HOT update (no new index entry); SQLite has no such thing."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("HOT updates are PostgreSQL's")

    def hot_updates() -> int:
        db.session.commit()
        db.session.execute(sa_text("SELECT pg_stat_clear_snapshot()"))
        return db.session.scalar(sa_text(
            "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'payments'::regclass")) or 0

    order = new_order()
    payment = orders.start_payment(order, "native", 600, 10)
    before = hot_updates()
    assert orders.payment_issued(payment.id, "weixin://wxpay/bizpayurl?pr=test")
    db.session.execute(sa_text("SELECT pg_stat_force_next_flush()"))  # counted when the backend is idle
    db.session.commit()
    assert hot_updates() == before + 1


# -- refunds: (refund state, WeChat's report) → outcome, refund after ----------------------------

def _refund(state: str):
    order, payment = _setup("pending/notpay")
    pay(payment)
    refund = refund_states.create_refund(reload(payment), payment.amount_total, reason="test")
    if state == "abnormal":
        refund_states.apply_refund(refund.out_refund_no, wechat_status="ABNORMAL", refund_id="5030", amount=None,
                            succeeded_at=None, cause="query")
        db.session.commit()
    elif state == "success":
        refund_states.apply_refund(refund.out_refund_no, wechat_status="SUCCESS", refund_id="5030", amount=None,
                            succeeded_at=None, cause="query")
        db.session.commit()
    elif state == "closed":
        refund_states.apply_refund(refund.out_refund_no, wechat_status="CLOSED", refund_id="5030", amount=None,
                            succeeded_at=None, cause="query")
        db.session.commit()
    return order, payment, refund


REFUND_TABLE = [
    # refund state, WeChat reports, outcome,                    refund after,          order after
    ("pending",  "PROCESSING", RefundOutcome.PROCESSING, RefundStatus.PENDING,  D),
    ("pending",  "SUCCESS",    RefundOutcome.APPLIED,    RefundStatus.SUCCESS,  R),
    ("pending",  "ABNORMAL",   RefundOutcome.APPLIED,    RefundStatus.ABNORMAL, D),
    ("pending",  "CLOSED",     RefundOutcome.APPLIED,    RefundStatus.CLOSED,   D),
    ("abnormal", "SUCCESS",    RefundOutcome.APPLIED,    RefundStatus.SUCCESS,  R),
    ("abnormal", "CLOSED",     RefundOutcome.APPLIED,    RefundStatus.CLOSED,   D),
    ("success",  "SUCCESS",    RefundOutcome.DUPLICATE,  RefundStatus.SUCCESS,  R),
    ("success",  "CLOSED",     RefundOutcome.DUPLICATE,  RefundStatus.SUCCESS,  R),
    ("closed",   "SUCCESS",    RefundOutcome.DUPLICATE,  RefundStatus.CLOSED,   D),
]


@pytest.mark.parametrize("state,reported,outcome,refund_after,order_after", REFUND_TABLE)
def test_apply_refund(ctx, state, reported, outcome, refund_after, order_after):
    order, _payment, refund = _refund(state)
    assert refund_states.apply_refund(refund.out_refund_no, wechat_status=reported, refund_id="5030", amount=None,
                               succeeded_at=None, cause="notify") == outcome
    db.session.commit()
    assert refund_of(refund.id).status == refund_after
    assert reload(order).status == order_after


@pytest.mark.parametrize("state,reserved_after", [("pending", True), ("closed", False)])
def test_a_closed_refund_gives_the_amount_back(ctx, state, reserved_after):
    _order, payment, _refund_row = _refund(state)
    assert (reload(payment).refund_reserved == payment.amount_total) is reserved_after


def test_refunds_never_exceed_what_was_paid(ctx):
    _order, payment, _refund_row = _refund("pending")
    with pytest.raises(OrderError) as refused:
        refund_states.create_refund(reload(payment), 1)
    assert refused.value.code == "REFUND_EXCEEDS_PAID"


def test_a_refused_refund_is_failed_once(ctx):
    _order, payment, refund = _refund("pending")
    assert refund_states.refund_failed(refund.id, "INVALID_REQUEST: test") is True
    assert refund_states.refund_failed(refund.id, "INVALID_REQUEST: test") is False
    assert refund_of(refund.id).status == RefundStatus.FAILED
    assert reload(payment).refund_reserved == 0



def test_an_order_number_drawn_twice_in_one_second_is_drawn_again(ctx, monkeypatch):
    """Two orders made in the same second may draw the same random digits: the second one gets
    another number instead of the shopper getting an error (seen under load: 1 in 800)."""
    first = new_order()
    draws = iter([first.order_no, first.order_no, "SF20261130120000123456"])
    monkeypatch.setattr(orders, "new_order_no", lambda: next(draws))
    second = new_order(owner="shopper-2")
    assert second.order_no == "SF20261130120000123456" and second.id != first.id
    assert [e.to_status for e in second.events] == [OrderStatus.PENDING]
