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


class APIError(WeChatPayError):
    """WeChat Pay answered 4xx/5xx. ``code`` is WeChat's own (``ORDERPAID``, ``SIGN_ERROR``)."""

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
        self.code = code
        self.message = message
        self.detail = detail
        self.request_id = request_id
