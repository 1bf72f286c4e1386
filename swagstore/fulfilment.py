"""What each Stripe event does to stock and sales, shared by the webhook, poller and reconcile.

`apply(event)` runs one transaction: it looks the event id up, takes stock and records the
sale, queues the Stripe side effects (capture, cancel, refund) as tasks that run after
commit, and records the event id (its primary key makes a second delivery a no-op, even a
concurrent one).
Events are plain dicts in Stripe's JSON shape, so this module never sees the SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import event_schema, holds, inventory, payments, pickup, stripe_sync, tasks
from .models import CardPayment, Hold, PaymentLink, Sale, Stock, Store, StripeEvent, db, utcnow


class MalformedEvent(ValueError):
    """An event lacks a field its type must have."""


@dataclass(frozen=True)
class Result:
    """What apply() made of an event: applied, duplicate, ignored or unmatched."""

    outcome: str
    note: str | None = None


@dataclass(frozen=True)
class Effect:
    """What a handler did: the outcome to record for the event, and why."""

    outcome: str
    note: str | None = None
    keep_payload: bool = False


Handler = Callable[[dict[str, Any]], Effect]


def apply(event: dict[str, Any]) -> Result:
    """Apply a Stripe event at most once and commit; a repeat changes nothing."""
    try:
        return _apply_once(event)
    except IntegrityError:
        if _seen(event["id"]):
            return Result("duplicate")
    # Another event recorded the same checkout session meanwhile (say reconcile and the
    # webhook): go again, and the handler finds the sale the other one recorded.
    try:
        return _apply_once(event)
    except IntegrityError:
        if _seen(event["id"]):
            return Result("duplicate")
        raise


def _seen(event_id: str) -> bool:
    seen = db.session.get(StripeEvent, event_id) is not None
    db.session.rollback()
    return seen


# Built once: on the webhook's path, building a statement per call cost more than running it.
_events = StripeEvent.__table__
_SEEN = select(_events.c.id).where(_events.c.id == bindparam("event_id"))
_RECORD = insert(_events)
_SALE_FOR = select(Sale).where(Sale.checkout_session_id == bindparam("session_id"))


def _apply_once(event: dict[str, Any]) -> Result:
    try:
        result = _apply_uncommitted(event)
        db.session.commit()
    except Exception:
        # A duplicate or a locked database: leave nothing half-done.
        db.session.rollback()
        raise
    _log_unmatched(event, result)
    return result


def _apply_uncommitted(event: dict[str, Any]) -> Result:
    """Apply one event in the session's transaction, recording its id, without committing."""
    try:
        # Whatever brought it (webhook, poll, reconcile), a bad shape never reaches a handler.
        event_schema.check(event)
    except event_schema.Invalid as e:
        raise MalformedEvent(str(e)) from e
    handler = HANDLERS.get(event.get("type") or "")
    if handler is None:
        # Touches no table: an event we do not handle is not recorded either.
        return Result("ignored", f"event type {event.get('type')!r} is not handled")
    try:
        # The transaction holds SQLite's write lock from its first statement, so nothing
        # records this event between this check and the insert below; on PostgreSQL a
        # concurrent twin fails that insert on the primary key and rolls back whole.
        if db.session.connection().scalar(_SEEN, {"event_id": event["id"]}) is not None:
            return Result("duplicate")
        dated = _sale_time.set(_late_event_time(event))
        try:
            effect = handler(event["data"]["object"])
        finally:
            _sale_time.reset(dated)
        db.session.connection().execute(
            _RECORD,
            {
                "id": event["id"],
                "type": event["type"],
                "outcome": effect.outcome,
                "note": effect.note,
                "payload": event if effect.keep_payload else None,
            },
        )
    except (KeyError, TypeError) as e:
        raise MalformedEvent(f"event {event.get('id')!r} lacks {e}") from e
    return Result(effect.outcome, effect.note)


def _log_unmatched(event: dict[str, Any], result: Result) -> None:
    if result.outcome == "unmatched":
        current_app.logger.warning("Stripe event %s unmatched: %s", event["id"], result.note)


