"""Checkout: the order page and each scene's payment page (one route, dispatched by scene)."""

from flask import Blueprint

from ..web import check_csrf

bp = Blueprint("checkout", __name__)
bp.before_request(check_csrf)

from . import returns, views  # noqa: E402,F401  the routes, registered on bp

__all__ = ["bp"]
