"""CLI: ``flask --app wsgi init | close-expired | reconcile``, thin over the services."""

import click
from flask import Flask, current_app

from . import bootstrap
from .services import jobs


def register(app: Flask) -> None:
    @app.cli.command("init")
    def init() -> None:
        """Create instance keys (simulator mode), tables and the demo catalog where missing."""
        bootstrap.initialise(current_app._get_current_object())  # type: ignore[attr-defined]
        click.echo(f"instance ready in {current_app.instance_path}")

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
