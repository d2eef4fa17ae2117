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

    @app.cli.command("reconcile")
    def reconcile() -> None:
        """Query WeChat Pay for attempts pending a while and apply the answers."""
        checked, paid = jobs.reconcile()
        click.echo(f"queried {checked} attempt(s); {paid} found paid")
