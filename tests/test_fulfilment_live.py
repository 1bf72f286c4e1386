"""Fulfilment end to end: a running server, the sandbox over HTTP, the real SDK, real faults.

Phones are threads calling the sandbox's hosted pages; the worker delivers the sandbox's
events to the webhook and makes the captures, voids, refunds and link switches. Every test
ends by checking the app's tables against the sandbox's own ledger.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from stripe_fixtures import sign

from conftest import STORE, both_databases, cmdline, free_port, make_product
from swagstore import inventory, payments
from swagstore.models import PaymentLink, Sale, Stock, StripeEvent, Task, db

PRICE = 2500


# The server neither delivers nor polls: the test brings each event in itself.
NO_EVENTS = {"SWAGSTORE_SANDBOX_DELIVER": "false", "SWAGSTORE_EVENT_SOURCE": "webhook"}


@pytest.fixture
def capture() -> str:
    return "automatic"


@pytest.fixture
def app_config(app_config, capture):
    return {
        **app_config,
        "LINK_CAPTURE": capture,
        # Retries in tenths of a second, and a timeout the sandbox's slow faults outlast.
        "TASK_BACKOFF_SCALE": 0.1,
        "STRIPE_TIMEOUT": 2,
        # A task whose runner was killed is taken up again after this many seconds.
        "TASK_LEASE_SECONDS": 10,
    }


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll until check() is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last saw {value!r}")
        time.sleep(0.25)


def link_for_sale(app, runner, stock: int, sku: str = "tee-m") -> str:
    """Stock an item, make its payment link in the sandbox, and return the link id."""
    make_product(app, sku, stock=stock, price=PRICE)
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        return db.session.scalar(select(PaymentLink.id).where(PaymentLink.sku == sku))


def pay_all(sandbox, sessions: list[dict]) -> list[dict]:
    """Pay every session at once, one phone (thread) each; return the paid sessions."""
    start = threading.Barrier(len(sessions))
    paid: list[dict] = []
    errors: list[BaseException] = []

    def phone(session):
        start.wait()
        try:
            paid.append(sandbox.pay(session["id"]))
        except BaseException as e:  # reported below, on the test's own thread
            errors.append(e)

    threads = [threading.Thread(target=phone, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return paid


def settled(app, expected_sales: int) -> dict | None:
    """Return the app's state once every sale is in and every task has finished."""
    with app.app_context():
        statuses = Counter(db.session.scalars(select(Sale.status)).all())
        open_tasks = db.session.scalar(
            select(func.count()).where(Task.status.in_(("pending", "running")))
        )
        db.session.rollback()
    if statuses.total() < expected_sales or open_tasks or statuses["refund_pending"]:
        return None
    return dict(statuses)


def snapshot(app, sku: str = "tee-m") -> dict:
    with app.app_context():
        stock = db.session.get(Stock, (sku, STORE))
        sales = db.session.execute(
            select(Sale.payment_intent_id, Sale.status, Sale.captured, Sale.amount)
        ).all()
        tasks = Counter(
            (kind, status)
            for kind, status in db.session.execute(select(Task.kind, Task.status)).all()
        )
        link = db.session.scalar(select(PaymentLink).where(PaymentLink.sku == sku))
        state = {
            "on_hand": stock.on_hand,
            "reserved": stock.reserved,
            "sales": {pi: (status, captured, amount) for pi, status, captured, amount in sales},
            "tasks": tasks,
            "link_active_here": link.active,
            "events": db.session.scalar(select(func.count()).select_from(StripeEvent)),
        }
        link_id = link.id
        db.session.rollback()  # the read ends before Stripe is asked
        state["link_active_on_stripe"] = payments.gateway().retrieve_payment_link(link_id).active
        return state


def money(sandbox) -> dict[str, dict[str, tuple[int, int]]]:
    """Return the sandbox ledger as {payment intent: {action: (count, amount)}}."""
    return {
        pi: {action: (t["count"], t["amount"]) for action, t in actions.items()}
        for pi, actions in sandbox.ledger()["payment_intents"].items()
    }


