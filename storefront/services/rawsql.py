"""A few hot-path statements run on the DBAPI cursor, compiled once per database.

SQLAlchemy's ``Connection.execute`` of a cached Core statement still builds an execution
context, looks its compiled form up, runs the events and wraps a result: 20–40 µs per statement,
against a few µs for the driver's own ``cursor.execute``. A notification runs five statements,
so on the notification path (``orders.apply_payment``'s common case, the notification record,
the flow record) the statement is compiled here once per dialect, with SQLAlchemy's own
compiler and bind processors (so the stored values are byte for byte what the ORM writes), and
run on the cursor of the session's connection: same transaction, same commit.

Only for statements whose whole input is given (no server defaults to read back); anything
else goes through SQLAlchemy as usual.

``DriverTransaction`` goes one step further for the notification's common case: the whole
transaction on a pooled DBAPI connection, with no ORM session and no ``Connection`` around it
(the session's autobegin, its connection checkout, commit and teardown cost a notification as
much as its five statements together: bench/README.md).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql.dml import Insert, Update

_MISSING = object()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: bool  # qmark/format drivers take a tuple in ``plan`` order; else a dict
    # One entry per parameter the SQL takes, in its order: (name, the statement's own value or
    # _MISSING, the column's Python-side default or None, the bind processor or None).
    plan: tuple[tuple[str, Any, Callable[[], Any] | None, Callable[[Any], Any] | None], ...]
    names: tuple[str, ...]  # the plan's names, in its order
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, bind processor) where there is one


class CursorSource(Protocol):
    """Where a prepared statement runs: SQLAlchemy's ``Connection`` or a ``DriverTransaction``.

    ``connection`` is the DBAPI connection (pooled), whose ``cursor()`` runs the statement.
    """

    @property
    def dialect(self) -> Dialect: ...

    @property
    def connection(self) -> Any: ...


def python_default(column: Any) -> Callable[[], Any] | None:
    """The value the ORM would give ``column`` when an INSERT leaves it out, as a function of
    nothing: its Python-side default (a constant, or a callable); None if it has none."""
    default = column.default
    if default is None:
        return None
    if default.is_callable:
        return lambda: default.arg(None)  # SQLAlchemy wraps the callable to take an execution context
    if default.is_scalar:
        return lambda: default.arg
    return None


class Prepared:
    """One Core ``INSERT``/``UPDATE``, run raw. ``keys``: its parameters (an INSERT's columns);
    one a call leaves out is the column's Python-side default, else NULL."""

    def __init__(self, statement: Insert | Update, keys: Sequence[str]) -> None:
        self.statement = statement
        self.keys = tuple(keys)
        self._by_dialect: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(self.keys))
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("an expanding IN cannot be prepared: write it as OR-ed comparisons")
        binds = compiled.construct_params(_check=False)
        # Values the statement itself carries (literals, IN lists), unless the caller gives them.
        fixed = {name: value for name, value in binds.items() if name not in self.keys and value is not None}
        defaults: dict[str, Callable[[], Any]] = {}
        table = getattr(self.statement, "table", None)
        if isinstance(self.statement, Insert) and table is not None:
            # Columns the caller may leave out get their Python-side default, as the ORM would.
            for key in self.keys:
                default = python_default(table.c[key]) if key in table.c else None
                if default is not None:
                    defaults[key] = default
        processors = {name: _faster(dialect, compiled.binds[name].type, fn)
                      for name, fn in compiled._bind_processors.items() if fn is not None}
        names = tuple(compiled.positiontup) if compiled.positional else tuple(dict.fromkeys((*binds, *self.keys)))
        plan = tuple((name, fixed.get(name, _MISSING), defaults.get(name), processors.get(name)) for name in names)
        return _Compiled(compiled.string, bool(compiled.positional), plan, tuple(entry[0] for entry in plan),
                         tuple((i, entry[3]) for i, entry in enumerate(plan) if entry[3] is not None))

    def execute(self, connection: CursorSource, params: Mapping[str, Any]) -> Any:
        """Run on ``connection``'s DBAPI cursor (its open transaction). Returns the cursor,
        executed: ``rowcount``, and ``fetchone()`` for a ``RETURNING``."""
        dialect = connection.dialect
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            compiled = self._by_dialect[dialect.name] = self._compile(dialect)
        # The statement's parameters as given (a notification runs five statements, the flow
        # record's with two dozen columns); then, where one is missing, the statement's own value
        # or the default; then the bind processors, only where the type has one.
        get = params.get
        values = [get(name, _MISSING) for name in compiled.names]
        if _MISSING in values:
            for i, (_name, fixed, default, _process) in enumerate(compiled.plan):
                if values[i] is _MISSING:
                    values[i] = fixed if fixed is not _MISSING else default() if default is not None else None
        for i, process in compiled.processed:
            if values[i] is not None:
                values[i] = process(values[i])
        dbapi = connection.connection
        # The driver's own connection: the pool's wrapper around it adds a call and no checks.
        cursor = getattr(dbapi, "driver_connection", dbapi).cursor()
        if compiled.positional:
            cursor.execute(compiled.sql, values)
        else:
            cursor.execute(compiled.sql, {entry[0]: value for entry, value in zip(compiled.plan, values)})
        return cursor


