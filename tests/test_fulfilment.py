"""fulfilment.apply: each Stripe event changes stock and sales once, and queues its tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from stripe_fixtures import example, make_event, make_session, unique

from conftest import STORE, make_product
from swagstore import fulfilment, holds
from swagstore.models import PaymentLink, Sale, Stock, StripeEvent, Task, db, utcnow


@pytest.fixture
def manual(app):
    """The app, with today's LINK_CAPTURE the opposite of the links' (it must not matter)."""
    app.config["LINK_CAPTURE"] = "automatic"
    return app


def made_with(app, capture: str, session: dict, sku: str = "tee-m") -> dict:
    """Record a payment link made with `capture` and return the session as paid through it."""
    link_id = unique("plink_")
    with app.app_context():
        db.session.add(
            PaymentLink(
                id=link_id,
                sku=sku,
                store=STORE,
                url="https://buy.stripe.com/x",
                price_id="price_1",
                capture_method=capture,
                # Retired since (no link sync queued): how it was made still counts.
                retired_at=utcnow(),
            )
        )
        db.session.commit()
    session["payment_link"] = link_id
    return session


def apply(app, event):
    with app.app_context():
        return fulfilment.apply(event)


def state(app, sku="tee-m"):
    """Return (on_hand, sales as (status, captured), task kinds) for one item."""
    with app.app_context():
        stock = db.session.get(Stock, (sku, STORE))
        sales = db.session.execute(select(Sale.status, Sale.captured).order_by(Sale.id)).all()
        kinds = db.session.scalars(select(Task.kind).order_by(Task.id)).all()
        return (stock.on_hand if stock else None), [tuple(s) for s in sales], list(kinds)


def test_paid_session_takes_stock_and_records_the_sale(app):
    make_product(app, stock=3)
    session = make_session(amount=2500)

    result = apply(app, make_event(session))

    assert result.outcome == "applied"
    assert state(app) == (2, [("fulfilled", True)], [])
    with app.app_context():
        sale = db.session.scalar(select(Sale))
        assert (sale.checkout_session_id, sale.payment_intent_id) == (
            session["id"],
            session["payment_intent"],
        )
        assert (sale.amount, sale.currency, sale.kind, sale.quantity) == (2500, "usd", "card", 1)
        assert db.session.scalars(select(StripeEvent.outcome)).all() == ["applied"]


@pytest.mark.parametrize(
    ("late", "dated_then"),
    [(timedelta(hours=2), True), (timedelta(seconds=5), False), (-timedelta(hours=1), False)],
    ids=["two hours late", "on time", "from the future"],
)
def test_a_late_event_dates_its_sale_when_it_was_paid(app, late, dated_then):
    # After an outage, polling brings a sale in late: the report must put it in its hour.
    make_product(app, stock=3)
    event = make_event(make_session())
    event["created"] = int((utcnow() - late).timestamp())
    before = utcnow()

    apply(app, event)

    with app.app_context():
        dated = db.session.scalar(select(Sale.created_at))
    if dated_then:
        assert dated == datetime.fromtimestamp(event["created"], UTC)
    else:
        assert before <= dated <= utcnow()


def test_a_second_delivery_changes_nothing(app):
    make_product(app, stock=3)
    event = make_event(make_session())

    first, second = apply(app, event), apply(app, event)

    assert (first.outcome, second.outcome) == ("applied", "duplicate")
    assert state(app) == (2, [("fulfilled", True)], [])


def test_manual_capture_takes_stock_then_queues_the_capture(manual):
    make_product(manual, stock=1)

    apply(manual, make_event(made_with(manual, "manual", make_session(payment_status="unpaid"))))

    assert state(manual) == (0, [("fulfilled", False)], ["capture"])


def test_manual_capture_sold_out_voids_without_touching_stock(manual):
    make_product(manual, stock=0)

    session = made_with(manual, "manual", make_session(payment_status="unpaid"))
    result = apply(manual, make_event(session))

    assert result.outcome == "applied"
    assert state(manual) == (0, [("voided", False)], ["cancel"])


def test_automatic_capture_sold_out_refunds(app):
    make_product(app, stock=0)

    apply(app, make_event(make_session()))

    assert state(app) == (0, [("refund_pending", False)], ["refund"])


def test_quantity_comes_from_metadata(app):
    make_product(app, stock=5)

    apply(app, make_event(make_session(quantity="3")))

    assert state(app)[0] == 2


def test_not_enough_for_the_whole_quantity_refunds_it_all(app):
    make_product(app, stock=2)

    apply(app, make_event(make_session(quantity="3")))

    assert state(app) == (2, [("refund_pending", False)], ["refund"])


def test_unknown_sku_is_kept_for_staff_and_refunded(app):
    make_product(app, stock=5)
    event = make_event(make_session("no-such-sku"))

    result = apply(app, event)

    assert result.outcome == "unmatched"
    assert "no-such-sku" in result.note
    assert state(app) == (5, [("refund_pending", False)], ["refund"])
    with app.app_context():
        record = db.session.get(StripeEvent, event["id"])
        assert (record.outcome, record.payload["id"]) == ("unmatched", event["id"])


def test_unknown_store_is_kept_but_not_refunded(app):
    make_product(app, stock=5)

    result = apply(app, make_event(make_session(store="other-booth")))

    assert result.outcome == "unmatched"
    assert state(app) == (5, [("failed", False)], [])


def test_a_checkout_without_our_metadata_is_ignored(app):
    make_product(app, stock=5)
    session = make_session()
    session["metadata"] = {}

    result = apply(app, make_event(session))

    assert result.outcome == "ignored"
    assert state(app) == (5, [], [])


def test_unknown_event_types_are_acknowledged_and_not_recorded(app):
    result = apply(app, make_event({"id": "prod_1", "object": "product"}, "product.created"))

    assert result.outcome == "ignored"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0


def test_delayed_payment_waits_then_takes_stock(app):
    make_product(app, stock=1)
    app.config["LINK_CAPTURE"] = "manual"  # today's setting; the link was automatic
    session = made_with(app, "automatic", make_session(payment_status="unpaid"))

    apply(app, make_event(session))
    assert state(app) == (1, [("pending", False)], [])

    session["payment_status"] = "paid"
    apply(app, make_event(session, "checkout.session.async_payment_succeeded"))
    assert state(app) == (0, [("fulfilled", True)], [])


def test_delayed_payment_that_fails_takes_nothing(app):
    make_product(app, stock=1)
    session = made_with(app, "automatic", make_session(payment_status="unpaid"))

    apply(app, make_event(session))
    apply(app, make_event(session, "checkout.session.async_payment_failed"))

    assert state(app) == (1, [("failed", False)], [])


def test_delayed_payment_that_succeeds_after_the_last_unit_refunds(app):
    make_product(app, stock=1)
    late = made_with(app, "automatic", make_session(payment_status="unpaid"))
    apply(app, make_event(late))
    apply(app, make_event(make_session()))

    late["payment_status"] = "paid"
    apply(app, make_event(late, "checkout.session.async_payment_succeeded"))

    assert state(app) == (0, [("refund_pending", False), ("fulfilled", True)], ["refund"])


def test_refund_confirmation_marks_the_sale_refunded(app):
    make_product(app, stock=0)
    session = make_session()
    apply(app, make_event(session))
    refund = {"id": "re_1", "object": "refund", "status": "succeeded"}
    refund["payment_intent"] = session["payment_intent"]

    apply(app, make_event(refund, "refund.updated"))

    assert state(app) == (0, [("refunded", False)], ["refund"])


def refund_for(intent: str, status: str = "succeeded") -> dict:
    refund = example("refund")
    refund.update(id=unique("re_"), payment_intent=intent, status=status)
    return refund


def charge_for(intent: str, refunded: bool = True) -> dict:
    return {
        "id": unique("ch_"),
        "object": "charge",
        "payment_intent": intent,
        "refunded": refunded,
    }


CONFIRMATIONS = {
    "refund.created": lambda pi: refund_for(pi),
    "refund.updated": lambda pi: refund_for(pi),
    "charge.refunded": lambda pi: charge_for(pi),
}
NOT_YET = {
    "refund.created": lambda pi: refund_for(pi, "pending"),
    "refund.updated": lambda pi: refund_for(pi, "requires_action"),
    "charge.refunded": lambda pi: charge_for(pi, refunded=False),  # a partial refund
}


@pytest.mark.parametrize("type_", sorted(CONFIRMATIONS))
def test_a_refund_is_confirmed_only_by_its_refund_events(app, type_):
    """Mutations tried, each failing it: dropping refund.created or charge.refunded from
    HANDLERS; confirming a refund that has not succeeded, or a partial charge refund.
    """
    make_product(app, stock=0)
    oversold, other = make_session(), make_session()
    apply(app, make_event(oversold))  # no stock: refund queued, the sale waits for Stripe
    assert state(app) == (0, [("refund_pending", False)], ["refund"])

    # Not yet refunded, or another payment's refund: the sale keeps waiting.
    assert apply(app, make_event(NOT_YET[type_](oversold["payment_intent"]), type_)).outcome == (
        "ignored"
    )
    unrelated = CONFIRMATIONS[type_](other["payment_intent"])
    assert apply(app, make_event(unrelated, type_)).outcome == "ignored"
    assert state(app) == (0, [("refund_pending", False)], ["refund"])

    confirmed = CONFIRMATIONS[type_](oversold["payment_intent"])
    assert apply(app, make_event(confirmed, type_)).outcome == "applied"
    assert state(app) == (0, [("refunded", False)], ["refund"])


def test_a_session_seen_under_another_event_id_is_not_sold_twice(app):
    make_product(app, stock=5)
    session = make_session()
    reconciled = make_event(session)
    reconciled["id"] = f"reconcile:completed:{session['id']}"

    first = apply(app, reconciled)
    later = apply(app, make_event(session))

    assert (first.outcome, later.outcome) == ("applied", "ignored")
    assert state(app) == (4, [("fulfilled", True)], [])


def test_selling_the_last_unit_queues_the_link_switch(app):
    make_product(app, stock=1)
    with app.app_context():
        db.session.add(
            PaymentLink(
                id="plink_1", sku="tee-m", store=STORE, url="https://pay/1", price_id="price_1"
            )
        )
        db.session.commit()

    apply(app, make_event(make_session()))

    assert state(app) == (0, [("fulfilled", True)], ["sync_link"])


def test_a_malformed_event_changes_nothing(app):
    make_product(app, stock=1)
    event = make_event(make_session())
    del event["data"]["object"]["id"]

    with pytest.raises(fulfilment.MalformedEvent):
        apply(app, event)

    assert state(app) == (1, [], [])
    with app.app_context():
        assert db.session.get(StripeEvent, event["id"]) is None


def start_hold(app, sku="tee-m"):
    with app.app_context():
        return holds.start_hold(sku, STORE, 300).id


def levels(app, sku="tee-m"):
    with app.app_context():
        stock = db.session.get(Stock, (sku, STORE))
        return stock.on_hand, stock.reserved


def test_a_paid_hold_is_settled_not_taken_twice(app):
    make_product(app, stock=2)
    hold_id = start_hold(app)

    apply(app, make_event(make_session(hold=str(hold_id))))

    assert levels(app) == (1, 0)
    with app.app_context():
        assert db.session.scalar(select(Sale.hold_id)) == hold_id
        assert holds.status(hold_id) == "settled"


def test_a_payment_after_its_hold_was_released_sells_like_a_link(app):
    make_product(app, stock=1)
    hold_id = start_hold(app)
    with app.app_context():
        holds.release(hold_id)
        db.session.commit()
    apply(app, make_event(make_session()))  # someone else bought the last unit

    apply(app, make_event(make_session(hold=str(hold_id))))

    assert levels(app) == (0, 0)
    assert state(app)[1:] == ([("fulfilled", True), ("refund_pending", False)], ["refund"])


def test_an_expired_session_releases_its_hold(app):
    make_product(app, stock=1)
    hold_id = start_hold(app)

    result = apply(app, make_event(make_session(hold=str(hold_id)), "checkout.session.expired"))

    assert result.outcome == "applied"
    assert levels(app) == (1, 0)
    with app.app_context():
        assert holds.status(hold_id) == "released"


def test_a_session_naming_a_hold_attached_to_another_session_leaves_that_hold(app):
    make_product(app, stock=2)
    hold_id = start_hold(app)
    with app.app_context():
        holds.attach(hold_id, session_id="cs_test_the_holds_own")

    apply(app, make_event(make_session(hold=str(hold_id))))

    assert levels(app) == (1, 1)
    with app.app_context():
        assert holds.status(hold_id) == "active"


# A payment is handled by how it was made, never by today's LINK_CAPTURE ------------------


def test_a_paid_session_is_refunded_when_oversold_whatever_link_capture_says_now(app):
    make_product(app, stock=0)
    app.config["LINK_CAPTURE"] = "manual"

    apply(app, make_event(make_session()))

    assert state(app) == (0, [("refund_pending", False)], ["refund"])


def test_an_authorization_is_voided_when_oversold_though_link_capture_is_now_automatic(manual):
    make_product(manual, stock=0)
    session = made_with(manual, "manual", make_session(payment_status="unpaid"))

    apply(manual, make_event(session))

    assert state(manual) == (0, [("voided", False)], ["cancel"])


def test_an_expanded_payment_intent_in_the_event_says_how_it_was_made(app):
    make_product(app, stock=1)
    session = make_session(payment_status="unpaid")
    session["payment_intent"] = {"id": unique("pi_"), "status": "requires_capture"}

    apply(app, make_event(session))

    assert state(app) == (0, [("fulfilled", False)], ["capture"])


def test_an_unknown_capture_method_is_asked_of_stripe_by_a_task(app):
    make_product(app, stock=1)

    apply(app, make_event(make_session(payment_status="unpaid")))

    assert state(app) == (1, [("pending", False)], ["resolve_payment"])
    with app.app_context():
        assert db.session.scalar(select(Sale.note)) == fulfilment.ASKING


@pytest.mark.parametrize(
    ("intent_status", "stock", "expected"),
    [
        ("requires_capture", 1, (0, [("fulfilled", False)], ["resolve_payment", "capture"])),
        ("requires_capture", 0, (0, [("voided", False)], ["resolve_payment", "cancel"])),
        ("processing", 1, (1, [("pending", False)], ["resolve_payment"])),
        ("canceled", 1, (1, [("voided", False)], ["resolve_payment"])),
    ],
)
def test_resolve_payment_follows_the_payment_intent(app, intent_status, stock, expected):
    make_product(app, stock=stock)
    session = make_session(payment_status="unpaid")
    apply(app, make_event(session))
    with app.app_context():
        sale_id = db.session.scalar(select(Sale.id))
        intent = {"id": session["payment_intent"], "status": intent_status}
        fulfilment.resolve_payment(sale_id, intent, session)
        # A second answer (the task retried) changes nothing.
        assert fulfilment.resolve_payment(sale_id, intent, session) == "already handled" or (
            intent_status == "processing"
        )

    assert state(app) == expected
