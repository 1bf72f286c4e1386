"""Staff actions that reach Stripe, end to end: admin over HTTP, the task runner, the sandbox.

The server runs in sandbox mode with its task runner; Stripe objects are read back with the
real SDK (payments.gateway()) and the sandbox's ledger, never from the app's own tables.
"""

from __future__ import annotations

import html
import re
import time

import pytest
from sqlalchemy import select

from conftest import ADMIN_PASSWORD, log_in_http, make_product
from swagstore import payments
from swagstore.models import PaymentLink, Sale, db


@pytest.fixture
def sandbox_env() -> dict[str, str]:
    return {"SWAGSTORE_ADMIN_PASSWORD": ADMIN_PASSWORD, "SWAGSTORE_TASK_BACKOFF_SCALE": "0.05"}


def until(what: str, check, timeout: float = 60):
    """Poll check() until it returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def link_is(app, link_id: str, active: bool) -> bool:
    with app.app_context():
        return payments.gateway().retrieve_payment_link(link_id).active is active


def link_state(http, base: str, sku: str) -> str:
    row = re.search(
        rf'<tr id="item-{sku}">(.*?)</tr>', http.get(base + "/admin", timeout=30).text, re.S
    )
    state = re.findall(r'<td class="link"[^>]*><span[^>]*>([^<]*)</span>', row.group(1))[0]
    return html.unescape(state)


def sold_out_item_with_a_link(app, runner, sandbox) -> tuple[str, str]:
    """Sell the only unit of an item through its payment link; return (link id, sale's PI)."""
    make_product(app, "tee-m", stock=1, price=2500)
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        link_id = db.session.scalar(
            select(PaymentLink.id).where(
                PaymentLink.sku == "tee-m", PaymentLink.retired_at.is_(None)
            )
        )
    sandbox.pay(sandbox.open_session(link_id)["id"])

    def sale_paid():
        with app.app_context():
            return db.session.scalar(
                select(Sale.payment_intent_id).where(Sale.status == "fulfilled")
            )

    intent = until("the webhook records the card sale", sale_paid)
    until(
        "the sold-out item's link is switched off on Stripe", lambda: link_is(app, link_id, False)
    )
    return link_id, intent


def test_restock_after_sold_out_switches_the_payment_link_on(app, runner, sandbox):
    link_id, _ = sold_out_item_with_a_link(app, runner, sandbox)
    http, token = log_in_http(sandbox.url)
    with http:
        # Stripe switched the link off itself, at its limit: the last unit was paid for.
        until(
            "the stock page shows the link stopped by Stripe",
            lambda: link_state(http, sandbox.url, "tee-m") == "sold out on Stripe's side",
        )
        # A phone scanning now sees the sold-out message.
        assert sandbox.api("GET", f"payment_links/{link_id}").json()["active"] is False
        response = http.post(
            sandbox.url + "/admin/stock/tee-m/restock",
            data={"csrf_token": token, "quantity": "3"},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 303
        until(
            "the restocked item's link is on again on Stripe", lambda: link_is(app, link_id, True)
        )
        until(
            "the stock page shows the link on",
            lambda: link_state(http, sandbox.url, "tee-m") == "on",
        )
    # The QR code works again: a phone can open a checkout for the link.
    assert sandbox.open_session(link_id)["id"].startswith("cs_")
    with app.app_context():
        assert db.session.get(PaymentLink, link_id).active is True


def test_staff_refund_reaches_stripe_once_and_returns_the_unit(app, runner, sandbox):
    link_id, intent = sold_out_item_with_a_link(app, runner, sandbox)
    http, token = log_in_http(sandbox.url)
    with http:
        page = http.get(sandbox.url + "/admin/sales", timeout=30).text
        sale_id = int(re.findall(r"/admin/sales/(\d+)/refund", page)[0])
        assert intent in page
        for _ in range(2):  # a double click queues one refund
            http.post(
                sandbox.url + f"/admin/sales/{sale_id}/refund",
                data={"csrf_token": token, "restock": "yes"},
                timeout=30,
            )

        def refunded():
            with app.app_context():
                return db.session.get(Sale, sale_id).status == "refunded"

        until("the refund task refunds the sale on Stripe", refunded)
        refunded_page = http.get(sandbox.url + "/admin/sales?status=refunded", timeout=30).text
        assert re.findall(r'<tr id="sale-(\d+)">', refunded_page) == [str(sale_id)]
        # The returned unit is on sale again, so the link comes back on.
        until("the link is on for the returned unit", lambda: link_is(app, link_id, True))
    ledger = sandbox.ledger()["payment_intents"][intent]
    assert ledger["refund"]["count"] == 1 and ledger["refund"]["amount"] == 2500
    stock = http.get(sandbox.url + "/api/stock", timeout=30).json()["items"][0]
    assert (stock["available"], stock["sold"]) == (1, 0)
