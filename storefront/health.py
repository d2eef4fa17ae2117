"""Operations: ``GET /healthz`` for load balancers and Prometheus metrics at ``GET /metrics``.

``/healthz`` answers 200 when the database answers and 503 otherwise, with no secrets and no
authentication. ``/metrics`` is open in simulator mode; in production it needs a merchant
sign-in or ``Authorization: Bearer <METRICS_TOKEN>`` (docs/going-live.md).
"""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select, text

from .extensions import db

log = logging.getLogger(__name__)

# /v3/pay/transactions/out-trade-no/SF123/close -> /v3/pay/transactions/out-trade-no/{id}/close
_ID_SEGMENT = re.compile(r"(?<=/out-trade-no/)[^/?]+|(?<=/id/)[^/?]+|(?<=/domestic/refunds/)[^/?]+")


class Metrics:
    """The app's own registry (tests build many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.notifications = Counter(
            "storefront_notifications_total", "WeChat Pay notifications received, by kind and outcome",
            ["kind", "outcome", "reason"], registry=self.registry)
        self.calls = Counter(
            "storefront_wechatpay_calls_total", "Calls the shop made to WeChat Pay, by endpoint and result",
            ["endpoint", "result"], registry=self.registry)
        self.latency = Histogram(
            "storefront_wechatpay_call_seconds", "Latency of the shop's calls to WeChat Pay", ["endpoint"],
            registry=self.registry, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.orders = Gauge("storefront_orders", "Orders by status", ["status"], registry=self.registry)
        self.oldest_pending = Gauge(
            "storefront_sandbox_oldest_pending_notification_seconds",
            "Simulator mode: age of the oldest notification delivery still pending", registry=self.registry)

    def observe_call(self, exchange) -> None:
        """The WeChat Pay client's observer (next to the flow record's): never raises."""
        try:
            path = urlsplit(exchange.canonical_url or exchange.url).path
            endpoint = f"{exchange.method} {_ID_SEGMENT.sub('{id}', path)}"
            if exchange.status is None:
                result = "unreachable"
            elif exchange.status < 300:
                result = "ok"
            else:
                code = ""
                try:
                    import json

                    code = str(json.loads(exchange.response_body or "{}").get("code", ""))[:40]
                except ValueError:
                    pass
                result = f"{exchange.status} {code}".strip()
            self.calls.labels(endpoint, result).inc()
            self.latency.labels(endpoint).observe((exchange.elapsed_ms or 0) / 1000)
        except Exception:  # metrics never break a payment
            log.warning("metrics: call not counted", exc_info=True)


def reason_category(status: int, outcome: str, reason: str) -> str:
    """A bounded label for why a notification was refused (the full reason is in the log)."""
    if status < 300:
        return ""
    lowered = reason.lower()
    for word in ("signature", "serial", "timestamp", "decrypt", "mchid", "appid", "trade_state", "amount",
                 "unknown", "header", "refund"):
        if word in lowered:
            return word
    return f"http_{status}"


def count_notification(kind: str, result) -> None:
    """Count one notification the shop answered (``result``: a ``NotifyResult``)."""
    metrics = current_app.extensions.get("metrics")
    if metrics is None:
        return
    try:
        metrics.notifications.labels(kind, "accepted" if result.status < 300 else "refused",
                                     reason_category(result.status, result.outcome, result.reason)).inc()
    except Exception:
        log.warning("metrics: notification not counted", exc_info=True)


def _authorised() -> bool:
    if current_app.config["WECHATPAY_SANDBOX"]:
        return True
    token = current_app.config.get("METRICS_TOKEN")
    sent = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return True
    from .merchant import auth

    return auth.signed_in()


def register(app: Flask) -> None:
    metrics = app.extensions["metrics"] = Metrics()

    @app.get("/healthz")
    def healthz():
        try:
            db.session.execute(text("SELECT 1"))
            db.session.commit()
        except Exception as exc:  # any database failure is "unavailable"; the detail goes to the log
            db.session.rollback()
            log.warning("healthz: database unavailable: %s", type(exc).__name__)
            return {"status": "unavailable", "database": "down"}, 503
        return {"status": "ok", "database": "up"}

    @app.get("/metrics")
    def prometheus_metrics():
        if not _authorised():
            abort(403)
        from .models import Order, OrderStatus

        counts = dict(db.session.execute(select(Order.status, func.count()).group_by(Order.status)).all())
        db.session.commit()
        for status in OrderStatus:
            metrics.orders.labels(status.value).set(counts.get(status.value, 0))
        # Simulator mode: the simulator reports on its own tables (the shop never reads them).
        oldest_pending = app.extensions.get("sandbox_oldest_pending_seconds")
        if oldest_pending is not None:
            metrics.oldest_pending.set(oldest_pending())
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)
