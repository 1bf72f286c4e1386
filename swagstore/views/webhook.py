"""Stripe's door in: a signed event is applied in its own transaction before the answer."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from sqlalchemy.exc import OperationalError

from .. import event_schema, fulfilment, payments

bp = Blueprint("webhook", __name__)


@bp.post("/stripe/webhook")
def receive() -> tuple[dict, int]:
    """Verify a Stripe event and apply it; 400 changes nothing, 503 asks Stripe to retry."""
    # get_data() goes through MAX_CONTENT_LENGTH, so an oversized body is refused with 413.
    payload = request.get_data()
    try:
        body = payments.gateway().verify_event(payload, request.headers.get("Stripe-Signature"))
        event = event_schema.check(body)
    except payments.BadSignature as e:
        return {"error": str(e)}, 400
    except event_schema.Invalid as e:
        return {"error": f"malformed event: {e}"}, 400
    except ValueError:
        return {"error": "malformed event body: not JSON"}, 400
    try:
        # Committed (durable: synchronous=FULL) when this returns, or nothing was.
        result = fulfilment.apply(event)
    except fulfilment.MalformedEvent as e:
        return {"error": f"malformed event: {e}"}, 400
    except OperationalError as e:
        current_app.logger.error(
            "webhook %s not applied, Stripe will retry: %s", event["id"], e.orig
        )
        return {"error": "busy, try again"}, 503
    return {"outcome": result.outcome, "note": result.note}, 200
