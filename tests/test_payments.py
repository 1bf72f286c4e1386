"""The gateway: the real stripe SDK against the sandbox, over HTTP on a live server."""

from __future__ import annotations

import json
import time

import pytest
import requests

from conftest import STORE
from swagstore import create_app, payments
from swagstore.models import Store, db, read_only
from swagstore.sandbox.delivery import signature


def catalog_objects(gw: payments.Gateway, capture: str = "automatic", amount: int = 2500):
    product = gw.create_product({"name": "Logo T-shirt", "metadata": {"sku": "tee-m"}}, None)
    price = gw.create_price(
        {"product": product.id, "unit_amount": amount, "currency": "usd"}, None
    )
    link = gw.create_payment_link(
        {
            "line_items": [{"price": price.id, "quantity": 1}],
            "metadata": {"sku": "tee-m", "store": "booth"},
            "payment_intent_data": {"capture_method": capture},  # type: ignore[typeddict-item]
            "inactive_message": "Sold out at the booth, sorry!",
        },
        None,
    )
    return product, price, link


def test_products_prices_and_links_are_created_updated_and_listed(app, sandbox):
    with app.app_context():
        gw = payments.gateway()
        product, price, link = catalog_objects(gw)
        assert product.object == "product" and product.metadata["sku"] == "tee-m"
        assert (price.unit_amount, price.currency, price.product) == (2500, "usd", product.id)
        assert gw.retrieve_price(price.id).id == price.id
        assert link.active is True
        assert link.url == f"{sandbox.api_base}/pay/{link.id}"
        assert link.payment_intent_data.capture_method == "automatic"
        assert link.metadata.to_dict() == {"sku": "tee-m", "store": "booth"}

        off = gw.set_payment_link_active(link.id, False, "off-1")
        assert off.active is False
        assert gw.retrieve_payment_link(link.id).active is False

        listed = gw.client.v1.payment_links.list({"limit": 10})
        assert [item.id for item in listed.data] == [link.id]
        assert gw.client.v1.products.list().data[0].id == product.id
        items = gw.client.v1.payment_links.line_items.list(link.id)
        assert [(i.price.id, i.quantity) for i in items.data] == [(price.id, 1)]


def test_an_idempotency_key_replays_the_same_object_and_refuses_other_params(app, sandbox):
    with app.app_context():
        gw = payments.gateway()
        first = gw.create_product({"name": "Mug"}, "key-mug")
        again = gw.create_product({"name": "Mug"}, "key-mug")
        assert again.id == first.id
        with pytest.raises(payments.Rejected) as error:
            gw.create_product({"name": "Cap"}, "key-mug")
        assert error.value.status == 400
        assert "same parameters" in str(error.value)
        assert len(gw.client.v1.products.list().data) == 1
    raw = sandbox.api(
        "POST", "products", data={"name": "Mug"}, headers={"Idempotency-Key": "key-mug"}
    )
    assert raw.headers["Idempotent-Replayed"] == "true"
    assert raw.json()["id"] == first.id


def test_an_inactive_link_refuses_new_sessions_but_an_open_one_can_still_be_paid(app, sandbox):
    with app.app_context():
        gw = payments.gateway()
        _, _, link = catalog_objects(gw)
        opened = sandbox.open_session(link.id)
        gw.set_payment_link_active(link.id, False, "off")

    refused = requests.post(f"{sandbox.url}/sandbox/payment_links/{link.id}/sessions", timeout=30)
    assert refused.status_code == 410
    assert refused.json()["error"]["message"] == "Sold out at the booth, sorry!"
    page = requests.get(link.url, timeout=30, headers={"Accept": "text/html"})
    assert page.status_code == 410
    assert "Sold out at the booth, sorry!" in page.text
    assert "SANDBOX: no real payments" in page.text

    paid = sandbox.pay(opened["url"])
    assert (paid["status"], paid["payment_status"]) == ("complete", "paid")
    assert paid["payment_link"] == link.id
    assert paid["metadata"] == {"sku": "tee-m", "store": "booth"}
    with app.app_context():
        session = payments.gateway().retrieve_checkout_session(opened["id"])
        assert session.status == "complete"
        intent = payments.gateway().retrieve_payment_intent(session.payment_intent)
        assert (intent.status, intent.amount_received) == ("succeeded", 2500)
    completed = sandbox.events("checkout.session.completed")
    assert [e["data"]["object"]["id"] for e in completed] == [opened["id"]]


