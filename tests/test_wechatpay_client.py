"""The Client against a tiny loopback server that plays WeChat Pay under a /sandbox mount prefix.

The server checks what WeChat Pay checks, with its own code (not storefront's): the Authorization
signature over the path *relative to the mount* (/v3/...), the clock, Accept, User-Agent,
Content-Type on POST and Wechatpay-Serial. It answers signed with the vector platform key and
PUB_KEY_ID, or as each test asks.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from requests.structures import CaseInsensitiveDict

from protocol_fixtures import (  # noqa: F401 - keys is a fixture
    APIV3_KEY,
    APPID,
    MCHID,
    MERCHANT_SERIAL,
    PUB_KEY_ID,
    Keys,
    keys,
)
from storefront.wechatpay import APIError, Client, Exchange, SignatureError, TransportError, Verifier

PREFIX = "/sandbox"  # where the fake API is mounted, like the shop's simulator
OUT_TRADE_NO = "ORDER20261127000001"
NOTIFY_URL = "https://shop.example.com/notify/wechatpay"
CODE_URL = "weixin://wxpay/bizpayurl?pr=AbC123xYz"
NATIVE = "/v3/pay/transactions/native"
QUERY = f"/v3/pay/transactions/out-trade-no/{OUT_TRADE_NO}"
CLOSE = f"/v3/pay/transactions/out-trade-no/{OUT_TRADE_NO}/close"
NOTPAY = {
    "appid": APPID, "mchid": MCHID, "out_trade_no": OUT_TRADE_NO, "trade_state": "NOTPAY",
    "trade_state_desc": "订单未支付", "amount": {"total": 100, "currency": "CNY", "payer_currency": "CNY"},
}
_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


def _json(data) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


# -- the fake WeChat Pay ------------------------------------------------------------------------------------


@dataclass
class Answer:
    """What the fake answers on one path. ``signing`` is how it signs: valid, or one way wrong."""

    status: int = 200
    body: bytes = b""
    signing: str = "valid"  # valid | other-body | unsigned | unknown-serial | stale


@dataclass
class Seen:
    """One request as the fake received and checked it."""

    method: str
    raw_path: str  # as on the wire, mount prefix included
    canonical_url: str  # what the merchant must have signed
    headers: CaseInsensitiveDict
    body: bytes
    auth: dict[str, str]
    message: str  # the five-line string the signature verified over
    request_id: str
    answer_headers: dict[str, str]


class Refused(Exception):
    """The fake refuses a request the way WeChat Pay would (status, code)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class FakeWeChatPay:
    """The platform side: routes, checks, signed answers, and a record of what it saw."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.answers: dict[tuple[str, str], Answer] = {}
        self.seen: list[Seen] = []
        self.refusals: list[str] = []  # requests it refused (a correct client causes none)
        self.crashes: list[str] = []  # bugs in this fake, reported at teardown
        self.connections = 0
        self.base = ""
        self._lock = threading.Lock()

    def answer(self, method: str, path: str, status: int = 200, body=b"", signing: str = "valid") -> None:
        self.answers[(method, path)] = Answer(status, body if isinstance(body, bytes) else _json(body), signing)

    def opened_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        try:
            body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
            with self._lock:
                request_id = f"REQ-{len(self.seen) + len(self.refusals) + 1:04d}"
            if not request.path.startswith(PREFIX + "/v3/"):
                raise Refused(404, "NOT_FOUND", f"no API at {request.path}")
            canonical_url = request.path[len(PREFIX):]  # the real API lives at the host root
            auth, message = self._check(request, canonical_url, body)
            answer = self.answers.get(
                (request.command, canonical_url.partition("?")[0]),
                Answer(404, _json({"code": "ORDER_NOT_EXIST", "message": "订单不存在"}), "unsigned"),
            )
            headers = self._answer_headers(answer, request_id)
            # Record before answering: the client may look as soon as it has the answer.
            self.seen.append(
                Seen(request.command, request.path, canonical_url, CaseInsensitiveDict(request.headers.items()),
                     body, auth, message, request_id, headers)
            )
            self._write(request, answer, headers)
        except Refused as refused:
            self.refusals.append(f"{refused.code}: {refused}")
            error = Answer(refused.status, _json({"code": refused.code, "message": str(refused)}), "unsigned")
            self._write(request, error, self._answer_headers(error, "REQ-REFUSED"))
        except Exception as exc:  # a bug in the fake itself: surface it at teardown
            self.crashes.append(repr(exc))
            raise

    def _check(self, request: BaseHTTPRequestHandler, canonical_url: str, body: bytes) -> tuple[dict, str]:
        """WeChat Pay's request checks, as WeChat Pay's "签名生成" describes them, written independently of storefront."""
        headers = request.headers
        if headers.get("Accept") != "application/json" or not headers.get("User-Agent"):
            raise Refused(400, "INVALID_REQUEST", "Http头缺少Accept或User-Agent")
        if request.command == "POST" and headers.get("Content-Type") != "application/json":
            raise Refused(400, "INVALID_REQUEST", "Content-Type must be application/json")
        if headers.get("Wechatpay-Serial") != PUB_KEY_ID:
            raise Refused(400, "INVALID_REQUEST", "Wechatpay-Serial is not our public key id")
        scheme, _, params = (headers.get("Authorization") or "").partition(" ")
        auth = dict(_AUTH_PARAM.findall(params))
        if scheme != "WECHATPAY2-SHA256-RSA2048" or set(auth) != {
            "mchid", "nonce_str", "timestamp", "serial_no", "signature"
        }:
            raise Refused(401, "SIGN_ERROR", "Authorization is malformed")
        if auth["mchid"] != MCHID or auth["serial_no"] != MERCHANT_SERIAL:
            raise Refused(401, "SIGN_ERROR", "unknown merchant or certificate")
        if abs(time.time() - int(auth["timestamp"])) >= 300:
            raise Refused(401, "SIGN_ERROR", "timestamp more than 5 minutes off")
        message = f"{request.command}\n{canonical_url}\n{auth['timestamp']}\n{auth['nonce_str']}\n{body.decode()}\n"
        try:
            self.keys.merchant_public.verify(
                base64.b64decode(auth["signature"]), message.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception as exc:
            raise Refused(401, "SIGN_ERROR", "错误的签名，验签失败") from exc
        return auth, message

    def _answer_headers(self, answer: Answer, request_id: str) -> dict[str, str]:
        headers = {"Request-ID": request_id}
        if answer.status != 204:
            headers.update({"Content-Type": "application/json", "Content-Length": str(len(answer.body))})
        if answer.signing != "unsigned":
            timestamp = int(time.time()) - (600 if answer.signing == "stale" else 0)
            nonce = f"{time.perf_counter_ns():032x}"[-32:]
            signed_body = b'{"forged":true}' if answer.signing == "other-body" else answer.body
            message = f"{timestamp}\n{nonce}\n{signed_body.decode()}\n".encode()
            signature = self.keys.platform.sign(message, padding.PKCS1v15(), hashes.SHA256())
            headers.update({
                "Wechatpay-Timestamp": str(timestamp),
                "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": base64.b64encode(signature).decode(),
                "Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000000000099"
                if answer.signing == "unknown-serial" else PUB_KEY_ID,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            })
        return headers

    @staticmethod
    def _write(request: BaseHTTPRequestHandler, answer: Answer, headers: dict[str, str]) -> None:
        request.send_response(answer.status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(answer.body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the server can count reused connections

    def setup(self) -> None:
        super().setup()
        self.server.fake.opened_connection()

    def do_GET(self) -> None:
        self.server.fake.handle(self)

    do_POST = do_GET

    def log_message(self, format, *args) -> None:  # quiet test output
        pass


@pytest.fixture
def wechat(keys):
    """The fake WeChat Pay on 127.0.0.1, a free port, in a thread; stopped at teardown."""
    fake = FakeWeChatPay(keys)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = fake
    # A short poll interval keeps shutdown() at teardown from waiting half a second.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), name="fake-wechatpay", daemon=True)
    thread.start()
    fake.base = f"http://127.0.0.1:{server.server_port}{PREFIX}"
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert not fake.crashes


@pytest.fixture
def session():
    with requests.Session() as session:
        yield session


@pytest.fixture
def exchanges() -> list[Exchange]:
    """What the client's observer was given, in order."""
    return []


