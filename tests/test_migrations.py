"""The Alembic migrations build exactly the schema the models describe, in both databases."""

import re

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from storefront.extensions import db


def _differences(app) -> dict[str, list]:
    found = {}
    with app.app_context():
        for bind_key, engine in db.engines.items():
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                found[bind_key or "shop"] = compare_metadata(context, db.metadatas[bind_key])
    return found


def test_migrated_schema_matches_the_models(app):
    """init applies the migrations; nothing in the models is missing from them, nor extra."""
    assert _differences(app) == {"shop": [], "sandbox": []}


def _index_definitions(connection) -> dict[str, str]:
    if connection.dialect.name == "sqlite":
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    else:
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    return {name: definition.lower() for name, definition in connection.exec_driver_sql(query).all()}


def test_migrated_partial_indexes_keep_their_conditions(app):
    """The comparison above ignores an index's WHERE and access method: a partial index built
    without its condition would hold every row again, and the jobs' queries would not use it."""
    keywords = {"in", "is", "not", "null", "and"}
    with app.app_context():
        engine = db.engines[None]
        dialect = engine.dialect.name
        indexes = [index for table in db.metadatas[None].tables.values() for index in table.indexes]
        with engine.connect() as connection:
            found = _index_definitions(connection)
    partial = [index for index in indexes if index.dialect_options[dialect].get("where") is not None]
    assert {index.name for index in partial} >= {"ix_orders_pending_created", "ix_payments_open_expires"}
    for index in partial:
        condition = found[index.name].split(" where ", 1)[1]
        words = set(re.findall(r"[a-z_]+", str(index.dialect_options[dialect]["where"]).lower())) - keywords
        assert all(word in condition for word in words), (index.name, condition)
    if dialect == "postgresql":
        assert "using brin" in found["ix_protocol_messages_at"]


def test_init_is_idempotent_and_downgrade_returns_to_empty(app):
    """A second upgrade changes nothing; downgrade to base drops every table but Alembic's own."""
    with app.app_context():
        upgrade()
        assert _differences(app) == {"shop": [], "sandbox": []}
        downgrade(revision="base")
        for engine in db.engines.values():
            assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade()
    assert _differences(app) == {"shop": [], "sandbox": []}


def test_a_database_built_before_migrations_gets_a_clear_answer(make_app):
    """Tables without Alembic's history: init refuses with what to do, and touches nothing."""
    import pytest

    from storefront import bootstrap

    app = make_app()
    with app.app_context():
        db.engines[None].dispose()
        with db.engines[None].begin() as connection:
            connection.exec_driver_sql("DROP TABLE alembic_version")
    with pytest.raises(RuntimeError, match="predates the migrations"):
        bootstrap.initialise(app)
