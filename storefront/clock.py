"""The clock both the shop and the simulator read: naive UTC, as the tables store it."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Naive UTC: portable across SQLite and PostgreSQL ``timestamp`` columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