def make_client(keys: Keys, api_base: str, **options) -> Client:
    return Client(
        mchid=MCHID,
        appid=APPID,
        merchant_serial=MERCHANT_SERIAL,
        private_key=keys.merchant,
        apiv3_key=APIV3_KEY,
        verifier=Verifier({PUB_KEY_ID: keys.wechatpay_public}),
        public_key_id=PUB_KEY_ID,
        api_base=api_base,
        **options,
    )


@pytest.fixture
def client(keys, wechat, session, exchanges) -> Client:
    return make_client(keys, wechat.base, session=session, timeout=5.0, observer=exchanges.append)


def prepay(client: Client):
    return client.prepay_native(
        description="测试商品-T恤",
        out_trade_no=OUT_TRADE_NO,
        amount_total=100,
        notify_url=NOTIFY_URL,
        time_expire=datetime(2026, 11, 27, 2, 34, 56, 123_456, tzinfo=timezone.utc),
    )


# -- calls -------------------------------------------------------------------------------------------------


def test_prepay_native_returns_code_url(client, wechat):
    """POST /v3/pay/transactions/native, signed relative to the mount; the verified code_url comes back."""
    wechat.answer("POST", NATIVE, 200, {"code_url": CODE_URL})

    response = prepay(client)

    assert response.status == 200
    assert response.data == {"code_url": CODE_URL}
    assert wechat.refusals == []
    [seen] = wechat.seen
    assert seen.raw_path == "/sandbox/v3/pay/transactions/native"
    assert seen.canonical_url == NATIVE
    assert seen.message.startswith("POST\n/v3/pay/transactions/native\n")
    assert response.request_id == seen.request_id


