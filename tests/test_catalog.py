"""The catalog: validation messages, loading, and the load-catalog command."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import ROOT, STORE, both_databases
from swagstore import catalog, inventory
from swagstore.models import Product, Stock, StockEvent, db

GOOD = """
[[item]]
sku = "tee-m"
name = "Logo T-shirt"
price = 2500
currency = "usd"
stock = 20
group = "tee"
attributes = { size = "M" }

[[item]]
sku = "mug"
name = "Mug"
price = 1800
currency = "EUR"
stock = 5
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return str(path)


def snapshot(app) -> tuple:
    with app.app_context():
        return (
            db.session.execute(select(Product.sku, Product.name, Product.price)).all(),
            db.session.execute(select(Stock.sku, Stock.on_hand, Stock.reserved)).all(),
            db.session.scalar(select(func.count(StockEvent.id))),
        )


def test_demo_catalog_is_valid_and_realistic():
    items = catalog.read(str(ROOT / "instance" / "catalog.toml"))
    assert 8 <= len(items) <= 12
    tees = [i for i in items if i.group == "tee"]
    assert sorted(i.attributes["size"] for i in tees) == ["L", "M", "S", "XL"]
    assert all(i.price > 0 and i.stock > 0 and i.currency == "usd" for i in items)


@both_databases
def test_load_catalog_adds_products_and_stock(app, runner, tmp_path):
    result = runner.invoke(args=["load-catalog", write(tmp_path, GOOD)])
    assert result.exit_code == 0, result.output
    assert "2 new" in result.output
    with app.app_context():
        assert db.session.get(Stock, ("tee-m", STORE)).on_hand == 20
        mug = db.session.get(Product, "mug")
        assert (mug.currency, mug.price) == ("eur", 1800)
        assert db.session.get(Product, "tee-m").attributes == {"size": "M"}


