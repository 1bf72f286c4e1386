"""The store's schema as create_all made it before migrations (the baseline).

A database made by an older release has exactly these tables; init-db stamps it with
this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-12-03 16:09:42.832053
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    op.create_index(op.f("ix_login_failure_at"), "login_failure", ["at"], unique=False)

    op.create_table(
        "product",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("image", sa.String(length=500), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("group", sa.String(length=64), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("stripe_product_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_price_id", sa.String(length=255), nullable=True),
        sa.CheckConstraint("price >= 0", name=op.f("ck_product_price_not_negative")),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_product")),
    )
    op.create_index("ix_product_group", "product", ["group"], unique=False)

    op.create_table(
        "setting",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_setting")),
    )
    op.create_table(
        "store",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store")),
    )
    op.create_table(
        "stripe_event",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_event")),
    )
    op.create_table(
        "stock",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.CheckConstraint("reserved <= on_hand", name=op.f("ck_stock_reserved_within_on_hand")),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_stock_reserved_not_negative")),
        sa.ForeignKeyConstraint(["sku"], ["product.sku"], name=op.f("fk_stock_sku_product")),
        sa.ForeignKeyConstraint(["store"], ["store.id"], name=op.f("fk_stock_store_store")),
        sa.PrimaryKeyConstraint("sku", "store", name=op.f("pk_stock")),
    )
    op.create_table(
        "hold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("client_token", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'expiring', 'settled', 'released')",
            name=op.f("ck_hold_status_known"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_hold_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["sku", "store"], ["stock.sku", "stock.store"], name=op.f("fk_hold_sku_stock")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hold")),
        sa.UniqueConstraint("checkout_session_id", name=op.f("uq_hold_checkout_session_id")),
        sa.UniqueConstraint("client_token", name=op.f("uq_hold_client_token")),
        sa.UniqueConstraint("payment_intent_id", name=op.f("uq_hold_payment_intent_id")),
    )
    op.create_index("ix_hold_status_expires_at", "hold", ["status", "expires_at"], unique=False)

    op.create_table(
        "payment_link",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("price_id", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["sku", "store"], ["stock.sku", "stock.store"], name=op.f("fk_payment_link_sku_stock")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_link")),
    )
    op.create_index(
        "uq_payment_link_current",
        "payment_link",
        ["sku", "store"],
        unique=True,
        sqlite_where=sa.text("retired_at IS NULL"),
        postgresql_where=sa.text("retired_at IS NULL"),
    )

    op.create_table(
        "stock_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sku", "store"], ["stock.sku", "stock.store"], name=op.f("fk_stock_event_sku_stock")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_event")),
    )
    op.create_index("ix_stock_event_sku_store", "stock_event", ["sku", "store"], unique=False)

    op.create_table(
        "sale",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("hold_id", sa.Integer(), nullable=True),
        sa.Column("captured", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('card', 'cash', 'giveaway')", name=op.f("ck_sale_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'fulfilled', 'voided', 'refund_pending', 'refunded', 'failed')",
            name=op.f("ck_sale_status_known"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_sale_quantity_positive")),
        sa.ForeignKeyConstraint(["hold_id"], ["hold.id"], name=op.f("fk_sale_hold_id_hold")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale")),
        sa.UniqueConstraint("checkout_session_id", name=op.f("uq_sale_checkout_session_id")),
        sa.UniqueConstraint("payment_intent_id", name=op.f("uq_sale_payment_intent_id")),
    )
    op.create_index("ix_sale_created_at", "sale", ["created_at"], unique=False)
    op.create_index("ix_sale_status", "sale", ["status"], unique=False)

    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("sale_id", sa.Integer(), nullable=True),
        sa.Column("hold_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_task_status_known")
        ),
        sa.ForeignKeyConstraint(["hold_id"], ["hold.id"], name=op.f("fk_task_hold_id_hold")),
        sa.ForeignKeyConstraint(["sale_id"], ["sale.id"], name=op.f("fk_task_sale_id_sale")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
    )
    op.create_index("ix_task_status_run_after", "task", ["status", "run_after"], unique=False)


def downgrade() -> None:
    op.drop_table("task")
    op.drop_table("sale")
    op.drop_table("stock_event")
    op.drop_table("payment_link")
    op.drop_table("hold")
    op.drop_table("stock")
    op.drop_table("stripe_event")
    op.drop_table("store")
    op.drop_table("setting")
    op.drop_table("product")
    op.drop_table("login_failure")
