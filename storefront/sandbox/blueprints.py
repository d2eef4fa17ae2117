"""The simulator's routes: one parent blueprint, mounted at ``/sandbox``, and one nested
blueprint per audience. Endpoints read ``sandbox.<child>.<view>``."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("sandbox", __name__)
# WeChat Pay API v3 (signed) and WeChat's OAuth APIs: what the merchant's server calls.
api = Blueprint("api", __name__)
# What the payer sees and taps: the QR scan page, the H5 cashier, OAuth consent, the JSAPI bridge.
payer = Blueprint("payer", __name__)
# Test control (/control/…): JSON, no signature; exists only in simulator mode.
control = Blueprint("control", __name__)
# The console a learner or tester opens at /sandbox/: calls, notifications, clock, settings.
console = Blueprint("console", __name__)


def assemble() -> Blueprint:
    """Nest the children in the parent (once every route module has added its routes)."""
    if not bp._blueprints:  # noqa: SLF001  a second app in the same process reuses the assembly
        for child in (api, payer, control, console):
            bp.register_blueprint(child)
    return bp
