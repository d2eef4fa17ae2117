"""simulator: registered merchants, grader runs, call-log diagnosis, notification merchant

Revision ID: a12_sandbox_merchants
Revises: a10_reconciliation
Create Date: 2026-11-30 18:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'a12_sandbox_merchants'
down_revision = 'a10_reconciliation'
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def upgrade_():
    pass


def downgrade_():
    pass


def upgrade_sandbox():
    op.create_table('sandbox_merchants',
    sa.Column('mchid', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('appid', sa.String(length=32), nullable=False),
    sa.Column('merchant_serial', sa.String(length=64), nullable=False),
    sa.Column('merchant_cert', sa.Text(), nullable=False),
    sa.Column('apiv3_key', sa.String(length=32), nullable=False),
    sa.Column('notify_url', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('mchid'),
    sa.UniqueConstraint('appid')
    )
    op.create_table('sandbox_grader_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mchid', sa.String(length=32), nullable=False),
    sa.Column('out_trade_no', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('report_html', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sandbox_grader_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_grader_runs_mchid'), ['mchid'], unique=False)
    with op.batch_alter_table('sandbox_api_calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('diagnosis', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('diagnosis_detail', sa.Text(), nullable=True))
    with op.batch_alter_table('sandbox_notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mchid', sa.String(length=32), nullable=True))


def downgrade_sandbox():
    with op.batch_alter_table('sandbox_notifications', schema=None) as batch_op:
        batch_op.drop_column('mchid')
    with op.batch_alter_table('sandbox_api_calls', schema=None) as batch_op:
        batch_op.drop_column('diagnosis_detail')
        batch_op.drop_column('diagnosis')
    with op.batch_alter_table('sandbox_grader_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_grader_runs_mchid'))
    op.drop_table('sandbox_grader_runs')
    op.drop_table('sandbox_merchants')
