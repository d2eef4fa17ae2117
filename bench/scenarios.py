"""The three measurements. Each returns ``report.Line``s and raises ``BenchError`` if the run
was not what it claims to measure (a request failed, a row was not updated)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import timedelta

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine

from storefront.extensions import db
from storefront.models import Order, OrderStatus, Payment, PaymentStatus, Product, utcnow
from storefront.sandbox.models import SandboxTransaction
from storefront.services import rawsql

from . import DEFAULTS
from .env import BenchError, Environment
from .report import Line, Measure

# -- 1. notifications against the bare UPDATE ---------------------------------------------------


def _pending_attempts(env: Environment, count: int, tag: str) -> list[tuple[str, int]]:
    """``count`` pending orders, each with one payable Native attempt: (out_trade_no, amount)."""
    with env.app.app_context():
        product = db.session.get(Product, 1)
        expires = utcnow().replace(microsecond=0) + timedelta(minutes=15)
        orders = []
        for i in range(count):
            order_no = f"BN{tag}{i:06d}"
            order = Order(order_no=order_no, owner="bench", product_id=product.id, product_name=product.name,
                          quantity=1, unit_price=product.price_total, amount_total=product.price_total,
                          status=OrderStatus.PENDING)
            order.payments.append(Payment(out_trade_no=f"{order_no}P01", method="native",
                                          status=PaymentStatus.NOTPAY, amount_total=product.price_total,
                                          expires_at=expires, code_url="weixin://wxpay/bizpayurl?pr=bench"))
            orders.append(order)
        db.session.add_all(orders)
        db.session.commit()
        attempts = [(order.payments[0].out_trade_no, order.payments[0].amount_total) for order in orders]
        db.session.remove()
    return attempts


def _notifications(env: Environment, attempts: list[tuple[str, int]]) -> list[tuple[dict[str, str], bytes]]:
    """Signed, encrypted TRANSACTION.SUCCESS notifications, one per attempt, as the simulator sends."""
    platform = env.platform
    creds = env.gateway.credentials
    openid = platform.openid(creds.appid)
    paid_at = utcnow().replace(microsecond=0)
    built = []
    with env.app.app_context():  # the simulator reads its settings (clock) from its database
        for out_trade_no, amount in attempts:
            txn = SandboxTransaction(
                mchid=creds.mchid, appid=creds.appid, out_trade_no=out_trade_no, trade_type="NATIVE",
                transaction_id="4200002" + "".join(secrets.choice("0123456789") for _ in range(21)),
                bank_type="OTHERS", attach=None, success_time=paid_at, payer_openid=openid, amount_total=amount,
            )
            _event_id, body = platform.payment_notification_body(txn)
            built.append((platform.notification_headers(body), body.encode("utf-8")))
        db.session.remove()
    return built


def _check(kind: str, result: dict, expected_status: int) -> None:
    bad = {status: n for status, n in result["statuses"].items() if int(status) != expected_status}
    done = sum(result["statuses"].values())
    if bad or done != result["count"] or result.get("errors"):
        raise BenchError(f"{kind}: {done}/{result['count']} answered, unexpected {bad}; {result.get('errors')}")


class Meter:
    """Server-side cost of what runs inside it: this process's CPU seconds and COMMITs.

    With the load generator in its own process (``client_mode="process"``) this process runs only
    the servers while a measurement runs, so CPU per request is the servers' own cost: far less
    sensitive to a busy machine than requests per second. COMMITs count every engine's
    (SQLite: each one that wrote is an fsync of the WAL).
    """

    def __init__(self) -> None:
        self.cpu = 0.0
        self.commits = 0
        self._lock = threading.Lock()

    def _on_commit(self, _connection) -> None:
        with self._lock:
            self.commits += 1

    def __enter__(self) -> Meter:
        event.listen(Engine, "commit", self._on_commit)
        # A notification's common case commits on the driver's connection, past SQLAlchemy's
        # events (``rawsql.DriverTransaction``): counted here too.
        self._driver_commit = rawsql.DriverTransaction.commit
        meter, driver_commit = self, self._driver_commit

        def counted(transaction: rawsql.DriverTransaction) -> None:
            driver_commit(transaction)
            meter._on_commit(transaction)

        rawsql.DriverTransaction.commit = counted  # type: ignore[method-assign]
        self._cpu0 = time.process_time()
        return self

    def __exit__(self, *exc_info) -> None:
        self.cpu += time.process_time() - self._cpu0
        event.remove(Engine, "commit", self._on_commit)
        rawsql.DriverTransaction.commit = self._driver_commit  # type: ignore[method-assign]


def _segments(items: list, count: int) -> list[list]:
    size = -(-len(items) // max(1, count))
    return [items[i:i + size] for i in range(0, len(items), size)] if items else []


def _cost_note(env: Environment, meters: dict[str, Meter], counts: dict[str, int]) -> str:
    parts = []
    for side, meter in meters.items():
        n = max(1, counts[side])
        cpu = f"{meter.cpu / n * 1000:.1f} ms CPU, " if env.client_mode == "process" else ""
        parts.append(f"{_SIDE_LABELS.get(side, side)} {cpu}{meter.commits / n:.1f} COMMITs")
    note = "server cost per request: " + "; ".join(parts)
    if env.client_mode == "process" and len(meters) == 2:
        (ours, our_meter), (base, base_meter) = meters.items()
        our_cpu, base_cpu = our_meter.cpu / max(1, counts[ours]), base_meter.cpu / max(1, counts[base])
        if our_cpu > 0:
            note += f" (CPU-bound ceiling of the ratio: {base_cpu / our_cpu:.2f})"
    return note


def notify_vs_bare(env: Environment, requests: int = 400, threads: int = 8, warmup: int = 40,
                   segments: int = 4) -> list[Line]:
    """``/notify/wechatpay`` against the bare conditional UPDATE only (see ``notify_vs_peers``)."""
    lines = notify_vs_peers(env, requests=requests, threads=threads, warmup=warmup, segments=segments,
                            sides=("notify", "bare"))
    return [line for line in lines if isinstance(line, Line)]


# What each side of the notification comparison is, in the report.
_SIDE_LABELS = {"notify": "shop (FLOW_RECORD=all)", "record_off": "shop (FLOW_RECORD=off)",
                "sdk": "SDK handler", "bare": "bare UPDATE"}


def notify_vs_peers(env: Environment, requests: int = 400, threads: int = 8, warmup: int = 40,
                    segments: int = 4,
                    sides: tuple[str, ...] = ("notify", "sdk", "bare", "record_off")) -> list[Line | Measure]:
    """``/notify/wechatpay`` against its peers, the same signed bodies and the same clients:

    - ``sdk``: the ``wechatpayv3`` README handler (``bench.peer``): verify, decrypt, one UPDATE;
    - ``bare``: a Flask endpoint doing only the conditional UPDATE (the floor);
    - ``record_off``: the shop itself with ``FLOW_RECORD=off`` (other pending attempts, other
      bodies of the same size): what the flow record costs.

    The requests go in ``segments`` rounds; each round runs every side once, the order rotated
    from round to round, so a drift during the run (a busy neighbour, a growing database, a
    WAL checkpoint) weighs on every side alike. Every side gets fresh pending rows.
    """
    total = warmup + requests
    tag = secrets.token_hex(4)
    attempts = _pending_attempts(env, total, tag)
    notifications = _notifications(env, attempts)
    notify_url = f"{env.shop.url}/notify/wechatpay"
    jobs = {"notify": [(notify_url, headers, body) for headers, body in notifications]}
    warm = {"notify": f"{env.shop.url}/api/products"}
    off_tag = None
    if "record_off" in sides:
        off_tag = secrets.token_hex(4)
        off_attempts = _pending_attempts(env, total, off_tag)
        jobs["record_off"] = [(notify_url, headers, body) for headers, body in _notifications(env, off_attempts)]
        warm["record_off"] = warm["notify"]
    if "sdk" in sides:
        env.insert_sdk_rows(attempts)
        jobs["sdk"] = [(f"{env.sdk.url}/notify", headers, body) for headers, body in notifications]
        warm["sdk"] = f"{env.sdk.url}/ping"
    bare_ids: list[int] = []
    if "bare" in sides:
        bare_ids = env.insert_bare_rows(total, f"BN{tag}")
        jobs["bare"] = [(f"{env.bare.url}/bare/{row_id}", headers, body)
                        for row_id, (headers, body) in zip(bare_ids, notifications)]
        warm["bare"] = f"{env.bare.url}/ping"
    sides = tuple(side for side in sides if side in jobs)

    def run(side: str, part: list) -> dict:
        saved = env.app.config.get("FLOW_RECORD")
        env.app.config["FLOW_RECORD"] = "off" if side == "record_off" else "all"
        try:
            return env.client("fire", part, threads, warm[side])
        finally:
            env.app.config["FLOW_RECORD"] = saved

    if warmup:
        for side in sides:
            _check(f"{side} warm-up", run(side, jobs[side][:warmup]), 204)
    parts = {side: _segments(jobs[side][warmup:], segments) for side in sides}
    elapsed = dict.fromkeys(sides, 0.0)
    closed = dict.fromkeys(sides, 0)
    meters = {side: Meter() for side in sides}
    rounds = len(parts["notify"])
    for i in range(rounds):
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:
            with meters[side]:
                result = run(side, parts[side][i])
            _check(f"{side} requests", result, 204)
            elapsed[side] += result["elapsed"]
            closed[side] += result["closed"]

    with env.app.app_context():
        for side_tag in filter(None, (tag, off_tag)):
            paid = db.session.scalar(select(func.count()).select_from(Payment).where(
                Payment.out_trade_no.like(f"BN{side_tag}%"), Payment.status == PaymentStatus.PAID))
            orders_paid = db.session.scalar(select(func.count()).select_from(Order).where(
                Order.order_no.like(f"BN{side_tag}%"), Order.status == OrderStatus.PAID))
            if not paid == orders_paid == total:
                raise BenchError(f"expected {total} paid rows; shop payments {paid}, orders {orders_paid}")
        db.session.remove()
    if bare_ids and env.count_bare_paid(bare_ids) != total:
        raise BenchError(f"expected {total} paid bare rows, got {env.count_bare_paid(bare_ids)}")
    if "sdk" in sides and env.count_sdk_paid(attempts) != total:
        raise BenchError(f"expected {total} paid SDK-handler rows, got {env.count_sdk_paid(attempts)}")

    rate = {side: requests / elapsed[side] for side in sides}
    cpu = {side: meters[side].cpu / requests for side in sides}
    common = (f"{requests} valid TRANSACTION.SUCCESS notifications each side (fresh pending rows), {threads} client "
              f"threads ({env.client_mode} clients), {warmup} warm-up requests each side, {rounds} rounds with "
              f"the sides' order rotated; database {_database_label(env)}")
    closed_note = _closed_note(closed, requests)
    lines: list[Line | Measure] = []
    if "sdk" in sides:
        from wechatpayv3 import __version__ as sdk_version

        lines.append(Line(
            name="notify vs SDK handler", ours=rate["notify"], baseline=rate["sdk"],
            baseline_label=f"wechatpayv3 {sdk_version} handler", aim=0.8, target=True,
            notes=["the shop's /notify/wechatpay (recording on) vs the SDK README's ~30-line Flask handler "
                   "(bench/peer.py: callback() verifies and decrypts, one conditional UPDATE, 204), same bodies; "
                   + common, _cost_note(env, {k: meters[k] for k in ("notify", "sdk")}, dict.fromkeys(sides, requests))]
            + closed_note,
        ))
    if "bare" in sides:
        lines.append(Line(
            name="notifications handled", ours=rate["notify"], baseline=rate["bare"], baseline_label="bare UPDATE",
            aim=0.7,
            notes=["the same bodies POSTed to a bare endpoint doing only the conditional UPDATE (no verify, no "
                   "decrypt): the floor of any handler; " + common,
                   _cost_note(env, {k: meters[k] for k in ("notify", "bare")}, dict.fromkeys(sides, requests))]
            + ([] if "sdk" in sides else closed_note),
        ))
    if "record_off" in sides:
        lines.append(Line(
            name="notify, flow record on vs off", ours=rate["notify"], baseline=rate["record_off"],
            baseline_label="FLOW_RECORD=off", aim=None,
            notes=["the shop against itself with the flow record off (other attempts, same-sized bodies)",
                   _cost_note(env, {k: meters[k] for k in ("notify", "record_off")}, dict.fromkeys(sides, requests))],
        ))
        if env.client_mode == "process":
            share = max(0.0, (cpu["notify"] - cpu["record_off"]) / cpu["notify"]) if cpu["notify"] > 0 else 0.0
            lines.append(Measure(
                name="flow record share of a notification's CPU", value=share, shown=f"{share:.0%}",
                aim=0.25, aim_shown="≤ 25%",
                notes=[f"(CPU per notification with FLOW_RECORD=all - with off) / with all: "
                       f"({cpu['notify'] * 1000:.2f} - {cpu['record_off'] * 1000:.2f}) / {cpu['notify'] * 1000:.2f} ms; "
                       f"server process CPU while each side ran (the clients run in their own process)"],
            ))
    return lines


def _closed_note(closed: dict[str, int], requests: int) -> list[str]:
    if not any(closed.values()):
        return []
    sides = ", ".join(f"{n}/{requests} {_SIDE_LABELS.get(side, side)}" for side, n in closed.items())
    return [f"the server answered 'Connection: close' to {sides} requests (werkzeug's dev server never "
            f"keeps alive): every request paid a TCP connect and a new server thread, on both sides"]


def _database_label(env: Environment) -> str:
    name = env.bare_engine.dialect.name
    if name == "sqlite":
        with env.bare_engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = connection.exec_driver_sql("PRAGMA synchronous").scalar()
        name += f" (journal_mode={mode}, synchronous={ {0: 'OFF', 1: 'NORMAL', 2: 'FULL', 3: 'EXTRA'}.get(sync, sync)})"
    return name


# -- 2. Native payments against orders ----------------------------------------------------------


def payments_vs_orders(env: Environment, per_thread: int = 25, threads: int = 8,
                       warmup_per_thread: int = 2, rounds: int = 2) -> list[Line]:
    """``POST /api/orders/<no>/payments`` (a signed round trip to the simulator) vs ``POST /api/orders``.

    ``rounds`` rounds (orders, then a payment for each) share the orders, and are summed, so a
    drift weighs on both sides alike. Each thread is one shopper with its own cookie.
    """
    url = env.shop.url
    if warmup_per_thread:
        orders = env.client("shop_orders", url, threads, warmup_per_thread)
        _check("order warm-up", orders, 201)
        _check("payment warm-up", env.client("shop_payments", url, orders["shoppers"]), 201)
    done = {"orders": 0, "payments": 0}
    elapsed = {"orders": 0.0, "payments": 0.0}
    closed = {"orders": 0, "payments": 0}
    meters = {"payments": Meter(), "orders": Meter()}  # ours first (see _cost_note)
    counts = [per_thread // rounds + (1 if i < per_thread % rounds else 0) for i in range(rounds)]
    for count in counts:
        if not count:
            continue
        with meters["orders"]:
            orders = env.client("shop_orders", url, threads, count)
        _check("orders", orders, 201)
        with meters["payments"]:
            payments = env.client("shop_payments", url, orders["shoppers"])
        _check("payments", payments, 201)
        for kind, result in (("orders", orders), ("payments", payments)):
            done[kind] += result["count"]
            elapsed[kind] += result["elapsed"]
            closed[kind] += result["closed"]
    return [Line(
        name="native payments created",
        ours=done["payments"] / elapsed["payments"], baseline=done["orders"] / elapsed["orders"],
        baseline_label="orders created", aim=0.4, target=True,
        notes=[f"{done['orders']} orders, then a Native payment for each (shop -> simulator over loopback HTTP "
               f"and back, same server), {threads} shoppers, {len(counts)} rounds",
               _cost_note(env, meters, done) + " (payments include the simulator's side)"],
    )]


# -- database bytes per paid Native order ----------------------------------------------------


def database_bytes(env: Environment) -> dict[str, int]:
    """Bytes on disk of each shop table with its indexes (and TOAST on PostgreSQL).

    SQLite: after a ``wal_checkpoint(TRUNCATE)`` (every committed page in the main file), the
    pages ``dbstat`` counts per table and index. PostgreSQL: ``pg_total_relation_size``. The
    benchmark's own tables and Alembic's are left out; the simulator's database is WeChat's side.
    """
    engine = env.bare_engine
    sizes: dict[str, int] = {}
    if engine.dialect.name == "sqlite":
        import sqlite3

        connection = sqlite3.connect(engine.url.database, timeout=30)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            owner = dict(connection.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
            for name, size in connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                table = owner.get(name, name)
                sizes[table] = sizes.get(table, 0) + int(size)
        finally:
            connection.close()
    else:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = current_schema()"
            )).all()
        sizes = {name: int(size) for name, size in rows}
    return {name: size for name, size in sizes.items()
            if not name.startswith(("bench_", "sqlite_", "alembic_"))}


def _paid_native_orders(env: Environment, orders: int, threads: int) -> int:
    """``orders`` orders through ``POST /api/orders``, a Native payment for each through
    ``POST /api/orders/<no>/payments`` (a prepay at the simulator, recorded), and the signed
    TRANSACTION.SUCCESS notification for each posted to ``/notify/wechatpay``. Returns how many."""
    url = env.shop.url
    made = env.client("shop_orders", url, threads, max(1, -(-orders // threads)))
    _check("orders", made, 201)
    _check("payments", env.client("shop_payments", url, made["shoppers"]), 201)
    order_nos = [no for shopper in made["shoppers"] for no in shopper["order_nos"]]
    with env.app.app_context():
        attempts = [tuple(row) for row in db.session.execute(
            select(Payment.out_trade_no, Payment.amount_total).join(Order).where(Order.order_no.in_(order_nos)))]
        db.session.remove()
    notifications = _notifications(env, attempts)
    fired = env.client("fire", [(f"{url}/notify/wechatpay", headers, body) for headers, body in notifications],
                       threads, f"{url}/api/products")
    _check("notifications", fired, 204)
    with env.app.app_context():
        paid = db.session.scalar(select(func.count()).select_from(Order).where(
            Order.order_no.in_(order_nos), Order.status == OrderStatus.PAID))
        db.session.remove()
    if paid != len(order_nos) or len(attempts) != len(order_nos):
        raise BenchError(f"{len(order_nos)} orders: {len(attempts)} attempts, {paid} paid")
    return len(order_nos)


def storage_per_paid_order(env: Environment, orders: int = 400, threads: int = 8,
                           warmup: int | None = None) -> list[Measure]:
    """How much the shop's database grows per paid Native order, with the flow record on: what a
    paid order leaves behind (order, attempt, events, notification record, flow record).

    ``warmup`` paid orders first (default half of ``orders``), their growth reported in a note,
    then the growth over ``orders`` more is the measurement. On PostgreSQL each connection inserts
    into a page of its own in every table, and a B-tree's first split adds its root page: on
    empty tables that start-up is a few pages per table and connection, whatever the number of
    orders (bench/README.md, "Database bytes"). After the warm-up the measured orders start where
    a running shop is; nothing is vacuumed, so every dead row version is still counted.
    """
    warmup = orders // 2 if warmup is None else warmup
    saved = env.app.config.get("FLOW_RECORD")
    env.app.config["FLOW_RECORD"] = "all"
    try:
        start = database_bytes(env)
        empty = not _has_orders(env)
        warmed = _paid_native_orders(env, warmup, threads) if warmup else 0
        before = database_bytes(env)
        count = _paid_native_orders(env, orders, threads)
        after = database_bytes(env)
    finally:
        env.app.config["FLOW_RECORD"] = saved
    growth = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    total = sum(growth.values()) / count
    flow = growth.get("protocol_messages", 0) / count
    detail = ", ".join(f"{name} {size / count:,.0f}" for name, size in sorted(growth.items(), key=lambda kv: -kv[1])
                       if size)
    notes = [f"{count} orders created, paid by Native (prepay recorded) and notified, FLOW_RECORD=all; growth of "
             f"every shop table with its indexes, {_size_method(env)}: {total:,.0f} B per order, of which the flow "
             f"record {flow:,.0f} B; by table (B/order): {detail}"]
    if warmed:
        first = (sum(before.values()) - sum(start.values())) / warmed
        notes.append(f"measured after {warmed} paid orders through the same path, whose own growth was "
                     f"{first:,.0f} B per order{' (on empty tables)' if empty else ''}")
    return [Measure(
        name="database bytes per paid Native order", value=total, shown=f"{total:,.0f} B", aim=3000,
        aim_shown="≤ 3,000 B", notes=notes,
    )]


def _has_orders(env: Environment) -> bool:
    with env.app.app_context():
        found = db.session.scalar(select(func.count()).select_from(Order)) > 0
        db.session.remove()
    return found


def _size_method(env: Environment) -> str:
    if env.bare_engine.dialect.name == "sqlite":
        return "SQLite pages after a WAL checkpoint (dbstat)"
    return "PostgreSQL pg_total_relation_size (tables, indexes, TOAST)"


# -- 3. our crypto against the wechatpayv3 SDK ---------------------------------------------------


def _race(ours, theirs, loops: int, rounds: int) -> tuple[float, float, float]:
    """Alternate timed loops of both (order flipped each round); best time of each side.

    Timed in this thread's CPU time (``time.thread_time``), not wall time: on a busy machine a
    loop preempted by a neighbour would otherwise look slow. Returns (our rate, their rate,
    relative spread of the per-round ratios).
    """
    ours(), theirs()  # warm up (first-call caches)
    best = {"ours": float("inf"), "theirs": float("inf")}
    ratios = []
    for r in range(rounds):
        times = {}
        order = (("ours", ours), ("theirs", theirs)) if r % 2 == 0 else (("theirs", theirs), ("ours", ours))
        for side, function in order:
            started = time.thread_time()
            for _ in range(loops):
                function()
            times[side] = max(time.thread_time() - started, 1e-9)
            best[side] = min(best[side], times[side])
        ratios.append(times["theirs"] / times["ours"])
    ratio = best["theirs"] / best["ours"]
    spread = (max(ratios) - min(ratios)) / 2 / ratio if len(ratios) > 1 else 0.0
    return loops / best["ours"], loops / best["theirs"], spread


def crypto_vs_sdk(env: Environment, rounds: int = DEFAULTS["rounds"], sign_loops: int = DEFAULTS["sign_loops"],
                  verify_loops: int = DEFAULTS["verify_loops"], decrypt_loops: int = DEFAULTS["decrypt_loops"],
                  parse_loops: int = DEFAULTS["parse_loops"]) -> list[Line]:
    """sign / verify / decrypt of ``storefront.wechatpay`` vs ``wechatpayv3.utils``, same inputs.

    Both sides get the same pre-loaded key objects where the SDK's API takes one (``rsa_sign``,
    ``rsa_verify``); ``aes_decrypt`` takes the key string and builds its AESGCM on every call.
    """
    from wechatpayv3 import __version__ as sdk_version
    from wechatpayv3 import utils as sdk
    from wechatpayv3.core import Core

    from storefront.wechatpay import aead
    from storefront.wechatpay.client import json_body
    from storefront.wechatpay.notify import parse_notification
    from storefront.wechatpay.signing import request_message, sign, signing_string
    from storefront.wechatpay.verify import verify_signature

    gw = env.gateway
    creds = gw.credentials

    # sign: a real prepay request's message, with the merchant key both sides share.
    body = json_body({
        "appid": creds.appid, "mchid": creds.mchid, "description": "云南小粒咖啡豆 500g",
        "out_trade_no": "SF20260101120000123456P01", "time_expire": "2026-01-01T12:15:00+08:00",
        "notify_url": "https://shop.example.com/notify/wechatpay", "amount": {"total": 8800, "currency": "CNY"},
    })
    message = request_message("POST", "/v3/pay/transactions/native", "1767240000", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                              body)
    private_key = creds.private_key
    if sign(private_key, message) != sdk.rsa_sign(private_key, message):
        raise BenchError("our signature differs from the SDK's over the same message")

    # verify and decrypt: one real notification from the simulator.
    attempts = [(f"BC{secrets.token_hex(4)}P01", 8800)]
    (headers, raw), = _notifications(env, attempts)
    text = raw.decode("utf-8")
    timestamp, nonce = headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"]
    signature, public_key = headers["Wechatpay-Signature"], creds.public_key
    verify_signature(public_key, signing_string(timestamp, nonce, text), signature)
    if sdk.rsa_verify(timestamp, nonce, text, signature, public_key) is not True:
        raise BenchError("the SDK does not verify the simulator's notification")
    resource = json.loads(text)["resource"]
    r_nonce, r_ciphertext, r_data = resource["nonce"], resource["ciphertext"], resource["associated_data"]
    aes, apiv3_key = gw.aes, creds.apiv3_key
    if aead.decrypt(aes, r_nonce, r_ciphertext, r_data).decode() != sdk.aes_decrypt(r_nonce, r_ciphertext, r_data,
                                                                                      apiv3_key):
        raise BenchError("decrypted resources differ")

    # whole notification (verify + decrypt + JSON): our parse_notification vs the SDK's Core.callback.
    core = Core(
        mchid=creds.mchid, cert_serial_no=creds.merchant_serial,
        private_key=(env.instance / "wechatpay" / "apiclient_key.pem").read_text(), apiv3_key=apiv3_key,
        public_key=(env.instance / "wechatpay" / "pub_key.pem").read_text(), public_key_id=creds.public_key_id,
    )  # public-key mode: no /v3/certificates download
    verifier = gw.verifier
    ours_parsed = parse_notification(headers, raw, verifier, aes)
    theirs_parsed = core.callback(headers, raw)
    if not theirs_parsed or theirs_parsed["resource"] != ours_parsed.resource:
        raise BenchError("the SDK's callback() does not agree with parse_notification")

    lines = []
    cases = [
        ("sign (RSA-SHA256)", sign_loops, 1.0,
         lambda: sign(private_key, message), lambda: sdk.rsa_sign(private_key, message),
         "sign(key, message) vs utils.rsa_sign(key, message); same loaded RSA key object"),
        ("verify (RSA-SHA256)", verify_loops, 1.0,
         lambda: verify_signature(public_key, signing_string(timestamp, nonce, text), signature),
         lambda: sdk.rsa_verify(timestamp, nonce, text, signature, public_key),
         "signing_string + verify_signature vs utils.rsa_verify(ts, nonce, body, sig, key); same loaded key"),
        ("decrypt (AES-256-GCM)", decrypt_loops, 1.0,
         lambda: aead.decrypt(aes, r_nonce, r_ciphertext, r_data),
         lambda: sdk.aes_decrypt(r_nonce, r_ciphertext, r_data, apiv3_key),
         "aead.decrypt(cipher, ...) vs utils.aes_decrypt(..., apiv3_key): the SDK takes the key string "
         "and builds an AESGCM on every call (no pre-loaded form exists), and decodes to str"),
        ("decrypt, cipher per call", decrypt_loops, None,
         lambda: aead.decrypt(aead.cipher(apiv3_key), r_nonce, r_ciphertext, r_data),
         lambda: sdk.aes_decrypt(r_nonce, r_ciphertext, r_data, apiv3_key),
         "fairness check: ours also builds its AESGCM per call (as the SDK must)"),
        ("notification verify+decrypt", parse_loops, None,
         lambda: parse_notification(headers, raw, verifier, aes),
         lambda: core.callback(headers, raw),
         "parse_notification vs Core.callback (public-key mode); ours also checks the timestamp window "
         "and the SIGNTEST probe, and builds dataclasses"),
    ]
    for name, loops, aim, ours, theirs, note in cases:
        ours_rate, their_rate, spread = _race(ours, theirs, loops, rounds)
        lines.append(Line(name=name, ours=ours_rate, baseline=their_rate, baseline_label=f"wechatpayv3 {sdk_version}",
                          aim=aim, spread=spread, notes=[f"{note}; best of {rounds} x {loops}, thread CPU time"]))
    return lines
