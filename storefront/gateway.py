"""The shop's WeChat Pay client, built from configuration once per app.

Keys are loaded once (a PEM load costs ~50 ms) and shared; one ``Client`` and so one
HTTP session is kept per API base (a base taken from the request's host in simulator mode).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, current_app, has_request_context, request

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .wechatpay import Client, Notification, Verifier, aead
from .wechatpay.notify import parse_notification
from .wechatpay.client import is_loopback_http
from .wechatpay.keys import PrivateKey, PublicKey, certificate_serial, load_private_key, load_public_key


@dataclass(frozen=True)
class Credentials:
    mchid: str
    appid: str
    miniprogram_appid: str
    merchant_serial: str
    apiv3_key: str
    public_key_id: str
    private_key: PrivateKey
    public_key: PublicKey


class Gateway:
    """Per-app holder of credentials and clients, kept in ``app.extensions["wechatpay"]``."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._verifier: Verifier | None = None
        self._aes: AESGCM | None = None
        self._clients: dict[str, Client] = {}

    def _load(self) -> Credentials:
        config = self._app.config
        folder = Path(self._app.instance_path) / "wechatpay"
        stored_file = folder / "credentials.json"
        stored = json.loads(stored_file.read_text()) if stored_file.exists() else {}

        def setting(key: str, stored_key: str) -> str:
            value = config.get(key) or stored.get(stored_key)
            if not value:
                raise RuntimeError(f"{key} is not configured (environment, instance/config.py or credentials.json)")
            return str(value)

        key_file = Path(config.get("WECHATPAY_MERCHANT_KEY_FILE") or folder / "apiclient_key.pem")
        public_key_file = Path(config.get("WECHATPAY_PUBLIC_KEY_FILE") or folder / "pub_key.pem")
        serial = config.get("WECHATPAY_MERCHANT_SERIAL") or stored.get("merchant_serial")
        if not serial:
            serial = certificate_serial((folder / "apiclient_cert.pem").read_bytes())
        return Credentials(
            mchid=setting("WECHATPAY_MCHID", "mchid"),
            appid=setting("WECHATPAY_APPID", "appid"),
            miniprogram_appid=setting("WECHATPAY_MINIPROGRAM_APPID", "miniprogram_appid"),
            merchant_serial=serial,
            apiv3_key=setting("WECHATPAY_APIV3_KEY", "apiv3_key"),
            public_key_id=setting("WECHATPAY_PUBLIC_KEY_ID", "public_key_id"),
            private_key=load_private_key(key_file.read_bytes()),
            public_key=load_public_key(public_key_file.read_bytes()),
        )

    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            with self._lock:
                if self._credentials is None:
                    self._credentials = self._load()
        return self._credentials

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            creds = self.credentials
            self._verifier = Verifier({creds.public_key_id: creds.public_key})
        return self._verifier

    @property
    def aes(self) -> AESGCM:
        if self._aes is None:
            self._aes = aead.cipher(self.credentials.apiv3_key)
        return self._aes

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify the raw bytes, then decrypt. :raise WeChatPayError: on any failure."""
        return parse_notification(headers, body, self.verifier, self.aes)

    def client(self, api_base: str) -> Client:
        """The client for one API base, built on first use."""
        found = self._clients.get(api_base)
        if found is not None:
            return found
        creds = self.credentials
        with self._lock:
            found = self._clients.get(api_base)
            if found is None:
                found = Client(
                    mchid=creds.mchid,
                    appid=creds.appid,
                    merchant_serial=creds.merchant_serial,
                    private_key=creds.private_key,
                    apiv3_key=creds.apiv3_key,
                    verifier=self.verifier,
                    public_key_id=creds.public_key_id,
                    api_base=api_base,
                )
                self._clients[api_base] = found
        return found


def _check_url(name: str, url: str | None) -> None:
    if url and urlsplit(url).scheme != "https" and not is_loopback_http(url):
        raise RuntimeError(f"{name} must be https:// (plain http only for loopback): {url}")


def register(app: Flask) -> None:
    if not app.config["WECHATPAY_SANDBOX"]:
        _check_url("WECHATPAY_API_BASE", app.config["WECHATPAY_API_BASE"])
        _check_url("SHOP_BASE_URL", app.config["SHOP_BASE_URL"])
    app.extensions["wechatpay"] = Gateway(app)


def gateway() -> Gateway:
    return current_app.extensions["wechatpay"]


def shop_base_url() -> str:
    """The shop's public base: configured, else the request's host, else the local port."""
    configured = current_app.config["SHOP_BASE_URL"]
    if configured:
        return configured.rstrip("/")
    if has_request_context():
        return request.host_url.rstrip("/")
    return f"http://127.0.0.1:{current_app.config['PORT']}"


def api_base() -> str:
    return current_app.config["WECHATPAY_API_BASE"] or shop_base_url() + "/sandbox"


def client() -> Client:
    """The WeChat Pay client for the current app (and, in simulator mode, host)."""
    return gateway().client(api_base())


def notify_url() -> str:
    return current_app.config["WECHATPAY_NOTIFY_URL"] or shop_base_url() + "/notify/wechatpay"
