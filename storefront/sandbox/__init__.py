"""The embedded WeChat Pay simulator, mounted at ``/sandbox`` in simulator mode."""

from __future__ import annotations

from dataclasses import dataclass

import click
from flask import Flask

from .state import MOUNT, Sandbox, sandbox

__all__ = ["MOUNT", "Mounted", "Sandbox", "register", "sandbox"]


@dataclass(frozen=True)
class Mounted:
    """What the shop may know of the mounted simulator: its path and its bridge script's endpoint."""

    mount: str
    bridge_script: str


def register(app: Flask) -> Mounted:
    """Mount the simulator at ``/sandbox``: its routes, its demo merchant's files, its CLI command."""
    # Each module adds its routes to the nested blueprints (blueprints.py) as it is imported.
    from . import bills, console, scene_views, tamper, testbackend, views, views_api  # noqa: F401
    from .blueprints import assemble
    from .scene_views import install_log_redaction

    state = Sandbox(app)
    app.extensions["sandbox"] = state
    app.register_blueprint(assemble(), url_prefix=MOUNT)
    install_log_redaction()
    from .wechat_browser import WeChatBrowserEmulation

    app.wsgi_app = WeChatBrowserEmulation(app.wsgi_app)  # type: ignore[method-assign]  # 模拟微信内打开
    from .notifier import oldest_pending_seconds

    app.extensions["sandbox_oldest_pending_seconds"] = oldest_pending_seconds  # for the shop's /metrics
    from .demo import ensure_demo_credentials

    # bootstrap.initialise runs it: the demo merchant's keys, on both sides, written once.
    app.extensions.setdefault("instance_setup", []).append(ensure_demo_credentials)
    # 测试你自己的后端: sandbox-kit, sandbox-grade, sandbox-serve (docs/en/test-your-backend.md)
    testbackend.register_cli(app)

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

    return Mounted(MOUNT, "sandbox.payer.bridge_js")
