"""Merchant sign-in: server-side sessions that logout revokes, and a login throttle shared by workers.

The signed cookie carries only a random session token; the database holds its SHA-256 and the
session's absolute expiry (``MERCHANT_SESSION_HOURS``). Logout deletes the row, so every copy of
the cookie stops working at once. The throttle's counters live in the database too, so every
gunicorn worker (and host) sees the same failures. Why: docs/going-live.md.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, request, session
from sqlalchemy import String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models import utcnow

SESSION_KEY = "merchant_sid"
# Per address: this many failures are free, then each one doubles the wait (capped).
FREE_FAILURES_PER_ADDRESS = 9  # the 10th failure starts the backoff: 2 s, 4 s, 8 s, ...
MAX_ADDRESS_WAIT_SECONDS = 900
# Per account (all addresses together): a wide guessing spray is slowed, never locked: at most
# one guess per second or so, so the merchant's own attempt from elsewhere still gets through.
FREE_FAILURES_PER_ACCOUNT = 50
MAX_ACCOUNT_WAIT_SECONDS = 2
FAILURE_WINDOW_SECONDS = 3600
ACCOUNT = "merchant"  # one merchant account today; the key leaves room for more


class MerchantSession(db.Model):
    """One signed-in merchant browser session (the cookie holds the token, this row its hash)."""

    __tablename__ = "merchant_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    address: Mapped[str] = mapped_column(String(45), default="")


class LoginFailure(db.Model):
    """Failed sign-ins counted per key (``addr:<ip>`` or ``account:<name>``) in a window."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    blocked_until: Mapped[datetime | None]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lifetime() -> timedelta:
    return timedelta(hours=float(current_app.config.get("MERCHANT_SESSION_HOURS") or 8))


def sign_in() -> None:
    """Start a fresh session (no fixation: the old cookie's content is dropped)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.execute(delete(MerchantSession).where(MerchantSession.expires_at < now))  # tidy as we go
    db.session.add(MerchantSession(token_hash=_hash(token), created_at=now, expires_at=now + _lifetime(),
                                   address=(request.remote_addr or "")[:45]))
    db.session.commit()
    session.clear()
    session[SESSION_KEY] = token
    session.permanent = False  # the browser forgets it on close; the server forgets it at expiry


def sign_out() -> None:
    """Revoke this session on the server: every copy of the cookie ends with it."""
    token = session.pop(SESSION_KEY, None)
    if token:
        db.session.execute(delete(MerchantSession).where(MerchantSession.token_hash == _hash(token)))
        db.session.commit()


def signed_in() -> bool:
    """Does this request carry a live, unrevoked merchant session?"""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        return False
    expires_at = db.session.scalar(select(MerchantSession.expires_at)
                                   .where(MerchantSession.token_hash == _hash(token)))
    db.session.commit()  # a read: end it at once (SQLite takes the write lock on BEGIN)
    return expires_at is not None and expires_at > utcnow()


# -- the throttle ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds


def _keys(address: str) -> tuple[str, str]:
    return f"addr:{address[:64]}", f"account:{ACCOUNT}"


def check(address: str) -> Verdict:
    """May this address try a password now? Never reads the password: a blocked try is not checked."""
    now = utcnow()
    rows = db.session.scalars(select(LoginFailure).where(LoginFailure.key.in_(_keys(address))))
    waits = [int((row.blocked_until - now).total_seconds()) + 1 for row in rows
             if row.blocked_until is not None and row.blocked_until > now]
    db.session.commit()
    return Verdict(False, max(waits)) if waits else Verdict(True)


def _wait(failures: int, free: int, cap: int) -> int:
    if failures <= free:
        return 0
    return min(2 ** min(failures - free, 20), cap)


def failed(address: str) -> None:
    """Count one failure for the address and the account, and set their backoff."""
    now = utcnow()
    address_key, account_key = _keys(address)
    for key, free, cap in ((address_key, FREE_FAILURES_PER_ADDRESS, MAX_ADDRESS_WAIT_SECONDS),
                           (account_key, FREE_FAILURES_PER_ACCOUNT, MAX_ACCOUNT_WAIT_SECONDS)):
        for _attempt in range(3):  # insert-or-update, portable across SQLite and PostgreSQL
            row = db.session.get(LoginFailure, key, with_for_update=True)
            if row is None:
                db.session.add(LoginFailure(key=key, failures=1, window_started_at=now))
                try:
                    db.session.commit()
                    break
                except IntegrityError:
                    db.session.rollback()
                    continue
            if (now - row.window_started_at).total_seconds() > FAILURE_WINDOW_SECONDS:
                row.failures, row.window_started_at = 0, now
            row.failures += 1
            wait = _wait(row.failures, free, cap)
            row.blocked_until = now + timedelta(seconds=wait) if wait else None
            db.session.commit()
            break


def succeeded(address: str) -> None:
    """The right password from this address: its own counter starts again (the account's stays)."""
    db.session.execute(delete(LoginFailure).where(LoginFailure.key == _keys(address)[0]))
    db.session.commit()


def purge_expired(now: datetime | None = None) -> int:
    """Expired sessions and old failure windows go (called by the jobs)."""
    now = now or utcnow()
    gone = db.session.execute(delete(MerchantSession).where(MerchantSession.expires_at < now)).rowcount or 0
    db.session.execute(delete(LoginFailure).where(
        LoginFailure.window_started_at < now - timedelta(seconds=FAILURE_WINDOW_SECONDS),
        (LoginFailure.blocked_until.is_(None)) | (LoginFailure.blocked_until < now)))
    db.session.commit()
    return gone


__all__ = ["LoginFailure", "MerchantSession", "check", "failed", "purge_expired", "sign_in", "sign_out",
           "signed_in", "succeeded"]