@both_databases
@pytest.mark.parametrize("capture", ["automatic", "manual"])
def test_forty_phones_pay_for_five_units_at_once(app, runner, sandbox, capture):
    link = link_for_sale(app, runner, stock=5)
    sessions = [sandbox.open_session(link) for _ in range(40)]  # all opened while on sale

    pay_all(sandbox, sessions)
    statuses = wait_for(lambda: settled(app, 40), "40 sales and their tasks to finish")

    lost = "voided" if capture == "manual" else "refunded"
    assert statuses == {"fulfilled": 5, lost: 35}
    state = snapshot(app)
    assert (state["on_hand"], state["reserved"]) == (0, 0)
    assert not state["link_active_here"] and not state["link_active_on_stripe"]
    assert all(status == "done" for _, status in state["tasks"])
    ledger = money(sandbox)
    assert set(ledger) == set(state["sales"])
    for pi, (status, captured, amount) in state["sales"].items():
        if capture == "manual" and status == "fulfilled":
            assert captured and ledger[pi] == {"authorize": (1, amount), "capture": (1, amount)}
        elif capture == "manual":
            assert not captured and ledger[pi] == {"authorize": (1, amount), "cancel": (1, amount)}
        elif status == "fulfilled":
            assert ledger[pi] == {"charge": (1, amount)}
        else:
            assert ledger[pi] == {"charge": (1, amount), "refund": (1, amount)}
    # The sandbox's money and the app's sales agree to the cent.
    kept = sum(
        t.get("charge", (0, 0))[1] + t.get("capture", (0, 0))[1] - t.get("refund", (0, 0))[1]
        for t in ledger.values()
    )
    assert kept == sum(a for s, _, a in state["sales"].values() if s == "fulfilled") == 5 * PRICE


def assert_books_balance(app, sandbox, capture: str, sold: int, lost: int) -> dict:
    """Check stock, sales, tasks, link and the sandbox's money all tell one story."""
    statuses = wait_for(lambda: settled(app, sold + lost), f"{sold + lost} sales to settle")
    lost_status = "voided" if capture == "manual" else "refunded"
    assert statuses == {k: v for k, v in {"fulfilled": sold, lost_status: lost}.items() if v}
    state = snapshot(app)
    assert all(status == "done" for _, status in state["tasks"]), state["tasks"]
    ledger = money(sandbox)
    for pi, (status, _, amount) in state["sales"].items():
        paid = "authorize" if capture == "manual" else "charge"
        undo = {"voided": "cancel", "refunded": "refund"}.get(status)
        expected = {paid: (1, amount)}
        if capture == "manual" and status == "fulfilled":
            expected["capture"] = (1, amount)
        if undo:
            expected[undo] = (1, amount)
        assert ledger[pi] == expected, (pi, status)
    return state


@pytest.mark.parametrize("capture", ["automatic", "manual"])
def test_stripe_failing_with_500s_and_timeouts_is_retried_and_nothing_is_done_twice(
    app, runner, sandbox, capture
):
    link = link_for_sale(app, runner, stock=1)
    sessions = [sandbox.open_session(link) for _ in range(4)]
    path = "/v1/payment_intents" if capture == "manual" else "/v1/refunds"
    sandbox.fault(path, count=4, mode="error")
    # The sandbox does the work, then answers after the SDK has given up: only the
    # idempotency key stops the retry from doing it again.
    sandbox.fault(path, count=3, mode="timeout", seconds=3)

    pay_all(sandbox, sessions)

    state = assert_books_balance(app, sandbox, capture, sold=1, lost=3)
    assert (state["on_hand"], state["link_active_on_stripe"]) == (0, False)
    left = requests.get(sandbox.url + "/sandbox/_control/faults", timeout=60).json()
    assert left["faults"] == []
    with app.app_context():
        retried = db.session.scalars(select(Task.attempts).where(Task.attempts > 1)).all()
    assert retried, "no task was retried: the faults never hit"


def test_a_refund_whose_500_stripe_keeps_under_the_key_is_retried_with_a_new_key(
    app, runner, sandbox
):
    link = link_for_sale(app, runner, stock=1)
    sessions = [sandbox.open_session(link) for _ in range(3)]
    # The endpoint starts and fails: Stripe keeps that 500 under the idempotency key for a
    # day, so a retry with the same key would replay it until then.
    sandbox.fault("/v1/refunds", count=2, mode="crash")

    pay_all(sandbox, sessions)

    assert_books_balance(app, sandbox, "automatic", sold=1, lost=2)
    with app.app_context():
        rounds = db.session.scalars(
            select(Task.args["key_round"].as_integer()).where(Task.kind == "refund")
        ).all()
    assert rounds == [1, 1]


