"""CLI: ``flask --app wsgi init | close-expired | reconcile | reconcile-bill``, thin over the services."""

import json
import sys
from datetime import date
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

    @app.cli.command("doctor")
    @click.option("--offline", is_flag=True, help="Skip the signed request to WECHATPAY_API_BASE.")
    @click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for WeChat Pay.")
    def doctor(offline: bool, timeout: float) -> None:
        """Check the merchant's setup before going live: ✓ passed, ✗ failed, ! warning (docs/going-live.md)."""
        from . import doctor as checks

        report = checks.run(current_app._get_current_object(), offline_only=offline, timeout=timeout)  # type: ignore[attr-defined]
        click.echo(report.render())
        if report.failed:
            click.echo("doctor: something is wrong; fix each ✗ above (the setting is named first)", err=True)
            raise SystemExit(1)
        click.echo("doctor: ready" + (" (warnings above)" if any(m == "!" for m, _t in report.lines) else ""))

    @app.cli.command("reconcile")
    def reconcile() -> None:
        """Query WeChat Pay for attempts pending a while and apply the answers."""
        checked, paid = jobs.reconcile()
        click.echo(f"queried {checked} attempt(s); {paid} found paid")

    @app.cli.command("reconcile-bill")
    @click.option("--date", "bill_date", default=None, metavar="YYYY-MM-DD",
                  help="The day to reconcile (Asia/Shanghai). Default: yesterday.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
    def reconcile_bill(bill_date: str | None, as_json: bool) -> None:
        """Reconcile a day's WeChat Pay trade bill with the shop's ledger (exit 0 matched, 3 differences, 1 no bill)."""
        from .services import reconciliation

        try:
            day = date.fromisoformat(bill_date) if bill_date else reconciliation.yesterday()
        except ValueError:
            raise click.BadParameter("must be YYYY-MM-DD", param_hint="--date") from None
        result, status = reconciliation.reconcile_day(day)
        run = reconciliation.run_for(day.isoformat())
        if as_json:
            summary = result.summary()
            if status == reconciliation.EXIT_FAILED and run is not None:
                summary["error"] = run.error  # why there was nothing to compare (exit status 1)
            click.echo(json.dumps(summary, ensure_ascii=False))
        elif status == reconciliation.EXIT_FAILED:
            click.echo(f"{day}: no bill to reconcile: {run.error if run else ''}", err=True)
        else:
            click.echo(f"{day}: {result.bill_rows} bill line(s), {result.matched} matched, "
                       f"{len(result.applied)} applied from the bill, {result.differences} difference(s), "
                       f"fees {result.fees_total / 100:.2f} yuan")
            for item in result.details:
                click.echo(f"  {item.kind}: {item.out_refund_no or item.out_trade_no} {item.order_no} "
                           f"shop={item.shop} wechat={item.wechat}")
        sys.exit(status)
