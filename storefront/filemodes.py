"""File modes of the instance folder: only the shop's own user may read keys, secrets and the database.

``instance/`` and its folders 0700; keys, secrets and the SQLite databases 0600. Tightened on
every ``init`` (and app start), so a copy made with a loose umask is fixed the next time.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

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
