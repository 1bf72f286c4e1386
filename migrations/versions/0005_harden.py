"""Staff sessions that can be revoked, and the client address (pseudonym) of each hold.

Revision ID: 0005_harden
Revises: 0004_link_limit
Create Date: 2026-12-03 17:25:01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_harden"
down_revision = "0004_link_limit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("proof", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_session")),
    )
    op.create_index(
        op.f("ix_staff_session_expires_at"), "staff_session", ["expires_at"], unique=False
    )
    with op.batch_alter_table("hold") as batch:
        batch.add_column(sa.Column("client", sa.String(length=32), nullable=True))
        batch.create_index("ix_hold_client_created_at", ["client", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hold") as batch:
        batch.drop_index("ix_hold_client_created_at")
        batch.drop_column("client")
    op.drop_index(op.f("ix_staff_session_expires_at"), table_name="staff_session")
    op.drop_table("staff_session")
