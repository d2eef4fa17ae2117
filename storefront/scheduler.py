"""A tiny in-process scheduler for ``make run``: close-expired and reconcile every minute, and
reconcile-bill once a day after 10:00 Asia/Shanghai (when WeChat Pay's bill of yesterday exists).

In production these are cron jobs (see README); running both at once, or on two hosts, is safe
because every transition they make is a conditional UPDATE.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from .services import jobs

log = logging.getLogger(__name__)


def start(app: Flask, interval_seconds: float) -> threading.Event:
    """Run the jobs every ``interval_seconds`` in a daemon thread; set the returned event to stop."""

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_seconds):
            with app.app_context():
                for name, job in (("close-expired", jobs.close_expired), ("reconcile", jobs.reconcile)):
                    try:
                        done = job()
                        if any(done):
                            log.info("scheduler: %s -> %s", name, done)
                    except Exception:  # one failed run must not end the schedule
                        log.exception("scheduler: %s failed", name)
                daily_bill()

    def daily_bill() -> None:
        from .services import reconciliation

        try:
            day = reconciliation.due_today()
            if day is not None:
                result, status = reconciliation.reconcile_day(day)
                log.info("scheduler: reconcile-bill %s -> exit %s, %s", day, status, result.summary())
        except Exception:
            log.exception("scheduler: reconcile-bill failed")

    threading.Thread(target=loop, name="storefront-scheduler", daemon=True).start()
    return stop
