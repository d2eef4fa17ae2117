"""Why a signature failed: each classic mistake gets WeChat's 401 SIGN_ERROR and its name in the call log.

Raw requests signed by hand with a registered merchant's kit, one mistake each, over real HTTP.
"""

from __future__ import annotations

import json
import secrets
import time
from urllib.parse import quote

import pytest
import requests

from storefront.wechatpay import keys, signing

NATIVE = "/v3/pay/transactions/native"


@pytest.fixture(scope="module")
def server(module_live_server):
    return module_live_server


@pytest.fixture(scope="module")
def kit(server):
    answer = requests.post(server.url + "/sandbox/control/merchants", json={"name": "诊断测试"}, timeout=30)
    assert answer.status_code == 201, answer.text
    data = answer.json()
    data["key"] = keys.load_private_key(data["apiclient_key_pem"].encode())
    return data


@pytest.fixture(scope="module")
def other_kit(server):
    answer = requests.post(server.url + "/sandbox/control/merchants", json={}, timeout=30)
    data = answer.json()
    data["key"] = keys.load_private_key(data["apiclient_key_pem"].encode())
    return data


def order(kit: dict, **changes) -> dict:
    body = {"appid": kit["appid"], "mchid": kit["mchid"], "description": "云南小粒咖啡豆 500g",
            "out_trade_no": "D" + secrets.token_hex(8).upper(), "notify_url": "https://merchant.example/notify",
            "amount": {"total": 8800, "currency": "CNY"}}
    body.update(changes)
    return body


def send(server, kit: dict, method: str, url: str, body: str | None, *, message: str | None = None,
         timestamp: str | None = None, key=None, serial: str | None = None) -> requests.Response:
    """Send ``body`` to ``url``; the Authorization is over ``message`` when given (the mistake), else correct."""
    timestamp = timestamp or str(int(time.time()))
    nonce = signing.new_nonce()
    signed_over = message if message is not None else signing.request_message(method, url, timestamp, nonce,
                                                                              body or "")
    signed_over = signed_over.replace("{ts}", timestamp).replace("{nonce}", nonce)
    signature = signing.sign(key or kit["key"], signed_over)
    authorization = (f'{signing.AUTH_SCHEME} mchid="{kit["mchid"]}",nonce_str="{nonce}",timestamp="{timestamp}",'
                     f'serial_no="{serial or kit["merchant_serial"]}",signature="{signature}"')
    headers = {"Authorization": authorization, "Accept": "application/json", "User-Agent": "diagnosis-tests",
               "Content-Type": "application/json"}
    return requests.request(method, server.url + "/sandbox" + url, data=body.encode() if body is not None else None,
                            headers=headers, timeout=10)


def last_call(server, kit: dict) -> dict:
    calls = requests.get(server.url + "/sandbox/control/calls", params={"mchid": kit["mchid"]}, timeout=10).json()
    return calls["calls"][0]


def assert_diagnosed(server, kit, answer, diagnosis: str) -> dict:
    assert answer.status_code == 401, answer.text
    assert answer.json()["code"] == "SIGN_ERROR"
    call = last_call(server, kit)
    assert call["diagnosis"] == diagnosis, call
    assert call["diagnosis_detail"]["diagnosis"] == diagnosis
    return call["diagnosis_detail"]


def test_body_reserialized(server, kit):
    """Signed json.dumps(...) with spaces and ASCII escapes, sent compact UTF-8: the classic."""
    data = order(kit)
    sent = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    signed_body = json.dumps(data)  # ", " / ": " separators, \\uXXXX escapes
    answer = send(server, kit, "POST", NATIVE, sent,
                  message=signing.signing_string("POST", NATIVE, "{ts}", "{nonce}", signed_body))
    detail = assert_diagnosed(server, kit, answer, "body_reserialized")
    assert detail["expected"].endswith(sent + "\n") and detail["signed"].endswith(signed_body + "\n")


