"""Simulator routes for H5, JSAPI, the mini program and WeChat login, at WeChat's own paths.

``/sandbox/v3/pay/transactions/{h5,jsapi}`` (api.mch.weixin.qq.com), the H5 cashier
(wx.tenpay.com's ``checkmweb``), ``/sandbox/connect/oauth2/authorize`` (open.weixin.qq.com),
``/sandbox/sns/...`` (api.weixin.qq.com) and the ``WeixinJSBridge`` shim with its pay sheet.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from flask import current_app, redirect, render_template, request, send_from_directory, session, url_for

from ..i18n import N_, _
from ..web import check_csrf
from ..wechatpay.oauth import redact_query_secrets_in
from . import scenes, wechat_browser
from .blueprints import api, control, payer
from .http import RESULT_MESSAGES, json_body, signed_api
from .scenes import BridgeRefusal, LoginFailure
from .state import sandbox


def install_log_redaction() -> None:
    """The dev server's access log names every URL the simulator serves, appsecret included."""
    redact_query_secrets_in("werkzeug")
OAUTH_SCOPES = ("snsapi_base", "snsapi_userinfo")
SESSION_OPENED_H5 = "sandbox_h5_opened"  # cashiers this browser opened past the checks


def _registered_domain() -> str:
    """The merchant's registered H5 / OAuth domain: configured, else the host the shop used."""
    return (current_app.config.get("SANDBOX_H5_DOMAIN") or request.host.rsplit(":", 1)[0]).lower()


def _apps() -> dict[str, dict[str, str]]:
    cached = current_app.extensions.get("sandbox_apps")
    if cached is None:
        config = json.loads((Path(current_app.instance_path) / "sandbox" / "merchant.json").read_text())
        cached = current_app.extensions["sandbox_apps"] = config.get("apps", {})
    return cached


def _wechat_page(message: str, status: int = 200, code: str | None = None):
    return render_template("sandbox/wechat_notice.html", message=_(message), code=code), status


# -- API v3 ------------------------------------------------------------------------------------


@api.post("/v3/pay/transactions/h5")
@signed_api
def h5(platform, merchant):
    base = request.host_url.rstrip("/")
    return 200, scenes.create_h5(platform, merchant, json_body(), base, _registered_domain())


@api.post("/v3/pay/transactions/jsapi")
@signed_api
def jsapi(platform, merchant):
    return 200, scenes.create_jsapi(platform, merchant, json_body())


# -- the H5 cashier (wx.tenpay.com) ------------------------------------------------------------


@payer.get("/cgi-bin/mmpayweb-bin/checkmweb")
def h5_cashier():
    """The page an h5_url opens: WeChat's checks first, in the order WeChat's "H5支付" FAQ lists them."""
    found = scenes.find_h5_link(request.args.get("prepay_id"), request.args.get("package"))
    if found is None:
        return _wechat_page(scenes.H5_NO_REFERER, 400, "INVALID_H5_URL")
    link, txn = found
    redirect_url = request.args.get("redirect_url")
    client_ip = payer_address()
    loopback_ok = current_app.config.get("SANDBOX_H5_LOOPBACK", "demo") != "refuse"
    refusal = scenes.h5_refusal(link, request.user_agent.string, request.referrer, redirect_url,
                                now=sandbox().platform.now(), client_ip=client_ip, loopback_ok=loopback_ok)
    if refusal:
        current_app.logger.info("h5 cashier refused %s: opened from %s, payer_client_ip %s",
                                link.prepay_id, client_ip, link.payer_client_ip)
        return _wechat_page(refusal, 403)
    opened = [p for p in session.get(SESSION_OPENED_H5, []) if p != link.prepay_id][-9:]
    session[SESSION_OPENED_H5] = opened + [link.prepay_id]
    platform = sandbox().platform
    return render_template(
        "sandbox/h5_cashier.html", txn=txn, merchant_name=(platform.merchant_for(txn.mchid) or platform.merchant).name,
        expired=platform.expired(txn),
        prepay_id=link.prepay_id, package=link.package, redirect_url=redirect_url or "",
        message=RESULT_MESSAGES.get(request.args.get("result", "")),
        loopback_note=scenes.is_loopback(client_ip),
    )


def payer_address() -> str:
    """The address WeChat's cashier sees: the browser's own. Behind a proxy, that is the first
    X-Forwarded-For hop, whatever the shop trusted; so a shop that sends its proxy's address as
    payer_client_ip (no PROXY_FIX_X_FOR) is refused here, as it would be live."""
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
    return forwarded or request.environ.get("werkzeug.proxy_fix.orig_remote_addr") or request.remote_addr or ""


