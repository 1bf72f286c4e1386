"""The outbox: Stripe side effects written in the same transaction as their cause.

A task row is queued with the stock change that needs it and run after that transaction
commits, outside any transaction, with a Stripe idempotency key derived from its id (and
a new round of keys once Stripe has kept a failure under the last one). The background
worker (worker.py, or `flask run-tasks`) claims due tasks with a guarded UPDATE and a
lease, so two runners never run the same task at once and a crashed runner's task is
picked up when its lease lapses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session

from . import hold_checkout, holds, inventory, models, payments, stripe_sync
from .models import Hold, PaymentLink, Sale, Stock, Task, db, read_only, utcnow

# Retries start quickly (a blip) and settle at a few minutes (an outage).
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
# Longer than the SDK's worst case for one call (timeout x retries), so a lease only
# lapses when its runner is gone.
LEASE_SECONDS = 120


def enqueue(
    kind: str,
    args: dict[str, Any] | None = None,
    *,
    sale_id: int | None = None,
    hold_id: int | None = None,
    run_after: datetime | None = None,
) -> Task:
    """Queue a Stripe side effect in the current transaction."""
    args = dict(args or {})
    # The store the call is for goes into its idempotency key, whichever booth runs it.
    args.setdefault("store", _store_of(sale_id, hold_id))
    task = Task(
        kind=kind,
        args=args,
        sale_id=sale_id,
        hold_id=hold_id,
        run_after=run_after or utcnow(),
    )
    db.session.add(task)
    db.session.flush()
    return task


def _store_of(sale_id: int | None, hold_id: int | None) -> str:
    owner = (sale_id is not None and db.session.get(Sale, sale_id)) or (
        hold_id is not None and db.session.get(Hold, hold_id)
    )
    return owner.store if owner else current_app.config["STORE_ID"]


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


@event.listens_for(Session, "before_commit")
def _queue_link_syncs(session: Session) -> None:
    # Inventory marks each item whose availability crossed zero; its link switch is queued
    # here, in the transaction that moved the stock, so the two commit together or not at all.
    for sku, store in sorted(session.info.pop(inventory.LINKS_STALE, ())):
        enqueue_link_sync(sku, store)


@event.listens_for(Session, "after_rollback")
def _forget_stale_links(session: Session) -> None:
    session.info.pop(inventory.LINKS_STALE, None)


def idempotency_key(task: Claimed, *parts: object) -> str:
    """Return the Stripe idempotency key of a task's call: install id, store, task id."""
    store = task.args.get("store") or current_app.config["STORE_ID"]
    if task.args.get("key_round"):
        # Stripe kept a failure under the earlier key (see _retry); this round starts afresh.
        parts = (*parts, "round", task.args["key_round"])
    return models.idempotency_key(store, "task", task.id, *parts)


# Running tasks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A task this runner holds the lease on."""

    id: int
    kind: str
    args: dict[str, Any]
    sale_id: int | None
    hold_id: int | None
    attempts: int


Runner = Callable[[Claimed], None]
# kind -> function that makes the Stripe call and records what Stripe answered.
RUNNERS: dict[str, Runner] = {}
# kind -> function that records a task Stripe rejected for good (the reason as argument).
ON_FAILED: dict[str, Callable[[Claimed, str], None]] = {}


