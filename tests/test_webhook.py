"""POST /stripe/webhook on a running server: signed events apply once, anything else is refused."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
import requests
from sqlalchemy import func, select
from stripe_fixtures import WEBHOOK_SECRET, make_event, make_session, sign

from conftest import STORE, both_databases, make_product
from swagstore.models import Sale, Stock, StripeEvent, db


@pytest.fixture
def app_config(app_config):
    # No runner thread: these tests are about what the webhook records, not the tasks.
    return {**app_config, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "TASK_THREAD": False}


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
