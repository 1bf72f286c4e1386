"""Pickup codes and the buyer's view of a payment, without HTTP (the page has its own tests)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from stripe_fixtures import make_event, make_session, unique

from conftest import STORE, make_product
from swagstore import fulfilment, pickup, sales
from swagstore.models import Sale, db


def pay(app, sku: str = "tee-m", **session_fields) -> dict:
    """Apply a paid link checkout for one unit; return the session."""
    session = make_session(sku, **session_fields)
    with app.app_context():
        assert fulfilment.apply(make_event(session)).outcome == "applied"
    return session


def sale_of(app, session: dict) -> Sale:
    with app.app_context():
        sale = db.session.scalar(select(Sale).where(Sale.checkout_session_id == session["id"]))
        db.session.expunge(sale)
        return sale


def test_codes_are_short_unambiguous_and_never_repeat_among_open_sales(app):
    make_product(app, "tee-m", stock=300)
    codes = [sale_of(app, pay(app)).pickup_code for _ in range(250)]
    assert all(len(code) == 2 and set(code) <= set(pickup.ALPHABET) for code in codes)
    assert not set("01ILOSZ25") & set("".join(codes))
    assert len(set(codes)) == len(codes)


def test_a_code_is_free_again_once_its_sale_is_handed_over(app):
    make_product(app, "tee-m", stock=5)
    with app.app_context():
        for code in pickup.TWO:
            db.session.add(
                Sale(
                    sku="tee-m", store=STORE, currency="usd", kind="card", status="fulfilled",
                    pickup_code=code,
                )
            )  # fmt: skip
        db.session.commit()
        # Every two-character code is taken by a sale waiting at the table: three then.
        assert len(pickup.new_code(STORE)) == 3
        db.session.rollback()
        waiting = db.session.scalars(select(Sale.id).order_by(Sale.id)).all()
        for sale_id in waiting[: len(waiting) // 2 + 1]:
            sales.hand_over(sale_id, STORE, actor="staff")
        assert len(pickup.new_code(STORE)) == 2
        db.session.rollback()
        # Another store's codes are its own.
        assert len(pickup.new_code("elsewhere")) == 2


def test_the_database_refuses_a_second_open_sale_with_the_same_code(app):
    make_product(app, "tee-m", stock=5)
    with app.app_context():
        for _ in range(2):
            db.session.add(
                Sale(sku="tee-m", store=STORE, currency="usd", kind="card", status="fulfilled",
                     pickup_code="K7")
            )  # fmt: skip
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        # A refunded sale's code, or one already handed over, no longer names an open sale.
        db.session.add_all(
            [
                Sale(sku="tee-m", store=STORE, currency="usd", kind="card", status="refunded",
                     pickup_code="K7"),
                Sale(sku="tee-m", store=STORE, currency="usd", kind="card", status="fulfilled",
                     pickup_code="K7"),
            ]
        )  # fmt: skip
        db.session.commit()


def test_the_buyer_sees_their_code_then_that_it_was_handed_over(app):
    make_product(app, "tee-m", stock=2, name="Logo T-shirt", group="tee", attributes={"size": "M"})
    make_product(app, "tee-l", stock=2, name="Logo T-shirt", group="tee", attributes={"size": "L"})
    session = pay(app)
    sale = sale_of(app, session)
    with app.app_context():
        view = pickup.buyer_view(session["id"])
        assert (view.state, view.code, view.item, view.amount) == (
            "ready",
            sale.pickup_code,
            "Logo T-shirt, M",
            2500,
        )
        # The PaymentIntent names the same sale (the payment_intent mode's return URL).
        assert pickup.buyer_view(session["payment_intent"]).code == sale.pickup_code
        sales.hand_over(sale.id, STORE, actor="staff")
        view = pickup.buyer_view(session["id"])
        assert view.state == "handed_over" and view.handed_over_at is not None
        assert pickup.buyer_view("cs_test_unknown").state == "waiting"


def test_an_oversold_payment_has_no_code_and_reads_refunded(app):
    make_product(app, "tee-m", stock=1)
    pay(app)
    late = pay(app)
    sale = sale_of(app, late)
    assert (sale.status, sale.pickup_code) == ("refund_pending", None)
    with app.app_context():
        view = pickup.buyer_view(late["id"])
    assert (view.state, view.oversold, view.code) == ("refunded", True, None)


def authorized(sku: str = "tee-m") -> dict:
    """Return an unpaid session whose PaymentIntent (expanded) awaits capture."""
    session = make_session(sku, payment_status="unpaid")
    session["payment_intent"] = {"id": session["payment_intent"], "status": "requires_capture"}
    return session


def test_a_void_and_a_delayed_payment_read_as_such(app):
    make_product(app, "tee-m", stock=1)
    pay(app)
    voided = authorized()
    with app.app_context():
        assert fulfilment.apply(make_event(voided)).outcome == "applied"
    # A delayed method: its PaymentIntent is neither captured nor awaiting capture.
    waiting = make_session(payment_status="unpaid")
    waiting["payment_intent"] = {"id": waiting["payment_intent"], "status": "processing"}
    with app.app_context():
        assert fulfilment.apply(make_event(waiting)).outcome == "applied"
    with app.app_context():
        assert pickup.buyer_view(voided["id"]).state == "voided"
        assert pickup.buyer_view(waiting["id"]).state == "pending"


def test_a_staff_refund_after_the_sale_is_not_called_sold_out(app):
    make_product(app, "tee-m", stock=2)
    session = pay(app)
    with app.app_context():
        sales.refund(sale_of(app, session).id, restock=True, actor="staff")
        view = pickup.buyer_view(session["id"])
    assert (view.state, view.oversold) == ("refunded", False)


def charge(intent: str, last4: str = "4242", **metadata: str) -> dict:
    """A succeeded card charge as Stripe's charge.succeeded event carries it."""
    return {
        "id": unique("ch_"),
        "object": "charge",
        "status": "succeeded",
        "payment_intent": intent,
        "metadata": metadata,
        "payment_method_details": {
            "type": "card",
            "card": {"brand": "visa", "last4": last4, "exp_month": 12, "exp_year": 2030},
        },
    }


def test_staff_see_the_cards_last_four_whichever_event_came_first(app):
    make_product(app, "tee-m", stock=5)
    meta = {"sku": "tee-m", "store": STORE}
    early = make_session()
    with app.app_context():
        # Stripe often sends the charge before the session: it waits for its sale.
        done = fulfilment.apply(
            make_event(charge(early["payment_intent"], **meta), "charge.succeeded")
        )
        assert (done.outcome, done.note) == ("applied", "card ending 4242")
        fulfilment.apply(make_event(early))
    late = pay(app)
    with app.app_context():
        fulfilment.apply(
            make_event(charge(late["payment_intent"], "0005", **meta), "charge.succeeded")
        )
        unknown = fulfilment.apply(make_event(charge("pi_elsewhere"), "charge.succeeded"))
        assert unknown.outcome == "ignored"
        shown = {p.id: p.card for p in sales.to_hand_over(STORE)}
    assert sorted(shown.values()) == ["visa ····0005", "visa ····4242"]
