"""Simulator tables for merchants registered with ``sandbox-kit`` and the grader's reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..extensions import db


class SandboxMerchant(db.Model):
    """A merchant registered in the simulator, as WeChat Pay's merchant platform would hold it.

    The APIv3 key is stored because WeChat Pay holds it too (it encrypts the merchant's
    notifications with it); the merchant's private key is never stored, only its certificate.
    """

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_merchants"
    mchid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    appid: Mapped[str] = mapped_column(String(32), unique=True)
    merchant_serial: Mapped[str] = mapped_column(String(64))
    merchant_cert: Mapped[str] = mapped_column(Text)  # PEM of apiclient_cert.pem
    apiv3_key: Mapped[str] = mapped_column(String(32))
    notify_url: Mapped[str | None] = mapped_column(String(256))  # the kit's default, for the grader
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxGraderRun(db.Model):
    """One run of the grader against a merchant's backend: its JSON summary and its HTML report."""

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_grader_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    mchid: Mapped[str] = mapped_column(String(32), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(default=False)  # no error-level case failed
    summary: Mapped[str] = mapped_column(Text)  # the --json document
    report_html: Mapped[str] = mapped_column(Text)
