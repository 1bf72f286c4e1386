"""Holds: one unit set aside while one visitor pays (modes reserved_checkout, payment_intent).

A hold lives `active` (the unit is reserved and the visitor may pay), then `expiring` (its
time is up and an expire or cancel call to Stripe is queued; the unit is still held), and
ends `settled` (paid) or `released` (Stripe confirmed nothing can pay it any more). Settle
and release each flip the status with one guarded UPDATE, so exactly one of them wins, and
move the stock in the same transaction.

Stripe is never called inside a transaction: a hold is committed before its Checkout
Session or PaymentIntent is created, and released at once if that creation fails.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import catalog, inventory, payments, tasks
from .models import Hold, Product, Stock, Task, db, read_only, utcnow

OPEN = ("active", "expiring")
# Stripe refuses a Checkout Session that expires sooner than 30 minutes after creation.
STRIPE_MIN_SESSION_SECONDS = 30 * 60
# Room for the create call itself, so expires_at is still 30 minutes away when Stripe sees it.
SESSION_MARGIN_SECONDS = 5 * 60


class UnknownItem(LookupError):
    """The item is not stocked at this store."""


class PaymentUnavailable(Exception):
    """Stripe could not open a payment for a hold right now."""


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
class SoldOut:
    """No unit to hold; what else the store has in stock."""

    sku: str
    others: list[catalog.Offer]


@dataclass(frozen=True)
class Checkout:
    """An open Checkout Session for a hold."""

    hold_id: int
    url: str


@dataclass(frozen=True)
class Intent:
    """An open PaymentIntent for a hold, with what the card page needs."""

    hold_id: int
    sku: str
    name: str
    amount: int
    currency: str
    payment_intent_id: str
    client_secret: str


def visitor_token(visitor: str, sku: str, store: str) -> str:
    """Return the client token that names one visitor's hold on one item."""
    return hashlib.sha256(f"{visitor}\0{store}\0{sku}".encode()).hexdigest()


def start_hold(sku: str, store: str, seconds: int, token: str | None = None) -> Held | None:
    """Hold one unit for a visitor (or return their open hold); None when none is available."""
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
    hold = Hold(
        sku=sku,
        store=store,
        quantity=1,
        client_token=token,
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
    held = _snapshot(hold, new=True)
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


def expire_due(now: datetime | None = None, limit: int = 200) -> int:
    """Start ending holds whose time is up: queue their expire or cancel call, and commit."""
    now = now or utcnow()
    due = db.session.execute(
        select(Hold.id, Hold.checkout_session_id, Hold.payment_intent_id)
        .where(Hold.status == "active", Hold.expires_at <= now)
        .order_by(Hold.expires_at)
        .limit(limit)
    ).all()
    count = 0
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
        count += 1
        if session_id is not None:
            tasks.enqueue("expire_session", {"checkout_session": session_id}, hold_id=hold_id)
        elif intent_id is not None:
            tasks.enqueue("cancel", {"payment_intent": intent_id}, hold_id=hold_id)
        else:
            # Nobody was ever given a way to pay it (the Stripe call failed or never came).
            release(hold_id, ref="expired")
    db.session.commit()
    return count


def end_on_stripe(hold_id: int, key: str) -> str:
    """Expire or cancel an expiring hold's payment on Stripe; release the unit once it is dead.

    Returns "released", or "paid" when the payment won the race (its event settles the
    hold). Raises payments.Transient to be retried.
    """
    hold = db.session.get(Hold, hold_id)
    if hold is None or hold.status not in OPEN:
        db.session.rollback()
        return "ended"
    session_id, intent_id = hold.checkout_session_id, hold.payment_intent_id
    db.session.rollback()  # no transaction open across the Stripe call
    gw = payments.gateway()
    if session_id is not None:
        try:
            gw.expire_checkout_session(session_id, key)
        except payments.Rejected:
            state = gw.retrieve_checkout_session(session_id).status
            if state != "expired":
                return _lost_race(state, f"checkout session {session_id}")
    elif intent_id is not None:
        try:
            gw.cancel_payment_intent(intent_id, key)
        except payments.Rejected:
            state = gw.retrieve_payment_intent(intent_id).status
            if state != "canceled":
                return _lost_race(state, f"payment intent {intent_id}")
    release(hold_id, ref="expired", session_id=session_id, intent_id=intent_id)
    db.session.commit()
    return "released"


def open_checkout(
    sku: str,
    store: str,
    token: str | None,
    *,
    hold_seconds: int,
    public_url: str,
    capture: str = "automatic",
) -> Checkout | SoldOut:
    """Hold a unit and open a Checkout Session for it (or return the visitor's open one)."""
    held = start_hold(sku, store, hold_seconds, token)
    if held is None:
        return sold_out(sku, store)
    gw = payments.gateway()
    if held.checkout_session_id is not None:
        try:
            url = gw.retrieve_checkout_session(held.checkout_session_id).url
        except payments.PaymentsError as e:
            raise PaymentUnavailable(str(e)) from e
        return Checkout(held.id, url or "")
    product = _product(sku)
    metadata = _metadata(held)
    lifetime = max(hold_seconds, STRIPE_MIN_SESSION_SECONDS) + SESSION_MARGIN_SECONDS
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [_line_item(product)],
        "metadata": metadata,
        "client_reference_id": str(held.id),
        # From the hold's own clock, so a repeated create is the same request to Stripe.
        "expires_at": int(held.created_at.timestamp()) + lifetime,
        "success_url": f"{public_url}/buy/{sku}/thanks",
        "cancel_url": f"{public_url}/buy/{sku}/cancelled",
        # No hold in the intent's metadata: the session's events settle this hold, and an
        # intent carrying one would be taken for the payment_intent mode's own.
        "payment_intent_data": {
            "metadata": {"sku": held.sku, "store": held.store},
            "capture_method": capture,
        },
    }
    try:
        session = gw.create_checkout_session(params, _key(held, "session"))  # type: ignore[arg-type]
    except payments.PaymentsError as e:
        _give_up(held)
        raise PaymentUnavailable(str(e)) from e
    if not attach(held.id, session_id=session.id):
        raise PaymentUnavailable("the hold ended before its checkout opened")
    return Checkout(held.id, session.url or "")


