"""Stripe's amount rules: the minimum charge in each currency, and the maximum.

A catalog price Stripe would refuse must fail on the laptop (`load-catalog`, `check`), not
on a visitor's phone. The figures are Stripe's table "Minimum and maximum charge amounts"
(https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts), the same data
the sandbox checks charges against; amounts are in the units the API takes (cents, whole
yen, and hundredths of a forint: Stripe's HUF minimum 175.00 Ft is 17500), written with
the one money formatter (`money.py`).
"""

from __future__ import annotations

from .money import format_money

# The smallest charge Stripe accepts in each currency it publishes one for.
MINIMUM_CHARGE: dict[str, int] = {
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
    "usd": 50,
}
# "The amount value supports up to eight digits (e.g., 99999999 for a USD charge of
# $999,999.99)."
MAXIMUM_CHARGE = 99_999_999


def minimum(currency: str) -> int | None:
    """Return Stripe's minimum charge in a currency (None: Stripe publishes none for it)."""
    return MINIMUM_CHARGE.get(currency.lower())


def refusal(amount: int, currency: str, locale: str = "en_US") -> str | None:
    """Say why Stripe would refuse to charge this amount, or None when it would not."""
    floor = minimum(currency)
    if floor is not None and amount < floor:
        return (
            f"{format_money(amount, currency, locale)} is under Stripe's minimum charge of "
            f"{format_money(floor, currency, locale)}"
        )
    if amount > MAXIMUM_CHARGE:
        shown = format_money(amount, currency, locale)
        return f"{shown} is over Stripe's maximum charge of 8 digits"
    return None
