"""The Alembic migrations build exactly the schema the models describe, in both databases."""

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
