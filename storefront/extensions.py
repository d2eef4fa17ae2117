"""Flask extensions, created unbound and bound in the app factory."""

import sqlite3

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


# expire_on_commit=False: services commit before every HTTP round trip to WeChat Pay and keep
# using the loaded rows; reloading them would reopen a transaction (and on SQLite, the lock).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # The notifier, the server's threads and the jobs write concurrently. WAL lets readers
    # proceed; the busy timeout makes writers queue instead of failing.
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL, not FULL: in WAL mode a commit then costs no fsync (the WAL is synced at each
        # checkpoint). Still durable across an app or process crash; a power loss or OS crash
        # can lose the last commits, and the shop recovers those as it recovers a lost
        # notification: the active queries and the reconcile job ask WeChat Pay again.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(connection) -> None:
    # A deferred SQLite transaction that reads and then writes fails at once (SQLITE_BUSY)
    # if another writer committed in between; taking the write lock up front makes
    # concurrent read-then-update transitions queue instead. PostgreSQL needs none of this.
    if connection.dialect.name == "sqlite":
        # On the driver connection itself: every transaction runs this, and SQLAlchemy's
        # statement machinery (an execution context, events, a result) would add nothing to it.
        connection.connection.dbapi_connection.execute("BEGIN IMMEDIATE")
