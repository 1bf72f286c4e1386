"""Stripe's amount rules on the product side agree with the sandbox's vendored table."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT
from swagstore import amounts

# The sandbox vendored Stripe's table with its source; the product keeps its own copy (it
# never imports the sandbox), and this test keeps the two the same.
VENDORED = json.loads(
    (ROOT / "swagstore" / "sandbox" / "data" / "charge_amounts.json").read_text("utf-8")
)


def test_the_minimums_are_the_sandboxs_vendored_table():
    table = {currency: entry["amount"] for currency, entry in VENDORED["minimum"].items()}
    assert table == amounts.MINIMUM_CHARGE
    assert VENDORED["maximum"] == amounts.MAXIMUM_CHARGE
    assert set(VENDORED["zero_decimal"]) == amounts.ZERO_DECIMAL
    assert set(VENDORED["three_decimal"]) == amounts.THREE_DECIMAL


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (50, "usd", "0.50 USD"),
        (50, "jpy", "50 JPY"),
        (17500, "huf", "175.00 HUF"),
        (1500, "kwd", "1.500 KWD"),
        (250000, "eur", "2,500.00 EUR"),
    ],
)
def test_amounts_are_shown_in_the_currencys_own_units(amount, currency, shown):
    assert amounts.shown(amount, currency) == shown


def test_what_stripe_would_refuse():
    assert amounts.refusal(49, "usd") == ("0.49 USD is under Stripe's minimum charge of 0.50 USD")
    assert amounts.refusal(49, "jpy") == "49 JPY is under Stripe's minimum charge of 50 JPY"
    assert amounts.refusal(50, "usd") is None
    assert amounts.refusal(1, "isk") is None  # no published minimum: Stripe converts
    assert "over Stripe's maximum" in amounts.refusal(100_000_000, "usd")