def signed(app, event: dict) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(event).encode()
    with app.app_context():
        secret = payments.webhook_secret(app)
    return payload, {"Stripe-Signature": sign(payload, secret), "Content-Type": "application/json"}


@pytest.mark.parametrize("sandbox_env", [NO_EVENTS])
@pytest.mark.parametrize("capture", ["manual"])
def test_web_and_worker_killed_mid_burst_lose_no_answered_event_and_finish_the_tasks(
    app, runner, sandbox, capture
):
    link = link_for_sale(app, runner, stock=10)
    pay_all(sandbox, [sandbox.open_session(link) for _ in range(30)])
    events = sandbox.events("checkout.session.completed")
    assert len(events) == 30
    answered: list[str] = []
    lock = threading.Lock()

    def stripe(batch, kill_at=None):
        for event in batch:
            payload, headers = signed(app, event)
            try:
                response = requests.post(
                    sandbox.url + "/stripe/webhook", data=payload, headers=headers, timeout=60
                )
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                # The server died under this delivery, perhaps mid-answer: no 2xx arrived,
                # so Stripe retries it later.
                continue
            if response.status_code == 200:
                with lock:
                    answered.append(event["id"])
                    # Killed from the sender that gets the 8th answer, so the kill lands
                    # mid-burst however fast the server is: at most the 5 deliveries in
                    # flight elsewhere can still be answered.
                    if len(answered) == kill_at:
                        sandbox.server.kill()

    senders = [
        threading.Thread(target=stripe, args=(events[i::6],), kwargs={"kill_at": 8})
        for i in range(6)
    ]
    processes = sandbox.server.processes()
    for t in senders:
        t.start()
    for t in senders:
        t.join(120)

    assert not [pid for pid in processes if cmdline(pid)], "a web or worker process survived"
    with app.app_context():
        recorded = set(db.session.scalars(select(StripeEvent.id)).all())
        db.session.rollback()
    assert set(answered) <= recorded
    assert 8 <= len(answered) <= 13, "the kill did not land mid-burst"

    sandbox.server.start()
    stripe(events)  # Stripe delivers again whatever it has not had a 2xx for, and more

    state = assert_books_balance(app, sandbox, capture, sold=10, lost=20)
    assert (state["on_hand"], state["events"]) == (0, 30)
    assert not state["link_active_on_stripe"]


@pytest.mark.parametrize(
    "sandbox_env",
    # Webhooks go to a port nobody listens on: only polling brings the events in.
    [{"SWAGSTORE_SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/stripe/webhook"}],
)
@pytest.mark.parametrize("capture", ["automatic", "manual"])
def test_poll_events_without_a_webhook_reaches_the_same_state(app, runner, sandbox, capture):
    link = link_for_sale(app, runner, stock=3)
    pay_all(sandbox, [sandbox.open_session(link) for _ in range(8)])

    first = runner.invoke(args=["poll-events", "--once"])
    again = runner.invoke(args=["poll-events", "--once"])

    assert first.exit_code == 0, first.output
    # 8 sessions and 2 payment_link.updated: the limit sync-stripe set, Stripe's stop at 3.
    assert "10 applied" in first.output
    assert again.output.strip() == "Events: none."
    state = assert_books_balance(app, sandbox, capture, sold=3, lost=5)
    assert (state["on_hand"], state["link_active_on_stripe"]) == (0, False)
    assert all(d["status"] != "delivered" for d in sandbox.deliveries())


@pytest.mark.parametrize("sandbox_env", [NO_EVENTS])
def test_reconcile_applies_paid_sessions_the_app_never_heard_of(app, runner, sandbox, capture):
    link = link_for_sale(app, runner, stock=2)
    # The fourth is opened, never paid: nothing to apply. Opened with the others, before
    # the link stopped itself at its limit of 2.
    *paid, _ = [sandbox.open_session(link) for _ in range(4)]
    pay_all(sandbox, paid)

    result = runner.invoke(args=["reconcile", "--since", "1h"])
    again = runner.invoke(args=["reconcile", "--since", "1h"])
    late = runner.invoke(args=["poll-events", "--once"])  # the real events, arriving late

    assert result.exit_code == 0, result.output
    assert "3 applied" in result.output
    assert "none" in again.output
    # The three sessions come again and are ignored; the refund's events, if the worker
    # has refunded by now, may come too.
    ignored = re.search(r"(\d+) ignored", late.output)
    assert late.exit_code == 0 and ignored and int(ignored[1]) >= 3, late.output
    state = assert_books_balance(app, sandbox, capture, sold=2, lost=1)
    assert len(state["sales"]) == 3
    assert state["on_hand"] == 0


