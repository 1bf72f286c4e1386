"""Stripe's own guard: every payment link's completed-sessions limit is count + available.

A running sandbox-mode server (the worker delivers its events to the webhook, but runs no
tasks: each test runs the sync_link tasks itself, when it chooses), the real SDK, and the
sandbox's link restrictions as Stripe documents them.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from conftest import ADMIN_PASSWORD, STORE, log_in_http, make_product
from swagstore import backoffice, payments, sales, stripe_sync, tasks
from swagstore.models import PaymentLink, Sale, Stock, Task, db, read_only

PRICE = 2500


@pytest.fixture
def sandbox_env():
    return {"SWAGSTORE_WORKER_TASKS": "false", "SWAGSTORE_ADMIN_PASSWORD": ADMIN_PASSWORD}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll until check() is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last saw {value!r}"
        time.sleep(0.2)
    return value


def link_for(app, runner, sku: str, stock: int) -> str:
    """Stock an item, make its payment link with sync-stripe, and return the link's id."""
    make_product(app, sku, stock=stock, price=PRICE)
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    with app.app_context(), read_only():
        return db.session.scalar(select(PaymentLink.id).where(PaymentLink.sku == sku))


def on_stripe(app, link_id: str) -> stripe_sync.LinkState:
    with app.app_context():
        return stripe_sync.link_state(payments.gateway().retrieve_payment_link(link_id))


def available(app, sku: str) -> int:
    with app.app_context(), read_only():
        return db.session.get(Stock, (sku, STORE)).available


def recorded(app, sku: str) -> PaymentLink:
    with app.app_context(), read_only():
        link = db.session.scalar(select(PaymentLink).where(PaymentLink.sku == sku))
        db.session.expunge(link)
    return link


def card_sales(app, sku: str) -> int:
    with app.app_context(), read_only():
        return db.session.scalar(select(func.count()).where(Sale.sku == sku, Sale.kind == "card"))


def pending_syncs(app) -> int:
    with app.app_context(), read_only():
        return db.session.scalar(
            select(func.count()).where(Task.kind == "sync_link", Task.status == "pending")
        )


def run_tasks(app) -> int:
    with app.app_context():
        return tasks.run_due()


def run_one(app) -> int:
    with app.app_context():
        return tasks.run_due(limit=1)


def phone_buys(sandbox, link_id: str) -> int:
    """One phone scans the code and pays: the HTTP status of opening the session."""
    opened = requests.post(
        f"{sandbox.url}/sandbox/payment_links/{link_id}/sessions",
        headers={"Accept": "application/json"},
        timeout=60,
    )
    if opened.status_code == 201:
        sandbox.pay(opened.json()["id"])
    return opened.status_code


def test_links_are_made_with_a_limit_of_the_units_available(app, runner, sandbox):
    tee = link_for(app, runner, "tee-m", 3)
    mug = link_for(app, runner, "mug", 0)
    assert on_stripe(app, tee) == stripe_sync.LinkState(active=True, count=0, limit=3)
    # Stripe takes no limit under 1: a link with nothing to sell is off, limit 1.
    assert on_stripe(app, mug) == stripe_sync.LinkState(active=False, count=0, limit=1)
    row = recorded(app, "tee-m")
    assert (row.active, row.session_count, row.session_limit) == (True, 0, 3)
    again = runner.invoke(args=["sync-stripe"])
    assert "2 unchanged" in again.output, again.output


def test_a_card_sale_through_the_link_leaves_the_limit_alone(app, runner, sandbox):
    link = link_for(app, runner, "tee-m", 3)
    assert phone_buys(sandbox, link) == 201
    wait_for(lambda: available(app, "tee-m") == 2, "the sale through the webhook")
    assert pending_syncs(app) == 0, "count and stock moved together: nothing to re-align"
    assert on_stripe(app, link) == stripe_sync.LinkState(True, 1, 3)


