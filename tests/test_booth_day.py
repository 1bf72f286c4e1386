"""Booth day on a Stripe account with no webhook: booths as `make run` starts them, polling.

Every test runs the standalone sandbox (`flask --app swagstore sandbox`, one account, no
webhook endpoint) and booth servers started through the Procfile (web and worker) with a
key, against real databases. Nothing reaches a booth but its own poller.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

import pytest
from sandbox_account import SandboxAccount
from sqlalchemy import func, select
from test_fulfilment_live import wait_for

from conftest import STORE, LiveServer, both_databases, make_product
from swagstore import create_app, sales
from swagstore.cli import init_db
from swagstore.models import PaymentLink, Sale, StockEvent, Task, db


@pytest.fixture
def account(tmp_path) -> SandboxAccount:
    with SandboxAccount(tmp_path / "account.sqlite") as started:
        yield started


def booth_config(url: str, account: SandboxAccount, store: str, **extra) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": url,
        "STORE_ID": store,
        "STRIPE_SECRET_KEY": account.KEY,
        "STRIPE_API_BASE": account.base,
        "STRIPE_CALL_GUARD": True,
        "TASK_BACKOFF_SCALE": 0.05,
        **extra,
    }


class Booth:
    """One booth: its app (for setup and checks) and its server, as `make run` runs it."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.store = config["STORE_ID"]
        self.app = create_app(config)
        with self.app.app_context():
            init_db()
        self.server: LiveServer | None = None

    def stock_and_sync(self, sku: str, units: int) -> str:
        make_product(self.app, sku, stock=units, store=self.store)
        result = self.app.test_cli_runner().invoke(args=["sync-stripe"])
        assert result.exit_code == 0, result.output
        with self.app.app_context():
            return db.session.scalar(
                select(PaymentLink.id).where(
                    PaymentLink.sku == sku,
                    PaymentLink.store == self.store,
                    PaymentLink.retired_at.is_(None),
                )
            )

    def start(self) -> Booth:
        env = {f"SWAGSTORE_{k}": str(v) for k, v in self.config.items() if k != "TESTING"}
        self.server = LiveServer(env).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        with self.app.app_context():
            db.engine.dispose()

    def sales(self) -> dict[str, tuple[str, int]]:
        """Return payment intent -> (status, amount) of this booth's store's card sales."""
        with self.app.app_context():
            rows = db.session.execute(
                select(Sale.payment_intent_id, Sale.status, Sale.amount).where(
                    Sale.store == self.store
                )
            ).all()
            db.session.rollback()
        return {pi: (status, amount) for pi, status, amount in rows}

    def settled(self, expected: int) -> dict[str, int] | None:
        with self.app.app_context():
            open_tasks = db.session.scalar(
                select(func.count()).where(Task.status.in_(("pending", "running")))
            )
            db.session.rollback()
        statuses = Counter(status for status, _ in self.sales().values())
        busy = statuses["pending"] or statuses["refund_pending"]
        if statuses.total() < expected or open_tasks or busy:
            return None
        return dict(statuses)


