"""Machine-to-machine endpoints: which requests no browser makes (no imports from the app, so
every module may ask)."""

from __future__ import annotations

from flask import has_request_context, request

# Paths called by machines, not browsers: WeChat Pay's notifications. No cookie, no page, no
# shopper: the per-request work meant for browsers has no purpose there and costs a
# notification its speed (bench/README.md, ``python -m bench.profile``). Every such hook asks
# ``is_machine_endpoint()``, the one place that says which requests these are: the cookie
# session (``web.MachineAwareSessions``), the security headers (``security.protect``), the rate
# limiter's check (``ratelimit``), the locale selector (``i18n.select_locale``: the default
# locale, whatever headers came); a session refresh should too. The
# notification metrics (``health.count_notification``) are machine work: they stay.
# In simulator mode, the simulator's WeChat Pay API v3 and WeChat's server APIs (mounted at
# /sandbox, ``sandbox.state.MOUNT``) are called by merchants' servers, the shop's own client
# among them: no cookie, no reader either (WeChat Pay's own answers carry none of the page headers).
MACHINE_PATH_PREFIXES = ("/notify/", "/sandbox/v3/", "/sandbox/sns/")


def is_machine_path(path: str) -> bool:
    """Whether ``path`` is a machine-to-machine endpoint (see ``MACHINE_PATH_PREFIXES``)."""
    return path.startswith(MACHINE_PATH_PREFIXES)


def is_machine_endpoint() -> bool:
    """Whether the current request is machine-to-machine: hooks meant for browsers skip it.

    Decided by the path, so it holds before URL matching too (sessions open before it).
    """
    return has_request_context() and is_machine_path(request.path)
