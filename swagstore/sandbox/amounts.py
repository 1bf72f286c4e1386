"""Stripe's amount rules: each currency's minor unit and its minimum and maximum charge.

The figures are Stripe's published table (data/charge_amounts.json names its source). A
charge under a currency's minimum is `amount_too_small`, one over eight digits is
`amount_too_large`, wherever money would move: a PaymentIntent, a Checkout Session, a
payment link's total.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from .errors import invalid


@cache
def rules() -> dict[str, Any]:
    """Return the vendored table."""
    text = files(__package__).joinpath("data/charge_amounts.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def decimals(currency: str) -> int:
    """Return how many digits of an API amount are below the currency's main unit."""
    currency = currency.lower()
    if currency in rules()["zero_decimal"]:
        return 0
    return 3 if currency in rules()["three_decimal"] else 2


def shown(amount: int, currency: str) -> str:
    """Return an API amount as people read it: 1250 usd is "12.50 USD", 500 jpy "500 JPY"."""
    places = decimals(currency)
    return f"{amount / 10**places:,.{places}f} {currency.upper()}"


def minimum(currency: str) -> int | None:
    """Return Stripe's minimum charge in the currency's minor units (None: not in the table)."""
    entry = rules()["minimum"].get(currency.lower())
    return None if entry is None else int(entry["amount"])


def check_charge(amount: int, currency: str, *, what: str = "Amount", param: str | None) -> None:
    """Refuse a charge below the currency's minimum or above Stripe's maximum, as Stripe does."""
    floor = minimum(currency)
    if floor is not None and amount < floor:
        least = rules()["minimum"][currency.lower()]["shown"]
        raise invalid(
            f"{what} must {_verb(what)} at least {least} {currency.lower()}",
            param=param,
            code="amount_too_small",
        )
    if amount > rules()["maximum"]:
        most = shown(rules()["maximum"], currency)
        raise invalid(
            f"{what} must {_verb(what)} no more than {most}", param=param, code="amount_too_large"
        )


def _verb(what: str) -> str:
    # "Amount must be at least …" but "… total amount due must add up to at least …".
    return "be" if what == "Amount" else "add up to"
