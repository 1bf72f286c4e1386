"""The catalog: reading and checking the TOML file, and loading it into the database."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, select

from .models import PaymentLink, Product, Sale, Stock, StockEvent, Store, db, utcnow

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
        if isinstance(entry.get("sku"), str):
            label = f"item {n} ({entry['sku']})"
        if not isinstance(entry, dict):
            problems.append(f"{label}: must be a table ([[item]])")
            continue
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
    elif len(sku) > 64 or not set(sku) <= SKU_CHARS:
        bad("sku", "use at most 64 letters, digits, '-', '_' or '.'")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        bad("name", "missing; every item needs a name")
    price = entry.get("price")
    if price is None:
        bad("price", "missing; give the price in minor units (cents), e.g. 2500")
    elif not isinstance(price, int) or isinstance(price, bool) or price < 0:
        bad("price", f"must be a whole number of minor units (cents) >= 0, not {price!r}")
    currency = entry.get("currency")
    if not isinstance(currency, str) or not currency:
        bad("currency", "missing; give an ISO code such as 'usd' or 'eur'")
    elif currency.lower() not in CURRENCIES:
        bad("currency", f"unknown currency {currency!r}")
    stock = entry.get("stock")
    if stock is None:
        bad("stock", "missing; give the number of units brought to the booth")
    elif not isinstance(stock, int) or isinstance(stock, bool) or stock < 0:
        bad("stock", f"must be a whole number >= 0, not {stock!r}")
    description = entry.get("description", "")
    if not isinstance(description, str):
        bad("description", "must be text")
    image = entry.get("image")
    if image is not None and not isinstance(image, str):
        bad("image", "must be a path or URL")
    attributes = entry.get("attributes", {})
    if not isinstance(attributes, dict) or not all(
        isinstance(v, str | int | float) for v in attributes.values()
    ):
        bad("attributes", 'must be a table of simple values, e.g. { size = "M" }')
    group = entry.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        bad("group", "must be text")
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


@dataclass(frozen=True)
class LoadResult:
    """What load() changed."""

    added: list[str]
    updated: list[str]
    restocked: list[str]


def load(items: list[Item], store: str, *, reset_stock: bool = False) -> LoadResult:
    """Upsert products and stock for one store, in the caller's transaction."""
    from . import inventory

    if db.session.get(Store, store) is None:
        db.session.add(Store(id=store, name=store))
    added, updated, restocked = [], [], []
    for position, item in enumerate(items):
        product = db.session.get(Product, item.sku)
        if product is None:
            product = Product(sku=item.sku)
            db.session.add(product)
            added.append(item.sku)
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
    return LoadResult(added, updated, restocked)


@dataclass(frozen=True)
class Listing:
    """An item as this store offers it right now."""

    sku: str
    name: str
    description: str
    image: str | None
    attributes: dict[str, str]
    group: str | None
    price: int
    currency: str
    on_hand: int
    reserved: int
    sold: int
    payment_link_id: str | None
    payment_link_url: str | None

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def sold_out(self) -> bool:
        return self.available <= 0


def listings(store: str) -> list[Listing]:
    """List every item stocked at a store, in catalog order, with counts and link."""
    sold = (
        select(Sale.sku, func.sum(Sale.quantity).label("sold"))
        .where(Sale.store == store, Sale.status == "fulfilled")
        .group_by(Sale.sku)
        .subquery()
    )
    stmt = (
        select(Product, Stock, func.coalesce(sold.c.sold, 0), PaymentLink.id, PaymentLink.url)
        .join(Stock, Stock.sku == Product.sku)
        .outerjoin(sold, sold.c.sku == Product.sku)
        .outerjoin(
            PaymentLink,
            (PaymentLink.sku == Stock.sku)
            & (PaymentLink.store == Stock.store)
            & PaymentLink.retired_at.is_(None),
        )
        .where(Stock.store == store)
        .order_by(Product.position, Product.sku)
    )
    return [
        Listing(
            sku=p.sku,
            name=p.name,
            description=p.description,
            image=p.image,
            attributes=p.attributes or {},
            group=p.group,
            price=p.price,
            currency=p.currency,
            on_hand=s.on_hand,
            reserved=s.reserved,
            sold=int(n),
            payment_link_id=link_id,
            payment_link_url=link_url,
        )
        for p, s, n, link_id, link_url in db.session.execute(stmt)
    ]


