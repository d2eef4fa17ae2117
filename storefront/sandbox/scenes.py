"""The simulator's H5, JSAPI and WeChat-login rules, where real WeChat enforces them.

WeChat Pay "H5下单" and the "H5支付" FAQ (link checks and refusal texts), "JSAPI下单" (``payer.openid``
under ``appid``), "JSAPI调起支付" (paySign), "网页授权" and "小程序登录" (OAuth ``code``, ``jscode2session``).
"""

from __future__ import annotations

import ipaddress
import secrets
import string
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update

from ..clock import utcnow
from ..extensions import db
from ..i18n import N_
from ..wechatpay.errors import SignatureError
from ..wechatpay.signing import pay_sign_message
from ..wechatpay.verify import verify_signature
from .models import SandboxTransaction
from .scene_models import SandboxH5Link, SandboxLoginCode, SandboxPrepay
from .simulator import ApiFailure, Merchant, Platform, param_error

H5_URL_LIFETIME = timedelta(minutes=5)
PREPAY_LIFETIME = timedelta(hours=2)
LOGIN_CODE_LIFETIME = timedelta(minutes=5)
H5_TYPES = {"Wap", "iOS", "Android"}

# What WeChat's intermediate page shows (the "H5支付" FAQ), checked in this order.
H5_IN_WECHAT = N_("请在微信外打开订单，进行支付")
H5_NO_REFERER = N_("商家参数格式有误，请联系商家解决")
H5_WRONG_DOMAIN = N_("商家存在未配置的参数，请联系商家解决")
H5_EXPIRED = N_("支付请求已失效，请重新发起支付")
# The address that opens h5_url is not scene_info.payer_client_ip (or is a loopback address).
H5_IP_MISMATCH = N_("网络环境未能通过安全验证，请稍后再试")


def new_prepay_id(now: datetime | None = None) -> str:
    """``wx`` + yyyyMMddHHmmss + 20 hex, as WeChat's look."""
    return "wx" + (now or utcnow()).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10)


# -- H5 ----------------------------------------------------------------------------------------


def create_h5(platform: Platform, merchant: Merchant, data: Any, public_base: str, domain: str) -> dict[str, str]:
    """``POST /v3/pay/transactions/h5``: ``{"h5_url"}`` pointing at the simulator's cashier."""
    fields = platform._validate_order(merchant, data)
    scene = data.get("scene_info")
    ip = scene.get("payer_client_ip") if isinstance(scene, dict) else None
    if not isinstance(ip, str) or not ip or len(ip) > 45:
        raise param_error("/scene_info/payer_client_ip", "H5支付须传用户的真实IP")
    h5_info = scene.get("h5_info") if isinstance(scene, dict) else None
    kind = h5_info.get("type") if isinstance(h5_info, dict) else None
    if kind not in H5_TYPES:
        raise param_error("/scene_info/h5_info/type", "须为Wap、iOS或Android", kind)
    txn = platform._create_or_resubmit(merchant, "MWEB", fields)
    now = platform.now()  # the simulator clock: fast-forward ages h5_url too
    link = SandboxH5Link(
        transaction_id=txn.id, prepay_id=new_prepay_id(now), issued_at=now, domain=domain, payer_client_ip=ip,
        package="".join(secrets.choice(string.digits) for _ in range(10)),
    )
    db.session.add(link)
    db.session.commit()
    return {"h5_url": f"{public_base}/sandbox/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={link.prepay_id}"
                      f"&package={link.package}"}


def find_h5_link(prepay_id: str | None, package: str | None) -> tuple[SandboxH5Link, SandboxTransaction] | None:
    link = db.session.scalar(select(SandboxH5Link).where(SandboxH5Link.prepay_id == (prepay_id or "")))
    if link is None or not secrets.compare_digest(link.package, package or ""):
        return None
    return link, db.session.get(SandboxTransaction, link.transaction_id)


def _host(url: str | None) -> str | None:
    try:
        return urlsplit(url or "").hostname
    except ValueError:
        return None


def is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").strip()).is_loopback
    except ValueError:
        return False


def h5_refusal(link: SandboxH5Link, user_agent: str, referer: str | None, redirect_url: str | None,
               now: datetime | None = None, client_ip: str | None = None, loopback_ok: bool = True) -> str | None:
    """WeChat's words for why this cashier will not open, or None (the "H5支付" FAQ).

    ``client_ip``: the address opening the cashier, compared with ``scene_info.payer_client_ip``
    as WeChat's cashier does; a loopback address is refused unless ``loopback_ok`` (demo mode).
    """
    if "micromessenger" in user_agent.lower():
        return H5_IN_WECHAT
    if client_ip is not None:
        if (client_ip or "").strip() != (link.payer_client_ip or "").strip():
            return H5_IP_MISMATCH
        if is_loopback(client_ip) and not loopback_ok:
            return H5_IP_MISMATCH
    if not referer:
        return H5_NO_REFERER
    allowed = link.domain.lower()
    if (_host(referer) or "").lower() != allowed:
        return H5_WRONG_DOMAIN
    if redirect_url and (_host(redirect_url) or "").lower() != allowed:
        return H5_WRONG_DOMAIN
    if (now or utcnow()) - link.issued_at > H5_URL_LIFETIME:
        return H5_EXPIRED
    return None


# -- JSAPI and mini program ------------------------------------------------------------------