def test_prepay_body_is_what_wechat_expects(client, wechat):
    """time_expire in Beijing time without fraction, integer fen, compact UTF-8 JSON."""
    wechat.answer("POST", NATIVE, 200, {"code_url": CODE_URL})
    prepay(client)
    [seen] = wechat.seen
    sent = json.loads(seen.body)
    assert sent["time_expire"] == "2026-11-27T10:34:56+08:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", sent["time_expire"])
    assert sent["amount"] == {"total": 100, "currency": "CNY"}
    assert type(sent["amount"]["total"]) is int
    assert (sent["appid"], sent["mchid"], sent["out_trade_no"], sent["notify_url"]) == (
        APPID, MCHID, OUT_TRADE_NO, NOTIFY_URL
    )
    assert "测试商品-T恤".encode() in seen.body  # raw UTF-8, the bytes that were signed


def test_request_headers(client, wechat):
    """Accept, a User-Agent, JSON Content-Type on POST and the public key id in Wechatpay-Serial."""
    wechat.answer("POST", NATIVE, 200, {"code_url": CODE_URL})
    prepay(client)
    [seen] = wechat.seen
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"]
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Wechatpay-Serial"] == PUB_KEY_ID
    assert seen.auth["serial_no"] == MERCHANT_SERIAL


def test_the_session_s_headers_and_cookies_are_sent_as_requests_would(keys, wechat, session):
    """The client prepares each request itself: the session's own headers and cookies still go
    out (a gateway in front of WeChat Pay may ask for them), the call's headers win over the
    session's whatever their case, and the session's response hooks still run."""
    wechat.answer("POST", NATIVE, 200, {"code_url": CODE_URL})
    session.headers["X-Gateway"] = "edge-1"
    session.headers["content-type"] = "text/plain"
    session.cookies.set("route", "b7")
    hooked = []
    session.hooks["response"].append(lambda answer, **_kwargs: hooked.append(answer.status_code))
    client = make_client(keys, wechat.base, session=session, timeout=5.0)
    prepay(client)
    [seen] = wechat.seen
    assert seen.headers["X-Gateway"] == "edge-1" and seen.headers["Cookie"] == "route=b7"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Accept"] == "application/json" and hooked == [200]