def test_every_other_stock_change_re_aligns_the_limit(app, runner, sandbox):
    """Restock, stock-take, cash, giveaway, refund put back: limit = count + available.

    Inventory's old rule (a sync only when availability crosses zero) queues nothing for
    the restock: this fails there.
    """
    link = link_for(app, runner, "tee-m", 5)
    assert phone_buys(sandbox, link) == 201
    wait_for(lambda: card_sales(app, "tee-m") == 1, "the card sale")
    with app.app_context():
        sale_id = db.session.scalar(select(Sale.id).where(Sale.kind == "card"))
        db.session.rollback()
    changes = [
        ("restock +3", lambda: backoffice.restock("tee-m", STORE, 3, actor="staff:a")),
        ("cash x2", lambda: sales.sell("tee-m", STORE, "cash", 2, actor="staff:a")),
        ("giveaway", lambda: sales.sell("tee-m", STORE, "giveaway", 1, actor="staff:a")),
        ("count 4", lambda: backoffice.count("tee-m", STORE, 4, "stock-take", actor="staff:a")),
        ("refund back", lambda: sales.refund(sale_id, restock=True, actor="staff:a")),
    ]
    for what, change in changes:
        with app.app_context():
            change()
        assert pending_syncs(app) == 1, what
        run_tasks(app)
        state, units = on_stripe(app, link), available(app, "tee-m")
        assert state.active and state.limit == state.count + units, (what, state, units)
    assert on_stripe(app, link) == stripe_sync.LinkState(True, 1, 1 + 5)
    # Once every payment_link.updated our calls caused has arrived (late or out of order),
    # the store's record is Stripe's state.
    wait_for(lambda: all(d["status"] == "delivered" for d in sandbox.deliveries()), "deliveries")
    run_tasks(app)
    row = recorded(app, "tee-m")
    assert (row.active, row.session_count, row.session_limit) == (True, 1, 6)


def test_stripe_stops_the_link_at_its_limit_and_a_restock_switches_it_on_again(
    app, runner, sandbox
):
    link = link_for(app, runner, "tee-m", 2)
    assert [phone_buys(sandbox, link) for _ in range(3)] == [201, 201, 410]
    assert on_stripe(app, link) == stripe_sync.LinkState(False, 2, 2)
    wait_for(lambda: card_sales(app, "tee-m") == 2, "both sales")
    wait_for(lambda: all(d["status"] == "delivered" for d in sandbox.deliveries()), "deliveries")
    assert available(app, "tee-m") == 0
    run_tasks(app)  # whatever the events queued: the link stays as Stripe left it
    assert on_stripe(app, link) == stripe_sync.LinkState(False, 2, 2)
    row = recorded(app, "tee-m")
    assert (row.active, row.session_count, row.session_limit) == (False, 2, 2)

    with app.app_context():
        backoffice.restock("tee-m", STORE, 3, actor="staff:a")
    run_tasks(app)
    assert on_stripe(app, link) == stripe_sync.LinkState(True, 2, 5)
    assert phone_buys(sandbox, link) == 201
    wait_for(lambda: available(app, "tee-m") == 2, "the sale after the restock")


def shown(sandbox, http) -> tuple[str, bool, str]:
    """Return the kiosk's classes for tee-m, /api/stock's flag and the admin's link state."""
    kiosk = requests.get(sandbox.url + "/", timeout=30).text
    variant = re.search(r'<li class="variant([^"]*)"\s+data-sku="tee-m"', kiosk).group(1)
    (item,) = requests.get(sandbox.url + "/api/stock", timeout=30).json()["items"]
    row = re.search(r'<tr id="item-tee-m">(.*?)</tr>', http.get(sandbox.url + "/admin").text, re.S)
    state = html.unescape(re.search(r'<td class="link"[^>]*><span[^>]*>([^<]*)<', row[1])[1])
    return variant.strip(), item["stopped_by_stripe"], state


def test_a_link_stopped_by_stripe_with_stock_left_shows_sold_out_until_it_is_switched_on(
    app, runner, sandbox
):
    """A limit below the stock (say a lost sync): Stripe stops the link; the event re-aligns it.

    Until the task has run, the kiosk shows the item sold out (its code leads to Stripe's
    inactive page) and /admin says why.
    """
    link = link_for(app, runner, "tee-m", 5)
    with app.app_context():
        payments.gateway().update_payment_link(
            link, {"restrictions": {"completed_sessions": {"limit": 1}}}, "test-lower"
        )
    assert phone_buys(sandbox, link) == 201
    assert on_stripe(app, link) == stripe_sync.LinkState(False, 1, 1)
    wait_for(lambda: pending_syncs(app), "a sync queued by payment_link.updated")
    wait_for(lambda: available(app, "tee-m") == 4, "the sale")
    http, _ = log_in_http(sandbox.url)
    with http:
        assert shown(sandbox, http) == (
            "is-sold-out",
            True,
            "sold out on Stripe's side, switching on",
        )
        run_tasks(app)
        assert on_stripe(app, link) == stripe_sync.LinkState(True, 1, 5)
        assert shown(sandbox, http) == ("", False, "on")


