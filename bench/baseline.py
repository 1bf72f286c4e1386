"""The baselines: bare Flask endpoints doing only the unavoidable part of a store route.

Served with the tree's gunicorn.conf.py settings (bench/baseline_gunicorn.py) and driven
by the same load generator as the store, so store ÷ baseline is what the store's own work
costs against the limit of its stack.
"""

from __future__ import annotations

import os

import stripe
from flask import Flask, request

app = Flask(__name__)
_stripe = stripe.StripeClient("sk_test_baseline")


@app.get("/healthz")
def healthz() -> dict:
    """Answer the harness's readiness probe."""
    return {"status": "ok"}


@app.post("/stripe/webhook")
def webhook() -> dict:
    """Read the body and answer 200: the least any webhook endpoint does."""
    request.get_data()
    return {"outcome": "applied"}


@app.post("/verified/stripe/webhook")
def verified_webhook() -> dict:
    """Check the signature with construct_event, as the store must, and do nothing more."""
    event = _stripe.construct_event(
        request.get_data(),
        request.headers.get("Stripe-Signature", ""),
        os.environ["SWAGSTORE_STRIPE_WEBHOOK_SECRET"],
    )
    event.to_dict(for_json=True)
    return {"outcome": "applied"}


@app.get("/buy/<sku>")
def buy(sku: str) -> tuple[str, int]:
    """Answer a visitor with a small page, as a sold-out answer is."""
    return f"<p>{sku} is sold out</p>", 409