def test_query_by_out_trade_no_signs_query_and_empty_body(client, wechat):
    """GET …/out-trade-no/X?mchid=…: the query is signed, the body line is empty (message ends \\n\\n)."""
    wechat.answer("GET", QUERY, 200, NOTPAY)

    transaction, response = client.query_by_out_trade_no(OUT_TRADE_NO)

    [seen] = wechat.seen
    assert seen.raw_path == f"/sandbox{QUERY}?mchid={MCHID}"
    assert seen.canonical_url == f"{QUERY}?mchid={MCHID}"
    assert seen.body == b""
    assert seen.message.endswith("\n\n")
    assert seen.message.startswith(f"GET\n{QUERY}?mchid={MCHID}\n")
    assert transaction.trade_state == "NOTPAY"
    assert transaction.amount_total == 100
    assert response.data == NOTPAY


def test_query_signs_the_path_as_sent(client, wechat):
    """Characters WeChat allows in out_trade_no (* and |) are signed exactly as percent-encoded on the wire."""
    wechat.answer("GET", "/v3/pay/transactions/out-trade-no/A_B-1%2A2%7C3", 200, {**NOTPAY, "out_trade_no": "A_B-1*2|3"})
    transaction, _ = client.query_by_out_trade_no("A_B-1*2|3")
    assert wechat.refusals == []
    assert wechat.seen[0].canonical_url == f"/v3/pay/transactions/out-trade-no/A_B-1%2A2%7C3?mchid={MCHID}"
    assert transaction.out_trade_no == "A_B-1*2|3"


def test_close_order_204_is_verified(client, wechat, exchanges):
    """POST …/close with {"mchid"}; the empty 204 answer is still signed, over timestamp\\nnonce\\n\\n."""
    wechat.answer("POST", CLOSE, 204)

    response = client.close_order(OUT_TRADE_NO)

    [seen] = wechat.seen
    assert json.loads(seen.body) == {"mchid": MCHID}
    assert (response.status, response.data) == (204, {})
    verification = exchanges[-1].verification
    assert verification is not None
    assert verification.message == (
        f"{seen.answer_headers['Wechatpay-Timestamp']}\n{seen.answer_headers['Wechatpay-Nonce']}\n\n"
    )


# -- refusals and errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signing", ["other-body", "unsigned", "unknown-serial", "stale"])
def test_answer_with_bad_signature_raises(client, wechat, exchanges, signing):
    """A 2xx answer is believed only once verified: forged, unsigned, unknown key or stale is refused."""
    wechat.answer("POST", NATIVE, 200, {"code_url": CODE_URL}, signing=signing)
    with pytest.raises(SignatureError):
        prepay(client)
    assert exchanges[-1].error.startswith("answer refused")
    assert exchanges[-1].verification is None


def test_param_error_keeps_wechat_fields(client, wechat, exchanges):
    """400 PARAM_ERROR: APIError keeps status, code, message, detail and the Request-ID."""
    detail = {"field": "/amount/total", "value": 0, "issue": "must be greater than 0", "location": "body"}
    wechat.answer("POST", NATIVE, 400, {"code": "PARAM_ERROR", "message": "参数错误", "detail": detail},
                  signing="unsigned")

    with pytest.raises(APIError) as raised:
        prepay(client)

    error = raised.value
    assert (error.status, error.code, error.message, error.detail) == (400, "PARAM_ERROR", "参数错误", detail)
    assert error.request_id == wechat.seen[-1].request_id
    assert exchanges[-1].error == "PARAM_ERROR: 参数错误"


def test_close_paid_order_raises_orderpaid(client, wechat):
    """The payer was faster: the close fails with WeChat's own code."""
    wechat.answer("POST", CLOSE, 400, {"code": "ORDERPAID", "message": "该订单已支付"}, signing="unsigned")
    with pytest.raises(APIError) as raised:
        client.close_order(OUT_TRADE_NO)
    assert (raised.value.status, raised.value.code) == (400, "ORDERPAID")