def test_a_manual_capture_link_authorizes_then_captures_once(app, sandbox):
    with app.app_context():
        gw = payments.gateway()
        _, _, link = catalog_objects(gw, capture="manual")
        session = sandbox.pay(sandbox.open_session(link.id)["url"])
        # Stripe counts an uncaptured authorization as not yet paid.
        assert (session["status"], session["payment_status"]) == ("complete", "unpaid")
        intent_id = session["payment_intent"]
        assert gw.retrieve_payment_intent(intent_id).status == "requires_capture"

        captured = gw.capture_payment_intent(intent_id, "capture-1")
        assert (captured.status, captured.amount_received) == ("succeeded", 2500)
        assert gw.capture_payment_intent(intent_id, "capture-1").id == intent_id
        with pytest.raises(payments.Rejected) as error:
            gw.capture_payment_intent(intent_id, "capture-2")
        assert error.value.code == "payment_intent_unexpected_state"
    counts = sandbox.ledger()["payment_intents"][intent_id]
    assert counts["capture"] == {"count": 1, "amount": 2500}
    types = [e["type"] for e in sandbox.events()]
    assert "payment_intent.amount_capturable_updated" in types
    assert "payment_intent.succeeded" in types


def test_cancel_voids_an_authorization_and_refund_returns_a_charge_once(app, sandbox):
    with app.app_context():
        gw = payments.gateway()
        held = gw.create_payment_intent(
            {"amount": 1500, "currency": "usd", "capture_method": "manual"}, "pi-1"
        )
        assert held.status == "requires_payment_method"
        assert sandbox.confirm(held.id, held.client_secret)["status"] == "requires_capture"
        canceled = gw.cancel_payment_intent(held.id, "cancel-1")
        assert canceled.status == "canceled"
        with pytest.raises(payments.Rejected) as error:
            gw.cancel_payment_intent(held.id, "cancel-2")
        assert error.value.code == "payment_intent_unexpected_state"

        _, _, link = catalog_objects(gw)
        charged = sandbox.pay(sandbox.open_session(link.id)["url"])["payment_intent"]
        refund = gw.create_refund({"payment_intent": charged}, "refund-1")
        assert (refund.status, refund.amount, refund.payment_intent) == (
            "succeeded",
            2500,
            charged,
        )
        assert gw.create_refund({"payment_intent": charged}, "refund-1").id == refund.id
        with pytest.raises(payments.Rejected) as error:
            gw.create_refund({"payment_intent": charged}, "refund-2")
        assert error.value.code == "charge_already_refunded"
        refunds = gw.client.v1.refunds.list({"payment_intent": charged})
        assert [r.id for r in refunds.data] == [refund.id]
    ledger = sandbox.ledger()["payment_intents"]
    assert ledger[held.id]["cancel"]["count"] == 1
    assert ledger[charged]["refund"] == {"count": 1, "amount": 2500}
    canceled_events = sandbox.events("payment_intent.canceled")
    assert [e["data"]["object"]["id"] for e in canceled_events] == [held.id]
    assert len(sandbox.events("refund.created")) == 1


