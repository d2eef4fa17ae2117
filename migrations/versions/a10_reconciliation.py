"""reconciliation runs, what the payer paid and got back (shop); coupon amount of a simulator transaction

Revision ID: a10_reconciliation
Revises: 0001
Create Date: 2026-11-30 18:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'a10_reconciliation'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def upgrade_():
    op.create_table('reconciliation_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bill_date', sa.String(length=10), nullable=False),
    sa.Column('ran_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('bill_rows', sa.Integer(), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('applied', sa.Integer(), nullable=False),
    sa.Column('differences', sa.Integer(), nullable=False),
    sa.Column('fees_total', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=300), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bill_date')
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payer_total', sa.Integer(), nullable=True))
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payer_refund', sa.Integer(), nullable=True))


def downgrade_():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_column('payer_refund')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('payer_total')
    op.drop_table('reconciliation_runs')


def upgrade_sandbox():
    with op.batch_alter_table('sandbox_transactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('coupon_amount', sa.Integer(), server_default='0', nullable=False))


def downgrade_sandbox():
    with op.batch_alter_table('sandbox_transactions', schema=None) as batch_op:
        batch_op.drop_column('coupon_amount')