# Checkout sessions (mode payment_link, and a payment that outlived its hold) -------------


# Notes on a pending sale: waiting for its delayed payment, or for the resolve_payment task.
AWAITING_DELAYED = "awaiting a delayed payment"
ASKING = "asking Stripe how the payment was made"


def _session_completed(session: dict[str, Any]) -> Effect:
    meta = session.get("metadata") or {}
    if not meta.get("sku") or not meta.get("store"):
        return Effect("ignored", "not a Swagstore checkout (no sku/store metadata)")
    if _sale_for(session["id"]) is not None:
        return Effect("ignored", f"checkout session {session['id']} already recorded")
    if session.get("payment_status") != "unpaid":
        # Paid means captured, whatever the link's setting: an oversold one is refunded.
        return _take(session, _new_sale(session, "pending"), manual=False)
    # Unpaid is an authorization (manual capture) or a delayed method: the payment says which.
    capture = _capture_method(session)
    if capture == "manual" or db.session.get(Store, meta["store"]) is None:
        # (A store not ours is kept for staff, untouched, whatever its capture.)
        return _take(session, _new_sale(session, "pending"), manual=True)
    if capture == "automatic":
        # A delayed method (a bank debit): nothing is paid yet, so nothing leaves stock.
        _new_sale(session, "pending", note=AWAITING_DELAYED)
        return Effect("applied", "awaiting async_payment_succeeded")
    sale = _flushed(_new_sale(session, "pending", note=ASKING))
    tasks.enqueue("resolve_payment", sale_id=sale.id)
    return Effect("applied", "asking Stripe how the payment was made")


def _capture_method(session: dict[str, Any]) -> str | None:
    """Return how an unpaid session's payment was made, from the event or our link's record."""
    intent = session.get("payment_intent")
    if isinstance(intent, dict) and intent.get("status"):
        return "manual" if intent["status"] == "requires_capture" else "automatic"
    link_id = _id_of(session.get("payment_link"))
    link = db.session.get(PaymentLink, link_id) if link_id else None
    # None: a hold's session or a link made before its capture was recorded.
    return link.capture_method if link is not None else None


def resolve_payment(sale_id: int, intent: dict[str, Any], session: dict[str, Any]) -> str:
    """Handle an unpaid session's sale by its PaymentIntent as Stripe has it; commit.

    Called by the resolve_payment task after it asked Stripe (outside any transaction).
    """
    sale = db.session.get(Sale, sale_id)
    if sale is None or sale.status != "pending" or sale.note != ASKING:
        db.session.rollback()
        return "already handled"
    status = intent.get("status")
    if status == "requires_capture":
        sale.note = None
        effect = _take(session, sale, manual=True)
    elif status == "canceled":
        sale.status, sale.note = "voided", "its authorization was cancelled on Stripe"
        effect = Effect("applied", sale.note)
    else:
        # Processing, or already succeeded: the async_payment_succeeded event takes the units.
        sale.note = AWAITING_DELAYED
        effect = Effect("applied", sale.note)
    db.session.commit()
    return effect.note or effect.outcome


def _resolve_task(task: tasks.Claimed) -> None:
    sale = db.session.get(Sale, task.sale_id)
    ids = (sale.payment_intent_id, sale.checkout_session_id) if sale else (None, None)
    db.session.commit()
    if None in ids:
        raise payments.Rejected(f"task {task.id} has no sale with a checkout payment")
    gw = payments.gateway()
    intent = gw.retrieve_payment_intent(ids[0]).to_dict(for_json=True)
    session = gw.retrieve_checkout_session(ids[1]).to_dict(for_json=True)
    resolve_payment(task.sale_id, intent, session)


def _async_succeeded(session: dict[str, Any]) -> Effect:
    meta = session.get("metadata") or {}
    if not meta.get("sku") or not meta.get("store"):
        return Effect("ignored", "not a Swagstore checkout (no sku/store metadata)")
    sale = _sale_for(session["id"]) or _new_sale(session, "pending")
    if sale.status != "pending":
        return Effect("ignored", f"sale {sale.id} is already {sale.status}")
    return _take(session, sale, manual=False)


