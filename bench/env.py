"""The benchmark's world: the shop (with its simulator) and a bare baseline app, each served by
a real threaded werkzeug server on 127.0.0.1, over a throw-away instance folder.

The repo's ``instance/`` is never touched: the instance is a temporary folder (or one under a
given ``workdir``), with freshly generated demo credentials unless a template is given.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from flask import Flask, request
from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, bindparam, create_engine, insert, text
from werkzeug.serving import make_server

from storefront import bootstrap, create_app
from storefront.extensions import db
from storefront.sandbox import demo

from . import load
from .peer import SDK_TABLE, build_sdk_app


class BenchError(RuntimeError):
    """The benchmark itself is invalid (a request failed, a row was not updated): not a result."""


class ServerThread:
    """One app on a real threaded WSGI server on loopback, as ``tests/conftest.py``'s LiveServer."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"bench-server-{self.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# The baseline's table: the shape of ``payments`` (same columns, types and indexes; no FK).
BARE_TABLE = "bench_payments"
BARE_UPDATE = text(f"UPDATE {BARE_TABLE} SET status='paid' WHERE id=:id AND status='pending'")


def bare_table(metadata: MetaData, name: str = BARE_TABLE) -> Table:
    return Table(
        name, metadata,
        Column("id", Integer, primary_key=True),
        Column("order_id", Integer, index=True),
        Column("out_trade_no", String(32), unique=True),
        Column("method", String(16)),
        Column("status", String(16)),
        Column("amount_total", Integer),
        Column("code_url", String(256)),
        Column("expires_at", DateTime),
        Column("transaction_id", String(32)),
        Column("paid_at", DateTime),
        Column("last_queried_at", DateTime),
        Column("created_at", DateTime),
        Index(f"ix_{name}_status_expires", "status", "expires_at"),
    )


def build_bare_app(engine) -> Flask:
    """The floor: a Flask endpoint that reads the body and runs the one conditional UPDATE."""
    app = Flask("bench_bare")

    @app.post("/bare/<int:row_id>")
    def bare(row_id: int):
        request.get_data(cache=False)  # the same body bytes as a notification
        with engine.begin() as connection:
            changed = connection.execute(BARE_UPDATE, {"id": row_id}).rowcount
        if changed == 1:
            return "", 204
        return {"code": "FAIL", "message": "not pending"}, 409

    @app.get("/ping")
    def ping():
        return "", 204

    return app


