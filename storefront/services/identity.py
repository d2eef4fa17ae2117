"""Who pays inside WeChat: the payer's openid, from web OAuth (JSAPI) or ``wx.login`` (mini program).

The openid is kept in the shop's signed session, per appid, and only ever comes from WeChat
(a code exchange), never from what a browser or mini program claims. WeChat "网页授权" and "小程序登录".
"""

from __future__ import annotations

import hmac
import secrets
import threading
from datetime import timedelta

from flask import current_app, session
from sqlalchemy import delete, select, update

from .. import endpoints, gateway
from ..errors import ShopError
from ..extensions import db
from ..i18n import _
from ..models import OAuthState, utcnow
from ..wechatpay.errors import TransportError, WeChatPayError
from ..wechatpay.oauth import OAuthClient, OAuthError, authorize_url
from . import flowlog

SESSION_OPENIDS = "wechat_openids"  # {appid: openid}
STATE_LIFETIME = timedelta(minutes=10)  # an authorize page left open longer starts again
STATE_KEPT = timedelta(days=1)  # used and stale states are deleted after this
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


def start_authorization(redirect_uri: str, next_url: str, owner: str, order_id: int | None = None) -> str:
    """The authorize URL for ``snsapi_base``, with a fresh one-time CSRF ``state``.

    The state lives in the shop's database, bound to the shopper, not in the session cookie:
    every answer to a page polling beside the checkout would re-send an older cookie and
    overwrite it (docs/jsapi.md, "state").
    """
    state = secrets.token_hex(16)  # [a-zA-Z0-9], <= 128 bytes, as WeChat requires
    now = utcnow()
    db.session.execute(delete(OAuthState).where(OAuthState.created_at < now - STATE_KEPT))
    db.session.add(OAuthState(state=state, owner=owner, next_url=next_url[:512], order_id=order_id,
                              created_at=now))
    db.session.commit()
    url = authorize_url(gateway.gateway().credentials.appid, redirect_uri, state, base=oauth_base())
    flowlog.record_note("oauth_authorize", order_id, "302 Location: " + url + "\n\n" + _(
        "state 是一次性的防 CSRF 随机串，保存在商户数据库里（绑定当前顾客），不放在会被轮询覆盖的会话 Cookie 中。"))
    return url


def _use_state(state: str | None, owner: str | None) -> OAuthState | None:
    """Mark a live state of this shopper used (a conditional update: one winner); None if none."""
    if not state or not owner or len(state) > 64:
        return None
    used = db.session.execute(
        update(OAuthState)
        .where(OAuthState.state == str(state), OAuthState.owner == owner, OAuthState.used_at.is_(None),
               OAuthState.created_at > utcnow() - STATE_LIFETIME)
        .values(used_at=utcnow())
    ).rowcount
    db.session.commit()
    if not used:
        return None
    found = db.session.scalar(select(OAuthState).where(OAuthState.state == str(state)))
    db.session.commit()  # a read: end it, so the flow record writes on its own (SQLite's one writer)
    return found


def finish_authorization(code: str | None, state: str | None, owner: str | None) -> str:
    """Check ``state``, exchange ``code``, keep the openid. Returns where to go next.

    :raise IdentityError: forged or replayed state, missing/invalid/used code, WeChat unreachable.
    """
    pending = _use_state(state, owner)  # one use, whatever happens next
    if pending is None:
        raise IdentityError("OAUTH_STATE_INVALID", _("授权请求无效或已过期，请返回订单重新发起支付"), 400)
    flowlog.record_note("oauth_callback", pending.order_id, _(
        "GET /oauth/wechat/callback?code=…&state=%(s)s\nstate ✓ 属于本顾客、未过期、未使用过（已作废）\ncode %(c)s",
        s=pending.state, c=_("已收到，5 分钟内有效且只能用一次") if code else _("缺失：用户未授权")))
    if not code:
        raise IdentityError("OAUTH_DENIED", _("未获得微信授权，无法使用微信内支付"), 400)
    creds = gateway.gateway().credentials
    if not creds.appsecret:
        raise IdentityError("APPSECRET_MISSING", _("商户未配置 WECHATPAY_APPSECRET"), 500)
    try:
        identity = _client().exchange_code(
            creds.appid, creds.appsecret, code,
            observer=lambda exchange: flowlog.record_login_exchange("oauth_token", exchange, order_id=pending.order_id))
    except OAuthError as exc:
        current_app.logger.warning("OAuth code exchange refused: errcode %s", exc.errcode)
        raise IdentityError(f"WECHAT_{exc.errcode}", _("微信授权失败（%(c)s）：%(m)s", c=exc.errcode, m=exc.errmsg),
                            400) from None
    except (TransportError, WeChatPayError):
        raise IdentityError("WECHAT_UNAVAILABLE", _("暂时无法连接微信，请稍后再试"), 503) from None
    _remember(creds.appid, identity.openid)
    return pending.next_url or "/"


def mini_program_login(code: object, owner: str | None = None) -> str:
    """Exchange a ``wx.login`` code for the openid; keep it in the session. session_key is dropped.

    :raise IdentityError:
    """
    if not isinstance(code, str) or not code:
        raise IdentityError("INVALID_CODE", _("需要 wx.login 返回的 code"), 400)
    creds = gateway.gateway().credentials
    if not creds.miniprogram_appsecret:
        raise IdentityError("APPSECRET_MISSING", _("商户未配置 WECHATPAY_MINIPROGRAM_APPSECRET"), 500)
    try:
        login = _client().jscode2session(
            creds.miniprogram_appid, creds.miniprogram_appsecret, code,
            observer=lambda exchange: flowlog.record_login_exchange("jscode2session", exchange, owner=owner))
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
