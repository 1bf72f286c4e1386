"""Stripe-shaped events for tests, built from Stripe's own example objects."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

# Vendored (stripe/openapi fixtures3.json, MIT): tests read nothing outside the repository.
FIXTURES = Path(__file__).parent / "fixtures" / "stripe_objects.json"
WEBHOOK_SECRET = "whsec_test_swagstore_fulfilment"
_ids = itertools.count(1)


@cache
def _resources() -> dict[str, Any]:
    with FIXTURES.open(encoding="utf-8") as f:
        return json.load(f)["resources"]


def example(kind: str) -> dict[str, Any]:
    """Return a fresh copy of Stripe's example object of a kind (e.g. "checkout.session")."""
    return copy.deepcopy(_resources()[kind])


def unique(prefix: str) -> str:
    return f"{prefix}{time.time_ns():x}{next(_ids)}"


def make_session(
    sku: str = "tee-m",
    store: str = "booth",
    *,
    payment_status: str = "paid",
    amount: int = 2500,
    **metadata: str,
) -> dict[str, Any]:
    """Return a completed Checkout Session for one item, as a payment link makes it."""
    session = example("checkout.session")
    session.update(
        id=unique("cs_test_"),
        status="complete",
        payment_status=payment_status,
        payment_intent=unique("pi_"),
        amount_total=amount,
        currency="usd",
        metadata={"sku": sku, "store": store, **metadata},
    )
    return session


def make_event(obj: dict[str, Any], type_: str = "checkout.session.completed") -> dict[str, Any]:
    """Wrap an object in an event of a type, as Stripe sends it."""
    event = example("event")
    event.update(id=unique("evt_"), type=type_, data={"object": obj}, created=int(time.time()))
    return event


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Return a Stripe-Signature header for a payload, as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
