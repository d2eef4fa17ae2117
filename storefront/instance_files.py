"""Files in ``instance/``: secrets only their owner can read, in owner-only folders."""

from __future__ import annotations

import os
import secrets
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
