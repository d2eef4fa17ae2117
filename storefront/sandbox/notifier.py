"""Delivers stored notifications to ``notify_url`` on WeChat Pay's retry schedule.

A daemon thread per process claims due rows with a conditional UPDATE (so several workers
never send the same delivery twice at once) and posts them with a 5-second timeout.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests
from flask import Flask
from sqlalchemy import func, or_, select, update

from ..extensions import db
from . import refunds
from .models import SandboxDelivery, SandboxNotification
from .simulator import Platform

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_SECONDS = 5  # WeChat Pay gives the merchant 5 s to answer
CLAIM_SECONDS = 30
IDLE_WAIT_SECONDS = 1.0
USER_AGENT = "Mozilla/4.0 (WeChatPay-Notifier; storefront simulator)"


class Notifier:
    """Background delivery for one app. ``wake()`` after storing a notification."""

    def __init__(self, app: Flask, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sandbox-notify")
        self._http = requests.Session()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="sandbox-notifier", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.app.app_context():
                    wait = self.deliver_due()
            except Exception:  # keep delivering whatever one bad round did
                log.exception("notifier round failed")
                wait = IDLE_WAIT_SECONDS
            self._wake.wait(timeout=wait)
            self._wake.clear()

    def deliver_due(self) -> float:
        """Deliver every due notification once; return seconds until the next is due (capped)."""
        now = self.platform.now()
        claimable = (SandboxNotification.state == "pending") & (SandboxNotification.next_attempt_at <= now) & or_(
            SandboxNotification.locked_until.is_(None), SandboxNotification.locked_until < now
        )
        ids = list(db.session.scalars(select(SandboxNotification.id).where(claimable).limit(64)))
        claimed = []
        for notification_id in ids:
            won = db.session.execute(
                update(SandboxNotification).where(SandboxNotification.id == notification_id, claimable)
                .values(locked_until=now + timedelta(seconds=CLAIM_SECONDS))
            ).rowcount == 1
            db.session.commit()
            if won:
                claimed.append(notification_id)
        for future in [self._pool.submit(self._deliver_in_context, i) for i in claimed]:
            future.result()
        refunds.settle_due(self.platform)  # refunds finish processing on the same clock
        next_due = db.session.scalar(
            select(func.min(SandboxNotification.next_attempt_at)).where(SandboxNotification.state == "pending")
        )
        db.session.commit()
        if next_due is None:
            return IDLE_WAIT_SECONDS
        return max(0.02, min(IDLE_WAIT_SECONDS, (next_due - self.platform.now()).total_seconds()))

    def _deliver_in_context(self, notification_id: int) -> None:
        with self.app.app_context():
            self.deliver(notification_id)

    def deliver(self, notification_id: int) -> int | None:
        """POST one notification now and schedule what follows. Returns the shop's HTTP status."""
        notification = db.session.get(SandboxNotification, notification_id)
        if notification is None:
            return None
        body, url, event_id, out_trade_no = (notification.body, notification.notify_url,
                                             notification.event_id, notification.out_trade_no)
        probe = notification.kind == "probe"
        mchid = notification.mchid
        attempts = notification.attempts_count + 1
        # Signed before the commit: choosing the key reads the settings, which would reopen a
        # transaction (on SQLite, the write lock) and hold it while the shop answers.
        headers = self.platform.notification_headers(body, probe=probe, mchid=mchid)
        db.session.commit()  # hold no database lock while the shop answers: it may need this one
        status: int | None = None
        answer = error = ""
        try:
            response = self._http.post(
                url, data=body.encode("utf-8"),
                headers={**headers, "User-Agent": USER_AGENT}, timeout=DELIVERY_TIMEOUT_SECONDS,
            )
            status, answer = response.status_code, response.text[:300]
        except requests.RequestException as exc:
            error = f"{exc.__class__.__name__}"[:200]
        values: dict = {"attempts_count": attempts, "locked_until": None}
        if probe:
            # Sent once: a shop that verifies answers 4xx/5xx; one that says 200/204 does not verify.
            values.update(state="probe_refused" if status is None or status >= 300 else "probe_accepted",
                          next_attempt_at=None)
        elif status in (200, 204):
            values.update(state="delivered", next_attempt_at=None)
        else:
            gap = self.platform.retry_gap(attempts)
            if gap is None:
                values.update(state="failed", next_attempt_at=None)
            else:
                values.update(next_attempt_at=self.platform.now() + gap)
        db.session.add(SandboxDelivery(notification_id=notification_id, http_status=status, at=self.platform.now(),
                                       response_body=answer, error=error,
                                       signed_serial=headers.get("Wechatpay-Serial"),
                                       next_attempt_at=values.get("next_attempt_at")))
        db.session.execute(update(SandboxNotification).where(SandboxNotification.id == notification_id)
                           .values(**values))
        db.session.commit()
        log.info("notification %s for %s: attempt %s -> %s", event_id, out_trade_no, attempts, status if status is not None else error)
        return status


def oldest_pending_seconds() -> float:
    """How long the oldest notification still waiting for delivery has waited (0: none waits).

    The shop's ``/metrics`` shows it in simulator mode (``app.extensions``, set by ``register``).
    """
    from ..clock import utcnow

    try:
        oldest = db.session.scalar(select(func.min(SandboxNotification.created_at))
                                   .where(SandboxNotification.state == "pending"))
        db.session.commit()
    except Exception:  # a metric never fails the scrape
        db.session.rollback()
        return 0.0
    return max((utcnow() - oldest).total_seconds(), 0.0) if oldest else 0.0
