"""The Stripe side of holds: open a hold's payment on Stripe, and end it there.

`open_checkout` (mode reserved_checkout) and `open_intent` (mode payment_intent) commit a
hold first (`holds.start_hold`), then create its Checkout Session or PaymentIntent, then
attach it: no transaction is open across any Stripe call, and a hold whose payment could
not be opened is released at once (`PaymentUnavailable` when a retry may help,
`PaymentRefused` when Stripe said no for good). `end_on_stripe` (run by the task queue)
expires or cancels an expiring hold's payment and releases the unit only once Stripe
confirms that nothing can pay it any more. Keys derive from the hold, so a repeated call
is a replay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from . import offer, payments
from .holds import OPEN, Held, Share, UnknownItem, attach, release, start_hold
from .models import Hold, Product, db, idempotency_key, read_only

# Stripe refuses a Checkout Session that expires sooner than 30 minutes after creation.
STRIPE_MIN_SESSION_SECONDS = 30 * 60
# Room for the create call itself, so expires_at is still 30 minutes away when Stripe sees it.
SESSION_MARGIN_SECONDS = 5 * 60


class PaymentUnavailable(Exception):
    """Stripe could not open a payment for a hold right now: a later try may work."""


class PaymentRefused(Exception):
    """Stripe refused to open a payment for good (a bad key, a price it will not charge)."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SoldOut:
    """No unit to hold; what else the store has in stock."""

    sku: str
    name: str
    others: list[offer.Offer]


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


def open_checkout(
    sku: str,
    store: str,
    token: str | None,
    *,
    hold_seconds: int,
    public_url: str,
    capture: str = "automatic",
    share: Share | None = None,
) -> Checkout | SoldOut:
    """Hold a unit and open a Checkout Session for it (or return the visitor's open one)."""
    held = start_hold(sku, store, hold_seconds, token, share)
    if held is None:
        return sold_out(sku, store)
    gw = payments.gateway()
    if held.checkout_session_id is not None:
        try:
            url = gw.retrieve_checkout_session(held.checkout_session_id).url
        except payments.Rejected as e:
            raise PaymentRefused(str(e), e.code) from e
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
        # Stripe fills in the session id: the buyer's page follows this sale (views/paid.py).
        "success_url": f"{public_url}/paid/{{CHECKOUT_SESSION_ID}}",
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
        raise _unavailable(e) from e
    if not attach(held.id, session_id=session.id):
        raise PaymentUnavailable("the hold ended before its checkout opened")
    return Checkout(held.id, session.url or "")


def open_intent(
    sku: str, store: str, token: str | None, *, hold_seconds: int, share: Share | None = None
) -> Intent | SoldOut:
    """Hold a unit and create a manual-capture PaymentIntent for it (or return the open one)."""
    held = start_hold(sku, store, hold_seconds, token, share)
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
        raise _unavailable(e) from e
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
        labels = offer.item_labels(store)
        others = offer.in_stock(store, except_sku=sku, labels=labels)
    return SoldOut(sku, labels.get(sku, sku), others)


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


def _unavailable(error: payments.PaymentsError) -> PaymentUnavailable | PaymentRefused:
    """Tell a refusal for good from a passing fault: only the second is worth a retry."""
    if isinstance(error, payments.Rejected):
        return PaymentRefused(str(error), error.code)
    return PaymentUnavailable(str(error))


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
    return idempotency_key(held.store, "hold", held.id, what)
