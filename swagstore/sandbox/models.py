"""The sandbox's own tables: Stripe objects, events and their deliveries, and test controls.

They live in a SQLite file of their own (the `sandbox` bind, SANDBOX_DATABASE), never in
the store's database: a live store has none of them. A throwaway stand-in, so init-db makes
them with create_all; they have no migrations.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Engine, Index, String, Text, inspect
from sqlalchemy.orm import Mapped, mapped_column

from ..models import db

BIND = "sandbox"


def engine() -> Engine:
    """Return the sandbox's engine, for statements that bypass the session."""
    return db.engines[BIND]


def create_tables() -> None:
    """Create the sandbox's tables in its own file (harmless to run again).

    A file made by an older version gains the columns added since (all nullable), so a
    booth's rehearsal data survives an upgrade without migrations.
    """
    db.create_all(bind_key=BIND)
    with engine().begin() as conn:
        found = inspect(conn)
        for table in db.metadatas[BIND].sorted_tables:
            have = {c["name"] for c in found.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have and column.nullable:
                    kind = column.type.compile(engine().dialect)
                    conn.exec_driver_sql(
                        f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'
                    )


class SandboxModel(db.Model):
    """A table in the sandbox's file."""

    __abstract__ = True
    __bind_key__ = BIND


class SandboxObject(SandboxModel):
    """One Stripe object as the API returns it, plus fields Stripe keeps to itself."""

    __tablename__ = "sandbox_object"

    seq: Mapped[int] = mapped_column(primary_key=True)  # list order: newest first
    id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(64))  # Stripe's `object`, e.g. checkout.session
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Not shown by Stripe: a link's line items and payment_intent_data, a session's PI data.
    private: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_sandbox_object_type", "type"),)


class SandboxEvent(SandboxModel):
    """An event in Stripe's envelope, as listed at /v1/events."""

    __tablename__ = "sandbox_event"

    seq: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int]
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_sandbox_event_type", "type"),)


class SandboxDelivery(SandboxModel):
    """One event's way to the webhook: retried with backoff until it answers 2xx."""

    __tablename__ = "sandbox_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255))
    # A webhook endpoint registered through the API; None: the store app's own webhook.
    endpoint_id: Mapped[str | None] = mapped_column(String(255))
    # pending | delivered | failed (gave up after MAX_ATTEMPTS, or its endpoint was deleted)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_at: Mapped[float]  # epoch seconds
    locked_until: Mapped[float | None]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_sandbox_delivery_status_next_at", "status", "next_at"),)


class SandboxIdempotency(SandboxModel):
    """A stored response, replayed for a request with the same Idempotency-Key."""

    __tablename__ = "sandbox_idempotency"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    # Digests of the endpoint (16 characters), ":", and of the parameters (47).
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[int]


class SandboxFault(SandboxModel):
    """An injected fault: the next `remaining` calls under `path_prefix` fail this way."""

    __tablename__ = "sandbox_fault"

    id: Mapped[int] = mapped_column(primary_key=True)
    path_prefix: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(20))  # faults.MODES
    remaining: Mapped[int]
    seconds: Mapped[float] = mapped_column(default=0)


class SandboxLedger(SandboxModel):
    """Money movements, one row each, so tests can prove "captured once, refunded once"."""

    __tablename__ = "sandbox_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    # charge (captured at pay) | authorize | capture | cancel | refund | fail
    action: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[str] = mapped_column(String(255))  # the PaymentIntent
    amount: Mapped[int]
    created: Mapped[int]


class SandboxSetting(SandboxModel):
    """Small sandbox values, e.g. the test clock's offset from real time."""

    __tablename__ = "sandbox_setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
