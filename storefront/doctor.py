"""``flask --app wsgi doctor``: the go-live check a merchant runs before the first real payment.

One line per check: ✓ passed, ✗ failed (naming the setting and the fix), ! a warning. Offline
checks read the files and settings; the online check (skipped by ``--offline``) sends one
harmless signed request to ``WECHATPAY_API_BASE``: a query for an ``out_trade_no`` that cannot
exist. ``404 ORDER_NOT_EXIST`` signed by the expected key proves the mchid, merchant serial and
private key are accepted and that the shop verifies WeChat Pay's answers. docs/going-live.md.

Knows WeChat Pay only through the ``wechatpay`` package and configuration, like the shop.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests
from cryptography import x509

from . import settings_check
from .wechatpay import aead
from .wechatpay.certificates import parse_certificates
from .wechatpay.client import USER_AGENT
from .wechatpay.errors import WeChatPayError
from .wechatpay.keys import PrivateKey, PublicKey, load_private_key, load_public_key, same_serial
from .wechatpay.signing import sign_request, signing_string
from .wechatpay.verify import verify_signature

PASS, FAIL, WARN = "✓", "✗", "!"
CERT_EXPIRY_WARNING_DAYS = 30


@dataclass
class Report:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.lines.append((PASS, text))

    def fail(self, text: str) -> None:
        self.lines.append((FAIL, text))

    def warn(self, text: str) -> None:
        self.lines.append((WARN, text))

    @property
    def failed(self) -> bool:
        return any(mark == FAIL for mark, _text in self.lines)

    def render(self) -> str:
        return "\n".join(f"{mark} {text}" for mark, text in self.lines)


@dataclass
class Facts:
    """What the offline checks established, for explaining the online answer."""

    mchid: str | None = None
    serial: str | None = None
    cert_serial: str | None = None
    private_key: PrivateKey | None = None
    key_matches_cert: bool | None = None
    public_key: PublicKey | None = None
    public_key_id: str | None = None
    apiv3_key: str | None = None
    key_mode: str = "certificate"


def _load(path, loader):
    try:
        return loader(path.read_bytes()), None
    except FileNotFoundError:
        return None, "does not exist"
    except Exception as exc:  # noqa: BLE001 - unreadable or unparseable: the same advice
        return None, f"cannot be read ({type(exc).__name__})"


def _host_problem(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    if host in settings_check.LOOPBACK_HOSTS:
        return "points at this machine (localhost): WeChat Pay cannot reach it"
    try:
        ipaddress.ip_address(host)
        return "uses an IP literal: use the public host name of your ICP-registered domain"
    except ValueError:
        return None


def offline(config: Mapping[str, Any], instance_path: str, report: Report, notify_urls: dict[str, str]) -> Facts:
    """The checks that need no network."""
    files = settings_check.merchant_files(config, instance_path)
    facts = Facts()
    sandbox = bool(config.get("WECHATPAY_SANDBOX"))
    if sandbox:
        report.warn("WECHATPAY_SANDBOX: simulator mode (demo merchant, embedded simulator); "
                    "set WECHATPAY_SANDBOX=0 and your merchant's settings to go live")
    else:
        problems = settings_check.problems(config, instance_path)
        for problem in problems:
            report.fail(problem)
        if not problems:
            report.ok("production settings: nothing unsafe (https URLs, strong SECRET_KEY, merchant files present)")

    facts.mchid = files.setting("WECHATPAY_MCHID", "mchid")
    # Merchant private key and certificate.
    facts.private_key, error = _load(files.key_file, load_private_key)
    if error:
        report.fail(f"WECHATPAY_MERCHANT_KEY_FILE: {files.key_file} {error}: use apiclient_key.pem "
                    "from the merchant platform's API certificate download")
    else:
        report.ok(f"merchant private key {files.key_file} reads as an RSA key")
    cert, error = _load(files.cert_file, x509.load_pem_x509_certificate)
    configured_serial = files.setting("WECHATPAY_MERCHANT_SERIAL", "merchant_serial")
    if error:
        mark = report.warn if configured_serial else report.fail
        mark(f"WECHATPAY_MERCHANT_CERT_FILE: {files.cert_file} {error}: without apiclient_cert.pem the key "
             "and serial cannot be cross-checked")
    else:
        facts.cert_serial = format(cert.serial_number, "040X")
        if facts.private_key is not None:
            facts.key_matches_cert = (cert.public_key().public_numbers()
                                      == facts.private_key.public_key().public_numbers())
            if facts.key_matches_cert:
                report.ok("merchant private key matches the certificate apiclient_cert.pem")
            else:
                report.fail(f"WECHATPAY_MERCHANT_KEY_FILE: {files.key_file} is not the private key of "
                            f"{files.cert_file}: download both from the same API certificate application")
        expires = cert.not_valid_after_utc
        left = expires - datetime.now(timezone.utc)
        if left < timedelta(0):
            report.fail(f"WECHATPAY_MERCHANT_CERT_FILE: the merchant certificate expired on {expires:%Y-%m-%d}: "
                        "apply for a new API certificate on the merchant platform")
        elif left < timedelta(days=CERT_EXPIRY_WARNING_DAYS):
            report.warn(f"WECHATPAY_MERCHANT_CERT_FILE: the merchant certificate expires on {expires:%Y-%m-%d} "
                        f"({left.days} days): renew it now")
        else:
            report.ok(f"merchant certificate valid until {expires:%Y-%m-%d}")
    facts.serial = configured_serial or facts.cert_serial
    if facts.serial and facts.cert_serial:
        if not same_serial(facts.serial, facts.cert_serial):
            report.fail(f"WECHATPAY_MERCHANT_SERIAL: {facts.serial} is not the serial of {files.cert_file} "
                        f"({facts.cert_serial}): copy the certificate's serial (40 hex digits)")
        elif facts.serial.upper() != facts.cert_serial:
            report.warn(f"WECHATPAY_MERCHANT_SERIAL: write it as 40 hex digits, leading zeros kept: "
                        f"{facts.cert_serial}")
        else:
            report.ok(f"WECHATPAY_MERCHANT_SERIAL {facts.serial} is the certificate's serial")
    elif not facts.serial:
        report.fail("WECHATPAY_MERCHANT_SERIAL is not set and no certificate gives it")

    facts.apiv3_key = files.setting("WECHATPAY_APIV3_KEY", "apiv3_key")
    if not facts.apiv3_key:
        report.fail("WECHATPAY_APIV3_KEY is not set: the APIv3 key you set on the merchant platform")
    elif len(facts.apiv3_key.encode()) != 32:
        report.fail(f"WECHATPAY_APIV3_KEY is {len(facts.apiv3_key.encode())} bytes; an APIv3 key is exactly 32 "
                    "(reset it on the merchant platform if unsure)")
    else:
        report.ok("WECHATPAY_APIV3_KEY is 32 bytes")

    facts.public_key_id = files.setting("WECHATPAY_PUBLIC_KEY_ID", "public_key_id")
    mode = config.get("WECHATPAY_KEY_MODE") or "auto"
    if mode == "public_key" or (mode == "auto" and facts.public_key_id):
        facts.key_mode = "public_key"
        if facts.public_key_id and not (facts.public_key_id.startswith("PUB_KEY_ID_")
                                        and len(facts.public_key_id) > len("PUB_KEY_ID_")):
            report.fail(f"WECHATPAY_PUBLIC_KEY_ID: {facts.public_key_id!r} is not of the form PUB_KEY_ID_…: "
                        "copy the id shown next to WeChat Pay's public key")
        elif facts.public_key_id:
            report.ok(f"WECHATPAY_PUBLIC_KEY_ID {facts.public_key_id} has the PUB_KEY_ID_ form")
        else:
            report.fail("WECHATPAY_PUBLIC_KEY_ID is not set (WECHATPAY_KEY_MODE=public_key)")
        facts.public_key, error = _load(files.public_key_file, load_public_key)
        if error:
            report.fail(f"WECHATPAY_PUBLIC_KEY_FILE: {files.public_key_file} {error}: download pub_key.pem "
                        "from the merchant platform")
        else:
            report.ok(f"WeChat Pay public key {files.public_key_file} parses")
    else:
        report.ok("key mode: platform certificates (downloaded from /v3/certificates)")

    for name, url in notify_urls.items():
        parts = urlsplit(url)
        if parts.scheme != "https":
            (report.warn if sandbox else report.fail)(
                f"{name}: {url} is not https: WeChat Pay delivers only to https URLs")
            continue
        problem = _host_problem(url)
        if problem:
            report.warn(f"{name}: {url} {problem}")
        elif parts.query:
            report.fail(f"{name}: {url} carries a query string: WeChat Pay's notify_url may not")
        else:
            report.ok(f"{name}: {url}")

    if not sandbox and config.get("RATELIMIT_ENABLED", True):
        storage = str(config.get("RATELIMIT_STORAGE_URI") or "memory://")
        if storage.startswith("memory"):
            report.warn("RATELIMIT_STORAGE_URI: memory storage: each worker counts alone; "
                        "set redis://127.0.0.1:6379/0 so all workers share the rate limits")
        else:
            report.ok(f"RATELIMIT_STORAGE_URI: {urlsplit(storage).scheme} storage, shared by all workers")
    secret = settings_check.secret_key_problem(config.get("SECRET_KEY"))
    if secret:
        (report.warn if sandbox else report.fail)(secret)
    else:
        report.ok("SECRET_KEY is long and not a known value")
    return facts


def _signed_get(api_base: str, canonical_url: str, facts: Facts, timeout: float) -> requests.Response:
    assert facts.private_key is not None and facts.mchid and facts.serial
    signed = sign_request(facts.private_key, mchid=facts.mchid, serial_no=facts.serial, method="GET",
                          canonical_url=canonical_url, body="")
    headers = {"Authorization": signed.authorization, "Accept": "application/json", "User-Agent": USER_AGENT}
    if facts.key_mode == "public_key" and facts.public_key_id:
        headers["Wechatpay-Serial"] = facts.public_key_id
    return requests.get(api_base.rstrip("/") + canonical_url, headers=headers, timeout=timeout,
                        allow_redirects=False)


def _sign_error_suspects(facts: Facts) -> str:
    if facts.cert_serial and facts.serial and not same_serial(facts.serial, facts.cert_serial):
        return "WECHATPAY_MERCHANT_SERIAL is suspect: it is not the certificate's serial"
    if facts.key_matches_cert is False:
        return "WECHATPAY_MERCHANT_KEY_FILE is suspect: it is not the certificate's private key"
    return ("the key and serial agree with each other, so suspect WECHATPAY_MCHID (another merchant's id) "
            "or a certificate that was revoked or replaced on the merchant platform")


def online(api_base: str, report: Report, facts: Facts, timeout: float = 10.0) -> None:
    """One harmless signed request; explain the answer."""
    if facts.private_key is None or not facts.mchid or not facts.serial:
        report.fail("online check skipped: the merchant key, mchid or serial is missing (see above)")
        return
    trusted: dict[str, PublicKey] = {}
    if facts.key_mode == "public_key":
        if facts.public_key is not None and facts.public_key_id:
            trusted[facts.public_key_id] = facts.public_key
    else:
        trusted = _check_certificates(api_base, report, facts, timeout)
        if trusted is None:
            return
    out_trade_no = "DOCTOR" + secrets.token_hex(8).upper()  # cannot exist: the shop's numbers start SF
    canonical_url = f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={facts.mchid}"
    try:
        answer = _signed_get(api_base, canonical_url, facts, timeout)
    except requests.RequestException as exc:
        report.fail(f"WECHATPAY_API_BASE: {api_base} cannot be reached ({type(exc).__name__}): "
                    "check the address, DNS and the outbound firewall")
        return
    try:
        data = json.loads(answer.content or b"{}")
    except ValueError:
        data = {}
    code, message = str(data.get("code", "")), str(data.get("message", ""))
    serial = answer.headers.get("Wechatpay-Serial", "")
    signature_ok = _check_answer_signature(answer, serial, trusted, facts, report)
    if answer.status_code == 404 and code == "ORDER_NOT_EXIST":
        report.ok(f"WeChat Pay accepted the signed request (404 ORDER_NOT_EXIST for {out_trade_no}): "
                  "WECHATPAY_MCHID, WECHATPAY_MERCHANT_SERIAL and the private key are right")
        if signature_ok:
            report.ok("its answer's signature verifies: the shop will trust WeChat Pay's answers and notifications")
        return
    if answer.status_code == 401 and code == "SIGN_ERROR":
        report.fail(f"WeChat Pay refused the signature (401 SIGN_ERROR: {message}): {_sign_error_suspects(facts)}")
        return
    if code in ("MCH_NOT_EXISTS", "MCHID_NOT_EXISTS"):
        report.fail(f"WECHATPAY_MCHID: WeChat Pay does not know merchant {facts.mchid} ({code}): "
                    "copy the merchant id from the merchant platform")
        return
    if code == "INVALID_REQUEST" and "Wechatpay-Serial" in message:
        if signature_ok is None:  # already explained by the serial check
            return
        report.fail(f"WECHATPAY_PUBLIC_KEY_ID: WeChat Pay refused it ({message})")
        return
    report.fail(f"unexpected answer {answer.status_code} {code}: {message} (WECHATPAY_API_BASE={api_base})")


def _check_answer_signature(answer: requests.Response, serial: str, trusted: dict[str, PublicKey], facts: Facts,
                            report: Report) -> bool | None:
    """True: verifies; False: refused (reported); None: signed under another serial (reported)."""
    if not serial:
        report.fail("WECHATPAY_API_BASE: the answer carries no Wechatpay-Serial: is this WeChat Pay?")
        return False
    key = next((k for known, k in trusted.items() if known == serial or same_serial(known, serial)), None)
    if key is None:
        if facts.key_mode == "public_key":
            report.fail(f"WECHATPAY_PUBLIC_KEY_ID is wrong: WeChat Pay signed its answer with {serial}, "
                        f"not {facts.public_key_id}: copy the id shown next to the public key")
        else:
            report.fail(f"WeChat Pay signed with the certificate {serial}, not among those downloaded")
        return None
    message = signing_string(answer.headers.get("Wechatpay-Timestamp", ""), answer.headers.get("Wechatpay-Nonce", ""),
                             answer.content.decode("utf-8", "replace"))
    try:
        verify_signature(key, message, answer.headers.get("Wechatpay-Signature", ""))
    except WeChatPayError:
        if facts.key_mode == "public_key":
            report.fail(f"WECHATPAY_PUBLIC_KEY_FILE is wrong: the answer signed under {serial} does not verify "
                        "with it: download pub_key.pem again from the merchant platform")
        else:
            report.fail("a platform certificate's signature does not verify: WECHATPAY_API_BASE may not be WeChat Pay")
        return False
    return True


def _check_certificates(api_base: str, report: Report, facts: Facts, timeout: float) -> dict[str, PublicKey] | None:
    """Certificate mode: download /v3/certificates and decrypt them with the APIv3 key."""
    try:
        answer = _signed_get(api_base, "/v3/certificates", facts, timeout)
    except requests.RequestException as exc:
        report.fail(f"WECHATPAY_API_BASE: {api_base} cannot be reached ({type(exc).__name__})")
        return None
    if answer.status_code != 200:
        try:
            data = answer.json()
        except ValueError:
            data = {}
        if answer.status_code == 401:
            report.fail(f"WeChat Pay refused the signature of GET /v3/certificates (401 {data.get('code', '')}): "
                        f"{_sign_error_suspects(facts)}")
        else:
            report.fail(f"GET /v3/certificates answered {answer.status_code} {data.get('code', '')}: "
                        f"{data.get('message', '')}")
        return None
    if not facts.apiv3_key or len(facts.apiv3_key.encode()) != 32:
        report.fail("WECHATPAY_APIV3_KEY: the platform certificates cannot be decrypted without a 32-byte APIv3 key")
        return None
    try:
        found = parse_certificates(answer.headers, answer.content, aead.cipher(facts.apiv3_key))
    except WeChatPayError as exc:
        report.fail(f"WECHATPAY_APIV3_KEY is wrong: the platform certificates do not decrypt with it ({exc}): "
                    "set the APIv3 key you chose on the merchant platform (or reset it there)")
        return None
    report.ok(f"downloaded and decrypted {len(found)} platform certificate(s) with WECHATPAY_APIV3_KEY")
    return {cert.serial: cert.public_key for cert in found}


def run(app, offline_only: bool = False, timeout: float = 10.0) -> Report:
    """All the checks for this app's configuration."""
    from . import gateway
    from .services import refunds

    report = Report()
    config = app.config
    with app.test_request_context(base_url=config.get("SHOP_BASE_URL") or f"http://127.0.0.1:{config['PORT']}"):
        try:
            notify_urls = {"WECHATPAY_NOTIFY_URL": gateway.notify_url(),
                           "WECHATPAY_REFUND_NOTIFY_URL": refunds.refund_notify_url()}
        except RuntimeError:
            notify_urls = {}  # SHOP_BASE_URL missing: already a failure of the settings check
        try:
            api_base = gateway.api_base()
        except RuntimeError:
            api_base = config.get("WECHATPAY_API_BASE") or settings_check.REAL_API_BASE
    facts = offline(config, app.instance_path, report, notify_urls)
    if offline_only:
        report.warn("online check skipped (--offline)")
    else:
        online(api_base, report, facts, timeout)
    return report
