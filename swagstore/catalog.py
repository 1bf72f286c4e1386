"""The catalog file: reading and checking the TOML, and loading it into the database.

`read`/`parse` report every problem of a file at once and change nothing (a price Stripe
would refuse to charge is one: `amounts.py`; a free item is a staff giveaway); `load` upserts
products and stock in the caller's transaction, so a bad file leaves the database as it
was. Stock only changes through `inventory`, so every unit loaded is in the stock log.
What is on sale is `offer.py`; making it exist on Stripe is `stripe_sync.py`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

from . import amounts, inventory
from .models import Product, Stock, Store, db

# Stripe's presentment currencies, lower-case as Stripe writes them.
CURRENCIES = frozenset(
    (
        "usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob "
        "brl bsd bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb "
        "eur fjd fkp gbp gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod "
        "jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt "
        "mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln "
        "pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd "
        "top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw "
    ).split()
)
SKU_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
# The widths of the columns they are stored in: PostgreSQL refuses a longer text.
MAX_SKU, MAX_NAME, MAX_IMAGE, MAX_GROUP = (
    Product.__table__.c[column].type.length for column in ("sku", "name", "image", "group")
)
MAX_STOCK = inventory.MAX_UNITS
KNOWN_FIELDS = {
    "sku",
    "name",
    "price",
    "currency",
    "stock",
    "description",
    "image",
    "attributes",
    "group",
}


class CatalogError(Exception):
    """The catalog file is unreadable or an item in it is invalid."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Item:
    """One validated catalog entry."""

    sku: str
    name: str
    price: int
    currency: str
    stock: int
    description: str = ""
    image: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    group: str | None = None


