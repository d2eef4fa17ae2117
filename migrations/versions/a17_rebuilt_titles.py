"""flow record: a message's title and out_trade_no may be NULL when the row rebuilds them

Revision ID: a17_rebuilt_titles
Revises: a16_lean_indexes
Create Date: 2026-12-01 00:20:00

- ``protocol_messages.title`` becomes nullable: an HTTP message whose title is its method and
  path (``ProtocolMessage.http_title``, from the canonical URL or URL its payload keeps) stores
  NULL; the model's ``title`` rebuilds it.
- ``protocol_messages.out_trade_no`` (already nullable) is NULL for a message linked to its
  attempt by that very number; ``ProtocolMessage.out_trade_no`` reads the attempt's.
Rows written before keep both: nothing to rewrite on the way up. On the way down the titles and
numbers are filled in again (the titles rebuilt as the model does).

PostgreSQL: ``ALTER COLUMN ... DROP NOT NULL`` (no rewrite). SQLite: a batch rebuild of the
table, which keeps the partial index's WHERE (reflected; ``tests/test_migrations.py`` checks).
"""
from alembic import op
import sqlalchemy as sa


revision = 'a17_rebuilt_titles'
down_revision = 'a16_lean_indexes'
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def upgrade_():
    with op.batch_alter_table('protocol_messages', schema=None) as batch_op:
        batch_op.alter_column('title', existing_type=sa.String(length=120), nullable=True)


def downgrade_():
    from storefront.services import flowcodec

    bind = op.get_bind()
    bind.execute(sa.text(
        "UPDATE protocol_messages SET out_trade_no = "
        "(SELECT payments.out_trade_no FROM payments WHERE payments.id = protocol_messages.payment_id) "
        "WHERE out_trade_no IS NULL AND payment_id IS NOT NULL"))
    rows = bind.execute(sa.text("SELECT id, method, payload FROM protocol_messages WHERE title IS NULL")).all()
    for row_id, method, payload in rows:
        fields = flowcodec.decode(bytes(payload) if payload is not None else None)
        bind.execute(sa.text("UPDATE protocol_messages SET title = :title WHERE id = :id"),
                     {"title": _http_title(method, fields), "id": row_id})
    with op.batch_alter_table('protocol_messages', schema=None) as batch_op:
        batch_op.alter_column('title', existing_type=sa.String(length=120), nullable=False)


def _http_title(method, fields):
    """As ``ProtocolMessage.http_title`` when this revision was written (a copy: migrations stay fixed)."""
    from urllib.parse import urlsplit

    target = fields.get("canonical_url")
    if not target and fields.get("url"):
        parts = urlsplit(fields["url"])
        target = parts.path + ("?" + parts.query if parts.query else "")
    return (f"{method} {target}" if method and target else method or "")[:120]


def upgrade_sandbox():
    pass


def downgrade_sandbox():
    pass
