"""The simulator's per-app state: its platform (keys, clock, settings) and its notifier."""

from __future__ import annotations

import threading
from pathlib import Path

from flask import Flask, current_app

from .notifier import Notifier
from .simulator import Platform

MOUNT = "/sandbox"  # where the app factory mounts the simulator


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
