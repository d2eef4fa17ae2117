"""The JSON API of docs/interface.md, over the same services as the pages."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from . import views  # noqa: E402,F401  the routes, registered on bp

__all__ = ["bp"]