@dataclass(frozen=True)
class Offer:
    """An item still in stock, as a sold-out page suggests it."""

    sku: str
    name: str
    price: int
    currency: str
    available: int


# Built once: a drop asks it of every visitor who finds their item gone.
_IN_STOCK = (
    select(
        Product.sku,
        Product.name,
        Product.price,
        Product.currency,
        (Stock.on_hand - Stock.reserved).label("available"),
    )
    .join(Stock, Stock.sku == Product.sku)
    .where(
        Stock.store == bindparam("store"),
        Stock.sku != bindparam("except_sku"),
        Stock.on_hand - Stock.reserved > 0,
    )
    .order_by(Product.position, Product.sku)
)


def in_stock(store: str, except_sku: str) -> list[Offer]:
    """List the items a store still has available, in catalog order, but one."""
    rows = db.session.execute(_IN_STOCK, {"store": store, "except_sku": except_sku})
    return [Offer(*row) for row in rows]


def last_event_id() -> int:
    """Return the id of the newest stock_event row (0 when there is none)."""
    return db.session.scalar(select(func.max(StockEvent.id))) or 0


def buy_url(listing: Listing, mode: str, public_url: str) -> str | None:
    """Return the URL a visitor's phone opens to buy this item in the given mode."""
    if mode == "payment_link":
        return listing.payment_link_url
    path = "buy" if mode == "reserved_checkout" else "pay"
    return f"{public_url.rstrip('/')}/{path}/{listing.sku}"


def public_url(configured: str | None, host_url: str) -> str:
    """Return the base URL phones reach: PUBLIC_URL, else the URL this request came in on."""
    return (configured or host_url).rstrip("/")


# Syncing to Stripe ---------------------------------------------------------------------------

SOLD_OUT_MESSAGE = "Sold out at the booth, sorry!"
THANKS_MESSAGE = "Thank you! Show this page at the booth to collect your item."


@dataclass
class SyncResult:
    """What sync_item did for one item, for the one line sync-stripe prints."""

    sku: str
    link_id: str = ""
    active: bool = False
    created: list[str] = field(default_factory=list)
    switched: str | None = None  # "on" | "off" when an existing link was flipped
    retired: str | None = None  # the replaced link, switched off

    def describe(self) -> str:
        """Return one line saying what changed."""
        state = "active" if self.active else "inactive: sold out"
        done = []
        if self.created:
            done.append("created " + ", ".join(self.created))
        if self.switched:
            done.append(f"switched {self.switched}")
        if self.retired:
            done.append(f"old link {self.retired} switched off")
        return f"{self.sku}: {'; '.join(done) or 'up to date'} -> {self.link_id} ({state})"


def sync_stripe(
    store: str, capture: str, gateway: Any, echo: Callable[[str], Any] = print
) -> list[SyncResult]:
    """Create or find the Stripe product, price and payment link of every item of a store."""
    skus = db.session.scalars(
        select(Product.sku)
        .join(Stock, Stock.sku == Product.sku)
        .where(Stock.store == store)
        .order_by(Product.position, Product.sku)
    ).all()
    db.session.commit()
    results = []
    for sku in skus:
        results.append(sync_item(sku, store, capture, gateway))
        echo(results[-1].describe())
    return results


