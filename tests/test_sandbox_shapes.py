"""The sandbox's objects have the fields and JSON types of Stripe's own example objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = json.loads(
    (Path(__file__).parent / "fixtures" / "stripe_objects.json").read_text(encoding="utf-8")
)["resources"]


def json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_shaped_like(obj: dict, kind: str) -> None:
    """Every field of Stripe's example is present, with the same JSON type where both are set."""
    example = FIXTURES[kind]
    assert obj["object"] == kind
    missing = sorted(set(example) - set(obj))
    assert not missing, f"{kind} lacks {missing}"
    for name, value in example.items():
        if value is not None and obj[name] is not None:
            assert json_type(obj[name]) == json_type(value), (kind, name, obj[name], value)


@pytest.fixture
def objects(sandbox) -> dict[str, dict]:
    """One of each object the sandbox serves, fetched back through its API."""

    def post(path: str, data: dict) -> dict:
        response = sandbox.api("POST", path, data=data)
        assert response.status_code == 200, response.text
        return response.json()

    product = post("products", {"name": "Logo T-shirt", "metadata[sku]": "tee-m"})
    price = post("prices", {"product": product["id"], "unit_amount": 2500, "currency": "usd"})
    link = post(
        "payment_links",
        {
            "line_items[0][price]": price["id"],
            "line_items[0][quantity]": 1,
            "metadata[sku]": "tee-m",
            "metadata[store]": "booth",
            "payment_intent_data[capture_method]": "automatic",
            "inactive_message": "Sold out at the booth, sorry!",
        },
    )
    session = sandbox.pay(sandbox.open_session(link["id"])["id"])
    refund = post("refunds", {"payment_intent": session["payment_intent"]})
    fetched = {
        "product": sandbox.api("GET", f"products/{product['id']}").json(),
        "price": sandbox.api("GET", f"prices/{price['id']}").json(),
        "payment_link": sandbox.api("GET", f"payment_links/{link['id']}").json(),
        "checkout.session": sandbox.api("GET", f"checkout/sessions/{session['id']}").json(),
        "payment_intent": sandbox.api(
            "GET", f"payment_intents/{session['payment_intent']}"
        ).json(),
        "refund": sandbox.api("GET", f"refunds/{refund['id']}").json(),
        "item": sandbox.api("GET", f"checkout/sessions/{session['id']}/line_items").json()["data"][
            0
        ],
    }
    return fetched


@pytest.mark.parametrize(
    "kind",
    ["product", "price", "payment_link", "checkout.session", "payment_intent", "refund", "item"],
)
def test_objects_have_stripes_fields_and_types(objects, kind):
    assert_shaped_like(objects[kind], kind)


def test_a_paid_session_carries_what_fulfilment_reads(objects):
    session = objects["checkout.session"]
    assert session["metadata"] == {"sku": "tee-m", "store": "booth"}
    assert (session["status"], session["payment_status"], session["mode"]) == (
        "complete",
        "paid",
        "payment",
    )
    assert session["payment_intent"] == objects["payment_intent"]["id"]
    assert (session["amount_total"], session["currency"]) == (2500, "usd")
    assert objects["item"]["price"]["id"] == objects["price"]["id"]


def test_events_carry_stripes_envelope_and_full_objects(sandbox, objects):
    events = sandbox.events()
    assert {e["type"] for e in events} >= {
        "checkout.session.completed",
        "payment_intent.created",
        "payment_intent.succeeded",
        "refund.created",
    }
    for event in events:
        assert_shaped_like(event, "event")
        assert event["id"].startswith("evt_") and event["livemode"] is False
        assert set(event["request"]) == {"id", "idempotency_key"}
        assert_shaped_like(event["data"]["object"], event["data"]["object"]["object"])
    by_id = sandbox.api("GET", f"events/{events[0]['id']}").json()
    assert by_id == events[0]


def test_lists_and_errors_have_stripes_shapes(sandbox, objects):
    listed = sandbox.api("GET", "products").json()
    assert set(listed) == {"object", "data", "has_more", "url"}
    assert (listed["object"], listed["url"], listed["has_more"]) == ("list", "/v1/products", False)
    missing = sandbox.api("GET", "payment_intents/pi_nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": "No such payment_intent: 'pi_nope'",
            "param": "id",
        }
    }
    bad = sandbox.api("POST", "prices", data={"product": objects["product"]["id"]})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "parameter_missing"
