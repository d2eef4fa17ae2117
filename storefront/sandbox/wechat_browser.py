"""「模拟微信内打开」: a desktop browser plays WeChat's in-app browser (or a mini program's web-view).

WeChat's pages (the OAuth authorize page, the JSAPI checkout) only work inside WeChat, which a
developer's desktop browser is not. In simulator mode this switch makes every request from the
browser that turned it on carry WeChat's User-Agent marker, server-side, so the shop and the
simulator both see what they would see inside WeChat: no browser setting to change. Real WeChat
Pay mode never installs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.http import parse_cookie

COOKIE = "sandbox_wechat_browser"
ENVIRON_KEY = "storefront.sandbox_wechat"
WECHAT_MARK = " MicroMessenger/8.0.50(0x18003237) NetType/WIFI Language/zh_CN SandboxEmulated"
MODES = {"wechat": WECHAT_MARK, "miniprogram": WECHAT_MARK + " miniProgram"}


class WeChatBrowserEmulation:
    """WSGI middleware: add WeChat's User-Agent marker for browsers whose switch is on."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        header = environ.get("HTTP_COOKIE", "")
        if COOKIE in header:
            mode = parse_cookie(header).get(COOKIE)
            agent = environ.get("HTTP_USER_AGENT", "")
            if mode in MODES and "micromessenger" not in agent.lower():
                environ["HTTP_USER_AGENT"] = agent + MODES[mode]
                environ[ENVIRON_KEY] = mode
        return self.wsgi_app(environ, start_response)


def emulated_mode(environ: dict[str, Any]) -> str | None:
    """``"wechat"`` or ``"miniprogram"`` when this request's browser has the switch on."""
    return environ.get(ENVIRON_KEY)
