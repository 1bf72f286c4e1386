"""POST /stripe/webhook on a running server: signed events apply once, anything else is refused.

Each request verifies its event and applies it in its own transaction before answering;
these tests race many of them, on both databases, and check every event applied once.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select
from stripe_fixtures import WEBHOOK_SECRET, make_event, make_session, sign

from conftest import STORE, LiveServer, both_databases, make_product
from swagstore.models import Sale, Stock, StripeEvent, db


@pytest.fixture
def app_config(app_config):
    return {**app_config, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def server_env(server_env):
    # The worker leaves the outbox alone: these tests are about what the webhook records.
    return {**server_env, "SWAGSTORE_WORKER_TASKS": "false"}


def post(server, body: bytes, signature: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return requests.post(server.url + "/stripe/webhook", data=body, headers=headers, timeout=60)


def counts(app):
    """Return (on_hand, events recorded, sales by status) of the one item."""
    with app.app_context():
        on_hand = db.session.get(Stock, ("tee-m", STORE)).on_hand
        events = db.session.scalar(select(func.count()).select_from(StripeEvent))
        rows = db.session.execute(select(Sale.status, func.count()).group_by(Sale.status))
        return on_hand, events, dict(rows.all())


@both_databases
def test_a_signed_event_is_applied(app, live_server):
    make_product(app, stock=2)
    body = json.dumps(make_event(make_session())).encode()

    response = post(live_server, body, sign(body))

    assert response.status_code == 200
    assert response.json()["outcome"] == "applied"
    assert counts(app) == (1, 1, {"fulfilled": 1})


def test_a_signed_event_of_another_type_is_acknowledged_and_ignored(app, live_server):
    make_product(app, stock=2)
    body = json.dumps(make_event({"id": "prod_1"}, "product.created")).encode()

    response = post(live_server, body, sign(body))

    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    assert counts(app) == (2, 0, {})


def _forged(body):
    return body, sign(body).replace("v1=", "v1=0")


def _wrong_secret(body):
    return body, sign(body, secret="whsec_someone_else")


def _stale(body):
    return body, sign(body, timestamp=int(time.time()) - 301)


def _no_header(body):
    return body, None


def _truncated(body):
    return body[: len(body) // 2], sign(body)


def _signed_garbage(body):
    garbage = b'{"id": "evt_1", "type": '
    return garbage, sign(garbage)


@pytest.mark.parametrize(
    "tamper", [_forged, _wrong_secret, _stale, _no_header, _truncated, _signed_garbage]
)
def test_a_bad_request_is_refused_with_400_and_changes_nothing(app, live_server, tamper):
    make_product(app, stock=2)
    body, signature = tamper(json.dumps(make_event(make_session())).encode())

    response = post(live_server, body, signature)

    assert response.status_code == 400
    assert response.json()["error"]
    assert counts(app) == (2, 0, {})


def test_a_body_over_one_mebibyte_is_refused(app, live_server):
    make_product(app, stock=2)
    event = make_event(make_session())
    event["data"]["object"]["padding"] = "x" * (2 * 1024 * 1024)
    body = json.dumps(event).encode()

    response = post(live_server, body, sign(body))

    assert response.status_code == 413
    assert counts(app) == (2, 0, {})


@both_databases
def test_each_event_delivered_three_times_concurrently_and_out_of_order(app, live_server):
    make_product(app, stock=5)
    events = [make_event(make_session()) for _ in range(10)]
    deliveries = [json.dumps(e).encode() for e in events] * 3
    random.Random(4).shuffle(deliveries)
    answers: list[tuple[int, str]] = []
    start = threading.Barrier(12)

    def deliver(bodies):
        start.wait()
        for body in bodies:
            response = post(live_server, body, sign(body))
            answers.append((response.status_code, response.json()["outcome"]))

    threads = [threading.Thread(target=deliver, args=(deliveries[i::12],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert sorted(answers) == sorted([(200, "applied")] * 10 + [(200, "duplicate")] * 20)
    assert counts(app) == (0, 10, {"fulfilled": 5, "refund_pending": 5})


@both_databases
def test_many_threads_on_two_processes_apply_every_event_once(app, server_env):
    make_product(app, stock=200)
    events = [json.dumps(make_event(make_session())).encode() for _ in range(150)]
    bodies = events + events[::5]  # 30 redeliveries, racing their originals
    random.Random(7).shuffle(bodies)
    server = LiveServer(server_env, workers=2, threads=16).start()
    try:
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda body: post(server, body, sign(body)), bodies))
    finally:
        server.stop()

    outcomes = [(r.status_code, r.json()["outcome"]) for r in answers]
    assert sorted(outcomes) == sorted([(200, "applied")] * 150 + [(200, "duplicate")] * 30)
    assert counts(app) == (50, 150, {"fulfilled": 150})


def test_a_malformed_event_fails_alone_in_a_burst(app, live_server):
    make_product(app, stock=10)
    good = [make_event(make_session()) for _ in range(8)]
    bad = make_event(make_session())
    del bad["data"]["object"]["id"]
    bodies = [json.dumps(e).encode() for e in [*good[:4], bad, *good[4:]]]

    with ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(lambda body: post(live_server, body, sign(body)), bodies))

    assert answers[4].status_code == 400
    assert bad["id"] in answers[4].json()["error"]
    assert [(r.status_code, r.json()["outcome"]) for r in answers[:4] + answers[5:]] == [
        (200, "applied")
    ] * 8
    assert counts(app) == (2, 8, {"fulfilled": 8})


def test_a_locked_database_answers_503_then_the_retry_applies(app, live_server, db_path):
    make_product(app, stock=10)
    body = json.dumps(make_event(make_session())).encode()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process's writer that never lets go
    try:
        # The request waits out SQLite's busy_timeout (10 s), then gives up.
        response = post(live_server, body, sign(body))
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert response.json()["error"]
    assert counts(app) == (10, 0, {})

    # Stripe tries again later, and then it is applied.
    again = post(live_server, body, sign(body))
    assert (again.status_code, again.json()["outcome"]) == (200, "applied")
    assert counts(app) == (9, 1, {"fulfilled": 1})
    redelivered = post(live_server, body, sign(body))
    assert (redelivered.status_code, redelivered.json()["outcome"]) == (200, "duplicate")
