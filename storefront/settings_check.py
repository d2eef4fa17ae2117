"""Production refuses to start with settings that would hurt (``WECHATPAY_SANDBOX=0``).

Each problem is one line naming the setting and the fix (docs/going-live.md). The same facts
feed ``flask --app wsgi doctor`` (storefront/doctor.py), which explains them at more length.
Simulator mode is open by design and is never refused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .wechatpay.keys import load_private_key, load_public_key

log = logging.getLogger(__name__)

REAL_API_BASE = "https://api.mch.weixin.qq.com"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The demo merchant of the simulator (bootstrap.DEMO_*): it cannot exist at WeChat Pay.
DEMO_IDS = {"1230000109", "wxd678efh567hg6787", "wx1234567890abcdef"}
WEAK_SECRETS = {"dev", "development", "secret", "secret-key", "secret_key", "changeme", "change-me", "test",
                "test-secret", "password", "default", "flask", "storefront", "insecure"}
MIN_SECRET_KEY_BYTES = 32
MIN_MERCHANT_PASSWORD = 12
# URL settings the shop sends or hands out; plain http is allowed only on loopback.
URL_SETTINGS = ("WECHATPAY_API_BASE", "WECHATPAY_NOTIFY_URL", "WECHATPAY_REFUND_NOTIFY_URL",
                "WECHATPAY_OAUTH_BASE", "WECHATPAY_OAUTH_API_BASE")


class UnsafeSettings(SystemExit):
    """Raised by ``create_app`` in production: its text is the list of problems, one per line.

    A ``SystemExit``: ``flask run``, ``flask init`` and gunicorn print it and stop, no traceback.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  ✗ {p}" for p in problems)
        super().__init__(f"storefront refuses to start in production (WECHATPAY_SANDBOX=0):\n{lines}\n"
                         "Fix these, then run `flask --app wsgi doctor` (docs/going-live.md).")


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def is_http_off_loopback(url: str) -> bool:
    """True for a URL that is not https, unless it is plain http to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return False
    return not (parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS)


@dataclass
class MerchantFiles:
    """Where the merchant's files and identifiers come from: configuration, else instance/wechatpay/."""

    folder: Path
    stored: dict[str, Any]
    key_file: Path
    cert_file: Path
    public_key_file: Path
    config: Mapping[str, Any]

    def setting(self, key: str, stored_key: str) -> str | None:
        value = self.config.get(key) or self.stored.get(stored_key)
        return str(value) if value else None


def merchant_files(config: Mapping[str, Any], instance_path: str) -> MerchantFiles:
    """The same resolution as ``gateway.Gateway._load``."""
    folder = Path(instance_path) / "wechatpay"
    stored_file = folder / "credentials.json"
    stored: dict[str, Any] = {}
    if stored_file.exists():
        try:
            stored = json.loads(stored_file.read_text())
        except (OSError, ValueError):
            stored = {}
    return MerchantFiles(
        folder=folder, stored=stored, config=config,
        key_file=Path(config.get("WECHATPAY_MERCHANT_KEY_FILE") or folder / "apiclient_key.pem"),
        cert_file=Path(config.get("WECHATPAY_MERCHANT_CERT_FILE") or folder / "apiclient_cert.pem"),
        public_key_file=Path(config.get("WECHATPAY_PUBLIC_KEY_FILE") or folder / "pub_key.pem"),
    )


