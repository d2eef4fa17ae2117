"""The order lifecycle at scale: how fast ``close-expired`` drains a backlog, and whether the checkout
page stays as fast with 100,000 orders in the database as with 100.

Each returns ``report.Line``s and raises ``BenchError`` if the run was not what it claims to measure.
Rows are bulk-inserted straight into the tables (the shop's and the simulator's): what is measured
is the job and the page, not how the rows came to be.
"""

from __future__ import annotations

import re
import secrets
import statistics
import time
from datetime import timedelta

import requests
from sqlalchemy import func, insert, select, text

from storefront import gateway
from storefront.extensions import db
from storefront.models import Order, OrderEvent, OrderStatus, Payment, PaymentStatus, Product, utcnow
from storefront.sandbox.models import SandboxTransaction
from storefront.services import jobs

from .env import BenchError, Environment
from .report import Line

CHUNK = 5000  # rows per INSERT ... VALUES statement group


def _chunks(rows: list[dict]):
    for start in range(0, len(rows), CHUNK):
        yield rows[start:start + CHUNK]


def _insert(table, rows: list[dict]) -> None:
    for chunk in _chunks(rows):
        db.session.execute(insert(table), chunk)
    db.session.commit()


def _sandbox_transactions(env: Environment, out_trade_nos: list[str], amount: int) -> None:
    """NOTPAY transactions at the simulator, as if each attempt had been issued a code_url there."""
    creds = env.gateway.credentials
    now = utcnow()
    _insert(SandboxTransaction.__table__, [
        {"mchid": creds.mchid, "appid": creds.appid, "out_trade_no": no, "trade_type": "NATIVE",
         "description": "bench", "amount_total": amount, "currency": "CNY", "notify_url": "http://127.0.0.1:9/notify",
         "time_expire": now + timedelta(hours=1), "code_expires_at": now + timedelta(hours=2), "created_at": now,
         "trade_state": "NOTPAY", "pay_token": secrets.token_hex(8), "fingerprint": "{}"}
        for no in out_trade_nos
    ])


# -- 1. close-expired over a backlog of expired attempts -------------------------------------------


def close_expired_rate(env: Environment, attempts: int = 10_000, baseline_calls: int = 1_000) -> list[Line]:
    """``jobs.close_expired()`` over ``attempts`` expired attempts, against bare signed close calls.

    Ours: one run of the job (what ``flask close-expired`` runs) over the backlog: per attempt a
    signed ``POST …/close`` to the simulator (verified answer), then the local conditional UPDATEs,
    the events and the order's close. Baseline: the same client closing other NOTPAY transactions
    in a loop, nothing else: the WeChat Pay round trip the job cannot avoid. Both run in this
    process against the same loopback simulator, half the baseline before the job, half after.
    """
    tag = secrets.token_hex(3).upper()
    with env.app.app_context():
        product = db.session.get(Product, 1)
        amount = product.price_total
        now = utcnow().replace(microsecond=0)
        orders = [{"order_no": f"BX{tag}{i:07d}", "owner": "bench", "product_id": product.id,
                   "product_name": product.name, "quantity": 1, "unit_price": amount, "amount_total": amount,
                   "status": OrderStatus.PENDING, "needs_review": False, "created_at": now - timedelta(minutes=20)}
                  for i in range(attempts)]
        _insert(Order.__table__, orders)
        ids = dict(db.session.execute(select(Order.order_no, Order.id).where(Order.order_no.like(f"BX{tag}%"))).all())
        payments = [{"order_id": ids[o["order_no"]], "out_trade_no": o["order_no"] + "P01", "method": "native",
                     "status": PaymentStatus.NOTPAY, "amount_total": amount, "code_url": "weixin://bench",
                     "expires_at": now - timedelta(minutes=5), "created_at": now - timedelta(minutes=20)}
                    for o in orders]
        _insert(Payment.__table__, payments)
        _sandbox_transactions(env, [p["out_trade_no"] for p in payments], amount)
        bare = [f"BY{tag}{i:07d}" for i in range(baseline_calls)]
        _sandbox_transactions(env, bare, amount)
        db.session.remove()

    def bare_closes(numbers: list[str]) -> float:
        with env.app.app_context():
            client = gateway.client()
            started = time.perf_counter()
            for number in numbers:
                client.close_order(number)
            elapsed = time.perf_counter() - started
            db.session.remove()
        return elapsed

    half = len(bare) // 2
    baseline_elapsed = bare_closes(bare[:half])
    with env.app.app_context():
        started = time.perf_counter()
        closed, paid = jobs.close_expired()
        job_elapsed = time.perf_counter() - started
        still_open = db.session.scalar(select(func.count()).select_from(Payment).where(
            Payment.out_trade_no.like(f"BX{tag}%"), Payment.status != PaymentStatus.CLOSED))
        orders_closed = db.session.scalar(select(func.count()).select_from(Order).where(
            Order.order_no.like(f"BX{tag}%"), Order.status == OrderStatus.CLOSED))
        db.session.remove()
    baseline_elapsed += bare_closes(bare[half:])
    if closed != attempts or paid or still_open or orders_closed != attempts:
        raise BenchError(f"close-expired closed {closed}/{attempts} (paid {paid}); {still_open} attempts still open, "
                         f"{orders_closed} orders closed")
    return [Line(
        name="attempts closed by close-expired",
        ours=attempts / job_elapsed, baseline=len(bare) / baseline_elapsed, baseline_label="bare close calls",
        aim=0.5,
        notes=[f"one run of jobs.close_expired() over {attempts} expired Native attempts (NOTPAY at the simulator) "
               f"in {job_elapsed:.1f} s, each closed at WeChat Pay (signed POST, verified answer) then locally, "
               f"with its order; baseline: {len(bare)} bare Client.close_order calls to the same simulator. The "
               f"simulator runs in this process, so its signing and bookkeeping count on both sides, as the network "
               f"latency to api.mch.weixin.qq.com (tens of ms a call) would in production; database "
               f"{_database_label(env)}"],
    )]


