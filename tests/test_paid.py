"""The buyer's page and where Stripe sends buyers after paying (links, sessions, the card form)."""

from __future__ import annotations

import re

import pytest
import requests
from sqlalchemy import select
from stripe_fixtures import make_event, make_session

from conftest import make_product
from swagstore import fulfilment, payments, sales, stripe_sync
from swagstore.models import PaymentLink, db, read_only

# What a phone's browser asks for (the sandbox answers scripts JSON).
PAGE = {"Accept": "text/html"}


def pay(app, sku: str = "tee-m", **fields) -> dict:
    session = make_session(sku, **fields)
    with app.app_context():
        fulfilment.apply(make_event(session))
    return session


def status(client, reference: str, **query) -> str:
    response = client.get(f"/paid/{reference}", query_string=query)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.text


def test_the_page_tells_each_ending_and_only_a_sold_unit_says_collect(app, client):
    make_product(app, "tee-m", stock=1, name="Logo tee")
    won, lost = pay(app), pay(app)
    waiting = status(client, "cs_test_notyetseen123")
    assert "Confirming your payment…" in waiting and 'data-final="no"' in waiting
    ready = status(client, won["id"])
    with app.app_context():
        code = db.session.scalar(
            select(sales.Sale.pickup_code).where(sales.Sale.status == "fulfilled")
        )
    assert "Ready to collect" in ready and f"Show code <strong>{code}</strong>" in ready
    refunded = status(client, lost["id"])
    assert "Sold out just before you: refunded" in refunded and "$25.00" in refunded
    assert "collect" not in refunded.lower() and 'data-final="yes"' in refunded
    declined = status(client, "pi_3Mtw" + "x" * 20, redirect_status="failed")
    assert "did not go through" in declined and "Nothing was charged" in declined
    # Scripts come from static files: no inline script for a strict Content-Security-Policy.
    assert re.findall(r"<script(?![^>]*\bsrc=)", ready) == []


@pytest.mark.parametrize(
    "reference", ["x", "cs_", "evt_12345678", "cs_test_../../admin", "pi_a b"]
)
def test_a_reference_that_is_no_session_or_intent_is_not_found(app, client, reference):
    assert client.get(f"/paid/{reference}").status_code == 404


def link(app, sku: str = "tee-m"):
    with app.app_context(), read_only():
        link_id = db.session.scalar(
            select(PaymentLink.id).where(PaymentLink.sku == sku, PaymentLink.retired_at.is_(None))
        )
    with app.app_context():
        return payments.gateway().retrieve_payment_link(link_id)


def test_links_lead_to_the_buyers_page_when_phones_reach_the_booth(app, runner, sandbox):
    make_product(app, "tee-m", stock=3)
    assert runner.invoke(args=["sync-stripe"]).exit_code == 0
    confirmation = link(app).after_completion
    assert confirmation.type == "hosted_confirmation"
    assert confirmation.hosted_confirmation.custom_message == stripe_sync.thanks_message(
        "automatic", "Item tee-m"
    )

    # PUBLIC_URL set: the next sync points the same link at the booth's page.
    app.config["PUBLIC_URL"] = sandbox.url + "/"
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    assert "after-payment page updated" in result.output and "0 links created" in result.output
    after = link(app).after_completion
    assert (after.type, after.redirect.url) == (
        "redirect",
        f"{sandbox.url}/paid/{{CHECKOUT_SESSION_ID}}",
    )
    again = runner.invoke(args=["sync-stripe"])
    assert "1 unchanged" in again.output

    # A phone paying there lands on the booth's page for its own session.
    session = sandbox.open_session(link(app).id)
    paid = requests.post(
        f"{sandbox.url}/sandbox/checkout/{session['id']}/pay", headers=PAGE, timeout=60
    )
    assert paid.url == f"{sandbox.url}/paid/{session['id']}"
    assert 'id="sale-status"' in paid.text

    # And back: without PUBLIC_URL, Stripe's confirmation with the manual capture's words.
    app.config["PUBLIC_URL"] = None
    app.config["LINK_CAPTURE"] = "manual"
    runner.invoke(args=["sync-stripe"])
    message = link(app).after_completion.hosted_confirmation.custom_message
    assert message == stripe_sync.thanks_message("manual", "Item tee-m")
    assert "not charged" in message


def test_the_sandboxs_confirmation_never_says_collect(app, runner, sandbox):
    make_product(app, "tee-m", stock=3)
    assert runner.invoke(args=["sync-stripe"]).exit_code == 0
    session = sandbox.open_session(link(app).id)
    url = f"{sandbox.url}/sandbox/checkout/{session['id']}/pay"
    page = requests.post(url, headers=PAGE, timeout=60).text
    assert "Thanks for your payment" in page
    assert stripe_sync.thanks_message("automatic", "Item tee-m").split(":")[0] in page
    assert "collect your item at the booth" not in page
