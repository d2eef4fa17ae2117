"""The shop's WeChat Pay client, built from configuration once per app.

Keys are loaded once (a PEM load costs ~50 ms) and shared; one ``Client`` and so one
HTTP session is kept per API base (a base taken from the request's host in simulator mode).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, current_app, g, has_request_context, request

from . import endpoints
from .wechatpay import Client, Exchange, Notification, Verifier, aead
from .wechatpay.certificates import CertificateStore
from .wechatpay.client import is_loopback_http
from .wechatpay.keys import PrivateKey, PublicKey, certificate_serial, load_private_key, load_public_key
from .wechatpay.notify import parse_notification


@dataclass(frozen=True)
class Credentials:
    mchid: str
    appid: str
    miniprogram_appid: str
    merchant_serial: str
    apiv3_key: str
    public_key_id: str | None  # None: no WeChat Pay public key configured
    private_key: PrivateKey
    public_key: PublicKey | None
    # Optional: only the OAuth code exchange and mini program login need them.
    appsecret: str | None = None
    miniprogram_appsecret: str | None = None
    # "public_key": requests name the PUB_KEY_ID, so answers are signed with it;
    # "certificate": platform certificates from /v3/certificates (the legacy mode).
    key_mode: str = "public_key"


class Gateway:
    """Per-app holder of credentials and clients, kept in ``app.extensions["wechatpay"]``."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._lock = threading.RLock()  # client() builds the verifier while holding it
        self._credentials: Credentials | None = None
        self._verifier: Verifier | None = None
        self._aes: AESGCM | None = None
        self._clients: dict[str, Client] = {}
        self._certificates: CertificateStore | None = None

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
        public_key_id = config.get("WECHATPAY_PUBLIC_KEY_ID") or stored.get("public_key_id") or None
        public_key = load_public_key(public_key_file.read_bytes()) if public_key_file.exists() else None
        key_mode = choose_key_mode(config.get("WECHATPAY_KEY_MODE") or "auto", public_key_id, public_key)
        if key_mode == "public_key" and (public_key_id is None or public_key is None):
            raise RuntimeError("WECHATPAY_KEY_MODE=public_key needs WECHATPAY_PUBLIC_KEY_ID and WECHATPAY_PUBLIC_KEY_FILE")
        if public_key_id is None or public_key is None:
            public_key_id, public_key = None, None  # half a public key is none
        serial = config.get("WECHATPAY_MERCHANT_SERIAL") or stored.get("merchant_serial")
        if not serial:
            serial = certificate_serial((folder / "apiclient_cert.pem").read_bytes())
        return Credentials(
            mchid=setting("WECHATPAY_MCHID", "mchid"),
            appid=setting("WECHATPAY_APPID", "appid"),
            miniprogram_appid=setting("WECHATPAY_MINIPROGRAM_APPID", "miniprogram_appid"),
            merchant_serial=serial,
            apiv3_key=setting("WECHATPAY_APIV3_KEY", "apiv3_key"),
            public_key_id=public_key_id,
            private_key=load_private_key(key_file.read_bytes()),
            public_key=public_key,
            key_mode=key_mode,
            appsecret=config.get("WECHATPAY_APPSECRET") or stored.get("appsecret"),
            miniprogram_appsecret=config.get("WECHATPAY_MINIPROGRAM_APPSECRET") or stored.get("miniprogram_appsecret"),
        )

    @property
    def loaded_credentials(self) -> Credentials | None:
        """The credentials if already loaded, else None (never loads keys)."""
        return self._credentials

    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            with self._lock:
                if self._credentials is None:
                    self._credentials = self._load()
        return self._credentials

    @property
    def verifier(self) -> Verifier:
        """Knows the public key (if configured) and, through the store, the platform certificates:
        during a switch-over WeChat Pay may sign with either, in both directions."""
        if self._verifier is None:
            creds = self.credentials
            with self._lock:
                if self._verifier is None:
                    trusted = {creds.public_key_id: creds.public_key} if creds.public_key_id and creds.public_key else {}
                    self._certificates = CertificateStore(
                        self.aes, self._download_certificates,
                        cache_dir=Path(self._app.instance_path) / "wechatpay" / "platform_certs",
                        trusted=Verifier(trusted),
                    )
                    self._verifier = Verifier(trusted, fallback=self._certificates.lookup)
        return self._verifier

    @property
    def certificates(self) -> CertificateStore:
        """The platform certificates this shop trusts (downloaded on an unknown serial)."""
        self.verifier  # builds the store
        assert self._certificates is not None
        return self._certificates

    def _download_certificates(self) -> tuple[dict[str, str], bytes]:
        # The API base of the current request (simulator mode) or the configured one.
        return self.client(api_base()).download_certificates()

    @property
    def aes(self) -> AESGCM:
        if self._aes is None:
            self._aes = aead.cipher(self.credentials.apiv3_key)
        return self._aes

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify the raw bytes, then decrypt. :raise WeChatPayError: on any failure."""
        return parse_notification(headers, body, self.verifier, self.aes)

    def _observer(self) -> Callable[[Exchange], None] | None:
        # The flow record (services/flowlog.py) sees every request and answer; no Flask request needed.
        # The metrics (storefront/health.py) count the same exchanges by endpoint and result.
        observers = [ext.observe if name == "flowlog" else ext.observe_call
                     for name in ("flowlog", "metrics") if (ext := self._app.extensions.get(name)) is not None]
        if not observers:
            return None

        def observe(exchange: Exchange) -> None:
            for observer in observers:
                observer(exchange)

        return observe

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
                    # Certificate mode names no key: answers come signed by the newest certificate.
                    public_key_id=creds.public_key_id if creds.key_mode == "public_key" else None,
                    api_base=api_base,
                    observer=self._observer(),
                )
                self._clients[api_base] = found
        return found


def choose_key_mode(setting: str, public_key_id: str | None, public_key: PublicKey | None) -> str:
    """``WECHATPAY_KEY_MODE``: auto is public-key mode when the id and the key file are both set."""
    if setting not in ("auto", "public_key", "certificate"):
        raise RuntimeError(f"WECHATPAY_KEY_MODE must be auto, public_key or certificate, not {setting!r}")
    if setting != "auto":
        return setting
    return "public_key" if public_key_id and public_key is not None else "certificate"


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
    """The shop's public base: configured, else (simulator mode only) the request's host, else the local port.

    In production it is always ``SHOP_BASE_URL`` (settings_check refuses to start without it):
    a callback URL taken from ``Host`` would send WeChat Pay wherever a request claimed.
    """
    configured = current_app.config["SHOP_BASE_URL"]
    if configured:
        return configured.rstrip("/")
    if not current_app.config["WECHATPAY_SANDBOX"]:
        raise RuntimeError("SHOP_BASE_URL is not set: production never derives URLs from the request")
    if has_request_context():
        # Asked several times per prepay (the API base, notify_url): werkzeug rebuilds it each time.
        base = g.get("shop_base_url")
        if base is None:
            base = g.shop_base_url = request.host_url.rstrip("/")
        return base
    return f"http://127.0.0.1:{current_app.config['PORT']}"


def api_base() -> str:
    """WeChat Pay API v3's base (``endpoints.WeChatEndpoints``)."""
    current = endpoints.current()
    return current.api_base or current.api(shop_base_url())  # the shop's base only when it is needed


def client() -> Client:
    """The WeChat Pay client for the current app (and, in simulator mode, host)."""
    return gateway().client(api_base())


def notify_url() -> str:
    """Where WeChat Pay reports payments: ``WECHATPAY_NOTIFY_URL`` or the shop's own route."""
    return endpoints.current().notify(shop_base_url())


def refund_notify_url() -> str:
    """Where WeChat Pay reports refunds: ``WECHATPAY_REFUND_NOTIFY_URL`` or the shop's own route."""
    return endpoints.current().refund_notify(shop_base_url())
