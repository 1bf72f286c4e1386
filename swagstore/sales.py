"""Sales as staff handle them: cash and giveaways, manual refunds, the list and the report.

Each action here is one complete unit of work: it commits when it succeeds and rolls
back, raising `Refused` with a message for the staff, when the rules say no.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from sqlalchemy import func, select, update

from . import inventory, tasks
from .models import Product, Sale, Stock, db

KINDS = ("card", "cash", "giveaway")
STATUSES = ("pending", "fulfilled", "voided", "refund_pending", "refunded", "failed")
# The counted outcome of a sale: what left the booth and was (or was not) paid for.
SOLD = ("fulfilled", "refund_pending", "refunded")
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
)
MAX_QUANTITY = 1_000_000


class Refused(Exception):
    """A staff action the rules do not allow; the message tells the staff why."""


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
        note=(note or "").strip()[:500] or None,
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
            f"Sale {sale_id} is a {sale.status} {sale.kind} sale; only a fulfilled card "
            "payment can be refunded here."
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
    """A sale with its item's name, as the sales page and the report show it."""

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
    return [SaleRow(sale, name) for sale, name in db.session.execute(stmt)]


def report_rows(store: str) -> list[dict[str, str | int]]:
    """Build the report's rows (oldest first): the CSV download and `flask report` share them."""
    rows = []
    for row in reversed(list_sales(store, limit=1_000_000)):
        sale = row.sale
        rows.append(
            {
                "sale_id": sale.id,
                "created_at": sale.created_at.isoformat(timespec="seconds"),
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
            }
        )
    return rows


def write_csv(rows: list[dict[str, str | int]], out: IO[str]) -> None:
    """Write report rows as CSV with a header line."""
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _inert(v) for k, v in row.items()} for row in rows)


def _inert(value: str | int) -> str | int:
    # A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


@dataclass(frozen=True)
class Totals:
    """What a store sold: units per hour, units and takings per item, sales per status."""

    per_hour: list[tuple[datetime, int]]
    per_item: list[tuple[str, int]]
    takings: dict[str, int]
    by_status: dict[str, int]
    by_kind: dict[str, int]


def totals(store: str) -> Totals:
    """Sum a store's sales for the report page and the `report` command."""
    per_hour: Counter[datetime] = Counter()
    per_item: Counter[str] = Counter()
    takings: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    for row in list_sales(store, limit=1_000_000):
        sale = row.sale
        by_status[sale.status] += 1
        if sale.status not in SOLD:
            continue
        by_kind[sale.kind] += sale.quantity
        per_hour[sale.created_at.replace(minute=0, second=0, microsecond=0)] += sale.quantity
        per_item[sale.sku] += sale.quantity
        if sale.status != "refunded":
            takings[sale.currency] += sale.amount
    return Totals(
        per_hour=_fill_hours(per_hour),
        per_item=per_item.most_common(),
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
        hour += timedelta(hours=1)
    return filled
