"""The simulator's platform certificates (the legacy "平台证书" mode) and their rotation.

Each certificate has its own RSA key. They live in ``instance/sandbox/platform_certs/`` as
``wechatpay_<SERIAL>.pem`` (certificate) and ``wechatpay_<SERIAL>_key.pem`` (private key, 600),
listed in ``index.json`` with when each was issued and when it stops being listed. Rotation issues
a new one; the previous one stays listed for an overlap period, as WeChat Pay lists both while
merchants switch. Several processes (the server, ``flask sandbox-rotate-cert``) share the folder:
the index is replaced atomically and re-read when it changes.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from ..wechatpay import keys
from ..wechatpay.keys import PrivateKey, PublicKey

FOLDER = "platform_certs"
INDEX = "index.json"
CERTIFICATE_DAYS = 5 * 365  # WeChat Pay's platform certificates are valid for five years
DEFAULT_OVERLAP = timedelta(days=7)


@dataclass(frozen=True)
class PlatformCertificate:
    serial: str  # upper-case hex, as Wechatpay-Serial carries it
    certificate_pem: bytes
    private_key: PrivateKey
    public_key: PublicKey
    effective_time: datetime  # naive UTC
    expire_time: datetime  # naive UTC
    issued_at: datetime  # simulator time of issue, naive UTC
    retire_at: datetime | None  # simulator time it stops being listed; None: current


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def issue(folder: Path, now: datetime, index: list[dict] | None = None) -> dict:
    """Generate a key and a self-signed certificate into ``folder``; return its index entry."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = keys.generate_private_key()
    pem = keys.self_signed_certificate(key, "Tenpay.com Root CA simulator platform certificate", CERTIFICATE_DAYS)
    serial = keys.certificate_serial(pem)
    _atomic_write(folder / f"wechatpay_{serial}_key.pem", keys.private_key_pem(key))
    _atomic_write(folder / f"wechatpay_{serial}.pem", pem, 0o644)
    return {"serial": serial, "issued_at": now.isoformat(), "retire_at": None}


def ensure_initial(sandbox_folder: Path, now: datetime) -> bool:
    """Give a simulator instance its first platform certificate if it has none. True if created."""
    folder = sandbox_folder / FOLDER
    if (folder / INDEX).exists():
        return False
    entry = issue(folder, now)
    _atomic_write(folder / INDEX, json.dumps([entry], indent=2).encode())
    return True


class PlatformCertificates:
    """The certificates of one simulator instance, reloaded when another process rotates them."""

    def __init__(self, sandbox_folder: Path) -> None:
        self.folder = sandbox_folder / FOLDER
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._certificates: list[PlatformCertificate] = []

    def _load(self) -> list[PlatformCertificate]:
        index_file = self.folder / INDEX
        stat = index_file.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp == self._stamp:
                return self._certificates
            loaded = []
            for entry in json.loads(index_file.read_text()):
                serial = entry["serial"]
                pem = (self.folder / f"wechatpay_{serial}.pem").read_bytes()
                certificate = x509.load_pem_x509_certificate(pem)
                private_key = keys.load_private_key((self.folder / f"wechatpay_{serial}_key.pem").read_bytes())
                retire = entry.get("retire_at")
                loaded.append(PlatformCertificate(
                    serial=serial, certificate_pem=pem, private_key=private_key,
                    public_key=private_key.public_key(),
                    effective_time=certificate.not_valid_before_utc.replace(tzinfo=None),
                    expire_time=certificate.not_valid_after_utc.replace(tzinfo=None),
                    issued_at=datetime.fromisoformat(entry["issued_at"]),
                    retire_at=datetime.fromisoformat(retire) if retire else None,
                ))
            self._certificates, self._stamp = loaded, stamp
            return loaded

    def all(self) -> list[PlatformCertificate]:
        """Every certificate ever issued, oldest first (retired ones included, for the console)."""
        return list(self._load())

    def listed(self, now: datetime) -> list[PlatformCertificate]:
        """What ``GET /v3/certificates`` lists at ``now`` (simulator time): not retired, not expired."""
        return [c for c in self._load()
                if (c.retire_at is None or c.retire_at > now) and c.effective_time <= now + timedelta(minutes=10)
                and now < c.expire_time]

    def newest(self, now: datetime) -> PlatformCertificate:
        """The certificate that signs: the most recently issued one still listed."""
        listed = self.listed(now)
        if not listed:
            listed = self._load()[-1:]  # a clock run past every retirement still signs with something
        return max(listed, key=lambda c: c.issued_at)

    def find(self, serial: str, now: datetime) -> PlatformCertificate | None:
        return next((c for c in self.listed(now) if keys.same_serial(c.serial, serial)), None)

    def rotate(self, now: datetime, overlap: timedelta = DEFAULT_OVERLAP) -> PlatformCertificate:
        """Issue a new certificate; the current ones stay listed for ``overlap`` (simulator time)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.folder / ".rotate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                index_file = self.folder / INDEX
                index = json.loads(index_file.read_text()) if index_file.exists() else []
                retire = (now + overlap).isoformat()
                for entry in index:
                    if entry.get("retire_at") is None:
                        entry["retire_at"] = retire
                entry = issue(self.folder, now)
                index.append(entry)
                _atomic_write(index_file, json.dumps(index, indent=2).encode())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return next(c for c in self._load() if c.serial == entry["serial"])
