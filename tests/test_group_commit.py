"""group_commit: webhook events queued together are applied in one transaction, each once."""

from __future__ import annotations

import fcntl
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from stripe_fixtures import WEBHOOK_SECRET, make_event, make_session, sign

from conftest import STORE, both_databases, make_product
from swagstore import fulfilment, group_commit
from swagstore.models import Sale, Stock, StripeEvent, db


@pytest.fixture
def app_config(app_config):
    return {**app_config, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "TASK_THREAD": False}


def writer(app) -> group_commit.Writer:
    return app.extensions[group_commit.EXTENSION]


def submit(app, event):
    """Apply one event through the app's writer, as a request thread does."""
    with app.test_request_context():
        try:
            return group_commit.apply(event)
        except Exception as e:
            return e


def recorded(app) -> tuple[int, int, int]:
    """Return (on_hand of tee-m, events recorded, fulfilled sales)."""
    with app.app_context():
        on_hand = db.session.get(Stock, ("tee-m", STORE)).on_hand
        events = db.session.scalar(select(func.count()).select_from(StripeEvent))
        sales = db.session.scalar(select(func.count(Sale.id)).where(Sale.status == "fulfilled"))
        return on_hand, events, sales


def held_back(app, db_path, events):
    """Queue every event while the writer waits for its turn, then let it go on."""
    lock = open(f"{db_path}-writer", "a+")  # noqa: SIM115 - held across the threads below
    fcntl.flock(lock, fcntl.LOCK_EX)
    pool = ThreadPoolExecutor(len(events))
    try:
        futures = [pool.submit(submit, app, e) for e in events]
        deadline = time.monotonic() + 10
        # The writer has taken its first batch and waits for the lock; the rest are queued.
        while writer(app)._queue.qsize() < len(events) - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    results = [f.result(timeout=30) for f in futures]
    pool.shutdown()
    return results


def test_events_queued_together_commit_together_and_each_applies_once(app, db_path):
    make_product(app, stock=100)
    events = [make_event(make_session()) for _ in range(30)]
    events += [events[0], events[1]]  # redeliveries in the same burst

    results = held_back(app, db_path, events)

    outcomes = [r.outcome for r in results]
    assert sorted(outcomes) == ["applied"] * 30 + ["duplicate"] * 2
    # One batch waited for the lock with the first event, one took all the others.
    assert writer(app).batches == 2
    assert recorded(app) == (70, 30, 30)


def test_a_malformed_event_fails_alone_and_its_batch_still_applies(app, db_path):
    make_product(app, stock=10)
    good = [make_event(make_session()) for _ in range(5)]
    bad = make_event(make_session())
    del bad["data"]["object"]["id"]

    results = held_back(app, db_path, [*good[:3], bad, *good[3:]])

    assert isinstance(results[3], fulfilment.MalformedEvent)
    assert [r.outcome for r in results[:3] + results[4:]] == ["applied"] * 5
    assert recorded(app) == (5, 5, 5)


def test_a_locked_database_answers_503_and_applies_nothing(app, client, db_path):
    make_product(app, stock=10)
    body = json.dumps(make_event(make_session())).encode()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process's writer that never lets go
    try:
        response = client.post(
            "/stripe/webhook", data=body, headers={"Stripe-Signature": sign(body)}
        )
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert recorded(app) == (10, 0, 0)

    # Stripe tries again later, and then it is applied.
    again = client.post("/stripe/webhook", data=body, headers={"Stripe-Signature": sign(body)})
    assert (again.status_code, again.get_json()["outcome"]) == (200, "applied")
    assert recorded(app) == (9, 1, 1)


def test_an_idle_writer_ends_and_the_next_event_starts_another(app, monkeypatch):
    monkeypatch.setattr(group_commit, "IDLE_SECONDS", 0.05)
    make_product(app, stock=10)

    assert submit(app, make_event(make_session())).outcome == "applied"
    first = writer(app)._thread
    deadline = time.monotonic() + 5
    while writer(app)._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer(app)._thread is None and not first.is_alive()

    assert submit(app, make_event(make_session())).outcome == "applied"
    assert recorded(app) == (8, 2, 2)


@both_databases
def test_many_threads_at_once_apply_every_event_once(app):
    make_product(app, stock=200)
    events = [make_event(make_session()) for _ in range(150)]
    events += events[::5]  # 30 redeliveries, racing their originals

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda e: submit(app, e), events))

    outcomes = [r.outcome for r in results]
    assert (outcomes.count("applied"), outcomes.count("duplicate")) == (150, 30)
    assert recorded(app) == (50, 150, 150)


def test_a_writer_that_fails_outside_a_batch_starts_again(app, monkeypatch, caplog):
    make_product(app, stock=10)
    real, calls = group_commit._writers_queue, []

    def broken_once():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("no room for the lock file")
        return real()

    monkeypatch.setattr(group_commit, "_writers_queue", broken_once)
    writer(app).wait_seconds = 10

    assert submit(app, make_event(make_session())).outcome == "applied"
    assert len(calls) == 2
    assert "group commit writer failed" in caplog.text
    assert recorded(app) == (9, 1, 1)
