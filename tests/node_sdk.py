"""Node and the WeChat Pay SDK for Node the tests use (``wechatpay-axios-plugin``, pinned by tests/node/).

Installed once with ``npm ci`` into a cache folder outside the repository (``STOREFRONT_NODE_CACHE``,
default ``~/.cache/storefront-node``), again only when the lock file changes. Without node or npm the
tests skip locally and fail in CI (``CI`` set), like the browser tests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"the Node SDK tests need node and npm: {reason}", pytrace=False)
    pytest.skip(f"Node SDK tests skipped: {reason} (set CI=1 to make this a failure)")


def node_modules() -> Path:
    """The folder to put on NODE_PATH, with the pinned SDK installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _unavailable("node or npm is not installed (apt-get install npm)")
    cache = Path(os.environ.get("STOREFRONT_NODE_CACHE") or Path.home() / ".cache" / "storefront-node")
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    stamp = cache / ".lock-sha256"
    digest = hashlib.sha256(lock).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest or not (cache / "node_modules").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(NODE_DIR / name, cache / name)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=cache,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            _unavailable(f"npm ci failed: {done.stderr[-500:]}")
        stamp.write_text(digest)
    return cache / "node_modules"
