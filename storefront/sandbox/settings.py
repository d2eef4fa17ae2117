"""Run-time settings of the simulator and its clock.

Stored in the simulator's own table so every worker (and ``flask`` commands) sees the same
values; configuration gives the defaults. The clock is real time plus a fast-forward offset:
it drives ``time_expire``, the 2-hour ``code_url`` and 5-minute ``h5_url`` lifetimes, the
notification retry schedule and refund processing. Signature timestamps stay real time,
since the merchant checks them against its own clock.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..clock import utcnow
from ..extensions import db
from .models import SandboxSetting

# name -> (config key giving the default, allowed values or a type)
NOTIFY_SIGNING = ("auto", "public_key", "certificate", "switching")
ANSWER_SIGNING = ("rule", "public_key", "certificate")
PAID_CODES = ("ORDER_PAID", "ORDERPAID")
SETTINGS: dict[str, tuple[str | None, Any]] = {
    "clock_offset_seconds": (None, float),
    # Which key signs notifications: "auto" follows the key the merchant's latest request named.
    "notify_signing": ("SANDBOX_NOTIFY_SIGNING", NOTIFY_SIGNING),
    # Which key signs API answers: "rule" is WeChat Pay's switch-over rule (by Wechatpay-Serial).
    "answer_signing": ("SANDBOX_ANSWER_SIGNING", ANSWER_SIGNING),
    # API calls per second per merchant before 429 FREQUENCY_LIMITED; 0 disables rate limits.
    "rate_limit_per_second": ("SANDBOX_RATE_LIMIT", int),
    # How a paid order's refusal is spelt: ORDER_PAID (the v3 troubleshooting handbook) or the
    # older ORDERPAID, so a merchant's code can be tested against both.
    "paid_code": ("SANDBOX_PAID_CODE", PAID_CODES),
    # fen of a WeChat-funded coupon applied to each payment (0: none): promotion_detail, payer_total < total.
    "coupon_amount": ("SANDBOX_COUPON_AMOUNT", int),
    # Share (0..1) of successful API answers signed WECHATPAY/SIGNTEST/… (a signature probe), as
    # WeChat Pay sends them on answers as well as on notifications.
    "answer_probe_rate": ("SANDBOX_ANSWER_PROBE_RATE", float),
}
CACHE_SECONDS = 0.5
DEFAULTS: dict[str, Any] = {
    "clock_offset_seconds": 0.0, "notify_signing": "auto", "answer_signing": "rule", "rate_limit_per_second": 0,
    "paid_code": "ORDER_PAID", "coupon_amount": 0, "answer_probe_rate": 0.0,
}


class Settings:
    """Reads and writes the settings; ``config`` is the app's configuration (for defaults)."""

    def __init__(self, config: dict) -> None:
        self._config = config
        # Read on every signed answer and every clock reading: cached briefly, so each does not
        # open a database transaction (on SQLite, the write lock). Local writes clear it; other
        # workers see a change within CACHE_SECONDS.
        self._cache: tuple[float, dict[str, Any]] | None = None

    def default(self, name: str) -> Any:
        key = SETTINGS[name][0]
        value = self._config.get(key) if key else None
        return DEFAULTS[name] if value is None else value

    def get(self, name: str) -> Any:
        return self.all()[name]

    def all(self) -> dict[str, Any]:
        cached = self._cache
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return dict(cached[1])
        stored = {row.name: json.loads(row.value) for row in db.session.scalars(select(SandboxSetting))}
        values = {name: stored.get(name, self.default(name)) for name in SETTINGS}
        self._cache = (time.monotonic(), values)
        return dict(values)

    def set(self, name: str, value: Any) -> Any:
        """Validate and store one setting. :raise ValueError: unknown name or bad value."""
        if name not in SETTINGS:
            raise ValueError(f"unknown setting {name}")
        kind = SETTINGS[name][1]
        if isinstance(kind, tuple):
            if value not in kind:
                raise ValueError(f"{name} must be one of {', '.join(kind)}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number")
            value = kind(value)
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            if name == "answer_probe_rate" and value > 1:
                raise ValueError(f"{name} must be between 0 and 1")
        row = db.session.get(SandboxSetting, name)
        if row is None:
            db.session.add(SandboxSetting(name=name, value=json.dumps(value)))
        else:
            row.value = json.dumps(value)
        db.session.commit()
        self._cache = None
        return value

    # -- the clock ------------------------------------------------------------------------

    def offset(self) -> timedelta:
        return timedelta(seconds=float(self.get("clock_offset_seconds")))

    def now(self) -> datetime:
        """Simulator time: naive UTC, real time plus the fast-forward offset."""
        return utcnow() + self.offset()

    def fast_forward(self, seconds: float) -> timedelta:
        """Move the simulator clock forward (never back: time_expire and retries only move on)."""
        if seconds <= 0 or seconds > 400 * 86400:
            raise ValueError("seconds must be between 0 and 400 days")
        total = float(self.get("clock_offset_seconds")) + seconds
        self.set("clock_offset_seconds", total)
        return timedelta(seconds=total)
