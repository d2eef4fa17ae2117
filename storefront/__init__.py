"""storefront: a Flask shop that takes WeChat Pay API v3 payments, with an embedded simulator."""

from __future__ import annotations

import logging
import os

from flask import Flask

from .extensions import db, migrate
from .paths import ROOT  # the repository: templates/, static/, instance/


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
    "WECHATPAY_MINIPROGRAM_APPSECRET": ("WECHATPAY_MINIPROGRAM_APPSECRET", str),
    "WECHATPAY_OAUTH_BASE": ("WECHATPAY_OAUTH_BASE", str),
    "WECHATPAY_OAUTH_API_BASE": ("WECHATPAY_OAUTH_API_BASE", str),
    "PROXY_FIX_X_FOR": ("PROXY_FIX_X_FOR", int),
    "SANDBOX_H5_DOMAIN": ("SANDBOX_H5_DOMAIN", str),
    "SANDBOX_H5_LOOPBACK": ("SANDBOX_H5_LOOPBACK", str),
    "WECHATPAY_MERCHANT_KEY_FILE": ("WECHATPAY_MERCHANT_KEY_FILE", str),
    "WECHATPAY_MERCHANT_SERIAL": ("WECHATPAY_MERCHANT_SERIAL", str),
    "WECHATPAY_APIV3_KEY": ("WECHATPAY_APIV3_KEY", str),
    "WECHATPAY_PUBLIC_KEY_FILE": ("WECHATPAY_PUBLIC_KEY_FILE", str),
    "WECHATPAY_PUBLIC_KEY_ID": ("WECHATPAY_PUBLIC_KEY_ID", str),
    "WECHATPAY_NOTIFY_URL": ("WECHATPAY_NOTIFY_URL", str),
    "PAYMENT_TTL_SECONDS": ("PAYMENT_TTL_SECONDS", int),
    "SANDBOX_TIME_SCALE": ("SANDBOX_TIME_SCALE", float),
    "SANDBOX_DATABASE_URL": ("SANDBOX_DATABASE_URL", str),
    "SANDBOX_SERVE_URL": ("SANDBOX_SERVE_URL", str),  # where sandbox-serve listens: the kits' api_base
    "PORT": ("PORT", int),
    "WECHATPAY_KEY_MODE": ("WECHATPAY_KEY_MODE", str),
    "WECHATPAY_REFUND_NOTIFY_URL": ("WECHATPAY_REFUND_NOTIFY_URL", str),
    "MERCHANT_PASSWORD": ("MERCHANT_PASSWORD", str),
    "SANDBOX_NOTIFY_SIGNING": ("SANDBOX_NOTIFY_SIGNING", str),
    "SANDBOX_ANSWER_SIGNING": ("SANDBOX_ANSWER_SIGNING", str),
    "SANDBOX_RATE_LIMIT": ("SANDBOX_RATE_LIMIT", int),
    "SANDBOX_PAID_CODE": ("SANDBOX_PAID_CODE", str),
    "SANDBOX_COUPON_AMOUNT": ("SANDBOX_COUPON_AMOUNT", int),
    "SANDBOX_FEE_RATE_BP": ("SANDBOX_FEE_RATE_BP", int),
    "SANDBOX_ANSWER_PROBE_RATE": ("SANDBOX_ANSWER_PROBE_RATE", float),
    "FLOW_RETENTION_DAYS": ("FLOW_RETENTION_DAYS", int),
    "FLOW_MAX_FIELD_CHARS": ("FLOW_MAX_FIELD_CHARS", int),
    "FLOW_RECORD": ("FLOW_RECORD", str),
    "FLOW_SAMPLE_RATE": ("FLOW_SAMPLE_RATE", float),
    "SCHEDULER_INTERVAL_SECONDS": ("SCHEDULER_INTERVAL_SECONDS", float),
    # Going live (docs/going-live.md)
    "WECHATPAY_MERCHANT_CERT_FILE": ("WECHATPAY_MERCHANT_CERT_FILE", str),
    "RATELIMIT_ENABLED": ("RATELIMIT_ENABLED", _flag),
    "RATELIMIT_STORAGE_URI": ("RATELIMIT_STORAGE_URI", str),
    "RATELIMIT_ORDERS": ("RATELIMIT_ORDERS", str),
    "RATELIMIT_PAYMENTS": ("RATELIMIT_PAYMENTS", str),
    "MERCHANT_SESSION_HOURS": ("MERCHANT_SESSION_HOURS", float),
    "METRICS_TOKEN": ("METRICS_TOKEN", str),
    "NOTIFY_RETENTION_DAYS": ("NOTIFY_RETENTION_DAYS", int),
    "MAX_CONTENT_LENGTH": ("MAX_CONTENT_LENGTH", int),
    "BABEL_DEFAULT_LOCALE": ("BABEL_DEFAULT_LOCALE", str),
}


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    """Build one configured application. Tests build a fresh one per test."""
    app = Flask(
        __name__,
        # STOREFRONT_INSTANCE_PATH: another instance folder for wsgi:app (several shops on one host, tests).
        instance_path=instance_path or os.environ.get("STOREFRONT_INSTANCE_PATH") or str(ROOT / "instance"),
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
        WECHATPAY_OAUTH_BASE=None,  # None: the simulator in simulator mode, else open.weixin.qq.com
        WECHATPAY_OAUTH_API_BASE=None,  # None: the simulator in simulator mode, else api.weixin.qq.com
        PROXY_FIX_X_FOR=0,  # trusted reverse proxies in front of the shop (payer IP for H5)
        SANDBOX_H5_DOMAIN=None,  # None: the host the shop calls the simulator with
        SANDBOX_H5_LOOPBACK="demo",  # "demo": the cashier opens for 127.0.0.1 with a note; "refuse": as WeChat
        RETURN_PAGE_QUERIES=6,  # H5 return / JSAPI :ok page: status checks before "I have paid"
        RETURN_PAGE_QUERY_GAP_MS=1500,
        PAYMENT_TTL_SECONDS=900,
        WECHATPAY_KEY_MODE="auto",  # public_key when the id and key file are set, else certificate
        WECHATPAY_REFUND_NOTIFY_URL=None,  # None: <SHOP_BASE_URL>/notify/wechatpay/refund
        MERCHANT_PASSWORD=None,  # None: simulator mode uses instance/merchant_password; else /merchant is closed
        # How often one attempt may be queried at WeChat Pay while a page polls (shared by workers).
        ACTIVE_QUERY_INTERVAL_SECONDS=5,
        CLOSE_GRACE_SECONDS=60,
        RECONCILE_AFTER_SECONDS=120,
        MAX_ATTEMPTS_PER_ORDER=20,
        SANDBOX_TIME_SCALE=1.0,
        SANDBOX_NOTIFIER=True,
        SANDBOX_MERCHANT_NAME="山间小铺",
        SANDBOX_FEE_RATE_BP=60,  # 手续费 rate in the simulator's bills, basis points (0.60%)
        AUTO_INIT=True,
        SCHEDULER_INTERVAL_SECONDS=0,  # make run sets 60; production uses cron
        PORT=5000,
        FLOW_RETENTION_DAYS=30,  # the flow record of an order is kept this long
        FLOW_MAX_FIELD_CHARS=16000,  # size bound of each text field of one recorded message
        # Send the session cookie only when the session changed: a page polling beside the checkout
        # would otherwise answer each poll with its older copy and overwrite a newer one.
        SESSION_REFRESH_EACH_REQUEST=False,
        # Going live (docs/going-live.md): bounded input, limits, sessions, metrics.
        MAX_CONTENT_LENGTH=64 * 1024,  # WeChat Pay's notifications are 1-2 KB: 413 beyond this
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI=None,  # None: memory (one process); production: redis://127.0.0.1:6379/0
        RATELIMIT_ORDERS="20 per minute;200 per hour",  # order creation per client address
        RATELIMIT_PAYMENTS="30 per minute;300 per hour",  # prepay (payment attempts) per client address
        MERCHANT_SESSION_HOURS=8,  # absolute lifetime of a merchant sign-in
        METRICS_TOKEN=None,  # production: /metrics needs this bearer token or a merchant sign-in
        NOTIFY_RETENTION_DAYS=None,  # None: FLOW_RETENTION_DAYS
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
    from . import settings_check

    settings_check.apply_production_defaults(app.config)
    app.config.setdefault("SQLALCHEMY_BINDS", {})
    if str(app.config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        # Keep a connection for each request the threaded server runs at once. With SQLAlchemy's
        # default 5, every request past them opened a PostgreSQL backend and closed it after: a new
        # server process each time, and each new backend inserts into pages the free-space map
        # offers it and leaves them part-filled (bench/README.md, "Database bytes").
        # instance/config.py's own SQLALCHEMY_ENGINE_OPTIONS win.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 10,
                                                   **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {})}
    if app.config["WECHATPAY_SANDBOX"]:
        # The simulator's state is its own database: the shop never reads it.
        app.config["SQLALCHEMY_BINDS"]["sandbox"] = app.config["SANDBOX_DATABASE_URL"]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # readable Chinese in the JSON API
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from . import bootstrap

    bootstrap.prepare(app)  # instance folder, secret key: before anything reads them
    # Production refuses unsafe settings here, so flask run, flask init and gunicorn all stop.
    settings_check.enforce(app.config, app.instance_path)
    db.init_app(app)
    # Schema changes are Alembic migrations (migrations/), one script for both databases.
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)  # SQLite ALTERs

    from . import api, catalog, checkout, commands, endpoints, errors, gateway, notify, web

    # WeChat Pay's notifications, served without Flask's request dispatch (innermost: what
    # wraps the app, ProxyFix included, applies to them too).
    app.wsgi_app = notify.NotificationLane(app, app.wsgi_app)  # type: ignore[method-assign]
    if app.config["PROXY_FIX_X_FOR"] > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Trust exactly that many X-Forwarded-For hops: H5 needs the payer's real IP, unspoofed.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])  # type: ignore[method-assign]
    web.register(app)
    from . import health, ratelimit, security

    security.register(app)  # headers and cookie flags, both modes
    gateway.register(app)
    from . import flow, learn
    from .services import flowlog

    flowlog.register(app, origin=web.request_origin)  # the flow record the inspector reads; the gateway's clients report to it
    app.register_blueprint(flow.bp)
    app.register_blueprint(learn.bp)
    app.register_blueprint(catalog.bp)
    app.register_blueprint(checkout.bp)
    app.register_blueprint(notify.bp, url_prefix="/notify")
    app.register_blueprint(api.bp, url_prefix="/api")
    from . import merchant

    app.register_blueprint(merchant.bp, url_prefix="/merchant")
    from . import miniprogram, oauth

    app.register_blueprint(oauth.bp, url_prefix="/oauth")
    app.register_blueprint(miniprogram.bp, url_prefix="/api/miniprogram")
    if app.config["WECHATPAY_SANDBOX"]:
        # The one place the shop knows the simulator: mounted here, seen elsewhere only as URLs.
        from . import sandbox

        mounted = sandbox.register(app)
        endpoints.register(app, endpoints.build(app.config, mount=mounted.mount, bridge_script=mounted.bridge_script))
    else:
        endpoints.register(app, endpoints.build(app.config))
    errors.register(app)
    commands.register(app)
    ratelimit.register(app)  # after the blueprints: it wraps their creation views
    health.register(app)
    # Last: it wraps whichever session interface the app ended up with (pages keep theirs).
    web.install_machine_sessions(app)
    if app.config["AUTO_INIT"]:
        bootstrap.initialise(app)
    if app.config["SCHEDULER_INTERVAL_SECONDS"]:
        from . import scheduler

        app.extensions["scheduler"] = scheduler.start(app, app.config["SCHEDULER_INTERVAL_SECONDS"])
    return app
