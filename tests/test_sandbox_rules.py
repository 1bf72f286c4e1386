"""Probes: the sandbox refuses, replays and forgets as Stripe does, seen through the real SDK."""

from __future__ import annotations

import pytest
import requests
import stripe


def client(sandbox, key: str = "sk_test_swagstore_sandbox", retries: int = 0):
    """A real SDK client pointed at the live sandbox."""
    return stripe.StripeClient(
        key, base_addresses={"api": sandbox.api_base}, max_network_retries=retries
    )


def a_price(sdk, amount: int = 2500) -> str:
    product = sdk.v1.products.create({"name": "Sticker"})
    return sdk.v1.prices.create(
        {"product": product.id, "unit_amount": amount, "currency": "usd"}
    ).id


def test_an_unknown_nested_parameter_is_refused_by_name(sandbox):
    sdk = client(sandbox)
    price = a_price(sdk)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.payment_links.create(
            {
                "line_items": [{"price": price, "quantity": 1}],
                "payment_intent_data": {"capture_method": "manual", "foo": "bar"},
            }
        )
    assert (refused.value.http_status, refused.value.code) == (400, "parameter_unknown")
    assert refused.value.param == "payment_intent_data[foo]"
    assert "Received unknown parameter: payment_intent_data[foo]" in str(refused.value)
    with pytest.raises(stripe.InvalidRequestError) as wrong_value:
        sdk.v1.payment_links.create(
            {
                "line_items": [{"price": price, "quantity": 1}],
                "payment_intent_data": {"capture_method": "later"},
            }
        )
    assert wrong_value.value.param == "payment_intent_data[capture_method]"
    with pytest.raises(stripe.InvalidRequestError) as wrong_type:
        sdk.v1.payment_links.create({"line_items": [{"price": price, "quantity": "one"}]})
    assert (wrong_type.value.code, wrong_type.value.param) == (
        "parameter_invalid_integer",
        "line_items[0][quantity]",
    )
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.payment_links.create({"line_items": [{"price": price}]})
    assert (missing.value.code, missing.value.param) == (
        "parameter_missing",
        "line_items[0][quantity]",
    )
    assert sdk.v1.payment_links.list().data == [], "a refused call made nothing"


def test_a_charge_of_25_cents_is_too_small_and_50_cents_is_not(sandbox):
    sdk = client(sandbox)
    for amount in (25, 49):
        with pytest.raises(stripe.InvalidRequestError) as small:
            sdk.v1.payment_intents.create({"amount": amount, "currency": "usd"})
        assert (small.value.code, small.value.param) == ("amount_too_small", "amount")
        assert "$0.50 usd" in str(small.value)
    assert sdk.v1.payment_intents.create({"amount": 50, "currency": "usd"}).amount == 50
    with pytest.raises(stripe.InvalidRequestError) as small_session:
        sdk.v1.checkout.sessions.create(
            {"mode": "payment", "line_items": [{"price": a_price(sdk, 25), "quantity": 1}]}
        )
    assert small_session.value.code == "amount_too_small"
    assert "Checkout Session's total amount due must add up to at least" in str(
        small_session.value
    )
    # Two at 25 cents make 50: the rule is on the total.
    both = sdk.v1.checkout.sessions.create(
        {"mode": "payment", "line_items": [{"price": a_price(sdk, 25), "quantity": 2}]}
    )
    assert both.amount_total == 50
    # Zero-decimal yen: 50 is ¥50, the minimum; eight digits is the maximum everywhere.
    assert sdk.v1.payment_intents.create({"amount": 50, "currency": "jpy"}).amount == 50
    with pytest.raises(stripe.InvalidRequestError) as yen:
        sdk.v1.payment_intents.create({"amount": 49, "currency": "jpy"})
    assert "¥50 jpy" in str(yen.value)
    with pytest.raises(stripe.InvalidRequestError) as large:
        sdk.v1.payment_intents.create({"amount": 100_000_000, "currency": "usd"})
    assert large.value.code == "amount_too_large"


