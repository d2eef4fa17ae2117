from .views import bp
from . import scenes  # noqa: E402,F401  H5 / JSAPI routes on the same blueprint
__all__ = ["bp"]
