"""lean indexes: no entry for what no query looks up (paid orders and attempts, notification records)

Revision ID: a16_lean_indexes
Revises: a15_newcomer
Create Date: 2026-11-30 21:50:00

A paid Native order used to add 36 index entries on PostgreSQL (every UPDATE that changes an
indexed column writes a new row version and an entry in each of the table's indexes). Now:
- ``notification_records.out_trade_no``: shown, never looked up; no index.
- ``orders.owner``: the only lookup by owner also names the idempotency key; no index of its
  own. The unique ``(owner, idempotency_key)`` index becomes partial (``idempotency_key IS NOT
  NULL``): an order made without a key is never looked up by one, and NULLs never collide.
- ``orders.status`` -> ``ix_orders_pending_created``: the close-expired job's pending orders by
  age, partial (``status = 'pending'``): a paid or closed order has no entry.
- ``payments (status, expires_at)`` -> ``ix_payments_open_expires``: the jobs' open attempts by
  deadline, partial (``status IN ('created', 'notpay')``): a paid or closed attempt has no entry.
- ``protocol_messages.owner``: partial (``owner IS NOT NULL``): only the logins waiting for an
  order are looked up by owner.
- ``protocol_messages.at`` (retention's delete by age): BRIN on PostgreSQL, a few pages for the
  whole table; a B-tree on SQLite, which has no BRIN.
Plain CREATE/DROP INDEX (SQLite has both): no table is rebuilt. A later batch migration that
rebuilds one of these tables on SQLite must keep the WHERE clauses.
"""
from alembic import op
import sqlalchemy as sa


revision = 'a16_lean_indexes'
down_revision = 'a15_newcomer'
branch_labels = None
depends_on = None

PENDING_ORDER = "status = 'pending'"
OPEN_PAYMENT = "status IN ('created', 'notpay')"
HAS_OWNER = "owner IS NOT NULL"
HAS_KEY = "idempotency_key IS NOT NULL"


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def _partial(name, table, columns, where):
    op.create_index(name, table, columns, unique=False, postgresql_where=sa.text(where),
                    sqlite_where=sa.text(where))


def upgrade_():
    op.drop_index('ix_notification_records_out_trade_no', table_name='notification_records')
    op.drop_index('ix_orders_owner', table_name='orders')
    op.drop_index('ix_orders_owner_idempotency_key', table_name='orders')
    op.create_index('ix_orders_owner_idempotency_key', 'orders', ['owner', 'idempotency_key'], unique=True,
                    postgresql_where=sa.text(HAS_KEY), sqlite_where=sa.text(HAS_KEY))
    op.drop_index('ix_orders_status', table_name='orders')
    _partial('ix_orders_pending_created', 'orders', ['created_at'], PENDING_ORDER)
    op.drop_index('ix_payments_status_expires', table_name='payments')
    _partial('ix_payments_open_expires', 'payments', ['expires_at'], OPEN_PAYMENT)
    op.drop_index('ix_protocol_messages_owner', table_name='protocol_messages')
    _partial('ix_protocol_messages_owner', 'protocol_messages', ['owner'], HAS_OWNER)
    op.drop_index('ix_protocol_messages_at', table_name='protocol_messages')
    op.create_index('ix_protocol_messages_at', 'protocol_messages', ['at'], unique=False, postgresql_using='brin')


def downgrade_():
    op.drop_index('ix_protocol_messages_at', table_name='protocol_messages')
    op.create_index('ix_protocol_messages_at', 'protocol_messages', ['at'], unique=False)
    op.drop_index('ix_protocol_messages_owner', table_name='protocol_messages')
    op.create_index('ix_protocol_messages_owner', 'protocol_messages', ['owner'], unique=False)
    op.drop_index('ix_payments_open_expires', table_name='payments')
    op.create_index('ix_payments_status_expires', 'payments', ['status', 'expires_at'], unique=False)
    op.drop_index('ix_orders_pending_created', table_name='orders')
    op.create_index('ix_orders_status', 'orders', ['status'], unique=False)
    op.drop_index('ix_orders_owner_idempotency_key', table_name='orders')
    op.create_index('ix_orders_owner_idempotency_key', 'orders', ['owner', 'idempotency_key'], unique=True)
    op.create_index('ix_orders_owner', 'orders', ['owner'], unique=False)
    op.create_index('ix_notification_records_out_trade_no', 'notification_records', ['out_trade_no'],
                    unique=False)


def upgrade_sandbox():
    pass


def downgrade_sandbox():
    pass
