"""A payment link's `restrictions.completed_sessions`: Stripe's own guard against overselling."""

from __future__ import annotations

import pytest
import requests
import stripe
from test_sandbox_rules import a_price, client


@pytest.fixture
def sdk(sandbox):
    return client(sandbox)


def limited_link(sdk, limit: int):
    return sdk.v1.payment_links.create(
        {
            "line_items": [{"price": a_price(sdk), "quantity": 1}],
            "restrictions": {"completed_sessions": {"limit": limit}},
            "inactive_message": "Sold out at the booth",
        }
    )


def restriction(sdk, link_id: str) -> tuple[bool, int, int]:
    link = sdk.v1.payment_links.retrieve(link_id)
    counted = link.restrictions.completed_sessions
    return link.active, counted.count, counted.limit


def test_the_link_stops_itself_at_its_limit_and_turns_later_phones_away(sandbox, sdk):
    link = limited_link(sdk, 2)
    assert restriction(sdk, link.id) == (True, 0, 2)
    for _ in range(2):
        sandbox.pay(sandbox.open_session(link.id)["id"])
    assert restriction(sdk, link.id) == (False, 2, 2)
    updated = [e for e in sandbox.events("payment_link.updated")]
    assert len(updated) == 1, "one event, when the link stopped; none for the first sale"
    assert updated[0]["data"]["object"]["active"] is False
    assert updated[0]["data"]["previous_attributes"]["active"] is True
    assert updated[0]["data"]["previous_attributes"]["restrictions"] == {
        "completed_sessions": {"count": 1, "limit": 2}
    }
    refused = requests.post(
        f"{sandbox.url}/sandbox/payment_links/{link.id}/sessions",
        headers={"Accept": "application/json"},
        timeout=30,
    )
    assert refused.status_code == 410
    page = requests.get(link.url, headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 410
    assert "Sold out at the booth" in page.text and "Pay" not in page.text
    charges = [e for e in sandbox.ledger()["entries"] if e["action"] == "charge"]
    assert len(charges) == 2


def test_a_session_opened_before_the_limit_can_still_be_paid_after_it(sandbox, sdk):
    link = limited_link(sdk, 1)
    early, late = sandbox.open_session(link.id), sandbox.open_session(link.id)
    sandbox.pay(early["id"])
    assert restriction(sdk, link.id) == (False, 1, 1)
    paid = sandbox.pay(late["id"])
    assert (paid["status"], paid["payment_status"]) == ("complete", "paid")
    assert restriction(sdk, link.id) == (False, 2, 1), "the count passes the limit"
    assert len(sandbox.events("payment_link.updated")) == 1


def test_a_raised_limit_lets_the_link_be_switched_on_again(sandbox, sdk):
    link = limited_link(sdk, 1)
    sandbox.pay(sandbox.open_session(link.id)["id"])
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.payment_links.update(link.id, {"active": True})
    assert refused.value.param == "active"
    raised = sdk.v1.payment_links.update(
        link.id, {"restrictions": {"completed_sessions": {"limit": 3}}}
    )
    assert (raised.active, raised.restrictions.completed_sessions.count) == (False, 1)
    assert sdk.v1.payment_links.update(link.id, {"active": True}).active is True
    sandbox.pay(sandbox.open_session(link.id)["id"])
    assert restriction(sdk, link.id) == (True, 2, 3)
    # A limit lowered to what has been sold is reached at once; unset, no limit at all.
    lowered = sdk.v1.payment_links.update(
        link.id, {"restrictions": {"completed_sessions": {"limit": 2}}}
    )
    assert lowered.active is False
    unset = sdk.v1.payment_links.update(link.id, {"restrictions": "", "active": True})
    assert (unset.active, unset.restrictions) == (True, None)


def test_a_limit_is_a_positive_integer(sdk):
    price = a_price(sdk)
    for limit, code in ((0, None), ("many", "parameter_invalid_integer")):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            sdk.v1.payment_links.create(
                {
                    "line_items": [{"price": price, "quantity": 1}],
                    "restrictions": {"completed_sessions": {"limit": limit}},
                }
            )
        assert refused.value.param == "restrictions[completed_sessions][limit]"
        assert refused.value.code == code
