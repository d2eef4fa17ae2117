"""Platform certificates (平台证书, the legacy verification-key mode): download, decrypt, cache.

WeChat Pay API v3 ``GET /v3/certificates`` ("下载平台证书"): each certificate comes encrypted
with the APIv3 key (AEAD_AES_256_GCM, AAD ``certificate``). The answer is signed by one of the
certificates it carries, so it is verified *after* decryption, with the certificate whose
serial is in ``Wechatpay-Serial`` (or with a key already trusted). Downloads happen on demand
when a signature names an unknown serial, at a bounded rate (a token bucket), so forged serials
cannot turn the shop into a download loop; certificates are cached on disk between runs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import aead
from .errors import DecryptError, WeChatPayError
from .keys import PublicKey, certificate_serial, same_serial
from .verify import Verifier

CERTIFICATES_PATH = "/v3/certificates"
DEFAULT_BURST = 3  # downloads allowed back to back (start-up, then a rotation)
DEFAULT_REFILL_SECONDS = 60.0  # one more download allowed per minute after that

log = logging.getLogger(__name__)

# (headers, raw body) of a signed GET /v3/certificates answer; raises WeChatPayError on failure.
Downloader = Callable[[], tuple[Mapping[str, str], bytes]]


@dataclass(frozen=True)
class PlatformCertificate:
    serial: str  # upper-case hex
    pem: bytes
    public_key: PublicKey
    not_before: datetime  # aware UTC
    not_after: datetime


def load_certificate(pem: bytes) -> PlatformCertificate:
    """One platform certificate PEM. :raise WeChatPayError: not an RSA certificate."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise WeChatPayError("not a PEM certificate") from exc
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise WeChatPayError("platform certificates are RSA")
    return PlatformCertificate(certificate_serial(pem), pem, public_key, cert.not_valid_before_utc,
                               cert.not_valid_after_utc)