def test_checkout_sessions_are_created_listed_and_expired(app, sandbox):
    with app.app_context():
        gw = payments.gateway()
        _, price, link = catalog_objects(gw)
        expires_at = int(time.time()) + 3600
        session = gw.create_checkout_session(
            {
                "mode": "payment",
                "line_items": [{"price": price.id, "quantity": 2}],
                "metadata": {"sku": "tee-m", "store": "booth", "hold": "7"},
                "expires_at": expires_at,
                "success_url": "http://127.0.0.1/thanks",
            },
            "cs-1",
        )
        assert (session.status, session.amount_total, session.expires_at) == (
            "open",
            5000,
            expires_at,
        )
        assert gw.checkout_session_quantity(session.id) == 2
        with pytest.raises(payments.Rejected) as error:
            gw.create_checkout_session(
                {
                    "mode": "payment",
                    "line_items": [{"price": price.id, "quantity": 1}],
                    "expires_at": int(time.time()) + 60,
                },
                "cs-short",
            )
        assert error.value.status == 400 and "30 minutes" in str(error.value)

        from_link = sandbox.open_session(link.id)["id"]
        by_link = gw.list_checkout_sessions({"payment_link": link.id})
        assert [s.id for s in by_link] == [from_link]
        everything = gw.list_checkout_sessions({"limit": 1})
        assert {s.id for s in everything} == {session.id, from_link}

        expired = gw.expire_checkout_session(session.id, "expire-1")
        assert expired.status == "expired"
        sandbox.pay(from_link)
        with pytest.raises(payments.Rejected) as error:
            gw.expire_checkout_session(from_link, "expire-2")
        assert error.value.code is None  # Stripe's answer carries no code, only the status
        assert "status of `complete`" in str(error.value)
    late = requests.post(
        f"{sandbox.url}/sandbox/checkout/{session.id}/pay",
        headers={"Accept": "application/json"},
        timeout=30,
    )
    assert late.status_code == 400


def test_sdk_retries_a_server_error_with_the_same_key_and_creates_once(app, sandbox):
    sandbox.fault("/v1/products", count=2)
    with app.app_context():
        product = payments.gateway().create_product({"name": "Tote"}, "tote-1")
    listed = sandbox.api("GET", "products").json()["data"]
    assert [p["id"] for p in listed] == [product.id]
    sandbox.fault("/v1/products", count=3)
    with app.app_context(), pytest.raises(payments.Transient) as error:
        payments.gateway().create_product({"name": "Cap"}, "cap-1")
    assert error.value.status == 500


def test_a_500_kept_under_the_key_says_the_key_is_spent(app, sandbox):
    sandbox.fault("/v1/products", count=1, mode="crash")
    with app.app_context():
        gw = payments.gateway()
        for _ in range(2):  # the failure, then its replay
            with pytest.raises(payments.Transient) as kept:
                gw.create_product({"name": "Cap"}, "cap-kept")
            assert (kept.value.status, kept.value.key_spent) == (500, True)
        sandbox.fault("/v1/products", count=3)
        with pytest.raises(payments.Transient) as passing:
            gw.create_product({"name": "Cap"}, "cap-passing")
    assert (passing.value.status, passing.value.key_spent) == (500, False)
    assert sandbox.api("GET", "products").json()["data"] == []


def test_a_timed_out_call_is_retried_and_replayed_not_done_twice(app, sandbox):
    app.config["STRIPE_TIMEOUT"] = 1
    sandbox.fault("/v1/refunds", count=1, mode="timeout", seconds=3)
    with app.app_context():
        gw = payments.gateway()
        _, _, link = catalog_objects(gw)
        charged = sandbox.pay(sandbox.open_session(link.id)["url"])["payment_intent"]
        refund = gw.create_refund({"payment_intent": charged}, "refund-timeout")
        assert refund.status == "succeeded"
    assert sandbox.ledger()["payment_intents"][charged]["refund"]["count"] == 1


def test_the_sandbox_refuses_calls_without_a_test_key(app, sandbox):
    missing = requests.get(f"{sandbox.api_base}/v1/products", timeout=30)
    assert missing.status_code == 401
    # As Stripe answers it: an invalid_request_error with no code.
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "code" not in missing.json()["error"]
    app.config["STRIPE_SECRET_KEY"] = "sk_live_not_a_test_key"
    with app.app_context(), pytest.raises(payments.Rejected) as error:
        payments.gateway().create_product({"name": "Mug"}, None)
    assert error.value.status == 401


