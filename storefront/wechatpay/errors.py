"""One exception tree for everything that can go wrong talking WeChat Pay API v3."""

from __future__ import annotations

from typing import Any


class WeChatPayError(Exception):
    """Base class: callers that only care that the protocol failed catch this."""


class SignatureError(WeChatPayError):
    """A signature, its headers or its timestamp did not pass verification.

    ``check`` names which check refused, for programs (the flow inspector) to read instead of
    the wording: ``"headers"``, ``"serial"``, ``"timestamp"``, ``"probe"``, ``"encoding"`` or
    ``"signature"``.
    """

    def __init__(self, message: str, check: str = "signature") -> None:
        super().__init__(message)
        self.check = check


class DecryptError(WeChatPayError):
    """An AEAD_AES_256_GCM resource could not be decrypted (wrong key, nonce, AAD or tampered)."""

    check = "decrypt"


class NotificationError(WeChatPayError):
    """A notification body is not the shape WeChat Pay sends."""

    check = "decrypt"


class TransportError(WeChatPayError):
    """The API could not be reached or answered garbage (timeout, connection refused)."""


# One event, two spellings: WeChat Pay's v3 troubleshooting handbook answers a close of a paid
# order with ORDER_PAID, older v3 pages and the v2 API spell it ORDERPAID (docs/interface.md).
# ``APIError.code`` is the first spelling below, whichever arrived; ``wire_code`` keeps what was sent.
CODE_ALIASES = {
    "ORDER_PAID": "ORDERPAID",
    "USER_PAYING": "USERPAYING",
    "ORDERNOTEXIST": "ORDER_NOT_EXIST",
}


class APIError(WeChatPayError):
    """WeChat Pay answered 4xx/5xx. ``code`` is WeChat's own (``ORDERPAID``, ``SIGN_ERROR``), one
    spelling per event (``CODE_ALIASES``); ``wire_code`` is the code exactly as it was answered."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.wire_code = code
        self.code = CODE_ALIASES.get(code, code)
        self.message = message
        self.detail = detail
        self.request_id = request_id
