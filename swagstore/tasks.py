"""The outbox: Stripe side effects written in the same transaction as their cause."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from .models import PaymentLink, Task, db, utcnow


def enqueue(
    kind: str,
    args: dict[str, Any] | None = None,
    *,
    sale_id: int | None = None,
    hold_id: int | None = None,
    run_after: datetime | None = None,
) -> Task:
    """Queue a Stripe side effect in the current transaction."""
    task = Task(
        kind=kind,
        args=args or {},
        sale_id=sale_id,
        hold_id=hold_id,
        run_after=run_after or utcnow(),
    )
    db.session.add(task)
    db.session.flush()
    return task


def enqueue_link_sync(sku: str, store: str) -> None:
    """Queue a switch of the item's payment link to match its stock, if it has a link."""
    has_link = db.session.scalar(
        select(PaymentLink.id).where(
            PaymentLink.sku == sku, PaymentLink.store == store, PaymentLink.retired_at.is_(None)
        )
    )
    if has_link is None:
        return
    # The task reads the stock when it runs, so one pending sync covers any later change.
    pending = db.session.scalar(
        select(Task.id).where(
            Task.kind == "sync_link",
            Task.status == "pending",
            Task.args["sku"].as_string() == sku,
            Task.args["store"].as_string() == store,
        )
    )
    if pending is None:
        enqueue("sync_link", {"sku": sku, "store": store})
