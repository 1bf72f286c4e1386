"""Getting Stripe events without a public URL: polling /v1/events, and reconciling.

Both feed `fulfilment.apply`, the same code path as the webhook, so an event that arrives
twice (polled and delivered, or reconciled and then delivered) is applied once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from . import fulfilment, payments
from .models import PaymentLink, Sale, Setting, db

CURSOR_KEY = "poll_events.cursor"
PAGE_SIZE = 100


@dataclass
class Tally:
    """How many events a poll or reconcile saw, by apply() outcome."""

    counts: dict[str, int]

    def add(self, result: fulfilment.Result) -> None:
        self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        return ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.counts.items())) or "none"


def poll_once(gateway: payments.Gateway) -> Tally:
    """Apply every handled event newer than the stored cursor, oldest first."""
    tally = Tally({})
    cursor = _cursor()
    types = sorted(fulfilment.HANDLERS)
    if cursor is None:
        # First run: everything Stripe still has (30 days), paged from newest to oldest.
        events: list[dict[str, Any]] = []
        page = _page(gateway, types, {})
        while page:
            events.extend(page)
            page = _page(gateway, types, {"starting_after": page[-1]["id"]})
        _apply_all(reversed(events), tally)
        return tally
    while True:
        # ending_before gives the page just newer than the cursor, newest first.
        page = _page(gateway, types, {"ending_before": cursor})
        if not page:
            return tally
        _apply_all(reversed(page), tally)
        cursor = page[0]["id"]


def _page(gateway: payments.Gateway, types: list[str], extra: dict[str, str]) -> list[dict]:
    events = gateway.list_events({"types": types, "limit": PAGE_SIZE, **extra})
    return [event.to_dict(for_json=True) for event in events]


def _apply_all(events: Any, tally: Tally) -> None:
    for event in events:
        tally.add(fulfilment.apply(event))
        # The cursor moves only past an applied event, so a crash re-reads, never skips.
        _set_cursor(event["id"])


def _cursor() -> str | None:
    value = db.session.scalar(select(Setting.value).where(Setting.key == CURSOR_KEY))
    db.session.commit()
    return value


def _set_cursor(event_id: str) -> None:
    setting = db.session.get(Setting, CURSOR_KEY)
    if setting is None:
        db.session.add(Setting(key=CURSOR_KEY, value=event_id))
    else:
        setting.value = event_id
    db.session.commit()


def reconcile(gateway: payments.Gateway, since: datetime) -> Tally:
    """Apply the paid Checkout Sessions of our links since a time that the app never saw."""
    tally = Tally({})
    links = db.session.scalars(select(PaymentLink.id).order_by(PaymentLink.created_at)).all()
    db.session.commit()
    for link_id in links:
        sessions = gateway.list_checkout_sessions(
            {"payment_link": link_id, "created": {"gte": int(since.timestamp())}, "limit": 100}
        )
        for session in sessions:
            event = _missed_event(session.to_dict(for_json=True))
            if event is not None:
                tally.add(fulfilment.apply(event))
    return tally


def _missed_event(session: dict[str, Any]) -> dict[str, Any] | None:
    """Return the event the app should have had for a session, or None if it had it."""
    if session.get("status") != "complete":
        return None
    sale = db.session.scalar(select(Sale).where(Sale.checkout_session_id == session["id"]))
    status = sale.status if sale is not None else None
    db.session.commit()
    if status is None:
        kind = "checkout.session.completed"
    elif status == "pending" and session.get("payment_status") == "paid":
        kind = "checkout.session.async_payment_succeeded"
    else:
        return None
    # A deterministic id: reconciling twice applies once, and the unique session id on the
    # sale turns the real event, if it comes later, into a no-op.
    return {
        "id": f"reconcile:{kind.rsplit('.', 1)[1]}:{session['id']}",
        "type": kind,
        "data": {"object": session},
    }
