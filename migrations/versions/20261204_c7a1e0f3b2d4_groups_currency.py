"""groups: currency (the ISO 4217 code a group's prices are shown in; CNY until an admin says otherwise)

Revision ID: c7a1e0f3b2d4
Revises: 5c1e7a9b2d40
Create Date: 2026-12-04 18:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'c7a1e0f3b2d4'
down_revision: str | None = '5c1e7a9b2d40'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=3), server_default='CNY', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.drop_column('currency')
