"""Stripe's amount rules: each currency's minimum charge, the maximum, and its minor unit.

A catalog price Stripe would refuse must fail on the laptop (`load-catalog`, `check`), not
on a visitor's phone. The figures are Stripe's table "Minimum and maximum charge amounts"
(https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts), the same data
the sandbox checks charges against; amounts are in the units the API takes (cents, whole
yen, and hundredths of a forint: Stripe's HUF minimum 175.00 Ft is 17500).
"""

from __future__ import annotations

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
# How Stripe counts amounts (https://docs.stripe.com/currencies#zero-decimal, #three-decimal);
# every other currency in hundredths of its main unit.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


def decimals(currency: str) -> int:
    """Return how many digits of a Stripe amount are below the currency's main unit."""
    currency = currency.lower()
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def shown(amount: int, currency: str) -> str:
    """Write a Stripe amount as people read it: 50 usd is "0.50 USD", 50 jpy is "50 JPY"."""
    places = decimals(currency)
    return f"{amount / 10**places:,.{places}f} {currency.upper()}"


def minimum(currency: str) -> int | None:
    """Return Stripe's minimum charge in a currency (None: Stripe publishes none for it)."""
    return MINIMUM_CHARGE.get(currency.lower())


def refusal(amount: int, currency: str) -> str | None:
    """Say why Stripe would refuse to charge this amount, or None when it would not."""
    floor = minimum(currency)
    if floor is not None and amount < floor:
        return (
            f"{shown(amount, currency)} is under Stripe's minimum charge of "
            f"{shown(floor, currency)}"
        )
    if amount > MAXIMUM_CHARGE:
        return f"{shown(amount, currency)} is over Stripe's maximum charge of 8 digits"
    return None
