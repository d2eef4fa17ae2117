"""Files in ``instance/``: secrets only their owner can read, in owner-only folders."""

from __future__ import annotations

import logging
import os
import secrets
import stat
import string
from pathlib import Path


def write_secret(path: Path, data: bytes) -> None:
    """Create a file only its owner can read, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


# -- modes, tightened on every init: instance/ and its folders 0700; keys, secrets, config.py and
# the SQLite databases (they hold the shoppers' owner tokens) 0600 (docs/going-live.md).

log = logging.getLogger(__name__)

SECRET_SUFFIXES = (".pem", ".json", ".sqlite", ".sqlite-wal", ".sqlite-shm", ".db", ".key", ".lock", ".py")
SECRET_NAMES = ("secret_key", "merchant_password")


def _chmod(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except OSError as exc:  # not ours (a mounted secret): say so, never fail the start
        log.warning("could not set mode %o on %s: %s", mode, path, exc)


def tighten(instance: Path, extra_files: list[Path] | None = None) -> None:
    """Folders 0700; keys, secrets, configuration and databases 0600, under ``instance``."""
    if not instance.exists():
        return
    _chmod(instance, 0o700)
    for root, folders, files in os.walk(instance):
        for name in folders:
            _chmod(Path(root) / name, 0o700)
        for name in files:
            if name.endswith(SECRET_SUFFIXES) or name in SECRET_NAMES:
                _chmod(Path(root) / name, 0o600)
    for path in extra_files or []:
        if path.exists():
            _chmod(path, 0o600)


def sqlite_files(uris: list[str | None], instance: Path) -> list[Path]:
    """The SQLite database files of these URLs (relative ones live in ``instance``)."""
    found = []
    for uri in uris:
        if not uri or not uri.startswith("sqlite:///"):
            continue
        raw = uri.removeprefix("sqlite:///").split("?")[0]
        if not raw or raw == ":memory:":
            continue
        path = Path(raw) if os.path.isabs(raw) else instance / raw
        found += [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return found
