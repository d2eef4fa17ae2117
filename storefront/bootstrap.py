"""Instance initialisation: secret key, demo credentials, tables and the demo catalog.

Idempotent and safe when several workers start at once (an exclusive file lock).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import string
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import flask_migrate
from flask import Flask
from sqlalchemy import inspect, select

from .extensions import db
from .i18n import N_
from .models import Product
from .wechatpay import keys

# The simulator's demo merchant (the identities WeChat Pay's own docs use in examples).
DEMO_MCHID = "1230000109"
DEMO_APPID = "wxd678efh567hg6787"
DEMO_MINIPROGRAM_APPID = "wx1234567890abcdef"

# (sku, name, description, price in fen). N_: the pages show them in the reader's language.
DEMO_CATALOG = [
    ("coffee-beans", N_("云南小粒咖啡豆 500g"), N_("保山高海拔产区阿拉比卡，中深烘焙，坚果与可可风味。"), 8800),
    ("longjing-tea", N_("西湖龙井明前茶 250g"), N_("狮峰山明前采摘，豆香清雅，罐装密封。"), 26800),
    ("porcelain-cup", N_("景德镇青花瓷茶杯"), N_("手绘缠枝莲纹，容量 120ml，釉下彩不含铅。"), 12900),
    ("bamboo-basket", N_("手工竹编收纳篮"), N_("安吉毛竹手工编织，透气耐用，适合收纳果蔬与杂物。"), 5900),
    ("silk-bookmark", N_("苏绣真丝书签"), N_("苏州绣娘手工刺绣，桑蚕丝面料，附流苏。"), 3900),
    ("zisha-teapot", N_("宜兴紫砂壶"), N_("原矿紫泥，容量 200ml，出水顺畅。"), 39900),
    ("canvas-tote", N_("纯棉印花帆布袋"), N_("12 安加厚帆布，内置口袋，可机洗。"), 4500),
    ("wuchang-rice", N_("五常稻花香大米 5kg"), N_("黑龙江五常产区当季新米，真空包装。"), 9900),
]


def _write_secret(path: Path, data: bytes) -> None:
    """Create a file only its owner can read, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def prepare(app: Flask) -> None:
    """Make ``instance/`` exist and give the app a SECRET_KEY generated once into it."""
    instance = _private_dir(Path(app.instance_path))
    if app.config.get("SECRET_KEY"):
        return
    secret_file = instance / "secret_key"
    with _locked(instance):
        if not secret_file.exists():
            _write_secret(secret_file, secrets.token_hex(32).encode())
    app.config["SECRET_KEY"] = secret_file.read_text().strip()


@contextmanager
def _locked(instance: Path) -> Iterator[None]:
    with open(instance / ".init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def initialise(app: Flask) -> None:
    """Everything ``flask init`` does; a second run changes nothing."""
    instance = Path(app.instance_path)
    with _locked(instance):
        if app.config["WECHATPAY_SANDBOX"]:
            ensure_demo_credentials(instance)
        with app.app_context():
            create_schema(app)
            seed_catalog()


def create_schema(app: Flask) -> None:
    """Bring both databases to the newest migration (migrations/); a second run does nothing.

    ``SCHEMA_FROM_MODELS`` builds straight from the models instead: the test suite's shortcut,
    kept honest by a test that compares the migrated schema with the models.
    """
    if app.config.get("SCHEMA_FROM_MODELS"):
        db.create_all()
        return
    for bind_key, engine in db.engines.items():
        tables = set(inspect(engine).get_table_names())
        if tables and "alembic_version" not in tables:
            # Built before migrations existed: upgrading would collide with its tables.
            raise RuntimeError(
                f"the {'simulator' if bind_key else 'shop'} database at {engine.url!r} has tables but no "
                "migration history. It predates the migrations: delete it (a demo instance), or, if its "
                "schema is current, record that with `flask --app wsgi db stamp head`."
            )
    flask_migrate.upgrade()


def _random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


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
    from .models import utcnow
    from .sandbox import platform_certs

    if not (sandbox / "merchant.json").exists():
        return  # not a simulator instance
    platform_certs.ensure_initial(sandbox, utcnow())
    password_file = instance / "merchant_password"
    if not password_file.exists():
        # Shown on the simulator console as the demo credential; MERCHANT_PASSWORD overrides it.
        _write_secret(password_file, _random_text(16).encode())


def seed_catalog() -> None:
    """Insert the demo products that are missing, by SKU."""
    existing = set(db.session.scalars(select(Product.sku)))
    for sku, name, description, price in DEMO_CATALOG:
        if sku not in existing:
            db.session.add(
                Product(sku=sku, name=name, description=description, price_total=price,
                        image=f"img/products/{sku}.png")
            )
    db.session.commit()
