"""CLI: ``flask --app wsgi init | close-expired | reconcile``, thin over the services."""

from pathlib import Path

import click
from flask import Flask, current_app

from . import bootstrap
from .i18n import _
from .services import jobs


def startup_banner(app: Flask, host: str, port: int) -> str:
    """The shop, tour, simulator console and merchant-password locations, for a newcomer's first look."""
    base = f"http://{host}:{port}"
    password_file = Path(app.instance_path) / "merchant_password"
    lines = [
        "",
        "  " + _("山间小铺 · 微信支付 API v3 演示"),
        "  " + _("商店        %(url)s", url=base + "/"),
        "  " + _("导览        %(url)s", url=base + "/tour"),
        "  " + _("文档        %(url)s", url=base + "/docs/"),
    ]
    if app.config["WECHATPAY_SANDBOX"]:
        lines.append("  " + _("模拟器控制台 %(url)s", url=base + "/sandbox/"))
    lines.append("  " + _("商户后台    %(url)s", url=base + "/merchant/"))
    if app.config.get("MERCHANT_PASSWORD"):
        lines.append("  " + _("商户密码    见 MERCHANT_PASSWORD 配置"))
    elif app.config["WECHATPAY_SANDBOX"]:
        lines.append("  " + _("商户密码    %(path)s（cat 查看）", path=password_file))
    else:
        lines.append("  " + _("商户后台未开放：请设置 MERCHANT_PASSWORD"))
    lines.append("")
    return "\n".join(lines)


def register(app: Flask) -> None:
    @app.cli.command("init")
    def init() -> None:
        """Create instance keys (simulator mode), tables and the demo catalog where missing."""
        bootstrap.initialise(current_app._get_current_object())  # type: ignore[attr-defined]
        click.echo(f"instance ready in {current_app.instance_path}")

    @app.cli.command("banner")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=5000, show_default=True, type=int)
    def banner(host: str, port: int) -> None:
        """Where everything is: printed by ``make run`` before the server starts."""
        click.echo(startup_banner(current_app._get_current_object(), host, port))  # type: ignore[attr-defined]

    @app.cli.command("close-expired")
    def close_expired() -> None:
        """Close at WeChat Pay, then locally, every attempt past its expiry."""
        closed, paid = jobs.close_expired()
        click.echo(f"closed {closed} attempt(s); {paid} turned out paid")

    @app.cli.command("reconcile")
    def reconcile() -> None:
        """Query WeChat Pay for attempts pending a while and apply the answers."""
        checked, paid = jobs.reconcile()
        click.echo(f"queried {checked} attempt(s); {paid} found paid")
