"""The database's install id (for idempotency keys), each payment link's capture method.

The install id is made here, once per database: random, so two booths' databases on one
Stripe account, or a database deleted and made again, never send the same idempotency key.

Revision ID: 0003
Revises: 0002_handover
Create Date: 2026-12-03 18:00:00
"""

import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002_handover"
branch_labels = None
depends_on = None

setting = sa.table("setting", sa.column("key", sa.String), sa.column("value", sa.Text))


def upgrade() -> None:
    with op.batch_alter_table("payment_link") as batch:
        batch.add_column(sa.Column("capture_method", sa.String(length=20), nullable=True))
    op.bulk_insert(
        setting,
        [
            {"key": "install_id", "value": secrets.token_hex(8)},
            # The event poller reconciles from here on its first start (see events.py).
            {"key": "poll_events.since", "value": str(int(time.time()))},
        ],
    )


def downgrade() -> None:
    op.execute(setting.delete().where(setting.c.key.in_(["install_id", "poll_events.since"])))
    with op.batch_alter_table("payment_link") as batch:
        batch.drop_column("capture_method")
