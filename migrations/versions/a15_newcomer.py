"""server-side OAuth state, order idempotency keys, login messages awaiting their order

Revision ID: a15_newcomer
Revises: a14_merchant_sessions
Create Date: 2026-11-30 18:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'a15_newcomer'
down_revision = 'a14_merchant_sessions'
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def upgrade_():
    op.create_table('oauth_states',
    sa.Column('state', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('next_url', sa.String(length=512), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('state')
    )
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_states_created_at'), ['created_at'], unique=False)
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_orders_owner_idempotency_key', ['owner', 'idempotency_key'], unique=True)
    with op.batch_alter_table('protocol_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_protocol_messages_owner'), ['owner'], unique=False)


def downgrade_():
    with op.batch_alter_table('protocol_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_protocol_messages_owner'))
        batch_op.drop_column('owner')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_owner_idempotency_key')
        batch_op.drop_column('idempotency_key')
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_states_created_at'))
    op.drop_table('oauth_states')


def upgrade_sandbox():
    pass


def downgrade_sandbox():
    pass
