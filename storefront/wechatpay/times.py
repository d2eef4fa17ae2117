"""Times as WeChat Pay writes them: RFC 3339 with the Beijing offset, no fractions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


def format_time(moment: datetime) -> str:
    """``2026-11-27T10:34:56+08:00``. A naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(BEIJING).replace(microsecond=0).isoformat()


def parse_time(text: str) -> datetime:
    """Parse any RFC 3339 time WeChat Pay sends (``Z`` or an offset) to an aware datetime."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without offset: {text!r}")
    return moment
