"""The stock rules: guarded updates, their log, and their behaviour under real races."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from conftest import STORE, both_databases, make_item, make_product, race
from swagstore import create_app, inventory
from swagstore.catalog import load
from swagstore.cli import init_db
from swagstore.models import Stock, StockEvent, Task, db

HERE = Path(__file__).resolve().parent


def level(sku: str = "tee-m") -> tuple[int, int]:
    stock = db.session.get(Stock, (sku, STORE))
    db.session.refresh(stock)
    return stock.on_hand, stock.reserved


def events(sku: str = "tee-m") -> list[tuple[str, int, int]]:
    rows = db.session.execute(
        select(StockEvent.reason, StockEvent.on_hand, StockEvent.reserved)
        .where(StockEvent.sku == sku)
        .order_by(StockEvent.id)
    )
    return [tuple(r) for r in rows]


@both_databases
def test_take_until_empty_then_refuse(app):
    make_product(app, stock=2)
    with app.app_context():
        assert inventory.take("tee-m", STORE, ref="cs_1") == inventory.Level("tee-m", STORE, 1, 0)
        assert inventory.take("tee-m", STORE, ref="cs_2").available == 0
        assert inventory.take("tee-m", STORE, ref="cs_3") is None
        db.session.commit()
        assert level() == (0, 0)
        assert events()[1:] == [("take", 1, 0), ("take", 0, 0)]


def test_take_more_than_available_changes_nothing(app):
    make_product(app, stock=3)
    with app.app_context():
        assert inventory.hold("tee-m", STORE, 2) is not None
        assert inventory.take("tee-m", STORE, 2) is None
        assert level() == (3, 2)


def test_unknown_item_or_store_is_refused(app):
    make_product(app, stock=3)
    with app.app_context():
        assert inventory.take("nope", STORE) is None
        assert inventory.take("tee-m", "other-booth") is None
        assert inventory.restock("nope", STORE, 5) is None


@both_databases
def test_hold_settle_release(app):
    make_product(app, stock=5)
    with app.app_context():
        assert inventory.hold("tee-m", STORE, 2).available == 3
        assert inventory.settle("tee-m", STORE, 1) == inventory.Level("tee-m", STORE, 4, 1)
        assert inventory.release("tee-m", STORE, 1) == inventory.Level("tee-m", STORE, 4, 0)
        assert inventory.release("tee-m", STORE, 1) is None
        assert inventory.settle("tee-m", STORE, 1) is None
        assert [e[0] for e in events()] == ["catalog", "hold", "settle", "release"]


@both_databases
def test_adjust_never_below_reserved(app):
    make_product(app, stock=5)
    with app.app_context():
        inventory.hold("tee-m", STORE, 3)
        assert inventory.adjust("tee-m", STORE, 2, actor="staff") is None
        assert inventory.adjust("tee-m", STORE, 3, actor="staff").available == 0
        assert inventory.adjust("tee-m", STORE, 9).available == 6
        assert level() == (9, 3)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_bad_quantities_are_rejected(app, bad):
    make_product(app, stock=5)
    with app.app_context():
        for change in (inventory.take, inventory.hold, inventory.restock, inventory.release):
            with pytest.raises(ValueError, match="quantity must be a whole number"):
                change("tee-m", STORE, bad)
        assert level() == (5, 0)


@both_databases
def test_check_constraints_hold_even_against_raw_sql(app):
    make_product(app, stock=2)
    with app.app_context():
        with pytest.raises(IntegrityError):
            db.session.execute(db.text("UPDATE stock SET reserved = 3"))
        db.session.rollback()
        with pytest.raises(IntegrityError):
            db.session.execute(db.text("UPDATE stock SET on_hand = -1"))
        db.session.rollback()
        assert level() == (2, 0)


@both_databases
def test_rolled_back_change_leaves_no_log(app):
    make_product(app, stock=2)
    with app.app_context():
        inventory.take("tee-m", STORE)
        db.session.rollback()
        assert level() == (2, 0)
        assert [e[0] for e in events()] == ["catalog"]


@both_databases
def test_link_sync_queued_by_every_change_but_a_sale_its_link_counted(app):
    make_product(app, stock=3)
    with app.app_context():
        db.session.execute(
            db.text(
                "INSERT INTO payment_link (id, sku, store, url, price_id, active, created_at)"
                " VALUES ('plink_1', 'tee-m', :store, 'https://x', 'price_1', true, '2026-01-01')"
            ),
            {"store": STORE},
        )
        # A sale through the link moved Stripe's count with the stock: its limit still holds.
        inventory.take("tee-m", STORE, counted_by_link=True)
        db.session.commit()
        assert db.session.scalars(select(Task.kind)).all() == []
        # Any other change moves the limit; the sync is queued in the change's transaction.
        inventory.take("tee-m", STORE, reason="cash")
        db.session.commit()
        assert db.session.scalars(select(Task.kind)).all() == ["sync_link"]
        inventory.restock("tee-m", STORE, 1)
        db.session.commit()
        # One pending sync reads the stock when it runs, so no second one is queued.
        assert db.session.scalars(select(Task.kind)).all() == ["sync_link"]
        db.session.execute(update(Task).values(status="done"))
        db.session.commit()
        inventory.take("tee-m", STORE, 2, counted_by_link=True)
        db.session.commit()
        # Down to zero even through the link: switched off, in case Stripe's count passed.
        assert db.session.scalars(select(Task.status)).all() == ["done", "pending"]


@both_databases
def test_rolled_back_change_queues_no_link_switch(app):
    make_product(app, stock=2)
    with app.app_context():
        db.session.execute(
            db.text(
                "INSERT INTO payment_link (id, sku, store, url, price_id, active, created_at)"
                " VALUES ('plink_1', 'tee-m', :store, 'https://x', 'price_1', true, '2026-01-01')"
            ),
            {"store": STORE},
        )
        db.session.commit()
        inventory.take("tee-m", STORE, reason="cash")
        db.session.rollback()
        # A later commit of something else must not carry the rolled-back change's switch.
        inventory.take("tee-m", STORE, counted_by_link=True)
        db.session.commit()
        assert db.session.scalars(select(Task.kind)).all() == []


@both_databases
def test_eight_processes_race_1000_takes_for_100_units(app, database_url):
    make_product(app, stock=100)
    results = race(database_url, ["take"] * 8, 125)
    assert sum(r["ok"] for r in results) == 100
    with app.app_context():
        assert level() == (0, 0)
        takes = [e for e in events() if e[0] == "take"]
        assert len(takes) == 100
        assert sorted(e[1] for e in takes) == list(range(100))


@both_databases
def test_holds_race_takes_for_the_same_units(app, database_url):
    make_product(app, stock=100)
    # Every process alternates take and hold, so both kinds race from every process and
    # both succeed even if one process happens to run alone at first.
    results = race(database_url, ["take,hold"] * 8, 125)
    taken = sum(r["by_op"]["take"] for r in results)
    held = sum(r["by_op"]["hold"] for r in results)
    assert taken + held == 100
    assert taken > 0 and held > 0
    with app.app_context():
        assert level() == (100 - taken, held)
        log = events()[1:]
        assert len(log) == 100
        # Every row is a consistent snapshot: available drops by exactly one each time.
        assert [on_hand - reserved for _, on_hand, reserved in log] == list(range(99, -1, -1))


class StockMachine(RuleBasedStateMachine):
    """Random sequences of stock changes, checked against a two-number model."""

    app = None

    def __init__(self) -> None:
        super().__init__()
        if StockMachine.app is None:
            tmp = tempfile.mkdtemp()
            StockMachine.app = create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/model.sqlite",
                    "SANDBOX_DATABASE": f"{tmp}/sandbox.sqlite",
                    "SECRET_KEY": "x",
                }
            )
            with StockMachine.app.app_context():
                init_db()
        self.ctx = StockMachine.app.app_context()
        self.ctx.push()
        db.session.execute(db.delete(StockEvent))
        db.session.execute(db.delete(Task))
        db.session.execute(db.delete(Stock))
        load([make_item("tee-m", stock=0)], STORE)
        db.session.commit()
        self.on_hand, self.reserved = 0, 0
        self.log_rows = 0

    def teardown(self) -> None:
        db.session.rollback()
        self.ctx.pop()

    def check(self, result, ok: bool, reason: str) -> None:
        assert (result is not None) == ok
        db.session.commit()
        if ok:
            self.log_rows += 1
            assert events()[-1] == (reason, self.on_hand, self.reserved)
        assert len(events()) == self.log_rows

    @rule(q=st.integers(1, 5))
    def take(self, q):
        ok = self.on_hand - self.reserved >= q
        if ok:
            self.on_hand -= q
        self.check(inventory.take("tee-m", STORE, q), ok, "take")

    @rule(q=st.integers(1, 5))
    def hold(self, q):
        ok = self.on_hand - self.reserved >= q
        if ok:
            self.reserved += q
        self.check(inventory.hold("tee-m", STORE, q), ok, "hold")

    @rule(q=st.integers(1, 5))
    def settle(self, q):
        ok = self.reserved >= q
        if ok:
            self.on_hand -= q
            self.reserved -= q
        self.check(inventory.settle("tee-m", STORE, q), ok, "settle")

    @rule(q=st.integers(1, 5))
    def release(self, q):
        ok = self.reserved >= q
        if ok:
            self.reserved -= q
        self.check(inventory.release("tee-m", STORE, q), ok, "release")

    @rule(q=st.integers(1, 10))
    def restock(self, q):
        self.on_hand += q
        self.check(inventory.restock("tee-m", STORE, q), True, "restock")

    @rule(counted=st.integers(0, 15))
    def adjust(self, counted):
        ok = counted >= self.reserved
        if ok:
            self.on_hand = counted
        self.check(inventory.adjust("tee-m", STORE, counted), ok, "adjust")

    @invariant()
    def database_matches_model(self):
        on_hand, reserved = level()
        assert 0 <= reserved <= on_hand
        assert (on_hand, reserved) == (self.on_hand, self.reserved)


StockMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_stock_machine = StockMachine.TestCase