class Environment:
    """Shop + simulator server, bare server, SDK-handler server (``bench.peer``), and the client
    runner. Use as a context manager.

    :param database_url: the shop's tables (and the bare table) on this database; SQLite in the
        instance folder when None. The simulator always keeps its own SQLite file.
    :param client_mode: ``process`` (load generator in a spawned child: clients do not share the
        servers' GIL) or ``inline`` (client threads in this process).
    :param instance_template: a folder with demo credentials to copy (skips RSA key generation).
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        database_url: str | None = None,
        client_mode: str = "process",
        instance_template: Path | None = None,
        quiet: bool = True,
    ) -> None:
        if client_mode not in ("process", "inline"):
            raise ValueError(client_mode)
        self.database_url = database_url or None
        self.client_mode = client_mode
        self._owned_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="storefront-bench-")) if workdir is None else Path(workdir)
        self._template = instance_template
        self._quiet = quiet
        self._pool: ProcessPoolExecutor | None = None
        self.shop: ServerThread | None = None
        self.bare: ServerThread | None = None
        self.sdk: ServerThread | None = None
        self.app: Flask | None = None
        self.bare_engine = None
        self.bare_metadata = MetaData()
        self.bare_rows = bare_table(self.bare_metadata)
        self.sdk_rows = bare_table(self.bare_metadata, SDK_TABLE)
        self._saved_levels: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Environment:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        instance = self.workdir / "instance"
        if self._template is not None:
            shutil.copytree(self._template, instance)
        else:
            demo.ensure_demo_credentials(instance)
        settings = {
            "SECRET_KEY": "bench-secret",
            "WECHATPAY_SANDBOX": True,
            "SANDBOX_NOTIFIER": False,  # the bench posts notifications itself; no background sender
            "AUTO_INIT": False,
            "SCHEDULER_INTERVAL_SECONDS": 0,  # no background jobs competing with the measurement
            "FLOW_RECORD": "all",  # the demo's default; the notification bench turns it off for one side
            "RATELIMIT_ENABLED": False,  # the load comes from one address: no rate limit may answer 429
        }
        if self.database_url:
            settings["SQLALCHEMY_DATABASE_URI"] = self.database_url
        self.app = create_app(settings, instance_path=str(instance))
        if self._quiet:
            # One log line per request (werkzeug's access log, the client's INFO line) would flood
            # the report; both servers are silenced alike, so the comparison stays fair.
            for name in ("werkzeug", "storefront"):
                logger = logging.getLogger(name)
                self._saved_levels[name] = logger.level
                logger.setLevel(logging.WARNING)
        bootstrap.initialise(self.app)
        with self.app.app_context():
            url = db.engine.url
        self.bare_engine = create_engine(url.render_as_string(hide_password=False))
        self.bare_metadata.drop_all(self.bare_engine)
        self.bare_metadata.create_all(self.bare_engine)
        self.shop = ServerThread(self.app)
        self.app.config["PORT"] = self.shop.port
        self.bare = ServerThread(build_bare_app(self.bare_engine))
        self.sdk = ServerThread(build_sdk_app(self.bare_engine, instance, self.gateway.credentials))
        if self.client_mode == "process":
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            self._pool.submit(int).result(timeout=60)  # pay the child's start-up now, not in a measurement

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for server in (self.shop, self.bare, self.sdk):
            if server is not None:
                server.stop()
        self.shop = self.bare = self.sdk = None
        if self.bare_engine is not None:
            try:
                self.bare_metadata.drop_all(self.bare_engine)
            finally:
                self.bare_engine.dispose()
                self.bare_engine = None
        if self.app is not None:
            state = self.app.extensions.get("sandbox")
            if state is not None:
                state.stop()
            with self.app.app_context():
                db.session.remove()
                for engine in db.engines.values():
                    engine.dispose()
            self.app = None
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_levels.clear()
        if self._owned_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------

    @property
    def instance(self) -> Path:
        return Path(self.app.instance_path)

    @property
    def platform(self):
        """The simulator's keys (``storefront.sandbox.simulator.Platform``)."""
        return self.app.extensions["sandbox"].platform

    @property
    def gateway(self):
        return self.app.extensions["wechatpay"]

    def client(self, function: str, *args):
        """Run one ``bench.load`` function in the configured client mode; return its result."""
        target = getattr(load, function)
        if self._pool is None:
            return target(*args)
        return self._pool.submit(target, *args).result(timeout=600)

    def insert_bare_rows(self, count: int, prefix: str) -> list[int]:
        """``count`` pending rows in the bare table; their ids."""
        from storefront.models import utcnow

        now = utcnow()
        with self.bare_engine.begin() as connection:
            first = connection.execute(
                text(f"SELECT COALESCE(MAX(id), 0) FROM {BARE_TABLE}")
            ).scalar_one()
            ids = list(range(first + 1, first + 1 + count))
            connection.execute(insert(self.bare_rows), [
                {"id": row_id, "order_id": row_id, "out_trade_no": f"{prefix}{row_id:08d}", "method": "native",
                 "status": "pending", "amount_total": 8800, "expires_at": now, "created_at": now}
                for row_id in ids
            ])
        return ids

    def insert_sdk_rows(self, attempts: list[tuple[str, int]]) -> None:
        """A fresh pending row in the SDK handler's table for each ``(out_trade_no, amount)``."""
        from storefront.models import utcnow

        now = utcnow()
        with self.bare_engine.begin() as connection:
            first = connection.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {SDK_TABLE}")).scalar_one()
            connection.execute(insert(self.sdk_rows), [
                {"id": first + 1 + i, "order_id": first + 1 + i, "out_trade_no": out_trade_no, "method": "native",
                 "status": "pending", "amount_total": amount, "expires_at": now, "created_at": now}
                for i, (out_trade_no, amount) in enumerate(attempts)
            ])

    def count_sdk_paid(self, attempts: list[tuple[str, int]]) -> int:
        with self.bare_engine.connect() as connection:
            return connection.execute(
                text(f"SELECT COUNT(*) FROM {SDK_TABLE} WHERE status='paid' AND out_trade_no IN :nos")
                .bindparams(bindparam("nos", expanding=True)),
                {"nos": [no for no, _amount in attempts]},
            ).scalar_one()

    def count_bare_paid(self, ids: list[int]) -> int:
        with self.bare_engine.connect() as connection:
            return connection.execute(
                text(f"SELECT COUNT(*) FROM {BARE_TABLE} WHERE status='paid' AND id BETWEEN :lo AND :hi"),
                {"lo": min(ids), "hi": max(ids)},
            ).scalar_one()
