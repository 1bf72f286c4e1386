"""The baseline: bare Flask endpoints that do only the unavoidable part of each store route.

Served by the same gunicorn.conf.py and driven by the same client as the store, so
store ÷ baseline is what the store's own work costs against the limit of its stack.
"""

from __future__ import annotations

import os
import threading
import time

import stripe
from flask import Flask, Response, request

app = Flask(__name__)
# gunicorn.conf.py sizes the store's stream broker unless this is set; the baseline has none.
app.config["STREAM_MAX_CLIENTS"] = 100_000
_changed = threading.Condition()
_version = 0


@app.get("/healthz")
def healthz() -> dict:
    """Answer the harness's readiness probe."""
    return {"status": "ok"}


@app.post("/stripe/webhook")
def webhook() -> dict:
    """Read the body and answer 200, as a webhook endpoint must at the very least."""
    request.get_data()
    return {"outcome": "applied"}


_stripe = stripe.StripeClient("sk_test_baseline")


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


def _watch(path: str) -> None:
    """Follow the driver's signal file; every worker process runs one of these."""
    global _version
    while True:
        try:
            with open(path) as f:
                value = int(f.read() or 0)
        except (FileNotFoundError, ValueError):
            value = 0
        if value != _version:
            with _changed:
                _version = value
                _changed.notify_all()
        time.sleep(0.005)


_watcher: threading.Thread | None = None
_watcher_lock = threading.Lock()


@app.get("/stream")
def stream() -> Response:
    """Hold a server-sent event stream open; send an event whenever the signal file changes."""
    global _watcher
    with _watcher_lock:
        if _watcher is None:
            path = os.environ["BENCH_SIGNAL_FILE"]
            _watcher = threading.Thread(target=_watch, args=(path,), daemon=True)
            _watcher.start()

    def events():
        seen = _version
        yield f"id: {seen}\nevent: stock\ndata: {{}}\n\n"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with _changed:
                _changed.wait_for(lambda last=seen: _version != last, timeout=15)
                now = _version
            if now != seen:
                seen = now
                yield f"id: {seen}\nevent: stock\ndata: {{}}\n\n"
            else:
                yield ": ping\n\n"

    return Response(events(), mimetype="text/event-stream")