def _faster(dialect: Dialect, type_: Any, process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process``, or a quicker one that writes the same value.

    SQLite's ``DATETIME`` stores ``%Y-%m-%d %H:%M:%S.%f`` built from a dict of seven fields per
    value (SQLAlchemy's ``sqlite.DATETIME``, default storage format); a notification binds six of
    them. ``datetime.isoformat(" ", "microseconds")`` writes the same text for a naive datetime
    (a year of four digits), in C; anything else takes SQLAlchemy's own way.
    """
    impl = dialect.type_descriptor(type_)
    if type(impl) is not SQLITE_DATETIME or impl._storage_format != SQLITE_DATETIME._storage_format:
        return process

    def sqlite_datetime(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is None and value.year >= 1000:
            return value.isoformat(" ", "microseconds")
        return process(value)

    return sqlite_datetime


# One lock per SQLite engine: the process's driver transactions take turns here (see below).
_SQLITE_TURNS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_TURNS_LOCK = threading.Lock()


def _sqlite_turn(engine: Engine) -> threading.Lock:
    turn = _SQLITE_TURNS.get(engine)
    if turn is None:
        with _TURNS_LOCK:
            turn = _SQLITE_TURNS.setdefault(engine, threading.Lock())
    return turn


class DriverTransaction:
    """One transaction on a pooled DBAPI connection of ``engine``: ``Prepared`` statements, then
    ``commit`` (or ``rollback``); leaving the ``with`` block returns the connection to the pool,
    rolled back unless committed.

    On SQLite it begins with ``BEGIN IMMEDIATE`` as every transaction of the shop does
    (``extensions._sqlite_begin_immediate``): the write lock first, so concurrent writers queue.
    PostgreSQL's driver begins one implicitly at the first statement.

    On SQLite the process's driver transactions also take turns on a lock of their own first.
    SQLite admits one writer; a thread refused the write lock sleeps in the driver's busy handler
    (1, 2, 5, 10, … ms between tries: SQLite's default busy handler), however soon the lock is
    free again. Notifications arriving together then wait for those sleeps more than for each
    other (bench/README.md, "The fourth round"). Waiting on a Python lock, each is woken as the
    one before it ends. Other writers (other processes, the ORM sessions) still queue in SQLite.
    """

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect
        self.turn = _sqlite_turn(engine) if self.dialect.name == "sqlite" else None
        if self.turn is not None:
            self.turn.acquire()
        try:
            self.connection = engine.raw_connection()  # ``CursorSource``: pooled, its cursor() is the driver's
        except BaseException:
            self._end_turn()
            raise
        self.done = False
        try:
            if self.turn is not None:
                self.connection.driver_connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.connection.close()
            self._end_turn()
            raise

    def _end_turn(self) -> None:
        if self.turn is not None:
            self.turn.release()
            self.turn = None

    def commit(self) -> None:
        self.connection.commit()
        self.done = True

    def rollback(self) -> None:
        self.connection.rollback()
        self.done = True

    def __enter__(self) -> DriverTransaction:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if not self.done:
                self.connection.rollback()
        finally:
            try:
                self.connection.close()  # back to the pool
            finally:
                self._end_turn()
