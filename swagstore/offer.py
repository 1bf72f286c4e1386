"""The offer: what a store has on sale right now, as the kiosk, the API and the shop show it.

Read-only: nothing here writes, so these queries run in whatever transaction the caller
has (or a `models.read_only()` block) and never need the write lock. A Listing's counts
are one consistent row of `stock`; `last_event_id` is the stock log position they match.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select

from .models import PaymentLink, Product, Sale, Stock, StockEvent, db


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
    off_sale: bool = False
    # The link as Stripe last reported it: on or off, completed sessions and their limit.
    link_active: bool | None = None
    link_count: int | None = None
    link_limit: int | None = None

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def on_offer(self) -> bool:
        """Tell whether visitors can buy it now: on sale with a unit available."""
        return not self.off_sale and not self.sold_out

    @property
    def sold_out(self) -> bool:
        return self.available <= 0

    @property
    def stopped_by_stripe(self) -> bool:
        """Tell whether Stripe switched the link off itself, its limit of sessions reached."""
        return (
            self.link_active is False
            and self.link_limit is not None
            and (self.link_count or 0) >= self.link_limit
        )


def listings(store: str) -> list[Listing]:
    """List every item stocked at a store, in catalog order, with counts and link."""
    sold = (
        select(Sale.sku, func.sum(Sale.quantity).label("sold"))
        .where(Sale.store == store, Sale.status == "fulfilled")
        .group_by(Sale.sku)
        .subquery()
    )
    stmt = (
        select(
            Product,
            Stock,
            func.coalesce(sold.c.sold, 0),
            PaymentLink.id,
            PaymentLink.url,
            PaymentLink.active,
            PaymentLink.session_count,
            PaymentLink.session_limit,
        )
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
            off_sale=s.off_sale,
            link_active=active,
            link_count=count,
            link_limit=limit,
        )
        for p, s, n, link_id, link_url, active, count, limit in db.session.execute(stmt)
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
        Stock.off_sale.is_(False),
    )
    .order_by(Product.position, Product.sku)
)


def in_stock(store: str, except_sku: str, labels: dict[str, str]) -> list[Offer]:
    """List the items a store still has available, in catalog order, but one, named by
    their labels (`item_labels`): three sizes of one tee must not read alike."""
    rows = db.session.execute(_IN_STOCK, {"store": store, "except_sku": except_sku})
    return [
        Offer(sku, labels.get(sku, name), price, currency, available)
        for sku, name, price, currency, available in rows
    ]


def last_event_id() -> int:
    """Return the id of the newest stock_event row (0 when there is none)."""
    return db.session.scalar(select(func.max(StockEvent.id))) or 0


def variant_keys(attributes: list[dict[str, str]]) -> list[str]:
    """Return the attributes that tell a group's members apart (every tee navy, sizes differ)."""
    first = attributes[0] if attributes else {}
    return [k for k in first if len({a.get(k) for a in attributes}) > 1]


def label(name: str, attributes: dict[str, str], keys: list[str]) -> str:
    """Name a variant by the attributes that tell its group apart: "Logo T-shirt, M"."""
    values = [str(attributes[k]) for k in keys if attributes.get(k) not in (None, "")]
    return ", ".join([name, *values])


def item_labels(store: str) -> dict[str, str]:
    """Return every item's label at a store: its name, and for a variant what sets it apart."""
    products = db.session.execute(
        select(Product.sku, Product.name, Product.attributes, Product.group)
        .join(Stock, Stock.sku == Product.sku)
        .where(Stock.store == store)
        .order_by(Product.position, Product.sku)
    ).all()
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for _, _, attributes, group in products:
        groups[group or ""].append(attributes or {})
    labels = {}
    for sku, name, attributes, group in products:
        keys = variant_keys(groups[group]) if group else []
        labels[sku] = label(name, attributes or {}, keys)
    return labels


def buy_url(listing: Listing, mode: str, public_url: str) -> str | None:
    """Return the URL a visitor's phone opens to buy this item in the given mode."""
    if mode == "payment_link":
        return listing.payment_link_url
    path = "buy" if mode == "reserved_checkout" else "pay"
    return f"{public_url.rstrip('/')}/{path}/{listing.sku}"


def public_url(configured: str | None, host_url: str) -> str:
    """Return the base URL phones reach: PUBLIC_URL, else the URL this request came in on."""
    return (configured or host_url).rstrip("/")
