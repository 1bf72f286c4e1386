"""`flask --app swagstore sandbox`: the sandbox alone, one Stripe account for several booths."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import stripe
from sandbox_account import SandboxAccount

from conftest import STORE, make_product


@pytest.fixture
def account(tmp_path) -> Iterator[SandboxAccount]:
    with SandboxAccount(tmp_path / "account.sqlite") as running:
        yield running


def booth(account: SandboxAccount, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": account.base}, max_network_retries=0)


class Receiver:
    """A webhook endpoint on this machine that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.arrived:
                    outer.received.append((body, self.headers["Stripe-Signature"]))
                    outer.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/stripe/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, seconds: float = 60) -> list[tuple[bytes, str]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, seconds), (
                f"{len(self.received)} of {count} deliveries in {seconds} s"
            )
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_booths_with_their_own_keys_share_one_account(account):
    north, south = booth(account, "sk_test_north"), booth(account, "sk_test_south")
    made = north.v1.products.create({"name": "Tote"}, {"idempotency_key": "tote"})
    assert [p.id for p in south.v1.products.list().data] == [made.id]
    # One account, one key space: south reusing north's key gets north's answer...
    assert south.v1.products.create({"name": "Tote"}, {"idempotency_key": "tote"}).id == made.id
    # ...or, with other parameters, Stripe's refusal: booths must make keys of their own.
    with pytest.raises(stripe.IdempotencyError):
        south.v1.products.create({"name": "Cap"}, {"idempotency_key": "tote"})
    with pytest.raises(stripe.AuthenticationError):
        booth(account, "sk_live_real").v1.products.list()


def test_the_pay_pages_and_controls_are_served_at_the_root(account):
    sdk = booth(account, account.KEY)
    product = sdk.v1.products.create({"name": "Mug"})
    price = sdk.v1.prices.create({"product": product.id, "unit_amount": 1200, "currency": "usd"})
    link = sdk.v1.payment_links.create({"line_items": [{"price": price.id, "quantity": 1}]})
    assert link.url == f"{account.base}/pay/{link.id}"
    page = requests.get(link.url, headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200 and page.url.startswith(f"{account.base}/checkout/cs_test_")
    assert "SANDBOX: no real payments" in page.text
    paid = account.pay(account.open_session(link.id)["id"])
    assert paid["payment_status"] == "paid"
    assert [e["action"] for e in account.ledger()["entries"]] == ["charge"]
    assert account.advance_clock(60)["now"] > paid["created"]
    account.fault("/v1/products", count=1)
    assert account.api("GET", "products").status_code == 500
    assert requests.get(f"{account.base}/sandbox/v1/products", timeout=30).status_code == 404


def test_events_go_to_registered_endpoints_signed_with_their_secret(account, receiver):
    sdk = booth(account, account.KEY)
    endpoint = sdk.v1.webhook_endpoints.create(
        {"url": receiver.url, "enabled_events": ["checkout.session.completed"]}
    )
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in sdk.v1.webhook_endpoints.retrieve(endpoint.id)
    assert [e.id for e in sdk.v1.webhook_endpoints.list().data] == [endpoint.id]
    product = sdk.v1.products.create({"name": "Pin"})
    price = sdk.v1.prices.create({"product": product.id, "unit_amount": 600, "currency": "usd"})
    link = sdk.v1.payment_links.create({"line_items": [{"price": price.id, "quantity": 1}]})
    session = account.open_session(link.id)["id"]
    account.pay(session)
    (body, signature), *_ = receiver.wait_for(1)
    event = stripe.Webhook.construct_event(body, signature, endpoint.secret)
    assert (event.type, event.data.object.id) == ("checkout.session.completed", session)
    assert event.pending_webhooks == 1
    # Only the types it asked for: the PaymentIntent's events went to nobody.
    assert {e["type"] for e in account.events()} >= {"payment_intent.succeeded"}
    assert [d["type"] for d in account.deliveries()] == ["checkout.session.completed"]

    deleted = sdk.v1.webhook_endpoints.delete(endpoint.id)
    assert deleted.deleted is True
    account.pay(account.open_session(link.id)["id"])
    assert len(sdk.v1.events.list({"type": "checkout.session.completed"}).data) == 2
    assert len(account.deliveries()) == 1, "a deleted endpoint gets nothing more"
    assert len(receiver.received) == 1


def test_with_no_endpoint_nothing_is_sent_and_booths_poll(account, app):
    """A booth pointed at the account syncs its links there; its sales wait in /v1/events."""
    app.config.update(STRIPE_SECRET_KEY="sk_test_booth", STRIPE_API_BASE=account.base)
    make_product(app, "tee-m", stock=3)
    assert app.test_cli_runner().invoke(args=["sync-stripe"]).exit_code == 0
    links = account.api("GET", "payment_links").json()["data"]
    assert [link["metadata"]["sku"] for link in links] == ["tee-m"]
    account.pay(account.open_session(links[0]["id"])["id"])
    completed = account.events("checkout.session.completed")
    assert [e["data"]["object"]["metadata"] for e in completed] == [
        {"sku": "tee-m", "store": STORE}
    ]
    assert completed[0]["pending_webhooks"] == 0
    assert account.deliveries() == []
