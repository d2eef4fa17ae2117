"""merchant sessions and the shared login throttle

Revision ID: a14_merchant_sessions
Revises: a11_compact_flow
Create Date: 2026-11-30 18:30:00

Server-side merchant sessions (logout revokes every copy of the cookie) and the login
failure counters every worker shares (storefront/merchant/auth.py).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a14_merchant_sessions'
down_revision = 'a11_compact_flow'
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def upgrade_():
    op.create_table('merchant_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('address', sa.String(length=45), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('merchant_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_sessions_expires_at'), ['expires_at'], unique=False)

    op.create_table('login_failures',
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', sa.DateTime(), nullable=False),
    sa.Column('blocked_until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade_():
    op.drop_table('login_failures')
    with op.batch_alter_table('merchant_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_sessions_expires_at'))
    op.drop_table('merchant_sessions')


def upgrade_sandbox():
    pass


def downgrade_sandbox():
    pass
