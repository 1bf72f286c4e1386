"""Sales as staff handle them: cash and giveaways, handing over, refunds, the list, the report.

Each action here is one complete unit of work: it commits when it succeeds and rolls
back, raising `Refused` with a message for the staff, when the rules say no. A sale counts
as sold only while it is fulfilled: the report, the CSV and `flask report` agree with the
stock page, and a refunded or voided payment is not a unit sold.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import IO

from sqlalchemy import func, select, update

from . import inventory, offer, tasks
from .models import CardPayment, Product, Sale, Stock, db, utcnow
from .text import one_line

KINDS = ("card", "cash", "giveaway")
STATUSES = ("pending", "fulfilled", "voided", "refund_pending", "refunded", "failed")
# A unit sold: it left the shelf for good and was paid for (or given away). A refund or a
# void, whatever its cause, undoes the sale; a pending payment has not made one yet.
SOLD = "fulfilled"
REPORT_COLUMNS = (
    "sale_id",
    "created_at",
    "sku",
    "name",
    "quantity",
    "amount",
    "currency",
    "kind",
    "status",
    "payment_intent",
    "checkout_session",
    "actor",
    "note",
    "pickup_code",
    "handed_over_at",
)
MAX_QUANTITY = inventory.MAX_UNITS


class Refused(Exception):
    """A staff action the rules do not allow; the message tells the staff why."""


class UnknownStatus(ValueError):
    """A sales filter names no status a sale can have."""


def parse_status(text: str | None) -> str | None:
    """Return the status a sales filter asks for (None: all), refusing an unknown one."""
    if not text:
        return None
    if text not in STATUSES:
        raise UnknownStatus(f"unknown status {text!r}; use one of {', '.join(STATUSES)}")
    return text


def whole_number(text: str | None, what: str, *, minimum: int) -> int:
    """Parse a form field as a whole number of at least `minimum`, or refuse with why."""
    text = (text or "").strip()
    if not text.isdigit() or not text.isascii():
        raise Refused(f"{what}: enter a whole number of at least {minimum}, not {text!r}.")
    number = int(text)
    if number < minimum or number > MAX_QUANTITY:
        raise Refused(f"{what}: enter a whole number from {minimum} to {MAX_QUANTITY}.")
    return number


def sell(
    sku: str, store: str, kind: str, quantity: int, *, actor: str, note: str | None = None
) -> Sale:
    """Hand over units for cash or as a giveaway: the guarded take and its sale, committed."""
    if kind not in ("cash", "giveaway"):
        raise Refused(f"A staff sale is cash or a giveaway, not {kind!r}.")
    product = db.session.get(Product, sku)
    if product is None or db.session.get(Stock, (sku, store)) is None:
        db.session.rollback()
        raise Refused(f"There is no item {sku!r} at this booth.")
    sale = Sale(
        sku=sku,
        store=store,
        quantity=quantity,
        amount=product.price * quantity if kind == "cash" else 0,
        currency=product.currency,
        kind=kind,
        status="fulfilled",
        captured=True,
        actor=actor,
        note=one_line(note, 500) or None,
        # Recorded as it crosses the table: nothing is left to hand over.
        handed_over_at=utcnow(),
        handed_over_by=actor,
    )
    db.session.add(sale)
    db.session.flush()
    level = inventory.take(sku, store, quantity, reason=kind, ref=f"sale:{sale.id}", actor=actor)
    if level is None:
        db.session.rollback()
        stock = db.session.get(Stock, (sku, store))
        available = stock.available if stock else 0
        db.session.rollback()
        raise Refused(
            f"Only {available} of {sku} available, so {quantity} cannot be handed over; "
            "nothing changed."
        )
    db.session.commit()
    return sale


def refund(sale_id: int, *, restock: bool, actor: str) -> Sale:
    """Queue a refund of a fulfilled card sale; put its units back on sale if asked."""
    row = db.session.execute(
        update(Sale)
        .where(
            Sale.id == sale_id,
            Sale.kind == "card",
            Sale.status == "fulfilled",
            Sale.payment_intent_id.is_not(None),
        )
        .values(status="refund_pending", note=f"refund requested by {actor}")
        .returning(Sale.sku, Sale.store, Sale.quantity, Sale.payment_intent_id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        sale = db.session.get(Sale, sale_id)
        db.session.rollback()
        if sale is None:
            raise Refused(f"There is no sale {sale_id}.")
        raise Refused(
            f"Sale {sale_id} is a {sale.status.replace('_', ' ')} {sale.kind} sale; only a "
            "fulfilled card payment can be refunded here."
        )
    tasks.enqueue(
        "refund",
        {"payment_intent": row.payment_intent_id, "reason": "requested_by_customer"},
        sale_id=sale_id,
    )
    if restock:
        inventory.restock(
            row.sku,
            row.store,
            row.quantity,
            reason="refund-return",
            ref=f"sale:{sale_id}",
            actor=actor,
        )
    db.session.commit()
    return db.session.get_one(Sale, sale_id)


@dataclass(frozen=True)
class Pickup:
    """A paid card sale waiting at the table, as the hand-over list shows it."""

    id: int
    code: str
    label: str
    quantity: int
    amount: int
    currency: str
    created_at: datetime
    card: str = ""  # "visa ····4242" when Stripe told us the card


# What a pickup shows, and which sales wait at the table: one definition for the list and
# for the guarded UPDATE that hands a sale over.
PICKUP_COLUMNS = (
    Sale.id,
    Sale.pickup_code,
    Sale.sku,
    Sale.quantity,
    Sale.amount,
    Sale.currency,
    Sale.created_at,
)
WAITING = (Sale.kind == "card", Sale.status == "fulfilled", Sale.handed_over_at.is_(None))


def to_hand_over(store: str, *, limit: int = 200) -> list[Pickup]:
    """List a store's paid card sales not yet handed over, newest first."""
    labels = offer.item_labels(store)
    rows = db.session.execute(
        select(*PICKUP_COLUMNS, CardPayment.brand, CardPayment.last4)
        .outerjoin(CardPayment, CardPayment.payment_intent_id == Sale.payment_intent_id)
        .where(Sale.store == store, *WAITING)
        .order_by(Sale.created_at.desc(), Sale.id.desc())
        .limit(limit)
    )
    return [
        Pickup(
            id,
            code or "",
            labels.get(sku, sku),
            quantity,
            amount,
            currency,
            created_at,
            f"{brand or 'card'} ····{last4}" if last4 else "",
        )
        for id, code, sku, quantity, amount, currency, created_at, brand, last4 in rows
    ]


