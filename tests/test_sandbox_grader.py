"""The grader against three small merchant backends written with the ``wechatpayv3`` SDK and a kit.

Shop and simulator are one real loopback server (the mounted base ``/sandbox/``); the same app
is also served with the simulator at the root, as ``sandbox-serve`` serves it. Each backend is a
real server: it creates its order through the SDK, the simulator pays it from ``control/pay``
and notifies it, and ``flask sandbox-grade`` grades what it answers.
"""

from __future__ import annotations

import json
import threading
import time
from xml.etree import ElementTree

import pytest
import requests
from werkzeug.serving import make_server

from conftest import LiveServer, module_server
from merchant_backends import Backend, read_kit
from storefront.sandbox.serve import root_app

FORGERIES = ("forged_signature", "tampered_ciphertext", "stale_timestamp", "unknown_serial", "signature_probe")
IDEMPOTENCY = ("duplicate_notification", "concurrent_duplicates")
ALL_CASES = (*FORGERIES, "refusal_format", "genuine_notification", *IDEMPOTENCY, "requests_signed",
             "request_headers", "time_expire_format", "notify_url_https", "no_query_after_ack",
             "close_before_reissue", "query_interval")


class RootServer(LiveServer):
    """The app with the simulator at the root: what ``flask --app wsgi sandbox-serve`` serves."""

    def __init__(self, app) -> None:
        # Not super().__init__: that would serve the app as mounted.
        self.app = app
        self._server = make_server("127.0.0.1", 0, root_app(app), threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()


@pytest.fixture(scope="module")
def shop(tmp_path_factory, instance_template):
    yield from module_server(tmp_path_factory, instance_template, SANDBOX_NOTIFIER=True)


@pytest.fixture(scope="module")
def root(shop):
    server = RootServer(shop.app)
    shop.app.config["SANDBOX_SERVE_URL"] = server.url
    yield server
    server.stop()


@pytest.fixture
def new_kit(shop, root, tmp_path):
    def make(name: str = "kit"):
        folder = tmp_path / name
        result = shop.app.test_cli_runner().invoke(args=["sandbox-kit", "--out", str(folder)])
        assert result.exit_code == 0, result.output
        return read_kit(folder)

    return make


@pytest.fixture
def backends():
    started = []

    def start(kit: dict, api_base: str, behaviour: str = "correct") -> Backend:
        backend = Backend(kit, api_base, behaviour)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


def grade(shop, out_trade_no: str, tmp_path, *extra: str):
    report, junit = tmp_path / "report.html", tmp_path / "junit.xml"
    result = shop.app.test_cli_runner().invoke(args=[
        "sandbox-grade", "--out-trade-no", out_trade_no, "--json", "--report", str(report), "--junit", str(junit),
        "--wait", "5", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    data = json.loads(result.output)
    return result.exit_code, data, report.read_text(encoding="utf-8"), ElementTree.parse(junit).getroot()


def cases(data: dict) -> dict[str, dict]:
    return {case["name"]: case for case in data["cases"]}


def pay(shop, kit: dict, out_trade_no: str) -> None:
    answer = requests.post(f"{shop.url}/sandbox/control/pay",
                           json={"out_trade_no": out_trade_no, "mchid": kit["mchid"]}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_kit_has_wechats_file_names_and_the_two_bases(shop, root, new_kit, tmp_path):
    kit = new_kit()
    assert set(json.loads((tmp_path / "kit" / "merchant.json").read_text())) == {
        "mchid", "appid", "merchant_serial", "apiv3_key", "public_key_id", "api_base", "api_base_mounted"}
    assert kit["api_base"] == root.url + "/" and kit["api_base_mounted"] == shop.url + "/sandbox/"
    assert (tmp_path / "kit" / "apiclient_key.pem").stat().st_mode & 0o077 == 0
    for name in ("apiclient_cert.pem", "pub_key.pem"):
        assert (tmp_path / "kit" / name).read_text().startswith("-----BEGIN")
    assert kit["public_key_id"].startswith("PUB_KEY_ID_")


@pytest.mark.parametrize("base", ["api_base_mounted", "api_base"])
def test_a_correct_backend_passes_every_case(shop, new_kit, backends, tmp_path, base):
    """Created through the SDK, paid from control/pay, acknowledged; then every graded case passes, exit 0."""
    kit = new_kit()
    backend = backends(kit, kit[base])
    out_trade_no = backend.order(total=12900, description="景德镇青花瓷茶杯")
    pay(shop, kit, out_trade_no)
    paid = backend.wait_paid(out_trade_no)
    assert paid["transaction_id"].startswith("4200")

    code, data, html, junit = grade(shop, out_trade_no, tmp_path)

    assert code == 0, data
    assert set(data) == {"merchant", "out_trade_no", "cases", "passed", "total"}
    assert data["merchant"] == kit["mchid"] and data["out_trade_no"] == out_trade_no
    assert [case["name"] for case in data["cases"]] == list(ALL_CASES)
    assert all(set(case) == {"name", "passed", "severity", "detail"} for case in data["cases"])
    assert all(case["passed"] for case in data["cases"]), [c for c in data["cases"] if not c["passed"]]
    assert data["passed"] == data["total"] == len(ALL_CASES)
    assert "http on loopback" in cases(data)["notify_url_https"]["detail"]
    assert "通过" in html and out_trade_no in html
    assert junit.get("failures") == "0" and len(junit.findall("testcase")) == len(ALL_CASES)
    assert len(backend.notifications) == 1  # the forgeries changed nothing, the duplicates nothing more


def test_a_backend_that_acknowledges_anything_fails_the_forgeries(shop, new_kit, backends, tmp_path):
    kit = new_kit()
    backend = backends(kit, kit["api_base_mounted"], "ack_anything")
    out_trade_no = backend.order()

    code, data, html, junit = grade(shop, out_trade_no, tmp_path)

    assert code == 1
    found = cases(data)
    for name in FORGERIES:
        assert not found[name]["passed"] and found[name]["severity"] == "error", found[name]
        assert "NOT refused: HTTP 204" in found[name]["detail"]
    assert found["genuine_notification"]["passed"] and all(found[n]["passed"] for n in IDEMPOTENCY)
    assert "Wechatpay-Signature" in html and "怎么改" in html  # the exact request and the fix of each failure
    failures = [case.get("name") for case in junit.findall("testcase") if case.find("failure") is not None]
    assert failures == list(FORGERIES)


def test_a_backend_answering_500_to_a_duplicate_fails_idempotency(shop, new_kit, backends, tmp_path):
    """Not paid beforehand: the grader pays it, its genuine notification is the first, then the duplicates."""
    kit = new_kit()
    backend = backends(kit, kit["api_base"], "fail_duplicates")
    out_trade_no = backend.order()

    code, data, _, _ = grade(shop, out_trade_no, tmp_path)

    assert code == 1
    found = cases(data)
    assert all(found[name]["passed"] for name in FORGERIES)
    assert found["genuine_notification"]["passed"]
    assert not found["duplicate_notification"]["passed"] and "HTTP 500" in found["duplicate_notification"]["detail"]
    assert not found["concurrent_duplicates"]["passed"]
    assert "0/10 acknowledged, 10 answered 5xx" in found["concurrent_duplicates"]["detail"]
    assert backend.orders[out_trade_no]["status"] == "paid"


def test_the_grader_waits_for_the_order_and_says_so(shop, tmp_path):
    result = shop.app.test_cli_runner().invoke(args=["sandbox-grade", "--out-trade-no", "NEVERCREATED1",
                                                     "--wait", "0.3"])
    assert result.exit_code == 2
    assert "NEVERCREATED1" in result.output


def test_bad_requests_and_rhythm_are_graded_from_the_call_log(shop, new_kit, backends, tmp_path):
    """A request signed over a re-serialized body, a sloppy time_expire, queries after the notification."""
    from storefront.wechatpay import keys, signing

    kit = new_kit()
    backend = backends(kit, kit["api_base_mounted"])
    out_trade_no = backend.order()
    pay(shop, kit, out_trade_no)
    backend.wait_paid(out_trade_no)
    time.sleep(0.3)
    for _ in range(2):  # two quick queries after the acknowledgement
        code, _ = backend.sdk.query(out_trade_no=out_trade_no)
        assert code == 200
    order = {"appid": kit["appid"], "mchid": kit["mchid"], "description": "re-serialized",
             "out_trade_no": out_trade_no + "X", "notify_url": backend.url + "/notify",
             "time_expire": "2030-01-01T10:00:00.000Z", "amount": {"total": 1}}
    sent = json.dumps(order, separators=(",", ":"))
    signed = signing.sign_request(keys.load_private_key(kit["private_key"].encode()), mchid=kit["mchid"],
                                  serial_no=kit["merchant_serial"], method="POST",
                                  canonical_url="/v3/pay/transactions/native", body=json.dumps(order))
    answer = requests.post(shop.url + "/sandbox/v3/pay/transactions/native", data=sent, headers={
        "Authorization": signed.authorization, "Accept": "application/json", "Content-Type": "application/json",
        "User-Agent": "tests"}, timeout=10)
    assert answer.status_code == 401 and answer.json()["code"] == "SIGN_ERROR"

    code, data, html, _ = grade(shop, out_trade_no, tmp_path)

    found = cases(data)
    assert code == 1 and not found["requests_signed"]["passed"]
    assert "body_reserialized" in found["requests_signed"]["detail"]
    assert not found["no_query_after_ack"]["passed"] and found["no_query_after_ack"]["severity"] == "warning"
    assert not found["query_interval"]["passed"]
    assert 'class="diff"' in html  # the two strings side by side, the difference marked


def test_console_page_registers_grades_and_shows_the_report(shop, root, backends):
    session = requests.Session()
    page = session.get(shop.url + "/sandbox/backends", timeout=10)
    assert page.status_code == 200 and "测试你自己的后端" in page.text
    import re

    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    download = session.post(shop.url + "/sandbox/backends/register",
                            data={"csrf_token": token, "name": "我的后端", "notify_url": ""}, timeout=30)
    assert download.status_code == 200 and download.headers["Content-Type"] == "application/zip"
    import io
    import zipfile

    archive = zipfile.ZipFile(io.BytesIO(download.content))
    names = {name.split("/", 1)[1] for name in archive.namelist()}
    assert {"apiclient_key.pem", "apiclient_cert.pem", "pub_key.pem", "merchant.json"} <= names
    info = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith("merchant.json"))))
    kit = {**info, "private_key": archive.read(next(n for n in archive.namelist()
                                                     if n.endswith("apiclient_key.pem"))).decode(),
           "public_key": archive.read(next(n for n in archive.namelist() if n.endswith("pub_key.pem"))).decode()}
    backend = backends(kit, kit["api_base_mounted"])
    out_trade_no = backend.order()

    page = session.get(shop.url + "/sandbox/backends", params={"mchid": kit["mchid"]}, timeout=10)
    assert out_trade_no in page.text and "我的后端" in page.text
    report = session.post(shop.url + "/sandbox/backends/grade", data={
        "csrf_token": token, "out_trade_no": out_trade_no, "mchid": kit["mchid"]}, timeout=60)
    assert report.status_code == 200 and "微信支付接入检查报告" in report.text and "通过" in report.text
    listing = session.get(shop.url + "/sandbox/control/merchants", timeout=10).json()["merchants"]
    assert any(m["mchid"] == kit["mchid"] and m["name"] == "我的后端" for m in listing)


def test_the_shop_itself_passes_the_grader(live_server, shopper):
    """The project's own shop is a backend like any other: its demo merchant's order grades clean."""
    order = shopper.buy()
    attempt = shopper.start_native(order["order_no"])
    out_trade_no = attempt["out_trade_no"]
    result = live_server.app.test_cli_runner().invoke(args=["sandbox-grade", "--out-trade-no", out_trade_no])
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == len(ALL_CASES) and "✗" not in result.output
    assert shopper.order(order["order_no"])["status"] == "paid"


def test_control_grade_answers_the_json_document_and_a_report(shop, new_kit, backends):
    kit = new_kit()
    backend = backends(kit, kit["api_base_mounted"], "fail_duplicates")
    out_trade_no = backend.order()
    answer = requests.post(shop.url + "/sandbox/control/grade", json={"out_trade_no": out_trade_no}, timeout=60)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["ok"] is False and data["merchant"] == kit["mchid"] and data["total"] == len(ALL_CASES)
    report = requests.get(shop.url + data["report_url"], timeout=10)
    assert report.status_code == 200 and "duplicate_notification" in report.text
    missing = requests.post(shop.url + "/sandbox/control/grade", json={"out_trade_no": "NOSUCHORDER9"}, timeout=10)
    assert missing.status_code == 409 and missing.json()["code"] == "CANNOT_GRADE"
    bad = requests.post(shop.url + "/sandbox/control/grade", json={"out_trade_no": out_trade_no,
                                                                   "wait_seconds": 999}, timeout=10)
    assert bad.status_code == 400
