"""Webhook delivery: signed like Stripe, retried on failure, one attempt at a time per event."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import LiveServer
from swagstore import payments


class Receiver:
    """A webhook endpoint in the test: verifies each signature with the SDK, then answers."""

    def __init__(self, app, fail_first: int = 0) -> None:
        with app.app_context():
            self.gateway = payments.make_gateway("sk_test_x", payments.webhook_secret(app))
        self.fail_first = fail_first
        self.received: list[str] = []
        self.forged = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    event = receiver.gateway.verify_event(
                        body, self.headers.get("Stripe-Signature")
                    )
                except payments.BadSignature:
                    with receiver.lock:
                        receiver.forged += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.received.append(event["id"])
                    failing = len(receiver.received) <= receiver.fail_first
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)
        self.gateway.close()


@pytest.fixture
def receiver(app):
    hook = Receiver(app, fail_first=1)
    yield hook
    hook.close()


@pytest.fixture
def sandbox_env(receiver) -> dict[str, str]:
    return {"SWAGSTORE_SANDBOX_WEBHOOK_URL": receiver.url}


def wait_for(predicate, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_events_are_delivered_signed_and_retried_until_2xx(sandbox, receiver):
    _, _, link = sandbox.one_unit_link(900, name="Mug")
    session = sandbox.pay(sandbox.open_session(link["id"])["id"])
    event_ids = {e["id"] for e in sandbox.events()}
    assert len(event_ids) == 3  # payment_intent.created, .succeeded, checkout.session.completed

    def all_delivered():
        rows = sandbox.deliveries()
        return len(rows) == 3 and all(r["status"] == "delivered" for r in rows) and rows

    rows = wait_for(all_delivered)
    assert receiver.forged == 0
    counts = Counter(receiver.received)
    assert set(counts) == event_ids
    # The first POST was answered 500, so exactly one event was delivered twice.
    assert sorted(counts.values()) == [1, 1, 2]
    assert sorted(r["attempts"] for r in rows) == [1, 1, 2]
    completed = sandbox.events("checkout.session.completed")[0]
    assert completed["data"]["object"]["id"] == session["id"]


def test_two_workers_deliver_each_event_once(app, server_env, receiver):
    receiver.fail_first = 0
    server = LiveServer({**server_env, "SWAGSTORE_SANDBOX_WEBHOOK_URL": receiver.url}, workers=2)
    server.start()
    try:
        key = {"Authorization": "Bearer sk_test_x"}
        product = requests.post(
            server.url + "/sandbox/v1/products", data={"name": "Cap"}, headers=key, timeout=30
        ).json()
        price = requests.post(
            server.url + "/sandbox/v1/prices",
            data={"product": product["id"], "unit_amount": 1500, "currency": "usd"},
            headers=key,
            timeout=30,
        ).json()
        link = requests.post(
            server.url + "/sandbox/v1/payment_links",
            data={"line_items[0][price]": price["id"], "line_items[0][quantity]": 1},
            headers=key,
            timeout=30,
        ).json()

        def buy(n: int) -> None:
            for _ in range(n):
                opened = requests.post(
                    f"{server.url}/sandbox/payment_links/{link['id']}/sessions", timeout=60
                ).json()
                paid = requests.post(
                    f"{server.url}/sandbox/checkout/{opened['id']}/pay",
                    headers={"Accept": "application/json"},
                    timeout=60,
                )
                assert paid.status_code == 200

        buyers = [threading.Thread(target=buy, args=(5,)) for _ in range(4)]
        for thread in buyers:
            thread.start()
        for thread in buyers:
            thread.join(timeout=120)
        events = requests.get(
            server.url + "/sandbox/v1/events", params={"limit": 100}, headers=key, timeout=30
        ).json()["data"]
        assert len(events) == 60

        def all_delivered():
            rows = requests.get(server.url + "/sandbox/_control/deliveries", timeout=30).json()
            return all(r["status"] == "delivered" for r in rows["deliveries"])

        wait_for(all_delivered, 90)
        counts = Counter(receiver.received)
        assert set(counts) == {e["id"] for e in events}
        assert set(counts.values()) == {1}
    finally:
        server.stop()
