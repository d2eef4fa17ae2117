"""One new row written with a Core ``INSERT`` and kept as a loaded ORM object: no flush.

The ORM's unit of work (state tracking, the flush plan, the post-fetch) costs a single-row
insert three times what the ``INSERT`` itself does; on a hot path where the object is created,
written and used at once, the row is written with Core in the session's transaction and the
object put in the session as persistent, every column loaded (SQLAlchemy's
``make_transient_to_detached``), so nothing is read back and nothing is flushed at commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, Insert, Table, insert, inspect
from sqlalchemy.orm import make_transient_to_detached

from .extensions import db
from .services.rawsql import python_default

Model = TypeVar("Model")
_INSERTS: dict[Table, Insert] = {}  # one statement per table, built once: its cache key is kept


def connection(model: type) -> Connection:
    """The session's connection to ``model``'s database (its bind), in the session's transaction.

    Core statements built once run here directly, past the ORM's execution layer.
    """
    return db.session.connection(bind_arguments={"mapper": model})


def insert_loaded(model: type[Model], values: Mapping[str, Any]) -> Model:
    """INSERT one ``model`` row in the session's transaction; the object, persistent and loaded.

    Columns left out get their Python-side default, as the ORM would give them. A column with a
    server-side default only must be given (its value would have to be read back). The model's
    constructor is not called (as when a query loads a row): for models without one of their own.
    :raise IntegrityError: as the flush would (a unique column taken); the caller rolls back.
    """
    table = model.__table__  # type: ignore[attr-defined]
    row: dict[str, Any] = {}
    for column in table.c:
        if column.key in values:
            row[column.key] = values[column.key]
        elif (default := python_default(column)) is not None:
            row[column.key] = default()
        elif column.primary_key:
            continue  # the database assigns it
        elif column.server_default is not None:
            raise ValueError(f"{table.name}.{column.key}: a server default would have to be read back")
        else:
            row[column.key] = None
    statement = _INSERTS.get(table)
    if statement is None:
        statement = _INSERTS[table] = insert(table)
    result = connection(model).execute(statement, row)
    row.update(zip((column.key for column in table.primary_key), result.inserted_primary_key, strict=True))
    # As a query loads a row: the values straight into the instance's dict, not through the
    # constructor's attribute events (which would mark every column changed, only to be reset).
    instance = inspect(model).class_manager.new_instance()
    instance.__dict__.update(row)
    make_transient_to_detached(instance)  # every column loaded, history reset; relationships load lazily
    db.session.add(instance)
    return instance
