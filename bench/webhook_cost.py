"""Where a webhook's CPU time goes, one stage at a time, in one process without HTTP.

Each stage runs on the same signed checkout.session.completed events against a fresh
SQLite file (WAL, synchronous=FULL); the figure is CPU time per event, best of 3 runs.
The bare Flask endpoint of bench/baseline.py, called through Flask's test client, is the
baseline the same way; the test client's own cost is in both.

    python bench/webhook_cost.py [--events 1000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import baseline
import harness
import webhook

from swagstore import create_app, fulfilment, group_commit, payments
from swagstore.cli import init_db
from swagstore.models import db


def cpu_ms(run: Callable[[list], None], batches: Iterator[list], events: int) -> float:
    """Return the best CPU time per event (ms) of run over three batches of events."""
    best = float("inf")
    for _ in range(3):
        chunk = next(batches)
        start = time.process_time()
        run(chunk)
        best = min(best, time.process_time() - start)
    return round(best / events * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    n = args.events

    work = Path(tempfile.mkdtemp(prefix="swagstore-bench-cost-"))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'swagstore.sqlite'}",
            "SECRET_KEY": "bench",
            "STRIPE_WEBHOOK_SECRET": webhook.SECRET,
            "STORE_ID": webhook.STORE,
            "TASK_THREAD": False,
        }
    )
    runner = app.test_cli_runner()
    with app.app_context():
        init_db()
    runner.invoke(args=["load-catalog", str(webhook.catalog(work / "catalog.toml", 40 * n))])

    def fresh() -> Iterator[list]:
        while True:
            yield [webhook.signed(webhook.completed(i)) for i in range(n)]

    stages: dict[str, float] = {}
    base = baseline.app.test_client()
    stages["baseline: bare endpoint through the test client"] = cpu_ms(
        lambda rs: [
            base.post("/stripe/webhook", data=r["body"], headers=r["headers"]) for r in rs
        ],
        fresh(),
        n,
    )
    with app.app_context():
        gw = payments.gateway()

        def verify(rs: list) -> None:
            for r in rs:
                gw.construct_event(r["body"].encode(), r["headers"]["Stripe-Signature"]).to_dict(
                    for_json=True
                )

        def one_by_one(rs: list) -> None:
            for r in rs:
                fulfilment.apply(_event(r))
                db.session.remove()  # as each request's teardown does

        def batched(rs: list) -> None:
            for i in range(0, len(rs), group_commit.MAX_BATCH):
                fulfilment.apply_all([_event(r) for r in rs[i : i + group_commit.MAX_BATCH]])
                db.session.remove()

        stages["construct_event + to_dict (signature, JSON, StripeObject)"] = cpu_ms(
            verify, fresh(), n
        )
        stages["apply(): one transaction per event"] = cpu_ms(one_by_one, fresh(), n)
        stages[f"apply_all(): batches of {group_commit.MAX_BATCH}"] = cpu_ms(batched, fresh(), n)
        db.engine.dispose()
    client = app.test_client()
    stages["the store's webhook through the test client, one at a time (batches of one)"] = cpu_ms(
        lambda rs: [
            client.post("/stripe/webhook", data=r["body"], headers=r["headers"]) for r in rs
        ],
        fresh(),
        n,
    )
    print(f"CPU per event, best of 3 x {n} events, fsync {harness.fsync_ms(work)} ms:")
    for stage, ms in stages.items():
        print(f"  {ms:7.3f} ms  {stage}")


def _event(request: dict) -> dict:
    """Return the event of a signed request (verified by the stage that times verifying)."""
    return json.loads(request["body"])


if __name__ == "__main__":
    main()