def open_intent(sku: str, store: str, token: str | None, *, hold_seconds: int) -> Intent | SoldOut:
    """Hold a unit and create a manual-capture PaymentIntent for it (or return the open one)."""
    held = start_hold(sku, store, hold_seconds, token)
    if held is None:
        return sold_out(sku, store)
    product = _product(sku)
    gw = payments.gateway()
    try:
        if held.payment_intent_id is not None:
            intent = gw.retrieve_payment_intent(held.payment_intent_id)
        else:
            params: dict[str, Any] = {
                "amount": product.price * held.quantity,
                "currency": product.currency,
                "capture_method": "manual",
                "description": product.name,
                "metadata": _metadata(held),
            }
            intent = gw.create_payment_intent(params, _key(held, "intent"))  # type: ignore[arg-type]
    except payments.PaymentsError as e:
        _give_up(held)
        raise PaymentUnavailable(str(e)) from e
    if held.payment_intent_id is None and not attach(held.id, intent_id=intent.id):
        raise PaymentUnavailable("the hold ended before its payment opened")
    return Intent(
        hold_id=held.id,
        sku=sku,
        name=product.name,
        amount=intent.amount,
        currency=intent.currency,
        payment_intent_id=intent.id,
        client_secret=intent.client_secret or "",
    )


def sold_out(sku: str, store: str) -> SoldOut:
    """Describe a sold-out item with the other items still in stock."""
    with read_only():
        others = catalog.in_stock(store, except_sku=sku)
    return SoldOut(sku, others)


_ACTIVE_HOLD = select(
    Hold.id,
    Hold.sku,
    Hold.store,
    Hold.quantity,
    Hold.created_at,
    Hold.checkout_session_id,
    Hold.payment_intent_id,
).where(Hold.client_token == bindparam("token"), Hold.status == "active")
_AVAILABLE = select(Stock.on_hand - Stock.reserved).where(
    Stock.sku == bindparam("sku"), Stock.store == bindparam("store")
)


def _active_hold(token: str) -> Held | None:
    row = db.session.execute(_ACTIVE_HOLD, {"token": token}).one_or_none()
    return None if row is None else Held(*row, new=False)


def _snapshot(hold: Hold, *, new: bool) -> Held:
    return Held(
        id=hold.id,
        sku=hold.sku,
        store=hold.store,
        quantity=hold.quantity,
        created_at=hold.created_at,
        checkout_session_id=hold.checkout_session_id,
        payment_intent_id=hold.payment_intent_id,
        new=new,
    )


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
        .returning(
            Hold.sku,
            Hold.store,
            Hold.quantity,
            Hold.checkout_session_id,
            Hold.payment_intent_id,
        )
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        return None
    if move(row.sku, row.store, row.quantity, ref=ref or f"hold-{hold_id}") is None:
        # A hold's units are in `reserved` until it ends; anything else is a broken invariant.
        raise RuntimeError(f"hold {hold_id}: its {row.quantity} reserved unit(s) are missing")
    return Ended(
        hold_id,
        row.sku,
        row.store,
        row.quantity,
        row.checkout_session_id,
        row.payment_intent_id,
    )


def _give_up(held: Held) -> None:
    """Release a hold whose payment could not be opened; nobody holds a way to pay it."""
    if not held.new:
        return  # the request that made the hold owns it and decides
    release(held.id, ref="payment unavailable")
    db.session.commit()


def _lost_race(state: str | None, what: str) -> str:
    if state in ("complete", "requires_capture", "succeeded", "processing"):
        return "paid"
    raise payments.Rejected(f"{what} is {state}: it can be neither ended nor settled")


@dataclass(frozen=True)
class _Price:
    name: str
    price: int
    currency: str
    stripe_price_id: str | None


def _product(sku: str) -> _Price:
    product = db.session.get(Product, sku)
    if product is None:
        db.session.rollback()
        raise UnknownItem(sku)
    price = _Price(product.name, product.price, product.currency, product.stripe_price_id)
    # No transaction (SQLite's write lock, under BEGIN IMMEDIATE) stays open across Stripe calls.
    db.session.rollback()
    return price


def _metadata(held: Held) -> dict[str, str]:
    return {"sku": held.sku, "store": held.store, "hold": str(held.id)}


def _line_item(product: _Price) -> dict[str, Any]:
    if product.stripe_price_id:
        return {"price": product.stripe_price_id, "quantity": 1}
    return {
        "price_data": {
            "currency": product.currency,
            "unit_amount": product.price,
            "product_data": {"name": product.name},
        },
        "quantity": 1,
    }


def _key(held: Held, what: str) -> str:
    # The creation time keeps keys distinct across databases that reuse hold ids.
    return f"swagstore-hold-{held.id}-{int(held.created_at.timestamp() * 1e6)}-{what}"
