"""What a newcomer meets first: OAuth that no poll can break, the inspector naming each step exactly,
and a double submit that makes one order. Shop and simulator run as one live loopback server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from conftest import LiveServer, Shopper, submit_start_form, wait_for
from storefront.services import flowlog

WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.50(0x18003237) NetType/WIFI Language/zh_CN")
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def server(make_app):
    live = LiveServer(make_app(SANDBOX_NOTIFIER=True))
    yield live
    live.stop()


def _shopper(server, user_agent: str = WECHAT_UA) -> Shopper:
    shopper = Shopper(server.url)
    shopper.http.headers["User-Agent"] = user_agent
    return shopper


def _flow(shopper: Shopper, order_no: str) -> dict:
    answer = shopper.http.get(f"{shopper.base_url}/orders/{order_no}/flow.json", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _step(data: dict, kind: str) -> dict:
    return next(s for s in data["steps"] if s["kind"] == kind)


# -- sessions that cannot race -----------------------------------------------------------------


def test_oauth_state_survives_a_poll_answered_with_the_old_cookie(server):
    """The inspector frame polls while the shop frame goes to WeChat: its answer must not undo the state."""
    shopper = _shopper(server)
    order = shopper.buy()
    before = shopper.http.cookies.get("session")
    # A poll sent with the cookie as it was before the authorization started...
    start = shopper.http.get(f"{server.url}/orders/{order['order_no']}/pay", allow_redirects=False, timeout=10)
    assert start.status_code == 302
    poll = requests.get(f"{server.url}/api/orders/{order['order_no']}", cookies={"session": before},
                        headers={"User-Agent": WECHAT_UA}, timeout=10)
    assert poll.status_code == 200 and "Set-Cookie" not in poll.headers  # nothing to overwrite with
    flow = requests.get(f"{server.url}/orders/{order['order_no']}/flow.json", cookies={"session": before},
                        timeout=10)
    assert flow.status_code == 200 and "Set-Cookie" not in flow.headers
    shopper.http.cookies.set("session", before)  # ...even if one had overwritten the cookie
    granted = shopper.http.get(start.headers["Location"], allow_redirects=False, timeout=10)
    page = submit_start_form(shopper.http, shopper.http.get(granted.headers["Location"], timeout=10), server.url)
    assert page.status_code == 200 and 'id="jsapi-pay"' in page.text, page.text[:300]


def test_oauth_state_is_used_once_and_only_by_its_shopper(server):
    shopper = _shopper(server)
    order = shopper.buy()
    start = shopper.http.get(f"{server.url}/orders/{order['order_no']}/pay", allow_redirects=False, timeout=10)
    granted = shopper.http.get(start.headers["Location"], allow_redirects=False, timeout=10)
    callback = granted.headers["Location"]
    stranger = _shopper(server)
    stranger.buy()
    refused = stranger.http.get(callback, allow_redirects=False, timeout=10)
    assert refused.status_code == 400 and "OAUTH_STATE_INVALID" in refused.text
    assert shopper.http.get(callback, allow_redirects=False, timeout=10).status_code == 303
    again = shopper.http.get(callback, allow_redirects=False, timeout=10)
    assert again.status_code == 400 and "OAUTH_STATE_INVALID" in again.text


# -- the inspector records the OAuth exchange, paySign, and jscode2session ----------------------


def test_inspector_shows_oauth_and_pay_sign_with_the_appsecret_redacted(server):
    shopper = _shopper(server)
    order = shopper.buy()
    page = submit_start_form(shopper.http, shopper.http.get(f"{server.url}/orders/{order['order_no']}/pay",
                                                            timeout=10), server.url)
    assert 'id="jsapi-pay"' in page.text
    data = _flow(shopper, order["order_no"])
    kinds = [s["kind"] for s in data["steps"]]
    wanted = ["oauth_authorize", "oauth_callback", "oauth_token", "prepay_jsapi", "pay_sign"]
    remaining = iter(kinds)
    assert all(kind in remaining for kind in wanted), kinds
    authorize = _step(data, "oauth_authorize")
    assert "/connect/oauth2/authorize?appid=" in authorize["sections"][0]["text"]
    assert (authorize["from"], authorize["to"]) == ("shop", "app")
    token = _step(data, "oauth_token")
    request_text = token["sections"][0]["text"]
    assert "/sns/oauth2/access_token?" in request_text and "secret=[REDACTED]" in request_text
    answer_text = token["sections"][-1]["text"]
    assert '"openid"' in answer_text and '"access_token": "[REDACTED]"' in answer_text
    sign = _step(data, "pay_sign")
    lines = sign["signed_message"].split("\n")
    assert len(lines) == 5 and lines[3].startswith("prepay_id=") and lines[4] == ""
    assert sign["explain"]["purpose"] and sign["explain"]["pitfall"]
    whole = str(data) + shopper.http.get(f"{server.url}/orders/{order['order_no']}/flow", timeout=10).text
    with server.app.app_context():
        from storefront import gateway

        appsecret = gateway.gateway().credentials.appsecret
    assert appsecret and appsecret not in whole


def test_mini_program_login_joins_the_order_it_paid(server):
    shopper = _shopper(server, WECHAT_UA + " miniProgram")
    code = requests.post(f"{server.url}/sandbox/control/wx-login", json={}, timeout=10).json()["code"]
    assert shopper.http.post(f"{server.url}/api/miniprogram/login", json={"code": code},
                             timeout=10).status_code == 200
    order = shopper.buy()
    answer = shopper.http.post(f"{server.url}/api/orders/{order['order_no']}/payments",
                               json={"method": "miniprogram"}, timeout=10)
    assert answer.status_code == 201, answer.text
    data = _flow(shopper, order["order_no"])
    login = _step(data, "jscode2session")
    assert "secret=[REDACTED]" in login["sections"][0]["text"]
    assert '"session_key": "[REDACTED]"' in login["sections"][-1]["text"]
    assert [s["kind"] for s in data["steps"]].index("jscode2session") < [s["kind"] for s in data["steps"]].index(
        "prepay_jsapi")


def test_bridge_call_is_a_page_event_with_its_explanation(server):
    shopper = _shopper(server)
    order = shopper.buy()
    submit_start_form(shopper.http, shopper.http.get(f"{server.url}/orders/{order['order_no']}/pay", timeout=10),
                      server.url)
    answer = shopper.http.post(f"{server.url}/orders/{order['order_no']}/flow/events",
                               json={"event": "bridge_invoke", "detail": "getBrandWCPayRequest"}, timeout=10)
    assert answer.status_code == 204
    step = _step(_flow(shopper, order["order_no"]), "bridge_invoke")
    assert (step["from"], step["to"]) == ("browser", "app") and "getBrandWCPayRequest" in step["title"]


# -- exact words -------------------------------------------------------------------------------


def test_a_timestamp_refusal_is_named_for_its_check_and_the_raw_body_is_kept(server):
    shopper = _shopper(server, DESKTOP_UA)
    order = shopper.buy()
    payment = shopper.start_native(order["order_no"])
    requests.post(f"{server.url}/sandbox/control/tamper",
                  json={"out_trade_no": payment["out_trade_no"], "tamper": "timestamp"}, timeout=10)
    notify = _step(_flow(shopper, order["order_no"]), "notify_payment")
    assert notify["refusal"] == "时间戳超出 5 分钟" and "时间戳超出 5 分钟" in notify["title"]
    assert "验签失败" not in notify["title"]
    assert notify["answer"] == "401 ✗ 时间戳超出 5 分钟"  # the diagram's answer arrow says it too
    # A notification that was handled is kept whole: its bytes as received, beside the pretty form.
    shopper.pay_in_simulator(payment["out_trade_no"])
    # Waited for as such: the order may show paid first, by the page's active query.
    handled = wait_for(lambda: next((s for s in _flow(shopper, order["order_no"])["steps"]
                                     if s["kind"] == "notify_payment" and s["ok"]), None))
    raw = handled["sections"][0]["raw"]
    assert raw.startswith('{"id":') and "\n" not in raw  # the bytes as sent, not re-indented
    page = shopper.http.get(f"{server.url}/orders/{order['order_no']}/flow", timeout=10).text
    assert 'data-section="raw-body"' in page


def _merchant(server) -> requests.Session:
    merchant = requests.Session()
    password = (Path(server.app.instance_path) / "merchant_password").read_text().strip()
    page = merchant.get(f"{server.url}/merchant/login", timeout=10)
    merchant.post(f"{server.url}/merchant/login", data={"csrf_token": TOKEN.search(page.text).group(1),
                                                        "password": password}, timeout=10)
    return merchant


def test_refund_request_and_renewal_are_named_not_drawn_as_x_to_x(server):
    shopper = _shopper(server, DESKTOP_UA)
    order = shopper.buy()
    shopper.start_native(order["order_no"])
    # A renewal: the checkout page's renew form closes the old attempt and starts a new one.
    page = shopper.http.get(f"{server.url}/orders/{order['order_no']}/pay", timeout=10)
    shopper.http.post(f"{server.url}/orders/{order['order_no']}/pay/renew",
                      data={"csrf_token": TOKEN.search(page.text).group(1)}, timeout=10)
    payment = shopper.start_native(order["order_no"])
    shopper.pay_in_simulator(payment["out_trade_no"])
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    merchant = _merchant(server)
    page = merchant.get(f"{server.url}/merchant/orders/{order['order_no']}", timeout=10)
    merchant.post(f"{server.url}/merchant/orders/{order['order_no']}/refund",
                  data={"csrf_token": TOKEN.search(page.text).group(1), "amount": "1.00"}, timeout=15)
    def refunded() -> dict | None:
        found = _flow(shopper, order["order_no"])
        return found if any(s["kind"] == "notify_refund" for s in found["steps"]) else None

    data = wait_for(refunded)
    labels = [s["label"] for s in data["steps"] if s["kind"] == "state"]
    assert "二维码更新" in labels and "退款申请" in labels, labels
    assert not any(re.fullmatch(r"(\S+) → \1", label) for label in labels), labels
    refund = _step(data, "refund")
    assert refund["label"] == "申请退款" and "PROCESSING" in refund["answer"]


def test_refund_query_is_labelled_with_its_refund_status():
    from types import SimpleNamespace

    from storefront.flow.steps import _api_step
    from storefront.models import utcnow

    message = SimpleNamespace(
        id=1, at=utcnow(), kind="refund_query", method="GET", status=200, verification="none", direction="out",
        title="GET /v3/refund/domestic/refunds/SF1P01R01", url="", request_headers={}, request_body="",
        canonical_url="/v3/refund/domestic/refunds/SF1P01R01", fields={},
        response_headers={}, response_body='{"out_refund_no":"SF1P01R01","status":"SUCCESS"}',
        error="", origin="job", out_trade_no=None, verified_serial=None)
    step = _api_step(message)
    assert step.label == "查询退款" and step.answer.startswith("200 SUCCESS")
    assert step.sections[-1].raw == message.response_body


def test_shop_notes_have_explanations():
    from storefront.flow.explain import explanation

    for kind in (*flowlog.SHOP_NOTES, "oauth_token", "jscode2session", "bridge_invoke", "requestpayment_invoke"):
        info = explanation(kind)
        assert info.title != explanation("api").title, kind


# -- a shop a shopper trusts -------------------------------------------------------------------


def test_a_double_submit_of_the_buy_form_makes_one_order(server):
    shopper = _shopper(server, DESKTOP_UA)
    page = shopper.http.get(f"{server.url}/products/1", timeout=10)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": TOKEN.search(page.text).group(1), "quantity": "1", "idempotency_key": key}
    first = shopper.http.post(f"{server.url}/products/1/buy", data=form, allow_redirects=False, timeout=10)
    second = shopper.http.post(f"{server.url}/products/1/buy", data=form, allow_redirects=False, timeout=10)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    fresh = shopper.http.get(f"{server.url}/products/1", timeout=10)
    assert re.search(r'name="idempotency_key" value="([^"]+)"', fresh.text).group(1) != key  # one per form
    # Another shopper's same key is theirs alone.
    other = _shopper(server, DESKTOP_UA)
    page = other.http.get(f"{server.url}/products/1", timeout=10)
    form["csrf_token"] = TOKEN.search(page.text).group(1)
    third = other.http.post(f"{server.url}/products/1/buy", data=form, allow_redirects=False, timeout=10)
    assert third.headers["Location"] != first.headers["Location"]


def test_api_orders_honour_an_idempotency_key_even_racing(server):
    from concurrent.futures import ThreadPoolExecutor

    shopper = _shopper(server, DESKTOP_UA)
    shopper.buy()  # the session exists before the race
    headers = {"Idempotency-Key": "k-" + "7" * 20}

    def post(_i):
        return shopper.http.post(f"{server.url}/api/orders", json={"product_id": 1, "quantity": 1},
                                 headers=headers, timeout=10)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, range(4)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["order_no"] for a in answers}) == 1
    bad = shopper.http.post(f"{server.url}/api/orders", json={"product_id": 1}, headers={"Idempotency-Key": "x"},
                            timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_IDEMPOTENCY_KEY"


def test_paid_order_page_says_what_was_paid(server):
    shopper = _shopper(server, DESKTOP_UA)
    order = shopper.buy()
    payment = shopper.start_native(order["order_no"])
    shopper.pay_in_simulator(payment["out_trade_no"])
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    page = shopper.http.get(f"{server.url}/orders/{order['order_no']}", timeout=10).text
    assert 'id="paid-summary"' in page and "支付成功" in page
    assert re.search(r"已为 .+ × 1 支付 ¥\d+\.\d\d", page)
    assert 'id="auto-refresh"' not in page  # nothing settling


def test_a_pending_refund_page_refreshes_itself_until_it_settles(server):
    shopper = _shopper(server, DESKTOP_UA)
    order = shopper.buy()
    payment = shopper.start_native(order["order_no"])
    shopper.pay_in_simulator(payment["out_trade_no"])
    wait_for(lambda: shopper.order(order["order_no"])["status"] == "paid")
    with server.app.app_context():
        from storefront.extensions import db
        from storefront.models import Payment
        from storefront.services import refund_states

        found = db.session.query(Payment).filter_by(out_trade_no=payment["out_trade_no"]).one()
        refund_states.create_refund(found, 100)  # asked, not yet answered: 退款处理中
        db.session.commit()
    page = shopper.http.get(f"{server.url}/orders/{order['order_no']}", timeout=10).text
    assert 'id="auto-refresh"' in page and "js/autorefresh.js" in page


def test_native_checkout_on_a_phone_does_not_mention_a_computer_camera(server):
    phone = _shopper(server, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                             "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
    order = phone.buy()
    page = submit_start_form(phone.http, phone.http.get(f"{server.url}/orders/{order['order_no']}/pay?method=native",
                                                        timeout=10), server.url).text
    assert 'id="open-scan"' in page and "电脑没有摄像头" not in page
    desktop = _shopper(server, DESKTOP_UA)
    order = desktop.buy()
    page = desktop.http.get(f"{server.url}/orders/{order['order_no']}/pay", timeout=10)
    assert "电脑没有摄像头" in submit_start_form(desktop.http, page, server.url).text


def test_start_up_banner_names_shop_tour_console_and_merchant_password(app):
    result = app.test_cli_runner().invoke(args=["banner", "--port", "5130"])
    assert result.exit_code == 0, result.output
    out = result.output
    for where in ("http://127.0.0.1:5130/", "http://127.0.0.1:5130/tour", "http://127.0.0.1:5130/sandbox/",
                  "http://127.0.0.1:5130/merchant/", "merchant_password"):
        assert where in out, out


# -- 模拟微信内打开 --------------------------------------------------------------------------------


def test_wechat_switch_lets_a_desktop_browser_take_the_jsapi_path(server):
    desktop = _shopper(server, DESKTOP_UA)
    order = desktop.buy()
    refused = desktop.http.get(f"{server.url}/orders/{order['order_no']}/pay?method=jsapi", timeout=10)
    assert refused.status_code == 403 and "请在微信客户端打开链接" in refused.text
    assert "模拟微信内打开" in refused.text  # the dead end offers the way on
    page = desktop.http.get(f"{server.url}/", timeout=10)
    switched = desktop.http.post(f"{server.url}/sandbox/control/wechat-browser",
                                 data={"csrf_token": TOKEN.search(page.text).group(1), "mode": "wechat",
                                       "next": f"/orders/{order['order_no']}/pay"}, timeout=10)
    assert "已模拟微信内打开" in switched.text  # followed: OAuth, then the page
    switched = submit_start_form(desktop.http, switched, server.url)
    assert switched.status_code == 200 and 'id="jsapi-pay"' in switched.text
    page = desktop.http.get(f"{server.url}/", timeout=10)
    off = desktop.http.post(f"{server.url}/sandbox/control/wechat-browser",
                            data={"csrf_token": TOKEN.search(page.text).group(1), "mode": "off",
                                  "next": "https://evil.example/"}, allow_redirects=False, timeout=10)
    assert off.status_code == 303 and off.headers["Location"] == "/"  # never leaves the site
    order = desktop.buy()
    page = desktop.http.get(f"{server.url}/orders/{order['order_no']}/pay", timeout=10)
    assert 'id="qr"' in submit_start_form(desktop.http, page, server.url).text


def test_wechat_switch_refuses_a_post_without_the_csrf_token(server):
    desktop = _shopper(server, DESKTOP_UA)
    answer = desktop.http.post(f"{server.url}/sandbox/control/wechat-browser", data={"mode": "wechat"}, timeout=10)
    assert answer.status_code == 400 and "sandbox_wechat_browser" not in answer.headers.get("Set-Cookie", "")


def test_real_wechat_pay_mode_has_no_switch(tmp_path, instance_template):
    import shutil

    from storefront import create_app

    # A production configuration production accepts (the demo merchant, against a loopback API base).
    shutil.copytree(instance_template, tmp_path / "instance")
    app = create_app({"TESTING": True, "SECRET_KEY": "x" * 32 + "-a-long-random-enough-key", "WECHATPAY_SANDBOX": False,
                      "AUTO_INIT": False, "WECHATPAY_API_BASE": "http://127.0.0.1:9/",
                      "SHOP_BASE_URL": "https://shop.example.com"}, instance_path=str(tmp_path / "instance"))
    page = app.test_client().get("/", headers={"Cookie": "sandbox_wechat_browser=wechat"})
    assert "模拟微信内打开" not in page.get_data(as_text=True)
    assert app.test_client().post("/sandbox/control/wechat-browser").status_code == 404