@pytest.mark.parametrize("sandbox_env", [NO_EVENTS])
@both_databases
@pytest.mark.parametrize("capture", ["automatic", "manual"])
def test_every_event_three_times_concurrently_and_out_of_order(app, runner, sandbox, capture):
    link = link_for_sale(app, runner, stock=4)
    pay_all(sandbox, [sandbox.open_session(link) for _ in range(10)])
    deliveries = sandbox.events("checkout.session.completed") * 3
    random.Random(3).shuffle(deliveries)
    answers: list[str] = []

    def stripe(batch):
        for event in batch:
            payload, headers = signed(app, event)
            response = requests.post(
                sandbox.url + "/stripe/webhook", data=payload, headers=headers, timeout=60
            )
            answers.append(response.json()["outcome"])

    threads = [threading.Thread(target=stripe, args=(deliveries[i::10],)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert Counter(answers) == {"applied": 10, "duplicate": 20}
    state = assert_books_balance(app, sandbox, capture, sold=4, lost=6)
    assert (state["on_hand"], state["events"], state["link_active_on_stripe"]) == (0, 10, False)


def test_the_link_goes_off_at_zero_and_back_on_with_a_restock(app, runner, sandbox):
    link = link_for_sale(app, runner, stock=1)
    pay_all(sandbox, [sandbox.open_session(link)])
    assert_books_balance(app, sandbox, "automatic", sold=1, lost=0)
    assert not payments_link_active(app, link)

    with app.app_context():
        inventory.restock("tee-m", STORE, 2)
        db.session.commit()

    wait_for(lambda: payments_link_active(app, link), "the link to come back on")
    with app.app_context():
        assert db.session.get(PaymentLink, link).active


def payments_link_active(app, link: str) -> bool:
    with app.app_context():
        return bool(payments.gateway().retrieve_payment_link(link).active)


def test_a_delayed_payment_takes_stock_only_when_it_succeeds(app, runner, sandbox):
    link = link_for_sale(app, runner, stock=1)
    late, failing = sandbox.open_session(link), sandbox.open_session(link)
    sandbox.pay(late["id"], method="delayed")
    sandbox.pay(failing["id"], method="delayed")
    wait_for(lambda: settled(app, 2) == {"pending": 2}, "two pending sales")
    assert snapshot(app)["on_hand"] == 1

    sandbox.settle(failing["id"], "failed")
    sandbox.settle(late["id"], "succeeded")

    wait_for(lambda: settled(app, 2) == {"fulfilled": 1, "failed": 1}, "the payments to settle")
    assert snapshot(app)["on_hand"] == 0


@pytest.mark.parametrize("sandbox_env", [{"SWAGSTORE_WORKER_TASKS": "false"}])
@pytest.mark.parametrize("capture", ["manual"])
def test_a_capture_stripe_refuses_for_good_is_failed_with_the_reason(
    app, runner, sandbox, capture
):
    link = link_for_sale(app, runner, stock=2)
    (paid,) = pay_all(sandbox, [sandbox.open_session(link)])
    wait_for(lambda: settled_tasks(app, "capture"), "the capture task to be queued")
    # The authorization lapses (here: is cancelled) before the booth gets to capture it.
    assert sandbox.api("POST", f"payment_intents/{paid['payment_intent']}/cancel").ok

    result = runner.invoke(args=["run-tasks", "--once"])

    assert result.exit_code == 0, result.output
    with app.app_context():
        task = db.session.scalar(select(Task).where(Task.kind == "capture"))
        sale = db.session.scalar(select(Sale))
        assert task.status == "failed"
        assert "canceled" in task.last_error
        assert (sale.status, sale.captured) == ("failed", False)
        assert "capture failed" in sale.note
    assert "capture" not in money(sandbox)[paid["payment_intent"]]


def settled_tasks(app, kind: str) -> int:
    with app.app_context():
        n = db.session.scalar(select(func.count()).where(Task.kind == kind))
        db.session.rollback()
        return n
