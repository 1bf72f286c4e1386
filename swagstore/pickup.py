"""Pickup: the short code a card buyer shows at the table, and what the buyer's page says.

A code is given when a card sale is fulfilled (the unit is theirs), so a payment that
found the item sold out never has one. A code names one open sale of a store (paid, not
yet handed over): a partial unique index (models.OPEN_PICKUP) guarantees it, and a
concurrent twin fails its insert and is retried by fulfilment.apply.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from itertools import product

from sqlalchemy import bindparam, func, or_, select, text

from . import offer
from .models import OPEN_PICKUP, Sale, db

# No 0/O, 1/I/L, and no S/5 or Z/2 pairs to misread across a table: 27 characters.
ALPHABET = "346789ABCDEFGHJKMNPQRTUVWXY"
TWO = ["".join(pair) for pair in product(ALPHABET, repeat=2)]

_OPEN = (Sale.store == bindparam("store"), text(OPEN_PICKUP))
# Both read only the partial unique index on (store, pickup_code): no sale row is loaded.
_OPEN_TWO = select(func.count(Sale.id)).where(*_OPEN, func.length(Sale.pickup_code) == 2)
_IS_OPEN = select(Sale.id).where(*_OPEN, Sale.pickup_code == bindparam("code")).limit(1)


def new_code(store: str) -> str:
    """Return a code no open sale of the store has (caller's transaction): two characters
    while most are free, three when the booth is that busy."""
    # No autoflush: a sale being recorded is inserted once, at commit, with its code. The
    # codes of sales this transaction holds but has not flushed count as taken too.
    pending = {s.pickup_code for s in db.session.new if isinstance(s, Sale) and s.store == store}
    with db.session.no_autoflush:
        in_use = db.session.scalar(_OPEN_TWO, {"store": store}) + sum(
            len(code) == 2 for code in pending if code
        )
        # Past half full, a random pick would mostly hit codes that look like ones in use.
        # Below it, a random two-character code is free at the first or second try.
        length = 2 if len(TWO) - in_use > len(TWO) // 2 else 3
        while True:
            code = "".join(secrets.choice(ALPHABET) for _ in range(length))
            if code not in pending and not _taken(store, code):
                return code


def _taken(store: str, code: str) -> bool:
    return db.session.scalar(_IS_OPEN, {"store": store, "code": code}) is not None


@dataclass(frozen=True)
class BuyerView:
    """A card payment as its buyer's page tells it."""

    state: str  # waiting | pending | ready | handed_over | refunded | voided | failed
    item: str | None = None
    amount: int = 0
    currency: str = "usd"
    code: str | None = None
    oversold: bool = False
    handed_over_at: datetime | None = None


FINAL = frozenset({"handed_over", "refunded", "voided", "failed"})


def buyer_view(reference: str) -> BuyerView:
    """Tell a buyer what became of their payment, by its Checkout Session or PaymentIntent id."""
    sale = db.session.scalar(
        select(Sale).where(
            Sale.kind == "card",
            or_(Sale.checkout_session_id == reference, Sale.payment_intent_id == reference),
        )
    )
    if sale is None:
        # Stripe's event has not reached the booth yet (or never will: not a sale of ours).
        return BuyerView("waiting")
    view = {
        "item": offer.item_labels(sale.store).get(sale.sku, sale.sku),
        "amount": sale.amount,
        "currency": sale.currency,
        # Only a sale that got its unit has a code; a refund without one never had the unit.
        "oversold": sale.pickup_code is None,
    }
    if sale.status == "fulfilled" and sale.handed_over_at is not None:
        return BuyerView("handed_over", handed_over_at=sale.handed_over_at, **view)
    if sale.status == "fulfilled":
        return BuyerView("ready", code=sale.pickup_code, **view)
    if sale.status in ("refund_pending", "refunded"):
        return BuyerView("refunded", **view)
    return BuyerView(sale.status, **view)  # pending | voided | failed