@payer.post("/cgi-bin/mmpayweb-bin/pay")
def h5_pay():
    """The payer taps Pay (or Cancel) in the cashier; WeChat then sends the browser back."""
    check_csrf()
    found = scenes.find_h5_link(request.form.get("prepay_id"), request.form.get("package"))
    if found is None or found[0].prepay_id not in session.get(SESSION_OPENED_H5, []):
        return _wechat_page(scenes.H5_NO_REFERER, 400, "INVALID_H5_URL")
    if "micromessenger" in request.user_agent.string.lower():
        return _wechat_page(scenes.H5_IN_WECHAT, 403)
    link, txn = found
    state = sandbox()
    # The payer pays, cancels, or picks a failure (the issue-5 payer outcomes, as on the scan page).
    result = {"pay": "SUCCESS", "NOTENOUGH": "NOTENOUGH", "PAYERROR": "PAYERROR",
              "USERPAYING": "USERPAYING"}.get(request.form.get("action", ""), "CANCEL")
    paid, reason = state.platform.pay(txn, result)
    if paid:
        state.platform.enqueue_payment_notification(txn)
        state.notify_soon()
    redirect_url = request.form.get("redirect_url") or ""
    if redirect_url and (urlsplit(redirect_url).hostname or "").lower() == link.domain.lower():
        return redirect(redirect_url, code=303)
    # No redirect_url: WeChat returns to the page that opened the cashier; here, show the outcome.
    return redirect(url_for("sandbox.payer.h5_cashier", prepay_id=link.prepay_id, package=link.package,
                            result=reason), code=303)


# -- WeChat login: open.weixin.qq.com and api.weixin.qq.com ------------------------------------


@control.post("/control/wechat-browser")
def wechat_browser_switch():
    """「模拟微信内打开」 on (``mode=wechat`` / ``miniprogram``) or off, for this browser; then back."""
    check_csrf()
    mode = request.form.get("mode", "off")
    target = request.form.get("next") or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only ever back into this site
    response = redirect(target, code=303)
    if mode in wechat_browser.MODES:
        response.set_cookie(wechat_browser.COOKIE, mode, max_age=30 * 24 * 3600, httponly=True, samesite="Lax")
    else:
        response.delete_cookie(wechat_browser.COOKIE)
    return response


@payer.get("/connect/oauth2/authorize")
def oauth_authorize():
    """``snsapi_base`` asks nothing: straight back to ``redirect_uri`` with a one-time code."""
    args = request.args
    if "micromessenger" not in request.user_agent.string.lower():
        return render_template("sandbox/wechat_notice.html", message=_("请在微信客户端打开链接"), code=None,
                               offer_emulation=True), 403
    appid = args.get("appid", "")
    if _apps().get(appid, {}).get("type") != "official_account":
        return _wechat_page(N_("该公众号不存在或 appid 无效"), 400, "10016")
    if args.get("response_type") != "code" or args.get("scope") not in OAUTH_SCOPES:
        return _wechat_page(N_("scope 参数错误或没有 scope 权限"), 400, "10005")
    redirect_uri = args.get("redirect_uri", "")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() != _registered_domain():
        return _wechat_page(N_("redirect_uri 域名与后台配置不一致"), 400, "10003")
    state = args.get("state", "")
    if len(state.encode()) > 128:
        return _wechat_page(N_("state 参数过长"), 400, "10004")
    code = scenes.issue_login_code(sandbox().platform, "oauth", appid, args["scope"])
    separator = "&" if parts.query else "?"
    return redirect(redirect_uri + separator + urlencode({"code": code, "state": state}), code=302)


@api.get("/sns/oauth2/access_token")
def oauth_access_token():
    """The code exchange: HTTP 200 either way, ``errcode`` on failure, as WeChat answers."""
    args = request.args
    try:
        scenes.app_of(_apps(), args.get("appid"), args.get("secret"), "oauth")
        row = scenes.redeem_login_code("oauth", args["appid"], args.get("code"), args.get("grant_type"))
    except LoginFailure as exc:
        return exc.body()
    return {"access_token": scenes.secrets.token_urlsafe(48), "expires_in": 7200,
            "refresh_token": scenes.secrets.token_urlsafe(48), "openid": row.openid, "scope": row.scope}


