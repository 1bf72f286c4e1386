"""JSON endpoints: stock for machines, health for monitors."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from sqlalchemy.exc import SQLAlchemyError

from .. import offer, worker

bp = Blueprint("api", __name__)


@bp.get("/api/stock")
def stock() -> dict:
    """Answer every item of this store with its live counts and buy URL."""
    config = current_app.config
    store, mode = config["STORE_ID"], config["PURCHASE_MODE"]
    base = offer.public_url(config["PUBLIC_URL"], request.host_url)
    items = [
        {
            "sku": item.sku,
            "name": item.name,
            "price": item.price,
            "currency": item.currency,
            "available": item.available,
            "on_hand": item.on_hand,
            "reserved": item.reserved,
            "sold": item.sold,
            "sold_out": item.sold_out,
            "off_sale": item.off_sale,
            "buy_url": offer.buy_url(item, mode, base),
            "payment_link_id": item.payment_link_id,
            "stopped_by_stripe": item.stopped_by_stripe,
        }
        for item in offer.listings(store)
    ]
    return {
        "store": store,
        "mode": mode,
        "sandbox": config["SANDBOX"],
        "last_event_id": offer.last_event_id(),
        "items": items,
    }


@bp.get("/healthz")
def healthz() -> tuple[dict, int]:
    """Answer 200 while the database answers (status "degraded" if the worker is not seen)."""
    try:
        seen = worker.last_seen(current_app.config["STORE_ID"])
    except SQLAlchemyError as e:
        current_app.logger.error("health check: database unreachable: %s", e)
        return {"status": "error", "database": "unreachable"}, 503
    return {
        # The web still sells while the worker is away; its side effects wait in the outbox.
        "status": "ok" if seen.ok else "degraded",
        "database": "ok",
        "sandbox": current_app.config["SANDBOX"],
        "worker": {"ok": seen.ok, "seen_seconds_ago": seen.seconds_ago, "pid": seen.pid},
    }, 200
