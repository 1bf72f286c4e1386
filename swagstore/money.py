"""Money as people read it: one formatter for every page and command (Babel's CLDR data).

Amounts are stored as Stripe takes them, in the currency's smallest unit. Stripe's unit is
not always the ISO one (it counts HUF and ISK in hundredths, JPY in whole yen), so the
amount is first turned into the currency's main unit by Stripe's rule, then Babel writes
it with the symbol, digits and pattern of the store's LOCALE: 2500 usd is "$25.00", 500 jpy
is "¥500", 2500 eur in de_DE is "25,00 €".
"""

from __future__ import annotations

from decimal import Decimal

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency
from flask import Flask

# Stripe's representation of amounts (https://docs.stripe.com/currencies#zero-decimal and
# #three-decimal): a Stripe API fact that no locale data knows. Every other currency is
# counted in hundredths of its main unit.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


def decimals(currency: str) -> int:
    """Return how many digits of a Stripe amount are below the currency's main unit."""
    currency = currency.lower()
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def major(amount: int, currency: str) -> Decimal:
    """Return a Stripe amount in the currency's main unit, exactly: 2550 usd is 25.50."""
    return Decimal(amount).scaleb(-decimals(currency))


def format_money(amount: int, currency: str, locale: str = "en_US") -> str:
    """Write a Stripe amount as people read it in a locale: 2500 usd is "$25.00"."""
    return format_currency(major(amount, currency), currency.upper(), locale=locale)


def check_locale(name: str) -> str:
    """Return a locale name Babel knows (e.g. en_US, de_DE), or raise ValueError saying why."""
    try:
        Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError) as e:
        raise ValueError(f"LOCALE must be a locale such as en_US or de_DE, not {name!r}") from e
    return name


def init_app(app: Flask) -> None:
    """Check the LOCALE setting and give templates the `money` filter in it."""
    locale = check_locale(app.config["LOCALE"])

    def money(amount: int, currency: str) -> str:
        return format_money(amount, currency, locale)

    app.add_template_filter(money, "money")
