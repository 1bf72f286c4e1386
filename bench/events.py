"""Signed Stripe events for the benchmarks: distinct checkout.session.completed bodies.

The store checks each Stripe-Signature with a 300 s tolerance (Stripe's default), counted
back from now: an event signed at time t is accepted until t + 300. So every file of
events is signed just before the run that sends it, and a run must end within MAX_RUN_S.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

SECRET = "whsec_bench_" + "0" * 24
STORE = "booth"
ITEMS = 20
TOLERANCE_S = 300
MAX_RUN_S = TOLERANCE_S - 60  # a minute to spare for the redelivery that follows a run


def completed(n: int) -> dict:
    """Return a distinct checkout.session.completed event for one unit of item n % ITEMS."""
    tag = uuid.uuid4().hex
    return {
        "id": f"evt_bench_{tag}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": f"cs_test_bench_{tag}",
                "object": "checkout.session",
                "amount_total": 2500,
                "currency": "usd",
                "metadata": {"sku": f"item-{n % ITEMS}", "store": STORE, "quantity": "1"},
                "mode": "payment",
                "payment_intent": f"pi_bench_{tag}",
                "payment_link": "plink_bench",
                "payment_status": "paid",
                "status": "complete",
            }
        },
    }


def signature(body: str, at: int) -> str:
    """Return the Stripe-Signature header Stripe would send with body at time `at`."""
    mac = hmac.new(SECRET.encode(), f"{at}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def write_signed(path: Path, events: list[dict]) -> Path:
    """Write one "signature<TAB>body" line per event, signed now, for bench/webhook.lua."""
    now = int(time.time())
    with open(path, "w") as f:
        for event in events:
            body = json.dumps(event)  # one line: JSON escapes tabs and newlines
            f.write(f"{signature(body, now)}\t{body}\n")
    return path


def post(url: str, event: dict) -> int:
    """Send one event, signed now, to a webhook URL; return the HTTP status."""
    body = json.dumps(event)
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature(body, int(time.time())),
    }
    request = urllib.request.Request(url, data=body.encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def catalog(path: Path, stock: int) -> Path:
    """Write a catalog of ITEMS items with `stock` units each."""
    path.write_text(
        "".join(
            f'[[item]]\nsku = "item-{i}"\nname = "Item {i}"\nprice = 2500\n'
            f'currency = "usd"\nstock = {stock}\n\n'
            for i in range(ITEMS)
        )
    )
    return path