def _async_failed(session: dict[str, Any]) -> Effect:
    hold_id = _hold_id(session)
    if hold_id is not None:
        # Nothing will pay this session any more: its held unit goes back on sale.
        holds.release(hold_id, ref=session["id"], session_id=session["id"])
    sale = _sale_for(session["id"])
    if sale is None or sale.status != "pending":
        return Effect("ignored", "no pending sale for this checkout session")
    if session.get("payment_link"):
        # Stripe counted the session against the link's limit, yet no unit left the stock.
        tasks.enqueue_link_sync(sale.sku, sale.store)
    sale.status, sale.note = "failed", "the delayed payment failed; nothing was taken"
    return Effect("applied", sale.note)


def _session_expired(session: dict[str, Any]) -> Effect:
    hold_id = _hold_id(session)
    if hold_id is None:
        return Effect("ignored", "no hold on this checkout session")
    ended = holds.release(hold_id, ref=session["id"], session_id=session["id"])
    return Effect("applied" if ended else "ignored", f"hold {hold_id} released")


def _take(session: dict[str, Any], sale: Sale, manual: bool) -> Effect:
    """Settle the session's hold if it still has one, else take from what is available."""
    hold_id = _hold_id(session)
    ended = None
    if hold_id is not None:
        ended = holds.settle(hold_id, ref=session["id"], session_id=session["id"])
    if ended is None:
        # No hold, or it was released before the payment came (or belongs to another
        # payment): sell it like a link's.
        return _fulfil(session, sale, manual)
    sale.hold_id = ended.id
    return _fulfilled(sale, manual, f"sold {sale.quantity} x {sale.sku} (hold {ended.id})")


def _hold_id(obj: dict[str, Any]) -> int | None:
    value = (obj.get("metadata") or {}).get("hold")
    return int(value) if value and str(value).isdigit() else None


def _fulfilled(sale: Sale, manual: bool, note: str) -> Effect:
    sale.status, sale.captured = "fulfilled", not manual
    # The unit is the buyer's: the code they show at the table.
    sale.pickup_code = pickup.new_code(sale.store)
    if manual:
        tasks.enqueue("capture", sale_id=_flushed(sale).id)
    return Effect("applied", note)


def _flushed(sale: Sale) -> Sale:
    """Return the sale with its id, inserting it now if it has none yet."""
    if sale.id is None:
        db.session.flush()
    return sale


def _fulfil(session: dict[str, Any], sale: Sale, manual: bool) -> Effect:
    """Take the units for a paid (or, manual, authorized) session, or undo the payment."""
    sku, store, quantity = sale.sku, sale.store, sale.quantity
    # A session of the item's payment link moved Stripe's count with the stock.
    by_link = bool(session.get("payment_link"))
    level = inventory.take(
        sku, store, quantity, reason="sale", ref=session["id"], counted_by_link=by_link
    )
    if level is not None:
        return _fulfilled(sale, manual, f"sold {quantity} x {sku}")
    known = db.session.get(Stock, (sku, store)) is not None
    why = "sold out" if known else f"unknown item {sku!r} at store {store!r}"
    if not known and db.session.get(Store, store) is None:
        # Maybe another booth's store on the same Stripe account: keep it for staff, but do
        # not refund a payment that may be theirs.
        sale.status, sale.note = "failed", f"{why}; not voided: the store is not ours"
        return Effect("unmatched", sale.note, keep_payload=True)
    if sale.payment_intent_id is None or sale.amount == 0:
        sale.status, sale.note = "voided", f"{why}; nothing was charged"
    elif manual:
        # The unit was never taken, so a void returns nothing to stock.
        sale.status, sale.note = "voided", f"{why}; authorization cancelled"
        tasks.enqueue("cancel", sale_id=_flushed(sale).id)
    else:
        sale.status, sale.note = "refund_pending", f"{why}; refunding"
        tasks.enqueue("refund", sale_id=_flushed(sale).id)
    if known:
        return Effect("applied", sale.note)
    return Effect("unmatched", sale.note, keep_payload=True)


