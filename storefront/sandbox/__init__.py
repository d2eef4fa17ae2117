"""The embedded WeChat Pay simulator, mounted at ``/sandbox`` in simulator mode."""

from __future__ import annotations

import threading
from pathlib import Path

import click
from flask import Flask, current_app

from .notifier import Notifier
from .simulator import Platform


class Sandbox:
    """Per-app simulator state: its keys (loaded once, on first use) and its notifier."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._platform: Platform | None = None
        self._notifier: Notifier | None = None

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            with self._lock:
                if self._platform is None:
                    config = self.app.config
                    self._platform = Platform(
                        Path(self.app.instance_path), config["SANDBOX_MERCHANT_NAME"], config["SANDBOX_TIME_SCALE"],
                        config=config,
                    )
        return self._platform

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            platform = self.platform
            with self._lock:
                if self._notifier is None:
                    self._notifier = Notifier(self.app, platform)
        return self._notifier

    def notify_soon(self) -> None:
        """New notifications are stored: deliver them now (if this process delivers)."""
        if self.app.config["SANDBOX_NOTIFIER"]:
            self.notifier.wake()

    def stop(self) -> None:
        if self._notifier is not None:
            self._notifier.stop()


def sandbox() -> Sandbox:
    return current_app.extensions["sandbox"]


def register(app: Flask) -> None:
    from . import tamper  # noqa: F401  adds the guided tour's tampered-notification control to bp
    from . import console, views_api  # noqa: F401  # more routes on the same blueprint
    from .views import bp

    state = Sandbox(app)
    app.extensions["sandbox"] = state
    app.register_blueprint(bp, url_prefix="/sandbox")
    from .scene_views import bp as scenes_bp, install_log_redaction

    app.register_blueprint(scenes_bp, url_prefix="/sandbox")
    install_log_redaction()
    from .wechat_browser import WeChatBrowserEmulation

    app.wsgi_app = WeChatBrowserEmulation(app.wsgi_app)  # type: ignore[method-assign]  # 模拟微信内打开

    @app.cli.command("sandbox-rotate-cert")
    @click.option("--overlap-hours", default=24 * 7, show_default=True, type=float,
                  help="How long the previous certificate stays listed (simulator time).")
    def rotate_cert(overlap_hours: float) -> None:
        """Issue a new platform certificate for the simulator; the old one stays listed a while."""
        from datetime import timedelta

        platform = state.platform
        cert = platform.certificates.rotate(platform.now(), timedelta(hours=overlap_hours))
        listed = ", ".join(c.serial for c in platform.certificates.listed(platform.now()))
        click.echo(f"new platform certificate {cert.serial}; now signing with it; listed: {listed}")

    @app.before_request
    def _start_notifier() -> None:
        # Deliveries left pending by a previous process resume with the first request.
        if app.config["SANDBOX_NOTIFIER"]:
            state.notifier.start()
