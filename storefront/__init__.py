"""storefront: a Flask shop that takes WeChat Pay API v3 payments, with an embedded simulator."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask

from .extensions import db

ROOT = Path(__file__).resolve().parent.parent  # holds templates/, static/, instance/


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


# Environment variable -> (config key, type). The environment beats instance/config.py.
FROM_ENVIRON = {
    "SECRET_KEY": ("SECRET_KEY", str),
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", str),
    "SHOP_BASE_URL": ("SHOP_BASE_URL", str),
    "WECHATPAY_API_BASE": ("WECHATPAY_API_BASE", str),
    "WECHATPAY_SANDBOX": ("WECHATPAY_SANDBOX", _flag),
    "WECHATPAY_MCHID": ("WECHATPAY_MCHID", str),
    "WECHATPAY_APPID": ("WECHATPAY_APPID", str),
    "WECHATPAY_APPSECRET": ("WECHATPAY_APPSECRET", str),
    "WECHATPAY_MINIPROGRAM_APPID": ("WECHATPAY_MINIPROGRAM_APPID", str),
    "WECHATPAY_MERCHANT_KEY_FILE": ("WECHATPAY_MERCHANT_KEY_FILE", str),
    "WECHATPAY_MERCHANT_SERIAL": ("WECHATPAY_MERCHANT_SERIAL", str),
    "WECHATPAY_APIV3_KEY": ("WECHATPAY_APIV3_KEY", str),
    "WECHATPAY_PUBLIC_KEY_FILE": ("WECHATPAY_PUBLIC_KEY_FILE", str),
    "WECHATPAY_PUBLIC_KEY_ID": ("WECHATPAY_PUBLIC_KEY_ID", str),
    "WECHATPAY_NOTIFY_URL": ("WECHATPAY_NOTIFY_URL", str),
    "PAYMENT_TTL_SECONDS": ("PAYMENT_TTL_SECONDS", int),
    "SANDBOX_TIME_SCALE": ("SANDBOX_TIME_SCALE", float),
    "SANDBOX_DATABASE_URL": ("SANDBOX_DATABASE_URL", str),
    "PORT": ("PORT", int),
}


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    """Build one configured application. Tests build a fresh one per test."""
    app = Flask(
        __name__,
        instance_path=instance_path or str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(
        SQLALCHEMY_DATABASE_URI="sqlite:///storefront.sqlite",  # relative: inside instance/
        SANDBOX_DATABASE_URL="sqlite:///sandbox/simulator.sqlite",
        SHOP_BASE_URL=None,
        WECHATPAY_API_BASE=None,
        WECHATPAY_NOTIFY_URL=None,
        PAYMENT_TTL_SECONDS=900,
        # How often one attempt may be queried at WeChat Pay while a page polls (shared by workers).
        ACTIVE_QUERY_INTERVAL_SECONDS=5,
        CLOSE_GRACE_SECONDS=60,
        RECONCILE_AFTER_SECONDS=120,
        MAX_ATTEMPTS_PER_ORDER=20,
        SANDBOX_TIME_SCALE=1.0,
        SANDBOX_NOTIFIER=True,
        SANDBOX_MERCHANT_NAME="山间小铺",
        AUTO_INIT=True,
        PORT=5000,
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        for name, (key, cast) in FROM_ENVIRON.items():
            if name in os.environ and os.environ[name] != "":
                app.config[key] = cast(os.environ[name])
    else:
        app.config.update(test_config)
    if "WECHATPAY_SANDBOX" not in app.config:
        app.config["WECHATPAY_SANDBOX"] = not app.config["WECHATPAY_API_BASE"]
    app.config.setdefault("SQLALCHEMY_BINDS", {})
    if app.config["WECHATPAY_SANDBOX"]:
        # The simulator's state is its own database: the shop never reads it.
        app.config["SQLALCHEMY_BINDS"]["sandbox"] = app.config["SANDBOX_DATABASE_URL"]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # readable Chinese in the JSON API
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from . import bootstrap

    bootstrap.prepare(app)  # instance folder, secret key: before anything reads them
    db.init_app(app)

    from . import api, catalog, checkout, commands, errors, gateway, notify, web

    web.register(app)
    gateway.register(app)
    app.register_blueprint(catalog.bp)
    app.register_blueprint(checkout.bp)
    app.register_blueprint(notify.bp, url_prefix="/notify")
    app.register_blueprint(api.bp, url_prefix="/api")
    if app.config["WECHATPAY_SANDBOX"]:
        from . import sandbox

        sandbox.register(app)
    errors.register(app)
    commands.register(app)
    if app.config["AUTO_INIT"]:
        bootstrap.initialise(app)
    return app
