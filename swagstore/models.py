"""The store's tables, designed once for every mode (SQLAlchemy 2.0 style)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    MetaData,
    String,
    Text,
    false,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime, stored naive so SQLite and PostgreSQL agree."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def utcnow() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    registry = registry(
        # Named constraints make migrations and error messages predictable.
        metadata=MetaData(
            naming_convention={
                "ix": "ix_%(column_0_label)s",
                "uq": "uq_%(table_name)s_%(column_0_name)s",
                "ck": "ck_%(table_name)s_%(constraint_name)s",
                "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
                "pk": "pk_%(table_name)s",
            }
        ),
        type_annotation_map={datetime: UTCDateTime(), dict[str, Any]: JSON},
    )


db = SQLAlchemy(model_class=Base)


# A transaction that only reads: SQLite begins it DEFERRED with `query_only` set (see
# swagstore._sqlite_on_begin), so it never takes the write lock and a write in it fails
# at once; PostgreSQL begins it READ ONLY. Pass them to engine.connect().execution_options()
# for a connection of your own.
READ_ONLY: dict[str, Any] = {"swagstore_read_only": True, "postgresql_readonly": True}

View = TypeVar("View", bound=Callable[..., Any])


@contextmanager
def read_only() -> Iterator[None]:
    """Read in a read-only transaction that ends (rolled back) with the block.

    A read (a sold-out answer, say) then never queues behind the writers. In a transaction
    already open the reads simply run in it, and it stays open.
    """
    if db.session().in_transaction():
        yield
        return
    db.session.connection(execution_options=READ_ONLY)
    try:
        yield
    finally:
        db.session.rollback()


def writes(view: View) -> View:
    """Mark a GET view that writes, so its request does not begin read-only."""
    view.writes = True  # type: ignore[attr-defined]
    return view


class Store(db.Model):
    """A booth: one stock row per product, one set of payment links."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Product(db.Model):
    """A SKU from the catalog; variants of one product share a `group`."""

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[int]  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[str | None] = mapped_column(String(500))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    group: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(default=0)
    stripe_product_id: Mapped[str | None] = mapped_column(String(255))
    stripe_price_id: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        Index("ix_product_group", "group"),
    )


class Stock(db.Model):
    """Units of one SKU at one store; only inventory.py changes these numbers."""

    sku: Mapped[str] = mapped_column(ForeignKey("product.sku"), primary_key=True)
    store: Mapped[str] = mapped_column(ForeignKey("store.id"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(default=0)
    reserved: Mapped[int] = mapped_column(default=0)
    # Staff took it off sale: its link is off and the kiosk hides it; its stock and history stay.
    off_sale: Mapped[bool] = mapped_column(default=False, server_default=false())

    __table_args__ = (
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
    )

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockEvent(db.Model):
    """Append-only log of every stock change; feeds the live stream and the audit trail."""

    __tablename__ = "stock_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    store: Mapped[str] = mapped_column(String(64))
    on_hand: Mapped[int]
    reserved: Mapped[int]
    reason: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str | None] = mapped_column(String(255))
    actor: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        ForeignKeyConstraint(["sku", "store"], ["stock.sku", "stock.store"]),
        Index("ix_stock_event_sku_store", "sku", "store"),
    )


class PaymentLink(db.Model):
    """A Stripe Payment Link for one (sku, store); retired links are kept for reconcile."""

    __tablename__ = "payment_link"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # plink_…
    sku: Mapped[str] = mapped_column(String(64))
    store: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(500))
    price_id: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)  # last state confirmed by Stripe
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]
    # automatic | manual, as the link was made: its payments are handled by it, never by
    # today's LINK_CAPTURE. None: made before it was recorded (the payment is asked).
    capture_method: Mapped[str | None] = mapped_column(String(20))
    # Stripe's restrictions.completed_sessions as last seen: the sessions completed through
    # the link, and the limit at which Stripe switches it off by itself (None: no limit).
    session_count: Mapped[int | None]
    session_limit: Mapped[int | None]

    __table_args__ = (
        ForeignKeyConstraint(["sku", "store"], ["stock.sku", "stock.store"]),
        # At most one current link per (sku, store).
        Index(
            "uq_payment_link_current",
            "sku",
            "store",
            unique=True,
            sqlite_where=text("retired_at IS NULL"),
            postgresql_where=text("retired_at IS NULL"),
        ),
    )