def test_error_that_is_not_json(client, wechat):
    """A gateway's HTML 502 still becomes an APIError, with a generic code."""
    wechat.answer("GET", QUERY, 502, b"<html>Bad Gateway</html>", signing="unsigned")
    with pytest.raises(APIError) as raised:
        client.query_by_out_trade_no(OUT_TRADE_NO)
    assert (raised.value.status, raised.value.code) == (502, "HTTP_ERROR")


def test_signed_answer_that_is_not_json(client, wechat):
    """Verified but unreadable: TransportError rather than a JSONDecodeError."""
    wechat.answer("GET", QUERY, 200, b"not json")
    with pytest.raises(TransportError):
        client.query_by_out_trade_no(OUT_TRADE_NO)


def test_refused_connection_raises_transport_error(keys, exchanges):
    """Nobody listens on the port: TransportError, and the observer still hears of it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    with requests.Session() as session:
        client = make_client(keys, f"http://127.0.0.1:{port}{PREFIX}", session=session, timeout=2.0,
                             observer=exchanges.append)
        with pytest.raises(TransportError):
            client.query_by_out_trade_no(OUT_TRADE_NO)
    [exchange] = exchanges
    assert exchange.status is None
    assert exchange.error.startswith("transport")


# -- what the client reports, and how it connects -------------------------------------------------------------


def test_observer_receives_the_exchange(client, wechat, exchanges):
    """The flow record: signed message, headers, answer, Request-ID and the verification."""
    wechat.answer("POST", NATIVE, 200, {"code_url": CODE_URL})
    prepay(client)
    [seen] = wechat.seen
    [exchange] = exchanges
    assert exchange.method == "POST"
    assert exchange.url == wechat.base + NATIVE
    assert exchange.canonical_url == NATIVE
    assert exchange.signed_message == seen.message
    assert exchange.request_body.encode() == seen.body
    assert exchange.request_headers["Authorization"] == seen.headers["Authorization"]
    assert exchange.status == 200
    assert json.loads(exchange.response_body) == {"code_url": CODE_URL}
    assert exchange.request_id == seen.request_id
    assert exchange.error is None
    assert exchange.elapsed_ms > 0
    verification = exchange.verification
    assert verification.serial == PUB_KEY_ID
    assert verification.timestamp == seen.answer_headers["Wechatpay-Timestamp"]
    assert verification.message.endswith(f"\n{exchange.response_body}\n")


def test_one_session_one_connection(client, wechat, session):
    """Three calls ride one kept-alive TCP connection of the session we passed in."""
    wechat.answer("POST", NATIVE, 200, {"code_url": CODE_URL})
    wechat.answer("GET", QUERY, 200, NOTPAY)
    wechat.answer("POST", CLOSE, 204)

    prepay(client)
    client.query_by_out_trade_no(OUT_TRADE_NO)
    client.close_order(OUT_TRADE_NO)

    assert client._session is session
    assert len(wechat.seen) == 3
    assert wechat.connections == 1


def test_own_session_is_reused(keys, wechat):
    """Without session=, the client makes one session and keeps using it."""
    wechat.answer("GET", QUERY, 200, NOTPAY)
    client = make_client(keys, wechat.base, timeout=5.0)
    try:
        own = client._session
        client.query_by_out_trade_no(OUT_TRADE_NO)
        client.query_by_out_trade_no(OUT_TRADE_NO)
        assert client._session is own
        assert wechat.connections == 1
    finally:
        client._session.close()


def test_the_environment_s_proxy_settings_are_read_once_and_still_honoured(keys, monkeypatch):
    """requests would look the proxy environment up on every call; the client resolves it for its
    API base when built, NO_PROXY included, and the calls then skip the lookup."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = make_client(keys, "https://api.mch.weixin.qq.com")
    assert proxied._session.proxies.get("https") == "http://proxy.example:3128"
    assert proxied._session.trust_env is False
    monkeypatch.setenv("NO_PROXY", "api.mch.weixin.qq.com")
    direct = make_client(keys, "https://api.mch.weixin.qq.com")
    assert "https" not in direct._session.proxies
