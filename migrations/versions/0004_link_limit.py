"""A payment link's completed-sessions count and limit on Stripe, as last seen.

Revision ID: 0004_link_limit
Revises: 0003
Create Date: 2026-12-03 18:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_link_limit"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_link") as batch_op:
        batch_op.add_column(sa.Column("session_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("session_limit", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_link") as batch_op:
        batch_op.drop_column("session_limit")
        batch_op.drop_column("session_count")
