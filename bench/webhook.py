"""Webhook throughput: signed checkout.session.completed events against the booth's server.

Starts the store under gunicorn as `make run` does (gunicorn.conf.py, SQLite in WAL mode
with synchronous=FULL), loads items with enough stock, and fires N distinct, validly signed
events from a separate client process over many connections. The same client drives a bare
Flask endpoint that only reads the body, under the same gunicorn settings: the baseline.
Then it checks that every event was applied exactly once, and that resending some of them
changes nothing.

    python bench/webhook.py [--events 2000] [--concurrency 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import harness
from sqlalchemy import func, select

from swagstore import create_app
from swagstore.models import Sale, Stock, StockEvent, StripeEvent, db

SECRET = "whsec_bench_" + "0" * 24
STORE = "booth"
ITEMS = 20


def signed(event: dict) -> dict:
    """Return one request: the event's JSON and a Stripe-Signature header over it."""
    body = json.dumps(event)
    t = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "body": body,
        "headers": {
            "Content-Type": "application/json",
            "Stripe-Signature": f"t={t},v1={mac}",
        },
    }


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
                "metadata": {
                    "sku": f"item-{n % ITEMS}",
                    "store": STORE,
                    "quantity": "1",
                },
                "mode": "payment",
                "payment_intent": f"pi_bench_{tag}",
                "payment_link": "plink_bench",
                "payment_status": "paid",
                "status": "complete",
            }
        },
    }


def recorded_ids(uri: str) -> set[str]:
    """Return the ids of the Stripe events the store has recorded."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "bench"})
    with app.app_context():
        ids = set(db.session.scalars(select(StripeEvent.id)))
        db.session.remove()
        db.engine.dispose()
    return ids


def write(path: Path, requests: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    return path


def fire(
    server: harness.Server, path: Path, concurrency: int, route: str = "/stripe/webhook"
) -> dict:
    """Send every request in path; add the server's CPU time per request to the figures."""
    before = server.cpu_seconds()
    result = harness.run_client("post", server.url + route, str(path), str(concurrency))
    result["server_cpu_ms"] = round((server.cpu_seconds() - before) / result["count"] * 1000, 3)
    return result


