"""Holds: start, settle, release and expiry, on a real database file, without HTTP."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from stripe_fixtures import example, make_event, make_session, unique

from conftest import STORE, both_databases, make_product
from swagstore import fulfilment, hold_checkout, holds, tasks
from swagstore.models import Hold, Sale, Stock, StockEvent, Task, db, utcnow


def level(sku: str = "tee-m") -> tuple[int, int]:
    stock = db.session.get(Stock, (sku, STORE))
    db.session.refresh(stock)
    return stock.on_hand, stock.reserved


def hold_row(hold_id: int) -> Hold:
    hold = db.session.get(Hold, hold_id)
    db.session.refresh(hold)
    return hold


def test_start_hold_reserves_one_unit_and_logs_it(app):
    make_product(app, stock=2)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 300, "tok-1")
        assert held is not None and held.new
        assert level() == (2, 1)
        row = hold_row(held.id)
        assert (row.status, row.quantity, row.client_token) == ("active", 1, "tok-1")
        assert timedelta(seconds=299) < row.expires_at - row.created_at <= timedelta(seconds=301)
        last = db.session.execute(select(StockEvent).order_by(StockEvent.id.desc())).scalar()
        assert (last.reason, last.ref, last.reserved) == ("hold", f"hold-{held.id}", 1)


def test_same_token_gets_the_same_hold(app):
    make_product(app, stock=5)
    with app.app_context():
        first = holds.start_hold("tee-m", STORE, 300, "tok-1")
        again = holds.start_hold("tee-m", STORE, 300, "tok-1")
        other = holds.start_hold("tee-m", STORE, 300, "tok-2")
        assert again.id == first.id and not again.new
        assert other.id != first.id
        assert level() == (5, 2)


def test_visitor_token_is_per_visitor_item_and_store():
    token = hold_checkout.visitor_token("v1", "tee-m", STORE)
    assert len(token) == 64
    assert token == hold_checkout.visitor_token("v1", "tee-m", STORE)
    assert len({token, hold_checkout.visitor_token("v2", "tee-m", STORE)}) == 2
    assert len({token, hold_checkout.visitor_token("v1", "mug", STORE)}) == 2
    assert len({token, hold_checkout.visitor_token("v1", "tee-m", "other")}) == 2


def test_no_unit_no_hold(app):
    make_product(app, stock=1)
    with app.app_context():
        assert holds.start_hold("tee-m", STORE, 300, "a") is not None
        assert holds.start_hold("tee-m", STORE, 300, "b") is None
        assert db.session.scalar(select(db.func.count(Hold.id))) == 1
        assert level() == (1, 1)


def test_a_sold_out_answer_waits_for_no_writer(app, db_path):
    make_product(app, stock=1)
    with app.app_context():
        mine = holds.start_hold("tee-m", STORE, 300, "a")
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process mid-transaction, holding the lock
    try:
        with app.app_context():
            # Were either to take the write lock, it would wait out busy_timeout and fail.
            assert holds.start_hold("tee-m", STORE, 300, "b") is None
            assert holds.start_hold("tee-m", STORE, 300, "a") == replace(mine, new=False)
            assert hold_checkout.sold_out("tee-m", STORE).sku == "tee-m"
    finally:
        writer.rollback()
        writer.close()


def test_unknown_item_is_refused(app):
    make_product(app, stock=1)
    with app.app_context():
        with pytest.raises(holds.UnknownItem):
            holds.start_hold("nope", STORE, 300)
        with pytest.raises(holds.UnknownItem):
            holds.start_hold("tee-m", "other-booth", 300)


def test_settle_and_release_exactly_one_wins(app):
    make_product(app, stock=3)
    with app.app_context():
        a = holds.start_hold("tee-m", STORE, 300, "a")
        b = holds.start_hold("tee-m", STORE, 300, "b")
        settled = holds.settle(a.id, ref="cs_a")
        assert settled == holds.Ended(a.id, "tee-m", STORE, 1, None, None)
        assert holds.release(a.id) is None
        assert holds.settle(a.id) is None
        assert holds.release(b.id) is not None
        assert holds.settle(b.id) is None
        db.session.commit()
        assert level() == (2, 0)
        assert (hold_row(a.id).status, hold_row(b.id).status) == ("settled", "released")
        # An ended hold frees its token, so the visitor's next scan starts afresh.
        assert hold_row(a.id).client_token is None and hold_row(a.id).ended_at is not None
        assert holds.start_hold("tee-m", STORE, 300, "a").new


def test_attach_only_to_an_open_hold(app):
    make_product(app, stock=2)
    with app.app_context():
        a = holds.start_hold("tee-m", STORE, 300, "a")
        b = holds.start_hold("tee-m", STORE, 300, "b")
        assert holds.attach(a.id, session_id="cs_a")
        holds.release(b.id)
        db.session.commit()
        assert not holds.attach(b.id, intent_id="pi_b")
        assert hold_row(a.id).checkout_session_id == "cs_a"
        assert hold_row(b.id).payment_intent_id is None
        assert holds.start_hold("tee-m", STORE, 300, "a").checkout_session_id == "cs_a"


def test_expire_due_queues_the_right_call_and_keeps_the_unit(app):
    make_product(app, stock=4)
    with app.app_context():
        session = holds.start_hold("tee-m", STORE, 60, "s")
        intent = holds.start_hold("tee-m", STORE, 60, "i")
        bare = holds.start_hold("tee-m", STORE, 60, "b")
        young = holds.start_hold("tee-m", STORE, 600, "y")
        holds.attach(session.id, session_id="cs_s")
        holds.attach(intent.id, intent_id="pi_i")
        assert tasks.expire_holds(utcnow()) == 0
        assert tasks.expire_holds(utcnow() + timedelta(seconds=61)) == 3
        assert tasks.expire_holds(utcnow() + timedelta(seconds=61)) == 0
        queued = db.session.execute(select(Task.kind, Task.args, Task.hold_id)).all()
        assert sorted(queued) == [
            ("cancel", {"payment_intent": "pi_i", "store": STORE}, intent.id),
            ("expire_session", {"checkout_session": "cs_s", "store": STORE}, session.id),
        ]
        statuses = [hold_row(h.id).status for h in (session, intent, bare, young)]
        assert statuses == ["expiring", "expiring", "released", "active"]
        # The units of expiring holds stay held until Stripe confirms.
        assert level() == (4, 3)
        assert hold_row(session.id).client_token is None


def test_payment_on_an_expiring_checkout_hold_still_settles(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 1, "s")
        holds.attach(held.id, session_id="cs_s")
        tasks.expire_holds(utcnow() + timedelta(seconds=2))
        # Stripe lets only one of expire and pay happen to a session: if pay did, it wins.
        assert holds.settle(held.id) is not None
        db.session.commit()
        assert level() == (0, 0)


def test_intent_paid_before_its_cancel_was_tried_withdraws_the_cancel(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 1, "i")
        holds.attach(held.id, intent_id="pi_i")
        tasks.expire_holds(utcnow() + timedelta(seconds=2))
        assert holds.settle_intent(held.id, "pi_i", ref="pi_i") is not None
        db.session.commit()
        task = db.session.scalar(select(Task))
        assert (task.status, task.last_error) == ("done", "withdrawn: the visitor paid")
        assert level() == (0, 0)
        assert hold_row(held.id).status == "settled"


def test_intent_paid_after_its_cancel_was_tried_loses(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 1, "i")
        holds.attach(held.id, intent_id="pi_i")
        tasks.expire_holds(utcnow() + timedelta(seconds=2))
        db.session.execute(db.update(Task).values(status="running", attempts=1))
        assert holds.settle_intent(held.id, "pi_i") is None
        db.session.commit()
        assert hold_row(held.id).status == "expiring"
        assert level() == (1, 1)
        # The cancel voids the authorization, then its confirmation releases the unit.
        assert holds.release(held.id, ref="expired") is not None
        db.session.commit()
        assert level() == (1, 0)


def test_active_intent_hold_settles_directly(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 300, "i")
        holds.attach(held.id, intent_id="pi_i")
        assert holds.settle_intent(held.id, "pi_i") is not None
        assert holds.settle_intent(held.id, "pi_i") is None
        db.session.commit()
        assert level() == (0, 0)


def test_sold_out_lists_other_items_in_stock(app):
    make_product(app, "tee-m", stock=1)
    make_product(app, "mug", stock=2)
    make_product(app, "cap", stock=0)
    with app.app_context():
        holds.start_hold("tee-m", STORE, 300)
        result = hold_checkout.sold_out("tee-m", STORE)
        assert result.sku == "tee-m"
        assert [item.sku for item in result.others] == ["mug"]


def test_a_sold_out_variant_and_the_others_are_named_by_their_labels(app):
    # Three sizes of one tee must not read alike on a visitor's phone.
    for sku, size, stock in (("tee-s", "S", 2), ("tee-m", "M", 0), ("tee-l", "L", 1)):
        make_product(
            app, sku, stock=stock, name="Logo T-shirt", group="tee", attributes={"size": size}
        )
    make_product(app, "mug", stock=1, name="Enamel mug")
    with app.app_context():
        result = hold_checkout.sold_out("tee-m", STORE)
    assert result.name == "Logo T-shirt, M"
    assert {item.sku: item.name for item in result.others} == {
        "tee-s": "Logo T-shirt, S",
        "tee-l": "Logo T-shirt, L",
        "mug": "Enamel mug",
    }


def test_a_held_unit_is_never_missing_when_a_hold_ends(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 300)
        # Only a broken invariant (raw SQL bypassing inventory) could get here.
        db.session.execute(db.text("UPDATE stock SET reserved = 0"))
        with pytest.raises(RuntimeError, match="reserved unit"):
            holds.release(held.id)
        db.session.rollback()
        assert hold_row(held.id).status == "active"


def test_tasks_queued_by_expiry_carry_the_hold(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 0)
        holds.attach(held.id, session_id="cs_x")
        tasks.expire_holds()
        task = db.session.scalar(select(Task))
        assert (task.hold_id, task.status, task.kind) == (held.id, "pending", "expire_session")


def test_a_hold_is_ended_only_by_its_own_session_or_intent(app):
    make_product(app, stock=2)
    with app.app_context():
        s = holds.start_hold("tee-m", STORE, 300, "s")
        i = holds.start_hold("tee-m", STORE, 300, "i")
        holds.attach(s.id, session_id="cs_s")
        holds.attach(i.id, intent_id="pi_i")
        assert holds.settle(s.id, session_id="cs_other") is None
        assert holds.release(s.id, session_id="cs_other") is None
        assert holds.settle_intent(i.id, "pi_other") is None
        assert holds.release(i.id, intent_id="pi_other") is None
        assert level() == (2, 2)
        assert holds.settle(s.id, session_id="cs_s") is not None
        assert holds.release(i.id, intent_id="pi_i") is not None
        db.session.commit()
        assert level() == (1, 0)


def test_a_cancel_for_another_intent_is_not_withdrawn(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 1, "i")
        holds.attach(held.id, intent_id="pi_i")
        tasks.expire_holds(utcnow() + timedelta(seconds=2))
        assert holds.settle_intent(held.id, "pi_other") is None
        assert db.session.scalar(select(Task.status)) == "pending"


@both_databases
def test_settle_and_release_race_from_threads_one_wins_per_hold(app):
    make_product(app, stock=40)
    with app.app_context():
        ids = [holds.start_hold("tee-m", STORE, 300, f"v{n}").id for n in range(40)]
    start = threading.Barrier(2)
    wins: dict[str, list[int]] = {"settled": [], "released": []}

    def end_all(outcome: str, order: list[int]) -> None:
        end = holds.settle if outcome == "settled" else holds.release
        with app.app_context():
            start.wait()
            for hold_id in order:
                if end(hold_id) is not None:
                    wins[outcome].append(hold_id)
                db.session.commit()

    threads = [
        threading.Thread(target=end_all, args=("settled", ids)),
        threading.Thread(target=end_all, args=("released", ids[::-1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    settled, released = wins["settled"], wins["released"]
    assert sorted(settled + released) == ids
    with app.app_context():
        assert level() == (40 - len(settled), 0)
        statuses = dict(db.session.execute(select(Hold.id, Hold.status)).all())
        assert {i for i, s in statuses.items() if s == "settled"} == set(settled)
        reasons = db.session.scalars(
            select(StockEvent.reason).where(StockEvent.reason.in_(["settle", "release"]))
        ).all()
        assert len(reasons) == 40


# What Stripe's events do to holds (fulfilment.apply, without HTTP) ----------------------


def make_intent(hold_id: int, sku: str = "tee-m", amount: int = 2500) -> dict:
    """Return an authorized manual-capture PaymentIntent for a hold, as the card form leaves it."""
    intent = example("payment_intent")
    intent.update(
        id=unique("pi_"),
        amount=amount,
        amount_capturable=amount,
        currency="usd",
        capture_method="manual",
        status="requires_capture",
        metadata={"sku": sku, "store": STORE, "hold": str(hold_id)},
    )
    return intent


def intent_hold(app, stock: int = 1, seconds: int = 300) -> tuple[int, dict]:
    make_product(app, stock=stock)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, seconds)
        intent = make_intent(held.id)
        holds.attach(held.id, intent_id=intent["id"])
    return held.id, intent


def sales() -> list[tuple]:
    rows = db.session.execute(select(Sale.status, Sale.hold_id, Sale.captured).order_by(Sale.id))
    return [tuple(r) for r in rows]


def queued() -> list[tuple]:
    rows = db.session.execute(select(Task.kind, Task.sale_id, Task.status).order_by(Task.id))
    return [tuple(r) for r in rows]


def test_an_authorized_intent_settles_its_hold_and_queues_the_capture(app):
    hold_id, intent = intent_hold(app)
    with app.app_context():
        event = make_event(intent, "payment_intent.amount_capturable_updated")
        assert fulfilment.apply(event).outcome == "applied"
        assert fulfilment.apply(event).outcome == "duplicate"
        again = make_event(intent, "payment_intent.amount_capturable_updated")
        assert fulfilment.apply(again).outcome == "ignored"
        assert sales() == [("fulfilled", hold_id, False)]
        sale_id = db.session.scalar(select(Sale.id))
        assert queued() == [("capture", sale_id, "pending")]
        assert holds.status(hold_id) == "settled"
        assert level() == (0, 0)
        assert db.session.scalar(select(Sale.amount)) == 2500


def test_an_authorization_that_arrives_late_is_dated_when_it_was_made(app):
    hold_id, intent = intent_hold(app)
    with app.app_context():
        event = make_event(intent, "payment_intent.amount_capturable_updated")
        event["created"] -= 3600
        fulfilment.apply(event)
        dated = db.session.scalar(select(Sale.created_at))
        assert dated.timestamp() == event["created"]


def test_an_intent_authorized_after_its_cancel_was_tried_is_voided_by_that_cancel(app):
    hold_id, intent = intent_hold(app, seconds=1)
    with app.app_context():
        tasks.expire_holds(utcnow() + timedelta(seconds=2))
        db.session.execute(db.update(Task).values(attempts=1))  # a first try failed
        db.session.commit()
        fulfilment.apply(make_event(intent, "payment_intent.amount_capturable_updated"))
        assert sales() == [("voided", hold_id, False)]
        # No capture and no second cancel: the hold's own cancel task voids it.
        assert [kind for kind, _, _ in queued()] == ["cancel"]
        assert holds.status(hold_id) == "expiring"
        fulfilment.apply(make_event(intent, "payment_intent.canceled"))
        assert holds.status(hold_id) == "released"
        assert level() == (1, 0)


def test_an_intent_authorized_before_its_cancel_was_tried_wins(app):
    hold_id, intent = intent_hold(app, seconds=1)
    with app.app_context():
        tasks.expire_holds(utcnow() + timedelta(seconds=2))
        fulfilment.apply(make_event(intent, "payment_intent.amount_capturable_updated"))
        assert sales() == [("fulfilled", hold_id, False)]
        assert [(kind, status) for kind, _, status in queued()] == [
            ("cancel", "done"),
            ("capture", "pending"),
        ]
        assert level() == (0, 0)


def test_an_intent_for_a_hold_that_never_knew_it_sells_like_a_link(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 300)
        holds.release(held.id)  # e.g. ended before its intent was attached
        db.session.commit()
        intent = make_intent(held.id)
        fulfilment.apply(make_event(intent, "payment_intent.amount_capturable_updated"))
        assert sales() == [("fulfilled", None, False)]
        assert level() == (0, 0)
        late = make_intent(held.id)
        fulfilment.apply(make_event(late, "payment_intent.amount_capturable_updated"))
        assert sales()[-1] == ("voided", None, False)
        assert [kind for kind, _, _ in queued()] == ["capture", "cancel"]
        assert level() == (0, 0)


def test_a_canceled_intent_releases_only_its_own_hold(app):
    hold_id, intent = intent_hold(app, stock=2)
    with app.app_context():
        other = make_intent(hold_id)
        assert fulfilment.apply(make_event(other, "payment_intent.canceled")).outcome == "ignored"
        assert holds.status(hold_id) == "active"
        assert fulfilment.apply(make_event(intent, "payment_intent.canceled")).outcome == "applied"
        assert holds.status(hold_id) == "released"
        assert level() == (2, 0)


def test_intents_without_a_hold_are_ignored(app):
    make_product(app, stock=1)
    with app.app_context():
        intent = make_intent(1)
        intent["metadata"] = {"sku": "tee-m", "store": STORE}
        for kind in ("payment_intent.amount_capturable_updated", "payment_intent.canceled"):
            assert fulfilment.apply(make_event(intent, kind)).outcome == "ignored"
        assert sales() == [] and level() == (1, 0)


def test_a_failed_delayed_payment_releases_the_sessions_hold(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 300)
        session = make_session(payment_status="unpaid", hold=str(held.id))
        session["payment_intent"] = {"id": unique("pi_"), "status": "processing"}
        holds.attach(held.id, session_id=session["id"])
        fulfilment.apply(make_event(session))
        assert holds.status(held.id) == "active"
        fulfilment.apply(make_event(session, "checkout.session.async_payment_failed"))
        assert holds.status(held.id) == "released"
        assert sales() == [("failed", None, False)]
        assert level() == (1, 0)


def test_the_runner_round_starts_ending_due_holds(app):
    make_product(app, stock=1)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 0)
        assert tasks.run_round() == 0
        # No session or intent was ever attached, so nothing on Stripe needs ending.
        assert holds.status(held.id) == "released"
        assert level() == (1, 0)


# checkout.session.completed and .expired for one hold, delivered in both orders ---------


def checkout_hold(app, stock: int = 1) -> tuple[int, dict]:
    make_product(app, stock=stock)
    with app.app_context():
        held = holds.start_hold("tee-m", STORE, 300)
        session = make_session(hold=str(held.id))
        holds.attach(held.id, session_id=session["id"])
    return held.id, session


def test_completed_then_expired_keeps_the_sale(app):
    hold_id, session = checkout_hold(app)
    with app.app_context():
        fulfilment.apply(make_event(session, "checkout.session.completed"))
        result = fulfilment.apply(make_event(session, "checkout.session.expired"))
        assert result.outcome == "ignored"
        assert holds.status(hold_id) == "settled"
        assert sales() == [("fulfilled", hold_id, True)]
        assert level() == (0, 0)


def test_expired_then_completed_sells_from_what_is_available(app):
    hold_id, session = checkout_hold(app)
    with app.app_context():
        fulfilment.apply(make_event(session, "checkout.session.expired"))
        assert holds.status(hold_id) == "released" and level() == (1, 0)
        fulfilment.apply(make_event(session, "checkout.session.completed"))
        # The released unit is still there: the payment takes it, like a link's.
        assert sales() == [("fulfilled", None, True)]
        assert level() == (0, 0)


def test_expired_then_completed_after_the_unit_went_elsewhere_refunds(app):
    hold_id, session = checkout_hold(app)
    with app.app_context():
        fulfilment.apply(make_event(session, "checkout.session.expired"))
        other = holds.start_hold("tee-m", STORE, 300, "another visitor")
        assert other is not None and level() == (1, 1)
        fulfilment.apply(make_event(session, "checkout.session.completed"))
        # No unit for it: never a sale without a unit, the payment is refunded.
        assert sales() == [("refund_pending", None, False)]
        assert [kind for kind, _, _ in queued()] == ["refund"]
        assert level() == (1, 1)
        assert holds.status(other.id) == "active"