def read(path: str) -> list[Item]:
    """Read and validate a catalog file, reporting every problem at once."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise CatalogError([f"{path}: no such file"]) from None
    except tomllib.TOMLDecodeError as e:
        raise CatalogError([f"{path}: not valid TOML: {e}"]) from None
    except UnicodeDecodeError as e:
        raise CatalogError([f"{path}: not valid TOML: not UTF-8 text ({e.reason})"]) from None
    return parse(data)


def parse(data: dict[str, Any]) -> list[Item]:
    """Validate parsed TOML into items, naming the item and field of each problem."""
    entries = data.get("item")
    if not isinstance(entries, list) or not entries:
        raise CatalogError(["the catalog has no [[item]] entries"])
    problems: list[str] = []
    items: list[Item] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries, start=1):
        label = f"item {n}"
        if not isinstance(entry, dict):
            problems.append(f"{label}: must be a table ([[item]])")
            continue
        if isinstance(entry.get("sku"), str):
            label = f"item {n} ({entry['sku']})"
        item = _parse_item(entry, label, problems)
        if item is None:
            continue
        if item.sku in seen:
            problems.append(f"{label}: sku: duplicate SKU {item.sku!r}")
            continue
        seen.add(item.sku)
        items.append(item)
    if problems:
        raise CatalogError(problems)
    return items


def _parse_item(entry: dict[str, Any], label: str, problems: list[str]) -> Item | None:
    start = len(problems)

    def bad(name: str, why: str) -> None:
        problems.append(f"{label}: {name}: {why}")

    for name in sorted(set(entry) - KNOWN_FIELDS):
        bad(name, "unknown field (expected one of " + ", ".join(sorted(KNOWN_FIELDS)) + ")")
    sku = entry.get("sku")
    if not isinstance(sku, str) or not sku:
        bad("sku", "missing; every item needs a text SKU")
    elif not is_sku(sku):
        bad("sku", f"use at most {MAX_SKU} letters, digits, '-', '_' or '.'")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        bad("name", "missing; every item needs a name")
    elif len(name.strip()) > MAX_NAME:
        bad("name", f"use at most {MAX_NAME} characters, not {len(name.strip())}")
    price = entry.get("price")
    if price is None:
        bad("price", "missing; give the price in minor units (cents), e.g. 2500")
    elif not _whole(price) or price < 0:
        bad("price", f"must be a whole number of minor units (cents) > 0, not {price!r}")
    elif price == 0:
        bad("price", "0: a free item is a giveaway, which staff record on /admin, not a price")
    currency = entry.get("currency")
    if not isinstance(currency, str) or not currency:
        bad("currency", "missing; give an ISO code such as 'usd' or 'eur'")
    elif currency.lower() not in CURRENCIES:
        bad("currency", f"unknown currency {currency!r}")
    elif _whole(price) and price > 0 and (why := amounts.refusal(price, currency)):
        # Stripe would refuse the charge, so the link or checkout would fail on the phone.
        floor = amounts.minimum(currency)
        least = f"; the least is {floor} (minor units)" if floor and price < floor else ""
        bad("price", f"{why}{least}")
    stock = entry.get("stock")
    if stock is None:
        bad("stock", "missing; give the number of units brought to the booth")
    elif not isinstance(stock, int) or isinstance(stock, bool) or stock < 0:
        bad("stock", f"must be a whole number >= 0, not {stock!r}")
    elif stock > MAX_STOCK:
        bad("stock", f"must be at most {MAX_STOCK:,} units, not {stock:,}")
    description = entry.get("description", "")
    if not isinstance(description, str):
        bad("description", "must be text")
    image = entry.get("image")
    if image is not None and not isinstance(image, str):
        bad("image", "must be a path or URL")
    elif image is not None and len(image) > MAX_IMAGE:
        bad("image", f"use at most {MAX_IMAGE} characters, not {len(image)}")
    attributes = entry.get("attributes", {})
    if not isinstance(attributes, dict) or not all(
        isinstance(v, str | int | float) for v in attributes.values()
    ):
        bad("attributes", 'must be a table of simple values, e.g. { size = "M" }')
    group = entry.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        bad("group", "must be text")
    elif group is not None and len(group) > MAX_GROUP:
        bad("group", f"use at most {MAX_GROUP} characters, not {len(group)}")
    if len(problems) > start:
        return None
    return Item(
        sku=sku,
        name=name.strip(),
        price=price,
        currency=currency.lower(),
        stock=stock,
        description=description,
        image=image,
        attributes={k: str(v) for k, v in attributes.items()},
        group=group,
    )


def is_sku(text: str) -> bool:
    """Tell whether a text could be a catalog SKU (anything else names no item)."""
    return 0 < len(text) <= MAX_SKU and set(text) <= SKU_CHARS


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class LoadResult:
    """What load() changed."""

    added: list[str]
    updated: list[str]
    restocked: list[str]
    unchanged: list[str] = field(default_factory=list)


def load(items: list[Item], store: str, *, reset_stock: bool = False) -> LoadResult:
    """Upsert products and stock for one store, in the caller's transaction."""
    if db.session.get(Store, store) is None:
        db.session.add(Store(id=store, name=store))
    added, updated, restocked, unchanged = [], [], [], []
    for position, item in enumerate(items):
        product = db.session.get(Product, item.sku)
        if product is None:
            product = Product(sku=item.sku)
            db.session.add(product)
            added.append(item.sku)
        elif _same(product, item, position) and db.session.get(Stock, (item.sku, store)):
            unchanged.append(item.sku)
        else:
            updated.append(item.sku)
        product.name = item.name
        product.price = item.price
        product.currency = item.currency
        product.description = item.description
        product.image = item.image
        product.attributes = item.attributes
        product.group = item.group
        product.position = position
        db.session.flush()
        if db.session.get(Stock, (item.sku, store)) is None:
            db.session.add(Stock(sku=item.sku, store=store, on_hand=0, reserved=0))
            db.session.flush()
            if item.stock:
                inventory.restock(item.sku, store, item.stock, reason="catalog")
        elif reset_stock:
            if inventory.adjust(item.sku, store, item.stock, ref="load-catalog --reset-stock"):
                restocked.append(item.sku)
            else:
                raise CatalogError(
                    [f"{item.sku}: stock: {item.stock} is below the units held for checkouts"]
                )
    return LoadResult(added, updated, restocked, unchanged)


def _same(product: Product, item: Item, position: int) -> bool:
    """Tell whether a stored product already says what the catalog item says."""
    return (
        product.name,
        product.price,
        product.currency,
        product.description,
        product.image,
        product.attributes or {},
        product.group,
        product.position,
    ) == (
        item.name,
        item.price,
        item.currency,
        item.description,
        item.image,
        item.attributes,
        item.group,
        position,
    )