# A sale's time, set around the handler rather than passed through every handler's
# signature: only the two places that make a card sale read it.
_sale_time: ContextVar[datetime | None] = ContextVar("sale_time", default=None)
LATE = timedelta(minutes=1)


def _late_event_time(event: dict[str, Any]) -> datetime | None:
    """Return when a late event happened on Stripe, or None to date its sale now.

    After an outage, polling brings sales in minutes or hours late; dated on arrival they
    would land in the wrong hour of the report. An event on time is dated on arrival: its
    `created` is whole seconds of Stripe's clock, not the laptop's. (event_schema has made
    sure `created` is a whole number; reconcile's events carry none.)
    """
    created = event.get("created")
    if created is None:
        return None
    happened = datetime.fromtimestamp(created, UTC)
    return happened if happened < utcnow() - LATE else None


def _sale_for(session_id: str) -> Sale | None:
    return db.session.scalar(_SALE_FOR, {"session_id": session_id})


def _new_sale(session: dict[str, Any], status: str, note: str | None = None) -> Sale:
    meta = session.get("metadata") or {}
    sale = Sale(
        sku=str(meta["sku"]),
        store=str(meta["store"]),
        quantity=_quantity(session),
        amount=session.get("amount_total") or 0,
        currency=session.get("currency") or "usd",
        kind="card",
        status=status,
        checkout_session_id=session["id"],
        payment_intent_id=_id_of(session.get("payment_intent")),
        note=note,
        created_at=_sale_time.get() or utcnow(),
    )
    # Not flushed: its one INSERT goes at commit, with the status the handler settles on.
    db.session.add(sale)
    return sale


def _quantity(session: dict[str, Any]) -> int:
    """Return the units bought: metadata when the link is fixed, else the line items."""
    meta = session.get("metadata") or {}
    if meta.get("quantity"):
        return int(meta["quantity"])
    items = (session.get("line_items") or {}).get("data") or []
    return sum(int(item.get("quantity") or 0) for item in items) or 1


def _id_of(value: Any) -> str | None:
    """Return an object's id whether Stripe sent it as an id or expanded."""
    if isinstance(value, dict):
        return value.get("id")
    return value


# PaymentIntents of the payment_intent mode (metadata.hold) ------------------------------


def _intent_authorized(intent: dict[str, Any]) -> Effect:
    """Settle an authorized intent's hold and queue its capture, or void it."""
    meta = intent.get("metadata") or {}
    hold_id = _hold_id(intent)
    if hold_id is None or not meta.get("sku") or not meta.get("store"):
        return Effect("ignored", "not a hold's payment intent (no hold metadata)")
    if db.session.scalar(select(Sale.id).where(Sale.payment_intent_id == intent["id"])):
        return Effect("ignored", f"payment intent {intent['id']} already recorded")
    sale = Sale(
        sku=str(meta["sku"]),
        store=str(meta["store"]),
        quantity=1,
        amount=intent.get("amount_capturable") or intent["amount"],
        currency=intent["currency"],
        kind="card",
        status="pending",
        payment_intent_id=intent["id"],
        created_at=_sale_time.get() or utcnow(),
    )
    db.session.add(sale)
    db.session.flush()
    ended = holds.settle_intent(hold_id, intent["id"], ref=intent["id"])
    if ended is not None:
        sale.hold_id = ended.id
        return _fulfilled(sale, True, f"sold 1 x {sale.sku} (hold {ended.id})")
    hold = db.session.get(Hold, hold_id)
    if hold is not None and hold.payment_intent_id == intent["id"] and hold.status != "settled":
        # Its hold expired first: the hold's own cancel task voids this authorization.
        sale.hold_id = hold_id
        sale.status, sale.note = "voided", "paid after its hold expired; authorization cancelled"
        return Effect("applied", sale.note)
    # The hold never knew this intent: sell it like a link's (take, else void).
    return _fulfil(intent, sale, manual=True)


