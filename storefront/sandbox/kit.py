"""A merchant kit: what a backend needs to talk to the simulator, with WeChat's own file names.

``apiclient_key.pem`` / ``apiclient_cert.pem`` (the merchant's key and certificate, as the
merchant platform's certificate tool produces them), ``pub_key.pem`` (WeChat Pay's public key,
named by ``PUB_KEY_ID``) and ``merchant.json`` (docs/interface.md, "Merchant kits").
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

from flask import Flask

from ..wechatpay import keys
from .merchants import NewMerchant

DEFAULT_SERVE_PORT = 5001
README = """WeChat Pay API v3 sandbox kit (storefront simulator)
mchid {mchid}  appid {appid}
apiclient_key.pem   your merchant private key (keep it secret: it signs your requests)
apiclient_cert.pem  your merchant certificate; its serial is merchant_serial
pub_key.pem         WeChat Pay public key, id public_key_id: verify answers and notifications with it
merchant.json       mchid, appid, merchant_serial, apiv3_key (decrypts notifications), public_key_id,
                    api_base (flask --app wsgi sandbox-serve), api_base_mounted (the shop's /sandbox/)
Pay an order:  POST {api_base_mounted}control/pay  {{"out_trade_no": "...", "mchid": "{mchid}"}}
Grade it:      flask --app wsgi sandbox-grade --out-trade-no ...
Guide: docs/en/test-your-backend.md
"""


def api_bases(app: Flask) -> tuple[str, str]:
    """(api_base for ``sandbox-serve``, api_base_mounted for the shop's ``/sandbox/``), both ending in /."""
    config = app.config
    serve = config.get("SANDBOX_SERVE_URL") or f"http://127.0.0.1:{DEFAULT_SERVE_PORT}"
    shop = config.get("SHOP_BASE_URL") or f"http://127.0.0.1:{config.get('PORT', 5000)}"
    return serve.rstrip("/") + "/", shop.rstrip("/") + "/sandbox/"


def kit_files(merchant: NewMerchant, public_key_id: str, platform_public_pem: bytes,
              api_base: str, api_base_mounted: str) -> dict[str, bytes]:
    """File name → content of the kit."""
    info = {
        "mchid": merchant.mchid, "appid": merchant.appid, "merchant_serial": merchant.merchant_serial,
        "apiv3_key": merchant.apiv3_key, "public_key_id": public_key_id,
        "api_base": api_base, "api_base_mounted": api_base_mounted,
    }
    return {
        "apiclient_key.pem": merchant.private_key_pem,
        "apiclient_cert.pem": merchant.certificate_pem,
        "pub_key.pem": platform_public_pem,
        "merchant.json": (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode(),
        "README.txt": README.format(**info).encode(),
    }


def platform_public_pem(platform) -> bytes:
    """The simulator's ``pub_key.pem``: the public half of the key that signs with ``PUB_KEY_ID``."""
    return keys.public_key_pem(platform.private_key.public_key())


def write_kit(folder: Path, files: dict[str, bytes]) -> None:
    """Write the kit, the key files owner-only (as the merchant platform advises for apiclient_key.pem)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.unlink(missing_ok=True)
        mode = 0o600 if name in ("apiclient_key.pem", "merchant.json") else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)


def zip_kit(files: dict[str, bytes], folder_name: str) -> bytes:
    """The kit as a zip download, in one folder named after the merchant."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(f"{folder_name}/{name}", content)
    return buffer.getvalue()
