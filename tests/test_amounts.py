"""Stripe's amount rules on the product side agree with the sandbox's vendored table."""

from __future__ import annotations

import json

from conftest import ROOT
from swagstore import amounts, money

# The sandbox vendored Stripe's table with its source; the product keeps its own copy (it
# never imports the sandbox), and this test keeps the two the same.
VENDORED = json.loads(
    (ROOT / "swagstore" / "sandbox" / "data" / "charge_amounts.json").read_text("utf-8")
)


def test_the_minimums_are_the_sandboxs_vendored_table():
    table = {currency: entry["amount"] for currency, entry in VENDORED["minimum"].items()}
    assert table == amounts.MINIMUM_CHARGE
    assert VENDORED["maximum"] == amounts.MAXIMUM_CHARGE
    # The units amounts are counted in: the money formatter's, the sandbox's.
    assert set(VENDORED["zero_decimal"]) == money.ZERO_DECIMAL
    assert set(VENDORED["three_decimal"]) == money.THREE_DECIMAL


def test_what_stripe_would_refuse_in_the_currencys_own_units():
    assert amounts.refusal(49, "usd") == "$0.49 is under Stripe's minimum charge of $0.50"
    assert amounts.refusal(49, "jpy") == "¥49 is under Stripe's minimum charge of ¥50"
    assert amounts.refusal(29, "gbp", "en_GB") == "£0.29 is under Stripe's minimum charge of £0.30"
    assert amounts.refusal(49, "eur", "de_DE") == (
        "0,49\xa0€ is under Stripe's minimum charge of 0,50\xa0€"
    )
    assert amounts.refusal(50, "usd") is None
    assert amounts.refusal(17500, "huf") is None
    assert amounts.refusal(1, "isk") is None  # no published minimum: Stripe converts
    assert "over Stripe's maximum" in amounts.refusal(100_000_000, "usd")
