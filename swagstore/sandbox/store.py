"""Storage for sandbox objects: ids, the test clock, events, list pages and the ledger."""

from __future__ import annotations

import secrets
import string
import time
from contextvars import ContextVar
from typing import Any

from flask import current_app
from sqlalchemy import Select, select

from ..models import db
from .errors import invalid, missing
from .forms import integer, strings, text
from .models import SandboxDelivery, SandboxEvent, SandboxLedger, SandboxObject, SandboxSetting

# The API version the SDK pins; events carry it as Stripe's do.
API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits
MAX_EVENT_TYPES = 20
# (request id, idempotency key) of the API call in progress, for the events it causes.
origin: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "sandbox_origin", default=(None, None)
)


def new_id(prefix: str, length: int = 24) -> str:
    """Return a fresh Stripe-style id such as `prod_…` or `cs_test_…`."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now() -> int:
    """Return the sandbox's time in epoch seconds (real time plus the test clock's offset)."""
    offset = db.session.get(SandboxSetting, "clock_offset")
    return int(time.time() + (float(offset.value) if offset else 0))


def advance_clock(seconds: float) -> int:
    """Move the sandbox's clock forward, as a Stripe test clock does, and return the time."""
    setting = db.session.get(SandboxSetting, "clock_offset")
    if setting is None:
        setting = SandboxSetting(key="clock_offset", value="0")
        db.session.add(setting)
    setting.value = str(float(setting.value) + seconds)
    db.session.flush()
    return now()


def create(data: dict[str, Any], private: dict[str, Any] | None = None) -> SandboxObject:
    """Store a new object (its data must carry `id` and `object`)."""
    row = SandboxObject(id=data["id"], type=data["object"], data=data, private=private or {})
    db.session.add(row)
    db.session.flush()
    return row


def get(kind: str, object_id: str, *, param: str = "id") -> SandboxObject:
    """Return a stored object of one type, or raise Stripe's 404."""
    row = db.session.scalar(
        select(SandboxObject).where(SandboxObject.id == object_id, SandboxObject.type == kind)
    )
    if row is None:
        raise missing(kind, object_id, param)
    return row


def update(row: SandboxObject, **changes: Any) -> dict[str, Any]:
    """Change fields of a stored object and return its new data."""
    # A new dict, so SQLAlchemy sees the JSON column change.
    row.data = {**row.data, **changes}
    db.session.flush()
    return row.data


def emit(
    event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record an event with a snapshot of its object and queue its webhook delivery.

    `previous` holds the changed fields' old values, as `*.updated` events carry them.
    """
    request_id, idempotency_key = origin.get()
    created = now()
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    event = {
        "id": new_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }
    targets = _subscribers(event_type)
    event["pending_webhooks"] = len(targets)
    db.session.add(SandboxEvent(id=event["id"], type=event_type, created=created, data=event))
    for endpoint_id in targets:
        db.session.add(
            SandboxDelivery(event_id=event["id"], endpoint_id=endpoint_id, next_at=time.time())
        )
    db.session.flush()
    return event


def _subscribers(event_type: str) -> list[str | None]:
    """Return where an event goes: the store's own webhook (None) in the store's app, and
    every enabled endpoint registered for its type."""
    targets: list[str | None] = [] if current_app.config.get("SANDBOX_STANDALONE") else [None]
    for row in db.session.scalars(objects("webhook_endpoint")):
        wanted = row.data["enabled_events"]
        if row.data["status"] == "enabled" and ("*" in wanted or event_type in wanted):
            targets.append(row.id)
    return targets


def record(action: str, intent: dict[str, Any], amount: int) -> None:
    """Write one money movement on a PaymentIntent to the ledger."""
    db.session.add(
        SandboxLedger(action=action, object_id=intent["id"], amount=amount, created=now())
    )


def _limit(params: dict[str, Any]) -> int:
    limit = integer(params, "limit")
    limit = 10 if limit is None else limit
    if not 1 <= limit <= 100:
        raise invalid("This value must be between 1 and 100.", param="limit")
    return limit


def item_page(items: list[dict[str, Any]], params: dict[str, Any], path: str) -> dict:
    """Answer a Stripe list object for line items, in their own order, with cursor params."""
    limit = _limit(params)
    ids = [item["id"] for item in items]
    after, before = text(params, "starting_after"), text(params, "ending_before")
    for name, cursor in (("starting_after", after), ("ending_before", before)):
        if cursor and cursor not in ids:
            raise missing("item", cursor, name)
    if after:
        items = items[ids.index(after) + 1 :]
    if before:
        items = items[: ids.index(before)]
        shown, has_more = items[-limit:], len(items) > limit
    else:
        shown, has_more = items[:limit], len(items) > limit
    return {"object": "list", "data": shown, "has_more": has_more, "url": path}


def page(stmt: Select[Any], seq: Any, params: dict[str, Any], url: str, lookup: Any) -> dict:
    """Answer a Stripe list object for rows of `stmt`, newest first, with cursor params."""
    limit = _limit(params)
    after, before = text(params, "starting_after"), text(params, "ending_before")
    if after:
        stmt = stmt.where(seq < _cursor(lookup, after, "starting_after"))
    if before:
        stmt = stmt.where(seq > _cursor(lookup, before, "ending_before"))
        rows = list(db.session.scalars(stmt.order_by(seq.asc()).limit(limit + 1)))
        has_more = len(rows) > limit
        rows = list(reversed(rows[:limit]))
    else:
        rows = list(db.session.scalars(stmt.order_by(seq.desc()).limit(limit + 1)))
        has_more = len(rows) > limit
        rows = rows[:limit]
    return {"object": "list", "data": [r.data for r in rows], "has_more": has_more, "url": url}


def _cursor(lookup: Any, object_id: str, param: str) -> int:
    seq = lookup(object_id)
    if seq is None:
        raise missing("object", object_id, param)
    return seq


def object_seq(object_id: str) -> int | None:
    """Return an object's list position."""
    return db.session.scalar(select(SandboxObject.seq).where(SandboxObject.id == object_id))


def objects(kind: str) -> Select[Any]:
    """Return a query for stored objects of one type."""
    return select(SandboxObject).where(SandboxObject.type == kind)


def created_filter(stmt: Select[Any], column: Any, params: dict[str, Any]) -> Select[Any]:
    """Apply Stripe's `created` filter (an integer, or a hash of gt/gte/lt/lte)."""
    created = params.get("created")
    if created is None:
        return stmt
    if isinstance(created, str):
        return stmt.where(column == integer(params, "created"))
    ops = {"gt": column.__gt__, "gte": column.__ge__, "lt": column.__lt__, "lte": column.__le__}
    for op in created:
        if op not in ops:
            raise invalid(f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
        stmt = stmt.where(ops[op](integer(created, op, required=True)))
    return stmt


def types_filter(params: dict[str, Any], column: Any) -> list[Any]:
    """Return where-clauses for `type` (with `*` wildcards) or `types` (at most 20).

    The spec's own words: "An array of up to 20 strings ... You may pass either `type` or
    `types`, but not both."
    """
    wanted = strings(params, "types")
    single = text(params, "type")
    if single is not None and wanted:
        raise invalid("You may pass either `type` or `types`, but not both.", param="types")
    if len(wanted) > MAX_EVENT_TYPES:
        raise invalid(
            f"You may pass at most {MAX_EVENT_TYPES} values in `types`; you passed {len(wanted)}.",
            param="types",
        )
    if single is not None:
        if "*" in single:
            escaped = single.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return [column.like(escaped.replace("*", "%"), escape="\\")]
        return [column == single]
    return [column.in_(wanted)] if wanted else []
