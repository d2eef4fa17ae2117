"""WeChat Pay API v3, merchant side: signing, verification, AES-GCM and the HTTP client.

Knows nothing of Flask or the shop's models: it takes headers, bytes and keys.
"""

from .client import Client, Exchange, Response
from .errors import APIError, DecryptError, NotificationError, SignatureError, TransportError, WeChatPayError
from .notify import Notification, Transaction
from .verify import Verifier

__all__ = [
    "APIError", "Client", "DecryptError", "Exchange", "Notification", "NotificationError", "Response",
    "SignatureError", "Transaction", "TransportError", "Verifier", "WeChatPayError",
]