def test_missing_trailing_newline(server, kit):
    sent = json.dumps(order(kit), ensure_ascii=False, separators=(",", ":"))
    answer = send(server, kit, "POST", NATIVE, sent,
                  message=signing.signing_string("POST", NATIVE, "{ts}", "{nonce}", sent)[:-1])
    detail = assert_diagnosed(server, kit, answer, "missing_trailing_newline")
    assert detail["expected"] == detail["signed"] + "\n"


def test_missing_trailing_newline_on_an_empty_body(server, kit):
    url = f"/v3/pay/transactions/out-trade-no/NOPE123456?mchid={kit['mchid']}"
    answer = send(server, kit, "GET", url, None,
                  message=signing.signing_string("GET", url, "{ts}", "{nonce}", "")[:-1])
    assert_diagnosed(server, kit, answer, "missing_trailing_newline")


def test_path_without_query(server, kit):
    path = "/v3/pay/transactions/out-trade-no/NOPE123456"
    answer = send(server, kit, "GET", f"{path}?mchid={kit['mchid']}", None,
                  message=signing.signing_string("GET", path, "{ts}", "{nonce}", ""))
    assert_diagnosed(server, kit, answer, "path_without_query")


def test_query_reencoded(server, kit):
    path = "/v3/certificates"
    sent_query = "algorithm_type=" + quote("RSA ")  # %20 on the wire
    answer = send(server, kit, "GET", f"{path}?{sent_query}", None,
                  message=signing.signing_string("GET", f"{path}?algorithm_type=RSA ", "{ts}", "{nonce}", ""))
    assert_diagnosed(server, kit, answer, "query_reencoded")


def test_timestamp_in_milliseconds(server, kit):
    sent = json.dumps(order(kit), separators=(",", ":"))
    answer = send(server, kit, "POST", NATIVE, sent, timestamp=str(int(time.time() * 1000)))
    assert_diagnosed(server, kit, answer, "timestamp_ms")


def test_another_merchants_key_for_this_serial(server, kit, other_kit):
    sent = json.dumps(order(kit), separators=(",", ":"))
    answer = send(server, kit, "POST", NATIVE, sent, key=other_kit["key"])
    assert_diagnosed(server, kit, answer, "key_not_serial")


def test_a_serial_not_the_certificates(server, kit, other_kit):
    sent = json.dumps(order(kit), separators=(",", ":"))
    answer = send(server, kit, "POST", NATIVE, sent, serial=other_kit["merchant_serial"])
    assert_diagnosed(server, kit, answer, "key_not_serial")


def test_something_else_is_unknown(server, kit):
    sent = json.dumps(order(kit), separators=(",", ":"))
    answer = send(server, kit, "POST", NATIVE, sent,
                  message=signing.signing_string("PUT", NATIVE, "{ts}", "{nonce}", sent))
    detail = assert_diagnosed(server, kit, answer, "unknown")
    assert detail["signed"] == ""


def test_a_good_signature_gets_no_diagnosis_and_the_console_shows_one(server, kit):
    sent = json.dumps(order(kit), separators=(",", ":"))
    assert send(server, kit, "POST", NATIVE, sent).status_code == 200
    assert last_call(server, kit)["diagnosis"] is None
    bad = send(server, kit, "POST", NATIVE, sent,
               message=signing.signing_string("POST", NATIVE, "{ts}", "{nonce}", sent)[:-1])
    assert bad.status_code == 401
    call_id = last_call(server, kit)["id"]
    page = requests.get(f"{server.url}/sandbox/calls/{call_id}", timeout=10)
    assert "missing_trailing_newline" in page.text and 'id="diagnosis-expected"' in page.text
    assert '<mark class="diff">' in page.text
    console = requests.get(f"{server.url}/sandbox/", params={"mchid": kit["mchid"]}, timeout=10)
    assert "missing_trailing_newline" in console.text