def _readable(path: Path, setting: str, loader, what: str) -> str | None:
    if not path.exists():
        return f"{setting}: {what} {path} does not exist (download it from the merchant platform)"
    try:
        loader(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same answer
        return f"{setting}: {what} {path} cannot be read as a PEM ({type(exc).__name__})"
    return None


def _load_cert(pem: bytes) -> None:
    from cryptography import x509

    x509.load_pem_x509_certificate(pem)


def _is_demo_certificate(path: Path) -> bool:
    """The simulator's self-signed demo certificate (bootstrap writes it; WeChat Pay never issued it)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except Exception:  # noqa: BLE001 - unreadable: reported by the parse check
        return False
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any("not issued by WeChat Pay" in str(n.value) for n in names)


def secret_key_problem(secret: Any) -> str | None:
    text = secret if isinstance(secret, str) else (secret.decode() if isinstance(secret, bytes) else "")
    if not text:
        return "SECRET_KEY is not set: use 32+ random bytes, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
    if text.strip().lower() in WEAK_SECRETS:
        return "SECRET_KEY is a well-known value: anyone can forge sessions; use secrets.token_hex(32)"
    if len(text.encode()) < MIN_SECRET_KEY_BYTES:
        return (f"SECRET_KEY is {len(text.encode())} bytes, needs at least {MIN_SECRET_KEY_BYTES}: "
                "use secrets.token_hex(32)")
    return None


def problems(config: Mapping[str, Any], instance_path: str) -> list[str]:
    """Everything unsafe about a production configuration, one line each (empty: fine)."""
    found: list[str] = []
    base = config.get("SHOP_BASE_URL")
    if not base:
        found.append("SHOP_BASE_URL is not set: set it to the shop's public https address, "
                     "e.g. https://shop.example.com (callback URLs are built from it, never from the request)")
    elif is_http_off_loopback(base):
        found.append(f"SHOP_BASE_URL must be https:// (plain http only on loopback): {base}")
    for name in URL_SETTINGS:
        url = config.get(name)
        if url and is_http_off_loopback(url):
            found.append(f"{name} must be https:// (plain http only on loopback): {url}")
    secret = secret_key_problem(config.get("SECRET_KEY"))
    if secret:
        found.append(secret)
    password = config.get("MERCHANT_PASSWORD")
    if password and len(str(password)) < MIN_MERCHANT_PASSWORD:
        found.append(f"MERCHANT_PASSWORD is {len(str(password))} characters, needs at least "
                     f"{MIN_MERCHANT_PASSWORD}: choose a long passphrase")
    files = merchant_files(config, instance_path)
    # The simulator's demo merchant is fine only against a simulator on loopback (staging tests).
    api_base = config.get("WECHATPAY_API_BASE") or REAL_API_BASE
    against_loopback = is_loopback(api_base)
    for key, stored_key in (("WECHATPAY_MCHID", "mchid"), ("WECHATPAY_APPID", "appid")):
        value = files.setting(key, stored_key)
        if not value:
            found.append(f"{key} is not set: copy it from the merchant platform (pay.weixin.qq.com)")
        elif value in DEMO_IDS and not against_loopback:
            found.append(f"{key} is the simulator's demo value {value}: set your own from the merchant platform")
    mini = files.setting("WECHATPAY_MINIPROGRAM_APPID", "miniprogram_appid")
    if mini in DEMO_IDS and not against_loopback:
        found.append(f"WECHATPAY_MINIPROGRAM_APPID is the simulator's demo value {mini}: set your own")
    apiv3 = files.setting("WECHATPAY_APIV3_KEY", "apiv3_key")
    if not apiv3:
        found.append("WECHATPAY_APIV3_KEY is not set: the 32-character APIv3 key from the merchant platform")
    elif len(apiv3.encode()) != 32:
        found.append(f"WECHATPAY_APIV3_KEY is {len(apiv3.encode())} bytes; an APIv3 key is exactly 32")
    problem = _readable(files.key_file, "WECHATPAY_MERCHANT_KEY_FILE", load_private_key, "the merchant key")
    if problem:
        found.append(problem)
    if files.cert_file.exists() or not files.setting("WECHATPAY_MERCHANT_SERIAL", "merchant_serial"):
        problem = _readable(files.cert_file, "WECHATPAY_MERCHANT_CERT_FILE", _load_cert, "the merchant certificate")
        if problem:
            found.append(problem + " (or set WECHATPAY_MERCHANT_SERIAL)" if "does not exist" in problem else problem)
    if files.cert_file.exists() and not against_loopback and _is_demo_certificate(files.cert_file):
        found.append("WECHATPAY_MERCHANT_CERT_FILE is the simulator's self-signed demo certificate: "
                     "use the apiclient_cert.pem of your merchant account")
    public_key_id = files.setting("WECHATPAY_PUBLIC_KEY_ID", "public_key_id")
    mode = config.get("WECHATPAY_KEY_MODE") or "auto"
    if mode not in ("auto", "public_key", "certificate"):
        found.append(f"WECHATPAY_KEY_MODE must be auto, public_key or certificate, not {mode!r}")
    if mode == "public_key" or (mode == "auto" and public_key_id) or config.get("WECHATPAY_PUBLIC_KEY_FILE"):
        problem = _readable(files.public_key_file, "WECHATPAY_PUBLIC_KEY_FILE", load_public_key,
                            "WeChat Pay's public key")
        if problem:
            found.append(problem)
        if not public_key_id:
            found.append("WECHATPAY_PUBLIC_KEY_ID is not set: the PUB_KEY_ID_… shown next to the public key")
    return found


def apply_production_defaults(config: dict) -> None:
    """Production talks to WeChat Pay itself unless told otherwise."""
    if not config.get("WECHATPAY_SANDBOX") and not config.get("WECHATPAY_API_BASE"):
        config["WECHATPAY_API_BASE"] = REAL_API_BASE


def doctor_is_running() -> bool:
    """``flask --app wsgi doctor`` must start with bad settings: explaining them is its job."""
    import sys

    program = Path(sys.argv[0]) if sys.argv else Path()
    return (program.name == "flask" or program.parent.name == "flask") and "doctor" in sys.argv[1:]


def enforce(config: Mapping[str, Any], instance_path: str) -> None:
    """:raise UnsafeSettings: in production, when anything in ``problems`` is wrong (not under ``doctor``)."""
    if config.get("WECHATPAY_SANDBOX"):
        return
    found = problems(config, instance_path)
    if found and doctor_is_running():
        return
    if found:
        for line in found:
            log.error("unsafe production setting: %s", line)
        raise UnsafeSettings(found)
