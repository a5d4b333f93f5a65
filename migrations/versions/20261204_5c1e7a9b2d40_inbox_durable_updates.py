"""inbox: every update stored before it is confirmed to Telegram, pending until handled

Revision ID: 5c1e7a9b2d40
Revises: 5f3a1c9e2b7d
Create Date: 2026-12-04 17:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db


revision: str = '5c1e7a9b2d40'
down_revision: str | None = '5f3a1c9e2b7d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('bot_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('update_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=40), nullable=False),
    sa.Column('stored_at', models.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('taken_at', models.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', models.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('bot_id', 'update_id', name=op.f('pk_inbox'))
    )
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_state_stored_at', ['state', 'stored_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_state_stored_at')
    op.drop_table('inbox')
