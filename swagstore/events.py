"""Getting Stripe events without a public URL: polling /v1/events, and reconciling.

Both feed `fulfilment.apply`, the same code path as the webhook, so an event that arrives
twice (polled and delivered, or reconciled and then delivered) is applied once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from . import fulfilment, payments
from .models import PaymentLink, Sale, Setting, db, read_only

CURSOR_KEY = "poll_events.cursor"
# Unix time of the newest event the cursor passed (first: when the database was made, so
# its first poll asks for the events since); a poller that starts reconciles from a little
# before it, the time it may have missed.
SINCE_KEY = "poll_events.since"
LEASE_KEY = "poll_events.lease"
PAGE_SIZE = 100
# A lease outlives a slow poll; it is renewed when half of it is left.
LEASE_SECONDS = 20.0
# Reconcile a little before the last event seen: the laptop's clock may be behind Stripe's.
RECONCILE_MARGIN_SECONDS = 300
# Transient errors back off from a blip to a minute; a refusal is asked again each minute.
BACKOFF_CAP_SECONDS = 60.0
REFUSED_RETRY_SECONDS = 60.0

log = logging.getLogger(__name__)


def source(config: Mapping[str, Any]) -> str:
    """Return how events reach this store: "webhook" or "poll" (EVENT_SOURCE resolved)."""
    chosen = config["EVENT_SOURCE"]
    if chosen != "auto":
        return str(chosen)
    if config["SANDBOX"]:
        # The in-app sandbox delivers to our webhook itself unless told not to.
        return "webhook" if config["SANDBOX_DELIVER"] else "poll"
    return "webhook" if config["STRIPE_WEBHOOK_SECRET"] else "poll"


def refusal(error: payments.PaymentsError) -> str:
    """Describe a Stripe error as one line that names what is wrong and what to do."""
    message = " ".join(str(error).split())
    status = error.status
    if status == 403:
        missing = re.search(r"the '([^']+)' permission", message)
        lacks = f"lacks the permission {missing.group(1)}" if missing else "lacks a permission"
        return f"Stripe refused the key (403): the restricted key {lacks}; {message}"
    if status == 401:
        return f"Stripe refused the key (401): check STRIPE_SECRET_KEY; {message}"
    if isinstance(error, payments.Transient):
        where = f"{status}" if status else "no answer"
        return f"Stripe unreachable or failing ({where}): {message.splitlines()[-1]}"
    code = f" {error.code}" if error.code else ""
    return f"Stripe refused the request ({status}{code}): {message}"


@dataclass
class Tally:
    """How many events a poll or reconcile saw, by apply() outcome."""

    counts: dict[str, int]

    def add(self, result: fulfilment.Result) -> None:
        self.count(result.outcome)

    def count(self, outcome: str) -> None:
        """Count one event by what became of it."""
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one event through fulfilment and count it; skip one the store cannot read.

        Stripe's own answer, yet a shape the handlers cannot trust (event_schema): logged
        and passed, so one odd event never stops every sale after it (a webhook would
        answer it 400).
        """
        try:
            self.add(fulfilment.apply(event))
        except fulfilment.MalformedEvent as e:
            db.session.rollback()
            log.error("event %s skipped, malformed: %s", event.get("id"), e)
            self.count("malformed")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        return ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.counts.items())) or "none"


def poll_once(gateway: payments.Gateway) -> Tally:
    """Apply every handled event newer than the stored cursor, oldest first.

    A database that never polled starts with the events made since it was (init-db): the
    account's older events, sales made before it existed, are never replayed into it.
    """
    tally = Tally({})
    cursor = _setting(CURSOR_KEY)
    types = sorted(fulfilment.HANDLERS)
    if cursor is None:
        since = _setting(SINCE_KEY)
        created = {"created": {"gte": int(float(since))}} if since else {}
        events: list[dict[str, Any]] = []
        page = _page(gateway, types, created)
        while page:
            events.extend(page)
            page = _page(gateway, types, {**created, "starting_after": page[-1]["id"]})
        _apply_all(reversed(events), tally)
        return tally
    while True:
        # ending_before gives the page just newer than the cursor, newest first.
        page = _page(gateway, types, {"ending_before": cursor})
        if not page:
            return tally
        _apply_all(reversed(page), tally)
        cursor = page[0]["id"]


