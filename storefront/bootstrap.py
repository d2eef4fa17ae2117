"""Instance initialisation: secret key, mounted parts' files (demo credentials), tables and the demo catalog.

Idempotent and safe when several workers start at once (an exclusive file lock).
"""

from __future__ import annotations

import fcntl
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import flask_migrate
from flask import Flask
from sqlalchemy import inspect, select

from . import instance_files
from .extensions import db
from .i18n import N_
from .instance_files import private_dir as _private_dir
from .instance_files import write_secret as _write_secret
from .models import Product

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
        # Instance files of mounted parts (the simulator's demo merchant and keys): registered
        # by whatever the app factory mounted, so this module knows none of them.
        for setup in app.extensions.get("instance_setup", ()):
            setup(instance)
        with app.app_context():
            create_schema(app)
            seed_catalog()
        # Every init: instance/ 0700, keys, secrets and the SQLite databases 0600.
        instance_files.tighten(instance, instance_files.sqlite_files(
            [app.config.get("SQLALCHEMY_DATABASE_URI"), app.config.get("SANDBOX_DATABASE_URL")], instance))


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
