"""compact flow record: one payload per protocol message, signed strings rebuilt, no out_trade_no index

Revision ID: a11_compact_flow
Revises: a12_sandbox_merchants
Create Date: 2026-11-30 18:40:00

Ten columns of ``protocol_messages`` become one ``payload`` (services/flowcodec.py): the URL,
the origin, the headers that matter, the bodies and the checks, compressed when large. The canonical strings
(``signed_message``, ``verify_message``) and the decrypted resource are rebuilt for display and
no longer stored. Existing rows are converted. Downgrade converts them back with the signed
strings rebuilt and the decrypted resource from the stored plaintext; what newer rows do not
store and only the keys rebuild (the shop's own request signature, a notification's ciphertext)
stays out of the downgraded rows.
"""
import json

from alembic import op
import sqlalchemy as sa


revision = 'a11_compact_flow'
down_revision = 'a12_sandbox_merchants'
branch_labels = None
depends_on = None

OLD_TEXT = ('request_headers', 'request_body', 'response_headers', 'response_body', 'signed_message',
            'verify_message', 'checks', 'decrypted')
OLD_SHORT = (('origin', 120), ('url', 512))


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def _json(text, default):
    try:
        return json.loads(text or "") if text else default
    except ValueError:
        return default


def _pretty(text):
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, indent=2) if text else ''
    except ValueError:
        return text


def upgrade_():
    from storefront.services import flowcodec

    with op.batch_alter_table('protocol_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.LargeBinary(), nullable=False, server_default=sa.text("''")))
    bind = op.get_bind()
    messages = sa.table('protocol_messages', sa.column('id', sa.Integer), sa.column('title', sa.String),
                        sa.column('method', sa.String), sa.column('payload', sa.LargeBinary),
                        sa.column('origin', sa.String), sa.column('url', sa.String),
                        *(sa.column(name, sa.Text) for name in OLD_TEXT))
    rows = bind.execute(sa.select(messages.c.id, messages.c.title, messages.c.method, messages.c.origin,
                                  messages.c.url, *(messages.c[name] for name in OLD_TEXT))).mappings().all()
    for row in rows:
        canonical = row['title'].split(' ', 1)[1] if ' ' in (row['title'] or '') else ''
        payload = flowcodec.encode({
            'origin': row['origin'] or '', 'url': row['url'] or '',
            'request_headers': flowcodec.kept_headers(_json(row['request_headers'], {})),
            'request_body': row['request_body'] or '',
            'response_headers': flowcodec.kept_headers(_json(row['response_headers'], {})),
            'response_body': row['response_body'] or '',
            'checks': _json(row['checks'], []),
            'canonical_url': canonical if row['signed_message'] and not row['signed_message'].startswith(
                f"{row['method']}\n{canonical}\n") else '',
        })
        bind.execute(messages.update().where(messages.c.id == row['id']).values(payload=payload))
    with op.batch_alter_table('protocol_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_protocol_messages_out_trade_no'))
        for name in OLD_TEXT + tuple(name for name, _length in OLD_SHORT):
            batch_op.drop_column(name)
        batch_op.alter_column('payload', server_default=None)


def downgrade_():
    from storefront.services import flowcodec

    with op.batch_alter_table('protocol_messages', schema=None) as batch_op:
        for name in OLD_TEXT:
            batch_op.add_column(sa.Column(name, sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('origin', sa.String(length=120), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('url', sa.String(length=512), nullable=True))
        batch_op.create_index(batch_op.f('ix_protocol_messages_out_trade_no'), ['out_trade_no'], unique=False)
    bind = op.get_bind()
    messages = sa.table('protocol_messages', sa.column('id', sa.Integer), sa.column('title', sa.String),
                        sa.column('method', sa.String), sa.column('direction', sa.String),
                        sa.column('verification', sa.String), sa.column('payload', sa.LargeBinary),
                        sa.column('origin', sa.String), sa.column('url', sa.String),
                        *(sa.column(name, sa.Text) for name in OLD_TEXT))
    rows = bind.execute(sa.select(messages.c.id, messages.c.title, messages.c.method, messages.c.direction,
                                  messages.c.verification, messages.c.payload)).mappings().all()
    for row in rows:
        fields = flowcodec.decode(row['payload'])
        request_headers = fields.get('request_headers') or {}
        response_headers = fields.get('response_headers') or {}
        request_body, response_body = fields.get('request_body') or '', fields.get('response_body') or ''
        canonical = fields.get('canonical_url') or (row['title'].split(' ', 1)[1] if ' ' in row['title'] else '')
        signed = verify = ''
        if row['direction'] == 'out':
            signed = flowcodec.signed_message(row['method'], canonical, request_headers, request_body)
            if row['verification'] != 'none':
                verify = flowcodec.verify_message(response_headers, response_body)
        elif row['direction'] == 'in':
            verify = flowcodec.verify_message(request_headers, request_body)
        bind.execute(messages.update().where(messages.c.id == row['id']).values(
            request_headers=json.dumps(request_headers, ensure_ascii=False), request_body=request_body,
            response_headers=json.dumps(response_headers, ensure_ascii=False), response_body=response_body,
            signed_message=signed, verify_message=verify,
            checks=json.dumps(fields.get('checks') or [], ensure_ascii=False),
            decrypted=_pretty(fields.get('resource_plain') or ''),
            origin=fields.get('origin') or '', url=fields.get('url') or None))
    with op.batch_alter_table('protocol_messages', schema=None) as batch_op:
        for name in OLD_TEXT + ('origin',):
            batch_op.alter_column(name, server_default=None)
        batch_op.drop_column('payload')


def upgrade_sandbox():
    pass


def downgrade_sandbox():
    pass
