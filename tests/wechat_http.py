"""A merchant's raw API v3 calls against the simulator over HTTP, for the issue-5 tests.

Signs each request for real and verifies every answer with what WeChat Pay may sign with: the
public key and the platform certificates the simulator lists (downloaded and decrypted).
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import requests

from storefront.models import utcnow
from storefront.wechatpay import Verifier, aead, signing
from storefront.wechatpay.certificates import parse_certificates
from storefront.wechatpay.client import json_body
from storefront.wechatpay.times import format_time


def new_no(prefix: str = "C") -> str:
    return prefix + secrets.token_hex(8).upper()


class RawMerchant:
    """The app's demo merchant, calling ``/sandbox/v3`` with hand-built signed requests."""

    def __init__(self, server) -> None:
        self.server = server
        self.base = server.url + "/sandbox"
        self.credentials = server.app.extensions["wechatpay"].credentials
        self.aes = aead.cipher(self.credentials.apiv3_key)
        self.verifier = Verifier({self.credentials.public_key_id: self.credentials.public_key},
                                 fallback=self._certificate_key)
        self._certificates: dict[str, object] = {}

    def _certificate_key(self, serial: str):
        if serial.startswith("PUB_KEY_ID_"):
            return None
        found = self._certificates.get(serial)
        if found is None:
            answer = self.send("GET", "/v3/certificates", serial_header=None, verify=False)
            for cert in parse_certificates(answer.headers, answer.content, self.aes,
                                           trusted=Verifier({self.credentials.public_key_id: self.credentials.public_key})):
                self._certificates[cert.serial] = cert.public_key
            found = self._certificates.get(serial)
        return found

    def order_body(self, **changes) -> dict:
        body = {
            "appid": self.credentials.appid, "mchid": self.credentials.mchid, "description": "云南小粒咖啡豆 500g",
            "out_trade_no": new_no("T"), "notify_url": self.server.url + "/notify/wechatpay",
            "time_expire": format_time(utcnow() + timedelta(minutes=15)),
            "amount": {"total": 8800, "currency": "CNY"},
        }
        body.update(changes)
        return body

    def send(self, method: str, path: str, body=None, *, headers: dict | None = None, mchid: str | None = None,
             serial_header: str | None = "pub", verify: bool = True, timestamp: int | None = None,
             signature: str | None = None) -> requests.Response:
        """One signed request; ``body`` a dict (compact JSON) or a str sent as is."""
        text = body if isinstance(body, str) else (json_body(body) if body is not None else None)
        signed = signing.sign_request(
            self.credentials.private_key, mchid=mchid or self.credentials.mchid,
            serial_no=self.credentials.merchant_serial, method=method, canonical_url=path, body=text or "",
            timestamp=str(timestamp) if timestamp is not None else None,
        )
        authorization = signed.authorization
        if signature is not None:
            authorization = authorization.split('signature="')[0] + f'signature="{signature}"'
        sent = {"Authorization": authorization, "Accept": "application/json", "User-Agent": "issue5-tests/1.0"}
        if serial_header == "pub":
            sent["Wechatpay-Serial"] = self.credentials.public_key_id
        elif serial_header:
            sent["Wechatpay-Serial"] = serial_header
        if text is not None:
            sent["Content-Type"] = "application/json"
        for name, value in (headers or {}).items():
            if value is None:
                sent.pop(name, None)
            else:
                sent[name] = value
        answer = requests.request(method, self.base + path, data=text.encode("utf-8") if text is not None else None,
                                  headers=sent, timeout=10)
        if verify:
            assert answer.headers.get("Request-ID"), dict(answer.headers)
            self.verifier.verify(answer.headers, answer.content)  # raises SignatureError
        return answer

    # -- shortcuts ------------------------------------------------------------------------------

    def create(self, **changes) -> tuple[str, requests.Response]:
        body = self.order_body(**changes)
        answer = self.send("POST", "/v3/pay/transactions/native", body)
        return body["out_trade_no"], answer

    def pay(self, out_trade_no: str, result: str = "SUCCESS", **options) -> requests.Response:
        return requests.post(f"{self.server.url}/sandbox/control/pay",
                             json={"out_trade_no": out_trade_no, "result": result, **options}, timeout=10)

    def paid_order(self, total: int = 8800) -> tuple[str, str]:
        """A paid transaction: (out_trade_no, transaction_id)."""
        out_trade_no, answer = self.create(amount={"total": total, "currency": "CNY"})
        assert answer.status_code == 200, answer.text
        paid = self.pay(out_trade_no)
        assert paid.status_code == 200, paid.text
        return out_trade_no, paid.json()["transaction_id"]

    def refund(self, out_trade_no: str, refund: int, total: int = 8800, **changes) -> requests.Response:
        body = {"out_trade_no": out_trade_no, "out_refund_no": changes.pop("out_refund_no", new_no("R")),
                "amount": {"refund": refund, "total": total, "currency": "CNY"}}
        body.update(changes)
        return self.send("POST", "/v3/refund/domestic/refunds", body)

    def control(self, path: str, payload: dict | None = None) -> requests.Response:
        return requests.post(f"{self.server.url}/sandbox/control/{path}", json=payload or {}, timeout=10)


def error(answer: requests.Response) -> tuple[int, dict]:
    return answer.status_code, json.loads(answer.content)
