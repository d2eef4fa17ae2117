"""Who pays inside WeChat: the payer's openid, from web OAuth (JSAPI) or ``wx.login`` (mini program).

The openid is kept in the shop's signed session, per appid, and only ever comes from WeChat
(a code exchange), never from what a browser or mini program claims. WeChat "网页授权" and "小程序登录".
"""

from __future__ import annotations

import hmac
import secrets
import threading

from flask import current_app, session

from .. import endpoints, gateway
from ..errors import ShopError
from ..i18n import _
from ..wechatpay.errors import TransportError, WeChatPayError
from ..wechatpay.oauth import OAuthClient, OAuthError, authorize_url

SESSION_OPENIDS = "wechat_openids"  # {appid: openid}
SESSION_STATE = "wechat_oauth"  # {"state", "next"}: one pending authorization per session
_lock = threading.Lock()


class IdentityError(ShopError):
    pass


def oauth_base() -> str:
    """Where the authorize page lives: the simulator by default in simulator mode."""
    return endpoints.current().oauth(gateway.shop_base_url())


def oauth_api_base() -> str:
    """Where ``sns/oauth2/access_token`` and ``sns/jscode2session`` are called."""
    return endpoints.current().oauth_api(gateway.shop_base_url())


def _client() -> OAuthClient:
    base = oauth_api_base()
    clients = current_app.extensions.setdefault("wechat_oauth", {})
    found = clients.get(base)
    if found is None:
        with _lock:
            found = clients.setdefault(base, OAuthClient(api_base=base))
    return found


def session_openid(appid: str) -> str | None:
    """The openid WeChat gave this session for ``appid``, if any."""
    found = session.get(SESSION_OPENIDS) or {}
    return found.get(appid) if isinstance(found, dict) else None


def _remember(appid: str, openid: str) -> None:
    found = dict(session.get(SESSION_OPENIDS) or {})
    found[appid] = openid
    session[SESSION_OPENIDS] = found


def start_authorization(redirect_uri: str, next_url: str) -> str:
    """The authorize URL for ``snsapi_base``, with a fresh one-time CSRF ``state``."""
    state = secrets.token_hex(16)  # [a-zA-Z0-9], <= 128 bytes, as WeChat requires
    session[SESSION_STATE] = {"state": state, "next": next_url}
    return authorize_url(gateway.gateway().credentials.appid, redirect_uri, state, base=oauth_base())


def finish_authorization(code: str | None, state: str | None) -> str:
    """Check ``state``, exchange ``code``, keep the openid. Returns where to go next.

    :raise IdentityError: forged or replayed state, missing/invalid/used code, WeChat unreachable.
    """
    pending = session.pop(SESSION_STATE, None)  # one use, whatever happens next
    expected = pending.get("state") if isinstance(pending, dict) else None
    if not expected or not state or not hmac.compare_digest(str(state), str(expected)):
        raise IdentityError("OAUTH_STATE_INVALID", _("授权请求无效或已过期，请返回订单重新发起支付"), 400)
    if not code:
        raise IdentityError("OAUTH_DENIED", _("未获得微信授权，无法使用微信内支付"), 400)
    creds = gateway.gateway().credentials
    if not creds.appsecret:
        raise IdentityError("APPSECRET_MISSING", _("商户未配置 WECHATPAY_APPSECRET"), 500)
    try:
        identity = _client().exchange_code(creds.appid, creds.appsecret, code)
    except OAuthError as exc:
        current_app.logger.warning("OAuth code exchange refused: errcode %s", exc.errcode)
        raise IdentityError(f"WECHAT_{exc.errcode}", _("微信授权失败（%(c)s）：%(m)s", c=exc.errcode, m=exc.errmsg),
                            400) from None
    except (TransportError, WeChatPayError):
        raise IdentityError("WECHAT_UNAVAILABLE", _("暂时无法连接微信，请稍后再试"), 503) from None
    _remember(creds.appid, identity.openid)
    return str(pending.get("next") or "/")


def mini_program_login(code: object) -> str:
    """Exchange a ``wx.login`` code for the openid; keep it in the session. session_key is dropped.

    :raise IdentityError:
    """
    if not isinstance(code, str) or not code:
        raise IdentityError("INVALID_CODE", _("需要 wx.login 返回的 code"), 400)
    creds = gateway.gateway().credentials
    if not creds.miniprogram_appsecret:
        raise IdentityError("APPSECRET_MISSING", _("商户未配置 WECHATPAY_MINIPROGRAM_APPSECRET"), 500)
    try:
        login = _client().jscode2session(creds.miniprogram_appid, creds.miniprogram_appsecret, code)
    except OAuthError as exc:
        current_app.logger.warning("jscode2session refused: errcode %s", exc.errcode)
        raise IdentityError(f"WECHAT_{exc.errcode}", _("微信登录失败（%(c)s）：%(m)s", c=exc.errcode, m=exc.errmsg),
                            400) from None
    except (TransportError, WeChatPayError):
        raise IdentityError("WECHAT_UNAVAILABLE", _("暂时无法连接微信，请稍后再试"), 503) from None
    # session_key would decrypt the user's data: the shop does not need it, so it is not kept.
    _remember(creds.miniprogram_appid, login.openid)
    return login.openid


def payer_openid(appid: str, claimed: object = None) -> str:
    """The session's openid for ``appid``; a claimed one must be that same openid.

    :raise IdentityError: no WeChat login yet (401), or a claimed openid that is not the session's (403).
    """
    known = session_openid(appid)
    if not known:
        raise IdentityError("WECHAT_LOGIN_REQUIRED", _("请先完成微信授权或小程序登录"), 401)
    if claimed not in (None, "") and not (isinstance(claimed, str) and hmac.compare_digest(claimed, known)):
        raise IdentityError("OPENID_MISMATCH", _("openid 与当前会话的微信身份不一致"), 403)
    return known