def _intent_canceled(intent: dict[str, Any]) -> Effect:
    hold_id = _hold_id(intent)
    if hold_id is None:
        return Effect("ignored", "not a hold's payment intent (no hold metadata)")
    ended = holds.release(hold_id, ref=intent["id"], intent_id=intent["id"])
    return Effect("applied" if ended else "ignored", f"hold {hold_id} released")


# Refund confirmations ---------------------------------------------------------------------


def _refund_updated(refund: dict[str, Any]) -> Effect:
    if refund.get("status") != "succeeded":
        return Effect("ignored", f"refund is {refund.get('status')}")
    return _refunded(_id_of(refund.get("payment_intent")))


def _charge_refunded(charge: dict[str, Any]) -> Effect:
    if not charge.get("refunded"):
        return Effect("ignored", "partial refund")
    return _refunded(_id_of(charge.get("payment_intent")))


def _refunded(intent_id: str | None) -> Effect:
    if intent_id is None:
        return Effect("ignored", "no payment intent")
    changed = db.session.execute(
        update(Sale)
        .where(Sale.payment_intent_id == intent_id, Sale.status == "refund_pending")
        .values(status="refunded", updated_at=utcnow())
    ).rowcount
    return Effect("applied" if changed else "ignored", "refund confirmed")


# The card that paid ----------------------------------------------------------------------


def _charge_succeeded(charge: dict[str, Any]) -> Effect:
    """Keep the brand and last four digits of a card that paid one of our payments."""
    meta = charge.get("metadata") or {}
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    intent_id, last4 = _id_of(charge.get("payment_intent")), card.get("last4")
    if not meta.get("sku") or not meta.get("store") or not intent_id:
        return Effect("ignored", "not a Swagstore payment (no sku/store metadata)")
    if not (isinstance(last4, str) and len(last4) == 4 and last4.isdigit()):
        return Effect("ignored", "not paid by card")
    if db.session.get(CardPayment, intent_id) is None:
        brand = str(card.get("brand") or "")[:32] or None
        db.session.add(CardPayment(payment_intent_id=intent_id, brand=brand, last4=last4))
    return Effect("applied", f"card ending {last4}")


# Payment links ------------------------------------------------------------------------------


def _link_updated(link: dict[str, Any]) -> Effect:
    """Record a link's state on Stripe (say, switched off at its limit); re-align if needed."""
    row = db.session.get(PaymentLink, link["id"])
    if row is None:
        return Effect("ignored", "not one of this store's payment links")
    counted = (link.get("restrictions") or {}).get("completed_sessions") or {}
    seen = stripe_sync.LinkState(
        bool(link["active"]), counted.get("count", 0), counted.get("limit")
    )
    state = "on" if seen.active else "off"
    stock = db.session.get(Stock, (row.sku, row.store))
    if row.retired_at is None and seen.matches(0 if stock.off_sale else stock.available):
        # What the last sync_link made (it recorded it); an older event must not undo that.
        return Effect("applied", f"link of {row.sku} is {state} on Stripe, as the stock wants")
    row.active, row.session_count, row.session_limit = seen.active, seen.count, seen.limit
    if row.retired_at is not None:
        return Effect("applied", f"retired link {row.id} is {state}")
    # Stripe stopped it at its limit, or the event is older than the last sync: a task that
    # reads the link on Stripe when it runs settles which.
    tasks.enqueue_link_sync(row.sku, row.store)
    return Effect("applied", f"link of {row.sku} is {state} on Stripe; re-aligning")


# Event type -> handler.
HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _session_completed,
    "checkout.session.async_payment_succeeded": _async_succeeded,
    "checkout.session.async_payment_failed": _async_failed,
    "checkout.session.expired": _session_expired,
    "payment_intent.amount_capturable_updated": _intent_authorized,
    "payment_intent.canceled": _intent_canceled,
    "refund.created": _refund_updated,
    "refund.updated": _refund_updated,
    "charge.refunded": _charge_refunded,
    "charge.succeeded": _charge_succeeded,
    "payment_link.updated": _link_updated,
}

tasks.RUNNERS["resolve_payment"] = _resolve_task
tasks.ON_FAILED["resolve_payment"] = tasks.ON_FAILED["refund"]