@api.get("/sns/jscode2session")
def jscode2session():
    args = request.args
    try:
        scenes.app_of(_apps(), args.get("appid"), args.get("secret"), "jscode")
        row = scenes.redeem_login_code("jscode", args["appid"], args.get("js_code"), args.get("grant_type"))
    except LoginFailure as exc:
        return exc.body()
    return {"openid": row.openid, "session_key": scenes.secrets.token_urlsafe(16)}


@control.post("/control/wx-login")
def control_wx_login():
    """Test control: the code ``wx.login()`` would give the demo payer in a mini program."""
    data = request.get_json(silent=True) or {}
    appid = data.get("appid") or next((a for a, app in _apps().items() if app.get("type") == "miniprogram"), "")
    if _apps().get(appid, {}).get("type") != "miniprogram":
        return {"code": "APPID_NOT_EXIST", "message": "模拟器中没有该小程序 appid"}, 404
    return {"code": scenes.issue_login_code(sandbox().platform, "jscode", appid), "appid": appid}


# -- the WeixinJSBridge shim and its pay sheet --------------------------------------------------


@payer.get("/jsapi/bridge.js")
def bridge_js():
    """The shim the checkout page loads in simulator mode when no real WeixinJSBridge exists."""
    folder = Path(current_app.static_folder or "") / "js"
    response = send_from_directory(folder, "sandbox-jsbridge.js", mimetype="application/javascript")
    response.headers["Cache-Control"] = "no-cache"
    return response


def _bridge_params():
    if not request.is_json:
        return None
    data = request.get_json(silent=True)
    return data.get("params") if isinstance(data, dict) else None


@payer.post("/jsapi/verify")
def bridge_verify():
    """The app's checks before it shows the sheet: paySign with the merchant public key first."""
    platform = sandbox().platform
    try:
        prepay, txn = scenes.check_pay_params(platform, _bridge_params())
    except BridgeRefusal as exc:
        return {"err_msg": "get_brand_wcpay_request:fail", "code": exc.code, "message": exc.message}, 400
    return {"merchant_name": (platform.merchant_for(txn.mchid) or platform.merchant).name,
            "description": txn.description,
            "amount_total": txn.amount_total, "trade_state": txn.trade_state, "expired": platform.expired(txn),
            "labels": sheet_labels()}


def sheet_labels() -> dict[str, str]:
    """The pay sheet's words: the same labels as the scan page and the H5 cashier."""
    return {
        "title": _("微信支付"), "method": _("付款方式"), "balance": _("零钱（模拟）"), "pay": _("支付"),
        "password": _("请输入支付密码"), "password_hint": _("模拟器：输入任意 6 位数字即完成支付"),
        "other": _("模拟其他结果"), "NOTENOUGH": _("零钱余额不足"), "PAYERROR": _("银行系统异常"),
        "USERPAYING": _("停在输入密码（支付中）"), "cancel": _("取消支付"), "ok": _("确定"),
        "tag": _("模拟器 · 非真实微信"), "network": _("网络异常"), "failed": _("支付失败"),
    }


@payer.post("/jsapi/pay")
def bridge_pay():
    """The payer taps Pay (or picks a failure) on the sheet: verify again, then pay."""
    state = sandbox()
    data = request.get_json(silent=True) if request.is_json else None
    result = data.get("result", "SUCCESS") if isinstance(data, dict) else None
    if result not in ("SUCCESS", "PAYERROR", "NOTENOUGH", "USERPAYING"):
        return {"err_msg": "get_brand_wcpay_request:fail", "code": "PARAM_ERROR", "message": "result 无效"}, 400
    try:
        _prepay, txn = scenes.check_pay_params(state.platform, _bridge_params())
    except BridgeRefusal as exc:
        return {"err_msg": "get_brand_wcpay_request:fail", "code": exc.code, "message": exc.message}, 400
    paid, reason = state.platform.pay(txn, result)
    if paid:
        state.platform.enqueue_payment_notification(txn)
        state.notify_soon()
        return {"err_msg": "get_brand_wcpay_request:ok", "transaction_id": txn.transaction_id}
    if reason == "USERPAYING":
        # Still entering the password: no callback yet; the merchant's queries still see NOTPAY
        # (USERPAYING is a payment-code state); the sheet completes the payment after a moment.
        return {"err_msg": None, "payer_typing": True, "message": RESULT_MESSAGES[reason]}, 202
    return {"err_msg": "get_brand_wcpay_request:fail", "code": reason,
            "message": RESULT_MESSAGES.get(reason, reason)}, 409
