"""What booth staff see and steer besides sales: stock, the audit trail, stuck Stripe tasks.

Each action is one complete unit of work: it commits when it succeeds and rolls back,
raising `sales.Refused` with a message for the staff, when the rules say no.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from . import inventory, offer, sales
from .models import PaymentLink, Stock, StockEvent, StripeEvent, Task, db, utcnow
from .sales import Refused
from .text import one_line

MAX_REASON = 200


@dataclass(frozen=True)
class StockRow:
    """One (sku, store) as the stock page shows it: counts, link, label, what it took."""

    item: offer.Listing
    link_state: str
    label: str
    takings: dict[str, int]


def stock_rows(store: str) -> list[StockRow]:
    """List every item at a store with its counts, takings and the state of its link."""
    links = db.session.execute(
        select(PaymentLink.id, PaymentLink.active).where(
            PaymentLink.store == store, PaymentLink.retired_at.is_(None)
        )
    )
    active = {link_id: is_on for link_id, is_on in links}
    totals = sales.item_totals(store)
    return [
        StockRow(
            item,
            _link_state(item, active),
            totals[item.sku].label if item.sku in totals else item.name,
            totals[item.sku].takings if item.sku in totals else {},
        )
        for item in offer.listings(store)
    ]


def _link_state(item: offer.Listing, active: dict[str, bool]) -> str:
    if item.payment_link_id is None:
        return "no link"
    if item.stopped_by_stripe:
        # Stripe switched it off by itself: every session its limit allowed was completed.
        return "sold out on Stripe's side" + (", switching on" if item.on_offer else "")
    is_on, wanted = active.get(item.payment_link_id), item.on_offer
    if is_on == wanted:
        return "on" if is_on else "off"
    # Stock moved and the sync_link task has not yet told Stripe.
    return "switching on" if wanted else "switching off"


def restock(sku: str, store: str, quantity: int, *, actor: str) -> inventory.Level:
    """Add delivered units to an item's stock, committed."""
    level = inventory.restock(sku, store, quantity, actor=actor)
    return _commit(level, f"There is no item {sku!r} at this booth.")


def count(sku: str, store: str, counted: int, reason: str, *, actor: str) -> inventory.Level:
    """Set an item's on-hand units to a stock-take count, with the staff's reason, committed."""
    reason = one_line(reason, MAX_REASON)
    if not reason:
        raise Refused("Counted stock: say why the count differs (e.g. 'stock-take', 'damaged').")
    level = inventory.adjust(sku, store, counted, ref=reason, actor=actor)
    if level is None:
        stock = db.session.get(Stock, (sku, store))
        db.session.rollback()
        if stock is not None:
            raise Refused(
                f"Counted stock of {sku} cannot be {counted}: {stock.reserved} units are held "
                "for checkouts in progress; nothing changed."
            )
    return _commit(level, f"There is no item {sku!r} at this booth.")


def set_on_sale(sku: str, store: str, on_sale: bool, *, actor: str) -> inventory.Level:
    """Take an item off sale or put it back, committed: its link follows, its history stays."""
    change = inventory.put_on_sale if on_sale else inventory.take_off_sale
    level = change(sku, store, actor=actor)
    if level is None:
        stock = db.session.get(Stock, (sku, store))
        db.session.rollback()
        if stock is not None:
            state = "on sale" if on_sale else "off sale"
            raise Refused(f"{sku} is already {state}; nothing changed.")
    return _commit(level, f"There is no item {sku!r} at this booth.")


def _commit(level: inventory.Level | None, missing: str) -> inventory.Level:
    if level is None:
        db.session.rollback()
        raise Refused(missing)
    db.session.commit()
    return level


def activity(store: str, *, limit: int = 500) -> list[StockEvent]:
    """List the newest stock changes at a store: the audit trail, newest first."""
    return list(
        db.session.scalars(
            select(StockEvent)
            .where(StockEvent.store == store)
            .order_by(StockEvent.id.desc())
            .limit(limit)
        )
    )


def open_tasks() -> list[Task]:
    """List Stripe tasks not yet done (pending, running or failed), oldest first."""
    return list(
        db.session.scalars(
            select(Task).where(Task.status.in_(("pending", "running", "failed"))).order_by(Task.id)
        )
    )


def unmatched_events(limit: int = 100) -> list[StripeEvent]:
    """List Stripe events for an item or store this booth does not know, newest first."""
    return list(
        db.session.scalars(
            select(StripeEvent)
            .where(StripeEvent.outcome == "unmatched")
            .order_by(StripeEvent.received_at.desc())
            .limit(limit)
        )
    )


def retry(task_id: int) -> Task:
    """Make a pending or failed task due now, with a fresh round of attempts, committed."""
    done = db.session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status.in_(("pending", "failed")))
        .values(status="pending", run_after=utcnow(), attempts=0, finished_at=None)
        .returning(Task.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if done is None:
        task = db.session.get(Task, task_id)
        db.session.rollback()
        if task is None:
            raise Refused(f"There is no task {task_id}.")
        raise Refused(
            f"Task {task_id} is {task.status}; only a pending or failed task is retried."
        )
    db.session.commit()
    return db.session.get_one(Task, task_id)
