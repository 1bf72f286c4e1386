"""Stock actions, link state, the audit trail and task retries, without HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest import STORE, both_databases, make_product
from swagstore import auth, backoffice, holds, inventory, offer, sales, tasks
from swagstore.models import PaymentLink, Sale, Stock, StockEvent, Task, db, utcnow
from swagstore.sales import Refused


def add_link(sku: str = "tee-m", *, active: bool = True) -> None:
    db.session.add(
        PaymentLink(
            id=f"plink_{sku}",
            sku=sku,
            store=STORE,
            url="https://buy.test/x",
            price_id="price_1",
            active=active,
        )
    )
    db.session.commit()


def levels() -> list[tuple[int, int]]:
    return [(s.on_hand, s.reserved) for s in db.session.scalars(select(Stock).order_by(Stock.sku))]


def test_restock_adds_units_and_logs_who(app):
    make_product(app, "tee-m", stock=0)
    with app.app_context():
        level = backoffice.restock("tee-m", STORE, 5, actor="staff:ada")
        assert (level.on_hand, level.available) == (5, 5)
        event = db.session.scalars(select(StockEvent).order_by(StockEvent.id.desc())).first()
        assert (event.reason, event.actor, event.on_hand) == ("restock", "staff:ada", 5)


def test_restock_after_sold_out_queues_the_link_switch(app):
    make_product(app, "tee-m", stock=0)
    with app.app_context():
        add_link(active=False)
        backoffice.restock("tee-m", STORE, 1, actor="staff")
        task = db.session.scalars(select(Task)).one()
        assert (task.kind, task.args) == ("sync_link", {"sku": "tee-m", "store": STORE})


def test_restock_of_an_unknown_item_is_refused(app):
    with app.app_context():
        with pytest.raises(Refused, match="no item 'ghost'"):
            backoffice.restock("ghost", STORE, 1, actor="staff")
        assert db.session.scalars(select(StockEvent)).all() == []


def test_count_sets_on_hand_with_the_reason(app):
    make_product(app, "tee-m", stock=10)
    with app.app_context():
        level = backoffice.count("tee-m", STORE, 7, "  stock-take:   3 damaged ", actor="staff")
        assert (level.on_hand, level.reserved) == (7, 0)
        event = db.session.scalars(select(StockEvent).order_by(StockEvent.id.desc())).first()
        assert (event.reason, event.ref, event.actor) == (
            "adjust",
            "stock-take: 3 damaged",
            "staff",
        )


@both_databases
def test_staff_text_with_control_characters_is_stored_clean(app):
    # PostgreSQL refuses NUL in text: typed into a form, it used to be a 500 there.
    make_product(app, "tee-m", stock=10)
    with app.app_context():
        actor = auth.actor("Ann\x00 Lee")
        backoffice.count("tee-m", STORE, 7, "box\x00 fell", actor=actor)
        sale = sales.sell("tee-m", STORE, "cash", 1, actor=actor, note="paid\x00 in coins")
        event = db.session.scalars(select(StockEvent).where(StockEvent.reason == "adjust")).one()
        assert (event.ref, event.actor) == ("box fell", "staff:Ann Lee")
        assert (db.session.get(Sale, sale.id).note, sale.actor) == (
            "paid in coins",
            "staff:Ann Lee",
        )


def test_count_below_what_is_held_is_refused_and_changes_nothing(app):
    make_product(app, "tee-m", stock=10)
    with app.app_context():
        inventory.hold("tee-m", STORE, 3)
        db.session.commit()
        with pytest.raises(Refused, match="cannot be 2: 3 units are held"):
            backoffice.count("tee-m", STORE, 2, "stock-take", actor="staff")
        with pytest.raises(Refused, match="say why"):
            backoffice.count("tee-m", STORE, 5, "   ", actor="staff")
        with pytest.raises(Refused, match="no item 'ghost'"):
            backoffice.count("ghost", STORE, 5, "stock-take", actor="staff")
        assert levels() == [(10, 3)]
        assert len(db.session.scalars(select(StockEvent)).all()) == 2
        assert backoffice.count("tee-m", STORE, 3, "stock-take", actor="staff").available == 0


def test_stock_rows_show_the_link_state(app):
    for sku in ("a", "b", "c", "d"):
        make_product(app, sku, stock=1)
    make_product(app, "e", stock=0)
    with app.app_context():
        add_link("a")
        add_link("b")
        add_link("c", active=False)
        add_link("e", active=False)
        inventory.take("b", STORE)  # sold out, link not yet switched off
        db.session.commit()
        states = {row.item.sku: row.link_state for row in backoffice.stock_rows(STORE)}
    assert states == {
        "a": "on",
        "b": "switching off",
        "c": "switching on",
        "d": "no link",
        "e": "off",
    }


def test_activity_lists_this_store_newest_first(app):
    make_product(app, "tee-m", stock=2)
    make_product(app, "mug", stock=1, store="other")
    with app.app_context():
        backoffice.restock("tee-m", STORE, 1, actor="staff")
        events = backoffice.activity(STORE)
    assert [(e.reason, e.on_hand) for e in events] == [("restock", 3), ("catalog", 2)]


def test_retry_makes_a_failed_task_due_now(app):
    with app.app_context():
        task = tasks.enqueue(
            "refund", {"payment_intent": "pi_1"}, run_after=utcnow() + timedelta(hours=1)
        )
        task.status, task.attempts, task.last_error = "failed", 8, "card_declined"
        done = tasks.enqueue("sync_link", {"sku": "x", "store": STORE})
        done.status = "done"
        db.session.commit()
        assert [t.id for t in backoffice.open_tasks()] == [task.id]
        retried = backoffice.retry(task.id)
        assert (retried.status, retried.attempts, retried.last_error) == (
            "pending",
            0,
            "card_declined",
        )
        assert retried.run_after <= utcnow()
        with pytest.raises(Refused, match="is done"):
            backoffice.retry(done.id)
        with pytest.raises(Refused, match="no task 999"):
            backoffice.retry(999)


def test_off_sale_switches_the_link_off_stops_holds_and_back_on(app):
    make_product(app, "tee-m", stock=3)
    make_product(app, "mug", stock=3)
    with app.app_context():
        add_link("tee-m")
        backoffice.set_on_sale("tee-m", STORE, False, actor="staff:ada")
        # The link switch is queued with the change, and the link is wanted off.
        queued = db.session.scalars(select(Task).where(Task.kind == "sync_link")).all()
        assert [t.args for t in queued] == [{"sku": "tee-m", "store": STORE}]
        assert tasks._link_and_available("tee-m", STORE) == ("plink_tee-m", 0)
        row = next(r for r in backoffice.stock_rows(STORE) if r.item.sku == "tee-m")
        assert (row.item.off_sale, row.item.available, row.link_state) == (
            True,
            3,
            "switching off",
        )
        # Nothing to hold, nothing suggested on a sold-out page: it is not on offer.
        assert holds.start_hold("tee-m", STORE, 300) is None
        assert [o.sku for o in offer.in_stock(STORE, except_sku="x", labels={})] == ["mug"]
        db.session.rollback()
        with pytest.raises(Refused, match="tee-m is already off sale"):
            backoffice.set_on_sale("tee-m", STORE, False, actor="staff:ada")
        backoffice.set_on_sale("tee-m", STORE, True, actor="staff:bo")
        assert tasks._link_and_available("tee-m", STORE) == ("plink_tee-m", 3)
        assert holds.start_hold("tee-m", STORE, 300) is not None
        with pytest.raises(Refused, match="no item 'ghost'"):
            backoffice.set_on_sale("ghost", STORE, False, actor="staff:ada")
        reasons = db.session.execute(
            select(StockEvent.reason, StockEvent.actor).where(StockEvent.reason.like("%-sale"))
        ).all()
        assert reasons == [("off-sale", "staff:ada"), ("on-sale", "staff:bo")]