def claim(lease_seconds: float = LEASE_SECONDS) -> Claimed | None:
    """Take the lease on the next due task, or return None when none is due."""
    now = utcnow()
    due = or_(
        (Task.status == "pending") & (Task.run_after <= now),
        (Task.status == "running") & (Task.locked_until < now),
    )
    while True:
        # Looked up without the write lock: an idle worker asks this several times a second.
        with read_only():
            task_id = db.session.scalar(
                select(Task.id).where(due).order_by(Task.run_after, Task.id).limit(1)
            )
        if task_id is None:
            return None
        # The guard repeats the due test, so of two runners racing for one row only one wins.
        row = db.session.execute(
            update(Task)
            .where(Task.id == task_id, due)
            .values(
                status="running",
                attempts=Task.attempts + 1,
                locked_until=now + timedelta(seconds=lease_seconds),
            )
            .returning(Task.id, Task.kind, Task.args, Task.sale_id, Task.hold_id, Task.attempts)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        db.session.commit()
        if row is not None:
            return Claimed(*row)


def run(task: Claimed) -> str:
    """Run one claimed task outside any transaction; return its new status."""
    runner = RUNNERS.get(task.kind)
    if runner is None:
        return _finish(task, "failed", f"no runner for task kind {task.kind!r}")
    try:
        runner(task)
    except payments.Transient as e:
        db.session.rollback()
        return _retry(task, str(e), new_key=e.key_spent)
    except payments.Rejected as e:
        db.session.rollback()
        reason = f"Stripe refused: {e}" + (f" ({e.code})" if e.code else "")
        if task.kind in ON_FAILED:
            ON_FAILED[task.kind](task, reason)
        return _finish(task, "failed", reason)
    return _finish(task, "done", None)


def run_due(limit: int | None = None, lease_seconds: float = LEASE_SECONDS) -> int:
    """Run due tasks until none is left (or `limit` ran); return how many ran."""
    ran = 0
    while limit is None or ran < limit:
        task = claim(lease_seconds)
        if task is None:
            break
        run(task)
        ran += 1
    return ran


def run_round(lease_seconds: float = LEASE_SECONDS, limit: int | None = None) -> int:
    """Start ending holds whose time is up, then run due tasks; return how many ran."""
    expire_holds()
    return run_due(limit, lease_seconds)


def expire_holds(now: datetime | None = None, limit: int = 200) -> int:
    """Start ending holds whose time is up: queue their expire or cancel call, and commit."""
    expiring = holds.mark_expiring(now, limit)
    for hold in expiring:
        if hold.checkout_session_id is not None:
            args = {"checkout_session": hold.checkout_session_id}
            enqueue("expire_session", args, hold_id=hold.id)
        elif hold.payment_intent_id is not None:
            enqueue("cancel", {"payment_intent": hold.payment_intent_id}, hold_id=hold.id)
    db.session.commit()
    return len(expiring)


def backoff_seconds(attempts: int) -> float:
    """Return the delay before retry number `attempts`: exponential, capped, jittered."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    # Full jitter in the upper half: runners that failed together do not retry together.
    return delay * random.uniform(0.5, 1.0)


def _retry(task: Claimed, error: str, new_key: bool = False) -> str:
    delay = backoff_seconds(task.attempts) * current_app.config["TASK_BACKOFF_SCALE"]
    values: dict[str, Any] = {}
    if new_key:
        # Safe because every task checks the object's state when Stripe refuses its call
        # (already captured, cancelled or refunded), whatever the earlier key did.
        values["args"] = {**task.args, "key_round": task.args.get("key_round", 0) + 1}
    db.session.execute(
        update(Task)
        .where(Task.id == task.id, Task.status == "running")
        .values(
            status="pending",
            run_after=utcnow() + timedelta(seconds=delay),
            locked_until=None,
            last_error=error,
            **values,
        )
    )
    db.session.commit()
    return "pending"


def _finish(task: Claimed, status: str, error: str | None) -> str:
    db.session.execute(
        update(Task)
        .where(Task.id == task.id, Task.status == "running")
        .values(status=status, locked_until=None, last_error=error, finished_at=utcnow())
    )
    db.session.commit()
    return status


# What each kind of task does -------------------------------------------------------------


def _sale(task: Claimed) -> Sale:
    sale = db.session.get(Sale, task.sale_id)
    if sale is None or sale.payment_intent_id is None:
        raise payments.Rejected(f"task {task.id} has no sale with a payment intent")
    return sale


def _set_sale(sale_id: int | None, **values: Any) -> None:
    db.session.execute(
        update(Sale).where(Sale.id == sale_id).values(updated_at=utcnow(), **values)
    )
    db.session.commit()


def _capture(task: Claimed) -> None:
    intent_id = _sale(task).payment_intent_id
    db.session.commit()
    gw = payments.gateway()
    try:
        gw.capture_payment_intent(intent_id, idempotency_key(task))
    except payments.Rejected:
        if gw.retrieve_payment_intent(intent_id).status != "succeeded":
            raise
    # Also after staff retried a capture that had failed: the sale stands again.
    _set_sale(task.sale_id, status="fulfilled", captured=True, note=None)


def _cancel(task: Claimed) -> None:
    if task.sale_id is None and task.hold_id is not None:
        _end_hold(task)
        return
    intent_id = _sale(task).payment_intent_id
    db.session.commit()
    gw = payments.gateway()
    try:
        gw.cancel_payment_intent(intent_id, idempotency_key(task))
    except payments.Rejected:
        status = gw.retrieve_payment_intent(intent_id).status
        if status == "succeeded":
            # The payment was captured when made: only a refund gives the money back.
            _refund(task, idempotency_key(task, "refund"))
            return
        if status != "canceled":
            raise
    _set_sale(task.sale_id, status="voided")


def _end_hold(task: Claimed) -> None:
    """Expire or cancel an expiring hold's payment; the hold is released once it is dead."""
    hold_checkout.end_on_stripe(task.hold_id, idempotency_key(task))


def _refund(task: Claimed, key: str | None = None) -> None:
    intent_id = _sale(task).payment_intent_id
    db.session.commit()
    gw = payments.gateway()
    params: dict[str, Any] = {"payment_intent": intent_id, "metadata": {"sale": str(task.sale_id)}}
    if task.args.get("reason"):
        params["reason"] = task.args["reason"]
    try:
        refund = gw.create_refund(params, key or idempotency_key(task))
    except payments.Rejected as e:
        if e.code == "charge_already_refunded":
            _set_sale(task.sale_id, status="refunded")
            return
        if key is not None or gw.retrieve_payment_intent(intent_id).status != "requires_capture":
            raise
        # Only authorized when made (manual capture): a void gives the hold back.
        gw.cancel_payment_intent(intent_id, idempotency_key(task, "cancel"))
        _set_sale(task.sale_id, status="voided", note="authorization cancelled, not refunded")
        return
    if refund.status == "succeeded":
        _set_sale(task.sale_id, status="refunded")
    else:
        # The sale stays refund_pending until a refund.updated event confirms it.
        _set_sale(task.sale_id, status="refund_pending")


def _sync_link(task: Claimed) -> None:
    """Make the item's link on Stripe match its stock: on or off, limit = count + available."""
    sku, store = task.args["sku"], task.args["store"]
    gw = payments.gateway()
    for round_ in range(10):
        link_id, available = _link_and_available(sku, store)
        recorded = stripe_sync.recorded_sessions(link_id) if link_id else 0
        db.session.commit()
        if link_id is None:
            return
        key = idempotency_key(task, task.attempts, round_)
        state = stripe_sync.align_link(gw, link_id, available, key, recorded)
        # Confirm against the stock (and the sales recorded) as they are now: if they moved
        # while we called Stripe, call again, so whichever task calls last leaves Stripe
        # matching the final stock.
        now = _link_and_available(sku, store), stripe_sync.recorded_sessions(link_id)
        if now == ((link_id, available), recorded):
            stripe_sync.save_link_state(link_id, state)  # in the re-read's transaction
            return
        db.session.commit()
    raise payments.Transient(f"stock of {sku} kept changing while its link was switched")


def _link_and_available(sku: str, store: str) -> tuple[str | None, int]:
    row = db.session.execute(
        select(PaymentLink.id, Stock.on_hand - Stock.reserved, Stock.off_sale)
        .join(Stock, (Stock.sku == PaymentLink.sku) & (Stock.store == PaymentLink.store))
        .where(
            PaymentLink.sku == sku, PaymentLink.store == store, PaymentLink.retired_at.is_(None)
        )
    ).one_or_none()
    if row is None:
        return None, 0
    # Off sale: the link sells nothing, whatever is on the shelf.
    return row[0], 0 if row[2] else max(row[1], 0)


def _sale_failed(task: Claimed, reason: str) -> None:
    if task.sale_id is None:
        return
    _set_sale(task.sale_id, status="failed", note=f"{task.kind} failed: {reason}")


RUNNERS.update(
    capture=_capture,
    cancel=_cancel,
    refund=_refund,
    sync_link=_sync_link,
    expire_session=_end_hold,
)
ON_FAILED.update(capture=_sale_failed, cancel=_sale_failed, refund=_sale_failed)