@both_databases
def test_reload_keeps_stock_unless_reset(app, runner, tmp_path):
    path = write(tmp_path, GOOD)
    runner.invoke(args=["load-catalog", path])
    with app.app_context():
        inventory.take("tee-m", STORE, 3)
        db.session.commit()
    same = runner.invoke(args=["load-catalog", path])
    assert same.exit_code == 0, same.output
    assert "  tee-m: unchanged\n  mug: unchanged\n" in same.output
    assert "0 new, 0 updated, 2 unchanged, 0 stock reset" in same.output
    assert "sync-stripe" not in same.output  # nothing new for Stripe
    changed = write(tmp_path, GOOD.replace("price = 2500", "price = 2700"))
    result = runner.invoke(args=["load-catalog", changed])
    assert result.exit_code == 0, result.output
    assert "  tee-m: updated\n  mug: unchanged\n" in result.output
    assert "reach Stripe with: flask --app swagstore sync-stripe" in result.output
    with app.app_context():
        assert db.session.get(Stock, ("tee-m", STORE)).on_hand == 17
        assert db.session.get(Product, "tee-m").price == 2700
    result = runner.invoke(args=["load-catalog", changed, "--reset-stock"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.get(Stock, ("tee-m", STORE)).on_hand == 20


BAD = [
    (GOOD + GOOD, "item 3 (tee-m): sku: duplicate SKU 'tee-m'"),
    (GOOD.replace("stock = 5", "stock = -2"), "item 2 (mug): stock: must be a whole number >= 0"),
    (GOOD.replace("price = 1800\n", ""), "item 2 (mug): price: missing"),
    (GOOD.replace('"EUR"', '"xyz"'), "item 2 (mug): currency: unknown currency 'xyz'"),
    (GOOD.replace('sku = "mug"\n', ""), "item 2: sku: missing"),
    (GOOD.replace("price = 1800", "price = 18.5"), "item 2 (mug): price: must be a whole"),
    (GOOD.replace('name = "Mug"', 'name = "Mug"\ncolour = "red"'), "colour: unknown field"),
    # Stripe refuses a charge under its minimum: the item and the minimum are named.
    (
        GOOD.replace("price = 2500", "price = 30"),
        "item 1 (tee-m): price: $0.30 is under Stripe's minimum charge of $0.50; "
        "the least is 50 (minor units)",
    ),
    (
        GOOD.replace("price = 1800", "price = 49"),
        "item 2 (mug): price: €0.49 is under Stripe's minimum charge of €0.50",
    ),
    (
        GOOD.replace('"EUR"', '"jpy"').replace("price = 1800", "price = 30"),
        "item 2 (mug): price: ¥30 is under Stripe's minimum charge of ¥50",
    ),
    (
        GOOD.replace("price = 1800", "price = 100000000"),
        "item 2 (mug): price: €1,000,000.00 is over Stripe's maximum charge",
    ),
    (
        GOOD.replace("price = 1800", "price = 0"),
        "item 2 (mug): price: 0: a free item is a giveaway",
    ),
    ("[[item]\nsku=", "not valid TOML"),
    ("title = 'nothing'", "the catalog has no [[item]] entries"),
    # An entry that is not a table is named, never a traceback.
    ("item = [5, 'x']", "item 1: must be a table ([[item]])"),
    ("item = [{ sku = 'a' }, 5]", "item 2: must be a table ([[item]])"),
    # Nothing the database columns cannot hold, and no stock beyond any booth.
    (GOOD.replace("stock = 5", "stock = 9223372036854775807"), "stock: must be at most"),
    (GOOD.replace("stock = 5", "stock = 1000001"), "stock: must be at most 1,000,000 units"),
    (GOOD.replace('name = "Mug"', f'name = "{"M" * 201}"'), "name: use at most 200 characters"),
    (GOOD.replace('group = "tee"', f'group = "{"g" * 65}"'), "group: use at most 64"),
    (GOOD.replace('name = "Mug"', f'name = "Mug"\nimage = "{"i" * 501}"'), "image: use at most"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_catalog_is_rejected_with_its_message_and_changes_nothing(
    app, runner, tmp_path, text, message
):
    runner.invoke(args=["load-catalog", write(tmp_path, GOOD.replace("tee-m", "old"))])
    before = snapshot(app)
    result = runner.invoke(args=["load-catalog", write(tmp_path, text)])
    assert result.exit_code != 0
    assert message in result.output
    assert "nothing changed" in result.output
    assert "Traceback" not in result.output
    assert snapshot(app) == before


def test_every_problem_is_reported_at_once():
    text = GOOD.replace("stock = 5", "stock = -2").replace('"usd"', '"zzz"')
    with pytest.raises(catalog.CatalogError) as e:
        catalog.parse(__import__("tomllib").loads(text))
    assert len(e.value.problems) == 2


@pytest.mark.parametrize(
    ("price", "currency"), [(50, "usd"), (30, "gbp"), (50, "jpy"), (17500, "huf"), (1, "isk")]
)
def test_a_price_at_stripes_minimum_is_accepted(price, currency):
    # ISK has no published minimum (Stripe converts it): accepted, and `check` says so.
    text = GOOD.replace("price = 1800", f"price = {price}").replace('"EUR"', f'"{currency}"')
    items = catalog.parse(__import__("tomllib").loads(text))
    assert (items[1].price, items[1].currency) == (price, currency)


def test_a_file_that_is_not_utf8_is_a_clear_error(app, runner, tmp_path):
    path = tmp_path / "catalog.toml"
    path.write_bytes(b"\xff\xfe[[item]]\n")
    result = runner.invoke(args=["load-catalog", str(path)])
    assert result.exit_code != 0
    assert "not valid TOML: not UTF-8 text" in result.output
    assert "nothing changed" in result.output and "Traceback" not in result.output


def test_missing_file_is_a_clear_error(runner, tmp_path):
    result = runner.invoke(args=["load-catalog", str(tmp_path / "nope.toml")])
    assert result.exit_code != 0
    assert "no such file" in result.output
