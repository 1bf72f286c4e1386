"""The shape check of Stripe events, without HTTP: what it refuses, and what it lets pass."""

from __future__ import annotations

import pytest
from stripe_fixtures import example, make_event, make_session

from swagstore import event_schema
from swagstore.event_schema import Invalid, check

# Stripe's own example objects, each as the data of an event that carries it.
EXAMPLES = {
    "checkout.session": "checkout.session.completed",
    "payment_intent": "payment_intent.amount_capturable_updated",
    "refund": "refund.updated",
    "payment_link": "payment_link.updated",
    "product": "product.created",
    "price": "price.created",
}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_stripes_own_example_objects_pass(kind):
    event = make_event(example(kind), EXAMPLES[kind])
    assert check(event) is event


def test_a_session_as_the_store_makes_it_passes():
    session = make_session(hold="17", quantity="2")
    session["line_items"] = {"object": "list", "data": [{"quantity": 2}]}
    session["payment_intent"] = {"id": "pi_1", "object": "payment_intent"}
    check(make_event(session))


def session_with(**fields):
    session = make_session()
    session.update(fields)
    return make_event(session)


def with_metadata(**metadata):
    return make_event(make_session(**metadata))


REFUSED = {
    "an array as body": ([make_event(make_session())], "must be a JSON object, not an array"),
    "a string as body": ("evt", "not a string"),
    "no id": ({"type": "checkout.session.completed", "data": {"object": {}}}, "id is missing"),
    "a number as type": ({"id": "evt_1", "type": 5, "data": {"object": {}}}, "type must be"),
    "data a list": ({"id": "evt_1", "type": "x", "data": []}, "data.object must be"),
    "object a string": ({"id": "evt_1", "type": "x", "data": {"object": "cs_1"}}, "data.object"),
    "metadata a list": (session_with(metadata=["sku", "tee-m"]), "metadata must be a JSON object"),
    "a metadata value a number": (with_metadata(hold=7), "metadata.hold must be a string"),
    "quantity -5": (with_metadata(quantity="-5"), "quantity must be a whole number from 1"),
    "quantity abc": (with_metadata(quantity="abc"), "quantity must be a whole number"),
    "quantity 1e3": (with_metadata(quantity="1e3"), "quantity must be a whole number"),
    "quantity 0": (with_metadata(quantity="0"), "quantity must be a whole number"),
    "quantity 1000": (with_metadata(quantity="1000"), "quantity must be a whole number"),
    "hold not a number": (with_metadata(hold="12; DROP"), "metadata.hold must be a hold number"),
    "amount_total 10^30": (session_with(amount_total=10**30), "amount_total must be a whole"),
    "amount_total lots": (session_with(amount_total="lots"), "not 'lots'"),
    "amount_total 25.5": (session_with(amount_total=25.5), "amount_total must be a whole"),
    "amount_total 1e3": (session_with(amount_total=1e3), "amount_total must be a whole"),
    "amount_total true": (session_with(amount_total=True), "amount_total must be a whole"),
    "amount_total -1": (session_with(amount_total=-1), "amount_total must be a whole"),
    "currency dollars": (session_with(currency="dollars"), "currency must be"),
    "line item quantity -5": (
        session_with(line_items={"data": [{"quantity": -5}]}),
        "line_items.data[0].quantity",
    ),
    "line items a string": (session_with(line_items="lots"), "line_items must be a list"),
    "payment_intent a number": (session_with(payment_intent=5), "payment_intent must be an id"),
    "a long sku": (with_metadata(sku="x" * 65), "metadata.sku is longer"),
    "a link's active a string": (
        make_event({"id": "plink_1", "active": "no"}, "payment_link.updated"),
        "active must be true or false",
    ),
    "a link's count -1": (
        make_event(
            {"id": "plink_1", "restrictions": {"completed_sessions": {"count": -1, "limit": 5}}},
            "payment_link.updated",
        ),
        "completed_sessions.count must be a whole number",
    ),
    "a link's limit lots": (
        make_event(
            {"id": "plink_1", "restrictions": {"completed_sessions": {"count": 0, "limit": "x"}}},
            "payment_link.updated",
        ),
        "completed_sessions.limit must be a whole number",
    ),
    "a link's restrictions a list": (
        make_event({"id": "plink_1", "restrictions": []}, "payment_link.updated"),
        "restrictions must be a JSON object",
    ),
    "created lots": ({**session_with(), "created": "lots"}, "event.created must be a whole"),
    "created -1": ({**session_with(), "created": -1}, "event.created must be a whole"),
    "created past 9999": ({**session_with(), "created": 10**12}, "event.created must be a whole"),
    "refunded a string": (
        make_event({"id": "ch_1", "refunded": "yes"}, "charge.refunded"),
        "refunded must be true or false",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_bad_shape_or_number_is_refused_with_its_reason(name):
    event, reason = REFUSED[name]
    with pytest.raises(Invalid) as refused:
        check(event)
    assert reason in str(refused.value)
    assert len(str(refused.value)) < 200  # the reason goes back to the sender, kept short


def test_the_bounds_themselves_pass():
    check(session_with(amount_total=event_schema.MAX_AMOUNT))
    check(session_with(amount_total=0, currency=None))
    check(with_metadata(quantity=str(event_schema.MAX_QUANTITY)))
    with pytest.raises(Invalid):
        check(session_with(amount_total=event_schema.MAX_AMOUNT + 1))


def test_an_event_of_a_type_the_store_ignores_is_checked_as_an_envelope_only():
    # A balance transaction's amount may be negative: that is Stripe's business, not ours.
    event = make_event({"id": "txn_1", "amount": -500, "metadata": []}, "balance.available")
    assert check(event) is event