def test_a_key_reused_with_other_parameters_is_an_idempotency_error(sandbox):
    sdk = client(sandbox)
    first = sdk.v1.products.create({"name": "Pin"}, {"idempotency_key": "pin-1"})
    again = sdk.v1.products.create({"name": "Pin"}, {"idempotency_key": "pin-1"})
    assert again.id == first.id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError) as other:
        sdk.v1.products.create({"name": "Badge"}, {"idempotency_key": "pin-1"})
    assert other.value.http_status == 400
    assert "same parameters they were first used with" in str(other.value)
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.prices.create(
            {"product": first.id, "unit_amount": 500, "currency": "usd"},
            {"idempotency_key": "pin-1"},
        )
    # One account per sandbox: another booth's sk_test_ key shares the key space.
    other_booth = client(sandbox, key="sk_test_another_booth")
    assert other_booth.v1.products.create({"name": "Pin"}, {"idempotency_key": "pin-1"}).id == (
        first.id
    )
    assert [p.name for p in sdk.v1.products.list().data] == ["Pin"]


def test_a_failed_request_keeps_nothing_so_its_key_can_be_used_again(sandbox):
    sdk = client(sandbox)
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.products.create({"name": "Pin", "colour": "red"}, {"idempotency_key": "k-9"})
    made = sdk.v1.products.create({"name": "Pin"}, {"idempotency_key": "k-9"})
    assert made.name == "Pin"


def test_a_500_from_a_running_endpoint_is_kept_and_replayed(sandbox):
    sandbox.fault("/v1/products", count=1, mode="crash")
    sdk = client(sandbox, retries=2)
    with pytest.raises(stripe.APIError) as crashed:
        sdk.v1.products.create({"name": "Lanyard"}, {"idempotency_key": "lanyard-1"})
    assert crashed.value.http_status == 500
    # The answer said not to retry; asking again with the key replays the 500, runs nothing.
    replay = requests.post(
        f"{sandbox.api_base}/v1/products",
        data={"name": "Lanyard"},
        headers={"Authorization": f"Bearer {sandbox.KEY}", "Idempotency-Key": "lanyard-1"},
        timeout=30,
    )
    assert replay.status_code == 500
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Stripe-Should-Retry"] == "false"
    assert sdk.v1.products.list().data == []
    assert sdk.v1.products.create({"name": "Lanyard"}, {"idempotency_key": "lanyard-2"}).id
    # A fault in front of the API keeps nothing: the SDK's retry with the key succeeds.
    sandbox.fault("/v1/products", count=1, mode="error")
    made = sdk.v1.products.create({"name": "Tote"}, {"idempotency_key": "tote-1"})
    assert made.name == "Tote"


def test_a_key_is_forgotten_24_hours_of_sandbox_time_after_first_use(sandbox):
    sdk = client(sandbox)
    first = sdk.v1.products.create({"name": "Cap"}, {"idempotency_key": "cap-1"})
    sandbox.advance_clock(24 * 3600 - 60)
    assert sdk.v1.products.create({"name": "Cap"}, {"idempotency_key": "cap-1"}).id == first.id
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.products.create({"name": "Hat"}, {"idempotency_key": "cap-1"})
    sandbox.advance_clock(61)
    anew = sdk.v1.products.create({"name": "Hat"}, {"idempotency_key": "cap-1"})
    assert anew.id != first.id and anew.name == "Hat"
    assert anew.last_response.headers.get("Idempotent-Replayed") is None
    assert sdk.v1.products.create({"name": "Hat"}, {"idempotency_key": "cap-1"}).id == anew.id


def test_events_are_listed_by_at_most_20_types_and_never_by_type_and_types(sandbox):
    sdk = client(sandbox)
    sdk.v1.payment_intents.create({"amount": 900, "currency": "usd"})
    twenty = [f"payment_intent.t{n}" for n in range(19)] + ["payment_intent.created"]
    assert len(sdk.v1.events.list({"types": twenty}).data) == 1
    with pytest.raises(stripe.InvalidRequestError) as too_many:
        sdk.v1.events.list({"types": [*twenty, "payment_intent.succeeded"]})
    assert too_many.value.param == "types"
    with pytest.raises(stripe.InvalidRequestError) as both:
        sdk.v1.events.list({"type": "payment_intent.created", "types": ["charge.refunded"]})
    assert "not both" in str(both.value)
    assert [e.type for e in sdk.v1.events.list({"type": "payment_intent.*"}).data] == [
        "payment_intent.created"
    ]
    assert sdk.v1.events.list({"type": "payment_*"}).data == sdk.v1.events.list().data
    assert sdk.v1.events.list({"type": "payment_intent.c%"}).data == []
