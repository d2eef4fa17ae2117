"""H5, JSAPI and mini program scenes over real HTTP: each refusal where WeChat Pay makes it.

Shop and simulator run on one live loopback server; browsers are played by ``requests``
sessions with the User-Agent of a phone, of WeChat's in-app browser or of a mini program.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509 import load_pem_x509_certificate

from conftest import Shopper, module_server, submit_start_form, wait_for
from storefront.extensions import db
from storefront.models import utcnow
from storefront.sandbox.scene_models import SandboxH5Link
from storefront.sandbox.scenes import H5_EXPIRED, H5_IN_WECHAT, H5_NO_REFERER, H5_WRONG_DOMAIN
from storefront.services.scenes import detect_method
from storefront.wechatpay.errors import SignatureError
from storefront.wechatpay.signing import pay_sign_message
from storefront.wechatpay.verify import verify_signature

PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.50(0x18003237) NetType/WIFI Language/zh_CN")
MINIPROGRAM_UA = WECHAT_UA + " miniProgram"
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, instance_template):
    """One shop + simulator for the module (each test uses its own shoppers and orders): fast."""
    yield from module_server(tmp_path_factory, instance_template, SANDBOX_NOTIFIER=True)


def _shopper(live_server, user_agent: str) -> Shopper:
    shopper = Shopper(live_server.url)
    shopper.http.headers["User-Agent"] = user_agent
    return shopper


def _payments(shopper: Shopper, order_no: str, body: dict) -> requests.Response:
    return shopper.http.post(f"{shopper.base_url}/api/orders/{order_no}/payments", json=body, timeout=10)


def _h5(shopper: Shopper) -> tuple[dict, dict]:
    order = shopper.buy()
    answer = _payments(shopper, order["order_no"], {"method": "h5"})
    assert answer.status_code == 201, answer.text
    return order, answer.json()


def _notice(page: requests.Response) -> str:
    found = re.search(r'id="wechat-notice"[^>]*>([^<]*)<', page.text)
    return html.unescape(found.group(1).strip()) if found else ""


# -- scene routing ---------------------------------------------------------------------------


@pytest.mark.parametrize("user_agent, method", [
    (DESKTOP_UA, "native"), (PHONE_UA, "h5"), (WECHAT_UA, "jsapi"), (MINIPROGRAM_UA, "miniprogram"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36", "h5"),
])
def test_scene_follows_the_user_agent(user_agent, method):
    assert detect_method(user_agent) == method


def test_mini_program_web_view_is_told_to_pay_in_the_mini_program(live_server):
    shopper = _shopper(live_server, MINIPROGRAM_UA)
    order = shopper.buy()
    page = shopper.http.get(f"{live_server.url}/orders/{order['order_no']}/pay", timeout=10)
    assert page.status_code == 200 and "请返回小程序完成支付" in page.text


# -- H5 ----------------------------------------------------------------------------------------


def test_h5_answer_carries_the_encoded_redirect_url(live_server):
    shopper = _shopper(live_server, PHONE_UA)
    order, payment = _h5(shopper)
    query = parse_qs(urlsplit(payment["h5_url"]).query)
    assert query["redirect_url"] == [f"{live_server.url}/orders/{order['order_no']}/pay/result"]
    assert "%2F" in payment["h5_url"]  # URL-encoded, as WeChat requires
    assert set(payment) >= {"out_trade_no", "h5_url", "expires_at"}


def test_h5_paid_through_the_cashier_returns_to_the_result_page(live_server):
    shopper = _shopper(live_server, PHONE_UA)
    order, payment = _h5(shopper)
    cashier = shopper.http.get(payment["h5_url"], headers={"Referer": f"{live_server.url}/orders/x/pay"}, timeout=10)
    assert cashier.status_code == 200 and 'id="pay"' in cashier.text
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', cashier.text))
    form = {k: html.unescape(v) for k, v in form.items()}
    back = shopper.http.post(f"{live_server.url}/sandbox/cgi-bin/mmpayweb-bin/pay", data={**form, "action": "pay"},
                             allow_redirects=False, timeout=10)
    assert back.status_code == 303
    assert back.headers["Location"] == f"{live_server.url}/orders/{order['order_no']}/pay/result"
    result = shopper.http.get(back.headers["Location"], timeout=10)
    assert "正在确认支付结果" in result.text and "已完成支付" in result.text
    assert wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")


def test_h5_refused_inside_wechat(live_server):
    _order, payment = _h5(_shopper(live_server, PHONE_UA))
    page = requests.get(payment["h5_url"], headers={"User-Agent": WECHAT_UA, "Referer": live_server.url + "/"},
                        timeout=10)
    assert page.status_code == 403 and _notice(page) == H5_IN_WECHAT == "请在微信外打开订单，进行支付"


def test_h5_refused_without_referer(live_server):
    _order, payment = _h5(_shopper(live_server, PHONE_UA))
    page = requests.get(payment["h5_url"], headers={"User-Agent": PHONE_UA}, timeout=10)
    assert _notice(page) == H5_NO_REFERER == "商家参数格式有误，请联系商家解决"


def test_h5_refused_with_a_referer_of_another_domain(live_server):
    _order, payment = _h5(_shopper(live_server, PHONE_UA))
    page = requests.get(payment["h5_url"], headers={"User-Agent": PHONE_UA, "Referer": "https://evil.example/pay"},
                        timeout=10)
    assert _notice(page) == H5_WRONG_DOMAIN == "商家存在未配置的参数，请联系商家解决"


def test_h5_refused_with_a_redirect_url_of_another_domain(live_server):
    _order, payment = _h5(_shopper(live_server, PHONE_UA))
    url = payment["h5_url"].split("&redirect_url=")[0] + "&redirect_url=https%3A%2F%2Fevil.example%2Fdone"
    page = requests.get(url, headers={"User-Agent": PHONE_UA, "Referer": live_server.url + "/"}, timeout=10)
    assert _notice(page) == H5_WRONG_DOMAIN


def test_h5_refused_after_five_minutes_and_renewed_with_identical_parameters(live_server):
    shopper = _shopper(live_server, PHONE_UA)
    order, payment = _h5(shopper)
    prepay_id = parse_qs(urlsplit(payment["h5_url"]).query)["prepay_id"][0]
    with live_server.app.app_context():
        link = db.session.scalar(db.select(SandboxH5Link).where(SandboxH5Link.prepay_id == prepay_id))
        link.issued_at = utcnow() - timedelta(minutes=5, seconds=1)
        db.session.commit()
    page = requests.get(payment["h5_url"], headers={"User-Agent": PHONE_UA, "Referer": live_server.url + "/"},
                        timeout=10)
    assert _notice(page) == H5_EXPIRED == "支付请求已失效，请重新发起支付"
    # The shop's own record says the link is stale too: the shop re-submits identically for a fresh link.
    from storefront.models import Payment
    with live_server.app.app_context():
        row = db.session.scalar(db.select(Payment).where(Payment.out_trade_no == payment["out_trade_no"]))
        row.h5_url_issued_at = utcnow() - timedelta(minutes=5)
        db.session.commit()
    again = _payments(shopper, order["order_no"], {"method": "h5"}).json()
    assert again["out_trade_no"] == payment["out_trade_no"]  # the same attempt at WeChat Pay
    assert again["h5_url"] != payment["h5_url"]
    fresh = requests.get(again["h5_url"], headers={"User-Agent": PHONE_UA, "Referer": live_server.url + "/"},
                         timeout=10)
    assert fresh.status_code == 200 and 'id="pay"' in fresh.text


def test_h5_payer_ip_honours_the_configured_proxy_only(make_app):
    from conftest import LiveServer

    server = LiveServer(make_app(PROXY_FIX_X_FOR=1))
    try:
        shopper = _shopper(server, PHONE_UA)
        order = shopper.buy()
        answer = shopper.http.post(f"{server.url}/api/orders/{order['order_no']}/payments", json={"method": "h5"},
                                   headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}, timeout=10)
        assert answer.status_code == 201, answer.text
        from storefront.models import Payment
        with server.app.app_context():
            row = db.session.scalar(db.select(Payment).where(Payment.out_trade_no == answer.json()["out_trade_no"]))
            assert row.payer_client_ip == "198.51.100.7"  # one trusted hop: the proxy's view, not the client's claim
    finally:
        server.stop()


def test_h5_payer_ip_ignores_forwarded_for_without_a_proxy(live_server):
    shopper = _shopper(live_server, PHONE_UA)
    order = shopper.buy()
    answer = shopper.http.post(f"{live_server.url}/api/orders/{order['order_no']}/payments", json={"method": "h5"},
                               headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
    from storefront.models import Payment
    with live_server.app.app_context():
        row = db.session.scalar(db.select(Payment).where(Payment.out_trade_no == answer.json()["out_trade_no"]))
        assert row.payer_client_ip == "127.0.0.1"


# -- JSAPI: OAuth inside WeChat ----------------------------------------------------------------


def _authorize(shopper: Shopper, order_no: str) -> str:
    """Open checkout in WeChat, follow to the simulator's authorize page; return the callback URL."""
    start = shopper.http.get(f"{shopper.base_url}/orders/{order_no}/pay", allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text
    location = start.headers["Location"]
    assert location.startswith(f"{shopper.base_url}/sandbox/connect/oauth2/authorize?appid=")
    assert "response_type=code&scope=snsapi_base&state=" in location and location.endswith("#wechat_redirect")
    granted = shopper.http.get(location, allow_redirects=False, timeout=10)
    assert granted.status_code == 302, granted.text
    return granted.headers["Location"]


def _open_jsapi(shopper: Shopper, order_no: str) -> requests.Response:
    """Authorize, come back to checkout, and send its start form as the page's script does."""
    page = shopper.http.get(_authorize(shopper, order_no), timeout=10)
    return submit_start_form(shopper.http, page, shopper.base_url)


def _jsapi_page_params(page: requests.Response) -> dict:
    found = re.search(r'data-pay-params="([^"]*)"', page.text)
    assert found, page.text[:500]
    return json.loads(html.unescape(found.group(1)))


def test_jsapi_checkout_gets_the_openid_by_oauth_and_signs_pay_params(live_server):
    shopper = _shopper(live_server, WECHAT_UA)
    order = shopper.buy()
    callback = _authorize(shopper, order["order_no"])
    page = submit_start_form(shopper.http, shopper.http.get(callback, timeout=10), shopper.base_url)
    assert page.status_code == 200
    params = _jsapi_page_params(page)
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    checked = shopper.http.post(f"{live_server.url}/sandbox/jsapi/verify", json={"params": params}, timeout=10)
    assert checked.status_code == 200, checked.text
    paid = shopper.http.post(f"{live_server.url}/sandbox/jsapi/pay", json={"params": params, "result": "SUCCESS"},
                             timeout=10)
    assert paid.json()["err_msg"] == "get_brand_wcpay_request:ok"
    assert wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")


def test_oauth_code_cannot_be_reused(live_server):
    shopper = _shopper(live_server, WECHAT_UA)
    order = shopper.buy()
    callback = _authorize(shopper, order["order_no"])
    assert shopper.http.get(callback, timeout=10).status_code == 200
    code = parse_qs(urlsplit(callback).query)["code"][0]
    with live_server.app.app_context():
        creds = live_server.app.extensions["wechatpay"].credentials
    exchange = requests.get(f"{live_server.url}/sandbox/sns/oauth2/access_token", params={
        "appid": creds.appid, "secret": creds.appsecret, "code": code, "grant_type": "authorization_code"}, timeout=10)
    assert exchange.status_code == 200 and exchange.json()["errcode"] == 40163
    # Through the shop: a replayed callback (state included) is refused and grants nothing new.
    other = _shopper(live_server, WECHAT_UA)
    other_order = other.buy()
    fresh_callback = _authorize(other, other_order["order_no"])
    state = parse_qs(urlsplit(fresh_callback).query)["state"][0]
    replay = other.http.get(f"{live_server.url}/oauth/wechat/callback", params={"code": code, "state": state},
                            timeout=10)
    assert replay.status_code == 400 and "40163" in replay.text
    assert _payments(other, other_order["order_no"], {"method": "jsapi"}).status_code == 401


def test_oauth_forged_code_is_refused(live_server):
    shopper = _shopper(live_server, WECHAT_UA)
    order = shopper.buy()
    callback = _authorize(shopper, order["order_no"])
    state = parse_qs(urlsplit(callback).query)["state"][0]
    forged = shopper.http.get(f"{live_server.url}/oauth/wechat/callback",
                              params={"code": "forged-code-123", "state": state}, timeout=10)
    assert forged.status_code == 400 and "40029" in forged.text
    with live_server.app.app_context():
        creds = live_server.app.extensions["wechatpay"].credentials
    exchange = requests.get(f"{live_server.url}/sandbox/sns/oauth2/access_token", params={
        "appid": creds.appid, "secret": "wrong", "code": "x", "grant_type": "authorization_code"}, timeout=10)
    assert exchange.json()["errcode"] == 40125


def test_oauth_forged_state_is_refused(live_server):
    shopper = _shopper(live_server, WECHAT_UA)
    order = shopper.buy()
    callback = _authorize(shopper, order["order_no"])
    code = parse_qs(urlsplit(callback).query)["code"][0]
    forged = shopper.http.get(f"{live_server.url}/oauth/wechat/callback", params={"code": code, "state": "a" * 32},
                              timeout=10)
    assert forged.status_code == 400 and "授权请求无效" in forged.text
    assert _payments(shopper, order["order_no"], {"method": "jsapi"}).status_code == 401  # no openid kept
    # A state from another browser session is just as forged.
    stranger = _shopper(live_server, WECHAT_UA)
    stranger.buy()
    state = parse_qs(urlsplit(callback).query)["state"][0]
    assert stranger.http.get(f"{live_server.url}/oauth/wechat/callback", params={"code": code, "state": state},
                             timeout=10).status_code == 400


def test_jsapi_order_with_an_openid_of_another_appid_is_refused(live_server):
    app = live_server.app
    with app.test_request_context(base_url=live_server.url):
        from storefront import gateway
        from storefront.wechatpay import APIError

        creds = gateway.gateway().credentials
        mini_openid = requests.get(f"{live_server.url}/sandbox/control/openid",
                                   params={"appid": creds.miniprogram_appid}, timeout=10).json()["openid"]
        with pytest.raises(APIError) as refused:
            gateway.client().prepay_jsapi(
                description="test", out_trade_no="TESTOPENID0001", amount_total=100,
                notify_url=gateway.notify_url(), time_expire=utcnow() + timedelta(minutes=10),
                openid=mini_openid, appid=creds.appid,
            )
    assert refused.value.code == "OPENID_MISMATCH"


def test_api_refuses_an_openid_that_is_not_the_sessions(live_server):
    shopper = _shopper(live_server, DESKTOP_UA)
    order = shopper.buy()
    code = requests.post(f"{live_server.url}/sandbox/control/wx-login", json={}, timeout=10).json()["code"]
    assert shopper.http.post(f"{live_server.url}/api/miniprogram/login", json={"code": code},
                             timeout=10).status_code == 200
    answer = _payments(shopper, order["order_no"], {"method": "miniprogram", "openid": "o-somebody-else"})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "OPENID_MISMATCH"


def test_pay_sign_that_does_not_verify_is_refused_and_nothing_is_paid(live_server):
    shopper = _shopper(live_server, WECHAT_UA)
    order = shopper.buy()
    params = _jsapi_page_params(_open_jsapi(shopper, order["order_no"]))
    other = "A" if params["nonceStr"][-1] != "A" else "B"  # one character changed, never the same
    for forged in ({**params, "nonceStr": params["nonceStr"][:-1] + other},
                   {**params, "paySign": base64.b64encode(b"\0" * 256).decode()}):
        checked = requests.post(f"{live_server.url}/sandbox/jsapi/verify", json={"params": forged}, timeout=10)
        assert checked.status_code == 400
        assert checked.json() == {"err_msg": "get_brand_wcpay_request:fail", "code": "SIGN_ERROR",
                                  "message": "支付验证签名失败"}
        paid = requests.post(f"{live_server.url}/sandbox/jsapi/pay", json={"params": forged, "result": "SUCCESS"},
                             timeout=10)
        assert paid.status_code == 400 and paid.json()["code"] == "SIGN_ERROR"
    assert shopper.order(order["order_no"])["status"] == "pending"


def test_failed_payment_in_the_sheet_leaves_the_order_payable(live_server):
    shopper = _shopper(live_server, WECHAT_UA)
    order = shopper.buy()
    params = _jsapi_page_params(_open_jsapi(shopper, order["order_no"]))
    failed = requests.post(f"{live_server.url}/sandbox/jsapi/pay", json={"params": params, "result": "NOTENOUGH"},
                           timeout=10)
    assert failed.json()["err_msg"] == "get_brand_wcpay_request:fail"
    assert shopper.order(order["order_no"])["status"] == "pending"
    again = _jsapi_page_params(shopper.http.get(f"{live_server.url}/orders/{order['order_no']}/pay", timeout=10))
    assert again["package"] == params["package"]  # the same attempt, still payable
    ok = requests.post(f"{live_server.url}/sandbox/jsapi/pay", json={"params": again}, timeout=10)
    assert ok.json()["err_msg"] == "get_brand_wcpay_request:ok"
    assert wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")


# -- mini program ------------------------------------------------------------------------------


def _mini_program_payment(live_server) -> tuple[Shopper, dict, dict]:
    shopper = _shopper(live_server, MINIPROGRAM_UA)
    code = requests.post(f"{live_server.url}/sandbox/control/wx-login", json={}, timeout=10).json()["code"]
    login = shopper.http.post(f"{live_server.url}/api/miniprogram/login", json={"code": code}, timeout=10)
    assert login.status_code == 200, login.text
    order = shopper.buy()
    answer = _payments(shopper, order["order_no"], {"method": "miniprogram", "openid": login.json()["openid"]})
    assert answer.status_code == 201, answer.text
    return shopper, order, answer.json()


def test_mini_program_login_never_reveals_session_key(live_server):
    shopper = _shopper(live_server, MINIPROGRAM_UA)
    code = requests.post(f"{live_server.url}/sandbox/control/wx-login", json={}, timeout=10).json()["code"]
    login = shopper.http.post(f"{live_server.url}/api/miniprogram/login", json={"code": code}, timeout=10)
    assert set(login.json()) == {"openid"}
    cookie = shopper.http.cookies.get("session") or ""
    payload = cookie.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)) if payload else b""
    assert b"session_key" not in decoded
    reused = shopper.http.post(f"{live_server.url}/api/miniprogram/login", json={"code": code}, timeout=10)
    assert reused.status_code == 400 and reused.json()["error"]["code"] == "WECHAT_40163"


