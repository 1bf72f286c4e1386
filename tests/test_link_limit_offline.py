"""Stripe stops selling by itself while the booth is offline: the must-show of issue 14.

The account is the standalone sandbox (`flask --app swagstore sandbox`, its own process and
file), so it keeps taking payments while the booth's server (web + worker, the Procfile)
is stopped. Phones are the sandbox's hosted pages; the booth learns of the sales from the
account's webhook endpoint, which retries until the booth answers again.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import stripe
from sandbox_account import SandboxAccount
from sqlalchemy import func, select

from conftest import STORE, LiveServer, make_product
from swagstore import backoffice, payments, sales, stripe_sync
from swagstore.models import PaymentLink, Sale, Stock, Task, db, read_only

KEY = "sk_test_booth"
UNITS = 5
PHONES = 12


@pytest.fixture
def account(tmp_path) -> Iterator[SandboxAccount]:
    with SandboxAccount(tmp_path / "account.sqlite") as running:
        yield running


@pytest.fixture
def booth(app, app_config, account) -> Iterator[LiveServer]:
    """The booth's server, not started: its port is fixed, so the account can address it."""
    server = LiveServer(
        {
            **{f"SWAGSTORE_{k}": str(v) for k, v in app_config.items() if k != "TESTING"},
            "SWAGSTORE_STRIPE_SECRET_KEY": KEY,
            "SWAGSTORE_STRIPE_API_BASE": account.base,
        }
    )
    sdk = stripe.StripeClient(KEY, base_addresses={"api": account.base})
    endpoint = sdk.v1.webhook_endpoints.create(
        {"url": server.url + "/stripe/webhook", "enabled_events": ["*"]}
    )
    server.env["SWAGSTORE_STRIPE_WEBHOOK_SECRET"] = endpoint.secret
    app.config.update(STRIPE_SECRET_KEY=KEY, STRIPE_API_BASE=account.base)
    payments.close(app)
    try:
        yield server
    finally:
        payments.close(app)
        server.stop()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 240) -> Any:
    """Poll until check() is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last saw {value!r}"
        time.sleep(0.25)
    return value


def make_link(app, stock: int) -> str:
    make_product(app, "tee-m", stock=stock, price=2500)
    result = app.test_cli_runner().invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    with app.app_context(), read_only():
        return db.session.scalar(select(PaymentLink.id))


def phone(account: SandboxAccount, link_id: str) -> int:
    """A phone scans the code and pays if Stripe lets it: the status of opening the page."""
    opened = requests.post(
        f"{account.base}/payment_links/{link_id}/sessions",
        headers={"Accept": "application/json"},
        timeout=60,
    )
    if opened.status_code == 201:
        account.pay(opened.json()["id"])
    return opened.status_code


def on_stripe(app, link_id: str) -> stripe_sync.LinkState:
    with app.app_context():
        return stripe_sync.link_state(payments.gateway().retrieve_payment_link(link_id))


def stock_of(app) -> int:
    with app.app_context(), read_only():
        return db.session.get(Stock, ("tee-m", STORE)).available


def sales_by_status(app) -> Counter:
    with app.app_context(), read_only():
        rows = db.session.execute(select(Sale.kind, Sale.status)).all()
    return Counter(f"{kind}:{status}" for kind, status in rows)


def card_sales(app) -> int:
    return sum(n for status, n in sales_by_status(app).items() if status.startswith("card:"))


def ledger(account: SandboxAccount) -> Counter:
    return Counter(e["action"] for e in account.ledger()["entries"])


def tasks_left(app) -> int:
    with app.app_context(), read_only():
        return db.session.scalar(
            select(func.count()).where(Task.status.in_(("pending", "running")))
        )


def kiosk_classes(booth: LiveServer) -> str:
    page = requests.get(booth.url + "/", timeout=30).text
    return re.search(r'<li class="variant([^"]*)"\s+data-sku="tee-m"', page).group(1).strip()


def test_offline_booth_stripe_turns_away_the_phones_past_the_stock(app, account, booth):
    link = make_link(app, UNITS)
    booth.start()
    assert kiosk_classes(booth) == ""
    booth.stop()  # the laptop's lid closes
    with pytest.raises(requests.ConnectionError):
        requests.get(booth.url + "/healthz", timeout=5)

    answers = [phone(account, link) for _ in range(PHONES)]
    print(f"\n{PHONES} phones, {UNITS} units, booth offline: {Counter(answers)}")
    assert answers == [201] * UNITS + [410] * (PHONES - UNITS)
    assert ledger(account) == Counter(charge=UNITS), "nobody charged for a unit not there"
    assert on_stripe(app, link) == stripe_sync.LinkState(False, UNITS, UNITS)
    page = requests.get(f"{account.base}/pay/{link}", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 410 and "Sold out at the booth" in page.text

    started = time.monotonic()
    booth.start()  # back online: the account's retries reach the webhook
    wait_for(lambda: sales_by_status(app)["card:fulfilled"] == UNITS, "the 5 sales recorded")
    print(f"5 sales recorded {time.monotonic() - started:.1f} s after the booth came back")
    assert stock_of(app) == 0
    assert sales_by_status(app) == Counter({"card:fulfilled": UNITS})
    wait_for(lambda: tasks_left(app) == 0, "the booth's link tasks")
    assert kiosk_classes(booth) == "is-sold-out"
    (item,) = requests.get(booth.url + "/api/stock", timeout=30).json()["items"]
    assert (item["available"], item["sold_out"], item["stopped_by_stripe"]) == (0, True, True)
    assert ledger(account) == Counter(charge=UNITS)


def test_a_cash_sale_and_a_restock_while_phones_pay_leave_the_limit_at_count_plus_stock(
    app, account, booth
):
    link = make_link(app, UNITS)
    booth.start()
    done = threading.Event()
    answers: list[int] = []

    def phones() -> None:
        while not done.is_set() and len(answers) < 60:
            answers.append(phone(account, link))
            time.sleep(0.2)

    visitors = threading.Thread(target=phones)
    visitors.start()
    try:
        wait_for(lambda: len(answers) >= 2, "the first visitors")
        with app.app_context():
            sales.sell("tee-m", STORE, "cash", 2, actor="staff:a")
        wait_for(lambda: answers.count(410) >= 2, "visitors turned away: the units are gone")
        restocked_at = len(answers)
        with app.app_context():
            backoffice.restock("tee-m", STORE, 4, actor="staff:a")
        wait_for(lambda: answers[restocked_at:].count(201) >= 2, "visitors paying again")
    finally:
        done.set()
        visitors.join(timeout=300)
    assert not visitors.is_alive()

    paid = answers.count(201)
    wait_for(lambda: card_sales(app) == paid, "every card sale recorded")
    wait_for(lambda: tasks_left(app) == 0, "the booth's tasks")
    state, units, by_status = on_stripe(app, link), stock_of(app), sales_by_status(app)
    print(
        f"\nphones {''.join('p' if a == 201 else 'x' for a in answers)} (p paid, x turned "
        f"away; restock after {restocked_at}), sales {dict(by_status)}, "
        f"ledger {dict(ledger(account))}, Stripe {state}, available {units}"
    )
    assert state.count == paid
    assert state.limit == max(state.count + units, 1) and state.active == (units > 0)
    # Every charge is a unit handed over or money given back; no phone paid past the stock
    # unless it paid while the cash sale was on its way to Stripe.
    assert ledger(account)["charge"] == paid
    assert (
        ledger(account)["refund"] == by_status["card:refunded"] + by_status["card:refund_pending"]
    )
    assert by_status["card:fulfilled"] + 2 + units == UNITS + 4


def test_a_stock_change_while_the_link_call_is_held_back_ends_at_count_plus_stock(
    app, account, booth
):
    link = make_link(app, UNITS)
    booth.start()
    assert phone(account, link) == 201
    wait_for(lambda: stock_of(app) == UNITS - 1, "the card sale")
    # The worker's next link calls (its read of the link, then its update) answer 3 s late.
    account.fault("/v1/payment_links/", count=2, mode="timeout", seconds=3)
    with app.app_context():
        sales.sell("tee-m", STORE, "cash", 2, actor="staff:a")

    def faults_left() -> int:
        return len(requests.get(account.base + "/_control/faults", timeout=30).json()["faults"])

    wait_for(lambda: faults_left() == 0 or None, "the held link calls")
    with app.app_context():  # a delivery lands while the update is on its way back
        backoffice.restock("tee-m", STORE, 4, actor="staff:a")
    wait_for(lambda: tasks_left(app) == 0, "the booth's tasks")
    state = on_stripe(app, link)
    print(f"\nheld-back link call: Stripe {state}, available {stock_of(app)}")
    assert stock_of(app) == UNITS - 1 - 2 + 4
    assert state == stripe_sync.LinkState(True, 1, 1 + 6)