# -- 2. checkout page latency against the size of the tables ---------------------------------------


def _filler(env: Environment, count: int, tag: str) -> None:
    """``count`` finished orders (9 in 10 paid, the rest closed), each with its attempt and two events."""
    with env.app.app_context():
        product = db.session.get(Product, 1)
        amount = product.price_total
        now = utcnow().replace(microsecond=0)
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            rows = []
            for i in range(start, start + size):
                created = now - timedelta(days=30, seconds=-i * 20)
                paid = i % 10 != 0
                rows.append({"order_no": f"BF{tag}{i:07d}", "owner": f"bench-{i % 5000}", "product_id": product.id,
                             "product_name": product.name, "quantity": 1, "unit_price": amount,
                             "amount_total": amount, "status": OrderStatus.PAID if paid else OrderStatus.CLOSED,
                             "needs_review": False, "created_at": created,
                             "paid_at": created + timedelta(minutes=1) if paid else None,
                             "closed_at": None if paid else created + timedelta(minutes=16)})
            db.session.execute(insert(Order.__table__), rows)
            ids = db.session.execute(select(Order.order_no, Order.id, Order.status, Order.created_at).where(
                Order.order_no.in_([r["order_no"] for r in rows]))).all()
            db.session.execute(insert(Payment.__table__), [
                {"order_id": order_id, "out_trade_no": order_no + "P01", "method": "native",
                 "status": PaymentStatus.PAID if status == OrderStatus.PAID else PaymentStatus.CLOSED,
                 "amount_total": amount, "code_url": "weixin://bench", "created_at": created,
                 "expires_at": created + timedelta(minutes=15),
                 "transaction_id": f"42{order_id:026d}" if status == OrderStatus.PAID else None}
                for order_no, order_id, status, created in ids])
            # The shop stores no event for an order's creation (``Order.events``): only the change.
            db.session.execute(insert(OrderEvent.__table__), [
                {"order_id": order_id, "at": created + timedelta(minutes=1), "from_status": OrderStatus.PENDING,
                 "to_status": status, "cause": "notify" if status == OrderStatus.PAID else "job", "note": "bench"}
                for order_no, order_id, status, created in ids])
            db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # A table that grew to this size in production has planner statistics; give them now.
            db.session.execute(text("ANALYZE orders, payments, order_events"))
            db.session.commit()
        db.session.remove()


