"""Simulator tables for the scenes beyond Native: H5 links, JSAPI prepay_ids, login codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..extensions import db


class SandboxH5Link(db.Model):
    """One ``h5_url`` handed out; each lives 5 minutes, a re-submission hands out another."""

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_h5_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("sandbox_transactions.id"), index=True)
    prepay_id: Mapped[str] = mapped_column(String(64), unique=True)
    package: Mapped[str] = mapped_column(String(16))
    domain: Mapped[str] = mapped_column(String(255))  # the merchant's registered H5 domain
    payer_client_ip: Mapped[str] = mapped_column(String(45))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxPrepay(db.Model):
    """A JSAPI / mini program ``prepay_id`` (2 hours), bound to its transaction and appid."""

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_prepays"
    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("sandbox_transactions.id"), index=True)
    prepay_id: Mapped[str] = mapped_column(String(64), unique=True)
    appid: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class SandboxLoginCode(db.Model):
    """A one-time code: OAuth ``code`` (kind ``oauth``) or ``wx.login`` code (kind ``jscode``)."""

    __bind_key__ = "sandbox"
    __tablename__ = "sandbox_login_codes"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    appid: Mapped[str] = mapped_column(String(32))
    openid: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(32), default="")
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]