def catalog(path: Path, stock: int) -> Path:
    path.write_text(
        "".join(
            f'[[item]]\nsku = "item-{i}"\nname = "Item {i}"\nprice = 2500\n'
            f'currency = "usd"\nstock = {stock}\n\n'
            for i in range(ITEMS)
        )
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    work = harness.workdir("webhook")
    uri = f"sqlite:///{work / 'swagstore.sqlite'}"
    env = harness.store_env(uri, STRIPE_WEBHOOK_SECRET=SECRET, STORE_ID=STORE)
    sent = args.warmup + args.events * args.rounds
    stock = sent // ITEMS + 10  # enough for every event: each one must take a unit
    harness.flask(env, "init-db")
    harness.flask(env, "load-catalog", str(catalog(work / "catalog.toml", stock)))

    rounds = []
    applied_events: list[dict] = []
    with harness.Server("baseline:app", env, work / "baseline.log") as base:
        fire(
            base,
            write(work / "warm.jsonl", [signed(completed(i)) for i in range(200)]),
            16,
        )
        with harness.Server("wsgi:app", env, work / "store.log") as store:
            warm = [completed(i) for i in range(args.warmup)]
            fire(store, write(work / "warm.jsonl", [signed(e) for e in warm]), 16)
            applied_events += warm
            for r in range(args.rounds):
                events = [completed(i) for i in range(args.events)]
                # Signed just before sending: Stripe's tolerance is 300 s.
                b = fire(
                    base,
                    write(work / "b.jsonl", [signed(e) for e in events]),
                    args.concurrency,
                )
                v = fire(
                    base,
                    write(work / "v.jsonl", [signed(e) for e in events]),
                    args.concurrency,
                    route="/verified/stripe/webhook",
                )
                s = fire(
                    store,
                    write(work / "s.jsonl", [signed(e) for e in events]),
                    args.concurrency,
                )
                applied_events += events
                rounds.append({"baseline": b, "verify_only": v, "store": s})
                print(
                    f"round {r + 1}: store {args.events / s['wall_s']:.0f}/s, "
                    f"baseline {args.events / b['wall_s']:.0f}/s, "
                    f"verify-only {args.events / v['wall_s']:.0f}/s",
                    flush=True,
                )
            # A 5xx asks Stripe to try again later, and Stripe does: so does this, until every
            # event is recorded. What is still missing after that is lost.
            retried = 0
            for _ in range(5):
                seen = recorded_ids(uri)
                missing = [e for e in applied_events if e["id"] not in seen]
                if not missing:
                    break
                retried += len(missing)
                fire(store, write(work / "retry.jsonl", [signed(e) for e in missing]), 8)
            # Stripe redelivers: a resent event must answer 200 and change nothing.
            again = applied_events[:: max(1, len(applied_events) // 200)][:200]
            dup = fire(store, write(work / "dup.jsonl", [signed(e) for e in again]), 16)

    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "bench"})
    with app.app_context():
        recorded = db.session.scalar(select(func.count(StripeEvent.id)))
        applied = db.session.scalar(
            select(func.count(StripeEvent.id)).where(StripeEvent.outcome == "applied")
        )
        fulfilled = db.session.scalar(
            select(func.count(Sale.id)).where(Sale.status == "fulfilled")
        )
        takes = db.session.scalar(
            select(func.count(StockEvent.id)).where(StockEvent.reason == "sale")
        )
        left = db.session.scalar(select(func.sum(Stock.on_hand)).where(Stock.store == STORE))
        db.session.remove()
        db.engine.dispose()

    fsync = harness.fsync_ms(work)
    store_time = sum(r["store"]["wall_s"] for r in rounds)
    base_time = sum(r["baseline"]["wall_s"] for r in rounds)
    answered = sum(r["store"]["statuses"].get("200", 0) for r in rounds)
    store_rate = answered / store_time
    base_rate = args.events * args.rounds / base_time
    errors = sum(n for r in rounds for k, n in r["store"]["statuses"].items() if k != "200")
    harness.save(
        "webhook",
        {
            "events": args.events * args.rounds,
            "concurrency": args.concurrency,
            "store_per_s": round(store_rate, 1),
            "baseline_per_s": round(base_rate, 1),
            # The same bare endpoint, but checking the signature with construct_event as
            # the store must: the most any store could reach on this stack.
            "verify_only_per_s": round(
                args.events * args.rounds / sum(r["verify_only"]["wall_s"] for r in rounds), 1
            ),
            "ratio": round(store_rate / base_rate, 3),
            "verify_only_ratio": round(
                args.events
                * args.rounds
                / sum(r["verify_only"]["wall_s"] for r in rounds)
                / base_rate,
                3,
            ),
            "store_p50_ms": max(r["store"]["p50_ms"] for r in rounds),
            "store_p99_ms": max(r["store"]["p99_ms"] for r in rounds),
            "baseline_p50_ms": max(r["baseline"]["p50_ms"] for r in rounds),
            "baseline_p99_ms": max(r["baseline"]["p99_ms"] for r in rounds),
            "store_cpu_ms_per_event": max(r["store"]["server_cpu_ms"] for r in rounds),
            "baseline_cpu_ms_per_event": max(r["baseline"]["server_cpu_ms"] for r in rounds),
            "errors": errors,
            "error_statuses": dict(
                sum(
                    (Counter(r["store"]["statuses"]) for r in rounds),
                    Counter(),
                )
            ),
            "redelivered_after_5xx": retried,
            "fsync_ms": fsync,
            "sent": sent,
            "recorded_once": recorded,
            "applied": applied,
            "fulfilled_sales": fulfilled,
            "stock_takes": takes,
            "units_left": left,
            "units_expected_left": stock * ITEMS - sent,
            "lost": sent - applied,
            "double_applied": takes - applied,
            "resent": dup["count"],
            "resent_answered_200": dup["statuses"].get("200", 0),
            "rounds": rounds,
        },
    )


if __name__ == "__main__":
    main()
