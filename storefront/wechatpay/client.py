"""The merchant's API v3 client: signed requests over one reused HTTP session.

Calls follow WeChat Pay's own names (wechatpay-go: ``Prepay``, ``QueryOrderByOutTradeNo``,
``CloseOrder``). Every 2xx answer is verified before it is believed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import APIError, SignatureError, TransportError
from .keys import PrivateKey
from .notify import Notification, Transaction, parse_notification
from .refunds import RefundResult
from .signing import pay_params, sign_request
from .times import format_time
from .verify import Verification, Verifier

DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
DEFAULT_TIMEOUT_SECONDS = 10.0
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"
USER_AGENT = "storefront/1.0 (WeChatPay-APIv3; python-requests)"

log = logging.getLogger(__name__)


@dataclass
class Exchange:
    """One request and its answer, as sent and received: what the flow inspector shows."""

    method: str
    url: str
    canonical_url: str
    request_headers: dict[str, str]
    request_body: str
    signed_message: str
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    request_id: str | None = None
    verification: Verification | None = None
    error: str | None = None
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class Response:
    status: int
    data: dict[str, Any]
    request_id: str | None
    exchange: Exchange


def _session_for(api_base: str) -> requests.Session:
    """A session that reads the environment's proxy and CA settings once, here, not per call.

    With ``trust_env`` on, requests looks up the proxy environment (and ``NO_PROXY``) and netrc
    on every request: a third of a prepay call's CPU on the shop's side. The same settings,
    resolved for this API base now, apply to every call; the Authorization header is set
    per request, so netrc has nothing to add.
    """
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(api_base))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    return session


def json_body(data: Mapping[str, Any]) -> str:
    """Serialise once, compactly, keeping Chinese as UTF-8: these exact bytes are signed and sent."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class Client:
    """A direct merchant's API v3 client. Build one per configuration and reuse it."""

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        merchant_serial: str,
        private_key: PrivateKey,
        apiv3_key: str,
        verifier: Verifier,
        public_key_id: str | None = None,
        api_base: str = DEFAULT_API_BASE,
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        observer: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.mchid = mchid
        self.appid = appid
        self.merchant_serial = merchant_serial
        self.public_key_id = public_key_id
        self.verifier = verifier
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.observer = observer
        self._private_key = private_key
        self._aes = AESGCM(apiv3_key.encode("utf-8"))
        self._session = session or _session_for(self.api_base)
        self._session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})

    # -- transport ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        *,
        verify: bool = True,
        _probe_retry: bool = True,
    ) -> Response:
        """Send one signed request; verify a 2xx answer. :raise APIError, SignatureError, TransportError:

        ``verify=False`` only for ``/v3/certificates``, which is verified after decryption.
        """
        # Sign the path relative to the API base (/v3/...), as WeChat Pay sees it at its host root.
        canonical_url = path + ("?" + urlencode(query) if query else "")
        text = json_body(body) if body is not None else ""
        signed = sign_request(
            self._private_key,
            mchid=self.mchid,
            serial_no=self.merchant_serial,
            method=method,
            canonical_url=canonical_url,
            body=text,
        )
        headers = {"Authorization": signed.authorization}
        if self.public_key_id:
            # Public-key mode: name the key we verify with, so answers are signed with it.
            headers["Wechatpay-Serial"] = self.public_key_id
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = self.api_base + canonical_url
        exchange = Exchange(
            method=method,
            url=url,
            canonical_url=canonical_url,
            request_headers={**dict(self._session.headers), **headers},
            request_body=text,
            signed_message=signed.message,
        )
        started = time.perf_counter()
        try:
            answer = self._send(method, url, headers, text.encode("utf-8") if body is not None else None)
        except requests.RequestException as exc:
            exchange.error = f"transport: {exc.__class__.__name__}"
            self._observe(exchange, started)
            raise TransportError(f"{method} {canonical_url}: {exc.__class__.__name__}") from exc
        raw = answer.content
        exchange.status = answer.status_code
        exchange.response_headers = dict(answer.headers)
        exchange.response_body = raw.decode("utf-8", "replace")
        exchange.request_id = answer.headers.get("Request-ID")
        log.info("wechatpay %s %s -> %s Request-ID=%s", method, canonical_url, answer.status_code, exchange.request_id)
        retry = False
        try:
            if answer.status_code >= 300:
                raise self._api_error(answer.status_code, raw, exchange.request_id)
            if verify:
                exchange.verification = self.verifier.verify(answer.headers, raw)
            data = json.loads(raw) if raw else {}
        except SignatureError as exc:
            probe = str(answer.headers.get("Wechatpay-Signature", "")).startswith(PROBE_PREFIX)
            exchange.error = f"answer refused: {exc}" + (" (WECHATPAY/SIGNTEST/ probe)" if probe else "")
            if probe and _probe_retry:
                # WeChat Pay sometimes answers with a deliberately wrong signature to check that
                # merchants verify (《如何应对签名探测流量》). Refused, as it must be; every call the shop
                # makes is idempotent at WeChat Pay (same out_trade_no / out_refund_no), so it is
                # sent once more with a fresh signature instead of failing the shopper's request.
                retry = True
            else:
                raise
        except APIError as exc:
            exchange.error = f"{exc.code}: {exc.message}"
            raise
        except ValueError as exc:
            exchange.error = "answer is not JSON"
            raise TransportError(f"{method} {canonical_url}: answer is not JSON") from exc
        finally:
            self._observe(exchange, started)
        if retry:
            return self.request(method, path, body, query, verify=verify, _probe_retry=False)
        return Response(answer.status_code, data, exchange.request_id, exchange)

    def _send(self, method: str, url: str, headers: Mapping[str, str], data: bytes | None) -> requests.Response:
        """One request on the session, prepared here: what ``Session.request`` would send (the
        session's headers, cookies, auth and hooks, then these headers; its proxies, CA bundle
        and adapters apply in ``send``), without ``Session.request`` merging every setting anew on
        each call (its runtime-checked protocols: a quarter of a call's CPU on the shop's side).

        Never follows a redirect: it would resend the signed request elsewhere.
        """
        session = self._session
        merged = requests.structures.CaseInsensitiveDict(session.headers)
        merged.update(headers)
        prepared = requests.PreparedRequest()
        prepared.prepare(method=method, url=url, headers=merged, data=data, cookies=session.cookies,
                         auth=session.auth, hooks=session.hooks)
        return session.send(prepared, timeout=self.timeout, allow_redirects=False)

    def download(self, url: str) -> bytes:
        """A signed GET whose answer is a file: raw bytes, no JSON, no answer signature.

        WeChat Pay does not sign a bill download; the caller checks the file's hash instead
        (``wechatpay/bills.py``). ``url`` must be on this client's API host: a signed request is
        never sent elsewhere. :raise APIError, TransportError:
        """
        base, target = urlsplit(self.api_base), urlsplit(url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not target.path.startswith(base.path):
            raise TransportError(f"download URL is not on the API host {base.netloc}")
        canonical_url = target.path[len(base.path.rstrip("/")):] + ("?" + target.query if target.query else "")
        signed = sign_request(self._private_key, mchid=self.mchid, serial_no=self.merchant_serial, method="GET",
                              canonical_url=canonical_url, body="")
        headers = {"Authorization": signed.authorization}
        if self.public_key_id:
            headers["Wechatpay-Serial"] = self.public_key_id
        exchange = Exchange(method="GET", url=self.api_base + canonical_url, canonical_url=canonical_url,
                            request_headers={**dict(self._session.headers), **headers}, request_body="",
                            signed_message=signed.message)
        started = time.perf_counter()
        try:
            answer = self._session.get(self.api_base + canonical_url, headers=headers, timeout=self.timeout,
                                       allow_redirects=False)
        except requests.RequestException as exc:
            exchange.error = f"transport: {exc.__class__.__name__}"
            self._observe(exchange, started)
            raise TransportError(f"GET {canonical_url}: {exc.__class__.__name__}") from exc
        exchange.status = answer.status_code
        exchange.response_headers = dict(answer.headers)
        exchange.request_id = answer.headers.get("Request-ID")
        try:
            if answer.status_code >= 300:
                exchange.response_body = answer.content.decode("utf-8", "replace")
                error = self._api_error(answer.status_code, answer.content, exchange.request_id)
                exchange.error = f"{error.code}: {error.message}"
                raise error
            exchange.response_body = f"<{len(answer.content)} bytes, not signed: checked by its hash>"
        finally:
            self._observe(exchange, started)
        return answer.content

    def _observe(self, exchange: Exchange, started: float) -> None:
        exchange.elapsed_ms = (time.perf_counter() - started) * 1000
        if self.observer is not None:
            self.observer(exchange)

    @staticmethod
    def _api_error(status: int, raw: bytes, request_id: str | None) -> APIError:
        try:
            data = json.loads(raw)
            return APIError(status, str(data["code"]), str(data.get("message", "")), data.get("detail"), request_id)
        except (ValueError, KeyError, TypeError):
            return APIError(status, "HTTP_ERROR", raw[:200].decode("utf-8", "replace"), None, request_id)

    # -- payments ----------------------------------------------------------------------

    def _order_body(
        self,
        *,
        appid: str | None,
        description: str,
        out_trade_no: str,
        amount_total: int,
        notify_url: str,
        time_expire: datetime,
        attach: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "appid": appid or self.appid,
            "mchid": self.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": format_time(time_expire),
            "notify_url": notify_url,
            "amount": {"total": amount_total, "currency": "CNY"},
        }
        if attach:
            body["attach"] = attach
        return body

    def prepay_native(
        self,
        *,
        description: str,
        out_trade_no: str,
        amount_total: int,
        notify_url: str,
        time_expire: datetime,
        attach: str | None = None,
    ) -> Response:
        """``POST /v3/pay/transactions/native``; the answer's ``data["code_url"]`` becomes the QR code."""
        body = self._order_body(
            appid=None, description=description, out_trade_no=out_trade_no, amount_total=amount_total,
            notify_url=notify_url, time_expire=time_expire, attach=attach,
        )
        return self.request("POST", "/v3/pay/transactions/native", body)

    def prepay_h5(
        self,
        *,
        description: str,
        out_trade_no: str,
        amount_total: int,
        notify_url: str,
        time_expire: datetime,
        payer_client_ip: str,
        h5_type: str = "Wap",
        attach: str | None = None,
    ) -> Response:
        """``POST /v3/pay/transactions/h5``; ``data["h5_url"]`` lives 5 minutes. Calling again with
        identical parameters is how WeChat Pay hands out a fresh ``h5_url`` for the same order."""
        body = self._order_body(
            appid=None, description=description, out_trade_no=out_trade_no, amount_total=amount_total,
            notify_url=notify_url, time_expire=time_expire, attach=attach,
        )
        # The payer's real IP: WeChat compares it with the IP that opens h5_url.
        body["scene_info"] = {"payer_client_ip": payer_client_ip, "h5_info": {"type": h5_type}}
        return self.request("POST", "/v3/pay/transactions/h5", body)

    def prepay_jsapi(
        self,
        *,
        description: str,
        out_trade_no: str,
        amount_total: int,
        notify_url: str,
        time_expire: datetime,
        openid: str,
        appid: str | None = None,
        attach: str | None = None,
    ) -> Response:
        """``POST /v3/pay/transactions/jsapi`` (JSAPI and mini program): ``data["prepay_id"]``.

        ``appid`` is the mini program's for the mini program scene; ``openid`` must belong to it.
        """
        body = self._order_body(
            appid=appid, description=description, out_trade_no=out_trade_no, amount_total=amount_total,
            notify_url=notify_url, time_expire=time_expire, attach=attach,
        )
        body["payer"] = {"openid": openid}
        return self.request("POST", "/v3/pay/transactions/jsapi", body)

    def query_by_out_trade_no(self, out_trade_no: str) -> tuple[Transaction, Response]:
        """``GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=``."""
        response = self.request(
            "GET", f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}", query={"mchid": self.mchid}
        )
        return Transaction.from_dict(response.data), response

    def close_order(self, out_trade_no: str) -> Response:
        """``POST …/close``: 204 once closed. :raise APIError: ``ORDERPAID`` if the payer was faster."""
        return self.request(
            "POST", f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close", {"mchid": self.mchid}
        )

    def pay_params(self, prepay_id: str, appid: str | None = None) -> dict[str, str]:
        """Signed parameters for ``getBrandWCPayRequest`` / ``wx.requestPayment``."""
        return pay_params(self._private_key, appid or self.appid, prepay_id)

    # -- platform certificates and refunds ------------------------------------------------

    def download_certificates(self) -> tuple[dict[str, str], bytes]:
        """``GET /v3/certificates``: (headers, raw body), not yet verified (see certificates.py)."""
        response = self.request("GET", "/v3/certificates", verify=False)
        return response.exchange.response_headers, response.exchange.response_body.encode("utf-8")

    def refund(
        self,
        *,
        out_refund_no: str,
        amount_refund: int,
        amount_total: int,
        out_trade_no: str | None = None,
        transaction_id: str | None = None,
        reason: str | None = None,
        notify_url: str | None = None,
    ) -> tuple[RefundResult, Response]:
        """``POST /v3/refund/domestic/refunds`` (no mchid in the body: the signature names the merchant).

        Retry with the same ``out_refund_no``: WeChat Pay refunds it once.
        """
        body: dict[str, Any] = {"out_refund_no": out_refund_no}
        if transaction_id:
            body["transaction_id"] = transaction_id
        else:
            body["out_trade_no"] = out_trade_no
        if reason:
            body["reason"] = reason
        if notify_url:
            body["notify_url"] = notify_url
        body["amount"] = {"refund": amount_refund, "total": amount_total, "currency": "CNY"}
        response = self.request("POST", "/v3/refund/domestic/refunds", body)
        return RefundResult.from_dict(response.data), response

    def query_refund(self, out_refund_no: str) -> tuple[RefundResult, Response]:
        """``GET /v3/refund/domestic/refunds/{out_refund_no}``. :raise APIError: 404 RESOURCE_NOT_EXISTS."""
        response = self.request("GET", f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}")
        return RefundResult.from_dict(response.data), response

    # -- notifications -------------------------------------------------------------------

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> Notification:
        """Verify the raw bytes, then decrypt. :raise WeChatPayError: on any failure."""
        return parse_notification(headers, body, self.verifier, self._aes, now=now)


def is_loopback_http(url: str) -> bool:
    """Plain http is acceptable only for loopback (tests, local proxies)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}