def test_mini_program_pay_sign_verifies_with_the_merchant_public_key(live_server):
    _shopper_, _order, payment = _mini_program_payment(live_server)
    params = payment["pay_params"]
    instance = Path(live_server.app.instance_path)
    with live_server.app.app_context():
        creds = live_server.app.extensions["wechatpay"].credentials
    assert params["appId"] == creds.miniprogram_appid and params["signType"] == "RSA"
    assert params["package"].startswith("prepay_id=wx") and re.fullmatch(r"\d{10}", params["timeStamp"])
    certificate = load_pem_x509_certificate((instance / "wechatpay" / "apiclient_cert.pem").read_bytes())
    public_key = certificate.public_key()
    message = pay_sign_message(params["appId"], params["timeStamp"], params["nonceStr"], params["package"])
    assert message.count("\n") == 4 and message.endswith("\n")
    verify_signature(public_key, message, params["paySign"])  # our code
    public_key.verify(base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(SignatureError):
        verify_signature(public_key, message.replace(params["nonceStr"], "X" * 32), params["paySign"])


def test_mini_program_pay_sign_matches_the_wechatpayv3_sdk(live_server):
    from wechatpayv3 import WeChatPay, WeChatPayType
    from wechatpayv3.utils import rsa_verify

    _shopper_, _order, payment = _mini_program_payment(live_server)
    params = payment["pay_params"]
    instance = Path(live_server.app.instance_path)
    with live_server.app.app_context():
        creds = live_server.app.extensions["wechatpay"].credentials
    sdk = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG, mchid=creds.mchid,
        private_key=(instance / "wechatpay" / "apiclient_key.pem").read_text(),
        cert_serial_no=creds.merchant_serial, appid=creds.miniprogram_appid, apiv3_key=creds.apiv3_key,
        notify_url="https://shop.example.com/notify/wechatpay",
        public_key=(instance / "wechatpay" / "pub_key.pem").read_text(), public_key_id=creds.public_key_id,
    )
    # RSASSA-PKCS1-v1_5 is deterministic: the SDK's paySign over the same four lines is byte-identical.
    assert sdk.sign([params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]) == params["paySign"]
    public_key = load_pem_x509_certificate((instance / "wechatpay" / "apiclient_cert.pem").read_bytes()).public_key()
    # The SDK's verify helper builds "a\nb\nc\n": the four paySign lines fit as a, b and "c\nd".
    assert rsa_verify(params["appId"], params["timeStamp"], params["nonceStr"] + "\n" + params["package"],
                      params["paySign"], public_key)
    assert not rsa_verify(params["appId"], params["timeStamp"], params["nonceStr"] + "\nprepay_id=wxforged",
                          params["paySign"], public_key)