def pay_from_phones(account: SandboxAccount, sessions: list[dict], midway=None) -> None:
    """Pay every session from its own thread at once; call `midway` after half are paid."""
    start = threading.Barrier(len(sessions))
    paid: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def phone(session: dict) -> None:
        start.wait()
        try:
            account.pay(session["id"])
        except BaseException as e:
            errors.append(e)
            return
        with lock:
            paid.append(session["id"])
            if midway is not None and len(paid) == len(sessions) // 2:
                midway()

    threads = [threading.Thread(target=phone, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(paid) == len(sessions)


def money(account: SandboxAccount) -> dict[str, dict[str, tuple[int, int]]]:
    """Return per payment intent: action -> (count, amount), from the account's ledger."""
    intents = account.ledger()["payment_intents"]
    return {
        pi: {action: (t["count"], t["amount"]) for action, t in actions.items()}
        for pi, actions in intents.items()
    }


def assert_money_follows_capture(booth: Booth, account: SandboxAccount, capture: str) -> None:
    """Each sale's money on the account: paid once, and undone once if it was oversold."""
    ledger = money(account)
    for pi, (status, amount) in booth.sales().items():
        paid = "authorize" if capture == "manual" else "charge"
        expected = {paid: (1, amount)}
        if capture == "manual" and status == "fulfilled":
            expected["capture"] = (1, amount)
        undo = {"voided": "cancel", "refunded": "refund"}.get(status)
        if undo:
            expected[undo] = (1, amount)
        assert ledger[pi] == expected, (booth.store, pi, status)


def test_a_booth_started_as_make_run_sells_through_polling_and_a_killed_worker_misses_nothing(
    account, tmp_path
):
    booth = Booth(booth_config(f"sqlite:///{tmp_path / 'booth.sqlite'}", account, STORE))
    try:
        link = booth.stock_and_sync("tee-m", 15)
        booth.start()
        sessions = [account.open_session(link) for _ in range(20)]
        killed: list[int] = []

        def kill_the_worker() -> None:
            pid = booth.server.worker_pid()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        pay_from_phones(account, sessions, midway=kill_the_worker)

        statuses = wait_for(lambda: booth.settled(20), "20 sales to settle", 180)
        assert statuses == {"fulfilled": 15, "refunded": 5}
        # The Procfile's loop started the worker again, and it picked up where it stopped.
        assert killed and booth.server.worker_pid() != killed[0]
        assert_money_follows_capture(booth, account, "automatic")
        with booth.app.app_context():
            sold = db.session.scalar(
                select(func.count()).where(StockEvent.reason == "sale", StockEvent.sku == "tee-m")
            )
            assert sold == 15
        assert len(account.events("checkout.session.completed")) == 20
        assert account.deliveries() == []
    finally:
        booth.stop()


@both_databases
def test_two_booths_on_one_database_each_undo_oversold_payments_as_they_were_made(
    account, database_url, tmp_path
):
    north = Booth(booth_config(database_url, account, "north", LINK_CAPTURE="automatic"))
    south = Booth(booth_config(database_url, account, "south", LINK_CAPTURE="manual"))
    booths = {"automatic": north, "manual": south}
    try:
        links = {capture: b.stock_and_sync(f"tee-{b.store}", 5) for capture, b in booths.items()}
        for b in booths.values():
            b.start()
        sessions = [account.open_session(link) for link in links.values() for _ in range(12)]

        pay_from_phones(account, sessions)

        for capture, b in booths.items():
            statuses = wait_for(lambda b=b: b.settled(12), f"{b.store}'s sales", 180)
            undone = "voided" if capture == "manual" else "refunded"
            assert statuses == {"fulfilled": 5, undone: 7}, (b.store, statuses)
            assert_money_follows_capture(b, account, capture)
    finally:
        for b in booths.values():
            b.stop()


def test_two_booths_with_their_own_databases_never_reuse_a_key(account, tmp_path):
    paths = {store: tmp_path / f"{store}.sqlite" for store in ("north", "south")}
    booths = {
        store: Booth(booth_config(f"sqlite:///{path}", account, store))
        for store, path in paths.items()
    }

    def sell_and_refund_all(booth: Booth, units: int) -> None:
        link = booth.stock_and_sync(f"tee-{booth.store}", units)
        sessions = [account.open_session(link) for _ in range(units)]
        pay_from_phones(account, sessions)
        wait_for(lambda: booth.settled(units), f"{booth.store}'s {units} sales", 180)
        refund_every_sale(booth)
        statuses = wait_for(lambda: booth.settled(units), f"{booth.store}'s refunds", 180)
        assert statuses == {"refunded": units}, (booth.store, statuses)

    try:
        for b in booths.values():
            b.start()
        threads = [
            threading.Thread(target=sell_and_refund_all, args=(b, 30)) for b in booths.values()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert_no_idempotency_errors(booths.values())
        assert_ledger_matches(account, booths.values())

        # North's database is deleted and made again the same day: same task ids, new keys.
        north = booths["north"]
        north.stop()
        paths["north"].unlink()
        booths["north"] = north = Booth(north.config)
        north.start()
        sell_and_refund_all(north, 30)
        assert_no_idempotency_errors(booths.values())
    finally:
        for b in booths.values():
            b.stop()


def refund_every_sale(booth: Booth) -> None:
    """Refund each fulfilled sale, as staff do on the admin page (a refund task each)."""
    with booth.app.app_context():
        ids = db.session.scalars(
            select(Sale.id).where(Sale.store == booth.store, Sale.status == "fulfilled")
        ).all()
        db.session.rollback()
        for sale_id in ids:
            sales.refund(sale_id, restock=False, actor="staff")
            db.session.commit()


def assert_no_idempotency_errors(booths) -> None:
    for b in booths:
        with b.app.app_context():
            errors = db.session.scalars(select(Task.last_error).where(Task.last_error.isnot(None)))
            assert [e for e in errors if "dempoten" in e] == []
            assert db.session.scalar(select(func.count()).where(Task.status == "failed")) == 0
            db.session.rollback()


def assert_ledger_matches(account: SandboxAccount, booths) -> None:
    ledger = money(account)
    for b in booths:
        for pi, (_, amount) in b.sales().items():
            assert ledger[pi] == {"charge": (1, amount), "refund": (1, amount)}, (b.store, pi)