def sync_item(sku: str, store: str, capture: str, gateway: Any) -> SyncResult:
    """Bring one item's Stripe product, price and link in line with the database.

    Commits as it goes and never calls Stripe inside a transaction: each id is stored as
    soon as Stripe returns it, and each create carries an idempotency key derived from what
    it creates, so a crash mid-sync followed by a rerun creates nothing twice.
    """
    result = SyncResult(sku)
    product = db.session.get(Product, sku)
    name, description = product.name, product.description
    amount, currency = product.price, product.currency
    product_id, price_id = product.stripe_product_id, product.stripe_price_id
    db.session.commit()

    if product_id is None:
        params: dict[str, Any] = {"name": name, "metadata": {"sku": sku}}
        if description:
            params["description"] = description
        product_id = gateway.create_product(params, _key("product", sku, params)).id
        _save_product_ids(sku, product_id, price_id)
        result.created.append("product")

    if price_id is not None:
        price = gateway.retrieve_price(price_id)
        if (price.unit_amount, price.currency, price.product) != (amount, currency, product_id):
            price_id = None
    if price_id is None:
        params = {
            "product": product_id,
            "unit_amount": amount,
            "currency": currency,
            "metadata": {"sku": sku},
        }
        price_id = gateway.create_price(params, _key("price", sku, params)).id
        _save_product_ids(sku, product_id, price_id)
        result.created.append("price")

    _sync_link(sku, store, capture, price_id, gateway, result)
    return result


def _sync_link(
    sku: str, store: str, capture: str, price_id: str, gateway: Any, result: SyncResult
) -> None:
    stock = db.session.get(Stock, (sku, store))
    want_active = stock.available > 0
    current = _current_link(sku, store)
    old_id, old_price = (current.id, current.price_id) if current else (None, None)
    version = last_event_id()
    db.session.commit()

    if old_id is not None:
        link = gateway.retrieve_payment_link(old_id)
        intent_data = link.payment_intent_data
        link_capture = (intent_data.capture_method if intent_data else None) or "automatic"
        if old_price == price_id and link_capture == capture:
            result.link_id = old_id
            result.active = want_active
            if link.active != want_active:
                _switch(gateway, old_id, want_active, version)
                result.switched = "on" if want_active else "off"
            _save_link_state(old_id, want_active)
            return
        # A new price or capture method needs a new link; the old one stops selling first.
        if link.active:
            _switch(gateway, old_id, False, version)
        result.retired = old_id

    params = {
        "line_items": [
            {"price": price_id, "quantity": 1, "adjustable_quantity": {"enabled": False}}
        ],
        "metadata": {"sku": sku, "store": store},
        "payment_intent_data": {
            "capture_method": capture,
            "metadata": {"sku": sku, "store": store},
        },
        "inactive_message": SOLD_OUT_MESSAGE,
        "after_completion": {
            "type": "hosted_confirmation",
            "hosted_confirmation": {"custom_message": THANKS_MESSAGE},
        },
    }
    link = gateway.create_payment_link(params, _key("link", f"{store}-{sku}", params))
    # A replayed create answers the link as it was then; ask for its state now.
    link = gateway.retrieve_payment_link(link.id)
    if link.active != want_active:
        link = _switch(gateway, link.id, want_active, version)
    result.created.append("link")
    result.link_id, result.active = link.id, want_active
    if old_id is not None:
        retired = db.session.get(PaymentLink, old_id)
        retired.active = False
        retired.retired_at = utcnow()
        db.session.flush()
    db.session.add(
        PaymentLink(
            id=link.id, sku=sku, store=store, url=link.url, price_id=price_id, active=want_active
        )
    )
    db.session.commit()


def _current_link(sku: str, store: str) -> PaymentLink | None:
    return db.session.scalar(
        select(PaymentLink).where(
            PaymentLink.sku == sku, PaymentLink.store == store, PaymentLink.retired_at.is_(None)
        )
    )


def _switch(gateway: Any, link_id: str, active: bool, version: int) -> Any:
    # Keyed by the stock log position, so a later flip back is a new request, not a replay.
    key = f"swagstore-link-{link_id}-{'on' if active else 'off'}-{version}"
    return gateway.set_payment_link_active(link_id, active, key)


def _save_product_ids(sku: str, product_id: str, price_id: str | None) -> None:
    product = db.session.get(Product, sku)
    product.stripe_product_id = product_id
    product.stripe_price_id = price_id
    db.session.commit()


def _save_link_state(link_id: str, active: bool) -> None:
    link = db.session.get(PaymentLink, link_id)
    link.active = active
    db.session.commit()


def _key(kind: str, name: str, params: dict[str, Any]) -> str:
    """Return an idempotency key naming what a create makes, so a rerun replays it."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return f"swagstore-{kind}-{name}-{digest}"