def test_a_stock_change_while_the_link_call_is_held_back_still_ends_aligned(app, runner, sandbox):
    """The task re-reads the stock after its Stripe calls and goes again if it moved.

    Only the held task runs before the check (the restock queued a second one), so
    confirming without the re-read would leave the limit at 1 + 1 = 2 with 4 available.
    """
    link = link_for(app, runner, "tee-m", 3)
    assert phone_buys(sandbox, link) == 201
    wait_for(lambda: available(app, "tee-m") == 2, "the card sale")
    with app.app_context():
        sales.sell("tee-m", STORE, "cash", 1, actor="staff:a")
    # The task's read of the link and its update both answer 2 s late.
    sandbox.fault("/v1/payment_links/", count=2, mode="timeout", seconds=2)
    runner_thread = threading.Thread(target=run_one, args=(app,))
    runner_thread.start()
    wait_for(
        lambda: (
            not requests.get(sandbox.url + "/sandbox/_control/faults", timeout=30).json()["faults"]
            or None
        ),
        "the held link calls",
        60,
    )
    with app.app_context():  # a delivery lands while the update is on its way back
        backoffice.restock("tee-m", STORE, 3, actor="staff:a")
    runner_thread.join(timeout=120)
    assert not runner_thread.is_alive()
    assert available(app, "tee-m") == 4
    assert on_stripe(app, link) == stripe_sync.LinkState(True, 1, 5)
    run_tasks(app)  # the restock's own sync finds nothing to change
    assert on_stripe(app, link) == stripe_sync.LinkState(True, 1, 5)


def test_a_failed_delayed_payment_gives_its_place_under_the_limit_back(app, runner, sandbox):
    """Stripe counted the session when it completed unpaid; the failure took no unit."""
    link = link_for(app, runner, "tee-m", 3)
    session = sandbox.open_session(link)["id"]
    sandbox.pay(session, method="delayed")
    sandbox.settle(session, "failed")
    wait_for(lambda: _failed(app), "the failed payment recorded")
    run_tasks(app)
    assert available(app, "tee-m") == 3
    assert on_stripe(app, link) == stripe_sync.LinkState(True, 1, 4)


def _failed(app) -> bool:
    with app.app_context(), read_only():
        return db.session.scalar(select(Sale.status)) == "failed"


@pytest.mark.parametrize(
    "sandbox_env",
    # No deliveries and no polling worker: the events wait until the test polls.
    [
        {
            "SWAGSTORE_WORKER_TASKS": "false",
            "SWAGSTORE_SANDBOX_DELIVER": "false",
            "SWAGSTORE_EVENT_SOURCE": "webhook",
        }
    ],
)
def test_sales_stripe_counted_but_the_store_has_not_heard_of_are_not_sold_again(
    app, runner, sandbox
):
    """Say the booth is just back online: Stripe's count holds sales whose events are late.

    Without taking them out, a sync would set the limit to 2 + 4 = 6 and Stripe would sell
    two units that the late events are about to take.
    """
    link = link_for(app, runner, "tee-m", 5)
    assert [phone_buys(sandbox, link) for _ in range(2)] == [201, 201]
    with app.app_context():
        sales.sell("tee-m", STORE, "cash", 1, actor="staff:a")
    run_tasks(app)
    assert available(app, "tee-m") == 4, "the two card sales are not recorded yet"
    assert on_stripe(app, link) == stripe_sync.LinkState(True, 2, 4)
    polled = runner.invoke(args=["poll-events", "--once"])
    assert polled.exit_code == 0, polled.output
    assert available(app, "tee-m") == 2
    run_tasks(app)  # what the older payment_link.updated events queued changes nothing
    assert on_stripe(app, link) == stripe_sync.LinkState(True, 2, 4)
