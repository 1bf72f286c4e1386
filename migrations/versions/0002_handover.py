"""Handing over and off sale: a sale's pickup code and hand-over, the card that paid it, an
item taken off sale.

Revision ID: 0002_handover
Revises: 0001
Create Date: 2026-12-03 17:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_handover"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN_PICKUP = "pickup_code IS NOT NULL AND handed_over_at IS NULL AND status = 'fulfilled'"


def upgrade() -> None:
    op.create_table(
        "card_payment",
        sa.Column("payment_intent_id", sa.String(length=255), nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("payment_intent_id", name=op.f("pk_card_payment")),
    )
    with op.batch_alter_table("sale") as batch:
        batch.add_column(sa.Column("pickup_code", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("handed_over_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("handed_over_by", sa.String(length=64), nullable=True))
        batch.create_index(
            "uq_sale_open_pickup_code",
            ["store", "pickup_code"],
            unique=True,
            sqlite_where=sa.text(OPEN_PICKUP),
            postgresql_where=sa.text(OPEN_PICKUP),
        )
    with op.batch_alter_table("stock") as batch:
        batch.add_column(
            sa.Column("off_sale", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("stock") as batch:
        batch.drop_column("off_sale")
    with op.batch_alter_table("sale") as batch:
        batch.drop_index("uq_sale_open_pickup_code")
        batch.drop_column("handed_over_by")
        batch.drop_column("handed_over_at")
        batch.drop_column("pickup_code")
    op.drop_table("card_payment")
