"""Where the shop reaches WeChat: one ``WeChatEndpoints`` value, built when the app is created.

In production every base is WeChat's own (or configured: ``WECHATPAY_API_BASE``,
``WECHATPAY_OAUTH_BASE``, ``WECHATPAY_OAUTH_API_BASE``, ``WECHATPAY_NOTIFY_URL``,
``WECHATPAY_REFUND_NOTIFY_URL``: docs/interface.md). In simulator mode the app factory mounts the
simulator and passes its ``mount`` (``/sandbox``) and its bridge script: this is the one place
the rest of the shop learns about it, and only as URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

WECHAT_OAUTH_BASE = "https://open.weixin.qq.com"
WECHAT_OAUTH_API_BASE = "https://api.weixin.qq.com"


@dataclass(frozen=True)
class WeChatEndpoints:
    """The shop's view of WeChat. An empty base means "under the shop's own base URL", which in
    simulator mode may be the request's host; ``at(shop_base)`` resolves them."""

    api_base: str = ""  # WeChat Pay API v3; "" → shop base + mount
    oauth_base: str = WECHAT_OAUTH_BASE  # the authorize page (snsapi_base)
    oauth_api_base: str = WECHAT_OAUTH_API_BASE  # sns/oauth2/access_token, sns/jscode2session
    notify_url: str = ""  # payment notifications; "" → shop base + /notify/wechatpay
    refund_notify_url: str = ""  # refund notifications; "" → shop base + /notify/wechatpay/refund
    mount: str = ""  # where a simulator is mounted in this app ("/sandbox"), else ""
    bridge_script: str = ""  # endpoint of the WeixinJSBridge script a simulator serves, else ""

    def api(self, shop_base: str) -> str:
        """WeChat Pay API v3's base."""
        return self.api_base or shop_base + self.mount

    def oauth(self, shop_base: str) -> str:
        """Where the OAuth authorize page lives."""
        return self.oauth_base or shop_base + self.mount

    def oauth_api(self, shop_base: str) -> str:
        """Where the OAuth code exchange and the mini program login are called."""
        return self.oauth_api_base or shop_base + self.mount

    def notify(self, shop_base: str) -> str:
        """The payment notifications' ``notify_url``."""
        return self.notify_url or shop_base + "/notify/wechatpay"

    def refund_notify(self, shop_base: str) -> str:
        """The refund notifications' ``notify_url``."""
        return self.refund_notify_url or shop_base + "/notify/wechatpay/refund"


def build(config: Mapping[str, Any], *, mount: str = "", bridge_script: str = "") -> WeChatEndpoints:
    """The endpoints of an app from its configuration, and the simulator's mount if one is mounted."""
    simulated = bool(mount)
    return WeChatEndpoints(
        api_base=config.get("WECHATPAY_API_BASE") or "",
        oauth_base=(config.get("WECHATPAY_OAUTH_BASE") or "").rstrip("/") or ("" if simulated else WECHAT_OAUTH_BASE),
        oauth_api_base=(config.get("WECHATPAY_OAUTH_API_BASE") or "").rstrip("/")
        or ("" if simulated else WECHAT_OAUTH_API_BASE),
        notify_url=config.get("WECHATPAY_NOTIFY_URL") or "",
        refund_notify_url=config.get("WECHATPAY_REFUND_NOTIFY_URL") or "",
        mount=mount,
        bridge_script=bridge_script,
    )


def register(app: Flask, endpoints: WeChatEndpoints) -> None:
    app.extensions["wechat_endpoints"] = endpoints


def current() -> WeChatEndpoints:
    """The current app's endpoints."""
    return current_app.extensions["wechat_endpoints"]
