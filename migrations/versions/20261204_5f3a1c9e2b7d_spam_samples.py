"""spam samples: a group's confirmed spam and ham, for its classifier

Revision ID: 5f3a1c9e2b7d
Revises: 7fec911fe60c
Create Date: 2026-12-04 18:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = '5f3a1c9e2b7d'
down_revision: str | None = '7fec911fe60c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('spam_samples',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('group_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('spam', sa.Boolean(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', models.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_spam_samples_group_id_groups'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spam_samples'))
    )
    with op.batch_alter_table('spam_samples', schema=None) as batch_op:
        batch_op.create_index('ix_spam_samples_group_kind_time', ['group_id', 'spam', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('spam_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_spam_samples_group_kind_time')
    op.drop_table('spam_samples')
