"""Webhook delivery: each event as a signed POST, retried with backoff until it gets a 2xx."""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask
from sqlalchemy import or_, select, text, update

from ..models import db
from . import endpoints
from .models import SandboxDelivery, SandboxEvent, engine

log = logging.getLogger(__name__)
# A webhook endpoint has this long to answer before the attempt counts as failed.
DELIVERY_TIMEOUT = 10
LOCK_SECONDS = 60
MAX_ATTEMPTS = 100
MAX_BACKOFF = 60
Send = Callable[[bytes, dict[str, str]], int]


def signing_secret(config: Mapping[str, Any]) -> str:
    """Return the secret deliveries are signed with: STRIPE_WEBHOOK_SECRET or one of our own."""
    if config.get("STRIPE_WEBHOOK_SECRET"):
        return str(config["STRIPE_WEBHOOK_SECRET"])
    derived = hmac.new(
        str(config["SECRET_KEY"]).encode(), b"swagstore sandbox webhook", hashlib.sha256
    )
    return "whsec_" + derived.hexdigest()[:32]


def signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Return a Stripe-Signature header value, computed exactly as Stripe does."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff(attempts: int) -> float:
    """Return the wait before the next attempt: 1 s, 2 s, 4 s, … at most a minute."""
    return float(min(2 ** max(attempts - 1, 0), MAX_BACKOFF))


def due_ids(limit: int = 20) -> list[int]:
    """Return deliveries waiting to be tried, read without taking the write lock."""
    moment = time.time()
    with engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        rows = conn.execute(
            text(
                "SELECT id FROM sandbox_delivery WHERE status = 'pending' AND next_at <= :now "
                "AND (locked_until IS NULL OR locked_until < :now) ORDER BY id LIMIT :limit"
            ),
            {"now": moment, "limit": limit},
        )
        return [row[0] for row in rows]


def claim(delivery_id: int) -> bool:
    """Take one attempt of a delivery; a guarded UPDATE, so no two workers share an attempt."""
    moment = time.time()
    result = db.session.execute(
        update(SandboxDelivery)
        .where(
            SandboxDelivery.id == delivery_id,
            SandboxDelivery.status == "pending",
            SandboxDelivery.next_at <= moment,
            or_(SandboxDelivery.locked_until.is_(None), SandboxDelivery.locked_until < moment),
        )
        .values(locked_until=moment + LOCK_SECONDS, attempts=SandboxDelivery.attempts + 1)
    )
    db.session.commit()
    return result.rowcount == 1


def attempt(delivery_id: int, secret: str, send: Send) -> bool:
    """Claim and try one delivery; return True when the endpoint answered 2xx.

    `secret` and `send` reach the store's own webhook; a delivery to an endpoint registered
    through the API goes to its URL, signed with its secret.
    """
    if not claim(delivery_id):
        return False
    row = db.session.get(SandboxDelivery, delivery_id)
    if row.endpoint_id is not None:
        found = endpoints.target(row.endpoint_id)
        if found is None:
            row.status, row.last_error, row.locked_until = "failed", "endpoint gone", None
            db.session.commit()
            return False
        url, secret = found
        send = http_sender(url)
    event = db.session.scalar(select(SandboxEvent).where(SandboxEvent.id == row.event_id))
    payload = json.dumps(event.data, indent=2).encode()
    # Nothing is held open while the endpoint works: it may write to this database too.
    db.session.commit()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature(payload, secret, int(time.time())),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks) swagstore-sandbox",
    }
    status, error = 0, None
    try:
        status = send(payload, headers)
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    ok = 200 <= status < 300
    row = db.session.get(SandboxDelivery, delivery_id)
    row.last_status = status or None
    row.last_error = error
    row.locked_until = None
    if ok:
        row.status = "delivered"
    elif row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"
    else:
        row.next_at = time.time() + backoff(row.attempts)
    db.session.commit()
    return ok


def deliver_due(secret: str, send: Send) -> int:
    """Try every delivery that is due now; return how many got a 2xx."""
    return sum(attempt(delivery_id, secret, send) for delivery_id in due_ids())


def http_sender(url: str) -> Send:
    """Return a sender that POSTs to a webhook URL."""

    def send(payload: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            e.close()
            return int(e.code)

    return send


def app_sender(app: Flask, path: str = "/stripe/webhook") -> Send:
    """Return a sender that hands the POST to the app's own webhook, in process."""

    def send(payload: bytes, headers: dict[str, str]) -> int:
        # An empty context, so the webhook runs in its own app context and session.
        client = app.test_client()
        response = contextvars.Context().run(client.post, path, data=payload, headers=headers)
        response.close()
        return response.status_code

    return send


def summary() -> list[dict[str, Any]]:
    """List deliveries with their event, attempts and last answer."""
    rows = db.session.execute(
        select(SandboxDelivery, SandboxEvent.type)
        .join(SandboxEvent, SandboxEvent.id == SandboxDelivery.event_id)
        .order_by(SandboxDelivery.id)
    )
    return [
        {
            "event": d.event_id,
            "type": event_type,
            "endpoint": d.endpoint_id,
            "status": d.status,
            "attempts": d.attempts,
            "last_status": d.last_status,
            "last_error": d.last_error,
        }
        for d, event_type in rows
    ]


def job(app: Flask) -> Callable[[], int]:
    """Return the worker's sandbox job: expire due sessions, then deliver due events."""
    from .checkout import expire_due_quietly

    url = app.config.get("SANDBOX_WEBHOOK_URL")
    send = http_sender(url) if url else app_sender(app)
    secret = signing_secret(app.config)

    def run() -> int:
        return expire_due_quietly() + deliver_due(secret, send)

    return run
