"""Rate limits on order and payment-attempt creation per client (Flask-Limiter).

One client must not use up WeChat Pay's own rate limit (``FREQUENCY_LIMITED``) for every shopper.
Memory storage in simulator mode; in production ``RATELIMIT_STORAGE_URI`` (Redis) so all workers
share the counts. Never on ``/notify/*`` (WeChat Pay's deliveries and retries must always get
through) nor on the simulator. ``RATELIMIT_ENABLED=0`` switches them off (``make bench``).
"""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from .machine import is_machine_endpoint

# Views that create orders or ask WeChat Pay for a prepay: (endpoint, config key of its limit).
LIMITED = (
    ("api.create_order", "RATELIMIT_ORDERS"),
    ("catalog.buy", "RATELIMIT_ORDERS"),
    ("learn.start", "RATELIMIT_ORDERS"),
    ("api.create_payment", "RATELIMIT_PAYMENTS"),
    ("checkout.pay_start", "RATELIMIT_PAYMENTS"),
    ("checkout.renew", "RATELIMIT_PAYMENTS"),
    ("checkout.h5_go", "RATELIMIT_PAYMENTS"),
)


def register(app: Flask) -> Limiter:
    """Wrap the creation views of ``LIMITED`` with their limits; keep the limiter in ``app.extensions``."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", None)
    if not app.config.get("RATELIMIT_STORAGE_URI"):
        app.config["RATELIMIT_STORAGE_URI"] = "memory://"
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)  # Retry-After on a 429
    # The client address: ProxyFix (PROXY_FIX_X_FOR) has already put the real one in remote_addr.
    limiter = Limiter(get_remote_address, app=app, default_limits=[], application_limits=[],
                      key_prefix="storefront")
    # Machine endpoints (/notify/*) skip the limiter's per-request check altogether, not only its limits.
    limiter.request_filter(is_machine_endpoint)
    for endpoint, key in LIMITED:
        view = app.view_functions.get(endpoint)
        if view is not None:
            app.view_functions[endpoint] = limiter.shared_limit(app.config[key], scope=key.lower())(view)
    app.extensions["storefront_limiter"] = limiter
    return limiter
