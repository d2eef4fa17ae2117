from . import reconciliation  # noqa: F401  # the reconciliation pages, on the same blueprint
from .views import bp

__all__ = ["bp"]
