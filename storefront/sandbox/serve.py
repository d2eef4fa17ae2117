"""``sandbox-serve``: the simulator alone, its API at the root (``/v3/…``), as api.mch.weixin.qq.com.

For backends whose SDK cannot add a path prefix to its API base. Every path is served as the
same path under ``/sandbox`` (the console at ``/``, the payer's pages and control as usual);
the signature is checked over the path as the client sent it, so ``/v3/…`` verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import run_simple

from .state import MOUNT

PASS_THROUGH = (MOUNT + "/", "/static/")


class RootMount:
    """WSGI middleware: ``/x`` is served as ``/sandbox/x``; ``/sandbox/…`` and ``/static/…`` unchanged."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path != MOUNT and not path.startswith(PASS_THROUGH):
            if "RAW_URI" not in environ and "REQUEST_URI" not in environ:
                query = environ.get("QUERY_STRING", "")
                environ["RAW_URI"] = path + ("?" + query if query else "")
            environ["PATH_INFO"] = MOUNT + path
        return self.app(environ, start_response)


def root_app(app) -> RootMount:
    """The app's WSGI callable with the simulator at the root: what ``sandbox-serve`` serves."""
    return RootMount(app.wsgi_app)


def serve(app, host: str, port: int) -> None:
    """Serve the simulator alone until interrupted (threaded: notifications and answers overlap)."""
    wrapped = app.wsgi_app
    app.wsgi_app = RootMount(wrapped)  # type: ignore[method-assign]
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        app.wsgi_app = wrapped  # type: ignore[method-assign]
