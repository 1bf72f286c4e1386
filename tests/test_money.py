"""Money and times as staff and visitors read them: one formatter each, set per booth."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from conftest import make_product
from swagstore import clock, create_app, money
from swagstore.models import db


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "text"),
    [
        (2500, "usd", "en_US", "$25.00"),
        (1250, "eur", "en_US", "€12.50"),
        (1250, "eur", "de_DE", "12,50\xa0€"),
        (500, "jpy", "en_US", "¥500"),
        (500, "jpy", "ja_JP", "￥500"),
        (99, "chf", "de_CH", "CHF\xa00.99"),
        (123456, "gbp", "en_GB", "£1,234.56"),
        # Stripe counts these in thousandths: 12.345 dinars.
        (12345, "kwd", "en_US", "KWD12.345"),
        # Stripe counts forints in hundredths, though none change hands: 175 Ft.
        (17500, "huf", "hu_HU", "175\xa0Ft"),
    ],
)
def test_money_reads_as_the_locale_writes_it(amount, currency, locale, text):
    assert money.format_money(amount, currency, locale) == text


@pytest.mark.parametrize(
    ("amount", "currency", "value"),
    [(2550, "usd", Decimal("25.50")), (500, "JPY", Decimal(500)), (1005, "bhd", Decimal("1.005"))],
)
def test_major_units_follow_stripes_rule_exactly(amount, currency, value):
    assert money.major(amount, currency) == value


def test_a_bad_locale_or_zone_stops_the_app_naming_the_setting(app_config):
    with pytest.raises(ValueError, match="LOCALE must be a locale such as en_US"):
        create_app({**app_config, "LOCALE": "klingon"})
    with pytest.raises(ValueError, match="TIMEZONE must be a zone name"):
        create_app({**app_config, "TIMEZONE": "Mars/Olympus_Mons"})


def test_times_show_in_the_booths_zone_with_daylight_saving():
    chicago = clock.zone("America/Chicago")
    summer = datetime(2026, 7, 1, 19, 24, 20, tzinfo=UTC)
    winter = datetime(2026, 12, 3, 20, 24, 20)  # stored naive: UTC
    assert f"{clock.local(summer, chicago):%H:%M:%S %Z}" == "14:24:20 CDT"
    assert f"{clock.local(winter, chicago):%H:%M:%S %Z}" == "14:24:20 CST"


def test_an_unset_zone_is_the_laptops_own(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert clock.zone(None).key == "Asia/Tokyo"
    monkeypatch.delenv("TZ")
    # This machine's /etc/localtime, or UTC where it names none.
    assert clock.zone(None).key == clock.system_zone()


def test_the_kiosk_shows_prices_in_the_booths_locale(app_config):
    other = create_app({**app_config, "LOCALE": "de_DE"})
    with other.app_context():
        from swagstore.cli import init_db

        init_db()
    make_product(other, "mug", price=1250, name="Mug", currency="eur")
    make_product(other, "pins", price=500, name="Pins", currency="jpy")
    try:
        page = other.test_client().get("/").text
        assert "12,50\xa0€" in page
        assert "500\xa0¥" in page
        assert "12.50" not in page and "5.00" not in page
    finally:
        with other.app_context():
            db.engine.dispose()