def hand_over(sale_id: int, store: str, *, actor: str) -> Pickup:
    """Record that a paid card sale's units crossed the table, once: a guarded UPDATE."""
    row = db.session.execute(
        update(Sale)
        .where(Sale.id == sale_id, Sale.store == store, *WAITING)
        .values(handed_over_at=utcnow(), handed_over_by=actor, updated_at=utcnow())
        .returning(*PICKUP_COLUMNS)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        sale = db.session.get(Sale, sale_id)
        db.session.rollback()
        if sale is None or sale.store != store:
            raise Refused(f"There is no sale {sale_id} at this booth.")
        if sale.handed_over_at is not None:
            raise Refused(
                f"Sale {sale_id} (code {sale.pickup_code or '-'}) was already handed over "
                f"by {sale.handed_over_by or 'someone'}; nothing changed."
            )
        raise Refused(
            f"Sale {sale_id} is a {sale.status.replace('_', ' ')} {sale.kind} sale; only a "
            "paid card sale is handed over here."
        )
    labels = offer.item_labels(store)
    db.session.commit()
    id, code, sku, quantity, amount, currency, created_at = row
    return Pickup(id, code or "", labels.get(sku, sku), quantity, amount, currency, created_at)


def uncaptured(store: str) -> int:
    """Count card sales handed over but not yet captured (manual capture lapses in ~7 days)."""
    return db.session.scalar(
        select(func.count())
        .select_from(Sale)
        .where(
            Sale.store == store,
            Sale.kind == "card",
            Sale.status == "fulfilled",
            Sale.captured.is_(False),
        )
    )


def dashboard_url(payment_intent: str | None, secret_key: str | None) -> str | None:
    """Return a payment's page on the Stripe Dashboard (None in the sandbox, which has none)."""
    if not payment_intent or not secret_key:
        return None
    test = "" if secret_key.startswith(("sk_live_", "rk_live_")) else "test/"
    return f"https://dashboard.stripe.com/{test}payments/{payment_intent}"


@dataclass(frozen=True)
class SaleRow:
    """A sale with its item's label, as the sales page and the report show it."""

    sale: Sale
    name: str


def list_sales(store: str, status: str | None = None, *, limit: int = 1000) -> list[SaleRow]:
    """List a store's sales, newest first, optionally only those with one status."""
    stmt = (
        select(Sale, Product.name)
        .join(Product, Product.sku == Sale.sku)
        .where(Sale.store == store)
        .order_by(Sale.created_at.desc(), Sale.id.desc())
        .limit(limit)
    )
    if status:
        stmt = stmt.where(Sale.status == status)
    labels = offer.item_labels(store)
    return [SaleRow(sale, labels.get(sale.sku, name)) for sale, name in db.session.execute(stmt)]


def report_rows(store: str, tz: tzinfo | None = None) -> list[dict[str, str | int]]:
    """Build the report's rows (oldest first): the CSV download and `flask report` share them.

    Times are ISO 8601 with their offset, in the booth's zone `tz` (UTC if None).
    """
    rows = []
    for row in reversed(list_sales(store, limit=1_000_000)):
        sale = row.sale
        rows.append(
            {
                "sale_id": sale.id,
                "created_at": _iso(sale.created_at, tz),
                "sku": sale.sku,
                "name": row.name,
                "quantity": sale.quantity,
                "amount": sale.amount,
                "currency": sale.currency,
                "kind": sale.kind,
                "status": sale.status,
                "payment_intent": sale.payment_intent_id or "",
                "checkout_session": sale.checkout_session_id or "",
                "actor": sale.actor or "",
                "note": sale.note or "",
                "pickup_code": sale.pickup_code or "",
                "handed_over_at": _iso(sale.handed_over_at, tz),
            }
        )
    return rows


def _iso(when: datetime | None, tz: tzinfo | None) -> str:
    if when is None:
        return ""
    return (when.astimezone(tz) if tz else when).isoformat(timespec="seconds")


def write_csv(rows: list[dict[str, str | int]], out: IO[str]) -> None:
    """Write report rows as CSV with a header line."""
    # Text quoted always: a spreadsheet set to split on ";" would otherwise start a new cell
    # (a formula, perhaps) in the middle of a note such as "x;=1+1".
    writer = csv.DictWriter(
        out, fieldnames=REPORT_COLUMNS, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC
    )
    writer.writeheader()
    writer.writerows({k: _inert(v) for k, v in row.items()} for row in rows)


def _inert(value: str | int) -> str | int:
    # A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


@dataclass
class ItemTotal:
    """One item's units sold and takings (per currency: a price may have changed currency)."""

    sku: str
    label: str
    units: int = 0
    takings: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Totals:
    """What a store sold: units per hour, units and takings per item, sales per status."""

    per_hour: list[tuple[datetime, int]]
    per_item: list[ItemTotal]
    takings: dict[str, int]
    by_status: dict[str, int]
    by_kind: dict[str, int]

    @property
    def units(self) -> int:
        """Return the units sold in all."""
        return sum(item.units for item in self.per_item)


def item_totals(store: str) -> dict[str, ItemTotal]:
    """Sum each item's units sold and takings, in catalog order (sold or not)."""
    totals = {sku: ItemTotal(sku, text) for sku, text in offer.item_labels(store).items()}
    rows = db.session.execute(
        select(Sale.sku, Sale.currency, func.sum(Sale.quantity), func.sum(Sale.amount))
        .where(Sale.store == store, Sale.status == SOLD)
        .group_by(Sale.sku, Sale.currency)
    )
    for sku, currency, units, amount in rows:
        item = totals.setdefault(sku, ItemTotal(sku, sku))
        item.units += int(units)
        item.takings[currency] = item.takings.get(currency, 0) + int(amount)
    return totals


def totals(store: str, tz: tzinfo | None = None) -> Totals:
    """Sum a store's sales for the report page and the `report` command (hours in `tz`)."""
    per_hour: Counter[datetime] = Counter()
    takings: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    for row in list_sales(store, limit=1_000_000):
        sale = row.sale
        by_status[sale.status] += 1
        if sale.status != SOLD:
            continue
        by_kind[sale.kind] += sale.quantity
        at = sale.created_at.astimezone(tz) if tz else sale.created_at
        per_hour[at.replace(minute=0, second=0, microsecond=0)] += sale.quantity
        takings[sale.currency] += sale.amount
    sold = [item for item in item_totals(store).values() if item.units]
    return Totals(
        per_hour=_fill_hours(per_hour),
        per_item=sorted(sold, key=lambda item: -item.units),
        takings=dict(takings),
        by_status=dict(by_status),
        by_kind=dict(by_kind),
    )


def _fill_hours(counts: Counter[datetime]) -> list[tuple[datetime, int]]:
    """Return every hour from the first sale to the last, quiet hours included as 0."""
    if not counts:
        return []
    hour, last = min(counts), max(counts)
    filled = []
    while hour <= last:
        filled.append((hour, counts[hour]))
        # Step in UTC: a day that changes the clocks has a 23- or 25-hour wall clock.
        hour = (hour.astimezone(UTC) + timedelta(hours=1)).astimezone(hour.tzinfo)
    return filled