def _order_count(env: Environment) -> int:
    with env.app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Order))
        db.session.remove()
    return count


def _latencies(http: requests.Session, url: str, count: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        http.get(url, timeout=30).content
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = http.get(url, timeout=30)
        answer.content
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise BenchError(f"GET {url}: {answer.status_code} {answer.text[:200]}")
    return times


def _best_round(http: requests.Session, url: str, count: int, warmup: int, rounds: int = 2) -> list[float]:
    """The round with the lowest median: a bulk fill leaves cold caches and a checkpoint behind."""
    return min((_latencies(http, url, count, warmup) for _ in range(rounds)), key=statistics.median)


def checkout_latency(env: Environment, small: int = 100, large: int = 100_000, requests_each: int = 200,
                     warmup: int = 20) -> list[Line]:
    """``GET /orders/<no>/pay`` of an order with a valid attempt: ``small`` orders in the tables, then ``large``.

    The same order, the same shopper session and the same still-valid attempt on both sides (the page
    reuses it: no call to WeChat Pay while measuring); sequential requests, median latency compared.
    The fill is finished orders (paid or closed) with an attempt and two events each.
    """
    tag = secrets.token_hex(3).upper()
    http = requests.Session()
    created = http.post(f"{env.shop.url}/api/orders", json={"product_id": 1, "quantity": 1}, timeout=30)
    if created.status_code != 201:
        raise BenchError(f"order: {created.status_code} {created.text[:200]}")
    order_no = created.json()["order_no"]
    url = f"{env.shop.url}/orders/{order_no}/pay"
    first = http.get(url, timeout=30)  # the start form: a GET never issues an attempt
    token = re.search(r'name="csrf_token" value="([^"]+)"', first.text)
    if first.status_code == 200 and token:
        # What the page's script does: POST the start form, which issues the attempt at the simulator once.
        first = http.post(url, data={"csrf_token": token.group(1), "method": "native"}, timeout=30)
    if first.status_code != 200:
        raise BenchError(f"checkout page: {first.status_code} {first.text[:200]}")

    existing = _order_count(env)
    if existing < small:
        _filler(env, small - existing, tag + "S")
    small_count = _order_count(env)
    small_times = _best_round(http, url, requests_each, warmup)
    _filler(env, max(0, large - small_count), tag + "L")
    large_count = _order_count(env)
    large_times = _best_round(http, url, requests_each, warmup)
    with env.app.app_context():
        attempts = db.session.scalar(select(func.count()).select_from(Payment).join(Order).where(
            Order.order_no == order_no))
        db.session.remove()
    if attempts != 1:
        raise BenchError(f"the checkout page made {attempts} attempts; the measurement needs the one reused")

    small_median, large_median = statistics.median(small_times), statistics.median(large_times)
    p90 = [statistics.quantiles(times, n=10)[-1] * 1000 for times in (small_times, large_times)]
    return [Line(
        name=f"checkout page, {large_count:,} vs {small_count:,} orders",
        ours=1 / large_median, baseline=1 / small_median, baseline_label=f"{small_count:,} orders",
        aim=1 / 1.5,
        notes=[f"GET /orders/<no>/pay of one order with a valid Native attempt (reused: no WeChat Pay call), "
               f"{requests_each} sequential requests after {warmup} warm-up, best of 2 rounds each side; median {small_median * 1000:.1f} ms "
               f"with {small_count:,} orders, {large_median * 1000:.1f} ms with {large_count:,} (p90 {p90[0]:.1f} / "
               f"{p90[1]:.1f} ms): latency ratio {large_median / small_median:.2f} (aim <= 1.5). Fill: finished "
               f"orders with one attempt and two events each; database {_database_label(env)}"],
    )]


def _database_label(env: Environment) -> str:
    with env.app.app_context():
        name = db.engine.dialect.name
        db.session.remove()
    return name
