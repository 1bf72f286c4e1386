"""The sandbox's record of money movements, for tests to count captures and refunds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..models import db
from .models import SandboxLedger


def summary() -> dict[str, Any]:
    """Return every movement and, per PaymentIntent, the count and sum of each action."""
    rows = db.session.scalars(select(SandboxLedger).order_by(SandboxLedger.id)).all()
    intents: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        totals = intents.setdefault(row.object_id, {}).setdefault(
            row.action, {"count": 0, "amount": 0}
        )
        totals["count"] += 1
        totals["amount"] += row.amount
    return {
        "entries": [
            {
                "action": r.action,
                "payment_intent": r.object_id,
                "amount": r.amount,
                "created": r.created,
            }
            for r in rows
        ],
        "payment_intents": intents,
    }