def create_jsapi(platform: Platform, merchant: Merchant, data: Any) -> dict[str, str]:
    """``POST /v3/pay/transactions/jsapi``: ``{"prepay_id"}`` for a payer of that appid."""
    fields = platform._validate_order(merchant, data)
    payer = data.get("payer")
    openid = payer.get("openid") if isinstance(payer, dict) else None
    if not isinstance(openid, str) or not openid or len(openid) > 128:
        raise param_error("/payer/openid", "JSAPI支付须传payer.openid")
    if openid != platform.openid(fields["appid"]):
        # An openid is per appid: the official account's openid is unknown to the mini program.
        raise ApiFailure(500, "OPENID_MISMATCH", "openid和appid不匹配")
    txn = platform._create_or_resubmit(merchant, "JSAPI", fields)
    now = platform.now()  # the simulator clock: fast-forward ages prepay_id too
    prepay = SandboxPrepay(transaction_id=txn.id, prepay_id=new_prepay_id(now), appid=fields["appid"],
                           issued_at=now, expires_at=now + PREPAY_LIFETIME)
    db.session.add(prepay)
    db.session.commit()
    return {"prepay_id": prepay.prepay_id}


class BridgeRefusal(Exception):
    """Why the WeChat app would not show the pay sheet; ``message`` is what the payer reads."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code, self.message = code, message


PAY_PARAM_NAMES = ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign")


def check_pay_params(platform: Platform, params: Any) -> tuple[SandboxPrepay, SandboxTransaction]:
    """What the WeChat app checks before its pay sheet: paySign with the merchant's public key,
    then the prepay_id, its appid and its lifetime. :raise BridgeRefusal:"""
    if not isinstance(params, dict) or any(not isinstance(params.get(k), str) for k in PAY_PARAM_NAMES):
        raise BridgeRefusal("PARAM_ERROR", "缺少参数：" + ",".join(k for k in PAY_PARAM_NAMES
                                                                   if not isinstance((params or {}).get(k), str)))
    if params["signType"] != "RSA":
        raise BridgeRefusal("SIGN_TYPE_ERROR", "signType 须为 RSA")
    message = pay_sign_message(params["appId"], params["timeStamp"], params["nonceStr"], params["package"])
    try:
        # paySign is verified with the key of the merchant the appId belongs to (several in the simulator)
        from .merchants import merchant_for_appid

        owner = merchant_for_appid(platform, params["appId"]) or platform.merchant
        verify_signature(platform.merchant_key(owner), message, params["paySign"])
    except SignatureError:
        raise BridgeRefusal("SIGN_ERROR", "支付验证签名失败") from None
    prefix, _, prepay_id = params["package"].partition("=")
    prepay = db.session.scalar(select(SandboxPrepay).where(SandboxPrepay.prepay_id == prepay_id))
    if prefix != "prepay_id" or prepay is None:
        raise BridgeRefusal("PREPAY_ID_INVALID", "prepay_id 无效")
    if prepay.appid != params["appId"]:
        raise BridgeRefusal("APPID_MISMATCH", "appId 与下单时的 appid 不一致")
    if platform.now() >= prepay.expires_at:
        raise BridgeRefusal("PREPAY_ID_EXPIRED", "prepay_id 已过期，请重新下单")
    txn = db.session.get(SandboxTransaction, prepay.transaction_id)
    if txn.payer_openid and txn.payer_openid != platform.openid(prepay.appid):
        raise BridgeRefusal("PAYER_MISMATCH", "下单账号与支付账号不一致")
    return prepay, txn


# -- WeChat login: OAuth code and wx.login code ----------------------------------------------


def issue_login_code(platform: Platform, kind: str, appid: str, scope: str = "") -> str:
    """A one-time code for the demo payer under ``appid``; it lives 5 minutes."""
    code = secrets.token_urlsafe(24)
    db.session.add(SandboxLoginCode(code=code, kind=kind, appid=appid, openid=platform.openid(appid), scope=scope))
    db.session.commit()
    return code


class LoginFailure(Exception):
    """WeChat's ``{"errcode", "errmsg"}`` answer (HTTP 200)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode, self.errmsg = errcode, errmsg

    def body(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "errmsg": f"{self.errmsg}, rid: {secrets.token_hex(12)}"}


def app_of(platform_apps: dict[str, dict[str, str]], appid: str | None, secret: str | None, kind: str) -> None:
    """Check appid and secret as ``api.weixin.qq.com`` does. :raise LoginFailure:"""
    app = platform_apps.get(appid or "")
    wanted = "official_account" if kind == "oauth" else "miniprogram"
    if app is None or app.get("type") != wanted:
        raise LoginFailure(40013, "invalid appid")
    if not secret or not secrets.compare_digest(app.get("secret", ""), secret):
        raise LoginFailure(40125, "invalid appsecret")


def redeem_login_code(kind: str, appid: str, code: str | None, grant_type: str | None) -> SandboxLoginCode:
    """Use a code once. :raise LoginFailure: 40002 bad grant_type, 40029 invalid, 40163 used."""
    if grant_type != "authorization_code":
        raise LoginFailure(40002, "invalid grant_type")
    row = db.session.scalar(select(SandboxLoginCode).where(SandboxLoginCode.code == (code or "")))
    now = utcnow()
    if row is None or row.kind != kind or row.appid != appid or now - row.issued_at > LOGIN_CODE_LIFETIME:
        raise LoginFailure(40029, "invalid code")
    won = db.session.execute(
        update(SandboxLoginCode).where(SandboxLoginCode.id == row.id, SandboxLoginCode.used_at.is_(None))
        .values(used_at=now)
    ).rowcount == 1
    db.session.commit()
    if not won:
        raise LoginFailure(40163, "code been used")
    return row
