"""The catalog on Stripe: prices Stripe will charge, items synced, links matching stock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select

from .. import amounts, money, payments, stripe_sync
from ..models import PaymentLink, Product, Stock, db
from .results import Result, Setup, fail, ok


def check_prices(store: str, locale: str = "en_US") -> Result:
    """Check every item's price is one Stripe will charge (its minimum, zero-decimal right)."""
    name = "prices"
    rows = db.session.execute(
        select(Product.sku, Product.price, Product.currency)
        .join(Stock, Stock.sku == Product.sku)
        .where(Stock.store == store)
        .order_by(Product.position, Product.sku)
    ).all()
    db.session.rollback()
    if not rows:
        return fail(
            name,
            f"store {store!r} has no items",
            "load the catalog: `flask --app swagstore load-catalog instance/catalog.toml`",
        )
    refused = [
        f"{sku} ({why})"
        for sku, price, cur in rows
        if (why := amounts.refusal(price, cur, locale))
    ]
    if refused:
        return fail(
            name,
            "Stripe would refuse to charge " + "; ".join(refused),
            "fix the price in the catalog and run load-catalog (a free item is a giveaway, "
            "which staff record on /admin)",
        )
    unknown = sorted({cur.upper() for _, _, cur in rows if amounts.minimum(cur) is None})
    note = (
        f" (no published minimum for {', '.join(unknown)}: Stripe applies your payout "
        "currency's after converting)"
        if unknown
        else ""
    )
    low = min(rows, key=lambda row: money.major(row[1], row[2]))
    cheapest = f"cheapest {low[0]} at {money.format_money(low[1], low[2], locale)}"
    return ok(name, f"{len(rows)} items at or above Stripe's minimum charge; {cheapest}{note}")


@dataclass(frozen=True)
class ItemOnStripe:
    """An item as the database and Stripe see it, for the sync and link checks."""

    sku: str
    price: int
    currency: str
    available: int  # what the link may sell: none while off sale
    price_id: str | None
    link: PaymentLink | None
    recorded: int = 0  # the link's completed sessions this store has recorded
    stripe_price: Any = None  # the Price on Stripe, or None
    stripe_link: Any = None  # the PaymentLink on Stripe, or None
    problem: str | None = None  # what Stripe said when asked


def items_on_stripe(store: str, gateway: payments.Gateway) -> list[ItemOnStripe]:
    """Read each item of a store and ask Stripe for its price and current link."""
    rows = db.session.execute(
        select(Product, Stock.on_hand - Stock.reserved, Stock.off_sale)
        .join(Stock, Stock.sku == Product.sku)
        .where(Stock.store == store)
        .order_by(Product.position, Product.sku)
    ).all()
    links = {
        link.sku: link
        for link in db.session.scalars(
            select(PaymentLink).where(PaymentLink.store == store, PaymentLink.retired_at.is_(None))
        )
    }
    items = [
        ItemOnStripe(
            p.sku,
            p.price,
            p.currency,
            0 if off_sale else available,
            p.stripe_price_id,
            links.get(p.sku),
            stripe_sync.recorded_sessions(links[p.sku].id) if p.sku in links else 0,
        )
        for p, available, off_sale in rows
    ]
    for link in links.values():
        db.session.expunge(link)
    db.session.rollback()  # no transaction open across the calls below
    found = []
    for item in items:
        try:
            price = gateway.retrieve_price(item.price_id) if item.price_id else None
            link = gateway.retrieve_payment_link(item.link.id) if item.link else None
        except payments.PaymentsError as e:
            found.append(replace(item, problem=str(e).strip().splitlines()[-1]))
            continue
        found.append(replace(item, stripe_price=price, stripe_link=link))
    return found


def unsynced(item: ItemOnStripe, setup: Setup) -> str | None:
    """Say what sync-stripe would still change for an item, or None when it is in sync."""
    if item.problem:
        return f"Stripe: {item.problem}"
    if item.link is None or item.stripe_link is None:
        return "no payment link yet"
    price = item.stripe_price
    if price is None or (price.unit_amount, price.currency) != (item.price, item.currency):
        return "its price changed since the last sync"
    if item.link.price_id != item.price_id:
        return "its link sells an older price"
    intent_data = item.stripe_link.payment_intent_data
    capture = (intent_data.capture_method if intent_data else None) or "automatic"
    if capture != setup.link_capture:
        return f"its link captures {capture}, LINK_CAPTURE is {setup.link_capture}"
    if setup.sandbox and setup.public_url and not item.link.url.startswith(setup.public_url):
        return f"its link points at {item.link.url.split('/sandbox/')[0]}, not PUBLIC_URL"
    return None


def check_synced(items: list[ItemOnStripe], setup: Setup) -> Result:
    """Check every item has its product, price and payment link on Stripe, up to date."""
    name = "synced"
    behind: dict[str, list[str]] = {}
    for item in items:
        if why := unsynced(item, setup):
            behind.setdefault(why, []).append(item.sku)
    if behind:
        return fail(
            name,
            "not in line with Stripe: "
            + "; ".join(f"{', '.join(skus)}: {why}" for why, skus in behind.items()),
            "run `flask --app swagstore sync-stripe`",
        )
    return ok(name, f"all {len(items)} items have their price and payment link on Stripe")


def active_matches_stock(item: ItemOnStripe) -> str | None:
    """Say how an item's link on Stripe disagrees with its stock, or None."""
    active = bool(item.stripe_link.active)
    if active and item.available <= 0:
        return f"{item.sku}: link on at {item.available} available (a visitor pays for nothing)"
    if not active and item.available > 0:
        return f"{item.sku}: link off with {item.available} available (scans show sold out)"
    return None


def limit_matches_stock(item: ItemOnStripe) -> str | None:
    """Say how an item's limit of completed sessions on Stripe disagrees with its stock."""
    state = stripe_sync.link_state(item.stripe_link)
    if state.limit is None:
        return f"{item.sku}: link has no limit of completed sessions (Stripe cannot stop it)"
    # Sessions Stripe counted that the store has not recorded yet each take a unit later.
    available = item.available - max(0, state.count - item.recorded)
    # A link on with nothing available is active_matches_stock's to report.
    if state.active and item.available > 0 and not state.matches(available):
        more = state.limit - state.count
        return (
            f"{item.sku}: link's limit lets {more} more sell ({state.count} of "
            f"{state.limit} completed), {max(available, 0)} available"
        )
    return None


# Each rule compares one item's link on Stripe with its stock.
LINK_RULES: tuple[Callable[[ItemOnStripe], str | None], ...] = (
    active_matches_stock,
    limit_matches_stock,
)


def check_links(items: list[ItemOnStripe]) -> Result:
    """Check each payment link on Stripe matches its item's stock (on when there is some)."""
    name = "links"
    linked = [i for i in items if i.stripe_link is not None]
    wrong = [why for item in linked for rule in LINK_RULES if (why := rule(item))]
    if wrong:
        return fail(
            name,
            "; ".join(wrong),
            "the worker switches links within seconds while `make run` runs; if this "
            "stays, run `flask --app swagstore sync-stripe`",
        )
    on = sum(1 for i in linked if i.stripe_link.active)
    return ok(name, f"{on} links on, {len(linked) - on} off, each as its stock says")
