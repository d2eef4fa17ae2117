from .views import NotificationLane, bp

__all__ = ["NotificationLane", "bp"]