def parse_certificates(
    headers: Mapping[str, str],
    body: bytes,
    aes: AESGCM,
    *,
    trusted: Verifier | None = None,
    now: float | None = None,
) -> list[PlatformCertificate]:
    """Decrypt a ``/v3/certificates`` answer, then verify its signature.

    :raise DecryptError: a certificate does not open with the APIv3 key.
    :raise SignatureError: the answer is not signed by a certificate it carries (or a trusted key).
    """
    try:
        entries = json.loads(body)["data"]
        if not isinstance(entries, list):
            raise TypeError("data is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise WeChatPayError(f"not a /v3/certificates answer: {exc}") from exc
    moment = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    found: list[PlatformCertificate] = []
    for entry in entries:
        try:
            sealed = entry["encrypt_certificate"]
            if sealed.get("algorithm") != aead.ALGORITHM:
                raise WeChatPayError(f"unsupported algorithm {sealed.get('algorithm')!r}")
            pem = aead.decrypt(aes, sealed["nonce"], sealed["ciphertext"], sealed.get("associated_data") or "")
            cert = load_certificate(pem)
            declared = str(entry["serial_no"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise WeChatPayError(f"malformed certificate entry: {exc}") from exc
        if not same_serial(cert.serial, declared):
            raise DecryptError(f"certificate serial {cert.serial} is not the declared {declared}")
        if cert.not_before <= moment <= cert.not_after:
            found.append(cert)
    # The bootstrap problem: check the answer with what it carries, or with a key already trusted.
    check = Verifier({c.serial: c.public_key for c in found})
    serial = next((v for k, v in headers.items() if k.lower() == "wechatpay-serial"), "")
    if not check.knows(serial) and trusted is not None and trusted.knows(serial):
        check = trusted
    check.verify(headers, body, now=now)
    return found


class TokenBucket:
    """At most ``burst`` events at once, refilled by one every ``refill_seconds``."""

    def __init__(self, burst: int, refill_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.refill_seconds, self._clock = burst, refill_seconds, clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) / self.refill_seconds)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class CertificateStore:
    """The platform certificates a shop trusts: cached, refreshed on an unknown serial.

    Plug :meth:`lookup` into :class:`Verifier` as its fallback.
    """

    def __init__(
        self,
        aes: AESGCM,
        downloader: Downloader,
        *,
        cache_dir: Path | None = None,
        trusted: Verifier | None = None,
        burst: int = DEFAULT_BURST,
        refill_seconds: float = DEFAULT_REFILL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aes = aes
        self._downloader = downloader
        self._cache_dir = cache_dir
        self._trusted = trusted
        self._bucket = TokenBucket(burst, refill_seconds, clock)
        self._lock = threading.Lock()
        self._certificates: dict[str, PlatformCertificate] = {}
        self.downloads = 0
        self.refused_downloads = 0
        self._load_cache()

    @property
    def certificates(self) -> list[PlatformCertificate]:
        return list(self._certificates.values())

    def _find(self, serial: str) -> PlatformCertificate | None:
        found = self._certificates.get(serial.upper())
        if found is None:
            found = next((c for c in self._certificates.values() if same_serial(c.serial, serial)), None)
        if found is not None and datetime.now(timezone.utc) > found.not_after:
            return None  # expired: WeChat Pay no longer signs with it
        return found

    def lookup(self, serial: str) -> PublicKey | None:
        """The key for a hex serial; downloads the list once (rate-limited) if it is unknown."""
        if serial.startswith("PUB_KEY_ID_") or not serial:
            return None  # a public-key id is never a certificate serial
        found = self._find(serial)
        if found is None:
            with self._lock:
                found = self._find(serial)  # another thread may have just downloaded it
                if found is None and self._refresh_locked(reason=f"unknown serial {serial}"):
                    found = self._find(serial)
        return found.public_key if found is not None else None

    def refresh(self) -> list[PlatformCertificate]:
        """Download now, ignoring the rate limit (start-up, an operator's button)."""
        with self._lock:
            self._download_locked()
        return self.certificates

    def _refresh_locked(self, reason: str) -> bool:
        if not self._bucket.take():
            self.refused_downloads += 1
            log.warning("platform certificates not downloaded (%s): rate limit", reason)
            return False
        try:
            self._download_locked()
        except WeChatPayError as exc:
            log.warning("platform certificate download failed (%s): %s", reason, exc)
            return False
        return True

    def _download_locked(self) -> None:
        headers, body = self._downloader()
        found = parse_certificates(headers, body, self._aes, trusted=self._trusted)
        self.downloads += 1
        for cert in found:
            if cert.serial not in self._certificates:
                log.info("platform certificate %s trusted (valid until %s)", cert.serial, cert.not_after)
            self._certificates[cert.serial] = cert
            self._save(cert)

    # -- the disk cache: wechatpay_<SERIAL>.pem, as WeChat's own tools name them ------------------

    def _save(self, cert: PlatformCertificate) -> None:
        if self._cache_dir is None:
            return
        self._cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._cache_dir / f"wechatpay_{cert.serial}.pem"
        if not path.exists():
            temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
            temporary.write_bytes(cert.pem)
            os.replace(temporary, path)

    def _load_cache(self) -> None:
        if self._cache_dir is None or not self._cache_dir.is_dir():
            return
        now = datetime.now(timezone.utc)
        for path in sorted(self._cache_dir.glob("wechatpay_*.pem")):
            try:
                cert = load_certificate(path.read_bytes())
            except (OSError, WeChatPayError):
                continue
            if cert.not_before <= now <= cert.not_after:
                self._certificates[cert.serial] = cert


def newest(certificates: list[PlatformCertificate]) -> PlatformCertificate | None:
    """The one to encrypt sensitive fields with: the latest to expire (what the SDKs pick)."""
    return max(certificates, key=lambda c: c.not_after, default=None)

