"""The simulator's demo merchant: its keys on both sides, written once into ``instance/``.

In simulator mode the shop is this merchant. The files are what WeChat Pay would know about the
merchant (``instance/sandbox/``) and what the merchant downloads from its console
(``instance/wechatpay/``, with WeChat's own file names): docs/interface.md lists them.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path

from ..clock import utcnow
from ..instance_files import private_dir as _private_dir
from ..instance_files import random_text as _random_text
from ..instance_files import write_secret as _write_secret
from ..wechatpay import keys
from . import platform_certs

# The simulator's demo merchant (the identities WeChat Pay's own docs use in examples).
DEMO_MCHID = "1230000109"
DEMO_APPID = "wxd678efh567hg6787"
DEMO_MINIPROGRAM_APPID = "wx1234567890abcdef"


def ensure_demo_credentials(instance: Path) -> None:
    """Write the demo merchant's and the simulator's keys, with WeChat's own file names."""
    shop = _private_dir(instance / "wechatpay")
    sandbox = _private_dir(instance / "sandbox")
    credentials_file = shop / "credentials.json"
    if credentials_file.exists():
        _ensure_demo_appsecrets(shop, sandbox)
        _ensure_demo_extras(instance, sandbox)
        return
    merchant_key = keys.generate_private_key()
    merchant_cert = keys.self_signed_certificate(merchant_key, f"{DEMO_MCHID} demo merchant")
    platform_key = keys.generate_private_key()
    public_key_id = "PUB_KEY_ID_" + "".join(secrets.choice(string.digits) for _ in range(34))
    apiv3_key = _random_text(32)
    merchant_serial = keys.certificate_serial(merchant_cert)
    appsecrets = {name: _random_hex(32) for name in APPSECRET_KEYS}

    # The simulator's side: what WeChat Pay would know about this merchant.
    _write_secret(sandbox / "wechatpay_private_key.pem", keys.private_key_pem(platform_key))
    _write_secret(sandbox / "merchant_apiclient_cert.pem", merchant_cert)
    _write_secret(
        sandbox / "merchant.json",
        json.dumps(
            {
                "mchid": DEMO_MCHID,
                "appids": [DEMO_APPID, DEMO_MINIPROGRAM_APPID],
                "merchant_serial": merchant_serial,
                "public_key_id": public_key_id,
                "apiv3_key": apiv3_key,
                "apps": _demo_apps(appsecrets),
            },
            indent=2,
        ).encode(),
    )
    # The merchant's side, as downloaded from the merchant console.
    _write_secret(shop / "apiclient_key.pem", keys.private_key_pem(merchant_key))
    _write_secret(shop / "apiclient_cert.pem", merchant_cert)
    _write_secret(shop / "pub_key.pem", keys.public_key_pem(platform_key.public_key()))
    # Written last: its presence means the set is complete.
    _write_secret(
        credentials_file,
        json.dumps(
            {
                "mchid": DEMO_MCHID,
                "appid": DEMO_APPID,
                "miniprogram_appid": DEMO_MINIPROGRAM_APPID,
                "merchant_serial": merchant_serial,
                "public_key_id": public_key_id,
                "apiv3_key": apiv3_key,
                **appsecrets,
            },
            indent=2,
        ).encode(),
    )
    _ensure_demo_extras(instance, sandbox)


# The demo appsecrets (official account, mini program): the OAuth / jscode2session secrets.
APPSECRET_KEYS = ("appsecret", "miniprogram_appsecret")


def _random_hex(length: int) -> str:
    return secrets.token_hex(length // 2)


def _rewrite_secret(path: Path, data: dict) -> None:
    """Replace a JSON secret file atomically, keeping it owner-only."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    _write_secret(temporary, json.dumps(data, indent=2).encode())
    os.replace(temporary, path)


def _demo_apps(
    appsecrets: dict[str, str], appid: str = DEMO_APPID, miniprogram_appid: str = DEMO_MINIPROGRAM_APPID
) -> dict[str, dict[str, str]]:
    """The simulator's view of the merchant's apps: which appid is which kind, and its secret."""
    return {
        appid: {"type": "official_account", "secret": appsecrets["appsecret"]},
        miniprogram_appid: {"type": "miniprogram", "secret": appsecrets["miniprogram_appsecret"]},
    }


def _ensure_demo_appsecrets(shop: Path, sandbox: Path) -> None:
    """Instances made before the appsecrets existed get them now, on both sides, once."""
    credentials_file, merchant_file = shop / "credentials.json", sandbox / "merchant.json"
    if not merchant_file.exists():
        return  # not a simulator instance: the merchant's own credentials, never touched
    stored = json.loads(credentials_file.read_text())
    merchant = json.loads(merchant_file.read_text())
    if all(stored.get(name) for name in APPSECRET_KEYS) and merchant.get("apps"):
        return
    appsecrets = {name: stored.get(name) or _random_hex(32) for name in APPSECRET_KEYS}
    merchant["apps"] = _demo_apps(appsecrets, stored.get("appid", DEMO_APPID),
                                  stored.get("miniprogram_appid", DEMO_MINIPROGRAM_APPID))
    stored.update(appsecrets)
    # The simulator's copy first: the shop's file is what says the set is complete.
    _rewrite_secret(merchant_file, merchant)
    _rewrite_secret(credentials_file, stored)


def _ensure_demo_extras(instance: Path, sandbox: Path) -> None:
    """The simulator's first platform certificate and the demo merchant-area password.

    Idempotent: instances made before these existed get them on the next init or start.
    """
    if not (sandbox / "merchant.json").exists():
        return  # not a simulator instance
    platform_certs.ensure_initial(sandbox, utcnow())
    password_file = instance / "merchant_password"
    if not password_file.exists():
        # Shown on the simulator console as the demo credential; MERCHANT_PASSWORD overrides it.
        _write_secret(password_file, _random_text(16).encode())
