"""The three measurements. Each returns ``report.Line``s and raises ``BenchError`` if the run
was not what it claims to measure (a request failed, a row was not updated)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import timedelta

from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from storefront.extensions import db
from storefront.models import Order, OrderStatus, Payment, PaymentStatus, Product, utcnow
from storefront.sandbox.models import SandboxTransaction

from . import DEFAULTS
from .env import BenchError, Environment
from .report import Line

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
        self._cpu0 = time.process_time()
        return self

    def __exit__(self, *exc_info) -> None:
        self.cpu += time.process_time() - self._cpu0
        event.remove(Engine, "commit", self._on_commit)


def _segments(items: list, count: int) -> list[list]:
    size = -(-len(items) // max(1, count))
    return [items[i:i + size] for i in range(0, len(items), size)] if items else []


def _cost_note(env: Environment, meters: dict[str, Meter], counts: dict[str, int]) -> str:
    parts = []
    for side, meter in meters.items():
        n = max(1, counts[side])
        cpu = f"{meter.cpu / n * 1000:.1f} ms CPU, " if env.client_mode == "process" else ""
        parts.append(f"{side} {cpu}{meter.commits / n:.1f} COMMITs")
    note = "server cost per request: " + "; ".join(parts)
    if env.client_mode == "process" and len(meters) == 2:
        (ours, our_meter), (base, base_meter) = meters.items()
        our_cpu, base_cpu = our_meter.cpu / max(1, counts[ours]), base_meter.cpu / max(1, counts[base])
        if our_cpu > 0:
            note += f" (CPU-bound ceiling of the ratio: {base_cpu / our_cpu:.2f})"
    return note


def notify_vs_bare(env: Environment, requests: int = 400, threads: int = 8, warmup: int = 40,
                   segments: int = 4) -> list[Line]:
    """``/notify/wechatpay`` against the bare conditional UPDATE: same bodies, same clients.

    The requests go in ``segments`` pairs, alternating which side goes first (shop, bare, bare,
    shop, ...), so a drift during the run (a busy neighbour, a growing database, a WAL checkpoint)
    weighs on both sides alike.
    """
    tag = secrets.token_hex(4)
    total = warmup + requests
    attempts = _pending_attempts(env, total, tag)
    notifications = _notifications(env, attempts)
    notify_url = f"{env.shop.url}/notify/wechatpay"
    jobs = {"notify": [(notify_url, headers, body) for headers, body in notifications]}
    bare_ids = env.insert_bare_rows(total, f"BN{tag}")
    jobs["bare"] = [(f"{env.bare.url}/bare/{row_id}", headers, body)
                    for row_id, (headers, body) in zip(bare_ids, notifications)]
    warm = {"notify": f"{env.shop.url}/api/products", "bare": f"{env.bare.url}/ping"}

    if warmup:
        for side in ("notify", "bare"):
            _check(f"{side} warm-up", env.client("fire", jobs[side][:warmup], threads, warm[side]), 204)
    parts = {side: _segments(jobs[side][warmup:], segments) for side in jobs}
    elapsed = {"notify": 0.0, "bare": 0.0}
    closed = {"notify": 0, "bare": 0}
    meters = {"notify": Meter(), "bare": Meter()}
    for i in range(len(parts["notify"])):
        for side in (("notify", "bare") if i % 2 == 0 else ("bare", "notify")):
            with meters[side]:
                result = env.client("fire", parts[side][i], threads, warm[side])
            _check(f"{side} requests", result, 204)
            elapsed[side] += result["elapsed"]
            closed[side] += result["closed"]

    with env.app.app_context():
        paid = db.session.scalar(select(func.count()).select_from(Payment).where(
            Payment.out_trade_no.like(f"BN{tag}%"), Payment.status == PaymentStatus.PAID))
        orders_paid = db.session.scalar(select(func.count()).select_from(Order).where(
            Order.order_no.like(f"BN{tag}%"), Order.status == OrderStatus.PAID))
        db.session.remove()
    bare_paid = env.count_bare_paid(bare_ids)
    if not paid == orders_paid == bare_paid == total:
        raise BenchError(f"expected {total} paid rows; shop payments {paid}, orders {orders_paid}, bare {bare_paid}")
    counts = {"notify": requests, "bare": requests}
    return [Line(
        name="notifications handled",
        ours=requests / elapsed["notify"], baseline=requests / elapsed["bare"], baseline_label="bare UPDATE",
        aim=0.7,
        notes=[f"{requests} valid TRANSACTION.SUCCESS notifications (distinct pending attempts) vs the same "
               f"bodies POSTed to a bare endpoint doing one conditional UPDATE; {threads} client threads "
               f"({env.client_mode} clients), {warmup} warm-up requests each side, {len(parts['notify'])} "
               f"alternating segments; database {_database_label(env)}",
               _cost_note(env, meters, counts)] + _closed_note(closed, requests),
    )]


def _closed_note(closed: dict[str, int], requests: int) -> list[str]:
    if not any(closed.values()):
        return []
    sides = ", ".join(f"{n}/{requests} {side}" for side, n in closed.items())
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
        baseline_label="orders created", aim=0.35,
        notes=[f"{done['orders']} orders, then a Native payment for each (shop -> simulator over loopback HTTP "
               f"and back, same server), {threads} shoppers, {len(counts)} rounds",
               _cost_note(env, meters, done) + " (payments include the simulator's side)"],
    )]


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