def test_in_process_transport_reaches_the_sandbox_without_a_server(app):
    app.config["PUBLIC_URL"] = "http://booth.local:5000"
    with app.app_context():
        gw = payments.gateway()
        assert isinstance(gw.http_client, payments.InProcessClient)
        _, _, link = catalog_objects(gw, capture="manual")
        assert link.url.startswith("http://booth.local:5000/sandbox/pay/plink_")
        assert gw.retrieve_payment_link(link.id).payment_intent_data.capture_method == "manual"
    payments.close(app)


def test_verify_event_accepts_the_sandbox_signature_and_refuses_forgeries(app):
    with app.app_context():
        gw = payments.gateway()
        payload = json.dumps({"id": "evt_1", "object": "event", "type": "ping", "data": {}})
        secret = payments.webhook_secret(app)
        assert secret and secret.startswith("whsec_")
        good = signature(payload.encode(), secret, int(time.time()))
        assert gw.verify_event(payload.encode(), good)["id"] == "evt_1"
        with pytest.raises(payments.BadSignature):
            gw.verify_event(
                payload.encode(), signature(payload.encode(), "whsec_x", int(time.time()))
            )
        with pytest.raises(payments.BadSignature):
            stale = signature(payload.encode(), secret, int(time.time()) - 600)
            gw.verify_event(payload.encode(), stale)
        with pytest.raises(payments.BadSignature):
            gw.verify_event(payload.encode(), None)
    payments.close(app)


def test_in_process_calls_never_join_the_callers_session(app):
    # This test calls Stripe inside a transaction on purpose, so the guard stands aside.
    app.config["STRIPE_CALL_GUARD"] = False
    with app.app_context():
        db.session.add(Store(id="ghost", name="never committed"))
        assert payments.gateway().create_product({"name": "Mug"}, None).name == "Mug"
        db.session.rollback()
        assert db.session.get(Store, "ghost") is None
    payments.close(app)


def test_a_stripe_call_inside_a_database_transaction_raises(app):
    with app.app_context():
        db.session.get(Store, STORE)  # a read opens a transaction (on SQLite, the write lock)
        with pytest.raises(payments.TransactionOpen, match="ProductService.create made while"):
            payments.gateway().create_product({"name": "Mug"}, None)
        with read_only():
            db.session.get(Store, STORE)
            with pytest.raises(payments.TransactionOpen, match="PriceService.retrieve"):
                payments.gateway().retrieve_price("price_nope")
        db.session.add(Store(id="ghost", name="never committed"))
        with pytest.raises(payments.TransactionOpen):
            payments.gateway().retrieve_price("price_nope")
        db.session.rollback()
        # Once the transaction has ended, the same call goes through.
        assert payments.gateway().create_product({"name": "Mug"}, None).name == "Mug"
    payments.close(app)


@pytest.mark.parametrize(
    ("config", "guarded"),
    [
        ({"TESTING": True}, True),
        ({"TESTING": False}, False),
        ({"TESTING": False, "STRIPE_CALL_GUARD": "1"}, True),
        ({"TESTING": True, "STRIPE_CALL_GUARD": "false"}, False),
        ({"TESTING": True, "STRIPE_CALL_GUARD": False}, False),
    ],
)
def test_the_guard_is_on_in_testing_or_when_asked(app, app_config, config, guarded):
    other = create_app({**app_config, "STRIPE_CALL_GUARD": None, **config})
    with other.app_context():
        gw = payments.gateway()
        assert (gw.in_transaction is not None) is guarded
        db.session.get(Store, STORE)
        if guarded:
            with pytest.raises(payments.TransactionOpen):
                gw.create_product({"name": "Mug"}, None)
        else:
            # Unguarded, the call is made (and the sandbox refuses the unknown price).
            with pytest.raises(payments.Rejected):
                gw.retrieve_price("price_nope")
        db.session.rollback()
        payments.close(other)
        db.engine.dispose()
