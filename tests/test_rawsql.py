"""The notification path's raw statements store what SQLAlchemy itself would store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, insert, select
from sqlalchemy.dialects import sqlite

from storefront.services import rawsql


def _sqlalchemy_text(value: datetime) -> str:
    dialect = sqlite.dialect()
    return dialect.type_descriptor(DateTime()).bind_processor(dialect)(value)


def test_sqlite_datetimes_are_written_as_sqlalchemy_writes_them(tmp_path):
    metadata = MetaData()
    table = Table("stamps", metadata, Column("id", Integer, primary_key=True), Column("at", DateTime),
                  Column("note", String(20)))
    engine = create_engine(f"sqlite:///{tmp_path / 'stamps.sqlite'}")
    metadata.create_all(engine)
    prepared = rawsql.Prepared(insert(table), ("id", "at", "note"))
    values = [
        datetime(2026, 12, 1, 8, 9, 39),  # no microseconds: still six digits, as SQLAlchemy writes
        datetime(2026, 12, 1, 8, 9, 39, 5),
        datetime(2026, 12, 1, 23, 59, 59, 999999),
        datetime(999, 1, 2, 3, 4, 5),  # a three-digit year: SQLAlchemy pads it, isoformat would not
        datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=8))),  # aware: SQLAlchemy drops the offset
    ]
    with rawsql.DriverTransaction(engine) as transaction:
        for i, value in enumerate(values):
            prepared.execute(transaction, {"id": i, "at": value, "note": "raw"}).close()
        transaction.commit()
    with engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT at FROM stamps ORDER BY id").scalars().all()
        loaded = connection.execute(select(table.c.at).order_by(table.c.id)).scalars().all()
    engine.dispose()
    assert stored == [_sqlalchemy_text(value) for value in values]
    assert loaded == [value.replace(tzinfo=None) for value in values]


def test_a_driver_transaction_gives_up_its_turn_however_it_ends(tmp_path):
    """SQLite driver transactions of one process take turns on a lock: a transaction that fails,
    rolls back or commits leaves it free for the next (none waits for a lock nobody holds)."""
    metadata = MetaData()
    table = Table("turns", metadata, Column("id", Integer, primary_key=True), Column("note", String(20)))
    engine = create_engine(f"sqlite:///{tmp_path / 'turns.sqlite'}")
    metadata.create_all(engine)
    prepared = rawsql.Prepared(insert(table), ("id", "note"))
    turn = rawsql._sqlite_turn(engine)
    try:
        with rawsql.DriverTransaction(engine) as transaction:
            assert turn.locked()
            prepared.execute(transaction, {"id": 1, "note": "kept"}).close()
            transaction.commit()
        assert not turn.locked()
        try:
            with rawsql.DriverTransaction(engine) as transaction:
                prepared.execute(transaction, {"id": 2, "note": "undone"}).close()
                raise RuntimeError("the caller failed")
        except RuntimeError:
            pass
        assert not turn.locked()
        try:
            with rawsql.DriverTransaction(engine) as transaction:
                prepared.execute(transaction, {"id": 1, "note": "a duplicate key"}).close()
        except Exception:
            pass
        assert not turn.locked()
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT id, note FROM turns").all() == [(1, "kept")]
    finally:
        engine.dispose()
