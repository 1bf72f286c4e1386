"""The sandbox's own tables: Stripe objects, events and their deliveries, and test controls."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..models import db


class SandboxObject(db.Model):
    """One Stripe object as the API returns it, plus fields Stripe keeps to itself."""

    __tablename__ = "sandbox_object"

    seq: Mapped[int] = mapped_column(primary_key=True)  # list order: newest first
    id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(64))  # Stripe's `object`, e.g. checkout.session
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Not shown by Stripe: a link's line items and payment_intent_data, a session's PI data.
    private: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_sandbox_object_type", "type"),)


class SandboxEvent(db.Model):
    """An event in Stripe's envelope, as listed at /v1/events."""

    __tablename__ = "sandbox_event"

    seq: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int]
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_sandbox_event_type", "type"),)


class SandboxDelivery(db.Model):
    """One event's way to the webhook: retried with backoff until it answers 2xx."""

    __tablename__ = "sandbox_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255))
    # pending | delivered | failed (gave up after MAX_ATTEMPTS)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_at: Mapped[float]  # epoch seconds
    locked_until: Mapped[float | None]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_sandbox_delivery_status_next_at", "status", "next_at"),)


class SandboxIdempotency(db.Model):
    """A stored response, replayed for a request with the same Idempotency-Key."""

    __tablename__ = "sandbox_idempotency"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[int]


class SandboxFault(db.Model):
    """An injected fault: the next `remaining` calls under `path_prefix` fail this way."""

    __tablename__ = "sandbox_fault"

    id: Mapped[int] = mapped_column(primary_key=True)
    path_prefix: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(20))  # error | timeout
    remaining: Mapped[int]
    seconds: Mapped[float] = mapped_column(default=0)


class SandboxLedger(db.Model):
    """Money movements, one row each, so tests can prove "captured once, refunded once"."""

    __tablename__ = "sandbox_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    # charge (captured at pay) | authorize | capture | cancel | refund | fail
    action: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[str] = mapped_column(String(255))  # the PaymentIntent
    amount: Mapped[int]
    created: Mapped[int]


class SandboxSetting(db.Model):
    """Small sandbox values, e.g. the test clock's offset from real time."""

    __tablename__ = "sandbox_setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