def test_mini_program_payment_without_login_is_refused(live_server):
    shopper = _shopper(live_server, MINIPROGRAM_UA)
    order = shopper.buy()
    answer = _payments(shopper, order["order_no"], {"method": "miniprogram", "openid": "oAnything"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "WECHAT_LOGIN_REQUIRED"


def test_jscode2session_checks_appid_secret_and_code(live_server):
    with live_server.app.app_context():
        creds = live_server.app.extensions["wechatpay"].credentials
    base = f"{live_server.url}/sandbox/sns/jscode2session"
    common = {"appid": creds.miniprogram_appid, "secret": creds.miniprogram_appsecret,
              "grant_type": "authorization_code"}
    assert requests.get(base, params={**common, "js_code": "nope"}, timeout=10).json()["errcode"] == 40029
    assert requests.get(base, params={**common, "appid": creds.appid, "js_code": "x"},
                        timeout=10).json()["errcode"] == 40013
    code = requests.post(f"{live_server.url}/sandbox/control/wx-login", json={}, timeout=10).json()["code"]
    answer = requests.get(base, params={**common, "js_code": code}, timeout=10).json()
    assert answer["openid"] and answer["session_key"]


def test_login_secrets_never_reach_a_log_line(live_server, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    shopper = _shopper(live_server, WECHAT_UA)
    order = shopper.buy()
    assert _open_jsapi(shopper, order["order_no"]).status_code == 200
    _mini_program_payment(live_server)
    with live_server.app.app_context():
        creds = live_server.app.extensions["wechatpay"].credentials
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "/sns/oauth2/access_token" in text and "secret=***" in text
    for secret in (creds.appsecret, creds.miniprogram_appsecret):
        assert secret and secret not in text


def test_switching_scene_when_the_open_attempt_was_paid_shows_paid_and_charges_once(live_server):
    shopper = _shopper(live_server, PHONE_UA)
    order, payment = _h5(shopper)
    # The payer paid the H5 attempt, but its notification is lost: the shop still thinks pending.
    assert shopper.pay_in_simulator(payment["out_trade_no"], notify="drop").status_code == 200
    switched = shopper.open_checkout(order["order_no"], method="native", allow_redirects=False)
    # Closing it at WeChat Pay answered ORDERPAID: the order page, paid; no new attempt was made.
    assert switched.status_code == 303 and switched.headers["Location"].endswith(f"/orders/{order['order_no']}")
    assert shopper.order(order["order_no"])["status"] == "paid"
    from storefront.models import Order
    with live_server.app.app_context():
        found = db.session.scalar(db.select(Order).where(Order.order_no == order["order_no"]))
        assert [(p.method, p.status) for p in found.payments] == [("h5", "paid")]


def test_oauth_settings_default_to_the_simulator_and_to_weixin_in_production(live_server):
    from storefront import endpoints
    from storefront.services import identity
    from storefront.wechatpay.oauth import authorize_url

    app = live_server.app
    with app.test_request_context(base_url=live_server.url):
        assert identity.oauth_base() == identity.oauth_api_base() == f"{live_server.url}/sandbox"
        # In production no simulator is mounted: the endpoints are built without one.
        simulated = app.extensions["wechat_endpoints"]
        app.extensions["wechat_endpoints"] = endpoints.build(app.config)
        try:
            assert identity.oauth_base() == "https://open.weixin.qq.com"
            assert identity.oauth_api_base() == "https://api.weixin.qq.com"
        finally:
            app.extensions["wechat_endpoints"] = simulated
    assert authorize_url("wxAPPID", "https://shop.example.com/oauth/wechat/callback", "abc123") == (
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wxAPPID"
        "&redirect_uri=https%3A%2F%2Fshop.example.com%2Foauth%2Fwechat%2Fcallback"
        "&response_type=code&scope=snsapi_base&state=abc123#wechat_redirect"
    )


def test_an_instance_without_appsecrets_gets_them_once(tmp_path, instance_template):
    import shutil

    from storefront.sandbox import demo

    instance = tmp_path / "old"
    shutil.copytree(instance_template, instance)
    credentials_file = instance / "wechatpay" / "credentials.json"
    merchant_file = instance / "sandbox" / "merchant.json"
    old = json.loads(credentials_file.read_text())
    for name in ("appsecret", "miniprogram_appsecret"):
        old.pop(name)
    credentials_file.write_text(json.dumps(old))
    merchant = json.loads(merchant_file.read_text())
    merchant.pop("apps")
    merchant_file.write_text(json.dumps(merchant))

    demo.ensure_demo_credentials(instance)
    upgraded = json.loads(credentials_file.read_text())
    apps = json.loads(merchant_file.read_text())["apps"]
    assert upgraded["apiv3_key"] == old["apiv3_key"]  # nothing else changed
    assert apps[upgraded["appid"]] == {"type": "official_account", "secret": upgraded["appsecret"]}
    assert apps[upgraded["miniprogram_appid"]]["secret"] == upgraded["miniprogram_appsecret"]
    assert oct(credentials_file.stat().st_mode & 0o777) == "0o600"
    demo.ensure_demo_credentials(instance)
    assert json.loads(credentials_file.read_text()) == upgraded  # idempotent