class StripeEvent(db.Model):
    """A Stripe event id, inserted with its effects so each event is applied once."""

    __tablename__ = "stripe_event"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # evt_…
    type: Mapped[str] = mapped_column(String(100))
    # applied | ignored | unmatched (kept for staff: unknown sku or store)
    outcome: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Hold(db.Model):
    """Units set aside for one checkout in progress (modes reserved_checkout, payment_intent)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    store: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(default=1)
    # active -> settled (paid) | released (Stripe confirmed it can no longer be paid);
    # expiring = an expire/cancel call is queued, the units are still held.
    status: Mapped[str] = mapped_column(String(20), default="active")
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    client_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    # A pseudonym of the client address that asked for it (security.client_tag): each
    # address gets a bounded share of holds.
    client: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        ForeignKeyConstraint(["sku", "store"], ["stock.sku", "stock.store"]),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "status IN ('active', 'expiring', 'settled', 'released')", name="status_known"
        ),
        Index("ix_hold_status_expires_at", "status", "expires_at"),
        Index("ix_hold_client_created_at", "client", "created_at"),
    )


# A sale whose buyer may still come to the table: paid for, its unit taken, not handed over.
OPEN_PICKUP = "pickup_code IS NOT NULL AND handed_over_at IS NULL AND status = 'fulfilled'"


class Sale(db.Model):
    """One sale: a card payment, cash or a giveaway, with what became of it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    store: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(default=1)
    amount: Mapped[int] = mapped_column(default=0)  # minor units actually charged
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(20))  # card | cash | giveaway
    # pending (awaiting a delayed payment) | fulfilled | voided | refund_pending | refunded
    # | failed
    status: Mapped[str] = mapped_column(String(20))
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("hold.id"))
    captured: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # What the buyer shows at the table (card sales); staff record when it was handed over.
    pickup_code: Mapped[str | None] = mapped_column(String(8))
    handed_over_at: Mapped[datetime | None]
    handed_over_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("kind IN ('card', 'cash', 'giveaway')", name="kind_known"),
        CheckConstraint(
            "status IN ('pending', 'fulfilled', 'voided', 'refund_pending', 'refunded', 'failed')",
            name="status_known",
        ),
        Index("ix_sale_status", "status"),
        Index("ix_sale_created_at", "created_at"),
        # A code names one open sale of a store: the table never has two buyers saying "K7".
        Index(
            "uq_sale_open_pickup_code",
            "store",
            "pickup_code",
            unique=True,
            sqlite_where=text(OPEN_PICKUP),
            postgresql_where=text(OPEN_PICKUP),
        ),
    )


class CardPayment(db.Model):
    """The card that paid a PaymentIntent, from its charge.succeeded event: staff match a
    buyer without a code by it. Kept apart from the sale, which may be recorded after it."""

    __tablename__ = "card_payment"

    payment_intent_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    brand: Mapped[str | None] = mapped_column(String(32))
    last4: Mapped[str] = mapped_column(String(4))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(db.Model):
    """A Stripe side effect queued in the same transaction as its cause (the outbox)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    # capture | cancel | refund | expire_session | sync_link
    kind: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sale_id: Mapped[int | None] = mapped_column(ForeignKey("sale.id"))
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("hold.id"))
    # pending | running | done | failed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="status_known"),
        Index("ix_task_status_run_after", "status", "run_after"),
    )


class Setting(db.Model):
    """Small durable values the app keeps for itself (e.g. the event poller's cursor)."""

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# The Setting that names this database: made once (by the revision that added it, which
# init-db runs), random, so no two databases, nor one re-initialised, share it.
INSTALL_ID_KEY = "install_id"


def install_id() -> str:
    """Return this database's install id (made once, when its schema was first upgraded)."""
    with read_only():
        value = db.session.scalar(select(Setting.value).where(Setting.key == INSTALL_ID_KEY))
    if value is None:
        raise RuntimeError("the database has no install id: run `flask --app swagstore init-db`")
    return value


def idempotency_key(store: str, *parts: object) -> str:
    """Return a Stripe idempotency key no other database or store ever sends."""
    return "-".join(["swagstore", install_id(), store, *map(str, parts)])


class LoginFailure(db.Model):
    """A wrong staff password, kept a few minutes so every worker sees the lock-out."""

    __tablename__ = "login_failure"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    remote: Mapped[str | None] = mapped_column(String(64))


class StaffSession(db.Model):
    """A staff login: the cookie carries a token, and only this row makes it valid.

    Logging out deletes the row; a changed ADMIN_PASSWORD no longer matches `proof`; the
    row lapses at `expires_at`. Neither column is of use to someone who reads the database.
    """

    __tablename__ = "staff_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    # HMAC of the password it was opened with, keyed by the token.
    proof: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
