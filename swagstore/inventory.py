"""The stock rules: every change is one guarded UPDATE plus its stock_event row.

Functions here run inside the caller's transaction and never commit, so a stock change
lands together with whatever caused it (a sale, a Stripe event id, a queued task) or not
at all. Each returns the new `Level`, or None when the guard refused the change (not
enough stock, or no such item at that store).

This is the bottom layer of the domain: it imports only the models and decides nothing
about Stripe. It marks the session instead: `LINKS_STALE` names each item whose
payment link may now be wrong (its availability changed, except by a sale its link's
limit already counted, or crossed zero), for which tasks.py queues a link sync in that
same transaction (its before_commit hook). The live stream needs no mark: it polls the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, false, insert, text, true, update

from .models import Stock, StockEvent, db

# Any fixed number: with the store, the key of the PostgreSQL advisory lock in _change.
STOCK_LOG_LOCK = 5_411
# The most units one item's stock holds, or one change (a restock, a cash sale) moves: far
# above a booth, and far below any integer column's limit.
MAX_UNITS = 1_000_000


@dataclass(frozen=True)
class Level:
    """Stock of one item at one store after a change."""

    sku: str
    store: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def take(
    sku: str,
    store: str,
    quantity: int = 1,
    *,
    reason: str = "take",
    ref: str | None = None,
    actor: str | None = None,
    counted_by_link: bool = False,
) -> Level | None:
    """Remove sold units from stock if enough are available.

    `counted_by_link`: the sale is a session completed through the item's payment link,
    which Stripe counted against the link's limit itself, so the limit needs no change.
    """
    _check_quantity(quantity)
    return _change(
        _TAKE,
        sku,
        store,
        quantity,
        reason,
        ref,
        actor,
        available_delta=-quantity,
        counted_by_link=counted_by_link,
    )


def hold(
    sku: str, store: str, quantity: int = 1, *, ref: str | None = None, actor: str | None = None
) -> Level | None:
    """Set units aside for a checkout in progress if enough are available."""
    _check_quantity(quantity)
    return _change(_HOLD, sku, store, quantity, "hold", ref, actor, available_delta=-quantity)


def settle(
    sku: str, store: str, quantity: int = 1, *, ref: str | None = None, actor: str | None = None
) -> Level | None:
    """Turn held units into sold ones."""
    _check_quantity(quantity)
    return _change(_SETTLE, sku, store, quantity, "settle", ref, actor, available_delta=0)


def release(
    sku: str, store: str, quantity: int = 1, *, ref: str | None = None, actor: str | None = None
) -> Level | None:
    """Return held units to sale."""
    _check_quantity(quantity)
    return _change(_RELEASE, sku, store, quantity, "release", ref, actor, available_delta=quantity)


def restock(
    sku: str,
    store: str,
    quantity: int,
    *,
    reason: str = "restock",
    ref: str | None = None,
    actor: str | None = None,
) -> Level | None:
    """Add units to stock (a delivery, or a refunded unit put back on the shelf)."""
    _check_quantity(quantity)
    return _change(_RESTOCK, sku, store, quantity, reason, ref, actor, available_delta=quantity)


def adjust(
    sku: str, store: str, counted: int, *, ref: str | None = None, actor: str | None = None
) -> Level | None:
    """Set on-hand units to a counted number, never below what is reserved."""
    if not isinstance(counted, int) or isinstance(counted, bool) or counted < 0:
        raise ValueError(f"counted stock must be a whole number of at least 0, not {counted!r}")
    # An adjustment may go either way: available_delta None always re-syncs the link.
    return _change(_ADJUST, sku, store, counted, "adjust", ref, actor, available_delta=None)


def take_off_sale(
    sku: str, store: str, *, ref: str | None = None, actor: str | None = None
) -> Level | None:
    """Stop selling an item, keeping its units (None if it is already off sale or unknown)."""
    return _change(_OFF_SALE, sku, store, 0, "off-sale", ref, actor, available_delta=None)


def put_on_sale(
    sku: str, store: str, *, ref: str | None = None, actor: str | None = None
) -> Level | None:
    """Sell an item taken off sale again (None if it is on sale already or unknown)."""
    return _change(_ON_SALE, sku, store, 0, "on-sale", ref, actor, available_delta=None)


def _check_quantity(quantity: int) -> None:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise ValueError(f"quantity must be a whole number of at least 1, not {quantity!r}")


def _guarded(values: dict[str, Any], guard: ColumnElement[bool] | None) -> Update:
    """Return one operation's UPDATE, taking the item as :item_sku, :item_store."""
    stmt = update(_stock).where(
        _stock.c.sku == bindparam("item_sku"), _stock.c.store == bindparam("item_store")
    )
    if guard is not None:
        stmt = stmt.where(guard)
    return stmt.values(values).returning(_stock.c.on_hand, _stock.c.reserved)


