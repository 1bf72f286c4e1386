"""Holds: one unit set aside while one visitor pays (modes reserved_checkout, payment_intent).

A hold lives `active` (the unit is reserved and the visitor may pay), then `expiring` (its
time is up and an expire or cancel call to Stripe is queued; the unit is still held), and
ends `settled` (paid) or `released` (Stripe confirmed nothing can pay it any more). Settle
and release each flip the status with one guarded UPDATE, so exactly one of them wins, and
move the stock in the same transaction. This module is the state machine only: it never
calls Stripe nor queues a task; `hold_checkout.py` opens and ends the payments on Stripe,
and `tasks.expire_holds` queues the call that ends each hold `mark_expiring` returns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from . import inventory
from .models import Hold, Stock, Task, db, read_only, utcnow

OPEN = ("active", "expiring")
# Any fixed number: the first key of the PostgreSQL advisory lock on one client's share.
SHARE_LOCK = 5_411_902


class UnknownItem(LookupError):
    """The item is not stocked at this store."""


@dataclass(frozen=True)
class Share:
    """What one client address may hold: `open` holds at a time, `per_minute` new ones."""

    client: str
    open: int
    per_minute: int


class TooMany(Exception):
    """A client address has used its share of holds; it may try again in `retry_after` s.

    `limit` is the one it reached: "open" (holds at a time) or "per_minute".
    """

    def __init__(self, share: Share, limit: str, retry_after: int) -> None:
        super().__init__(f"client {share.client} reached its {limit} share of holds")
        self.share = share
        self.limit = limit
        self.retry_after = retry_after


@dataclass(frozen=True)
class Held:
    """A hold as it was committed: what the Stripe calls need, with no lazy loading."""

    id: int
    sku: str
    store: str
    quantity: int
    created_at: datetime
    checkout_session_id: str | None
    payment_intent_id: str | None
    new: bool


@dataclass(frozen=True)
class Ended:
    """A hold that settle() or release() just ended."""

    id: int
    sku: str
    store: str
    quantity: int
    checkout_session_id: str | None
    payment_intent_id: str | None


@dataclass(frozen=True)
class Expiring:
    """A hold whose time is up, with the session or intent that must be ended on Stripe."""

    id: int
    checkout_session_id: str | None
    payment_intent_id: str | None


def start_hold(
    sku: str, store: str, seconds: int, token: str | None = None, share: Share | None = None
) -> Held | None:
    """Hold one unit for a visitor (or return their open hold); None when none is available.

    Given a client's share, a new hold beyond it raises TooMany and holds nothing.
    """
    # Read first without the write lock: in a drop most visitors find the item sold out,
    # and that answer should not wait behind the writers.
    with read_only():
        held = _active_hold(token) if token is not None else None
        available = db.session.scalar(_AVAILABLE, {"sku": sku, "store": store})
    if held is not None:
        return held
    if available is None:
        raise UnknownItem(sku)
    if available <= 0:
        return None
    if share is not None:
        _within_share(share, utcnow())
    hold = Hold(
        sku=sku,
        store=store,
        quantity=1,
        client_token=token,
        client=share.client if share is not None else None,
        expires_at=utcnow() + timedelta(seconds=seconds),
    )
    db.session.add(hold)
    try:
        db.session.flush()
    except IntegrityError:
        # The same visitor's other request inserted this token since the lookup above.
        db.session.rollback()
        held = _active_hold(token) if token is not None else None
        db.session.rollback()
        return held
    if inventory.hold(sku, store, hold.quantity, ref=f"hold-{hold.id}") is None:
        db.session.rollback()
        return None
    held = Held(hold.id, sku, store, hold.quantity, hold.created_at, None, None, new=True)
    db.session.commit()
    return held


def attach(hold_id: int, *, session_id: str | None = None, intent_id: str | None = None) -> bool:
    """Record the Stripe session or intent that pays an open hold, and commit."""
    values: dict[str, Any] = {}
    if session_id is not None:
        values["checkout_session_id"] = session_id
    if intent_id is not None:
        values["payment_intent_id"] = intent_id
    done = db.session.execute(
        update(Hold)
        .where(Hold.id == hold_id, Hold.status.in_(OPEN))
        .values(values)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return done == 1


def settle(
    hold_id: int,
    *,
    ref: str | None = None,
    session_id: str | None = None,
    intent_id: str | None = None,
) -> Ended | None:
    """Turn a held unit into a sold one unless the hold already ended (caller's transaction).

    Given the paying session or intent, a hold attached to another one is left alone.
    """
    return _end(hold_id, "settled", inventory.settle, ref, _paid_by(session_id, intent_id))


def release(
    hold_id: int,
    *,
    ref: str | None = None,
    session_id: str | None = None,
    intent_id: str | None = None,
) -> Ended | None:
    """Return a held unit to sale unless the hold already ended (caller's transaction)."""
    return _end(hold_id, "released", inventory.release, ref, _paid_by(session_id, intent_id))


def settle_intent(hold_id: int, intent_id: str, *, ref: str | None = None) -> Ended | None:
    """Settle a PaymentIntent's hold unless a cancel of that intent may already be under way.

    Stripe lets a cancel void an authorized intent, so once the hold's cancel task has been
    picked up the payment has lost: the cancel voids it and then releases the unit. A cancel
    task nobody has tried yet is withdrawn instead, and the payment wins.
    """
    paid_by = _paid_by(None, intent_id)
    ended = _end(hold_id, "settled", inventory.settle, ref, paid_by, statuses=("active",))
    if ended is not None:
        return ended
    withdrawn = db.session.execute(
        update(Task)
        .where(
            Task.hold_id == hold_id,
            Task.kind == "cancel",
            Task.status == "pending",
            Task.attempts == 0,
            Task.args["payment_intent"].as_string() == intent_id,
        )
        .values(status="done", finished_at=utcnow(), last_error="withdrawn: the visitor paid")
        .execution_options(synchronize_session=False)
    ).rowcount
    if not withdrawn:
        return None
    return _end(hold_id, "settled", inventory.settle, ref, paid_by, statuses=("expiring",))


def status(hold_id: int) -> str | None:
    """Return a hold's status, or None for an unknown hold."""
    return db.session.scalar(select(Hold.status).where(Hold.id == hold_id))


def mark_expiring(now: datetime | None = None, limit: int = 200) -> list[Expiring]:
    """Mark holds whose time is up `expiring` and return them (caller's transaction).

    A hold with neither session nor intent attached is released at once: nobody was ever
    given a way to pay it. The caller queues the Stripe call that ends each of the others
    in the same transaction, so an expiring hold always has one under way.
    """
    now = now or utcnow()
    due = db.session.execute(
        select(Hold.id, Hold.checkout_session_id, Hold.payment_intent_id)
        .where(Hold.status == "active", Hold.expires_at <= now)
        .order_by(Hold.expires_at)
        .limit(limit)
    ).all()
    expiring = []
    for hold_id, session_id, intent_id in due:
        flipped = db.session.execute(
            update(Hold)
            .where(Hold.id == hold_id, Hold.status == "active")
            # The token goes, so the same visitor's next scan starts a fresh hold.
            .values(status="expiring", client_token=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not flipped:
            continue
        if session_id is None and intent_id is None:
            # The Stripe call that would have opened its payment failed or never came.
            release(hold_id, ref="expired")
        expiring.append(Expiring(hold_id, session_id, intent_id))
    return expiring


def _within_share(share: Share, now: datetime) -> None:
    """Raise TooMany if the client has its share of holds (opens the write transaction)."""
    # Counted and inserted one client at a time: SQLite's BEGIN IMMEDIATE takes the write
    # lock with this first statement; PostgreSQL takes a lock on this client's share.
    if db.session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(share.client.encode()).digest()[:4], signed=True)
        db.session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": SHARE_LOCK, "key": key}
        )
    since = now - timedelta(minutes=1)
    recent = Hold.created_at > since
    held, started, oldest = db.session.execute(
        select(
            func.count().filter(Hold.status.in_(OPEN)),
            func.count().filter(recent),
            func.min(Hold.created_at).filter(recent),
        ).where(Hold.client == share.client, or_(Hold.status.in_(OPEN), recent))
    ).one()
    if started >= share.per_minute:
        db.session.rollback()
        raise TooMany(share, "per_minute", max(1, int((oldest - since).total_seconds()) + 1))
    if held >= share.open:
        db.session.rollback()
        # A hold ends when it is paid or expires; a minute is a fair time to come back.
        raise TooMany(share, "open", 60)


_ACTIVE_HOLD = select(
    Hold.id,
    Hold.sku,
    Hold.store,
    Hold.quantity,
    Hold.created_at,
    Hold.checkout_session_id,
    Hold.payment_intent_id,
).where(Hold.client_token == bindparam("token"), Hold.status == "active")
# What settle() and release() answer about the hold they ended, after its id.
_ENDED = (Hold.sku, Hold.store, Hold.quantity, Hold.checkout_session_id, Hold.payment_intent_id)
# An item staff took off sale has nothing to hold, whatever its count.
_AVAILABLE = select(case((Stock.off_sale, 0), else_=Stock.on_hand - Stock.reserved)).where(
    Stock.sku == bindparam("sku"), Stock.store == bindparam("store")
)


def _active_hold(token: str) -> Held | None:
    row = db.session.execute(_ACTIVE_HOLD, {"token": token}).one_or_none()
    return None if row is None else Held(*row, new=False)


def _paid_by(session_id: str | None, intent_id: str | None) -> list[ColumnElement[bool]]:
    """Match a hold not attached to another session or intent than the one given."""
    clauses = []
    if session_id is not None:
        column = Hold.checkout_session_id
        clauses.append(or_(column.is_(None), column == session_id))
    if intent_id is not None:
        column = Hold.payment_intent_id
        clauses.append(or_(column.is_(None), column == intent_id))
    return clauses


def _end(
    hold_id: int,
    status: str,
    move: Any,
    ref: str | None,
    paid_by: list[ColumnElement[bool]],
    statuses: tuple[str, ...] = OPEN,
) -> Ended | None:
    row = db.session.execute(
        update(Hold)
        .where(Hold.id == hold_id, Hold.status.in_(statuses), *paid_by)
        .values(status=status, ended_at=utcnow(), client_token=None)
        .returning(*_ENDED)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        return None
    if move(row.sku, row.store, row.quantity, ref=ref or f"hold-{hold_id}") is None:
        # A hold's units are in `reserved` until it ends; anything else is a broken invariant.
        raise RuntimeError(f"hold {hold_id}: its {row.quantity} reserved unit(s) are missing")
    return Ended(hold_id, *row)