def _page(gateway: payments.Gateway, types: list[str], extra: dict[str, Any]) -> list[dict]:
    events = gateway.list_events({"types": types, "limit": PAGE_SIZE, **extra})
    return [event.to_dict(for_json=True) for event in events]


def _apply_all(events: Any, tally: Tally) -> None:
    for event in events:
        tally.apply(event)
        # The cursor moves only past an applied event, so a crash re-reads, never skips.
        _set_cursor(event)


def _setting(key: str) -> str | None:
    with read_only():
        return db.session.scalar(select(Setting.value).where(Setting.key == key))


def _set_cursor(event: dict[str, Any]) -> None:
    _put(CURSOR_KEY, event["id"])
    if event.get("created"):
        _put(SINCE_KEY, str(event["created"]))
    db.session.commit()


def _put(key: str, value: str) -> None:
    setting = db.session.get(Setting, key)
    if setting is None:
        db.session.add(Setting(key=key, value=value))
    else:
        setting.value = value


def missed_since() -> datetime:
    """Return the time from which a starting poller reconciles (the last event, less a margin)."""
    since = _setting(SINCE_KEY)
    seen = float(since) if since else time.time()
    return datetime.fromtimestamp(seen - RECONCILE_MARGIN_SECONDS, UTC)


# One poller per database -------------------------------------------------------------------


def take_lease(owner: str, seconds: float = LEASE_SECONDS) -> bool:
    """Hold (or renew) the poller's lease; return False while another live poller holds it."""
    now = time.time()
    held = _setting(LEASE_KEY)
    mine = json.dumps({"owner": owner, "until": round(now + seconds, 3)})
    if held is None:
        db.session.add(Setting(key=LEASE_KEY, value=mine))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return False
        return True
    lease = json.loads(held)
    if lease["owner"] == owner and lease["until"] - now > seconds / 2:
        return True
    if lease["owner"] != owner and lease["until"] > now and _alive(lease["owner"]):
        return False
    # Compare-and-set on the value read: of two pollers taking over, one wins.
    won = db.session.execute(
        update(Setting).where(Setting.key == LEASE_KEY, Setting.value == held).values(value=mine)
    ).rowcount
    db.session.commit()
    return won == 1


def poller_id() -> str:
    """Return a name for this process's poller: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _alive(owner: str) -> bool:
    """Return False for a poller of this host whose process is gone (killed: take over now)."""
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Poller:
    """The worker's polling job: poll every POLL_SECONDS while holding the lease.

    On its first poll it reconciles the time the store may have missed. Transient errors
    back off; a refusal is logged as one line (once per new message) and asked again later.
    Each call returns the events it applied, so the worker goes on at once after a sale.
    """

    def __init__(self, interval: float, gateway: Callable[[], payments.Gateway]) -> None:
        self.interval = interval
        self.gateway = gateway
        self.owner = poller_id()
        self.reconciled = False
        self.next_at = 0.0
        self.failures = 0
        self.last_problem: str | None = None

    def __call__(self) -> int:
        if time.monotonic() < self.next_at:
            return 0
        try:
            return self.step()
        except payments.PaymentsError as e:
            self._failed(e)
            return 0
        finally:
            db.session.rollback()

    def step(self) -> int:
        """Poll once if this process holds the lease; return the events applied."""
        self.next_at = time.monotonic() + self.interval
        if not take_lease(self.owner):
            self.reconciled = False  # whoever takes over later reconciles again
            return 0
        gateway = self.gateway()
        done = 0
        if not self.reconciled:
            since = missed_since()
            tally = reconcile(gateway, since)
            self.reconciled = True
            log.info("poller: reconciled since %s: %s", since.isoformat(), tally)
            done += tally.counts.get("applied", 0)
        tally = poll_once(gateway)
        if self.last_problem is not None:
            log.warning("poller: Stripe answers again")
        self.failures, self.last_problem = 0, None
        return done + tally.counts.get("applied", 0)

    def _failed(self, error: payments.PaymentsError) -> None:
        problem = refusal(error)
        if isinstance(error, payments.Transient):
            self.failures += 1
            delay = min(BACKOFF_CAP_SECONDS, self.interval * 2**self.failures)
            problem += f"; retrying in {delay:.0f} s"
        else:
            delay = REFUSED_RETRY_SECONDS
        self.next_at = time.monotonic() + delay
        if problem.split(";")[0] != (self.last_problem or "").split(";")[0]:
            log.error("poller: %s", problem)
        self.last_problem = problem


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
                tally.apply(event)
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