# Built once, at import: on the webhook's path, building and caching a statement per call
# cost more than running it (bench/webhook.py). :n is the quantity (adjust: the count).
_stock = Stock.__table__
_n = bindparam("n")
_available = _stock.c.on_hand - _stock.c.reserved
_TAKE = _guarded({"on_hand": _stock.c.on_hand - _n}, _available >= _n)
_HOLD = _guarded({"reserved": _stock.c.reserved + _n}, _available >= _n)
_SETTLE = _guarded(
    {"on_hand": _stock.c.on_hand - _n, "reserved": _stock.c.reserved - _n},
    _stock.c.reserved >= _n,
)
_RELEASE = _guarded({"reserved": _stock.c.reserved - _n}, _stock.c.reserved >= _n)
_RESTOCK = _guarded({"on_hand": _stock.c.on_hand + _n}, None)
_ADJUST = _guarded({"on_hand": _n}, _stock.c.reserved <= _n)
# Not a count, but the link follows it and the kiosk shows it: logged like one.
_OFF_SALE = _guarded({"off_sale": true()}, _stock.c.off_sale.is_(False))
_ON_SALE = _guarded({"off_sale": false()}, _stock.c.off_sale.is_(True))
_LOG = insert(StockEvent.__table__)
_LOCK_LOG = text("SELECT pg_advisory_xact_lock(:key, hashtext(:store))")
# session.info[LINKS_STALE]: the (sku, store) items whose payment link may now be wrong.
LINKS_STALE = "swagstore.links_stale"


def _change(
    stmt: Update,
    sku: str,
    store: str,
    n: int,
    reason: str,
    ref: str | None,
    actor: str | None,
    *,
    available_delta: int | None,
    counted_by_link: bool = False,
) -> Level | None:
    """Run one guarded UPDATE, log it, and mark the item's link stale if it may now be wrong."""
    conn = db.session.connection()
    if conn.dialect.name == "postgresql":
        # The live stream follows stock_event by id. PostgreSQL hands out ids before commit,
        # so a later id could become visible first and a reader would skip the earlier one.
        # One writer per store from here to commit keeps id order equal to commit order,
        # as SQLite's single writer does. Taken before the UPDATE, so no row lock is held
        # while waiting for it.
        conn.execute(_LOCK_LOG, {"key": STOCK_LOG_LOCK, "store": store})
    row = conn.execute(stmt, {"item_sku": sku, "item_store": store, "n": n}).one_or_none()
    if row is None:
        return None
    level = Level(sku, store, row.on_hand, row.reserved)
    conn.execute(
        _LOG,
        {
            "sku": sku,
            "store": store,
            "on_hand": level.on_hand,
            "reserved": level.reserved,
            "reason": reason,
            "ref": ref,
            "actor": actor,
        },
    )
    if available_delta is None:
        stale = True  # an adjustment or a sale state may go either way; a spare sync is harmless
    else:
        # The link's limit is count + available: any other change of availability moves it.
        # A sale through the link moved Stripe's count too, unless it crossed zero (the
        # link goes off, in case Stripe's count had passed its limit).
        before = level.available - available_delta
        crossed = (before > 0) != (level.available > 0)
        stale = crossed or (available_delta != 0 and not counted_by_link)
    if stale:
        db.session.info.setdefault(LINKS_STALE, set()).add((sku, store))
    return level
